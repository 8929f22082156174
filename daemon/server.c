/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <errno.h>
#include <liburing.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common.h"
#include "dispatch.h"
#include "list.h"
#include "log.h"
#include "server.h"

#define MAX_QUEUED 64 /* requests waiting on one connection */
#define MIN_WORKERS 4

struct request {
	struct list_head node;
	struct dm_msg msg;
	int fds[DM_MAX_FDS];
	int nfds;
	bool disconnect;
};

struct conn {
	struct server *srv;
	struct session session;
	struct list_head node; /* server->conns */
	/* receive state: the event loop's only */
	uint8_t rbuf[DM_MAX_REQUEST];
	struct iovec iov;
	struct msghdr mh;
	_Alignas(struct cmsghdr) char ctl[CMSG_SPACE(sizeof(int) * DM_MAX_FDS)];
	/* work: under server->lock */
	struct list_head requests;
	unsigned nrequests;
	struct list_head run; /* server->runq */
	bool queued, running;
};

struct server {
	struct device *dev;
	int listen_fd, signal_fd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct io_uring ring;
	bool ring_live;
	struct __kernel_timespec retry_after; /* accept, when out of fds */
	struct signalfd_siginfo siginfo;
	bool multishot_accept;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct list_head runq; /* connections with requests and no worker */
	struct list_head conns;
	bool stopping;
	pthread_t *workers;
	int nworkers;
};

enum { TAG_ACCEPT = 1, TAG_RECV, TAG_SIGNAL, TAG_RETRY };

static void *tag(void *p, unsigned t)
{
	return (void *)((uintptr_t)p | t);
}

static struct io_uring_sqe *get_sqe(struct server *s)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);

	if (!sqe) {
		io_uring_submit(&s->ring);
		sqe = io_uring_get_sqe(&s->ring);
	}
	return sqe;
}

static void arm_accept(struct server *s)
{
	struct io_uring_sqe *sqe = get_sqe(s);

	if (s->multishot_accept)
		io_uring_prep_multishot_accept(sqe, s->listen_fd, NULL, NULL,
					       SOCK_CLOEXEC);
	else
		io_uring_prep_accept(sqe, s->listen_fd, NULL, NULL,
				     SOCK_CLOEXEC);
	io_uring_sqe_set_data(sqe, tag(NULL, TAG_ACCEPT));
}

/* Out of file descriptors (or memory): accept again a little later, rather
 * than spin on the error */
static void arm_retry(struct server *s)
{
	struct io_uring_sqe *sqe = get_sqe(s);

	s->retry_after.tv_sec = 0;
	s->retry_after.tv_nsec = 100 * 1000 * 1000;
	io_uring_prep_timeout(sqe, &s->retry_after, 0, 0);
	io_uring_sqe_set_data(sqe, tag(NULL, TAG_RETRY));
}

static void arm_signal(struct server *s)
{
	struct io_uring_sqe *sqe = get_sqe(s);

	io_uring_prep_read(sqe, s->signal_fd, &s->siginfo, sizeof(s->siginfo),
			   0);
	io_uring_sqe_set_data(sqe, tag(NULL, TAG_SIGNAL));
}

static void arm_recv(struct server *s, struct conn *c)
{
	struct io_uring_sqe *sqe = get_sqe(s);

	c->iov.iov_base = c->rbuf;
	c->iov.iov_len = sizeof(c->rbuf);
	memset(&c->mh, 0, sizeof(c->mh));
	c->mh.msg_iov = &c->iov;
	c->mh.msg_iovlen = 1;
	c->mh.msg_control = c->ctl;
	c->mh.msg_controllen = sizeof(c->ctl);
	io_uring_prep_recvmsg(sqe, c->session.fd, &c->mh, MSG_CMSG_CLOEXEC);
	io_uring_sqe_set_data(sqe, tag(c, TAG_RECV));
}

/* Queue work for a connection (lock held) */
static void enqueue(struct server *s, struct conn *c, struct request *req)
{
	list_add_tail(&req->node, &c->requests);
	c->nrequests++;
	if (!c->queued && !c->running) {
		list_add_tail(&c->run, &s->runq);
		c->queued = true;
		pthread_cond_signal(&s->cond);
	}
}

