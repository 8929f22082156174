/* SPDX-License-Identifier: MIT */
/* devmem-bench: the text report, the targets, JSON and CSV. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "bench.h"
#include "common.h"
#include "report.h"

/* ---------------------------------------------------------------------
 * Figures derived from the measurements, shared by all outputs
 */

double memcpy_rate(const struct bench *b, unsigned i)
{
	return b->mcp[i].done ? rate_of(&b->mcp[i].ms, b->opt.sizes[i]).median
			      : NAN;
}

double memcpy_fresh_rate(const struct bench *b, unsigned i)
{
	return b->mcp[i].done
		       ? rate_of(&b->mcp[i].fresh_ms, b->opt.sizes[i]).median
		       : NAN;
}

double ratio(double a, double b)
{
	return isfinite(a) && isfinite(b) && b > 0 ? a / b : NAN;
}

/* Which raw userfaultfd round trip devmem's 4 KB fault is compared with:
 * the fastest handler placement measured, because a ceiling is the best
 * that can be had (where the scheduler puts the handler varies from run
 * to run: same CPU, about 4 us on a VM; other CPU, tens of us).  -1 if
 * none was measured. */
int uffd_ceiling_place(const struct bench *b)
{
	int best = -1;

	for (int pl = 0; pl < NPLACES; pl++)
		if (b->uffd.done[pl] &&
		    (best < 0 ||
		     b->uffd.us[pl].median < b->uffd.us[best].median))
			best = pl;
	return best;
}

double uffd_ceiling_us(const struct bench *b)
{
	int pl = uffd_ceiling_place(b);

	return pl >= 0 ? b->uffd.us[pl].median : NAN;
}

/* The size the targets are stated at: 256 MB, else the largest size the
 * kernel section measured, else the largest size asked for. */
int target_size_index(const struct bench *b)
{
	int best = -1, best_done = -1;

	for (unsigned i = 0; i < b->opt.nsizes; i++) {
		bool done = b->mig[i][MODE_THP].done && b->mig[i][MODE_4K].done;

		if (b->opt.sizes[i] == 256ull << 20 && done)
			return (int)i;
		if (best < 0 || b->opt.sizes[i] > b->opt.sizes[best])
			best = (int)i;
		if (done && (best_done < 0 ||
			     b->opt.sizes[i] > b->opt.sizes[best_done]))
			best_done = (int)i;
	}
	return best_done >= 0 ? best_done : best;
}

static double kernel_rate(const struct bench *b, int i, enum mode m, int dir)
{
	const struct mig_result *r;

	if (i < 0 || !b->mig[i][m].done)
		return NAN;
	r = &b->mig[i][m];
	return rate_of(dir ? &r->d2s_ms : &r->s2d_ms, b->opt.sizes[i]).median;
}

static double gain_pct(double thp, double regular)
{
	return isfinite(thp) && isfinite(regular) && regular > 0
		       ? (thp - regular) / regular * 100.0
		       : NAN;
}

static void set_status(struct target *t, bool met)
{
	t->status = isfinite(t->value) ? (met ? TARGET_MET : TARGET_NOT_MET)
				       : TARGET_NA;
}

/* Did the THP row of size i move every whole unit as a 2 MB folio, and the
 * 4K row none, in every migration?  If not, the rows' figures are not those
 * of 2 MB and 4 KB migration, and targets about them say nothing. */
bool rows_as_labelled(const struct bench *b, int i)
{
	const struct mig_result *thp, *reg;

	if (i < 0 || !b->mig[i][MODE_THP].done || !b->mig[i][MODE_4K].done)
		return false;
	thp = &b->mig[i][MODE_THP];
	reg = &b->mig[i][MODE_4K];
	for (int d = 0; d < 2; d++)
		if (thp->min_huge[d] != thp->expect_huge ||
		    thp->max_huge[d] != thp->expect_huge || reg->max_huge[d])
			return false;
	return true;
}

/* A 2 MB-vs-4 KB target at a size whose rows were not what they say */
static void not_as_labelled(struct target *t)
{
	t->status = TARGET_NA;
	snprintf(
		t->detail, sizeof(t->detail),
		"the THP or 4K row did not migrate as labelled (see the warnings)");
}

