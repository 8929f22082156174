/* SPDX-License-Identifier: MIT */
/*
 * soak: a long randomized run of several devmem clients against one devmemd.
 *
 * Every client process owns a few buffers (devmem_alloc()ed with and without
 * THP, and plain mmaps registered at unaligned page offsets) and keeps a
 * model of each 4 KB page: its content is a function of (buffer, page,
 * generation), generation 0 being zeros, and what the client knows of where
 * the page is (system, device, unknown).  It runs random operations --
 * migrations either way (whole buffers, sub-ranges, 2 MB or 4 KB), CPU reads
 * and writes, device reads and writes (whole pages and byte ranges written
 * piecewise), MADV_DONTNEED, MADV_FREE, free and re-allocation, unregister
 * and register, mremap of whole buffers and of 2 MB units (to aligned and
 * unaligned places, with and without MREMAP_DONTUNMAP), fork(), snapshots,
 * fault injection -- and checks every byte it reads, and every snapshot,
 * against the model.
 *
 * The parent starts a private devmemd (or uses --socket), SIGKILLs a client
 * now and then and starts another in its place, evicts all device memory
 * and switches policies now and then, samples devmemd's memory, fds and
 * threads, and at the end checks that device memory, fds and threads are
 * back to where they were and that devmemd's memory outside the device pool
 * did not grow.
 *
 * Not part of `make check`: `make soak` runs it, CI runs it for minutes.
 * Exit status 0 only if nothing mismatched, nothing leaked, no client hung
 * or crashed, and devmemd is alive (and, if it is ours, exits cleanly).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "devmem.h"

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

#define PG PAGE_SIZE
#define MB2 UNIT_SIZE
#define UNIT_PAGES FOLIO_PAGES
#define MAX_CLIENTS 64
#define MAX_BUFS 8
#define MAX_BUF_PAGES 4096 /* 16 MB */
#define SCRATCH (4ul << 20)
#define SCRATCH_PAGES (SCRATCH / PG)
#define RING 32
#define MAX_FAIL 64
#define MAX_REPORTS 20 /* detailed mismatch reports per client */
#define GOLD 0x9e3779b97f4a7c15ull
#define CHILD_GEN 0xfffffff0u /* generation a fork()ed child writes */

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define ADD(x, v) __atomic_fetch_add(&(x), (v), __ATOMIC_RELAXED)

/* --- operations and counters --- */

#define OP_LIST(X)                              \
	X(MIGRATE_DEV, "migrate_to_device", 14) \
	X(MIGRATE_SYS, "migrate_to_system", 7)  \
	X(CPU_READ, "cpu_read", 14)             \
	X(CPU_WRITE, "cpu_write", 12)           \
	X(DEV_READ, "device_read", 8)           \
	X(DEV_WRITE, "device_write", 8)         \
	X(DONTNEED, "madv_dontneed", 4)         \
	X(MADV_FREE, "madv_free", 2)            \
	X(REALLOC, "free_realloc", 3)           \
	X(REREGISTER, "unregister_register", 2) \
	X(MREMAP, "mremap", 4)                  \
	X(MREMAP_UNITS, "mremap_units", 2)      \
	X(FORK, "fork", 1)                      \
	X(SNAPSHOT, "snapshot", 6)              \
	X(VERIFY_ALL, "verify_buffer", 2)       \
	X(INJECT, "inject_fail_huge", 1)

#define OP_ENUM(e, name, w) OP_##e,
enum op { OP_LIST(OP_ENUM) OP_MAX };
#define OP_NAME(e, name, w) name,
static const char *const op_names[] = { OP_LIST(OP_NAME) };
#define OP_WEIGHT(e, name, w) w,
static const unsigned op_weights[] = { OP_LIST(OP_WEIGHT) };

/* Counted by the clients; the last seven are devmem_stats() figures of the
 * client's current connection, refreshed now and then */
#define CNT_LIST(X)                                                       \
	X(mismatches)	/* data that is not what the model says */        \
	X(state_errors) /* snapshots, registrations, results */           \
	X(errors)	/* calls that failed */                           \
	X(pages_verified)                                                 \
	X(pages_cpu_written)                                              \
	X(bytes_device_read)                                              \
	X(bytes_device_written)                                           \
	X(device_faults) /* devmem_result.faults of device accesses */    \
	X(enomem)                                                         \
	X(mremap_moved)                                                   \
	X(mremap_efault)                                                  \
	X(mremap_efault_all_system)                                       \
	X(mremap_efault_partial) /* the kernel moved part, then EFAULT */ \
	X(mremap_dontunmap)                                               \
	X(fork_children)                                                  \
	X(buffers_created)                                                \
	X(device_pages_checked) /* snapshot: DEVICE where migrated */     \
	X(evicted_before_check)                                           \
	X(st_to_device_pages)                                             \
	X(st_to_system_pages)                                             \
	X(st_huge_migrations)                                             \
	X(st_splits)                                                      \
	X(st_cpu_faults)                                                  \
	X(st_evictions)                                                   \
	X(st_client_used)

#define CNT_ENUM(n) C_##n,
enum cnt { CNT_LIST(CNT_ENUM) C_MAX };
#define CNT_NAME(n) #n,
static const char *const cnt_names[] = { CNT_LIST(CNT_NAME) };
#define C_FIRST_GAUGE C_st_to_device_pages

/* --- memory shared by the parent and every client --- */

struct slot {
	int pid;
	int killing;  /* the parent sent SIGKILL on purpose */
	int hung;     /* ... because it hung */
	int finished; /* the client ended normally and checked for leaks */
	uint32_t incarnation;
	uint64_t seed;
	uint64_t start_ms;
	uint64_t heartbeat_ms;
	uint64_t touching; /* the page the client's CPU is at (hangs) */
	uint64_t ops[OP_MAX];
	uint64_t cnt[C_MAX];
	char last_op[200];
};

struct shared {
	int stop;
	unsigned nfail;
	char fail[MAX_FAIL][512];
	struct slot slot[MAX_CLIENTS];
};

static struct shared *SH;

/* --- options --- */

static struct {
	unsigned seconds, clients;
	uint64_t seed, client_seed;
	bool client_seed_set;
	const char *devmemd, *socket, *size, *json;
	char size_buf[32];
	const char *dargs[16];
	int ndargs;
	unsigned kill_interval, evict_interval, policy_interval;
	bool policy_interval_set;
	unsigned hang_timeout, rss_slack_mb;
	uint64_t op_mask;
	bool trace, quiet, paranoid, stop_on_failure;
	/* derived */
	char sock[108];
	uint64_t deadline_ms;
	pid_t parent;
} O = {
	.seconds = 60,
	.clients = 4,
	.kill_interval = 10,
	.evict_interval = 7,
	.policy_interval = 13,
	.hang_timeout = 60,
	.rss_slack_mb = 64,
	.op_mask = ~0ull,
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t T0;

static double elapsed_s(void)
{
	return (double)(now_ms() - T0) / 1000.0;
}

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

/* One write(2) per message, so that lines of several processes do not mix */
static void __attribute__((format(printf, 1, 2))) say(const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	if (buf[n - 1] != '\n')
		buf[n++] = '\n';
	if (write(STDERR_FILENO, buf, (size_t)n) < 0)
		return;
}

/* A failure: printed, and kept for the summary and the JSON file */
static void __attribute__((format(printf, 1, 2))) failure(const char *fmt, ...)
{
	char buf[1024];
	unsigned k;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	say("soak: FAILURE: %s", buf);
	k = ADD(SH->nfail, 1);
	if (k < MAX_FAIL) {
		size_t n = MIN(strlen(buf), sizeof(SH->fail[k]) - 1);

		memcpy(SH->fail[k], buf, n);
		SH->fail[k][n] = '\0';
	}
}

/* ====================================================================== */
/* The client                                                             */
/* ====================================================================== */

enum loc { LOC_UNK = 0, LOC_SYS = 1, LOC_DEV = 2 };
#define LOC_MASK 3
#define MAYBE_ZERO 4 /* MADV_FREE: the old data or zeros */

enum buf_kind { BK_ALLOC_HUGE, BK_ALLOC, BK_MMAP, BK_MAX };
static const char *const kind_names[] = { "alloc-huge", "alloc", "mmap" };

struct buf {
	bool live;
	int kind;
	uint64_t uid;
	uint8_t *addr;
	size_t len, npages;
	uint32_t *gen, *prev; /* content generation; the one before */
	uint32_t *ev; /* the client's eviction count when it went to device */
	uint8_t *st;  /* LOC_* | MAYBE_ZERO */
};

struct client {
	int slot;
	uint32_t inc;
	uint64_t rng;
	devmem_t *dm;
	struct slot *sh;
	struct buf b[MAX_BUFS];
	int nbufs;
	uint32_t next_gen;
	uint64_t next_uid;
	uint8_t *scratch, *scratch2, *scratch3;
	uint64_t opno;
	enum op cur;
	bool in_child; /* a fork()ed child: no devmem calls */
	unsigned reports;
	bool ring_dumped;
	char ring[RING][200];
};

static uint64_t rnd(struct client *cl)
{
	/* xorshift64* */
	cl->rng ^= cl->rng >> 12;
	cl->rng ^= cl->rng << 25;
	cl->rng ^= cl->rng >> 27;
	return cl->rng * 0x2545f4914f6cdd1dull;
}

static size_t rnd_below(struct client *cl, size_t n)
{
	return n ? (size_t)(rnd(cl) % n) : 0;
}

static bool chance(struct client *cl, unsigned pct)
{
	return rnd_below(cl, 100) < pct;
}

#define CNT(cl, c, n) ADD((cl)->sh->cnt[C_##c], (uint64_t)(n))

static void __attribute__((format(printf, 2, 3)))
oplog(struct client *cl, const char *fmt, ...)
{
	char *line = cl->ring[cl->opno % RING];
	int n;
	va_list ap;

	n = snprintf(line, sizeof(cl->ring[0]), "#%" PRIu64 " %s ", cl->opno,
		     op_names[cl->cur]);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(cl->ring[0]) - (size_t)n, fmt, ap);
	va_end(ap);
	memcpy(cl->sh->last_op, line, sizeof(cl->sh->last_op));
	if (O.trace)
		say("client %d.%u: %s", cl->slot, cl->inc, line);
}

/* Append the outcome to the current operation's line */
static void __attribute__((format(printf, 2, 3)))
opres(struct client *cl, const char *fmt, ...)
{
	char *line = cl->ring[cl->opno % RING];
	size_t n = strlen(line);
	va_list ap;

	if (n + 4 >= sizeof(cl->ring[0]))
		return;
	line[n++] = ' ';
	line[n++] = ':';
	line[n++] = ' ';
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(cl->ring[0]) - n, fmt, ap);
	va_end(ap);
	if (O.trace)
		say("client %d.%u:   -> %s", cl->slot, cl->inc, line + n);
}

static void dump_ring(struct client *cl)
{
	if (cl->ring_dumped)
		return;
	cl->ring_dumped = true;
	say("client %d.%u (seed %#" PRIx64 "): the last operations:", cl->slot,
	    cl->inc, cl->sh->seed);
	for (uint64_t k = cl->opno >= RING ? cl->opno - RING + 1 : 0;
	     k <= cl->opno; k++)
		if (cl->ring[k % RING][0])
			say("    %s", cl->ring[k % RING]);
}

/* A failure of this client: counted under what, printed with the client's
 * identity */
static void __attribute__((format(printf, 3, 4)))
cfail(struct client *cl, enum cnt what, const char *fmt, ...)
{
	char buf[900];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	ADD(cl->sh->cnt[what], 1);
	if (O.stop_on_failure)
		STORE(SH->stop, 1);
	if (cl->reports++ < MAX_REPORTS) {
		failure("client %d.%u (pid %d, seed %#" PRIx64 ") op #%" PRIu64
			" %s%s: %s",
			cl->slot, cl->inc, (int)getpid(), cl->sh->seed,
			cl->opno, op_names[cl->cur],
			cl->in_child ? " (forked child)" : "", buf);
		dump_ring(cl);
	}
}

static uint8_t *page_addr(const struct buf *b, size_t pg)
{
	return b->addr + pg * PG;
}

static int buf_index(const struct client *cl, const struct buf *b)
{
	return (int)(b - cl->b);
}

static uint64_t page_seed(uint64_t uid, size_t pg, uint32_t gen)
{
	return mix64(uid ^ mix64(((uint64_t)gen << 32) ^ pg));
}

static void fill_page(void *p, uint64_t uid, size_t pg, uint32_t gen)
{
	uint64_t *w = p, s;

	if (!gen) {
		memset(p, 0, PG);
		return;
	}
	s = page_seed(uid, pg, gen);
	for (size_t i = 0; i < PG / 8; i++)
		w[i] = s ^ (i * GOLD);
}

static bool all_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

/* What a page that is not what it should be holds, as far as we can tell */
static void describe(struct client *cl, const uint8_t *page, char *out,
		     size_t size)
{
	const uint64_t *w = (const uint64_t *)page;
	uint64_t s = w[0];
	size_t good = 0;

	if (all_zero(page, PG)) {
		snprintf(out, size, "all zeros");
		return;
	}
	if ((w[1] ^ s) != GOLD) {
		snprintf(out, size, "not a pattern page");
		return;
	}
	for (size_t i = 0; i < PG / 8; i++)
		good += w[i] == (s ^ (i * GOLD));
	for (int bi = 0; bi < MAX_BUFS; bi++) {
		struct buf *o = &cl->b[bi];

		if (!o->live)
			continue;
		for (size_t q = 0; q < o->npages; q++) {
			const char *which = NULL;
			uint32_t g = 0;

			if (o->gen[q] && page_seed(o->uid, q, o->gen[q]) == s)
				which = "current", g = o->gen[q];
			else if (o->prev[q] &&
				 page_seed(o->uid, q, o->prev[q]) == s)
				which = "previous", g = o->prev[q];
			if (which) {
				snprintf(
					out, size,
					"%zu/512 words of buffer %d page %zu generation %u (its %s)",
					good, bi, q, g, which);
				return;
			}
		}
	}
	snprintf(out, size,
		 "%zu/512 words of an unknown pattern page (seed %#" PRIx64 ")",
		 good, s);
}

