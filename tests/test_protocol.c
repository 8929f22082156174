/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the devmem wire codec (libdevmem/protocol.c) and the small
 * shared helpers of libdevmem/common.c: size and policy parsing, socket path
 * resolution and the SEQPACKET send/receive wrappers.
 *
 * The expected wire layout of every message type is described here
 * independently of protocol.c's tables (field by field, from protocol.h),
 * so a field left out of, or added to, the codec shows up as a size or
 * round-trip mismatch.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common.h"
#include "protocol.h"

/* ck_assert() records a mark point on every success, which is far too slow
 * for the hot loops below; only report failures there. */
#define REQUIRE(expr, ...)                                        \
	do {                                                      \
		if (!(expr))                                      \
			ck_abort_msg("requirement failed: " #expr \
				     " " __VA_ARGS__);            \
	} while (0)

#define NTYPES (DM_TYPE_MAX - 1) /* DM_HELLO .. DM_EVICT */
#define BIGBUF (DM_MAX_MSG + 256)

/* ---- an independent description of every body and tail ---- */

enum tf_kind { TF_U32, TF_S32, TF_U64, TF_U8, TF_STR };

struct tfield {
	const char *name;
	size_t off;
	enum tf_kind kind;
	unsigned count; /* array length, or string size */
};

#define MEMBER_SIZE(s, m) sizeof(((struct s *)0)->m)
/* clang-format off */
#define TU32(s, m) { #m, offsetof(struct s, m), TF_U32, 1 }
#define TS32(s, m) { #m, offsetof(struct s, m), TF_S32, 1 }
#define TU64(s, m) { #m, offsetof(struct s, m), TF_U64, 1 }
#define TU32N(s, m) { #m, offsetof(struct s, m), TF_U32, MEMBER_SIZE(s, m) / 4 }
#define TU64N(s, m) { #m, offsetof(struct s, m), TF_U64, MEMBER_SIZE(s, m) / 8 }
#define TSTR(s, m) { #m, offsetof(struct s, m), TF_STR, MEMBER_SIZE(s, m) }
/* clang-format on */

struct tlayout {
	const char *name;
	const struct tfield *f;
	unsigned n;
	size_t host_size;
	size_t wire_size; /* written down from protocol.h, not computed */
};

static const struct tfield t_status[] = { TS32(dm_status, status) };
static const struct tfield t_hello[] = { TU32(dm_hello, role),
					 TU32(dm_hello, proto_min),
					 TU32(dm_hello, proto_max) };
static const struct tfield t_hello_reply[] = { TS32(dm_hello_reply, status),
					       TU32(dm_hello_reply, proto),
					       TU32(dm_hello_reply, client_id),
					       TU64(dm_hello_reply, capacity),
					       TSTR(dm_hello_reply, version) };
static const struct tfield t_attach[] = { TU64(dm_attach, uffd_features),
					  TU32(dm_attach, uffd_flags),
					  TU32(dm_attach, nslots),
					  TU32(dm_attach, nfault_slots),
					  TU64(dm_attach, staging) };
static const struct tfield t_range[] = { TU64(dm_range, addr),
					 TU64(dm_range, len) };
static const struct tfield t_migrate[] = {
	TU64(dm_migrate, addr), TU64(dm_migrate, len), TU32(dm_migrate, flags),
	TU32(dm_migrate, nslots), TU64(dm_migrate, units)
};
static const struct tfield t_begin_reply[] = { TS32(dm_begin_reply, status),
					       TU32(dm_begin_reply, nunits),
					       TU64(dm_begin_reply, units) };
static const struct tfield t_result_reply[] = {
	TS32(dm_result_reply, status), TU32(dm_result_reply, nmoves),
	TU64(dm_result_reply, pages),  TU64(dm_result_reply, huge),
	TU64(dm_result_reply, split),  TU64(dm_result_reply, faults),
	TU64(dm_result_reply, next),   TU64(dm_result_reply, units),
	TU64(dm_result_reply, failed), TU64(dm_result_reply, thp)
};
static const struct tfield t_access[] = { TU64(dm_access, addr),
					  TU64(dm_access, len),
					  TU64(dm_access, buf) };
static const struct tfield t_snapshot[] = { TU64(dm_snapshot, addr),
					    TU64(dm_snapshot, npages) };
static const struct tfield t_stats_reply[] = { TS32(dm_stats_reply, status),
					       TU32(dm_stats_reply, nfields),
					       TU64N(dm_stats_reply, field) };
static const struct tfield t_inject[] = { TU32(dm_inject, what),
					  TU32(dm_inject, count) };
static const struct tfield t_policy[] = { TU32(dm_policy, set),
					  TU32(dm_policy, kind),
					  TU32(dm_policy, value) };
static const struct tfield t_policy_reply[] = { TS32(dm_policy_reply, status),
						TU32N(dm_policy_reply, value) };
static const struct tfield t_status_reply[] = {
	TS32(dm_status_reply, status),
	TU32(dm_status_reply, pid),
	TU64(dm_status_reply, capacity),
	TU64(dm_status_reply, used),
	TU64(dm_status_reply, free_pages),
	TU64(dm_status_reply, metadata_bytes),
	TU64(dm_status_reply, client_limit),
	TU64N(dm_status_reply, nr_free),
	TU32(dm_status_reply, fragmentation),
	TS32(dm_status_reply, node),
	TU32(dm_status_reply, nclients),
	TU32N(dm_status_reply, policy),
	TU64(dm_status_reply, uptime_ms),
	TU64N(dm_status_reply, counters),
	TSTR(dm_status_reply, version),
	TSTR(dm_status_reply, socket),
	TSTR(dm_status_reply, topology),
	TSTR(dm_status_reply, cpus),
};
static const struct tfield t_helper_move[] = { TU64(dm_helper_move, src),
					       TU64(dm_helper_move, dst),
					       TU64(dm_helper_move, len) };
static const struct tfield t_helper_reply[] = { TS32(dm_helper_reply, status),
						TU32(dm_helper_reply, pad),
						TU64(dm_helper_reply, moved) };
static const struct tfield t_count_reply[] = { TS32(dm_count_reply, status),
					       TU32(dm_count_reply, pad),
					       TU64(dm_count_reply, count) };
static const struct tfield t_move[] = { TU64(dm_move, dst), TU32(dm_move, slot),
					TS32(dm_move, status),
					TU64(dm_move, moved) };
static const struct tfield t_byte[] = { { "byte", 0, TF_U8, 1 } };
static const struct tfield t_client_info[] = {
	TU32(dm_client_info, id),	  TU32(dm_client_info, pid),
	TU32(dm_client_info, uid),	  TU32(dm_client_info, nranges),
	TU64(dm_client_info, registered), TU64(dm_client_info, used),
	TU64N(dm_client_info, counters)
};

/* clang-format off */
#define TL(s, f, wire) { #s, f, ARRAY_SIZE(f), sizeof(struct s), wire }
/* clang-format on */

static const struct tlayout L_none = { "none", NULL, 0, 0, 0 };
static const struct tlayout L_status = TL(dm_status, t_status, 4);
static const struct tlayout L_hello = TL(dm_hello, t_hello, 12);
static const struct tlayout L_hello_reply =
	TL(dm_hello_reply, t_hello_reply, 4 + 4 + 4 + 8 + DM_STR);
static const struct tlayout L_attach = TL(dm_attach, t_attach, 28);
static const struct tlayout L_range = TL(dm_range, t_range, 16);
static const struct tlayout L_migrate = TL(dm_migrate, t_migrate, 32);
static const struct tlayout L_begin_reply =
	TL(dm_begin_reply, t_begin_reply, 16);
static const struct tlayout L_result_reply =
	TL(dm_result_reply, t_result_reply, 8 + 8 * 8);
static const struct tlayout L_access = TL(dm_access, t_access, 24);
static const struct tlayout L_snapshot = TL(dm_snapshot, t_snapshot, 16);
static const struct tlayout L_stats_reply =
	TL(dm_stats_reply, t_stats_reply, 8 + 8 * DM_STATS_FIELDS);
static const struct tlayout L_inject = TL(dm_inject, t_inject, 8);
static const struct tlayout L_policy = TL(dm_policy, t_policy, 12);
static const struct tlayout L_policy_reply =
	TL(dm_policy_reply, t_policy_reply, 4 + 4 * DM_POL_MAX);
/* the status reply's integers, before its four strings */
#define STATUS_REPLY_NUMBERS                               \
	(8 + 5 * 8 + 10 * 8 + 3 * 4 + 4 * DM_POL_MAX + 8 + \
	 8 * (DM_STATS_FIELDS - 3))
static const struct tlayout L_status_reply =
	TL(dm_status_reply, t_status_reply, STATUS_REPLY_NUMBERS + 4 * DM_STR);
static const struct tlayout L_helper_move =
	TL(dm_helper_move, t_helper_move, 24);
static const struct tlayout L_count_reply =
	TL(dm_count_reply, t_count_reply, 16);
static const struct tlayout L_helper_reply =
	TL(dm_helper_reply, t_helper_reply, 16);
static const struct tlayout L_move = TL(dm_move, t_move, 24);
static const struct tlayout L_byte = { "byte", t_byte, 1, 1, 1 };
static const struct tlayout L_client_info =
	TL(dm_client_info, t_client_info, 4 * 4 + 2 * 8 + 8 * 6);

struct tspec {
	const struct tlayout *body;
	const struct tlayout *tail; /* NULL: no tail */
	uint32_t max_tail;
};

