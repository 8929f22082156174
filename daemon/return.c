/* SPDX-License-Identifier: MIT */
/*
 * Device -> system: the explicit path (BACK / BACK_DONE), the pieces the
 * fault path shares with it, and eviction.
 */
#include "config.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "copier.h"
#include "events.h"
#include "log.h"
#include "migrate.h"
#include "uffdops.h"

static const uint8_t zero_page[PAGE_SIZE] __attribute__((aligned(PAGE_SIZE)));

/*
 * Fill [dst, dst + len) in the client with src's bytes, or zeros (src NULL),
 * without waking anyone: the caller wakes once its bookkeeping is done, so a
 * thread that reads its counters after a fault sees the fault.  -EAGAIN:
 * the client's address space is changing and an event waits to be read.
 * -ESTALE: an event read but not applied yet moves or drops what is at dst
 * (see events_fill_begin).
 */
static int fill(struct client *c, uint64_t dst, const void *src, uint64_t len)
{
	int err;

	if (!events_fill_begin(c, dst, dst + len))
		return -ESTALE;
	err = src ? uffd_copy(c->uffd, dst, src, len, false)
		  : uffd_zero(c->uffd, dst, len, false, false);
	events_fill_end(c);

	/* -ESRCH: the process is gone; -ENOENT: the mapping is (munmap,
	 * mremap: the event says where the pages go) */
	if (err && err != -EAGAIN && err != -ESRCH && err != -ENOENT)
		log_warn("client %u: bringing %#llx (+%llu pages) back: %s",
			 c->id, (unsigned long long)dst,
			 (unsigned long long)(len >> PAGE_SHIFT),
			 strerror(-err));
	return err;
}

int unit_return_page(struct client *c, struct unit *u, unsigned i)
{
	const struct dpte *p = &u->pte[i];
	uint64_t va = u->va + ((uint64_t)i << PAGE_SHIFT);
	int err = fill(c, va,
		       p->flags & DPTE_ZERO ? NULL
					    : pool_page(&c->dev->pool, p->dpfn),
		       PAGE_SIZE);

	/* the page stays on the device unless its data landed */
	if (err == -EAGAIN || err == -ESTALE)
		return -EAGAIN;
	if (!err) {
		count(c, CNT_CPU_FAULTS, 1);
		count(c, CNT_TO_SYSTEM, 1);
		client_free_page(c, u, i);
	}
	uffd_wake(c->uffd, va, PAGE_SIZE);
	return err;
}

/* Fill pages [i, k] of u, contiguous on the device, waiting out events
 * still to be read; -ESTALE if one read moves or drops them (it waits for
 * this unit: the pages stay) */
static int fill_run(struct client *c, struct unit *u, unsigned i, unsigned k)
{
	const struct dpte *p = &u->pte[i];
	uint64_t va = u->va + ((uint64_t)i << PAGE_SHIFT);
	int err;

	/* an event waits to be read: let the resolvers have the lock to read
	 * it (the unit is ours: busy) */
	while ((err = fill(c, va,
			   p->flags & DPTE_ZERO
				   ? NULL
				   : pool_page(&c->dev->pool, p->dpfn),
			   (uint64_t)(k - i + 1) << PAGE_SHIFT)) == -EAGAIN) {
		pthread_mutex_unlock(&c->lock);
		usleep(100);
		pthread_mutex_lock(&c->lock);
	}
	return err;
}

unsigned unit_return_4k(struct client *c, struct unit *u, unsigned first,
			unsigned last)
{
	bool whole = u->huge && first == 0 && last == FOLIO_PAGES;
	bool landed[FOLIO_PAGES] = { false };
	unsigned returned = 0;

	for (unsigned i = first; i < last; i++) {
		const struct dpte *p = &u->pte[i];
		unsigned k = i;
		int err;

		if (p->state != DPTE_DEVICE)
			continue;
		/* one UFFDIO_COPY per run of device pages that are
		 * contiguous in device memory too */
		while (k + 1 < last && u->pte[k + 1].state == DPTE_DEVICE &&
		       !(u->pte[k + 1].flags & DPTE_ZERO) ==
			       !(p->flags & DPTE_ZERO) &&
		       u->pte[k + 1].dpfn == u->pte[k].dpfn + 1)
			k++;
		err = fill_run(c, u, i, k);
		/* one UFFDIO_COPY fills one VMA, and the run spans several
		 * (or a part of it is unmapped): a page at a time */
		if (err == -ENOENT && k > i)
			for (unsigned j = i; j <= k; j++)
				landed[j] = !fill_run(c, u, j, j);
		else
			for (unsigned j = i; j <= k; j++)
				landed[j] = !err;
		i = k;
	}
	for (unsigned j = first; j < last; j++)
		returned += landed[j];
	count(c, CNT_TO_SYSTEM, returned);
	if (whole && returned == FOLIO_PAGES) {
		client_unit_free_all(c, u);
	} else {
		/* pages whose data did not land stay on the device: an event
		 * will free them (munmap) or move them (mremap) */
		for (unsigned j = first; j < last; j++)
			if (landed[j])
				client_free_page(c, u, j);
	}
	if (returned)
		uffd_wake(c->uffd, u->va + ((uint64_t)first << PAGE_SHIFT),
			  (uint64_t)(last - first) << PAGE_SHIFT);
	return returned;
}

