/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the device page buddy allocator (daemon/buddy.c).
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buddy.h"

/*
 * ck_assert() records a mark point on every success, which is far too slow
 * for the hot loops of the randomized tests; only report failures there.
 */
#define REQUIRE(expr)                                                  \
	do {                                                           \
		if (!(expr))                                           \
			ck_abort_msg("requirement failed: %s", #expr); \
	} while (0)

#define HUGE_PAGES (1u << BUDDY_MAX_ORDER)

static uint64_t xorshift64(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

static uint64_t sum_free(const struct buddy_info *info)
{
	uint64_t sum = 0;

	for (unsigned o = 0; o < BUDDY_NR_ORDERS; o++)
		sum += info->nr_free[o] << o;
	return sum;
}

/*
 * White-box check of the metadata layout documented in buddy.h: walk every
 * free list (links, back links, order, alignment, counts) and mark the free
 * heads in is_head[], which must have room for b->npages entries.  Tests run
 * these single-threaded, so reading b->pages without the lock is fine.
 */
#define INFO_PREV_MASK ((1u << 27) - 1)
#define INFO_ORDER(info) (((info) >> 27) & 0xf)
#define INFO_FREE (1u << 31)

static void check_free_lists(struct buddy *b, unsigned char *is_head)
{
	uint64_t free_pages = 0;

	memset(is_head, 0, b->npages);
	for (unsigned o = 0; o < BUDDY_NR_ORDERS; o++) {
		uint32_t prev = DPFN_NONE, n = 0;

		for (uint32_t d = b->free_head[o]; d != DPFN_NONE;
		     d = b->pages[d].link) {
			const struct dpage *p;

			REQUIRE(n < b->npages); /* no cycles */
			REQUIRE(d < b->npages);
			REQUIRE(d % (1u << o) == 0);
			REQUIRE((uint64_t)d + (1u << o) <= b->npages);
			REQUIRE(!is_head[d]);
			p = &b->pages[d];
			REQUIRE(p->info & INFO_FREE);
			REQUIRE(INFO_ORDER(p->info) == o);
			if (prev != DPFN_NONE)
				REQUIRE((p->info & INFO_PREV_MASK) == prev);
			is_head[d] = 1;
			prev = d;
			n++;
		}
		REQUIRE(n == b->nr_free[o]);
		free_pages += (uint64_t)n << o;
	}
	REQUIRE(free_pages == b->free_pages);
	/* nothing off the lists may look like a free head */
	for (uint32_t d = 0; d < b->npages; d++)
		REQUIRE(is_head[d] || !(b->pages[d].info & INFO_FREE));
}

/* Every page that is not a head must hold cleared metadata. */
static void check_non_heads_clear(struct buddy *b, const unsigned char *is_head)
{
	for (uint32_t d = 0; d < b->npages; d++) {
		if (!is_head[d])
			REQUIRE(!b->pages[d].link && !b->pages[d].info);
	}
}

/* The free lists of a pool of npages with nothing allocated. */
static void check_carving(struct buddy *b, uint64_t npages)
{
	struct buddy_info info;
	unsigned char *is_head = malloc(npages);

	ck_assert_ptr_nonnull(is_head);
	check_free_lists(b, is_head);
	check_non_heads_clear(b, is_head);
	free(is_head);

	buddy_get_info(b, &info);
	ck_assert_uint_eq(info.npages, npages);
	ck_assert_uint_eq(info.free_pages, npages);
	ck_assert_uint_eq(sum_free(&info), npages);
	ck_assert_uint_eq(info.nr_free[BUDDY_MAX_ORDER],
			  npages >> BUDDY_MAX_ORDER);
	for (unsigned o = 0; o < BUDDY_MAX_ORDER; o++)
		ck_assert_uint_eq(info.nr_free[o], (npages >> o) & 1);
	ck_assert_uint_eq(info.metadata_bytes, npages * sizeof(struct dpage));
}

static void check_info_eq(const struct buddy_info *a,
			  const struct buddy_info *b)
{
	ck_assert_uint_eq(a->npages, b->npages);
	ck_assert_uint_eq(a->free_pages, b->free_pages);
	for (unsigned o = 0; o < BUDDY_NR_ORDERS; o++)
		ck_assert_uint_eq(a->nr_free[o], b->nr_free[o]);
	ck_assert_uint_eq(a->fragmentation, b->fragmentation);
	ck_assert_uint_eq(a->fail_huge, b->fail_huge);
	ck_assert_uint_eq(a->fail_any, b->fail_any);
	ck_assert_uint_eq(a->metadata_bytes, b->metadata_bytes);
}

START_TEST(test_init_sizes)
{
	static const uint64_t sizes[] = { 512, 1, 513, 1000, 262144 };
	struct buddy b;
	struct buddy_info info;

	ck_assert_uint_eq(sizeof(struct dpage), 8);

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		ck_assert_int_eq(buddy_init(&b, sizes[i]), 0);
		check_carving(&b, sizes[i]);
		buddy_get_info(&b, &info);
		ck_assert_uint_eq(info.fragmentation,
				  sizes[i] % HUGE_PAGES
					  ? (sizes[i] % HUGE_PAGES) * 1000 /
						    sizes[i]
					  : 0);
		buddy_destroy(&b);
	}

	/* the explicit carvings, not just the formula */
	ck_assert_int_eq(buddy_init(&b, 1000), 0);
	buddy_get_info(&b, &info);
	ck_assert_uint_eq(info.nr_free[9], 1);
	ck_assert_uint_eq(info.nr_free[8], 1);
	ck_assert_uint_eq(info.nr_free[7], 1);
	ck_assert_uint_eq(info.nr_free[6], 1);
	ck_assert_uint_eq(info.nr_free[5], 1);
	ck_assert_uint_eq(info.nr_free[4], 0);
	ck_assert_uint_eq(info.nr_free[3], 1);
	ck_assert_uint_eq(info.nr_free[2], 0);
	ck_assert_uint_eq(info.nr_free[1], 0);
	ck_assert_uint_eq(info.nr_free[0], 0);
	{
		/* 0-511, 512-767, 768-895, 896-959, 960-991, 992-999 */
		static const struct {
			unsigned order;
			uint32_t dpfn;
		} want[] = { { 3, 992 }, { 5, 960 }, { 6, 896 },
			     { 7, 768 }, { 8, 512 }, { 9, 0 } };
		uint32_t d;

		for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
			ck_assert_int_eq(buddy_alloc(&b, want[i].order, &d), 0);
			ck_assert_uint_eq(d, want[i].dpfn);
		}
		buddy_get_info(&b, &info);
		ck_assert_uint_eq(info.free_pages, 0);
		ck_assert_int_eq(buddy_alloc(&b, 0, &d), -ENOMEM);
	}
	buddy_destroy(&b);

	ck_assert_int_eq(buddy_init(&b, 513), 0);
	buddy_get_info(&b, &info);
	ck_assert_uint_eq(info.nr_free[9], 1);
	ck_assert_uint_eq(info.nr_free[0], 1);
	for (unsigned o = 1; o < BUDDY_MAX_ORDER; o++)
		ck_assert_uint_eq(info.nr_free[o], 0);
	buddy_destroy(&b);

	ck_assert_int_eq(buddy_init(&b, 262144), 0);
	buddy_get_info(&b, &info);
	ck_assert_uint_eq(info.nr_free[9], 512);
	ck_assert_uint_eq(info.metadata_bytes, 262144 * 8);
	buddy_destroy(&b);

	ck_assert_int_eq(buddy_init(&b, 0), -EINVAL);
	buddy_destroy(&b); /* harmless after a failed init */
	ck_assert_int_eq(buddy_init(&b, (uint64_t)BUDDY_MAX_PAGES + 1),
			 -EINVAL);
	ck_assert_int_eq(buddy_init(&b, UINT64_MAX), -EINVAL);
}
END_TEST

