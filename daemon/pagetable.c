/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pagetable.h"

void pt_init(struct pagetable *pt)
{
	memset(pt, 0, sizeof(*pt));
	pt->next_serial = 1;
}

void pt_destroy(struct pagetable *pt)
{
	for (uint32_t b = 0; b < pt->nbuckets; b++)
		while (pt->buckets[b]) {
			struct unit *u = pt->buckets[b];

			pt->buckets[b] = u->hnext;
			free(u);
		}
	free(pt->buckets);
	free(pt->ranges);
	free(pt->parked);
	pt_init(pt);
}

/* ---- registered ranges ---- */

/* index of the first range whose end is above addr */
static uint32_t lower_bound(const struct pagetable *pt, uint64_t addr)
{
	uint32_t lo = 0, hi = pt->nranges;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (pt->ranges[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int ranges_insert(struct pagetable *pt, uint32_t i, uint64_t start,
			 uint64_t end)
{
	if (pt->nranges == pt->ranges_cap) {
		uint32_t cap = pt->ranges_cap ? pt->ranges_cap * 2 : 8;
		struct span *n = realloc(pt->ranges, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		pt->ranges = n;
		pt->ranges_cap = cap;
	}
	memmove(&pt->ranges[i + 1], &pt->ranges[i],
		(pt->nranges - i) * sizeof(*pt->ranges));
	pt->ranges[i].start = start;
	pt->ranges[i].end = end;
	pt->nranges++;
	pt->registered_bytes += end - start;
	return 0;
}

static void ranges_delete(struct pagetable *pt, uint32_t i)
{
	pt->registered_bytes -= pt->ranges[i].end - pt->ranges[i].start;
	memmove(&pt->ranges[i], &pt->ranges[i + 1],
		(pt->nranges - i - 1) * sizeof(*pt->ranges));
	pt->nranges--;
}

int pt_add_range(struct pagetable *pt, uint64_t start, uint64_t end)
{
	uint32_t i = lower_bound(pt, start);

	if (i < pt->nranges && pt->ranges[i].start < end)
		return -EEXIST;
	return ranges_insert(pt, i, start, end);
}

int pt_remove_range(struct pagetable *pt, uint64_t start, uint64_t end)
{
	uint32_t i = lower_bound(pt, start);

	if (i >= pt->nranges || pt->ranges[i].start != start ||
	    pt->ranges[i].end != end)
		return -EINVAL;
	ranges_delete(pt, i);
	return 0;
}

int pt_carve(struct pagetable *pt, uint64_t start, uint64_t end)
{
	uint32_t i = lower_bound(pt, start);

	while (i < pt->nranges && pt->ranges[i].start < end) {
		struct span r = pt->ranges[i];

		if (r.start < start && r.end > end) {
			/* the hole is inside: cut the range in two */
			if (ranges_insert(pt, i + 1, end, r.end))
				return -ENOMEM;
			pt->ranges[i].end = start;
			pt->registered_bytes -= r.end - start;
			return 0;
		}
		if (r.start < start) {
			pt->ranges[i].end = start;
			pt->registered_bytes -= r.end - start;
			i++;
		} else if (r.end > end) {
			pt->ranges[i].start = end;
			pt->registered_bytes -= end - r.start;
			return 0;
		} else {
			ranges_delete(pt, i);
		}
	}
	return 0;
}

bool pt_intersects(const struct pagetable *pt, uint64_t start, uint64_t end)
{
	uint32_t i = lower_bound(pt, start);

	return i < pt->nranges && pt->ranges[i].start < end;
}

bool pt_covered(const struct pagetable *pt, uint64_t addr, uint64_t len)
{
	uint64_t end = addr + len, at = addr;

	if (!len || end < addr)
		return false;
	for (uint32_t i = lower_bound(pt, addr);
	     i < pt->nranges && pt->ranges[i].start <= at; i++) {
		at = pt->ranges[i].end;
		if (at >= end)
			return true;
	}
	return false;
}

void pt_for_each_registered(const struct pagetable *pt, uint64_t start,
			    uint64_t end,
			    void (*fn)(uint64_t s, uint64_t e, void *arg),
			    void *arg)
{
	for (uint32_t i = lower_bound(pt, start);
	     i < pt->nranges && pt->ranges[i].start < end; i++)
		fn(MAX(start, pt->ranges[i].start), MIN(end, pt->ranges[i].end),
		   arg);
}

/* ---- units ---- */

static uint32_t bucket_of(const struct pagetable *pt, uint64_t va)
{
	uint64_t h = (va >> 21) * 0x9e3779b97f4a7c15ull;

	return (uint32_t)(h >> 32) & (pt->nbuckets - 1);
}

struct unit *pt_unit(const struct pagetable *pt, uint64_t va)
{
	if (!pt->nbuckets)
		return NULL;
	for (struct unit *u = pt->buckets[bucket_of(pt, va)]; u; u = u->hnext)
		if (u->va == va)
			return u;
	return NULL;
}

static int grow(struct pagetable *pt)
{
	uint32_t n = pt->nbuckets ? pt->nbuckets * 2 : 64;
	struct unit **old = pt->buckets;
	uint32_t oldn = pt->nbuckets;

	pt->buckets = calloc(n, sizeof(*pt->buckets));
	if (!pt->buckets) {
		pt->buckets = old;
		return -ENOMEM;
	}
	pt->nbuckets = n;
	for (uint32_t b = 0; b < oldn; b++)
		while (old[b]) {
			struct unit *u = old[b];
			uint32_t k = bucket_of(pt, u->va);

			old[b] = u->hnext;
			u->hnext = pt->buckets[k];
			pt->buckets[k] = u;
		}
	free(old);
	return 0;
}

struct unit *pt_unit_get(struct pagetable *pt, uint64_t va, struct client *c)
{
	struct unit *u = pt_unit(pt, va);
	uint32_t b;

	if (u)
		return u;
	if (pt->nunits >= pt->nbuckets && grow(pt) && !pt->nbuckets)
		return NULL;
	u = calloc(1, sizeof(*u));
	if (!u)
		return NULL;
	u->va = va;
	u->serial = pt->next_serial++;
	u->client = c;
	INIT_LIST_HEAD(&u->lru);
	b = bucket_of(pt, va);
	u->hnext = pt->buckets[b];
	pt->buckets[b] = u;
	pt->nunits++;
	return u;
}

void pt_unit_free(struct pagetable *pt, struct unit *u)
{
	struct unit **pp = &pt->buckets[bucket_of(pt, u->va)];

	while (*pp && *pp != u)
		pp = &(*pp)->hnext;
	if (*pp) {
		*pp = u->hnext;
		pt->nunits--;
	}
	free(u);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int pt_units_in(const struct pagetable *pt, uint64_t start, uint64_t end,
		uint64_t **vas, uint32_t *n)
{
	uint64_t first = ALIGN_DOWN(start, UNIT_SIZE);
	uint32_t k = 0;

	*vas = NULL;
	*n = 0;
	if (!pt->nunits || end <= start)
		return 0;
	/* a small span: look up its units; a large one: walk them all */
	if ((end - first) / UNIT_SIZE <= pt->nunits) {
		*vas = malloc(((end - first + UNIT_MASK) / UNIT_SIZE) *
			      sizeof(**vas));
		if (!*vas)
			return -ENOMEM;
		for (uint64_t va = first; va < end; va += UNIT_SIZE)
			if (pt_unit(pt, va))
				(*vas)[k++] = va;
		*n = k;
		return 0;
	}
	*vas = malloc(pt->nunits * sizeof(**vas));
	if (!*vas)
		return -ENOMEM;
	for (uint32_t b = 0; b < pt->nbuckets; b++)
		for (struct unit *u = pt->buckets[b]; u; u = u->hnext)
			if (u->va + UNIT_SIZE > start && u->va < end)
				(*vas)[k++] = u->va;
	qsort(*vas, k, sizeof(**vas), cmp_u64);
	*n = k;
	return 0;
}

void pt_for_each_unit(struct pagetable *pt,
		      void (*fn)(struct unit *u, void *arg), void *arg)
{
	for (uint32_t b = 0; b < pt->nbuckets; b++) {
		struct unit *u = pt->buckets[b];

		while (u) {
			struct unit *next = u->hnext;

			fn(u, arg);
			u = next;
		}
	}
}

/* ---- parked faults ---- */

int pt_park(struct pagetable *pt, const struct parked_fault *f)
{
	if (pt->nparked == pt->parked_cap) {
		uint32_t cap = pt->parked_cap ? pt->parked_cap * 2 : 16;
		struct parked_fault *n = realloc(pt->parked, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		pt->parked = n;
		pt->parked_cap = cap;
	}
	pt->parked[pt->nparked++] = *f;
	return 0;
}

uint32_t pt_unpark(struct pagetable *pt, uint64_t start, uint64_t end,
		   struct parked_fault *out, uint32_t max)
{
	uint32_t n = 0, kept = 0;

	for (uint32_t i = 0; i < pt->nparked; i++) {
		struct parked_fault *p = &pt->parked[i];

		if (p->addr >= start && p->addr < end && n < max)
			out[n++] = *p;
		else
			pt->parked[kept++] = *p;
	}
	pt->nparked = kept;
	return n;
}