bool unit_all_zero(const struct unit *u)
{
	for (unsigned i = 0; i < FOLIO_PAGES; i++)
		if (u->pte[i].state != DPTE_DEVICE ||
		    !(u->pte[i].flags & DPTE_ZERO))
			return false;
	return true;
}

/* The folio's pages (zero pages from a page of zeros), as iovecs for one
 * process_vm_writev to a slot; returns how many */
static unsigned folio_iov(const struct client *c, const struct unit *u,
			  struct iovec *local)
{
	const struct pool *pool = &c->dev->pool;
	unsigned n = 0;

	for (unsigned i = 0; i < FOLIO_PAGES; i++) {
		const struct dpte *p = &u->pte[i];
		uint8_t *src = p->flags & DPTE_ZERO ? (uint8_t *)zero_page
						    : pool_page(pool, p->dpfn);

		if (n && !(p->flags & DPTE_ZERO) &&
		    (uint8_t *)local[n - 1].iov_base + local[n - 1].iov_len ==
			    src) {
			local[n - 1].iov_len += PAGE_SIZE;
			continue;
		}
		local[n].iov_base = src;
		local[n].iov_len = PAGE_SIZE;
		n++;
	}
	return n;
}

int folio_write_slot(struct client *c, const struct unit *u, uint64_t slot_va)
{
	struct iovec local[FOLIO_PAGES];
	struct iovec remote = { (void *)(uintptr_t)slot_va, UNIT_SIZE };
	unsigned n = folio_iov(c, u, local);
	ssize_t done = process_vm_writev(c->pid, local, n, &remote, 1, 0);

	if (done < 0)
		return -errno;
	return done == (ssize_t)UNIT_SIZE ? 0 : -EFAULT;
}

bool unit_finish_huge(struct client *c, struct unit *u, uint64_t moved)
{
	unsigned in_place = (unsigned)(MIN(moved, UNIT_SIZE) >> PAGE_SHIFT);

	if (in_place == FOLIO_PAGES) {
		client_unit_free_all(c, u);
		count(c, CNT_TO_SYSTEM, FOLIO_PAGES);
		count(c, CNT_HUGE, 1);
		return true;
	}
	/* the system side could not take it whole: split, and bring the
	 * rest back 4 KB at a time */
	client_unit_split(c, u);
	for (unsigned i = 0; i < in_place; i++)
		client_free_page(c, u, i);
	count(c, CNT_TO_SYSTEM, in_place);
	unit_return_4k(c, u, in_place, FOLIO_PAGES);
	return false;
}

/* Whether BACK may bring this piece back as one THP */
static bool back_whole(struct client *c, const struct unit *u, uint64_t ps,
		       uint64_t pe, uint32_t flags)
{
	return u->huge && ps == u->va && pe == u->va + UNIT_SIZE &&
	       !(flags & 1 /* DEVMEM_MIGRATE_4K */) &&
	       device_policy(c->dev, DM_POL_GRANULARITY) == 0;
}

/* Device pages of the units vas in [start, end) (lock held) */
static uint64_t device_pages_in(const struct client *c, const uint64_t *vas,
				uint32_t n, uint64_t start, uint64_t end)
{
	uint64_t pages = 0;

	for (uint32_t v = 0; v < n && vas[v] < end; v++) {
		const struct unit *u = pt_unit(&c->pt, vas[v]);
		uint64_t ps = MAX(vas[v], start);
		uint64_t pe = MIN(vas[v] + UNIT_SIZE, end);

		for (unsigned i = unit_page(ps);
		     u && ps < pe &&
		     i < unit_page(ps) + ((pe - ps) >> PAGE_SHIFT);
		     i++)
			pages += u->pte[i].state == DPTE_DEVICE;
	}
	return pages;
}