START_TEST(test_every_order)
{
	const uint32_t npages = 4096;
	unsigned order = (unsigned)_i;
	uint32_t count = npages >> order;
	uint32_t *blocks = calloc(count + 1, sizeof(*blocks));
	unsigned char *used = calloc(npages, 1);
	struct buddy b;
	struct buddy_info info;
	uint32_t n = 0, d;
	int ret;

	ck_assert_ptr_nonnull(blocks);
	ck_assert_ptr_nonnull(used);
	ck_assert_int_eq(buddy_init(&b, npages), 0);

	while ((ret = buddy_alloc(&b, order, &d)) == 0) {
		ck_assert_uint_lt(n, count);
		ck_assert_uint_eq(d % (1u << order), 0);
		ck_assert_uint_le(d + (1u << order), npages);
		for (uint32_t i = 0; i < (1u << order); i++) {
			REQUIRE(!used[d + i]);
			used[d + i] = 1;
		}
		ck_assert(buddy_is_allocated(&b, d, order));
		blocks[n++] = d;
	}
	ck_assert_int_eq(ret, -ENOMEM);
	ck_assert_uint_eq(n, count);
	buddy_get_info(&b, &info);
	ck_assert_uint_eq(info.free_pages, 0);
	ck_assert_uint_eq(sum_free(&info), 0);
	ck_assert_uint_eq(info.fragmentation, 0);

	/* free in a scattered order so merges happen in both directions */
	for (uint32_t i = 0; i < n; i++) {
		uint32_t j = (uint32_t)((i * 2654435761u) % n);
		uint32_t k = blocks[i];

		blocks[i] = blocks[j];
		blocks[j] = k;
	}
	for (uint32_t i = 0; i < n; i++) {
		buddy_free(&b, blocks[i], order);
		ck_assert(!buddy_is_allocated(&b, blocks[i], order));
	}

	buddy_get_info(&b, &info);
	ck_assert_uint_eq(info.free_pages, npages);
	ck_assert_uint_eq(info.nr_free[BUDDY_MAX_ORDER], 8);
	for (unsigned o = 0; o < BUDDY_MAX_ORDER; o++)
		ck_assert_uint_eq(info.nr_free[o], 0);
	ck_assert_uint_eq(info.fragmentation, 0);

	buddy_destroy(&b);
	free(blocks);
	free(used);
}
END_TEST

