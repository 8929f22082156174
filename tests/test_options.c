/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for devmemd's command line (daemon/options.c).  Every parse
 * runs with fresh out/err memory streams so the printed help, version and
 * error messages are checked too.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "common.h"
#include "log.h"
#include "options.h"

#define SUN_PATH_SIZE sizeof(((struct sockaddr_un *)0)->sun_path)

struct run {
	int ret;
	struct dm_config cfg;
	char *out, *err;
	size_t outlen, errlen;
};

/* Parse "devmemd args...": args is NULL-terminated.  The argv strings are
 * writable copies (getopt permutes argv), cfg is poisoned first so every
 * field the parser leaves alone shows up. */
static void run_parse(struct run *r, const char *const *args)
{
	char *argv[64];
	int argc = 0;
	FILE *out, *err;

	argv[argc++] = strdup("devmemd");
	for (int i = 0; args[i]; i++) {
		ck_assert_int_lt(argc, 63);
		argv[argc++] = strdup(args[i]);
	}
	argv[argc] = NULL;
	for (int i = 0; i < argc; i++)
		ck_assert_ptr_nonnull(argv[i]);

	memset(r, 0, sizeof(*r));
	memset(&r->cfg, 0xa5, sizeof(r->cfg));
	out = open_memstream(&r->out, &r->outlen);
	err = open_memstream(&r->err, &r->errlen);
	ck_assert_ptr_nonnull(out);
	ck_assert_ptr_nonnull(err);
	r->ret = options_parse(argc, argv, &r->cfg, out, err);
	ck_assert_int_eq(fclose(out), 0);
	ck_assert_int_eq(fclose(err), 0);
	for (int i = 0; i < argc; i++)
		free(argv[i]);
}

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
	r->out = r->err = NULL;
}

#define PARSE(r, ...) run_parse(r, (const char *const[]){ __VA_ARGS__, NULL })
#define PARSE0(r) run_parse(r, (const char *const[]){ NULL })

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* A successful run: nothing printed anywhere. */
static void expect_run(struct run *r)
{
	ck_assert_msg(r->ret == OPTIONS_RUN, "ret %d, err '%s'", r->ret,
		      r->err);
	ck_assert_str_eq(r->out, "");
	ck_assert_str_eq(r->err, "");
}

/* A refused command line: -EINVAL and exactly one "devmemd: " line on err
 * (which mentions the offending text, if given); nothing on out. */
static void expect_error(struct run *r, const char *mention)
{
	ck_assert_int_eq(r->ret, -EINVAL);
	ck_assert_str_eq(r->out, "");
	ck_assert_msg(!strncmp(r->err, "devmemd: ", 9), "err: '%s'", r->err);
	ck_assert_msg(count_lines(r->err) == 1 && r->err[r->errlen - 1] == '\n',
		      "not exactly one line: '%s'", r->err);
	if (mention)
		ck_assert_msg(strstr(r->err, mention),
			      "'%s' does not mention '%s'", r->err, mention);
}

static void default_path(char *buf, size_t size)
{
	const char *rt = getenv("XDG_RUNTIME_DIR");

	if (rt && rt[0] == '/')
		snprintf(buf, size, "%s/devmemd.sock", rt);
	else
		snprintf(buf, size, "/tmp/devmemd-%u.sock", (unsigned)getuid());
}

static void expect_defaults_except_path(const struct dm_config *c)
{
	ck_assert_uint_eq(c->size, 1ull << 30);
	ck_assert_int_eq(c->node, -1);
	ck_assert(!c->foreground);
	ck_assert_int_eq(c->log_level, LOG_INFO);
	for (int k = 0; k < DM_POL_MAX; k++)
		ck_assert_uint_eq(c->policy[k], 0);
}

/* Every test starts from the same environment, also with CK_FORK=no. */
static void env_setup(void)
{
	setenv("XDG_RUNTIME_DIR", "/run/user/4242", 1);
	unsetenv("DEVMEM_SOCKET");
	unsetenv("POSIXLY_CORRECT");
}

/* ---- defaults ---- */

