/* SPDX-License-Identifier: MIT */
/*
 * Races between CPU faults, migrations, evictions and the client's own
 * munmap/madvise/mremap, each a reproducer of a bug found in review, and
 * devmemd going away under a live client.  Every test checks the data;
 * every wait is bounded, so a lost wake-up fails instead of hanging.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "harness.h"

static struct daemon D;
static devmem_t *dm;

static void start(void)
{
	daemon_start(&D, NULL);
	dm = daemon_connect(&D);
}

static void stop(void)
{
	devmem_disconnect(dm);
	ck_assert_int_eq(daemon_stop(&D), 0);
}

static void migrate(void *p, size_t len, int to, unsigned flags)
{
	int err = devmem_migrate(dm, p, len, to, flags, NULL);

	ck_assert_msg(!err, "devmem_migrate: %s", devmem_strerror(err));
}

/* 8-byte pattern, checked one word per page */
static void fill_pat(void *p, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len; i += 8)
		*(uint64_t *)((char *)p + i) = seed ^ i;
}

static size_t bad_pages(const void *p, size_t len, uint64_t seed)
{
	size_t bad = 0;

	for (size_t i = 0; i < len; i += PG)
		bad += *(const volatile uint64_t *)((const char *)p + i) !=
		       (seed ^ i);
	return bad;
}

/* join, or fail the test after secs: a thread asleep in a fault for ever */
static void join_within(pthread_t t, int secs, const char *what)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += secs;
	ck_assert_msg(!pthread_timedjoin_np(t, NULL, &ts),
		      "%s still asleep after %d s", what, secs);
}

static atomic_int go, done;
static void *Zpage;

struct touch {
	void *p;
	uint64_t seed;
	size_t bad;
};

static void *toucher(void *arg)
{
	struct touch *t = arg;

	while (!atomic_load(&go))
		;
	t->bad = bad_pages(t->p, MB2, t->seed);
	return NULL;
}

/* MADV_DONTNEED in a loop: every call is an event devmemd must read while
 * its fills wait for it (-EAGAIN) */
static void *dontneed(void *arg)
{
	while (!atomic_load(&go))
		;
	for (int i = 0; i < 100 && !atomic_load(&done); i++)
		madvise(Zpage, PG, MADV_DONTNEED);
	return NULL;
}

/* CPU faults on folios while another thread's madvise events are pending:
 * nothing lost, nobody left asleep */
START_TEST(test_faults_race_madvise)
{
	char *y[2], *z;

	start();
	y[0] = devmem_alloc(dm, MB2, DEVMEM_ALLOC_HUGE);
	y[1] = devmem_alloc(dm, MB2, DEVMEM_ALLOC_HUGE);
	z = devmem_alloc(dm, MB2, 0);
	Zpage = z;
	for (int it = 0; it < 60; it++) {
		struct touch t[2] = { { y[0], 10 + it, 0 },
				      { y[1], 20 + it, 0 } };
		pthread_t th[3];

		fill_pat(y[0], MB2, 10 + it);
		fill_pat(y[1], MB2, 20 + it);
		fill_pat(z, MB2, 30);
		migrate(y[0], MB2, DEVMEM_TO_DEVICE, 0);
		migrate(y[1], MB2, DEVMEM_TO_DEVICE, 0);
		migrate(z, MB2, DEVMEM_TO_DEVICE, DEVMEM_MIGRATE_4K);
		atomic_store(&go, 0);
		atomic_store(&done, 0);
		pthread_create(&th[0], NULL, toucher, &t[0]);
		pthread_create(&th[1], NULL, toucher, &t[1]);
		pthread_create(&th[2], NULL, dontneed, NULL);
		atomic_store(&go, 1);
		join_within(th[2], 10, "the madvise thread");
		join_within(th[0], 10, "a faulting thread");
		join_within(th[1], 10, "a faulting thread");
		ck_assert_msg(!t[0].bad && !t[1].bad,
			      "iteration %d: %zu and %zu pages lost", it,
			      t[0].bad, t[1].bad);
		migrate(z, MB2, DEVMEM_TO_SYSTEM, 0);
	}
	stop();
}
END_TEST

/* An explicit migration back while faults and madvise events keep the
 * client's address space changing */