static const struct tspec req_spec[DM_TYPE_MAX] = {
	[DM_HELLO] = { &L_hello, NULL, 0 },
	[DM_ATTACH] = { &L_attach, NULL, 0 },
	[DM_REGISTER] = { &L_range, NULL, 0 },
	[DM_UNREGISTER] = { &L_range, NULL, 0 },
	[DM_MIGRATE_BEGIN] = { &L_migrate, NULL, 0 },
	[DM_MIGRATE_COMMIT] = { &L_migrate, NULL, 0 },
	[DM_MIGRATE_FINISH] = { &L_migrate, NULL, 0 },
	[DM_MIGRATE_BACK] = { &L_migrate, NULL, 0 },
	[DM_MIGRATE_BACK_DONE] = { &L_none, &L_move, DM_MAX_BATCH },
	[DM_DEVICE_READ] = { &L_access, NULL, 0 },
	[DM_DEVICE_WRITE] = { &L_access, NULL, 0 },
	[DM_SNAPSHOT] = { &L_snapshot, NULL, 0 },
	[DM_STATS] = { &L_none, NULL, 0 },
	[DM_INJECT] = { &L_inject, NULL, 0 },
	[DM_STATUS] = { &L_none, NULL, 0 },
	[DM_CLIENTS] = { &L_none, NULL, 0 },
	[DM_POLICY] = { &L_policy, NULL, 0 },
	[DM_HELPER_MOVE] = { &L_helper_move, NULL, 0 },
	[DM_RANGES] = { &L_range, NULL, 0 },
	[DM_EVICT] = { &L_none, NULL, 0 },
};

static const struct tspec rep_spec[DM_TYPE_MAX] = {
	[DM_HELLO] = { &L_hello_reply, NULL, 0 },
	[DM_ATTACH] = { &L_status, NULL, 0 },
	[DM_REGISTER] = { &L_status, NULL, 0 },
	[DM_UNREGISTER] = { &L_status, NULL, 0 },
	[DM_MIGRATE_BEGIN] = { &L_begin_reply, NULL, 0 },
	[DM_MIGRATE_COMMIT] = { &L_result_reply, NULL, 0 },
	[DM_MIGRATE_FINISH] = { &L_status, NULL, 0 },
	[DM_MIGRATE_BACK] = { &L_result_reply, &L_move, DM_MAX_BATCH },
	[DM_MIGRATE_BACK_DONE] = { &L_result_reply, NULL, 0 },
	[DM_DEVICE_READ] = { &L_result_reply, NULL, 0 },
	[DM_DEVICE_WRITE] = { &L_result_reply, NULL, 0 },
	[DM_SNAPSHOT] = { &L_status, &L_byte, DM_MAX_SNAPSHOT },
	[DM_STATS] = { &L_stats_reply, NULL, 0 },
	[DM_INJECT] = { &L_status, NULL, 0 },
	[DM_STATUS] = { &L_status_reply, NULL, 0 },
	[DM_CLIENTS] = { &L_status, &L_client_info, DM_MAX_CLIENTS_LIST },
	[DM_POLICY] = { &L_policy_reply, NULL, 0 },
	[DM_HELPER_MOVE] = { &L_helper_reply, NULL, 0 },
	[DM_RANGES] = { &L_status, &L_range, DM_MAX_RANGES_LIST },
	[DM_EVICT] = { &L_count_reply, NULL, 0 },
};

static const struct tspec *spec_of(uint16_t type)
{
	return type & DM_REPLY ? &rep_spec[type & ~DM_REPLY] : &req_spec[type];
}

/* Loop index -> message type: even requests, odd replies. */
static uint16_t type_of_index(int i)
{
	return (uint16_t)((i / 2 + 1) | (i % 2 ? DM_REPLY : 0));
}

static size_t tfield_wire_size(const struct tfield *f)
{
	switch (f->kind) {
	case TF_U32:
	case TF_S32:
		return 4u * f->count;
	case TF_U64:
		return 8u * f->count;
	default:
		return f->count;
	}
}

/* ---- patterns ---- */

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Distinct non-zero values with the top bit set, negative statuses,
 * full-length strings (NUL only in the last byte). */
static void fill_layout(const struct tlayout *l, void *host, uint64_t *rng)
{
	uint8_t *h = host;

	for (unsigned i = 0; i < l->n; i++) {
		const struct tfield *f = &l->f[i];

		for (unsigned k = 0; k < f->count; k++) {
			uint64_t r = splitmix64(rng);
			uint32_t v32 = (uint32_t)r | 0x80000001u;
			int32_t s32 = -(int32_t)(1 + r % 4095);
			uint64_t v64 = r | 0x8000000000000001ull;

			switch (f->kind) {
			case TF_U32:
				memcpy(h + f->off + 4 * k, &v32, 4);
				break;
			case TF_S32:
				memcpy(h + f->off + 4 * k, &s32, 4);
				break;
			case TF_U64:
				memcpy(h + f->off + 8 * k, &v64, 8);
				break;
			case TF_U8:
				h[f->off + k] = (uint8_t)r;
				break;
			case TF_STR:
				h[f->off + k] =
					k + 1 == f->count
						? 0
						: (uint8_t)(' ' + 1 + r % 94);
				break;
			}
		}
	}
}

static void fill_tail(const struct tlayout *l, void *tail, uint32_t n,
		      uint64_t *rng)
{
	for (uint32_t i = 0; i < n; i++)
		fill_layout(l, (uint8_t *)tail + (size_t)i * l->host_size, rng);
}

/* Field-by-field comparison; aborts the test naming the field. */
static void compare_layout(const struct tlayout *l, const void *want,
			   const void *got, const char *what, uint32_t elem)
{
	const uint8_t *a = want, *b = got;

	for (unsigned i = 0; i < l->n; i++) {
		const struct tfield *f = &l->f[i];
		size_t sz = f->kind == TF_U64			    ? 8
			    : f->kind == TF_STR || f->kind == TF_U8 ? 1
								    : 4;

		for (unsigned k = 0; k < f->count; k++) {
			const uint8_t *x = a + f->off + sz * k;
			const uint8_t *y = b + f->off + sz * k;

			if (memcmp(x, y, sz))
				ck_abort_msg("%s %s[%u]: field %s[%u] differs",
					     what, l->name, elem, f->name, k);
		}
	}
}

static void compare_tail(const struct tlayout *l, const void *want,
			 const void *got, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		compare_layout(l,
			       (const uint8_t *)want + (size_t)i * l->host_size,
			       (const uint8_t *)got + (size_t)i * l->host_size,
			       "tail", i);
}

static uint32_t get_le32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = v;
	p[1] = v >> 8;
	p[2] = v >> 16;
	p[3] = v >> 24;
}

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = v;
	p[1] = v >> 8;
}

/* Encode a message of this type with patterned body and ntail patterned
 * tail elements into buf; returns the length.  body/tail receive the host
 * values (tail must hold ntail elements). */
static size_t encode_pattern(uint8_t *buf, size_t size, uint16_t type,
			     uint32_t id, void *body, void *tail,
			     uint32_t ntail, uint64_t *rng)
{
	const struct tspec *sp = spec_of(type);
	ssize_t len;

	fill_layout(sp->body, body, rng);
	if (sp->tail)
		fill_tail(sp->tail, tail, ntail, rng);
	len = dm_encode(buf, size, type, id, body, tail, ntail);
	REQUIRE(len > 0, "type %#x ntail %u: %zd", type, ntail, len);
	return (size_t)len;
}

static size_t expected_len(uint16_t type, uint32_t ntail)
{
	const struct tspec *sp = spec_of(type);

	return DM_HDR_SIZE + sp->body->wire_size +
	       (sp->tail ? ntail * sp->tail->wire_size : 0);
}

/* ---- the test's own description is consistent ---- */

START_TEST(test_spec_tables)
{
	const struct tlayout *all[] = {
		&L_status,	&L_hello,	 &L_hello_reply,
		&L_attach,	&L_range,	 &L_migrate,
		&L_begin_reply, &L_result_reply, &L_access,
		&L_snapshot,	&L_stats_reply,	 &L_inject,
		&L_policy,	&L_policy_reply, &L_status_reply,
		&L_helper_move, &L_helper_reply, &L_move,
		&L_byte,	&L_client_info,
	};

	for (unsigned i = 0; i < ARRAY_SIZE(all); i++) {
		size_t n = 0;

		for (unsigned k = 0; k < all[i]->n; k++)
			n += tfield_wire_size(&all[i]->f[k]);
		ck_assert_msg(n == all[i]->wire_size, "%s: %zu != %zu",
			      all[i]->name, n, all[i]->wire_size);
	}
	for (int t = DM_HELLO; t < DM_TYPE_MAX; t++) {
		ck_assert_ptr_nonnull(req_spec[t].body);
		ck_assert_ptr_nonnull(rep_spec[t].body);
	}
}
END_TEST

/* ---- round trips ---- */

