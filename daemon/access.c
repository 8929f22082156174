/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "access.h"
#include "devmem.h"
#include "events.h"
#include "procfs.h"
#include "uffdops.h"

struct prot_check {
	bool write;
	int err;
};

static int check_prot(uint64_t start, uint64_t end, unsigned flags, void *arg)
{
	struct prot_check *pc = arg;

	if (!(flags & VMA_READ))
		return -EFAULT;
	if (pc->write && !(flags & VMA_WRITE))
		pc->err = -EPERM; /* unless another part is PROT_NONE */
	return 0;
}

/* Copy between the client's memory and a local buffer */
static int client_copy(struct client *c, const struct iovec *local,
		       const struct iovec *remote, unsigned n, size_t len,
		       bool to_client)
{
	ssize_t done;

	if (!n)
		return 0;
	done = to_client ? process_vm_writev(c->pid, local, n, remote, n, 0)
			 : process_vm_readv(c->pid, local, n, remote, n, 0);
	if (done < 0)
		return -errno;
	return (size_t)done == len ? 0 : -EFAULT;
}

static int client_copy1(struct client *c, uint64_t remote, void *local,
			size_t len, bool to_client)
{
	struct iovec l = { local, len };
	struct iovec r = { (void *)(uintptr_t)remote, len };

	return client_copy(c, &l, &r, 1, len, to_client);
}

/* System pages of a piece, gathered under the lock, copied without it */
struct sys_runs {
	struct iovec local[FOLIO_PAGES + 1], remote[FOLIO_PAGES + 1];
	unsigned n;
	size_t len;
};

static void sys_runs_add(struct sys_runs *sr, uint8_t *local, uint64_t remote,
			 size_t len)
{
	if (sr->n && (uint8_t *)sr->local[sr->n - 1].iov_base +
				     sr->local[sr->n - 1].iov_len ==
			     local) {
		sr->local[sr->n - 1].iov_len += len;
		sr->remote[sr->n - 1].iov_len += len;
	} else {
		sr->local[sr->n] = (struct iovec){ local, len };
		sr->remote[sr->n] =
			(struct iovec){ (void *)(uintptr_t)remote, len };
		sr->n++;
	}
	sr->len += len;
}

/*
 * One piece of an access, inside one unit: [start, end), with bounce holding
 * the bytes (for a device write: already read from the client's buffer).
 * Device pages are copied under the lock; system pages after it, since
 * touching client memory may fault to a resolver, which takes the lock.
 */
static int access_piece(struct client *c, uint64_t start, uint64_t end,
			uint8_t *bounce, bool write, bool *faulted,
			uint64_t *pages)
{
	uint64_t va = ALIGN_DOWN(start, UNIT_SIZE);
	struct sys_runs *sr = malloc(sizeof(*sr));
	struct unit *u;
	int err;

	if (!sr)
		return -ENOMEM;
	sr->n = 0;
	sr->len = 0;
	pthread_mutex_lock(&c->lock);
	u = client_wait_unit(c, va);
	for (uint64_t p = ALIGN_DOWN(start, PAGE_SIZE); p < end;
	     p += PAGE_SIZE) {
		uint64_t s = MAX(p, start), e = MIN(p + PAGE_SIZE, end);
		uint8_t *buf = bounce + (s - start);
		struct dpte *pte = u ? &u->pte[unit_page(p)] : NULL;
		uint8_t *dev;

		(*pages)++;
		if (!pte || pte->state != DPTE_DEVICE) {
			/* the device faults the system page in; a hole in a
			 * registered unit is filled here, under the lock,
			 * rather than by a resolver */
			if (u && u->registered)
				uffd_zero(c->uffd, p, PAGE_SIZE, write, true);
			sys_runs_add(sr, buf, s, e - s);
			continue;
		}
		dev = pool_page(&c->dev->pool, pte->dpfn);
		if (!write) {
			if (pte->flags & DPTE_ZERO)
				memset(buf, 0, e - s);
			else
				memcpy(buf, dev + (s - p), e - s);
			continue;
		}
		if (pte->flags & DPTE_ZERO && e - s < PAGE_SIZE)
			memset(dev, 0, PAGE_SIZE); /* never expose old data */
		memcpy(dev + (s - p), buf, e - s);
		pte->flags &= ~DPTE_ZERO;
	}
	if (u && u->ndevice)
		device_lru_touch(c->dev, u);
	pthread_mutex_unlock(&c->lock);
	if (sr->n)
		*faulted = true;
	err = client_copy(c, sr->local, sr->remote, sr->n, sr->len, write);
	free(sr);
	return err;
}

