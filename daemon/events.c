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

/* Is the unit held by the client's own committed batch, waiting for FINISH?
 * Then the only MADV_DONTNEED on it is libdevmem's own, dropping pages
 * devmemd copied in place (read-only mappings), which must not free them.
 * Decided when the event is read, while that batch is current. */
static bool own_inplace(const struct client *c, uint64_t start, uint64_t end)
{
	const struct batch *b = &c->batch;

	if (!b->active || !b->committed)
		return false;
	for (uint64_t va = ALIGN_DOWN(start, UNIT_SIZE); va < end;
	     va += UNIT_SIZE) {
		uint64_t k;

		if (va < b->first)
			return false;
		k = (va - b->first) / UNIT_SIZE;
		if (k >= b->nunits || !(b->busy >> k & 1))
			return false;
	}
	return true;
}

static bool span_idle(const struct client *c, uint64_t start, uint64_t end,
		      bool *nomem)
{
	uint64_t *vas;
	uint32_t n;
	bool idle = true;

	if (pt_units_in(&c->pt, start, end, &vas, &n)) {
		*nomem = true;
		return false;
	}
	for (uint32_t k = 0; k < n && idle; k++)
		idle = atomic_load(&pt_unit(&c->pt, vas[k])->busy) == UNIT_IDLE;
	free(vas);
	return idle;
}

/* munmap (unmapped) or MADV_DONTNEED/MADV_FREE: the pages are gone, and
 * with them their device memory (semantics 6) */
static void discard(struct client *c, uint64_t start, uint64_t end,
		    bool unmapped)
{
	uint64_t *vas;
	uint32_t n;

	if (pt_units_in(&c->pt, start, end, &vas, &n))
		log_err("client %u: out of memory freeing %#llx-%#llx", c->id,
			(unsigned long long)start, (unsigned long long)end);
	for (uint32_t k = 0; k < n; k++) {
		uint64_t va = vas[k];
		struct unit *u = pt_unit(&c->pt, va);
		uint64_t s = MAX(start, va), e = MIN(end, va + UNIT_SIZE);

		if (s == va && e == va + UNIT_SIZE) {
			client_unit_free_all(c, u);
			if (unmapped)
				u->registered = false; /* nothing is left */
		} else {
			/* a partial unmap of a 2 MB folio: the free policy
			 * decides when its memory goes */
			for (unsigned i = unit_page(s);
			     i < unit_page(s) + ((e - s) >> PAGE_SHIFT); i++)
				client_free_page(c, u, i);
		}
		client_unit_drop_if_empty(c, u);
	}
	free(vas);
	/* the registration ends with the mapping: a new mapping there is
	 * the application's to register again */
	if (unmapped && pt_carve(&c->pt, start, end))
		log_err("client %u: out of memory unregistering %#llx-%#llx",
			c->id, (unsigned long long)start,
			(unsigned long long)end);
}

static int count_mapped(uint64_t start, uint64_t end, unsigned flags, void *arg)
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
 * where device pages went (one ioctl per gap between such units) */
static void unregister_empty(struct client *c, uint64_t start, uint64_t end,
			     const uint64_t *vas, uint32_t n)
{
	uint64_t at = start;

	for (uint32_t k = 0; k <= n && at < end; k++) {
		uint64_t next = k < n ? MAX(vas[k], start) : end;

		if (next > at)
			uffd_unregister(c->uffd, at, next - at);
		if (k < n)
			at = MIN(vas[k] + UNIT_SIZE, end);
	}
}

/* Collect the device pages of [from, from + len), ready to move; NULL (and
 * nothing changed) if out of memory */