static void roundtrip(uint16_t type, uint32_t ntail, uint64_t seed)
{
	const struct tspec *sp = spec_of(type);
	union {
		struct dm_msg m; /* the union of every body */
		uint8_t raw[sizeof(struct dm_msg)];
	} body;
	uint32_t id = 0x80000000u | (uint32_t)seed * 2654435761u;
	size_t tail_host = sp->tail ? sp->tail->host_size : 1;
	void *tail = calloc(ntail ? ntail : 1, tail_host);
	uint8_t *buf = malloc(BIGBUF);
	uint64_t rng = seed;
	struct dm_msg msg;
	size_t len;
	int err;

	ck_assert_ptr_nonnull(tail);
	ck_assert_ptr_nonnull(buf);
	memset(&body, 0, sizeof(body));
	len = encode_pattern(buf, BIGBUF, type, id, &body.m.u, tail, ntail,
			     &rng);
	ck_assert_uint_eq(len, expected_len(type, ntail));
	ck_assert_uint_le(len, DM_MAX_MSG);

	/* header on the wire */
	ck_assert_uint_eq(get_le32(buf), DM_MAGIC);
	ck_assert_uint_eq(buf[4] | buf[5] << 8, DM_PROTO_VERSION);
	ck_assert_uint_eq(buf[6] | buf[7] << 8, type);
	ck_assert_uint_eq(get_le32(buf + 8), len);
	ck_assert_uint_eq(get_le32(buf + 12), id);

	memset(&msg, 0x5a, sizeof(msg));
	err = dm_decode(buf, len, &msg);
	ck_assert_msg(err == 0, "decode %s%s ntail %u: %d", dm_type_name(type),
		      type & DM_REPLY ? " reply" : "", ntail, err);
	ck_assert_uint_eq(msg.hdr.magic, DM_MAGIC);
	ck_assert_uint_eq(msg.hdr.version, DM_PROTO_VERSION);
	ck_assert_uint_eq(msg.hdr.type, type);
	ck_assert_uint_eq(msg.hdr.len, len);
	ck_assert_uint_eq(msg.hdr.id, id);
	compare_layout(sp->body, &body.m.u, &msg.u, "body", 0);
	ck_assert_uint_eq(msg.ntail, ntail);
	if (ntail) {
		ck_assert_ptr_nonnull(msg.tail);
		compare_tail(sp->tail, tail, msg.tail, ntail);
	}

	/* Re-encoding the decoded message gives the same bytes. */
	{
		uint8_t *again = malloc(BIGBUF);
		ssize_t n2;

		ck_assert_ptr_nonnull(again);
		n2 = dm_encode(again, BIGBUF, type, id, &msg.u, msg.tail,
			       msg.ntail);
		ck_assert_int_eq(n2, (ssize_t)len);
		ck_assert_mem_eq(again, buf, len);
		free(again);
	}

	dm_msg_release(&msg);
	ck_assert_ptr_null(msg.tail);
	ck_assert_uint_eq(msg.ntail, 0);
	free(buf);
	free(tail);
}

START_TEST(test_roundtrip_every_type)
{
	uint16_t type = type_of_index(_i);
	const struct tspec *sp = spec_of(type);

	roundtrip(type, 0, 1000 + _i);
	roundtrip(type, 0, 0xdeadbeef00ull + _i);
	if (sp->tail) {
		roundtrip(type, 1, 2000 + _i);
		roundtrip(type, 2, 3000 + _i);
		roundtrip(type, sp->max_tail - 1, 4000 + _i);
		roundtrip(type, sp->max_tail, 5000 + _i);
	}
}
END_TEST

/* The tails named in the brief, explicitly, at 0, 1 and max, and max + 1
 * refused. */
START_TEST(test_tail_limits)
{
	static const struct {
		uint16_t type;
		uint32_t max;
		size_t elem;
	} tails[] = {
		{ DM_MIGRATE_BACK | DM_REPLY, DM_MAX_BATCH,
		  sizeof(struct dm_move) },
		{ DM_MIGRATE_BACK_DONE, DM_MAX_BATCH, sizeof(struct dm_move) },
		{ DM_SNAPSHOT | DM_REPLY, DM_MAX_SNAPSHOT, 1 },
		{ DM_CLIENTS | DM_REPLY, DM_MAX_CLIENTS_LIST,
		  sizeof(struct dm_client_info) },
	};
	uint8_t *buf = malloc(BIGBUF);

	ck_assert_ptr_nonnull(buf);
	for (unsigned i = 0; i < ARRAY_SIZE(tails); i++) {
		uint16_t type = tails[i].type;
		uint32_t max = tails[i].max;
		void *tail = calloc(max + 1, tails[i].elem);
		struct dm_msg body;
		ssize_t n;

		ck_assert_ptr_nonnull(tail);
		ck_assert_uint_eq(spec_of(type)->max_tail, max);
		memset(&body, 0, sizeof(body));
		roundtrip(type, 0, 11 + i);
		roundtrip(type, 1, 22 + i);
		roundtrip(type, max, 33 + i);

		/* The largest message must fit DM_MAX_MSG (one record). */
		ck_assert_msg(expected_len(type, max) <= DM_MAX_MSG,
			      "%s reply with %u elements is %zu bytes > %u",
			      dm_type_name(type), max, expected_len(type, max),
			      DM_MAX_MSG);

		memset(buf, 0xa5, BIGBUF);
		n = dm_encode(buf, BIGBUF, type, 1, &body.u, tail, max + 1);
		ck_assert_int_eq(n, -EINVAL);
		n = dm_encode(buf, BIGBUF, type, 1, &body.u, tail, UINT32_MAX);
		ck_assert_int_eq(n, -EINVAL);
		/* a non-zero count without a tail array */
		n = dm_encode(buf, BIGBUF, type, 1, &body.u, NULL, 1);
		ck_assert_int_eq(n, -EINVAL);
		free(tail);
	}
	free(buf);
}
END_TEST

/* Every request fits the daemon's request buffer, even with a full tail. */
START_TEST(test_requests_fit_max_request)
{
	for (int t = DM_HELLO; t < DM_TYPE_MAX; t++) {
		const struct tspec *sp = &req_spec[t];
		size_t len = expected_len(t, sp->tail ? sp->max_tail : 0);

		ck_assert_msg(len <= DM_MAX_REQUEST, "%s: %zu > %d",
			      dm_type_name(t), len, DM_MAX_REQUEST);
	}
}
END_TEST

/* ---- exact wire layout ---- */

START_TEST(test_header_layout)
{
	static const uint8_t want[] = {
		0x44, 0x4d, 0x45, 0x4d, /* magic "DMEM" */
		0x01, 0x00,		/* version 1 */
		0x01, 0x00,		/* DM_HELLO */
		0x1c, 0x00, 0x00, 0x00, /* len 28 */
		0x44, 0x33, 0x22, 0x11, /* id */
		0x04, 0x03, 0x02, 0x01, /* role */
		0x0d, 0x0c, 0x0b, 0x0a, /* proto_min */
		0xc0, 0xd0, 0xe0, 0xf0, /* proto_max */
	};
	struct dm_hello h = { 0x01020304, 0x0a0b0c0d, 0xf0e0d0c0 };
	uint8_t buf[64];
	struct dm_hdr hdr;
	ssize_t n;

	ck_assert_mem_eq("DMEM", want, 4);
	memset(buf, 0xee, sizeof(buf));
	n = dm_encode(buf, sizeof(buf), DM_HELLO, 0x11223344, &h, NULL, 0);
	ck_assert_int_eq(n, (ssize_t)sizeof(want));
	ck_assert_mem_eq(buf, want, sizeof(want));
	ck_assert_uint_eq(buf[sizeof(want)], 0xee); /* nothing beyond len */

	memset(&hdr, 0, sizeof(hdr));
	ck_assert_int_eq(dm_check_hdr(buf, (size_t)n, &hdr), 0);
	ck_assert_uint_eq(hdr.magic, DM_MAGIC);
	ck_assert_uint_eq(hdr.version, 1);
	ck_assert_uint_eq(hdr.type, DM_HELLO);
	ck_assert_uint_eq(hdr.len, 28);
	ck_assert_uint_eq(hdr.id, 0x11223344);
	/* dm_check_hdr only needs the header */
	ck_assert_int_eq(dm_check_hdr(buf, DM_HDR_SIZE, &hdr), 0);
	ck_assert_int_eq(dm_check_hdr(buf, DM_HDR_SIZE - 1, &hdr), -EPROTO);
}
END_TEST

START_TEST(test_body_layout)
{
	/* A reply type (high bit of type), a negative status and u64s. */
	static const uint8_t want[] = {
		0x44, 0x4d, 0x45, 0x4d, 0x01, 0x00, 0x12, 0x80, /* 0x8012 */
		0x20, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, /* id */
		0xfe, 0xff, 0xff, 0xff,				/* status -2 */
		0xef, 0xbe, 0xad, 0xde,				/* pad */
		0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x81, /* moved */
	};
	struct dm_helper_reply r = { -2, 0xdeadbeef, 0x8102030405060708ull };
	uint8_t buf[64];
	struct dm_msg msg;
	ssize_t n;

	n = dm_encode(buf, sizeof(buf), DM_HELPER_MOVE | DM_REPLY, 0xffffffffu,
		      &r, NULL, 0);
	ck_assert_int_eq(n, (ssize_t)sizeof(want));
	ck_assert_mem_eq(buf, want, sizeof(want));
	ck_assert_int_eq(dm_decode(want, sizeof(want), &msg), 0);
	ck_assert_int_eq(msg.u.helper_reply.status, -2);
	ck_assert_uint_eq(msg.u.helper_reply.pad, 0xdeadbeef);
	ck_assert_uint_eq(msg.u.helper_reply.moved, 0x8102030405060708ull);
	ck_assert_uint_eq(msg.hdr.id, 0xffffffffu);
	dm_msg_release(&msg);
}
END_TEST

