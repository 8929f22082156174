/* SPDX-License-Identifier: MIT */
/*
 * devmem-bench: finding devmemd, or starting a private one for the run, and
 * asking devmemctl for the device's metadata overhead.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "common.h"

#define START_TIMEOUT_MS 15000
#define STOP_TIMEOUT_MS 5000
#define CTL_TIMEOUT_MS 10000

/* What a signal handler needs to take the private devmemd down with us */
static volatile pid_t private_pid;
static char private_socket[108], private_dir[64];

static bool executable(const char *path)
{
	struct stat st;

	return !stat(path, &st) && S_ISREG(st.st_mode) && !access(path, X_OK);
}

static bool try_tool(const char *dir, const char *name, char *out, size_t len)
{
	return (size_t)snprintf(out, len, "%s/%s", dir, name) < len &&
	       executable(out);
}

/*
 * A devmem tool that belongs with this binary: next to it, else in PATH.
 * In a build tree, libtool runs the real binary from .libs/ through a
 * wrapper script in the directory above, and the tools there are wrappers
 * too (the ones in .libs/ do not find libdevmem.so on their own): look
 * there first.  Returns 0 or -ENOENT.
 */
int find_tool(const char *name, char *out, size_t len)
{
	char exe[PATH_MAX], *slash;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	const char *path = getenv("PATH");

	if (n > 0) {
		exe[n] = '\0';
		slash = strrchr(exe, '/');
		if (slash && slash > exe) {
			*slash = '\0';
			slash = strrchr(exe, '/');
			if (slash && !strcmp(slash + 1, ".libs")) {
				*slash = '\0';
				if (try_tool(exe[0] ? exe : "/", name, out,
					     len))
					return 0;
				*slash = '/';
			}
			if (try_tool(exe, name, out, len))
				return 0;
		}
	}
	for (const char *p = path; p && *p;) {
		const char *colon = strchr(p, ':');
		size_t dlen = colon ? (size_t)(colon - p) : strlen(p);

		if (dlen &&
		    (size_t)snprintf(out, len, "%.*s/%s", (int)dlen, p, name) <
			    len &&
		    executable(out))
			return 0;
		p += dlen + (colon != NULL);
	}
	return -ENOENT;
}

static void remove_private_files(void)
{
	if (private_socket[0])
		unlink(private_socket);
	if (private_dir[0])
		rmdir(private_dir);
}

/* SIGINT/SIGTERM/SIGHUP while a private devmemd runs: stop it, remove its
 * socket and directory, then die of the signal as we would have. */
static void on_fatal_signal(int sig)
{
	if (private_pid > 0)
		kill(private_pid, SIGTERM);
	remove_private_files();
	signal(sig, SIG_DFL);
	raise(sig);
}

void daemon_cleanup_on_signal(void)
{
	struct sigaction sa = { .sa_handler = on_fatal_signal };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

/* Device memory the run needs: the largest buffer twice over (a buffer and
 * the concurrency clients' buffers never coexist, but eviction should never
 * be what we measure), at least devmemd's usual 1 GiB. */
static uint64_t private_size(const struct bench *b)
{
	uint64_t largest = 0, need;

	for (unsigned i = 0; i < b->opt.nsizes; i++)
		largest = MAX(largest, b->opt.sizes[i]);
	need = MAX((uint64_t)1 << 30, 2 * ALIGN_UP(largest, UNIT_SIZE));
	need = MAX(need, 2 * (uint64_t)b->opt.clients * CONC_MAX_SIZE);
	return ALIGN_UP(need, UNIT_SIZE);
}

static void child_exec_devmemd(const char *bin, const char *sock,
			       const char *size, pid_t parent)
{
	int null = open("/dev/null", O_RDWR);

	/* devmemd must not outlive a bench that crashes */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent)
		_exit(127);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
	}
	/* stderr stays: if devmemd cannot start, it says why */
	execl(bin, bin, "--foreground", "--socket", sock, "--size", size,
	      "--log-level", "warn", (char *)NULL);
	fprintf(stderr, BENCH_NAME ": cannot run %s: %s\n", bin,
		strerror(errno));
	_exit(127);
}