/* Report a page whose bytes [off, off + len) are got instead of exp */
static void report_page(struct client *cl, struct buf *b, size_t pg, size_t off,
			size_t len, const uint8_t *got, const uint8_t *exp,
			const char *how)
{
	char what[200] = "", snap[32] = "";
	size_t first = len, ndiff = 0;
	uint64_t gw = 0, ew = 0;
	uint8_t st;

	for (size_t i = 0; i < len; i++)
		if (got[i] != exp[i]) {
			if (first == len)
				first = i;
			ndiff++;
		}
	if (first == len)
		first = 0;
	/* the 8 bytes around the first difference */
	memcpy(&gw, got + (first & ~7ul), MIN(8, len - (first & ~7ul)));
	memcpy(&ew, exp + (first & ~7ul), MIN(8, len - (first & ~7ul)));
	if (off == 0 && len == PG)
		describe(cl, got, what, sizeof(what));
	if (!cl->in_child && !devmem_snapshot(cl->dm, page_addr(b, pg), 1, &st))
		snprintf(snap, sizeof(snap), "%#x", st);
	cfail(cl, C_mismatches,
	      "MISMATCH (%s) buffer %d (uid %#" PRIx64
	      ", %s, %p+%#zx) page %zu byte %#zx: expected %016" PRIx64
	      " got %016" PRIx64
	      " (%zu of %zu bytes differ; model: generation %u, previous %u, %s%s; page holds %s; snapshot now %s)",
	      how, buf_index(cl, b), b->uid, kind_names[b->kind], b->addr,
	      b->len, pg, off + first, ew, gw, ndiff, len, b->gen[pg],
	      b->prev[pg],
	      (const char *[]){ "location unknown", "in system memory",
				"on the device", "?" }[b->st[pg] & LOC_MASK],
	      b->st[pg] & MAYBE_ZERO ? ", maybe zeros (MADV_FREE)" : "",
	      what[0] ? what : "-", snap[0] ? snap : "-");
}

/* Check bytes [off, off + len) of page pg, as read into data */
static bool check_bytes(struct client *cl, struct buf *b, size_t pg, size_t off,
			size_t len, const uint8_t *data, const char *how)
{
	uint64_t exp[PG / 8];

	fill_page(exp, b->uid, pg, b->gen[pg]);
	CNT(cl, pages_verified, 1);
	if (!memcmp((uint8_t *)exp + off, data, len))
		return true;
	if (b->st[pg] & MAYBE_ZERO && all_zero(data, len))
		return true;
	{
		uint8_t got[PG];

		memcpy(got, data, len); /* data may be the live page */
		report_page(cl, b, pg, off, len, got, (uint8_t *)exp + off,
			    how);
	}
	return false;
}

/* Pages [pg0, pg0 + n) were touched by the CPU: in system memory now, and
 * whatever was on the device in their 2 MB units may have come back */
static void touched(struct buf *b, size_t pg0, size_t n)
{
	uintptr_t a = (uintptr_t)b->addr;
	uintptr_t u0 = ALIGN_DOWN(a + pg0 * PG, MB2);
	uintptr_t u1 = ALIGN_UP(a + (pg0 + n) * PG, MB2);
	size_t q0 = u0 <= a ? 0 : (u0 - a) / PG;
	size_t q1 = MIN(b->npages, (u1 - a) / PG);

	for (size_t q = q0; q < q1; q++)
		if ((b->st[q] & LOC_MASK) == LOC_DEV)
			b->st[q] = (uint8_t)((b->st[q] & ~LOC_MASK) | LOC_UNK);
	for (size_t q = pg0; q < pg0 + n; q++)
		b->st[q] = (uint8_t)((b->st[q] & ~LOC_MASK) | LOC_SYS);
}

static void set_loc(struct buf *b, size_t pg0, size_t n, enum loc l)
{
	for (size_t q = pg0; q < pg0 + n; q++)
		b->st[q] = (uint8_t)((b->st[q] & ~LOC_MASK) | l);
}

static uint32_t new_gen(struct client *cl)
{
	if (++cl->next_gen >= CHILD_GEN)
		cl->next_gen = 1;
	return cl->next_gen;
}

static void cpu_write(struct client *cl, struct buf *b, size_t pg0, size_t n)
{
	uint32_t g = new_gen(cl);

	for (size_t pg = pg0; pg < pg0 + n; pg++) {
		b->prev[pg] = b->gen[pg];
		b->gen[pg] = g;
		b->st[pg] &= (uint8_t)~MAYBE_ZERO;
		STORE(cl->sh->touching, (uintptr_t)page_addr(b, pg));
		fill_page(page_addr(b, pg), b->uid, pg, g);
	}
	touched(b, pg0, n);
	CNT(cl, pages_cpu_written, n);
}

static unsigned cpu_read(struct client *cl, struct buf *b, size_t pg0, size_t n,
			 const char *how)
{
	unsigned bad = 0;

	for (size_t pg = pg0; pg < pg0 + n; pg++) {
		STORE(cl->sh->touching, (uintptr_t)page_addr(b, pg));
		if (!check_bytes(cl, b, pg, 0, PG, page_addr(b, pg), how)) {
			bad++;
			/* carry on from known content */
			cpu_write(cl, b, pg, 1);
		}
	}
	touched(b, pg0, n);
	return bad;
}

/* The client's devmem_stats(), kept in the shared slot; returns its
 * evictions (UINT64_MAX on error) */
static uint64_t refresh_stats(struct client *cl)
{
	struct devmem_stats st;
	int err = devmem_stats(cl->dm, &st);

	if (err) {
		cfail(cl, C_errors, "devmem_stats: %s", devmem_strerror(err));
		return UINT64_MAX;
	}
	STORE(cl->sh->cnt[C_st_to_device_pages], st.to_device_pages);
	STORE(cl->sh->cnt[C_st_to_system_pages], st.to_system_pages);
	STORE(cl->sh->cnt[C_st_huge_migrations], st.huge_migrations);
	STORE(cl->sh->cnt[C_st_splits], st.splits);
	STORE(cl->sh->cnt[C_st_cpu_faults], st.cpu_faults);
	STORE(cl->sh->cnt[C_st_evictions], st.evictions);
	STORE(cl->sh->cnt[C_st_client_used], st.client_used);
	return st.evictions;
}

static struct buf *pick_buf(struct client *cl)
{
	int k = (int)rnd_below(cl, (size_t)cl->nbufs);

	for (int i = 0; i < MAX_BUFS; i++)
		if (cl->b[i].live && !k--)
			return &cl->b[i];
	abort();
}

/* Index of the first whole 2 MB unit of b, and how many there are */
static size_t units_in(const struct buf *b, size_t *first)
{
	uintptr_t a = (uintptr_t)b->addr, u0 = ALIGN_UP(a, MB2);
	uintptr_t u1 = ALIGN_DOWN(a + b->len, MB2);

	*first = (u0 - a) / PG;
	return u1 > u0 ? (u1 - u0) / MB2 : 0;
}

static void pick_range(struct client *cl, struct buf *b, size_t maxpages,
		       size_t *pg0, size_t *n)
{
	size_t np = b->npages, want, first, nu;

	maxpages = MIN(maxpages, np);
	switch (rnd_below(cl, 6)) {
	case 0:
		want = np;
		break;
	case 1:
		want = 1;
		break;
	case 2:
		want = 1 + rnd_below(cl, MIN(np, 64));
		break;
	case 3:
		nu = units_in(b, &first);
		if (nu && maxpages >= UNIT_PAGES) {
			size_t k =
				1 +
				rnd_below(cl, MIN(nu, maxpages / UNIT_PAGES));
			size_t u = rnd_below(cl, nu - k + 1);

			*pg0 = first + u * UNIT_PAGES;
			*n = k * UNIT_PAGES;
			return;
		}
		/* fall through */
	default:
		want = 1 + rnd_below(cl, np);
		break;
	}
	want = MIN(want, maxpages);
	*pg0 = rnd_below(cl, np - want + 1);
	*n = want;
}

/* --- buffers --- */

static void buf_model_free(struct buf *b)
{
	free(b->gen);
	free(b->prev);
	free(b->ev);
	free(b->st);
	b->gen = b->prev = b->ev = NULL;
	b->st = NULL;
	b->live = false;
}

static bool buf_model_alloc(struct client *cl, struct buf *b)
{
	b->gen = calloc(b->npages, sizeof(*b->gen));
	b->prev = calloc(b->npages, sizeof(*b->prev));
	b->ev = calloc(b->npages, sizeof(*b->ev));
	b->st = calloc(b->npages, 1);
	if (!b->gen || !b->prev || !b->ev || !b->st) {
		cfail(cl, C_errors, "out of memory for the model");
		buf_model_free(b);
		return false;
	}
	set_loc(b, 0, b->npages, LOC_SYS);
	return true;
}

/* Mostly big buffers (several clients together must overfill the device,
 * so that it evicts), some small ones for the edge cases */
static size_t rand_pages(struct client *cl)
{
	size_t r = rnd_below(cl, 100), top;

	if (r < 45) /* 2..8 whole 2 MB units */
		return UNIT_PAGES *
		       (2 + rnd_below(cl, MAX_BUF_PAGES / UNIT_PAGES - 1));
	if (r < 75) /* 8..16 MB, any page count */
		return MAX_BUF_PAGES / 2 + rnd_below(cl, MAX_BUF_PAGES / 2 + 1);
	/* log-uniform 4 KB .. 16 MB */
	top = (size_t)1 << rnd_below(cl, 13);
	return MIN((size_t)MAX_BUF_PAGES, top + rnd_below(cl, top));
}

static bool create_buf(struct client *cl, struct buf *b)
{
	size_t np = rand_pages(cl), len = np * PG;
	int kind = (int)rnd_below(cl, BK_MAX), err;
	uint8_t *p;

	memset(b, 0, sizeof(*b));
	b->kind = kind;
	b->npages = np;
	b->len = len;
	b->uid = ((uint64_t)(cl->slot + 1) << 56) ^ ((uint64_t)cl->inc << 40) ^
		 ++cl->next_uid;
	if (kind != BK_MMAP) {
		p = devmem_alloc(cl->dm, len,
				 kind == BK_ALLOC_HUGE ? DEVMEM_ALLOC_HUGE : 0);
		if (!p) {
			cfail(cl, C_errors, "devmem_alloc(%zu): %s", len,
			      strerror(errno));
			return false;
		}
	} else {
		size_t span = len + 2 * MB2,
		       off = rnd_below(cl, UNIT_PAGES) * PG;
		uint8_t *raw = mmap(NULL, span, PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		int adv;

		if (raw == MAP_FAILED) {
			cfail(cl, C_errors, "mmap(%zu): %s", span,
			      strerror(errno));
			return false;
		}
		p = (uint8_t *)ALIGN_UP((uintptr_t)raw, MB2) + off;
		if (p > raw)
			munmap(raw, (size_t)(p - raw));
		munmap(p + len, (size_t)(raw + span - (p + len)));
		adv = (int)rnd_below(cl, 3);
		if (adv < 2)
			madvise(p, len, adv ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
		err = devmem_register(cl->dm, p, len);
		if (err) {
			cfail(cl, C_errors, "devmem_register(%p, %zu): %s", p,
			      len, devmem_strerror(err));
			munmap(p, len);
			return false;
		}
	}
	b->addr = p;
	if (!buf_model_alloc(cl, b)) {
		devmem_free(cl->dm, p, len);
		return false;
	}
	b->live = true;
	cl->nbufs++;
	CNT(cl, buffers_created, 1);
	switch (rnd_below(cl, 3)) {
	case 0: /* all data */
		cpu_write(cl, b, 0, np);
		break;
	case 1: /* nothing: holes */
		break;
	default: /* some */
		for (size_t pg = 0; pg < np; pg++)
			if (chance(cl, 50))
				cpu_write(cl, b, pg, 1);
		break;
	}
	return true;
}

static void free_buf(struct client *cl, struct buf *b, bool verify)
{
	int err;

	if (verify)
		cpu_read(cl, b, 0, b->npages, "before free");
	if (chance(cl, 50)) {
		err = devmem_free(cl->dm, b->addr, b->len);
		if (err) {
			cfail(cl, C_errors, "devmem_free(%p, %zu): %s", b->addr,
			      b->len, devmem_strerror(err));
			munmap(b->addr, b->len);
		}
	} else {
		err = devmem_unregister(cl->dm, b->addr, b->len);
		if (err)
			cfail(cl, C_errors, "devmem_unregister(%p, %zu): %s",
			      b->addr, b->len, devmem_strerror(err));
		else if (chance(cl, 50)) /* plain memory now: all there */
			cpu_read(cl, b, 0, b->npages, "after unregister");
		munmap(b->addr, b->len);
	}
	buf_model_free(b);
	cl->nbufs--;
}

/* After an mremap: make [addr, addr + len) registered, whether or not the
 * registration followed the mapping.  Returns the first register's result
 * (0: nothing was registered there, -EEXIST: some or all was), or 1 if
 * something else failed. */
static int ensure_registered(struct client *cl, uint8_t *addr, size_t len,
			     size_t *holes)
{
	size_t np = len / PG;
	uint8_t *st;
	int first, err;

	*holes = 0;
	first = devmem_register(cl->dm, addr, len); /* waits for events */
	if (first != -EEXIST) {
		if (first)
			cfail(cl, C_errors, "devmem_register(%p, %zu): %s",
			      addr, len, devmem_strerror(first));
		return first ? 1 : 0;
	}
	st = malloc(np);
	if (!st)
		return 1;
	err = devmem_snapshot(cl->dm, addr, np, st);
	if (err) {
		cfail(cl, C_errors, "devmem_snapshot(%p, %zu): %s", addr, np,
		      devmem_strerror(err));
		free(st);
		return 1;
	}
	for (size_t i = 0; i < np;) {
		size_t j = i;

		if (st[i] != DEVMEM_PAGE_ERROR) {
			i++;
			continue;
		}
		while (j < np && st[j] == DEVMEM_PAGE_ERROR)
			j++;
		*holes += j - i;
		err = devmem_register(cl->dm, addr + i * PG, (j - i) * PG);
		if (err)
			cfail(cl, C_errors,
			      "devmem_register(%p, %zu) of a part left unregistered: %s",
			      addr + i * PG, (j - i) * PG,
			      devmem_strerror(err));
		i = j;
	}
	free(st);
	return first;
}

/* --- migrations --- */

/* For an -EINVAL: which pages of the span devmemd does not manage */
static void unmanaged(struct client *cl, uint8_t *addr, size_t np, char *out,
		      size_t size)
{
	uint8_t *st = malloc(np);
	size_t nerr = 0, first = 0, last = 0;

	if (st && !devmem_snapshot(cl->dm, addr, np, st)) {
		for (size_t i = 0; i < np; i++)
			if (st[i] == DEVMEM_PAGE_ERROR) {
				if (!nerr++)
					first = i;
				last = i;
			}
		snprintf(
			out, size,
			" (snapshot: %zu pages unmanaged, first %zu, last %zu)",
			nerr, first, last);
	}
	free(st);
}

/* Print our VMAs around [addr, addr + len), with their flags (um: armed
 * for userfaultfd missing faults) */
static void dump_vmas(struct client *cl, const uint8_t *addr, size_t len)
{
	uintptr_t lo = ALIGN_DOWN((uintptr_t)addr, MB2),
		  hi = ALIGN_UP((uintptr_t)addr + len, MB2);
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512], range[128] = "";
	bool in = false;

	if (!f)
		return;
	say("client %d.%u: VMAs around %p+%#zx:", cl->slot, cl->inc, addr, len);
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;

		if (((line[0] >= '0' && line[0] <= '9') ||
		     (line[0] >= 'a' && line[0] <= 'f')) &&
		    sscanf(line, "%lx-%lx", &s, &e) == 2) {
			in = e > lo && s < hi;
			line[strcspn(line, "\n")] = 0;
			snprintf(range, sizeof(range), "%.100s", line);
		} else if (in && !strncmp(line, "VmFlags:", 8)) {
			line[strcspn(line, "\n")] = 0;
			say("    %s  [%s]", range, line + 9);
		}
	}
	fclose(f);
}