START_TEST(test_defaults_xdg)
{
	struct run r;

	setenv("XDG_RUNTIME_DIR", "/run/user/4242", 1);
	PARSE0(&r);
	expect_run(&r);
	expect_defaults_except_path(&r.cfg);
	ck_assert_str_eq(r.cfg.socket_path, "/run/user/4242/devmemd.sock");
	run_free(&r);
}
END_TEST

START_TEST(test_defaults_tmp)
{
	char want[128];
	struct run r;

	snprintf(want, sizeof(want), "/tmp/devmemd-%u.sock",
		 (unsigned)getuid());
	unsetenv("XDG_RUNTIME_DIR");
	PARSE0(&r);
	expect_run(&r);
	expect_defaults_except_path(&r.cfg);
	ck_assert_str_eq(r.cfg.socket_path, want);
	run_free(&r);

	setenv("XDG_RUNTIME_DIR", "relative/dir", 1);
	PARSE0(&r);
	expect_run(&r);
	ck_assert_str_eq(r.cfg.socket_path, want);
	run_free(&r);
}
END_TEST

/* DEVMEM_SOCKET is the clients' variable, not the daemon's. */
START_TEST(test_default_ignores_devmem_socket)
{
	char want[128];
	struct run r;

	setenv("DEVMEM_SOCKET", "/somewhere/else.sock", 1);
	default_path(want, sizeof(want));
	PARSE0(&r);
	expect_run(&r);
	ck_assert_str_eq(r.cfg.socket_path, want);
	run_free(&r);
}
END_TEST

/* The default path does not fit sun_path: refused, --socket still works. */
START_TEST(test_default_path_too_long)
{
	char dir[SUN_PATH_SIZE + 16];
	struct run r;

	memset(dir, 'd', sizeof(dir) - 1);
	dir[0] = '/';
	dir[sizeof(dir) - 1] = 0;
	setenv("XDG_RUNTIME_DIR", dir, 1);
	PARSE0(&r);
	expect_error(&r, NULL);
	run_free(&r);

	PARSE(&r, "--socket", "/tmp/ok.sock");
	expect_run(&r);
	ck_assert_str_eq(r.cfg.socket_path, "/tmp/ok.sock");
	run_free(&r);
}
END_TEST

/* ---- --socket ---- */

START_TEST(test_socket)
{
	struct run r;

	PARSE(&r, "--socket", "/tmp/a.sock");
	expect_run(&r);
	ck_assert_str_eq(r.cfg.socket_path, "/tmp/a.sock");
	expect_defaults_except_path(&r.cfg);
	run_free(&r);

	PARSE(&r, "-s", "/tmp/b.sock");
	expect_run(&r);
	ck_assert_str_eq(r.cfg.socket_path, "/tmp/b.sock");
	run_free(&r);

	PARSE(&r, "--socket=/tmp/c.sock");
	expect_run(&r);
	ck_assert_str_eq(r.cfg.socket_path, "/tmp/c.sock");
	run_free(&r);

	PARSE(&r, "-s/tmp/d.sock");
	expect_run(&r);
	ck_assert_str_eq(r.cfg.socket_path, "/tmp/d.sock");
	run_free(&r);

	/* relative paths are taken as given */
	PARSE(&r, "-s", "rel.sock");
	expect_run(&r);
	ck_assert_str_eq(r.cfg.socket_path, "rel.sock");
	run_free(&r);

	/* the last one wins */
	PARSE(&r, "-s", "/tmp/1", "--socket", "/tmp/2");
	expect_run(&r);
	ck_assert_str_eq(r.cfg.socket_path, "/tmp/2");
	run_free(&r);

	PARSE(&r, "--socket", "");
	expect_error(&r, NULL);
	run_free(&r);
}
END_TEST

