/* SPDX-License-Identifier: MIT */
/*
 * Address-space changes and process lifecycle against a real devmemd:
 * DESIGN.md semantics 6-9 (munmap, MADV_DONTNEED/FREE, mremap, fork, exit,
 * scrubbing) and kernel-mode access to device-resident buffers.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define S_DEV_W (DEVMEM_PAGE_DEVICE | DEVMEM_PAGE_WRITE)
#define S_SYS_W DEVMEM_PAGE_WRITE

static struct daemon D;
static devmem_t *dm;

static void start(const char *const *args)
{
	daemon_start(&D, args);
	dm = daemon_connect(&D);
}

static void stop(void)
{
	devmem_disconnect(dm);
	dm = NULL;
	ck_assert_int_eq(daemon_stop(&D), 0);
}

static void reg(void *p, size_t len)
{
	int err = devmem_register(dm, p, len);

	ck_assert_msg(!err, "devmem_register: %s", devmem_strerror(err));
}

static struct devmem_result migrate(void *p, size_t len, int to)
{
	struct devmem_result res;
	int err = devmem_migrate(dm, p, len, to, 0, &res);

	ck_assert_msg(!err, "devmem_migrate: %s", devmem_strerror(err));
	return res;
}

/* munmap/madvise return once devmemd has read the event; it frees the
 * device memory a moment later */
static bool wait_client_used(uint64_t want)
{
	for (int i = 0; i < 1000; i++) {
		if (stats_of(dm).client_used == want)
			return true;
		usleep(1000);
	}
	fprintf(stderr, "client_used is %llu, not %llu\n",
		(unsigned long long)stats_of(dm).client_used,
		(unsigned long long)want);
	return false;
}

/* Does touching p kill the process with sig? (in a child) */
static bool touch_kills(const void *p, int sig)
{
	pid_t pid = fork();
	int st;

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		(void)*(volatile const char *)p;
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	return WIFSIGNALED(st) && WTERMSIG(st) == sig;
}

/* ---- munmap ---- */

/* hmm-tests migrate_partial_unmap_fault, under both free policies */
static void partial_unmap(const char *free_policy)
{
	const char *const args[] = { "--free", free_policy, NULL };
	const size_t offsets[] = { 0, MB2 / 4, MB2 / 2 };
	bool split = !strcmp(free_policy, "split");

	start(args);
	for (int thp = 0; thp < 2; thp++)
		for (size_t o = 0; o < 3; o++) {
			size_t off = offsets[o], unmap = MB2 / 2;
			char *p = map_aligned(MB2, PROT_READ | PROT_WRITE, thp);
			struct devmem_result res;

			reg(p, MB2);
			fill_ints(p, MB2, (int)o);
			res = migrate(p, MB2, DEVMEM_TO_DEVICE);
			ck_assert_uint_eq(res.pages, 512);
			ck_assert_uint_eq(res.huge, (uint64_t)thp);
			ck_assert_int_eq(munmap(p + off, unmap), 0);
			/* a 2 MB folio: "split" frees the unmapped half at
			 * once, "whole" when its last piece goes */
			ck_assert(wait_client_used(
				thp && !split ? MB2 : MB2 - unmap));
			ck_assert(touch_kills(p + off, SIGSEGV));
			ck_assert_int_eq(check_ints(p, off, (int)o), -1);
			ck_assert_int_eq(
				check_ints(
					p + off + unmap, MB2 - off - unmap,
					(int)(o + (off + unmap) / sizeof(int))),
				-1);
			ck_assert(wait_client_used(0));
			/* munmap ended the registration of its part; the
			 * rest goes now */
			ck_assert_int_eq(devmem_unregister(dm, p, MB2), 0);
			ck_assert_int_eq(devmem_unregister(dm, p, MB2),
					 -EINVAL);
			munmap(p, off);
			munmap(p + off + unmap, MB2 - off - unmap);
		}
	ck_assert_uint_eq(stats_of(dm).used, 0);
	stop();
}

START_TEST(test_partial_unmap_whole)
{
	partial_unmap("whole");
}
END_TEST

START_TEST(test_partial_unmap_split)
{
	partial_unmap("split");
}
END_TEST

