/* SPDX-License-Identifier: MIT */
/*
 * The devmem wire protocol, shared by libdevmem, devmemd and devmemctl.
 *
 * Every message is a 16-byte header followed by a body.  All integers are
 * little-endian.  A body is a fixed part (a list of 32/64-bit integers and
 * fixed-size strings, described by a field table) followed by an optional
 * tail: an array of fixed-size elements whose count is implied by the length.
 * Replies carry the request's id and type | DM_REPLY, and their fixed part
 * starts with a status (0 or a negative errno).  Decoders check every length,
 * count and enum before anything is used; see protocol.c.
 */
#ifndef DEVMEM_PROTOCOL_H
#define DEVMEM_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define DM_MAGIC 0x4d454d44u /* "DMEM" */
#define DM_PROTO_VERSION 1
#define DM_REPLY 0x8000
#define DM_HDR_SIZE 16
#define DM_MAX_MSG (1u << 17) /* header included; fits one SEQPACKET record */
#define DM_MAX_REQUEST 4096   /* largest client -> daemon message */
#define DM_MAX_FDS 2

#define DM_MAX_BATCH 64 /* 2 MB units per migration batch (one u64 bitmap) */
#define DM_MAX_SNAPSHOT 65536 /* pages per snapshot message */
#define DM_MAX_CLIENTS_LIST 1024
#define DM_MAX_RANGES_LIST 4096
#define DM_STR 128 /* fixed string fields */

struct dm_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t len; /* header + body */
	uint32_t id;
};

enum dm_type {
	DM_HELLO = 1,
	DM_ATTACH, /* fds: the process's userfaultfd, the helper socket */
	DM_REGISTER,
	DM_UNREGISTER,
	DM_MIGRATE_BEGIN,  /* to device, phase 1: claim units */
	DM_MIGRATE_COMMIT, /* to device, phase 2: copy the staged pages */
	DM_MIGRATE_FINISH, /* to device, phase 3: pages left in place dropped */
	DM_MIGRATE_BACK,   /* to system */
	DM_MIGRATE_BACK_DONE,
	DM_DEVICE_READ,
	DM_DEVICE_WRITE,
	DM_SNAPSHOT,
	DM_STATS,
	DM_INJECT,
	DM_STATUS,
	DM_CLIENTS,
	DM_POLICY,
	DM_HELPER_MOVE, /* devmemd -> the client's helper thread */
	DM_RANGES, /* the client's registered ranges (from an address on) */
	DM_EVICT,  /* bring every client's device memory back (devmemctl) */
	DM_TYPE_MAX
};

enum dm_role { DM_ROLE_CLIENT = 1, DM_ROLE_CONTROL = 2 };

/* ATTACH uffd_flags */
#define DM_UFFD_USER_MODE_ONLY (1u << 0)

/* ---- request and reply bodies (fixed parts) ---- */

struct dm_status { /* a reply with nothing but a status */
	int32_t status;
};

struct dm_hello {
	uint32_t role;
	uint32_t proto_min, proto_max;
};

struct dm_hello_reply {
	int32_t status;
	uint32_t proto;
	uint32_t client_id;
	uint64_t capacity;
	char version[DM_STR];
};

struct dm_attach {
	uint64_t uffd_features;
	uint32_t uffd_flags;
	uint32_t nslots;       /* migration staging slots, 2 MB each */
	uint32_t nfault_slots; /* slots the daemon may use for faults */
	uint64_t staging;      /* 2 MB-aligned: nslots + nfault_slots slots */
};

struct dm_range {
	uint64_t addr, len;
};

struct dm_migrate {
	uint64_t addr, len;
	uint32_t flags;	 /* DEVMEM_MIGRATE_* */
	uint32_t nslots; /* BACK: staging slots the daemon may fill */
	uint64_t units;	 /* COMMIT: bitmap of units the client moved */
};

/* BEGIN reply: which of the batch's 2 MB units the client must move out to
 * its staging slot (unit i of the batch goes to slot i). */
struct dm_begin_reply {
	int32_t status;
	uint32_t nunits;
	uint64_t units;
};

struct dm_result_reply {
	int32_t status;
	uint32_t nmoves; /* BACK: number of tail entries */
	uint64_t pages, huge, split, faults;
	uint64_t next;	 /* BACK: where the daemon stopped (== end when done) */
	uint64_t units;	 /* COMMIT: units whose pages were copied in place and
			 * must be dropped by the client before FINISH */
	uint64_t failed; /* COMMIT: units the device did not take: the client
			  * moves them back from its slots before FINISH */
	uint64_t thp;	 /* COMMIT: units whose slot holds a whole THP, worth
		       * keeping to receive data coming back */
};

