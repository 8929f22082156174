/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

extern char **environ;

const char *env_or(const char *name, const char *dflt)
{
	const char *v = getenv(name);

	return v && v[0] ? v : dflt;
}

bool accepts(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	bool ok;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	ok = fd >= 0 && !connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (fd >= 0)
		close(fd);
	return ok;
}

void daemon_start(struct daemon *d, const char *const *args)
{
	const char *argv[32];
	int n = 0;

	snprintf(d->dir, sizeof(d->dir), "/tmp/devmem-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(d->dir));
	snprintf(d->sock, sizeof(d->sock), "%s/devmemd.sock", d->dir);
	argv[n++] = env_or("DEVMEMD", "./devmemd");
	argv[n++] = "--foreground";
	argv[n++] = "--socket";
	argv[n++] = d->sock;
	argv[n++] = "--log-level";
	argv[n++] = env_or("DEVMEMD_LOG_LEVEL", "warn");
	for (; args && *args && n < 31; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	d->pid = fork();
	ck_assert_int_ge(d->pid, 0);
	if (d->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execv(argv[0], (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	for (int i = 0; i < 1000; i++) {
		int st;

		if (accepts(d->sock))
			return;
		ck_assert_msg(waitpid(d->pid, &st, WNOHANG) == 0,
			      "devmemd exited at start (status %d)", st);
		usleep(10000);
	}
	ck_abort_msg("devmemd did not start accepting on %s", d->sock);
}

int daemon_stop(struct daemon *d)
{
	int st;

	ck_assert_int_eq(kill(d->pid, SIGTERM), 0);
	for (int i = 0; i < 1000; i++) {
		pid_t r = waitpid(d->pid, &st, WNOHANG);

		if (r == d->pid) {
			ck_assert_msg(access(d->sock, F_OK) != 0,
				      "devmemd left its socket behind");
			rmdir(d->dir);
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		}
		usleep(10000);
	}
	kill(d->pid, SIGKILL);
	waitpid(d->pid, &st, 0);
	ck_abort_msg("devmemd did not stop on SIGTERM");
	return -1;
}

devmem_t *daemon_connect(const struct daemon *d)
{
	devmem_t *dm = NULL;
	int err = devmem_connect(d->sock, &dm);

	ck_assert_msg(err == 0, "devmem_connect: %s", devmem_strerror(err));
	return dm;
}

int ctl_run(const struct daemon *d, char *out, size_t outlen,
	    const char *const *args)
{
	posix_spawn_file_actions_t fa;
	const char *argv[16];
	int pfd[2], n = 0, st;
	size_t got = 0;
	pid_t pid;

	argv[n++] = env_or("DEVMEMCTL", "./devmemctl");
	argv[n++] = "--socket";
	argv[n++] = d->sock;
	for (; args && *args && n < 15; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	ck_assert_int_eq(pipe(pfd), 0);
	/* posix_spawn, not fork: a fork() brings the caller's device pages
	 * back first (libdevmem's pthread_atfork handler) */
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], STDOUT_FILENO);
	posix_spawn_file_actions_addclose(&fa, pfd[0]);
	ck_assert_int_eq(posix_spawn(&pid, argv[0], &fa, NULL,
				     (char *const *)argv, environ),
			 0);
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[1]);
	for (;;) {
		ssize_t r = read(pfd[0], out + got, outlen - 1 - got);

		if (r <= 0)
			break;
		got += (size_t)r;
		if (got == outlen - 1)
			break;
	}
	out[got] = '\0';
	close(pfd[0]);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void *map_aligned(size_t len, int prot, bool huge)
{
	uint8_t *raw = mmap(NULL, len + MB2, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *p;

	ck_assert_ptr_ne(raw, MAP_FAILED);
	p = (uint8_t *)(((uintptr_t)raw + MB2 - 1) & ~(MB2 - 1));
	if (p > raw)
		munmap(raw, p - raw);
	if (raw + len + MB2 > p + len)
		munmap(p + len, raw + len + MB2 - (p + len));
	ck_assert_int_eq(
		madvise(p, len, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE), 0);
	if (prot != (PROT_READ | PROT_WRITE))
		ck_assert_int_eq(mprotect(p, len, prot), 0);
	return p;
}

void fill_ints(void *p, size_t len, int seed)
{
	int *v = p;

	for (size_t i = 0; i < len / sizeof(int); i++)
		v[i] = (int)i + seed;
}

long check_ints(const void *p, size_t len, int seed)
{
	const int *v = p;

	for (size_t i = 0; i < len / sizeof(int); i++)
		if (v[i] != (int)i + seed)
			return (long)i;
	return -1;
}

long check_bytes(const void *p, size_t len, uint8_t v)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < len; i++)
		if (b[i] != v)
			return (long)i;
	return -1;
}

struct devmem_stats stats_of(devmem_t *dm)
{
	struct devmem_stats st;
	int err = devmem_stats(dm, &st);

	ck_assert_msg(err == 0, "devmem_stats: %s", devmem_strerror(err));
	return st;
}

bool wait_used(devmem_t *dm, uint64_t used)
{
	for (int i = 0; i < 1000; i++) {
		if (stats_of(dm).used == used)
			return true;
		usleep(10000);
	}
	return false;
}

bool snap_all(devmem_t *dm, const void *p, size_t npages, uint8_t v)
{
	uint8_t *st = malloc(npages);
	bool ok = true;

	ck_assert_ptr_nonnull(st);
	ck_assert_int_eq(devmem_snapshot(dm, p, npages, st), 0);
	for (size_t i = 0; i < npages && ok; i++)
		if (st[i] != v) {
			fprintf(stderr, "snapshot: page %zu is %#x, not %#x\n",
				i, st[i], v);
			ok = false;
		}
	free(st);
	return ok;
}

uint8_t snap_one(devmem_t *dm, const void *p)
{
	uint8_t st;

	ck_assert_int_eq(devmem_snapshot(dm, p, 1, &st), 0);
	return st;
}

size_t thp_pages(devmem_t *dm, const void *p, size_t len)
{
	size_t n = len / PG, huge = 0;
	uint8_t *st = malloc(n);

	ck_assert_ptr_nonnull(st);
	ck_assert_int_eq(devmem_snapshot(dm, p, n, st), 0);
	for (size_t i = 0; i < n; i++)
		huge += (st[i] & (DEVMEM_PAGE_HUGE | DEVMEM_PAGE_DEVICE)) ==
			DEVMEM_PAGE_HUGE;
	free(st);
	return huge;
}

void slow_events(const struct daemon *d, unsigned n)
{
	char arg[16], out[256];

	snprintf(arg, sizeof(arg), "%u", n);
	ck_assert_int_eq(ctl_run(d, out, sizeof(out),
				 (const char *const[]){ "inject", "slow-events",
							arg, NULL }),
			 0);
}