START_TEST(test_tail_layout)
{
	/* MIGRATE_BACK_DONE: no fixed part, one dm_move element. */
	static const uint8_t want[] = {
		0x44, 0x4d, 0x45, 0x4d, 0x01, 0x00, 0x09, 0x00, 0x28,
		0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, /* header, len 40 */
		0x00, 0x00, 0x20, 0x00, 0x00, 0x7f, 0x00, 0x00, /* dst */
		0x03, 0x00, 0x00, 0x00,				/* slot */
		0xf2, 0xff, 0xff, 0xff, /* status -EFAULT */
		0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* moved */
	};
	struct dm_move mv = { 0x7f0000200000ull, 3, -EFAULT, 4096 };
	uint8_t buf[64];
	struct dm_msg msg;
	const struct dm_move *got;
	ssize_t n;

	n = dm_encode(buf, sizeof(buf), DM_MIGRATE_BACK_DONE, 7, NULL, &mv, 1);
	ck_assert_int_eq(n, (ssize_t)sizeof(want));
	ck_assert_mem_eq(buf, want, sizeof(want));
	ck_assert_int_eq(dm_decode(want, sizeof(want), &msg), 0);
	ck_assert_uint_eq(msg.ntail, 1);
	got = msg.tail;
	ck_assert_uint_eq(got->dst, mv.dst);
	ck_assert_uint_eq(got->slot, 3);
	ck_assert_int_eq(got->status, -EFAULT);
	ck_assert_uint_eq(got->moved, 4096);
	dm_msg_release(&msg);
}
END_TEST

/* ---- truncation ---- */

static void check_prefixes(uint16_t type, uint32_t ntail, uint64_t seed)
{
	union {
		struct dm_msg m;
		uint8_t raw[sizeof(struct dm_msg)];
	} body;
	struct dm_move tail_buf[4]; /* big enough for 3 of any element */
	struct dm_client_info ci[3];
	void *tail = spec_of(type)->tail == &L_client_info ? (void *)ci
							   : (void *)tail_buf;
	uint8_t buf[2048];
	uint64_t rng = seed;
	struct dm_msg msg;
	size_t len;
	int err;

	memset(&body, 0, sizeof(body));
	len = encode_pattern(buf, sizeof(buf), type, 5, &body.m.u, tail, ntail,
			     &rng);
	for (size_t plen = 0; plen < len; plen++) {
		/* exactly sized copy, so sanitizers see any over-read */
		uint8_t *p = malloc(plen ? plen : 1);

		REQUIRE(p != NULL);
		memcpy(p, buf, plen);
		memset(&msg, 0, sizeof(msg));
		err = dm_decode(p, plen, &msg);
		REQUIRE(err < 0, "type %#x ntail %u prefix %zu/%zu: %d", type,
			ntail, plen, len, err);
		REQUIRE(msg.tail == NULL, "type %#x: tail left after failure",
			type);
		free(p);
	}

	/* the exact length still decodes */
	{
		uint8_t *p = malloc(len);

		ck_assert_ptr_nonnull(p);
		memcpy(p, buf, len);
		ck_assert_int_eq(dm_decode(p, len, &msg), 0);
		dm_msg_release(&msg);
		free(p);
	}

	/* len != hdr.len */
	buf[len] = 0;
	ck_assert_int_eq(dm_decode(buf, len + 1, &msg), -EPROTO);
	put_le32(buf + 8, (uint32_t)len + 1);
	ck_assert_int_lt(dm_decode(buf, len, &msg), 0);
	put_le32(buf + 8, (uint32_t)len - 1);
	ck_assert_int_lt(dm_decode(buf, len, &msg), 0);
	ck_assert_ptr_null(msg.tail);
}

START_TEST(test_truncation)
{
	uint16_t type = type_of_index(_i);

	check_prefixes(type, 0, 77 + _i);
	if (spec_of(type)->tail) {
		check_prefixes(type, 1, 88 + _i);
		check_prefixes(type, 3, 99 + _i);
	}
}
END_TEST

/* ---- corrupted headers and bodies ---- */

static size_t valid_msg(uint8_t *buf, size_t size, uint16_t type,
			uint32_t ntail)
{
	union {
		struct dm_msg m;
		uint8_t raw[sizeof(struct dm_msg)];
	} body;
	static struct dm_client_info tail[DM_MAX_CLIENTS_LIST + 1];
	uint64_t rng = type * 31 + ntail;

	memset(&body, 0, sizeof(body));
	return encode_pattern(buf, size, type, 42, &body.m.u, tail, ntail,
			      &rng);
}

START_TEST(test_bad_magic_version_type)
{
	static const uint16_t bad_types[] = {
		0,
		DM_TYPE_MAX,
		0x7fff,
		DM_REPLY,
		DM_REPLY | DM_TYPE_MAX,
		0xffff,
		DM_TYPE_MAX + 1,
	};
	static const uint16_t bad_versions[] = { 0, 2, 0x0100, 0xffff };
	uint8_t buf[256];
	struct dm_msg msg;
	struct dm_hdr hdr;
	size_t len = valid_msg(buf, sizeof(buf), DM_REGISTER, 0);

	ck_assert_int_eq(dm_decode(buf, len, &msg), 0);

	/* magic, one byte at a time, and byte-swapped */
	for (int i = 0; i < 4; i++) {
		buf[i] ^= 0x20;
		ck_assert_int_eq(dm_check_hdr(buf, len, &hdr), -EPROTO);
		ck_assert_int_eq(dm_decode(buf, len, &msg), -EPROTO);
		buf[i] ^= 0x20;
	}
	put_le32(buf, 0x444d454d);
	ck_assert_int_eq(dm_decode(buf, len, &msg), -EPROTO);
	put_le32(buf, DM_MAGIC);

	for (unsigned i = 0; i < ARRAY_SIZE(bad_versions); i++) {
		put_le16(buf + 4, bad_versions[i]);
		ck_assert_int_eq(dm_check_hdr(buf, len, &hdr),
				 -EPROTONOSUPPORT);
		ck_assert_int_eq(dm_decode(buf, len, &msg), -EPROTONOSUPPORT);
	}
	put_le16(buf + 4, DM_PROTO_VERSION);

	for (unsigned i = 0; i < ARRAY_SIZE(bad_types); i++) {
		put_le16(buf + 6, bad_types[i]);
		ck_assert_msg(dm_check_hdr(buf, len, &hdr) == -EPROTO,
			      "type %#x accepted", bad_types[i]);
		ck_assert_int_eq(dm_decode(buf, len, &msg), -EPROTO);
	}
	put_le16(buf + 6, DM_REGISTER);
	ck_assert_int_eq(dm_decode(buf, len, &msg), 0);
}
END_TEST

START_TEST(test_bad_hdr_len)
{
	static const uint32_t bad[] = { 0,
					1,
					DM_HDR_SIZE - 1,
					DM_MAX_MSG + 1,
					DM_MAX_MSG * 2,
					0x7fffffff,
					0xffffffff };
	uint8_t buf[64];
	struct dm_msg msg;
	struct dm_hdr hdr;
	size_t len = valid_msg(buf, sizeof(buf), DM_STATS, 0);

	ck_assert_uint_eq(len, DM_HDR_SIZE);
	ck_assert_int_eq(dm_decode(buf, len, &msg), 0);
	for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
		put_le32(buf + 8, bad[i]);
		ck_assert_msg(dm_check_hdr(buf, len, &hdr) == -EMSGSIZE,
			      "len %u", bad[i]);
		ck_assert_int_eq(dm_decode(buf, len, &msg), -EMSGSIZE);
	}
	/* the largest allowed length passes the header check */
	put_le32(buf + 8, DM_MAX_MSG);
	ck_assert_int_eq(dm_check_hdr(buf, len, &hdr), 0);
	ck_assert_uint_eq(hdr.len, DM_MAX_MSG);
}
END_TEST

/* A consistent header whose body is one byte short or long. */
START_TEST(test_bad_body_len)
{
	uint16_t type = type_of_index(_i);
	const struct tspec *sp = spec_of(type);
	uint8_t buf[1024];
	struct dm_msg msg;
	size_t len = valid_msg(buf, sizeof(buf), type, 0);

	/* one byte more: only a type with 1-byte elements may accept it */
	buf[len] = 0x33;
	put_le32(buf + 8, (uint32_t)len + 1);
	if (sp->tail && sp->tail->wire_size == 1) {
		ck_assert_int_eq(dm_decode(buf, len + 1, &msg), 0);
		ck_assert_uint_eq(msg.ntail, 1);
		ck_assert_uint_eq(*(uint8_t *)msg.tail, 0x33);
		dm_msg_release(&msg);
	} else {
		ck_assert_int_eq(dm_decode(buf, len + 1, &msg), -EPROTO);
		ck_assert_ptr_null(msg.tail);
	}
	/* 8 bytes more (a whole number of u64s, but no field) */
	if (!sp->tail) {
		memset(buf + len, 0, 8);
		put_le32(buf + 8, (uint32_t)len + 8);
		ck_assert_int_eq(dm_decode(buf, len + 8, &msg), -EPROTO);
	}
	/* one byte less */
	if (sp->body->wire_size) {
		put_le32(buf + 8, (uint32_t)len - 1);
		ck_assert_int_eq(dm_decode(buf, len - 1, &msg), -EPROTO);
	}
}
END_TEST

