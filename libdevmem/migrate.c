/* SPDX-License-Identifier: MIT */
/*
 * devmem_migrate: the client's half of the migration protocol (see
 * daemon/migrate.h for devmemd's half).
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "devmem-internal.h"
#include "uffd_compat.h"

/* Is addr in a writable mapping?  -1 if unmapped; *end is where that
 * mapping ends. */
static int vma_writable(uint64_t addr, uint64_t *end)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	int ret = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		uint64_t s, e;
		char perms[5];

		if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %4s", &s, &e,
			   perms) != 3)
			continue;
		if (addr >= s && addr < e) {
			*end = e;
			ret = perms[1] == 'w';
			break;
		}
	}
	fclose(f);
	return ret;
}

/* Write a word's own value back, atomically (a concurrent writer's value
 * is never lost).  A compare-and-exchange, because compilers may turn an
 * atomic add of 0 into a plain load, which would not break COW. */
static void write_same(uint64_t *word)
{
	uint64_t v = __atomic_load_n(word, __ATOMIC_RELAXED);

	__atomic_compare_exchange_n(word, &v, v, false, __ATOMIC_SEQ_CST,
				    __ATOMIC_RELAXED);
}

/*
 * Take the pages of [start, end) out of the CPU's reach into the slot at
 * dst: atomically, so a concurrent writer either wrote before (and its
 * write moves with the page) or faults and waits for devmemd.
 */
static int move_out(struct devmem *dm, uint64_t start, uint64_t end,
		    uint64_t dst, uint64_t *stop)
{
	uint64_t at = start, lim = end; /* lim: one UFFDIO_MOVE's end */
	uint64_t busy_at = UINT64_MAX;
	int busy_tries = 0, eexist_tries = 0;

	*stop = end;
	while (at < end) {
		uint64_t moved, vend;
		int err, writable;

		if (at >= lim)
			lim = end;
		err = dm_uffd_move(dm->staging_uffd, dst + (at - start), at,
				   lim - at, UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES,
				   &moved);
		at += moved;
		if (!err)
			continue;
		if (err == -EBUSY && busy_tries++ < 3 * (int)FOLIO_PAGES) {
			/* a page still shared with a fork()ed child: a
			 * write that changes nothing makes it ours (COW) */
			write_same((uint64_t *)(uintptr_t)at);
			/* Still refused after that write: the page is in a
			 * PTE-mapped THP that a fork() shared.  With the child
			 * gone, the write kept the THP and made only this page
			 * ours, but UFFDIO_MOVE asks the THP's first page, which
			 * may stay shared or not even be ours.  MADV_COLD of
			 * part of a THP no one else maps splits it, each page
			 * keeping its own state; the data stays in place. */
			if (at == busy_at)
				madvise((void *)(uintptr_t)at, PAGE_SIZE,
					MADV_COLD);
			busy_at = at;
			continue;
		}
		if (err == -EEXIST && eexist_tries++ < (int)FOLIO_PAGES) {
			/* the slot was not empty after all (a folio devmemd
			 * could not finish writing): drop what is in the way,
			 * not what this call moved there already */
			madvise((void *)(uintptr_t)(dst + (at - start)),
				PAGE_SIZE, MADV_DONTNEED);
			continue;
		}
		writable = err == -EINVAL ? vma_writable(at, &vend) : -1;
		if (writable == 1 && vend < lim) {
			/* one UFFDIO_MOVE moves within one VMA, and the
			 * range is several (mprotect, madvise, mremap split
			 * it): one at a time */
			lim = vend;
			continue;
		}
		if (writable == 0) {
			/* read-only: nobody can write it, so devmemd copies
			 * it in place and we drop it after */
			at = MIN(vend, end);
			continue;
		}
		*stop = at;
		return err;
	}
	return 0;
}

/* Put back what move_out took, after devmemd refused the unit (or went
 * away).  The pages are the process's: they must not stay in the slot,
 * which is emptied next. */