START_TEST(test_socket_length)
{
	char path[SUN_PATH_SIZE + 2];
	struct run r;

	/* sun_path - 1 characters fit (the NUL takes the last byte) */
	memset(path, 'p', SUN_PATH_SIZE - 1);
	path[0] = '/';
	path[SUN_PATH_SIZE - 1] = 0;
	PARSE(&r, "--socket", path);
	expect_run(&r);
	ck_assert_str_eq(r.cfg.socket_path, path);
	run_free(&r);

	/* sun_path characters do not */
	memset(path, 'p', SUN_PATH_SIZE);
	path[0] = '/';
	path[SUN_PATH_SIZE] = 0;
	PARSE(&r, "--socket", path);
	expect_error(&r, "socket");
	run_free(&r);
	PARSE(&r, "-s", path);
	expect_error(&r, "socket");
	run_free(&r);

	memset(path, 'p', SUN_PATH_SIZE + 1);
	path[SUN_PATH_SIZE + 1] = 0;
	PARSE(&r, "-s", path);
	expect_error(&r, NULL);
	run_free(&r);
}
END_TEST

/* ---- --size ---- */

START_TEST(test_size)
{
	static const struct {
		const char *arg;
		uint64_t size;
	} good[] = {
		{ "2M", 2ull << 20 },	{ "2097152", 2ull << 20 },
		{ "4M", 4ull << 20 },	{ "3076K", 3076ull << 10 },
		{ "1G", 1ull << 30 },	{ "1GiB", 1ull << 30 },
		{ "16g", 16ull << 30 }, { "512G", 512ull << 30 },
		{ "2101248", 2101248 }, /* 2M + 4K */
	};
	/* 4097 is also below the minimum: 2097153 and 2049K test the 4K
	 * multiple rule on its own */
	static const char *const bad[] = {
		"2097153",
		"2049K",
		"1048577K",
		"1M",
		"2097151",
		"2093056",
		"4097",
		"4096",
		"0",
		"600G",
		"513G",
		"1T",
		"garbage",
		"",
		"2M ",
		"1.5G",
		"-2M",
		"2X",
		"99999999999999999999",
		"16777216T",
	};
	struct run r;

	for (unsigned i = 0; i < ARRAY_SIZE(good); i++) {
		PARSE(&r, "--size", good[i].arg);
		expect_run(&r);
		ck_assert_msg(r.cfg.size == good[i].size, "%s -> %llu",
			      good[i].arg, (unsigned long long)r.cfg.size);
		run_free(&r);
		PARSE(&r, "-S", good[i].arg);
		expect_run(&r);
		ck_assert_uint_eq(r.cfg.size, good[i].size);
		ck_assert_int_eq(r.cfg.node, -1);
		run_free(&r);
	}
	for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
		PARSE(&r, "--size", bad[i]);
		expect_error(&r, bad[i]);
		run_free(&r);
		PARSE(&r, "-S", bad[i]);
		expect_error(&r, bad[i]);
		run_free(&r);
	}
	/* 600G: rejected by the 512G limit, not by parsing */
	PARSE(&r, "--size=600G");
	expect_error(&r, "600G");
	run_free(&r);
}
END_TEST

START_TEST(test_client_limit)
{
	static const char *const bad[] = { "0",	   "4097",
					   "1.5M", "-4K",
					   "",	   "lots",
					   "2M ",  "99999999999999999999" };
	struct run r;

	PARSE0(&r);
	expect_run(&r);
	ck_assert_uint_eq(r.cfg.client_limit, 0); /* no limit */
	run_free(&r);
	PARSE(&r, "--client-limit", "4K");
	expect_run(&r);
	ck_assert_uint_eq(r.cfg.client_limit, 4096);
	run_free(&r);
	PARSE(&r, "--client-limit=256M");
	expect_run(&r);
	ck_assert_uint_eq(r.cfg.client_limit, 256ull << 20);
	ck_assert_uint_eq(r.cfg.size, 1ull << 30);
	run_free(&r);
	for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
		PARSE(&r, "--client-limit", bad[i]);
		expect_error(&r, bad[i]);
		run_free(&r);
	}
}
END_TEST

/* ---- --node ---- */