START_TEST(test_back_race_faults_madvise)
{
	size_t xlen = 32 * MB2;
	char *x, *y[2], *z;

	start();
	x = devmem_alloc(dm, xlen, 0);
	y[0] = devmem_alloc(dm, MB2, 0);
	y[1] = devmem_alloc(dm, MB2, 0);
	z = devmem_alloc(dm, MB2, 0);
	Zpage = z;
	for (int r = 0; r < 5; r++) {
		struct touch t[2] = { { y[0], 2, 0 }, { y[1], 3, 0 } };
		pthread_t th[3];

		fill_pat(x, xlen, 0x1111 + r);
		fill_pat(y[0], MB2, 2);
		fill_pat(y[1], MB2, 3);
		fill_pat(z, MB2, 4);
		migrate(x, xlen, DEVMEM_TO_DEVICE, DEVMEM_MIGRATE_4K);
		migrate(y[0], MB2, DEVMEM_TO_DEVICE, DEVMEM_MIGRATE_4K);
		migrate(y[1], MB2, DEVMEM_TO_DEVICE, DEVMEM_MIGRATE_4K);
		migrate(z, MB2, DEVMEM_TO_DEVICE, DEVMEM_MIGRATE_4K);
		atomic_store(&go, 0);
		atomic_store(&done, 0);
		pthread_create(&th[0], NULL, toucher, &t[0]);
		pthread_create(&th[1], NULL, toucher, &t[1]);
		pthread_create(&th[2], NULL, dontneed, NULL);
		atomic_store(&go, 1);
		migrate(x, xlen, DEVMEM_TO_SYSTEM, 0);
		atomic_store(&done, 1);
		join_within(th[2], 10, "the madvise thread");
		join_within(th[0], 10, "a faulting thread");
		join_within(th[1], 10, "a faulting thread");
		ck_assert_uint_eq(bad_pages(x, xlen, 0x1111 + r), 0);
		ck_assert_uint_eq(t[0].bad + t[1].bad, 0);
		migrate(z, MB2, DEVMEM_TO_SYSTEM, 0);
	}
	stop();
}
END_TEST

/* mremap of device pages, then at once a touch of the new place: the fault
 * there must wait for the event, and the source's unmap must not free the
 * pages before the remap moves them.  With a second thread migrating in a
 * loop (holding the client busy), or a second client evicting. */
static atomic_int stop_bg;
static char *bg_buf;

static void *backer(void *arg)
{
	fill_pat(bg_buf, 16 * MB2, 99);
	while (!atomic_load(&stop_bg)) {
		devmem_migrate(dm, bg_buf, 16 * MB2, DEVMEM_TO_DEVICE,
			       DEVMEM_MIGRATE_4K, NULL);
		devmem_migrate(dm, bg_buf, 16 * MB2, DEVMEM_TO_SYSTEM, 0, NULL);
	}
	return NULL;
}

/* A control connection to D (buf: DM_MAX_MSG bytes); -1 on failure */
static int control_open(uint8_t *buf)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct dm_hello hello = { DM_ROLE_CONTROL, DM_PROTO_VERSION,
				  DM_PROTO_VERSION };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct dm_msg rep;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", D.sock);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    dm_send_msg(fd, buf, DM_MAX_MSG, DM_HELLO, 1, &hello, NULL, 0, NULL,
			0) ||
	    dm_recv_msg(fd, buf, DM_MAX_MSG, &rep, NULL, NULL)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	dm_msg_release(&rep);
	return fd;
}

/* Evict every unit of every client, as devmemctl evict does */
static int control_evict(int fd, uint8_t *buf, uint32_t id)
{
	struct dm_msg rep;

	if (dm_send_msg(fd, buf, DM_MAX_MSG, DM_EVICT, id, NULL, NULL, 0, NULL,
			0) ||
	    dm_recv_msg(fd, buf, DM_MAX_MSG, &rep, NULL, NULL))
		return -1;
	dm_msg_release(&rep);
	return 0;
}

/* a control connection evicting every unit of every client, in a loop */
static void *evictor(void *arg)
{
	uint8_t *buf = malloc(DM_MAX_MSG);
	uint32_t id = 1;
	int fd = buf ? control_open(buf) : -1;

	if (fd < 0) {
		free(buf);
		return (void *)1;
	}
	while (!atomic_load(&stop_bg) && !control_evict(fd, buf, ++id))
		;
	close(fd);
	free(buf);
	return NULL;
}