START_TEST(test_munmap_frees)
{
	size_t len = 8 * MB2;
	char *p;

	start(NULL);
	p = map_aligned(len, PROT_READ | PROT_WRITE, true);
	reg(p, len);
	fill_ints(p, len, 1);
	ck_assert_uint_eq(migrate(p, len, DEVMEM_TO_DEVICE).huge, 8);
	ck_assert_uint_eq(stats_of(dm).client_used, len);
	ck_assert_int_eq(munmap(p, len), 0);
	ck_assert(wait_client_used(0));
	ck_assert_uint_eq(stats_of(dm).used, 0);
	/* the registration went with the mapping: new memory there is
	 * registered anew */
	ck_assert_ptr_eq(mmap(p, len, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0),
			 p);
	ck_assert_int_eq(devmem_migrate(dm, p, len, DEVMEM_TO_DEVICE, 0, NULL),
			 -EINVAL);
	reg(p, len);
	fill_ints(p, len, 2);
	ck_assert_uint_eq(migrate(p, len, DEVMEM_TO_DEVICE).pages, len / PG);
	ck_assert_int_eq(check_ints(p, len, 2), -1);
	stop();
}
END_TEST

/* ---- MADV_DONTNEED / MADV_FREE ---- */

static void discard(int advice)
{
	size_t len = 2 * MB2;
	char *p;

	start(NULL);
	for (int thp = 0; thp < 2; thp++) {
		p = map_aligned(len, PROT_READ | PROT_WRITE, thp);
		reg(p, len);
		fill_ints(p, len, 3);
		migrate(p, len, DEVMEM_TO_DEVICE);
		/* the second unit entirely, a quarter of the first */
		ck_assert_int_eq(madvise(p + MB2, MB2, advice), 0);
		ck_assert_int_eq(madvise(p + MB2 / 4, MB2 / 4, advice), 0);
		ck_assert(wait_client_used(thp ? MB2 : MB2 - MB2 / 4));
		/* as on plain memory: zeros where the pages went */
		for (size_t i = 0; i < MB2 / 4; i += PG)
			ck_assert_int_eq(p[MB2 / 4 + i], 0);
		for (size_t i = 0; i < MB2; i += PG)
			ck_assert_int_eq(p[MB2 + i], 0);
		ck_assert_int_eq(check_ints(p, MB2 / 4, 3), -1);
		ck_assert_int_eq(check_ints(p + MB2 / 2, MB2 / 2,
					    3 + (int)(MB2 / 2 / sizeof(int))),
				 -1);
		ck_assert(wait_client_used(0));
		ck_assert_int_eq(devmem_free(dm, p, len), 0);
	}
	ck_assert_uint_eq(stats_of(dm).used, 0);
	stop();
}

START_TEST(test_madv_dontneed)
{
	discard(MADV_DONTNEED);
}
END_TEST

START_TEST(test_madv_free)
{
	discard(MADV_FREE);
}
END_TEST

/* ---- mremap: hmm-tests migrate_remap_fault, the whole matrix ---- */

