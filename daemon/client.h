/* SPDX-License-Identifier: MIT */
/*
 * A client: one process connected to devmemd, its userfaultfd, its staging
 * area, its device page table and its share of device memory.
 */
#ifndef DEVMEM_CLIENT_H
#define DEVMEM_CLIENT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "device.h"
#include "pagetable.h"
#include "protocol.h"
#include "uffd_compat.h"

/* A migration to the device between BEGIN and COMMIT (or FINISH) */
struct batch {
	bool active;
	bool committed;	    /* COMMIT done, FINISH awaited */
	uint64_t addr, end; /* the request */
	uint64_t first;	    /* va of the batch's unit 0 */
	uint32_t nunits;
	uint32_t flags;
	uint64_t busy; /* units the batch holds busy */
	uint64_t move; /* units the client moves to its staging slots */
};

/* A message from the client's userfaultfd, numbered in the order read */
struct in_hand {
	uint64_t seq;
	struct uffd_msg msg;
};

/* Non-cooperative userfaultfd events waiting for busy units (events.c) */
struct queued_event {
	struct uffd_msg msg;
	bool own; /* libdevmem's own MADV_DONTNEED of in-place copies */
};

struct event_queue {
	struct queued_event *q;
	uint32_t n, cap;
};

/* Faults to resolve again later (fault.c) */
struct fault_queue {
	struct parked_fault *f;
	uint32_t n, cap;
};

/* Folios written to staging slots by BACK, awaiting BACK_DONE */
struct back_moves {
	uint32_t n;
	struct dm_move move[DM_MAX_BATCH];
};

struct resolver;

struct client {
	struct device *dev;
	uint32_t id;
	pid_t pid;
	uid_t uid;
	atomic_int refs;
	struct list_head node; /* device->clients */

	/* set by ATTACH */
	bool attached;
	int uffd;	 /* the client's userfaultfd */
	int helper_sock; /* to the helper thread in the client */
	uint64_t uffd_features;
	uint32_t uffd_flags;
	uint64_t staging; /* nslots + nfault_slots slots of 2 MB */
	uint32_t nslots, nfault_slots;
	int proc_dirfd; /* /proc/PID, pinned to this process */
	int pagemap_fd;
	pthread_mutex_t helper_lock; /* one helper request at a time */
	uint32_t helper_seq;
	struct resolver *resolvers; /* fault.c */
	int nresolvers;
	atomic_bool stopping;
	_Atomic uint64_t fault_read_ns; /* when a resolver last read faults */
	atomic_int fault_read_cpu;	/* and on which CPU */

	pthread_mutex_t lock; /* everything below */
	pthread_cond_t idle;  /* a unit stopped being busy */
	struct pagetable pt;
	struct batch batch;
	struct back_moves back;
	struct event_queue events; /* events.c */
	/* intake: messages are read one reader at a time and numbered, so
	 * that events apply, and faults wait for them, in the kernel's order
	 * (fault.c, events.c) */
	pthread_mutex_t intake_lock;
	uint64_t intake_seq;
	struct in_hand *in_hand; /* events read, not queued yet */
	uint32_t nin_hand, in_hand_cap;
	struct fault_queue retry; /* faults deferred to the fault owner */
	bool fault_owner; /* a resolver waits (for an event to be read, or for
			   * the helper): the others stay free to read */
	uint64_t fault_slots_busy;	 /* bitmap of fault slots in use */
	atomic_uint_fast64_t used_pages; /* device pages held */
	struct counters counters;
};

static inline uint64_t slot_addr(const struct client *c, uint32_t slot)
{
	return c->staging + (uint64_t)slot * UNIT_SIZE;
}

/* A new client for a connection from pid/uid; it holds one reference. */
struct client *client_new(struct device *d, pid_t pid, uid_t uid);
void client_get(struct client *c);
void client_put(struct client *c);

/* Take over the client's userfaultfd and helper socket (ownership of the fds
 * passes to the client even on error) and start its fault resolvers. */
int client_attach(struct client *c, const struct dm_attach *a, int uffd,
		  int helper_sock);

/* The connection is gone: stop the resolvers, free all device memory, leave
 * the process (if it lives on) with no registered units. */
void client_release(struct client *c);

/* Is the client between the messages of a migration (BEGIN..FINISH,
 * BACK..BACK_DONE)?  Its units are held busy until its next message, so a
 * request that would wait for them must be refused instead (lock held). */
static inline bool client_mid_migration(const struct client *c)
{
	return c->batch.active || c->back.n;
}

/* Wait (lock held) until the unit at va is not busy; returns it, or NULL if
 * no unit exists there any more. */
struct unit *client_wait_unit(struct client *c, uint64_t va);

/* Drop a unit that holds no device memory and is not busy: unregister it
 * from the userfaultfd, take it off the LRU and free it (lock held). */
void client_unit_drop_if_empty(struct client *c, struct unit *u);

/* Clear a unit's busy flag (lock held; may free the unit) and hand back the
 * faults parked on it; the caller resolves them after unlocking.  Returns
 * how many were stored in out. */
uint32_t client_unit_unbusy(struct client *c, struct unit *u,
			    struct parked_fault *out, uint32_t max);

/* Clear a unit's busy flag and resolve the faults parked on it.  Called and
 * returns with the lock held, but drops it while resolving; the unit may be
 * gone afterwards. */
void client_unbusy_resolve(struct client *c, struct unit *u);

/* Free one device page of a unit according to the free policy (lock held).
 * Returns the pages given back to the allocator. */
unsigned client_free_page(struct client *c, struct unit *u, unsigned i);

/* Split a unit's order-9 folio: it becomes PTE-mapped; under the "split"
 * free policy its memory becomes 512 order-0 blocks (lock held).  Returns
 * true if the unit was huge. */
bool client_unit_split(struct client *c, struct unit *u);

/* Make every page of the unit's folio (if it has one) an order-0 device
 * page of its own, and give back the folio pages it no longer uses (lock
 * held): for when the folio's pages cannot stay together. */
void client_unit_unfolio(struct client *c, struct unit *u);

/* Give back all of a unit's device memory without touching the client's
 * memory (lock held).  Returns the pages that were DEVICE. */
unsigned client_unit_free_all(struct client *c, struct unit *u);

#endif /* DEVMEM_CLIENT_H */
