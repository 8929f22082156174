/* SPDX-License-Identifier: MIT */
/*
 * Device access (the equivalent of dmirror READ/WRITE) and snapshots: the
 * device's view of a client's memory.
 */
#ifndef DEVMEM_ACCESS_H
#define DEVMEM_ACCESS_H

#include "client.h"

/* Read [addr, addr + len) through the device into the client's buffer buf,
 * or write buf there: device pages in device memory, system pages in the
 * client's memory (which stays where it is).  rep->pages counts the pages
 * touched, rep->faults the device faults taken to reach system memory (one
 * per call, like dmirror).  -EINVAL: not registered; -EFAULT: a page is not
 * readable (PROT_NONE, unmapped); -EPERM: a write to a read-only mapping. */
int access_device(struct client *c, const struct dm_access *a, bool write,
		  struct dm_result_reply *rep);

/* One DEVMEM_PAGE_* byte per page of [addr, addr + npages pages). */
int access_snapshot(struct client *c, uint64_t addr, uint64_t npages,
		    uint8_t *state);

#endif /* DEVMEM_ACCESS_H */
