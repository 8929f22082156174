/* SPDX-License-Identifier: MIT */
/* System -> device: BEGIN, COMMIT, FINISH (see migrate.h). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "devmem.h"
#include "copier.h"
#include "events.h"
#include "log.h"
#include "migrate.h"
#include "procfs.h"
#include "uffdops.h"

int migrate_check_span(const struct client *c, uint64_t addr, uint64_t len,
		       uint32_t flags)
{
	if (!c->attached)
		return -EPROTO;
	if (addr & (PAGE_SIZE - 1) || len & (PAGE_SIZE - 1) || !len ||
	    addr + len < addr || flags & ~DEVMEM_MIGRATE_4K)
		return -EINVAL;
	return 0;
}

static int need_readable_anon(uint64_t start, uint64_t end, unsigned flags,
			      void *arg)
{
	return (flags & (VMA_ANON_PRIVATE | VMA_READ)) ==
			       (VMA_ANON_PRIVATE | VMA_READ)
		       ? 0
		       : -EINVAL;
}

static void batch_unbusy(struct client *c, const struct batch *b, uint64_t set)
{
	for (uint32_t k = 0; k < b->nunits; k++) {
		struct unit *u;

		if (!(set >> k & 1))
			continue;
		u = pt_unit(&c->pt, b->first + (uint64_t)k * UNIT_SIZE);
		if (u)
			client_unbusy_resolve(c, u);
	}
}

/* Register the batch's claimed pieces with the client's userfaultfd, in
 * runs of contiguous pieces, one ioctl each. */
static int batch_register(struct client *c, const struct batch *b)
{
	for (uint32_t k = 0; k < b->nunits; k++) {
		uint64_t start, end;
		uint32_t j = k;
		int err;

		if (!(b->busy >> k & 1))
			continue;
		while (j + 1 < b->nunits && b->busy >> (j + 1) & 1)
			j++;
		start = MAX(b->first + (uint64_t)k * UNIT_SIZE, b->addr);
		end = MIN(b->first + (uint64_t)(j + 1) * UNIT_SIZE, b->end);
		err = uffd_register_missing(c->uffd, start, end - start);
		if (err) {
			log_warn("client %u: registering %#llx-%#llx: %s",
				 c->id, (unsigned long long)start,
				 (unsigned long long)end, strerror(-err));
			return err == -ESRCH ? err : -EINVAL;
		}
		for (uint32_t i = k; i <= j; i++)
			pt_unit(&c->pt, b->first + (uint64_t)i * UNIT_SIZE)
				->registered = true;
		k = j;
	}
	return 0;
}

int migrate_begin(struct client *c, const struct dm_migrate *m,
		  struct dm_begin_reply *rep)
{
	uint64_t end = m->addr + m->len;
	struct batch b = { 0 };
	int err = migrate_check_span(c, m->addr, m->len, m->flags);

	memset(rep, 0, sizeof(*rep));
	if (err)
		return err;
	/* like dmirror: every page must be readable private anonymous memory */
	err = maps_walk(c->proc_dirfd, m->addr, end, need_readable_anon, NULL);
	if (err)
		return err == -ENOENT || err == -ESRCH ? -ESRCH : -EINVAL;

	pthread_mutex_lock(&c->lock);
	if (client_mid_migration(c)) {
		err = -EBUSY;
		goto out;
	}
	events_wait(c);
	if (!pt_covered(&c->pt, m->addr, m->len)) {
		err = -EINVAL;
		goto out;
	}
	b.addr = m->addr;
	b.end = end;
	b.flags = m->flags;
	b.first = ALIGN_DOWN(m->addr, UNIT_SIZE);
	b.nunits = (uint32_t)((ALIGN_UP(end, UNIT_SIZE) - b.first) / UNIT_SIZE);
	if (b.nunits > c->nslots) {
		err = -EINVAL;
		goto out;
	}
	for (uint32_t k = 0; k < b.nunits; k++) {
		uint64_t va = b.first + (uint64_t)k * UNIT_SIZE;
		unsigned i0 = unit_page(MAX(va, m->addr));
		unsigned i1 = i0 + (unsigned)((MIN(va + UNIT_SIZE, end) -
					       MAX(va, m->addr)) >>
					      PAGE_SHIFT);
		struct unit *u = client_wait_unit(c, va);
		bool need = !u;

		for (unsigned i = i0; u && i < i1 && !need; i++)
			need = u->pte[i].state != DPTE_DEVICE;
		if (!need)
			continue; /* already on the device */
		if (!u)
			u = pt_unit_get(&c->pt, va, c);
		if (!u) {
			err = -ENOMEM;
			break;
		}
		atomic_store(&u->busy, BUSY_REQUEST);
		b.busy |= 1ull << k;
	}
	if (!err)
		err = batch_register(c, &b);
	if (err) {
		batch_unbusy(c, &b, b.busy);
		goto out;
	}
	b.move = b.busy;
	b.active = true;
	c->batch = b;
	rep->nunits = b.nunits;
	rep->units = b.move;
out:
	pthread_mutex_unlock(&c->lock);
	return err;
}

