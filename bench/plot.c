/* SPDX-License-Identifier: MIT */
/*
 * devmem-bench --plot: throughput vs buffer size for 2 MB and 4 KB in both
 * directions, with memcpy (and memcpy into fresh memory) as ceiling lines.  gnuplot draws it: the data
 * and the script go to a temporary directory, and gnuplot is found in PATH
 * at run time (it is not a build dependency).
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "common.h"
#include "report.h"

#define GNUPLOT_TIMEOUT_MS 60000

/* The terminal for the file name: .png or .svg */
static const char *plot_format(const char *path)
{
	const char *dot = strrchr(path, '.');

	if (dot && !strcasecmp(dot, ".png"))
		return "png";
	if (dot && !strcasecmp(dot, ".svg"))
		return "svg";
	return NULL;
}

bool plot_path_ok(const char *path)
{
	return plot_format(path) != NULL;
}

/* A gnuplot single-quoted string: a quote is written twice */
static void put_quoted(FILE *f, const char *s)
{
	fputc('\'', f);
	for (; *s; s++) {
		if (*s == '\'')
			fputc('\'', f);
		fputc(*s, f);
	}
	fputc('\'', f);
}

static void put_value(FILE *f, double v)
{
	if (isfinite(v))
		fprintf(f, " %.4f", v);
	else
		fputs(" ?", f); /* missing: gnuplot skips the point */
}

/* One line per size: MiB, 2 MB S->D, 2 MB D->S, 4 KB S->D, 4 KB D->S,
 * memcpy, label, memcpy into fresh memory.  Returns the number of sizes
 * with a result. */
static unsigned write_data(const struct bench *b, FILE *f)
{
	unsigned rows = 0;

	fputs("# MiB thp_s2d thp_d2s 4k_s2d 4k_d2s memcpy label memcpy_fresh (GiB/s)\n",
	      f);
	for (unsigned i = 0; i < b->opt.nsizes; i++) {
		uint64_t size = b->opt.sizes[i];
		char sz[16];

		if (!b->mig[i][MODE_THP].done && !b->mig[i][MODE_4K].done)
			continue;
		fprintf(f, "%.4f", (double)size / (1024.0 * 1024.0));
		for (int m = 0; m < NMODES; m++) {
			const struct mig_result *r = &b->mig[i][m];

			put_value(f, r->done ? rate_of(&r->s2d_ms, size).median
					     : NAN);
			put_value(f, r->done ? rate_of(&r->d2s_ms, size).median
					     : NAN);
		}
		put_value(f, memcpy_rate(b, i));
		fprintf(f, " %s", size_str(size, sz, sizeof(sz)));
		put_value(f, memcpy_fresh_rate(b, i));
		fputc('\n', f);
		rows++;
	}
	return rows;
}

static void write_script(const struct bench *b, FILE *f, const char *format,
			 const char *data, const char *out)
{
	if (!strcmp(format, "svg"))
		fputs("set terminal svg size 1000,600 dynamic font 'sans,12'\n",
		      f);
	else
		fputs("if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
		      "  set terminal pngcairo size 1000,600 font 'sans,10'\n"
		      "} else {\n"
		      "  set terminal png size 1000,600\n"
		      "}\n",
		      f);
	fputs("set output ", f);
	put_quoted(f, out);
	fprintf(f,
		"\nset title 'devmem-bench %s: migration throughput vs buffer size (%s, medians of %u)'\n",
		PACKAGE_VERSION, b->mach.hostname, b->opt.iterations);
	fputs("set xlabel 'buffer size'\n"
	      "set ylabel 'GiB/s'\n"
	      "set logscale x 2\n"
	      "set offsets graph 0.04, graph 0.04, 0, 0\n"
	      "set yrange [0:*]\n"
	      "set grid\n"
	      "set key below\n"
	      "set datafile missing '?'\n"
	      "plot ",
	      f);
	put_quoted(f, data);
	fputs(" using 1:2:xticlabels(7) with linespoints lw 2 pt 7 title '2 MB Sys->Dev', \\\n"
	      "  '' using 1:3 with linespoints lw 2 pt 5 title '2 MB Dev->Sys', \\\n"
	      "  '' using 1:4 with linespoints lw 2 pt 6 title '4 KB Sys->Dev', \\\n"
	      "  '' using 1:5 with linespoints lw 2 pt 4 title '4 KB Dev->Sys', \\\n"
	      "  '' using 1:6 with lines lw 2 dt 2 lc rgb 'black' title 'memcpy (ceiling)', \\\n"
	      "  '' using 1:8 with lines lw 2 dt 3 lc rgb 'gray40' title 'memcpy into fresh memory'\n",
	      f);
}

static int run_gnuplot(struct bench *b, const char *gnuplot, const char *script)
{
	int status, waited = 0;
	pid_t pid, got;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		execl(gnuplot, gnuplot, script, (char *)NULL);
		_exit(127);
	}
	while ((got = waitpid(pid, &status, WNOHANG)) == 0 &&
	       waited < GNUPLOT_TIMEOUT_MS) {
		usleep(10000);
		waited += 10;
	}
	if (got == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		fail(b, "--plot: gnuplot did not finish within %d s",
		     GNUPLOT_TIMEOUT_MS / 1000);
		return -ETIMEDOUT;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		fail(b, "--plot: %s %s failed (status %d)", gnuplot, script,
		     WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		return -EIO;
	}
	return 0;
}

int write_plot(struct bench *b, const char *path)
{
	const char *format = plot_format(path);
	char gnuplot[PATH_MAX], dir[] = "/tmp/devmem-bench-plot.XXXXXX";
	char data[64], script[64];
	FILE *df = NULL, *sf = NULL;
	unsigned rows;
	int err = 0;

	if (!format)
		return -EINVAL; /* checked with the options */
	if (find_tool("gnuplot", gnuplot, sizeof(gnuplot))) {
		fail(b,
		     "--plot: gnuplot not found in PATH (install gnuplot, e.g. apt-get install gnuplot-nox); no chart written");
		return -ENOENT;
	}
	if (!mkdtemp(dir)) {
		fail(b, "--plot: mkdtemp: %s", strerror(errno));
		return -errno;
	}
	snprintf(data, sizeof(data), "%s/throughput.dat", dir);
	snprintf(script, sizeof(script), "%s/plot.gp", dir);
	df = fopen(data, "w");
	sf = fopen(script, "w");
	if (!df || !sf) {
		err = -errno;
		fail(b, "--plot: %s: %s", dir, strerror(errno));
		goto out;
	}
	rows = write_data(b, df);
	write_script(b, sf, format, data, path);
	if (fclose(df) | fclose(sf)) {
		df = sf = NULL;
		err = -EIO;
		fail(b, "--plot: cannot write %s", dir);
		goto out;
	}
	df = sf = NULL;
	if (!rows) {
		fail(b,
		     "--plot: no migration results to plot (the kernel section did not run)");
		err = -ENODATA;
		goto out;
	}
	err = run_gnuplot(b, gnuplot, script);
out:
	if (df)
		fclose(df);
	if (sf)
		fclose(sf);
	unlink(data);
	unlink(script);
	rmdir(dir);
	return err;
}