START_TEST(test_node)
{
	static const char *const bad[] = { "-1",   "x",
					   "1024", "",
					   "3x",   "0x1",
					   "1e3",  "99999999999999999999",
					   "-0x" };
	struct run r;

	PARSE(&r, "--node", "0");
	expect_run(&r);
	ck_assert_int_eq(r.cfg.node, 0);
	{
		struct dm_config c = r.cfg;

		c.node = -1;
		expect_defaults_except_path(&c);
	}
	run_free(&r);

	PARSE(&r, "-n", "3");
	expect_run(&r);
	ck_assert_int_eq(r.cfg.node, 3);
	run_free(&r);

	PARSE(&r, "-n3");
	expect_run(&r);
	ck_assert_int_eq(r.cfg.node, 3);
	run_free(&r);

	PARSE(&r, "--node=1023");
	expect_run(&r);
	ck_assert_int_eq(r.cfg.node, 1023);
	run_free(&r);

	for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
		PARSE(&r, "--node", bad[i]);
		expect_error(&r, NULL);
		ck_assert_msg(strstr(r.err, "node"), "'%s'", r.err);
		run_free(&r);
		PARSE(&r, "-n", bad[i]);
		expect_error(&r, NULL);
		run_free(&r);
	}
}
END_TEST

/* ---- --foreground ---- */

START_TEST(test_foreground)
{
	struct run r;

	PARSE(&r, "--foreground");
	expect_run(&r);
	ck_assert(r.cfg.foreground);
	ck_assert_int_eq(r.cfg.node, -1);
	run_free(&r);

	PARSE(&r, "-f");
	expect_run(&r);
	ck_assert(r.cfg.foreground);
	run_free(&r);

	/* grouped short options */
	PARSE(&r, "-fn", "2");
	expect_run(&r);
	ck_assert(r.cfg.foreground);
	ck_assert_int_eq(r.cfg.node, 2);
	run_free(&r);

	/* no argument allowed */
	PARSE(&r, "--foreground=yes");
	expect_error(&r, NULL);
	run_free(&r);
}
END_TEST

/* ---- --log-level ---- */

START_TEST(test_log_level)
{
	static const struct {
		const char *name;
		int level;
	} levels[] = {
		{ "error", LOG_ERR },
		{ "warn", LOG_WARNING },
		{ "info", LOG_INFO },
		{ "debug", LOG_DEBUG },
	};
	static const char *const bad[] = { "verbose", "",	"ERROR",
					   "warning", "debug2", "7" };
	struct run r;

	for (unsigned i = 0; i < ARRAY_SIZE(levels); i++) {
		PARSE(&r, "--log-level", levels[i].name);
		expect_run(&r);
		ck_assert_int_eq(r.cfg.log_level, levels[i].level);
		run_free(&r);
		PARSE(&r, "-l", levels[i].name);
		expect_run(&r);
		ck_assert_int_eq(r.cfg.log_level, levels[i].level);
		run_free(&r);
	}
	for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
		PARSE(&r, "--log-level", bad[i]);
		expect_error(&r, bad[i]);
		run_free(&r);
		PARSE(&r, "-l", bad[i]);
		expect_error(&r, bad[i]);
		run_free(&r);
	}
}
END_TEST

/* ---- policies ---- */