/* BACK reply tail: staging slot i holds a folio that goes to dst */
struct dm_move {
	uint64_t dst;
	uint32_t slot;
	int32_t status; /* BACK_DONE: the client's result for this move */
	uint64_t moved; /* BACK_DONE: bytes moved into place */
};

struct dm_access {
	uint64_t addr, len, buf;
};

struct dm_snapshot {
	uint64_t addr, npages;
};

#define DM_STATS_FIELDS 9 /* members of struct devmem_stats, in order */
struct dm_stats_reply {
	int32_t status;
	uint32_t nfields;
	uint64_t field[DM_STATS_FIELDS];
};

struct dm_inject {
	uint32_t what, count; /* what: DEVMEM_INJECT_* or DM_INJECT_* */
};

/* devmemctl only: the next count address-space events a resolver reads
 * wait DM_SLOW_EVENT_MS before they are queued, as if the resolver had
 * been preempted (widens the windows the event ordering must close) */
#define DM_INJECT_SLOW_EVENTS 16
#define DM_SLOW_EVENT_MS 50

enum dm_policy_kind {
	DM_POL_GRANULARITY, /* auto, 4k */
	DM_POL_FAULT,	    /* folio, 4k */
	DM_POL_FREE,	    /* whole, split */
	DM_POL_ON_FULL,	    /* evict, fail */
	DM_POL_MAX
};

struct dm_policy {
	uint32_t set; /* 0: get */
	uint32_t kind, value;
};

struct dm_policy_reply {
	int32_t status;
	uint32_t value[DM_POL_MAX];
};

struct dm_status_reply {
	int32_t status;
	uint32_t pid;
	uint64_t capacity, used, free_pages, metadata_bytes;
	uint64_t client_limit; /* bytes one client may hold, 0: capacity */
	uint64_t nr_free[10];
	uint32_t fragmentation; /* per mille */
	int32_t node;
	uint32_t nclients;
	uint32_t policy[DM_POL_MAX];
	uint64_t uptime_ms;
	uint64_t counters[DM_STATS_FIELDS - 3]; /* to_device .. evictions */
	char version[DM_STR];
	char socket[DM_STR];
	char topology[DM_STR];
	char cpus[DM_STR];
};

struct dm_client_info {
	uint32_t id, pid, uid, nranges;
	uint64_t registered, used;
	uint64_t counters[DM_STATS_FIELDS - 3];
};

struct dm_count_reply {
	int32_t status;
	uint32_t pad;
	uint64_t count;
};

struct dm_helper_move {
	uint64_t src, dst, len;
};

struct dm_helper_reply {
	int32_t status;
	uint32_t pad;
	uint64_t moved;
};

/* A decoded message.  tail (if any) is heap memory owned by the message. */
struct dm_msg {
	struct dm_hdr hdr;
	union {
		struct dm_status status;
		struct dm_hello hello;
		struct dm_hello_reply hello_reply;
		struct dm_attach attach;
		struct dm_range range;
		struct dm_migrate migrate;
		struct dm_begin_reply begin_reply;
		struct dm_result_reply result_reply;
		struct dm_access access;
		struct dm_snapshot snapshot;
		struct dm_stats_reply stats_reply;
		struct dm_inject inject;
		struct dm_policy policy;
		struct dm_policy_reply policy_reply;
		struct dm_status_reply status_reply;
		struct dm_helper_move helper_move;
		struct dm_helper_reply helper_reply;
		struct dm_count_reply count_reply;
	} u;
	void *tail;
	uint32_t ntail;
};

/* Encode a message into buf (at most size bytes).  body points to the fixed
 * part's struct for this type; tail to ntail host-format elements.  Returns
 * the encoded length or a negative errno. */
ssize_t dm_encode(void *buf, size_t size, uint16_t type, uint32_t id,
		  const void *body, const void *tail, uint32_t ntail);

/* Check a header: magic, version, type, length.  Returns 0 or -EPROTO,
 * -EMSGSIZE, -EPROTONOSUPPORT. */
int dm_check_hdr(const void *buf, size_t len, struct dm_hdr *hdr);

/* Decode a whole message (header included, len bytes).  Returns 0 or a
 * negative errno; on success the caller owns out->tail (dm_msg_release). */
int dm_decode(const void *buf, size_t len, struct dm_msg *out);
void dm_msg_release(struct dm_msg *msg);

/* Number of file descriptors a message of this type carries. */
int dm_type_nfds(uint16_t type);
const char *dm_type_name(uint16_t type);

#endif /* DEVMEM_PROTOCOL_H */