static void mremap_loop(void *(*background)(void *), unsigned flags)
{
	char *raw, *a, *b, *cur, *other;
	pthread_t th;
	int lost = 0, err;

	start();
	bg_buf = devmem_alloc(dm, 16 * MB2, 0);
	raw = mmap(NULL, 8 * MB2, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(raw, MAP_FAILED);
	a = (char *)ALIGN_UP((uintptr_t)raw, MB2);
	b = a + 2 * MB2;
	munmap(b, MB2);
	ck_assert_int_eq(devmem_register(dm, a, MB2), 0);
	atomic_store(&stop_bg, 0);
	if (background)
		pthread_create(&th, NULL, background, NULL);
	cur = a;
	other = b;
	for (int i = 0; i < 300; i++) {
		char *tmp;

		/* the registration moved with the mapping last time, unless
		 * an eviction had brought everything back first (devmemd
		 * follows only mappings that hold device pages) */
		err = devmem_register(dm, cur, MB2);
		ck_assert_msg(err == -EEXIST || (background == evictor && !err),
			      "devmem_register: %s", devmem_strerror(err));
		fill_pat(cur, MB2, (uint64_t)i);
		migrate(cur, MB2, DEVMEM_TO_DEVICE, flags);
		ck_assert_ptr_eq(mremap(cur, MB2, MB2,
					MREMAP_MAYMOVE | MREMAP_FIXED, other),
				 other);
		if (bad_pages(other, MB2, (uint64_t)i)) {
			fprintf(stderr, "iteration %d: data lost in the move\n",
				i);
			lost++;
		}
		tmp = cur;
		cur = other;
		other = tmp;
	}
	atomic_store(&stop_bg, 1);
	if (background)
		join_within(th, 20, "the background thread");
	ck_assert_int_eq(lost, 0);
	stop();
}

START_TEST(test_mremap_then_touch)
{
	mremap_loop(NULL, DEVMEM_MIGRATE_4K);
}
END_TEST

START_TEST(test_mremap_while_migrating)
{
	mremap_loop(backer, DEVMEM_MIGRATE_4K);
}
END_TEST

START_TEST(test_mremap_while_evicting)
{
	mremap_loop(evictor, 0);
}
END_TEST

/* A child that inherited the connection (fork without exec) does not keep
 * its dead parent's device memory */
START_TEST(test_forked_child_lets_go)
{
	int ready[2], st;
	pid_t parent;
	char c;

	daemon_start(&D, NULL);
	dm = daemon_connect(&D);
	ck_assert_int_eq(pipe(ready), 0);
	parent = fork();
	ck_assert_int_ge(parent, 0);
	if (parent == 0) {
		devmem_t *pd;
		char *p;

		if (devmem_connect(D.sock, &pd))
			_exit(1);
		p = devmem_alloc(pd, 4 * MB2, DEVMEM_ALLOC_HUGE);
		if (!p)
			_exit(2);
		memset(p, 5, 4 * MB2);
		if (devmem_migrate(pd, p, 4 * MB2, DEVMEM_TO_DEVICE, 0, NULL))
			_exit(3);
		if (fork() == 0) { /* the child lives on, without exec */
			sleep(30);
			_exit(0);
		}
		if (write(ready[1], "x", 1) != 1)
			_exit(4);
		_exit(0); /* the parent dies with device memory */
	}
	ck_assert_int_eq(read(ready[0], &c, 1), 1);
	ck_assert_int_eq(waitpid(parent, &st, 0), parent);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert_msg(wait_used(dm, 0),
		      "the dead parent's device memory is still held");
	stop();
}
END_TEST

/* A read-only range is copied in place, and libdevmem drops its pages
 * before FINISH: the MADV_DONTNEED's events, however late devmemd queues
 * them, must not discard what was just migrated */
START_TEST(test_inplace_events_before_finish)
{
	char *p;

	start();
	p = map_aligned(2 * MB2, PROT_READ | PROT_WRITE, true);
	fill_pat(p, MB2, 1);
	fill_pat(p + MB2, MB2, 2);
	ck_assert_int_eq(mprotect(p, 2 * MB2, PROT_READ), 0);
	ck_assert_int_eq(devmem_register(dm, p, 2 * MB2), 0);
	slow_events(&D, 2);
	migrate(p, 2 * MB2, DEVMEM_TO_DEVICE, 0);
	for (size_t i = 0; i < 2 * MB2; i += PG)
		ck_assert_msg(snap_one(dm, p + i) & DEVMEM_PAGE_DEVICE,
			      "page %zu is not on the device", i / PG);
	ck_assert_uint_eq(bad_pages(p, MB2, 1), 0);
	ck_assert_uint_eq(bad_pages(p + MB2, MB2, 2), 0);
	stop();
}
END_TEST

/* MADV_DONTNEED on device pages, then a request at once: the request sees
 * the event applied (those pages read as zeros), however late devmemd
 * queues it */
START_TEST(test_request_after_madvise)
{
	char *p;

	start();
	p = map_aligned(2 * MB2, PROT_READ | PROT_WRITE, true);
	fill_pat(p, MB2, 3);
	fill_pat(p + MB2, MB2, 4);
	ck_assert_int_eq(devmem_register(dm, p, 2 * MB2), 0);
	migrate(p, 2 * MB2, DEVMEM_TO_DEVICE, 0);
	slow_events(&D, 1);
	ck_assert_int_eq(madvise(p, MB2, MADV_DONTNEED), 0);
	migrate(p, 2 * MB2, DEVMEM_TO_SYSTEM, 0);
	for (size_t i = 0; i < MB2; i += 8)
		ck_assert_uint_eq(*(uint64_t *)(p + i), 0);
	ck_assert_uint_eq(bad_pages(p + MB2, MB2, 4), 0);
	ck_assert(wait_used(dm, 0));
	stop();
}
END_TEST

/* MADV_DONTNEED on device pages, then an eviction before devmemd queues the
 * event: the kernel lets fills through once the event is read but zaps the
 * range only after, so a fill then would bring the discarded data back */
START_TEST(test_evict_after_madvise)
{
	uint8_t *buf = malloc(DM_MAX_MSG);
	char *p;
	int fd;

	start();
	ck_assert_ptr_nonnull(buf);
	fd = control_open(buf);
	ck_assert_int_ge(fd, 0);
	p = map_aligned(2 * MB2, PROT_READ | PROT_WRITE, true);
	fill_pat(p, MB2, 5);
	fill_pat(p + MB2, MB2, 6);
	ck_assert_int_eq(devmem_register(dm, p, 2 * MB2), 0);
	migrate(p, MB2, DEVMEM_TO_DEVICE, 0);
	migrate(p + MB2, MB2, DEVMEM_TO_DEVICE, DEVMEM_MIGRATE_4K);
	slow_events(&D, 1);
	ck_assert_int_eq(madvise(p + MB2 / 2, MB2, MADV_DONTNEED), 0);
	ck_assert_int_eq(control_evict(fd, buf, 2), 0);
	ck_assert_uint_eq(bad_pages(p, MB2 / 2, 5), 0);
	for (size_t i = MB2 / 2; i < MB2 + MB2 / 2; i += 8)
		ck_assert_msg(!*(uint64_t *)(p + i),
			      "byte %#zx holds discarded data", i);
	for (size_t i = MB2 + MB2 / 2; i < 2 * MB2; i += PG)
		ck_assert_uint_eq(*(uint64_t *)(p + i), 6 ^ (i - MB2));
	ck_assert(wait_used(dm, 0));
	close(fd);
	free(buf);
	stop();
}
END_TEST

/* devmemd killed under a live client: device pages raise SIGBUS (not
 * zeros), system pages are intact, calls fail with -ENOTCONN, and munmap
 * does not wait for an event nobody will read */
START_TEST(test_daemon_killed)
{
	struct devmem_stats st;
	int status;
	char *p, *q;
	pid_t pid;

	start();
	p = devmem_alloc(dm, 4 * MB2, DEVMEM_ALLOC_HUGE);
	q = devmem_alloc(dm, 4 * MB2, 0);
	fill_pat(p, 4 * MB2, 7);
	fill_pat(q, 4 * MB2, 9);
	migrate(p, 4 * MB2, DEVMEM_TO_DEVICE, 0);
	migrate(q, MB2, DEVMEM_TO_DEVICE, DEVMEM_MIGRATE_4K);
	migrate(q, MB2, DEVMEM_TO_SYSTEM, 0);
	kill(D.pid, SIGKILL);
	waitpid(D.pid, &status, 0);
	unlink(D.sock);
	rmdir(D.dir);
	/* the library notices at once, through its helper's channel */
	for (int i = 0; i < 200 && devmem_stats(dm, &st) != -ENOTCONN; i++)
		usleep(10000);
	ck_assert_int_eq(devmem_stats(dm, &st), -ENOTCONN);
	ck_assert_int_eq(devmem_migrate(dm, q, MB2, DEVMEM_TO_DEVICE, 0, NULL),
			 -ENOTCONN);
	usleep(100000); /* the helper poisons what was on the device */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		(void)*(volatile char *)(p + 12345);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS,
		      "a device page of a dead devmemd did not raise SIGBUS");
	ck_assert_uint_eq(bad_pages(q, 4 * MB2, 9), 0);
	ck_assert_int_eq(munmap(p, 4 * MB2), 0);
	devmem_disconnect(dm);
}
END_TEST

static Suite *races_suite(void)
{
	Suite *s = suite_create("races");
	TCase *tc = tcase_create("races");

	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, test_faults_race_madvise);
	tcase_add_test(tc, test_back_race_faults_madvise);
	tcase_add_test(tc, test_mremap_then_touch);
	tcase_add_test(tc, test_mremap_while_migrating);
	tcase_add_test(tc, test_mremap_while_evicting);
	tcase_add_test(tc, test_forked_child_lets_go);
	tcase_add_test(tc, test_inplace_events_before_finish);
	tcase_add_test(tc, test_request_after_madvise);
	tcase_add_test(tc, test_evict_after_madvise);
	tcase_add_test(tc, test_daemon_killed);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(races_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