static void queue_disconnect(struct server *s, struct conn *c)
{
	struct request *req = calloc(1, sizeof(*req));

	pthread_mutex_lock(&s->lock);
	if (req) {
		req->disconnect = true;
		enqueue(s, c, req);
	}
	pthread_mutex_unlock(&s->lock);
	/* without memory the connection lingers until shutdown */
}

static int take_fds(struct msghdr *mh, int *fds)
{
	int n = 0;

	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm;
	     cm = CMSG_NXTHDR(mh, cm)) {
		int k;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		k = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (int i = 0; i < k; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int),
			       sizeof(fd));
			if (n < DM_MAX_FDS)
				fds[n++] = fd;
			else
				close(fd);
		}
	}
	return n;
}

static void on_recv(struct server *s, struct conn *c, int res)
{
	struct request *req;
	int err;

	if (res <= 0) {
		if (res < 0 && res != -ECONNRESET)
			log_debug("pid %d: receive: %s", (int)c->session.pid,
				  strerror(-res));
		queue_disconnect(s, c);
		return;
	}
	req = calloc(1, sizeof(*req));
	if (!req) {
		queue_disconnect(s, c);
		return;
	}
	req->nfds = take_fds(&c->mh, req->fds);
	if (c->mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
		err = -EMSGSIZE;
	else
		err = dm_decode(c->rbuf, (size_t)res, &req->msg);
	if (!err && dm_type_nfds(req->msg.hdr.type) != req->nfds)
		err = -EBADF;
	if (!err && c->nrequests >= MAX_QUEUED)
		err = -ENOBUFS;
	if (err) {
		log_warn(
			"pid %d: bad message (%s, %d bytes); closing the connection",
			(int)c->session.pid, strerror(-err), res);
		for (int i = 0; i < req->nfds; i++)
			close(req->fds[i]);
		dm_msg_release(&req->msg);
		free(req);
		shutdown(c->session.fd, SHUT_RDWR);
		queue_disconnect(s, c);
		return;
	}
	pthread_mutex_lock(&s->lock);
	enqueue(s, c, req);
	pthread_mutex_unlock(&s->lock);
	arm_recv(s, c);
}

static void on_accept(struct server *s, int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct timeval tv = { .tv_sec = 10 };
	int sndbuf = 2 * DM_MAX_MSG;
	struct conn *c;
	bool refused;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len)) {
		log_warn("SO_PEERCRED: %s", strerror(errno));
		close(fd);
		return;
	}
	/* a root devmemd serves every user, each in isolation; otherwise
	 * only its own user (the others hear why, then the door closes) */
	refused = cred.uid != getuid() && getuid() != 0;
	if (refused)
		log_warn("pid %d: uid %u refused (devmemd runs as uid %u)",
			 (int)cred.pid, (unsigned)cred.uid, (unsigned)getuid());
	/* a client that stops reading must not hold a worker for long */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->srv = s;
	c->session.dev = s->dev;
	c->session.fd = fd;
	c->session.pid = cred.pid;
	c->session.uid = cred.uid;
	c->session.refused = refused;
	INIT_LIST_HEAD(&c->requests);
	INIT_LIST_HEAD(&c->run);
	pthread_mutex_lock(&s->lock);
	list_add_tail(&c->node, &s->conns);
	pthread_mutex_unlock(&s->lock);
	log_debug("pid %d (uid %u) connected", (int)cred.pid,
		  (unsigned)cred.uid);
	arm_recv(s, c);
}

/* An accept that ends (single-shot, or a multishot stopped by an error):
 * take its connection and accept again, now or after a pause */
