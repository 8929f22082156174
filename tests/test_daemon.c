/* SPDX-License-Identifier: MIT */
/*
 * devmemd as a whole, end to end: connecting and registering, clients that
 * die or write garbage, the daemon's life cycle and options, SO_PEERCRED,
 * devmemctl, many clients at once and many threads on one connection.
 * DESIGN.md semantics 1 and 8, the public API contract, and the command
 * lines of devmemd and devmemctl.
 */
#include "config.h"

#include <check.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "harness.h"
#include "protocol.h"
#include "uffd_compat.h"

#define NOBODY 65534
#define RW (PROT_READ | PROT_WRITE)

static struct daemon D;

/* for tests where devmemd has good reason to complain */
static const char *const quiet_args[] = { "--log-level", "error", NULL };

/* ---- what a failed test leaves behind ----
 *
 * A failed check ends the test's process at once: daemons it started die
 * with it (PR_SET_PDEATHSIG), but not a daemon that went to the background
 * (noted by pid), and directories and sockets stay.  Tests note them here;
 * the unchecked teardown, in the parent, removes what is left. */

#define NLEFT 32
struct leftovers {
	pid_t pid[NLEFT];
	char path[NLEFT][108];
};
static struct leftovers *left; /* shared with the forked tests */

static void left_pid(pid_t pid, bool add)
{
	for (int k = 0; k < NLEFT; k++)
		if (left->pid[k] == (add ? 0 : pid)) {
			left->pid[k] = add ? pid : 0;
			return;
		}
}

static void left_path(const char *path, bool add)
{
	for (int k = 0; k < NLEFT; k++)
		if (add ? !left->path[k][0] : !strcmp(left->path[k], path)) {
			snprintf(left->path[k], sizeof(left->path[k]), "%s",
				 add ? path : "");
			return;
		}
}

/* Is pid (still) a devmemd, not a process that got its pid since? */
static bool is_devmemd(pid_t pid)
{
	char path[64], comm[32] = "";
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	if (!fgets(comm, sizeof(comm), f))
		comm[0] = '\0';
	fclose(f);
	return !strcmp(comm, "devmemd\n");
}

static void left_teardown(void)
{
	for (int k = 0; k < NLEFT; k++) {
		char *path = left->path[k];
		struct dirent *e;
		DIR *dir;

		if (left->pid[k] > 0 && is_devmemd(left->pid[k]))
			kill(left->pid[k], SIGKILL);
		left->pid[k] = 0;
		if (!path[0])
			continue;
		dir = opendir(path);
		while (dir && (e = readdir(dir))) {
			char file[300];

			if (e->d_name[0] == '.')
				continue;
			snprintf(file, sizeof(file), "%s/%s", path, e->d_name);
			unlink(file);
		}
		if (dir) {
			closedir(dir);
			rmdir(path);
		} else {
			unlink(path);
		}
		path[0] = '\0';
	}
}

/* ---- processes ---- */

static const char *devmemd_bin(void)
{
	return env_or("DEVMEMD", "./devmemd");
}

static const char *devmemctl_bin(void)
{
	return env_or("DEVMEMCTL", "./devmemctl");
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* How to start a program */
struct spawn {
	const char *const *argv;
	const char *const *env; /* "NAME=value" sets NAME, "NAME" unsets it */
	bool nobody;		/* run as uid and gid 65534 */
	bool clear_umask;
	rlim_t nofile; /* soft RLIMIT_NOFILE; 0: inherited */
};

/* Start sp->argv; it gets SIGKILL when the test process dies */
static pid_t spawn(const struct spawn *sp)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid)
		return pid;
	if (sp->nofile) {
		struct rlimit rl;

		getrlimit(RLIMIT_NOFILE, &rl);
		rl.rlim_cur = MIN(sp->nofile, rl.rlim_max);
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (sp->clear_umask)
		umask(0);
	for (const char *const *e = sp->env; e && *e; e++) {
		const char *eq = strchr(*e, '=');
		char name[64];

		if (eq) {
			snprintf(name, sizeof(name), "%.*s", (int)(eq - *e),
				 *e);
			setenv(name, eq + 1, 1);
		} else {
			unsetenv(*e);
		}
	}
	if (sp->nobody &&
	    (setgroups(0, NULL) || setgid(NOBODY) || setuid(NOBODY)))
		_exit(126);
	/* after setuid, which clears it */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	execv(sp->argv[0], (char *const *)sp->argv);
	fprintf(stderr, "exec %s: %s\n", sp->argv[0], strerror(errno));
	_exit(127);
}

/* Wait up to ms for pid; its exit status, -1 for a signal, -2 if it is
 * still running (then it is left alone) */
static int wait_exit(pid_t pid, int ms)
{
	int st;

	for (int i = 0; i <= ms / 5; i++) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		ck_assert_int_eq(r, 0);
		usleep(5000);
	}
	return -2;
}

/* Run a program to completion (20 s at most) with its stdout and stderr
 * in out and err; returns its exit status, -1 if it did not exit.
 * posix_spawn, not fork: fork() makes libdevmem bring this process's
 * device pages back first (semantics 7), which would change what the
 * program is asked about. */
static int run(const char *const *argv, char *out, size_t outlen, char *err,
	       size_t errlen)
{
	posix_spawn_file_actions_t fa;
	int po[2], pe[2], status;
	struct pollfd pf[2];
	size_t n[2] = { 0, 0 };
	char *buf[2] = { out, err };
	size_t cap[2] = { outlen, errlen };
	pid_t pid;

	ck_assert_int_eq(pipe2(po, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(pe, O_CLOEXEC), 0);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, po[1], STDOUT_FILENO);
	posix_spawn_file_actions_adddup2(&fa, pe[1], STDERR_FILENO);
	ck_assert_int_eq(posix_spawn(&pid, argv[0], &fa, NULL,
				     (char *const *)argv, environ),
			 0);
	posix_spawn_file_actions_destroy(&fa);
	close(po[1]);
	close(pe[1]);
	pf[0] = (struct pollfd){ po[0], POLLIN, 0 };
	pf[1] = (struct pollfd){ pe[0], POLLIN, 0 };
	while (pf[0].fd >= 0 || pf[1].fd >= 0) {
		int r = poll(pf, 2, 20000);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		for (int k = 0; k < 2; k++) {
			char tmp[4096];
			ssize_t got;

			if (pf[k].fd < 0 || !pf[k].revents)
				continue;
			got = read(pf[k].fd, tmp, sizeof(tmp));
			if (got <= 0) {
				close(pf[k].fd);
				pf[k].fd = -1;
				continue;
			}
			got = MIN((size_t)got, cap[k] - 1 - n[k]);
			memcpy(buf[k] + n[k], tmp, (size_t)got);
			n[k] += (size_t)got;
		}
	}
	for (int k = 0; k < 2; k++) {
		if (pf[k].fd >= 0)
			close(pf[k].fd);
		buf[k][n[k]] = '\0';
	}
	status = wait_exit(pid, 20000);
	if (status == -2) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return -1;
	}
	return status;
}

/* argv = a..., b... (each NULL terminated, b may be NULL) */
static void cat_argv(const char **argv, size_t max, const char *const *a,
		     const char *const *b)
{
	size_t n = 0;

	for (; a && *a; a++) {
		ck_assert_uint_lt(n, max - 1);
		argv[n++] = *a;
	}
	for (; b && *b; b++) {
		ck_assert_uint_lt(n, max - 1);
		argv[n++] = *b;
	}
	argv[n] = NULL;
}

/* devmemd args... */
static int run_devmemd(const char *const *args, char *out, size_t outlen,
		       char *err, size_t errlen)
{
	const char *argv[40];

	cat_argv(argv, 40, (const char *const[]){ devmemd_bin(), NULL }, args);
	return run(argv, out, outlen, err, errlen);
}

/* devmemctl [--socket sock] args... */
static int run_ctl(const char *sock, const char *const *args, char *out,
		   size_t outlen, char *err, size_t errlen)
{
	const char *argv[40];

	if (sock)
		cat_argv(argv, 40,
			 (const char *const[]){ devmemctl_bin(), "--socket",
						sock, NULL },
			 args);
	else
		cat_argv(argv, 40,
			 (const char *const[]){ devmemctl_bin(), NULL }, args);
	return run(argv, out, outlen, err, errlen);
}

/* A private directory for a socket: d->dir, d->sock */
static void private_dir(struct daemon *d)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->dir, sizeof(d->dir), "/tmp/devmem-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(d->dir));
	left_path(d->dir, true);
	snprintf(d->sock, sizeof(d->sock), "%s/devmemd.sock", d->dir);
}

/* Like daemon_start, for the cases it does not cover: d->sock is set (and
 * passed with --socket if socket_opt), sp gives the environment and the
 * credentials.  Returns once d->sock accepts connections. */
static void dstart(struct daemon *d, bool socket_opt, const char *const *args,
		   const struct spawn *base)
{
	const char *argv[40];
	struct spawn sp = base ? *base : (struct spawn){ 0 };
	const char *pre[] = { devmemd_bin(),
			      "--foreground",
			      "--log-level",
			      env_or("DEVMEMD_LOG_LEVEL", "warn"),
			      socket_opt ? "--socket" : NULL,
			      d->sock,
			      NULL };

	cat_argv(argv, 40, pre, args);
	sp.argv = argv;
	d->pid = spawn(&sp);
	for (int i = 0; i < 1000; i++) {
		int st;

		if (accepts(d->sock))
			return;
		ck_assert_msg(waitpid(d->pid, &st, WNOHANG) == 0,
			      "devmemd exited at start (status %#x)", st);
		usleep(10000);
	}
	ck_abort_msg("devmemd did not start accepting on %s", d->sock);
}

/* daemon_start and daemon_stop, keeping track of leftovers */
static void start(struct daemon *d, const char *const *args)
{
	daemon_start(d, args);
	left_path(d->dir, true);
}

static int stop(struct daemon *d)
{
	int status = daemon_stop(d);

	if (d->dir[0])
		left_path(d->dir, false);
	return status;
}

static void remove_dir(const char *dir)
{
	rmdir(dir);
	left_path(dir, false);
}

static void assert_alive(const struct daemon *d)
{
	int st = 0;

	ck_assert_msg(waitpid(d->pid, &st, WNOHANG) == 0,
		      "devmemd died (status %#x)", st);
}

/* Entries of /proc/PID/fd */
static int count_fds(pid_t pid)
{
	char path[64];
	struct dirent *e;
	int n = 0;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	ck_assert_ptr_nonnull(dir);
	while ((e = readdir(dir)))
		n += e->d_name[0] != '.';
	closedir(dir);
	return n;
}

/* devmemd's own threads (io_uring's workers come and go by themselves);
 * their names in names */
static int count_threads_named(pid_t pid, char *names, size_t size)
{
	char path[64];
	struct dirent *e;
	size_t used = 0;
	int n = 0;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	dir = opendir(path);
	ck_assert_ptr_nonnull(dir);
	if (size)
		names[0] = '\0';
	while ((e = readdir(dir))) {
		char comm[64] = "";
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%.16s/comm",
			 (int)pid, e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue; /* gone meanwhile */
		if (!fgets(comm, sizeof(comm), f))
			comm[0] = '\0';
		fclose(f);
		comm[strcspn(comm, "\n")] = '\0';
		if (!strncmp(comm, "iou-", 4))
			continue;
		n++;
		if (used < size)
			used += (size_t)snprintf(names + used, size - used,
						 "%s%s", n > 1 ? " " : "",
						 comm);
	}
	closedir(dir);
	return n;
}

static int count_threads(pid_t pid)
{
	return count_threads_named(pid, NULL, 0);
}

/* devmemd's fds and threads at rest: the same for 100 ms (start()'s probe
 * connection, or a client that just left, closes a moment later; worker
 * threads start while the socket already accepts) */
static void base_resources(pid_t pid, int *fds, int *threads)
{
	int same = 0;

	*fds = count_fds(pid);
	*threads = count_threads(pid);
	for (int i = 0; i < 500 && same < 10; i++) {
		int f, t;

		usleep(10000);
		f = count_fds(pid);
		t = count_threads(pid);
		same = f == *fds && t == *threads ? same + 1 : 0;
		*fds = f;
		*threads = t;
	}
}

/* Wait (5 s) until devmemd is back to fds file descriptors and threads
 * threads; the final counts come back in *fds and *threads */
static bool wait_resources(pid_t pid, int *fds, int *threads)
{
	int f = -1, t = -1;

	for (int i = 0; i < 500; i++) {
		f = count_fds(pid);
		t = count_threads(pid);
		if (f == *fds && t == *threads)
			return true;
		usleep(10000);
	}
	{
		char names[2048], path[64], link[256];
		struct dirent *e;
		DIR *dir;

		count_threads_named(pid, names, sizeof(names));
		fprintf(stderr, "devmemd's threads: %s\ndevmemd's fds:", names);
		snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
		dir = opendir(path);
		while (dir && (e = readdir(dir))) {
			ssize_t n;

			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "/proc/%d/fd/%.16s",
				 (int)pid, e->d_name);
			n = readlink(path, link, sizeof(link) - 1);
			link[n > 0 ? n : 0] = '\0';
			fprintf(stderr, " %s:%s", e->d_name, link);
		}
		if (dir)
			closedir(dir);
		fprintf(stderr, "\n");
	}
	*fds = f;
	*threads = t;
	return false;
}

/* CPU time (user + system) used by a process, in clock ticks */
static long cpu_ticks(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long ut, st;
	const char *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	ck_assert_ptr_nonnull(p);
	/* state ppid pgrp session tty tpgid flags minflt cminflt majflt
	 * cmajflt utime stime */
	ck_assert_int_eq(
		sscanf(p + 2,
		       "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
		       &ut, &st),
		2);
	return (long)(ut + st);
}

/* A 2 MB-aligned private anonymous mapping, without asserting (for child
 * processes and threads); NULL on failure */
