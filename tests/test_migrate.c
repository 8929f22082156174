/* SPDX-License-Identifier: MIT */
/*
 * The migration engine against a real devmemd: DESIGN.md semantics 0-5 and
 * 10, the scenarios of the kernel's hmm-tests.c that apply to devmem, and
 * races.  Every test checks the data, the snapshot and the counters.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"

#define BUF (4ul << 20) /* hmm-tests' HMM_BUFFER_SIZE */
#define NPAGES(len) ((len) / PG)

/* snapshot bytes, as dmirror's */
#define S_DEV_W (DEVMEM_PAGE_DEVICE | DEVMEM_PAGE_WRITE)    /* 0x22 */
#define S_DEV_R (DEVMEM_PAGE_DEVICE | DEVMEM_PAGE_READ)	    /* 0x21 */
#define S_DEV_W_HUGE (S_DEV_W | DEVMEM_PAGE_HUGE)	    /* 0x26 */
#define S_DEV_R_HUGE (S_DEV_R | DEVMEM_PAGE_HUGE)	    /* 0x25 */
#define S_SYS_W DEVMEM_PAGE_WRITE			    /* 0x02 */
#define S_SYS_W_HUGE (DEVMEM_PAGE_WRITE | DEVMEM_PAGE_HUGE) /* 0x06 */
#define S_ZERO (DEVMEM_PAGE_ZERO | DEVMEM_PAGE_READ)	    /* 0x11 */

static struct daemon D;
static devmem_t *dm;

static void start(const char *const *args)
{
	daemon_start(&D, args);
	dm = daemon_connect(&D);
}

static void stop(void)
{
	struct devmem_stats st = stats_of(dm);

	devmem_disconnect(dm);
	dm = NULL;
	(void)st;
	ck_assert_int_eq(daemon_stop(&D), 0);
}

static void reg(void *p, size_t len)
{
	int err = devmem_register(dm, p, len);

	ck_assert_msg(!err, "devmem_register: %s", devmem_strerror(err));
}

static struct devmem_result migrate(void *p, size_t len, int to, unsigned flags)
{
	struct devmem_result res;
	int err = devmem_migrate(dm, p, len, to, flags, &res);

	ck_assert_msg(!err, "devmem_migrate: %s", devmem_strerror(err));
	return res;
}

static void *mirror(size_t len)
{
	void *m = malloc(len);

	ck_assert_ptr_nonnull(m);
	memset(m, 0xff, len);
	return m;
}

static void assert_zero(const void *p, size_t len)
{
	long i = check_bytes(p, len, 0);

	ck_assert_msg(i < 0, "byte %ld is %#x, not 0", i,
		      i < 0 ? 0 : ((const uint8_t *)p)[i]);
}

/* ---- hmm-tests: plain anonymous memory ---- */

START_TEST(test_migrate)
{
	int *p, *m;
	struct devmem_result res;
	struct devmem_stats st;

	start(NULL);
	p = map_aligned(BUF, PROT_READ | PROT_WRITE, false);
	m = mirror(BUF);
	reg(p, BUF);
	fill_ints(p, BUF, 0);
	res = migrate(p, BUF, DEVMEM_TO_DEVICE, 0);
	ck_assert_uint_eq(res.pages, NPAGES(BUF));
	ck_assert_uint_eq(res.huge, 0); /* 4 KB pages: PTE-mapped memory */
	ck_assert_uint_eq(res.split, 0);
	ck_assert(snap_all(dm, p, NPAGES(BUF), S_DEV_W));
	ck_assert_int_eq(devmem_device_read(dm, p, BUF, m, &res), 0);
	ck_assert_uint_eq(res.pages, NPAGES(BUF));
	ck_assert_uint_eq(res.faults, 0); /* all of it is device memory */
	ck_assert_int_eq(check_ints(m, BUF, 0), -1);
	st = stats_of(dm);
	ck_assert_uint_eq(st.to_device_pages, NPAGES(BUF));
	ck_assert_uint_eq(st.client_used, BUF);
	ck_assert_uint_eq(st.used, BUF);
	ck_assert_uint_eq(st.cpu_faults, 0);
	ck_assert_uint_eq(st.capacity, 1ul << 30);
	/* pages already on the device stay there and count */
	res = migrate(p, BUF, DEVMEM_TO_DEVICE, 0);
	ck_assert_uint_eq(res.pages, NPAGES(BUF));
	ck_assert_uint_eq(stats_of(dm).to_device_pages, NPAGES(BUF));
	free(m);
	stop();
}
END_TEST

START_TEST(test_migrate_fault)
{
	size_t half = BUF / 2;
	struct devmem_result res;
	struct devmem_stats st;
	int *p, *m;

	start(NULL);
	p = map_aligned(BUF, PROT_READ | PROT_WRITE, false);
	m = mirror(BUF);
	reg(p, BUF);
	fill_ints(p, BUF, 0);
	res = migrate(p, BUF, DEVMEM_TO_DEVICE, 0);
	ck_assert_uint_eq(res.pages, NPAGES(BUF));
	/* the CPU reads the first half: it faults back, page by page */
	ck_assert_int_eq(check_ints(p, half, 0), -1);
	ck_assert(snap_all(dm, p, NPAGES(half), S_SYS_W));
	ck_assert(snap_all(dm, (char *)p + half, NPAGES(half), S_DEV_W));
	st = stats_of(dm);
	ck_assert_uint_eq(st.cpu_faults, NPAGES(half));
	ck_assert_uint_eq(st.to_system_pages, NPAGES(half));
	ck_assert_uint_eq(st.client_used, half);
	res = migrate(p, BUF, DEVMEM_TO_DEVICE, 0);
	ck_assert_uint_eq(res.pages, NPAGES(BUF));
	ck_assert_int_eq(devmem_device_read(dm, p, BUF, m, NULL), 0);
	ck_assert_int_eq(check_ints(m, BUF, 0), -1);
	ck_assert_uint_eq(stats_of(dm).to_device_pages,
			  NPAGES(BUF) + NPAGES(half));
	free(m);
	stop();
}
END_TEST

