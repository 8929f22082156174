/* SPDX-License-Identifier: MIT */
/*
 * The device allocator: a buddy allocator over device page numbers (dpfn).
 *
 * Device memory is a pool of 4 KB device pages numbered 0..npages-1.  Blocks
 * of order 0 (4 KB) to BUDDY_MAX_ORDER (9, 2 MB) are allocated, split and
 * coalesced as in the kernel's page allocator.  An allocated block is a
 * "device folio"; its head page carries a live count (pages of the folio still
 * in use), so that a 2 MB folio can be freed whole when its last piece goes.
 *
 * Metadata is one struct dpage (8 bytes) per device page.  Only block heads
 * are read; a page that stops being a head (absorbed by a merge, or the inside
 * of an allocated block) has its head state cleared, so reuse at a different
 * order always starts from clean metadata.
 *
 * All functions take the allocator's own lock; callers need no locking.
 */
#ifndef DEVMEM_BUDDY_H
#define DEVMEM_BUDDY_H

#include <pthread.h>
#include <stdint.h>

#define BUDDY_MAX_ORDER 9
#define BUDDY_NR_ORDERS (BUDDY_MAX_ORDER + 1)
#define DPFN_NONE UINT32_MAX
/* dpfns are stored in 27 bits: at most 2^27 pages (512 GiB) of device memory */
#define BUDDY_MAX_PAGES (1u << 27)

/*
 * Free head:      link = next free block of its order,
 *                 info = previous free block | order << 27 | 1 << 31.
 * Allocated head: link = live count (>= 1), info = order << 27.
 * Any other page: all zero.
 */
struct dpage {
	uint32_t link;
	uint32_t info;
};

struct buddy {
	pthread_mutex_t lock;
	struct dpage *pages;
	uint32_t npages;
	uint32_t free_head
		[BUDDY_NR_ORDERS]; /* first free block per order, DPFN_NONE if none */
	uint64_t nr_free[BUDDY_NR_ORDERS]; /* free blocks per order */
	uint64_t free_pages;
	unsigned fail_huge; /* injected: fail the next N order-9 allocations */
	unsigned
		fail_any; /* injected: fail the next N allocations of any order */
};

struct buddy_info {
	uint64_t npages;
	uint64_t free_pages;
	uint64_t nr_free[BUDDY_NR_ORDERS];
	unsigned
		fragmentation; /* per mille of free memory not in free order-9 blocks */
	unsigned fail_huge, fail_any;
	size_t metadata_bytes; /* bytes of allocator metadata */
};

/* 0, -EINVAL (npages 0 or > BUDDY_MAX_PAGES) or -ENOMEM.  buddy_destroy is
 * safe after a failed buddy_init. */
int buddy_init(struct buddy *b, uint64_t npages);
void buddy_destroy(struct buddy *b);

/* Allocate a block of 2^order pages, aligned to its size; its live count is
 * set to 2^order.  Returns 0, -ENOMEM (no free block), -EAGAIN (an injected
 * failure) or -EINVAL (order > BUDDY_MAX_ORDER). */
int buddy_alloc(struct buddy *b, unsigned order, uint32_t *dpfn);

/* Free a whole allocated block of the given order (its live count is ignored). */
void buddy_free(struct buddy *b, uint32_t dpfn, unsigned order);

/* Drop n pages from the live count of the allocated block whose head is dpfn;
 * when it reaches zero the block is freed.  Returns the remaining count (0 also
 * for a dpfn that is not an allocated head of that order: nothing changes). */
unsigned buddy_put(struct buddy *b, uint32_t dpfn, unsigned order, unsigned n);

/* Turn an allocated block of the given order into 2^order allocated order-0
 * blocks, each with live count 1. */
void buddy_split(struct buddy *b, uint32_t dpfn, unsigned order);

/* Fault injection (DEVMEM_INJECT_*): fail the next count allocations (the
 * counter is set, not added to). */
void buddy_inject_fail_huge(struct buddy *b, unsigned count);
void buddy_inject_fail_any(struct buddy *b, unsigned count);

void buddy_get_info(struct buddy *b, struct buddy_info *info);

/* For tests: 1 if dpfn is the head of an allocated block of that order. */
int buddy_is_allocated(struct buddy *b, uint32_t dpfn, unsigned order);

#endif /* DEVMEM_BUDDY_H */