START_TEST(test_split_coalesce)
{
	struct buddy b;
	struct buddy_info info;
	uint32_t d;

	ck_assert_int_eq(buddy_init(&b, 512), 0);
	ck_assert_int_eq(buddy_alloc(&b, 0, &d), 0);
	ck_assert_uint_eq(d, 0);
	buddy_get_info(&b, &info);
	ck_assert_uint_eq(info.free_pages, 511);
	for (unsigned o = 0; o < BUDDY_MAX_ORDER; o++)
		ck_assert_uint_eq(info.nr_free[o], 1);
	ck_assert_uint_eq(info.nr_free[BUDDY_MAX_ORDER], 0);
	ck_assert_uint_eq(info.fragmentation, 1000);

	/* the next order-0 block is the buddy of the first */
	{
		uint32_t d2;

		ck_assert_int_eq(buddy_alloc(&b, 0, &d2), 0);
		ck_assert_uint_eq(d2, 1);
		buddy_free(&b, d2, 0);
	}

	buddy_free(&b, d, 0);
	check_carving(&b, 512);
	buddy_get_info(&b, &info);
	ck_assert_uint_eq(info.fragmentation, 0);
	buddy_destroy(&b);
}
END_TEST

START_TEST(test_exhaustion)
{
	struct buddy b;
	struct buddy_info info;
	uint32_t d;

	ck_assert_int_eq(buddy_init(&b, 512), 0);
	for (uint32_t i = 0; i < 512; i++) {
		ck_assert_int_eq(buddy_alloc(&b, 0, &d), 0);
		ck_assert_uint_eq(d, i);
	}
	ck_assert_int_eq(buddy_alloc(&b, 0, &d), -ENOMEM);
	for (uint32_t i = 0; i < 512; i += 2)
		buddy_free(&b, i, 0);

	buddy_get_info(&b, &info);
	ck_assert_uint_eq(info.free_pages, 256);
	ck_assert_uint_eq(info.nr_free[0], 256);
	ck_assert_uint_eq(sum_free(&info), 256);
	ck_assert_uint_eq(info.fragmentation, 1000);
	ck_assert_int_eq(buddy_alloc(&b, 9, &d), -ENOMEM);
	ck_assert_int_eq(buddy_alloc(&b, 1, &d), -ENOMEM);
	/* failures change nothing */
	buddy_get_info(&b, &info);
	ck_assert_uint_eq(info.free_pages, 256);
	ck_assert_uint_eq(info.nr_free[0], 256);

	for (uint32_t i = 1; i < 512; i += 2)
		buddy_free(&b, i, 0);
	check_carving(&b, 512);
	buddy_destroy(&b);
}
END_TEST