unsigned compute_targets(const struct bench *b, struct target *t)
{
	int ti = target_size_index(b);
	char sz[16] = "?";
	unsigned n = 0;
	double mc = ti >= 0 ? memcpy_rate(b, (unsigned)ti) : NAN;
	bool labelled = rows_as_labelled(b, ti);

	if (ti >= 0)
		size_str(b->opt.sizes[ti], sz, sizeof(sz));
	for (int dir = 0; dir < 2; dir++) {
		double thp = kernel_rate(b, ti, MODE_THP, dir);
		double limit = dir ? 0.7 : 0.8;

		t[n] = (struct target){ .unit = "x memcpy" };
		snprintf(t[n].name, sizeof(t[n].name),
			 "2 MB migration %s at %s >= %.1fx memcpy",
			 dir ? "Dev->Sys" : "Sys->Dev", sz, limit);
		t[n].value = ratio(thp, mc);
		set_status(&t[n], t[n].value >= limit);
		if (isfinite(t[n].value) && dir)
			snprintf(
				t[n].detail, sizeof(t[n].detail),
				"%.2f GiB/s vs memcpy %.2f GiB/s; %.2fx memcpy into fresh memory (%.2f GiB/s)",
				thp, mc,
				ratio(thp, memcpy_fresh_rate(b, (unsigned)ti)),
				memcpy_fresh_rate(b, (unsigned)ti));
		else if (isfinite(t[n].value))
			snprintf(t[n].detail, sizeof(t[n].detail),
				 "%.2f GiB/s vs memcpy %.2f GiB/s", thp, mc);
		else
			snprintf(t[n].detail, sizeof(t[n].detail),
				 "needs the kernel and ceiling sections");
		if (isfinite(t[n].value) && !labelled)
			not_as_labelled(&t[n]);
		n++;
	}
	{
		double dev = NAN, raw = uffd_ceiling_us(b);

		/* the 4 KB fault at the target size, else the largest 4K
		 * fault row measured */
		if (ti >= 0 && b->fault[ti][MODE_4K].done)
			dev = b->fault[ti][MODE_4K].fault_us.median;
		for (unsigned i = 0; !isfinite(dev) && i < b->opt.nsizes; i++)
			if (b->fault[i][MODE_4K].done)
				dev = b->fault[i][MODE_4K].fault_us.median;
		t[n] = (struct target){ .unit = "x raw uffd" };
		snprintf(t[n].name, sizeof(t[n].name),
			 "4 KB CPU fault round trip <= 1.2x raw userfaultfd");
		t[n].value = ratio(dev, raw);
		set_status(&t[n], t[n].value <= 1.2);
		if (isfinite(t[n].value))
			snprintf(t[n].detail, sizeof(t[n].detail),
				 "%.1f us vs raw %.1f us", dev, raw);
		else
			snprintf(t[n].detail, sizeof(t[n].detail),
				 "needs the fault and ceiling sections");
		n++;
	}
	for (int dir = 0; dir < 2; dir++) {
		double thp = kernel_rate(b, ti, MODE_THP, dir);
		double reg = kernel_rate(b, ti, MODE_4K, dir);

		t[n] = (struct target){ .unit = "%" };
		snprintf(t[n].name, sizeof(t[n].name),
			 "2 MB over 4 KB throughput gain %s at %s > 0",
			 dir ? "Dev->Sys" : "Sys->Dev", sz);
		t[n].value = gain_pct(thp, reg);
		set_status(&t[n], t[n].value > 0);
		if (isfinite(t[n].value))
			snprintf(t[n].detail, sizeof(t[n].detail),
				 "%.2f vs %.2f GiB/s", thp, reg);
		else
			snprintf(t[n].detail, sizeof(t[n].detail),
				 "needs the kernel section");
		if (isfinite(t[n].value) && !labelled)
			not_as_labelled(&t[n]);
		n++;
	}
	t[n] = (struct target){ .unit = "bytes/GiB", .status = TARGET_NA };
	snprintf(t[n].name, sizeof(t[n].name),
		 "device metadata overhead per GiB of device memory");
	t[n].value = NAN;
	if (b->meta.ok) {
		t[n].value = (double)b->meta.metadata_bytes /
			     ((double)b->meta.capacity / GIB);
		t[n].status = TARGET_INFO;
		snprintf(
			t[n].detail, sizeof(t[n].detail),
			"bytes/GiB: %llu bytes for %llu MiB, %.1f bytes per 4 KB page (devmemctl)",
			(unsigned long long)b->meta.metadata_bytes,
			(unsigned long long)(b->meta.capacity >> 20),
			(double)b->meta.metadata_bytes /
				(double)(b->meta.capacity / PAGE_SIZE));
	} else {
		snprintf(t[n].detail, sizeof(t[n].detail), "%s",
			 b->meta.note[0] ? b->meta.note : "not measured");
	}
	n++;
	return n;
}

