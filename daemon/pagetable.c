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

static void range_free(struct range *r)
{
	for (uint32_t i = 0; i < r->nunits; i++)
		free(r->units[i]);
	free(r->units);
	free(r);
}

void pt_destroy(struct pagetable *pt)
{
	for (uint32_t i = 0; i < pt->nranges; i++)
		range_free(pt->ranges[i]);
	free(pt->ranges);
	free(pt->parked);
	pt_init(pt);
}

/* index of the first range whose end is above addr */
static uint32_t lower_bound(const struct pagetable *pt, uint64_t addr)
{
	uint32_t lo = 0, hi = pt->nranges;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (pt->ranges[mid]->end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct range *pt_find_range(const struct pagetable *pt, uint64_t addr)
{
	uint32_t i = lower_bound(pt, addr);

	if (i < pt->nranges && pt->ranges[i]->start <= addr)
		return pt->ranges[i];
	return NULL;
}

struct range *pt_find_span(const struct pagetable *pt, uint64_t addr,
			   uint64_t len)
{
	struct range *r = pt_find_range(pt, addr);

	if (!r || len == 0 || addr + len < addr || addr + len > r->end)
		return NULL;
	return r;
}

int pt_add_range(struct pagetable *pt, uint64_t start, uint64_t end)
{
	uint32_t i = lower_bound(pt, start);
	struct range *r;

	if (i < pt->nranges && pt->ranges[i]->start < end)
		return -EEXIST;
	if (pt->nranges == pt->cap) {
		uint32_t cap = pt->cap ? pt->cap * 2 : 8;
		struct range **n = realloc(pt->ranges, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		pt->ranges = n;
		pt->cap = cap;
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->start = start;
	r->end = end;
	r->base = ALIGN_DOWN(start, UNIT_SIZE);
	r->nunits = (uint32_t)((ALIGN_UP(end, UNIT_SIZE) - r->base) / UNIT_SIZE);
	r->units = calloc(r->nunits, sizeof(*r->units));
	if (!r->units) {
		free(r);
		return -ENOMEM;
	}
	memmove(&pt->ranges[i + 1], &pt->ranges[i],
		(pt->nranges - i) * sizeof(*pt->ranges));
	pt->ranges[i] = r;
	pt->nranges++;
	pt->registered_bytes += end - start;
	return 0;
}

int pt_remove_range(struct pagetable *pt, uint64_t start, uint64_t end)
{
	uint32_t i = lower_bound(pt, start);
	struct range *r;

	if (i >= pt->nranges || pt->ranges[i]->start != start ||
	    pt->ranges[i]->end != end)
		return -EINVAL;
	r = pt->ranges[i];
	memmove(&pt->ranges[i], &pt->ranges[i + 1],
		(pt->nranges - i - 1) * sizeof(*pt->ranges));
	pt->nranges--;
	pt->registered_bytes -= end - start;
	range_free(r);
	return 0;
}

struct unit *pt_unit_get(struct pagetable *pt, struct range *r, uint64_t addr,
			 struct client *c)
{
	uint32_t i = range_unit_index(r, addr);
	struct unit *u = r->units[i];

	if (u)
		return u;
	u = calloc(1, sizeof(*u));
	if (!u)
		return NULL;
	u->va = r->base + (uint64_t)i * UNIT_SIZE;
	u->serial = pt->next_serial++;
	u->client = c;
	INIT_LIST_HEAD(&u->lru);
	r->units[i] = u;
	return u;
}

void unit_span(const struct range *r, const struct unit *u, uint64_t *start,
	       uint64_t *end)
{
	*start = MAX(u->va, r->start);
	*end = MIN(u->va + UNIT_SIZE, r->end);
}

void pt_unit_free(struct range *r, struct unit *u)
{
	r->units[range_unit_index(r, u->va)] = NULL;
	free(u);
}

int pt_park(struct pagetable *pt, uint64_t addr, uint64_t flags)
{
	if (pt->nparked == pt->parked_cap) {
		uint32_t cap = pt->parked_cap ? pt->parked_cap * 2 : 16;
		struct parked_fault *n = realloc(pt->parked, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		pt->parked = n;
		pt->parked_cap = cap;
	}
	pt->parked[pt->nparked].addr = addr;
	pt->parked[pt->nparked].flags = flags;
	pt->nparked++;
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