static void *xmap_aligned(size_t len, bool huge)
{
	uint8_t *raw =
		mmap(NULL, len + MB2, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *p;

	if (raw == MAP_FAILED)
		return NULL;
	p = (uint8_t *)ALIGN_UP((uintptr_t)raw, MB2);
	if (p > raw)
		munmap(raw, (size_t)(p - raw));
	munmap(p + len, (size_t)(raw + MB2 - p));
	madvise(p, len, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	return p;
}

static void reg(devmem_t *dm, void *p, size_t len)
{
	int err = devmem_register(dm, p, len);

	ck_assert_msg(!err, "devmem_register: %s", devmem_strerror(err));
}

static struct devmem_result migrate(devmem_t *dm, void *p, size_t len, int to,
				    unsigned flags)
{
	struct devmem_result res;
	int err = devmem_migrate(dm, p, len, to, flags, &res);

	ck_assert_msg(!err, "devmem_migrate: %s", devmem_strerror(err));
	return res;
}

/* A new client registers 2 MB, sends it to the device, and the CPU faults
 * it back: devmemd serves clients */
static void fresh_client_works(const struct daemon *d, int seed)
{
	devmem_t *c = daemon_connect(d);
	char *p = map_aligned(MB2, RW, seed & 1);
	struct devmem_stats st;

	reg(c, p, MB2);
	fill_ints(p, MB2, seed);
	ck_assert_uint_eq(migrate(c, p, MB2, DEVMEM_TO_DEVICE, 0).pages, 512);
	ck_assert_uint_eq(stats_of(c).client_used, MB2);
	ck_assert_int_eq(check_ints(p, MB2, seed), -1);
	st = stats_of(c);
	ck_assert_uint_ge(st.cpu_faults, 1);
	ck_assert_uint_eq(st.to_system_pages, 512);
	ck_assert_uint_eq(st.client_used, 0);
	devmem_disconnect(c);
	munmap(p, MB2);
}

/* ---- a small JSON checker, for devmemctl --json ---- */

static const char *j_ws(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return p;
}

static const char *j_string(const char *p)
{
	if (*p++ != '"')
		return NULL;
	for (;;) {
		unsigned char ch = (unsigned char)*p++;

		if (ch == '"')
			return p;
		if (ch < 0x20) /* the terminating NUL too */
			return NULL;
		if (ch != '\\')
			continue;
		ch = (unsigned char)*p++;
		if (ch == 'u') {
			for (int i = 0; i < 4; i++)
				if (!isxdigit((unsigned char)*p++))
					return NULL;
		} else if (!ch || !strchr("\"\\/bfnrt", ch)) {
			return NULL;
		}
	}
}

static const char *j_digits(const char *p)
{
	if (!isdigit((unsigned char)*p))
		return NULL;
	while (isdigit((unsigned char)*p))
		p++;
	return p;
}

static const char *j_number(const char *p)
{
	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (!(p = j_digits(p)))
		return NULL;
	if (*p == '.' && !(p = j_digits(p + 1)))
		return NULL;
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		p = j_digits(p);
	}
	return p;
}

static const char *j_value(const char *p, int depth)
{
	char close;

	if (depth > 16)
		return NULL;
	p = j_ws(p);
	switch (*p) {
	case '{':
	case '[':
		close = *p == '{' ? '}' : ']';
		p = j_ws(p + 1);
		if (*p == close)
			return p + 1;
		for (;;) {
			if (close == '}') {
				p = j_string(j_ws(p));
				if (!p)
					return NULL;
				p = j_ws(p);
				if (*p++ != ':')
					return NULL;
			}
			p = j_value(p, depth + 1);
			if (!p)
				return NULL;
			p = j_ws(p);
			if (*p == close)
				return p + 1;
			if (*p++ != ',')
				return NULL;
		}
	case '"':
		return j_string(p);
	case 't':
		return strncmp(p, "true", 4) ? NULL : p + 4;
	case 'f':
		return strncmp(p, "false", 5) ? NULL : p + 5;
	case 'n':
		return strncmp(p, "null", 4) ? NULL : p + 4;
	default:
		return j_number(p);
	}
}

/* One JSON value, nothing but white space after it */
static bool json_valid(const char *s)
{
	const char *p = j_value(s, 0);

	return p && !*j_ws(p);
}

static const char *json_key(const char *js, const char *key)
{
	char pat[80];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(js, pat);
	return p ? j_ws(p + strlen(pat)) : NULL;
}

static uint64_t json_u64(const char *js, const char *key)
{
	const char *p = json_key(js, key);
	char *end;
	unsigned long long v;

	ck_assert_msg(p, "no \"%s\" in %s", key, js);
	errno = 0;
	v = strtoull(p, &end, 10);
	ck_assert_msg(end > p && !errno, "\"%s\" is not a number in %s", key,
		      js);
	return v;
}

static double json_double(const char *js, const char *key)
{
	const char *p = json_key(js, key);
	char *end;
	double v;

	ck_assert_msg(p, "no \"%s\" in %s", key, js);
	v = strtod(p, &end);
	ck_assert_msg(end > p, "\"%s\" is not a number in %s", key, js);
	return v;
}

/* All "pid" values of devmemctl --json clients */
static int json_pids(const char *js, pid_t *pids, int max)
{
	int n = 0;

	for (const char *p = strstr(js, "\"pid\":"); p && n < max;
	     p = strstr(p + 1, "\"pid\":"))
		pids[n++] = (pid_t)strtol(p + 6, NULL, 10);
	return n;
}

/* A devmemctl command that must succeed, with its stdout */
static void ctl_ok(const struct daemon *d, char *out, size_t outlen,
		   const char *const *args)
{
	char err[4096];
	int st = run_ctl(d->sock, args, out, outlen, err, sizeof(err));

	ck_assert_msg(st == 0, "devmemctl %s: exit %d: %s", args[0], st, err);
}

static uint64_t status_field(const struct daemon *d, const char *key)
{
	char out[8192];

	ctl_ok(d, out, sizeof(out),
	       (const char *const[]){ "--json", "status", NULL });
	return json_u64(out, key);
}

/* Wait (5 s) until devmemctl clients lists exactly the pids given */
static bool wait_client_pids(const struct daemon *d, const pid_t *want,
			     int nwant, char *out, size_t outlen)
{
	for (int i = 0; i < 100; i++) {
		pid_t got[64];
		int n, match = 0;

		ctl_ok(d, out, outlen,
		       (const char *const[]){ "--json", "clients", NULL });
		n = json_pids(out, got, 64);
		for (int k = 0; k < n; k++)
			for (int j = 0; j < nwant; j++)
				match += got[k] == want[j];
		if (n == nwant && match == nwant)
			return true;
		usleep(50000);
	}
	return false;
}

/* One line of text, ending in a newline */
static bool one_line(const char *s)
{
	const char *nl = strchr(s, '\n');

	return s[0] && nl && !nl[1];
}

/* ---- raw protocol ---- */

static uint8_t rawbuf[DM_MAX_MSG];

static int raw_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 10 };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	ck_assert_msg(!connect(fd, (struct sockaddr *)&sa, sizeof(sa)),
		      "connect %s: %s", path, strerror(errno));
	/* never wait for devmemd forever */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static size_t enc(void *buf, size_t size, uint16_t type, uint32_t id,
		  const void *body, const void *tail, uint32_t ntail)
{
	ssize_t n = dm_encode(buf, size, type, id, body, tail, ntail);

	ck_assert_int_gt(n, 0);
	return (size_t)n;
}

/* One record with up to 4 file descriptors; devmemd may have closed the
 * connection already, so errors are not checked */
static void send_record(int sock, const void *buf, size_t len, const int *fds,
			int nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { (void *)buf, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (nfds) {
		struct cmsghdr *cm;

		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)nfds);
	}
	(void)sendmsg(sock, &mh, MSG_NOSIGNAL);
}

/* A request that must be answered: its reply's status (the reply is in
 * *rep if rep is not NULL; the caller releases it) */
static int raw_call(int fd, uint16_t type, const void *body, const void *tail,
		    uint32_t ntail, const int *fds, int nfds,
		    struct dm_msg *rep)
{
	static uint32_t id;
	struct dm_msg local;
	size_t n = enc(rawbuf, sizeof(rawbuf), type, ++id, body, tail, ntail);
	int err, status;

	if (!rep)
		rep = &local;
	ck_assert_int_eq(dm_send(fd, rawbuf, n, fds, nfds), (ssize_t)n);
	err = dm_recv_msg(fd, rawbuf, sizeof(rawbuf), rep, NULL, NULL);
	ck_assert_msg(!err, "%s: no reply from devmemd: %s", dm_type_name(type),
		      strerror(-err));
	ck_assert_uint_eq(rep->hdr.type, type | DM_REPLY);
	ck_assert_uint_eq(rep->hdr.id, id);
	status = rep->u.status.status;
	if (rep == &local)
		dm_msg_release(&local);
	return status;
}

static void raw_hello(int fd, uint32_t role)
{
	struct dm_hello h = { role, DM_PROTO_VERSION, DM_PROTO_VERSION };

	ck_assert_int_eq(raw_call(fd, DM_HELLO, &h, NULL, 0, NULL, 0, NULL), 0);
}

/* devmemd must close the connection, or answer with an error (and then
 * close it or not); closes fd */
static void expect_rejected(int fd, const char *what)
{
	bool answered = false;

	for (;;) {
		struct pollfd pf = { fd, POLLIN, 0 };
		int r = poll(&pf, 1, answered ? 500 : 5000);
		struct dm_msg m;
		ssize_t n;

		if (r == 0) {
			ck_assert_msg(
				answered,
				"%s: devmemd neither answered nor closed the connection",
				what);
			break;
		}
		n = recv(fd, rawbuf, sizeof(rawbuf), 0);
		if (n == 0 ||
		    (n < 0 && (errno == ECONNRESET || errno == EPIPE)))
			break; /* closed */
		ck_assert_msg(n > 0, "%s: recv: %s", what, strerror(errno));
		ck_assert_msg(!dm_decode(rawbuf, (size_t)n, &m),
			      "%s: devmemd answered with garbage", what);
		ck_assert_msg(
			m.hdr.type & DM_REPLY && m.u.status.status < 0,
			"%s: devmemd accepted it (reply type %#x, status %d)",
			what, m.hdr.type, m.u.status.status);
		dm_msg_release(&m);
		answered = true;
	}
	close(fd);
}

/* ==== connecting ==== */

START_TEST(test_connect_stats)
{
	static const char *const args[] = { "--size", "256M", NULL };
	struct devmem_stats st;
	devmem_t *dm, *other;
	char out[8192];
	pid_t me = getpid();
	char *p;

	start(&D, args);
	dm = daemon_connect(&D);
	st = stats_of(dm);
	ck_assert_uint_eq(st.capacity, 256ul << 20);
	ck_assert_uint_eq(st.used, 0);
	ck_assert_uint_eq(st.client_used, 0);
	ck_assert_uint_eq(st.to_device_pages + st.to_system_pages +
				  st.huge_migrations + st.splits +
				  st.cpu_faults + st.evictions,
			  0);
	ck_assert(wait_client_pids(&D, &me, 1, out, sizeof(out)));
	p = map_aligned(4 * MB2, RW, true);
	reg(dm, p, 4 * MB2);
	fill_ints(p, 4 * MB2, 1);
	st = stats_of(dm); /* registered, not migrated: nothing used */
	ck_assert_uint_eq(st.used, 0);
	ck_assert_uint_eq(st.client_used, 0);
	/* 2 MB on the device when the client disconnects: it comes back */
	ck_assert_uint_eq(migrate(dm, p, MB2, DEVMEM_TO_DEVICE, 0).pages, 512);
	ck_assert_uint_eq(stats_of(dm).used, MB2);
	devmem_disconnect(dm);
	ck_assert_int_eq(check_ints(p, 4 * MB2, 1), -1);
	other = daemon_connect(&D);
	st = stats_of(other);
	ck_assert_uint_eq(st.used, 0);
	ck_assert_uint_eq(st.client_used, 0);
	ck_assert_uint_eq(st.capacity, 256ul << 20);
	devmem_disconnect(other);
	ck_assert(wait_client_pids(&D, NULL, 0, out, sizeof(out)));
	ck_assert_uint_eq(status_field(&D, "used"), 0);
	ck_assert_uint_eq(status_field(&D, "clients"), 0);
	/* the memory stays plain memory after the disconnect */
	memset(p, 7, 4 * MB2);
	ck_assert_int_eq(stop(&D), 0);
}
END_TEST