START_TEST(test_bad_tail_len)
{
	static const uint16_t types[] = { DM_MIGRATE_BACK | DM_REPLY,
					  DM_MIGRATE_BACK_DONE,
					  DM_CLIENTS | DM_REPLY };
	uint8_t *buf = malloc(BIGBUF);
	struct dm_msg msg;

	ck_assert_ptr_nonnull(buf);
	for (unsigned i = 0; i < ARRAY_SIZE(types); i++) {
		const struct tspec *sp = spec_of(types[i]);
		size_t elem = sp->tail->wire_size;
		size_t len = valid_msg(buf, BIGBUF, types[i], 2);

		/* not a whole number of elements */
		for (size_t d = 1; d < elem; d++) {
			memset(buf + len, 0, d);
			put_le32(buf + 8, (uint32_t)(len + d));
			ck_assert_int_eq(dm_decode(buf, len + d, &msg),
					 -EPROTO);
			ck_assert_ptr_null(msg.tail);
			put_le32(buf + 8, (uint32_t)(len - d));
			ck_assert_int_eq(dm_decode(buf, len - d, &msg),
					 -EPROTO);
		}
	}
	free(buf);
}
END_TEST

/* Over the element limit: build max + 1 elements by hand. */
START_TEST(test_tail_over_limit)
{
	static const uint16_t types[] = { DM_MIGRATE_BACK | DM_REPLY,
					  DM_MIGRATE_BACK_DONE,
					  DM_SNAPSHOT | DM_REPLY,
					  DM_CLIENTS | DM_REPLY };
	uint8_t *buf = malloc(BIGBUF);
	struct dm_msg msg;

	ck_assert_ptr_nonnull(buf);
	for (unsigned i = 0; i < ARRAY_SIZE(types); i++) {
		const struct tspec *sp = spec_of(types[i]);
		size_t elem = sp->tail->wire_size;
		size_t len = valid_msg(buf, BIGBUF, types[i], sp->max_tail);

		ck_assert_int_eq(dm_decode(buf, len, &msg), 0);
		ck_assert_uint_eq(msg.ntail, sp->max_tail);
		dm_msg_release(&msg);

		ck_assert_uint_le(len + elem, DM_MAX_MSG);
		memcpy(buf + len, buf + len - elem, elem);
		put_le32(buf + 8, (uint32_t)(len + elem));
		ck_assert_int_eq(dm_decode(buf, len + elem, &msg), -EPROTO);
		ck_assert_ptr_null(msg.tail);
	}
	free(buf);
}
END_TEST

/* Every string field must hold a NUL somewhere in its DM_STR bytes. */
START_TEST(test_string_without_nul)
{
	static const struct {
		uint16_t type;
		size_t off; /* of the first string, after the header */
		int nstr;
	} strs[] = {
		{ DM_HELLO | DM_REPLY, 4 + 4 + 4 + 8, 1 },
		{ DM_STATUS | DM_REPLY, STATUS_REPLY_NUMBERS, 4 },
	};
	uint8_t buf[1024];
	struct dm_msg msg;

	for (unsigned i = 0; i < ARRAY_SIZE(strs); i++) {
		size_t len = valid_msg(buf, sizeof(buf), strs[i].type, 0);

		for (int s = 0; s < strs[i].nstr; s++) {
			uint8_t *str = buf + DM_HDR_SIZE + strs[i].off +
				       (size_t)s * DM_STR;
			uint8_t orig[DM_STR];

			/* the pattern put the only NUL in the last byte */
			ck_assert_uint_eq(str[DM_STR - 1], 0);
			ck_assert_ptr_null(memchr(str, 0, DM_STR - 1));
			memcpy(orig, str, DM_STR);
			str[DM_STR - 1] = 'x';
			ck_assert_msg(dm_decode(buf, len, &msg) == -EPROTO,
				      "%s reply string %d without NUL accepted",
				      dm_type_name(strs[i].type), s);
			/* a NUL anywhere is enough; the bytes after it are kept */
			str[0] = 0;
			ck_assert_int_eq(dm_decode(buf, len, &msg), 0);
			if (strs[i].type == (DM_HELLO | DM_REPLY)) {
				ck_assert_mem_eq(msg.u.hello_reply.version, str,
						 DM_STR);
			} else {
				const char *const st[] = {
					msg.u.status_reply.version,
					msg.u.status_reply.socket,
					msg.u.status_reply.topology,
					msg.u.status_reply.cpus,
				};

				ck_assert_mem_eq(st[s], str, DM_STR);
			}
			memcpy(str, orig, DM_STR);
			ck_assert_int_eq(dm_decode(buf, len, &msg), 0);
		}
	}
}
END_TEST

/* ---- randomized corruption ---- */

START_TEST(test_random_corruption)
{
	static struct dm_client_info tail[DM_MAX_CLIENTS_LIST];
	uint8_t *buf = malloc(BIGBUF), *again = malloc(BIGBUF);
	uint64_t rng = 0x5eed0000cafef00dull;
	unsigned nok = 0, nfail = 0, nmutated_ok = 0;

	ck_assert_ptr_nonnull(buf);
	ck_assert_ptr_nonnull(again);
	for (int iter = 0; iter < 100000; iter++) {
		uint16_t type =
			type_of_index((int)(splitmix64(&rng) % (2 * NTYPES)));
		const struct tspec *sp = spec_of(type);
		union {
			struct dm_msg m;
			uint8_t raw[sizeof(struct dm_msg)];
		} body;
		uint32_t ntail = 0;
		size_t len, nlen;
		uint8_t *p;
		struct dm_msg msg;
		ssize_t n2;
		int op, err, changed = 1;

		if (sp->tail)
			ntail = splitmix64(&rng) % 64 == 0
					? sp->max_tail
					: (uint32_t)(splitmix64(&rng) % 5);
		memset(&body, 0, sizeof(body));
		len = encode_pattern(buf, BIGBUF, type,
				     (uint32_t)splitmix64(&rng), &body.m.u,
				     tail, ntail, &rng);
		nlen = len;
		op = (int)(splitmix64(&rng) % 8);
		switch (op) {
		case 0: /* flip random bytes anywhere */
		case 1: {
			int k = 1 + (int)(splitmix64(&rng) % 8);

			while (k--) {
				size_t at = splitmix64(&rng) % len;

				buf[at] ^=
					(uint8_t)(1 + splitmix64(&rng) % 255);
			}
			break;
		}
		case 2: /* flip bytes in the header only */
			buf[splitmix64(&rng) % DM_HDR_SIZE] ^=
				(uint8_t)(1 + splitmix64(&rng) % 255);
			break;
		case 3: /* truncate, sometimes fixing hdr.len */
			nlen = splitmix64(&rng) % len;
			if (nlen >= DM_HDR_SIZE && splitmix64(&rng) % 2)
				put_le32(buf + 8, (uint32_t)nlen);
			break;
		case 4: /* extend with random bytes, sometimes fixing len */
			nlen = len + 1 + splitmix64(&rng) % 200;
			for (size_t i = len; i < nlen; i++)
				buf[i] = (uint8_t)splitmix64(&rng);
			if (splitmix64(&rng) % 2)
				put_le32(buf + 8, (uint32_t)nlen);
			break;
		case 5: /* another type, same bytes */
			put_le16(buf + 6, (uint16_t)splitmix64(&rng));
			break;
		case 6: /* a random hdr.len */
			put_le32(buf + 8, (uint32_t)splitmix64(&rng));
			break;
		default: /* a random byte of a string or body value */
			if (len > DM_HDR_SIZE)
				buf[DM_HDR_SIZE +
				    splitmix64(&rng) % (len - DM_HDR_SIZE)] =
					(uint8_t)splitmix64(&rng);
			else
				changed = 0;
			break;
		}

		p = malloc(nlen ? nlen : 1); /* exact size for sanitizers */
		REQUIRE(p != NULL);
		memcpy(p, buf, nlen);
		err = dm_decode(p, nlen, &msg);
		if (err) {
			REQUIRE(err < 0);
			REQUIRE(msg.tail == NULL, "tail kept on error %d", err);
			nfail++;
			free(p);
			continue;
		}
		nok++;
		nmutated_ok += changed;
		REQUIRE(msg.hdr.len == nlen);
		n2 = dm_encode(again, BIGBUF, msg.hdr.type, msg.hdr.id, &msg.u,
			       msg.tail, msg.ntail);
		REQUIRE(n2 == (ssize_t)nlen,
			"iter %d op %d type %#x: re-encoded %zd, was %zu", iter,
			op, msg.hdr.type, n2, nlen);
		/* every wire byte maps to a host byte: identical encoding */
		REQUIRE(memcmp(again, p, nlen) == 0, "iter %d op %d type %#x",
			iter, op, msg.hdr.type);
		dm_msg_release(&msg);
		free(p);
	}
	/* the loop exercised both outcomes */
	ck_assert_uint_gt(nok, 1000);
	ck_assert_uint_gt(nfail, 1000);
	ck_assert_uint_gt(nmutated_ok, 100);
	free(buf);
	free(again);
}
END_TEST

/* ---- dm_encode errors ---- */