static struct moved_page *collect(struct client *c, uint64_t from, uint64_t len,
				  bool aligned, size_t *count_out)
{
	uint64_t *vas, end = from + len;
	struct moved_page *moved;
	size_t n = 0;
	uint32_t nu;

	if (pt_units_in(&c->pt, from, end, &vas, &nu))
		return NULL;
	moved = malloc(((size_t)nu * FOLIO_PAGES + 1) * sizeof(*moved));
	if (!moved) {
		free(vas);
		return NULL;
	}
	for (uint32_t k = 0; k < nu; k++) {
		struct unit *u = pt_unit(&c->pt, vas[k]);
		uint64_t va = vas[k];
		uint64_t s = MAX(from, va), e = MIN(end, va + UNIT_SIZE);
		bool keep =
			u->huge && aligned && s == va && e == va + UNIT_SIZE;

		if (!keep && u->huge)
			count(c, CNT_SPLITS, 1);
		/* a folio whose pages part ways becomes 4 KB pages */
		if (!keep)
			client_unit_unfolio(c, u);
		for (unsigned i = unit_page(s);
		     i < unit_page(s) + ((e - s) >> PAGE_SHIFT); i++) {
			if (u->pte[i].state != DPTE_DEVICE)
				continue;
			moved[n].offset =
				va + ((uint64_t)i << PAGE_SHIFT) - from;
			moved[n].pte = u->pte[i];
			moved[n].huge = keep;
			n++;
			memset(&u->pte[i], 0, sizeof(u->pte[i]));
			u->ndevice--;
		}
		if (keep)
			u->huge = false;
		/* emptied units are dropped once the pages are placed: one
		 * may be a destination's unit too, and dropping it would
		 * unregister the pages' new place */
	}
	free(vas);
	*count_out = n;
	return moved;
}

/*
 * mremap moved [from, from + len) to [to, to + len): the device pages follow
 * the mapping (semantics 6).  A 2 MB folio stays one if its whole unit moves
 * to a 2 MB-aligned place; otherwise its pages become 4 KB device pages.
 */
static void remap(struct client *c, uint64_t from, uint64_t to, uint64_t len)
{
	bool aligned = !((to - from) & UNIT_MASK);
	uint64_t end = from + len, mapped = 0, *vas = NULL;
	struct moved_page *moved;
	uint32_t nu = 0;
	size_t n = 0;

	/* the destination's units first, so that nothing can fail once the
	 * pages are on their way */
	if (pt_units_in(&c->pt, from, end, &vas, &nu))
		goto nomem;
	for (uint32_t k = 0; k < nu; k++) {
		uint64_t s = MAX(vas[k], from) - from + to;
		uint64_t e = MIN(vas[k] + UNIT_SIZE, end) - from + to;

		if (!pt_unit_get(&c->pt, ALIGN_DOWN(s, UNIT_SIZE), c) ||
		    !pt_unit_get(&c->pt, ALIGN_DOWN(e - 1, UNIT_SIZE), c)) {
			free(vas);
			goto nomem;
		}
	}
	free(vas);
	vas = NULL;
	moved = collect(c, from, len, aligned, &n);
	if (!moved)
		goto nomem;
	log_debug(
		"client %u: mremap %#llx -> %#llx (+%#llx): %zu device pages follow (queue %u, units %u)",
		c->id, (unsigned long long)from, (unsigned long long)to,
		(unsigned long long)len, n, c->events.n, c->pt.nunits);

	/* the registration moves with the mapping; with MREMAP_DONTUNMAP the
	 * old place stays mapped, and registered */
	if (!maps_walk(c->proc_dirfd, from, end, count_mapped, &mapped) &&
	    !mapped && pt_carve(&c->pt, from, end))
		log_err("client %u: out of memory unregistering %#llx-%#llx",
			c->id, (unsigned long long)from,
			(unsigned long long)end);
	if (pt_carve(&c->pt, to, to + len) ||
	    pt_add_range(&c->pt, to, to + len))
		log_err("client %u: out of memory registering %#llx-%#llx after an mremap",
			c->id, (unsigned long long)to,
			(unsigned long long)(to + len));
	for (size_t k = 0; k < n; k++) {
		uint64_t va = to + moved[k].offset;
		struct unit *u = pt_unit(&c->pt, ALIGN_DOWN(va, UNIT_SIZE));

		u->pte[unit_page(va)] = moved[k].pte;
		u->ndevice++;
		u->registered = true;
		u->huge = moved[k].huge;
		device_lru_touch(c->dev, u);
	}
	free(moved);
	/* source units the pages left, units made ahead that got none */
	if (!pt_units_in(&c->pt, from, end, &vas, &nu)) {
		for (uint32_t k = 0; k < nu; k++)
			client_unit_drop_if_empty(c, pt_unit(&c->pt, vas[k]));
		free(vas);
	}
	if (!pt_units_in(&c->pt, to, to + len, &vas, &nu)) {
		for (uint32_t k = 0; k < nu; k++) {
			struct unit *u = pt_unit(&c->pt, vas[k]);

			if (!u->ndevice) {
				u->registered = false; /* done below */
				client_unit_drop_if_empty(c, u);
			}
		}
		free(vas);
	}
	if (!pt_units_in(&c->pt, to, to + len, &vas, &nu)) {
		unregister_empty(c, to, to + len, vas, nu);
		free(vas);
	}
	return;
nomem:
	/* the pages stay where devmemd knew them: stranded, not lost from
	 * device memory; devmemd is out of memory anyway */
	log_err("client %u: out of memory following an mremap of %#llx-%#llx",
		c->id, (unsigned long long)from, (unsigned long long)end);
}

