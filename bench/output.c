/* SPDX-License-Identifier: MIT */
/* devmem-bench: the machine-readable outputs, --json and --csv. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "bench.h"
#include "common.h"
#include "report.h"

static const char *const mode_key[NMODES] = { "thp", "4k" };
static const char *const place_key[NPLACES] = { "any", "same_cpu",
						"other_cpu" };

/* ---------------------------------------------------------------------
 * A small JSON writer: pretty-printed, commas placed by nesting level
 */

struct json {
	FILE *f;
	int depth;
	bool need_comma[16];
};

static void j_key(struct json *j, const char *key)
{
	if (j->need_comma[j->depth])
		fputc(',', j->f);
	fprintf(j->f, "\n%*s", 2 * j->depth, "");
	j->need_comma[j->depth] = true;
	if (key)
		fprintf(j->f, "\"%s\": ", key); /* keys are ours: no escaping */
}

static void j_open(struct json *j, const char *key, char c)
{
	j_key(j, key);
	fputc(c, j->f);
	j->depth++;
	j->need_comma[j->depth] = false;
}

static void j_close(struct json *j, char c)
{
	bool had = j->need_comma[j->depth];

	j->depth--;
	if (had)
		fprintf(j->f, "\n%*s", 2 * j->depth, "");
	fputc(c, j->f);
}

static void j_str(struct json *j, const char *key, const char *s)
{
	j_key(j, key);
	fputc('"', j->f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(j->f, "\\%c", c);
		else if (c < 0x20)
			fprintf(j->f, "\\u%04x", c);
		else
			fputc(c, j->f);
	}
	fputc('"', j->f);
}

static void j_num(struct json *j, const char *key, double v)
{
	j_key(j, key);
	if (isfinite(v))
		fprintf(j->f, "%.6g", v);
	else
		fputs("null", j->f);
}

static void j_u64(struct json *j, const char *key, uint64_t v)
{
	j_key(j, key);
	fprintf(j->f, "%llu", (unsigned long long)v);
}

static void j_bool(struct json *j, const char *key, bool v)
{
	j_key(j, key);
	fputs(v ? "true" : "false", j->f);
}

static void j_summary(struct json *j, const char *key, const struct summary *s)
{
	j_open(j, key, '{');
	j_num(j, "median", s->median);
	j_num(j, "min", s->min);
	j_num(j, "max", s->max);
	j_u64(j, "samples", s->n);
	j_close(j, '}');
}

static void json_machine(struct json *j, const struct bench *b)
{
	const struct machine *m = &b->mach;

	j_open(j, "machine", '{');
	j_str(j, "hostname", m->hostname);
	j_str(j, "cpu_model", m->cpu_model);
	j_num(j, "cpus_online", (double)m->cpus_online);
	j_num(j, "packages", m->packages);
	j_num(j, "cores", m->cores);
	j_num(j, "pus", m->pus);
	j_str(j, "kernel", m->kernel);
	j_str(j, "thp_enabled", m->thp_enabled);
	j_str(j, "thp_defrag", m->thp_defrag);
	j_num(j, "numa_nodes", m->numa_nodes);
	j_open(j, "numa_node_memory_bytes", '[');
	for (int i = 0;
	     i < m->numa_nodes && i < (int)ARRAY_SIZE(m->node_memory); i++)
		j_u64(j, NULL, m->node_memory[i]);
	j_close(j, ']');
	j_u64(j, "numa_memory_bytes", m->total_memory);
	j_u64(j, "mem_total_bytes", m->mem_total);
	j_close(j, '}');
}

static void json_config(struct json *j, const struct bench *b)
{
	static const char *const sec[] = { "kernel", "fault", "ceiling",
					   "concurrency" };

	j_open(j, "devmemd", '{');
	j_str(j, "socket", b->dmd.socket);
	j_bool(j, "private", b->dmd.private_daemon);
	if (b->dmd.private_daemon)
		j_str(j, "binary", b->dmd.binary);
	j_u64(j, "capacity_bytes", b->dmd.capacity);
	j_close(j, '}');
	j_open(j, "config", '{');
	j_open(j, "sizes", '[');
	for (unsigned i = 0; i < b->opt.nsizes; i++)
		j_u64(j, NULL, b->opt.sizes[i]);
	j_close(j, ']');
	j_u64(j, "iterations", b->opt.iterations);
	j_u64(j, "clients", b->opt.clients);
	j_open(j, "sections", '[');
	for (unsigned s = 0; s < ARRAY_SIZE(sec); s++)
		if (b->opt.sections & (1u << s))
			j_str(j, NULL, sec[s]);
	j_close(j, ']');
	j_close(j, '}');
}

