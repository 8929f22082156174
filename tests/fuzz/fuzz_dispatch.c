/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for devmemd's request dispatcher (daemon/dispatch.c):
 * session_handle() on a fake connection, against a real emulated device.
 *
 * Set-up (once, LLVMFuzzerInitialize): a struct device from device_init()
 * (16 MiB, NUMA node from the topology, default policies) and, for each of
 * two fake connections, a non-blocking SEQPACKET socketpair whose first end
 * is the session's fd.  The session's peer is this very process (pid
 * getpid(), uid getuid()), as if it had connected to itself.
 *
 * The input:
 *   byte 0       flags: bit 0 (bit 1): connection 0 (1) is another user's
 *                process, which devmemd refuses (HELLO gets -EACCES)
 *   then records, each a 2-byte little-endian prefix and a message:
 *                bits 0-14: length L of the message that follows (cut
 *                short at the end of the input), bit 15: connection 0 or 1
 * Each record goes the way devmemd's event loop (daemon/server.c) would take
 * it: longer than DM_MAX_REQUEST (the receive buffer) or not decodable, the
 * connection is closed; else session_handle() handles it and sends its
 * reply, and an error return closes the connection.  A closed connection
 * ends its session (session_end), and its next record opens a new one.  No
 * file descriptor is ever passed: ATTACH arrives without its two fds, which
 * the dispatcher must refuse by itself (the event loop would not even hand
 * it over), so no client is ever attached and nothing can touch this
 * process's memory (process_vm_*, userfaultfd) on the input's behalf.
 *
 * Checked besides "no crash, no leak, no undefined behaviour":
 *   - a handled request gets exactly one reply (at most one if the
 *     connection closes), and it decodes (dm_decode), has the request's id
 *     and type | DM_REPLY and a status that is 0 or a negative errno;
 *   - after every input, with all sessions ended, the device is back to
 *     idle: no client left on its list, no unit on its LRU, no device page
 *     allocated.
 * Policies (POLICY set) and injected failures (INJECT) are reset before each
 * input, so that a crash reproduces from its input alone.
 *
 * DEVMEM_FUZZ_LOG=error|warn|info|debug sets devmemd's log level (default
 * error: the dispatcher's warnings about bad messages are the normal case);
 * DEVMEM_FUZZ_TRACE=1 prints every record's fate (to read a reproducer).
 *
 * Build by hand (from the top of a configured tree; server.c and liburing
 * are not needed, the harness replaces the event loop):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined \
 *     -fno-sanitize-recover=undefined -I. -Iinclude -Ilibdevmem -Idaemon \
 *     $(pkg-config --cflags hwloc) tests/fuzz/fuzz_dispatch.c \
 *     libdevmem/protocol.c libdevmem/common.c daemon/access.c \
 *     daemon/buddy.c daemon/client.c daemon/copier.c daemon/device.c \
 *     daemon/dispatch.c daemon/events.c daemon/fault.c daemon/log.c \
 *     daemon/migrate.c daemon/options.c daemon/pagetable.c daemon/pool.c \
 *     daemon/procfs.c daemon/return.c daemon/topology.c daemon/uffdops.c \
 *     $(pkg-config --libs hwloc) -lnuma -pthread -o fuzz_dispatch
 * Run (the corpus copy keeps the committed seeds unchanged):
 *   cp -r tests/fuzz/corpus/dispatch /tmp/dispatch-corpus
 *   ./fuzz_dispatch -max_len=8192 -max_total_time=60 /tmp/dispatch-corpus
 * Reproduce a crash: ./fuzz_dispatch crash-<sha1>
 * Or use ./configure --enable-fuzzing CC=clang && make fuzz (tests/fuzz/README.md).
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buddy.h"
#include "client.h"
#include "common.h"
#include "device.h"
#include "dispatch.h"
#include "list.h"
#include "log.h"
#include "options.h"
#include "protocol.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NCONN 2
#define FUZZ_DEVICE_SIZE (16ull << 20)

