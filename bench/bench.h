/* SPDX-License-Identifier: MIT */
/*
 * devmem-bench: shared types of the benchmark program.
 *
 * The program is split by what each part measures or produces:
 *   bench.c        options, the run's order, exit status
 *   daemon.c       finding or starting devmemd, asking devmemctl
 *   machine.c      what the run ran on
 *   migrate.c      section 1 (the kernel's benchmark) and 2 (CPU faults)
 *   ceiling.c      section 3 (memcpy, raw userfaultfd round trip)
 *   concurrency.c  section 4 (N clients at once)
 *   report.c       the text report and the targets (report.h: derived
 *                  figures shared by all outputs)
 *   output.c       --json and --csv
 *   plot.c         --plot, the gnuplot chart
 *   util.c         clocks, statistics, buffers, messages
 */
#ifndef DEVMEM_BENCH_H
#define DEVMEM_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "devmem.h"

#define BENCH_NAME "devmem-bench"
#define MAX_SIZES 32
#define MAX_WARNINGS 64
#define GIB (1024.0 * 1024.0 * 1024.0)
/* Each concurrency client's buffer: at most this, at most the largest
 * --sizes entry */
#define CONC_MAX_SIZE (64ull << 20)

/* The sections of a run, as named by --only */
enum section {
	SEC_KERNEL = 1u << 0,
	SEC_FAULT = 1u << 1,
	SEC_CEILING = 1u << 2,
	SEC_CONCURRENCY = 1u << 3,
	SEC_ALL = (1u << 4) - 1,
};

/* The two rows of each size: THP-backed (2 MB units) and 4 KB pages */
enum mode { MODE_THP = 0, MODE_4K = 1, NMODES };

/* Median, minimum and maximum of a set of samples */
struct summary {
	double median, min, max;
	unsigned n;
};

/* Section 1: one size in one mode; times in ms per direction */
struct mig_result {
	bool done;   /* measured, and the data survived the round trips */
	bool failed; /* a devmem call failed or the data was wrong */
	struct summary s2d_ms, d2s_ms;
	uint64_t expect_huge; /* 2 MB units per migration we expect */
	uint64_t min_huge[2], max_huge[2]; /* res.huge seen, per direction */
	uint64_t splits;		   /* res.split, all migrations */
	uint64_t thp_units; /* units that were THPs after the fill */
};

/* Section 2: CPU-fault-driven return of one size in one mode */
struct fault_result {
	bool done, failed;
	struct summary fault_us; /* per faulting touch */
	struct summary total_ms; /* touching the whole buffer */
	uint64_t expect_faults;	 /* per pass: units (THP) or pages (4 KB) */
	uint64_t faults; /* per pass, from devmemd's cpu_faults counter */
	bool faults_known;
};

/* Section 3: memcpy between two THP-backed buffers of one size; and into
 * a freshly mapped THP-backed buffer, whose pages the kernel allocates and
 * zeroes on the way (what any migration back to system memory pays) */
struct memcpy_result {
	bool done;
	struct summary ms;
	struct summary fresh_ms;
};

/* Where the raw userfaultfd handler thread runs */
enum placement { PLACE_ANY = 0, PLACE_SAME_CPU, PLACE_OTHER_CPU, NPLACES };

struct uffd_result {
	bool done[NPLACES];
	struct summary us[NPLACES]; /* per fault */
	unsigned faults;	    /* touches per pass */
	bool user_mode_only;
	char error[160];
};

/* Section 4 */
struct conc_result {
	bool done, failed;
	unsigned clients;
	uint64_t size;			       /* per client */
	struct summary one_s2d_ms, one_d2s_ms; /* one client */
	struct summary all_s2d_ms, all_d2s_ms; /* all clients, wall time */
};

struct machine {
	char cpu_model[128];
	long cpus_online;
	int cores, pus, packages; /* from hwloc, -1 if unknown */
	char kernel[400];
	char thp_enabled[32], thp_defrag[32];
	int numa_nodes; /* -1 if unknown */
	uint64_t node_memory[64];
	uint64_t total_memory; /* of all NUMA nodes, from hwloc */
	uint64_t mem_total;    /* /proc/meminfo MemTotal */
	char hostname[64];
};

struct metadata {
	bool ok;
	uint64_t metadata_bytes, capacity;
	char note[200]; /* why it is unavailable */
};

struct options {
	uint64_t sizes[MAX_SIZES];
	unsigned nsizes;
	unsigned iterations;
	unsigned sections;
	unsigned clients;
	const char *json, *csv, *plot;
	const char *devmemd; /* --devmemd */
	const char *socket;  /* --socket */
	bool quiet;
};

/* Where devmemd is, and whether this run started it */
struct daemon {
	char socket[108];
	bool private_daemon;
	pid_t pid;
	char binary[4096];
	char tmpdir[64];
	uint64_t capacity;
};

struct bench {
	struct options opt;
	struct daemon dmd;
	devmem_t *dm;
	struct machine mach;
	struct mig_result mig[MAX_SIZES][NMODES];
	struct fault_result fault[MAX_SIZES][NMODES];
	struct memcpy_result mcp[MAX_SIZES];
	struct uffd_result uffd;
	struct conc_result conc;
	struct metadata meta;
	char *warnings[MAX_WARNINGS];
	unsigned nwarnings;
	bool failed;	  /* exit 1 */
	char started[40]; /* ISO 8601, UTC */
	double elapsed_s;
};

/* util.c */
double now_ns(void);
void summarize(double *v, unsigned n, struct summary *out);
double gibps(uint64_t bytes, double ms);
const char *size_str(uint64_t bytes, char *buf, size_t len);
void *map_aligned(size_t len, bool thp);
void unmap_aligned(void *p, size_t len);
void fill_pattern(void *p, size_t len, uint64_t seed);
bool check_pattern(const void *p, size_t len, uint64_t seed,
		   size_t *bad_offset);
void progress(const struct bench *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void progress_iter(const struct bench *b, unsigned k, unsigned n);
void progress_done(const struct bench *b);
void note(const struct bench *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void warn(struct bench *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void fail(struct bench *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void dm_fail(struct bench *b, const char *what, int err);

/* daemon.c */
int daemon_connect(struct bench *b);
void daemon_stop(struct bench *b);
void daemon_cleanup_on_signal(void);
void read_metadata(struct bench *b);
int find_tool(const char *name, char *out, size_t len);

/* machine.c */
void machine_probe(struct machine *m);

/* migrate.c */
void run_kernel(struct bench *b);
void run_fault(struct bench *b);

/* ceiling.c */
void run_memcpy(struct bench *b);
void run_uffd(struct bench *b);
const char *placement_name(int pl);

/* concurrency.c */
void run_concurrency(struct bench *b);

/* report.c */
void print_header(const struct bench *b, FILE *f);
void print_kernel(const struct bench *b, FILE *f);
void print_fault(const struct bench *b, FILE *f);
void print_ceiling(const struct bench *b, FILE *f);
void print_concurrency(const struct bench *b, FILE *f);
void print_targets(const struct bench *b, FILE *f);
void print_warnings(const struct bench *b, FILE *f);
int write_json(const struct bench *b, const char *path);
int write_csv(const struct bench *b, const char *path);

/* plot.c */
bool plot_path_ok(const char *path); /* a .png or .svg name */
int write_plot(struct bench *b, const char *path);

/* The throughput of a summary of times: median from the median time, the
 * range from the other end of the time range. */
struct summary rate_of(const struct summary *ms, uint64_t bytes);

#endif /* DEVMEM_BENCH_H */
