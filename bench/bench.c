/* SPDX-License-Identifier: MIT */
/*
 * devmem-bench: how users decide between 2 MB and 4 KB migration, and how
 * devmem shows it is fast.
 *
 * It reproduces the kernel's THP-vs-4 KB migration benchmark on devmem,
 * adds the CPU-fault-driven return and N concurrent clients, and places
 * every figure next to the physical limits measured in the same run
 * (memcpy bandwidth, the raw userfaultfd round trip).  See devmem-bench(1).
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "common.h"

#define MAX_BUFFER_SIZE (64ull << 30)
#define MAX_ITERATIONS 1000
#define MAX_CLIENTS 256

static const char usage[] =
	"Usage: devmem-bench [OPTION]...\n"
	"Measure devmem: 2 MB vs 4 KB migration (the kernel's benchmark), CPU-fault-\n"
	"driven return, the memcpy / raw userfaultfd ceiling, and concurrent clients.\n"
	"\n"
	"  -s, --sizes LIST       buffer sizes, comma separated, K/M/G suffixes\n"
	"                         (default 512K,1M,2M,4M,8M,16M,256M)\n"
	"  -i, --iterations N     timed iterations per measurement (default 5)\n"
	"  -o, --only SECTIONS    run only these: kernel, fault, ceiling, concurrency\n"
	"                         (comma separated, or the option repeated)\n"
	"  -c, --clients N        concurrent clients (default: the number of CPUs)\n"
	"      --json FILE        also write the results as JSON\n"
	"      --csv FILE         also write the results as CSV\n"
	"      --plot FILE        draw throughput vs size with gnuplot (.png or .svg)\n"
	"      --socket PATH      devmemd's socket (default: $DEVMEM_SOCKET, else\n"
	"                         $XDG_RUNTIME_DIR/devmemd.sock or /tmp/devmemd-$UID.sock)\n"
	"      --devmemd PATH     the devmemd to start when none is running (default:\n"
	"                         next to devmem-bench, else in PATH)\n"
	"  -q, --quiet            no progress or notes on stderr\n"
	"  -h, --help             show this help\n"
	"  -V, --version          show the version\n"
	"\n"
	"With no devmemd answering, a private one is started for the run and stopped\n"
	"afterwards.  Exit status: 0 ok, 1 a measurement or devmem call failed,\n"
	"2 bad arguments.\n";

static const uint64_t default_sizes[] = {
	512ull << 10, 1ull << 20,  2ull << 20,	 4ull << 20,
	8ull << 20,   16ull << 20, 256ull << 20,
};

enum {
	OPT_JSON = 256,
	OPT_CSV,
	OPT_PLOT,
	OPT_SOCKET,
	OPT_DEVMEMD,
};

static const struct option long_options[] = {
	{ "sizes", required_argument, NULL, 's' },
	{ "iterations", required_argument, NULL, 'i' },
	{ "only", required_argument, NULL, 'o' },
	{ "clients", required_argument, NULL, 'c' },
	{ "json", required_argument, NULL, OPT_JSON },
	{ "csv", required_argument, NULL, OPT_CSV },
	{ "plot", required_argument, NULL, OPT_PLOT },
	{ "socket", required_argument, NULL, OPT_SOCKET },
	{ "devmemd", required_argument, NULL, OPT_DEVMEMD },
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

/* Bad arguments: one line, exit status 2 */
static void __attribute__((noreturn, format(printf, 1, 2)))
usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs(BENCH_NAME ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see " BENCH_NAME " --help)\n", stderr);
	exit(2);
}

static void parse_sizes(struct options *o, const char *arg)
{
	char *copy = strdup(arg), *save = NULL, *tok;
	unsigned n = 0;

	if (!copy)
		usage_error("out of memory");
	if (!arg[0] || arg[strlen(arg) - 1] == ',' || arg[0] == ',' ||
	    strstr(arg, ",,"))
		usage_error("invalid --sizes '%s': empty entry", arg);
	for (tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		uint64_t v;

		if (n == MAX_SIZES)
			usage_error("invalid --sizes '%s': at most %d sizes",
				    arg, MAX_SIZES);
		if (dm_parse_size(tok, &v))
			usage_error(
				"invalid size '%s' in --sizes (a number with an optional K, M or G suffix)",
				tok);
		if (!v || v % PAGE_SIZE || v > MAX_BUFFER_SIZE)
			usage_error(
				"invalid size '%s' in --sizes: a multiple of 4K from 4K to 64G",
				tok);
		o->sizes[n++] = v;
	}
	o->nsizes = n;
	free(copy);
}

static unsigned parse_count(const char *opt, const char *arg, unsigned max)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(arg, &end, 10);
	if (errno || end == arg || *end || arg[0] == '-' || v < 1 || v > max)
		usage_error("invalid %s '%s': a number from 1 to %u", opt, arg,
			    max);
	return (unsigned)v;
}

static unsigned parse_sections(const char *arg)
{
	static const struct {
		const char *name;
		unsigned bit;
	} names[] = {
		{ "kernel", SEC_KERNEL },   { "fault", SEC_FAULT },
		{ "ceiling", SEC_CEILING }, { "concurrency", SEC_CONCURRENCY },
		{ "all", SEC_ALL },
	};
	unsigned bits = 0;
	const char *p = arg;

	for (;;) {
		size_t len = strcspn(p, ",");
		unsigned k;

		for (k = 0; k < ARRAY_SIZE(names); k++)
			if (strlen(names[k].name) == len &&
			    !strncmp(p, names[k].name, len))
				break;
		if (k == ARRAY_SIZE(names))
			usage_error(
				"invalid --only '%s': sections are kernel, fault, ceiling, concurrency",
				arg);
		bits |= names[k].bit;
		if (!p[len])
			break;
		p += len + 1;
	}
	return bits;
}