static int do_migrate(struct client *cl, struct buf *b, size_t pg0, size_t n,
		      enum devmem_target to, unsigned flags)
{
	struct devmem_result res;
	uint64_t ev0 = 0;
	int err;

	if (to == DEVMEM_TO_DEVICE)
		ev0 = refresh_stats(cl);
	err = devmem_migrate(cl->dm, page_addr(b, pg0), n * PG, to, flags,
			     &res);
	if (err)
		opres(cl, "migrate %zu+%zu to %s: %s", pg0, n,
		      to ? "device" : "system", devmem_strerror(err));
	else
		opres(cl,
		      "migrate %zu+%zu to %s: %" PRIu64 " pages, %" PRIu64
		      " huge, %" PRIu64 " split",
		      pg0, n, to ? "device" : "system", res.pages, res.huge,
		      res.split);
	if (err) {
		char why[160] = "";

		if (err == -EINVAL) {
			unmanaged(cl, page_addr(b, pg0), n, why, sizeof(why));
			dump_vmas(cl, page_addr(b, pg0), n * PG);
		}
		if (err == -ENOMEM)
			CNT(cl, enomem, 1);
		else
			cfail(cl, C_errors,
			      "devmem_migrate(buffer %d %p+%#zx, %zu pages, to %s, flags %#x): %s%s",
			      buf_index(cl, b), b->addr, pg0 * PG, n,
			      to ? "device" : "system", flags,
			      devmem_strerror(err), why);
		touched(b, pg0, n);
		set_loc(b, pg0, n, LOC_UNK);
		return err;
	}
	if (res.pages != n && to == DEVMEM_TO_DEVICE && ev0 != UINT64_MAX &&
	    refresh_stats(cl) != ev0) {
		/* one of our units already there was evicted meanwhile */
		CNT(cl, evicted_before_check, 1);
	} else if (res.pages != n)
		cfail(cl, C_state_errors,
		      "devmem_migrate(buffer %d %p+%#zx, %zu pages, to %s, flags %#x) succeeded with %" PRIu64
		      " pages at the target",
		      buf_index(cl, b), b->addr, pg0 * PG, n,
		      to ? "device" : "system", flags, res.pages);
	if (to == DEVMEM_TO_DEVICE) {
		set_loc(b, pg0, n, ev0 == UINT64_MAX ? LOC_UNK : LOC_DEV);
		for (size_t q = pg0; q < pg0 + n; q++)
			b->ev[q] = (uint32_t)ev0;
	} else {
		/* a partial folio may have come back whole */
		touched(b, pg0, n);
	}
	return 0;
}

static void op_migrate(struct client *cl, enum devmem_target to)
{
	struct buf *b = pick_buf(cl);
	unsigned flags = chance(cl, 30) ? DEVMEM_MIGRATE_4K : 0;
	size_t pg0, n;

	if (to == DEVMEM_TO_DEVICE && chance(cl, 40)) { /* keep it full */
		pg0 = 0;
		n = b->npages;
	} else {
		pick_range(cl, b, b->npages, &pg0, &n);
	}
	oplog(cl, "buffer %d pages %zu+%zu flags %#x", buf_index(cl, b), pg0, n,
	      flags);
	do_migrate(cl, b, pg0, n, to, flags);
	if (to == DEVMEM_TO_SYSTEM && chance(cl, 30))
		cpu_read(cl, b, pg0, MIN(n, 16), "after migrate to system");
}

/* --- CPU and device access --- */

static void op_cpu_read(struct client *cl)
{
	struct buf *b = pick_buf(cl);
	size_t pg0, n;

	pick_range(cl, b, 512, &pg0, &n);
	oplog(cl, "buffer %d pages %zu+%zu", buf_index(cl, b), pg0, n);
	cpu_read(cl, b, pg0, n, "CPU read");
}

static void op_cpu_write(struct client *cl)
{
	struct buf *b = pick_buf(cl);
	size_t pg0, n;

	pick_range(cl, b, 512, &pg0, &n);
	oplog(cl, "buffer %d pages %zu+%zu", buf_index(cl, b), pg0, n);
	cpu_write(cl, b, pg0, n);
	if (chance(cl, 20))
		cpu_read(cl, b, pg0, n, "CPU read after write");
}

static void op_verify_all(struct client *cl)
{
	struct buf *b = pick_buf(cl);

	oplog(cl, "buffer %d (%zu pages)", buf_index(cl, b), b->npages);
	cpu_read(cl, b, 0, b->npages, "buffer check");
}

/* Check [start, end) bytes of the buffer, read into data */
static void check_span(struct client *cl, struct buf *b, size_t start,
		       size_t end, const uint8_t *data, const char *how)
{
	for (size_t x = start; x < end;) {
		size_t pg = x / PG, off = x % PG, len = MIN(PG - off, end - x);

		check_bytes(cl, b, pg, off, len, data + (x - start), how);
		x += len;
	}
}

static void op_device_read(struct client *cl)
{
	struct buf *b = pick_buf(cl);
	struct devmem_result res;
	size_t pg0, n, start, end;
	int err;

	pick_range(cl, b, SCRATCH_PAGES, &pg0, &n);
	start = pg0 * PG;
	end = (pg0 + n) * PG;
	if (chance(cl, 30)) { /* a byte range */
		start += rnd_below(cl, PG);
		end -= rnd_below(cl, end - start);
	}
	oplog(cl, "buffer %d bytes %#zx..%#zx", buf_index(cl, b), start, end);
	err = devmem_device_read(cl->dm, b->addr + start, end - start,
				 cl->scratch, &res);
	if (err) {
		cfail(cl, C_errors,
		      "devmem_device_read(buffer %d %p+%#zx, %zu): %s",
		      buf_index(cl, b), b->addr, start, end - start,
		      devmem_strerror(err));
		return;
	}
	CNT(cl, device_faults, res.faults);
	CNT(cl, bytes_device_read, end - start);
	check_span(cl, b, start, end, cl->scratch, "device read");
}

static void report_span(struct client *cl, struct buf *b, size_t start,
			const uint8_t *got, const uint8_t *exp, size_t len,
			const char *how)
{
	size_t i = 0;

	while (i < len && got[i] == exp[i])
		i++;
	if (i == len)
		return;
	{
		size_t x = start + i, pg = x / PG, off = x % PG;
		size_t plen = MIN(PG - off, len - i);

		report_page(cl, b, pg, off, plen, got + i, exp + i, how);
	}
}

/* A device write of new content; sometimes in up to three byte-range pieces
 * in random order, the device's view checked between pieces */
static void op_device_write(struct client *cl)
{
	struct buf *b = pick_buf(cl);
	bool pieces = chance(cl, 30);
	struct devmem_result res;
	size_t pg0, n, total, cut[4];
	uint32_t g = new_gen(cl);
	bool done[3] = { false, false, false }, maybe = false;
	int err, order[3] = { 0, 1, 2 };

	pick_range(cl, b, pieces ? 256 : SCRATCH_PAGES, &pg0, &n);
	total = n * PG;
	for (size_t i = 0; i < n; i++) {
		fill_page(cl->scratch + i * PG, b->uid, pg0 + i, g);
		maybe |= (b->st[pg0 + i] & MAYBE_ZERO) != 0;
	}
	if (!pieces) {
		oplog(cl, "buffer %d pages %zu+%zu", buf_index(cl, b), pg0, n);
		err = devmem_device_write(cl->dm, page_addr(b, pg0), total,
					  cl->scratch, &res);
		if (err) {
			cfail(cl, C_errors,
			      "devmem_device_write(buffer %d %p+%#zx, %zu): %s",
			      buf_index(cl, b), b->addr, pg0 * PG, total,
			      devmem_strerror(err));
			/* unknown content now: rewrite from the CPU */
			cpu_write(cl, b, pg0, n);
			return;
		}
		CNT(cl, device_faults, res.faults);
		CNT(cl, bytes_device_written, total);
	} else {
		cut[0] = 0;
		cut[3] = total;
		cut[1] = 1 + rnd_below(cl, total - 1);
		cut[2] = cut[1] + rnd_below(cl, total - cut[1]);
		for (int i = 2; i > 0; i--) {
			int j = (int)rnd_below(cl, (size_t)i + 1), t = order[i];

			order[i] = order[j];
			order[j] = t;
		}
		oplog(cl,
		      "buffer %d pages %zu+%zu in pieces %#zx %#zx, order %d%d%d",
		      buf_index(cl, b), pg0, n, cut[1], cut[2], order[0],
		      order[1], order[2]);
		for (int k = 0; k < 3; k++) {
			int p = order[k];
			size_t len = cut[p + 1] - cut[p];

			if (len) {
				err = devmem_device_write(
					cl->dm, page_addr(b, pg0) + cut[p], len,
					cl->scratch + cut[p], &res);
				if (err) {
					cfail(cl, C_errors,
					      "devmem_device_write(buffer %d %p+%#zx, %zu): %s",
					      buf_index(cl, b), b->addr,
					      pg0 * PG + cut[p], len,
					      devmem_strerror(err));
					cpu_write(cl, b, pg0, n);
					return;
				}
				CNT(cl, device_faults, res.faults);
				CNT(cl, bytes_device_written, len);
			}
			done[p] = true;
			if (k == 2 || maybe || !chance(cl, 50))
				continue;
			/* old content but for the pieces written so far */
			for (size_t i = 0; i < n; i++)
				fill_page(cl->scratch3 + i * PG, b->uid,
					  pg0 + i, b->gen[pg0 + i]);
			for (int q = 0; q < 3; q++)
				if (done[q])
					memcpy(cl->scratch3 + cut[q],
					       cl->scratch + cut[q],
					       cut[q + 1] - cut[q]);
			err = devmem_device_read(cl->dm, page_addr(b, pg0),
						 total, cl->scratch2, &res);
			if (err) {
				cfail(cl, C_errors,
				      "devmem_device_read(buffer %d %p+%#zx, %zu): %s",
				      buf_index(cl, b), b->addr, pg0 * PG,
				      total, devmem_strerror(err));
				continue;
			}
			CNT(cl, pages_verified, n);
			if (memcmp(cl->scratch2, cl->scratch3, total))
				report_span(
					cl, b, pg0 * PG, cl->scratch2,
					cl->scratch3, total,
					"device read between partial device writes");
		}
	}
	for (size_t pg = pg0; pg < pg0 + n; pg++) {
		b->prev[pg] = b->gen[pg];
		b->gen[pg] = g;
		b->st[pg] &= (uint8_t)~MAYBE_ZERO;
	}
	if (chance(cl, 25))
		cpu_read(cl, b, pg0, MIN(n, 8), "CPU read after device write");
}

/* --- madvise --- */

static void op_madvise(struct client *cl, int advice)
{
	struct buf *b = pick_buf(cl);
	size_t pg0, n;

	pick_range(cl, b, b->npages, &pg0, &n);
	oplog(cl, "buffer %d pages %zu+%zu", buf_index(cl, b), pg0, n);
	if (madvise(page_addr(b, pg0), n * PG, advice)) {
		cfail(cl, C_errors, "madvise(%p, %zu, %d): %s",
		      page_addr(b, pg0), n * PG, advice, strerror(errno));
		return;
	}
	for (size_t pg = pg0; pg < pg0 + n; pg++) {
		if (advice == MADV_DONTNEED) {
			b->prev[pg] = b->gen[pg];
			b->gen[pg] = 0;
			b->st[pg] = LOC_UNK;
		} else {
			if (b->gen[pg])
				b->st[pg] |= MAYBE_ZERO;
			set_loc(b, pg, 1, LOC_UNK);
		}
	}
	/* at once: a fault may race with devmemd reading the event */
	if (chance(cl, 50))
		cpu_read(cl, b, pg0, MIN(n, 8), "CPU read just after madvise");
}

/* --- registration --- */

static void op_reregister(struct client *cl)
{
	struct buf *b = pick_buf(cl);
	uint8_t *st;
	int err;

	oplog(cl, "buffer %d (%p, %zu pages)", buf_index(cl, b), b->addr,
	      b->npages);
	err = devmem_unregister(cl->dm, b->addr, b->len);
	if (err) {
		cfail(cl, C_errors, "devmem_unregister(%p, %zu): %s", b->addr,
		      b->len, devmem_strerror(err));
		return;
	}
	st = malloc(b->npages);
	if (st && !devmem_snapshot(cl->dm, b->addr, b->npages, st)) {
		for (size_t i = 0; i < b->npages; i++)
			if (st[i] != DEVMEM_PAGE_ERROR) {
				cfail(cl, C_state_errors,
				      "buffer %d page %zu is %#x after devmem_unregister, not ERROR",
				      buf_index(cl, b), i, st[i]);
				break;
			}
	}
	free(st);
	/* plain memory, with all the data */
	cpu_read(cl, b, 0, b->npages, "after unregister");
	err = devmem_register(cl->dm, b->addr, b->len);
	if (err)
		cfail(cl, C_errors, "devmem_register(%p, %zu) again: %s",
		      b->addr, b->len, devmem_strerror(err));
	set_loc(b, 0, b->npages, LOC_SYS);
}

static void op_realloc(struct client *cl)
{
	struct buf *b = pick_buf(cl);
	bool verify = chance(cl, 50);

	oplog(cl, "buffer %d (%p, %zu pages, %s)%s", buf_index(cl, b), b->addr,
	      b->npages, kind_names[b->kind], verify ? " checked first" : "");
	free_buf(cl, b, verify);
	create_buf(cl, b);
}

/* --- snapshots --- */

/* Snapshot b and check it against the model: nothing unmanaged, nothing on
 * the device that the CPU touched since, everything still on the device
 * that we migrated there (unless one of our units was evicted since), no
 * data page shown as a hole.  Returns the snapshot (caller frees) or NULL. */