const char *target_status_name(int status)
{
	switch (status) {
	case TARGET_MET:
		return "met";
	case TARGET_NOT_MET:
		return "not met";
	case TARGET_INFO:
		return "reported";
	}
	return "n/a";
}

/* ---------------------------------------------------------------------
 * Text
 */

static void fmt_ratio(char *buf, size_t len, double r)
{
	if (isfinite(r))
		snprintf(buf, len, "%.2fx", r);
	else
		snprintf(buf, len, "-");
}

static void fmt_pct(char *buf, size_t len, double p)
{
	if (isfinite(p))
		snprintf(buf, len, "%.1f%%", p);
	else
		snprintf(buf, len, "-");
}

void print_header(const struct bench *b, FILE *f)
{
	const struct machine *m = &b->mach;
	char sz[16];

	fprintf(f, "devmem-bench %s, %s\n", PACKAGE_VERSION, b->started);
	fprintf(f, "machine:  %s (%s), %ld CPUs online", m->cpu_model,
		m->hostname, m->cpus_online);
	if (m->cores >= 0)
		fprintf(f, "; hwloc: %d package%s, %d cores, %d PUs",
			m->packages, m->packages == 1 ? "" : "s", m->cores,
			m->pus);
	fprintf(f, "\nkernel:   %s\n", m->kernel);
	fprintf(f, "THP:      enabled [%s], defrag [%s]\n", m->thp_enabled,
		m->thp_defrag);
	if (m->numa_nodes >= 0) {
		fprintf(f, "NUMA:     %d node%s (hwloc):", m->numa_nodes,
			m->numa_nodes == 1 ? "" : "s");
		for (int i = 0;
		     i < m->numa_nodes && i < (int)ARRAY_SIZE(m->node_memory);
		     i++)
			fprintf(f, " node%d %.1f GiB", i,
				(double)m->node_memory[i] / GIB);
		fprintf(f, "; MemTotal %.1f GiB\n", (double)m->mem_total / GIB);
	} else {
		fprintf(f, "NUMA:     unknown (hwloc failed)\n");
	}
	if (b->dmd.socket[0])
		fprintf(f, "devmemd:  %s, %s, device memory %s\n",
			b->dmd.socket,
			b->dmd.private_daemon ? "private (started for this run)"
					      : "already running",
			size_str(b->dmd.capacity, sz, sizeof(sz)));
	else
		fprintf(f, "devmemd:  not used (ceiling only)\n");
	fprintf(f, "run:      sizes");
	for (unsigned i = 0; i < b->opt.nsizes; i++)
		fprintf(f, "%c%s", i ? ',' : ' ',
			size_str(b->opt.sizes[i], sz, sizeof(sz)));
	fprintf(f,
		"; %u iterations; figures are medians, [min..max] over the iterations\n",
		b->opt.iterations);
}

/* The kernel's own names for its buffer sizes */
static void kernel_title(uint64_t size, char *buf, size_t len)
{
	static const struct {
		uint64_t size;
		const char *name;
	} names[] = {
		{ 512ull << 10, "Small Buffer (512KB)" },
		{ 1ull << 20, "Half THP Size (1MB)" },
		{ 2ull << 20, "Single THP Size (2MB)" },
		{ 4ull << 20, "Two THP Size (4MB)" },
		{ 8ull << 20, "Four THP Size (8MB)" },
		{ 16ull << 20, "Eight THP Size (16MB)" },
		{ 256ull << 20, "One twenty eight THP Size (256MB)" },
	};
	char sz[16];

	for (unsigned i = 0; i < ARRAY_SIZE(names); i++)
		if (names[i].size == size) {
			snprintf(buf, len, "%s", names[i].name);
			return;
		}
	snprintf(buf, len, "Buffer (%sB)", size_str(size, sz, sizeof(sz)));
}

