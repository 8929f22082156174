/* SPDX-License-Identifier: MIT */
/*
 * Buddy allocator over device pages.  See buddy.h for the interface.
 *
 * Each page has one struct dpage, but only block heads carry state:
 *
 *   free head:      link = next free block of the order (DPFN_NONE at the
 *                   end), info = prev | order << 27 | DPAGE_FREE.  The
 *                   prev field of the first block of a list is unused (0);
 *                   b->free_head[] tells whether a block is first.
 *   allocated head: link = live count (always >= 1), info = order << 27.
 *   anything else:  all zero.
 *
 * An all-zero page is neither a free head (flag clear) nor an allocated
 * head (live count 0), so a page that stops being a head only needs to be
 * zeroed to never be mistaken for one.  Interior pages are zero whenever a
 * block is carved, split off or merged, which is what lets reuse at a
 * different order start from clean metadata.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buddy.h"

#define DPAGE_PREV_MASK ((1u << 27) - 1)
#define DPAGE_ORDER_SHIFT 27
#define DPAGE_ORDER_MASK (0xfu << DPAGE_ORDER_SHIFT)
#define DPAGE_FREE (1u << 31)

_Static_assert(sizeof(struct dpage) == 8, "struct dpage must stay 8 bytes");
_Static_assert(BUDDY_MAX_ORDER < 16, "order must fit in 4 bits");
_Static_assert(BUDDY_MAX_PAGES - 1 <= DPAGE_PREV_MASK,
	       "every dpfn must fit in the prev field");

static const struct dpage dpage_clear;

static unsigned dpage_order(const struct dpage *p)
{
	return (p->info & DPAGE_ORDER_MASK) >> DPAGE_ORDER_SHIFT;
}

static int is_free_head(const struct dpage *p, unsigned order)
{
	return (p->info & DPAGE_FREE) && dpage_order(p) == order;
}

static int is_alloc_head(const struct dpage *p, unsigned order)
{
	return !(p->info & DPAGE_FREE) && p->link != 0 &&
	       dpage_order(p) == order;
}

static void set_alloc_head(struct dpage *p, unsigned order, uint32_t live)
{
	p->link = live;
	p->info = order << DPAGE_ORDER_SHIFT;
}

static void set_prev(struct dpage *p, uint32_t prev)
{
	p->info = (p->info & ~DPAGE_PREV_MASK) | (prev & DPAGE_PREV_MASK);
}

/* Push at the head: freed blocks are reused first, as in the kernel. */
static void list_add(struct buddy *b, uint32_t dpfn, unsigned order)
{
	struct dpage *p = &b->pages[dpfn];
	uint32_t next = b->free_head[order];

	p->link = next;
	p->info = DPAGE_FREE | (order << DPAGE_ORDER_SHIFT);
	if (next != DPFN_NONE)
		set_prev(&b->pages[next], dpfn);
	b->free_head[order] = dpfn;
	b->nr_free[order]++;
}

/* Unlink a free block and clear its metadata; O(1) via the prev field. */
static void list_del(struct buddy *b, uint32_t dpfn, unsigned order)
{
	struct dpage *p = &b->pages[dpfn];
	uint32_t next = p->link;

	if (b->free_head[order] == dpfn) {
		b->free_head[order] = next;
		if (next != DPFN_NONE)
			set_prev(&b->pages[next], 0);
	} else {
		uint32_t prev = p->info & DPAGE_PREV_MASK;

		b->pages[prev].link = next;
		if (next != DPFN_NONE)
			set_prev(&b->pages[next], prev);
	}
	*p = dpage_clear;
	b->nr_free[order]--;
}

/* Check that [dpfn, dpfn + 2^order) is a plausible block in the pool. */
static int block_in_range(const struct buddy *b, uint32_t dpfn, unsigned order)
{
	if (order > BUDDY_MAX_ORDER)
		return 0;
	if (dpfn & ((1u << order) - 1))
		return 0;
	return (uint64_t)dpfn + (1u << order) <= b->npages;
}

static int valid_alloc_head(const struct buddy *b, uint32_t dpfn,
			    unsigned order)
{
	return b->pages && block_in_range(b, dpfn, order) &&
	       is_alloc_head(&b->pages[dpfn], order);
}

static void free_block(struct buddy *b, uint32_t dpfn, unsigned order)
{
	b->free_pages += 1u << order;
	b->pages[dpfn] = dpage_clear;
	while (order < BUDDY_MAX_ORDER) {
		uint32_t buddy = dpfn ^ (1u << order);

		/* the tail of a pool that is not a multiple of 2 MB */
		if ((uint64_t)buddy + (1u << order) > b->npages)
			break;
		if (!is_free_head(&b->pages[buddy], order))
			break;
		/* clears the buddy: it is now inside the merged block */
		list_del(b, buddy, order);
		dpfn &= ~(1u << order);
		order++;
	}
	list_add(b, dpfn, order);
}

