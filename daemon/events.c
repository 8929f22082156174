/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "events.h"
#include "log.h"
#include "procfs.h"
#include "uffdops.h"

/* A unit busy with the client's own committed batch, waiting for FINISH:
 * the only MADV_DONTNEED on it is libdevmem's own, dropping pages devmemd
 * copied in place (read-only mappings).  That one must not free them. */
static bool own_inplace(const struct client *c, const struct unit *u)
{
	const struct batch *b = &c->batch;
	uint64_t k;

	if (atomic_load(&u->busy) != BUSY_REQUEST || !b->active ||
	    !b->committed || u->va < b->first)
		return false;
	k = (u->va - b->first) / UNIT_SIZE;
	return k < b->nunits && b->busy >> k & 1;
}

static bool span_idle(const struct client *c, uint64_t start, uint64_t end,
		      bool remove)
{
	for (uint64_t va = ALIGN_DOWN(start, UNIT_SIZE); va < end;
	     va += UNIT_SIZE) {
		const struct unit *u = pt_unit(&c->pt, va);

		if (u && atomic_load(&u->busy) != UNIT_IDLE &&
		    !(remove && own_inplace(c, u)))
			return false;
	}
	return true;
}

/* munmap (unmapped) or MADV_DONTNEED/MADV_FREE: the pages are gone, and
 * with them their device memory (semantics 6) */
static void discard(struct client *c, uint64_t start, uint64_t end,
		    bool unmapped)
{
	for (uint64_t va = ALIGN_DOWN(start, UNIT_SIZE); va < end;
	     va += UNIT_SIZE) {
		struct unit *u = pt_unit(&c->pt, va);
		uint64_t s = MAX(start, va), e = MIN(end, va + UNIT_SIZE);

		if (!u || (!unmapped && own_inplace(c, u)))
			continue;
		if (s == va && e == va + UNIT_SIZE) {
			client_unit_free_all(c, u);
			if (unmapped)
				u->registered = false; /* nothing is left */
		} else {
			/* a partial unmap of a 2 MB folio: the free policy
			 * decides when its memory goes */
			for (unsigned i = unit_page(s); i < unit_page(s) +
								  ((e - s) >> PAGE_SHIFT);
			     i++)
				client_free_page(c, u, i);
		}
		client_unit_drop_if_empty(c, u);
	}
	/* the registration ends with the mapping: a new mapping there is
	 * the application's to register again */
	if (unmapped && pt_carve(&c->pt, start, end))
		log_err("client %u: out of memory unregistering %#llx-%#llx",
			c->id, (unsigned long long)start,
			(unsigned long long)end);
}

static int count_mapped(uint64_t start, uint64_t end, unsigned flags,
			void *arg)
{
	if (flags)
		*(uint64_t *)arg += end - start;
	return 0;
}

struct moved_page {
	uint64_t offset; /* from the start of the moved range */
	struct dpte pte;
	bool huge; /* its whole unit moves, still one folio */
};

/* The client's kernel registered the whole new mapping: keep that only
 * where device pages went */
static void unregister_empty(struct client *c, uint64_t start, uint64_t end)
{
	for (uint64_t va = ALIGN_DOWN(start, UNIT_SIZE); va < end;
	     va += UNIT_SIZE) {
		uint64_t s = MAX(start, va), e = MIN(end, va + UNIT_SIZE);
		struct unit *u = pt_unit(&c->pt, va);

		if (!u || !u->ndevice)
			uffd_unregister(c->uffd, s, e - s);
	}
}

/*
 * mremap moved [from, from + len) to [to, to + len): the device pages follow
 * the mapping (semantics 6).  A 2 MB folio stays one if its whole unit moves
 * to a 2 MB-aligned place; otherwise its pages become 4 KB device pages.
 */