static int move_back(struct devmem *dm, uint64_t start, uint64_t end,
		     uint64_t src)
{
	uint64_t moved, vend, at = start, lim = end;
	int err;

	/* the slot's pages go back where they came from, a VMA at a time
	 * and page by page where the whole piece cannot (a page the
	 * application faulted in since stays, as the newer one) */
	while (at < end) {
		if (at >= lim)
			lim = end;
		err = dm_uffd_move(dm->uffd, at, src + (at & UNIT_MASK),
				   lim - at, UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES,
				   &moved);
		at += moved;
		if (!err)
			continue;
		if (err == -EINVAL && vma_writable(at, &vend) >= 0 &&
		    vend < lim) {
			lim = vend;
			continue;
		}
		if (err != -EEXIST)
			return err;
		at += PAGE_SIZE;
	}
	return 0;
}

static void piece_of(uint64_t first, uint32_t k, uint64_t addr, uint64_t end,
		     uint64_t *ps, uint64_t *pe)
{
	uint64_t va = first + (uint64_t)k * UNIT_SIZE;

	*ps = MAX(va, addr);
	*pe = MIN(va + UNIT_SIZE, end);
}

static void add_result(struct devmem_result *res,
		       const struct dm_result_reply *r)
{
	res->pages += r->pages;
	res->huge += r->huge;
	res->split += r->split;
	res->faults += r->faults;
}

/* One batch of at most STAGING_SLOTS units */
static int to_device_batch(struct devmem *dm, uint64_t addr, uint64_t end,
			   unsigned flags, struct devmem_result *res)
{
	struct dm_migrate m = { .addr = addr,
				.len = end - addr,
				.flags = flags };
	uint64_t first = ALIGN_DOWN(addr, UNIT_SIZE), moved = 0, todo, pending;
	struct dm_result_reply cr;
	struct dm_msg rep;
	int err, move_err = 0, status;

	err = dm_call(dm, DM_MIGRATE_BEGIN, &m, NULL, 0, NULL, 0, &rep);
	todo = rep.u.begin_reply.units;
	dm_msg_release(&rep);
	if (err)
		return err;
	for (uint32_t k = 0; k < DM_MAX_BATCH; k++) {
		uint64_t ps, pe, stop, slot = dm_slot(dm, k);

		if (!(todo >> k & 1))
			continue;
		piece_of(first, k, addr, end, &ps, &pe);
		/* a move needs an empty slot */
		if (dm->warm_slots >> k & 1) {
			madvise((void *)(uintptr_t)slot, UNIT_SIZE,
				MADV_DONTNEED);
			dm->warm_slots &= ~(1ull << k);
		}
		err = move_out(dm, ps, pe, slot + (ps & UNIT_MASK), &stop);
		if (err) {
			/* leave the unit as it was; devmemd skips it */
			move_back(dm, ps, stop, slot);
			madvise((void *)(uintptr_t)slot, UNIT_SIZE,
				MADV_DONTNEED);
			move_err = move_err ? move_err : err;
			continue;
		}
		moved |= 1ull << k;
	}
	m.units = moved;
	status = dm_call(dm, DM_MIGRATE_COMMIT, &m, NULL, 0, NULL, 0, &rep);
	cr = rep.u.result_reply;
	dm_msg_release(&rep);
	if (status == -ENOTCONN) {
		/* devmemd is gone with the batch: the staged pages are still
		 * ours, put them back */
		cr = (struct dm_result_reply){ .failed = moved };
	}
	add_result(res, &cr);
	for (uint32_t k = 0; k < DM_MAX_BATCH; k++) {
		uint64_t ps, pe, slot = dm_slot(dm, k);

		if (!(moved >> k & 1))
			continue;
		piece_of(first, k, addr, end, &ps, &pe);
		if (cr.failed >> k & 1) {
			/* fails only for a mapping that went meanwhile */
			err = move_back(dm, ps, pe, slot);
			move_err = move_err ? move_err : err;
		} else if (cr.units >> k & 1) {
			madvise((void *)(uintptr_t)ps, pe - ps, MADV_DONTNEED);
		}
	}
	/* a slot holding a whole THP stays so, to receive data coming back;
	 * the others start empty next time */
	dm->warm_slots |= moved & cr.thp & ~cr.failed;
	for (uint32_t k = 0; k < DM_MAX_BATCH; k++)
		if (moved >> k & 1 && !(dm->warm_slots >> k & 1))
			madvise((void *)(uintptr_t)dm_slot(dm, k), UNIT_SIZE,
				MADV_DONTNEED);
	pending = cr.units | cr.failed;
	if (pending && status != -ENOTCONN) {
		m.units = pending;
		err = dm_call(dm, DM_MIGRATE_FINISH, &m, NULL, 0, NULL, 0,
			      &rep);
		dm_msg_release(&rep);
		if (err)
			return err;
	}
	return status ? status : move_err;
}

