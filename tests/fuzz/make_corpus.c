/* SPDX-License-Identifier: MIT */
/*
 * Writes the seed corpora of the protocol fuzzers:
 *   DIR/decode/    one valid message per file: every request type and every
 *                  reply type, with typical field values (tails with a few
 *                  elements), for fuzz_decode;
 *   DIR/dispatch/  valid conversations with devmemd in fuzz_dispatch's input
 *                  format (a flags byte, then records of a 2-byte LE prefix,
 *                  length | connection << 15, and a message).
 * The files are committed (tests/fuzz/corpus); regenerate them after a
 * protocol change with
 *   cc -I. -Iinclude -Ilibdevmem tests/fuzz/make_corpus.c \
 *      libdevmem/protocol.c libdevmem/common.c -o make_corpus
 *   ./make_corpus tests/fuzz/corpus
 * (or make fuzz-corpus).  Output is deterministic: same protocol, same bytes.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"
#include "devmem.h"
#include "protocol.h"

static const char *outdir;
static uint8_t msgbuf[DM_MAX_MSG];
static unsigned nfiles;

static void die(const char *what)
{
	fprintf(stderr, "make_corpus: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void write_file(const char *sub, const char *name, const void *p,
		       size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s/%s", outdir, sub, name);
	f = fopen(path, "wb");
	if (!f)
		die(path);
	if (len && fwrite(p, 1, len, f) != len)
		die(path);
	if (fclose(f))
		die(path);
	nfiles++;
}

static size_t enc(uint16_t type, uint32_t id, const void *body,
		  const void *tail, uint32_t ntail)
{
	ssize_t n =
		dm_encode(msgbuf, sizeof(msgbuf), type, id, body, tail, ntail);

	if (n < 0) {
		fprintf(stderr, "make_corpus: encoding %s%s: %s\n",
			dm_type_name(type), type & DM_REPLY ? " reply" : "",
			strerror((int)-n));
		exit(1);
	}
	return (size_t)n;
}

/* ---- decode corpus: one message per file ---- */

static void msg_file(const char *name, uint16_t type, uint32_t id,
		     const void *body, const void *tail, uint32_t ntail)
{
	size_t n = enc(type, id, body, tail, ntail);
	char fname[128];

	snprintf(fname, sizeof(fname), "%s-%s", type & DM_REPLY ? "rep" : "req",
		 name);
	write_file("decode", fname, msgbuf, n);
}

#define UNIT (2ull << 20)
#define VA 0x7f0000000000ull /* a typical 2 MB-aligned heap address */

