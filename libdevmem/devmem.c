/* SPDX-License-Identifier: MIT */
/* The public API of libdevmem (include/devmem.h). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "devmem-internal.h"

#define API __attribute__((visibility("default")))

static bool span_ok(const void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr;

	return addr && len && !(a & (PAGE_SIZE - 1)) &&
	       !(len & (PAGE_SIZE - 1)) && a + len > a;
}

/* devmemd copies our memory with process_vm_readv/writev: with the Yama LSM
 * in mode 1 that takes our consent.  Harmless (EINVAL) without Yama. */
static void allow_ptrace(int sock)
{
	struct ucred peer;
	socklen_t len = sizeof(peer);

	if (!getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &peer, &len))
		prctl(PR_SET_PTRACER, (unsigned long)peer.pid, 0, 0, 0);
}

API int devmem_connect(const char *socket_path, devmem_t **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct dm_hello hello = { .role = DM_ROLE_CLIENT,
				  .proto_min = DM_PROTO_VERSION,
				  .proto_max = DM_PROTO_VERSION };
	struct devmem *dm;
	struct dm_msg rep;
	int err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	err = dm_resolve_socket_path(socket_path, sa.sun_path,
				     sizeof(sa.sun_path));
	if (err)
		return err;
	dm = calloc(1, sizeof(*dm));
	if (!dm)
		return -ENOMEM;
	dm->buf = malloc(DM_MAX_MSG);
	dm->uffd = dm->staging_uffd = dm->helper_sock = -1;
	dm->sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (!dm->buf || dm->sock < 0) {
		err = dm->buf ? -errno : -ENOMEM;
		goto fail;
	}
	if (connect(dm->sock, (struct sockaddr *)&sa, sizeof(sa))) {
		err = -errno;
		goto fail;
	}
	allow_ptrace(dm->sock);
	pthread_mutex_init(&dm->lock, NULL);
	err = dm_call(dm, DM_HELLO, &hello, NULL, 0, NULL, 0, &rep);
	dm->client_id = rep.u.hello_reply.client_id;
	dm->capacity = rep.u.hello_reply.capacity;
	dm_msg_release(&rep);
	if (err) {
		pthread_mutex_destroy(&dm->lock);
		goto fail;
	}
	dm_fork_track(dm);
	*out = dm;
	return 0;
fail:
	if (dm->sock >= 0)
		close(dm->sock);
	free(dm->buf);
	free(dm);
	return err;
}

API void devmem_disconnect(devmem_t *dm)
{
	if (!dm)
		return;
	dm_fork_untrack(dm);
	pthread_mutex_lock(&dm->lock);
	/* no data loss for a live process: everything comes back first */
	if (dm->attached && !dm->broken)
		dm_migrate_all_to_system(dm);
	/* devmemd sees us go: the helper must not take that for devmemd
	 * going away */
	atomic_store(&dm->detaching, true);
	if (dm->sock >= 0)
		close(dm->sock);
	dm->sock = -1;
	dm_detach(dm);
	pthread_mutex_unlock(&dm->lock);
	pthread_mutex_destroy(&dm->lock);
	free(dm->buf);
	free(dm);
}

/* A request with a plain body and a status-only reply */
static int simple_call(struct devmem *dm, uint16_t type, const void *body)
{
	struct dm_msg rep;
	int err = dm_call(dm, type, body, NULL, 0, NULL, 0, &rep);

	dm_msg_release(&rep);
	return err;
}

API int devmem_register(devmem_t *dm, void *addr, size_t len)
{
	struct dm_range r = { (uintptr_t)addr, len };
	int err;

	if (!dm || !span_ok(addr, len))
		return -EINVAL;
	pthread_mutex_lock(&dm->lock);
	err = dm_attach(dm);
	if (!err)
		err = simple_call(dm, DM_REGISTER, &r);
	pthread_mutex_unlock(&dm->lock);
	return err;
}

static int unregister_locked(struct devmem *dm, void *addr, size_t len,
			     bool bring_back)
{
	struct dm_range r = { (uintptr_t)addr, len };
	int err;

	if (dm->broken)
		return -ENOTCONN;
	if (!dm->attached)
		return -EINVAL;
	if (bring_back) {
		err = dm_migrate_span_to_system(dm, r.addr, r.len);
		if (err)
			return err;
	}
	return simple_call(dm, DM_UNREGISTER, &r);
}

