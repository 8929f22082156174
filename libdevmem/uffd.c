/* SPDX-License-Identifier: MIT */
/*
 * The process's userfaultfd, its staging area and the helper thread.
 *
 * devmemd reads the userfaultfd's fault events and fills pages through it,
 * but UFFDIO_MOVE only works for the fd's creator: the moves that take pages
 * out of the CPU's reach (to the device) and put whole THPs back (from the
 * device) happen here, in the client, through the staging slots.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "devmem-internal.h"
#include "uffd_compat.h"

/* Features devmem uses where the kernel has them: on the fd of the
 * registered ranges, moves, poison and the events devmemd needs to follow
 * munmap, MADV_DONTNEED/FREE and mremap; on the staging fd, moves only, so
 * that dropping staged pages never waits for devmemd. */
#define RANGE_FEATURES                                                        \
	(UFFD_FEATURE_MOVE | UFFD_FEATURE_POISON | UFFD_FEATURE_EVENT_UNMAP | \
	 UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_REMAP)
#define STAGING_FEATURES UFFD_FEATURE_MOVE

static int xioctl(int fd, unsigned long req, void *arg)
{
	int ret;

	do
		ret = ioctl(fd, req, arg);
	while (ret < 0 && errno == EINTR);
	return ret < 0 ? -errno : 0;
}

/* A new userfaultfd: handling kernel-mode faults too where we may (the
 * sysctl, CAP_SYS_PTRACE, or /dev/userfaultfd), else user-mode only. */
static int uffd_open(bool *user_mode_only)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);

	*user_mode_only = false;
	if (fd >= 0 || errno != EPERM)
		return fd >= 0 ? fd : -errno;
	fd = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		int ufd = ioctl(fd, USERFAULTFD_IOC_NEW, O_CLOEXEC);

		close(fd);
		if (ufd >= 0)
			return ufd;
	}
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	if (fd < 0)
		return -errno;
	*user_mode_only = true;
	return fd;
}

/* Open a userfaultfd with the wanted features the kernel has.  UFFDIO_API
 * can be issued once per fd, so a first fd asks what there is. */
static int uffd_create(uint64_t wanted, uint64_t *got, bool *user_mode_only)
{
	struct uffdio_api api = { .api = UFFD_API };
	int fd = uffd_open(user_mode_only), err;

	if (fd < 0)
		return fd;
	err = xioctl(fd, UFFDIO_API, &api);
	close(fd);
	if (err)
		return err;
	if (!(api.features & UFFD_FEATURE_MOVE))
		return -EOPNOTSUPP; /* UFFDIO_MOVE: Linux 6.8 */
	fd = uffd_open(user_mode_only);
	if (fd < 0)
		return fd;
	*got = api.features & wanted;
	api = (struct uffdio_api){ .api = UFFD_API, .features = *got };
	err = xioctl(fd, UFFDIO_API, &api);
	if (err) {
		close(fd);
		return err;
	}
	return fd;
}

int dm_uffd_move(int uffd, uint64_t dst, uint64_t src, uint64_t len,
		 uint64_t mode, uint64_t *moved)
{
	uint64_t done = 0;
	int tries = 0;

	while (done < len) {
		struct uffdio_move m = { .dst = dst + done,
					 .src = src + done,
					 .len = len - done,
					 .mode = mode };
		int err = xioctl(uffd, UFFDIO_MOVE, &m);

		if (!err) {
			done = len;
			break;
		}
		if (m.move > 0) {
			done += (uint64_t)m.move;
			continue;
		}
		/* -EAGAIN without progress: the address space is changing
		 * and devmemd has an event to read; it reads them at once,
		 * so wait a little (but not for ever: devmemd may be gone) */
		if (err == -EAGAIN && ++tries < 20000) {
			usleep(50);
			continue;
		}
		*moved = done;
		return err;
	}
	*moved = done;
	return 0;
}