static void print_time_row(FILE *f, const char *label,
			   const struct summary *thp, const struct summary *reg)
{
	char imp[16], a[32], c[32];

	fmt_pct(imp, sizeof(imp),
		(reg->median - thp->median) / reg->median * 100.0);
	snprintf(a, sizeof(a), "%.3f ms", thp->median);
	snprintf(c, sizeof(c), "%.3f ms", reg->median);
	fprintf(f, "%-20s | %-15s | %-15s | %s\n", label, a, c, imp);
	snprintf(a, sizeof(a), "%.3f..%.3f", thp->min, thp->max);
	snprintf(c, sizeof(c), "%.3f..%.3f", reg->min, reg->max);
	fprintf(f, "%-20s | %-15s | %-15s |\n", "  min..max", a, c);
}

static void print_rate_row(FILE *f, const char *label, double thp, double reg,
			   double mc)
{
	char imp[16], a[32], c[32], r1[16], r2[16];

	fmt_pct(imp, sizeof(imp), gain_pct(thp, reg));
	snprintf(a, sizeof(a), "%.2f GB/s", thp);
	snprintf(c, sizeof(c), "%.2f GB/s", reg);
	fmt_ratio(r1, sizeof(r1), ratio(thp, mc));
	fmt_ratio(r2, sizeof(r2), ratio(reg, mc));
	fprintf(f, "%-20s | %-15s | %-15s | %-11s | %-10s | %s\n", label, a, c,
		imp, r1, r2);
}

static void print_kernel_size(const struct bench *b, unsigned i, FILE *f)
{
	const struct mig_result *thp = &b->mig[i][MODE_THP];
	const struct mig_result *reg = &b->mig[i][MODE_4K];
	uint64_t size = b->opt.sizes[i];
	double mc = memcpy_rate(b, i);
	char title[64];

	kernel_title(size, title, sizeof(title));
	fprintf(f, "\n=== %s (%.1f MB) ===\n", title,
		(double)size / (1024.0 * 1024.0));
	if (!thp->done || !reg->done) {
		fprintf(f, "no result: %s\n",
			thp->failed || reg->failed
				? "the run failed (see the errors)"
				: "not measured (see the warnings)");
		return;
	}
	fprintf(f,
		"                     | With THP        | Without THP     | Improvement | THP/memcpy | 4K/memcpy\n");
	fprintf(f,
		"-----------------------------------------------------------------------------------------------\n");
	print_time_row(f, "Sys->Dev Migration", &thp->s2d_ms, &reg->s2d_ms);
	print_time_row(f, "Dev->Sys Migration", &thp->d2s_ms, &reg->d2s_ms);
	print_rate_row(f, "S->D Throughput", rate_of(&thp->s2d_ms, size).median,
		       rate_of(&reg->s2d_ms, size).median, mc);
	print_rate_row(f, "D->S Throughput", rate_of(&thp->d2s_ms, size).median,
		       rate_of(&reg->d2s_ms, size).median, mc);
	fprintf(f,
		"2 MB units per migration: THP S->D %llu, D->S %llu (expected %llu); 4K S->D %llu, D->S %llu (expected 0)%s\n",
		(unsigned long long)thp->max_huge[0],
		(unsigned long long)thp->max_huge[1],
		(unsigned long long)thp->expect_huge,
		(unsigned long long)reg->max_huge[0],
		(unsigned long long)reg->max_huge[1],
		rows_as_labelled(b, (int)i) ? "" : " -- WARNING, see below");
}