START_TEST(test_policies)
{
	static const struct {
		const char *opt;
		int kind;
		const char *v0, *v1;
	} pol[] = {
		{ "--granularity", DM_POL_GRANULARITY, "auto", "4k" },
		{ "--fault-granularity", DM_POL_FAULT, "folio", "4k" },
		{ "--free", DM_POL_FREE, "whole", "split" },
		{ "--on-full", DM_POL_ON_FULL, "evict", "fail" },
	};
	static const char *const bad[] = { "bogus", "",	     "AUTO", "4K",
					   "1",	    "whole", "evict" };
	struct run r;

	for (unsigned i = 0; i < ARRAY_SIZE(pol); i++) {
		PARSE(&r, pol[i].opt, pol[i].v1);
		expect_run(&r);
		for (int k = 0; k < DM_POL_MAX; k++)
			ck_assert_msg(r.cfg.policy[k] == (k == pol[i].kind),
				      "%s %s: policy[%d] = %u", pol[i].opt,
				      pol[i].v1, k, r.cfg.policy[k]);
		run_free(&r);

		/* value 0 after value 1: the last one wins */
		PARSE(&r, pol[i].opt, pol[i].v1, pol[i].opt, pol[i].v0);
		expect_run(&r);
		ck_assert_uint_eq(r.cfg.policy[pol[i].kind], 0);
		run_free(&r);

		for (unsigned b = 0; b < ARRAY_SIZE(bad); b++) {
			char arg[64];

			/* "whole" is good for --free, "evict" for --on-full */
			if (!strcmp(bad[b], pol[i].v0))
				continue;
			snprintf(arg, sizeof(arg), "%s=%s", pol[i].opt, bad[b]);
			PARSE(&r, arg);
			expect_error(&r, NULL);
			ck_assert_msg(strstr(r.err, pol[i].opt + 2),
				      "'%s' does not name %s", r.err,
				      pol[i].opt);
			run_free(&r);
		}
	}

	/* all four at once */
	PARSE(&r, "--granularity", "4k", "--fault-granularity", "4k", "--free",
	      "split", "--on-full", "fail");
	expect_run(&r);
	for (int k = 0; k < DM_POL_MAX; k++)
		ck_assert_uint_eq(r.cfg.policy[k], 1);
	run_free(&r);

	PARSE(&r, "--granularity=auto", "--fault-granularity=folio",
	      "--free=whole", "--on-full=evict");
	expect_run(&r);
	for (int k = 0; k < DM_POL_MAX; k++)
		ck_assert_uint_eq(r.cfg.policy[k], 0);
	run_free(&r);
}
END_TEST

/* ---- everything together ---- */

START_TEST(test_all_options)
{
	struct run r;

	PARSE(&r, "-s", "/tmp/all.sock", "-S", "64M", "-n", "1", "-f", "-l",
	      "debug", "--granularity", "4k", "--free", "split");
	expect_run(&r);
	ck_assert_str_eq(r.cfg.socket_path, "/tmp/all.sock");
	ck_assert_uint_eq(r.cfg.size, 64ull << 20);
	ck_assert_int_eq(r.cfg.node, 1);
	ck_assert(r.cfg.foreground);
	ck_assert_int_eq(r.cfg.log_level, LOG_DEBUG);
	ck_assert_uint_eq(r.cfg.policy[DM_POL_GRANULARITY], 1);
	ck_assert_uint_eq(r.cfg.policy[DM_POL_FAULT], 0);
	ck_assert_uint_eq(r.cfg.policy[DM_POL_FREE], 1);
	ck_assert_uint_eq(r.cfg.policy[DM_POL_ON_FULL], 0);
	run_free(&r);
}
END_TEST

/* ---- --help, --version ---- */

START_TEST(test_help)
{
	static const char *const mentions[] = {
		"--socket",	"-s,",		 "--size",
		"-S,",		"--node",	 "-n,",
		"--foreground", "-f,",		 "--log-level",
		"-l,",		"--granularity", "--fault-granularity",
		"--free",	"--on-full",	 "--client-limit",
		"--help",	"-h,",		 "--version",
		"-V,",		"auto|4k",	 "folio|4k",
		"whole|split",	"evict|fail",	 "Usage: devmemd",
	};
	static const char *const forms[] = { "--help", "-h" };
	struct run r;

	for (unsigned f = 0; f < ARRAY_SIZE(forms); f++) {
		PARSE(&r, forms[f]);
		ck_assert_int_eq(r.ret, OPTIONS_EXIT);
		ck_assert_str_eq(r.err, "");
		for (unsigned i = 0; i < ARRAY_SIZE(mentions); i++)
			ck_assert_msg(strstr(r.out, mentions[i]),
				      "%s: help lacks '%s'", forms[f],
				      mentions[i]);
		ck_assert_int_gt(count_lines(r.out), 10);
		run_free(&r);
	}

	/* after other options */
	PARSE(&r, "-f", "-n", "1", "--help");
	ck_assert_int_eq(r.ret, OPTIONS_EXIT);
	ck_assert_ptr_nonnull(strstr(r.out, "--socket"));
	ck_assert_str_eq(r.err, "");
	run_free(&r);
}
END_TEST

