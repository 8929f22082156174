/* SPDX-License-Identifier: MIT */
/*
 * Encoding and decoding of devmem protocol messages.
 *
 * Each message type has a table of fields for its fixed part and, if it has
 * one, for the elements of its tail.  The codec walks these tables, so every
 * message is checked the same way: exact length, whole number of tail
 * elements within the type's limit, NUL-terminated strings.
 */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

enum field_kind { F_U32, F_U64, F_U8, F_STR };

struct field {
	uint16_t off; /* in the host struct */
	uint8_t kind;
	uint16_t count; /* array length (F_U32/F_U64/F_U8), or string size */
};

struct layout {
	const struct field *fields;
	uint8_t nfields;
	uint16_t host_size;
};

struct msg_desc {
	const char *name;
	struct layout body;
	struct layout tail; /* host_size 0: no tail */
	uint32_t max_tail;
	uint8_t nfds;
};

/* the braces below are initialisers, not blocks */
/* clang-format off */
#define FIELD(s, m, kind, n) { offsetof(struct s, m), kind, n }
#define NMEMB(s, m, width) (sizeof(((struct s *)0)->m) / (width))
#define U32(s, m) FIELD(s, m, F_U32, 1)
#define U64(s, m) FIELD(s, m, F_U64, 1)
#define U64N(s, m) FIELD(s, m, F_U64, NMEMB(s, m, 8))
#define U32N(s, m) FIELD(s, m, F_U32, NMEMB(s, m, 4))
#define STR(s, m) FIELD(s, m, F_STR, NMEMB(s, m, 1))
#define LAYOUT(s, f) { f, sizeof(f) / sizeof(f[0]), sizeof(struct s) }
/* clang-format on */

static const struct field f_empty[1];
static const struct field f_status[] = { U32(dm_status, status) };
static const struct field f_hello[] = { U32(dm_hello, role),
					U32(dm_hello, proto_min),
					U32(dm_hello, proto_max) };
static const struct field f_hello_reply[] = { U32(dm_hello_reply, status),
					      U32(dm_hello_reply, proto),
					      U32(dm_hello_reply, client_id),
					      U64(dm_hello_reply, capacity),
					      STR(dm_hello_reply, version) };
static const struct field f_attach[] = { U64(dm_attach, uffd_features),
					 U32(dm_attach, uffd_flags),
					 U32(dm_attach, nslots),
					 U32(dm_attach, nfault_slots),
					 U64(dm_attach, staging) };
static const struct field f_range[] = { U64(dm_range, addr),
					U64(dm_range, len) };
static const struct field f_migrate[] = {
	U64(dm_migrate, addr), U64(dm_migrate, len), U32(dm_migrate, flags),
	U32(dm_migrate, nslots), U64(dm_migrate, units)
};
static const struct field f_begin_reply[] = { U32(dm_begin_reply, status),
					      U32(dm_begin_reply, nunits),
					      U64(dm_begin_reply, units) };
static const struct field f_result_reply[] = {
	U32(dm_result_reply, status), U32(dm_result_reply, nmoves),
	U64(dm_result_reply, pages),  U64(dm_result_reply, huge),
	U64(dm_result_reply, split),  U64(dm_result_reply, faults),
	U64(dm_result_reply, next),   U64(dm_result_reply, units),
	U64(dm_result_reply, failed), U64(dm_result_reply, thp)
};
static const struct field f_move[] = { U64(dm_move, dst), U32(dm_move, slot),
				       U32(dm_move, status),
				       U64(dm_move, moved) };
static const struct field f_access[] = { U64(dm_access, addr),
					 U64(dm_access, len),
					 U64(dm_access, buf) };
static const struct field f_snapshot[] = { U64(dm_snapshot, addr),
					   U64(dm_snapshot, npages) };
