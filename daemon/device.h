/* SPDX-License-Identifier: MIT */
/*
 * The emulated device: its memory pool, allocator, topology, policies,
 * counters, the LRU of device-resident units and the list of clients.
 */
#ifndef DEVMEM_DEVICE_H
#define DEVMEM_DEVICE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "buddy.h"
#include "list.h"
#include "options.h"
#include "pool.h"
#include "topology.h"

struct client;
struct unit;

/* The counters of struct devmem_stats after capacity, used, client_used */
enum counter {
	CNT_TO_DEVICE,
	CNT_TO_SYSTEM,
	CNT_HUGE,
	CNT_SPLITS,
	CNT_CPU_FAULTS,
	CNT_EVICTIONS,
	CNT_NR
};

struct counters {
	_Atomic uint64_t v[CNT_NR];
};

struct device {
	struct pool pool;
	struct buddy buddy;
	struct topology topo;
	int ncpus;
	_Atomic uint32_t policy[DM_POL_MAX];
	struct counters counters; /* all clients since start */
	uint64_t start_ms;
	uint64_t client_limit_pages;	     /* 0: no limit */
	_Atomic uint32_t inject_slow_events; /* devmemctl inject slow-events */
	char socket_path[DM_STR];

	pthread_mutex_t lru_lock;
	struct list_head lru; /* units with device pages, oldest first */

	pthread_mutex_t clients_lock;
	struct list_head clients;
	uint32_t nclients;
	uint32_t next_client_id;
};

int device_init(struct device *d, const struct dm_config *cfg);
void device_destroy(struct device *d);

static inline uint32_t device_policy(struct device *d, enum dm_policy_kind k)
{
	return atomic_load_explicit(&d->policy[k], memory_order_relaxed);
}

/* Count n events for client c and for the device. */
void count(struct client *c, enum counter what, uint64_t n);

/* Allocate a device folio of the given order for client c.  When the device
 * is full and the policy is "evict", least recently used units of any client
 * go back to their owners first; when the client is at its limit
 * (--client-limit), its own.  Returns 0, -ENOMEM, or -EAGAIN for an
 * injected failure. */
int device_alloc(struct device *d, struct client *c, unsigned order,
		 uint32_t *dpfn);

/* Keep a unit with device pages on the LRU, as most recently used.  Called
 * with the unit's client locked. */
void device_lru_touch(struct device *d, struct unit *u);
void device_lru_remove(struct device *d, struct unit *u);

/* Evict every unit of every client (devmemctl evict / tests).  Returns the
 * number of units evicted. */
unsigned device_evict_all(struct device *d);

uint64_t now_ms(void);

#endif /* DEVMEM_DEVICE_H */
