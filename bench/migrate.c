/* SPDX-License-Identifier: MIT */
/*
 * devmem-bench sections 1 and 2: the kernel's THP-vs-4 KB migration
 * benchmark (hmm-tests' benchmark_thp_migration) reproduced on devmem, and
 * the CPU-fault-driven return of device-resident data.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "common.h"

static const char *const mode_name[NMODES] = { "THP", "4K" };

/* A buffer of one size, registered with devmem and filled, as the kernel's
 * benchmark prepares it: THP-backed (MADV_HUGEPAGE) or not
 * (MADV_NOHUGEPAGE). */
struct buffer {
	uint8_t *p;
	uint64_t size;
	uint64_t seed;
	bool registered;
};

static int buffer_setup(struct bench *b, struct buffer *buf, uint64_t size,
			enum mode mode, uint64_t seed)
{
	char sz[16];
	int err;

	memset(buf, 0, sizeof(*buf));
	buf->size = size;
	buf->seed = seed;
	buf->p = map_aligned(size, mode == MODE_THP);
	if (!buf->p) {
		fail(b, "%s %s: cannot map the buffer: %s",
		     size_str(size, sz, sizeof(sz)), mode_name[mode],
		     strerror(errno));
		return -ENOMEM;
	}
	/* Registered before the first touch, as an application that got its
	 * memory from devmem_alloc() would: devmem keeps first touches out of
	 * userfaultfd's way, so the fill still makes THPs. */
	err = devmem_register(b->dm, buf->p, size);
	if (err) {
		dm_fail(b, "devmem_register", err);
		unmap_aligned(buf->p, size);
		buf->p = NULL;
		return err;
	}
	buf->registered = true;
	fill_pattern(buf->p, size, seed);
	return 0;
}

static void buffer_release(struct bench *b, struct buffer *buf)
{
	int err;

	if (!buf->p)
		return;
	if (buf->registered) {
		/* after a failed migration some pages may still be on the
		 * device: devmem_unregister brings them back first */
		err = devmem_unregister(b->dm, buf->p, buf->size);
		if (err)
			dm_fail(b, "devmem_unregister", err);
	}
	unmap_aligned(buf->p, buf->size);
	buf->p = NULL;
}

/* The buffer still holds what we wrote: the bench reports nothing for a
 * run that lost or mixed up data. */
static bool buffer_verify(struct bench *b, const struct buffer *buf,
			  const char *what, enum mode mode)
{
	size_t off;
	char sz[16];

	if (check_pattern(buf->p, buf->size, buf->seed, &off))
		return true;
	fail(b,
	     "%s %s %s: data mismatch at offset %#zx after the round trips; no result for this row",
	     what, size_str(buf->size, sz, sizeof(sz)), mode_name[mode], off);
	return false;
}

/* 2 MB units of the buffer that are THPs, from devmem's snapshot; shown
 * when a THP row did not migrate huge units, to say why. */
static uint64_t count_thp_units(struct bench *b, const struct buffer *buf)
{
	uint64_t npages = buf->size / PAGE_SIZE, units = 0;
	uint8_t *st = malloc(npages);

	if (!st)
		return 0;
	if (!devmem_snapshot(b->dm, buf->p, npages, st)) {
		for (uint64_t u = 0; u < npages / FOLIO_PAGES; u++) {
			uint64_t k = 0;

			while (k < FOLIO_PAGES &&
			       st[u * FOLIO_PAGES + k] != DEVMEM_PAGE_ERROR &&
			       st[u * FOLIO_PAGES + k] & DEVMEM_PAGE_HUGE)
				k++;
			units += k == FOLIO_PAGES;
		}
	}
	free(st);
	return units;
}

/* One migration of the whole buffer; checks that every page arrived. */
static int migrate_all(struct bench *b, const struct buffer *buf,
		       enum devmem_target to, struct devmem_result *res)
{
	uint64_t npages = buf->size / PAGE_SIZE;
	int err = devmem_migrate(b->dm, buf->p, buf->size, to, 0, res);
	char sz[16];

	if (err) {
		fail(b, "devmem_migrate(%s, %s): %s",
		     size_str(buf->size, sz, sizeof(sz)),
		     to == DEVMEM_TO_DEVICE ? "DEVMEM_TO_DEVICE"
					    : "DEVMEM_TO_SYSTEM",
		     devmem_strerror(err));
		return err;
	}
	if (res->pages != npages) {
		fail(b, "devmem_migrate(%s, %s) left %llu of %llu pages behind",
		     size_str(buf->size, sz, sizeof(sz)),
		     to == DEVMEM_TO_DEVICE ? "DEVMEM_TO_DEVICE"
					    : "DEVMEM_TO_SYSTEM",
		     (unsigned long long)(npages - MIN(res->pages, npages)),
		     (unsigned long long)npages);
		return -EIO;
	}
	return 0;
}