static const struct field f_byte[] = { { 0, F_U8, 1 } };
static const struct field f_stats_reply[] = { U32(dm_stats_reply, status),
					      U32(dm_stats_reply, nfields),
					      U64N(dm_stats_reply, field) };
static const struct field f_inject[] = { U32(dm_inject, what),
					 U32(dm_inject, count) };
static const struct field f_policy[] = { U32(dm_policy, set),
					 U32(dm_policy, kind),
					 U32(dm_policy, value) };
static const struct field f_policy_reply[] = { U32(dm_policy_reply, status),
					       U32N(dm_policy_reply, value) };
static const struct field f_status_reply[] = {
	U32(dm_status_reply, status),
	U32(dm_status_reply, pid),
	U64(dm_status_reply, capacity),
	U64(dm_status_reply, used),
	U64(dm_status_reply, free_pages),
	U64(dm_status_reply, metadata_bytes),
	U64(dm_status_reply, client_limit),
	U64N(dm_status_reply, nr_free),
	U32(dm_status_reply, fragmentation),
	U32(dm_status_reply, node),
	U32(dm_status_reply, nclients),
	U32N(dm_status_reply, policy),
	U64(dm_status_reply, uptime_ms),
	U64N(dm_status_reply, counters),
	STR(dm_status_reply, version),
	STR(dm_status_reply, socket),
	STR(dm_status_reply, topology),
	STR(dm_status_reply, cpus)
};
static const struct field f_client_info[] = {
	U32(dm_client_info, id),	 U32(dm_client_info, pid),
	U32(dm_client_info, uid),	 U32(dm_client_info, nranges),
	U64(dm_client_info, registered), U64(dm_client_info, used),
	U64N(dm_client_info, counters)
};
static const struct field f_count_reply[] = { U32(dm_count_reply, status),
					      U32(dm_count_reply, pad),
					      U64(dm_count_reply, count) };
static const struct field f_helper_move[] = { U64(dm_helper_move, src),
					      U64(dm_helper_move, dst),
					      U64(dm_helper_move, len) };
static const struct field f_helper_reply[] = { U32(dm_helper_reply, status),
					       U32(dm_helper_reply, pad),
					       U64(dm_helper_reply, moved) };

/* clang-format off */
#define NOBODY { f_empty, 0, 0 }
#define NOTAIL { NULL, 0, 0 }
/* clang-format on */
#define STATUS_ONLY LAYOUT(dm_status, f_status)

static const struct msg_desc requests[DM_TYPE_MAX] = {
	[DM_HELLO] = { "hello", LAYOUT(dm_hello, f_hello), NOTAIL, 0, 0 },
	[DM_ATTACH] = { "attach", LAYOUT(dm_attach, f_attach), NOTAIL, 0, 2 },
	[DM_REGISTER] = { "register", LAYOUT(dm_range, f_range), NOTAIL, 0, 0 },
	[DM_UNREGISTER] = { "unregister", LAYOUT(dm_range, f_range), NOTAIL, 0,
			    0 },
	[DM_MIGRATE_BEGIN] = { "migrate-begin", LAYOUT(dm_migrate, f_migrate),
			       NOTAIL, 0, 0 },
	[DM_MIGRATE_COMMIT] = { "migrate-commit", LAYOUT(dm_migrate, f_migrate),
				NOTAIL, 0, 0 },
	[DM_MIGRATE_FINISH] = { "migrate-finish", LAYOUT(dm_migrate, f_migrate),
				NOTAIL, 0, 0 },
	[DM_MIGRATE_BACK] = { "migrate-back", LAYOUT(dm_migrate, f_migrate),
			      NOTAIL, 0, 0 },
	[DM_MIGRATE_BACK_DONE] = { "migrate-back-done", NOBODY,
				   LAYOUT(dm_move, f_move), DM_MAX_BATCH, 0 },
	[DM_DEVICE_READ] = { "device-read", LAYOUT(dm_access, f_access), NOTAIL,
			     0, 0 },
	[DM_DEVICE_WRITE] = { "device-write", LAYOUT(dm_access, f_access),
			      NOTAIL, 0, 0 },
	[DM_SNAPSHOT] = { "snapshot", LAYOUT(dm_snapshot, f_snapshot), NOTAIL,
			  0, 0 },
	[DM_STATS] = { "stats", NOBODY, NOTAIL, 0, 0 },
	[DM_INJECT] = { "inject", LAYOUT(dm_inject, f_inject), NOTAIL, 0, 0 },
	[DM_STATUS] = { "status", NOBODY, NOTAIL, 0, 0 },
	[DM_CLIENTS] = { "clients", NOBODY, NOTAIL, 0, 0 },
	[DM_POLICY] = { "policy", LAYOUT(dm_policy, f_policy), NOTAIL, 0, 0 },
	[DM_HELPER_MOVE] = { "helper-move",
			     LAYOUT(dm_helper_move, f_helper_move), NOTAIL, 0,
			     0 },
	[DM_RANGES] = { "ranges", LAYOUT(dm_range, f_range), NOTAIL, 0, 0 },
	[DM_EVICT] = { "evict", NOBODY, NOTAIL, 0, 0 },
};