START_TEST(test_reuse_other_order)
{
	struct buddy b;
	struct buddy_info info;
	uint32_t d, d2;

	ck_assert_int_eq(buddy_init(&b, 1024), 0);
	ck_assert_int_eq(buddy_alloc(&b, 9, &d), 0);
	buddy_split(&b, d, 9);
	ck_assert(!buddy_is_allocated(&b, d, 9));
	for (uint32_t k = 0; k < HUGE_PAGES; k++)
		REQUIRE(buddy_is_allocated(&b, d + k, 0));
	buddy_get_info(&b, &info);
	ck_assert_uint_eq(info.free_pages, 512);

	for (uint32_t k = 0; k < HUGE_PAGES; k++)
		REQUIRE(buddy_put(&b, d + k, 0, 1) == 0);
	check_carving(&b, 1024);

	ck_assert_int_eq(buddy_alloc(&b, 9, &d2), 0);
	ck_assert_uint_eq(d2, d);
	ck_assert(buddy_is_allocated(&b, d, 9));
	for (uint32_t k = 0; k < HUGE_PAGES; k++) {
		REQUIRE(!buddy_is_allocated(&b, d + k, 0));
		for (unsigned o = 1; o < BUDDY_MAX_ORDER; o++)
			REQUIRE(!buddy_is_allocated(&b, d + k, o));
	}
	for (uint32_t k = 1; k < HUGE_PAGES; k++)
		REQUIRE(!b.pages[d + k].link && !b.pages[d + k].info);
	/* a stale order-0 head would accept this free */
	buddy_free(&b, d + 1, 0);
	buddy_get_info(&b, &info);
	ck_assert_uint_eq(info.free_pages, 512);

	ck_assert_uint_eq(buddy_put(&b, d, 9, 0), 512); /* full live count */
	ck_assert_uint_eq(buddy_put(&b, d, 9, 511), 1);
	ck_assert_uint_eq(buddy_put(&b, d, 9, 1), 0);
	ck_assert(!buddy_is_allocated(&b, d, 9));
	check_carving(&b, 1024);
	buddy_destroy(&b);
}
END_TEST

START_TEST(test_put)
{
	struct buddy b;
	struct buddy_info info;
	uint32_t d;

	ck_assert_int_eq(buddy_init(&b, 512), 0);
	ck_assert_int_eq(buddy_alloc(&b, 9, &d), 0);
	ck_assert_uint_eq(buddy_put(&b, d, 9, 100), 412);
	ck_assert(buddy_is_allocated(&b, d, 9));
	buddy_get_info(&b, &info);
	ck_assert_uint_eq(info.free_pages, 0);
	ck_assert_uint_eq(buddy_put(&b, d, 9, 412), 0);
	ck_assert(!buddy_is_allocated(&b, d, 9));
	check_carving(&b, 512);

	/* more than the live count clamps at zero */
	ck_assert_int_eq(buddy_alloc(&b, 4, &d), 0);
	ck_assert_uint_eq(buddy_put(&b, d, 4, 3), 13);
	ck_assert_uint_eq(buddy_put(&b, d, 4, 1000), 0);
	check_carving(&b, 512);
	/* a put on a freed block is ignored */
	ck_assert_uint_eq(buddy_put(&b, d, 4, 1), 0);
	check_carving(&b, 512);

	/* buddy_free ignores the live count */
	ck_assert_int_eq(buddy_alloc(&b, 2, &d), 0);
	ck_assert_uint_eq(buddy_put(&b, d, 2, 1), 3);
	buddy_free(&b, d, 2);
	check_carving(&b, 512);
	buddy_destroy(&b);
}
END_TEST