START_TEST(test_migrate_multiple)
{
	start(NULL);
	for (int n = 0; n < 10; n++) {
		int *p = map_aligned(BUF, PROT_READ | PROT_WRITE, false);
		int *m = mirror(BUF);
		struct devmem_result res;

		reg(p, BUF);
		fill_ints(p, BUF, n);
		res = migrate(p, BUF, DEVMEM_TO_DEVICE, 0);
		ck_assert_uint_eq(res.pages, NPAGES(BUF));
		ck_assert_int_eq(devmem_device_read(dm, p, BUF, m, NULL), 0);
		ck_assert_int_eq(check_ints(m, BUF, n), -1);
		/* the CPU read faults everything back */
		ck_assert_int_eq(check_ints(p, BUF, n), -1);
		ck_assert_uint_eq(stats_of(dm).client_used, 0);
		ck_assert_int_eq(devmem_unregister(dm, p, BUF), 0);
		munmap(p, BUF);
		free(m);
	}
	ck_assert_uint_eq(stats_of(dm).cpu_faults, 10 * NPAGES(BUF));
	ck_assert_uint_eq(stats_of(dm).used, 0);
	stop();
}
END_TEST

START_TEST(test_anon_read)
{
	struct devmem_result res;
	int *p, *m;

	start(NULL);
	p = map_aligned(BUF, PROT_READ | PROT_WRITE, false);
	m = mirror(BUF);
	reg(p, BUF);
	/* pages 0 and 1 stay untouched; page 1 maps the zero page */
	for (size_t i = 2 * PG / sizeof(int); i < BUF / sizeof(int); i++)
		p[i] = (int)i;
	ck_assert_int_eq(mprotect(p, BUF, PROT_READ), 0);
	ck_assert_int_eq(*(volatile int *)((char *)p + PG), 0);
	ck_assert_uint_eq(snap_one(dm, p), DEVMEM_PAGE_NONE);
	ck_assert_uint_eq(snap_one(dm, (char *)p + PG), S_ZERO);
	ck_assert_int_eq(devmem_device_read(dm, p, BUF, m, &res), 0);
	ck_assert_uint_eq(res.pages, NPAGES(BUF));
	ck_assert_uint_eq(res.faults, 1);
	assert_zero(m, 2 * PG);
	ck_assert_int_eq(check_ints((char *)m + 2 * PG, BUF - 2 * PG,
				    (int)(2 * PG / sizeof(int))),
			 -1);
	ck_assert_uint_eq(stats_of(dm).to_device_pages, 0); /* no migration */
	free(m);
	stop();
}
END_TEST

START_TEST(test_anon_read_prot)
{
	struct devmem_result res;
	int *p, *m;

	start(NULL);
	p = map_aligned(BUF, PROT_READ | PROT_WRITE, false);
	m = malloc(BUF);
	reg(p, BUF);
	fill_ints(p, BUF, 0);
	for (size_t i = 0; i < BUF / sizeof(int); i++)
		m[i] = -(int)i;
	ck_assert_int_eq(mprotect(p, BUF, PROT_NONE), 0);
	ck_assert_int_eq(devmem_device_read(dm, p, BUF, m, &res), -EFAULT);
	ck_assert_uint_eq(snap_one(dm, p), DEVMEM_PAGE_ERROR);
	ck_assert_int_eq(mprotect(p, BUF, PROT_READ), 0);
	ck_assert_int_eq(check_ints(p, BUF, 0), -1);
	for (size_t i = 0; i < BUF / sizeof(int); i++)
		if (m[i] != -(int)i)
			ck_abort_msg("int %zu was copied", i); /* nothing was */
	free(m);
	stop();
}
END_TEST

START_TEST(test_anon_write)
{
	struct devmem_result res;
	int *p, *m;

	start(NULL);
	p = map_aligned(BUF, PROT_READ | PROT_WRITE, false);
	m = malloc(BUF);
	reg(p, BUF);
	fill_ints(m, BUF, 0);
	ck_assert_int_eq(devmem_device_write(dm, p, BUF, m, &res), 0);
	ck_assert_uint_eq(res.pages, NPAGES(BUF));
	ck_assert_uint_eq(res.faults, 1);
	ck_assert_int_eq(check_ints(p, BUF, 0), -1);
	/* and through the device into device memory */
	migrate(p, BUF, DEVMEM_TO_DEVICE, 0);
	fill_ints(m, BUF, 7);
	ck_assert_int_eq(devmem_device_write(dm, p, BUF, m, &res), 0);
	ck_assert_uint_eq(res.faults, 0);
	ck_assert(snap_all(dm, p, NPAGES(BUF), S_DEV_W));
	ck_assert_int_eq(check_ints(p, BUF, 7), -1);
	free(m);
	stop();
}
END_TEST

START_TEST(test_anon_write_prot)
{
	struct devmem_result res;
	int *p, *m;

	start(NULL);
	p = map_aligned(BUF, PROT_READ, false);
	m = mirror(BUF);
	reg(p, BUF);
	ck_assert_int_eq(devmem_device_read(dm, p, PG, m, &res), 0);
	ck_assert_uint_eq(res.pages, 1);
	ck_assert_uint_eq(res.faults, 1);
	fill_ints(m, BUF, 0);
	ck_assert_int_eq(devmem_device_write(dm, p, BUF, m, &res), -EPERM);
	assert_zero(p, BUF);
	ck_assert_int_eq(mprotect(p, BUF, PROT_READ | PROT_WRITE), 0);
	ck_assert_int_eq(devmem_device_write(dm, p, BUF, m, &res), 0);
	ck_assert_uint_eq(res.pages, NPAGES(BUF));
	ck_assert_uint_eq(res.faults, 1);
	ck_assert_int_eq(check_ints(p, BUF, 0), -1);
	free(m);
	stop();
}
END_TEST

START_TEST(test_migrate_shared)
{
	void *p;

	start(NULL);
	p = mmap(NULL, BUF, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		 -1, 0);
	ck_assert_ptr_ne(p, MAP_FAILED);
	ck_assert_int_eq(devmem_register(dm, p, BUF), -EINVAL);
	ck_assert_int_eq(devmem_migrate(dm, p, BUF, DEVMEM_TO_DEVICE, 0, NULL),
			 -EINVAL);
	munmap(p, BUF);
	stop();
}
END_TEST

/* ---- hmm-tests: THP (device-THP series) ---- */