static const struct msg_desc replies[DM_TYPE_MAX] = {
	[DM_HELLO] = { "hello", LAYOUT(dm_hello_reply, f_hello_reply), NOTAIL,
		       0, 0 },
	[DM_ATTACH] = { "attach", STATUS_ONLY, NOTAIL, 0, 0 },
	[DM_REGISTER] = { "register", STATUS_ONLY, NOTAIL, 0, 0 },
	[DM_UNREGISTER] = { "unregister", STATUS_ONLY, NOTAIL, 0, 0 },
	[DM_MIGRATE_BEGIN] = { "migrate-begin",
			       LAYOUT(dm_begin_reply, f_begin_reply), NOTAIL, 0,
			       0 },
	[DM_MIGRATE_COMMIT] = { "migrate-commit",
				LAYOUT(dm_result_reply, f_result_reply), NOTAIL,
				0, 0 },
	[DM_MIGRATE_FINISH] = { "migrate-finish", STATUS_ONLY, NOTAIL, 0, 0 },
	[DM_MIGRATE_BACK] = { "migrate-back",
			      LAYOUT(dm_result_reply, f_result_reply),
			      LAYOUT(dm_move, f_move), DM_MAX_BATCH, 0 },
	[DM_MIGRATE_BACK_DONE] = { "migrate-back-done",
				   LAYOUT(dm_result_reply, f_result_reply),
				   NOTAIL, 0, 0 },
	[DM_DEVICE_READ] = { "device-read",
			     LAYOUT(dm_result_reply, f_result_reply), NOTAIL, 0,
			     0 },
	[DM_DEVICE_WRITE] = { "device-write",
			      LAYOUT(dm_result_reply, f_result_reply), NOTAIL,
			      0, 0 },
	[DM_SNAPSHOT] = { "snapshot",
			  STATUS_ONLY,
			  { f_byte, 1, 1 },
			  DM_MAX_SNAPSHOT,
			  0 },
	[DM_STATS] = { "stats", LAYOUT(dm_stats_reply, f_stats_reply), NOTAIL,
		       0, 0 },
	[DM_INJECT] = { "inject", STATUS_ONLY, NOTAIL, 0, 0 },
	[DM_STATUS] = { "status", LAYOUT(dm_status_reply, f_status_reply),
			NOTAIL, 0, 0 },
	[DM_CLIENTS] = { "clients", STATUS_ONLY,
			 LAYOUT(dm_client_info, f_client_info),
			 DM_MAX_CLIENTS_LIST, 0 },
	[DM_POLICY] = { "policy", LAYOUT(dm_policy_reply, f_policy_reply),
			NOTAIL, 0, 0 },
	[DM_HELPER_MOVE] = { "helper-move",
			     LAYOUT(dm_helper_reply, f_helper_reply), NOTAIL, 0,
			     0 },
	[DM_RANGES] = { "ranges", STATUS_ONLY, LAYOUT(dm_range, f_range),
			DM_MAX_RANGES_LIST, 0 },
	[DM_EVICT] = { "evict", LAYOUT(dm_count_reply, f_count_reply), NOTAIL,
		       0, 0 },
};