static void json_kernel(struct json *j, const struct bench *b)
{
	j_open(j, "kernel", '[');
	for (unsigned i = 0; i < b->opt.nsizes; i++) {
		uint64_t size = b->opt.sizes[i];
		double mc = memcpy_rate(b, i);

		for (int m = 0; m < NMODES; m++) {
			const struct mig_result *r = &b->mig[i][m];
			struct summary s2d = rate_of(&r->s2d_ms, size);
			struct summary d2s = rate_of(&r->d2s_ms, size);

			if (!r->done && !r->failed)
				continue;
			j_open(j, NULL, '{');
			j_u64(j, "size", size);
			j_str(j, "mode", mode_key[m]);
			j_bool(j, "ok", r->done);
			if (r->done) {
				j_summary(j, "s2d_ms", &r->s2d_ms);
				j_summary(j, "d2s_ms", &r->d2s_ms);
				j_summary(j, "s2d_gibps", &s2d);
				j_summary(j, "d2s_gibps", &d2s);
				j_num(j, "s2d_vs_memcpy",
				      ratio(s2d.median, mc));
				j_num(j, "d2s_vs_memcpy",
				      ratio(d2s.median, mc));
				j_u64(j, "expected_huge_units", r->expect_huge);
				j_u64(j, "s2d_huge_units_min", r->min_huge[0]);
				j_u64(j, "s2d_huge_units_max", r->max_huge[0]);
				j_u64(j, "d2s_huge_units_min", r->min_huge[1]);
				j_u64(j, "d2s_huge_units_max", r->max_huge[1]);
				j_u64(j, "splits", r->splits);
				if (m == MODE_THP)
					j_u64(j, "thp_units_after_fill",
					      r->thp_units);
			}
			j_close(j, '}');
		}
	}
	j_close(j, ']');
}

static void json_fault(struct json *j, const struct bench *b)
{
	double raw = uffd_ceiling_us(b);

	j_open(j, "fault", '[');
	for (unsigned i = 0; i < b->opt.nsizes; i++) {
		uint64_t size = b->opt.sizes[i];

		for (int m = 0; m < NMODES; m++) {
			const struct fault_result *r = &b->fault[i][m];
			struct summary rate = rate_of(&r->total_ms, size);

			if (!r->done && !r->failed)
				continue;
			j_open(j, NULL, '{');
			j_u64(j, "size", size);
			j_str(j, "mode", mode_key[m]);
			j_bool(j, "ok", r->done);
			if (r->done) {
				j_u64(j, "expected_faults", r->expect_faults);
				j_u64(j, "counted_faults", r->faults);
				j_summary(j, "fault_us", &r->fault_us);
				j_summary(j, "pass_ms", &r->total_ms);
				j_summary(j, "gibps", &rate);
				j_num(j, "gibps_vs_memcpy",
				      ratio(rate.median, memcpy_rate(b, i)));
				j_num(j, "fault_us_vs_raw_uffd",
				      m == MODE_4K
					      ? ratio(r->fault_us.median, raw)
					      : NAN);
			}
			j_close(j, '}');
		}
	}
	j_close(j, ']');
}

static void json_ceiling(struct json *j, const struct bench *b)
{
	j_open(j, "ceiling", '{');
	j_open(j, "memcpy", '[');
	for (unsigned i = 0; i < b->opt.nsizes; i++) {
		struct summary rate;

		if (!b->mcp[i].done)
			continue;
		rate = rate_of(&b->mcp[i].ms, b->opt.sizes[i]);
		j_open(j, NULL, '{');
		j_u64(j, "size", b->opt.sizes[i]);
		j_summary(j, "ms", &b->mcp[i].ms);
		j_summary(j, "gibps", &rate);
		rate = rate_of(&b->mcp[i].fresh_ms, b->opt.sizes[i]);
		j_summary(j, "fresh_dst_ms", &b->mcp[i].fresh_ms);
		j_summary(j, "fresh_dst_gibps", &rate);
		j_close(j, '}');
	}
	j_close(j, ']');
	j_open(j, "uffd_round_trip", '{');
	j_u64(j, "faults_per_pass", b->uffd.faults);
	j_bool(j, "user_mode_only", b->uffd.user_mode_only);
	for (int pl = 0; pl < NPLACES; pl++)
		if (b->uffd.done[pl])
			j_summary(j, place_key[pl], &b->uffd.us[pl]);
	j_num(j, "ceiling_us", uffd_ceiling_us(b));
	if (uffd_ceiling_place(b) >= 0)
		j_str(j, "ceiling_placement", place_key[uffd_ceiling_place(b)]);
	if (b->uffd.error[0])
		j_str(j, "error", b->uffd.error);
	j_close(j, '}');
	j_close(j, '}');
}