START_TEST(test_connect_nobody_listens)
{
	char dir[] = "/tmp/devmem-test-XXXXXX", path[108], lng[300];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	devmem_t *dm = (devmem_t *)&dm; /* devmem_connect must clear it */
	const char *msg;
	int err, fd;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	left_path(dir, true);
	/* no file */
	snprintf(path, sizeof(path), "%s/none.sock", dir);
	err = devmem_connect(path, &dm);
	ck_assert_int_eq(err, -ENOENT);
	ck_assert_ptr_null(dm);
	msg = devmem_strerror(err);
	ck_assert_ptr_nonnull(msg);
	ck_assert_uint_gt(strlen(msg), 5);
	ck_assert_str_ne(msg, "unknown error");
	/* a socket file nobody listens on */
	snprintf(path, sizeof(path), "%s/stale.sock", dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	err = devmem_connect(path, &dm);
	ck_assert_int_eq(err, -ECONNREFUSED);
	ck_assert_ptr_null(dm);
	msg = devmem_strerror(err);
	ck_assert_ptr_nonnull(msg);
	ck_assert_str_ne(msg, "unknown error");
	/* a path that does not fit in sun_path */
	memset(lng, 'x', sizeof(lng) - 1);
	lng[0] = '/';
	lng[sizeof(lng) - 1] = '\0';
	ck_assert_int_eq(devmem_connect(lng, &dm), -ENAMETOOLONG);
	ck_assert_int_eq(devmem_connect(path, NULL), -EINVAL);
	/* every errno has a message */
	ck_assert_ptr_nonnull(devmem_strerror(-ENOTCONN));
	ck_assert_ptr_nonnull(devmem_strerror(-4095));
	ck_assert_ptr_nonnull(devmem_strerror(-123456));
	ck_assert_ptr_nonnull(devmem_strerror(0));
	unlink(path);
	remove_dir(dir);
}
END_TEST

/* save and restore environment variables */
struct saved_env {
	char *v[2];
};

static const char *const env_names[2] = { "DEVMEM_SOCKET", "XDG_RUNTIME_DIR" };

static struct saved_env env_save(void)
{
	struct saved_env s;

	for (int i = 0; i < 2; i++) {
		const char *v = getenv(env_names[i]);

		s.v[i] = v ? strdup(v) : NULL;
	}
	return s;
}

static void env_restore(struct saved_env *s)
{
	for (int i = 0; i < 2; i++) {
		if (s->v[i])
			setenv(env_names[i], s->v[i], 1);
		else
			unsetenv(env_names[i]);
		free(s->v[i]);
	}
}

START_TEST(test_connect_env)
{
	static const char *const args[] = { "--size", "64M", NULL };
	struct saved_env saved = env_save();
	char bogus[128];
	devmem_t *dm;
	int err;

	start(&D, args);
	setenv("DEVMEM_SOCKET", D.sock, 1);
	setenv("XDG_RUNTIME_DIR", "/nonexistent-devmem-test", 1);
	err = devmem_connect(NULL, &dm);
	ck_assert_msg(!err, "devmem_connect(NULL): %s", devmem_strerror(err));
	ck_assert_uint_eq(stats_of(dm).capacity, 64ul << 20);
	devmem_disconnect(dm);
	err = devmem_connect("", &dm); /* "" is NULL */
	ck_assert_msg(!err, "devmem_connect(\"\"): %s", devmem_strerror(err));
	devmem_disconnect(dm);
	/* $DEVMEM_SOCKET wins over the default path... */
	snprintf(bogus, sizeof(bogus), "%s/none.sock", D.dir);
	setenv("DEVMEM_SOCKET", bogus, 1);
	setenv("XDG_RUNTIME_DIR", D.dir, 1); /* D.dir/devmemd.sock is live */
	ck_assert_int_eq(devmem_connect(NULL, &dm), -ENOENT);
	/* ...and an explicit path over $DEVMEM_SOCKET */
	dm = daemon_connect(&D);
	devmem_disconnect(dm);
	/* empty: the default path */
	setenv("DEVMEM_SOCKET", "", 1);
	err = devmem_connect(NULL, &dm);
	ck_assert_msg(!err, "devmem_connect(NULL) by $XDG_RUNTIME_DIR: %s",
		      devmem_strerror(err));
	devmem_disconnect(dm);
	env_restore(&saved);
	ck_assert_int_eq(stop(&D), 0);
}
END_TEST

/* devmemd without --socket and devmem_connect(NULL) meet at the default
 * path: $XDG_RUNTIME_DIR/devmemd.sock, else /tmp/devmemd-$UID.sock */
START_TEST(test_connect_default_path)
{
	static const char *const args[] = { "--size", "64M", NULL };
	struct saved_env saved = env_save();
	char xdg_env[128], out[8192], err_out[4096];
	struct daemon d;
	devmem_t *dm;
	int err;

	private_dir(&d);
	snprintf(xdg_env, sizeof(xdg_env), "XDG_RUNTIME_DIR=%s", d.dir);
	dstart(&d, false, args,
	       &(struct spawn){ .env = (const char *const[]){
					xdg_env, "DEVMEM_SOCKET", NULL } });
	unsetenv("DEVMEM_SOCKET");
	setenv("XDG_RUNTIME_DIR", d.dir, 1);
	err = devmem_connect(NULL, &dm);
	ck_assert_msg(!err, "devmem_connect(NULL): %s", devmem_strerror(err));
	ck_assert_uint_eq(stats_of(dm).capacity, 64ul << 20);
	/* devmemctl finds it the same way */
	ck_assert_int_eq(run_ctl(NULL, (const char *const[]){ "status", NULL },
				 out, sizeof(out), err_out, sizeof(err_out)),
			 0);
	ck_assert_ptr_nonnull(strstr(out, d.sock));
	devmem_disconnect(dm);
	env_restore(&saved);
	ck_assert_int_eq(stop(&d), 0);
	saved = env_save();

	/* no $XDG_RUNTIME_DIR: /tmp/devmemd-$UID.sock, unless something is
	 * there already (a real devmemd) */
	memset(&d, 0, sizeof(d));
	snprintf(d.sock, sizeof(d.sock), "/tmp/devmemd-%u.sock",
		 (unsigned)getuid());
	if (accepts(d.sock)) {
		fprintf(stderr,
			"test_connect_default_path: a devmemd serves %s; /tmp fallback not tested\n",
			d.sock);
		env_restore(&saved);
		return;
	}
	left_path(d.sock, true);
	dstart(&d, false, args,
	       &(struct spawn){ .env = (const char *const[]){ "XDG_RUNTIME_DIR",
							      "DEVMEM_SOCKET",
							      NULL } });
	unsetenv("DEVMEM_SOCKET");
	unsetenv("XDG_RUNTIME_DIR");
	err = devmem_connect(NULL, &dm);
	env_restore(&saved);
	ck_assert_msg(!err, "devmem_connect(NULL) to %s: %s", d.sock,
		      devmem_strerror(err));
	ck_assert_uint_eq(stats_of(dm).capacity, 64ul << 20);
	devmem_disconnect(dm);
	ck_assert_int_eq(stop(&d), 0);
	left_path(d.sock, false);
}
END_TEST

/* ==== registering ==== */

START_TEST(test_register_validation)
{
	char tmpl[] = "/tmp/devmem-test-file-XXXXXX";
	struct devmem_result res;
	devmem_t *dm, *fresh;
	char *p, *q, *f;
	int fd;

	start(&D, NULL);
	dm = daemon_connect(&D);
	p = map_aligned(4 * MB2, RW, false);
	/* checked in the library */
	ck_assert_int_eq(devmem_register(dm, p + 1, PG), -EINVAL);
	ck_assert_int_eq(devmem_register(dm, p + 2048, PG), -EINVAL);
	ck_assert_int_eq(devmem_register(dm, p, PG + 1), -EINVAL);
	ck_assert_int_eq(devmem_register(dm, p, 100), -EINVAL);
	ck_assert_int_eq(devmem_register(dm, p, 0), -EINVAL);
	ck_assert_int_eq(devmem_register(dm, NULL, PG), -EINVAL);
	ck_assert_int_eq(devmem_register(NULL, p, PG), -EINVAL);
	ck_assert_int_eq(
		devmem_register(dm, (void *)(UINTPTR_MAX & ~4095ul), 2 * PG),
		-EINVAL);
	/* checked by devmemd: semantics 1 */
	q = mmap(NULL, MB2, RW, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(q, MAP_FAILED);
	ck_assert_int_eq(devmem_register(dm, q, MB2), -EINVAL);
	ck_assert_int_eq(devmem_register(dm, q, PG), -EINVAL);
	munmap(q, MB2);
	fd = mkstemp(tmpl);
	ck_assert_int_ge(fd, 0);
	unlink(tmpl);
	ck_assert_int_eq(ftruncate(fd, (off_t)MB2), 0);
	f = mmap(NULL, MB2, RW, MAP_PRIVATE, fd, 0);
	ck_assert_ptr_ne(f, MAP_FAILED);
	f[0] = 1; /* a private COW copy: still a file mapping */
	ck_assert_int_eq(devmem_register(dm, f, MB2), -EINVAL);
	munmap(f, MB2);
	f = mmap(NULL, MB2, RW, MAP_SHARED, fd, 0);
	ck_assert_ptr_ne(f, MAP_FAILED);
	ck_assert_int_eq(devmem_register(dm, f, MB2), -EINVAL);
	munmap(f, MB2);
	close(fd);
	/* a hole in the middle, a range with nothing mapped at all */
	q = mmap(NULL, 3 * PG, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(q, MAP_FAILED);
	ck_assert_int_eq(munmap(q + PG, PG), 0);
	ck_assert_int_eq(devmem_register(dm, q, 3 * PG), -EINVAL);
	ck_assert_int_eq(devmem_register(dm, q + PG, PG), -EINVAL);
	ck_assert_int_eq(devmem_register(dm, q, PG), 0); /* the mapped part */
	ck_assert_int_eq(devmem_unregister(dm, q, PG), 0);
	munmap(q, 3 * PG);
	/* overlaps */
	reg(dm, p, 2 * MB2);
	ck_assert_int_eq(devmem_register(dm, p, 2 * MB2), -EEXIST);
	ck_assert_int_eq(devmem_register(dm, p + PG, PG), -EEXIST);
	ck_assert_int_eq(devmem_register(dm, p + MB2, 2 * MB2), -EEXIST);
	ck_assert_int_eq(devmem_register(dm, p + 2 * MB2 - PG, 2 * PG),
			 -EEXIST);
	ck_assert_int_eq(devmem_register(dm, p + 2 * MB2, MB2), 0); /* next */
	ck_assert_int_eq(devmem_register(dm, p + 3 * MB2, MB2), 0);
	ck_assert_int_eq(devmem_register(dm, p + MB2, 3 * MB2), -EEXIST);
	/* unregister: some registered memory, or -EINVAL */
	ck_assert_int_eq(devmem_unregister(dm, p + 1, PG), -EINVAL);
	ck_assert_int_eq(devmem_unregister(dm, p, 0), -EINVAL);
	ck_assert_int_eq(devmem_unregister(dm, p, PG + 1), -EINVAL);
	q = map_aligned(MB2, RW, false);
	ck_assert_int_eq(devmem_unregister(dm, q, MB2), -EINVAL);
	munmap(q, MB2);
	ck_assert_int_eq(devmem_unregister(dm, p + 2 * MB2, MB2), 0);
	ck_assert_int_eq(devmem_unregister(dm, p + 2 * MB2, MB2), -EINVAL);
	ck_assert_uint_eq(snap_one(dm, p + 2 * MB2), DEVMEM_PAGE_ERROR);
	/* part of a registration, with device pages: they come back, the
	 * rest stays managed and on the device */
	fill_ints(p, 2 * MB2, 4);
	ck_assert_uint_eq(migrate(dm, p, 2 * MB2, DEVMEM_TO_DEVICE, 0).pages,
			  1024);
	ck_assert_int_eq(devmem_unregister(dm, p + MB2, MB2), 0);
	ck_assert_uint_eq(stats_of(dm).client_used, MB2);
	ck_assert(snap_all(dm, p, 512, DEVMEM_PAGE_DEVICE | DEVMEM_PAGE_WRITE));
	ck_assert(snap_all(dm, p + MB2, 512, DEVMEM_PAGE_ERROR));
	ck_assert_int_eq(check_ints(p + MB2, MB2, 4 + (int)(MB2 / 4)), -1);
	ck_assert_int_eq(devmem_register(dm, p + 2 * MB2 - PG, 2 * PG), 0);
	ck_assert_int_eq(devmem_register(dm, p + 2 * MB2 - PG, PG), -EEXIST);
	/* several registrations and holes at once */
	ck_assert_int_eq(devmem_unregister(dm, p, 4 * MB2), 0);
	ck_assert_uint_eq(stats_of(dm).client_used, 0);
	ck_assert(snap_all(dm, p, 2048, DEVMEM_PAGE_ERROR));
	ck_assert_int_eq(check_ints(p, MB2, 4), -1); /* brought back */
	ck_assert_int_eq(devmem_unregister(dm, p, 4 * MB2), -EINVAL);
	ck_assert_int_eq(devmem_migrate(dm, p, PG, DEVMEM_TO_DEVICE, 0, &res),
			 -EINVAL);
	/* the same range again, after it was unregistered */
	ck_assert_int_eq(devmem_register(dm, p, 2 * MB2), 0);
	ck_assert_int_eq(devmem_register(dm, p, 2 * MB2), -EEXIST);
	fill_ints(p, 2 * MB2, 5);
	ck_assert_uint_eq(migrate(dm, p, 2 * MB2, DEVMEM_TO_DEVICE, 0).pages,
			  1024);
	ck_assert_int_eq(check_ints(p, 2 * MB2, 5), -1);
	ck_assert_int_eq(devmem_unregister(dm, p, 2 * MB2), 0);
	ck_assert_uint_eq(stats_of(dm).client_used, 0);
	/* a connection that never registered anything */
	fresh = daemon_connect(&D);
	ck_assert_int_eq(devmem_unregister(fresh, p, MB2), -EINVAL);
	ck_assert_int_eq(
		devmem_migrate(fresh, p, MB2, DEVMEM_TO_SYSTEM, 0, NULL),
		-EINVAL);
	devmem_disconnect(fresh);
	devmem_disconnect(dm);
	ck_assert_int_eq(stop(&D), 0);
}
END_TEST

/* The child of test_isolation: the same addresses as its parent, its own
 * memory and its own connection.  Returns the failed step, 0 if none. */
static int isolated_client(const char *sock, char *p, int go)
{
	struct devmem_result res;
	uint8_t st[512];
	devmem_t *c;
	char ch;
	int *m;

	if (read(go, &ch, 1) != 1)
		return 1;
	fill_ints(p, MB2, 2); /* its own copy of the page */
	if (devmem_connect(sock, &c))
		return 2;
	m = malloc(MB2);
	if (!m)
		return 3;
	/* the parent's registration and device pages are not its own */
	if (devmem_device_read(c, p, MB2, m, &res) != -EINVAL ||
	    devmem_device_write(c, p, MB2, m, &res) != -EINVAL)
		return 4;
	if (devmem_migrate(c, p, MB2, DEVMEM_TO_SYSTEM, 0, &res) != -EINVAL ||
	    devmem_migrate(c, p, MB2, DEVMEM_TO_DEVICE, 0, &res) != -EINVAL)
		return 5;
	if (devmem_unregister(c, p, MB2) != -EINVAL)
		return 6;
	if (devmem_snapshot(c, p, 512, st))
		return 7;
	for (int i = 0; i < 512; i++)
		if (st[i] != DEVMEM_PAGE_ERROR)
			return 8;
	/* at the same addresses, its own memory is its own */
	if (devmem_register(c, p, MB2) ||
	    devmem_migrate(c, p, MB2, DEVMEM_TO_DEVICE, 0, &res) ||
	    res.pages != 512)
		return 9;
	if (devmem_device_read(c, p, MB2, m, &res) ||
	    check_ints(m, MB2, 2) != -1)
		return 10;
	if (check_ints(p, MB2, 2) != -1)
		return 11;
	free(m);
	devmem_disconnect(c);
	return 0;
}

/* Isolation: a client names only its own ranges.  A second process, at
 * the very addresses where the first has device pages, gets -EINVAL for
 * them, and its own memory there is its own; the first's data is intact */
START_TEST(test_isolation)
{
	int go[2], st;
	devmem_t *dm;
	char *p;
	pid_t pid;

	start(&D, NULL);
	p = map_aligned(MB2, RW, true);
	fill_ints(p, MB2, 1);
	ck_assert_int_eq(pipe2(go, O_CLOEXEC), 0);
	pid = fork(); /* before any handle: nothing to bring back */
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(go[1]);
		_exit(isolated_client(D.sock, p, go[0]));
	}
	close(go[0]);
	dm = daemon_connect(&D);
	reg(dm, p, MB2);
	ck_assert_uint_eq(migrate(dm, p, MB2, DEVMEM_TO_DEVICE, 0).pages, 512);
	ck_assert_int_eq(write(go[1], "g", 1), 1);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "the second process failed at step %d (status %#x)",
		      WIFEXITED(st) ? WEXITSTATUS(st) : -1, st);
	close(go[1]);
	/* (4 KB pages: taking over the THP it shared with the child split
	 * it, as any write would) */
	ck_assert(snap_all(dm, p, 512, DEVMEM_PAGE_DEVICE | DEVMEM_PAGE_WRITE));
	ck_assert_uint_eq(stats_of(dm).client_used, MB2);
	ck_assert_int_eq(check_ints(p, MB2, 1), -1);
	devmem_disconnect(dm);
	ck_assert_int_eq(stop(&D), 0);
}
END_TEST

static long read_long_file(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static bool write_long_file(const char *path, long v)
{
	FILE *f = fopen(path, "w");
	bool ok;

	if (!f)
		return false;
	ok = fprintf(f, "%ld\n", v) > 0;
	return fclose(f) == 0 && ok;
}

START_TEST(test_register_hugetlb)
{
	static const char nr[] =
		"/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";
	long old = read_long_file(nr), now = -1;
	int err_reg = 1, err_mig = 1;
	bool reserved = false, touched = false;
	devmem_t *dm;
	char *h;

	start(&D, NULL);
	dm = daemon_connect(&D);
	reg(dm, map_aligned(MB2, RW, false), MB2); /* attached */
	if (old >= 0 && write_long_file(nr, old + 2)) {
		now = read_long_file(nr);
		reserved = now >= old + 1;
	}
	h = mmap(NULL, MB2, RW,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB |
			 (reserved ? 0 : MAP_NORESERVE),
		 -1, 0);
	if (h != MAP_FAILED) {
		if (reserved) {
			memset(h, 1, MB2);
			touched = true;
		}
		err_reg = devmem_register(dm, h, MB2);
		err_mig = devmem_migrate(dm, h, MB2, DEVMEM_TO_DEVICE, 0, NULL);
		munmap(h, MB2);
	}
	if (old >= 0 && now >= 0)
		write_long_file(nr, old);
	ck_assert_msg(h != MAP_FAILED, "no hugetlb mapping: %s",
		      strerror(errno));
	if (!touched)
		fprintf(stderr,
			"test_register_hugetlb: no hugetlb page could be reserved; the mapping was not populated\n");
	ck_assert_int_eq(err_reg, -EINVAL);
	ck_assert_int_eq(err_mig, -EINVAL);
	ck_assert_int_eq(read_long_file(nr), old);
	devmem_disconnect(dm);
	ck_assert_int_eq(stop(&D), 0);
}
END_TEST

START_TEST(test_alloc_free)
{
	struct devmem_stats st;
	devmem_t *dm;
	char *a, *h, *o;

	start(&D, NULL);
	dm = daemon_connect(&D);
	a = devmem_alloc(dm, 3 * MB2, 0);
	ck_assert_ptr_nonnull(a);
	ck_assert_uint_eq((uintptr_t)a % MB2, 0);
	ck_assert_uint_eq(snap_one(dm, a), DEVMEM_PAGE_NONE); /* managed */
	ck_assert_uint_eq(snap_one(dm, a + 3 * MB2 - PG), DEVMEM_PAGE_NONE);
	fill_ints(a, 3 * MB2, 2);
	ck_assert_int_eq(check_ints(a, 3 * MB2, 2), -1);
	ck_assert_uint_eq(migrate(dm, a, 3 * MB2, DEVMEM_TO_DEVICE, 0).pages,
			  3 * 512);
	ck_assert_uint_eq(migrate(dm, a, 3 * MB2, DEVMEM_TO_SYSTEM, 0).pages,
			  3 * 512);
	ck_assert_int_eq(check_ints(a, 3 * MB2, 2), -1);
	/* huge: THPs once touched */
	h = devmem_alloc(dm, 2 * MB2, DEVMEM_ALLOC_HUGE);
	ck_assert_ptr_nonnull(h);
	ck_assert_uint_eq((uintptr_t)h % MB2, 0);
	fill_ints(h, 2 * MB2, 3);
	ck_assert(snap_all(dm, h, 1024, DEVMEM_PAGE_WRITE | DEVMEM_PAGE_HUGE));
	ck_assert_uint_eq(migrate(dm, h, 2 * MB2, DEVMEM_TO_DEVICE, 0).huge, 2);
	ck_assert_uint_eq(stats_of(dm).client_used, 2 * MB2);
	/* an odd size is rounded up to whole pages */
	o = devmem_alloc(dm, 5000, 0);
	ck_assert_ptr_nonnull(o);
	ck_assert_uint_eq((uintptr_t)o % MB2, 0);
	memset(o, 9, 2 * PG);
	ck_assert_uint_eq(snap_one(dm, o + PG), DEVMEM_PAGE_WRITE);
	ck_assert_uint_eq(snap_one(dm, o + 2 * PG), DEVMEM_PAGE_ERROR);
	ck_assert_int_eq(devmem_free(dm, o, 5000), 0);
	/* bad arguments */
	errno = 0;
	ck_assert_ptr_null(devmem_alloc(dm, 0, 0));
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_ptr_null(devmem_alloc(dm, MB2, 2));
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_ptr_null(devmem_alloc(dm, MB2, ~0u));
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_ptr_null(devmem_alloc(NULL, MB2, 0));
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_ptr_null(devmem_alloc(dm, SIZE_MAX, 0));
	ck_assert_int_eq(errno, EINVAL);
	/* free: the device memory goes with the mapping, part by part */
	ck_assert_int_eq(check_ints(h, 2 * MB2, 3), -1);
	ck_assert_uint_eq(migrate(dm, h, 2 * MB2, DEVMEM_TO_DEVICE, 0).huge, 2);
	ck_assert_int_eq(devmem_free(dm, h, MB2), 0);
	ck_assert_uint_eq(stats_of(dm).client_used, MB2);
	ck_assert_int_eq(msync(h, PG, MS_ASYNC), -1); /* unmapped */
	ck_assert_int_eq(errno, ENOMEM);
	ck_assert(snap_all(dm, h + MB2, 512,
			   DEVMEM_PAGE_DEVICE | DEVMEM_PAGE_WRITE |
				   DEVMEM_PAGE_HUGE));
	ck_assert_int_eq(devmem_free(dm, h + MB2, MB2), 0);
	st = stats_of(dm);
	ck_assert_uint_eq(st.client_used, 0);
	ck_assert_uint_eq(st.used, 0);
	ck_assert_int_eq(devmem_free(dm, h, 2 * MB2), -EINVAL); /* twice */
	ck_assert_int_eq(devmem_free(dm, a, 3 * MB2), 0);
	ck_assert_int_eq(devmem_free(dm, a, 3 * MB2), -EINVAL);
	ck_assert_int_eq(msync(a, PG, MS_ASYNC), -1);
	ck_assert_int_eq(errno, ENOMEM);
	ck_assert_int_eq(devmem_free(dm, NULL, MB2), -EINVAL);
	ck_assert_int_eq(devmem_free(dm, a + 1, MB2), -EINVAL);
	/* nothing registered there: an error, and nothing is unmapped */
	o = map_aligned(MB2, RW, false);
	ck_assert_int_eq(devmem_free(dm, o, MB2), -EINVAL);
	memset(o, 1, MB2);
	munmap(o, MB2);
	devmem_disconnect(dm);
	ck_assert_int_eq(stop(&D), 0);
}
END_TEST

/* ==== clients that die ==== */

#define DIE_LEN (8ul << 20)

/* The child: 8 MB on the device, then tell the parent; then wait to be
 * killed, or migrate and fault in a loop until it is */
static _Noreturn void dying_child(const char *sock, int wfd, bool loop)
{
	struct devmem_result res;
	devmem_t *c;
	char *p;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (devmem_connect(sock, &c))
		_exit(10);
	p = xmap_aligned(DIE_LEN, loop);
	if (!p)
		_exit(11);
	if (devmem_register(c, p, DIE_LEN))
		_exit(12);
	fill_ints(p, DIE_LEN, 7);
	if (devmem_migrate(c, p, DIE_LEN, DEVMEM_TO_DEVICE, 0, &res) ||
	    res.pages != DIE_LEN / PG)
		_exit(13);
	if (write(wfd, "m", 1) != 1)
		_exit(14);
	if (!loop)
		for (;;)
			pause();
	for (unsigned i = 0;; i++) {
		volatile int *v = (volatile int *)p;

		/* the CPU faults some back: a folio, a 4 KB page */
		(void)v[(i % 4) * (MB2 / sizeof(int))];
		devmem_migrate(c, p, DIE_LEN, DEVMEM_TO_SYSTEM,
			       i & 1 ? DEVMEM_MIGRATE_4K : 0, NULL);
		devmem_migrate(c, p, DIE_LEN, DEVMEM_TO_DEVICE,
			       i % 3 == 1 ? DEVMEM_MIGRATE_4K : 0, NULL);
	}
}

/* Start a dying child, kill it delay_us after it reported in, check that
 * devmemd gave all of its memory back */
static void kill_one(devmem_t *obs, bool loop, unsigned delay_us,
		     const char *ctx)
{
	struct pollfd pf;
	int pfd[2], st;
	pid_t pid;
	char ch;

	ck_assert_int_eq(pipe2(pfd, O_CLOEXEC), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(pfd[0]);
		dying_child(D.sock, pfd[1], loop);
	}
	close(pfd[1]);
	pf = (struct pollfd){ pfd[0], POLLIN, 0 };
	ck_assert_msg(poll(&pf, 1, 20000) == 1, "%s: the child did not report",
		      ctx);
	if (read(pfd[0], &ch, 1) != 1) {
		waitpid(pid, &st, 0);
		ck_abort_msg("%s: the child failed (status %#x)", ctx, st);
	}
	close(pfd[0]);
	if (!loop)
		ck_assert_uint_ge(stats_of(obs).used, DIE_LEN);
	if (delay_us)
		usleep(delay_us);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
		      "%s: the child ended by itself (status %#x)", ctx, st);
	ck_assert_msg(wait_used(obs, 0), "%s: devmemd still uses %llu bytes",
		      ctx, (unsigned long long)stats_of(obs).used);
	assert_alive(&D);
}

START_TEST(test_client_killed)
{
	pid_t me = getpid();
	char out[8192];
	devmem_t *obs;

	start(&D, quiet_args);
	obs = daemon_connect(&D);
	kill_one(obs, false, 0, "killed");
	ck_assert_uint_eq(stats_of(obs).client_used, 0);
	fresh_client_works(&D, 1);
	ck_assert_msg(wait_client_pids(&D, &me, 1, out, sizeof(out)),
		      "devmemctl clients: %s", out);
	ck_assert_uint_eq(status_field(&D, "clients"), 1);
	ck_assert_uint_eq(status_field(&D, "used"), 0);
	devmem_disconnect(obs);
	ck_assert_int_eq(stop(&D), 0);
}
END_TEST

START_TEST(test_client_killed_loop)
{
	unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	int fds, threads, fds0, threads0;
	pid_t me = getpid();
	char out[8192], ctx[64];
	devmem_t *obs;

	start(&D, quiet_args);
	obs = daemon_connect(&D);
	base_resources(D.pid, &fds0, &threads0);
	fds = fds0;
	threads = threads0;
	for (int i = 0; i < 20; i++) {
		bool loop = i % 4 != 0;
		unsigned delay = loop ? (unsigned)rand_r(&seed) % 5001 : 0;

		snprintf(ctx, sizeof(ctx), "round %d, %s, %u us", i,
			 loop ? "migrating" : "idle", delay);
		kill_one(obs, loop, delay, ctx);
		if (i % 5 == 4)
			fresh_client_works(&D, i);
		ck_assert_msg(wait_client_pids(&D, &me, 1, out, sizeof(out)),
			      "%s: devmemctl clients: %s", ctx, out);
	}
	ck_assert_uint_eq(status_field(&D, "used"), 0);
	fresh_client_works(&D, 2);
	/* no file descriptor, no thread left behind */
	ck_assert_msg(wait_resources(D.pid, &fds, &threads),
		      "devmemd had %d fds and %d threads, now %d and %d", fds0,
		      threads0, fds, threads);
	devmem_disconnect(obs);
	ck_assert_int_eq(stop(&D), 0);
}
END_TEST

/* ==== clients that write garbage ==== */

/* Client A: data on the device, migrated and faulted back in a loop */
struct busy {
	devmem_t *dm;
	char *p;
	size_t len;
	int seed;
	atomic_bool stop;
	atomic_ulong iters;
	int err;
	char what[128];
	int fds0, threads0; /* devmemd's, with A attached and idle */
};

static void busy_fail(struct busy *b, const char *what, int err, unsigned i)
{
	b->err = err ? err : 1;
	snprintf(b->what, sizeof(b->what), "iteration %u: %s: %s", i, what,
		 err ? devmem_strerror(err) : "wrong data");
}

static void *busy_main(void *arg)
{
	struct busy *b = arg;
	int *buf = malloc(PG);

	for (unsigned i = 0; buf && !atomic_load(&b->stop); i++) {
		struct devmem_result res;
		struct devmem_stats st;
		unsigned flags = i % 3 == 2 ? DEVMEM_MIGRATE_4K : 0;
		int err;

		err = devmem_migrate(b->dm, b->p, b->len, DEVMEM_TO_DEVICE,
				     flags, &res);
		if (err || res.pages != b->len / PG) {
			busy_fail(b, "to device", err, i);
			break;
		}
		err = devmem_device_read(b->dm, b->p + PG, PG, buf, NULL);
		if (err || check_ints(buf, PG, b->seed + (int)(PG / 4)) != -1) {
			busy_fail(b, "device read", err, i);
			break;
		}
		/* the CPU faults half of it back */
		if (check_ints(b->p, b->len / 2, b->seed) != -1) {
			busy_fail(b, "CPU fault", 0, i);
			break;
		}
		err = devmem_migrate(b->dm, b->p, b->len, DEVMEM_TO_SYSTEM, 0,
				     &res);
		if (err || res.pages != b->len / PG) {
			busy_fail(b, "to system", err, i);
			break;
		}
		if (check_ints(b->p, b->len, b->seed) != -1) {
			busy_fail(b, "after the return", 0, i);
			break;
		}
		err = devmem_stats(b->dm, &st);
		if (err || st.client_used) {
			busy_fail(b, "stats", err, i);
			break;
		}
		atomic_fetch_add(&b->iters, 1);
	}
	free(buf);
	return NULL;
}

static void busy_start(struct busy *b, pthread_t *th, int seed)
{
	memset(b, 0, sizeof(*b));
	b->dm = daemon_connect(&D);
	b->len = 2 * MB2;
	b->p = map_aligned(b->len, RW, true);
	b->seed = seed;
	reg(b->dm, b->p, b->len);
	fill_ints(b->p, b->len, seed);
	base_resources(D.pid, &b->fds0, &b->threads0);
	ck_assert_int_eq(pthread_create(th, NULL, busy_main, b), 0);
	for (int i = 0; i < 1000 && !atomic_load(&b->iters) && !b->err; i++)
		usleep(10000);
	ck_assert_msg(!b->err, "client A: %s", b->what);
	ck_assert_uint_gt(atomic_load(&b->iters), 0);
}

static void busy_stop(struct busy *b, pthread_t th, unsigned long before)
{
	/* A made progress while the others misbehaved */
	for (int i = 0;
	     i < 500 && atomic_load(&b->iters) <= before + 2 && !b->err; i++)
		usleep(10000);
	atomic_store(&b->stop, true);
	pthread_join(th, NULL);
	ck_assert_msg(!b->err, "client A: %s", b->what);
	ck_assert_uint_gt(atomic_load(&b->iters), before + 2);
	/* and it still works from here */
	ck_assert_uint_eq(
		migrate(b->dm, b->p, b->len, DEVMEM_TO_DEVICE, 0).pages,
		b->len / PG);
	ck_assert_int_eq(check_ints(b->p, b->len, b->seed), -1);
	ck_assert_uint_eq(stats_of(b->dm).client_used, 0);
}

enum pre { PRE_NONE, PRE_CLIENT, PRE_CONTROL };

/* One connection: optionally HELLO, then one bad record (with nfds file
 * descriptors attached) */
static void garbage(const char *what, enum pre pre, const void *msg, size_t len,
		    int nfds)
{
	int fd = raw_connect(D.sock), fds[4];

	if (pre != PRE_NONE)
		raw_hello(fd,
			  pre == PRE_CLIENT ? DM_ROLE_CLIENT : DM_ROLE_CONTROL);
	for (int i = 0; i < nfds; i++) {
		fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
		ck_assert_int_ge(fds[i], 0);
	}
	send_record(fd, msg, len, fds, nfds);
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	expect_rejected(fd, what);
}

static void put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void send_all_garbage(unsigned *seed)
{
	struct dm_hello hello = { DM_ROLE_CONTROL, DM_PROTO_VERSION,
				  DM_PROTO_VERSION };
	struct dm_attach att = { 0, 0, 32, 4, 1ull << 40 };
	struct dm_stats_reply srep = { 0, DM_STATS_FIELDS, { 0 } };
	struct dm_helper_move hm = { 0, 0, PG };
	uint8_t good[64], m[256], big[65536];
	size_t hn = enc(good, sizeof(good), DM_HELLO, 1, &hello, NULL, 0);
	size_t n = hn, k;
	static const uint16_t bad_types[] = { 0, DM_TYPE_MAX, 0x7fff, 0xffff,
					      DM_REPLY };
	static const uint32_t bad_lens[] = {
		0, DM_HDR_SIZE, 27, 29, 36, 4096, DM_MAX_MSG + 1, 0xffffffff
	};

	/* random bytes, some behind a plausible header */
	for (int i = 0; i < 40; i++) {
		size_t len = 1 + (size_t)rand_r(seed) % DM_MAX_REQUEST;

		for (k = 0; k < len; k++)
			big[k] = (uint8_t)rand_r(seed);
		/* a plausible header, on more than an empty body (a
		 * well-formed STATS would be answered) */
		if (i % 2 && len > DM_HDR_SIZE) {
			put32(big, DM_MAGIC);
			put16(big + 4, DM_PROTO_VERSION);
			put16(big + 6,
			      (uint16_t)(rand_r(seed) % (DM_TYPE_MAX + 2)));
			put32(big + 8, (uint32_t)len);
		}
		garbage("random bytes", i % 3 ? PRE_NONE : PRE_CONTROL, big,
			len, 0);
	}
	memcpy(m, good, n);
	m[0] ^= 0xff;
	garbage("bad magic", PRE_NONE, m, n, 0);
	garbage("bad magic after HELLO", PRE_CONTROL, m, n, 0);
	memcpy(m, good, n);
	put16(m + 4, DM_PROTO_VERSION + 1);
	garbage("bad version", PRE_NONE, m, n, 0);
	put16(m + 4, 0);
	garbage("version 0", PRE_CONTROL, m, n, 0);
	for (k = 0; k < ARRAY_SIZE(bad_types); k++) {
		memcpy(m, good, n);
		put16(m + 6, bad_types[k]);
		garbage("unknown type", k % 2 ? PRE_CONTROL : PRE_NONE, m, n,
			0);
	}
	for (k = 0; k < ARRAY_SIZE(bad_lens); k++) {
		memcpy(m, good, n);
		put32(m + 8, bad_lens[k]);
		garbage("a length that lies", k % 2 ? PRE_CLIENT : PRE_NONE, m,
			n, 0);
	}
	garbage("a short header", PRE_NONE, good, 8, 0);
	garbage("an empty record", PRE_CONTROL, good, 0, 0);
	/* too big for a request: a STATS header on 5000 and 65536 bytes */
	memset(big, 0, sizeof(big));
	enc(big, sizeof(big), DM_STATS, 1, NULL, NULL, 0);
	put32(big + 8, 5000);
	garbage("an oversized record", PRE_CONTROL, big, 5000, 0);
	put32(big + 8, sizeof(big));
	garbage("a 64 KB record", PRE_NONE, big, sizeof(big), 0);
	/* out of order */
	n = enc(m, sizeof(m), DM_STATS, 1, NULL, NULL, 0);
	garbage("STATS before HELLO", PRE_NONE, m, n, 0);
	n = enc(m, sizeof(m), DM_REGISTER, 1, &(struct dm_range){ 0, PG }, NULL,
		0);
	garbage("REGISTER before HELLO", PRE_NONE, m, n, 0);
	n = enc(m, sizeof(m), DM_ATTACH, 1, &att, NULL, 0);
	garbage("ATTACH before HELLO", PRE_NONE, m, n, 0);
	garbage("a second HELLO", PRE_CONTROL, good, hn, 0);
	garbage("a second HELLO (client)", PRE_CLIENT, good, hn, 0);
	n = enc(m, sizeof(m), DM_STATS | DM_REPLY, 1, &srep, NULL, 0);
	garbage("a reply", PRE_CONTROL, m, n, 0);
	garbage("a reply before HELLO", PRE_NONE, m, n, 0);
	n = enc(m, sizeof(m), DM_HELPER_MOVE, 1, &hm, NULL, 0);
	garbage("a helper request from a client", PRE_CLIENT, m, n, 0);
	n = enc(m, sizeof(m), DM_ATTACH, 1, &att, NULL, 0);
	garbage("a control ATTACH", PRE_CONTROL, m, n, 2);
	/* file descriptors where they do not belong */
	garbage("ATTACH without fds", PRE_CLIENT, m, n, 0);
	garbage("ATTACH with one fd", PRE_CLIENT, m, n, 1);
	garbage("ATTACH with three fds", PRE_CLIENT, m, n, 3);
	n = enc(m, sizeof(m), DM_STATS, 1, NULL, NULL, 0);
	garbage("STATS with an fd", PRE_CONTROL, m, n, 1);
	garbage("HELLO with fds", PRE_NONE, good, hn, 2);
	/* HELLOs devmemd must refuse */
	hello.role = 7;
	n = enc(m, sizeof(m), DM_HELLO, 1, &hello, NULL, 0);
	garbage("HELLO with a bad role", PRE_NONE, m, n, 0);
	hello = (struct dm_hello){ DM_ROLE_CLIENT, DM_PROTO_VERSION + 1,
				   DM_PROTO_VERSION + 5 };
	n = enc(m, sizeof(m), DM_HELLO, 1, &hello, NULL, 0);
	garbage("HELLO with a future protocol", PRE_NONE, m, n, 0);
	hello = (struct dm_hello){ DM_ROLE_CLIENT, 0, 0 };
	n = enc(m, sizeof(m), DM_HELLO, 1, &hello, NULL, 0);
	garbage("HELLO with protocol 0", PRE_NONE, m, n, 0);
}

START_TEST(test_garbage)
{
	unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	int fds, threads, fds0, threads0;
	unsigned long before;
	struct busy b;
	pthread_t th;

	start(&D, quiet_args);
	busy_start(&b, &th, 11);
	fds0 = fds = b.fds0;
	threads0 = threads = b.threads0;
	before = atomic_load(&b.iters);
	send_all_garbage(&seed);
	assert_alive(&D);
	busy_stop(&b, th, before);
	fresh_client_works(&D, 3);
	/* every bad connection is gone, with the fds it carried */
	ck_assert_msg(wait_resources(D.pid, &fds, &threads),
		      "devmemd had %d fds and %d threads, now %d and %d", fds0,
		      threads0, fds, threads);
	devmem_disconnect(b.dm);
	ck_assert_int_eq(stop(&D), 0);
}
END_TEST

/* An attached client that lies: every address and length from the wire is
 * checked against its own registrations (zero, unaligned, overflowing,
 * beyond user space, larger than the device, outside what it registered,
 * its staging area, out of order), each answered with an error, and devmemd
 * keeps serving everyone */
START_TEST(test_attached_bad_requests)
{
	const uint64_t top = UINT64_MAX & ~(PG - 1);
	struct uffdio_api api = { .api = UFFD_API };
	struct dm_attach att = { 0, 0, 1, 1, 0 };
	struct dm_move mv = { 0, 0, 0, MB2 };
	uint64_t p, r;
	int fd, fds[2], sp[2];
	char *staging;

	start(&D, quiet_args);
	/* what libdevmem would hand over: a userfaultfd, the helper's socket,
	 * a staging area of two slots */
	fds[0] = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	ck_assert_int_ge(fds[0], 0);
	ck_assert_int_eq(ioctl(fds[0], UFFDIO_API, &api), 0);
	ck_assert_int_eq(
		socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
	fds[1] = sp[1];
	staging = map_aligned(2 * MB2, RW, false);
	att.staging = (uintptr_t)staging;
	p = (uintptr_t)map_aligned(4 * MB2, RW, true);
	r = p + MB2; /* registered: [r, r + MB2) */
	fd = raw_connect(D.sock);
	raw_hello(fd, DM_ROLE_CLIENT);
	ck_assert_int_eq(raw_call(fd, DM_ATTACH, &att, NULL, 0, fds, 2, NULL),
			 0);
	ck_assert_int_eq(raw_call(fd, DM_ATTACH, &att, NULL, 0, fds, 2, NULL),
			 -EALREADY);
	ck_assert_int_eq(raw_call(fd, DM_REGISTER, &(struct dm_range){ r, MB2 },
				  NULL, 0, NULL, 0, NULL),
			 0);

	/* spans that are no span at all */
	{
		const struct dm_range bad[] = {
			{ r, 0 },	    { r + 1, PG },    { r, PG + 1 },
			{ top, 2 * PG },    { top - PG, PG }, { r, UINT64_MAX },
			{ 1ull << 47, PG }, { 0, PG },
		};

		for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
			ck_assert_int_eq(raw_call(fd, DM_REGISTER, &bad[i],
						  NULL, 0, NULL, 0, NULL),
					 -EINVAL);
			ck_assert_int_eq(raw_call(fd, DM_UNREGISTER, &bad[i],
						  NULL, 0, NULL, 0, NULL),
					 -EINVAL);
		}
	}
	/* the staging area, and overlaps, are not the client's to register */
	ck_assert_int_lt(raw_call(fd, DM_REGISTER,
				  &(struct dm_range){ att.staging, MB2 }, NULL,
				  0, NULL, 0, NULL),
			 0);
	ck_assert_int_eq(raw_call(fd, DM_REGISTER,
				  &(struct dm_range){ r - PG, 2 * PG }, NULL, 0,
				  NULL, 0, NULL),
			 -EEXIST);
	/* migrations, accesses and snapshots outside the registration */
	{
		const struct dm_migrate bad[] = {
			{ r, 0, 0, 1, 0 },
			{ r + 1, PG, 0, 1, 0 },
			{ r, MB2 + PG, 0, 1, 0 },
			{ r - PG, 2 * PG, 0, 1, 0 },
			{ p, MB2, 0, 1, 0 },
			{ top, 2 * PG, 0, 1, 0 },
			{ r, UINT64_MAX - PG + 1, 0, 1, 0 },
			{ r, 1ull << 40, 0, 1, 0 },
			{ r, PG, 0x80, 1, 0 },
			{ att.staging, MB2, 0, 1, 0 },
		};

		for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
			ck_assert_int_lt(raw_call(fd, DM_MIGRATE_BEGIN, &bad[i],
						  NULL, 0, NULL, 0, NULL),
					 0);
			ck_assert_int_lt(raw_call(fd, DM_MIGRATE_BACK, &bad[i],
						  NULL, 0, NULL, 0, NULL),
					 0);
		}
	}
	{
		const struct dm_access bad[] = {
			{ r, 0, (uintptr_t)rawbuf },
			{ r + MB2 - 1, 2, (uintptr_t)rawbuf },
			{ p, PG, (uintptr_t)rawbuf },
			{ r, UINT64_MAX, (uintptr_t)rawbuf },
			{ top, 2 * PG, (uintptr_t)rawbuf },
			{ r, PG, UINT64_MAX - 10 },
		};

		for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
			ck_assert_int_lt(raw_call(fd, DM_DEVICE_READ, &bad[i],
						  NULL, 0, NULL, 0, NULL),
					 0);
			ck_assert_int_lt(raw_call(fd, DM_DEVICE_WRITE, &bad[i],
						  NULL, 0, NULL, 0, NULL),
					 0);
		}
	}
	ck_assert_int_lt(raw_call(fd, DM_SNAPSHOT,
				  &(struct dm_snapshot){ r, 0 }, NULL, 0, NULL,
				  0, NULL),
			 0);
	ck_assert_int_lt(raw_call(fd, DM_SNAPSHOT,
				  &(struct dm_snapshot){ r, 1ull << 40 }, NULL,
				  0, NULL, 0, NULL),
			 0);
	ck_assert_int_lt(raw_call(fd, DM_SNAPSHOT,
				  &(struct dm_snapshot){ top, 2 }, NULL, 0,
				  NULL, 0, NULL),
			 0);
	/* steps out of order */
	ck_assert_int_eq(raw_call(fd, DM_MIGRATE_COMMIT,
				  &(struct dm_migrate){ r, MB2, 0, 1, 1 }, NULL,
				  0, NULL, 0, NULL),
			 -EPROTO);
	ck_assert_int_eq(raw_call(fd, DM_MIGRATE_FINISH,
				  &(struct dm_migrate){ r, MB2, 0, 1, 1 }, NULL,
				  0, NULL, 0, NULL),
			 -EPROTO);
	mv.dst = r;
	ck_assert_int_lt(
		raw_call(fd, DM_MIGRATE_BACK_DONE, NULL, &mv, 1, NULL, 0, NULL),
		0);
	/* and the registration is still there, and still its own */
	ck_assert_int_eq(raw_call(fd, DM_UNREGISTER,
				  &(struct dm_range){ r, MB2 }, NULL, 0, NULL,
				  0, NULL),
			 0);
	close(fd);
	close(fds[0]);
	close(sp[0]);
	close(sp[1]);
	assert_alive(&D);
	fresh_client_works(&D, 5);
	ck_assert_int_eq(stop(&D), 0);
}
END_TEST