START_TEST(test_remap_fault)
{
	const size_t offsets[] = { 0, MB2 / 4, MB2 / 2 };
	unsigned iterations = 0;

	start(NULL);
	for (int before = 0; before < 2; before++)
		for (int dontunmap = 0; dontunmap < 2; dontunmap++)
			for (int thp = 0; thp < 2; thp++)
				for (size_t o = 0; o < 3; o++) {
					int flags =
						MREMAP_MAYMOVE | MREMAP_FIXED |
						(dontunmap ? MREMAP_DONTUNMAP
							   : 0);
					char *map = map_aligned(
						8 * MB2, PROT_READ | PROT_WRITE,
						false);
					char *ptr,
						*dst = map + MB2 + offsets[o];
					int seed = (int)(iterations * 7);

					ck_assert_int_eq(
						madvise(map, MB2,
							thp ? MADV_HUGEPAGE
							    : MADV_NOHUGEPAGE),
						0);
					munmap(map + MB2, 2 * MB2);
					fill_ints(map, MB2, seed);
					ptr = map;
					if (before) {
						ptr = mremap(map, MB2, MB2,
							     flags, dst);
						ck_assert_ptr_eq(ptr, dst);
					}
					reg(ptr, MB2);
					ck_assert_uint_eq(
						migrate(ptr, MB2,
							DEVMEM_TO_DEVICE)
							.pages,
						512);
					if (!before) {
						ptr = mremap(map, MB2, MB2,
							     flags, dst);
						ck_assert_ptr_eq(ptr, dst);
					}
					/* the device pages followed */
					ck_assert_msg(
						check_ints(ptr, MB2, seed) ==
							-1,
						"before %d dontunmap %d thp %d offset %zu",
						before, dontunmap, thp,
						offsets[o]);
					if (!before && dontunmap)
						for (size_t i = 0; i < MB2;
						     i += PG)
							ck_assert_int_eq(map[i],
									 0);
					ck_assert(wait_client_used(0));
					/* the registration moved with the
					 * mapping; DONTUNMAP left the old
					 * place registered too */
					ck_assert_int_eq(
						devmem_unregister(dm, ptr, MB2),
						0);
					if (!before)
						ck_assert_int_eq(
							devmem_unregister(
								dm, map, MB2),
							dontunmap ? 0
								  : -EINVAL);
					munmap(ptr, MB2);
					munmap(map, 8 * MB2);
					iterations++;
				}
	ck_assert_uint_eq(iterations, 24);
	ck_assert_uint_eq(stats_of(dm).used, 0);
	stop();
}
END_TEST

/* A 2 MB folio that moves to a 2 MB-aligned place stays one */
START_TEST(test_remap_keeps_folio)
{
	char *map, *p;

	start(NULL);
	map = map_aligned(4 * MB2, PROT_READ | PROT_WRITE, true);
	reg(map, MB2);
	fill_ints(map, MB2, 9);
	ck_assert_uint_eq(migrate(map, MB2, DEVMEM_TO_DEVICE).huge, 1);
	p = mremap(map, MB2, MB2, MREMAP_MAYMOVE | MREMAP_FIXED, map + 2 * MB2);
	ck_assert_ptr_eq(p, map + 2 * MB2);
	ck_assert(snap_all(dm, p, 512, S_DEV_W | DEVMEM_PAGE_HUGE));
	ck_assert_uint_eq(stats_of(dm).splits, 0);
	ck_assert_int_eq(check_ints(p, MB2, 9), -1);
	ck_assert_uint_eq(stats_of(dm).cpu_faults, 1); /* one folio */
	ck_assert(snap_all(dm, p, 512, S_SYS_W | DEVMEM_PAGE_HUGE));
	stop();
}
END_TEST

/* Device pages that mremap moves within their own 2 MB unit (the source
 * unit empties while it is the destination's unit too) */
START_TEST(test_remap_within_unit)
{
	const size_t len = 64 * PG;
	char *map, *p;

	start(NULL);
	map = map_aligned(2 * MB2, PROT_READ | PROT_WRITE, false);
	reg(map, 2 * MB2);
	fill_ints(map, len, 21);
	ck_assert_uint_eq(migrate(map, len, DEVMEM_TO_DEVICE).pages, 64);
	p = mremap(map, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, map + MB2 / 2);
	ck_assert_ptr_eq(p, map + MB2 / 2);
	ck_assert(snap_all(dm, p, 64, S_DEV_W));
	ck_assert_int_eq(check_ints(p, len, 21), -1);
	ck_assert(wait_client_used(0));
	/* and devmemd is still there */
	ck_assert_uint_eq(migrate(p, len, DEVMEM_TO_DEVICE).pages, 64);
	ck_assert_int_eq(check_ints(p, len, 21), -1);
	munmap(map, 2 * MB2);
	stop();
}
END_TEST