START_TEST(test_fault_injection)
{
	struct buddy b;
	struct buddy_info info;
	uint32_t d, d0;

	ck_assert_int_eq(buddy_init(&b, 2048), 0);

	buddy_inject_fail_huge(&b, 2);
	buddy_get_info(&b, &info);
	ck_assert_uint_eq(info.fail_huge, 2);
	ck_assert_int_eq(buddy_alloc(&b, 9, &d), -EAGAIN);
	buddy_get_info(&b, &info);
	ck_assert_uint_eq(info.fail_huge, 1);
	ck_assert_int_eq(buddy_alloc(&b, 0, &d0), 0);
	buddy_get_info(&b, &info);
	ck_assert_uint_eq(info.fail_huge, 1);
	ck_assert_int_eq(buddy_alloc(&b, 9, &d), -EAGAIN);
	buddy_get_info(&b, &info);
	ck_assert_uint_eq(info.fail_huge, 0);
	ck_assert_uint_eq(info.free_pages, 2047);
	ck_assert_int_eq(buddy_alloc(&b, 9, &d), 0);
	ck_assert(buddy_is_allocated(&b, d, 9));
	buddy_free(&b, d, 9);

	buddy_inject_fail_any(&b, 3);
	buddy_get_info(&b, &info);
	ck_assert_uint_eq(info.fail_any, 3);
	ck_assert_int_eq(buddy_alloc(&b, 0, &d), -EAGAIN);
	buddy_get_info(&b, &info);
	ck_assert_uint_eq(info.fail_any, 2);
	ck_assert_int_eq(buddy_alloc(&b, 9, &d), -EAGAIN);
	buddy_get_info(&b, &info);
	ck_assert_uint_eq(info.fail_any, 1);
	ck_assert_int_eq(buddy_alloc(&b, 4, &d), -EAGAIN);
	buddy_get_info(&b, &info);
	ck_assert_uint_eq(info.fail_any, 0);
	ck_assert_uint_eq(info.free_pages, 2047);
	ck_assert_int_eq(buddy_alloc(&b, 4, &d), 0);
	buddy_free(&b, d, 4);
	ck_assert_int_eq(buddy_alloc(&b, 9, &d), 0);
	buddy_free(&b, d, 9);

	/* an order-9 allocation consumes fail_huge before fail_any */
	buddy_inject_fail_huge(&b, 1);
	buddy_inject_fail_any(&b, 1);
	ck_assert_int_eq(buddy_alloc(&b, 9, &d), -EAGAIN);
	buddy_get_info(&b, &info);
	ck_assert_uint_eq(info.fail_huge, 0);
	ck_assert_uint_eq(info.fail_any, 1);
	ck_assert_int_eq(buddy_alloc(&b, 9, &d), -EAGAIN);
	buddy_get_info(&b, &info);
	ck_assert_uint_eq(info.fail_any, 0);
	ck_assert_int_eq(buddy_alloc(&b, 9, &d), 0);
	buddy_free(&b, d, 9);

	/* ... and a small allocation leaves fail_huge alone */
	buddy_inject_fail_huge(&b, 1);
	ck_assert_int_eq(buddy_alloc(&b, 8, &d), 0);
	buddy_free(&b, d, 8);
	buddy_get_info(&b, &info);
	ck_assert_uint_eq(info.fail_huge, 1);
	buddy_inject_fail_huge(&b, 0);

	buddy_free(&b, d0, 0);
	check_carving(&b, 2048);
	buddy_destroy(&b);
}
END_TEST

START_TEST(test_invalid_free)
{
	struct buddy b;
	struct buddy_info before, after;
	uint32_t a, c, d, e;

	ck_assert_int_eq(buddy_init(&b, 1000), 0);
	ck_assert_int_eq(buddy_alloc(&b, 3, &a), 0);
	ck_assert_uint_eq(a, 992);
	ck_assert_int_eq(buddy_alloc(&b, 0, &c), 0);
	ck_assert_int_eq(buddy_alloc(&b, 9, &d), 0);
	ck_assert_int_eq(buddy_alloc(&b, 2, &e), 0);
	buddy_free(&b, e, 2);
	buddy_get_info(&b, &before);

	buddy_free(&b, a + 1, 3); /* unaligned */
	buddy_free(&b, a + 1, 0); /* inside a block */
	buddy_free(&b, a, 2);	  /* wrong order */
	buddy_free(&b, a, 4);	  /* wrong order, past the end */
	buddy_free(&b, c ^ 1, 0); /* free buddy of an allocated page */
	buddy_free(&b, e, 2);	  /* double free */
	buddy_free(&b, d + 8, 3); /* inside an order-9 block */
	buddy_free(&b, d, 8);	  /* head, wrong order */
	buddy_free(&b, 1000, 0);  /* out of range */
	buddy_free(&b, 1024, 0);
	buddy_free(&b, UINT32_MAX, 0);
	buddy_free(&b, 0, BUDDY_MAX_ORDER + 1);
	buddy_free(&b, 0, UINT32_MAX);

	/* the other entry points are just as defensive */
	ck_assert_uint_eq(buddy_put(&b, a + 1, 3, 1), 0);
	ck_assert_uint_eq(buddy_put(&b, e, 2, 1), 0);
	ck_assert_uint_eq(buddy_put(&b, 1000, 0, 1), 0);
	buddy_split(&b, d, 8);
	buddy_split(&b, e, 2);
	buddy_split(&b, UINT32_MAX, 0);
	ck_assert(!buddy_is_allocated(&b, UINT32_MAX, 0));
	ck_assert(!buddy_is_allocated(&b, 0, BUDDY_MAX_ORDER + 1));
	{
		uint32_t x;

		ck_assert_int_eq(buddy_alloc(&b, BUDDY_MAX_ORDER + 1, &x),
				 -EINVAL);
	}

	buddy_get_info(&b, &after);
	check_info_eq(&before, &after);
	ck_assert(buddy_is_allocated(&b, a, 3));
	ck_assert(buddy_is_allocated(&b, c, 0));
	ck_assert(buddy_is_allocated(&b, d, 9));
	ck_assert_uint_eq(buddy_put(&b, a, 3, 0), 8);
	ck_assert_uint_eq(buddy_put(&b, d, 9, 0), 512);

	/* a split block can no longer be freed whole */
	buddy_split(&b, a, 3);
	buddy_free(&b, a, 3);
	buddy_get_info(&b, &after);
	check_info_eq(&before, &after);
	for (uint32_t k = 0; k < 8; k++)
		buddy_free(&b, a + k, 0);

	buddy_free(&b, c, 0);
	buddy_free(&b, d, 9);
	check_carving(&b, 1000);
	buddy_destroy(&b);
}
END_TEST