/* Wait until the new devmemd accepts a client, or exits, or takes too
 * long. */
static int wait_for_devmemd(struct bench *b)
{
	int err = -ECONNREFUSED, status;

	for (int waited = 0; waited < START_TIMEOUT_MS; waited += 20) {
		err = devmem_connect(b->dmd.socket, &b->dm);
		if (!err)
			return 0;
		if (waitpid(b->dmd.pid, &status, WNOHANG) == b->dmd.pid) {
			b->dmd.pid = private_pid = 0;
			if (WIFEXITED(status))
				fail(b,
				     "devmemd (%s) exited with status %d before accepting clients",
				     b->dmd.binary, WEXITSTATUS(status));
			else
				fail(b,
				     "devmemd (%s) died of signal %d before accepting clients",
				     b->dmd.binary, WTERMSIG(status));
			return -ECHILD;
		}
		usleep(20000);
	}
	fail(b, "devmemd (%s) did not accept clients on %s within %d s: %s",
	     b->dmd.binary, b->dmd.socket, START_TIMEOUT_MS / 1000,
	     devmem_strerror(err));
	return err;
}

static int start_private(struct bench *b)
{
	const char *tmp = getenv("TMPDIR");
	char size[32];
	pid_t self = getpid();

	if (b->opt.devmemd) {
		if (!executable(b->opt.devmemd)) {
			fail(b, "--devmemd %s: not an executable file",
			     b->opt.devmemd);
			return -ENOENT;
		}
		snprintf(b->dmd.binary, sizeof(b->dmd.binary), "%s",
			 b->opt.devmemd);
	} else if (find_tool("devmemd", b->dmd.binary, sizeof(b->dmd.binary))) {
		fail(b,
		     "no devmemd answers on %s, and no devmemd binary was found next to " BENCH_NAME
		     " or in PATH (use --devmemd PATH)",
		     b->dmd.socket);
		return -ENOENT;
	}
	/* a socket path must fit in sun_path: fall back to /tmp */
	if (!tmp || tmp[0] != '/' || strlen(tmp) > 40)
		tmp = "/tmp";
	snprintf(b->dmd.tmpdir, sizeof(b->dmd.tmpdir), "%s/devmem-bench.XXXXXX",
		 tmp);
	if (!mkdtemp(b->dmd.tmpdir)) {
		fail(b, "mkdtemp %s: %s", b->dmd.tmpdir, strerror(errno));
		b->dmd.tmpdir[0] = '\0';
		return -errno;
	}
	snprintf(b->dmd.socket, sizeof(b->dmd.socket), "%s/devmemd.sock",
		 b->dmd.tmpdir);
	snprintf(size, sizeof(size), "%lluM",
		 (unsigned long long)(private_size(b) >> 20));
	strcpy(private_dir, b->dmd.tmpdir);
	strcpy(private_socket, b->dmd.socket);
	note(b, "no devmemd is running; starting %s --size %s on %s",
	     b->dmd.binary, size, b->dmd.socket);
	fflush(NULL);
	b->dmd.pid = fork();
	if (b->dmd.pid < 0) {
		b->dmd.pid = 0;
		fail(b, "fork: %s", strerror(errno));
		return -errno;
	}
	if (b->dmd.pid == 0)
		child_exec_devmemd(b->dmd.binary, b->dmd.socket, size, self);
	private_pid = b->dmd.pid;
	b->dmd.private_daemon = true;
	return wait_for_devmemd(b);
}

int daemon_connect(struct bench *b)
{
	struct devmem_stats st;
	int err;

	err = dm_resolve_socket_path(b->opt.socket, b->dmd.socket,
				     sizeof(b->dmd.socket));
	if (err) {
		dm_fail(b, "devmemd socket path", err);
		return err;
	}
	err = devmem_connect(b->dmd.socket, &b->dm);
	if (err == -ECONNREFUSED || err == -ENOENT)
		err = start_private(b);
	else if (err)
		fail(b, "connecting to devmemd on %s: %s", b->dmd.socket,
		     devmem_strerror(err));
	if (err)
		return err;
	err = devmem_stats(b->dm, &st);
	if (err) {
		dm_fail(b, "devmem_stats", err);
		return err;
	}
	b->dmd.capacity = st.capacity;
	return 0;
}

