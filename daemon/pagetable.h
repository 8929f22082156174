/* SPDX-License-Identifier: MIT */
/*
 * A client's device page table.
 *
 * A client registers ranges of its address space.  Each range is cut into
 * 2 MB-aligned units (the first and last may be partial); a unit that holds
 * device pages, or is being migrated, has a struct unit with one dpte per
 * 4 KB page.  Pages without a dpte in the DEVICE state are system memory (or
 * not populated): the kernel knows which, devmemd does not need to.
 *
 * A unit with device pages is registered with the client's userfaultfd in
 * MISSING mode, so that CPU access to a device page faults to devmemd; a unit
 * without device pages is unregistered again, so that system memory runs as
 * plain memory (DESIGN.md, semantics 0).
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
	BUSY_FAULT, /* a fault resolver bringing the folio back */
	BUSY_EVICT, /* an evictor */
};

#define DPTE_ZERO (1u << 0) /* reads as zeros: its device memory is never read */
#define DPTE_FOLIO (1u << 1) /* part of an order-9 device folio: head is
			       * dpfn & ~(FOLIO_PAGES - 1) */

struct dpte {
	uint32_t dpfn;
	uint8_t state;
	uint8_t flags;
	uint16_t unused;
};

struct unit {
	uint64_t va; /* 2 MB-aligned */
	uint64_t serial; /* tells a unit from a later one at the same va */
	struct client *client;
	uint16_t ndevice; /* pages in DPTE_DEVICE */
	bool huge; /* one order-9 folio mapped at va: all 512 pages DEVICE */
	bool registered; /* MISSING-registered with the client's uffd */
	atomic_uint busy; /* enum unit_owner: who holds it; faults are parked */
	bool on_lru;
	struct list_head lru; /* device->lru, protected by device->lru_lock */
	struct dpte pte[FOLIO_PAGES];
};

struct range {
	uint64_t start, end;
	uint64_t base; /* start rounded down to 2 MB */
	uint32_t nunits;
	struct unit **units; /* NULL where a unit has no device state */
};

struct parked_fault {
	uint64_t addr;
	uint64_t flags; /* UFFD_PAGEFAULT_FLAG_* */
};

struct pagetable {
	struct range **ranges; /* sorted by start, disjoint */
	uint32_t nranges, cap;
	uint64_t registered_bytes;
	struct parked_fault *parked;
	uint32_t nparked, parked_cap;
	uint64_t next_serial;
};

void pt_init(struct pagetable *pt);
/* Frees every range and unit; device memory must have been released. */
void pt_destroy(struct pagetable *pt);

/* Add [start, end): -EEXIST if it overlaps a registered range. */
int pt_add_range(struct pagetable *pt, uint64_t start, uint64_t end);
/* Remove the range that is exactly [start, end): -EINVAL if none. */
int pt_remove_range(struct pagetable *pt, uint64_t start, uint64_t end);

/* The range holding addr, or NULL. */
struct range *pt_find_range(const struct pagetable *pt, uint64_t addr);
/* The range holding all of [addr, addr + len), or NULL. */
struct range *pt_find_span(const struct pagetable *pt, uint64_t addr,
			   uint64_t len);

static inline uint32_t range_unit_index(const struct range *r, uint64_t addr)
{
	return (uint32_t)((addr - r->base) / UNIT_SIZE);
}

static inline struct unit *range_unit(const struct range *r, uint64_t addr)
{
	return r->units[range_unit_index(r, addr)];
}

static inline unsigned unit_page(uint64_t addr)
{
	return (unsigned)((addr & UNIT_MASK) >> PAGE_SHIFT);
}

/* The unit at addr, created if it does not exist (NULL: out of memory). */
struct unit *pt_unit_get(struct pagetable *pt, struct range *r, uint64_t addr,
			 struct client *c);
/* The part of unit u that lies inside its range. */
void unit_span(const struct range *r, const struct unit *u, uint64_t *start,
	       uint64_t *end);
/* Detach and free a unit (it must hold no device memory). */
void pt_unit_free(struct range *r, struct unit *u);

/* Faults that arrived while their unit was busy */
int pt_park(struct pagetable *pt, uint64_t addr, uint64_t flags);
/* Move the parked faults in [start, end) to out (at most max); returns how
 * many. */
uint32_t pt_unpark(struct pagetable *pt, uint64_t start, uint64_t end,
		   struct parked_fault *out, uint32_t max);

#endif /* DEVMEM_PAGETABLE_H */
