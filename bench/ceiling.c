/* SPDX-License-Identifier: MIT */
/*
 * devmem-bench section 3: the ceiling, measured in the same run.
 *
 * Any migration that copies data cannot beat memcpy between two THP-backed
 * buffers, and no fault served through userfaultfd can beat the raw
 * round trip of one process with one handler thread (fault, read() the
 * event, UFFDIO_COPY, resume).  devmem's figures are printed as ratios to
 * these.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench.h"
#include "common.h"

#define MIN_MEMCPY_SAMPLES 5
#define UFFD_PAGES 4096 /* touches per pass */

/* memcpy of one size between two pre-faulted, THP-backed, 2 MB-aligned
 * buffers: a warm-up copy, then the median of the timed copies. */
static void memcpy_row(struct bench *b, unsigned i)
{
	uint64_t size = b->opt.sizes[i];
	unsigned n = MAX(b->opt.iterations, MIN_MEMCPY_SAMPLES);
	/* a whole 2 MB unit each, so that even 512 KB sits in a THP */
	size_t map = ALIGN_UP(size, UNIT_SIZE);
	uint8_t *src = map_aligned(map, true), *dst = map_aligned(map, true);
	double *ms = calloc(n, sizeof(double));
	double *fresh_ms = calloc(n, sizeof(double));
	char sz[16];

	size_str(size, sz, sizeof(sz));
	if (!src || !dst || !ms || !fresh_ms) {
		fail(b, "memcpy %s: cannot map the buffers: %s", sz,
		     strerror(errno));
		goto out;
	}
	progress(b, "ceiling: memcpy %s", sz);
	fill_pattern(src, map, 7);
	memset(dst, 0, map);
	memcpy(dst, src, size);
	for (unsigned k = 0; k < n; k++) {
		double t0 = now_ns();

		memcpy(dst, src, size);
		ms[k] = (now_ns() - t0) / 1e6;
	}
	/* reading the copy also keeps the compiler from dropping it */
	if (memcmp(dst, src, size)) {
		fail(b, "memcpy %s: the copy differs from its source", sz);
		goto out;
	}
	for (unsigned k = 0; k < n; k++) {
		uint8_t *fresh = map_aligned(map, true);
		double t0 = now_ns();
		bool same;

		if (!fresh) {
			fail(b, "memcpy %s: cannot map a buffer: %s", sz,
			     strerror(errno));
			goto out;
		}
		memcpy(fresh, src, size);
		fresh_ms[k] = (now_ns() - t0) / 1e6;
		same = !memcmp(fresh, src, size);
		unmap_aligned(fresh, map);
		if (!same) {
			fail(b, "memcpy %s: the copy differs from its source",
			     sz);
			goto out;
		}
	}
	summarize(ms, n, &b->mcp[i].ms);
	summarize(fresh_ms, n, &b->mcp[i].fresh_ms);
	b->mcp[i].done = true;
out:
	unmap_aligned(src, map);
	unmap_aligned(dst, map);
	free(ms);
	free(fresh_ms);
}

void run_memcpy(struct bench *b)
{
	for (unsigned i = 0; i < b->opt.nsizes; i++)
		memcpy_row(b, i);
	progress_done(b);
}

/* The raw userfaultfd round trip: one range, one handler thread. */
struct uffd_run {
	int uffd;
	uint8_t *area;	   /* UFFD_PAGES + 1 pages, MISSING-registered */
	uint8_t *src;	   /* what UFFDIO_COPY installs */
	int handler_cpu;   /* -1: wherever the scheduler puts it */
	_Atomic int error; /* the handler's, as a negative errno */
};