enum page_src { SRC_NONE, SRC_DEVICE, SRC_SLOT, SRC_INPLACE };

/* What COMMIT learned about one unit */
struct unit_plan {
	uint64_t va;
	unsigned i0, i1; /* the pages of the request in this unit */
	uint8_t src[FOLIO_PAGES];
	bool zero[FOLIO_PAGES];
	uint32_t dpfn[FOLIO_PAGES];
	bool folio;
	bool inplace;
	bool slot_thp; /* the slot holds one THP: worth keeping (recycling) */
	bool planned;  /* allocated, to be copied and installed */
	/* the copy, as one job for the copy workers */
	struct iovec local[FOLIO_PAGES], remote[FOLIO_PAGES];
	struct copy_job job;
};

static void plan_unit(struct client *c, const struct batch *b, uint32_t k,
		      const struct unit *u, const uint8_t *slotf,
		      const uint8_t *userf, struct unit_plan *p)
{
	uint64_t va = b->first + (uint64_t)k * UNIT_SIZE;
	unsigned huge_slot = 0, huge_user = 0, data = 0;
	bool whole;

	p->va = va;
	p->i0 = unit_page(MAX(va, b->addr));
	p->i1 = p->i0 +
		(unsigned)((MIN(va + UNIT_SIZE, b->end) - MAX(va, b->addr)) >>
			   PAGE_SHIFT);
	p->inplace = false;
	for (unsigned i = p->i0; i < p->i1; i++) {
		size_t at = (size_t)k * FOLIO_PAGES + i;
		uint8_t f = 0;

		if (u->pte[i].state == DPTE_DEVICE) {
			p->src[i] = SRC_DEVICE;
			continue;
		}
		if (slotf[at] & PM_PRESENT) {
			p->src[i] = SRC_SLOT;
			f = slotf[at];
			huge_slot += !!(f & PM_HUGE);
		} else if (userf[at] & PM_PRESENT) {
			p->src[i] = SRC_INPLACE;
			p->inplace = true;
			f = userf[at];
			huge_user += !!(f & PM_HUGE);
		} else {
			p->src[i] = SRC_NONE;
		}
		p->zero[i] = !(f & PM_PRESENT) || (f & PM_ZERO);
		data += !p->zero[i];
	}
	/* semantics 2: a whole unit that is a THP, or holds no data, moves as
	 * one order-9 folio unless the caller or the policy says 4 KB */
	whole = p->i0 == 0 && p->i1 == FOLIO_PAGES && va >= b->addr &&
		va + UNIT_SIZE <= b->end;
	p->folio = whole && !(b->flags & DEVMEM_MIGRATE_4K) &&
		   device_policy(c->dev, DM_POL_GRANULARITY) == 0 &&
		   u->ndevice == 0 &&
		   (huge_slot == FOLIO_PAGES || huge_user == FOLIO_PAGES ||
		    data == 0);
	p->slot_thp = huge_slot == FOLIO_PAGES;
}

static void plan_release(struct client *c, struct unit_plan *p, unsigned upto)
{
	unsigned released = 0;

	if (p->folio) {
		buddy_free(&c->dev->buddy, p->dpfn[0], FOLIO_ORDER);
		released = FOLIO_PAGES;
	} else {
		for (unsigned i = p->i0; i < upto; i++)
			if (p->src[i] != SRC_DEVICE) {
				buddy_free(&c->dev->buddy, p->dpfn[i], 0);
				released++;
			}
	}
	atomic_fetch_sub(&c->used_pages, released);
}

/* Allocate the unit's device memory: one folio, else 4 KB pages. */
static int plan_alloc(struct client *c, struct unit_plan *p,
		      struct dm_result_reply *rep)
{
	bool fallback = false;