START_TEST(test_migrate_anon_huge_empty)
{
	struct devmem_result res;
	void *p, *m;
	struct devmem_stats st;

	start(NULL);
	p = map_aligned(MB2, PROT_READ, true);
	m = mirror(MB2);
	reg(p, MB2);
	res = migrate(p, MB2, DEVMEM_TO_DEVICE, 0);
	ck_assert_uint_eq(res.pages, 512);
	ck_assert_uint_eq(res.huge, 1); /* an empty unit moves as a folio */
	ck_assert(snap_all(dm, p, 512, S_DEV_R_HUGE));
	ck_assert_int_eq(devmem_device_read(dm, p, MB2, m, NULL), 0);
	assert_zero(m, MB2);
	assert_zero(p, MB2); /* the CPU fault brings it back */
	st = stats_of(dm);
	ck_assert_uint_eq(st.cpu_faults, 1);
	ck_assert_uint_eq(st.huge_migrations, 2);
	ck_assert_uint_eq(st.to_system_pages, 512);
	ck_assert_uint_eq(st.client_used, 0);
	/* as on plain memory: the huge zero page */
	ck_assert(snap_all(dm, p, 512, S_ZERO | DEVMEM_PAGE_HUGE));
	free(m);
	stop();
}
END_TEST

START_TEST(test_migrate_anon_huge_zero)
{
	struct devmem_result res;
	int *p;
	void *m;

	start(NULL);
	p = map_aligned(MB2, PROT_READ, true);
	m = mirror(MB2);
	reg(p, MB2);
	ck_assert_int_eq(*(volatile int *)p, 0); /* the huge zero page */
	ck_assert(snap_all(dm, p, 512, S_ZERO | DEVMEM_PAGE_HUGE));
	res = migrate(p, MB2, DEVMEM_TO_DEVICE, 0);
	ck_assert_uint_eq(res.pages, 512);
	ck_assert_uint_eq(res.huge, 1);
	ck_assert(snap_all(dm, p, 512, S_DEV_R_HUGE));
	ck_assert_int_eq(devmem_device_read(dm, p, MB2, m, NULL), 0);
	assert_zero(m, MB2);
	assert_zero(p, MB2);
	ck_assert_uint_eq(stats_of(dm).client_used, 0);
	free(m);
	stop();
}
END_TEST

START_TEST(test_migrate_anon_huge_free)
{
	struct devmem_result res;
	int *p, *m;

	start(NULL);
	p = map_aligned(MB2, PROT_READ | PROT_WRITE, true);
	m = mirror(MB2);
	reg(p, MB2);
	fill_ints(p, MB2, 0);
	ck_assert_uint_eq(thp_pages(dm, p, MB2), 512);
	res = migrate(p, MB2, DEVMEM_TO_DEVICE, 0);
	ck_assert_uint_eq(res.pages, 512);
	ck_assert_uint_eq(res.huge, 1);
	ck_assert_int_eq(devmem_device_read(dm, p, MB2, m, NULL), 0);
	ck_assert_int_eq(check_ints(m, MB2, 0), -1);
	ck_assert_int_eq(madvise(p, MB2, MADV_FREE), 0);
	free(m);
	stop();
}
END_TEST

START_TEST(test_migrate_anon_huge_fault)
{
	struct devmem_result res;
	struct devmem_stats st;
	int *p, *m;

	start(NULL);
	p = map_aligned(MB2, PROT_READ | PROT_WRITE, false);
	ck_assert_int_eq(madvise(p, MB2, MADV_HUGEPAGE), 0);
	m = mirror(MB2);
	reg(p, MB2);
	fill_ints(p, MB2, 0);
	ck_assert_int_eq(madvise(p, MB2, 25 /* MADV_COLLAPSE */), 0);
	ck_assert_uint_eq(thp_pages(dm, p, MB2), 512);
	res = migrate(p, MB2, DEVMEM_TO_DEVICE, 0);
	ck_assert_uint_eq(res.pages, 512);
	ck_assert_uint_eq(res.huge, 1);
	ck_assert_int_eq(devmem_device_read(dm, p, MB2, m, NULL), 0);
	ck_assert_int_eq(check_ints(m, MB2, 0), -1);
	ck_assert(snap_all(dm, p, 512, S_DEV_W_HUGE));
	/* one CPU fault brings the folio back whole, as a THP */
	ck_assert_int_eq(check_ints(p, MB2, 0), -1);
	ck_assert(snap_all(dm, p, 512, S_SYS_W_HUGE));
	st = stats_of(dm);
	ck_assert_uint_eq(st.cpu_faults, 1);
	ck_assert_uint_eq(st.huge_migrations, 2);
	ck_assert_uint_eq(st.to_system_pages, 512);
	ck_assert_uint_eq(st.splits, 0);
	ck_assert_uint_eq(st.client_used, 0);
	free(m);
	stop();
}
END_TEST