static void remap(struct client *c, uint64_t from, uint64_t to, uint64_t len)
{
	bool aligned = !((to - from) & UNIT_MASK);
	struct moved_page *moved = NULL;
	size_t n = 0, cap = 0;
	uint64_t end = from + len, mapped = 0;

	for (uint64_t va = ALIGN_DOWN(from, UNIT_SIZE); va < end;
	     va += UNIT_SIZE) {
		struct unit *u = pt_unit(&c->pt, va);
		uint64_t s = MAX(from, va), e = MIN(end, va + UNIT_SIZE);
		bool keep;

		if (!u || !u->ndevice)
			continue;
		keep = u->huge && aligned && s == va && e == va + UNIT_SIZE;
		if (!keep) {
			if (u->huge)
				count(c, CNT_SPLITS, 1);
			client_unit_unfolio(c, u);
		}
		for (unsigned i = unit_page(s);
		     i < unit_page(s) + ((e - s) >> PAGE_SHIFT); i++) {
			if (u->pte[i].state != DPTE_DEVICE)
				continue;
			if (n == cap) {
				size_t ncap = cap ? 2 * cap : FOLIO_PAGES;
				struct moved_page *m =
					realloc(moved, ncap * sizeof(*m));

				if (!m) {
					/* the page stays where it was: the
					 * data is not lost, only stranded */
					log_err("client %u: out of memory following an mremap",
						c->id);
					continue;
				}
				moved = m;
				cap = ncap;
			}
			moved[n].offset = va + ((uint64_t)i << PAGE_SHIFT) - from;
			moved[n].pte = u->pte[i];
			moved[n].huge = keep;
			n++;
			memset(&u->pte[i], 0, sizeof(u->pte[i]));
			u->ndevice--;
		}
		if (keep)
			u->huge = false;
		client_unit_drop_if_empty(c, u);
	}

	/* the registration moves with the mapping; with MREMAP_DONTUNMAP the
	 * old place stays mapped, and registered */
	if (!maps_walk(c->proc_dirfd, from, end, count_mapped, &mapped) &&
	    !mapped && pt_carve(&c->pt, from, end))
		log_err("client %u: out of memory unregistering %#llx-%#llx",
			c->id, (unsigned long long)from,
			(unsigned long long)end);
	if (pt_carve(&c->pt, to, to + len) || pt_add_range(&c->pt, to, to + len))
		log_err("client %u: out of memory registering %#llx-%#llx after an mremap",
			c->id, (unsigned long long)to,
			(unsigned long long)(to + len));
	for (size_t k = 0; k < n; k++) {
		uint64_t va = to + moved[k].offset;
		struct unit *u = pt_unit_get(&c->pt, ALIGN_DOWN(va, UNIT_SIZE), c);

		if (!u) {
			log_err("client %u: out of memory following an mremap: a device page at %#llx is lost",
				c->id, (unsigned long long)va);
			continue;
		}
		u->pte[unit_page(va)] = moved[k].pte;
		u->ndevice++;
		u->registered = true;
		u->huge = moved[k].huge;
		device_lru_touch(c->dev, u);
	}
	free(moved);
	unregister_empty(c, to, to + len);
}

/* The span an event touches, and whether it is a removal */
static void event_span(const struct uffd_msg *m, uint64_t *start,
		       uint64_t *end)
{
	switch (m->event) {
	case UFFD_EVENT_REMAP:
		*start = MIN(m->arg.remap.from, m->arg.remap.to);
		*end = MAX(m->arg.remap.from, m->arg.remap.to) +
		       m->arg.remap.len;
		break;
	default: /* UNMAP, REMOVE */
		*start = m->arg.remove.start;
		*end = m->arg.remove.end;
		break;
	}
}

static bool event_ready(const struct client *c, const struct uffd_msg *m)
{
	uint64_t start, end;

	if (m->event == UFFD_EVENT_REMAP)
		return span_idle(c, m->arg.remap.from,
				 m->arg.remap.from + m->arg.remap.len, false) &&
		       span_idle(c, m->arg.remap.to,
				 m->arg.remap.to + m->arg.remap.len, false);
	event_span(m, &start, &end);
	return span_idle(c, start, end, m->event == UFFD_EVENT_REMOVE);
}

static void event_apply(struct client *c, const struct uffd_msg *m)
{
	switch (m->event) {
	case UFFD_EVENT_UNMAP:
		discard(c, m->arg.remove.start, m->arg.remove.end, true);
		break;
	case UFFD_EVENT_REMOVE:
		discard(c, m->arg.remove.start, m->arg.remove.end, false);
		break;
	case UFFD_EVENT_REMAP:
		remap(c, m->arg.remap.from, m->arg.remap.to, m->arg.remap.len);
		break;
	}
}

void events_run(struct client *c)
{
	struct event_queue *q = &c->events;
	uint32_t done = 0;

	while (done < q->n && event_ready(c, &q->msg[done])) {
		event_apply(c, &q->msg[done]);
		done++;
	}
	if (done) {
		memmove(q->msg, q->msg + done, (q->n - done) * sizeof(*q->msg));
		q->n -= done;
		pthread_cond_broadcast(&c->idle);
	}
}

void events_queue(struct client *c, const struct uffd_msg *m)
{
	struct event_queue *q = &c->events;

	switch (m->event) {
	case UFFD_EVENT_UNMAP:
	case UFFD_EVENT_REMOVE:
	case UFFD_EVENT_REMAP:
		break;
	case UFFD_EVENT_FORK:
		/* not asked for (libdevmem handles fork); never keep a
		 * child's userfaultfd */
		close((int)m->arg.fork.ufd);
		return;
	default:
		log_debug("client %u: userfaultfd event %u ignored", c->id,
			  m->event);
		return;
	}
	pthread_mutex_lock(&c->lock);
	while (q->n == q->cap) {
		uint32_t cap = q->cap ? 2 * q->cap : 16;
		struct uffd_msg *n = realloc(q->msg, cap * sizeof(*n));

		if (n) {
			q->msg = n;
			q->cap = cap;
			break;
		}
		/* no memory to queue it: apply what can be applied, then
		 * try again */
		pthread_mutex_unlock(&c->lock);
		usleep(1000);
		pthread_mutex_lock(&c->lock);
		events_run(c);
	}
	q->msg[q->n++] = *m;
	events_run(c);
	pthread_mutex_unlock(&c->lock);
}

void events_wait(struct client *c)
{
	while (c->events.n)
		pthread_cond_wait(&c->idle, &c->lock);
}