int dm_migrate_to_device(struct devmem *dm, uint64_t addr, uint64_t len,
			 unsigned flags, struct devmem_result *res)
{
	uint64_t end = addr + len;

	for (uint64_t at = addr; at < end;) {
		uint64_t stop = MIN(end, ALIGN_DOWN(at, UNIT_SIZE) +
						 STAGING_SLOTS * UNIT_SIZE);
		int err = to_device_batch(dm, at, stop, flags, res);

		if (err)
			return err;
		at = stop;
	}
	return 0;
}

int dm_migrate_to_system(struct devmem *dm, uint64_t addr, uint64_t len,
			 unsigned flags, struct devmem_result *res)
{
	struct dm_migrate m = { .flags = flags, .nslots = STAGING_SLOTS };
	uint64_t end = addr + len;

	for (uint64_t at = addr; at < end;) {
		struct dm_move moves[DM_MAX_BATCH];
		struct dm_result_reply br;
		struct dm_msg rep;
		uint64_t next;
		uint32_t n;
		int err;

		m.addr = at;
		m.len = end - at;
		err = dm_call(dm, DM_MIGRATE_BACK, &m, NULL, 0, NULL, 0, &rep);
		br = rep.u.result_reply;
		n = MIN(rep.ntail, DM_MAX_BATCH);
		if (!err && n)
			memcpy(moves, rep.tail, n * sizeof(moves[0]));
		dm_msg_release(&rep);
		if (err)
			return err;
		add_result(res, &br);
		next = br.next;
		if (n) {
			/* each slot holds a whole folio: move it into place,
			 * where it stays a THP */
			for (uint32_t i = 0; i < n; i++) {
				uint64_t slot = dm_slot(dm, moves[i].slot);

				moves[i].status = dm_uffd_move(
					dm->uffd, moves[i].dst, slot, UNIT_SIZE,
					0, &moves[i].moved);
				dm->warm_slots &= ~(1ull << moves[i].slot);
				if (moves[i].moved < UNIT_SIZE)
					madvise((void *)(uintptr_t)(slot +
								    moves[i].moved),
						UNIT_SIZE - moves[i].moved,
						MADV_DONTNEED);
			}
			err = dm_call(dm, DM_MIGRATE_BACK_DONE, NULL, moves, n,
				      NULL, 0, &rep);
			br = rep.u.result_reply;
			dm_msg_release(&rep);
			if (err)
				return err;
			add_result(res, &br);
		}
		if (next <= at || next > end)
			return -EPROTO; /* devmemd made no progress */
		at = next;
	}
	return 0;
}

int dm_migrate_span_to_system(struct devmem *dm, uint64_t addr, uint64_t len)
{
	uint64_t end = addr + len, from = addr;

	/* devmemd knows the registered parts: a munmap may have ended some,
	 * an mremap moved others */
	for (;;) {
		struct dm_range q = { .addr = from }, ranges[64];
		struct dm_msg rep;
		uint32_t n;
		int err;

		err = dm_call(dm, DM_RANGES, &q, NULL, 0, NULL, 0, &rep);
		n = MIN(rep.ntail, ARRAY_SIZE(ranges));
		if (!err && n)
			memcpy(ranges, rep.tail, n * sizeof(ranges[0]));
		dm_msg_release(&rep);
		if (err || !n)
			return err;
		for (uint32_t i = 0; i < n; i++) {
			uint64_t s = MAX(ranges[i].addr, addr);
			uint64_t e = MIN(ranges[i].addr + ranges[i].len, end);
			struct devmem_result res = { 0 };

			if (s >= end)
				return 0;
			err = dm_migrate_to_system(dm, s, e - s, 0, &res);
			if (err)
				return err;
		}
		from = ranges[n - 1].addr + ranges[n - 1].len;
		if (from >= end)
			return 0;
	}
}

int dm_migrate_all_to_system(struct devmem *dm)
{
	return dm_migrate_span_to_system(dm, 0, UINT64_MAX);
}