#define CHECK(cond)                                                         \
	do {                                                                \
		if (!(cond)) {                                              \
			fprintf(stderr,                                     \
				"fuzz_dispatch: %s:%d: check failed: %s\n", \
				__FILE__, __LINE__, #cond);                 \
			abort();                                            \
		}                                                           \
	} while (0)

struct conn {
	struct session s;
	int peer; /* the "client" end of the socketpair */
	bool open;
};

static struct device dev;
static struct dm_config cfg;
static struct conn conns[NCONN];
static uint8_t *sbuf; /* session_handle's encode buffer, DM_MAX_MSG bytes */
static uint8_t *rbuf; /* replies read back */
static bool trace;    /* DEVMEM_FUZZ_TRACE set: print each request's fate */

static void fatal(const char *what, int err)
{
	fprintf(stderr, "fuzz_dispatch: %s: %s\n", what, strerror(err));
	exit(1);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *lvl = getenv("DEVMEM_FUZZ_LOG");
	int sndbuf = 2 * DM_MAX_MSG;
	int err;

	trace = getenv("DEVMEM_FUZZ_TRACE") != NULL;
	log_level = LOG_ERR;
	if (lvl && log_level_parse(lvl) >= 0)
		log_level = log_level_parse(lvl);

	memset(&cfg, 0, sizeof(cfg));
	snprintf(cfg.socket_path, sizeof(cfg.socket_path),
		 "/nonexistent/devmemd-fuzz.sock");
	cfg.size = FUZZ_DEVICE_SIZE;
	cfg.node = -1;
	cfg.foreground = true;
	cfg.log_level = log_level;
	/* policies: all 0 (auto, folio, whole, evict), devmemd's defaults */
	err = device_init(&dev, &cfg);
	if (err)
		fatal("device_init", -err);

	sbuf = malloc(DM_MAX_MSG);
	rbuf = malloc(DM_MAX_MSG);
	if (!sbuf || !rbuf)
		fatal("malloc", ENOMEM);
	for (int i = 0; i < NCONN; i++) {
		int sv[2];

		if (socketpair(AF_UNIX,
			       SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
			       sv))
			fatal("socketpair", errno);
		/* like devmemd's accepted connections: room for the largest
		 * reply; the harness drains it after each request anyway */
		setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf,
			   sizeof(sndbuf));
		conns[i].s.fd = sv[0];
		conns[i].peer = sv[1];
	}
	return 0;
}

static void conn_open(struct conn *c, bool refused)
{
	int fd = c->s.fd;

	memset(&c->s, 0, sizeof(c->s));
	c->s.dev = &dev;
	c->s.fd = fd;
	c->s.pid = getpid();
	c->s.uid = getuid();
	c->s.refused = refused;
	c->open = true;
}

static void conn_close(struct conn *c)
{
	if (!c->open)
		return;
	session_end(&c->s);
	CHECK(c->s.client == NULL);
	c->open = false;
}

/*
 * Read back what the session sent for one request (max: 1, or 0 when the
 * request was refused before any reply) and check it.
 */
