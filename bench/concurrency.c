/* SPDX-License-Identifier: MIT */
/*
 * devmem-bench section 4: N clients migrating at once.
 *
 * Each client is a process of its own (fork) with its own devmem_t, as
 * independent applications would be.  The parent releases all clients into
 * each phase (system->device, then device->system) at the same moment and
 * times the phase until the last client reports; the aggregate throughput
 * is all clients' bytes over that wall time.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "common.h"

#define REPORT_TIMEOUT_MS 120000
#define REAP_TIMEOUT_MS 10000

/* What a client says after each step: 0, a negative errno from devmem, or
 * one of these */
enum { CLIENT_MISMATCH = 1, CLIENT_NOMEM = 2, CLIENT_SHORT = 3 };

struct client {
	pid_t pid;
	int go_fd;   /* the parent's end of the client's go pipe */
	int done_fd; /* the parent's end of the client's report pipe */
};

static void report(int fd, int status)
{
	if (write(fd, &status, sizeof(status)) != sizeof(status))
		_exit(1); /* the parent is gone */
}

/* Wait for the parent's go; false when it has closed the pipe (stop). */
static bool wait_go(int go_fd)
{
	char c;
	ssize_t n;

	do
		n = read(go_fd, &c, 1);
	while (n < 0 && errno == EINTR);
	return n == 1;
}

static int client_migrate(devmem_t *dm, void *p, uint64_t size,
			  enum devmem_target to)
{
	struct devmem_result res;
	int err = devmem_migrate(dm, p, size, to, 0, &res);

	if (!err && res.pages != size / PAGE_SIZE)
		err = CLIENT_SHORT;
	return err;
}

/*
 * The client process: connect, fill a THP-backed buffer, one warm-up
 * round trip, report ready; then one migration per go, reporting each;
 * verify the data on the last go.  Never returns.
 */
static void __attribute__((noreturn))
client_main(const char *sock, uint64_t size, unsigned iters, int go_fd,
	    int done_fd, uint64_t seed)
{
	devmem_t *dm = NULL;
	void *p;
	size_t off;
	int st;

	/* the parent's handlers stop its private devmemd: not ours to do */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	p = map_aligned(size, true);
	st = p ? devmem_connect(sock, &dm) : CLIENT_NOMEM;
	if (!st)
		st = devmem_register(dm, p, size);
	if (!st) {
		fill_pattern(p, size, seed);
		st = client_migrate(dm, p, size, DEVMEM_TO_DEVICE);
	}
	if (!st)
		st = client_migrate(dm, p, size, DEVMEM_TO_SYSTEM);
	report(done_fd, st);
	for (unsigned k = 0; k < 2 * iters; k++) {
		if (!wait_go(go_fd))
			goto out;
		if (!st)
			st = client_migrate(dm, p, size,
					    k % 2 ? DEVMEM_TO_SYSTEM
						  : DEVMEM_TO_DEVICE);
		report(done_fd, st);
	}
	if (!wait_go(go_fd))
		goto out;
	if (!st && !check_pattern(p, size, seed, &off))
		st = CLIENT_MISMATCH;
	report(done_fd, st);
out:
	if (dm)
		devmem_disconnect(dm);
	_exit(0);
}

static const char *client_error(int st)
{
	switch (st) {
	case CLIENT_MISMATCH:
		return "data mismatch after the round trips";
	case CLIENT_NOMEM:
		return "cannot map its buffer";
	case CLIENT_SHORT:
		return "a migration left pages behind";
	}
	return devmem_strerror(st);
}

/* One report from every client; false (and a message) if any failed, died
 * or went quiet. */
static bool collect(struct bench *b, struct client *c, unsigned n,
		    const char *step)
{
	for (unsigned i = 0; i < n; i++) {
		struct pollfd pfd = { c[i].done_fd, POLLIN, 0 };
		int st = 0;
		ssize_t got = 0;

		if (poll(&pfd, 1, REPORT_TIMEOUT_MS) == 1)
			got = read(c[i].done_fd, &st, sizeof(st));
		if (got != sizeof(st)) {
			fail(b, "concurrency: client %u of %u %s during %s",
			     i + 1, n, got == 0 ? "died" : "did not report",
			     step);
			return false;
		}
		if (st) {
			fail(b, "concurrency: client %u of %u, %s: %s", i + 1,
			     n, step, client_error(st));
			return false;
		}
	}
	return true;
}

/* One go byte per client, each down its own pipe: with one shared pipe a
 * fast client could take a slow one's go and run ahead a phase. */
static bool release_all(const struct client *c, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (write(c[i].go_fd, "g", 1) != 1)
			return false;
	return true;
}

/* Clients still waiting for a go see EOF and leave. */
static void stop_all(struct client *c, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (c[i].go_fd >= 0) {
			close(c[i].go_fd);
			c[i].go_fd = -1;
		}
}

/* Wait for the clients (their go pipes are closed: they are leaving);
 * one that does not leave within REAP_TIMEOUT_MS is killed. */