void print_kernel(const struct bench *b, FILE *f)
{
	char sz[16];

	fprintf(f,
		"\n1. THP vs 4 KB migration (the kernel's benchmark_thp_migration on devmem)\n");
	fprintf(f,
		"   buffers 2 MB-aligned; fill; 1 warm-up round trip; %u timed iterations of\n"
		"   devmem_migrate(DEVMEM_TO_DEVICE) then (DEVMEM_TO_SYSTEM); GB/s = GiB/s;\n"
		"   improvement = (4K - THP) / 4K for times, (THP - 4K) / 4K for throughput\n",
		b->opt.iterations);
	for (unsigned i = 0; i < b->opt.nsizes; i++)
		print_kernel_size(b, i, f);
	fprintf(f,
		"\nSummary, GiB/s (median)     Sys->Dev                  Dev->Sys\n");
	fprintf(f, "%-8s %-9s | %-7s %-7s %-8s | %-7s %-7s %-8s\n", "size",
		"memcpy", "2 MB", "4 KB", "gain", "2 MB", "4 KB", "gain");
	for (unsigned i = 0; i < b->opt.nsizes; i++) {
		double r[2][2];
		char mc[16], g[2][16];

		if (!b->mig[i][MODE_THP].done || !b->mig[i][MODE_4K].done)
			continue;
		for (int d = 0; d < 2; d++) {
			r[d][0] = kernel_rate(b, (int)i, MODE_THP, d);
			r[d][1] = kernel_rate(b, (int)i, MODE_4K, d);
			fmt_pct(g[d], sizeof(g[d]), gain_pct(r[d][0], r[d][1]));
		}
		if (b->mcp[i].done)
			snprintf(mc, sizeof(mc), "%.2f", memcpy_rate(b, i));
		else
			snprintf(mc, sizeof(mc), "-");
		fprintf(f,
			"%-8s %-9s | %-7.2f %-7.2f %-8s | %-7.2f %-7.2f %-8s\n",
			size_str(b->opt.sizes[i], sz, sizeof(sz)), mc, r[0][0],
			r[0][1], g[0], r[1][0], r[1][1], g[1]);
	}
}

void print_fault(const struct bench *b, FILE *f)
{
	double raw = uffd_ceiling_us(b);
	char sz[16];

	fprintf(f,
		"\n2. CPU-fault-driven return: migrate to the device, then read one byte of every\n"
		"   4 KB page; a 2 MB device folio comes back whole on its first touch\n"
		"   (faults = units), a 4 KB page on its own (faults = pages); the touching\n"
		"   thread stays on one CPU during a pass\n");
	fprintf(f, "%-6s %-6s %8s | %-24s | %-24s | %7s | %-7s | %s\n", "size",
		"buffer", "faults", "us/fault [min..max]", "pass ms [min..max]",
		"GiB/s", "/memcpy", "/raw uffd");
	for (unsigned i = 0; i < b->opt.nsizes; i++) {
		for (int m = 0; m < NMODES; m++) {
			const struct fault_result *r = &b->fault[i][m];
			char a[40], c[40], r1[16], r2[16];
			double rate;

			size_str(b->opt.sizes[i], sz, sizeof(sz));
			if (!r->done) {
				fprintf(f, "%-6s %-6s no result: %s\n", sz,
					m ? "4K" : "THP",
					r->failed
						? "the run failed (see the errors)"
						: "not measured (see the warnings)");
				continue;
			}
			rate = rate_of(&r->total_ms, b->opt.sizes[i]).median;
			snprintf(a, sizeof(a), "%.1f [%.1f..%.1f]",
				 r->fault_us.median, r->fault_us.min,
				 r->fault_us.max);
			snprintf(c, sizeof(c), "%.2f [%.2f..%.2f]",
				 r->total_ms.median, r->total_ms.min,
				 r->total_ms.max);
			fmt_ratio(r1, sizeof(r1),
				  ratio(rate, memcpy_rate(b, i)));
			fmt_ratio(r2, sizeof(r2),
				  m == MODE_4K ? ratio(r->fault_us.median, raw)
					       : NAN);
			fprintf(f,
				"%-6s %-6s %8llu | %-24s | %-24s | %7.2f | %-7s | %s\n",
				sz, m ? "4K" : "THP",
				(unsigned long long)r->expect_faults, a, c,
				rate, r1, r2);
		}
	}
}