static uint8_t *check_snapshot(struct client *cl, struct buf *b,
			       const char *when)
{
	uint8_t *st = malloc(b->npages);
	uint64_t ev, ev0;
	unsigned bad = 0;
	bool moving;
	int err;

	if (!st)
		return NULL;
	ev0 = refresh_stats(cl);
	err = devmem_snapshot(cl->dm, b->addr, b->npages, st);
	if (err) {
		cfail(cl, C_errors, "devmem_snapshot(%p, %zu): %s", b->addr,
		      b->npages, devmem_strerror(err));
		free(st);
		return NULL;
	}
	ev = refresh_stats(cl);
	/* a snapshot is not atomic: a unit evicted while it was taken may
	 * show as neither here nor there */
	moving = ev != ev0 || ev == UINT64_MAX;
	for (size_t i = 0; i < b->npages && bad < 3; i++) {
		uint8_t s = st[i], l = b->st[i] & LOC_MASK;
		const char *why = NULL;

		if (s == DEVMEM_PAGE_ERROR)
			why = "shows ERROR in a registered buffer";
		else if (l == LOC_SYS && s & DEVMEM_PAGE_DEVICE)
			why = "is on the device after a CPU access";
		else if (l == LOC_DEV && !(s & DEVMEM_PAGE_DEVICE)) {
			if (ev != UINT64_MAX && (uint32_t)ev == b->ev[i])
				why = "is not on the device, though it was migrated there and none of our units was evicted since";
			else
				CNT(cl, evicted_before_check, 1);
		} else if (l == LOC_DEV) {
			CNT(cl, device_pages_checked, 1);
		} else if (!moving && b->gen[i] && !(b->st[i] & MAYBE_ZERO) &&
			   !(s & DEVMEM_PAGE_DEVICE) &&
			   (s == DEVMEM_PAGE_NONE || s & DEVMEM_PAGE_ZERO)) {
			why = "holds data but shows as a hole or zero page";
		}
		if (why) {
			bad++;
			cfail(cl, C_state_errors,
			      "snapshot %s: buffer %d (%s, %p) page %zu (%p) %s: state %#x, model location %d, generation %u, evictions %" PRIu64
			      " now, %u when migrated",
			      when, buf_index(cl, b), kind_names[b->kind],
			      b->addr, i, page_addr(b, i), why, s, l, b->gen[i],
			      ev, b->ev[i]);
		}
	}
	return st;
}

static void op_snapshot(struct client *cl)
{
	struct buf *b = pick_buf(cl);

	if (chance(cl, 50)) {
		size_t pg0, n;

		/* something to find on the device */
		pick_range(cl, b, b->npages, &pg0, &n);
		oplog(cl, "buffer %d after migrating pages %zu+%zu",
		      buf_index(cl, b), pg0, n);
		do_migrate(cl, b, pg0, n, DEVMEM_TO_DEVICE,
			   chance(cl, 30) ? DEVMEM_MIGRATE_4K : 0);
	} else {
		oplog(cl, "buffer %d", buf_index(cl, b));
	}
	free(check_snapshot(cl, b, "of a buffer"));
}

/* 0: no page on the device; 1: every 2 MB unit has one; 2: mixed.  Returns
 * -1 on error. */
static int classify(struct client *cl, struct buf *b)
{
	uint8_t *st = malloc(b->npages);
	uintptr_t a = (uintptr_t)b->addr;
	bool any = false, all = true;

	if (!st || devmem_snapshot(cl->dm, b->addr, b->npages, st)) {
		free(st);
		return -1;
	}
	for (uintptr_t u = ALIGN_DOWN(a, MB2); u < a + b->len; u += MB2) {
		size_t q0 = u <= a ? 0 : (u - a) / PG;
		size_t q1 = MIN(b->npages, (u + MB2 - a) / PG);
		bool dev = false;

		for (size_t q = q0; q < q1; q++)
			dev |= (st[q] & DEVMEM_PAGE_DEVICE) &&
			       st[q] != DEVMEM_PAGE_ERROR;
		any |= dev;
		all &= dev;
	}
	free(st);
	return !any ? 0 : all ? 1 : 2;
}

/* --- mremap --- */

/* Reserve len bytes of address space, 2 MB-aligned plus a page offset */
static uint8_t *reserve(size_t len, size_t offset, uint8_t **res,
			size_t *reslen)
{
	*reslen = len + 2 * MB2;
	*res = mmap(NULL, *reslen, PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (*res == MAP_FAILED)
		return NULL;
	return (uint8_t *)ALIGN_UP((uintptr_t)*res, MB2) + offset;
}

/* Unmap what the move into [dst, dst + len) left of the reservation */
static void trim(uint8_t *res, size_t reslen, uint8_t *dst, size_t len)
{
	if (dst > res)
		munmap(res, (size_t)(dst - res));
	if (res + reslen > dst + len)
		munmap(dst + len, (size_t)(res + reslen - (dst + len)));
}

/* The mapped pieces (VMAs, not PROT_NONE) of [lo, hi), at most max; -1 if
 * /proc/self/maps cannot be read */
static int read_pieces(struct client *cl, uintptr_t lo, uintptr_t hi,
		       uintptr_t (*piece)[2], int max)
{
	char line[512];
	int n = 0;
	FILE *f = fopen("/proc/self/maps", "re");

	if (!f) {
		cfail(cl, C_errors, "/proc/self/maps: %s", strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f) && n < max) {
		unsigned long s, e;
		char perms[8];

		if (sscanf(line, "%lx-%lx %7s", &s, &e, perms) != 3)
			continue;
		if (e <= lo || s >= hi || !strncmp(perms, "---", 3))
			continue;
		piece[n][0] = MAX(s, lo);
		piece[n][1] = MIN(e, hi);
		n++;
	}
	fclose(f);
	return n;
}

/* Move every mapped piece (VMA, not PROT_NONE) of [from, from + len) to the
 * same offset at to.  Linux 6.17+ moves multi-VMA ranges VMA by VMA, and a
 * move that meets a VMA it cannot take along (userfaultfd-armed) fails with
 * EFAULT after moving the ones before it: this puts them back.  devmemd
 * unregisters a unit when its last device page leaves, an eviction at any
 * moment, which splits the VMA around it: a piece read from
 * /proc/self/maps a moment ago may have become several, and its own move
 * fails with EFAULT.  Then what is left is read again.  Returns the number
 * of pieces moved, or -1. */
static int move_pieces(struct client *cl, uint8_t *from, size_t len,
		       uint8_t *to)
{
	uintptr_t lo = (uintptr_t)from, hi = lo + len;
	uintptr_t piece[64][2];
	int moved = 0;

	for (int round = 0; round < 16; round++) {
		int n = read_pieces(cl, lo, hi, piece, 64);
		int i;

		if (n < 0)
			return -1;
		for (i = 0; i < n; i++) {
			uintptr_t s = piece[i][0], sz = piece[i][1] - s;
			uint8_t *dst = to + (s - lo);

			if (mremap((void *)s, sz, sz,
				   MREMAP_MAYMOVE | MREMAP_FIXED,
				   dst) != MAP_FAILED) {
				moved++;
				continue;
			}
			if (errno == EFAULT && round < 15)
				break; /* split meanwhile: read again */
			cfail(cl, C_errors,
			      "mremap(%#lx, %#lx -> %p) of a piece back: %s",
			      (unsigned long)s, (unsigned long)sz, dst,
			      strerror(errno));
			return -1;
		}
		if (i == n)
			return moved;
	}
	return moved; /* not reached */
}

/* The old place of a MREMAP_DONTUNMAP move reads zeros, takes writes, and
 * is let go */
static void check_left_behind(struct client *cl, struct buf *b, uint8_t *old,
			      size_t len, bool strict_registered)
{
	size_t np = len / PG;
	int err;

	for (int k = 0; k < 8; k++) {
		size_t q = rnd_below(cl, np);
		uint8_t *p = old + q * PG;

		CNT(cl, pages_verified, 1);
		if (!all_zero(p, PG)) {
			char what[200];

			describe(cl, p, what, sizeof(what));
			cfail(cl, C_mismatches,
			      "MISMATCH: page %zu left behind by mremap(MREMAP_DONTUNMAP) of buffer %d (from %p) is not zeros: it holds %s",
			      q, buf_index(cl, b), old, what);
		}
	}
	{
		size_t q = rnd_below(cl, np);
		uint64_t *w = (uint64_t *)(old + q * PG);

		w[0] = 0x1234;
		w[511] = 0x5678;
		if (w[0] != 0x1234 || w[511] != 0x5678 || w[1])
			cfail(cl, C_mismatches,
			      "MISMATCH: a write to page %zu left behind by mremap(MREMAP_DONTUNMAP) does not read back",
			      q);
	}
	err = devmem_unregister(cl->dm, old, len);
	if (err && !(err == -EINVAL && !strict_registered))
		cfail(cl, err == -EINVAL ? C_state_errors : C_errors,
		      "devmem_unregister(%p, %zu) of the place left behind by mremap(MREMAP_DONTUNMAP): %s",
		      old, len, devmem_strerror(err));
	munmap(old, len);
}

static void op_mremap(struct client *cl)
{
	struct buf *b = pick_buf(cl);
	uint8_t *old = b->addr, *res, *dst;
	size_t len = b->len, reslen, holes;
	int prep = (int)rnd_below(cl, 3), cls, reg, unreg;
	bool dontunmap = chance(cl, 35), same = chance(cl, 60), strict;
	uint64_t ev0, ev1;
	size_t offset;

	if (prep == 0)
		do_migrate(cl, b, 0, b->npages, DEVMEM_TO_DEVICE,
			   chance(cl, 30) ? DEVMEM_MIGRATE_4K : 0);
	else if (prep == 1)
		do_migrate(cl, b, 0, b->npages, DEVMEM_TO_SYSTEM, 0);
	ev0 = refresh_stats(cl);
	cls = classify(cl, b);
	offset = same ? (uintptr_t)old & (MB2 - 1)
		      : rnd_below(cl, UNIT_PAGES) * PG;
	dst = reserve(len, offset, &res, &reslen);
	oplog(cl, "buffer %d (%s, %p, %zu pages, %s) to %p%s (prepared %d)",
	      buf_index(cl, b), kind_names[b->kind], old, b->npages,
	      (const char *[]){ "none on the device", "all units on the device",
				"mixed", "?" }[cls < 0 ? 3 : cls],
	      dst, dontunmap ? " DONTUNMAP" : "", prep);
	if (!dst) {
		cfail(cl, C_errors, "mmap(%zu): %s", reslen, strerror(errno));
		return;
	}
	if (mremap(old, len, len,
		   MREMAP_MAYMOVE | MREMAP_FIXED |
			   (dontunmap ? MREMAP_DONTUNMAP : 0),
		   dst) == MAP_FAILED) {
		int e = errno, back = 0;

		if (e == EFAULT)
			back = move_pieces(cl, dst, len, old);
		munmap(res, reslen);
		opres(cl, "mremap: %s (%d pieces had moved)", strerror(e),
		      back);
		if (e != EFAULT) {
			cfail(cl, C_errors, "mremap(%p, %zu -> %p): %s", old,
			      len, dst, strerror(e));
			return;
		}
		/* documented: a range partly on the device is several VMAs */
		CNT(cl, mremap_efault, 1);
		if (back > 0)
			CNT(cl, mremap_efault_partial, 1);
		if (cls == 0 && refresh_stats(cl) == ev0)
			CNT(cl, mremap_efault_all_system, 1);
		if (back > 0) {
			ensure_registered(cl, old, len, &holes);
			if (holes)
				cfail(cl, C_state_errors,
				      "%zu pages of buffer %d were not registered after moving back what a failed mremap had moved",
				      holes, buf_index(cl, b));
			for (int k = 0; k < 8; k++)
				cpu_read(
					cl, b, rnd_below(cl, b->npages), 1,
					"CPU read after undoing a partial mremap");
		}
		return;
	}
	ev1 = refresh_stats(cl);
	trim(res, reslen, dst, len);
	CNT(cl, mremap_moved, 1);
	if (dontunmap)
		CNT(cl, mremap_dontunmap, 1);
	b->addr = dst;
	/* expectations are firm only for whole units, nobody evicting */
	strict = ev0 == ev1 && ev0 != UINT64_MAX && (cls == 0 || cls == 1) &&
		 !((uintptr_t)old & (MB2 - 1)) && !(len & (MB2 - 1));
	reg = ensure_registered(cl, dst, len, &holes);
	opres(cl,
	      "moved; register at the new place: %s (%zu pages unregistered)%s",
	      devmem_strerror(reg), holes, strict ? ", strict" : "");
	if (strict && cls == 1 && (reg != -EEXIST || holes))
		cfail(cl, C_state_errors,
		      "the registration did not follow mremap(%p -> %p, %zu) of device pages (register: %s, %zu pages were not registered)",
		      old, dst, len, devmem_strerror(reg), holes);
	if (strict && cls == 0 && reg != 0)
		cfail(cl, C_state_errors,
		      "the registration followed mremap(%p -> %p, %zu) of memory without device pages (register: %s)",
		      old, dst, len, devmem_strerror(reg));
	if (dontunmap) {
		check_left_behind(cl, b, old, len, strict);
	} else {
		unreg = devmem_unregister(cl->dm, old, len);
		if (unreg && unreg != -EINVAL)
			cfail(cl, C_errors,
			      "devmem_unregister(%p, %zu) of the old place: %s",
			      old, len, devmem_strerror(unreg));
		else if (strict && (cls == 1) != (unreg == -EINVAL))
			cfail(cl, C_state_errors,
			      "after mremap(%p -> %p, %zu) of %s, devmem_unregister of the old place: %s",
			      old, dst, len,
			      cls ? "device pages" : "system memory",
			      devmem_strerror(unreg));
	}
	/* the data moved with the mapping */
	for (int k = 0; k < 8; k++) {
		size_t q = rnd_below(cl, b->npages);

		cpu_read(cl, b, q, 1, "CPU read after mremap");
	}
	if (chance(cl, 30))
		free(check_snapshot(cl, b, "after mremap"));
}

/* mremap whole 2 MB units of a buffer away and back */
static void op_mremap_units(struct client *cl)
{
	struct buf *b = pick_buf(cl);
	size_t first, nu = units_in(b, &first), k, u, pg0, n, len, reslen,
		      holes;
	uint8_t *sub, *res, *dst;
	bool dontunmap = chance(cl, 30), same = chance(cl, 60);
	int prep = (int)rnd_below(cl, 3), err;

	if (!nu) {
		op_mremap(cl);
		return;
	}
	k = 1 + rnd_below(cl, nu);
	u = rnd_below(cl, nu - k + 1);
	pg0 = first + u * UNIT_PAGES;
	n = k * UNIT_PAGES;
	len = n * PG;
	sub = page_addr(b, pg0);
	dst = reserve(len, same ? 0 : rnd_below(cl, UNIT_PAGES) * PG, &res,
		      &reslen);
	oplog(cl, "buffer %d (%s, %p) pages %zu+%zu to %p%s (prepared %d)",
	      buf_index(cl, b), kind_names[b->kind], b->addr, pg0, n, dst,
	      dontunmap ? " DONTUNMAP" : "", prep);
	if (!dst) {
		cfail(cl, C_errors, "mmap(%zu): %s", reslen, strerror(errno));
		return;
	}
	if (prep == 0)
		do_migrate(cl, b, pg0, n, DEVMEM_TO_DEVICE,
			   chance(cl, 30) ? DEVMEM_MIGRATE_4K : 0);
	else if (prep == 1)
		do_migrate(cl, b, pg0, n, DEVMEM_TO_SYSTEM, 0);
	if (mremap(sub, len, len,
		   MREMAP_MAYMOVE | MREMAP_FIXED |
			   (dontunmap ? MREMAP_DONTUNMAP : 0),
		   dst) == MAP_FAILED) {
		int e = errno, back = 0;

		if (e == EFAULT)
			back = move_pieces(cl, dst, len, sub);
		munmap(res, reslen);
		opres(cl, "mremap: %s (%d pieces had moved)", strerror(e),
		      back);
		if (e == EFAULT)
			CNT(cl, mremap_efault, 1);
		else
			cfail(cl, C_errors, "mremap(%p, %zu -> %p): %s", sub,
			      len, dst, strerror(e));
		if (back > 0) {
			CNT(cl, mremap_efault_partial, 1);
			ensure_registered(cl, sub, len, &holes);
			set_loc(b, pg0, n, LOC_UNK);
			for (int i = 0; i < 4; i++)
				cpu_read(
					cl, b, pg0 + rnd_below(cl, n), 1,
					"CPU read after undoing a partial mremap");
		}
		return;
	}
	trim(res, reslen, dst, len);
	CNT(cl, mremap_moved, 1);
	err = ensure_registered(cl, dst, len, &holes);
	opres(cl, "moved; register there: %s (%zu pages unregistered)",
	      devmem_strerror(err), holes);
	if (dontunmap) {
		CNT(cl, mremap_dontunmap, 1);
		for (int i = 0; i < 4; i++) {
			uint8_t *p = sub + rnd_below(cl, n) * PG;

			CNT(cl, pages_verified, 1);
			if (!all_zero(p, PG))
				cfail(cl, C_mismatches,
				      "MISMATCH: a page (%p) left behind by mremap(MREMAP_DONTUNMAP) of 2 MB units of buffer %d is not zeros",
				      p, buf_index(cl, b));
		}
	}
	/* the data is at dst now: look at some of it, from the CPU and from
	 * the device */
	for (int i = 0; i < 4; i++) {
		size_t q = rnd_below(cl, n);

		check_bytes(cl, b, pg0 + q, 0, PG, dst + q * PG,
			    "CPU read at the place mremap moved 2 MB units to");
	}
	{
		struct devmem_result r;
		size_t q = rnd_below(cl, n), m = MIN(n - q, SCRATCH_PAGES);

		err = devmem_device_read(cl->dm, dst + q * PG, m * PG,
					 cl->scratch, &r);
		if (err)
			cfail(cl, C_errors,
			      "devmem_device_read(%p, %zu) at the place mremap moved 2 MB units to: %s",
			      dst + q * PG, m * PG, devmem_strerror(err));
		else
			check_span(
				cl, b, (pg0 + q) * PG, (pg0 + q + m) * PG,
				cl->scratch,
				"device read at the place mremap moved 2 MB units to");
	}
	/* and back */
	if (mremap(dst, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, sub) ==
	    MAP_FAILED) {
		int e = errno;

		if (e == EFAULT) {
			/* our reads there made it several VMAs (and the
			 * kernel may have moved some of them): piece by
			 * piece */
			CNT(cl, mremap_efault, 1);
			if (move_pieces(cl, dst, len, sub) >= 0)
				goto back;
			e = errno;
		}
		cfail(cl, C_errors,
		      "mremap(%p, %zu -> %p) of 2 MB units back to their buffer: %s; dropping the buffer",
		      dst, len, sub, strerror(e));
		devmem_unregister(cl->dm, dst, len);
		munmap(dst, len);
		devmem_unregister(cl->dm, b->addr, b->len);
		munmap(b->addr, b->len);
		buf_model_free(b);
		cl->nbufs--;
		create_buf(cl, b);
		return;
	}
back:
	opres(cl, "moved back");
	err = devmem_unregister(cl->dm, dst, len);
	if (err && err != -EINVAL)
		cfail(cl, C_errors, "devmem_unregister(%p, %zu): %s", dst, len,
		      devmem_strerror(err));
	ensure_registered(cl, sub, len, &holes);
	set_loc(b, pg0, n, LOC_UNK);
	for (int i = 0; i < 4; i++)
		cpu_read(cl, b, pg0 + rnd_below(cl, n), 1,
			 "CPU read after moving 2 MB units back");
}

/* --- fork --- */

static bool wait_byte(int fd, int ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	char c;

	return poll(&pfd, 1, ms) == 1 && read(fd, &c, 1) == 1;
}

static void op_fork(struct client *cl)
{
	struct buf *b1 = pick_buf(cl), *b2 = pick_buf(cl), *bm = pick_buf(cl);
	size_t p1 = rnd_below(cl, b1->npages), p2 = rnd_below(cl, b2->npages);
	int p2c[2], c2p[2], status;
	pid_t parent = getpid(), pid;
	uint64_t t;

	oplog(cl,
	      "child writes buffer %d page %zu, parent buffer %d page %zu, parent migrates buffer %d",
	      buf_index(cl, b1), p1, buf_index(cl, b2), p2, buf_index(cl, bm));
	if (pipe2(p2c, O_CLOEXEC) || pipe2(c2p, O_CLOEXEC)) {
		cfail(cl, C_errors, "pipe: %s", strerror(errno));
		return;
	}
	pid = fork();
	if (pid < 0) {
		cfail(cl, C_errors, "fork: %s", strerror(errno));
		close(p2c[0]);
		close(p2c[1]);
		close(c2p[0]);
		close(c2p[1]);
		return;
	}
	if (pid == 0) {
		struct devmem_stats st;
		unsigned bad = 0;
		int err;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(3);
		alarm(60);
		cl->in_child = true;
		close(p2c[1]);
		close(c2p[0]);
		err = devmem_stats(cl->dm, &st);
		if (err != -ENOTCONN)
			cfail(cl, C_state_errors,
			      "the inherited handle in a fork()ed child: devmem_stats returned %s, not -ENOTCONN",
			      devmem_strerror(err));
		if (!wait_byte(p2c[0], 30000))
			_exit(4);
		/* the parent wrote b2/p2 and migrated bm: not here */
		for (int bi = 0; bi < MAX_BUFS; bi++) {
			struct buf *b = &cl->b[bi];

			if (!b->live)
				continue;
			for (int k = 0; k < 8; k++) {
				size_t q = rnd_below(cl, b->npages);

				bad += !check_bytes(cl, b, q, 0, PG,
						    page_addr(b, q),
						    "fork()ed child");
			}
		}
		bad += !check_bytes(cl, b2, p2, 0, PG, page_addr(b2, p2),
				    "fork()ed child, page the parent wrote");
		fill_page(page_addr(b1, p1), b1->uid, p1, CHILD_GEN);
		b1->gen[p1] = CHILD_GEN;
		b1->st[p1] &= (uint8_t)~MAYBE_ZERO;
		bad += !check_bytes(cl, b1, p1, 0, PG, page_addr(b1, p1),
				    "fork()ed child, its own write");
		if (write(c2p[1], "c", 1) != 1)
			_exit(5);
		_exit(bad ? 1 : 0);
	}
	close(p2c[0]);
	close(c2p[1]);
	CNT(cl, fork_children, 1);
	/* libdevmem brought every device page back before the fork */
	for (int bi = 0; bi < MAX_BUFS; bi++) {
		struct buf *b = &cl->b[bi];
		uint8_t *st;

		if (!b->live)
			continue;
		set_loc(b, 0, b->npages, LOC_SYS);
		st = malloc(b->npages);
		if (st && !devmem_snapshot(cl->dm, b->addr, b->npages, st))
			for (size_t i = 0; i < b->npages; i++)
				if (st[i] != DEVMEM_PAGE_ERROR &&
				    st[i] & DEVMEM_PAGE_DEVICE) {
					int e = devmem_migrate(
						cl->dm, b->addr, b->len,
						DEVMEM_TO_SYSTEM, 0, NULL);

					cfail(cl, C_state_errors,
					      "buffer %d (%p, %zu pages) page %zu is on the device (%#x) after fork(); devmem_migrate of the buffer to system now: %s",
					      bi, b->addr, b->npages, i, st[i],
					      devmem_strerror(e));
					dump_vmas(cl, b->addr, b->len);
					break;
				}
		free(st);
	}
	cpu_write(cl, b2, p2, 1);
	do_migrate(cl, bm, 0, bm->npages, DEVMEM_TO_DEVICE,
		   chance(cl, 30) ? DEVMEM_MIGRATE_4K : 0);
	if (write(p2c[1], "p", 1) != 1)
		cfail(cl, C_errors, "write to the fork()ed child: %s",
		      strerror(errno));
	if (!wait_byte(c2p[0], 30000))
		cfail(cl, C_errors,
		      "the fork()ed child (pid %d) did not answer in 30 s",
		      (int)pid);
	/* the child's write is not ours */
	cpu_read(cl, b1, p1, 1, "parent, page a fork()ed child wrote");
	close(p2c[1]);
	close(c2p[0]);
	for (t = now_ms(); waitpid(pid, &status, WNOHANG) == 0;) {
		if (now_ms() - t > 30000) {
			cfail(cl, C_errors,
			      "the fork()ed child (pid %d) did not exit in 30 s",
			      (int)pid);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return;
		}
		usleep(1000);
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) > 1)
		cfail(cl, C_errors,
		      "the fork()ed child (pid %d) ended with status %#x",
		      (int)pid, status);
	/* a child's mismatches were counted and reported by the child */
}