static void on_accept_end(struct server *s, int res)
{
	if (res >= 0) {
		on_accept(s, res);
		arm_accept(s);
		return;
	}
	switch (res) {
	case -EINVAL: /* no multishot accept before Linux 5.19 */
		if (s->multishot_accept) {
			s->multishot_accept = false;
			arm_accept(s);
			return;
		}
		break;
	case -EINTR:
	case -ECONNABORTED:
		arm_accept(s);
		return;
	case -EMFILE:
	case -ENFILE:
	case -ENOBUFS:
	case -ENOMEM:
		log_warn("accept: %s; accepting again in 100 ms",
			 strerror(-res));
		arm_retry(s);
		return;
	}
	log_warn("accept: %s", strerror(-res));
	arm_retry(s);
}

static void conn_free(struct server *s, struct conn *c)
{
	struct request *req, *n;

	session_end(&c->session);
	close(c->session.fd);
	pthread_mutex_lock(&s->lock);
	list_del_init(&c->node);
	pthread_mutex_unlock(&s->lock);
	list_for_each_entry_safe (req, n, &c->requests, node) {
		for (int i = 0; i < req->nfds; i++)
			close(req->fds[i]);
		dm_msg_release(&req->msg);
		free(req);
	}
	free(c);
}

static void *worker_main(void *arg)
{
	struct server *s = arg;
	uint8_t *buf = malloc(DM_MAX_MSG);

	if (!buf) {
		log_err("worker: out of memory");
		return NULL;
	}
	pthread_mutex_lock(&s->lock);
	for (;;) {
		struct request *req;
		struct conn *c;
		int err = 0;

		while (list_empty(&s->runq) && !s->stopping)
			pthread_cond_wait(&s->cond, &s->lock);
		if (s->stopping)
			break;
		c = list_first_entry(&s->runq, struct conn, run);
		list_del_init(&c->run);
		c->queued = false;
		c->running = true;
		req = list_first_entry(&c->requests, struct request, node);
		list_del_init(&req->node);
		c->nrequests--;
		pthread_mutex_unlock(&s->lock);

		if (req->disconnect) {
			log_debug("pid %d disconnected", (int)c->session.pid);
			free(req);
			conn_free(s, c); /* nothing else refers to it now */
			pthread_mutex_lock(&s->lock);
			continue;
		}
		err = session_handle(&c->session, &req->msg, req->fds,
				     req->nfds, buf);
		dm_msg_release(&req->msg);
		free(req);
		if (err) /* the loop sees the end of the stream next */
			shutdown(c->session.fd, SHUT_RDWR);

		pthread_mutex_lock(&s->lock);
		c->running = false;
		if (!list_empty(&c->requests)) {
			list_add_tail(&c->run, &s->runq);
			c->queued = true;
		}
	}
	pthread_mutex_unlock(&s->lock);
	free(buf);
	return NULL;
}

/* Is a devmemd answering at path? */
static bool socket_alive(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	bool alive;

	if (fd < 0)
		return false;
	strcpy(sa.sun_path, path);
	alive = !connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	return alive;
}

/*
 * Bind and listen under a temporary name, then rename it to path: the name
 * appears already listening, so a client that waits for the file is served
 * and a second devmemd never sees a socket that refuses (and takes it for
 * stale).  Connections wait in the backlog until the event loop runs.
 */
static int listen_at(int fd, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	mode_t old;
	int err;

	if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s.%d", path,
		     (int)getpid()) >= (int)sizeof(sa.sun_path))
		strcpy(sa.sun_path, path); /* no room: in place */
	old = umask(0177);
	err = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ? -errno : 0;
	umask(old);
	if (err) {
		log_err("cannot bind %s: %s", sa.sun_path, strerror(-err));
		return err;
	}
	chmod(sa.sun_path, 0600);
	if (listen(fd, 128) ||
	    (strcmp(sa.sun_path, path) && rename(sa.sun_path, path))) {
		err = -errno;
		log_err("cannot listen on %s: %s", path, strerror(-err));
		unlink(sa.sun_path);
		return err;
	}
	return 0;
}