static void decode_corpus(void)
{
	struct dm_hello hello = { DM_ROLE_CLIENT, 1, 1 };
	struct dm_hello hello_ctl = { DM_ROLE_CONTROL, 1, 1 };
	struct dm_attach attach = { .uffd_features = 0x1fe,
				    .uffd_flags = DM_UFFD_USER_MODE_ONLY,
				    .nslots = 8,
				    .nfault_slots = 4,
				    .staging = VA - 12 * UNIT };
	struct dm_range range = { VA, 4 * UNIT };
	struct dm_migrate mig = { VA, 4 * UNIT, 0, 0, 0 };
	struct dm_migrate commit = { VA, 4 * UNIT, 0, 0, 0xf };
	struct dm_migrate back = { VA, 4 * UNIT, DEVMEM_MIGRATE_4K, 8, 0 };
	struct dm_move moves[2] = { { VA, 0, 0, UNIT },
				    { VA + UNIT, 1, -EFAULT, 4096 } };
	struct dm_access access = { VA + 100, 5000, 0x5600000000ull };
	struct dm_snapshot snap = { VA, 8 };
	struct dm_inject inject = { DEVMEM_INJECT_FAIL_HUGE_ALLOC, 2 };
	struct dm_policy pol_get = { 0, 0, 0 };
	struct dm_policy pol_set = { 1, DM_POL_ON_FULL, 1 };
	struct dm_helper_move hmove = { VA - 12 * UNIT, VA, UNIT };

	struct dm_hello_reply hello_rep = { 0, 1, 7, 1ull << 30, "0.1.0" };
	struct dm_status st_ok = { 0 }, st_err = { -EPROTO };
	struct dm_begin_reply begin_rep = { 0, 4, 0xb };
	struct dm_result_reply result = { .pages = 2048,
					  .huge = 3,
					  .split = 1,
					  .faults = 0,
					  .next = VA + 4 * UNIT,
					  .units = 0x2,
					  .failed = 0x4,
					  .thp = 0x1 };
	struct dm_result_reply back_rep = {
		.nmoves = 2, .pages = 1024, .huge = 2, .next = VA + 4 * UNIT
	};
	struct dm_result_reply access_rep = { .pages = 2, .faults = 1 };
	uint8_t snap_tail[8] = { DEVMEM_PAGE_DEVICE | DEVMEM_PAGE_READ |
					 DEVMEM_PAGE_WRITE | DEVMEM_PAGE_HUGE,
				 DEVMEM_PAGE_NONE,
				 DEVMEM_PAGE_ZERO | DEVMEM_PAGE_READ,
				 DEVMEM_PAGE_READ | DEVMEM_PAGE_WRITE,
				 DEVMEM_PAGE_ERROR,
				 DEVMEM_PAGE_READ,
				 DEVMEM_PAGE_READ | DEVMEM_PAGE_HUGE,
				 DEVMEM_PAGE_DEVICE | DEVMEM_PAGE_READ };
	struct dm_stats_reply stats = { 0,
					DM_STATS_FIELDS,
					{ 1ull << 30, 8 * UNIT, 4 * UNIT, 12, 8,
					  5, 1, 3, 2 } };
	struct dm_status_reply status = {
		.pid = 4242,
		.capacity = 1ull << 30,
		.used = 8 * UNIT,
		.free_pages = 258048,
		.metadata_bytes = 3145728,
		.client_limit = 256ull << 20,
		.nr_free = { 1, 0, 1, 0, 0, 0, 0, 0, 0, 503 },
		.fragmentation = 3,
		.node = 0,
		.nclients = 2,
		.policy = { 0, 0, 1, 0 },
		.uptime_ms = 123456,
		.counters = { 12, 8, 5, 1, 3, 2 },
		.version = "0.1.0",
		.socket = "/run/user/1000/devmemd.sock",
		.topology =
			"Example CPU; 1 package, 4 cores, 8 PUs, 1 NUMA node",
		.cpus = "0-7",
	};
	struct dm_client_info clients[2] = {
		{ 1, 1234, 1000, 2, 8 * UNIT, 4 * UNIT, { 12, 8, 5, 1, 3, 2 } },
		{ 3, 1240, 1000, 0, 0, 0, { 0 } },
	};
	struct dm_policy_reply pol_rep = { 0, { 0, 1, 0, 1 } };
	struct dm_helper_reply hrep = { 0, 0, UNIT };
	struct dm_range ranges[3] = { { VA, 4 * UNIT },
				      { VA + 8 * UNIT, 4096 },
				      { VA + 16 * UNIT, UNIT } };
	struct dm_count_reply evict = { 0, 0, 5 };

	/* requests */
	msg_file("hello", DM_HELLO, 1, &hello, NULL, 0);
	msg_file("hello-control", DM_HELLO, 1, &hello_ctl, NULL, 0);
	msg_file("attach", DM_ATTACH, 2, &attach, NULL, 0);
	msg_file("register", DM_REGISTER, 3, &range, NULL, 0);
	msg_file("unregister", DM_UNREGISTER, 4, &range, NULL, 0);
	msg_file("migrate-begin", DM_MIGRATE_BEGIN, 5, &mig, NULL, 0);
	msg_file("migrate-commit", DM_MIGRATE_COMMIT, 6, &commit, NULL, 0);
	msg_file("migrate-finish", DM_MIGRATE_FINISH, 7, &commit, NULL, 0);
	msg_file("migrate-back", DM_MIGRATE_BACK, 8, &back, NULL, 0);
	msg_file("migrate-back-done", DM_MIGRATE_BACK_DONE, 9, NULL, moves, 2);
	msg_file("migrate-back-done-empty", DM_MIGRATE_BACK_DONE, 9, NULL, NULL,
		 0);
	msg_file("device-read", DM_DEVICE_READ, 10, &access, NULL, 0);
	msg_file("device-write", DM_DEVICE_WRITE, 11, &access, NULL, 0);
	msg_file("snapshot", DM_SNAPSHOT, 12, &snap, NULL, 0);
	msg_file("stats", DM_STATS, 13, NULL, NULL, 0);
	msg_file("inject", DM_INJECT, 14, &inject, NULL, 0);
	msg_file("status", DM_STATUS, 15, NULL, NULL, 0);
	msg_file("clients", DM_CLIENTS, 16, NULL, NULL, 0);
	msg_file("policy-get", DM_POLICY, 17, &pol_get, NULL, 0);
	msg_file("policy-set", DM_POLICY, 17, &pol_set, NULL, 0);
	msg_file("helper-move", DM_HELPER_MOVE, 18, &hmove, NULL, 0);
	msg_file("ranges", DM_RANGES, 19, &range, NULL, 0);
	msg_file("evict", DM_EVICT, 20, NULL, NULL, 0);

	/* replies */
	msg_file("hello", DM_HELLO | DM_REPLY, 1, &hello_rep, NULL, 0);
	msg_file("attach", DM_ATTACH | DM_REPLY, 2, &st_ok, NULL, 0);
	msg_file("register", DM_REGISTER | DM_REPLY, 3, &st_err, NULL, 0);
	msg_file("unregister", DM_UNREGISTER | DM_REPLY, 4, &st_ok, NULL, 0);
	msg_file("migrate-begin", DM_MIGRATE_BEGIN | DM_REPLY, 5, &begin_rep,
		 NULL, 0);
	msg_file("migrate-commit", DM_MIGRATE_COMMIT | DM_REPLY, 6, &result,
		 NULL, 0);
	msg_file("migrate-finish", DM_MIGRATE_FINISH | DM_REPLY, 7, &st_ok,
		 NULL, 0);
	msg_file("migrate-back", DM_MIGRATE_BACK | DM_REPLY, 8, &back_rep,
		 moves, 2);
	msg_file("migrate-back-done", DM_MIGRATE_BACK_DONE | DM_REPLY, 9,
		 &result, NULL, 0);
	msg_file("device-read", DM_DEVICE_READ | DM_REPLY, 10, &access_rep,
		 NULL, 0);
	msg_file("device-write", DM_DEVICE_WRITE | DM_REPLY, 11, &access_rep,
		 NULL, 0);
	msg_file("snapshot", DM_SNAPSHOT | DM_REPLY, 12, &st_ok, snap_tail, 8);
	msg_file("snapshot-error", DM_SNAPSHOT | DM_REPLY, 12, &st_err, NULL,
		 0);
	msg_file("stats", DM_STATS | DM_REPLY, 13, &stats, NULL, 0);
	msg_file("inject", DM_INJECT | DM_REPLY, 14, &st_ok, NULL, 0);
	msg_file("status", DM_STATUS | DM_REPLY, 15, &status, NULL, 0);
	msg_file("clients", DM_CLIENTS | DM_REPLY, 16, &st_ok, clients, 2);
	msg_file("policy", DM_POLICY | DM_REPLY, 17, &pol_rep, NULL, 0);
	msg_file("helper-move", DM_HELPER_MOVE | DM_REPLY, 18, &hrep, NULL, 0);
	msg_file("ranges", DM_RANGES | DM_REPLY, 19, &st_ok, ranges, 3);
	msg_file("evict", DM_EVICT | DM_REPLY, 20, &evict, NULL, 0);

	/* strings that fill their field: one byte away from a string without
	 * its NUL, which the decoder must refuse */
	memset(hello_rep.version, 'v', sizeof(hello_rep.version) - 1);
	msg_file("hello-long-version", DM_HELLO | DM_REPLY, 1, &hello_rep, NULL,
		 0);
	memset(status.version, 'v', sizeof(status.version) - 1);
	memset(status.socket, 's', sizeof(status.socket) - 1);
	memset(status.topology, 't', sizeof(status.topology) - 1);
	memset(status.cpus, 'c', sizeof(status.cpus) - 1);
	msg_file("status-long-strings", DM_STATUS | DM_REPLY, 15, &status, NULL,
		 0);
}