/* A client connected as a client but never attached: every request gets an
 * answer, and nothing breaks */
START_TEST(test_unattached_requests)
{
	struct dm_migrate mg = { 1ull << 30, MB2, 0, 32, 1 };
	struct dm_move mv = { 1ull << 30, 0, 0, 0 };
	struct dm_range rg = { 1ull << 30, MB2 };
	struct dm_access ac = { 1ull << 30, PG, 1ull << 31 };
	struct dm_policy pol;
	struct dm_msg rep;
	int fd;

	start(&D, quiet_args);
	fd = raw_connect(D.sock);
	raw_hello(fd, DM_ROLE_CLIENT);
	ck_assert_int_eq(raw_call(fd, DM_REGISTER, &rg, NULL, 0, NULL, 0, NULL),
			 -EPROTO);
	ck_assert_int_lt(
		raw_call(fd, DM_UNREGISTER, &rg, NULL, 0, NULL, 0, NULL), 0);
	ck_assert_int_lt(
		raw_call(fd, DM_MIGRATE_BEGIN, &mg, NULL, 0, NULL, 0, NULL), 0);
	ck_assert_int_lt(
		raw_call(fd, DM_MIGRATE_COMMIT, &mg, NULL, 0, NULL, 0, NULL),
		0);
	ck_assert_int_lt(
		raw_call(fd, DM_MIGRATE_FINISH, &mg, NULL, 0, NULL, 0, NULL),
		0);
	ck_assert_int_lt(
		raw_call(fd, DM_MIGRATE_BACK, &mg, NULL, 0, NULL, 0, NULL), 0);
	ck_assert_int_lt(
		raw_call(fd, DM_MIGRATE_BACK_DONE, NULL, &mv, 1, NULL, 0, NULL),
		0);
	(void)raw_call(fd, DM_MIGRATE_BACK_DONE, NULL, NULL, 0, NULL, 0, NULL);
	ck_assert_int_lt(
		raw_call(fd, DM_DEVICE_READ, &ac, NULL, 0, NULL, 0, NULL), 0);
	ck_assert_int_lt(
		raw_call(fd, DM_DEVICE_WRITE, &ac, NULL, 0, NULL, 0, NULL), 0);
	ck_assert_int_lt(raw_call(fd, DM_SNAPSHOT,
				  &(struct dm_snapshot){ 1ull << 30, 1 }, NULL,
				  0, NULL, 0, NULL),
			 0);
	ck_assert_int_lt(
		raw_call(fd, DM_SNAPSHOT,
			 &(struct dm_snapshot){ 1ull << 30, 1ull << 40 }, NULL,
			 0, NULL, 0, NULL),
		0);
	ck_assert_int_eq(raw_call(fd, DM_INJECT, &(struct dm_inject){ 99, 1 },
				  NULL, 0, NULL, 0, NULL),
			 -EINVAL);
	pol = (struct dm_policy){ 1, DM_POL_MAX, 0 };
	ck_assert_int_eq(raw_call(fd, DM_POLICY, &pol, NULL, 0, NULL, 0, NULL),
			 -EINVAL);
	pol = (struct dm_policy){ 1, DM_POL_FREE, 5 };
	ck_assert_int_eq(raw_call(fd, DM_POLICY, &pol, NULL, 0, NULL, 0, NULL),
			 -EINVAL);
	pol = (struct dm_policy){ 0, 0, 0 };
	ck_assert_int_eq(raw_call(fd, DM_POLICY, &pol, NULL, 0, NULL, 0, &rep),
			 0);
	ck_assert_uint_eq(rep.u.policy_reply.value[DM_POL_FREE], 0); /* whole */
	dm_msg_release(&rep);
	ck_assert_int_eq(raw_call(fd, DM_STATS, NULL, NULL, 0, NULL, 0, &rep),
			 0);
	ck_assert_uint_eq(rep.u.stats_reply.nfields, DM_STATS_FIELDS);
	ck_assert_uint_eq(rep.u.stats_reply.field[0], 1ul << 30);
	dm_msg_release(&rep);
	ck_assert_int_eq(raw_call(fd, DM_CLIENTS, NULL, NULL, 0, NULL, 0, &rep),
			 0);
	ck_assert_uint_eq(rep.ntail, 1);
	ck_assert_uint_eq(((struct dm_client_info *)rep.tail)->pid,
			  (uint32_t)getpid());
	ck_assert_uint_eq(((struct dm_client_info *)rep.tail)->nranges, 0);
	dm_msg_release(&rep);
	ck_assert_int_eq(raw_call(fd, DM_STATUS, NULL, NULL, 0, NULL, 0, &rep),
			 0);
	ck_assert_uint_eq(rep.u.status_reply.nclients, 1);
	dm_msg_release(&rep);
	close(fd);
	assert_alive(&D);
	fresh_client_works(&D, 4);
	ck_assert_int_eq(stop(&D), 0);
}
END_TEST

