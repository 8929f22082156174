/* SPDX-License-Identifier: MIT */
/*
 * Non-cooperative userfaultfd events: what the client did to its address
 * space (munmap, MADV_DONTNEED/FREE, mremap) and what that means for its
 * device pages.
 *
 * The client's syscall blocks until devmemd reads the event, and until then
 * the kernel refuses UFFDIO_COPY and friends on its address space (-EAGAIN),
 * so resolvers read events at once; applying one may have to wait for busy
 * units, so events queue, in order, and run as soon as they can.  Requests
 * that start something new wait for the queue to drain first.
 */
#ifndef DEVMEM_EVENTS_H
#define DEVMEM_EVENTS_H

#include "client.h"

/* Queue an event read from the client's userfaultfd (numbered seq at
 * intake, and recorded in c->in_hand then) once every event read before it
 * is queued, and run what can run (lock not held). */
void events_queue(struct client *c, const struct uffd_msg *m, uint64_t seq);

/* Was an event read before seq that is not applied yet?  (lock held) */
bool events_before(struct client *c, uint64_t seq);

/* Wait until every event read so far is queued (lock not held).  The
 * client's syscall returns once its event is read, so what the client did
 * before a request is queued before the request goes on. */
void events_settle(struct client *c);

/* Run queued events while their units are idle (lock held). */
void events_run(struct client *c);

/* Wait until every event read so far is queued and applied (lock held;
 * drops it while waiting). */
void events_wait(struct client *c);

/*
 * Before devmemd fills [start, end) in the client (UFFDIO_COPY, ZEROPAGE):
 * false if an event read but not applied yet touches the span.  The kernel
 * refuses fills only until the event is read (-EAGAIN); after that, an
 * address devmemd took before an mremap may be the old place, which
 * MREMAP_DONTUNMAP leaves mapped, registered and empty, and a fill would
 * land there instead of following the pages (or refill what munmap or
 * MADV_DONTNEED dropped).  The caller leaves the pages where devmemd has
 * them, for the event to move or free, and tries again after it.
 *
 * True: no event can be read until events_fill_end(), so none that the
 * fill does not see as -EAGAIN can slip in between (lock held).
 */
bool events_fill_begin(struct client *c, uint64_t start, uint64_t end);
void events_fill_end(struct client *c);

#endif /* DEVMEM_EVENTS_H */