START_TEST(test_migrate_anon_huge_err)
{
	struct devmem_result res;
	struct devmem_stats st;
	int *p, *m;

	start(NULL);
	p = map_aligned(MB2, PROT_READ | PROT_WRITE, true);
	m = mirror(MB2);
	reg(p, MB2);
	fill_ints(p, MB2, 0);
	/* the order-9 device allocation fails: 512 order-0 pages instead */
	ck_assert_int_eq(devmem_inject(dm, DEVMEM_INJECT_FAIL_HUGE_ALLOC, 1),
			 0);
	res = migrate(p, MB2, DEVMEM_TO_DEVICE, 0);
	ck_assert_uint_eq(res.pages, 512);
	ck_assert_uint_eq(res.huge, 0);
	ck_assert_uint_eq(res.split, 1);
	ck_assert(snap_all(dm, p, 512, S_DEV_W));
	ck_assert_int_eq(devmem_device_read(dm, p, MB2, m, NULL), 0);
	ck_assert_int_eq(check_ints(m, MB2, 0), -1);
	/* a 4 KB device page faults back alone */
	ck_assert_int_eq(p[2048], 2048);
	ck_assert_uint_eq(snap_one(dm, (char *)p + 2 * PG), S_SYS_W);
	ck_assert_uint_eq(snap_one(dm, (char *)p + 3 * PG), S_DEV_W);
	st = stats_of(dm);
	ck_assert_uint_eq(st.cpu_faults, 1);
	ck_assert_uint_eq(st.splits, 1);
	ck_assert_uint_eq(st.client_used, MB2 - PG);

	/* phase 2: a folio on its way back as 4 KB pages (split) */
	ck_assert_int_eq(devmem_unregister(dm, p, MB2), 0);
	munmap(p, MB2);
	p = map_aligned(MB2, PROT_READ | PROT_WRITE, true);
	reg(p, MB2);
	fill_ints(p, MB2, 1);
	res = migrate(p, MB2, DEVMEM_TO_DEVICE, 0);
	ck_assert_uint_eq(res.huge, 1);
	res = migrate(p, MB2, DEVMEM_TO_SYSTEM, DEVMEM_MIGRATE_4K);
	ck_assert_uint_eq(res.pages, 512);
	ck_assert_uint_eq(res.huge, 0);
	ck_assert_uint_eq(res.split, 1);
	ck_assert_int_eq(p[2048], 2049);
	ck_assert_int_eq(check_ints(p, MB2, 1), -1);
	ck_assert(snap_all(dm, p, 512, S_SYS_W));
	st = stats_of(dm);
	ck_assert_uint_eq(st.splits, 2);
	ck_assert_uint_eq(st.cpu_faults, 1);
	ck_assert_uint_eq(st.client_used, 0);
	free(m);
	stop();
}
END_TEST

START_TEST(test_migrate_anon_huge_zero_err)
{
	struct devmem_result res;
	int *p;
	void *m;

	start(NULL);
	p = map_aligned(MB2, PROT_READ, true);
	m = mirror(MB2);
	reg(p, MB2);
	ck_assert_int_eq(devmem_inject(dm, DEVMEM_INJECT_FAIL_HUGE_ALLOC, 1),
			 0);
	res = migrate(p, MB2, DEVMEM_TO_DEVICE, 0);
	ck_assert_uint_eq(res.pages, 512);
	ck_assert_uint_eq(res.split, 1);
	ck_assert_uint_eq(res.huge, 0);
	ck_assert(snap_all(dm, p, 512, S_DEV_R));
	ck_assert_int_eq(devmem_device_read(dm, p, MB2, m, NULL), 0);
	assert_zero(m, MB2);
	ck_assert_int_eq(p[2048], 0);
	ck_assert_uint_eq(stats_of(dm).cpu_faults, 1);

	/* phase 2: the huge zero page, and the injected failure again */
	ck_assert_int_eq(devmem_unregister(dm, p, MB2), 0);
	munmap(p, MB2);
	p = map_aligned(MB2, PROT_READ, true);
	reg(p, MB2);
	ck_assert_int_eq(p[0], 0);
	ck_assert_int_eq(devmem_inject(dm, DEVMEM_INJECT_FAIL_HUGE_ALLOC, 1),
			 0);
	res = migrate(p, MB2, DEVMEM_TO_DEVICE, 0);
	ck_assert_uint_eq(res.pages, 512);
	ck_assert_uint_eq(res.split, 1);
	assert_zero(p, MB2);
	ck_assert_uint_eq(stats_of(dm).client_used, 0);
	free(m);
	stop();
}
END_TEST

/* ---- semantics 0: memory at rest runs as plain memory ---- */

START_TEST(test_rest_plain_memory)
{
	size_t len = 4 * MB2;
	struct devmem_result res;
	struct devmem_stats st;
	char *p;
	int *q;

	start(NULL);
	p = map_aligned(len, PROT_READ | PROT_WRITE, true);
	reg(p, len);
	/* first touch of registered memory: THPs, no devmemd round trip */
	memset(p, 1, MB2);
	ck_assert_uint_eq(thp_pages(dm, p, MB2), 512);
	ck_assert_uint_eq(stats_of(dm).cpu_faults, 0);
	/* a unit on the device leaves its neighbours alone */
	migrate(p, MB2, DEVMEM_TO_DEVICE, 0);
	memset(p + MB2, 2, MB2);
	ck_assert_uint_eq(thp_pages(dm, p + MB2, MB2), 512);
	ck_assert_uint_eq(stats_of(dm).cpu_faults, 0);
	/* once back, a unit is plain memory again: emptied and touched, it
	 * gets a THP without devmemd */
	migrate(p, MB2, DEVMEM_TO_SYSTEM, 0);
	ck_assert_int_eq(madvise(p, MB2, MADV_DONTNEED), 0);
	memset(p, 3, MB2);
	ck_assert_uint_eq(thp_pages(dm, p, MB2), 512);
	st = stats_of(dm);
	ck_assert_uint_eq(st.cpu_faults, 0);
	ck_assert_uint_eq(st.huge_migrations, 2);
	munmap(p, len); /* nothing on the device: nothing to free */
	ck_assert_int_eq(devmem_unregister(dm, p, len), 0);

	/* devmem_alloc(HUGE) memory the application fills moves as 2 MB */
	q = devmem_alloc(dm, len, DEVMEM_ALLOC_HUGE);
	ck_assert_ptr_nonnull(q);
	ck_assert_uint_eq((uintptr_t)q % MB2, 0);
	fill_ints(q, len, 5);
	res = migrate(q, len, DEVMEM_TO_DEVICE, 0);
	ck_assert_uint_eq(res.huge, 4);
	ck_assert_uint_eq(res.pages, NPAGES(len));
	ck_assert_int_eq(check_ints(q, len, 5), -1);
	ck_assert_uint_eq(thp_pages(dm, q, len), NPAGES(len));
	ck_assert_int_eq(devmem_free(dm, q, len), 0);
	ck_assert_uint_eq(stats_of(dm).client_used, 0);
	stop();
}
END_TEST

/* ---- partial ranges and explicit returns ---- */