START_TEST(test_encode_errors)
{
	static const uint16_t bad_types[] = {
		0, DM_TYPE_MAX, 0x7fff, DM_REPLY, DM_REPLY | DM_TYPE_MAX, 0xffff
	};
	struct dm_msg body;
	struct dm_move mv[2];
	uint8_t buf[1024];

	memset(&body, 0, sizeof(body));
	memset(mv, 0, sizeof(mv));
	for (unsigned i = 0; i < ARRAY_SIZE(bad_types); i++)
		ck_assert_int_eq(dm_encode(buf, sizeof(buf), bad_types[i], 1,
					   &body.u, NULL, 0),
				 -EINVAL);

	/* a tail on types that have none */
	for (int i = 0; i < 2 * NTYPES; i++) {
		uint16_t type = type_of_index(i);

		if (spec_of(type)->tail)
			continue;
		ck_assert_msg(dm_encode(buf, sizeof(buf), type, 1, &body.u, mv,
					1) == -EINVAL,
			      "%s%s took a tail", dm_type_name(type),
			      type & DM_REPLY ? " reply" : "");
	}

	/* buffer too small: every size below the length; nothing written
	 * beyond the given size */
	for (int i = 0; i < 2 * NTYPES; i++) {
		uint16_t type = type_of_index(i);
		uint32_t nt = spec_of(type)->tail ? 2 : 0;
		size_t len = expected_len(type, nt);
		struct dm_client_info ci[2];

		memset(ci, 0, sizeof(ci));
		for (size_t size = 0; size < len; size++) {
			ssize_t n;

			memset(buf, 0xa5, sizeof(buf));
			n = dm_encode(buf, size, type, 1, &body.u, ci, nt);
			REQUIRE(n == -ENOBUFS, "type %#x size %zu: %zd", type,
				size, n);
			for (size_t k = size; k < sizeof(buf); k++)
				REQUIRE(buf[k] == 0xa5, "type %#x size %zu",
					type, size);
		}
		ck_assert_int_eq(dm_encode(buf, len, type, 1, &body.u, ci, nt),
				 (ssize_t)len);
	}
}
END_TEST

/* ---- type helpers ---- */

START_TEST(test_type_nfds_and_names)
{
	static const char *const names[DM_TYPE_MAX] = {
		[DM_HELLO] = "hello",
		[DM_ATTACH] = "attach",
		[DM_REGISTER] = "register",
		[DM_UNREGISTER] = "unregister",
		[DM_MIGRATE_BEGIN] = "migrate-begin",
		[DM_MIGRATE_COMMIT] = "migrate-commit",
		[DM_MIGRATE_FINISH] = "migrate-finish",
		[DM_MIGRATE_BACK] = "migrate-back",
		[DM_MIGRATE_BACK_DONE] = "migrate-back-done",
		[DM_DEVICE_READ] = "device-read",
		[DM_DEVICE_WRITE] = "device-write",
		[DM_SNAPSHOT] = "snapshot",
		[DM_STATS] = "stats",
		[DM_INJECT] = "inject",
		[DM_STATUS] = "status",
		[DM_CLIENTS] = "clients",
		[DM_POLICY] = "policy",
		[DM_HELPER_MOVE] = "helper-move",
		[DM_RANGES] = "ranges",
		[DM_EVICT] = "evict",
	};
	static const uint16_t bad_types[] = {
		0, DM_TYPE_MAX, 0x7fff, DM_REPLY, DM_REPLY | DM_TYPE_MAX, 0xffff
	};

	for (int t = DM_HELLO; t < DM_TYPE_MAX; t++) {
		ck_assert_int_eq(dm_type_nfds(t), t == DM_ATTACH ? 2 : 0);
		ck_assert_int_eq(dm_type_nfds(t | DM_REPLY), 0);
		ck_assert_str_eq(dm_type_name(t), names[t]);
		ck_assert_str_eq(dm_type_name(t | DM_REPLY), names[t]);
	}
	ck_assert_int_le(dm_type_nfds(DM_ATTACH), DM_MAX_FDS);
	for (unsigned i = 0; i < ARRAY_SIZE(bad_types); i++) {
		ck_assert_int_eq(dm_type_nfds(bad_types[i]), 0);
		ck_assert_str_eq(dm_type_name(bad_types[i]), "unknown");
	}
}
END_TEST

/* ---- common.c: sizes ---- */

START_TEST(test_parse_size)
{
	static const struct {
		const char *s;
		uint64_t v;
	} good[] = {
		{ "0", 0 },
		{ "4096", 4096 },
		{ "64K", 64ull << 10 },
		{ "64k", 64ull << 10 },
		{ "512M", 512ull << 20 },
		{ "512m", 512ull << 20 },
		{ "1G", 1ull << 30 },
		{ "2T", 2ull << 40 },
		{ "1GiB", 1ull << 30 },
		{ "1gib", 1ull << 30 },
		{ "1GB", 1ull << 30 },
		{ "64KiB", 64ull << 10 },
		{ "4096B", 4096 },
		{ "4096b", 4096 },
		{ "18446744073709551615", UINT64_MAX },
		{ "17179869183G", 17179869183ull << 30 },
		{ "16777215T", 16777215ull << 40 },
	};
	static const char *const bad[] = {
		"",
		"G",
		"K",
		"B",
		"-1",
		"+1",
		" 1",
		"1 ",
		"1 G",
		"12X",
		"1.5G",
		"0x10",
		"1Gi",
		"1GiBx",
		"1BB",
		"1iB",
		"1KK",
		"1E",
		"99999999999999999999",
		"18446744073709551616",
		"17179869184G",
		"16777216T",
		"18446744073709551615K",
	};

	for (unsigned i = 0; i < ARRAY_SIZE(good); i++) {
		uint64_t v = 0x1234;

		ck_assert_msg(dm_parse_size(good[i].s, &v) == 0, "'%s' refused",
			      good[i].s);
		ck_assert_msg(v == good[i].v, "'%s' -> %llu, want %llu",
			      good[i].s, (unsigned long long)v,
			      (unsigned long long)good[i].v);
	}
	for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
		uint64_t v = 0x1234;

		ck_assert_msg(dm_parse_size(bad[i], &v) == -EINVAL,
			      "'%s' accepted (%llu)", bad[i],
			      (unsigned long long)v);
	}
	{
		uint64_t v;

		ck_assert_int_eq(dm_parse_size(NULL, &v), -EINVAL);
	}
}
END_TEST

/* ---- common.c: policies ---- */

START_TEST(test_policy_names)
{
	static const char *const kinds[DM_POL_MAX] = { "granularity",
						       "fault-granularity",
						       "free", "on-full" };
	static const char *const values[DM_POL_MAX][2] = {
		{ "auto", "4k" },
		{ "folio", "4k" },
		{ "whole", "split" },
		{ "evict", "fail" },
	};

	for (unsigned k = 0; k < DM_POL_MAX; k++) {
		ck_assert_str_eq(dm_policy_kind_name(k), kinds[k]);
		ck_assert_int_eq(dm_policy_kind_parse(kinds[k]), (int)k);
		for (unsigned v = 0; v < 2; v++) {
			ck_assert_str_eq(dm_policy_value_name(k, v),
					 values[k][v]);
			ck_assert_int_eq(dm_policy_parse(k, values[k][v]),
					 (int)v);
		}
		ck_assert_str_eq(dm_policy_value_name(k, 2), "?");
		ck_assert_str_eq(dm_policy_value_name(k, ~0u), "?");
		ck_assert_int_eq(dm_policy_parse(k, ""), -EINVAL);
		ck_assert_int_eq(dm_policy_parse(k, "bogus"), -EINVAL);
		ck_assert_int_eq(dm_policy_parse(k, NULL), -EINVAL);
		/* names are exact: no case folding, no prefixes */
		ck_assert_int_eq(dm_policy_parse(k, k ? "4K" : "AUTO"),
				 -EINVAL);
		ck_assert_int_eq(dm_policy_parse(k, "4"), -EINVAL);
		ck_assert_int_eq(dm_policy_parse(k, "4kb"), -EINVAL);
	}
	/* a value of another kind */
	ck_assert_int_eq(dm_policy_parse(DM_POL_GRANULARITY, "split"), -EINVAL);
	ck_assert_int_eq(dm_policy_parse(DM_POL_FAULT, "auto"), -EINVAL);
	ck_assert_int_eq(dm_policy_parse(DM_POL_FREE, "4k"), -EINVAL);
	ck_assert_int_eq(dm_policy_parse(DM_POL_ON_FULL, "whole"), -EINVAL);
	/* bad kinds */
	ck_assert_int_eq(dm_policy_parse(DM_POL_MAX, "auto"), -EINVAL);
	ck_assert_int_eq(dm_policy_parse(~0u, "auto"), -EINVAL);
	ck_assert_str_eq(dm_policy_kind_name(DM_POL_MAX), "?");
	ck_assert_str_eq(dm_policy_kind_name(~0u), "?");
	ck_assert_str_eq(dm_policy_value_name(DM_POL_MAX, 0), "?");
	ck_assert_int_eq(dm_policy_kind_parse("bogus"), -EINVAL);
	ck_assert_int_eq(dm_policy_kind_parse(""), -EINVAL);
	ck_assert_int_eq(dm_policy_kind_parse(NULL), -EINVAL);
	ck_assert_int_eq(dm_policy_kind_parse("gran"), -EINVAL);
	ck_assert_int_eq(dm_policy_kind_parse("auto"), -EINVAL);
}
END_TEST

/* ---- common.c: socket paths ---- */

static void tmp_path(char *buf, size_t size)
{
	snprintf(buf, size, "/tmp/devmemd-%u.sock", (unsigned)getuid());
}

