/* SPDX-License-Identifier: MIT */
/*
 * Copy workers: the copies between a client's memory and device memory
 * (process_vm_readv/writev) are the only work a migration must do, and one
 * thread of kernel copy reaches only about half of memcpy's bandwidth on
 * this machine kind, so a batch's copies are spread over all CPUs.  The
 * caller works through its own batch too: a batch never waits for a busy
 * pool.
 */
#ifndef DEVMEM_COPIER_H
#define DEVMEM_COPIER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

struct copy_job {
	pid_t pid;
	bool to_client; /* process_vm_writev, else process_vm_readv */
	const struct iovec *local, *remote;
	unsigned nlocal, nremote;
	size_t len; /* bytes the job must move */
	int err;    /* out: 0 or a negative errno */
};

/* Start n - 1 helper threads (the caller of copier_run is the n-th). */
int copier_start(unsigned n);
void copier_stop(void);

/* Run the jobs, in parallel where helpers are free; returns when all are
 * done, each with its err set. */
void copier_run(struct copy_job *jobs, unsigned n);

#endif /* DEVMEM_COPIER_H */
