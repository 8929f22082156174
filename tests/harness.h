/* SPDX-License-Identifier: MIT */
/*
 * Test harness: a real devmemd (the one just built, $DEVMEMD) on a private
 * socket, and helpers the end-to-end tests share.
 */
#ifndef DEVMEM_TEST_HARNESS_H
#define DEVMEM_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "devmem.h"

#define MB2 (2ul << 20)
#define PG 4096ul

struct daemon {
	pid_t pid;
	char dir[64]; /* private directory holding the socket */
	char sock[100];
};

/* $name if set and not empty, else dflt */
const char *env_or(const char *name, const char *dflt);
/* Does a listening socket answer at path? */
bool accepts(const char *path);

/* Start devmemd --foreground --socket <private> with extra arguments (NULL
 * terminated, may be NULL); returns once it accepts connections.  The daemon
 * dies with the test process. */
void daemon_start(struct daemon *d, const char *const *args);
/* SIGTERM it and wait: returns its exit status (-1 if it did not exit
 * normally); the socket must be gone afterwards. */
int daemon_stop(struct daemon *d);
/* Connect (asserting success) */
devmem_t *daemon_connect(const struct daemon *d);

/* Run devmemctl --socket <d> args...; its stdout goes to out.  Returns its
 * exit status. */
int ctl_run(const struct daemon *d, char *out, size_t outlen,
	    const char *const *args);
/* devmemctl inject slow-events n: the next n events a resolver reads wait
 * 50 ms before devmemd queues them, as if it had been preempted */
void slow_events(const struct daemon *d, unsigned n);

/* 2 MB-aligned anonymous private mapping; huge: MADV_HUGEPAGE, else
 * MADV_NOHUGEPAGE.  Never fails (asserts). */
void *map_aligned(size_t len, int prot, bool huge);

/* Fill / check an int pattern: p[i] = i + seed */
void fill_ints(void *p, size_t len, int seed);
/* Index of the first mismatch, or -1 */
long check_ints(const void *p, size_t len, int seed);
/* Index of the first byte of [p, p + len) that is not v, or -1.  (Check
 * writes down every passing assertion: big buffers are checked in one.) */
long check_bytes(const void *p, size_t len, uint8_t v);

/* The stats of this client, asserting success */
struct devmem_stats stats_of(devmem_t *dm);
/* Wait (up to 10 s) until devmemd's total used device memory is `used` */
bool wait_used(devmem_t *dm, uint64_t used);

/* Snapshot helpers: every byte of [p, p + npages) equals v / has mask set */
bool snap_all(devmem_t *dm, const void *p, size_t npages, uint8_t v);
uint8_t snap_one(devmem_t *dm, const void *p);

/* Pages of [p, p + len) that are part of a THP in system memory */
size_t thp_pages(devmem_t *dm, const void *p, size_t len);

#endif /* DEVMEM_TEST_HARNESS_H */
