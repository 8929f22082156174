/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "log.h"
#include "options.h"

static const char usage[] =
	"Usage: devmemd [OPTION]...\n"
	"Emulated device-private memory: the device daemon of devmem.\n"
	"\n"
	"  -s, --socket PATH          listen on PATH (default: $XDG_RUNTIME_DIR/devmemd.sock,\n"
	"                             else /tmp/devmemd-$UID.sock)\n"
	"  -S, --size BYTES           device memory size, K/M/G/T suffixes (default 1G)\n"
	"  -n, --node N               bind device memory to NUMA node N (default: from\n"
	"                             the hwloc topology)\n"
	"  -f, --foreground           stay in the foreground, log to stderr\n"
	"  -l, --log-level LEVEL      error, warn, info (default) or debug\n"
	"      --granularity auto|4k  migration granularity (default auto)\n"
	"      --fault-granularity folio|4k\n"
	"                             what a CPU fault brings back (default folio)\n"
	"      --free whole|split     free policy for 2 MB folios (default whole)\n"
	"      --on-full evict|fail   what to do when the device is full (default evict)\n"
	"      --client-limit BYTES   device memory one client may hold (default: all)\n"
	"  -h, --help                 show this help\n"
	"  -V, --version              show the version\n";

enum { OPT_GRAN = 256, OPT_FAULT, OPT_FREE, OPT_ON_FULL, OPT_CLIENT_LIMIT };

static const struct option long_options[] = {
	{ "socket", required_argument, NULL, 's' },
	{ "size", required_argument, NULL, 'S' },
	{ "node", required_argument, NULL, 'n' },
	{ "foreground", no_argument, NULL, 'f' },
	{ "log-level", required_argument, NULL, 'l' },
	{ "granularity", required_argument, NULL, OPT_GRAN },
	{ "fault-granularity", required_argument, NULL, OPT_FAULT },
	{ "free", required_argument, NULL, OPT_FREE },
	{ "on-full", required_argument, NULL, OPT_ON_FULL },
	{ "client-limit", required_argument, NULL, OPT_CLIENT_LIMIT },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static int bad(FILE *err, const char *what, const char *arg)
{
	fprintf(err, "devmemd: invalid %s '%s' (see devmemd --help)\n", what,
		arg);
	return -EINVAL;
}

int options_parse(int argc, char **argv, struct dm_config *cfg, FILE *out,
		  FILE *err)
{
	int opt, v;
	char *end;
	long node;

	memset(cfg, 0, sizeof(*cfg));
	cfg->size = DEFAULT_DEVICE_SIZE;
	cfg->node = -1;
	cfg->log_level = LOG_INFO;
	optind = 0; /* reset getopt: the tests parse several command lines */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":s:S:n:fl:hV", long_options,
				  NULL)) != -1) {
		switch (opt) {
		case 's':
			if (!optarg[0] ||
			    strlen(optarg) >= sizeof(cfg->socket_path))
				return bad(err, "socket path", optarg);
			strcpy(cfg->socket_path, optarg);
			break;
		case 'S':
			if (dm_parse_size(optarg, &cfg->size) ||
			    cfg->size < MIN_DEVICE_SIZE ||
			    cfg->size % PAGE_SIZE ||
			    cfg->size / PAGE_SIZE > (1ull << 27))
				return bad(
					err,
					"size (a multiple of 4K from 2M to 512G)",
					optarg);
			break;
		case 'n':
			errno = 0;
			node = strtol(optarg, &end, 10);
			if (errno || *end || end == optarg || node < 0 ||
			    node > 1023)
				return bad(err, "NUMA node", optarg);
			cfg->node = (int)node;
			break;
		case 'f':
			cfg->foreground = true;
			break;
		case 'l':
			v = log_level_parse(optarg);
			if (v < 0)
				return bad(err, "log level", optarg);
			cfg->log_level = v;
			break;
		case OPT_GRAN:
		case OPT_FAULT:
		case OPT_FREE:
		case OPT_ON_FULL:
			v = dm_policy_parse(opt - OPT_GRAN, optarg);
			if (v < 0)
				return bad(err,
					   dm_policy_kind_name(opt - OPT_GRAN),
					   optarg);
			cfg->policy[opt - OPT_GRAN] = (uint32_t)v;
			break;
		case OPT_CLIENT_LIMIT:
			if (dm_parse_size(optarg, &cfg->client_limit) ||
			    cfg->client_limit % PAGE_SIZE || !cfg->client_limit)
				return bad(err,
					   "client limit (a multiple of 4K)",
					   optarg);
			break;
		case 'h':
			fputs(usage, out);
			return OPTIONS_EXIT;
		case 'V':
			fprintf(out, "devmemd %s (protocol %d)\n",
				PACKAGE_VERSION, DM_PROTO_VERSION);
			return OPTIONS_EXIT;
		case ':':
			fprintf(err, "devmemd: option '%s' needs a value\n",
				argv[optind - 1]);
			return -EINVAL;
		default:
			/* in a group like -xf, optind has not moved on yet:
			 * name the letter */
			if (optopt)
				fprintf(err,
					"devmemd: unknown option '-%c' (see devmemd --help)\n",
					optopt);
			else
				fprintf(err,
					"devmemd: unknown option '%s' (see devmemd --help)\n",
					argv[optind - 1]);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(err, "devmemd: unexpected argument '%s'\n",
			argv[optind]);
		return -EINVAL;
	}
	if (!cfg->socket_path[0] &&
	    dm_default_socket_path(cfg->socket_path,
				   sizeof(cfg->socket_path))) {
		fprintf(err,
			"devmemd: default socket path too long; use --socket\n");
		return -EINVAL;
	}
	return OPTIONS_RUN;
}