static void drain_replies(struct conn *c, const struct dm_msg *req, int handled)
{
	unsigned nreplies = 0;

	for (;;) {
		struct dm_msg rep;
		ssize_t n = dm_recv(c->peer, rbuf, DM_MAX_MSG, NULL, NULL);
		int err;

		if (n == -EAGAIN)
			break;
		if (n < 0) {
			fprintf(stderr, "fuzz_dispatch: reading a reply: %s\n",
				strerror((int)-n));
			abort();
		}
		nreplies++;
		err = dm_decode(rbuf, (size_t)n, &rep);
		if (err) {
			fprintf(stderr,
				"fuzz_dispatch: the %s reply (%zd bytes) does not decode: %s\n",
				dm_type_name(req->hdr.type), n, strerror(-err));
			abort();
		}
		CHECK(rep.hdr.type == (req->hdr.type | DM_REPLY));
		CHECK(rep.hdr.id == req->hdr.id);
		/* every reply starts with its status: 0 or -errno */
		CHECK(rep.u.status.status <= 0 && rep.u.status.status > -4096);
		if (trace)
			fprintf(stderr,
				"fuzz_dispatch: conn %d: %s #%u -> %s%s\n",
				(int)(c - conns), dm_type_name(req->hdr.type),
				req->hdr.id,
				rep.u.status.status
					? strerror(-rep.u.status.status)
					: "ok",
				handled ? ", connection closed" : "");
		dm_msg_release(&rep);
	}
	CHECK(nreplies <= 1);
	if (handled == 0)
		CHECK(nreplies == 1);
	if (trace && !nreplies)
		fprintf(stderr,
			"fuzz_dispatch: conn %d: %s #%u refused, no reply, connection closed\n",
			(int)(c - conns), dm_type_name(req->hdr.type),
			req->hdr.id);
}

static void reset_device_state(void)
{
	for (unsigned k = 0; k < DM_POL_MAX; k++)
		atomic_store(&dev.policy[k], cfg.policy[k]);
	buddy_inject_fail_huge(&dev.buddy, 0);
	buddy_inject_fail_any(&dev.buddy, 0);
}

/* All sessions ended: nothing of them may be left on the device */
static void check_device_idle(void)
{
	struct buddy_info info;

	pthread_mutex_lock(&dev.clients_lock);
	CHECK(dev.nclients == 0);
	CHECK(list_empty(&dev.clients));
	pthread_mutex_unlock(&dev.clients_lock);
	pthread_mutex_lock(&dev.lru_lock);
	CHECK(list_empty(&dev.lru));
	pthread_mutex_unlock(&dev.lru_lock);
	buddy_get_info(&dev.buddy, &info);
	CHECK(info.free_pages == info.npages);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t flags;
	size_t off = 1;

	if (size < 1)
		return 0;
	flags = data[0];
	reset_device_state();
	for (int i = 0; i < NCONN; i++)
		conn_open(&conns[i], flags >> i & 1);

	while (off + 2 <= size) {
		uint16_t pfx = (uint16_t)(data[off] | data[off + 1] << 8);
		struct conn *c = &conns[pfx >> 15];
		size_t len = pfx & 0x7fff;
		struct dm_msg msg;
		int err;

		off += 2;
		if (len > size - off)
			len = size - off;
		if (!c->open) {
			conn_open(c, flags >> (c - conns) & 1);
			if (trace)
				fprintf(stderr,
					"fuzz_dispatch: conn %d: connected%s\n",
					(int)(c - conns),
					c->s.refused ? " (another user)" : "");
		}
		if (len > DM_MAX_REQUEST) {
			/* truncated by devmemd's receive: connection closed */
			if (trace)
				fprintf(stderr,
					"fuzz_dispatch: conn %d: %zu bytes: too long, connection closed\n",
					(int)(c - conns), len);
			conn_close(c);
			off += len;
			continue;
		}
		err = dm_decode(data + off, len, &msg);
		off += len;
		if (err) {
			/* a bad message closes the connection */
			if (trace)
				fprintf(stderr,
					"fuzz_dispatch: conn %d: %zu bytes do not decode (%s), connection closed\n",
					(int)(c - conns), len, strerror(-err));
			conn_close(c);
			continue;
		}
		/* never any fds (see above) */
		err = session_handle(&c->s, &msg, NULL, 0, sbuf);
		CHECK(err <= 0);
		drain_replies(c, &msg, err);
		dm_msg_release(&msg);
		if (err)
			conn_close(c);
	}

	for (int i = 0; i < NCONN; i++)
		conn_close(&conns[i]);
	check_device_idle();
	return 0;
}
