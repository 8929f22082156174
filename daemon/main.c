/* SPDX-License-Identifier: MIT */
/* devmemd: the emulated device. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "copier.h"
#include "device.h"
#include "log.h"
#include "options.h"
#include "server.h"

static void on_sigusr1(int sig)
{
	/* only interrupts a resolver's read() (see fault_stop) */
}

/* Each attached client holds about five descriptors: use all we may have */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void setup_signals(void)
{
	struct sigaction sa = { .sa_handler = on_sigusr1 };
	sigset_t set;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL); /* no SA_RESTART */
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	/* SIGTERM and SIGINT arrive through a signalfd on the event loop;
	 * every thread inherits this mask */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* Fork into the background; the parent exits once the child is serving (or
 * has failed), so "devmemd && app" works. Returns the pipe to report on. */
static int daemonize(void)
{
	int pfd[2];
	pid_t pid;
	char status = 1;

	if (pipe2(pfd, O_CLOEXEC)) {
		perror("devmemd: pipe");
		exit(1);
	}
	pid = fork();
	if (pid < 0) {
		perror("devmemd: fork");
		exit(1);
	}
	if (pid > 0) {
		close(pfd[1]);
		if (read(pfd[0], &status, 1) != 1)
			status = 1;
		_exit(status);
	}
	close(pfd[0]);
	setsid();
	if (chdir("/")) {
		/* nothing depends on the working directory */
	}
	return pfd[1];
}

static void report_ready(int fd, char status)
{
	int null;

	if (fd < 0)
		return;
	null = open("/dev/null", O_RDWR);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		if (null > STDERR_FILENO)
			close(null);
	}
	if (write(fd, &status, 1) != 1) {
		/* the parent is gone: nobody to tell */
	}
	close(fd);
}

int main(int argc, char **argv)
{
	static struct device dev;
	struct dm_config cfg;
	struct server *srv;
	int ready = -1, ret;

	ret = options_parse(argc, argv, &cfg, stdout, stderr);
	if (ret == OPTIONS_EXIT)
		return 0;
	if (ret < 0)
		return 2;
	log_level = cfg.log_level;
	if (!cfg.foreground)
		ready = daemonize();
	setup_signals();
	raise_fd_limit();
	ret = device_init(&dev, &cfg);
	if (!ret)
		ret = copier_start((unsigned)dev.ncpus);
	if (!ret)
		ret = server_create(&srv, &dev, cfg.socket_path);
	if (!ret) {
		ret = server_start(srv);
		if (ret)
			server_destroy(srv);
	}
	if (ret) {
		fprintf(stderr, "devmemd: cannot start: %s\n", strerror(-ret));
		report_ready(ready, 1);
		return 1;
	}
	if (ready >= 0) {
		/* from here on, errors go to syslog */
		log_open(1);
		report_ready(ready, 0);
	}
	ret = server_run(srv);
	server_destroy(srv);
	copier_stop();
	device_destroy(&dev);
	log_info("stopped");
	return ret ? 1 : 0;
}