static const struct msg_desc *desc_of(uint16_t type)
{
	uint16_t base = type & ~DM_REPLY;

	if (base == 0 || base >= DM_TYPE_MAX)
		return NULL;
	return type & DM_REPLY ? &replies[base] : &requests[base];
}

static size_t field_wire_size(const struct field *f)
{
	switch (f->kind) {
	case F_U32:
		return 4u * f->count;
	case F_U64:
		return 8u * f->count;
	default: /* F_U8, F_STR */
		return f->count;
	}
}

static size_t layout_wire_size(const struct layout *l)
{
	size_t n = 0;

	for (unsigned i = 0; i < l->nfields; i++)
		n += field_wire_size(&l->fields[i]);
	return n;
}

static void put_layout(uint8_t *p, const struct layout *l, const void *host)
{
	const uint8_t *h = host;

	for (unsigned i = 0; i < l->nfields; i++) {
		const struct field *f = &l->fields[i];

		for (unsigned k = 0; k < f->count; k++) {
			uint32_t v32;
			uint64_t v64;

			switch (f->kind) {
			case F_U32:
				memcpy(&v32, h + f->off + 4 * k, 4);
				v32 = htole32(v32);
				memcpy(p, &v32, 4);
				p += 4;
				break;
			case F_U64:
				memcpy(&v64, h + f->off + 8 * k, 8);
				v64 = htole64(v64);
				memcpy(p, &v64, 8);
				p += 8;
				break;
			default:
				*p++ = h[f->off + k];
				break;
			}
		}
	}
}

/* Returns 0 or -EPROTO for a string without its terminating NUL. */
static int get_layout(const uint8_t *p, const struct layout *l, void *host)
{
	uint8_t *h = host;

	for (unsigned i = 0; i < l->nfields; i++) {
		const struct field *f = &l->fields[i];

		if (f->kind == F_STR && !memchr(p, 0, f->count))
			return -EPROTO;
		for (unsigned k = 0; k < f->count; k++) {
			uint32_t v32;
			uint64_t v64;

			switch (f->kind) {
			case F_U32:
				memcpy(&v32, p, 4);
				v32 = le32toh(v32);
				memcpy(h + f->off + 4 * k, &v32, 4);
				p += 4;
				break;
			case F_U64:
				memcpy(&v64, p, 8);
				v64 = le64toh(v64);
				memcpy(h + f->off + 8 * k, &v64, 8);
				p += 8;
				break;
			default:
				h[f->off + k] = *p++;
				break;
			}
		}
	}
	return 0;
}

static void put_hdr(uint8_t *p, uint16_t type, uint32_t id, uint32_t len)
{
	uint32_t v32 = htole32(DM_MAGIC);
	uint16_t v16 = htole16(DM_PROTO_VERSION);

	memcpy(p, &v32, 4);
	memcpy(p + 4, &v16, 2);
	v16 = htole16(type);
	memcpy(p + 6, &v16, 2);
	v32 = htole32(len);
	memcpy(p + 8, &v32, 4);
	v32 = htole32(id);
	memcpy(p + 12, &v32, 4);
}