START_TEST(test_version)
{
	static const char *const forms[] = { "--version", "-V" };
	char want[64];
	struct run r;

	snprintf(want, sizeof(want), "devmemd %s", PACKAGE_VERSION);
	for (unsigned f = 0; f < ARRAY_SIZE(forms); f++) {
		PARSE(&r, forms[f]);
		ck_assert_int_eq(r.ret, OPTIONS_EXIT);
		ck_assert_str_eq(r.err, "");
		ck_assert_msg(strstr(r.out, want), "'%s' lacks '%s'", r.out,
			      want);
		ck_assert_int_eq(count_lines(r.out), 1);
		ck_assert(r.out[r.outlen - 1] == '\n');
		ck_assert_ptr_null(strstr(r.out, "--socket"));
		run_free(&r);
	}
}
END_TEST

/* ---- errors ---- */

START_TEST(test_unknown_option)
{
	struct run r;

	PARSE(&r, "--bogus");
	expect_error(&r, "--bogus");
	run_free(&r);

	PARSE(&r, "--bogus=1", "-f");
	expect_error(&r, "--bogus");
	run_free(&r);

	PARSE(&r, "-x");
	expect_error(&r, "-x");
	run_free(&r);

	PARSE(&r, "-f", "-x");
	expect_error(&r, "-x");
	run_free(&r);

	/* an unknown option at the end of a group */
	PARSE(&r, "-fx");
	expect_error(&r, NULL);
	ck_assert_msg(strstr(r.err, "-fx") || strstr(r.err, "-x") ||
			      strstr(r.err, "'x'"),
		      "message does not name -x: '%s'", r.err);
	run_free(&r);
}
END_TEST

/* An unknown short option at the start of a group ("-xf"): the message must
 * name the option, not some other word of the command line. */
static void expect_names(const char *const *args, char opt)
{
	char dash[3] = { '-', opt, 0 }, quoted[4] = { '\'', opt, '\'', 0 };
	char msg[256];
	struct run r;

	run_parse(&r, args);
	expect_error(&r, NULL);
	snprintf(msg, sizeof(msg), "%s", r.err);
	run_free(&r); /* before the check below fails */
	ck_assert_msg(strstr(msg, dash) || strstr(msg, quoted),
		      "message does not name %s: '%s'", dash, msg);
}

START_TEST(test_unknown_option_in_group)
{
	expect_names((const char *const[]){ "-xf", NULL }, 'x');
	expect_names((const char *const[]){ "-f", "-Zf", NULL }, 'Z');
}
END_TEST

START_TEST(test_missing_value)
{
	static const char *const opts[] = {
		"--socket",	  "-s",
		"--size",	  "-S",
		"--node",	  "-n",
		"--log-level",	  "-l",
		"--granularity",  "--fault-granularity",
		"--free",	  "--on-full",
		"--client-limit",
	};
	struct run r;

	for (unsigned i = 0; i < ARRAY_SIZE(opts); i++) {
		PARSE(&r, opts[i]);
		expect_error(&r, opts[i]);
		run_free(&r);

		PARSE(&r, "-f", opts[i]);
		expect_error(&r, opts[i]);
		run_free(&r);
	}

	/* a short option needing a value at the end of a group */
	PARSE(&r, "-fs");
	expect_error(&r, NULL);
	ck_assert_msg(strstr(r.err, "-fs") || strstr(r.err, "-s") ||
			      strstr(r.err, "'s'"),
		      "message does not name -s: '%s'", r.err);
	run_free(&r);
}
END_TEST