START_TEST(test_partial_units)
{
	size_t len = 6 * MB2;
	struct devmem_result res;
	char *p, *r;

	start(NULL);
	p = map_aligned(len, PROT_READ | PROT_WRITE, true);
	fill_ints(p, len, 3);
	/* [1 MB, 3 MB): two partial units, nothing huge */
	r = p + MB2 / 2;
	reg(r, MB2);
	res = migrate(r, MB2, DEVMEM_TO_DEVICE, 0);
	ck_assert_uint_eq(res.pages, NPAGES(MB2));
	ck_assert_uint_eq(res.huge, 0);
	ck_assert(snap_all(dm, r, NPAGES(MB2), S_DEV_W));
	ck_assert_int_eq(check_ints(p, len, 3), -1);
	ck_assert_int_eq(devmem_unregister(dm, r, MB2), 0);
	/* [5 MB, 11 MB): a partial unit, two whole ones, a partial one */
	r = p + 2 * MB2 + MB2 / 2;
	reg(r, 3 * MB2);
	res = migrate(r, 3 * MB2, DEVMEM_TO_DEVICE, 0);
	ck_assert_uint_eq(res.pages, NPAGES(3 * MB2));
	ck_assert_uint_eq(res.huge, 2);
	ck_assert(snap_all(dm, p + 3 * MB2, NPAGES(2 * MB2), S_DEV_W_HUGE));
	ck_assert(snap_all(dm, r, NPAGES(MB2 / 2), S_DEV_W));
	/* part of a 2 MB folio back: it is split, the rest stays */
	res = migrate(p + 3 * MB2 + MB2 / 4, MB2 / 2, DEVMEM_TO_SYSTEM, 0);
	ck_assert_uint_eq(res.pages, NPAGES(MB2 / 2));
	ck_assert_uint_eq(res.split, 1);
	ck_assert_uint_eq(res.huge, 0);
	ck_assert(
		snap_all(dm, p + 3 * MB2 + MB2 / 4, NPAGES(MB2 / 2), S_SYS_W));
	ck_assert(snap_all(dm, p + 3 * MB2, NPAGES(MB2 / 4), S_DEV_W));
	ck_assert(
		snap_all(dm, p + 4 * MB2 - MB2 / 4, NPAGES(MB2 / 4), S_DEV_W));
	ck_assert(snap_all(dm, p + 4 * MB2, NPAGES(MB2), S_DEV_W_HUGE));
	/* "whole" free policy: the split folio is kept until its last page */
	ck_assert_uint_eq(stats_of(dm).client_used, 3 * MB2);
	ck_assert_uint_eq(stats_of(dm).splits, 1);
	ck_assert_int_eq(check_ints(p, len, 3), -1);
	ck_assert_uint_eq(stats_of(dm).client_used, 0);
	stop();
}
END_TEST

START_TEST(test_bad_input)
{
	char *p, buf[PG];
	uint8_t st[4];

	start(NULL);
	p = map_aligned(BUF, PROT_READ | PROT_WRITE, false);
	/* nothing registered yet */
	ck_assert_int_eq(devmem_migrate(dm, p, BUF, DEVMEM_TO_DEVICE, 0, NULL),
			 -EINVAL);
	reg(p, MB2);
	ck_assert_int_eq(
		devmem_migrate(dm, p + 1, PG, DEVMEM_TO_DEVICE, 0, NULL),
		-EINVAL);
	ck_assert_int_eq(devmem_migrate(dm, p, 100, DEVMEM_TO_DEVICE, 0, NULL),
			 -EINVAL);
	ck_assert_int_eq(devmem_migrate(dm, p, 0, DEVMEM_TO_DEVICE, 0, NULL),
			 -EINVAL);
	ck_assert_int_eq(devmem_migrate(dm, p, PG, 7, 0, NULL), -EINVAL);
	ck_assert_int_eq(
		devmem_migrate(dm, p, PG, DEVMEM_TO_DEVICE, 0x80, NULL),
		-EINVAL);
	/* beyond the registered range */
	ck_assert_int_eq(
		devmem_migrate(dm, p, 2 * MB2, DEVMEM_TO_DEVICE, 0, NULL),
		-EINVAL);
	ck_assert_int_eq(
		devmem_migrate(dm, p + MB2, PG, DEVMEM_TO_SYSTEM, 0, NULL),
		-EINVAL);
	ck_assert_int_eq(devmem_migrate(dm, (void *)(UINTPTR_MAX & ~4095ul),
					1ul << 20, DEVMEM_TO_DEVICE, 0, NULL),
			 -EINVAL);
	ck_assert_int_eq(devmem_device_read(dm, p, PG, NULL, NULL), -EINVAL);
	ck_assert_int_eq(devmem_device_read(dm, p, 0, buf, NULL), -EINVAL);
	ck_assert_int_eq(devmem_device_read(dm, p + MB2, PG, buf, NULL),
			 -EINVAL);
	ck_assert_int_eq(devmem_snapshot(dm, p, 0, st), -EINVAL);
	ck_assert_int_eq(devmem_snapshot(dm, p + 1, 1, st), -EINVAL);
	ck_assert_int_eq(devmem_snapshot(dm, p + MB2 - 2 * PG, 4, st), 0);
	ck_assert_uint_eq(st[0], DEVMEM_PAGE_NONE);
	ck_assert_uint_eq(st[2], DEVMEM_PAGE_ERROR); /* not managed */
	ck_assert_int_eq(devmem_inject(dm, 99, 1), -EINVAL);
	/* unaligned device access is fine */
	p[5] = 42;
	ck_assert_int_eq(devmem_device_read(dm, p + 5, 1, buf, NULL), 0);
	ck_assert_int_eq(buf[0], 42);
	stop();
}
END_TEST

/* ---- policies ---- */

START_TEST(test_policy_granularity_4k)
{
	static const char *const args[] = { "--granularity", "4k", NULL };
	struct devmem_result res;
	int *p;

	start(args);
	p = map_aligned(2 * MB2, PROT_READ | PROT_WRITE, true);
	reg(p, 2 * MB2);
	fill_ints(p, 2 * MB2, 0);
	res = migrate(p, 2 * MB2, DEVMEM_TO_DEVICE, 0);
	ck_assert_uint_eq(res.pages, 1024);
	ck_assert_uint_eq(res.huge, 0);
	ck_assert_uint_eq(res.split, 0); /* asked for, not a fallback */
	ck_assert(snap_all(dm, p, 1024, S_DEV_W));
	ck_assert_int_eq(check_ints(p, 2 * MB2, 0), -1);
	ck_assert_uint_eq(stats_of(dm).cpu_faults, 1024);
	stop();
}
END_TEST