/*
 * Randomized test against a reference model: a bitmap of used pages (pages
 * past the end of the pool count as used) and the list of live blocks.
 */
#define MODEL_MAX_PAGES 4096
#define MODEL_WORDS (MODEL_MAX_PAGES / 64)

struct mblock {
	uint32_t dpfn;
	unsigned order;
	unsigned live;
};

struct model {
	uint32_t npages;
	uint64_t used[MODEL_WORDS];
	struct mblock *blocks;
	size_t nblocks;
	uint64_t alloc_pages;
	int fail_pending;
};

static int model_test(const struct model *m, uint32_t p)
{
	return (m->used[p / 64] >> (p % 64)) & 1;
}

static void model_mark(struct model *m, uint32_t dpfn, unsigned order)
{
	for (uint32_t p = dpfn; p < dpfn + (1u << order); p++) {
		REQUIRE(!model_test(m, p)); /* overlap */
		m->used[p / 64] |= 1ull << (p % 64);
	}
	m->blocks[m->nblocks++] = (struct mblock){ dpfn, order, 1u << order };
	m->alloc_pages += 1u << order;
}

static void model_unmark(struct model *m, size_t idx)
{
	struct mblock *blk = &m->blocks[idx];

	for (uint32_t p = blk->dpfn; p < blk->dpfn + (1u << blk->order); p++) {
		REQUIRE(model_test(m, p));
		m->used[p / 64] &= ~(1ull << (p % 64));
	}
	m->alloc_pages -= 1u << blk->order;
	*blk = m->blocks[--m->nblocks];
}

/* Is there a free, naturally aligned range of 2^order pages? */
static int model_has_free(const struct model *m, unsigned order)
{
	if (order <= 6) {
		uint64_t aligned = 0;

		/* a bit at every multiple of 2^order */
		for (unsigned i = 0; i < 64; i += 1u << order)
			aligned |= 1ull << i;
		for (unsigned w = 0; w < MODEL_WORDS; w++) {
			uint64_t f = ~m->used[w];

			for (unsigned s = 1; s < (1u << order); s <<= 1)
				f &= f >> s;
			if (f & aligned)
				return 1;
		}
		return 0;
	}
	for (unsigned w = 0; w < MODEL_WORDS; w += 1u << (order - 6)) {
		unsigned k;

		for (k = 0; k < (1u << (order - 6)); k++) {
			if (m->used[w + k])
				break;
		}
		if (k == (1u << (order - 6)))
			return 1;
	}
	return 0;
}

static void model_check_quick(struct buddy *b, const struct model *m)
{
	struct buddy_info info;

	buddy_get_info(b, &info);
	REQUIRE(info.free_pages == m->npages - m->alloc_pages);
	REQUIRE(sum_free(&info) == info.free_pages);
}

static void model_check_full(struct buddy *b, const struct model *m)
{
	unsigned char is_head[MODEL_MAX_PAGES];
	size_t heads = 0;

	model_check_quick(b, m);
	check_free_lists(b, is_head);
	for (size_t i = 0; i < m->nblocks; i++) {
		const struct mblock *blk = &m->blocks[i];

		REQUIRE(!is_head[blk->dpfn]);
		is_head[blk->dpfn] = 1;

		REQUIRE(buddy_is_allocated(b, blk->dpfn, blk->order));
		/* a put of 0 reads the live count without changing it */
		REQUIRE(buddy_put(b, blk->dpfn, blk->order, 0) == blk->live);
	}
	check_non_heads_clear(b, is_head);
	/* no stale heads anywhere */
	for (uint32_t p = 0; p < m->npages; p++) {
		for (unsigned o = 0; o < BUDDY_NR_ORDERS; o++)
			heads += buddy_is_allocated(b, p, o);
	}
	REQUIRE(heads == m->nblocks);
}