/* Poison every hole of a MISSING-registered range, so that what was on the
 * device raises SIGBUS, then unregister it: nobody answers faults there any
 * more.  Holes that never held data fail too: loudly rather than wrongly. */
/* Read (and drop) every message waiting on the fd: events waiting to be
 * read hold their callers (munmap, madvise), and make the kernel refuse
 * UFFDIO_POISON with -EAGAIN */
static void drain(int uffd)
{
	struct uffd_msg msg[16];

	while (read(uffd, msg, sizeof(msg)) > 0)
		;
}

static void poison_range(int uffd, uint64_t start, uint64_t end)
{
	uint64_t at = start;
	struct uffdio_range r = { start, end - start };
	int tries = 0;

	while (at < end && tries < 100000) {
		struct uffdio_poison p = { .range = { at, end - at } };
		int err = xioctl(uffd, UFFDIO_POISON, &p);

		if (!err)
			break;
		if (p.updated > 0) {
			at += (uint64_t)p.updated;
		} else if (err == -EEXIST) { /* a page that is here: keep it */
			at += PAGE_SIZE;
		} else if (err == -EAGAIN) {
			drain(uffd);
			tries++;
		} else {
			break;
		}
	}
	xioctl(uffd, UFFDIO_UNREGISTER, &r);
}

/*
 * devmemd is gone, with the device memory.  Its data cannot come back:
 * make every device-resident page fail loudly (SIGBUS) instead of reading
 * zeros, wake whoever waits for a fault or an event, and let every later
 * call fail with -ENOTCONN.
 */
static void daemon_lost(struct devmem *dm)
{
	char line[512];
	FILE *f;
	int flags;

	atomic_store(&dm->lost, true);
	flags = fcntl(dm->uffd, F_GETFL);
	if (flags >= 0)
		fcntl(dm->uffd, F_SETFL, flags | O_NONBLOCK);
	drain(dm->uffd);
	f = fopen("/proc/self/smaps", "re");
	if (f) {
		uint64_t start = 0, end = 0, s, e;

		/* "um": VM_UFFD_MISSING, the units that held device pages */
		while (fgets(line, sizeof(line), f)) {
			/* a mapping's first line: "start-end perms ..." */
			if (sscanf(line, "%" SCNx64 "-%" SCNx64, &s, &e) == 2) {
				start = s;
				end = e;
				continue;
			}
			if (!strncmp(line, "VmFlags:", 8) &&
			    strstr(line, " um"))
				poison_range(dm->uffd, start, end);
		}
		fclose(f);
	}
	drain(dm->uffd);
}

static void *helper_main(void *arg)
{
	struct devmem *dm = arg;
	uint8_t buf[256];
	sigset_t all;

	/* the application's signal handlers do not run here */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	for (;;) {
		struct dm_helper_reply rep = { 0 };
		struct dm_msg m;
		uint64_t src, len;
		int err = dm_recv_msg(dm->helper_sock, buf, sizeof(buf), &m,
				      NULL, NULL);

		if (err) {
			/* devmemd is gone, or we are disconnecting */
			if (!atomic_load(&dm->detaching))
				daemon_lost(dm);
			break;
		}
		if (m.hdr.type != DM_HELPER_MOVE) {
			dm_msg_release(&m);
			break;
		}
		src = m.u.helper_move.src;
		len = m.u.helper_move.len;
		/* only ever out of our own fault slots */
		if (src < dm_slot(dm, STAGING_SLOTS) || len > UNIT_SIZE ||
		    src + len > dm_slot(dm, STAGING_SLOTS + FAULT_SLOTS)) {
			rep.status = -EINVAL;
		} else {
			/* devmemd wakes the faulting threads once it has
			 * taken note */
			rep.status = dm_uffd_move(
				dm->uffd, m.u.helper_move.dst, src, len,
				UFFDIO_MOVE_MODE_DONTWAKE, &rep.moved);
			/* no event comes of it: the slots are on the staging
			 * fd, so this cannot wait for devmemd */
			/* the slot is empty afterwards, whatever happened */
			if (rep.moved < len)
				madvise((void *)(uintptr_t)(src + rep.moved),
					len - rep.moved, MADV_DONTNEED);
		}
		err = dm_send_msg(dm->helper_sock, buf, sizeof(buf),
				  DM_HELPER_MOVE | DM_REPLY, m.hdr.id, &rep,
				  NULL, 0, NULL, 0);
		dm_msg_release(&m);
		if (err)
			break;
	}
	return NULL;
}