static double ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 +
	       (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/*
 * Device pages evicted right after an mremap(MREMAP_DONTUNMAP) whose event
 * devmemd has read but not applied yet (held 50 ms here).  The kernel takes
 * fills again once the event is read, and the old place is still mapped,
 * registered and empty: pages written back to their old addresses would
 * land there, and the new place would read zeros.  Another client's
 * migration into the full device evicts them.
 */
START_TEST(test_remap_dontunmap_evicting)
{
	const char *const args[] = { "--size", "2M", NULL };
	devmem_t *other;
	bool hit = false;

	start(args);
	other = daemon_connect(&D);
	for (int round = 0; round < 8 && !hit; round++) {
		char *map = map_aligned(4 * MB2, PROT_READ | PROT_WRITE, false);
		char *q = map_aligned(MB2, PROT_READ | PROT_WRITE, false);
		char *dst = map + 2 * MB2, *p;
		struct timespec t0;
		int err;

		reg(map, MB2);
		fill_ints(map, MB2, round);
		ck_assert_uint_eq(migrate(map, MB2, DEVMEM_TO_DEVICE).pages,
				  512);
		ck_assert_int_eq(devmem_register(other, q, MB2), 0);
		fill_ints(q, MB2, 100 + round);
		slow_events(&D, 1);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		p = mremap(map, MB2, MB2,
			   MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
			   dst);
		ck_assert_ptr_eq(p, dst);
		err = devmem_migrate(other, q, MB2, DEVMEM_TO_DEVICE, 0, NULL);
		ck_assert_msg(!err || err == -ENOMEM, "devmem_migrate: %s",
			      devmem_strerror(err));
		/* done while devmemd still held the event? */
		hit = ms_since(&t0) < 40;
		ck_assert_msg(check_ints(p, MB2, round) == -1,
			      "round %d: the data did not follow the mapping",
			      round);
		ck_assert_msg(check_bytes(map, MB2, 0) == -1,
			      "round %d: the place left behind is not empty",
			      round);
		ck_assert_int_eq(check_ints(q, MB2, 100 + round), -1);
		ck_assert(wait_client_used(0));
		ck_assert_int_eq(devmem_unregister(dm, p, MB2), 0);
		ck_assert_int_eq(devmem_unregister(dm, map, MB2), 0);
		ck_assert_int_eq(devmem_unregister(other, q, MB2), 0);
		munmap(map, 4 * MB2);
		munmap(q, MB2);
	}
	ck_assert_msg(hit, "the eviction never came while the event was held");
	devmem_disconnect(other);
	ck_assert(wait_used(dm, 0));
	stop();
}
END_TEST

/*
 * A registered range the kernel keeps as several VMAs (here: a flag that
 * differs on a few pages), one 2 MB unit across them: UFFDIO_MOVE and
 * UFFDIO_COPY each take one VMA, so both directions go VMA by VMA.
 */
START_TEST(test_unit_spans_vmas)
{
	char *map;

	start(NULL);
	for (int populated = 0; populated < 2; populated++) {
		struct devmem_result res;

		map = map_aligned(2 * MB2, PROT_READ | PROT_WRITE, true);
		ck_assert_int_eq(
			madvise(map + MB2 / 2, 16 * PG, MADV_NOHUGEPAGE), 0);
		reg(map, 2 * MB2);
		if (populated)
			fill_ints(map, 2 * MB2, 22);
		res = migrate(map, 2 * MB2, DEVMEM_TO_DEVICE);
		ck_assert_uint_eq(res.pages, 1024);
		if (!populated) {
			/* an order-9 folio across three VMAs, which the
			 * device fills */
			char *data = malloc(2 * MB2);

			ck_assert_uint_eq(res.huge, 2);
			ck_assert_ptr_nonnull(data);
			fill_ints(data, 2 * MB2, 22);
			ck_assert_int_eq(devmem_device_write(dm, map, 2 * MB2,
							     data, &res),
					 0);
			free(data);
		}
		/* faults bring back the folios */
		ck_assert_int_eq(check_ints(map, 2 * MB2, 22), -1);
		fill_ints(map, 2 * MB2, 23);
		ck_assert_uint_eq(migrate(map, 2 * MB2, DEVMEM_TO_DEVICE).pages,
				  1024);
		ck_assert_uint_eq(migrate(map, 2 * MB2, DEVMEM_TO_SYSTEM).pages,
				  1024);
		ck_assert_int_eq(check_ints(map, 2 * MB2, 23), -1);
		ck_assert(wait_client_used(0));
		ck_assert_int_eq(devmem_unregister(dm, map, 2 * MB2), 0);
		munmap(map, 2 * MB2);
	}
	stop();
}
END_TEST

/* ---- fork ---- */

/* hmm-tests anon_write_child: the child sees the data; writes stay apart */
START_TEST(test_anon_write_child)
{
	start(NULL);
	for (int migrate_first = 0; migrate_first < 2; migrate_first++)
		for (int thp = 0; thp < 2; thp++) {
			size_t len = thp ? MB2 : 4ul << 20;
			int *p = map_aligned(len, PROT_READ | PROT_WRITE, thp);
			int *mirror = malloc(len);
			pid_t pid;
			int st;

			for (size_t i = 0; i < len / sizeof(int); i++)
				mirror[i] = -(int)i;
			reg(p, len);
			fill_ints(p, len, 0);
			if (migrate_first)
				ck_assert_uint_eq(
					migrate(p, len, DEVMEM_TO_DEVICE).pages,
					len / PG);
			pid = fork();
			ck_assert_int_ge(pid, 0);
			if (pid == 0) {
				struct devmem_result res;
				devmem_t *child;

				if (check_ints(p, len, 0) != -1)
					_exit(1);
				/* the inherited handle is cut off */
				if (devmem_stats(dm, &(struct devmem_stats){
							     0 }) != -ENOTCONN)
					_exit(2);
				if (devmem_connect(D.sock, &child) ||
				    devmem_register(child, p, len) ||
				    devmem_device_write(child, p, len, mirror,
							&res) ||
				    res.pages != len / PG || res.faults != 1)
					_exit(3);
				for (size_t i = 0; i < len / sizeof(int); i++)
					if (p[i] != -(int)i)
						_exit(4);
				devmem_disconnect(child);
				_exit(0);
			}
			ck_assert_int_eq(waitpid(pid, &st, 0), pid);
			ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
				      "child failed with %d", WEXITSTATUS(st));
			ck_assert_int_eq(check_ints(p, len, 0), -1);
			ck_assert_int_eq(devmem_free(dm, p, len), 0);
			free(mirror);
		}
	ck_assert(wait_used(dm, 0));
	stop();
}
END_TEST