static void json_concurrency(struct json *j, const struct bench *b)
{
	const struct conc_result *r = &b->conc;
	struct summary s;

	j_open(j, "concurrency", '{');
	j_bool(j, "ok", r->done);
	j_u64(j, "clients", r->clients);
	j_u64(j, "size_per_client", r->size);
	if (r->done) {
		s = rate_of(&r->one_s2d_ms, r->size);
		j_summary(j, "one_client_s2d_gibps", &s);
		s = rate_of(&r->one_d2s_ms, r->size);
		j_summary(j, "one_client_d2s_gibps", &s);
		s = rate_of(&r->all_s2d_ms, r->size * r->clients);
		j_summary(j, "aggregate_s2d_gibps", &s);
		s = rate_of(&r->all_d2s_ms, r->size * r->clients);
		j_summary(j, "aggregate_d2s_gibps", &s);
	}
	j_close(j, '}');
}

static void json_targets(struct json *j, const struct bench *b)
{
	struct target t[MAX_TARGETS];
	unsigned n = compute_targets(b, t);

	j_open(j, "metadata", '{');
	j_bool(j, "ok", b->meta.ok);
	if (b->meta.ok) {
		j_u64(j, "metadata_bytes", b->meta.metadata_bytes);
		j_u64(j, "capacity", b->meta.capacity);
	} else {
		j_str(j, "note", b->meta.note);
	}
	j_close(j, '}');
	j_open(j, "targets", '[');
	for (unsigned i = 0; i < n; i++) {
		j_open(j, NULL, '{');
		j_str(j, "name", t[i].name);
		j_num(j, "value", t[i].value);
		j_str(j, "unit", t[i].unit);
		j_str(j, "status", target_status_name(t[i].status));
		j_str(j, "detail", t[i].detail);
		j_close(j, '}');
	}
	j_close(j, ']');
}

int write_json(const struct bench *b, const char *path)
{
	struct json j = { .f = fopen(path, "w") };
	int err;

	if (!j.f)
		return -errno;
	fputc('{', j.f);
	j.depth = 1;
	j_str(&j, "tool", BENCH_NAME);
	j_str(&j, "version", PACKAGE_VERSION);
	j_str(&j, "started", b->started);
	j_num(&j, "elapsed_s", b->elapsed_s);
	j_bool(&j, "ok", !b->failed);
	json_machine(&j, b);
	json_config(&j, b);
	if (b->opt.sections & SEC_KERNEL)
		json_kernel(&j, b);
	if (b->opt.sections & SEC_FAULT)
		json_fault(&j, b);
	if (b->opt.sections & SEC_CEILING)
		json_ceiling(&j, b);
	if (b->opt.sections & SEC_CONCURRENCY)
		json_concurrency(&j, b);
	json_targets(&j, b);
	j_open(&j, "warnings", '[');
	for (unsigned i = 0; i < b->nwarnings; i++)
		j_str(&j, NULL, b->warnings[i]);
	j_close(&j, ']');
	fputs("\n}\n", j.f);
	err = ferror(j.f) ? -EIO : 0;
	if (fclose(j.f) && !err)
		err = -errno;
	return err;
}

/* ---------------------------------------------------------------------
 * CSV: one measurement per line, so that any tool can filter it
 */

static void csv_row(FILE *f, const char *section, uint64_t size,
		    const char *mode, const char *metric, const char *unit,
		    const struct summary *s, double vs, const char *vs_what)
{
	fprintf(f, "%s,%llu,%s,%s,%s,%.6g,%.6g,%.6g,%u,", section,
		(unsigned long long)size, mode, metric, unit, s->median, s->min,
		s->max, s->n);
	if (isfinite(vs))
		fprintf(f, "%.4g,%s\n", vs, vs_what);
	else
		fputs(",\n", f);
}