static unsigned random_order(uint64_t *rs)
{
	/* biased to small orders, with some huge ones */
	static const unsigned char cdf[BUDDY_NR_ORDERS] = {
		45, 60, 70, 76, 80, 83, 86, 89, 92, 100
	};
	unsigned r = (unsigned)(xorshift64(rs) % 100);
	unsigned o = 0;

	while (r >= cdf[o])
		o++;
	return o;
}

static void random_run(uint32_t npages, uint64_t seed, unsigned nops)
{
	struct buddy b;
	struct model m;
	uint64_t rs = seed;

	memset(&m, 0, sizeof(m));
	m.npages = npages;
	m.blocks = calloc(npages, sizeof(*m.blocks));
	ck_assert_ptr_nonnull(m.blocks);
	for (uint32_t p = npages; p < MODEL_MAX_PAGES; p++)
		m.used[p / 64] |= 1ull << (p % 64);
	ck_assert_int_eq(buddy_init(&b, npages), 0);

	for (unsigned op = 0; op < nops; op++) {
		unsigned r = (unsigned)(xorshift64(&rs) % 100);
		/* lean towards freeing when the pool is getting full */
		unsigned alloc_pct =
			m.alloc_pages * 4 > (uint64_t)npages * 3 ? 30 : 48;

		if (r < alloc_pct) {
			unsigned order = random_order(&rs);
			uint32_t d;
			int ret = buddy_alloc(&b, order, &d);

			if (m.fail_pending) {
				REQUIRE(ret == -EAGAIN);
				m.fail_pending = 0;
			} else if (ret == 0) {
				REQUIRE(d % (1u << order) == 0);
				REQUIRE((uint64_t)d + (1u << order) <= npages);
				model_mark(&m, d, order);
			} else {
				REQUIRE(ret == -ENOMEM);
				/* full coalescing: no aligned free range */
				REQUIRE(!model_has_free(&m, order));
			}
		} else if (r < 75) {
			if (m.nblocks) {
				size_t i = xorshift64(&rs) % m.nblocks;

				buddy_free(&b, m.blocks[i].dpfn,
					   m.blocks[i].order);
				REQUIRE(!buddy_is_allocated(&b,
							    m.blocks[i].dpfn,
							    m.blocks[i].order));
				model_unmark(&m, i);
			}
		} else if (r < 80) {
			/* split a live huge block, if there is one */
			size_t start, i;

			if (!m.nblocks)
				continue;
			start = xorshift64(&rs) % m.nblocks;
			for (i = 0; i < m.nblocks; i++) {
				if (m.blocks[(start + i) % m.nblocks].order ==
				    BUDDY_MAX_ORDER)
					break;
			}
			if (i < m.nblocks) {
				size_t idx = (start + i) % m.nblocks;
				uint32_t d = m.blocks[idx].dpfn;

				buddy_split(&b, d, BUDDY_MAX_ORDER);
				model_unmark(&m, idx);
				for (uint32_t k = 0; k < HUGE_PAGES; k++)
					model_mark(&m, d + k, 0);
			}
		} else if (r < 98) {
			if (m.nblocks) {
				size_t i = xorshift64(&rs) % m.nblocks;
				struct mblock *blk = &m.blocks[i];
				/* sometimes more than is live, to clamp */
				unsigned n = (unsigned)(xorshift64(&rs) %
							(blk->live +
							 blk->live / 4 + 1));
				unsigned want =
					n >= blk->live ? 0 : blk->live - n;

				REQUIRE(buddy_put(&b, blk->dpfn, blk->order,
						  n) == want);
				blk->live = want;
				if (!want) {
					REQUIRE(!buddy_is_allocated(
						&b, blk->dpfn, blk->order));
					model_unmark(&m, i);
				}
			}
		} else if (!m.fail_pending) {
			buddy_inject_fail_any(&b, 1);
			m.fail_pending = 1;
		}

		model_check_quick(&b, &m);
		if (op % 4096 == 0)
			model_check_full(&b, &m);
	}
	model_check_full(&b, &m);

	if (m.fail_pending) {
		uint32_t d;

		REQUIRE(buddy_alloc(&b, 0, &d) == -ENOMEM);
	}
	while (m.nblocks) {
		buddy_free(&b, m.blocks[0].dpfn, m.blocks[0].order);
		model_unmark(&m, 0);
	}
	model_check_full(&b, &m);
	check_carving(&b, npages);

	buddy_destroy(&b);
	free(m.blocks);
}

START_TEST(test_random)
{
	static const uint64_t seeds[] = { 1, 0x9e3779b97f4a7c15ull,
					  0xdeadbeefcafef00dull, 42 };

	random_run(4096, seeds[_i], 200000);
}
END_TEST