START_TEST(test_default_socket_path)
{
	char buf[256], want[256];

	unsetenv("DEVMEM_SOCKET");
	setenv("XDG_RUNTIME_DIR", "/run/user/4242", 1);
	ck_assert_int_eq(dm_default_socket_path(buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/run/user/4242/devmemd.sock");

	/* exactly fitting, and one byte short */
	ck_assert_int_eq(
		dm_default_socket_path(
			buf, strlen("/run/user/4242/devmemd.sock") + 1),
		0);
	ck_assert_str_eq(buf, "/run/user/4242/devmemd.sock");
	ck_assert_int_eq(dm_default_socket_path(
				 buf, strlen("/run/user/4242/devmemd.sock")),
			 -ENAMETOOLONG);
	ck_assert_int_eq(dm_default_socket_path(buf, 8), -ENAMETOOLONG);

	tmp_path(want, sizeof(want));
	unsetenv("XDG_RUNTIME_DIR");
	ck_assert_int_eq(dm_default_socket_path(buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, want);
	ck_assert_int_eq(dm_default_socket_path(buf, 10), -ENAMETOOLONG);

	setenv("XDG_RUNTIME_DIR", "run/user/4242", 1); /* relative */
	ck_assert_int_eq(dm_default_socket_path(buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, want);

	setenv("XDG_RUNTIME_DIR", "", 1);
	ck_assert_int_eq(dm_default_socket_path(buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, want);
}
END_TEST

START_TEST(test_resolve_socket_path)
{
	char buf[256], want[256];

	setenv("XDG_RUNTIME_DIR", "/run/user/77", 1);
	setenv("DEVMEM_SOCKET", "/srv/dm/env.sock", 1);

	/* an explicit path wins over the environment */
	ck_assert_int_eq(
		dm_resolve_socket_path("/x/explicit.sock", buf, sizeof(buf)),
		0);
	ck_assert_str_eq(buf, "/x/explicit.sock");
	ck_assert_int_eq(dm_resolve_socket_path("rel.sock", buf, sizeof(buf)),
			 0);
	ck_assert_str_eq(buf, "rel.sock");

	/* NULL or "": $DEVMEM_SOCKET */
	ck_assert_int_eq(dm_resolve_socket_path(NULL, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/srv/dm/env.sock");
	ck_assert_int_eq(dm_resolve_socket_path("", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/srv/dm/env.sock");

	/* too long for the buffer */
	ck_assert_int_eq(dm_resolve_socket_path("/x/explicit.sock", buf, 16),
			 -ENAMETOOLONG);
	ck_assert_int_eq(dm_resolve_socket_path("/x/explicit.sock", buf, 17),
			 0);
	ck_assert_str_eq(buf, "/x/explicit.sock");
	ck_assert_int_eq(dm_resolve_socket_path(NULL, buf, 5), -ENAMETOOLONG);

	/* no $DEVMEM_SOCKET (or empty): the default path */
	unsetenv("DEVMEM_SOCKET");
	ck_assert_int_eq(dm_resolve_socket_path(NULL, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/run/user/77/devmemd.sock");
	setenv("DEVMEM_SOCKET", "", 1);
	ck_assert_int_eq(dm_resolve_socket_path("", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/run/user/77/devmemd.sock");
	unsetenv("XDG_RUNTIME_DIR");
	tmp_path(want, sizeof(want));
	ck_assert_int_eq(dm_resolve_socket_path(NULL, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, want);
	ck_assert_int_eq(dm_resolve_socket_path(NULL, buf, 4), -ENAMETOOLONG);
}
END_TEST

/* ---- common.c: send and receive ---- */

static void seqpacket_pair(int sv[2])
{
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
}

/* A pipe whose read end is non-blocking: read_end_state() tells whether
 * every write end is closed (EOF) or one is still open somewhere. */
static void nb_pipe(int p[2])
{
	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
}

static int write_end_open(int rfd)
{
	char c;
	ssize_t n = read(rfd, &c, 1);

	if (n == 0)
		return 0; /* EOF: all write ends closed */
	ck_assert_int_eq(n, -1);
	ck_assert_int_eq(errno, EAGAIN);
	return 1;
}

static void same_file(int a, int b)
{
	struct stat sa, sb;

	ck_assert_int_eq(fstat(a, &sa), 0);
	ck_assert_int_eq(fstat(b, &sb), 0);
	ck_assert_uint_eq(sa.st_dev, sb.st_dev);
	ck_assert_uint_eq(sa.st_ino, sb.st_ino);
}

START_TEST(test_send_recv_two_fds)
{
	struct dm_attach at = { 0x8000000000000123ull, DM_UFFD_USER_MODE_ONLY,
				3, 1, 0x7f0000000000ull };
	uint8_t sbuf[DM_MAX_REQUEST], rbuf[DM_MAX_REQUEST];
	int sv[2], pa[2], pb[2], sent[2], got[2] = { -1, -1 }, nfds = 2;
	struct dm_msg msg;
	char c = 0;

	seqpacket_pair(sv);
	nb_pipe(pa);
	nb_pipe(pb);
	sent[0] = pa[1];
	sent[1] = pb[1];
	ck_assert_int_eq(dm_send_msg(sv[0], sbuf, sizeof(sbuf), DM_ATTACH, 9,
				     &at, NULL, 0, sent,
				     dm_type_nfds(DM_ATTACH)),
			 0);
	close(pa[1]);
	close(pb[1]);

	ck_assert_int_eq(
		dm_recv_msg(sv[1], rbuf, sizeof(rbuf), &msg, got, &nfds), 0);
	ck_assert_int_eq(nfds, 2);
	ck_assert_uint_eq(msg.hdr.type, DM_ATTACH);
	ck_assert_uint_eq(msg.hdr.id, 9);
	ck_assert_uint_eq(msg.u.attach.uffd_features, at.uffd_features);
	ck_assert_uint_eq(msg.u.attach.uffd_flags, at.uffd_flags);
	ck_assert_uint_eq(msg.u.attach.nslots, 3);
	ck_assert_uint_eq(msg.u.attach.nfault_slots, 1);
	ck_assert_uint_eq(msg.u.attach.staging, at.staging);
	dm_msg_release(&msg);

	/* valid, close-on-exec, in order, and the very same files */
	for (int i = 0; i < 2; i++) {
		ck_assert_int_ge(got[i], 0);
		ck_assert_int_ne(fcntl(got[i], F_GETFD), -1);
		ck_assert(fcntl(got[i], F_GETFD) & FD_CLOEXEC);
	}
	ck_assert_int_ne(got[0], got[1]);
	same_file(got[0], pa[0]);
	same_file(got[1], pb[0]);
	ck_assert_int_eq(write(got[0], "a", 1), 1);
	ck_assert_int_eq(read(pa[0], &c, 1), 1);
	ck_assert_int_eq(c, 'a');
	ck_assert_int_eq(write(got[1], "b", 1), 1);
	ck_assert_int_eq(read(pb[0], &c, 1), 1);
	ck_assert_int_eq(c, 'b');

	ck_assert(write_end_open(pa[0]));
	close(got[0]);
	close(got[1]);
	ck_assert(!write_end_open(pa[0]));
	ck_assert(!write_end_open(pb[0]));

	close(pa[0]);
	close(pb[0]);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(test_recv_extra_fds_closed)
{
	uint8_t buf[64];
	int sv[2], pa[2], pb[2], sent[2], got[2] = { -1, -1 }, nfds;
	struct dm_hello h = { DM_ROLE_CLIENT, 1, 1 };
	struct dm_msg msg;

	seqpacket_pair(sv);
	nb_pipe(pa);
	nb_pipe(pb);
	sent[0] = pa[1];
	sent[1] = pb[1];

	/* room for one: the first arrives, the second is closed */
	ck_assert_int_eq(dm_send_msg(sv[0], buf, sizeof(buf), DM_HELLO, 1, &h,
				     NULL, 0, sent, 2),
			 0);
	nfds = 1;
	ck_assert_int_eq(dm_recv_msg(sv[1], buf, sizeof(buf), &msg, got, &nfds),
			 0);
	ck_assert_int_eq(nfds, 1);
	ck_assert_int_eq(got[1], -1);
	same_file(got[0], pa[0]);
	dm_msg_release(&msg);

	/* no room at all: both closed, the message still arrives */
	ck_assert_int_eq(dm_send_msg(sv[0], buf, sizeof(buf), DM_HELLO, 2, &h,
				     NULL, 0, sent, 2),
			 0);
	ck_assert_int_eq(dm_recv_msg(sv[1], buf, sizeof(buf), &msg, NULL, NULL),
			 0);
	ck_assert_uint_eq(msg.hdr.id, 2);
	dm_msg_release(&msg);

	nfds = 0;
	ck_assert_int_eq(dm_send_msg(sv[0], buf, sizeof(buf), DM_HELLO, 3, &h,
				     NULL, 0, sent, 2),
			 0);
	ck_assert_int_eq(
		dm_recv_msg(sv[1], buf, sizeof(buf), &msg, got + 1, &nfds), 0);
	ck_assert_int_eq(nfds, 0);
	ck_assert_int_eq(got[1], -1);
	dm_msg_release(&msg);

	close(pa[1]);
	close(pb[1]);
	/* only got[0] still holds a write end, of pipe a */
	ck_assert(!write_end_open(pb[0]));
	ck_assert(write_end_open(pa[0]));
	close(got[0]);
	ck_assert(!write_end_open(pa[0]));

	close(pa[0]);
	close(pb[0]);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(test_recv_peer_closed)
{
	uint8_t buf[64];
	int sv[2], fds[2], nfds = 2;
	struct dm_msg msg;
	struct dm_range r = { 1, 2 };

	seqpacket_pair(sv);
	close(sv[0]);
	ck_assert_int_eq(dm_recv(sv[1], buf, sizeof(buf), fds, &nfds),
			 -ECONNRESET);
	ck_assert_int_eq(nfds, 0);
	nfds = 2;
	ck_assert_int_eq(dm_recv_msg(sv[1], buf, sizeof(buf), &msg, fds, &nfds),
			 -ECONNRESET);
	/* sending to a closed peer: -ECONNRESET, no SIGPIPE */
	ck_assert_int_eq(dm_send_msg(sv[1], buf, sizeof(buf), DM_REGISTER, 1,
				     &r, NULL, 0, NULL, 0),
			 -ECONNRESET);
	ck_assert_int_eq(dm_send(sv[1], buf, 16, NULL, 0), -ECONNRESET);
	close(sv[1]);
}
END_TEST

START_TEST(test_recv_record_too_large)
{
	uint8_t big[200], small[50];
	int sv[2], p[2], fds[2] = { -1, -1 }, nfds = 2;

	memset(big, 0x77, sizeof(big));
	seqpacket_pair(sv);
	nb_pipe(p);
	ck_assert_int_eq(dm_send(sv[0], big, sizeof(big), &p[1], 1),
			 (ssize_t)sizeof(big));
	close(p[1]);
	ck_assert_int_eq(dm_recv(sv[1], small, sizeof(small), fds, &nfds),
			 -EMSGSIZE);
	ck_assert_int_eq(nfds, 0);
	/* the fd that came with the record was closed */
	ck_assert(!write_end_open(p[0]));
	close(p[0]);

	/* the socket is still usable: the next record arrives whole */
	ck_assert_int_eq(dm_send(sv[0], big, 40, NULL, 0), 40);
	nfds = 2;
	ck_assert_int_eq(dm_recv(sv[1], small, sizeof(small), fds, &nfds), 40);
	ck_assert_int_eq(nfds, 0);
	ck_assert_mem_eq(small, big, 40);

	/* exactly the buffer size is fine */
	ck_assert_int_eq(dm_send(sv[0], big, sizeof(small), NULL, 0),
			 (ssize_t)sizeof(small));
	ck_assert_int_eq(dm_recv(sv[1], small, sizeof(small), NULL, NULL),
			 (ssize_t)sizeof(small));
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* A zero-length record carrying an fd (any local peer can send one): it
 * reads as end of file, and like every other failed receive it must not
 * hand back or keep open the fds that came with it. */
START_TEST(test_recv_empty_record_fds)
{
	uint8_t buf[64];
	int sv[2], p[2], fds[2] = { -1, -1 }, nfds = 2, err, open_after;
	struct dm_msg msg;

	seqpacket_pair(sv);
	nb_pipe(p);
	ck_assert_int_eq(dm_send(sv[0], buf, 0, &p[1], 1), 0);
	close(p[1]);
	err = dm_recv_msg(sv[1], buf, sizeof(buf), &msg, fds, &nfds);
	ck_assert_int_lt(err, 0);
	open_after = write_end_open(p[0]);
	if (nfds > 0) /* don't leak it into the rest of the run */
		close(fds[0]);
	ck_assert_msg(nfds == 0 && !open_after,
		      "dm_recv_msg returned %d but left %d fd(s) open", err,
		      nfds);
	close(p[0]);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* More fds than DM_MAX_FDS: dm_send refuses; a raw sender's extra fds make
 * dm_recv fail (control data truncated) without leaking any. */
START_TEST(test_too_many_fds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * 3)];
		struct cmsghdr align;
	} ctl;
	uint8_t buf[32] = { 0 };
	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cm;
	int sv[2], p[2], three[3], fds[2], nfds = 2;

	seqpacket_pair(sv);
	nb_pipe(p);
	three[0] = three[1] = three[2] = p[1];
	ck_assert_int_eq(dm_send(sv[0], buf, sizeof(buf), three, 3), -EINVAL);

	memset(&ctl, 0, sizeof(ctl));
	mh.msg_control = ctl.buf;
	mh.msg_controllen = sizeof(ctl.buf);
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int) * 3);
	memcpy(CMSG_DATA(cm), three, sizeof(three));
	ck_assert_int_eq(sendmsg(sv[0], &mh, 0), (ssize_t)sizeof(buf));
	close(p[1]);

	ck_assert_int_eq(dm_recv(sv[1], buf, sizeof(buf), fds, &nfds),
			 -EMSGSIZE);
	ck_assert_int_eq(nfds, 0);
	ck_assert(!write_end_open(p[0]));
	close(p[0]);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* A record that does not decode: error, and its fds are closed. */
START_TEST(test_recv_msg_bad_record)
{
	uint8_t buf[64];
	int sv[2], p[2], fds[2] = { -1, -1 }, nfds = 2;
	struct dm_msg msg;
	struct dm_range r = { 1, 2 };

	seqpacket_pair(sv);
	nb_pipe(p);
	ck_assert_int_eq(
		dm_encode(buf, sizeof(buf), DM_REGISTER, 1, &r, NULL, 0), 32);
	buf[0] ^= 1; /* bad magic */
	ck_assert_int_eq(dm_send(sv[0], buf, 32, &p[1], 1), 32);
	close(p[1]);
	ck_assert_int_eq(dm_recv_msg(sv[1], buf, sizeof(buf), &msg, fds, &nfds),
			 -EPROTO);
	ck_assert_int_eq(nfds, 0);
	ck_assert_ptr_null(msg.tail);
	ck_assert(!write_end_open(p[0]));

	/* an encode error is returned before anything is sent */
	ck_assert_int_eq(dm_send_msg(sv[0], buf, 8, DM_REGISTER, 1, &r, NULL, 0,
				     NULL, 0),
			 -ENOBUFS);
	ck_assert_int_eq(dm_send_msg(sv[0], buf, sizeof(buf), 0, 1, &r, NULL, 0,
				     NULL, 0),
			 -EINVAL);
	ck_assert_int_eq(recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT), -1);
	ck_assert_int_eq(errno, EAGAIN);
	close(p[0]);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* The largest messages go through one SEQPACKET record of DM_MAX_MSG. */
START_TEST(test_send_recv_max_message)
{
	static struct dm_client_info ci[DM_MAX_CLIENTS_LIST];
	uint8_t *sbuf = malloc(DM_MAX_MSG), *rbuf = malloc(DM_MAX_MSG);
	struct dm_status st = { -ENOSPC };
	uint64_t rng = 99;
	int sv[2], sndbuf = 4 * DM_MAX_MSG, nfds = 0;
	struct dm_msg msg;

	ck_assert_ptr_nonnull(sbuf);
	ck_assert_ptr_nonnull(rbuf);
	seqpacket_pair(sv);
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	fill_tail(&L_client_info, ci, DM_MAX_CLIENTS_LIST, &rng);
	ck_assert_int_eq(dm_send_msg(sv[0], sbuf, DM_MAX_MSG,
				     DM_CLIENTS | DM_REPLY, 5, &st, ci,
				     DM_MAX_CLIENTS_LIST, NULL, 0),
			 0);
	ck_assert_int_eq(
		dm_recv_msg(sv[1], rbuf, DM_MAX_MSG, &msg, NULL, &nfds), 0);
	ck_assert_int_eq(nfds, 0);
	ck_assert_int_eq(msg.u.status.status, -ENOSPC);
	ck_assert_uint_eq(msg.ntail, DM_MAX_CLIENTS_LIST);
	compare_tail(&L_client_info, ci, msg.tail, DM_MAX_CLIENTS_LIST);
	dm_msg_release(&msg);
	close(sv[0]);
	close(sv[1]);
	free(sbuf);
	free(rbuf);
}
END_TEST

static Suite *protocol_suite(void)
{
	Suite *s = suite_create("protocol");
	TCase *tc;

	tc = tcase_create("codec");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_spec_tables);
	tcase_add_loop_test(tc, test_roundtrip_every_type, 0, 2 * NTYPES);
	tcase_add_test(tc, test_tail_limits);
	tcase_add_test(tc, test_requests_fit_max_request);
	tcase_add_test(tc, test_header_layout);
	tcase_add_test(tc, test_body_layout);
	tcase_add_test(tc, test_tail_layout);
	tcase_add_loop_test(tc, test_truncation, 0, 2 * NTYPES);
	tcase_add_test(tc, test_bad_magic_version_type);
	tcase_add_test(tc, test_bad_hdr_len);
	tcase_add_loop_test(tc, test_bad_body_len, 0, 2 * NTYPES);
	tcase_add_test(tc, test_bad_tail_len);
	tcase_add_test(tc, test_tail_over_limit);
	tcase_add_test(tc, test_string_without_nul);
	tcase_add_test(tc, test_encode_errors);
	tcase_add_test(tc, test_type_nfds_and_names);
	suite_add_tcase(s, tc);

	tc = tcase_create("fuzz");
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_random_corruption);
	suite_add_tcase(s, tc);

	tc = tcase_create("common");
	tcase_add_test(tc, test_parse_size);
	tcase_add_test(tc, test_policy_names);
	tcase_add_test(tc, test_default_socket_path);
	tcase_add_test(tc, test_resolve_socket_path);
	suite_add_tcase(s, tc);

	tc = tcase_create("socket");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_send_recv_two_fds);
	tcase_add_test(tc, test_recv_extra_fds_closed);
	tcase_add_test(tc, test_recv_peer_closed);
	tcase_add_test(tc, test_recv_record_too_large);
	tcase_add_test(tc, test_too_many_fds);
	tcase_add_test(tc, test_recv_empty_record_fds);
	tcase_add_test(tc, test_recv_msg_bad_record);
	tcase_add_test(tc, test_send_recv_max_message);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(protocol_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