static int pin_self(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return -pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/* The handler failed: unregistering the range wakes the faulting thread,
 * whose access then completes as an ordinary fault, so nothing hangs. */
static void *handler_failed(struct uffd_run *u, int err)
{
	struct uffdio_range all = {
		.start = (uintptr_t)u->area,
		.len = (UFFD_PAGES + 1) * PAGE_SIZE,
	};

	u->error = err;
	ioctl(u->uffd, UFFDIO_UNREGISTER, &all);
	return NULL;
}

/* Blocking read() of one event, UFFDIO_COPY of one 4 KB page, and again,
 * until the page after the measured ones has been served. */
static void *uffd_handler(void *arg)
{
	struct uffd_run *u = arg;
	uintptr_t last = (uintptr_t)u->area + UFFD_PAGES * PAGE_SIZE;

	if (u->handler_cpu >= 0)
		pin_self(u->handler_cpu);
	for (;;) {
		struct uffd_msg msg;
		struct uffdio_copy copy;
		ssize_t n = read(u->uffd, &msg, sizeof(msg));

		if (n < 0 && errno == EINTR)
			continue;
		if (n != sizeof(msg))
			return handler_failed(u, n < 0 ? -errno : -EIO);
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		copy = (struct uffdio_copy){
			.dst = msg.arg.pagefault.address & ~(PAGE_SIZE - 1),
			.src = (uintptr_t)u->src,
			.len = PAGE_SIZE,
		};
		if (ioctl(u->uffd, UFFDIO_COPY, &copy) && errno != EEXIST)
			return handler_failed(u, -errno);
		if (copy.dst == last)
			return NULL;
	}
}

/* A userfaultfd: kernel faults too if we may, else user-mode only (the
 * sysctl vm.unprivileged_userfaultfd=0 and no CAP_SYS_PTRACE). */
static int uffd_open(bool *user_mode_only)
{
	struct uffdio_api api = { .api = UFFD_API };
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);

	*user_mode_only = false;
	if (fd < 0 && errno == EPERM) {
		fd = (int)syscall(SYS_userfaultfd,
				  O_CLOEXEC | UFFD_USER_MODE_ONLY);
		*user_mode_only = fd >= 0;
	}
	if (fd < 0)
		return -errno;
	if (ioctl(fd, UFFDIO_API, &api)) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

/*
 * One pass: a fresh MISSING-registered range (4 KB pages only, so that
 * no THP is allocated and thrown away before the event), the handler
 * thread, and UFFD_PAGES timed one-byte reads, one fault each.
 */
static int uffd_pass(struct uffd_run *u, int main_cpu, double *us)
{
	size_t len = (UFFD_PAGES + 1) * PAGE_SIZE;
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	volatile uint8_t *p;
	pthread_t th;
	uint8_t sink = 0;
	int err;

	u->area = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (u->area == MAP_FAILED)
		return -errno;
	madvise(u->area, len, MADV_NOHUGEPAGE);
	reg.range.start = (uintptr_t)u->area;
	reg.range.len = len;
	if (ioctl(u->uffd, UFFDIO_REGISTER, &reg)) {
		err = -errno;
		munmap(u->area, len);
		return err;
	}
	u->error = 0;
	if (main_cpu >= 0)
		pin_self(main_cpu);
	err = -pthread_create(&th, NULL, uffd_handler, u);
	if (err) {
		munmap(u->area, len);
		return err;
	}
	p = u->area;
	for (unsigned k = 0; k < UFFD_PAGES && !u->error; k++) {
		double t0 = now_ns();

		sink ^= p[(size_t)k * PAGE_SIZE];
		us[k] = (now_ns() - t0) / 1e3;
	}
	/* the last page lets the handler go */
	sink ^= p[(size_t)UFFD_PAGES * PAGE_SIZE];
	pthread_join(th, NULL);
	(void)sink;
	err = u->error;
	if (!err && p[0] != u->src[0])
		err = -EIO;   /* the copy did not install our page */
	munmap(u->area, len); /* unregisters it too */
	return err;
}

/* Where the handler runs for each placement; the faulting thread runs on
 * first (or anywhere, for PLACE_ANY). */
static int handler_cpu(int pl, int first, int other)
{
	switch (pl) {
	case PLACE_SAME_CPU:
		return first;
	case PLACE_OTHER_CPU:
		return other;
	}
	return -1;
}

static const char *const place_name[NPLACES] = {
	"scheduler's choice",
	"same CPU",
	"other CPU",
};

void run_uffd(struct bench *b)
{
	struct uffd_result *r = &b->uffd;
	unsigned passes = b->opt.iterations;
	struct uffd_run u = { .uffd = -1 };
	cpu_set_t saved;
	double *us = calloc((size_t)UFFD_PAGES * passes, sizeof(double));
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int first_cpu = -1, other_cpu = -1;

	memset(r, 0, sizeof(*r));
	r->faults = UFFD_PAGES;
	pthread_getaffinity_np(pthread_self(), sizeof(saved), &saved);
	for (int c = 0; c < CPU_SETSIZE && other_cpu < 0; c++)
		if (CPU_ISSET(c, &saved)) {
			if (first_cpu < 0)
				first_cpu = c;
			else
				other_cpu = c;
		}
	u.src = aligned_alloc(PAGE_SIZE, PAGE_SIZE);
	if (!us || !u.src) {
		fail(b, "raw userfaultfd: out of memory");
		goto out;
	}
	memset(u.src, 0xa5, PAGE_SIZE);
	u.uffd = uffd_open(&r->user_mode_only);
	if (u.uffd < 0) {
		snprintf(r->error, sizeof(r->error), "userfaultfd: %s",
			 strerror(-u.uffd));
		warn(b, "raw userfaultfd round trip not measured: %s",
		     r->error);
		goto out;
	}
	for (int pl = 0; pl < NPLACES; pl++) {
		int main_cpu = pl == PLACE_ANY ? -1 : first_cpu;
		int err = 0;

		if (pl == PLACE_OTHER_CPU && (other_cpu < 0 || ncpu < 2))
			continue; /* one CPU: nothing to compare */
		u.handler_cpu = handler_cpu(pl, first_cpu, other_cpu);
		progress(b, "ceiling: userfaultfd round trip, handler on %s",
			 place_name[pl]);
		for (unsigned k = 0; k < passes && !err; k++) {
			progress_iter(b, k + 1, passes);
			err = uffd_pass(&u, main_cpu,
					us + (size_t)k * UFFD_PAGES);
		}
		pthread_setaffinity_np(pthread_self(), sizeof(saved), &saved);
		if (err) {
			snprintf(r->error, sizeof(r->error),
				 "userfaultfd round trip (%s): %s",
				 place_name[pl], strerror(-err));
			fail(b, "raw %s", r->error);
			break;
		}
		summarize(us, UFFD_PAGES * passes, &r->us[pl]);
		r->done[pl] = true;
	}
out:
	progress_done(b);
	if (u.uffd >= 0)
		close(u.uffd);
	free(u.src);
	free(us);
}

const char *placement_name(int pl)
{
	return pl >= 0 && pl < NPLACES ? place_name[pl] : "?";
}