/* Clients that send requests and never read the replies */
START_TEST(test_flood)
{
	enum { NFLOOD = 6, MAXREQ = 20000 };
	int fl[NFLOOD], sent[NFLOOD] = { 0 }, answered[NFLOOD] = { 0 };
	bool dropped[NFLOOD] = { false };
	uint64_t t0, worst = 0;
	unsigned long before;
	struct busy b;
	devmem_t *other;
	uint8_t req[64];
	pthread_t th;

	start(&D, quiet_args);
	busy_start(&b, &th, 12);
	other = daemon_connect(&D);
	before = atomic_load(&b.iters);
	for (int i = 0; i < NFLOOD; i++) {
		fl[i] = raw_connect(D.sock);
		raw_hello(fl[i], i % 2 ? DM_ROLE_CLIENT : DM_ROLE_CONTROL);
	}
	t0 = now_us();
	for (bool more = true; more && now_us() - t0 < 10000000;) {
		more = false;
		for (int i = 0; i < NFLOOD; i++) {
			for (int k = 0;
			     k < 64 && !dropped[i] && sent[i] < MAXREQ; k++) {
				size_t n = enc(req, sizeof(req),
					       i % 3 ? DM_STATS : DM_STATUS,
					       (uint32_t)sent[i] + 100, NULL,
					       NULL, 0);
				ssize_t r = send(fl[i], req, n,
						 MSG_DONTWAIT | MSG_NOSIGNAL);

				if (r == (ssize_t)n)
					sent[i]++;
				else if (r < 0 && errno == EAGAIN)
					break;
				else
					dropped[i] = true;
			}
			more |= !dropped[i] && sent[i] < MAXREQ;
		}
		/* the well-behaved client is served meanwhile */
		{
			uint64_t t = now_us();
			struct devmem_stats st;

			ck_assert_int_eq(devmem_stats(other, &st), 0);
			worst = MAX(worst, now_us() - t);
		}
		usleep(1000);
	}
	for (int i = 0; i < 20; i++) {
		uint64_t t = now_us();

		stats_of(other);
		worst = MAX(worst, now_us() - t);
	}
	fresh_client_works(&D, 5);
	assert_alive(&D);
	/* each flooder was either dropped, or gets its replies in order */
	for (int i = 0; i < NFLOOD; i++) {
		for (;;) {
			struct pollfd pf = { fl[i], POLLIN, 0 };
			struct dm_msg m;
			ssize_t n;

			if (poll(&pf, 1, 3000) != 1)
				break;
			n = recv(fl[i], rawbuf, sizeof(rawbuf), 0);
			if (n <= 0) {
				dropped[i] = true;
				break;
			}
			ck_assert_int_eq(dm_decode(rawbuf, (size_t)n, &m), 0);
			ck_assert_uint_eq(m.hdr.id,
					  (uint32_t)answered[i] + 100);
			ck_assert_int_eq(m.u.status.status, 0);
			dm_msg_release(&m);
			answered[i]++;
		}
		ck_assert_msg(
			dropped[i] || answered[i] == sent[i],
			"flooder %d: %d requests, %d replies, not dropped", i,
			sent[i], answered[i]);
		close(fl[i]);
	}
	busy_stop(&b, th, before);
	fprintf(stderr, "test_flood: requests sent:");
	for (int i = 0; i < NFLOOD; i++)
		fprintf(stderr, " %d%s", sent[i],
			dropped[i] ? " (dropped)" : "");
	fprintf(stderr, "; slowest stats call of another client %.1f ms\n",
		worst / 1000.0);
	/* devmemd may make a stuck client wait for its send timeout, but not
	 * everybody else */
	ck_assert_msg(worst < 2000000,
		      "another client's stats call took %.1f ms",
		      worst / 1000.0);
	devmem_disconnect(other);
	devmem_disconnect(b.dm);
	ck_assert_int_eq(stop(&D), 0);
}
END_TEST

