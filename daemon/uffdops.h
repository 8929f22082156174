/* SPDX-License-Identifier: MIT */
/*
 * userfaultfd operations devmemd performs on a client's memory through the
 * client's userfaultfd (see DESIGN.md, "Kernel facts": these act on the
 * client's mm even though devmemd is not the fd's creator).
 */
#ifndef DEVMEM_UFFDOPS_H
#define DEVMEM_UFFDOPS_H

#include <stdbool.h>
#include <stdint.h>

int uffd_register_missing(int uffd, uint64_t start, uint64_t len);
int uffd_unregister(int uffd, uint64_t start, uint64_t len);

/* Copy len bytes from src (devmemd's memory) to dst in the client and, if
 * wake, wake the faulting threads there (else the caller does, with
 * uffd_wake, once its bookkeeping is done).  Pages that are already present
 * are left as they are (another resolver won) but woken.  Returns 0, -EAGAIN
 * (the client's address space is changing: retry after reading its events)
 * or another negative errno (-ESRCH: the client's mm is gone, -ENOENT: no
 * registered mapping there). */
int uffd_copy(int uffd, uint64_t dst, const void *src, uint64_t len, bool wake);

/* Map the zero page at dst (or a zero-filled page for a write fault); the
 * same return values as uffd_copy. */
int uffd_zero(int uffd, uint64_t dst, uint64_t len, bool write, bool wake);

int uffd_wake(int uffd, uint64_t start, uint64_t len);
int uffd_poison(int uffd, uint64_t start, uint64_t len);

#endif /* DEVMEM_UFFDOPS_H */