/* fault-granularity 4k: a fault on a folio splits it; the free policy
 * decides when its memory goes */
static void fault_4k_free(const char *free_policy)
{
	const char *const args[] = { "--fault-granularity", "4k", "--free",
				     free_policy, NULL };
	bool split = !strcmp(free_policy, "split");
	struct devmem_stats st;
	char out[4096];
	int *p;

	start(args);
	p = map_aligned(MB2, PROT_READ | PROT_WRITE, true);
	reg(p, MB2);
	fill_ints(p, MB2, 0);
	ck_assert_uint_eq(migrate(p, MB2, DEVMEM_TO_DEVICE, 0).huge, 1);
	ck_assert_int_eq(p[1024], 1024); /* page 1 */
	ck_assert_uint_eq(snap_one(dm, (char *)p + PG), S_SYS_W);
	ck_assert(snap_all(dm, (char *)p + 2 * PG, 510, S_DEV_W)); /* split */
	st = stats_of(dm);
	ck_assert_uint_eq(st.cpu_faults, 1);
	ck_assert_uint_eq(st.to_system_pages, 1);
	ck_assert_uint_eq(st.splits, 1);
	/* split: each piece is freed as it goes; whole: when the last goes */
	ck_assert_uint_eq(st.client_used, split ? MB2 - PG : MB2);
	ck_assert_int_eq(check_ints(p, MB2, 0), -1);
	st = stats_of(dm);
	ck_assert_uint_eq(st.cpu_faults, 512);
	ck_assert_uint_eq(st.client_used, 0);
	ck_assert_uint_eq(st.used, 0);
	/* freed memory coalesced: all of it in 2 MB blocks again */
	ck_assert_int_eq(
		ctl_run(&D, out, sizeof(out),
			(const char *const[]){ "--json", "status", NULL }),
		0);
	ck_assert_ptr_nonnull(strstr(out, "\"fragmentation_permille\": 0,"));
	ck_assert_ptr_nonnull(strstr(out, "0, 0, 0, 0, 0, 0, 0, 0, 0, 512]"));
	stop();
}

START_TEST(test_policy_fault_4k_free_split)
{
	fault_4k_free("split");
}
END_TEST

START_TEST(test_policy_fault_4k_free_whole)
{
	fault_4k_free("whole");
}
END_TEST

START_TEST(test_policy_runtime)
{
	char out[4096];
	int *p;

	start(NULL);
	ck_assert_int_eq(ctl_run(&D, out, sizeof(out),
				 (const char *const[]){ "policy", "granularity",
							"4k", NULL }),
			 0);
	ck_assert_ptr_nonnull(strstr(out, "granularity        4k"));
	ck_assert_int_eq(ctl_run(&D, out, sizeof(out),
				 (const char *const[]){ "policy", "granularity",
							"huge", NULL }),
			 2);
	p = map_aligned(2 * MB2, PROT_READ | PROT_WRITE, true);
	reg(p, 2 * MB2);
	fill_ints(p, 2 * MB2, 0);
	ck_assert_uint_eq(migrate(p, MB2, DEVMEM_TO_DEVICE, 0).huge, 0);
	ck_assert_int_eq(
		ctl_run(&D, out, sizeof(out),
			(const char *const[]){ "--json", "policy",
					       "granularity", "auto", NULL }),
		0);
	ck_assert_ptr_nonnull(strstr(out, "\"granularity\": \"auto\""));
	ck_assert_uint_eq(
		migrate(p + MB2 / sizeof(int), MB2, DEVMEM_TO_DEVICE, 0).huge,
		1);
	ck_assert_int_eq(check_ints(p, 2 * MB2, 0), -1);
	stop();
}
END_TEST

/* ---- device full ---- */

START_TEST(test_full_fail)
{
	static const char *const args[] = { "--size", "4M", "--on-full", "fail",
					    NULL };
	struct devmem_result res;
	char *p;

	start(args);
	p = map_aligned(8 * MB2 / 2, PROT_READ | PROT_WRITE, true);
	reg(p, 4 * MB2);
	fill_ints(p, 4 * MB2, 9);
	ck_assert_int_eq(
		devmem_migrate(dm, p, 4 * MB2, DEVMEM_TO_DEVICE, 0, &res),
		-ENOMEM);
	ck_assert_uint_eq(res.pages, 1024); /* what did move */
	ck_assert_uint_eq(res.huge, 2);
	ck_assert(snap_all(dm, p, 1024, S_DEV_W_HUGE));
	ck_assert(snap_all(dm, p + 2 * MB2, 1024, S_SYS_W_HUGE));
	ck_assert_uint_eq(stats_of(dm).used, 4ul << 20);
	ck_assert_uint_eq(stats_of(dm).evictions, 0);
	ck_assert_int_eq(check_ints(p, 4 * MB2, 9), -1); /* nothing lost */
	ck_assert_uint_eq(stats_of(dm).used, 0);
	stop();
}
END_TEST

START_TEST(test_full_evict)
{
	static const char *const args[] = { "--size", "4M", NULL };
	struct devmem_result res;
	devmem_t *other;
	char *p, *q;

	start(args);
	p = map_aligned(2 * MB2, PROT_READ | PROT_WRITE, true);
	q = map_aligned(2 * MB2, PROT_READ | PROT_WRITE, true);
	reg(p, 2 * MB2);
	fill_ints(p, 2 * MB2, 1);
	fill_ints(q, 2 * MB2, 2);
	ck_assert_uint_eq(migrate(p, 2 * MB2, DEVMEM_TO_DEVICE, 0).pages, 1024);
	/* another client needs the room: the LRU unit of the first goes
	 * back to its owner */
	other = daemon_connect(&D);
	ck_assert_int_eq(devmem_register(other, q, MB2), 0);
	ck_assert_int_eq(
		devmem_migrate(other, q, MB2, DEVMEM_TO_DEVICE, 0, &res), 0);
	ck_assert_uint_eq(res.pages, 512);
	ck_assert_uint_eq(res.huge, 1);
	ck_assert_uint_eq(stats_of(dm).evictions, 1);
	ck_assert_uint_eq(stats_of(other).evictions, 0);
	ck_assert_uint_eq(stats_of(dm).client_used, MB2);
	ck_assert(snap_all(dm, p, 512, S_SYS_W)); /* evicted: 4 KB pages */
	ck_assert(snap_all(dm, p + MB2, 512, S_DEV_W_HUGE));
	/* and more than fits, from one client: its own oldest units go */
	ck_assert_int_eq(devmem_register(other, q + MB2, MB2), 0);
	res = migrate(p, 2 * MB2, DEVMEM_TO_DEVICE, 0);
	ck_assert_int_eq(check_ints(p, 2 * MB2, 1), -1);
	ck_assert_int_eq(check_ints(q, 2 * MB2, 2), -1);
	ck_assert_int_eq(devmem_device_read(other, q, MB2, p, NULL), 0);
	devmem_disconnect(other);
	ck_assert(wait_used(dm, 0));
	stop();
}
END_TEST