int server_create(struct server **out, struct device *d, const char *path)
{
	struct server *s;
	struct stat st;
	sigset_t set;
	int err;

	if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return -ENAMETOOLONG;
	if (socket_alive(path)) {
		log_err("another devmemd is already serving %s", path);
		return -EADDRINUSE;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->dev = d;
	s->signal_fd = -1;
	strcpy(s->path, path);
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	INIT_LIST_HEAD(&s->runq);
	INIT_LIST_HEAD(&s->conns);

	s->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s->listen_fd < 0) {
		err = -errno;
		goto fail;
	}
	/* stale: nobody answered; but never remove what is not a socket */
	if (!lstat(path, &st) && !S_ISSOCK(st.st_mode)) {
		log_err("%s exists and is not a socket", path);
		err = -EEXIST;
		goto fail;
	}
	unlink(path);
	err = listen_at(s->listen_fd, path);
	if (err)
		goto fail;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	s->signal_fd = signalfd(-1, &set, SFD_CLOEXEC);
	err = io_uring_queue_init(256, &s->ring, 0);
	if (err) {
		log_err("io_uring: %s", strerror(-err));
		unlink(path);
		goto fail;
	}
	s->ring_live = true;
	*out = s;
	return 0;
fail:
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->signal_fd >= 0)
		close(s->signal_fd);
	free(s);
	return err;
}

static int start_workers(struct server *s)
{
	s->nworkers = MAX(MIN_WORKERS, 2 * s->dev->ncpus);
	s->workers = calloc((size_t)s->nworkers, sizeof(*s->workers));
	if (!s->workers)
		return -ENOMEM;
	for (int i = 0; i < s->nworkers; i++) {
		int err = pthread_create(&s->workers[i], NULL, worker_main, s);

		if (err) {
			s->nworkers = i;
			return -err;
		}
	}
	return 0;
}

static void stop(struct server *s)
{
	struct conn *c, *n;

	close(s->listen_fd);
	s->listen_fd = -1;
	unlink(s->path);
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	for (int i = 0; i < s->nworkers; i++)
		pthread_join(s->workers[i], NULL);
	/* no receive may complete into a connection after it is freed */
	io_uring_queue_exit(&s->ring);
	s->ring_live = false;
	/* every client's process lives on: leave nothing registered that
	 * nobody would answer, and make lost device pages fail loudly */
	list_for_each_entry_safe (c, n, &s->conns, node)
		conn_free(s, c);
}

int server_start(struct server *s)
{
	int err = start_workers(s);

	if (err) {
		log_err("cannot start worker threads: %s", strerror(-err));
		stop(s);
		return err;
	}
	return 0;
}

int server_run(struct server *s)
{
	s->multishot_accept = true;
	arm_accept(s);
	arm_signal(s);
	log_info("devmemd %s serving %s: %llu MiB of device memory on node %d",
		 PACKAGE_VERSION, s->path,
		 (unsigned long long)(s->dev->pool.size >> 20),
		 s->dev->pool.node);
	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		bool quit = false;

		io_uring_submit_and_wait(&s->ring, 1);
		io_uring_for_each_cqe(&s->ring, head, cqe)
		{
			uintptr_t data = (uintptr_t)io_uring_cqe_get_data(cqe);
			void *p = (void *)(data & ~(uintptr_t)7);

			seen++;
			switch (data & 7) {
			case TAG_ACCEPT:
				if (cqe->flags & IORING_CQE_F_MORE) {
					if (cqe->res >= 0)
						on_accept(s, cqe->res);
					break;
				}
				on_accept_end(s, cqe->res);
				break;
			case TAG_RETRY:
				arm_accept(s);
				break;
			case TAG_RECV:
				on_recv(s, p, cqe->res);
				break;
			case TAG_SIGNAL:
				if (cqe->res == sizeof(s->siginfo)) {
					log_info("signal %u: shutting down",
						 s->siginfo.ssi_signo);
					quit = true;
				} else {
					arm_signal(s);
				}
				break;
			}
		}
		io_uring_cq_advance(&s->ring, seen);
		if (quit)
			break;
	}
	stop(s);
	return 0;
}

void server_destroy(struct server *s)
{
	if (s->listen_fd >= 0) {
		close(s->listen_fd);
		unlink(s->path);
	}
	if (s->signal_fd >= 0)
		close(s->signal_fd);
	if (s->ring_live)
		io_uring_queue_exit(&s->ring);
	free(s->workers);
	free(s);
}
