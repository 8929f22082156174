/* SPDX-License-Identifier: MIT */
/*
 * The migration engine: system -> device (migrate.c) and device -> system
 * (return.c).
 *
 * To the device (three messages, because only the client can take its own
 * pages out of the CPU's reach atomically, with UFFDIO_MOVE):
 *   BEGIN   devmemd registers the batch's units with the client's userfaultfd
 *           and marks them busy: from now on a CPU access to a page that
 *           leaves faults to devmemd and waits.
 *           The client moves the units' pages to its staging slots.
 *   COMMIT  devmemd reads the staged pages (PAGEMAP_SCAN tells THPs, holes
 *           and zero pages apart), allocates device folios, copies, and marks
 *           the pages DEVICE.  Units the device could not take, and pages the
 *           client could not move (read-only mappings), are reported back.
 *   FINISH  after the client moved refused units back and dropped in-place
 *           copies, devmemd releases the last units of the batch.
 *
 * To the system: devmemd copies 4 KB pages in with UFFDIO_COPY itself; a
 * whole 2 MB folio is written to a staging slot and the client (or its helper
 * thread, for a CPU fault) moves it into place as a THP.
 */
#ifndef DEVMEM_MIGRATE_H
#define DEVMEM_MIGRATE_H

#include "client.h"
#include "protocol.h"

/* 0 if [addr, addr + len) is a page-aligned, non-empty, non-wrapping span
 * and flags are known; -EPROTO before ATTACH; else -EINVAL. */
int migrate_check_span(const struct client *c, uint64_t addr, uint64_t len,
		       uint32_t flags);

int migrate_begin(struct client *c, const struct dm_migrate *m,
		  struct dm_begin_reply *rep);
int migrate_commit(struct client *c, const struct dm_migrate *m,
		   struct dm_result_reply *rep);
int migrate_finish(struct client *c, const struct dm_migrate *m);

int migrate_back(struct client *c, const struct dm_migrate *m,
		 struct dm_result_reply *rep, struct dm_move *moves);
int migrate_back_done(struct client *c, const struct dm_move *moves, uint32_t n,
		      struct dm_result_reply *rep);

/* Bring pages [first, last) of a unit back as 4 KB pages with UFFDIO_COPY
 * and free their device memory (lock held, unit held busy by the caller:
 * the lock is dropped while the client's address space is changing).
 * Pages whose data cannot land (the mapping is gone) stay on the device for
 * the pending event to decide.  Returns the pages returned. */
unsigned unit_return_4k(struct client *c, struct unit *u, unsigned first,
			unsigned last);

/* Bring one page of a unit back for a CPU fault (counted as one), and wake
 * the faulting thread (lock held).  Returns 0, -EAGAIN (nothing changed:
 * retry once the pending event is read and applied) or another error (the
 * page stays on the device). */
int unit_return_page(struct client *c, struct unit *u, unsigned i);

/* Write a unit's whole folio to the staging slot at slot_va, from where the
 * client moves it into place as a THP.  The caller holds the unit busy and
 * not the lock.  Returns 0 or a negative errno. */
int folio_write_slot(struct client *c, const struct unit *u, uint64_t slot_va);

/* The client moved [0, moved) of a unit written to a slot into place: free
 * that part, bring the rest back with UFFDIO_COPY (lock held, unit busy).
 * Returns true if the folio came back whole. */
bool unit_finish_huge(struct client *c, struct unit *u, uint64_t moved);

/* True if every page of the unit's folio reads as zeros */
bool unit_all_zero(const struct unit *u);

/* Evict the least recently used unit of any client (of client only, if
 * not NULL).  Returns 1 if one went back to its owner, 0 if nothing could
 * be evicted. */
int migrate_evict_one(struct device *d, struct client *only);

#endif /* DEVMEM_MIGRATE_H */