int access_device(struct client *c, const struct dm_access *a, bool write,
		  struct dm_result_reply *rep)
{
	struct prot_check pc = { .write = write };
	uint64_t end = a->addr + a->len;
	bool faulted = false;
	uint8_t *bounce;
	bool covered;
	int err;

	memset(rep, 0, sizeof(*rep));
	if (!c->attached)
		return -EPROTO;
	if (!a->len || end < a->addr || a->buf + a->len < a->buf)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	if (client_mid_migration(c)) {
		pthread_mutex_unlock(&c->lock);
		return -EBUSY;
	}
	events_wait(c);
	covered = pt_covered(&c->pt, a->addr, a->len);
	pthread_mutex_unlock(&c->lock);
	if (!covered)
		return -EINVAL;
	err = maps_walk(c->proc_dirfd, ALIGN_DOWN(a->addr, PAGE_SIZE),
			ALIGN_UP(end, PAGE_SIZE), check_prot, &pc);
	if (err)
		return err == -EFAULT || err == -ENOENT ? -EFAULT : err;
	if (pc.err)
		return pc.err;

	bounce = malloc(UNIT_SIZE);
	if (!bounce)
		return -ENOMEM;
	/* unit by unit; the client's buffer is read or written without the
	 * lock, since it may be device memory that has to fault back */
	for (uint64_t s = a->addr; s < end && !err;) {
		uint64_t e = MIN(ALIGN_DOWN(s, UNIT_SIZE) + UNIT_SIZE, end);
		uint64_t off = s - a->addr;

		if (write)
			err = client_copy1(c, a->buf + off, bounce, e - s,
					   false);
		if (!err)
			err = access_piece(c, s, e, bounce, write, &faulted,
					   &rep->pages);
		if (!err && !write)
			err = client_copy1(c, a->buf + off, bounce, e - s,
					   true);
		s = e;
	}
	free(bounce);
	rep->faults = faulted;
	return err;
}

struct snap_prot {
	uint64_t start;
	uint8_t *prot; /* per page: VMA_* flags */
};

static int record_prot(uint64_t start, uint64_t end, unsigned flags, void *arg)
{
	struct snap_prot *sp = arg;

	memset(sp->prot + ((start - sp->start) >> PAGE_SHIFT), (int)flags,
	       (end - start) >> PAGE_SHIFT);
	return 0;
}

int access_snapshot(struct client *c, uint64_t addr, uint64_t npages,
		    uint8_t *state)
{
	uint64_t end = addr + (npages << PAGE_SHIFT);
	struct snap_prot sp = { .start = addr };
	uint8_t *pm;
	int err;

	if (!c->attached)
		return -EPROTO;
	if (addr & (PAGE_SIZE - 1) || !npages || npages > DM_MAX_SNAPSHOT ||
	    end < addr)
		return -EINVAL;
	pm = malloc(npages);
	sp.prot = malloc(npages);
	if (!pm || !sp.prot) {
		err = -ENOMEM;
		goto out;
	}
	err = maps_walk(c->proc_dirfd, addr, end, record_prot, &sp);
	if (!err)
		err = pm_scan(c->pagemap_fd, addr, end, pm);
	if (err)
		goto out;

	pthread_mutex_lock(&c->lock);
	for (uint64_t i = 0; i < npages; i++) {
		uint64_t va = addr + (i << PAGE_SHIFT);
		bool managed = pt_covered(&c->pt, va, PAGE_SIZE);
		struct unit *u = pt_unit(&c->pt, ALIGN_DOWN(va, UNIT_SIZE));
		const struct dpte *pte = u ? &u->pte[unit_page(va)] : NULL;
		uint8_t rw = sp.prot[i] & VMA_WRITE ? DEVMEM_PAGE_WRITE
						    : DEVMEM_PAGE_READ;

		if (!managed || !(sp.prot[i] & VMA_READ)) {
			state[i] = DEVMEM_PAGE_ERROR;
		} else if (pte && pte->state == DPTE_DEVICE) {
			state[i] = DEVMEM_PAGE_DEVICE | rw |
				   (u->huge ? DEVMEM_PAGE_HUGE : 0);
		} else if (!(pm[i] & PM_PRESENT)) {
			state[i] = DEVMEM_PAGE_NONE;
		} else {
			/* the zero page is mapped read-only */
			state[i] = pm[i] & PM_ZERO
					   ? DEVMEM_PAGE_ZERO | DEVMEM_PAGE_READ
					   : rw;
			if (pm[i] & PM_HUGE)
				state[i] |= DEVMEM_PAGE_HUGE;
		}
	}
	pthread_mutex_unlock(&c->lock);
out:
	free(pm);
	free(sp.prot);
	return err;
}