static void op_inject(struct client *cl)
{
	unsigned n = 1 + (unsigned)rnd_below(cl, 8);
	int err;

	oplog(cl, "fail the next %u huge allocations", n);
	err = devmem_inject(cl->dm, DEVMEM_INJECT_FAIL_HUGE_ALLOC, n);
	if (err)
		cfail(cl, C_errors, "devmem_inject(FAIL_HUGE_ALLOC, %u): %s", n,
		      devmem_strerror(err));
}

/* --paranoid: after every operation, every buffer read through the device
 * (which moves nothing) and checked */
static void paranoid_check(struct client *cl)
{
	for (int i = 0; i < MAX_BUFS; i++) {
		struct buf *b = &cl->b[i];

		if (!b->live)
			continue;
		for (size_t x = 0; x < b->len; x += SCRATCH) {
			size_t len = MIN(SCRATCH, b->len - x);
			int err = devmem_device_read(cl->dm, b->addr + x, len,
						     cl->scratch, NULL);

			if (err) {
				cfail(cl, C_errors,
				      "devmem_device_read(buffer %d %p+%#zx, %zu): %s",
				      i, b->addr, x, len, devmem_strerror(err));
				break;
			}
			check_span(cl, b, x, x + len, cl->scratch,
				   "paranoid device read after the operation");
		}
	}
}

static enum op pick_op(struct client *cl)
{
	unsigned total = 0, r;

	for (int k = 0; k < OP_MAX; k++)
		if (O.op_mask & (1ull << k))
			total += op_weights[k];
	r = (unsigned)rnd_below(cl, total);
	for (int k = 0; k < OP_MAX; k++) {
		if (!(O.op_mask & (1ull << k)))
			continue;
		if (r < op_weights[k])
			return (enum op)k;
		r -= op_weights[k];
	}
	return OP_CPU_READ;
}

static void run_op(struct client *cl, enum op op)
{
	cl->cur = op;
	switch (op) {
	case OP_MIGRATE_DEV:
		op_migrate(cl, DEVMEM_TO_DEVICE);
		break;
	case OP_MIGRATE_SYS:
		op_migrate(cl, DEVMEM_TO_SYSTEM);
		break;
	case OP_CPU_READ:
		op_cpu_read(cl);
		break;
	case OP_CPU_WRITE:
		op_cpu_write(cl);
		break;
	case OP_DEV_READ:
		op_device_read(cl);
		break;
	case OP_DEV_WRITE:
		op_device_write(cl);
		break;
	case OP_DONTNEED:
		op_madvise(cl, MADV_DONTNEED);
		break;
	case OP_MADV_FREE:
		op_madvise(cl, MADV_FREE);
		break;
	case OP_REALLOC:
		op_realloc(cl);
		break;
	case OP_REREGISTER:
		op_reregister(cl);
		break;
	case OP_MREMAP:
		op_mremap(cl);
		break;
	case OP_MREMAP_UNITS:
		op_mremap_units(cl);
		break;
	case OP_FORK:
		op_fork(cl);
		break;
	case OP_SNAPSHOT:
		op_snapshot(cl);
		break;
	case OP_VERIFY_ALL:
		op_verify_all(cl);
		break;
	case OP_INJECT:
		op_inject(cl);
		break;
	case OP_MAX:
		break;
	}
	ADD(cl->sh->ops[op], 1);
}