/* The attach body of a raw client; bad_slots makes it invalid */
static struct dm_attach raw_attach_body(bool bad_slots)
{
	static char *staging;

	if (!staging)
		staging = map_aligned(MB2, RW, false);
	return (struct dm_attach){ 0, 0, bad_slots ? 0 : 32, 4,
				   (uint64_t)(uintptr_t)staging };
}

/* ATTACH refused again and again on one connection: devmemd must not keep
 * the file descriptors of the refused attempts */
START_TEST(test_attach_refused_no_fd_leak)
{
	struct dm_attach att = raw_attach_body(true);
	int fds0, threads0, fds, threads, fd;

	start(&D, quiet_args);
	base_resources(D.pid, &fds0, &threads0);
	fds = fds0;
	threads = threads0;
	fd = raw_connect(D.sock);
	raw_hello(fd, DM_ROLE_CLIENT);
	for (int i = 0; i < 10; i++) {
		int sv[2];

		ck_assert_int_eq(socketpair(AF_UNIX,
					    SOCK_SEQPACKET | SOCK_CLOEXEC, 0,
					    sv),
				 0);
		/* no userfaultfd in it: refused */
		ck_assert_int_eq(
			raw_call(fd, DM_ATTACH, &att, NULL, 0, sv, 2, NULL),
			-EBADF);
		close(sv[0]);
		close(sv[1]);
	}
	close(fd);
	ck_assert_msg(
		wait_resources(D.pid, &fds, &threads),
		"devmemd had %d fds and %d threads before 10 refused ATTACHes and a disconnect, %d and %d after",
		fds0, threads0, fds, threads);
	ck_assert_int_eq(stop(&D), 0);
}
END_TEST

/* An ATTACH whose "userfaultfd" is /dev/null: devmemd must refuse it, or at
 * least not spin on it */