/* An output file we could not write would waste the whole run: check its
 * directory now. */
static void check_output(const char *opt, const char *path)
{
	const char *slash = strrchr(path, '/');
	char dir[4096];

	if (!path[0])
		usage_error("invalid %s '': a file name is needed", opt);
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	if (access(dir, W_OK | X_OK))
		usage_error("cannot write %s %s: %s: %s", opt, path, dir,
			    strerror(errno));
}

static void parse_options(int argc, char **argv, struct options *o)
{
	int opt;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	memset(o, 0, sizeof(*o));
	memcpy(o->sizes, default_sizes, sizeof(default_sizes));
	o->nsizes = ARRAY_SIZE(default_sizes);
	o->iterations = 5;
	o->clients = ncpu > 0 ? (unsigned)MIN(ncpu, MAX_CLIENTS) : 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":s:i:o:c:qhV", long_options,
				  NULL)) != -1) {
		switch (opt) {
		case 's':
			parse_sizes(o, optarg);
			break;
		case 'i':
			o->iterations = parse_count("--iterations", optarg,
						    MAX_ITERATIONS);
			break;
		case 'o':
			o->sections |= parse_sections(optarg);
			break;
		case 'c':
			o->clients =
				parse_count("--clients", optarg, MAX_CLIENTS);
			break;
		case OPT_JSON:
			check_output("--json", optarg);
			o->json = optarg;
			break;
		case OPT_CSV:
			check_output("--csv", optarg);
			o->csv = optarg;
			break;
		case OPT_PLOT:
			if (!plot_path_ok(optarg))
				usage_error(
					"invalid --plot '%s': the file name must end in .png or .svg",
					optarg);
			check_output("--plot", optarg);
			o->plot = optarg;
			break;
		case OPT_SOCKET:
			if (!optarg[0] || strlen(optarg) >= 108)
				usage_error("invalid --socket '%s'", optarg);
			o->socket = optarg;
			break;
		case OPT_DEVMEMD:
			if (!optarg[0])
				usage_error("invalid --devmemd ''");
			o->devmemd = optarg;
			break;
		case 'q':
			o->quiet = true;
			break;
		case 'h':
			fputs(usage, stdout);
			exit(0);
		case 'V':
			printf(BENCH_NAME " %s\n", PACKAGE_VERSION);
			exit(0);
		case ':':
			if (strncmp(argv[optind - 1], "--", 2))
				usage_error("option '-%c' needs a value",
					    optopt);
			usage_error("option '%s' needs a value",
				    argv[optind - 1]);
		default:
			if (strncmp(argv[optind - 1], "--", 2))
				usage_error("unknown option '-%c'", optopt);
			usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);
	if (!o->sections)
		o->sections = SEC_ALL;
}

static void timestamp(char *buf, size_t len)
{
	time_t t = time(NULL);
	struct tm tm;

	if (gmtime_r(&t, &tm))
		strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
	else
		snprintf(buf, len, "unknown");
}

static void write_outputs(struct bench *b)
{
	int err;

	if (b->opt.json) {
		err = write_json(b, b->opt.json);
		if (err)
			fail(b, "--json %s: %s", b->opt.json, strerror(-err));
	}
	if (b->opt.csv) {
		err = write_csv(b, b->opt.csv);
		if (err)
			fail(b, "--csv %s: %s", b->opt.csv, strerror(-err));
	}
	if (b->opt.plot && !write_plot(b, b->opt.plot))
		note(b, "chart written to %s", b->opt.plot);
}

int main(int argc, char **argv)
{
	static struct bench bench;
	struct bench *b = &bench;
	unsigned sec;
	bool need_devmem;
	double t0 = now_ns();

	parse_options(argc, argv, &b->opt);
	sec = b->opt.sections;
	/* a client that died must not take the bench with it */
	signal(SIGPIPE, SIG_IGN);
	daemon_cleanup_on_signal();
	timestamp(b->started, sizeof(b->started));
	machine_probe(&b->mach);
	need_devmem = sec & (SEC_KERNEL | SEC_FAULT | SEC_CONCURRENCY);
	if (need_devmem && daemon_connect(b)) {
		daemon_stop(b);
		return 1;
	}
	print_header(b, stdout);
	fflush(stdout);

	/* the ceiling first: every later table shows its ratio to it */
	if (sec & SEC_CEILING) {
		run_memcpy(b);
		run_uffd(b);
	}
	if (sec & SEC_KERNEL) {
		run_kernel(b);
		print_kernel(b, stdout);
		fflush(stdout);
	}
	if (sec & SEC_FAULT) {
		run_fault(b);
		print_fault(b, stdout);
		fflush(stdout);
	}
	if (sec & SEC_CEILING) {
		print_ceiling(b, stdout);
		fflush(stdout);
	}
	if (sec & SEC_CONCURRENCY) {
		run_concurrency(b);
		print_concurrency(b, stdout);
	}
	if (b->dm)
		read_metadata(b);
	daemon_stop(b);
	b->elapsed_s = (now_ns() - t0) / 1e9;
	print_targets(b, stdout);
	print_warnings(b, stdout);
	printf("\ntotal time %.1f s%s\n", b->elapsed_s,
	       b->failed ? "; THE RUN HAD ERRORS (see above)" : "");
	fflush(stdout);
	write_outputs(b);
	for (unsigned i = 0; i < b->nwarnings; i++)
		free(b->warnings[i]);
	return b->failed ? 1 : 0;
}