/* A folio BACK writes to a staging slot */
struct slot_write {
	uint64_t va; /* its unit */
	struct iovec local[FOLIO_PAGES], remote;
};

int migrate_back(struct client *c, const struct dm_migrate *m,
		 struct dm_result_reply *rep, struct dm_move *moves)
{
	uint64_t end = m->addr + m->len;
	uint32_t nslots = MIN(m->nslots, c->nslots), k = 0, nvas = 0;
	struct slot_write *w = NULL;
	struct copy_job *jobs = NULL;
	uint64_t *vas = NULL;
	int err = migrate_check_span(c, m->addr, m->len, m->flags);

	memset(rep, 0, sizeof(*rep));
	if (err)
		return err;
	w = calloc(nslots, sizeof(*w));
	jobs = calloc(nslots, sizeof(*jobs));
	if (!w || !jobs) {
		err = -ENOMEM;
		goto out;
	}
	pthread_mutex_lock(&c->lock);
	if (client_mid_migration(c)) {
		pthread_mutex_unlock(&c->lock);
		err = -EBUSY;
		goto out;
	}
	events_wait(c);
	if (!pt_covered(&c->pt, m->addr, m->len)) {
		pthread_mutex_unlock(&c->lock);
		err = -EINVAL;
		goto out;
	}
	err = pt_units_in(&c->pt, m->addr, end, &vas, &nvas);
	if (err) {
		pthread_mutex_unlock(&c->lock);
		goto out;
	}
	rep->next = end;
	for (uint32_t v = 0; v < nvas; v++) {
		uint64_t va = vas[v];
		uint64_t ps = MAX(va, m->addr), pe = MIN(va + UNIT_SIZE, end);
		unsigned npages = (unsigned)((pe - ps) >> PAGE_SHIFT);
		struct unit *u = client_wait_unit(c, va);

		if (!u)
			continue;
		if (back_whole(c, u, ps, pe, m->flags) && unit_all_zero(u)) {
			/* nothing to copy: an empty unit faults in as a THP
			 * (or the huge zero page) once it is unregistered */
			client_unit_free_all(c, u);
			count(c, CNT_TO_SYSTEM, FOLIO_PAGES);
			count(c, CNT_HUGE, 1);
			rep->huge++;
			client_unit_drop_if_empty(c, u);
			continue;
		}
		if (back_whole(c, u, ps, pe, m->flags)) {
			if (k == nslots) {
				rep->next =
					va; /* the client comes back for more */
				break;
			}
			/* held busy until BACK_DONE; written to its slot
			 * below, with the other folios, on all CPUs */
			atomic_store(&u->busy, BUSY_REQUEST);
			w[k].va = va;
			w[k].remote = (struct iovec){
				(void *)(uintptr_t)slot_addr(c, k), UNIT_SIZE
			};
			jobs[k] = (struct copy_job){
				.pid = c->pid,
				.to_client = true,
				.local = w[k].local,
				.nlocal = folio_iov(c, u, w[k].local),
				.remote = &w[k].remote,
				.nremote = 1,
				.len = UNIT_SIZE,
			};
			k++;
			continue;
		}
		if (client_unit_split(c, u))
			rep->split++;
		atomic_store(&u->busy, BUSY_REQUEST);
		unit_return_4k(c, u, unit_page(ps), unit_page(ps) + npages);
		client_unbusy_resolve(c, u);
	}
	/* what is not on the device is at the target; the folios in the
	 * slots count once they are in place (BACK_DONE) */
	rep->pages = ((rep->next - m->addr) >> PAGE_SHIFT) -
		     device_pages_in(c, vas, nvas, m->addr, rep->next);
	pthread_mutex_unlock(&c->lock);

	copier_run(jobs, k);

