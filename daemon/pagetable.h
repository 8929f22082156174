/* SPDX-License-Identifier: MIT */
/*
 * A client's device page table.
 *
 * The client registers ranges of its address space (an interval set, kept
 * sorted and disjoint).  The address space is cut into 2 MB-aligned units; a
 * unit that holds device pages, or is being migrated, has a struct unit with
 * one dpte per 4 KB page, found by its address in a hash table (so that an
 * mremap can move device pages anywhere).  Pages without a dpte in the DEVICE
 * state are system memory (or not populated): the kernel knows which, devmemd
 * does not need to.
 *
 * A unit's pages that are on the device, or being migrated, are registered
 * with the client's userfaultfd in MISSING mode, so that CPU access faults to
 * devmemd; once a unit holds no device page it is unregistered again, so that
 * system memory runs as plain memory (DESIGN.md, semantics 0).
 *
 * All of it is protected by the client's lock.
 */
#ifndef DEVMEM_PAGETABLE_H
#define DEVMEM_PAGETABLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "list.h"

struct client;

enum dpte_state { DPTE_SYSTEM = 0, DPTE_DEVICE = 1 };

/* Who holds a busy unit */
enum unit_owner {
	UNIT_IDLE = 0,
	BUSY_REQUEST, /* the client's own migration (between its messages) */
	BUSY_FAULT,   /* a fault resolver bringing the folio back */
	BUSY_EVICT,   /* an evictor */
};

#define DPTE_ZERO \
	(1u << 0) /* reads as zeros: its device memory is never read */
#define DPTE_FOLIO \
	(1u << 1) /* part of an order-9 device folio whose page k is
			       * always at page k of this unit: head is
			       * dpfn & ~(FOLIO_PAGES - 1) */

struct dpte {
	uint32_t dpfn;
	uint8_t state;
	uint8_t flags;
	uint16_t unused;
};

struct unit {
	uint64_t va;	    /* 2 MB-aligned */
	uint64_t serial;    /* tells a unit from a later one at the same va */
	struct unit *hnext; /* hash chain */
	struct client *client;
	uint16_t ndevice; /* pages in DPTE_DEVICE */
	bool huge; /* one order-9 folio mapped at va: all 512 pages DEVICE */
	bool registered;  /* (part of) it is MISSING-registered */
	atomic_uint busy; /* enum unit_owner: who holds it; faults are parked */
	bool on_lru;
	struct list_head lru; /* device->lru, protected by device->lru_lock */
	struct dpte pte[FOLIO_PAGES];
};

struct span {
	uint64_t start, end;
};

struct parked_fault {
	uint64_t addr;
	uint64_t flags; /* UFFD_PAGEFAULT_FLAG_* */
	uint64_t seq;	/* when it was read (see client.h, intake) */
};

struct pagetable {
	struct span *ranges; /* registered: sorted, disjoint */
	uint32_t nranges, ranges_cap;
	uint64_t registered_bytes;
	struct unit **buckets; /* units by va */
	uint32_t nbuckets, nunits;
	struct parked_fault *parked;
	uint32_t nparked, parked_cap;
	uint64_t next_serial;
};

void pt_init(struct pagetable *pt);
/* Frees every unit; device memory must have been released. */
void pt_destroy(struct pagetable *pt);

/* Add [start, end): -EEXIST if it overlaps a registered range. */
int pt_add_range(struct pagetable *pt, uint64_t start, uint64_t end);
/* Remove the range that is exactly [start, end): -EINVAL if none. */
int pt_remove_range(struct pagetable *pt, uint64_t start, uint64_t end);
/* Remove [start, end) from whatever ranges it touches (mremap over managed
 * memory); -ENOMEM if a range could not be cut. */
int pt_carve(struct pagetable *pt, uint64_t start, uint64_t end);
/* Is any of [start, end) registered? */
bool pt_intersects(const struct pagetable *pt, uint64_t start, uint64_t end);
/* Is all of [addr, addr + len) registered (len > 0, no wrap)? */
bool pt_covered(const struct pagetable *pt, uint64_t addr, uint64_t len);
/* Call fn for each registered part of [start, end). */
void pt_for_each_registered(const struct pagetable *pt, uint64_t start,
			    uint64_t end,
			    void (*fn)(uint64_t s, uint64_t e, void *arg),
			    void *arg);

static inline unsigned unit_page(uint64_t addr)
{
	return (unsigned)((addr & UNIT_MASK) >> PAGE_SHIFT);
}

/* The unit at va (2 MB-aligned), or NULL */
struct unit *pt_unit(const struct pagetable *pt, uint64_t va);
/* The unit at va, created if need be (NULL: out of memory) */
struct unit *pt_unit_get(struct pagetable *pt, uint64_t va, struct client *c);
/* Detach and free a unit (it must hold no device memory) */
void pt_unit_free(struct pagetable *pt, struct unit *u);
/* The addresses of the units that meet [start, end), in order, in a new
 * array (*n of them; NULL if none or out of memory: -ENOMEM).  Spans can be
 * as large as the address space; the units are as many as device memory. */
int pt_units_in(const struct pagetable *pt, uint64_t start, uint64_t end,
		uint64_t **vas, uint32_t *n);

/* Every unit, in no particular order; fn may free the unit it gets */
void pt_for_each_unit(struct pagetable *pt,
		      void (*fn)(struct unit *u, void *arg), void *arg);

/* Faults that arrived while their unit was busy */
int pt_park(struct pagetable *pt, const struct parked_fault *f);
/* Move the parked faults in [start, end) to out (at most max); returns how
 * many. */
uint32_t pt_unpark(struct pagetable *pt, uint64_t start, uint64_t end,
		   struct parked_fault *out, uint32_t max);

#endif /* DEVMEM_PAGETABLE_H */