/* hmm-tests hmm_cow_in_device */
START_TEST(test_cow_in_device)
{
	size_t len = 4 * PG;
	pid_t pid;
	int *p, st;

	start(NULL);
	p = map_aligned(len, PROT_READ | PROT_WRITE, false);
	reg(p, len);
	fill_ints(p, len, 0);
	ck_assert_uint_eq(migrate(p, len, DEVMEM_TO_DEVICE).pages, 4);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		for (;;)
			pause();
	}
	fill_ints(p, len, 0);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	ck_assert(snap_all(dm, p, 4, S_SYS_W));
	ck_assert_int_eq(check_ints(p, len, 0), -1);
	stop();
}
END_TEST

/* fork with device pages: parent and child diverge after */
START_TEST(test_fork_diverges)
{
	size_t len = 4 * MB2;
	int pfd[2], cfd[2];
	char c = 0;
	int *p, st;
	pid_t pid;

	start(NULL);
	p = map_aligned(len, PROT_READ | PROT_WRITE, true);
	reg(p, len);
	fill_ints(p, len, 4);
	migrate(p, len, DEVMEM_TO_DEVICE);
	ck_assert_int_eq(pipe(pfd), 0);
	ck_assert_int_eq(pipe(cfd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* child: sees the data, writes its own, never the parent's */
		if (check_ints(p, len, 4) != -1)
			_exit(1);
		fill_ints(p, len, 40);
		if (write(cfd[1], &c, 1) != 1 || read(pfd[0], &c, 1) != 1)
			_exit(2);
		_exit(check_ints(p, len, 40) == -1 ? 0 : 3);
	}
	ck_assert_int_eq(read(cfd[0], &c, 1), 1);
	ck_assert_int_eq(check_ints(p, len, 4), -1); /* not the child's */
	fill_ints(p, len, 400);
	migrate(p, len, DEVMEM_TO_DEVICE);
	ck_assert_int_eq(write(pfd[1], &c, 1), 1);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert_int_eq(check_ints(p, len, 400), -1);
	stop();
}
END_TEST

/*
 * Part of a THP that a fork()ed child shared, the child gone: registering
 * just that part splits the PMD while the THP is still shared, and then
 * UFFDIO_MOVE refuses every page of it (EBUSY) until the THP is split, as
 * it asks the THP's first page whether the THP is the parent's.  Also with
 * that first page copied away (written while the child lived).
 */
START_TEST(test_fork_thp_part)
{
	for (int head_copied = 0; head_copied < 2; head_copied++) {
		size_t off = 100 * PG, len = 64 * PG;
		int *p, pfd[2], st;
		char c = 0;
		pid_t pid;

		start(NULL);
		p = map_aligned(MB2, PROT_READ | PROT_WRITE, true);
		reg(p, MB2);
		fill_ints(p, MB2, 7);
		ck_assert_uint_eq(thp_pages(dm, p, MB2), 512);
		ck_assert_int_eq(pipe(pfd), 0);
		pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			if (read(pfd[0], &c, 1) != 1)
				_exit(2);
			_exit(check_ints(p, MB2, 7) == -1 ? 0 : 1);
		}
		/* the value it has, while the child lives: COW */
		if (head_copied)
			*(volatile int *)p = 7;
		ck_assert_int_eq(write(pfd[1], &c, 1), 1);
		ck_assert_int_eq(waitpid(pid, &st, 0), pid);
		ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		close(pfd[0]);
		close(pfd[1]);
		ck_assert_uint_eq(
			migrate((char *)p + off, len, DEVMEM_TO_DEVICE).pages,
			len / PG);
		ck_assert(snap_all(dm, (char *)p + off, len / PG, S_DEV_W));
		ck_assert_int_eq(check_ints(p, MB2, 7), -1);
		stop();
	}
}
END_TEST