static bool event_ready(const struct client *c, const struct queued_event *e,
			bool *nomem)
{
	const struct uffd_msg *m = &e->msg;

	if (m->event == UFFD_EVENT_REMAP)
		return span_idle(c, m->arg.remap.from,
				 m->arg.remap.from + m->arg.remap.len, nomem) &&
		       span_idle(c, m->arg.remap.to,
				 m->arg.remap.to + m->arg.remap.len, nomem);
	/* libdevmem's own drop needs no waiting: it frees nothing */
	return e->own ||
	       span_idle(c, m->arg.remove.start, m->arg.remove.end, nomem);
}

static void event_apply(struct client *c, const struct queued_event *e)
{
	const struct uffd_msg *m = &e->msg;

	log_debug("client %u: event %u %#llx %#llx %#llx", c->id, m->event,
		  (unsigned long long)m->arg.reserved.reserved1,
		  (unsigned long long)m->arg.reserved.reserved2,
		  (unsigned long long)m->arg.reserved.reserved3);
	switch (m->event) {
	case UFFD_EVENT_UNMAP:
		discard(c, m->arg.remove.start, m->arg.remove.end, true);
		break;
	case UFFD_EVENT_REMOVE:
		if (!e->own)
			discard(c, m->arg.remove.start, m->arg.remove.end,
				false);
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
	bool nomem = false;

	while (done < q->n && event_ready(c, &q->q[done], &nomem)) {
		event_apply(c, &q->q[done]);
		done++;
	}
	if (done) {
		memmove(q->q, q->q + done, (q->n - done) * sizeof(*q->q));
		q->n -= done;
		pthread_cond_broadcast(&c->idle);
	}
	if (nomem)
		log_err("client %u: out of memory applying address-space events",
			c->id);
}

static void queue_event(struct client *c, const struct uffd_msg *m)
{
	struct event_queue *q = &c->events;

	switch (m->event) {
	case UFFD_EVENT_UNMAP:
	case UFFD_EVENT_REMOVE:
		if (m->arg.remove.end <= m->arg.remove.start)
			return;
		break;
	case UFFD_EVENT_REMAP:
		if (!m->arg.remap.len ||
		    m->arg.remap.from + m->arg.remap.len < m->arg.remap.from ||
		    m->arg.remap.to + m->arg.remap.len < m->arg.remap.to)
			return;
		break;
	default:
		/* UFFD_EVENT_FORK is not asked for: libdevmem handles fork */
		log_debug("client %u: userfaultfd event %u ignored", c->id,
			  m->event);
		return;
	}
	pthread_mutex_lock(&c->lock);
	while (q->n == q->cap) {
		uint32_t cap = q->cap ? 2 * q->cap : 16;
		struct queued_event *n = realloc(q->q, cap * sizeof(*n));

		if (n) {
			q->q = n;
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
	q->q[q->n].msg = *m;
	q->q[q->n].own = m->event == UFFD_EVENT_REMOVE &&
			 own_inplace(c, m->arg.remove.start, m->arg.remove.end);
	q->n++;
	events_run(c);
	pthread_mutex_unlock(&c->lock);
}

/* Does the event change what [start, end) holds? */
static bool msg_touches(const struct uffd_msg *m, uint64_t start, uint64_t end)
{
	switch (m->event) {
	case UFFD_EVENT_REMAP:
		return (m->arg.remap.from < end &&
			start < m->arg.remap.from + m->arg.remap.len) ||
		       (m->arg.remap.to < end &&
			start < m->arg.remap.to + m->arg.remap.len);
	case UFFD_EVENT_UNMAP:
	case UFFD_EVENT_REMOVE:
		return m->arg.remove.start < end && start < m->arg.remove.end;
	default:
		return false;
	}
}

bool events_fill_begin(struct client *c, uint64_t start, uint64_t end)
{
	pthread_mutex_lock(&c->intake_lock);
	for (uint32_t i = 0; i < c->nin_hand; i++)
		if (msg_touches(&c->in_hand[i].msg, start, end))
			goto stale;
	for (uint32_t i = 0; i < c->events.n; i++)
		if (msg_touches(&c->events.q[i].msg, start, end))
			goto stale;
	return true;
stale:
	pthread_mutex_unlock(&c->intake_lock);
	return false;
}

void events_fill_end(struct client *c)
{
	pthread_mutex_unlock(&c->intake_lock);
}

/* Is an event read before seq still in a resolver's hand? */
static bool earlier_in_hand(struct client *c, uint64_t seq)
{
	bool found = false;

	pthread_mutex_lock(&c->intake_lock);
	for (uint32_t i = 0; i < c->nin_hand && !found; i++)
		found = c->in_hand[i].seq < seq;
	pthread_mutex_unlock(&c->intake_lock);
	return found;
}

bool events_before(struct client *c, uint64_t seq)
{
	return c->events.n || earlier_in_hand(c, seq);
}

/* devmemctl inject slow-events: this resolver is "preempted" */
static void maybe_slow(struct device *d)
{
	uint32_t n = atomic_load(&d->inject_slow_events);

	while (n &&
	       !atomic_compare_exchange_weak(&d->inject_slow_events, &n, n - 1))
		;
	if (n)
		usleep(DM_SLOW_EVENT_MS * 1000);
}

void events_queue(struct client *c, const struct uffd_msg *m, uint64_t seq)
{
	maybe_slow(c->dev);
	/* the kernel sends an mremap's events one after the other (the unmap
	 * of what was at the destination, the remap, the unmap of the
	 * source), and they only make sense in that order */
	while (earlier_in_hand(c, seq))
		usleep(10);
	queue_event(c, m);
	pthread_mutex_lock(&c->intake_lock);
	for (uint32_t i = 0; i < c->nin_hand; i++)
		if (c->in_hand[i].seq == seq) {
			c->in_hand[i] = c->in_hand[--c->nin_hand];
			break;
		}
	pthread_mutex_unlock(&c->intake_lock);
}

/* The number the next message read will get */
static uint64_t intake_next(struct client *c)
{
	uint64_t seq;

	pthread_mutex_lock(&c->intake_lock);
	seq = c->intake_seq;
	pthread_mutex_unlock(&c->intake_lock);
	return seq;
}

void events_settle(struct client *c)
{
	uint64_t seq = intake_next(c);

	while (earlier_in_hand(c, seq))
		usleep(10);
}

void events_wait(struct client *c)
{
	uint64_t seq = intake_next(c);

	for (;;) {
		while (c->events.n)
			pthread_cond_wait(&c->idle, &c->lock);
		if (!earlier_in_hand(c, seq))
			return;
		pthread_mutex_unlock(&c->lock);
		usleep(10);
		pthread_mutex_lock(&c->lock);
	}
}
