/* SPDX-License-Identifier: MIT */
/* libdevmem's internals: the connection and the process's userfaultfd. */
#ifndef DEVMEM_INTERNAL_H
#define DEVMEM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "devmem.h"
#include "protocol.h"

#define STAGING_SLOTS 32 /* 2 MB slots for migrations: 64 MB per batch */
#define FAULT_SLOTS 4	 /* 2 MB slots devmemd uses to bring folios back */

struct devmem {
	pthread_mutex_t lock; /* one request at a time */
	struct devmem *next;  /* every handle of the process (fork.c) */
	int sock;
	bool broken;	  /* the connection is lost: -ENOTCONN from now on */
	atomic_bool lost; /* devmemd went away (seen by the helper thread) */
	atomic_bool detaching; /* we are closing the helper channel */
	bool forked; /* this is a fork()ed child's copy of the handle */
	uint32_t next_id;
	uint32_t client_id;
	uint64_t capacity;
	uint8_t *buf; /* DM_MAX_MSG: messages in and out */

	/* set up on the first register */
	bool attached;
	int uffd;	  /* registered ranges; devmemd reads its events */
	int staging_uffd; /* the staging slots: no events, only moves */
	uint64_t uffd_features;
	bool user_mode_only;
	uint8_t *staging_map; /* the mapping, with alignment slack */
	size_t staging_map_len;
	uint64_t staging;    /* 2 MB-aligned slots */
	uint64_t warm_slots; /* slots still holding a THP of stale data: data
			      * coming back is written into them without the
			      * kernel zeroing a new THP first */
	int helper_sock;
	pthread_t helper;
	bool helper_running;
};

static inline uint64_t dm_slot(const struct devmem *dm, uint32_t slot)
{
	return dm->staging + (uint64_t)slot * UNIT_SIZE;
}

/* Send a request and wait for its reply (dm->lock held).  Returns the
 * reply's status, or a negative errno for a broken connection (then every
 * later call fails with -ENOTCONN).  The caller releases *rep. */
int dm_call(struct devmem *dm, uint16_t type, const void *body,
	    const void *tail, uint32_t ntail, const int *fds, int nfds,
	    struct dm_msg *rep);

/* Create the userfaultfd, the staging area and the helper thread, and pass
 * them to devmemd (dm->lock held). */
int dm_attach(struct devmem *dm);
void dm_detach(struct devmem *dm);

/* UFFDIO_MOVE [src, src + len) to dst, continuing over partial moves;
 * *moved says how far it got.  Returns 0 or a negative errno. */
int dm_uffd_move(int uffd, uint64_t dst, uint64_t src, uint64_t len,
		 uint64_t mode, uint64_t *moved);

/* Bring the device pages of the registered parts of [addr, addr + len), or
 * of the whole process, back (dm->lock held) */
int dm_migrate_span_to_system(struct devmem *dm, uint64_t addr, uint64_t len);
int dm_migrate_all_to_system(struct devmem *dm);

/* Register/forget a handle for fork() handling (fork.c) */
void dm_fork_track(struct devmem *dm);
void dm_fork_untrack(struct devmem *dm);

/* devmem_migrate's two directions (dm->lock held) */
int dm_migrate_to_device(struct devmem *dm, uint64_t addr, uint64_t len,
			 unsigned flags, struct devmem_result *res);
int dm_migrate_to_system(struct devmem *dm, uint64_t addr, uint64_t len,
			 unsigned flags, struct devmem_result *res);

#endif /* DEVMEM_INTERNAL_H */