static void note_huge(struct mig_result *r, int dir,
		      const struct devmem_result *res, bool first)
{
	if (first || res->huge < r->min_huge[dir])
		r->min_huge[dir] = res->huge;
	if (first || res->huge > r->max_huge[dir])
		r->max_huge[dir] = res->huge;
	r->splits += res->split;
}

/* The THP rows must have moved 2 MB units, the 4K rows must not have:
 * otherwise the row does not measure what it is labelled with. */
static void check_huge(struct bench *b, uint64_t size, enum mode mode,
		       const struct mig_result *r)
{
	static const char *const dir_name[2] = { "Sys->Dev", "Dev->Sys" };
	char sz[16];

	for (int d = 0; d < 2; d++) {
		if (r->min_huge[d] == r->expect_huge &&
		    r->max_huge[d] == r->expect_huge)
			continue;
		if (mode == MODE_THP)
			warn(b,
			     "%s THP %s moved %llu..%llu huge units per migration, expected %llu (%llu of %llu units were THPs after the fill): the THP row is not all 2 MB migration",
			     size_str(size, sz, sizeof(sz)), dir_name[d],
			     (unsigned long long)r->min_huge[d],
			     (unsigned long long)r->max_huge[d],
			     (unsigned long long)r->expect_huge,
			     (unsigned long long)r->thp_units,
			     (unsigned long long)(size / UNIT_SIZE));
		else
			warn(b,
			     "%s 4K %s moved %llu..%llu huge units per migration, expected none: the 4K row is not all 4 KB migration",
			     size_str(size, sz, sizeof(sz)), dir_name[d],
			     (unsigned long long)r->min_huge[d],
			     (unsigned long long)r->max_huge[d]);
	}
	if (r->splits)
		warn(b,
		     "%s %s: %llu 2 MB units fell back to 4 KB pages (split) during the iterations",
		     size_str(size, sz, sizeof(sz)), mode_name[mode],
		     (unsigned long long)r->splits);
}

/*
 * Section 1, one row: fill; one warm-up round trip; then timed
 * system->device and device->system migrations.  The figure for each
 * direction is the median of the iterations (min and max kept too).
 */
static void kernel_row(struct bench *b, unsigned i, enum mode mode)
{
	struct mig_result *r = &b->mig[i][mode];
	unsigned iters = b->opt.iterations;
	double *s2d = calloc(iters, sizeof(double));
	double *d2s = calloc(iters, sizeof(double));
	struct devmem_result res;
	struct buffer buf;
	char sz[16];

	memset(r, 0, sizeof(*r));
	r->failed = true;
	if (!s2d || !d2s ||
	    buffer_setup(b, &buf, b->opt.sizes[i], mode, 1 + 2 * i + mode))
		goto out;
	size_str(buf.size, sz, sizeof(sz));
	r->expect_huge = mode == MODE_THP ? buf.size / UNIT_SIZE : 0;
	if (mode == MODE_THP)
		r->thp_units = count_thp_units(b, &buf);
	progress(b, "kernel: %s %s", sz, mode_name[mode]);
	if (migrate_all(b, &buf, DEVMEM_TO_DEVICE, &res) ||
	    migrate_all(b, &buf, DEVMEM_TO_SYSTEM, &res))
		goto release;
	for (unsigned it = 0; it < iters; it++) {
		double t0, t1, t2;

		progress_iter(b, it + 1, iters);
		t0 = now_ns();
		if (migrate_all(b, &buf, DEVMEM_TO_DEVICE, &res))
			goto release;
		t1 = now_ns();
		note_huge(r, 0, &res, it == 0);
		if (migrate_all(b, &buf, DEVMEM_TO_SYSTEM, &res))
			goto release;
		t2 = now_ns();
		note_huge(r, 1, &res, it == 0);
		s2d[it] = (t1 - t0) / 1e6;
		d2s[it] = (t2 - t1) / 1e6;
	}
	if (!buffer_verify(b, &buf, "kernel", mode))
		goto release;
	summarize(s2d, iters, &r->s2d_ms);
	summarize(d2s, iters, &r->d2s_ms);
	check_huge(b, buf.size, mode, r);
	r->failed = false;
	r->done = true;
release:
	buffer_release(b, &buf);
out:
	free(s2d);
	free(d2s);
}

static bool fits_device(struct bench *b, uint64_t size, const char *section)
{
	char sz[16], cap[16];

	if (size <= b->dmd.capacity)
		return true;
	warn(b, "%s %s skipped: larger than the device (%s)", section,
	     size_str(size, sz, sizeof(sz)),
	     size_str(b->dmd.capacity, cap, sizeof(cap)));
	return false;
}

void run_kernel(struct bench *b)
{
	for (unsigned i = 0; i < b->opt.nsizes; i++) {
		if (!fits_device(b, b->opt.sizes[i], "kernel"))
			continue;
		kernel_row(b, i, MODE_THP);
		kernel_row(b, i, MODE_4K);
	}
	progress_done(b);
}

/* Faults one CPU pass over the buffer should take: one per device folio
 * (a whole 2 MB unit comes back on its first touch), one per page where the
 * data went as 4 KB pages (the 4K mode, and a THP buffer's partial unit). */