API int devmem_unregister(devmem_t *dm, void *addr, size_t len)
{
	int err;

	if (!dm || !span_ok(addr, len))
		return -EINVAL;
	pthread_mutex_lock(&dm->lock);
	err = unregister_locked(dm, addr, len, true);
	pthread_mutex_unlock(&dm->lock);
	return err;
}

API void *devmem_alloc(devmem_t *dm, size_t len, unsigned flags)
{
	size_t size = ALIGN_UP(len, PAGE_SIZE);
	uint8_t *raw, *p;
	int err;

	if (!dm || !len || size < len || flags & ~DEVMEM_ALLOC_HUGE ||
	    size > SIZE_MAX - UNIT_SIZE) {
		errno = EINVAL;
		return NULL;
	}
	raw = mmap(NULL, size + UNIT_SIZE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (raw == MAP_FAILED)
		return NULL;
	p = (uint8_t *)ALIGN_UP((uintptr_t)raw, UNIT_SIZE);
	if (p > raw)
		munmap(raw, p - raw);
	if (raw + size + UNIT_SIZE > p + size)
		munmap(p + size, raw + size + UNIT_SIZE - (p + size));
	if (flags & DEVMEM_ALLOC_HUGE)
		madvise(p, size, MADV_HUGEPAGE);
	err = devmem_register(dm, p, size);
	if (err) {
		munmap(p, size);
		errno = -err;
		return NULL;
	}
	return p;
}

API int devmem_free(devmem_t *dm, void *addr, size_t len)
{
	size_t size = ALIGN_UP(len, PAGE_SIZE);
	int err;

	if (!dm || !span_ok(addr, size))
		return -EINVAL;
	pthread_mutex_lock(&dm->lock);
	/* the data dies with the mapping: no need to bring it back */
	err = unregister_locked(dm, addr, size, false);
	pthread_mutex_unlock(&dm->lock);
	if (!err)
		munmap(addr, size);
	return err;
}

API int devmem_migrate(devmem_t *dm, void *addr, size_t len,
		       enum devmem_target to, unsigned flags,
		       struct devmem_result *res)
{
	struct devmem_result local;
	int err;

	if (!res)
		res = &local;
	memset(res, 0, sizeof(*res));
	if (!dm || !span_ok(addr, len) || flags & ~DEVMEM_MIGRATE_4K ||
	    (to != DEVMEM_TO_DEVICE && to != DEVMEM_TO_SYSTEM))
		return -EINVAL;
	pthread_mutex_lock(&dm->lock);
	if (dm->broken)
		err = -ENOTCONN;
	else if (!dm->attached)
		err = -EINVAL; /* nothing is registered */
	else if (to == DEVMEM_TO_DEVICE)
		err = dm_migrate_to_device(dm, (uintptr_t)addr, len, flags,
					   res);
	else
		err = dm_migrate_to_system(dm, (uintptr_t)addr, len, flags,
					   res);
	pthread_mutex_unlock(&dm->lock);
	return err;
}

static int device_access(struct devmem *dm, uint16_t type, uint64_t addr,
			 size_t len, uint64_t buf, struct devmem_result *res)
{
	struct dm_access a = { addr, len, buf };
	struct devmem_result local;
	struct dm_msg rep;
	int err;

	if (!res)
		res = &local;
	memset(res, 0, sizeof(*res));
	if (!dm || !addr || !buf || !len || addr + len < addr)
		return -EINVAL;
	pthread_mutex_lock(&dm->lock);
	if (dm->broken || !dm->attached) {
		pthread_mutex_unlock(&dm->lock);
		return dm->broken ? -ENOTCONN : -EINVAL;
	}
	err = dm_call(dm, type, &a, NULL, 0, NULL, 0, &rep);
	res->pages = rep.u.result_reply.pages;
	res->faults = rep.u.result_reply.faults;
	dm_msg_release(&rep);
	pthread_mutex_unlock(&dm->lock);
	return err;
}

API int devmem_device_read(devmem_t *dm, const void *addr, size_t len,
			   void *buf, struct devmem_result *res)
{
	return device_access(dm, DM_DEVICE_READ, (uintptr_t)addr, len,
			     (uintptr_t)buf, res);
}

API int devmem_device_write(devmem_t *dm, void *addr, size_t len,
			    const void *buf, struct devmem_result *res)
{
	return device_access(dm, DM_DEVICE_WRITE, (uintptr_t)addr, len,
			     (uintptr_t)buf, res);
}

API int devmem_snapshot(devmem_t *dm, const void *addr, size_t npages,
			uint8_t *state)
{
	uint64_t a = (uintptr_t)addr;
	int err = 0;

	if (!dm || !state || !npages || a & (PAGE_SIZE - 1) ||
	    npages > (UINT64_MAX - a) >> PAGE_SHIFT)
		return -EINVAL;
	pthread_mutex_lock(&dm->lock);
	if (dm->broken) {
		pthread_mutex_unlock(&dm->lock);
		return -ENOTCONN;
	}
	if (!dm->attached) {
		/* nothing registered: nothing is managed */
		memset(state, DEVMEM_PAGE_ERROR, npages);
		pthread_mutex_unlock(&dm->lock);
		return 0;
	}
	for (size_t done = 0; done < npages && !err;) {
		struct dm_snapshot s = { a + (done << PAGE_SHIFT),
					 MIN(npages - done, DM_MAX_SNAPSHOT) };
		struct dm_msg rep;

		err = dm_call(dm, DM_SNAPSHOT, &s, NULL, 0, NULL, 0, &rep);
		if (!err && rep.ntail != s.npages)
			err = -EPROTO;
		if (!err)
			memcpy(state + done, rep.tail, s.npages);
		dm_msg_release(&rep);
		done += s.npages;
	}
	pthread_mutex_unlock(&dm->lock);
	return err;
}

API int devmem_stats(devmem_t *dm, struct devmem_stats *st)
{
	uint64_t *out = (uint64_t *)st;
	struct dm_msg rep;
	int err;

	if (!dm || !st)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&dm->lock);
	err = dm_call(dm, DM_STATS, NULL, NULL, 0, NULL, 0, &rep);
	pthread_mutex_unlock(&dm->lock);
	if (!err) {
		uint32_t n = MIN(rep.u.stats_reply.nfields,
				 (uint32_t)(sizeof(*st) / sizeof(uint64_t)));

		/* struct devmem_stats is all uint64_t, in wire order */
		for (uint32_t i = 0; i < n; i++)
			out[i] = rep.u.stats_reply.field[i];
	}
	dm_msg_release(&rep);
	return err;
}