/* ---- dispatch corpus: conversations ---- */

static uint8_t seq[8192];
static size_t seqlen;
static uint32_t seqid;

static void seq_begin(uint8_t flags)
{
	seq[0] = flags;
	seqlen = 1;
	seqid = 0;
}

/* One message on connection conn (0 or 1) */
static void seq_add(unsigned conn, uint16_t type, const void *body,
		    const void *tail, uint32_t ntail)
{
	size_t n = enc(type, ++seqid, body, tail, ntail);
	uint16_t pfx = (uint16_t)(n | (size_t)conn << 15);

	if (n > 0x7fff || seqlen + 2 + n > sizeof(seq)) {
		fprintf(stderr, "make_corpus: sequence too long\n");
		exit(1);
	}
	seq[seqlen++] = (uint8_t)pfx;
	seq[seqlen++] = (uint8_t)(pfx >> 8);
	memcpy(seq + seqlen, msgbuf, n);
	seqlen += n;
}

/* Raw bytes as one record (for a message that does not decode) */
static void seq_raw(unsigned conn, const void *p, size_t n)
{
	uint16_t pfx = (uint16_t)(n | (size_t)conn << 15);

	seq[seqlen++] = (uint8_t)pfx;
	seq[seqlen++] = (uint8_t)(pfx >> 8);
	memcpy(seq + seqlen, p, n);
	seqlen += n;
}