static void csv_measurements(FILE *f, const struct bench *b)
{
	double raw = uffd_ceiling_us(b);

	for (unsigned i = 0; i < b->opt.nsizes; i++) {
		uint64_t size = b->opt.sizes[i];
		double mc = memcpy_rate(b, i);

		if (b->mcp[i].done) {
			struct summary r = rate_of(&b->mcp[i].ms, size);

			csv_row(f, "ceiling", size, "memcpy", "time", "ms",
				&b->mcp[i].ms, NAN, NULL);
			csv_row(f, "ceiling", size, "memcpy", "throughput",
				"GiB/s", &r, NAN, NULL);
			r = rate_of(&b->mcp[i].fresh_ms, size);
			csv_row(f, "ceiling", size, "memcpy-fresh-dst", "time",
				"ms", &b->mcp[i].fresh_ms, NAN, NULL);
			csv_row(f, "ceiling", size, "memcpy-fresh-dst",
				"throughput", "GiB/s", &r, NAN, NULL);
		}
		for (int m = 0; m < NMODES; m++) {
			const struct mig_result *k = &b->mig[i][m];
			const struct fault_result *c = &b->fault[i][m];

			if (k->done) {
				struct summary s2d = rate_of(&k->s2d_ms, size);
				struct summary d2s = rate_of(&k->d2s_ms, size);

				csv_row(f, "kernel", size, mode_key[m],
					"s2d_time", "ms", &k->s2d_ms, NAN,
					NULL);
				csv_row(f, "kernel", size, mode_key[m],
					"d2s_time", "ms", &k->d2s_ms, NAN,
					NULL);
				csv_row(f, "kernel", size, mode_key[m],
					"s2d_throughput", "GiB/s", &s2d,
					ratio(s2d.median, mc), "memcpy");
				csv_row(f, "kernel", size, mode_key[m],
					"d2s_throughput", "GiB/s", &d2s,
					ratio(d2s.median, mc), "memcpy");
			}
			if (c->done) {
				struct summary r = rate_of(&c->total_ms, size);

				csv_row(f, "fault", size, mode_key[m],
					"fault_latency", "us", &c->fault_us,
					m == MODE_4K
						? ratio(c->fault_us.median, raw)
						: NAN,
					"raw_uffd");
				csv_row(f, "fault", size, mode_key[m],
					"pass_time", "ms", &c->total_ms, NAN,
					NULL);
				csv_row(f, "fault", size, mode_key[m],
					"throughput", "GiB/s", &r,
					ratio(r.median, mc), "memcpy");
			}
		}
	}
	for (int pl = 0; pl < NPLACES; pl++)
		if (b->uffd.done[pl])
			csv_row(f, "ceiling", PAGE_SIZE, place_key[pl],
				"uffd_round_trip", "us", &b->uffd.us[pl], NAN,
				NULL);
	if (b->conc.done) {
		const struct conc_result *r = &b->conc;
		struct summary s;
		char mode[32];

		s = rate_of(&r->one_s2d_ms, r->size);
		csv_row(f, "concurrency", r->size, "1", "s2d_throughput",
			"GiB/s", &s, NAN, NULL);
		s = rate_of(&r->one_d2s_ms, r->size);
		csv_row(f, "concurrency", r->size, "1", "d2s_throughput",
			"GiB/s", &s, NAN, NULL);
		snprintf(mode, sizeof(mode), "%u", r->clients);
		s = rate_of(&r->all_s2d_ms, r->size * r->clients);
		csv_row(f, "concurrency", r->size, mode, "s2d_throughput",
			"GiB/s", &s, NAN, NULL);
		s = rate_of(&r->all_d2s_ms, r->size * r->clients);
		csv_row(f, "concurrency", r->size, mode, "d2s_throughput",
			"GiB/s", &s, NAN, NULL);
	}
}

int write_csv(const struct bench *b, const char *path)
{
	FILE *f = fopen(path, "w");
	struct target t[MAX_TARGETS];
	unsigned n;
	int err;

	if (!f)
		return -errno;
	fputs("section,size_bytes,mode,metric,unit,median,min,max,samples,ratio,ratio_to\n",
	      f);
	csv_measurements(f, b);
	/* targets: the value in "median", met / not met in "ratio_to" */
	n = compute_targets(b, t);
	for (unsigned i = 0; i < n; i++) {
		char metric[96];
		size_t k = 0;

		/* a metric name without commas or spaces */
		for (const char *s = t[i].name; *s && k < sizeof(metric) - 1;
		     s++)
			metric[k++] = (*s == ' ' || *s == ',') ? '_' : *s;
		metric[k] = '\0';
		if (isfinite(t[i].value))
			fprintf(f, "target,,,%s,%s,%.10g,,,,,%s\n", metric,
				t[i].unit, t[i].value,
				target_status_name(t[i].status));
		else
			fprintf(f, "target,,,%s,%s,,,,,,%s\n", metric,
				t[i].unit, target_status_name(t[i].status));
	}
	err = ferror(f) ? -EIO : 0;
	if (fclose(f) && !err)
		err = -errno;
	return err;
}