/* --client-limit: a client at its limit is full, the device is not */
START_TEST(test_client_limit)
{
	static const char *const args[] = { "--client-limit", "4M", NULL };
	struct devmem_result res;
	devmem_t *other;
	char out[4096];
	char *p, *q;

	start(args);
	p = map_aligned(4 * MB2, PROT_READ | PROT_WRITE, true);
	q = map_aligned(4 * MB2, PROT_READ | PROT_WRITE, true);
	reg(p, 4 * MB2);
	fill_ints(p, 4 * MB2, 3);
	fill_ints(q, 4 * MB2, 4);
	ck_assert_uint_eq(migrate(p, 2 * MB2, DEVMEM_TO_DEVICE, 0).pages, 1024);
	/* 4 MB more into a 4 MB allowance: its own oldest units go back */
	res = migrate(p + 2 * MB2, 2 * MB2, DEVMEM_TO_DEVICE, 0);
	ck_assert_uint_eq(res.pages, 1024);
	ck_assert_uint_eq(res.huge, 2);
	ck_assert_uint_eq(stats_of(dm).client_used, 4ul << 20);
	ck_assert_uint_eq(stats_of(dm).evictions, 2);
	ck_assert(snap_all(dm, p, 1024, S_SYS_W));
	ck_assert(snap_all(dm, p + 2 * MB2, 1024, S_DEV_W_HUGE));
	/* the whole range again: the first half comes in, the second half
	 * (now least recently used) goes */
	res = migrate(p, 4 * MB2, DEVMEM_TO_DEVICE, 0);
	ck_assert_uint_eq(res.pages, 1024);
	ck_assert_uint_eq(stats_of(dm).evictions, 4);
	ck_assert_uint_eq(stats_of(dm).client_used, 4ul << 20);
	ck_assert(snap_all(dm, p, 1024, S_DEV_W)); /* evicted as 4 KB pages */
	ck_assert(snap_all(dm, p + 2 * MB2, 1024, S_SYS_W));
	/* another client has its own allowance */
	other = daemon_connect(&D);
	ck_assert_int_eq(devmem_register(other, q, 4 * MB2), 0);
	ck_assert_int_eq(
		devmem_migrate(other, q, 2 * MB2, DEVMEM_TO_DEVICE, 0, &res),
		0);
	ck_assert_uint_eq(res.pages, 1024);
	ck_assert_uint_eq(stats_of(dm).evictions, 4);
	ck_assert_uint_eq(stats_of(dm).used, 8ul << 20);
	ck_assert_int_eq(check_ints(p, 4 * MB2, 3), -1);
	ck_assert_int_eq(check_ints(q, 4 * MB2, 4), -1);
	devmem_disconnect(other);
	ck_assert_int_eq(ctl_run(&D, out, sizeof(out),
				 (const char *const[]){ "status", NULL }),
			 0);
	ck_assert_ptr_nonnull(strstr(out, "client limit: 4096 KiB"));
	/* one request bigger than the limit: its own units are busy in it,
	 * so what fits moves and the call fails with -ENOMEM */
	ck_assert_uint_eq(stats_of(dm).client_used, 0);
	ck_assert_int_eq(
		devmem_migrate(dm, p, 4 * MB2, DEVMEM_TO_DEVICE, 0, &res),
		-ENOMEM);
	ck_assert_uint_eq(res.pages, 1024);
	ck_assert_uint_eq(stats_of(dm).client_used, 4ul << 20);
	ck_assert_int_eq(check_ints(p, 4 * MB2, 3), -1);
	stop();
}
END_TEST

START_TEST(test_client_limit_fail)
{
	static const char *const args[] = { "--client-limit", "4M", "--on-full",
					    "fail", NULL };
	struct devmem_result res;
	char *p;

	start(args);
	p = map_aligned(4 * MB2, PROT_READ | PROT_WRITE, true);
	reg(p, 4 * MB2);
	fill_ints(p, 4 * MB2, 5);
	ck_assert_int_eq(
		devmem_migrate(dm, p, 4 * MB2, DEVMEM_TO_DEVICE, 0, &res),
		-ENOMEM);
	ck_assert_uint_eq(res.pages, 1024);
	ck_assert_uint_eq(res.split, 0);
	ck_assert_uint_eq(stats_of(dm).client_used, 4ul << 20);
	ck_assert_int_eq(check_ints(p, 4 * MB2, 5), -1);
	stop();
}
END_TEST

/* ---- races ---- */

struct toucher {
	pthread_barrier_t *bar;
	int *p;
	size_t index;
	long bad;
};

static void *touch(void *arg)
{
	struct toucher *t = arg;

	pthread_barrier_wait(t->bar);
	if (((volatile int *)t->p)[t->index] != (int)t->index)
		t->bad++;
	return NULL;
}