static __attribute__((noreturn)) void client_main(int slot, int ctl_fd)
{
	struct slot *sh = &SH->slot[slot];
	struct client *cl = calloc(1, sizeof(*cl));
	uint64_t left = O.deadline_ms > now_ms() ? O.deadline_ms - now_ms() : 0;
	int err, nb;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != O.parent)
		_exit(2);
	if (ctl_fd >= 0)
		close(ctl_fd);
	signal(SIGPIPE, SIG_IGN);
	alarm((unsigned)(left / 1000) + 90);
	if (!cl)
		_exit(2);
	cl->slot = slot;
	cl->inc = sh->incarnation;
	cl->sh = sh;
	cl->rng = sh->seed ? sh->seed : 1;
	cl->scratch = malloc(SCRATCH);
	cl->scratch2 = malloc(SCRATCH);
	cl->scratch3 = malloc(SCRATCH);
	if (!cl->scratch || !cl->scratch2 || !cl->scratch3)
		_exit(2);
	err = devmem_connect(O.sock, &cl->dm);
	if (err) {
		cfail(cl, C_errors, "devmem_connect(%s): %s", O.sock,
		      devmem_strerror(err));
		_exit(1);
	}
	cl->cur = OP_REALLOC;
	nb = MAX_BUFS - 2 + (int)rnd_below(cl, 3);
	for (int i = 0; i < nb; i++)
		create_buf(cl, &cl->b[i]);
	while (now_ms() < O.deadline_ms && !LOAD(SH->stop)) {
		STORE(sh->heartbeat_ms, now_ms());
		if (!cl->nbufs) {
			cfail(cl, C_errors, "no buffer left");
			break;
		}
		run_op(cl, pick_op(cl));
		if (O.paranoid)
			paranoid_check(cl);
		cl->opno++;
		if (!(cl->opno % 32))
			refresh_stats(cl);
	}
	/* the end: every byte checked, everything freed, nothing held */
	STORE(sh->heartbeat_ms, now_ms());
	cl->cur = OP_VERIFY_ALL;
	snprintf(sh->last_op, sizeof(sh->last_op), "final check and free");
	for (int i = 0; i < MAX_BUFS; i++)
		if (cl->b[i].live)
			free_buf(cl, &cl->b[i], true);
	refresh_stats(cl);
	for (int i = 0; i < 1000 && LOAD(sh->cnt[C_st_client_used]); i++) {
		usleep(10000);
		refresh_stats(cl);
	}
	if (LOAD(sh->cnt[C_st_client_used]))
		cfail(cl, C_state_errors,
		      "LEAK: %" PRIu64
		      " bytes of device memory still held after every buffer was freed",
		      LOAD(sh->cnt[C_st_client_used]));
	devmem_disconnect(cl->dm);
	STORE(sh->finished, 1);
	_exit(LOAD(sh->cnt[C_mismatches]) || LOAD(sh->cnt[C_state_errors]) ||
			      LOAD(sh->cnt[C_errors])
		      ? 1
		      : 0);
}

/* ====================================================================== */
/* The parent                                                             */
/* ====================================================================== */

struct acc {
	uint64_t ops[OP_MAX], cnt[C_MAX];
	unsigned incarnations, killed, died;
};

static struct acc ACC[MAX_CLIENTS];
static pid_t daemon_pid = -1; /* ours, or the one at --socket */
static bool own_daemon;
static char tmpdir[64];

struct sample {
	double t;
	long rss_kb, anon_kb, pool_kb;
	uint64_t used;
	int fds, threads;
};

static struct sample *samples;
static size_t nsamples, samples_cap;

static void kill_everything(void)
{
	for (unsigned i = 0; i < O.clients; i++) {
		int pid = LOAD(SH->slot[i].pid);

		if (pid > 0)
			kill(pid, SIGKILL);
	}
	if (own_daemon && daemon_pid > 0)
		kill(daemon_pid, SIGKILL);
}

static void on_alarm(int sig)
{
	static const char msg[] =
		"soak: FAILURE: watchdog: the run did not end in time; killing everything\n";

	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(3);
	kill_everything();
	_exit(3);
}

/* --- devmemd --- */

static bool accepts(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	bool ok;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	ok = fd >= 0 && !connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (fd >= 0)
		close(fd);
	return ok;
}

static int start_daemon(void)
{
	const char *argv[48];
	const char *lvl = getenv("DEVMEMD_LOG_LEVEL");
	int n = 0, st;

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/devmem-soak-XXXXXX");
	if (!mkdtemp(tmpdir)) {
		say("soak: mkdtemp: %s", strerror(errno));
		return -1;
	}
	snprintf(O.sock, sizeof(O.sock), "%s/sock", tmpdir);
	argv[n++] = O.devmemd;
	argv[n++] = "--foreground";
	argv[n++] = "--socket";
	argv[n++] = O.sock;
	argv[n++] = "--size";
	argv[n++] = O.size;
	argv[n++] = "--log-level";
	argv[n++] = lvl && lvl[0] ? lvl : "warn";
	for (int i = 0; i < O.ndargs; i++)
		argv[n++] = O.dargs[i];
	argv[n] = NULL;
	daemon_pid = fork();
	if (daemon_pid < 0)
		return -1;
	if (daemon_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execv(argv[0], (char *const *)argv);
		say("soak: exec %s: %s", argv[0], strerror(errno));
		_exit(127);
	}
	own_daemon = true;
	for (int i = 0; i < 1000; i++) {
		if (accepts(O.sock))
			return 0;
		if (waitpid(daemon_pid, &st, WNOHANG) == daemon_pid) {
			say("soak: devmemd exited at start (status %#x)", st);
			daemon_pid = -1;
			return -1;
		}
		usleep(10000);
	}
	say("soak: devmemd did not accept connections on %s in 10 s", O.sock);
	return -1;
}

/* --- the control connection --- */

static int ctl_fd = -1;
static uint8_t *ctl_buf;
static uint32_t ctl_id;

static int ctl_call(uint16_t type, const void *body, struct dm_msg *rep)
{
	int err = dm_send_msg(ctl_fd, ctl_buf, DM_MAX_MSG, type, ++ctl_id, body,
			      NULL, 0, NULL, 0);

	if (!err)
		err = dm_recv_msg(ctl_fd, ctl_buf, DM_MAX_MSG, rep, NULL, NULL);
	if (err)
		return err;
	if (rep->hdr.type != (type | DM_REPLY) || rep->hdr.id != ctl_id) {
		dm_msg_release(rep);
		return -EPROTO;
	}
	if (rep->u.status.status) {
		err = rep->u.status.status;
		dm_msg_release(rep);
	}
	return err;
}

static int ctl_open(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct dm_hello hello = { DM_ROLE_CONTROL, DM_PROTO_VERSION,
				  DM_PROTO_VERSION };
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	struct dm_msg rep;
	int err;

	ctl_buf = malloc(DM_MAX_MSG);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", O.sock);
	ctl_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (!ctl_buf || ctl_fd < 0 ||
	    connect(ctl_fd, (struct sockaddr *)&sa, sizeof(sa)))
		return -errno;
	if (!getsockopt(ctl_fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) &&
	    daemon_pid < 0)
		daemon_pid = cred.pid;
	err = ctl_call(DM_HELLO, &hello, &rep);
	if (!err)
		dm_msg_release(&rep);
	return err;
}

static int ctl_status(struct dm_status_reply *out)
{
	struct dm_msg rep;
	int err = ctl_call(DM_STATUS, NULL, &rep);

	if (!err) {
		*out = rep.u.status_reply;
		dm_msg_release(&rep);
	}
	return err;
}

static int ctl_policy(bool set, unsigned kind, unsigned value, uint32_t *values)
{
	struct dm_policy p = { set, kind, value };
	struct dm_msg rep;
	int err = ctl_call(DM_POLICY, &p, &rep);

	if (!err) {
		if (values)
			memcpy(values, rep.u.policy_reply.value,
			       sizeof(rep.u.policy_reply.value));
		dm_msg_release(&rep);
	}
	return err;
}

static int ctl_evict(uint64_t *units)
{
	struct dm_msg rep;
	int err = ctl_call(DM_EVICT, NULL, &rep);

	if (!err) {
		*units = rep.u.count_reply.count;
		dm_msg_release(&rep);
	}
	return err;
}

/* --- /proc --- */

static bool daemon_alive(void)
{
	int st;

	if (daemon_pid <= 0)
		return false;
	if (own_daemon) {
		pid_t r = waitpid(daemon_pid, &st, WNOHANG);

		if (r == daemon_pid) {
			failure("devmemd (pid %d) died: %s %d", (int)daemon_pid,
				WIFSIGNALED(st) ? "signal" : "exit status",
				WIFSIGNALED(st) ? WTERMSIG(st)
						: WEXITSTATUS(st));
			daemon_pid = -1;
			return false;
		}
		return true;
	}
	return !kill(daemon_pid, 0);
}

static long status_field(pid_t pid, const char *name)
{
	char path[64], line[256];
	size_t nl = strlen(name);
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, name, nl) && line[nl] == ':') {
			v = strtol(line + nl + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

static int count_fds(pid_t pid)
{
	char path[64];
	struct dirent *e;
	int n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Rss of the device pool: the mapping exactly the pool's size */
static long pool_rss_kb(pid_t pid, uint64_t capacity)
{
	char path[64], line[512];
	long size = -1, rss = -1, found = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "Size:", 5)) {
			size = strtol(line + 5, NULL, 10);
		} else if (!strncmp(line, "Rss:", 4)) {
			rss = strtol(line + 4, NULL, 10);
			if (size == (long)(capacity >> 10)) {
				found = rss;
				break;
			}
		}
	}
	fclose(f);
	return found;
}

static struct dm_status_reply status_start, status_now;
static bool status_have; /* status_now holds a reply */
static uint64_t capacity, max_used;

static void take_sample(void)
{
	struct sample s = { .t = elapsed_s() };

	if (daemon_pid <= 0)
		return;
	s.rss_kb = status_field(daemon_pid, "VmRSS");
	s.anon_kb = status_field(daemon_pid, "RssAnon");
	s.threads = (int)status_field(daemon_pid, "Threads");
	s.fds = count_fds(daemon_pid);
	s.pool_kb = pool_rss_kb(daemon_pid, capacity);
	if (s.rss_kb < 0)
		return; /* gone */
	if (!ctl_status(&status_now)) {
		status_have = true;
		s.used = status_now.used;
		max_used = MAX(max_used, s.used);
	}
	if (nsamples == samples_cap) {
		size_t cap = samples_cap ? 2 * samples_cap : 256;
		struct sample *ns = realloc(samples, cap * sizeof(*ns));

		if (!ns)
			return;
		samples = ns;
		samples_cap = cap;
	}
	samples[nsamples++] = s;
}

/* --- clients --- */

static uint64_t client_seed(unsigned slot, uint32_t inc)
{
	if (O.client_seed_set && slot == 0 && inc == 0)
		return O.client_seed;
	return mix64(O.seed ^ mix64(((uint64_t)slot << 32) + inc + 1));
}

static void spawn(unsigned slot)
{
	struct slot *s = &SH->slot[slot];
	uint32_t inc = ACC[slot].incarnations++;
	pid_t pid;

	memset(s, 0, sizeof(*s));
	s->incarnation = inc;
	s->seed = client_seed(slot, inc);
	s->start_ms = now_ms();
	s->heartbeat_ms = s->start_ms;
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		failure("fork: %s", strerror(errno));
		return;
	}
	if (pid == 0)
		client_main((int)slot, ctl_fd);
	STORE(s->pid, pid);
	if (!O.quiet)
		say("soak: %6.1fs client %u.%u started (pid %d, seed %#" PRIx64
		    ")",
		    elapsed_s(), slot, inc, (int)pid, s->seed);
}

static void account(unsigned slot)
{
	struct slot *s = &SH->slot[slot];

	for (int k = 0; k < OP_MAX; k++)
		ACC[slot].ops[k] += s->ops[k];
	for (int k = 0; k < C_MAX; k++)
		ACC[slot].cnt[k] += s->cnt[k];
}

static uint64_t slot_ops(const struct slot *s)
{
	uint64_t n = 0;

	for (int k = 0; k < OP_MAX; k++)
		n += LOAD(s->ops[k]);
	return n;
}

static unsigned running(void)
{
	unsigned n = 0;

	for (unsigned i = 0; i < O.clients; i++)
		n += LOAD(SH->slot[i].pid) > 0;
	return n;
}

/* Reap children; restart clients that went before the deadline */
static void reap(bool respawn)
{
	pid_t pid;
	int st;

	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		unsigned i;

		if (pid == daemon_pid) {
			failure("devmemd (pid %d) died: %s %d", (int)pid,
				WIFSIGNALED(st) ? "signal" : "exit status",
				WIFSIGNALED(st) ? WTERMSIG(st)
						: WEXITSTATUS(st));
			daemon_pid = -1;
			continue;
		}
		for (i = 0; i < O.clients; i++)
			if (LOAD(SH->slot[i].pid) == pid)
				break;
		if (i == O.clients)
			continue; /* an orphaned grandchild */
		{
			struct slot *s = &SH->slot[i];

			account(i);
			STORE(s->pid, 0);
			if (s->killing && !s->hung) {
				ACC[i].killed++;
				if (!O.quiet)
					say("soak: %6.1fs client %u.%u killed after %" PRIu64
					    " ops (last: %s)",
					    elapsed_s(), i, s->incarnation,
					    slot_ops(s), s->last_op);
			} else if (!WIFEXITED(st) || !s->finished ||
				   (WEXITSTATUS(st) && !s->cnt[C_mismatches] &&
				    !s->cnt[C_state_errors] &&
				    !s->cnt[C_errors])) {
				ACC[i].died++;
				failure("client %u.%u (pid %d, seed %#" PRIx64
					") ended with %s %d after %" PRIu64
					" ops; last operation: %s",
					i, s->incarnation, (int)pid, s->seed,
					WIFSIGNALED(st) ? "signal"
							: "exit status",
					WIFSIGNALED(st) ? WTERMSIG(st)
							: WEXITSTATUS(st),
					slot_ops(s), s->last_op);
			}
			if (respawn && !LOAD(SH->stop) &&
			    now_ms() + 1000 < O.deadline_ms)
				spawn(i);
		}
	}
}