/* ---- release, exit, kill, scrub ---- */

/* hmm-tests migrate_release: everything evicted back at once */
START_TEST(test_migrate_release)
{
	char out[256];
	char *p;

	start(NULL);
	p = map_aligned(4ul << 20, PROT_READ | PROT_WRITE, false);
	reg(p, 4ul << 20);
	fill_ints(p, 4ul << 20, 5);
	migrate(p, 4ul << 20, DEVMEM_TO_DEVICE);
	ck_assert_int_eq(ctl_run(&D, out, sizeof(out),
				 (const char *const[]){ "evict", NULL }),
			 0);
	ck_assert_msg(strstr(out, "2 units evicted"),
		      "devmemctl evict said: %s", out);
	ck_assert_uint_eq(stats_of(dm).client_used, 0);
	ck_assert_uint_eq(stats_of(dm).evictions, 2);
	ck_assert_int_eq(check_ints(p, 2ul << 20, 5), -1);
	ck_assert_uint_eq(stats_of(dm).cpu_faults, 0);
	stop();
}
END_TEST

START_TEST(test_disconnect_brings_back)
{
	size_t len = 4 * MB2;
	char *p;

	start(NULL);
	p = map_aligned(len, PROT_READ | PROT_WRITE, true);
	reg(p, len);
	fill_ints(p, len, 6);
	migrate(p, len, DEVMEM_TO_DEVICE);
	ck_assert_uint_eq(stats_of(dm).client_used, len);
	devmem_disconnect(dm);
	/* plain memory again, with the data: no fault, no SIGBUS */
	ck_assert_int_eq(check_ints(p, len, 6), -1);
	dm = daemon_connect(&D);
	ck_assert_uint_eq(stats_of(dm).used, 0);
	stop();
}
END_TEST

/* A client killed in the middle of migrations or faults: its device
 * memory all goes back to the pool, and others carry on */
