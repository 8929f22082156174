/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

int dm_default_socket_path(char *buf, size_t size)
{
	const char *rt = getenv("XDG_RUNTIME_DIR");
	int n;

	if (rt && rt[0] == '/')
		n = snprintf(buf, size, "%s/devmemd.sock", rt);
	else
		n = snprintf(buf, size, "/tmp/devmemd-%u.sock",
			     (unsigned)getuid());
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int dm_resolve_socket_path(const char *path, char *buf, size_t size)
{
	if (!path || !path[0])
		path = getenv("DEVMEM_SOCKET");
	if (!path || !path[0])
		return dm_default_socket_path(buf, size);
	if (strlen(path) >= size)
		return -ENAMETOOLONG;
	strcpy(buf, path);
	return 0;
}

int dm_parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (toupper((unsigned char)*end)) {
	case 'K':
		shift = 10;
		break;
	case 'M':
		shift = 20;
		break;
	case 'G':
		shift = 30;
		break;
	case 'T':
		shift = 40;
		break;
	case '\0':
		break;
	case 'B':
		end--; /* plain bytes: "4096B" */
		break;
	default:
		return -EINVAL;
	}
	if (*end)
		end++;
	if (!strcasecmp(end, "iB") || !strcasecmp(end, "B"))
		end += strlen(end);
	if (*end)
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static const char *const policy_names[DM_POL_MAX][2] = {
	[DM_POL_GRANULARITY] = { "auto", "4k" },
	[DM_POL_FAULT] = { "folio", "4k" },
	[DM_POL_FREE] = { "whole", "split" },
	[DM_POL_ON_FULL] = { "evict", "fail" },
};

static const char *const policy_kinds[DM_POL_MAX] = {
	[DM_POL_GRANULARITY] = "granularity",
	[DM_POL_FAULT] = "fault-granularity",
	[DM_POL_FREE] = "free",
	[DM_POL_ON_FULL] = "on-full",
};

const char *dm_policy_kind_name(unsigned kind)
{
	return kind < DM_POL_MAX ? policy_kinds[kind] : "?";
}

const char *dm_policy_value_name(unsigned kind, unsigned value)
{
	return kind < DM_POL_MAX && value < 2 ? policy_names[kind][value] : "?";
}

int dm_policy_parse(unsigned kind, const char *name)
{
	if (kind >= DM_POL_MAX || !name)
		return -EINVAL;
	for (int v = 0; v < 2; v++)
		if (!strcmp(name, policy_names[kind][v]))
			return v;
	return -EINVAL;
}

int dm_policy_kind_parse(const char *name)
{
	for (unsigned k = 0; k < DM_POL_MAX; k++)
		if (name && !strcmp(name, policy_kinds[k]))
			return (int)k;
	return -EINVAL;
}

ssize_t dm_send(int sock, const void *buf, size_t len, const int *fds, int nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * DM_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { (void *)buf, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (nfds > DM_MAX_FDS)
		return -EINVAL;
	if (nfds > 0) {
		struct cmsghdr *cm;

		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	do
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EPIPE ? -ECONNRESET : -errno;
	return n;
}

ssize_t dm_recv(int sock, void *buf, size_t size, int *fds, int *nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * DM_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { buf, size };
	struct msghdr mh = { .msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = ctl.buf,
			     .msg_controllen = sizeof(ctl.buf) };
	struct cmsghdr *cm;
	int got = 0;
	ssize_t n;

	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		int k;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (int i = 0; i < k; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int),
			       sizeof(int));
			if (fds && nfds && got < *nfds)
				fds[got++] = fd;
			else
				close(fd); /* more than the caller takes */
		}
	}
	if (nfds)
		*nfds = got;
	/* an empty record is the end of the stream (the protocol has none) */
	if (n == 0 || mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		for (int i = 0; i < got; i++)
			close(fds[i]);
		if (nfds)
			*nfds = 0;
		return n ? -EMSGSIZE : -ECONNRESET;
	}
	return n;
}

int dm_send_msg(int sock, void *buf, size_t size, uint16_t type, uint32_t id,
		const void *body, const void *tail, uint32_t ntail,
		const int *fds, int nfds)
{
	ssize_t len = dm_encode(buf, size, type, id, body, tail, ntail);

	if (len < 0)
		return (int)len;
	len = dm_send(sock, buf, (size_t)len, fds, nfds);
	return len < 0 ? (int)len : 0;
}

int dm_recv_msg(int sock, void *buf, size_t size, struct dm_msg *msg, int *fds,
		int *nfds)
{
	ssize_t n = dm_recv(sock, buf, size, fds, nfds);
	int err;

	if (n < 0)
		return (int)n;
	err = dm_decode(buf, (size_t)n, msg);
	if (err && fds && nfds) {
		for (int i = 0; i < *nfds; i++)
			close(fds[i]);
		*nfds = 0;
	}
	return err;
}