/* Disconnect; stop the private devmemd (SIGTERM, then SIGKILL if it does
 * not go) and remove its directory. */
void daemon_stop(struct bench *b)
{
	int status;

	if (b->dm)
		devmem_disconnect(b->dm);
	b->dm = NULL;
	if (b->dmd.pid > 0) {
		pid_t got = 0;

		kill(b->dmd.pid, SIGTERM);
		for (int waited = 0; waited < STOP_TIMEOUT_MS && !got;
		     waited += 10) {
			got = waitpid(b->dmd.pid, &status, WNOHANG);
			if (!got)
				usleep(10000);
		}
		if (!got) {
			fail(b,
			     "devmemd (pid %d) did not stop on SIGTERM within %d s; killing it",
			     (int)b->dmd.pid, STOP_TIMEOUT_MS / 1000);
			kill(b->dmd.pid, SIGKILL);
			waitpid(b->dmd.pid, &status, 0);
		} else if (got > 0 && WIFSIGNALED(status)) {
			fail(b, "devmemd died of signal %d while stopping",
			     WTERMSIG(status));
		}
		b->dmd.pid = private_pid = 0;
	}
	if (b->dmd.private_daemon)
		remove_private_files();
}

/* The unsigned number after "key": in a flat JSON object */
static bool json_u64(const char *json, const char *key, uint64_t *out)
{
	char pat[64];
	const char *p;
	char *end;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(json, pat);
	if (!p)
		return false;
	p += strlen(pat);
	while (*p == ' ')
		p++;
	errno = 0;
	*out = strtoull(p, &end, 10);
	return end != p && !errno;
}

/* Run argv with its stdout into buf; stderr discarded; killed after
 * CTL_TIMEOUT_MS.  Returns its exit status, or -1. */
static int run_capture(char *const argv[], char *buf, size_t size)
{
	int pfd[2], status, null;
	size_t got = 0;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC))
		return -1;
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	if (pid == 0) {
		null = open("/dev/null", O_RDWR);
		dup2(pfd[1], STDOUT_FILENO);
		if (null >= 0) {
			dup2(null, STDIN_FILENO);
			dup2(null, STDERR_FILENO);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	close(pfd[1]);
	for (;;) {
		struct pollfd p = { pfd[0], POLLIN, 0 };
		ssize_t n;

		if (poll(&p, 1, CTL_TIMEOUT_MS) <= 0) {
			kill(pid, SIGKILL);
			break;
		}
		n = read(pfd[0], buf + got, size - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		if (got == size - 1)
			break;
	}
	buf[got] = '\0';
	close(pfd[0]);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

/* Device metadata overhead from `devmemctl --json status`. */
void read_metadata(struct bench *b)
{
	char ctl[PATH_MAX], out[8192];
	char *argv[] = { ctl,	   "--socket", b->dmd.socket,
			 "--json", "status",   NULL };
	struct metadata *m = &b->meta;
	int st;

	if (find_tool("devmemctl", ctl, sizeof(ctl))) {
		snprintf(m->note, sizeof(m->note),
			 "devmemctl not found next to " BENCH_NAME
			 " or in PATH");
		return;
	}
	st = run_capture(argv, out, sizeof(out));
	if (st != 0) {
		snprintf(m->note, sizeof(m->note),
			 "%.120s --json status failed (status %d)", ctl, st);
		return;
	}
	if (!json_u64(out, "metadata_bytes", &m->metadata_bytes) ||
	    !json_u64(out, "capacity", &m->capacity) || !m->capacity) {
		snprintf(
			m->note, sizeof(m->note),
			"%.120s --json status: no \"metadata_bytes\" or \"capacity\"",
			ctl);
		return;
	}
	m->ok = true;
}