/* A pool that is not a multiple of 2 MB exercises the truncated tail. */
START_TEST(test_random_odd_size)
{
	random_run(3000 + 37 * (uint32_t)_i, 0x1234567 + (uint64_t)_i, 100000);
}
END_TEST

#define NR_THREADS 4
#define THREAD_OPS 50000
#define THREAD_MAX_LIVE 64

struct thread_ctx {
	struct buddy *b;
	_Atomic unsigned char *owner;
	atomic_uint *errors;
	unsigned id;
};

static void thread_release(struct thread_ctx *t, uint32_t d, unsigned order)
{
	for (uint32_t p = d; p < d + (1u << order); p++) {
		if (atomic_exchange(&t->owner[p], 0) != t->id)
			atomic_fetch_add(t->errors, 1);
	}
}

static void *thread_fn(void *arg)
{
	struct thread_ctx *t = arg;
	struct mblock live[THREAD_MAX_LIVE];
	unsigned nlive = 0;
	uint64_t rs = 0x5eed0000 + t->id;

	for (unsigned op = 0; op < THREAD_OPS; op++) {
		unsigned r = (unsigned)(xorshift64(&rs) % 100);

		if (r < 50 && nlive < THREAD_MAX_LIVE) {
			unsigned order = random_order(&rs);
			uint32_t d;

			if (buddy_alloc(t->b, order, &d))
				continue;
			if (d % (1u << order))
				atomic_fetch_add(t->errors, 1);
			for (uint32_t p = d; p < d + (1u << order); p++) {
				/* another thread holding it is an overlap */
				if (atomic_exchange(&t->owner[p], t->id))
					atomic_fetch_add(t->errors, 1);
			}
			live[nlive++] =
				(struct mblock){ d, order, 1u << order };
		} else if (nlive) {
			unsigned i = (unsigned)(xorshift64(&rs) % nlive);
			struct mblock *blk = &live[i];

			thread_release(t, blk->dpfn, blk->order);
			if (r < 75) {
				buddy_free(t->b, blk->dpfn, blk->order);
			} else if (buddy_put(t->b, blk->dpfn, blk->order,
					     blk->live) != 0) {
				atomic_fetch_add(t->errors, 1);
			}
			*blk = live[--nlive];
		}
	}
	while (nlive) {
		nlive--;
		thread_release(t, live[nlive].dpfn, live[nlive].order);
		buddy_free(t->b, live[nlive].dpfn, live[nlive].order);
	}
	return NULL;
}

START_TEST(test_threads)
{
	const uint32_t npages = 4096;
	static _Atomic unsigned char owner[4096];
	atomic_uint errors = 0;
	struct thread_ctx ctx[NR_THREADS];
	pthread_t tid[NR_THREADS];
	struct buddy b;

	for (uint32_t p = 0; p < npages; p++)
		atomic_init(&owner[p], 0);
	ck_assert_int_eq(buddy_init(&b, npages), 0);
	for (unsigned i = 0; i < NR_THREADS; i++) {
		ctx[i] = (struct thread_ctx){ &b, owner, &errors, i + 1 };
		ck_assert_int_eq(
			pthread_create(&tid[i], NULL, thread_fn, &ctx[i]), 0);
	}
	for (unsigned i = 0; i < NR_THREADS; i++)
		ck_assert_int_eq(pthread_join(tid[i], NULL), 0);

	ck_assert_uint_eq(atomic_load(&errors), 0);
	check_carving(&b, npages);
	buddy_destroy(&b);
}
END_TEST

static Suite *buddy_suite(void)
{
	Suite *s = suite_create("buddy");
	TCase *tc = tcase_create("core");
	TCase *tc_rand = tcase_create("random");

	tcase_add_test(tc, test_init_sizes);
	tcase_add_loop_test(tc, test_every_order, 0, BUDDY_NR_ORDERS);
	tcase_add_test(tc, test_split_coalesce);
	tcase_add_test(tc, test_exhaustion);
	tcase_add_test(tc, test_reuse_other_order);
	tcase_add_test(tc, test_put);
	tcase_add_test(tc, test_fault_injection);
	tcase_add_test(tc, test_invalid_free);
	suite_add_tcase(s, tc);

	/* generous: these also run under valgrind and sanitizers */
	tcase_set_timeout(tc_rand, 300);
	tcase_add_loop_test(tc_rand, test_random, 0, 4);
	tcase_add_loop_test(tc_rand, test_random_odd_size, 0, 2);
	tcase_add_test(tc_rand, test_threads);
	suite_add_tcase(s, tc_rand);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(buddy_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