static void dump_proc(pid_t pid, const char *who)
{
	char path[64], buf[512];
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/wchan", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = 0;
	say("soak:   %s (pid %d) waits in %s", who, (int)pid,
	    buf[0] ? buf : "?");
	snprintf(path, sizeof(path), "/proc/%d/stack", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	if (fd >= 0)
		close(fd);
	if (n > 0) {
		buf[n] = 0;
		say("soak:   kernel stack:\n%s", buf);
	}
}

/* Where every thread of pid waits */
static void dump_threads(pid_t pid)
{
	char path[320], buf[128];
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		return;
	while ((e = readdir(d))) {
		int fd;
		ssize_t n;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/wchan", (int)pid,
			 e->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
		if (fd >= 0)
			close(fd);
		buf[n > 0 ? n : 0] = 0;
		say("soak:   devmemd thread %s waits in %s", e->d_name,
		    buf[0] ? buf : "?");
	}
	closedir(d);
}

static void check_hangs(void)
{
	uint64_t now = now_ms();

	for (unsigned i = 0; i < O.clients; i++) {
		struct slot *s = &SH->slot[i];
		int pid = LOAD(s->pid);

		if (pid <= 0 || s->killing)
			continue;
		if (now - LOAD(s->heartbeat_ms) < O.hang_timeout * 1000ull)
			continue;
		failure("HANG: client %u.%u (pid %d, seed %#" PRIx64
			") made no progress for %u s; last operation: %s",
			i, s->incarnation, pid, s->seed, O.hang_timeout,
			s->last_op);
		say("soak:   it was touching %#" PRIx64
		    " (a CPU fault there was never resolved if the client sleeps in handle_userfault)",
		    LOAD(s->touching));
		dump_proc(pid, "the client");
		if (daemon_pid > 0)
			dump_threads(daemon_pid);
		s->hung = 1; /* a failure (above), not a kill */
		s->killing = 1;
		kill(pid, SIGKILL);
	}
}

/* --- output --- */

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(f, "\\u%04x", *s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

struct result {
	double duration;
	uint64_t ops, total[C_MAX], ops_by[OP_MAX];
	unsigned killed, incarnations, died;
	uint64_t dev[DM_STATS_FIELDS - 3];
	uint64_t evict_calls, evicted_units, policy_changes;
	uint64_t used_end;
	unsigned nclients_end;
	int fds_base, fds_end, threads_base, threads_end;
	long rss_base, rss_warm, rss_end, rss_max, pool_end;
	long nonpool_warm, nonpool_end;
	double warm_t;
	bool alive, leak_used, leak_fds, leak_threads, rss_grew;
	int daemon_exit; /* -2: not ours */
	bool pass;
};

static void write_json(const struct result *r)
{
	FILE *f = fopen(O.json, "w");
	unsigned nf = MIN(LOAD(SH->nfail), MAX_FAIL);

	if (!f) {
		say("soak: %s: %s", O.json, strerror(errno));
		return;
	}
	fprintf(f, "{\n  \"pass\": %s,\n", r->pass ? "true" : "false");
	fprintf(f, "  \"seed\": %" PRIu64 ",\n  \"seconds\": %u,\n", O.seed,
		O.seconds);
	fprintf(f, "  \"duration_s\": %.1f,\n  \"clients\": %u,\n", r->duration,
		O.clients);
	fprintf(f, "  \"device_bytes\": %" PRIu64 ",\n", capacity);
	fprintf(f,
		"  \"operations\": %" PRIu64 ",\n  \"operations_by_kind\": {",
		r->ops);
	for (int k = 0; k < OP_MAX; k++)
		fprintf(f, "%s\"%s\": %" PRIu64, k ? ", " : "", op_names[k],
			r->ops_by[k]);
	fprintf(f, "},\n  \"counters\": {");
	for (int k = 0; k < C_MAX; k++)
		fprintf(f, "%s\"%s\": %" PRIu64, k ? ", " : "", cnt_names[k],
			r->total[k]);
	fprintf(f, "},\n");
	fprintf(f,
		"  \"mismatches\": %" PRIu64 ",\n  \"state_errors\": %" PRIu64
		",\n  \"errors\": %" PRIu64 ",\n",
		r->total[C_mismatches], r->total[C_state_errors],
		r->total[C_errors]);
	fprintf(f,
		"  \"device\": {\"to_device_pages\": %" PRIu64
		", \"to_system_pages\": %" PRIu64
		", \"bytes_migrated\": %" PRIu64
		", \"huge_migrations\": %" PRIu64 ", \"splits\": %" PRIu64
		", \"cpu_faults\": %" PRIu64 ", \"evictions\": %" PRIu64
		", \"max_used\": %" PRIu64 "},\n",
		r->dev[0], r->dev[1], (r->dev[0] + r->dev[1]) * PG, r->dev[2],
		r->dev[3], r->dev[4], r->dev[5], max_used);
	fprintf(f,
		"  \"client_incarnations\": %u,\n  \"clients_killed\": %u,\n  \"clients_failed\": %u,\n",
		r->incarnations, r->killed, r->died);
	fprintf(f,
		"  \"evict_all_calls\": %" PRIu64
		",\n  \"units_evicted_by_evict_all\": %" PRIu64
		",\n  \"policy_changes\": %" PRIu64 ",\n",
		r->evict_calls, r->evicted_units, r->policy_changes);
	fprintf(f,
		"  \"leaks\": {\"device_used_end\": %" PRIu64
		", \"clients_end\": %u, \"fds_baseline\": %d, \"fds_end\": %d, \"threads_baseline\": %d, \"threads_end\": %d, \"found\": %s},\n",
		r->used_end, r->nclients_end, r->fds_base, r->fds_end,
		r->threads_base, r->threads_end,
		r->leak_used || r->leak_fds || r->leak_threads ? "true"
							       : "false");
	fprintf(f,
		"  \"rss_kb\": {\"baseline\": %ld, \"warm\": %ld, \"warm_at_s\": %.1f, \"end\": %ld, \"max\": %ld, \"pool_end\": %ld, \"outside_pool_warm\": %ld, \"outside_pool_end\": %ld, \"slack\": %u, \"grew\": %s},\n",
		r->rss_base, r->rss_warm, r->warm_t, r->rss_end, r->rss_max,
		r->pool_end, r->nonpool_warm, r->nonpool_end,
		O.rss_slack_mb * 1024, r->rss_grew ? "true" : "false");
	fprintf(f, "  \"devmemd_alive\": %s,\n  \"devmemd_exit\": %d,\n",
		r->alive ? "true" : "false", r->daemon_exit);
	fprintf(f, "  \"per_client\": [");
	for (unsigned i = 0; i < O.clients; i++) {
		uint64_t ops = 0;

		for (int k = 0; k < OP_MAX; k++)
			ops += ACC[i].ops[k];
		fprintf(f,
			"%s\n    {\"slot\": %u, \"incarnations\": %u, \"killed\": %u, \"operations\": %" PRIu64
			", \"mismatches\": %" PRIu64
			", \"state_errors\": %" PRIu64 ", \"errors\": %" PRIu64
			"}",
			i ? "," : "", i, ACC[i].incarnations, ACC[i].killed,
			ops, ACC[i].cnt[C_mismatches],
			ACC[i].cnt[C_state_errors], ACC[i].cnt[C_errors]);
	}
	fprintf(f, "\n  ],\n  \"failures\": [");
	for (unsigned k = 0; k < nf; k++) {
		fprintf(f, "%s\n    ", k ? "," : "");
		json_str(f, SH->fail[k]);
	}
	fprintf(f, "%s]\n}\n", nf ? "\n  " : "");
	fclose(f);
}

static void print_summary(const struct result *r)
{
	printf("\nsoak: %u clients, %.1f s, seed %" PRIu64 ", device %" PRIu64
	       " MB\n",
	       O.clients, r->duration, O.seed, capacity >> 20);
	for (unsigned i = 0; i < O.clients; i++) {
		uint64_t ops = 0;

		for (int k = 0; k < OP_MAX; k++)
			ops += ACC[i].ops[k];
		printf("  client %u: %u incarnations (%u killed), %" PRIu64
		       " ops, %" PRIu64 " pages checked, %" PRIu64
		       " mismatches, %" PRIu64 " state errors, %" PRIu64
		       " errors\n",
		       i, ACC[i].incarnations, ACC[i].killed, ops,
		       ACC[i].cnt[C_pages_verified], ACC[i].cnt[C_mismatches],
		       ACC[i].cnt[C_state_errors], ACC[i].cnt[C_errors]);
	}
	printf("  operations: %" PRIu64 " (%.0f/s)\n", r->ops,
	       r->duration > 0 ? (double)r->ops / r->duration : 0.0);
	for (int k = 0; k < OP_MAX; k++)
		printf("    %-22s %" PRIu64 "\n", op_names[k], r->ops_by[k]);
	printf("  counters:\n");
	for (int k = 0; k < C_FIRST_GAUGE; k++)
		printf("    %-26s %" PRIu64 "\n", cnt_names[k], r->total[k]);
	printf("  devmemd: %" PRIu64 " pages to the device, %" PRIu64
	       " to system (%.1f GiB migrated), %" PRIu64
	       " huge migrations, %" PRIu64 " splits, %" PRIu64
	       " CPU faults, %" PRIu64 " evictions, at most %" PRIu64
	       " MB used\n",
	       r->dev[0], r->dev[1],
	       (double)((r->dev[0] + r->dev[1]) * PG) / (1 << 30), r->dev[2],
	       r->dev[3], r->dev[4], r->dev[5], max_used >> 20);
	printf("  soak: %u clients killed, %u client failures, %" PRIu64
	       " evict-all calls (%" PRIu64 " units), %" PRIu64
	       " policy changes\n",
	       r->killed, r->died, r->evict_calls, r->evicted_units,
	       r->policy_changes);
	printf("  leaks: device used at the end %" PRIu64
	       " bytes, %u clients connected; fds %d (baseline %d), threads %d (baseline %d)\n",
	       r->used_end, r->nclients_end, r->fds_end, r->fds_base,
	       r->threads_end, r->threads_base);
	printf("  devmemd RSS (kB): baseline %ld, after warm-up (%.0f s) %ld, end %ld, max %ld; pool %ld at the end; outside the pool %ld -> %ld (slack %u)\n",
	       r->rss_base, r->warm_t, r->rss_warm, r->rss_end, r->rss_max,
	       r->pool_end, r->nonpool_warm, r->nonpool_end,
	       O.rss_slack_mb * 1024);
	printf("  devmemd %s%s\n", r->alive ? "alive" : "DEAD",
	       r->daemon_exit == -2  ? ""
	       : r->daemon_exit == 0 ? ", exited cleanly on SIGTERM"
				     : ", did NOT exit cleanly on SIGTERM");
	printf("soak: %s (%" PRIu64 " mismatches, %" PRIu64
	       " state errors, %" PRIu64 " errors, %u failures)\n",
	       r->pass ? "PASS" : "FAIL", r->total[C_mismatches],
	       r->total[C_state_errors], r->total[C_errors], LOAD(SH->nfail));
	fflush(stdout);
}

/* --- options --- */

static const char usage[] =
	"Usage: soak [OPTION]...\n"
	"Random register/migrate/fault/free/mremap/fork by several devmem clients,\n"
	"every byte checked; device memory, fds, threads and RSS of devmemd checked.\n"
	"  --seconds N          run for N seconds (60)\n"
	"  --clients N          client processes (4)\n"
	"  --seed S             master seed (default: from the clock)\n"
	"  --client-seed S      seed of client 0's first incarnation (to replay one)\n"
	"  --devmemd PATH       devmemd to start ($DEVMEMD, else ./devmemd)\n"
	"  --devmemd-arg ARG    pass ARG to devmemd (repeatable)\n"
	"  --socket PATH        use the devmemd at PATH instead of starting one\n"
	"  --size BYTES         device size of the private devmemd (32M per client:\n"
	"                       the clients overfill it, so that it evicts)\n"
	"  --json FILE          write the summary as JSON\n"
	"  --kill-interval N    SIGKILL a client every ~N s (10; 0: never)\n"
	"  --evict-interval N   evict all device memory every ~N s (7; 0: never)\n"
	"  --policy-interval N  switch a policy every ~N s (13, 0 with --socket)\n"
	"  --hang-timeout N     a client without progress for N s hangs (60)\n"
	"  --rss-slack MB       allowed growth of devmemd's RSS outside the pool (64)\n"
	"  --only OP,...        run only these operations\n"
	"  --skip OP,...        do not run these operations\n"
	"  --trace              print every operation\n"
	"  --paranoid           after every operation, check every buffer through\n"
	"                       the device (slow; finds the operation that broke it)\n"
	"  --stop-on-failure    stop all clients at the first failure\n"
	"  --quiet              no progress lines\n"
	"Operations:";

static uint64_t parse_ops(const char *list)
{
	char *dup = strdup(list), *save = NULL;
	uint64_t mask = 0;

	for (char *t = strtok_r(dup, ",", &save); t;
	     t = strtok_r(NULL, ",", &save)) {
		int k;

		for (k = 0; k < OP_MAX; k++)
			if (!strcmp(t, op_names[k]))
				break;
		if (k == OP_MAX) {
			fprintf(stderr, "soak: unknown operation %s\n", t);
			exit(2);
		}
		mask |= 1ull << k;
	}
	free(dup);
	return mask;
}

static unsigned parse_uint(const char *s, const char *what)
{
	char *end;
	unsigned long v = strtoul(s, &end, 0);

	if (!*s || *end || v > UINT_MAX) {
		fprintf(stderr, "soak: bad %s: %s\n", what, s);
		exit(2);
	}
	return (unsigned)v;
}

static void parse_args(int argc, char **argv)
{
	enum {
		OPT_SECONDS = 256,
		OPT_CLIENTS,
		OPT_SEED,
		OPT_CLIENT_SEED,
		OPT_DEVMEMD,
		OPT_DEVMEMD_ARG,
		OPT_SOCKET,
		OPT_SIZE,
		OPT_JSON,
		OPT_KILL,
		OPT_EVICT,
		OPT_POLICY,
		OPT_HANG,
		OPT_RSS,
		OPT_ONLY,
		OPT_SKIP,
		OPT_TRACE,
		OPT_QUIET,
		OPT_PARANOID,
		OPT_STOP,
	};
	static const struct option opts[] = {
		{ "seconds", required_argument, NULL, OPT_SECONDS },
		{ "clients", required_argument, NULL, OPT_CLIENTS },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "client-seed", required_argument, NULL, OPT_CLIENT_SEED },
		{ "devmemd", required_argument, NULL, OPT_DEVMEMD },
		{ "devmemd-arg", required_argument, NULL, OPT_DEVMEMD_ARG },
		{ "socket", required_argument, NULL, OPT_SOCKET },
		{ "size", required_argument, NULL, OPT_SIZE },
		{ "json", required_argument, NULL, OPT_JSON },
		{ "kill-interval", required_argument, NULL, OPT_KILL },
		{ "evict-interval", required_argument, NULL, OPT_EVICT },
		{ "policy-interval", required_argument, NULL, OPT_POLICY },
		{ "hang-timeout", required_argument, NULL, OPT_HANG },
		{ "rss-slack", required_argument, NULL, OPT_RSS },
		{ "only", required_argument, NULL, OPT_ONLY },
		{ "skip", required_argument, NULL, OPT_SKIP },
		{ "trace", no_argument, NULL, OPT_TRACE },
		{ "quiet", no_argument, NULL, OPT_QUIET },
		{ "paranoid", no_argument, NULL, OPT_PARANOID },
		{ "stop-on-failure", no_argument, NULL, OPT_STOP },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool seeded = false;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_SECONDS:
			O.seconds = parse_uint(optarg, "--seconds");
			break;
		case OPT_CLIENTS:
			O.clients = parse_uint(optarg, "--clients");
			if (!O.clients || O.clients > MAX_CLIENTS) {
				fprintf(stderr, "soak: --clients 1..%d\n",
					MAX_CLIENTS);
				exit(2);
			}
			break;
		case OPT_SEED:
			O.seed = strtoull(optarg, NULL, 0);
			seeded = true;
			break;
		case OPT_CLIENT_SEED:
			O.client_seed = strtoull(optarg, NULL, 0);
			O.client_seed_set = true;
			break;
		case OPT_DEVMEMD:
			O.devmemd = optarg;
			break;
		case OPT_DEVMEMD_ARG:
			if (O.ndargs < (int)ARRAY_SIZE(O.dargs))
				O.dargs[O.ndargs++] = optarg;
			break;
		case OPT_SOCKET:
			O.socket = optarg;
			break;
		case OPT_SIZE:
			O.size = optarg;
			break;
		case OPT_JSON:
			O.json = optarg;
			break;
		case OPT_KILL:
			O.kill_interval = parse_uint(optarg, "--kill-interval");
			break;
		case OPT_EVICT:
			O.evict_interval =
				parse_uint(optarg, "--evict-interval");
			break;
		case OPT_POLICY:
			O.policy_interval =
				parse_uint(optarg, "--policy-interval");
			O.policy_interval_set = true;
			break;
		case OPT_HANG:
			O.hang_timeout = parse_uint(optarg, "--hang-timeout");
			break;
		case OPT_RSS:
			O.rss_slack_mb = parse_uint(optarg, "--rss-slack");
			break;
		case OPT_ONLY:
			O.op_mask = parse_ops(optarg);
			break;
		case OPT_SKIP:
			O.op_mask &= ~parse_ops(optarg);
			break;
		case OPT_TRACE:
			O.trace = true;
			break;
		case OPT_QUIET:
			O.quiet = true;
			break;
		case OPT_PARANOID:
			O.paranoid = true;
			break;
		case OPT_STOP:
			O.stop_on_failure = true;
			break;
		case 'h':
			fputs(usage, stdout);
			for (int k = 0; k < OP_MAX; k++)
				printf(" %s", op_names[k]);
			printf("\n");
			exit(0);
		default:
			fprintf(stderr, "Try soak --help\n");
			exit(2);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "soak: unexpected argument %s\n", argv[optind]);
		exit(2);
	}
	if (!(O.op_mask & ((1ull << OP_MAX) - 1))) {
		fprintf(stderr, "soak: no operation left to run\n");
		exit(2);
	}
	if (!seeded)
		O.seed = mix64((uint64_t)time(NULL) ^
			       ((uint64_t)getpid() << 32));
	if (!O.devmemd) {
		const char *e = getenv("DEVMEMD");

		O.devmemd = e && e[0] ? e : "./devmemd";
	}
	if (O.socket && !O.policy_interval_set)
		O.policy_interval = 0;
	if (!O.size) {
		snprintf(O.size_buf, sizeof(O.size_buf), "%uM", 32 * O.clients);
		O.size = O.size_buf;
	}
}