static void kill_midway(bool during_faults)
{
	start(NULL);
	for (int round = 0; round < 12; round++) {
		int ready[2];
		pid_t pid;
		char c;

		ck_assert_int_eq(pipe(ready), 0);
		pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			size_t len = 8 * MB2;
			char *q = map_aligned(len, PROT_READ | PROT_WRITE,
					      round & 1);
			devmem_t *cd;

			if (devmem_connect(D.sock, &cd) ||
			    devmem_register(cd, q, len))
				_exit(1);
			fill_ints(q, len, round);
			for (int i = 0;; i++) {
				devmem_migrate(cd, q, len, DEVMEM_TO_DEVICE,
					       i & 2 ? DEVMEM_MIGRATE_4K : 0,
					       NULL);
				if (i == 0 && write(ready[1], "x", 1) != 1)
					_exit(2);
				if (during_faults)
					check_ints(q, len, round);
				else
					devmem_migrate(cd, q, len,
						       DEVMEM_TO_SYSTEM, 0,
						       NULL);
			}
		}
		ck_assert_int_eq(read(ready[0], &c, 1), 1);
		usleep((useconds_t)(rand() % 3000));
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		close(ready[0]);
		close(ready[1]);
		ck_assert_msg(wait_used(dm, 0),
			      "round %d: device memory leaked", round);
	}
	/* and devmemd still works */
	{
		char *p = map_aligned(MB2, PROT_READ | PROT_WRITE, true);

		reg(p, MB2);
		fill_ints(p, MB2, 77);
		ck_assert_uint_eq(migrate(p, MB2, DEVMEM_TO_DEVICE).huge, 1);
		ck_assert_int_eq(check_ints(p, MB2, 77), -1);
	}
	stop();
}

START_TEST(test_kill_during_migration)
{
	kill_midway(false);
}
END_TEST

START_TEST(test_kill_during_faults)
{
	kill_midway(true);
}
END_TEST

/* Device memory is zero-filled before another owner sees it */
START_TEST(test_scrub)
{
	static const char *const args[] = { "--size", "8M", NULL };
	size_t len = 4 * MB2;
	devmem_t *other;
	char *a, *b, *buf;
	struct devmem_result res;

	start(args);
	/* client A fills all of the device with its data, then goes */
	a = map_aligned(len, PROT_READ | PROT_WRITE, false);
	reg(a, len);
	memset(a, 0xab, len);
	migrate(a, len, DEVMEM_TO_DEVICE);
	ck_assert_uint_eq(stats_of(dm).used, len);
	ck_assert_int_eq(devmem_free(dm, a, len), 0);

	/* client B gets the same device memory for its empty pages */
	other = daemon_connect(&D);
	b = map_aligned(len, PROT_READ | PROT_WRITE, false);
	buf = malloc(len);
	ck_assert_int_eq(devmem_register(other, b, len), 0);
	b[0] = 0; /* one zero page, the rest holes */
	ck_assert_int_eq(
		devmem_migrate(other, b, len, DEVMEM_TO_DEVICE, 0, &res), 0);
	ck_assert_uint_eq(res.pages, len / PG);
	ck_assert_uint_eq(stats_of(other).used, len);
	memset(buf, 0x55, len);
	ck_assert_int_eq(devmem_device_read(other, b, len, buf, NULL), 0);
	ck_assert_msg(check_bytes(buf, len, 0) < 0,
		      "byte %ld of a new owner's device memory is not 0",
		      check_bytes(buf, len, 0));
	/* a partial device write leaves the rest of the page zero */
	ck_assert_int_eq(
		devmem_device_write(other, b + 100, 10, "0123456789", NULL), 0);
	ck_assert_int_eq(devmem_device_read(other, b, PG, buf, NULL), 0);
	ck_assert(!memcmp(buf + 100, "0123456789", 10));
	ck_assert_int_eq(check_bytes(buf, 100, 0), -1);
	ck_assert_int_eq(check_bytes(buf + 110, PG - 110, 0), -1);
	ck_assert(!memcmp(b + 100, "0123456789", 10));
	ck_assert_int_eq(check_bytes(b, 100, 0), -1);
	ck_assert_int_eq(check_bytes(b + 110, len - 110, 0), -1);
	free(buf);
	devmem_disconnect(other);
	stop();
}
END_TEST

/* ---- kernel-mode access ---- */

/* read(2)/write(2) on device-resident buffers: the kernel's own faults
 * reach devmemd too (root: a full userfaultfd) */
