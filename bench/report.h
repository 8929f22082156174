/* SPDX-License-Identifier: MIT */
/* devmem-bench: figures derived from the measurements, shared by the text
 * report, JSON, CSV and the plot. */
#ifndef DEVMEM_BENCH_REPORT_H
#define DEVMEM_BENCH_REPORT_H

#include "bench.h"

#define MAX_TARGETS 8

enum target_status { TARGET_NA = 0, TARGET_MET, TARGET_NOT_MET, TARGET_INFO };

/* One line of the targets summary */
struct target {
	char name[96];
	const char *unit; /* "x memcpy", "x raw uffd", "%", "bytes/GiB" */
	double value;	  /* NAN if not measured */
	int status;
	char detail[256];
};

unsigned compute_targets(const struct bench *b, struct target *t);
const char *target_status_name(int status);

/* memcpy GiB/s of size i (median), NAN if not measured */
double memcpy_rate(const struct bench *b, unsigned i);
/* GiB/s of memcpy into a freshly mapped buffer of size i (median) */
double memcpy_fresh_rate(const struct bench *b, unsigned i);
/* a / b, NAN if either is missing */
double ratio(double a, double b);
/* the raw userfaultfd round trip (µs) 4 KB faults are compared with: the
 * fastest handler placement, and which one it was (-1: none measured) */
double uffd_ceiling_us(const struct bench *b);
int uffd_ceiling_place(const struct bench *b);
/* size i's THP row moved 2 MB units only and its 4K row none */
bool rows_as_labelled(const struct bench *b, int i);
/* the index of the size the targets are stated at, -1 if none */
int target_size_index(const struct bench *b);

#endif /* DEVMEM_BENCH_REPORT_H */
