/* SPDX-License-Identifier: MIT */
/*
 * The CPU fault path: resolver threads wait on a client's userfaultfd with
 * poll() (not through io_uring: that adds ~28 us per event on this machine
 * kind) and bring device pages back.  There is one resolver per CPU, pinned,
 * so that a fault is picked up by the thread sharing the faulting thread's
 * CPU without a cross-CPU wake-up (~25-30 us on a VM).  The read itself is
 * done one resolver at a time, and every message numbered: events must be
 * applied in the order the kernel sent them, and faults must wait for the
 * events read before them (see events.c).
 *
 * Rule that keeps faults and migrations apart: a client's registered unit is
 * only ever filled under the client's lock, or while the filler holds the
 * unit busy (and then faults on it are parked, and resolved when it is
 * released).
 */
#ifndef DEVMEM_FAULT_H
#define DEVMEM_FAULT_H

#include <stdint.h>

#include "pagetable.h"

struct client;

int fault_start(struct client *c);
void fault_stop(struct client *c);

/* Resolve (or park) one fault (lock not held). */
void fault_resolve(struct client *c, const struct parked_fault *f);

/* Resolve the faults that had to wait (lock not held). */
void fault_retry(struct client *c);

/* Ask the client's helper thread to UFFDIO_MOVE [src, src + len) to dst.
 * *moved is set to the bytes moved.  Returns 0 or a negative errno. */
int helper_move(struct client *c, uint64_t src, uint64_t dst, uint64_t len,
		uint64_t *moved);

#endif /* DEVMEM_FAULT_H */