START_TEST(test_kernel_access)
{
	size_t len = 2 * MB2;
	char *p, *q;
	int fds[2];

	start(NULL);
	p = map_aligned(len, PROT_READ | PROT_WRITE, true);
	q = map_aligned(len, PROT_READ | PROT_WRITE, false);
	reg(p, len);
	reg(q, len);
	fill_ints(p, len, 8);
	migrate(p, len, DEVMEM_TO_DEVICE);
	migrate(q, len, DEVMEM_TO_DEVICE);
	ck_assert_int_eq(pipe(fds), 0);
	for (size_t off = 0; off < len; off += 64 << 10) {
		/* the kernel reads from device memory, writes into it */
		ck_assert_int_eq(write(fds[1], p + off, 64 << 10), 64 << 10);
		ck_assert_int_eq(read(fds[0], q + off, 64 << 10), 64 << 10);
	}
	ck_assert_int_eq(check_ints(q, len, 8), -1);
	ck_assert_int_eq(memcmp(p, q, len), 0);
	stop();
}
END_TEST

/* Without privileges, libdevmem falls back to UFFD_USER_MODE_ONLY: the
 * kernel's access to a device page fails with EFAULT, and
 * migrating back first is the way */
START_TEST(test_kernel_access_user_mode_only)
{
	size_t len = MB2;
	int st, fds[2];
	pid_t pid;

	start(NULL);
	ck_assert_int_eq(chmod(D.dir, 0755), 0);
	ck_assert_int_eq(chmod(D.sock, 0666), 0);
	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		devmem_t *u;
		char *p;

		if (setgid(65534) || setuid(65534))
			_exit(1);
		p = map_aligned(len, PROT_READ | PROT_WRITE, true);
		if (devmem_connect(D.sock, &u) || devmem_register(u, p, len))
			_exit(2);
		fill_ints(p, len, 1);
		if (devmem_migrate(u, p, len, DEVMEM_TO_DEVICE, 0, NULL))
			_exit(3);
		if (write(fds[1], p, PG) != -1 || errno != EFAULT)
			_exit(4);
		if (devmem_migrate(u, p, len, DEVMEM_TO_SYSTEM, 0, NULL))
			_exit(5);
		if (write(fds[1], p, PG) != (ssize_t)PG)
			_exit(6);
		if (check_ints(p, len, 1) != -1)
			_exit(7);
		devmem_disconnect(u);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "unprivileged client failed at step %d", WEXITSTATUS(st));
	ck_assert(wait_used(dm, 0));
	stop();
}
END_TEST

static Suite *lifecycle_suite(void)
{
	Suite *s = suite_create("lifecycle");
	TCase *unmap = tcase_create("unmap");
	TCase *remap = tcase_create("remap");
	TCase *fork_tc = tcase_create("fork");
	TCase *life = tcase_create("life");

	tcase_set_timeout(unmap, 60);
	tcase_add_test(unmap, test_partial_unmap_whole);
	tcase_add_test(unmap, test_partial_unmap_split);
	tcase_add_test(unmap, test_munmap_frees);
	tcase_add_test(unmap, test_madv_dontneed);
	tcase_add_test(unmap, test_madv_free);
	suite_add_tcase(s, unmap);

	tcase_set_timeout(remap, 60);
	tcase_add_test(remap, test_remap_fault);
	tcase_add_test(remap, test_remap_keeps_folio);
	tcase_add_test(remap, test_remap_within_unit);
	tcase_add_test(remap, test_remap_dontunmap_evicting);
	tcase_add_test(remap, test_unit_spans_vmas);
	suite_add_tcase(s, remap);

	tcase_set_timeout(fork_tc, 60);
	tcase_add_test(fork_tc, test_anon_write_child);
	tcase_add_test(fork_tc, test_cow_in_device);
	tcase_add_test(fork_tc, test_fork_diverges);
	tcase_add_test(fork_tc, test_fork_thp_part);
	suite_add_tcase(s, fork_tc);

	tcase_set_timeout(life, 120);
	tcase_add_test(life, test_migrate_release);
	tcase_add_test(life, test_disconnect_brings_back);
	tcase_add_test(life, test_kill_during_migration);
	tcase_add_test(life, test_kill_during_faults);
	tcase_add_test(life, test_scrub);
	tcase_add_test(life, test_kernel_access);
	tcase_add_test(life, test_kernel_access_user_mode_only);
	suite_add_tcase(s, life);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(lifecycle_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