static void seq_end(const char *name)
{
	write_file("dispatch", name, seq, seqlen);
}

static const struct dm_hello h_client = { DM_ROLE_CLIENT, 1, 1 };
static const struct dm_hello h_control = { DM_ROLE_CONTROL, 1, 1 };

/* The requests devmemd may see from a client, typical values */
static void add_requests(unsigned conn, bool client)
{
	struct dm_inject inj_huge = { DEVMEM_INJECT_FAIL_HUGE_ALLOC, 3 };
	struct dm_inject inj_any = { DEVMEM_INJECT_FAIL_ALLOC, 1 };
	struct dm_inject inj_bad = { 99, 1 };
	struct dm_policy get = { 0, 0, 0 };
	struct dm_range range = { VA, 4 * UNIT };
	struct dm_snapshot snap = { VA, 16 };

	seq_add(conn, DM_STATS, NULL, NULL, 0);
	seq_add(conn, DM_INJECT, &inj_huge, NULL, 0);
	seq_add(conn, DM_INJECT, &inj_any, NULL, 0);
	seq_add(conn, DM_INJECT, &inj_bad, NULL, 0);
	for (uint32_t k = 0; k < DM_POL_MAX; k++) {
		struct dm_policy set = { 1, k, 1 };

		seq_add(conn, DM_POLICY, &set, NULL, 0);
	}
	seq_add(conn, DM_POLICY, &get, NULL, 0);
	seq_add(conn, DM_STATUS, NULL, NULL, 0);
	seq_add(conn, DM_CLIENTS, NULL, NULL, 0);
	seq_add(conn, DM_EVICT, NULL, NULL, 0);
	if (client) {
		seq_add(conn, DM_REGISTER, &range, NULL, 0);
		seq_add(conn, DM_RANGES, &range, NULL, 0);
		seq_add(conn, DM_SNAPSHOT, &snap, NULL, 0);
	}
}

