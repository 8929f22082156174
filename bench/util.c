/* SPDX-License-Identifier: MIT */
/* devmem-bench: clocks, statistics, buffers and messages. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "common.h"

double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Sorts v in place. */
void summarize(double *v, unsigned n, struct summary *out)
{
	memset(out, 0, sizeof(*out));
	if (!n)
		return;
	qsort(v, n, sizeof(*v), cmp_double);
	out->n = n;
	out->min = v[0];
	out->max = v[n - 1];
	out->median = n & 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double gibps(uint64_t bytes, double ms)
{
	return ms > 0 ? (double)bytes / GIB / (ms / 1e3) : 0;
}

struct summary rate_of(const struct summary *ms, uint64_t bytes)
{
	struct summary r = { gibps(bytes, ms->median), gibps(bytes, ms->max),
			     gibps(bytes, ms->min), ms->n };

	return r;
}

/* "512K", "2M", "256M", "1G"; odd sizes in the largest exact unit */
const char *size_str(uint64_t bytes, char *buf, size_t len)
{
	static const char units[] = "KMGT";
	uint64_t v = bytes;
	int u = -1;

	while (v && v % 1024 == 0 && u < 3) {
		v /= 1024;
		u++;
	}
	if (u < 0)
		snprintf(buf, len, "%llu", (unsigned long long)bytes);
	else
		snprintf(buf, len, "%llu%c", (unsigned long long)v, units[u]);
	return buf;
}

/*
 * len bytes of private anonymous memory at a 2 MB-aligned address, so
 * that every whole 2 MB unit of it can be a THP; MADV_HUGEPAGE or
 * MADV_NOHUGEPAGE decides whether it will be.
 */
void *map_aligned(size_t len, bool thp)
{
	size_t size = ALIGN_UP(len, PAGE_SIZE);
	uint8_t *raw, *p;

	raw = mmap(NULL, size + UNIT_SIZE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (raw == MAP_FAILED)
		return NULL;
	p = (uint8_t *)ALIGN_UP((uintptr_t)raw, UNIT_SIZE);
	if (p > raw)
		munmap(raw, p - raw);
	if (raw + UNIT_SIZE > p)
		munmap(p + size, raw + UNIT_SIZE - p);
	if (madvise(p, size, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE)) {
		munmap(p, size);
		return NULL;
	}
	return p;
}

void unmap_aligned(void *p, size_t len)
{
	if (p)
		munmap(p, ALIGN_UP(len, PAGE_SIZE));
}

/* Every 8-byte word differs, and from one buffer (seed) to the next, so a
 * page that came back from the wrong place or not at all shows. */
static inline uint64_t pattern_word(uint64_t seed, size_t i)
{
	return (seed << 40) ^ (i * 0x9e3779b97f4a7c15ull) ^
	       0x5a5a5a5a5a5a5a5aull;
}

void fill_pattern(void *p, size_t len, uint64_t seed)
{
	uint64_t *w = p;

	for (size_t i = 0; i < len / sizeof(*w); i++)
		w[i] = pattern_word(seed, i);
}

bool check_pattern(const void *p, size_t len, uint64_t seed, size_t *bad_offset)
{
	const uint64_t *w = p;

	for (size_t i = 0; i < len / sizeof(*w); i++)
		if (w[i] != pattern_word(seed, i)) {
			*bad_offset = i * sizeof(*w);
			return false;
		}
	return true;
}

/*
 * Progress goes to stderr.  progress() starts a step: on a terminal it
 * rewrites the one progress line, in a log it is a line of its own.
 * progress_iter() counts iterations within the step, on a terminal only,
 * so that a log stays short.
 */
static char progress_step[160];

static void progress_show(const struct bench *b, const char *suffix)
{
	bool tty = isatty(STDERR_FILENO);

	if (b->opt.quiet || (suffix && !tty))
		return;
	fprintf(stderr, "%s" BENCH_NAME ": %s%s%s", tty ? "\r\033[K" : "",
		progress_step, suffix ? suffix : "", tty ? "" : "\n");
	fflush(stderr);
}

void progress(const struct bench *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(progress_step, sizeof(progress_step), fmt, ap);
	va_end(ap);
	progress_show(b, NULL);
}

void progress_iter(const struct bench *b, unsigned k, unsigned n)
{
	char suffix[32];

	snprintf(suffix, sizeof(suffix), " (%u/%u)", k, n);
	progress_show(b, suffix);
}

void progress_done(const struct bench *b)
{
	if (!b->opt.quiet && isatty(STDERR_FILENO))
		fputs("\r\033[K", stderr);
}

void note(const struct bench *b, const char *fmt, ...)
{
	va_list ap;

	if (b->opt.quiet)
		return;
	progress_done(b);
	fputs(BENCH_NAME ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void __attribute__((format(printf, 3, 0)))
keep_message(struct bench *b, const char *prefix, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n = strlen(prefix);

	memcpy(msg, prefix, n + 1);
	vsnprintf(msg + n, sizeof(msg) - n, fmt, ap);
	if (b->nwarnings < MAX_WARNINGS)
		b->warnings[b->nwarnings++] = strdup(msg);
}

/* A result that is not what it claims to be: kept for the report. */
void warn(struct bench *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	keep_message(b, "warning: ", fmt, ap);
	va_end(ap);
}

/* Something failed: said now on stderr, kept for the report, and the run
 * exits with status 1. */
void fail(struct bench *b, const char *fmt, ...)
{
	va_list ap;

	progress_done(b);
	fputs(BENCH_NAME ": error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	va_start(ap, fmt);
	keep_message(b, "error: ", fmt, ap);
	va_end(ap);
	b->failed = true;
}

void dm_fail(struct bench *b, const char *what, int err)
{
	fail(b, "%s: %s", what, devmem_strerror(err));
}
