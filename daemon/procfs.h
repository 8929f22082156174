/* SPDX-License-Identifier: MIT */
/* What devmemd learns about a client's address space from /proc/PID. */
#ifndef DEVMEM_PROCFS_H
#define DEVMEM_PROCFS_H

#include <stdbool.h>
#include <stdint.h>

/* Per-page facts from the pagemap */
#define PM_PRESENT (1u << 0) /* mapped (or swapped out): has data */
#define PM_ZERO (1u << 1)    /* the shared zero page: reads as zeros */
#define PM_HUGE (1u << 2)    /* part of a PMD-mapped THP */

/* Fill flags[i] for each page of [start, end).  Uses PAGEMAP_SCAN where the
 * kernel has it, else reads the pagemap (no zero-page or THP knowledge
 * without root).  Returns 0 or a negative errno. */
int pm_scan(int pagemap_fd, uint64_t start, uint64_t end, uint8_t *flags);

/* VMA protections, from /proc/PID/maps */
#define VMA_READ (1u << 0)
#define VMA_WRITE (1u << 1)
#define VMA_ANON_PRIVATE (1u << 2) /* private anonymous, not hugetlb */

/* Call fn for each part of [start, end) with the flags of the VMA covering
 * it (0 for a hole in the address space).  Stops at and returns fn's first
 * nonzero result; otherwise 0, or a negative errno if maps cannot be read. */
int maps_walk(int proc_dirfd, uint64_t start, uint64_t end,
	      int (*fn)(uint64_t start, uint64_t end, unsigned flags,
			void *arg),
	      void *arg);

/* 0 if all of [start, end) is mapped private anonymous memory, else -EINVAL */
int maps_check_anon(int proc_dirfd, uint64_t start, uint64_t end);

#endif /* DEVMEM_PROCFS_H */