/* many threads fault on one 2 MB unit at once: one migration serves all */
static void many_threads_one_unit(bool folio)
{
	static const char *const args_4k[] = { "--fault-granularity", "4k",
					       NULL };
	enum { NT = 16 };
	struct toucher t[NT];
	pthread_t th[NT];
	pthread_barrier_t bar;
	struct devmem_stats st;
	int *p;

	start(folio ? NULL : args_4k);
	p = map_aligned(MB2, PROT_READ | PROT_WRITE, true);
	reg(p, MB2);
	fill_ints(p, MB2, 0);
	ck_assert_uint_eq(migrate(p, MB2, DEVMEM_TO_DEVICE, 0).huge, 1);
	pthread_barrier_init(&bar, NULL, NT);
	for (int i = 0; i < NT; i++) {
		/* pairs of threads share a page */
		t[i] = (struct toucher){ &bar, p, (size_t)(i / 2) * 1024 * 7,
					 0 };
		pthread_create(&th[i], NULL, touch, &t[i]);
	}
	for (int i = 0; i < NT; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(t[i].bad, 0);
	}
	st = stats_of(dm);
	if (folio) {
		ck_assert_uint_eq(st.cpu_faults, 1);
		ck_assert_uint_eq(st.to_system_pages, 512);
		ck_assert_uint_eq(st.huge_migrations, 2);
		ck_assert(snap_all(dm, p, 512, S_SYS_W_HUGE));
	} else {
		ck_assert_uint_eq(st.cpu_faults,
				  NT / 2); /* none served twice */
		ck_assert_uint_eq(st.to_system_pages, NT / 2);
	}
	ck_assert_int_eq(check_ints(p, MB2, 0), -1);
	pthread_barrier_destroy(&bar);
	stop();
}

START_TEST(test_threads_one_unit_folio)
{
	many_threads_one_unit(true);
}
END_TEST

START_TEST(test_threads_one_unit_4k)
{
	many_threads_one_unit(false);
}
END_TEST

struct writer {
	uint32_t *p, *shadow;
	size_t n;
	atomic_bool stop;
	uint64_t writes;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	uint64_t x = 88172645463325252ull;

	while (!atomic_load(&w->stop)) {
		size_t i;
		uint32_t v;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		i = (size_t)(x % w->n);
		v = (uint32_t)(x >> 32);
		w->p[i] = v; /* may fault, or race a migration */
		w->shadow[i] = v;
		w->writes++;
	}
	return NULL;
}

/* a writer thread racing migrations in both directions loses nothing */
START_TEST(test_writer_races_migration)
{
	size_t len = 4 * MB2;
	struct writer w = { 0 };
	pthread_t th;
	uint64_t sum = 0, shadow_sum = 0;

	start(NULL);
	w.n = len / sizeof(uint32_t);
	w.p = map_aligned(len, PROT_READ | PROT_WRITE, true);
	w.shadow = malloc(len);
	ck_assert_ptr_nonnull(w.shadow);
	reg(w.p, len);
	for (size_t i = 0; i < w.n; i++)
		w.p[i] = w.shadow[i] = (uint32_t)i;
	pthread_create(&th, NULL, writer_main, &w);
	for (int round = 0; round < 40; round++) {
		unsigned flags = round % 3 == 2 ? DEVMEM_MIGRATE_4K : 0;
		int err = devmem_migrate(dm, w.p, len, DEVMEM_TO_DEVICE, flags,
					 NULL);

		ck_assert_msg(!err, "round %d: %s", round,
			      devmem_strerror(err));
		if (round % 2)
			ck_assert_int_eq(devmem_migrate(dm, w.p, len,
							DEVMEM_TO_SYSTEM, 0,
							NULL),
					 0);
	}
	atomic_store(&w.stop, true);
	pthread_join(th, NULL);
	for (size_t i = 0; i < w.n; i++) {
		sum += w.p[i];
		shadow_sum += w.shadow[i];
		ck_assert_msg(w.p[i] == w.shadow[i],
			      "word %zu: %#x, writer wrote %#x (%llu writes)",
			      i, w.p[i], w.shadow[i],
			      (unsigned long long)w.writes);
	}
	ck_assert_uint_eq(sum, shadow_sum);
	ck_assert_uint_gt(w.writes, 0);
	ck_assert_uint_gt(stats_of(dm).cpu_faults, 0);
	free(w.shadow);
	stop();
}
END_TEST

static Suite *migrate_suite(void)
{
	Suite *s = suite_create("migrate");
	TCase *hmm = tcase_create("hmm-tests");
	TCase *thp = tcase_create("thp");
	TCase *sem = tcase_create("semantics");
	TCase *pol = tcase_create("policy");
	TCase *race = tcase_create("races");

	tcase_set_timeout(hmm, 60);
	tcase_add_test(hmm, test_migrate);
	tcase_add_test(hmm, test_migrate_fault);
	tcase_add_test(hmm, test_migrate_multiple);
	tcase_add_test(hmm, test_anon_read);
	tcase_add_test(hmm, test_anon_read_prot);
	tcase_add_test(hmm, test_anon_write);
	tcase_add_test(hmm, test_anon_write_prot);
	tcase_add_test(hmm, test_migrate_shared);
	suite_add_tcase(s, hmm);

	tcase_set_timeout(thp, 60);
	tcase_add_test(thp, test_migrate_anon_huge_empty);
	tcase_add_test(thp, test_migrate_anon_huge_zero);
	tcase_add_test(thp, test_migrate_anon_huge_free);
	tcase_add_test(thp, test_migrate_anon_huge_fault);
	tcase_add_test(thp, test_migrate_anon_huge_err);
	tcase_add_test(thp, test_migrate_anon_huge_zero_err);
	suite_add_tcase(s, thp);

	tcase_set_timeout(sem, 60);
	tcase_add_test(sem, test_rest_plain_memory);
	tcase_add_test(sem, test_partial_units);
	tcase_add_test(sem, test_bad_input);
	suite_add_tcase(s, sem);

	tcase_set_timeout(pol, 60);
	tcase_add_test(pol, test_policy_granularity_4k);
	tcase_add_test(pol, test_policy_fault_4k_free_split);
	tcase_add_test(pol, test_policy_fault_4k_free_whole);
	tcase_add_test(pol, test_policy_runtime);
	tcase_add_test(pol, test_full_fail);
	tcase_add_test(pol, test_full_evict);
	tcase_add_test(pol, test_client_limit);
	tcase_add_test(pol, test_client_limit_fail);
	suite_add_tcase(s, pol);

	tcase_set_timeout(race, 120);
	tcase_add_test(race, test_threads_one_unit_folio);
	tcase_add_test(race, test_threads_one_unit_4k);
	tcase_add_test(race, test_writer_races_migration);
	suite_add_tcase(s, race);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(migrate_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