int buddy_init(struct buddy *b, uint64_t npages)
{
	uint64_t full, pos;
	int err;

	/* zeroed first, so that buddy_destroy() after a failure is harmless */
	memset(b, 0, sizeof(*b));
	if (npages == 0 || npages > BUDDY_MAX_PAGES)
		return -EINVAL;

	/* calloc: every page starts out as "not a head" */
	b->pages = calloc(npages, sizeof(*b->pages));
	if (!b->pages)
		return -ENOMEM;
	err = pthread_mutex_init(&b->lock, NULL);
	if (err) {
		free(b->pages);
		b->pages = NULL;
		return -err;
	}
	b->npages = (uint32_t)npages;
	b->free_pages = npages;
	for (unsigned o = 0; o < BUDDY_NR_ORDERS; o++)
		b->free_head[o] = DPFN_NONE;

	/*
	 * Maximal naturally aligned blocks: whole 2 MB blocks, then the binary
	 * decomposition of the remainder, largest first (each stays aligned
	 * since everything before it is a multiple of its size).  Order-9
	 * blocks are pushed in reverse so that low addresses are used first.
	 */
	full = npages & ~(uint64_t)((1u << BUDDY_MAX_ORDER) - 1);
	pos = full;
	for (int o = BUDDY_MAX_ORDER - 1; o >= 0; o--) {
		if (npages & (1u << o)) {
			list_add(b, (uint32_t)pos, (unsigned)o);
			pos += 1u << o;
		}
	}
	for (pos = full; pos > 0;) {
		pos -= 1u << BUDDY_MAX_ORDER;
		list_add(b, (uint32_t)pos, BUDDY_MAX_ORDER);
	}
	return 0;
}

void buddy_destroy(struct buddy *b)
{
	if (!b->pages)
		return;
	free(b->pages);
	b->pages = NULL;
	pthread_mutex_destroy(&b->lock);
}

int buddy_alloc(struct buddy *b, unsigned order, uint32_t *dpfn)
{
	unsigned o;
	uint32_t head;

	if (order > BUDDY_MAX_ORDER)
		return -EINVAL;

	pthread_mutex_lock(&b->lock);
	/* injected failures say so: evicting cannot help them */
	if (order == BUDDY_MAX_ORDER && b->fail_huge > 0) {
		b->fail_huge--;
		pthread_mutex_unlock(&b->lock);
		return -EAGAIN;
	}
	if (b->fail_any > 0) {
		b->fail_any--;
		pthread_mutex_unlock(&b->lock);
		return -EAGAIN;
	}

	for (o = order; o <= BUDDY_MAX_ORDER; o++) {
		if (b->free_head[o] != DPFN_NONE)
			break;
	}
	if (o > BUDDY_MAX_ORDER)
		goto nomem;

	head = b->free_head[o];
	list_del(b, head, o);
	/* keep the lower half, give the upper halves back */
	while (o > order) {
		o--;
		list_add(b, head + (1u << o), o);
	}
	set_alloc_head(&b->pages[head], order, 1u << order);
	b->free_pages -= 1u << order;
	pthread_mutex_unlock(&b->lock);
	*dpfn = head;
	return 0;

nomem:
	pthread_mutex_unlock(&b->lock);
	return -ENOMEM;
}

void buddy_free(struct buddy *b, uint32_t dpfn, unsigned order)
{
	pthread_mutex_lock(&b->lock);
	/* a bogus free is ignored rather than corrupting the free lists */
	if (valid_alloc_head(b, dpfn, order))
		free_block(b, dpfn, order);
	pthread_mutex_unlock(&b->lock);
}

unsigned buddy_put(struct buddy *b, uint32_t dpfn, unsigned order, unsigned n)
{
	struct dpage *p;
	unsigned left = 0;

	pthread_mutex_lock(&b->lock);
	if (!valid_alloc_head(b, dpfn, order))
		goto out;
	p = &b->pages[dpfn];
	if (n >= p->link) {
		free_block(b, dpfn, order);
		goto out;
	}
	p->link -= n;
	left = p->link;
out:
	pthread_mutex_unlock(&b->lock);
	return left;
}

void buddy_split(struct buddy *b, uint32_t dpfn, unsigned order)
{
	pthread_mutex_lock(&b->lock);
	if (valid_alloc_head(b, dpfn, order)) {
		for (uint32_t i = 0; i < (1u << order); i++)
			set_alloc_head(&b->pages[dpfn + i], 0, 1);
	}
	pthread_mutex_unlock(&b->lock);
}

void buddy_inject_fail_huge(struct buddy *b, unsigned count)
{
	pthread_mutex_lock(&b->lock);
	b->fail_huge = count;
	pthread_mutex_unlock(&b->lock);
}

void buddy_inject_fail_any(struct buddy *b, unsigned count)
{
	pthread_mutex_lock(&b->lock);
	b->fail_any = count;
	pthread_mutex_unlock(&b->lock);
}

void buddy_get_info(struct buddy *b, struct buddy_info *info)
{
	uint64_t huge;

	memset(info, 0, sizeof(*info));
	pthread_mutex_lock(&b->lock);
	info->npages = b->npages;
	info->free_pages = b->free_pages;
	for (unsigned o = 0; o < BUDDY_NR_ORDERS; o++)
		info->nr_free[o] = b->nr_free[o];
	huge = b->nr_free[BUDDY_MAX_ORDER] << BUDDY_MAX_ORDER;
	if (b->free_pages)
		info->fragmentation = (unsigned)((b->free_pages - huge) * 1000 /
						 b->free_pages);
	info->fail_huge = b->fail_huge;
	info->fail_any = b->fail_any;
	info->metadata_bytes = (size_t)b->npages * sizeof(struct dpage);
	pthread_mutex_unlock(&b->lock);
}

int buddy_is_allocated(struct buddy *b, uint32_t dpfn, unsigned order)
{
	int ret;

	pthread_mutex_lock(&b->lock);
	ret = valid_alloc_head(b, dpfn, order);
	pthread_mutex_unlock(&b->lock);
	return ret;
}