START_TEST(test_attach_not_uffd)
{
	struct dm_attach att = raw_attach_body(false);
	long hz = sysconf(_SC_CLK_TCK), t0, t1;
	int fds[2], sv[2], fd, status;

	start(&D, quiet_args);
	fd = raw_connect(D.sock);
	raw_hello(fd, DM_ROLE_CLIENT);
	ck_assert_int_eq(
		socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	fds[1] = sv[1];
	status = raw_call(fd, DM_ATTACH, &att, NULL, 0, fds, 2, NULL);
	close(fds[0]);
	close(sv[1]);
	t0 = cpu_ticks(D.pid);
	usleep(1000000);
	t1 = cpu_ticks(D.pid);
	close(fd);
	close(sv[0]);
	assert_alive(&D);
	ck_assert_msg(
		status < 0 || t1 - t0 < hz / 4,
		"ATTACH of /dev/null as the userfaultfd: status %d, then devmemd used %.2f s of CPU in 1 s with nothing to do",
		status, (double)(t1 - t0) / (double)hz);
	ck_assert_int_eq(stop(&D), 0);
}
END_TEST

/* A request that would wait for units the same connection holds busy
 * (between BEGIN and COMMIT) is refused, rather than wait for a message
 * that can only come after it on the same connection */
START_TEST(test_busy_connection_refuses)
{
	struct dm_attach att = raw_attach_body(false);
	struct dm_migrate mig = { 0 };
	struct dm_range reg;
	struct dm_access acc;
	int fds[2], sv[2], fd, uffd;
	struct uffdio_api api = { .api = UFFD_API };
	char *p = map_aligned(MB2, RW, false), buf[64];

	start(&D, quiet_args);
	fd = raw_connect(D.sock);
	raw_hello(fd, DM_ROLE_CLIENT);
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	ck_assert_int_ge(uffd, 0);
	ck_assert_int_eq(ioctl(uffd, UFFDIO_API, &api), 0);
	ck_assert_int_eq(
		socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	fds[0] = uffd;
	fds[1] = sv[1];
	ck_assert_int_eq(raw_call(fd, DM_ATTACH, &att, NULL, 0, fds, 2, NULL),
			 0);
	reg = (struct dm_range){ (uintptr_t)p, MB2 };
	ck_assert_int_eq(
		raw_call(fd, DM_REGISTER, &reg, NULL, 0, NULL, 0, NULL), 0);
	memset(p, 1, MB2);
	mig.addr = (uintptr_t)p;
	mig.len = MB2;
	ck_assert_int_eq(
		raw_call(fd, DM_MIGRATE_BEGIN, &mig, NULL, 0, NULL, 0, NULL),
		0);
	/* the unit is busy until COMMIT, which only this connection sends */
	acc = (struct dm_access){ (uintptr_t)p, sizeof(buf), (uintptr_t)buf };
	ck_assert_int_eq(
		raw_call(fd, DM_DEVICE_READ, &acc, NULL, 0, NULL, 0, NULL),
		-EBUSY);
	reg = (struct dm_range){ (uintptr_t)map_aligned(MB2, RW, false), MB2 };
	ck_assert_int_eq(
		raw_call(fd, DM_REGISTER, &reg, NULL, 0, NULL, 0, NULL),
		-EBUSY);
	ck_assert_int_eq(
		raw_call(fd, DM_MIGRATE_BEGIN, &mig, NULL, 0, NULL, 0, NULL),
		-EBUSY);
	/* nothing moved: COMMIT lets the unit go */
	mig.units = 0;
	ck_assert_int_eq(
		raw_call(fd, DM_MIGRATE_COMMIT, &mig, NULL, 0, NULL, 0, NULL),
		0);
	ck_assert_int_eq(
		raw_call(fd, DM_DEVICE_READ, &acc, NULL, 0, NULL, 0, NULL), 0);
	ck_assert_int_eq(buf[0], 1);
	close(fd);
	close(uffd);
	close(sv[0]);
	close(sv[1]);
	assert_alive(&D);
	ck_assert_int_eq(stop(&D), 0);
}
END_TEST

/* ==== devmemd's life ==== */

START_TEST(test_second_daemon)
{
	char out[4096], err[4096];
	devmem_t *dm;

	start(&D, NULL);
	ck_assert_int_eq(
		run_devmemd((const char *const[]){ "--foreground", "--socket",
						   D.sock, NULL },
			    out, sizeof(out), err, sizeof(err)),
		1);
	ck_assert_msg(strstr(err, D.sock) || strstr(err, "already"),
		      "stderr: %s", err);
	ck_assert_msg(strstr(err, "already") || strstr(err, "in use"),
		      "stderr: %s", err);
	/* in the background too: the starting command fails */
	ck_assert_int_eq(
		run_devmemd((const char *const[]){ "--socket", D.sock, NULL },
			    out, sizeof(out), err, sizeof(err)),
		1);
	ck_assert_ptr_nonnull(strstr(err, "already"));
	/* the first one is unharmed */
	assert_alive(&D);
	dm = daemon_connect(&D);
	ck_assert_uint_eq(stats_of(dm).capacity, 1ul << 30);
	devmem_disconnect(dm);
	ck_assert_int_eq(stop(&D), 0);
}
END_TEST

START_TEST(test_stale_socket)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct daemon d;
	struct stat st;
	devmem_t *dm;
	int fd;

	/* a socket file left by a process that closed it */
	private_dir(&d);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", d.sock);
	fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	ck_assert_int_eq(stat(d.sock, &st), 0);
	ck_assert(!accepts(d.sock));
	dstart(&d, true, NULL, NULL);
	dm = daemon_connect(&d);
	fresh_client_works(&d, 6);
	devmem_disconnect(dm);
	/* a devmemd that was killed leaves its socket behind */
	ck_assert_int_eq(kill(d.pid, SIGKILL), 0);
	ck_assert_int_eq(wait_exit(d.pid, 5000), -1);
	ck_assert_int_eq(stat(d.sock, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	/* the kernel tears the dead daemon's io_uring down asynchronously:
	 * its listening socket may take connections for a few ms more */
	for (int i = 0; i < 200 && accepts(d.sock); i++)
		usleep(10000);
	ck_assert(!accepts(d.sock));
	dstart(&d, true, NULL, NULL);
	fresh_client_works(&d, 7);
	ck_assert_int_eq(stop(&d), 0);
}
END_TEST

START_TEST(test_socket_mode)
{
	struct daemon d;
	struct stat st;

	/* whatever the umask */
	private_dir(&d);
	dstart(&d, true, NULL, &(struct spawn){ .clear_umask = true });
	ck_assert_int_eq(stat(d.sock, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 07777, 0600);
	ck_assert_uint_eq(st.st_uid, getuid());
	ck_assert_int_eq(stop(&d), 0);
	start(&D, NULL);
	ck_assert_int_eq(stat(D.sock, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0600);
	ck_assert_int_eq(stop(&D), 0);
}
END_TEST

/* The socket accepts as soon as it exists: scripts wait for the file (the
 * README example's test does), and a second devmemd must never see a
 * socket that refuses and take it for stale */
START_TEST(test_socket_ready)
{
	const char *argv[] = { devmemd_bin(), "--foreground", "--log-level",
			       "warn",	      "--socket",     NULL,
			       NULL };
	struct daemon d;

	for (int round = 0; round < 10; round++) {
		struct stat st;

		private_dir(&d);
		argv[5] = d.sock;
		d.pid = spawn(&(struct spawn){ .argv = argv });
		for (int i = 0; i < 100000 && stat(d.sock, &st); i++)
			usleep(50);
		ck_assert_msg(accepts(d.sock), "round %d: %s refuses", round,
			      d.sock);
		ck_assert_int_eq(stop(&d), 0);
	}
}
END_TEST

static sigjmp_buf sigbus_jmp;

static void on_sigbus(int sig)
{
	siglongjmp(sigbus_jmp, 1);
}

/* Did reading *p raise SIGBUS? */
static bool read_raises_sigbus(const volatile int *p)
{
	struct sigaction sa = { .sa_handler = on_sigbus }, old;
	volatile bool bus = false;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, &old);
	if (sigsetjmp(sigbus_jmp, 1))
		bus = true;
	else
		(void)*p;
	sigaction(SIGBUS, &old, NULL);
	return bus;
}

START_TEST(test_signals)
{
	struct devmem_stats st;
	devmem_t *dm;
	int *p;

	/* SIGINT with a client connected */
	start(&D, quiet_args);
	dm = daemon_connect(&D);
	p = map_aligned(2 * MB2, RW, true);
	reg(dm, p, 2 * MB2);
	fill_ints(p, 2 * MB2, 8);
	ck_assert_int_eq(kill(D.pid, SIGINT), 0);
	ck_assert_int_eq(wait_exit(D.pid, 10000), 0);
	ck_assert_int_ne(access(D.sock, F_OK), 0);
	remove_dir(D.dir);
	/* the client learns it, and its memory stays its own */
	ck_assert_int_lt(devmem_stats(dm, &st), 0);
	ck_assert_int_lt(devmem_migrate(dm, p, MB2, DEVMEM_TO_DEVICE, 0, NULL),
			 0);
	ck_assert_int_eq(check_ints(p, 2 * MB2, 8), -1);
	devmem_disconnect(dm);

	/* SIGTERM with device pages out: a clean exit, and the pages the
	 * client lost fail loudly rather than read as zeros */
	start(&D, quiet_args);
	dm = daemon_connect(&D);
	reg(dm, p, 2 * MB2);
	ck_assert_uint_eq(migrate(dm, p, MB2, DEVMEM_TO_DEVICE, 0).pages, 512);
	ck_assert_int_eq(stop(&D), 0);
	ck_assert(read_raises_sigbus(p + 1000));
	ck_assert_int_eq(check_ints(p + MB2 / sizeof(int), MB2,
				    8 + (int)(MB2 / sizeof(int))),
			 -1);
	devmem_disconnect(dm);
}
END_TEST

START_TEST(test_background)
{
	char out[8192], err[4096], outj[8192];
	struct daemon d;
	struct stat st;
	devmem_t *dm;
	pid_t pid;
	int status;

	private_dir(&d);
	/* its parent is this process once the starter exits */
	ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	status = run_devmemd((const char *const[]){ "--socket", d.sock,
						    "--size", "64M", NULL },
			     out, sizeof(out), err, sizeof(err));
	ck_assert_msg(status == 0, "devmemd: exit %d: %s", status, err);
	/* it serves by the time the starting command returns */
	ck_assert(accepts(d.sock));
	ctl_ok(&d, outj, sizeof(outj),
	       (const char *const[]){ "--json", "status", NULL });
	pid = (pid_t)json_u64(outj, "pid");
	left_pid(pid, true);
	ck_assert_int_gt(pid, 1);
	ck_assert_int_eq(kill(pid, 0), 0);
	ck_assert_int_eq(getsid(pid), pid); /* its own session */
	ck_assert_uint_eq(json_u64(outj, "capacity"), 64ul << 20);
	ck_assert_int_eq(stat(d.sock, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0600);
	dm = daemon_connect(&d);
	ck_assert_uint_eq(stats_of(dm).capacity, 64ul << 20);
	devmem_disconnect(dm);
	fresh_client_works(&d, 8);
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(wait_exit(pid, 10000), 0);
	left_pid(pid, false);
	ck_assert_int_ne(access(d.sock, F_OK), 0);
	/* a daemon that cannot start makes the starting command fail */
	status = run_devmemd((const char *const[]){ "--socket", d.sock,
						    "--node", "99", NULL },
			     out, sizeof(out), err, sizeof(err));
	ck_assert_int_eq(status, 1);
	ck_assert_msg(strstr(err, "node") || strstr(err, "NUMA"), "stderr: %s",
		      err);
	ck_assert_int_ne(access(d.sock, F_OK), 0);
	remove_dir(d.dir);
}
END_TEST

START_TEST(test_bad_options)
{
	static const char *const bad[][4] = {
		{ "--bogus" },
		{ "-x" },
		{ "-fx" },
		{ "--size" },
		{ "--size", "12Q" },
		{ "--size", "1M" },
		{ "--size", "4097" },
		{ "--size", "1T" },
		{ "--size", "" },
		{ "--node", "-1" },
		{ "--node", "abc" },
		{ "--node", "1x" },
		{ "--granularity", "huge" },
		{ "--fault-granularity", "page" },
		{ "--free", "some" },
		{ "--on-full", "panic" },
		{ "--log-level", "loud" },
		{ "--socket", "" },
		{ "stray" },
		{ "--foreground", "stray" },
	};
	char out[4096], err[4096], lng[300];
	struct daemon d;

	private_dir(&d);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		const char *args[10] = { "--foreground", "--socket", d.sock };
		int n = 3, st;

		for (int k = 0; k < 4 && bad[i][k]; k++)
			args[n++] = bad[i][k];
		st = run_devmemd(args, out, sizeof(out), err, sizeof(err));
		ck_assert_msg(st == 2, "devmemd %s %s: exit %d", bad[i][0],
			      bad[i][1] ? bad[i][1] : "", st);
		ck_assert_msg(one_line(err) && !strncmp(err, "devmemd: ", 9),
			      "devmemd %s %s: stderr '%s'", bad[i][0],
			      bad[i][1] ? bad[i][1] : "", err);
		ck_assert_str_eq(out, "");
		ck_assert_int_ne(access(d.sock, F_OK), 0);
	}
	/* a socket path too long for sun_path */
	memset(lng, 'x', sizeof(lng) - 1);
	lng[0] = '/';
	lng[sizeof(lng) - 1] = '\0';
	ck_assert_int_eq(
		run_devmemd((const char *const[]){ "--foreground", "--socket",
						   lng, NULL },
			    out, sizeof(out), err, sizeof(err)),
		2);
	ck_assert(one_line(err));
	/* --help and --version */
	ck_assert_int_eq(run_devmemd((const char *const[]){ "--help", NULL },
				     out, sizeof(out), err, sizeof(err)),
			 0);
	ck_assert_ptr_nonnull(strstr(out, "Usage: devmemd"));
	ck_assert_ptr_nonnull(strstr(out, "--socket"));
	ck_assert_str_eq(err, "");
	ck_assert_int_eq(run_devmemd((const char *const[]){ "-h", NULL }, out,
				     sizeof(out), err, sizeof(err)),
			 0);
	ck_assert_ptr_nonnull(strstr(out, "Usage: devmemd"));
	ck_assert_int_eq(run_devmemd((const char *const[]){ "--version", NULL },
				     out, sizeof(out), err, sizeof(err)),
			 0);
	ck_assert_ptr_nonnull(strstr(out, "devmemd "));
	ck_assert_ptr_nonnull(strstr(out, PACKAGE_VERSION));
	ck_assert(one_line(out));
	ck_assert_int_eq(run_devmemd((const char *const[]){ "-V", NULL }, out,
				     sizeof(out), err, sizeof(err)),
			 0);
	ck_assert_ptr_nonnull(strstr(out, PACKAGE_VERSION));
	/* a NUMA node that does not exist: a failed start, not a usage error */
	ck_assert_int_eq(
		run_devmemd((const char *const[]){ "--foreground", "--socket",
						   d.sock, "--node", "99",
						   NULL },
			    out, sizeof(out), err, sizeof(err)),
		1);
	ck_assert_msg(strstr(err, "99") && strstr(err, "cannot start"),
		      "stderr: %s", err);
	ck_assert_int_ne(access(d.sock, F_OK), 0);
	remove_dir(d.dir);
}
END_TEST

START_TEST(test_size_suffixes)
{
	static const struct {
		const char *arg;
		uint64_t bytes;
	} sizes[] = {
		{ "2M", 2ul << 20 },	  { "65536K", 64ul << 20 },
		{ "16MiB", 16ul << 20 },  { "12MB", 12ul << 20 },
		{ "8388608", 8ul << 20 }, { "4194304B", 4ul << 20 },
		{ "3g", 3ul << 30 },	  { "2100k", 2100ul << 10 },
	};
	char out[8192];

	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
		const char *const args[] = { "--size", sizes[i].arg, NULL };
		devmem_t *dm;

		start(&D, args);
		dm = daemon_connect(&D);
		ck_assert_msg(stats_of(dm).capacity == sizes[i].bytes,
			      "--size %s: capacity %llu", sizes[i].arg,
			      (unsigned long long)stats_of(dm).capacity);
		ctl_ok(&D, out, sizeof(out),
		       (const char *const[]){ "--json", "stats", NULL });
		ck_assert_uint_eq(json_u64(out, "capacity"), sizes[i].bytes);
		devmem_disconnect(dm);
		ck_assert_int_eq(stop(&D), 0);
	}
}
END_TEST

/* ==== SO_PEERCRED ==== */

/* The client in the uid-65534 child: connect, register, to the device and
 * back; exit status: the step that failed */
static int nobody_client(const char *sock, int to_parent, int from_parent)
{
	struct devmem_result res;
	struct devmem_stats st;
	devmem_t *c;
	char *p, ch;

	if (setgroups(0, NULL) || setgid(NOBODY) || setuid(NOBODY))
		return 2;
	if (getuid() != NOBODY)
		return 2;
	if (devmem_connect(sock, &c))
		return 3;
	p = xmap_aligned(MB2, true);
	if (!p)
		return 4;
	if (devmem_register(c, p, MB2))
		return 5;
	fill_ints(p, MB2, 3);
	if (devmem_migrate(c, p, MB2, DEVMEM_TO_DEVICE, 0, &res) ||
	    res.pages != 512)
		return 6;
	if (devmem_stats(c, &st) || st.client_used != MB2 ||
	    st.capacity != 64ul << 20)
		return 7;
	if (write(to_parent, "m", 1) != 1 || read(from_parent, &ch, 1) != 1)
		return 8;
	if (check_ints(p, MB2, 3) != -1) /* the CPU faults it back */
		return 9;
	if (devmem_migrate(c, p, MB2, DEVMEM_TO_DEVICE, 0, &res) ||
	    res.pages != 512)
		return 10;
	if (devmem_migrate(c, p, MB2, DEVMEM_TO_SYSTEM, 0, &res) ||
	    res.pages != 512)
		return 11;
	if (check_ints(p, MB2, 3) != -1)
		return 12;
	if (devmem_stats(c, &st) || st.client_used != 0)
		return 13;
	devmem_disconnect(c);
	return 0;
}

START_TEST(test_peercred_root_serves_nobody)
{
	static const char *const args[] = { "--size", "64M", NULL };
	int up[2], down[2], st;
	char out[8192], ch;
	devmem_t *obs;
	pid_t pid;

	start(&D, args);
	/* let uid 65534 reach the socket */
	ck_assert_int_eq(chmod(D.dir, 0755), 0);
	ck_assert_int_eq(chmod(D.sock, 0666), 0);
	ck_assert_int_eq(pipe2(up, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(down, O_CLOEXEC), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		_exit(nobody_client(D.sock, up[1], down[0]));
	}
	close(up[1]);
	close(down[0]);
	if (read(up[0], &ch, 1) == 1) {
		ctl_ok(&D, out, sizeof(out),
		       (const char *const[]){ "--json", "clients", NULL });
		ck_assert_msg(strstr(out, "\"uid\": 65534") &&
				      strstr(out, "\"used\": 2097152"),
			      "devmemctl clients: %s", out);
		ck_assert_int_eq(write(down[1], "g", 1), 1);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "the uid-65534 client failed at step %d (status %#x)",
		      WIFEXITED(st) ? WEXITSTATUS(st) : -1, st);
	close(up[0]);
	close(down[1]);
	obs = daemon_connect(&D);
	ck_assert(wait_used(obs, 0));
	devmem_disconnect(obs);
	ck_assert_int_eq(stop(&D), 0);
}
END_TEST

START_TEST(test_peercred_refuses_other_uid)
{
	static const char *const args[] = { "--size", "64M", "--log-level",
					    "error", NULL };
	char out[4096], err[4096];
	struct daemon d;
	struct stat sb;
	devmem_t *dm;
	pid_t pid;
	int rc, st;

	private_dir(&d);
	ck_assert_int_eq(chmod(d.dir, 0777), 0);
	dstart(&d, true, args, &(struct spawn){ .nobody = true });
	ck_assert_int_eq(stat(d.sock, &sb), 0);
	ck_assert_uint_eq(sb.st_uid, NOBODY);
	ck_assert_uint_eq(sb.st_mode & 07777, 0600);
	/* root may connect() (no permission check for it), but devmemd will
	 * not talk to another user */
	dm = NULL;
	rc = devmem_connect(d.sock, &dm);
	ck_assert_msg(rc == -EACCES,
		      "devmem_connect as root to a uid-65534 devmemd: %d (%s)",
		      rc, devmem_strerror(rc));
	ck_assert_ptr_null(dm);
	ck_assert_int_eq(run_ctl(d.sock,
				 (const char *const[]){ "status", NULL }, out,
				 sizeof(out), err, sizeof(err)),
			 1);
	ck_assert_msg(one_line(err), "stderr: %s", err);
	ck_assert_str_eq(out, "");
	/* its own user it serves */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		devmem_t *c;
		struct devmem_stats s;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (setgroups(0, NULL) || setgid(NOBODY) || setuid(NOBODY))
			_exit(2);
		if (devmem_connect(d.sock, &c))
			_exit(3);
		if (devmem_stats(c, &s) || s.capacity != 64ul << 20)
			_exit(4);
		devmem_disconnect(c);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(
		WIFEXITED(st) && WEXITSTATUS(st) == 0,
		"a uid-65534 client of a uid-65534 devmemd failed (status %#x)",
		st);
	assert_alive(&d);
	ck_assert_int_eq(stop(&d), 0);
}
END_TEST

/* ==== devmemctl ==== */

static const char *const status_keys[] = {
	"capacity",
	"used",
	"free_blocks_by_order",
	"fragmentation_permille",
	"metadata_bytes",
	"node",
	"cpus",
	"topology",
	"clients",
	"policy",
	"counters",
	"pid",
	"version",
	"socket",
	"metadata_bytes_per_page",
};

static void assert_keys(const char *js, const char *const *keys, size_t n)
{
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(json_key(js, keys[i]), "no \"%s\" in %s", keys[i],
			      js);
}

START_TEST(test_ctl_commands)
{
	static const char *const args[] = { "--size", "128M", NULL };
	static const char *const counter_keys[] = {
		"to_device_pages", "to_system_pages", "huge_migrations",
		"splits",	   "cpu_faults",      "evictions",
	};
	static const char *const policy_keys[] = {
		"granularity",
		"fault-granularity",
		"free",
		"on-full",
	};
	char out[16384], pidstr[32];
	struct devmem_result res;
	devmem_t *dm;
	char *p;

	/* the checker itself */
	ck_assert(json_valid(
		"{\"a\": [1, -2.5e3, \"x\\\"y\", true, null, {}], \"b\": {}}\n"));
	ck_assert(!json_valid("{\"a\": 1,}"));
	ck_assert(!json_valid("{\"a\" 1}"));
	ck_assert(!json_valid("[1 2]"));
	ck_assert(!json_valid("{\"a\": nan}"));
	ck_assert(!json_valid("{\"a\": 01}"));
	ck_assert(!json_valid("{\"a\": 1}}"));
	ck_assert(!json_valid("{\"a\": [1}"));
	ck_assert(!json_valid("{\"a\": \"x}"));
	ck_assert(!json_valid(""));

	start(&D, args);
	dm = daemon_connect(&D);
	p = map_aligned(4 * MB2, RW, true);
	reg(dm, p, 4 * MB2);
	fill_ints(p, 4 * MB2, 0);
	ck_assert_uint_eq(migrate(dm, p, MB2, DEVMEM_TO_DEVICE, 0).huge, 1);
	snprintf(pidstr, sizeof(pidstr), "%d", (int)getpid());

	/* status */
	ctl_ok(&D, out, sizeof(out), (const char *const[]){ "status", NULL });
	ck_assert_ptr_nonnull(strstr(out, "clients: 1"));
	ck_assert_ptr_nonnull(strstr(out, D.sock));
	{
		const char *m = strstr(out, "allocator metadata: ");
		double per_page = 99;

		ck_assert_ptr_nonnull(m);
		m = strchr(m, '(');
		ck_assert_ptr_nonnull(m);
		per_page = strtod(m + 1, NULL);
		ck_assert_double_le(per_page, 8.0);
	}
	ctl_ok(&D, out, sizeof(out),
	       (const char *const[]){ "--json", "status", NULL });
	ck_assert_msg(json_valid(out), "not JSON: %s", out);
	assert_keys(out, status_keys, ARRAY_SIZE(status_keys));
	assert_keys(out, counter_keys, ARRAY_SIZE(counter_keys));
	assert_keys(out, policy_keys, ARRAY_SIZE(policy_keys));
	ck_assert_uint_eq(json_u64(out, "capacity"), 128ul << 20);
	ck_assert_uint_eq(json_u64(out, "used"), MB2);
	ck_assert_uint_eq(json_u64(out, "clients"), 1);
	ck_assert_uint_eq(json_u64(out, "pid"), (uint64_t)D.pid);
	ck_assert_uint_eq(json_u64(out, "to_device_pages"), 512);
	ck_assert_double_le(json_double(out, "metadata_bytes_per_page"), 8.0);
	ck_assert_double_gt(json_double(out, "metadata_bytes_per_page"), 0.0);
	ck_assert_uint_le(json_u64(out, "fragmentation_permille"), 1000);
	ck_assert_ptr_nonnull(
		strstr(json_key(out, "free_blocks_by_order"), "["));

	/* stats */
	ctl_ok(&D, out, sizeof(out), (const char *const[]){ "stats", NULL });
	ck_assert_ptr_nonnull(strstr(out, "to_device_pages"));
	ctl_ok(&D, out, sizeof(out),
	       (const char *const[]){ "--json", "stats", NULL });
	ck_assert_msg(json_valid(out), "not JSON: %s", out);
	assert_keys(out, counter_keys, ARRAY_SIZE(counter_keys));
	ck_assert_uint_eq(json_u64(out, "capacity"), 128ul << 20);
	ck_assert_uint_eq(json_u64(out, "used"), MB2);
	ck_assert_uint_eq(json_u64(out, "huge_migrations"), 1);

	/* clients */
	ctl_ok(&D, out, sizeof(out), (const char *const[]){ "clients", NULL });
	ck_assert_msg(strstr(out, pidstr), "devmemctl clients: %s", out);
	ctl_ok(&D, out, sizeof(out),
	       (const char *const[]){ "--json", "clients", NULL });
	ck_assert_msg(json_valid(out), "not JSON: %s", out);
	{
		pid_t pids[4];

		ck_assert_int_eq(json_pids(out, pids, 4), 1);
		ck_assert_int_eq(pids[0], getpid());
	}
	ck_assert_uint_eq(json_u64(out, "used"), MB2);
	ck_assert_uint_eq(json_u64(out, "ranges"), 1);
	ck_assert_uint_eq(json_u64(out, "registered"), 4 * MB2);

	/* policy */
	ctl_ok(&D, out, sizeof(out), (const char *const[]){ "policy", NULL });
	ck_assert_ptr_nonnull(strstr(out, "free               whole"));
	ctl_ok(&D, out, sizeof(out),
	       (const char *const[]){ "policy", "free", "split", NULL });
	ck_assert_ptr_nonnull(strstr(out, "free               split"));
	ctl_ok(&D, out, sizeof(out), (const char *const[]){ "policy", NULL });
	ck_assert_ptr_nonnull(strstr(out, "free               split"));
	ctl_ok(&D, out, sizeof(out),
	       (const char *const[]){ "--json", "policy", NULL });
	ck_assert_msg(json_valid(out), "not JSON: %s", out);
	assert_keys(out, policy_keys, ARRAY_SIZE(policy_keys));
	ck_assert_ptr_nonnull(strstr(out, "\"free\": \"split\""));
	ctl_ok(&D, out, sizeof(out),
	       (const char *const[]){ "--json", "policy", "free", "whole",
				      NULL });
	ck_assert_msg(json_valid(out), "not JSON: %s", out);
	ck_assert_ptr_nonnull(strstr(out, "\"free\": \"whole\""));
	ctl_ok(&D, out, sizeof(out),
	       (const char *const[]){ "--json", "status", NULL });
	ck_assert_ptr_nonnull(strstr(out, "\"free\": \"whole\""));

	/* inject: the next 2 MB unit falls back to 4 KB pages */
	ctl_ok(&D, out, sizeof(out),
	       (const char *const[]){ "inject", "fail-huge", "1", NULL });
	res = migrate(dm, p + MB2, MB2, DEVMEM_TO_DEVICE, 0);
	ck_assert_uint_eq(res.split, 1);
	ck_assert_uint_eq(res.huge, 0);
	ck_assert_uint_eq(
		migrate(dm, p + 2 * MB2, MB2, DEVMEM_TO_DEVICE, 0).huge, 1);
	ctl_ok(&D, out, sizeof(out),
	       (const char *const[]){ "--json", "inject", "fail-huge", "1",
				      NULL });
	ck_assert_msg(json_valid(out), "not JSON: %s", out);
	res = migrate(dm, p + 3 * MB2, MB2, DEVMEM_TO_DEVICE, 0);
	ck_assert_uint_eq(res.split, 1);
	ck_assert_int_eq(check_ints(p, 4 * MB2, 0), -1);
	ctl_ok(&D, out, sizeof(out),
	       (const char *const[]){ "inject", "fail-any", "0", NULL });
	ctl_ok(&D, out, sizeof(out),
	       (const char *const[]){ "--json", "stats", NULL });
	ck_assert_uint_eq(json_u64(out, "used"), 0);
	ck_assert_uint_eq(json_u64(out, "splits"), 2);
	/* a control connection does not count as a client */
	ck_assert_uint_eq(status_field(&D, "clients"), 1);
	devmem_disconnect(dm);
	ck_assert_int_eq(stop(&D), 0);
}
END_TEST

START_TEST(test_ctl_errors)
{
	static const char *const bad[][5] = {
		{ "bogus" },
		{ "policy", "free" },
		{ "policy", "free", "bogus" },
		{ "policy", "bogus", "split" },
		{ "policy", "free", "split", "whole" },
		{ "inject" },
		{ "inject", "fail-huge" },
		{ "inject", "fail-huge", "x" },
		{ "inject", "bogus", "1" },
		{ "--json", "bogus" },
	};
	char out[8192], err[4096], none[128];

	start(&D, NULL);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		int st = run_ctl(D.sock, bad[i], out, sizeof(out), err,
				 sizeof(err));

		ck_assert_msg(st == 2, "devmemctl %s %s: exit %d", bad[i][0],
			      bad[i][1] ? bad[i][1] : "", st);
		ck_assert_msg(one_line(err) && !strncmp(err, "devmemctl: ", 11),
			      "devmemctl %s %s: stderr '%s'", bad[i][0],
			      bad[i][1] ? bad[i][1] : "", err);
	}
	/* the policy did not change */
	ctl_ok(&D, out, sizeof(out),
	       (const char *const[]){ "--json", "policy", NULL });
	ck_assert_ptr_nonnull(strstr(out, "\"free\": \"whole\""));
	/* no command: usage */
	ck_assert_int_eq(run_ctl(D.sock, (const char *const[]){ NULL }, out,
				 sizeof(out), err, sizeof(err)),
			 2);
	ck_assert_ptr_nonnull(strstr(err, "Usage"));
	ck_assert_int_eq(run_ctl(NULL, (const char *const[]){ "--help", NULL },
				 out, sizeof(out), err, sizeof(err)),
			 0);
	ck_assert_ptr_nonnull(strstr(out, "Usage: devmemctl"));
	ck_assert_int_eq(run_ctl(NULL,
				 (const char *const[]){ "--version", NULL },
				 out, sizeof(out), err, sizeof(err)),
			 0);
	ck_assert_ptr_nonnull(strstr(out, PACKAGE_VERSION));
	/* nobody listening */
	snprintf(none, sizeof(none), "%s/none.sock", D.dir);
	ck_assert_int_eq(run_ctl(none, (const char *const[]){ "status", NULL },
				 out, sizeof(out), err, sizeof(err)),
			 1);
	ck_assert_msg(one_line(err) && strstr(err, none), "stderr: %s", err);
	ck_assert_int_eq(
		run_ctl(none, (const char *const[]){ "--json", "stats", NULL },
			out, sizeof(out), err, sizeof(err)),
		1);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(stop(&D), 0);
}
END_TEST

/* Arguments after a command that takes none are an error, as they are for
 * every other command */
START_TEST(test_ctl_extra_args)
{
	static const char *const bad[][3] = {
		{ "status", "extra" },
		{ "stats", "now" },
		{ "clients", "7" },
		{ "evict", "all" },
	};
	char out[8192], err[4096];

	start(&D, NULL);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		int st = run_ctl(D.sock, bad[i], out, sizeof(out), err,
				 sizeof(err));

		ck_assert_msg(st == 2 && one_line(err),
			      "devmemctl %s %s: exit %d, stderr '%s'",
			      bad[i][0], bad[i][1], st, err);
	}
	ck_assert_int_eq(stop(&D), 0);
}
END_TEST

/* An unknown option: exit 2 and one line, like an unknown command */
START_TEST(test_ctl_unknown_option)
{
	char out[8192], err[4096];
	int st;

	start(&D, NULL);
	st = run_ctl(D.sock, (const char *const[]){ "--bogus", "status", NULL },
		     out, sizeof(out), err, sizeof(err));
	ck_assert_int_eq(st, 2);
	ck_assert_str_eq(out, "");
	ck_assert_msg(one_line(err), "devmemctl --bogus status: stderr '%s'",
		      err);
	ck_assert_int_eq(stop(&D), 0);
}
END_TEST

/* ==== many clients ==== */

START_TEST(test_many_clients)
{
	enum { N = 200 };
	static devmem_t *cl[N];
	struct rlimit rl;
	struct daemon d;
	int fds0, threads0, fds, threads;
	char out[65536], *p;
	devmem_t *obs;

	/* this process holds a few fds per client */
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur < 4096) {
		rl.rlim_cur = MIN((rlim_t)4096, rl.rlim_max);
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	/* devmemd holds about 5 fds per attached client: with the usual soft limit
	 * of 1024 it would run out at about 200 (see test_fd_limit for what
	 * happens then) */
	private_dir(&d);
	dstart(&d, true, NULL, &(struct spawn){ .nofile = 4096 });
	obs = daemon_connect(&d);
	base_resources(d.pid, &fds0, &threads0);
	fds = fds0;
	threads = threads0;
	p = mmap(NULL, N * PG, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(p, MAP_FAILED);
	for (int i = 0; i < N; i++) {
		int err = devmem_connect(d.sock, &cl[i]);

		ck_assert_msg(!err, "client %d: devmem_connect: %s", i,
			      devmem_strerror(err));
		err = devmem_register(cl[i], p + i * PG, PG);
		ck_assert_msg(!err, "client %d: devmem_register: %s", i,
			      devmem_strerror(err));
	}
	ck_assert_uint_eq(status_field(&d, "clients"), N + 1);
	ctl_ok(&d, out, sizeof(out),
	       (const char *const[]){ "--json", "clients", NULL });
	ck_assert(json_valid(out));
	{
		static pid_t pids[N + 8];

		ck_assert_int_eq(json_pids(out, pids, N + 8), N + 1);
	}
	/* they all work */
	for (int i = 0; i < N; i += 9) {
		struct devmem_result res;

		memset(p + i * PG, i + 1, PG);
		ck_assert_int_eq(devmem_migrate(cl[i], p + i * PG, PG,
						DEVMEM_TO_DEVICE, 0, &res),
				 0);
		ck_assert_uint_eq(res.pages, 1);
		ck_assert_uint_eq(stats_of(cl[i]).client_used, PG);
	}
	ck_assert_uint_eq(stats_of(obs).used, ((N + 8) / 9) * PG);
	for (int i = 0; i < N; i += 9)
		ck_assert_int_eq(p[i * PG + 17], (char)(i + 1));
	ck_assert_uint_eq(stats_of(obs).used, 0);
	for (int i = 0; i < N; i++)
		devmem_disconnect(cl[i]);
	for (int i = 0; i < 100 && status_field(&d, "clients") != 1; i++)
		usleep(50000);
	ck_assert_uint_eq(status_field(&d, "clients"), 1);
	ck_assert_uint_eq(stats_of(obs).used, 0);
	ck_assert_msg(wait_resources(d.pid, &fds, &threads),
		      "devmemd had %d fds and %d threads, now %d and %d", fds0,
		      threads0, fds, threads);
	fresh_client_works(&d, 9);
	devmem_disconnect(obs);
	munmap(p, N * PG);
	ck_assert_int_eq(stop(&d), 0);
}
END_TEST

/* devmemd at its file descriptor limit: connections wait, but devmemd does
 * not spin, and it serves again once descriptors are free */
START_TEST(test_fd_limit)
{
	enum { MAXC = 200 };
	struct dm_hello hello = { DM_ROLE_CONTROL, DM_PROTO_VERSION,
				  DM_PROTO_VERSION };
	long hz = sysconf(_SC_CLK_TCK), t0, t1;
	int fd[MAXC], n = 0, waiting = 0;
	struct daemon d;

	private_dir(&d);
	dstart(&d, true, quiet_args, &(struct spawn){ .nofile = 64 });
	/* control connections until they are not answered any more, and a
	 * few more behind those */
	for (; n < MAXC && waiting < 5; n++) {
		size_t len = enc(rawbuf, sizeof(rawbuf), DM_HELLO, 1, &hello,
				 NULL, 0);
		struct pollfd pf;

		fd[n] = raw_connect(d.sock);
		send_record(fd[n], rawbuf, len, NULL, 0);
		pf = (struct pollfd){ fd[n], POLLIN, 0 };
		if (waiting || poll(&pf, 1, 500) != 1) {
			waiting++;
			continue;
		}
		ck_assert_int_ge(recv(fd[n], rawbuf, sizeof(rawbuf), 0), 0);
	}
	t0 = cpu_ticks(d.pid);
	usleep(1000000);
	t1 = cpu_ticks(d.pid);
	assert_alive(&d);
	for (int i = 0; i < n; i++)
		close(fd[i]);
	ck_assert_msg(
		t1 - t0 < hz / 4,
		"devmemd at its fd limit (%d connections, %d waiting) used %.2f s of CPU in 1 s",
		n, waiting, (double)(t1 - t0) / (double)hz);
	fresh_client_works(&d, 10);
	ck_assert_int_eq(stop(&d), 0);
}
END_TEST

/* ==== one connection, many threads ==== */

struct worker {
	devmem_t *dm;
	pthread_barrier_t *bar;
	int id, iters;
	bool huge;
	char *p;
	int err;
	char what[128];
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint8_t *snap = malloc(512);
	int *buf = malloc(MB2);
	int err, i = 0;

	pthread_barrier_wait(w->bar);
	if (!snap || !buf) {
		w->err = -ENOMEM;
		goto out;
	}
	err = devmem_register(w->dm, w->p, MB2);
	if (err) {
		w->err = err;
		snprintf(w->what, sizeof(w->what), "register: %s",
			 devmem_strerror(err));
		goto out;
	}
	for (; i < w->iters; i++) {
		int seed = w->id * 100000 + i;
		struct devmem_result res;
		struct devmem_stats st;
		const char *what = NULL;

		fill_ints(w->p, MB2, seed);
		err = devmem_migrate(w->dm, w->p, MB2, DEVMEM_TO_DEVICE, 0,
				     &res);
		if (err || res.pages != 512) {
			what = "to device";
			goto fail;
		}
		err = devmem_snapshot(w->dm, w->p, 512, snap);
		for (int k = 0; !err && k < 512; k++)
			if (!(snap[k] & DEVMEM_PAGE_DEVICE))
				err = -EIO;
		if (err) {
			what = "snapshot";
			goto fail;
		}
		err = devmem_device_read(w->dm, w->p, MB2, buf, &res);
		if (!err && check_ints(buf, MB2, seed) != -1)
			err = -EIO;
		if (err) {
			what = "device read";
			goto fail;
		}
		err = devmem_stats(w->dm, &st);
		if (err || st.capacity != 1ul << 30) {
			what = "stats";
			goto fail;
		}
		if (w->huge && i % 2) {
			/* one CPU fault brings the folio back */
			if (check_ints(w->p, MB2, seed) != -1) {
				what = "CPU fault";
				goto fail;
			}
		} else {
			err = devmem_migrate(w->dm, w->p, MB2, DEVMEM_TO_SYSTEM,
					     0, &res);
			if (err || res.pages != 512 ||
			    check_ints(w->p, MB2, seed) != -1) {
				what = "to system";
				goto fail;
			}
		}
		continue;
	fail:
		w->err = err ? err : -EIO;
		snprintf(w->what, sizeof(w->what), "iteration %d: %s: %s", i,
			 what, devmem_strerror(w->err));
		break;
	}
out:
	free(snap);
	free(buf);
	return NULL;
}

START_TEST(test_threads_share_connection)
{
	enum { NT = 8, ITERS = 200 };
	struct worker w[NT];
	pthread_t th[NT];
	pthread_barrier_t bar;
	struct devmem_stats st;
	devmem_t *dm;

	start(&D, NULL);
	dm = daemon_connect(&D);
	pthread_barrier_init(&bar, NULL, NT);
	for (int i = 0; i < NT; i++) {
		w[i] = (struct worker){ .dm = dm,
					.bar = &bar,
					.id = i,
					.iters = ITERS,
					.huge = i % 2 == 0,
					.p = map_aligned(MB2, RW, i % 2 == 0) };
		ck_assert_int_eq(
			pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < NT; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < NT; i++)
		ck_assert_msg(!w[i].err, "thread %d: %s", i, w[i].what);
	st = stats_of(dm);
	ck_assert_uint_eq(st.to_device_pages, (uint64_t)NT * ITERS * 512);
	ck_assert_uint_eq(st.to_system_pages, st.to_device_pages);
	ck_assert_uint_eq(st.client_used, 0);
	ck_assert_uint_eq(st.used, 0);
	ck_assert_uint_eq(st.cpu_faults, (uint64_t)(NT / 2) * (ITERS / 2));
	pthread_barrier_destroy(&bar);
	devmem_disconnect(dm);
	ck_assert_int_eq(stop(&D), 0);
}
END_TEST

static Suite *daemon_suite(void)
{
	Suite *s = suite_create("daemon");
	TCase *conn = tcase_create("connect");
	TCase *regi = tcase_create("register");
	TCase *death = tcase_create("death");
	TCase *junk = tcase_create("garbage");
	TCase *life = tcase_create("lifecycle");
	TCase *cred = tcase_create("peercred");
	TCase *ctl = tcase_create("devmemctl");
	TCase *many = tcase_create("scale");

	tcase_set_timeout(conn, 30);
	tcase_add_unchecked_fixture(conn, NULL, left_teardown);
	tcase_add_test(conn, test_connect_stats);
	tcase_add_test(conn, test_connect_nobody_listens);
	tcase_add_test(conn, test_connect_env);
	tcase_add_test(conn, test_connect_default_path);
	suite_add_tcase(s, conn);

	tcase_set_timeout(regi, 30);
	tcase_add_unchecked_fixture(regi, NULL, left_teardown);
	tcase_add_test(regi, test_register_validation);
	tcase_add_test(regi, test_isolation);
	tcase_add_test(regi, test_register_hugetlb);
	tcase_add_test(regi, test_alloc_free);
	suite_add_tcase(s, regi);

	tcase_set_timeout(death, 60);
	tcase_add_unchecked_fixture(death, NULL, left_teardown);
	tcase_add_test(death, test_client_killed);
	tcase_add_test(death, test_client_killed_loop);
	suite_add_tcase(s, death);

	tcase_set_timeout(junk, 60);
	tcase_add_unchecked_fixture(junk, NULL, left_teardown);
	tcase_add_test(junk, test_garbage);
	tcase_add_test(junk, test_unattached_requests);
	tcase_add_test(junk, test_attached_bad_requests);
	tcase_add_test(junk, test_flood);
	tcase_add_test(junk, test_attach_refused_no_fd_leak);
	tcase_add_test(junk, test_attach_not_uffd);
	tcase_add_test(junk, test_busy_connection_refuses);
	suite_add_tcase(s, junk);

	tcase_set_timeout(life, 60);
	tcase_add_unchecked_fixture(life, NULL, left_teardown);
	tcase_add_test(life, test_second_daemon);
	tcase_add_test(life, test_stale_socket);
	tcase_add_test(life, test_socket_mode);
	tcase_add_test(life, test_socket_ready);
	tcase_add_test(life, test_signals);
	tcase_add_test(life, test_background);
	tcase_add_test(life, test_bad_options);
	tcase_add_test(life, test_size_suffixes);
	suite_add_tcase(s, life);

	tcase_set_timeout(cred, 30);
	tcase_add_unchecked_fixture(cred, NULL, left_teardown);
	tcase_add_test(cred, test_peercred_root_serves_nobody);
	tcase_add_test(cred, test_peercred_refuses_other_uid);
	suite_add_tcase(s, cred);

	tcase_set_timeout(ctl, 30);
	tcase_add_unchecked_fixture(ctl, NULL, left_teardown);
	tcase_add_test(ctl, test_ctl_commands);
	tcase_add_test(ctl, test_ctl_errors);
	tcase_add_test(ctl, test_ctl_extra_args);
	tcase_add_test(ctl, test_ctl_unknown_option);
	suite_add_tcase(s, ctl);

	tcase_set_timeout(many, 90);
	tcase_add_unchecked_fixture(many, NULL, left_teardown);
	tcase_add_test(many, test_many_clients);
	tcase_add_test(many, test_fd_limit);
	tcase_add_test(many, test_threads_share_connection);
	suite_add_tcase(s, many);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(daemon_suite());
	int failed;

	left = mmap(NULL, sizeof(*left), RW, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (left == MAP_FAILED)
		return EXIT_FAILURE;
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	left_teardown();
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
