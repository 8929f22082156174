/* SPDX-License-Identifier: MIT */
/* Small pieces shared by libdevmem, devmemd, devmemctl and devmem-bench. */
#ifndef DEVMEM_COMMON_H
#define DEVMEM_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "protocol.h"

#define PAGE_SHIFT 12
#define PAGE_SIZE (1ul << PAGE_SHIFT)
#define FOLIO_ORDER 9 /* a huge device folio: 2 MB */
#define FOLIO_PAGES (1u << FOLIO_ORDER)
#define UNIT_SIZE (PAGE_SIZE << FOLIO_ORDER) /* a 2 MB unit */
#define UNIT_MASK (UNIT_SIZE - 1)

#define ALIGN_DOWN(x, a) ((x) & ~((__typeof__(x))(a)-1))
#define ALIGN_UP(x, a) ALIGN_DOWN((x) + (a)-1, (a))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* The socket devmemd listens on when none is given:
 * $XDG_RUNTIME_DIR/devmemd.sock, else /tmp/devmemd-$UID.sock.
 * Returns 0 or -ENAMETOOLONG. */
int dm_default_socket_path(char *buf, size_t size);

/* NULL or "": $DEVMEM_SOCKET, else the default path. */
int dm_resolve_socket_path(const char *path, char *buf, size_t size);

/* "4096", "64K", "512M", "1G", "2T" (binary units, optional "B"/"iB").
 * Returns 0 or -EINVAL. */
int dm_parse_size(const char *s, uint64_t *out);

/* Policy names: "auto"/"4k", "folio"/"4k", "whole"/"split", "evict"/"fail".
 * dm_policy_parse returns the value or -EINVAL. */
const char *dm_policy_kind_name(unsigned kind);
const char *dm_policy_value_name(unsigned kind, unsigned value);
int dm_policy_parse(unsigned kind, const char *name);
int dm_policy_kind_parse(const char *name);

/* Send one SEQPACKET record with optional fds; receive one, with up to
 * DM_MAX_FDS fds.  Return bytes or a negative errno (-ECONNRESET on EOF). */
ssize_t dm_send(int sock, const void *buf, size_t len, const int *fds,
		int nfds);
ssize_t dm_recv(int sock, void *buf, size_t size, int *fds, int *nfds);

/* Encode (in buf, size bytes) and send a message; 0 or a negative errno. */
int dm_send_msg(int sock, void *buf, size_t size, uint16_t type, uint32_t id,
		const void *body, const void *tail, uint32_t ntail,
		const int *fds, int nfds);

/* Receive (into buf) and decode one message; the caller releases it. */
int dm_recv_msg(int sock, void *buf, size_t size, struct dm_msg *msg, int *fds,
		int *nfds);

#endif /* DEVMEM_COMMON_H */