static void reap(struct bench *b, struct client *c, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		int status, waited = 0;
		pid_t got;

		if (c[i].pid <= 0)
			continue;
		while ((got = waitpid(c[i].pid, &status, WNOHANG)) == 0 &&
		       waited < REAP_TIMEOUT_MS) {
			usleep(10000);
			waited += 10;
		}
		if (got == 0) {
			kill(c[i].pid, SIGKILL);
			got = waitpid(c[i].pid, &status, 0);
		}
		if (got == c[i].pid && WIFSIGNALED(status) &&
		    WTERMSIG(status) != SIGKILL)
			fail(b, "concurrency: client %u died of signal %d",
			     i + 1, WTERMSIG(status));
		if (c[i].done_fd >= 0)
			close(c[i].done_fd);
	}
}

/*
 * n clients of size bytes each through iters round trips; the wall time
 * of each phase into s2d/d2s (ms).  Returns true on success.
 */
static bool run_clients(struct bench *b, unsigned n, uint64_t size,
			struct summary *s2d, struct summary *d2s)
{
	unsigned iters = b->opt.iterations, started = 0;
	struct client *c = calloc(n, sizeof(*c));
	double *t_s2d = calloc(iters, sizeof(double));
	double *t_d2s = calloc(iters, sizeof(double));
	bool ok = false;

	if (!c || !t_s2d || !t_d2s) {
		fail(b, "concurrency: out of memory");
		goto out;
	}
	fflush(NULL);
	for (; started < n; started++) {
		int go[2], done[2];

		if (pipe2(go, O_CLOEXEC)) {
			fail(b, "concurrency: pipe: %s", strerror(errno));
			goto stop;
		}
		if (pipe2(done, O_CLOEXEC)) {
			fail(b, "concurrency: pipe: %s", strerror(errno));
			close(go[0]);
			close(go[1]);
			goto stop;
		}
		c[started].pid = fork();
		if (c[started].pid < 0) {
			fail(b, "concurrency: fork: %s", strerror(errno));
			close(go[0]);
			close(go[1]);
			close(done[0]);
			close(done[1]);
			goto stop;
		}
		if (c[started].pid == 0) {
			/* only the parent may hold a go pipe's write end,
			 * so that its exit means EOF to every client */
			for (unsigned i = 0; i < started; i++) {
				close(c[i].go_fd);
				close(c[i].done_fd);
			}
			close(go[1]);
			close(done[0]);
			client_main(b->dmd.socket, size, iters, go[0], done[1],
				    1000 + started);
		}
		close(go[0]);
		close(done[1]);
		c[started].go_fd = go[1];
		c[started].done_fd = done[0];
	}
	progress(b, "concurrency: %u client%s", n, n > 1 ? "s" : "");
	if (!collect(b, c, n, "setup and warm-up"))
		goto stop;
	for (unsigned it = 0; it < iters; it++) {
		double t0, t1, t2;

		progress_iter(b, it + 1, iters);
		t0 = now_ns();
		if (!release_all(c, n) ||
		    !collect(b, c, n, "Sys->Dev migration"))
			goto stop;
		t1 = now_ns();
		if (!release_all(c, n) ||
		    !collect(b, c, n, "Dev->Sys migration"))
			goto stop;
		t2 = now_ns();
		t_s2d[it] = (t1 - t0) / 1e6;
		t_d2s[it] = (t2 - t1) / 1e6;
	}
	if (!release_all(c, n) || !collect(b, c, n, "verification"))
		goto stop;
	summarize(t_s2d, iters, s2d);
	summarize(t_d2s, iters, d2s);
	ok = true;
stop:
	stop_all(c, started);
	reap(b, c, started);
out:
	free(c);
	free(t_s2d);
	free(t_d2s);
	return ok;
}

/* Each client's buffer: up to CONC_MAX_SIZE and the largest --sizes entry,
 * in whole 2 MB units, and all of them fitting in half the device, so that
 * eviction is not what gets measured. */
static uint64_t client_size(const struct bench *b, unsigned n)
{
	uint64_t size = 0;

	for (unsigned i = 0; i < b->opt.nsizes; i++)
		size = MAX(size, b->opt.sizes[i]);
	size = ALIGN_UP(MIN(size, CONC_MAX_SIZE), UNIT_SIZE);
	while (size > UNIT_SIZE && (uint64_t)n * size > b->dmd.capacity / 2)
		size = ALIGN_DOWN(size / 2, UNIT_SIZE);
	return (uint64_t)n * size <= b->dmd.capacity ? size : 0;
}

void run_concurrency(struct bench *b)
{
	struct conc_result *r = &b->conc;
	unsigned n = b->opt.clients;

	memset(r, 0, sizeof(*r));
	r->clients = n;
	r->size = client_size(b, n);
	if (!r->size) {
		warn(b,
		     "concurrency skipped: %u clients do not fit in the device",
		     n);
		return;
	}
	r->failed = true;
	if (!run_clients(b, 1, r->size, &r->one_s2d_ms, &r->one_d2s_ms))
		goto out;
	if (n == 1) {
		r->all_s2d_ms = r->one_s2d_ms;
		r->all_d2s_ms = r->one_d2s_ms;
	} else if (!run_clients(b, n, r->size, &r->all_s2d_ms,
				&r->all_d2s_ms)) {
		goto out;
	}
	r->failed = false;
	r->done = true;
out:
	progress_done(b);
}