ssize_t dm_encode(void *buf, size_t size, uint16_t type, uint32_t id,
		  const void *body, const void *tail, uint32_t ntail)
{
	const struct msg_desc *d = desc_of(type);
	size_t body_len, elem_len, len;
	uint8_t *p = buf;

	if (!d || !d->name)
		return -EINVAL;
	if (ntail && (!d->tail.host_size || ntail > d->max_tail || !tail))
		return -EINVAL;
	body_len = layout_wire_size(&d->body);
	elem_len = layout_wire_size(&d->tail);
	len = DM_HDR_SIZE + body_len + (size_t)ntail * elem_len;
	if (len > DM_MAX_MSG)
		return -EMSGSIZE;
	if (len > size)
		return -ENOBUFS;
	put_hdr(p, type, id, len);
	p += DM_HDR_SIZE;
	if (body_len) {
		put_layout(p, &d->body, body);
		p += body_len;
	}
	for (uint32_t i = 0; i < ntail; i++) {
		put_layout(p, &d->tail,
			   (const uint8_t *)tail +
				   (size_t)i * d->tail.host_size);
		p += elem_len;
	}
	return (ssize_t)len;
}

int dm_check_hdr(const void *buf, size_t len, struct dm_hdr *hdr)
{
	const uint8_t *p = buf;
	const struct msg_desc *d;
	uint32_t v32;
	uint16_t v16;

	if (len < DM_HDR_SIZE)
		return -EPROTO;
	memcpy(&v32, p, 4);
	hdr->magic = le32toh(v32);
	memcpy(&v16, p + 4, 2);
	hdr->version = le16toh(v16);
	memcpy(&v16, p + 6, 2);
	hdr->type = le16toh(v16);
	memcpy(&v32, p + 8, 4);
	hdr->len = le32toh(v32);
	memcpy(&v32, p + 12, 4);
	hdr->id = le32toh(v32);
	if (hdr->magic != DM_MAGIC)
		return -EPROTO;
	if (hdr->version != DM_PROTO_VERSION)
		return -EPROTONOSUPPORT;
	if (hdr->len < DM_HDR_SIZE || hdr->len > DM_MAX_MSG)
		return -EMSGSIZE;
	d = desc_of(hdr->type);
	if (!d || !d->name)
		return -EPROTO;
	return 0;
}

int dm_decode(const void *buf, size_t len, struct dm_msg *out)
{
	const uint8_t *p = buf;
	const struct msg_desc *d;
	size_t body_len, elem_len, rest;
	int err;

	memset(out, 0, sizeof(*out));
	err = dm_check_hdr(buf, len, &out->hdr);
	if (err)
		return err;
	if (out->hdr.len != len)
		return -EPROTO;
	d = desc_of(out->hdr.type);
	body_len = layout_wire_size(&d->body);
	elem_len = layout_wire_size(&d->tail);
	if (len - DM_HDR_SIZE < body_len)
		return -EPROTO;
	rest = len - DM_HDR_SIZE - body_len;
	if (rest && !elem_len)
		return -EPROTO;
	if (elem_len && (rest % elem_len || rest / elem_len > d->max_tail))
		return -EPROTO;
	p += DM_HDR_SIZE;
	err = get_layout(p, &d->body, &out->u);
	if (err)
		return err;
	p += body_len;
	if (!rest)
		return 0;
	out->ntail = rest / elem_len;
	out->tail = calloc(out->ntail, d->tail.host_size);
	if (!out->tail)
		return -ENOMEM;
	for (uint32_t i = 0; i < out->ntail; i++) {
		err = get_layout(p, &d->tail,
				 (uint8_t *)out->tail +
					 (size_t)i * d->tail.host_size);
		if (err) {
			dm_msg_release(out);
			return err;
		}
		p += elem_len;
	}
	return 0;
}

void dm_msg_release(struct dm_msg *msg)
{
	free(msg->tail);
	msg->tail = NULL;
	msg->ntail = 0;
}

int dm_type_nfds(uint16_t type)
{
	const struct msg_desc *d = desc_of(type);

	return d && d->name ? d->nfds : 0;
}

const char *dm_type_name(uint16_t type)
{
	const struct msg_desc *d = desc_of(type);

	return d && d->name ? d->name : "unknown";
}