/* --- the run --- */

static const struct {
	unsigned kind;
	const char *name;
} churn[] = {
	{ DM_POL_FAULT, "fault-granularity" },
	{ DM_POL_FREE, "free" },
	{ DM_POL_GRANULARITY, "granularity" },
};

int main(int argc, char **argv)
{
	struct result r = { .daemon_exit = -2 };
	uint32_t policy0[DM_POL_MAX] = { 0 };
	uint64_t next_kill, next_evict, next_policy, next_sample, next_progress,
		end_wait, rng;
	struct sigaction sa = { .sa_handler = on_alarm };
	bool have_policy = false;
	size_t warm_idx = SIZE_MAX;
	int err;

	parse_args(argc, argv);
	setvbuf(stdout, NULL, _IOLBF, 0);
	T0 = now_ms();
	O.parent = getpid();
	rng = mix64(O.seed ^ 0x50a4);
	SH = mmap(NULL, sizeof(*SH), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (SH == MAP_FAILED) {
		perror("soak: mmap");
		return 2;
	}
	memset(SH, 0, sizeof(*SH));
	/* orphaned grandchildren (a killed client's fork()ed child) come to
	 * us, and are reaped */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	sigaction(SIGALRM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	alarm(O.seconds + 180);

	if (O.socket) {
		snprintf(O.sock, sizeof(O.sock), "%s", O.socket);
	} else if (start_daemon()) {
		kill_everything();
		return 2;
	}
	err = ctl_open();
	if (err) {
		say("soak: cannot talk to devmemd at %s: %s", O.sock,
		    devmem_strerror(err));
		kill_everything();
		return 2;
	}
	if (ctl_status(&status_start)) {
		say("soak: devmemd status failed");
		kill_everything();
		return 2;
	}
	capacity = status_start.capacity;
	if (daemon_pid <= 0)
		daemon_pid = (pid_t)status_start.pid;
	if (!ctl_policy(false, 0, 0, policy0))
		have_policy = true;
	usleep(200000);
	take_sample();
	if (!nsamples) {
		say("soak: cannot read devmemd's /proc entries");
		kill_everything();
		return 2;
	}
	r.fds_base = samples[0].fds;
	r.threads_base = samples[0].threads;
	r.rss_base = samples[0].rss_kb;
	say("soak: seed %" PRIu64
	    ", %u clients, %u s, devmemd pid %d (%s, %" PRIu64 " MB) on %s",
	    O.seed, O.clients, O.seconds, (int)daemon_pid,
	    own_daemon ? O.devmemd : "not ours", capacity >> 20, O.sock);

	O.deadline_ms = now_ms() + O.seconds * 1000ull;
	for (unsigned i = 0; i < O.clients; i++)
		spawn(i);
	next_kill = O.kill_interval ? now_ms() + O.kill_interval * 1000ull
				    : UINT64_MAX;
	next_evict = O.evict_interval ? now_ms() + O.evict_interval * 1000ull
				      : UINT64_MAX;
	next_policy = O.policy_interval ? now_ms() + O.policy_interval * 1000ull
					: UINT64_MAX;
	next_sample = now_ms() + 2000;
	next_progress = now_ms() + 10000;
	end_wait = O.deadline_ms + 60000;

	for (;;) {
		uint64_t now = now_ms();
		bool before = now < O.deadline_ms;

		reap(before);
		if (!before)
			STORE(SH->stop, 1);
		if ((!before || LOAD(SH->stop)) && !running())
			break;
		if (now >= end_wait) {
			failure("clients still running 60 s after the deadline: killing them");
			for (unsigned i = 0; i < O.clients; i++) {
				int pid = LOAD(SH->slot[i].pid);

				if (pid > 0) {
					say("soak:   client %u.%u: last operation: %s",
					    i, SH->slot[i].incarnation,
					    SH->slot[i].last_op);
					dump_proc(pid, "the client");
					kill(pid, SIGKILL);
				}
			}
			usleep(500000);
			reap(false);
			break;
		}
		if (!daemon_alive()) {
			failure("devmemd is gone; stopping");
			STORE(SH->stop, 1);
			kill_everything();
			usleep(500000);
			reap(false);
			break;
		}
		if (now >= next_kill && now + 3000 < O.deadline_ms) {
			unsigned i = (unsigned)(mix64(rng++) % O.clients);
			int pid = LOAD(SH->slot[i].pid);

			if (pid > 0 && !SH->slot[i].killing) {
				SH->slot[i].killing = 1;
				kill(pid, SIGKILL);
			}
			next_kill = now + O.kill_interval * 500ull +
				    mix64(rng++) % (O.kill_interval * 1000ull);
		}
		if (now >= next_evict && before) {
			uint64_t units;

			if (!ctl_evict(&units)) {
				r.evict_calls++;
				r.evicted_units += units;
			} else {
				failure("devmemctl evict (DM_EVICT) failed");
			}
			next_evict =
				now + O.evict_interval * 500ull +
				mix64(rng++) % (O.evict_interval * 1000ull);
		}
		if (now >= next_policy && before && have_policy) {
			unsigned k =
				(unsigned)(mix64(rng++) % ARRAY_SIZE(churn));
			uint32_t cur[DM_POL_MAX];

			if (!ctl_policy(false, 0, 0, cur) &&
			    !ctl_policy(true, churn[k].kind,
					!cur[churn[k].kind], NULL)) {
				r.policy_changes++;
				if (!O.quiet)
					say("soak: %6.1fs policy %s -> %s",
					    elapsed_s(), churn[k].name,
					    dm_policy_value_name(
						    churn[k].kind,
						    !cur[churn[k].kind]));
			} else {
				failure("devmemctl policy (DM_POLICY) failed");
			}
			next_policy = now + O.policy_interval * 1000ull;
		}
		if (now >= next_sample) {
			take_sample();
			if (warm_idx == SIZE_MAX && nsamples &&
			    samples[nsamples - 1].t >=
				    MAX(10.0, O.seconds * 0.2))
				warm_idx = nsamples - 1;
			next_sample = now + 2000;
		}
		if (now >= next_progress && !O.quiet) {
			uint64_t ops = 0, mm = 0, se = 0, er = 0;

			for (unsigned i = 0; i < O.clients; i++) {
				for (int k = 0; k < OP_MAX; k++)
					ops += ACC[i].ops[k] +
					       LOAD(SH->slot[i].ops[k]) *
						       (LOAD(SH->slot[i].pid) >
							0);
				mm += ACC[i].cnt[C_mismatches];
				se += ACC[i].cnt[C_state_errors];
				er += ACC[i].cnt[C_errors];
				if (LOAD(SH->slot[i].pid) > 0) {
					mm += LOAD(
						SH->slot[i].cnt[C_mismatches]);
					se += LOAD(
						SH->slot[i]
							.cnt[C_state_errors]);
					er += LOAD(SH->slot[i].cnt[C_errors]);
				}
			}
			say("soak: %6.1fs %" PRIu64 " ops, %" PRIu64
			    " mismatches, %" PRIu64 " state errors, %" PRIu64
			    " errors; devmemd %ld kB RSS, %" PRIu64
			    " MB device used",
			    elapsed_s(), ops, mm, se, er,
			    nsamples ? samples[nsamples - 1].rss_kb : -1,
			    nsamples ? samples[nsamples - 1].used >> 20 : 0);
			next_progress = now + 10000;
		}
		check_hangs();
		usleep(20000);
	}
	r.duration = elapsed_s();

	/* totals */
	for (unsigned i = 0; i < O.clients; i++) {
		for (int k = 0; k < OP_MAX; k++) {
			r.ops_by[k] += ACC[i].ops[k];
			r.ops += ACC[i].ops[k];
		}
		for (int k = 0; k < C_MAX; k++)
			r.total[k] += ACC[i].cnt[k];
		r.killed += ACC[i].killed;
		r.died += ACC[i].died;
		r.incarnations += ACC[i].incarnations;
	}

	/* the end state of devmemd */
	r.alive = daemon_alive();
	if (have_policy && r.alive)
		for (unsigned k = 0; k < DM_POL_MAX; k++)
			ctl_policy(true, k, policy0[k], NULL);
	if (r.alive) {
		struct dm_status_reply st = { 0 };
		uint64_t t = now_ms();

		/* every client is gone: device memory, fds, threads back */
		while (!ctl_status(&st) && (st.used || st.nclients) &&
		       now_ms() - t < 10000)
			usleep(20000);
		status_now = st;
		status_have = true;
		r.used_end = st.used;
		r.nclients_end = st.nclients;
		r.leak_used = st.used != 0;
		if (r.leak_used)
			failure("LEAK: %" PRIu64
				" bytes of device memory still in use after every client went (%u clients connected)",
				st.used, st.nclients);
		t = now_ms();
		do {
			take_sample();
			r.fds_end = samples[nsamples - 1].fds;
			r.threads_end = samples[nsamples - 1].threads;
			if (r.fds_end == r.fds_base &&
			    r.threads_end == r.threads_base)
				break;
			usleep(100000);
		} while (now_ms() - t < 10000);
		r.leak_fds = r.fds_end != r.fds_base;
		r.leak_threads = r.threads_end != r.threads_base;
		if (r.leak_fds)
			failure("LEAK: devmemd has %d fds, %d at the start",
				r.fds_end, r.fds_base);
		if (r.leak_threads)
			failure("LEAK: devmemd has %d threads, %d at the start",
				r.threads_end, r.threads_base);
	} else {
		r.fds_end = r.threads_end = -1;
	}
	/* the figures as of the last status devmemd gave (its last breath,
	 * if it died) */
	if (status_have)
		for (unsigned k = 0; k < DM_STATS_FIELDS - 3; k++)
			r.dev[k] = status_now.counters[k] -
				   status_start.counters[k];
	/* RSS: the pool is backed as it is used; outside it, devmemd must
	 * not grow */
	if (nsamples) {
		const struct sample *e = &samples[nsamples - 1];
		const struct sample *w =
			warm_idx != SIZE_MAX ? &samples[warm_idx] : &samples[0];

		r.rss_end = e->rss_kb;
		r.rss_warm = w->rss_kb;
		r.warm_t = w->t;
		r.pool_end = e->pool_kb;
		for (size_t i = 0; i < nsamples; i++)
			r.rss_max = MAX(r.rss_max, samples[i].rss_kb);
		if (e->pool_kb >= 0 && w->pool_kb >= 0) {
			r.nonpool_warm = w->rss_kb - w->pool_kb;
			r.nonpool_end = e->rss_kb - e->pool_kb;
		} else { /* pool not found: count all of it as the pool */
			r.nonpool_warm = w->rss_kb;
			r.nonpool_end =
				MAX(0L, e->rss_kb - (long)(capacity >> 10));
		}
		r.rss_grew = r.alive && r.nonpool_end - r.nonpool_warm >
						(long)O.rss_slack_mb * 1024;
		if (r.rss_grew)
			failure("devmemd's memory outside the device pool grew from %ld kB to %ld kB",
				r.nonpool_warm, r.nonpool_end);
	}
	if (own_daemon && daemon_pid > 0) {
		uint64_t t = now_ms();
		int st;

		kill(daemon_pid, SIGTERM);
		r.daemon_exit = -1;
		while (now_ms() - t < 10000) {
			if (waitpid(daemon_pid, &st, WNOHANG) == daemon_pid) {
				r.daemon_exit =
					WIFEXITED(st) ? WEXITSTATUS(st) : -1;
				daemon_pid = -1;
				break;
			}
			usleep(20000);
		}
		if (daemon_pid > 0) {
			failure("devmemd did not exit within 10 s of SIGTERM");
			kill(daemon_pid, SIGKILL);
			waitpid(daemon_pid, &st, 0);
		} else if (r.daemon_exit) {
			failure("devmemd exited with status %d on SIGTERM",
				r.daemon_exit);
		}
		if (!access(O.sock, F_OK))
			failure("devmemd left its socket behind");
		rmdir(tmpdir);
	}
	reap(false);
	r.pass = !r.total[C_mismatches] && !r.total[C_state_errors] &&
		 !r.total[C_errors] && !LOAD(SH->nfail) && r.alive &&
		 !r.leak_used && !r.leak_fds && !r.leak_threads &&
		 !r.rss_grew && r.daemon_exit <= 0 && r.daemon_exit != -1;
	print_summary(&r);
	if (O.json)
		write_json(&r);
	return r.pass ? 0 : 1;
}