	if (p->folio) {
		uint32_t head;
		int err = device_alloc(c->dev, c, FOLIO_ORDER, &head);

		if (!err) {
			for (unsigned i = 0; i < FOLIO_PAGES; i++)
				p->dpfn[i] = head + i;
			return 0;
		}
		if (err != -ENOMEM && err != -EAGAIN)
			return err;
		/* semantics 3: fall back to 512 order-0 pages */
		p->folio = false;
		fallback = true;
	}
	for (unsigned i = p->i0; i < p->i1; i++) {
		int err;

		if (p->src[i] == SRC_DEVICE)
			continue;
		err = device_alloc(c->dev, c, 0, &p->dpfn[i]);
		if (err) {
			plan_release(c, p, i);
			return -ENOMEM;
		}
	}
	if (fallback) { /* a split only if the unit moves at all */
		rep->split++;
		count(c, CNT_SPLITS, 1);
	}
	return 0;
}

/* The copy of the unit's data pages from the slot (or in place) to device
 * memory, as a job for the copy workers */
static void plan_job(struct client *c, uint32_t k, struct unit_plan *p)
{
	uint64_t slot = slot_addr(c, k);
	unsigned n = 0;
	size_t total = 0;

	for (unsigned i = p->i0; i < p->i1; i++) {
		uint8_t *dst;
		uint64_t src;

		if (p->zero[i] || p->src[i] == SRC_DEVICE ||
		    p->src[i] == SRC_NONE)
			continue;
		dst = pool_page(&c->dev->pool, p->dpfn[i]);
		src = (p->src[i] == SRC_SLOT ? slot : p->va) +
		      ((uint64_t)i << PAGE_SHIFT);
		total += PAGE_SIZE;
		if (n &&
		    (uint8_t *)p->local[n - 1].iov_base +
				    p->local[n - 1].iov_len ==
			    dst &&
		    (uint64_t)(uintptr_t)p->remote[n - 1].iov_base +
				    p->remote[n - 1].iov_len ==
			    src) {
			p->local[n - 1].iov_len += PAGE_SIZE;
			p->remote[n - 1].iov_len += PAGE_SIZE;
			continue;
		}
		p->local[n] = (struct iovec){ dst, PAGE_SIZE };
		p->remote[n] =
			(struct iovec){ (void *)(uintptr_t)src, PAGE_SIZE };
		n++;
	}
	p->job = (struct copy_job){ .pid = c->pid,
				    .local = p->local,
				    .remote = p->remote,
				    .nlocal = n,
				    .nremote = n,
				    .len = total };
}

/* Make the planned pages DEVICE (lock held). */
static void plan_install(struct client *c, struct unit *u,
			 const struct unit_plan *p, struct dm_result_reply *rep)
{
	unsigned moved = 0;

	for (unsigned i = p->i0; i < p->i1; i++) {
		struct dpte *pte = &u->pte[i];

		if (p->src[i] == SRC_DEVICE)
			continue;
		pte->state = DPTE_DEVICE;
		pte->dpfn = p->dpfn[i];
		pte->flags = (p->zero[i] ? DPTE_ZERO : 0) |
			     (p->folio ? DPTE_FOLIO : 0);
		moved++;
	}
	u->ndevice += moved;
	u->huge = p->folio;
	count(c, CNT_TO_DEVICE, moved);
	if (p->folio) {
		count(c, CNT_HUGE, 1);
		rep->huge++;
	}
}

static unsigned device_pages(const struct pagetable *pt, uint64_t start,
			     uint64_t end)
{
	unsigned n = 0;

	for (uint64_t va = ALIGN_DOWN(start, UNIT_SIZE); va < end;
	     va += UNIT_SIZE) {
		struct unit *u = pt_unit(pt, va);
		unsigned i0 = unit_page(MAX(va, start));
		unsigned i1 = i0 + (unsigned)((MIN(va + UNIT_SIZE, end) -
					       MAX(va, start)) >>
					      PAGE_SHIFT);

		for (unsigned i = i0; u && i < i1; i++)
			n += u->pte[i].state == DPTE_DEVICE;
	}
	return n;
}

int migrate_commit(struct client *c, const struct dm_migrate *m,
		   struct dm_result_reply *rep)
{
	uint64_t inplace = 0, failed = 0, thp = 0;
	uint8_t *slotf = NULL, *userf = NULL;
	struct unit_plan *plans = NULL;
	struct copy_job *jobs = NULL;
	unsigned njobs = 0;
	struct batch b;
	size_t npages;
	int err = 0, status = 0;

	memset(rep, 0, sizeof(*rep));
	pthread_mutex_lock(&c->lock);
	b = c->batch;
	pthread_mutex_unlock(&c->lock);
	if (!b.active || b.committed || m->addr != b.addr ||
	    m->addr + m->len != b.end || m->units & ~b.move)
		return -EPROTO;