static int staging_create(struct devmem *dm)
{
	size_t len = (size_t)(STAGING_SLOTS + FAULT_SLOTS) * UNIT_SIZE;
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_WP };
	uint8_t *map;
	int err;

	map = mmap(NULL, len + UNIT_SIZE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (map == MAP_FAILED)
		return -errno;
	dm->staging_map = map;
	dm->staging_map_len = len + UNIT_SIZE;
	dm->staging = ALIGN_UP((uint64_t)(uintptr_t)map, UNIT_SIZE);
	/* slots hold whole folios: THPs where the kernel gives them */
	madvise((void *)(uintptr_t)dm->staging, len, MADV_HUGEPAGE);
	/* UFFDIO_MOVE needs its destination registered with the fd it is
	 * issued on; WP mode (never used to protect anything) keeps every
	 * fault of the slots ordinary: devmemd writes into empty slots */
	reg.range.start = dm->staging;
	reg.range.len = len;
	err = xioctl(dm->staging_uffd, UFFDIO_REGISTER, &reg);
	return err == -EINVAL ? -EOPNOTSUPP : err;
}

int dm_attach(struct devmem *dm)
{
	struct dm_attach a = { 0 };
	uint64_t staging_features;
	struct dm_msg rep;
	int sv[2] = { -1, -1 }, fds[2];
	bool umo;
	int err;

	if (dm->attached)
		return 0;
	dm->uffd = dm->staging_uffd = dm->helper_sock = -1;
	dm->uffd = uffd_create(RANGE_FEATURES, &dm->uffd_features,
			       &dm->user_mode_only);
	err = dm->uffd < 0 ? dm->uffd : 0;
	if (!err) {
		dm->staging_uffd =
			uffd_create(STAGING_FEATURES, &staging_features, &umo);
		err = dm->staging_uffd < 0 ? dm->staging_uffd : 0;
	}
	if (!err)
		err = staging_create(dm);
	if (!err && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		err = -errno;
	if (err)
		goto fail;
	dm->helper_sock = sv[0];
	a.uffd_features = dm->uffd_features;
	a.uffd_flags = dm->user_mode_only ? DM_UFFD_USER_MODE_ONLY : 0;
	a.nslots = STAGING_SLOTS;
	a.nfault_slots = FAULT_SLOTS;
	a.staging = dm->staging;
	fds[0] = dm->uffd;
	fds[1] = sv[1];
	err = dm_call(dm, DM_ATTACH, &a, NULL, 0, fds, 2, &rep);
	dm_msg_release(&rep);
	close(sv[1]);
	if (err)
		goto fail;
	err = -pthread_create(&dm->helper, NULL, helper_main, dm);
	if (err)
		goto fail;
	dm->helper_running = true;
	dm->attached = true;
	return 0;
fail:
	dm_detach(dm);
	return err;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

void dm_detach(struct devmem *dm)
{
	atomic_store(&dm->detaching, true);
	/* a fork()ed child shares these sockets with its parent: shutting
	 * one down would cut the parent off too */
	if (dm->helper_sock >= 0 && !dm->forked)
		shutdown(dm->helper_sock, SHUT_RDWR);
	if (dm->helper_running)
		pthread_join(dm->helper, NULL);
	dm->helper_running = false;
	close_fd(&dm->helper_sock);
	close_fd(&dm->uffd);
	close_fd(&dm->staging_uffd);
	if (dm->staging_map)
		munmap(dm->staging_map, dm->staging_map_len);
	dm->staging_map = NULL;
	dm->attached = false;
}