	pthread_mutex_lock(&c->lock);
	for (uint32_t i = 0; i < k; i++) {
		struct unit *u = pt_unit(&c->pt, w[i].va);

		if (!jobs[i].err) {
			moves[rep->nmoves] =
				(struct dm_move){ .dst = w[i].va, .slot = i };
			c->back.move[rep->nmoves] = moves[rep->nmoves];
			rep->nmoves++;
			continue;
		}
		if (jobs[i].err != -ESRCH) /* not just a dead client */
			log_warn(
				"client %u: writing folio %#llx to its staging: %s",
				c->id, (unsigned long long)w[i].va,
				strerror(-jobs[i].err));
		/* the slot may hold part of it: the client empties it */
		rep->split++;
		count(c, CNT_SPLITS, 1);
		rep->pages += unit_return_4k(c, u, 0, FOLIO_PAGES);
		client_unbusy_resolve(c, u);
	}
	c->back.n = rep->nmoves;
	pthread_mutex_unlock(&c->lock);
out:
	free(vas);
	free(w);
	free(jobs);
	return err;
}

int migrate_back_done(struct client *c, const struct dm_move *moves, uint32_t n,
		      struct dm_result_reply *rep)
{
	memset(rep, 0, sizeof(*rep));
	pthread_mutex_lock(&c->lock);
	if (n != c->back.n) {
		pthread_mutex_unlock(&c->lock);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < n; i++)
		if (moves[i].dst != c->back.move[i].dst ||
		    moves[i].slot != c->back.move[i].slot) {
			pthread_mutex_unlock(&c->lock);
			return -EINVAL;
		}
	for (uint32_t i = 0; i < n; i++) {
		struct unit *u = pt_unit(&c->pt, moves[i].dst);

		if (!u || atomic_load(&u->busy) != BUSY_REQUEST)
			continue; /* cannot happen: BACK holds them */
		if (moves[i].status)
			log_debug("client %u: folio %#llx moved %llu bytes: %s",
				  c->id, (unsigned long long)moves[i].dst,
				  (unsigned long long)moves[i].moved,
				  strerror(-moves[i].status));
		if (unit_finish_huge(
			    c, u, moves[i].status ? moves[i].moved : UNIT_SIZE))
			rep->huge++;
		else
			rep->split++;
		rep->pages += FOLIO_PAGES;
		client_unbusy_resolve(c, u);
	}
	c->back.n = 0;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/* How long eviction waits for the event of a unit it could not take back */
#define EVICT_WAIT_LAPS 20
#define EVICT_WAIT_US 100

/* Take the least recently used idle unit off the LRU; NULL if none. */
static struct client *lru_pick(struct device *d, struct client *only,
			       uint64_t *va, uint64_t *serial)
{
	struct client *c = NULL;
	struct unit *u;

	pthread_mutex_lock(&d->lru_lock);
	list_for_each_entry (u, &d->lru, lru) {
		if (atomic_load(&u->busy) != UNIT_IDLE ||
		    (only && u->client != only))
			continue;
		c = u->client;
		*va = u->va;
		*serial = u->serial;
		client_get(c);
		list_del_init(&u->lru);
		u->on_lru = false;
		break;
	}
	pthread_mutex_unlock(&d->lru_lock);
	return c;
}

int migrate_evict_one(struct device *d, struct client *only)
{
	uint64_t va, serial, kept = 0;
	unsigned laps = 0;
	struct client *c;

	/* an entry may be stale (the unit went back or got busy since); it
	 * is off the list now, so this ends */
	while ((c = lru_pick(d, only, &va, &serial))) {
		struct unit *u;
		bool evicted = false, tried = false;

		pthread_mutex_lock(&c->lock);
		u = pt_unit(&c->pt, va);
		if (u && u->serial == serial && u->ndevice &&
		    atomic_load(&u->busy) == UNIT_IDLE) {
			atomic_store(&u->busy, BUSY_EVICT);
			evicted = unit_return_4k(c, u, 0, FOLIO_PAGES) > 0;
			if (evicted)
				count(c, CNT_EVICTIONS, 1);
			client_unbusy_resolve(c, u); /* kept: back on the LRU */
			tried = true;
		}
		pthread_mutex_unlock(&c->lock);
		client_put(c);
		if (evicted)
			return 1;
		if (!tried)
			continue;
		/* nothing landed: an event the client's resolvers have read
		 * moves or frees the pages (or the client is gone).  Try the
		 * others; back at this one, give the event a moment. */
		if (!kept) {
			kept = serial;
		} else if (serial == kept) {
			if (++laps > EVICT_WAIT_LAPS)
				break;
			usleep(EVICT_WAIT_US);
		}
	}
	return 0;
}