static uint64_t expected_faults(uint64_t size, enum mode mode)
{
	if (mode == MODE_4K)
		return size / PAGE_SIZE;
	return size / UNIT_SIZE + (size % UNIT_SIZE) / PAGE_SIZE;
}

static int cpu_faults(struct bench *b, uint64_t *out)
{
	struct devmem_stats st;
	int err = devmem_stats(b->dm, &st);

	if (err)
		dm_fail(b, "devmem_stats", err);
	*out = st.cpu_faults;
	return err;
}

/*
 * Read one byte of every 4 KB page, timing only the first touch of each
 * device folio (the one that faults): clock reads on the other 511 pages
 * of a 2 MB unit would cost more than touching them.  Returns the pass's
 * total time in ns; the per-fault times in µs go to us[].
 */
static double touch_pass(const struct buffer *buf, enum mode mode, double *us,
			 uint64_t *nfaults)
{
	volatile const uint8_t *p = buf->p;
	uint64_t whole = mode == MODE_THP ? buf->size / UNIT_SIZE : 0;
	uint64_t npages = buf->size / PAGE_SIZE, k = 0;
	uint8_t sink = 0;
	double start = now_ns(), t0, t1;

	for (uint64_t u = 0; u < whole; u++) {
		uint64_t base = u * UNIT_SIZE;

		t0 = now_ns();
		sink ^= p[base];
		t1 = now_ns();
		us[k++] = (t1 - t0) / 1e3;
		for (uint64_t off = PAGE_SIZE; off < UNIT_SIZE;
		     off += PAGE_SIZE)
			sink ^= p[base + off];
	}
	for (uint64_t pg = whole * FOLIO_PAGES; pg < npages; pg++) {
		t0 = now_ns();
		sink ^= p[pg * PAGE_SIZE];
		t1 = now_ns();
		us[k++] = (t1 - t0) / 1e3;
	}
	(void)sink;
	*nfaults = k;
	return now_ns() - start;
}

/*
 * Section 2, one row: migrate to the device, then let CPU reads bring the
 * data back, fault by fault; one warm-up pass, then the iterations.
 */
static void fault_row(struct bench *b, unsigned i, enum mode mode)
{
	struct fault_result *r = &b->fault[i][mode];
	unsigned iters = b->opt.iterations;
	uint64_t size = b->opt.sizes[i], per_pass = expected_faults(size, mode);
	double *us = calloc((size_t)per_pass * iters, sizeof(double));
	double *total = calloc(iters, sizeof(double));
	uint64_t nus = 0, before, after, got;
	struct devmem_result res;
	cpu_set_t saved, one;
	struct buffer buf;
	char sz[16];

	memset(r, 0, sizeof(*r));
	r->failed = true;
	r->expect_faults = per_pass;
	r->faults_known = true;
	if (!us || !total ||
	    buffer_setup(b, &buf, size, mode, 101 + 2 * i + mode))
		goto out;
	size_str(size, sz, sizeof(sz));
	progress(b, "fault: %s %s", sz, mode_name[mode]);
	for (unsigned it = 0; it <= iters; it++) {
		bool warmup = it == 0;
		double ns;

		if (!warmup)
			progress_iter(b, it, iters);
		if (migrate_all(b, &buf, DEVMEM_TO_DEVICE, &res))
			goto release;
		if (cpu_faults(b, &before))
			goto release;
		/* on one CPU, as the ceiling's fastest row: devmemd has a
		 * resolver on every CPU, and a scheduler moving this thread
		 * mid-pass measures the scheduler */
		CPU_ZERO(&one);
		CPU_SET(MAX(sched_getcpu(), 0), &one);
		pthread_getaffinity_np(pthread_self(), sizeof(saved), &saved);
		pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
		ns = touch_pass(&buf, mode, us + nus, &got);
		pthread_setaffinity_np(pthread_self(), sizeof(saved), &saved);
		if (cpu_faults(b, &after))
			goto release;
		if (after - before != per_pass)
			r->faults_known = false;
		r->faults = after - before;
		if (warmup)
			continue;
		nus += got;
		total[it - 1] = ns / 1e6;
	}
	if (!buffer_verify(b, &buf, "fault", mode))
		goto release;
	summarize(us, (unsigned)nus, &r->fault_us);
	summarize(total, iters, &r->total_ms);
	if (!r->faults_known)
		warn(b,
		     "fault %s %s: devmemd counted %llu CPU faults in a pass, expected %llu",
		     sz, mode_name[mode], (unsigned long long)r->faults,
		     (unsigned long long)per_pass);
	r->failed = false;
	r->done = true;
release:
	buffer_release(b, &buf);
out:
	free(us);
	free(total);
}

void run_fault(struct bench *b)
{
	for (unsigned i = 0; i < b->opt.nsizes; i++) {
		if (!fits_device(b, b->opt.sizes[i], "fault"))
			continue;
		fault_row(b, i, MODE_THP);
		fault_row(b, i, MODE_4K);
	}
	progress_done(b);
}