static void dispatch_corpus(void)
{
	struct dm_attach attach = { .uffd_features = 0x1fe,
				    .nslots = 8,
				    .nfault_slots = 4,
				    .staging = VA - 12 * UNIT };
	struct dm_range range = { VA, 4 * UNIT };
	struct dm_range bad_range = { VA + 1, 4096 };
	struct dm_migrate mig = { VA, 4 * UNIT, 0, 0, 0 };
	struct dm_migrate back = { VA, 4 * UNIT, 0, 8, 0 };
	struct dm_move moves[2] = { { VA, 0, 0, UNIT },
				    { VA + UNIT, 1, 0, UNIT } };
	struct dm_access access = { VA, 4096, VA + 8 * UNIT };
	struct dm_snapshot snap = { VA, 16 };
	struct dm_snapshot snap_big = { VA, DM_MAX_SNAPSHOT + 1 };
	struct dm_helper_move hmove = { VA - 12 * UNIT, VA, UNIT };
	struct dm_hello h_old = { DM_ROLE_CLIENT, 2, 3 };
	struct dm_hello h_badrole = { 7, 1, 1 };
	struct dm_stats_reply st = { 0 };
	struct dm_policy pol_bad = { 1, DM_POL_MAX, 0 };
	struct dm_policy pol_badval = { 1, DM_POL_FREE, 2 };
	struct dm_policy set_free = { 1, DM_POL_FREE, 1 };
	uint8_t junk[24];

	/* a client says hello */
	seq_begin(0);
	seq_add(0, DM_HELLO, &h_client, NULL, 0);
	seq_end("hello-client");

	/* a client, then every request it may send before ATTACH */
	seq_begin(0);
	seq_add(0, DM_HELLO, &h_client, NULL, 0);
	add_requests(0, true);
	seq_end("client-requests");

	/* devmemctl: status, stats, clients, policies, evict, inject */
	seq_begin(0);
	seq_add(0, DM_HELLO, &h_control, NULL, 0);
	add_requests(0, false);
	seq_end("control-requests");

	/* the migration and access requests of a client not attached yet:
	 * all refused (-EPROTO, -EINVAL) */
	seq_begin(0);
	seq_add(0, DM_HELLO, &h_client, NULL, 0);
	seq_add(0, DM_REGISTER, &range, NULL, 0);
	seq_add(0, DM_REGISTER, &bad_range, NULL, 0);
	seq_add(0, DM_UNREGISTER, &range, NULL, 0);
	seq_add(0, DM_MIGRATE_BEGIN, &mig, NULL, 0);
	seq_add(0, DM_MIGRATE_COMMIT, &mig, NULL, 0);
	seq_add(0, DM_MIGRATE_FINISH, &mig, NULL, 0);
	seq_add(0, DM_MIGRATE_BACK, &back, NULL, 0);
	seq_add(0, DM_MIGRATE_BACK_DONE, NULL, moves, 2);
	seq_add(0, DM_MIGRATE_BACK_DONE, NULL, NULL, 0);
	seq_add(0, DM_DEVICE_READ, &access, NULL, 0);
	seq_add(0, DM_DEVICE_WRITE, &access, NULL, 0);
	seq_add(0, DM_SNAPSHOT, &snap, NULL, 0);
	seq_add(0, DM_SNAPSHOT, &snap_big, NULL, 0);
	seq_add(0, DM_RANGES, &range, NULL, 0);
	seq_end("client-unattached");

	/* ATTACH without its fds: -EBADF, the client stays unattached */
	seq_begin(0);
	seq_add(0, DM_HELLO, &h_client, NULL, 0);
	seq_add(0, DM_ATTACH, &attach, NULL, 0);
	seq_add(0, DM_REGISTER, &range, NULL, 0);
	seq_add(0, DM_ATTACH, &attach, NULL, 0);
	seq_end("attach-nofds");

	/* two connections: a client and devmemctl looking at it */
	seq_begin(0);
	seq_add(0, DM_HELLO, &h_client, NULL, 0);
	seq_add(1, DM_HELLO, &h_control, NULL, 0);
	seq_add(1, DM_CLIENTS, NULL, NULL, 0);
	seq_add(1, DM_STATUS, NULL, NULL, 0);
	seq_add(0, DM_STATS, NULL, NULL, 0);
	seq_add(1, DM_POLICY, &set_free, NULL, 0);
	seq_add(0, DM_RANGES, &range, NULL, 0);
	seq_add(1, DM_EVICT, NULL, NULL, 0);
	seq_add(1, DM_STATS, NULL, NULL, 0);
	seq_end("client-and-control");

	/* two clients */
	seq_begin(0);
	seq_add(0, DM_HELLO, &h_client, NULL, 0);
	seq_add(1, DM_HELLO, &h_client, NULL, 0);
	seq_add(0, DM_CLIENTS, NULL, NULL, 0);
	seq_add(1, DM_STATUS, NULL, NULL, 0);
	seq_end("two-clients");

	/* another user's process: HELLO refused, connection closed; the
	 * next record reconnects */
	seq_begin(1);
	seq_add(0, DM_HELLO, &h_client, NULL, 0);
	seq_add(0, DM_HELLO, &h_control, NULL, 0);
	seq_add(1, DM_HELLO, &h_control, NULL, 0);
	seq_add(1, DM_CLIENTS, NULL, NULL, 0);
	seq_end("refused-user");

	/* protocol errors, each closing its connection */
	seq_begin(0);
	seq_add(0, DM_STATS, NULL, NULL, 0);	   /* before HELLO */
	seq_add(0, DM_HELLO, &h_old, NULL, 0);	   /* no common version */
	seq_add(0, DM_HELLO, &h_badrole, NULL, 0); /* unknown role */
	seq_add(0, DM_HELLO, &h_client, NULL, 0);
	seq_add(0, DM_HELLO, &h_client, NULL, 0); /* HELLO twice */
	seq_add(0, DM_HELLO, &h_control, NULL, 0);
	seq_add(0, DM_ATTACH, &attach, NULL, 0); /* control: not allowed */
	seq_add(0, DM_HELLO, &h_client, NULL, 0);
	seq_add(0, DM_HELPER_MOVE, &hmove, NULL, 0); /* daemon -> client only */
	seq_add(0, DM_HELLO, &h_client, NULL, 0);
	seq_add(0, DM_STATS | DM_REPLY, &st, NULL, 0); /* a reply */
	seq_end("protocol-errors");

	/* bad values that do not close the connection */
	seq_begin(0);
	seq_add(0, DM_HELLO, &h_control, NULL, 0);
	seq_add(0, DM_POLICY, &pol_bad, NULL, 0);
	seq_add(0, DM_POLICY, &pol_badval, NULL, 0);
	seq_add(0, DM_INJECT, &(struct dm_inject){ 0, 0 }, NULL, 0);
	seq_add(0, DM_STATUS, NULL, NULL, 0);
	seq_end("bad-values");

	/* a message that does not decode closes the connection; the next
	 * record reconnects */
	memset(junk, 0xa5, sizeof(junk));
	seq_begin(0);
	seq_add(0, DM_HELLO, &h_client, NULL, 0);
	seq_raw(0, junk, sizeof(junk));
	seq_add(0, DM_HELLO, &h_control, NULL, 0);
	seq_add(0, DM_STATUS, NULL, NULL, 0);
	seq_end("undecodable");

	/* one request after each kind of HELLO, for every request type */
	for (uint16_t t = DM_HELLO + 1; t < DM_TYPE_MAX; t++) {
		static const union {
			uint8_t raw[256];
		} zero;
		char name[64];

		seq_begin(0);
		seq_add(0, DM_HELLO, &h_client, NULL, 0);
		seq_add(1, DM_HELLO, &h_control, NULL, 0);
		/* a zero body: valid for every type (policy get, role 0 ...) */
		seq_add(0, t, &zero, NULL, 0);
		seq_add(1, t, &zero, NULL, 0);
		snprintf(name, sizeof(name), "one-%s", dm_type_name(t));
		seq_end(name);
	}
}

static void mkdir_p(const char *sub)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s%s%s", outdir, sub ? "/" : "",
		 sub ? sub : "");
	if (mkdir(path, 0755) && errno != EEXIST)
		die(path);
}

int main(int argc, char **argv)
{
	outdir = argc > 1 ? argv[1] : "tests/fuzz/corpus";
	mkdir_p(NULL);
	mkdir_p("decode");
	mkdir_p("dispatch");
	decode_corpus();
	dispatch_corpus();
	printf("make_corpus: %u files in %s/{decode,dispatch}\n", nfiles,
	       outdir);
	return 0;
}