API int devmem_inject(devmem_t *dm, int what, unsigned count)
{
	struct dm_inject inj = { (uint32_t)what, count };
	int err;

	if (!dm || (what != DEVMEM_INJECT_FAIL_HUGE_ALLOC &&
		    what != DEVMEM_INJECT_FAIL_ALLOC))
		return -EINVAL;
	pthread_mutex_lock(&dm->lock);
	err = simple_call(dm, DM_INJECT, &inj);
	pthread_mutex_unlock(&dm->lock);
	return err;
}

API const char *devmem_strerror(int err)
{
	const char *s;

	switch (err) {
	case 0:
		return "success";
	case -ENOTCONN:
		return "not connected to devmemd (the connection was lost)";
	case -ECONNREFUSED:
	case -ENOENT:
		return "no devmemd is listening on the socket";
	case -EOPNOTSUPP:
		return "the kernel lacks a userfaultfd feature devmem needs (UFFDIO_MOVE, Linux 6.8)";
	case -ENOMEM:
		return "out of device memory";
	case -EEXIST:
		return "the range overlaps a registered range";
	case -EPROTO:
		return "protocol error between libdevmem and devmemd";
	case -EPROTONOSUPPORT:
		return "devmemd speaks another protocol version";
	case -EACCES:
		return "devmemd refused this user (a devmemd serves its own user; root serves all)";
	}
	s = err < 0 ? strerrordesc_np(-err) : NULL;
	return s ? s : "unknown error";
}