void print_ceiling(const struct bench *b, FILE *f)
{
	const struct uffd_result *u = &b->uffd;
	char sz[16];

	fprintf(f,
		"\n3. Ceiling, same run: memcpy between two pre-faulted THP-backed buffers\n"
		"   (and, last column, into a freshly mapped THP-backed buffer: the kernel\n"
		"   allocates and zeroes its pages, as for any data coming back to system\n"
		"   memory), and the raw userfaultfd 4 KB round trip in one process\n");
	fprintf(f, "%-8s | %-26s | %-22s | %s\n", "size",
		"memcpy ms [min..max]", "GiB/s [min..max]", "fresh dst GiB/s");
	for (unsigned i = 0; i < b->opt.nsizes; i++) {
		struct summary r;
		char a[48], g[48];

		if (!b->mcp[i].done)
			continue;
		r = rate_of(&b->mcp[i].ms, b->opt.sizes[i]);
		snprintf(a, sizeof(a), "%.3f [%.3f..%.3f]", b->mcp[i].ms.median,
			 b->mcp[i].ms.min, b->mcp[i].ms.max);
		snprintf(g, sizeof(g), "%.2f [%.2f..%.2f]", r.median, r.min,
			 r.max);
		fprintf(f, "%-8s | %-26s | %-22s | %.2f\n",
			size_str(b->opt.sizes[i], sz, sizeof(sz)), a, g,
			memcpy_fresh_rate(b, i));
	}
	fprintf(f,
		"raw userfaultfd round trip (fault, handler read(), UFFDIO_COPY 4 KB, resume),\n"
		"%u faults x %u passes%s:\n",
		u->faults, b->opt.iterations,
		u->user_mode_only ? ", UFFD_USER_MODE_ONLY" : "");
	for (int pl = 0; pl < NPLACES; pl++) {
		if (!u->done[pl])
			continue;
		fprintf(f, "  handler on %-20s %7.2f us/fault [%.2f..%.2f]%s\n",
			placement_name(pl), u->us[pl].median, u->us[pl].min,
			u->us[pl].max,
			pl == uffd_ceiling_place(b)
				? "  <- the ceiling for 4 KB faults (fastest)"
				: "");
	}
	if (u->error[0])
		fprintf(f, "  not measured: %s\n", u->error);
}

void print_concurrency(const struct bench *b, FILE *f)
{
	const struct conc_result *r = &b->conc;
	const struct summary *one[2] = { &r->one_s2d_ms, &r->one_d2s_ms };
	const struct summary *all[2] = { &r->all_s2d_ms, &r->all_d2s_ms };
	char sz[16];

	fprintf(f,
		"\n4. Concurrency: %u client%s (separate processes, each its own devmem_t),\n"
		"   %s THP-backed buffer each, migrating at the same time\n",
		r->clients, r->clients == 1 ? "" : "s",
		size_str(r->size, sz, sizeof(sz)));
	if (!r->done) {
		fprintf(f, "no result: %s\n",
			r->failed ? "the run failed (see the errors)"
				  : "not measured (see the warnings)");
		return;
	}
	fprintf(f, "%-9s | %-26s | %-26s | %s\n", "GiB/s",
		"1 client [min..max]", "all clients, aggregate", "scaling");
	for (int d = 0; d < 2; d++) {
		struct summary a = rate_of(one[d], r->size);
		struct summary c = rate_of(all[d], r->size * r->clients);
		char x[48], y[48], s[16];

		snprintf(x, sizeof(x), "%.2f [%.2f..%.2f]", a.median, a.min,
			 a.max);
		snprintf(y, sizeof(y), "%.2f [%.2f..%.2f]", c.median, c.min,
			 c.max);
		fmt_ratio(s, sizeof(s), ratio(c.median, a.median));
		fprintf(f, "%-9s | %-26s | %-26s | %s\n",
			d ? "Dev->Sys" : "Sys->Dev", x, y, s);
	}
}

void print_targets(const struct bench *b, FILE *f)
{
	struct target t[MAX_TARGETS];
	unsigned n = compute_targets(b, t);

	fprintf(f, "\nTargets (reported, not asserted)\n");
	for (unsigned i = 0; i < n; i++) {
		char v[32];

		if (!isfinite(t[i].value))
			snprintf(v, sizeof(v), "-");
		else if (!strcmp(t[i].unit, "%"))
			snprintf(v, sizeof(v), "%+.1f%%", t[i].value);
		else if (!strcmp(t[i].unit, "bytes/GiB"))
			snprintf(v, sizeof(v), "%.0f", t[i].value);
		else
			snprintf(v, sizeof(v), "%.2fx", t[i].value);
		fprintf(f, "  %-54s %-8s %-9s %s\n", t[i].name, v,
			target_status_name(t[i].status), t[i].detail);
	}
}

void print_warnings(const struct bench *b, FILE *f)
{
	if (!b->nwarnings)
		return;
	fprintf(f, "\n");
	for (unsigned i = 0; i < b->nwarnings; i++)
		fprintf(f, "%s\n", b->warnings[i]);
}