START_TEST(test_stray_argument)
{
	struct run r;

	PARSE(&r, "foo");
	expect_error(&r, "foo");
	run_free(&r);

	PARSE(&r, "-f", "bar");
	expect_error(&r, "bar");
	run_free(&r);

	/* before the options too (GNU getopt permutes) */
	PARSE(&r, "baz", "-f");
	expect_error(&r, "baz");
	run_free(&r);

	PARSE(&r, "-S", "4M", "--", "-f");
	expect_error(&r, "-f");
	run_free(&r);

	PARSE(&r, "-");
	expect_error(&r, "-");
	run_free(&r);

	/* "--" alone ends the options and is fine */
	PARSE(&r, "-f", "--");
	expect_run(&r);
	ck_assert(r.cfg.foreground);
	run_free(&r);
}
END_TEST

/* ---- several command lines in one process ---- */

START_TEST(test_repeated_parsing)
{
	struct run r;

	setenv("XDG_RUNTIME_DIR", "/run/user/9", 1);
	for (int round = 0; round < 3; round++) {
		PARSE(&r, "-f", "-n", "2", "-S", "8M", "--on-full", "fail");
		expect_run(&r);
		ck_assert(r.cfg.foreground);
		ck_assert_int_eq(r.cfg.node, 2);
		ck_assert_uint_eq(r.cfg.size, 8ull << 20);
		ck_assert_uint_eq(r.cfg.policy[DM_POL_ON_FULL], 1);
		run_free(&r);

		/* nothing carried over from the previous parse */
		PARSE0(&r);
		expect_run(&r);
		expect_defaults_except_path(&r.cfg);
		ck_assert_str_eq(r.cfg.socket_path, "/run/user/9/devmemd.sock");
		run_free(&r);

		/* an error half-way through a group of short options ... */
		PARSE(&r, "-fx", "-n", "1");
		expect_error(&r, NULL);
		run_free(&r);
		PARSE(&r, "-xf");
		expect_error(&r, NULL);
		run_free(&r);

		/* ... and a stray argument leave no state behind */
		PARSE(&r, "stray", "-n", "7");
		expect_error(&r, "stray");
		run_free(&r);

		PARSE(&r, "-n", "5");
		expect_run(&r);
		ck_assert_int_eq(r.cfg.node, 5);
		ck_assert(!r.cfg.foreground);
		run_free(&r);

		PARSE(&r, "-V");
		ck_assert_int_eq(r.ret, OPTIONS_EXIT);
		run_free(&r);

		PARSE(&r, "--log-level", "warn");
		expect_run(&r);
		ck_assert_int_eq(r.cfg.log_level, LOG_WARNING);
		ck_assert_int_eq(r.cfg.node, -1);
		run_free(&r);
	}
}
END_TEST

static Suite *options_suite(void)
{
	Suite *s = suite_create("options");
	TCase *tc;

	tc = tcase_create("defaults");
	tcase_add_checked_fixture(tc, env_setup, NULL);
	tcase_add_test(tc, test_defaults_xdg);
	tcase_add_test(tc, test_defaults_tmp);
	tcase_add_test(tc, test_default_ignores_devmem_socket);
	tcase_add_test(tc, test_default_path_too_long);
	suite_add_tcase(s, tc);

	tc = tcase_create("values");
	tcase_add_checked_fixture(tc, env_setup, NULL);
	tcase_add_test(tc, test_socket);
	tcase_add_test(tc, test_socket_length);
	tcase_add_test(tc, test_size);
	tcase_add_test(tc, test_client_limit);
	tcase_add_test(tc, test_node);
	tcase_add_test(tc, test_foreground);
	tcase_add_test(tc, test_log_level);
	tcase_add_test(tc, test_policies);
	tcase_add_test(tc, test_all_options);
	suite_add_tcase(s, tc);

	tc = tcase_create("exit");
	tcase_add_checked_fixture(tc, env_setup, NULL);
	tcase_add_test(tc, test_help);
	tcase_add_test(tc, test_version);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, env_setup, NULL);
	tcase_add_test(tc, test_unknown_option);
	tcase_add_test(tc, test_unknown_option_in_group);
	tcase_add_test(tc, test_missing_value);
	tcase_add_test(tc, test_stray_argument);
	tcase_add_test(tc, test_repeated_parsing);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(options_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