	/* the batch's units are busy: nobody else touches their pages, so
	 * the scan and the copy need no lock */
	npages = (size_t)b.nunits * FOLIO_PAGES;
	slotf = malloc(npages);
	userf = calloc(1, npages);
	plans = calloc(b.nunits, sizeof(*plans));
	jobs = calloc(b.nunits, sizeof(*jobs));
	if (!slotf || !userf || !plans || !jobs) {
		err = -ENOMEM;
		goto out;
	}
	err = pm_scan(c->pagemap_fd, c->staging,
		      c->staging + (uint64_t)b.nunits * UNIT_SIZE, slotf);
	if (!err)
		err = pm_scan(c->pagemap_fd, b.addr, b.end,
			      userf + ((b.addr - b.first) >> PAGE_SHIFT));
	if (err) {
		log_warn("client %u: scanning its pagemap: %s", c->id,
			 strerror(-err));
		goto out;
	}

	/* plan and allocate, unit by unit: what does not fit stops here */
	for (uint32_t k = 0; k < b.nunits; k++) {
		struct unit_plan *p = &plans[k];

		if (!(b.move >> k & 1) || !(m->units >> k & 1))
			continue; /* nothing to move, or the client could not */
		if (status) {
			failed |= 1ull << k;
			continue;
		}
		pthread_mutex_lock(&c->lock);
		plan_unit(c, &b, k,
			  pt_unit(&c->pt, b.first + (uint64_t)k * UNIT_SIZE),
			  slotf, userf, p);
		pthread_mutex_unlock(&c->lock);
		status = plan_alloc(c, p, rep);
		if (status) {
			failed |= 1ull << k;
			continue;
		}
		plan_job(c, k, p);
		p->planned = true;
	}

	/* the copies: the only real work, on all CPUs */
	for (uint32_t k = 0; k < b.nunits; k++)
		if (plans[k].planned)
			jobs[njobs++] = plans[k].job;
	copier_run(jobs, njobs);

	njobs = 0;
	for (uint32_t k = 0; k < b.nunits; k++) {
		struct unit_plan *p = &plans[k];
		struct unit *u;
		int jerr;

		if (!p->planned)
			continue;
		jerr = jobs[njobs++].err;
		if (jerr) {
			if (jerr != -ESRCH)
				log_warn(
					"client %u: copying %#llx to the device: %s",
					c->id, (unsigned long long)p->va,
					strerror(-jerr));
			plan_release(c, p, p->i1);
			failed |= 1ull << k;
			status = status ? status : jerr;
			continue;
		}
		pthread_mutex_lock(&c->lock);
		u = pt_unit(&c->pt, p->va);
		plan_install(c, u, p, rep);
		pthread_mutex_unlock(&c->lock);
		if (p->inplace)
			inplace |= 1ull << k;
		if (p->slot_thp)
			thp |= 1ull << k;
	}
out:
	pthread_mutex_lock(&c->lock);
	if (err) {
		/* nothing was taken: all the staged units go back */
		failed = b.move & m->units;
		status = err;
	}
	c->batch.busy = inplace | failed;
	batch_unbusy(c, &b, b.move & ~(inplace | failed));
	c->batch.active = c->batch.busy != 0;
	c->batch.committed = true;
	rep->pages = device_pages(&c->pt, b.addr, b.end);
	log_debug("client %u: commit %#llx-%#llx: %llu pages on the device",
		  c->id, (unsigned long long)b.addr, (unsigned long long)b.end,
		  (unsigned long long)rep->pages);
	rep->units = inplace;
	rep->failed = failed;
	rep->thp = thp;
	pthread_mutex_unlock(&c->lock);
	free(slotf);
	free(userf);
	free(plans);
	free(jobs);
	return status;
}

int migrate_finish(struct client *c, const struct dm_migrate *m)
{
	struct batch b;

	/* libdevmem dropped the pages copied in place before FINISH: those
	 * REMOVE events must be queued while the batch is current, or they
	 * would discard what was just migrated */
	events_settle(c);
	pthread_mutex_lock(&c->lock);
	b = c->batch;
	if (!b.active || !b.committed || m->addr != b.addr ||
	    m->addr + m->len != b.end || m->units != b.busy) {
		pthread_mutex_unlock(&c->lock);
		return -EPROTO;
	}
	c->batch.active = false;
	batch_unbusy(c, &b, b.busy);
	pthread_mutex_unlock(&c->lock);
	return 0;
}
