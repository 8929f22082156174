/* SPDX-License-Identifier: MIT */
/* devmemctl: ask a running devmemd about itself, and steer it. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common.h"
#include "devmem.h"

static const char usage[] =
	"Usage: devmemctl [--socket PATH] [--json] COMMAND\n"
	"Commands:\n"
	"  status                      device size, use, free memory by order,\n"
	"                              fragmentation, topology, policies, clients\n"
	"  stats                       migration and fault counters (all clients)\n"
	"  clients                     connected clients and their device memory\n"
	"  policy [KIND VALUE]         show the policies, or set one:\n"
	"                              granularity auto|4k, fault-granularity folio|4k,\n"
	"                              free whole|split, on-full evict|fail\n"
	"  inject fail-huge|fail-any N fail the next N order-9 (or any) allocations\n"
	"  inject slow-events N       the next N address-space events wait 50 ms\n"
	"  evict                       bring all device memory back to its owners\n"
	"Options:\n"
	"  -s, --socket PATH   devmemd's socket (default: $DEVMEM_SOCKET, else\n"
	"                      $XDG_RUNTIME_DIR/devmemd.sock or /tmp/devmemd-$UID.sock)\n"
	"  -j, --json          print JSON\n"
	"  -h, --help          show this help\n"
	"  -V, --version       show the version\n";

static const char *const counter_names[] = {
	"to_device_pages", "to_system_pages", "huge_migrations",
	"splits",	   "cpu_faults",      "evictions"
};

struct ctl {
	int sock;
	bool json;
	uint8_t buf[DM_MAX_MSG];
	uint32_t id;
};

static void die(const char *what, int err)
{
	fprintf(stderr, "devmemctl: %s: %s\n", what, devmem_strerror(err));
	exit(1);
}

static int call(struct ctl *c, uint16_t type, const void *body,
		struct dm_msg *rep)
{
	int err = dm_send_msg(c->sock, c->buf, sizeof(c->buf), type, ++c->id,
			      body, NULL, 0, NULL, 0);

	if (!err)
		err = dm_recv_msg(c->sock, c->buf, sizeof(c->buf), rep, NULL,
				  NULL);
	if (err)
		die("talking to devmemd", err);
	if (rep->hdr.type != (type | DM_REPLY) || rep->hdr.id != c->id)
		die("talking to devmemd", -EPROTO);
	return rep->u.status.status;
}

static void connect_ctl(struct ctl *c, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct dm_hello hello = { DM_ROLE_CONTROL, DM_PROTO_VERSION,
				  DM_PROTO_VERSION };
	struct dm_msg rep;
	int err =
		dm_resolve_socket_path(path, sa.sun_path, sizeof(sa.sun_path));

	if (err)
		die("socket path", err);
	c->sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (c->sock < 0)
		die("socket", -errno);
	if (connect(c->sock, (struct sockaddr *)&sa, sizeof(sa))) {
		fprintf(stderr, "devmemctl: no devmemd at %s: %s\n",
			sa.sun_path, strerror(errno));
		exit(1);
	}
	err = call(c, DM_HELLO, &hello, &rep);
	dm_msg_release(&rep);
	if (err)
		die("hello", err);
}

static void print_counters(bool json, const uint64_t *v, const char *indent)
{
	for (unsigned k = 0; k < ARRAY_SIZE(counter_names); k++) {
		if (json)
			printf("%s\"%s\": %llu%s", k ? ", " : "",
			       counter_names[k], (unsigned long long)v[k], "");
		else
			printf("%s%-18s %llu\n", indent, counter_names[k],
			       (unsigned long long)v[k]);
	}
}

static void print_policy(bool json, const uint32_t *p)
{
	for (unsigned k = 0; k < DM_POL_MAX; k++) {
		if (json)
			printf("%s\"%s\": \"%s\"", k ? ", " : "",
			       dm_policy_kind_name(k),
			       dm_policy_value_name(k, p[k]));
		else
			printf("  %-18s %s\n", dm_policy_kind_name(k),
			       dm_policy_value_name(k, p[k]));
	}
}

/* Strings from devmemd go into JSON: escape what JSON needs escaped */
static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", (unsigned char)*s);
		else
			putchar(*s);
	}
	putchar('"');
}

static int cmd_status(struct ctl *c)
{
	struct dm_msg rep;
	const struct dm_status_reply *s = &rep.u.status_reply;
	int err = call(c, DM_STATUS, NULL, &rep);

	if (err)
		die("status", err);
	if (c->json) {
		printf("{\"version\": ");
		json_str(s->version);
		printf(", \"pid\": %u, \"socket\": ", s->pid);
		json_str(s->socket);
		printf(", \"capacity\": %llu, \"used\": %llu, \"free\": %llu, "
		       "\"client_limit\": %llu, "
		       "\"metadata_bytes\": %llu, \"metadata_bytes_per_page\": %.2f, "
		       "\"fragmentation_permille\": %u, \"free_blocks_by_order\": [",
		       (unsigned long long)s->capacity,
		       (unsigned long long)s->used,
		       (unsigned long long)(s->free_pages << PAGE_SHIFT),
		       (unsigned long long)s->client_limit,
		       (unsigned long long)s->metadata_bytes,
		       (double)s->metadata_bytes /
			       (double)(s->capacity >> PAGE_SHIFT),
		       s->fragmentation);
		for (unsigned o = 0; o < 10; o++)
			printf("%s%llu", o ? ", " : "",
			       (unsigned long long)s->nr_free[o]);
		printf("], \"node\": %d, \"cpus\": ", s->node);
		json_str(s->cpus);
		printf(", \"topology\": ");
		json_str(s->topology);
		printf(", \"clients\": %u, \"uptime_ms\": %llu, \"policy\": {",
		       s->nclients, (unsigned long long)s->uptime_ms);
		print_policy(true, s->policy);
		printf("}, \"counters\": {");
		print_counters(true, s->counters, "");
		printf("}}\n");
	} else {
		printf("devmemd %s, pid %u, socket %s, up %.1f s\n", s->version,
		       s->pid, s->socket, s->uptime_ms / 1000.0);
		printf("device memory: %llu MiB, used %llu KiB, free %llu KiB\n",
		       (unsigned long long)(s->capacity >> 20),
		       (unsigned long long)(s->used >> 10),
		       (unsigned long long)(s->free_pages
					    << (PAGE_SHIFT - 10)));
		if (s->client_limit)
			printf("client limit: %llu KiB\n",
			       (unsigned long long)(s->client_limit >> 10));
		printf("free blocks by order:");
		for (unsigned o = 0; o < 10; o++)
			printf(" %u:%llu", o,
			       (unsigned long long)s->nr_free[o]);
		printf("\nfragmentation: %.1f%% of free memory is not in 2 MB blocks\n",
		       s->fragmentation / 10.0);
		printf("allocator metadata: %llu bytes (%.1f bytes per 4 KB page)\n",
		       (unsigned long long)s->metadata_bytes,
		       (double)s->metadata_bytes /
			       (double)(s->capacity >> PAGE_SHIFT));
		printf("NUMA node: %d (CPUs %s)\ntopology: %s\nclients: %u\npolicy:\n",
		       s->node, s->cpus, s->topology, s->nclients);
		print_policy(false, s->policy);
	}
	dm_msg_release(&rep);
	return 0;
}

static int cmd_stats(struct ctl *c)
{
	struct dm_msg rep;
	const uint64_t *f = rep.u.stats_reply.field;
	int err = call(c, DM_STATS, NULL, &rep);

	if (err)
		die("stats", err);
	if (c->json) {
		printf("{\"capacity\": %llu, \"used\": %llu, ",
		       (unsigned long long)f[0], (unsigned long long)f[1]);
		print_counters(true, f + 3, "");
		printf("}\n");
	} else {
		printf("%-18s %llu\n%-18s %llu\n", "capacity",
		       (unsigned long long)f[0], "used",
		       (unsigned long long)f[1]);
		print_counters(false, f + 3, "");
	}
	dm_msg_release(&rep);
	return 0;
}

static int cmd_clients(struct ctl *c)
{
	struct dm_msg rep;
	const struct dm_client_info *ci;
	int err = call(c, DM_CLIENTS, NULL, &rep);

	if (err)
		die("clients", err);
	ci = rep.tail;
	if (c->json)
		printf("[");
	else
		printf("%6s %8s %6s %7s %12s %12s %10s %10s\n", "id", "pid",
		       "uid", "ranges", "registered", "device", "faults",
		       "evictions");
	for (uint32_t i = 0; i < rep.ntail; i++, ci++) {
		if (c->json) {
			printf("%s{\"id\": %u, \"pid\": %u, \"uid\": %u, \"ranges\": %u, "
			       "\"registered\": %llu, \"used\": %llu, ",
			       i ? ", " : "", ci->id, ci->pid, ci->uid,
			       ci->nranges, (unsigned long long)ci->registered,
			       (unsigned long long)ci->used);
			print_counters(true, ci->counters, "");
			printf("}");
		} else {
			printf("%6u %8u %6u %7u %11lluK %11lluK %10llu %10llu\n",
			       ci->id, ci->pid, ci->uid, ci->nranges,
			       (unsigned long long)(ci->registered >> 10),
			       (unsigned long long)(ci->used >> 10),
			       (unsigned long long)ci->counters[4],
			       (unsigned long long)ci->counters[5]);
		}
	}
	if (c->json)
		printf("]\n");
	dm_msg_release(&rep);
	return 0;
}

static int cmd_policy(struct ctl *c, int argc, char **argv)
{
	struct dm_policy p = { 0 };
	struct dm_msg rep;
	int err;

	if (argc == 2) {
		int kind = dm_policy_kind_parse(argv[0]);
		int value = kind >= 0 ? dm_policy_parse(kind, argv[1]) : -1;

		if (kind < 0 || value < 0) {
			fprintf(stderr,
				"devmemctl: unknown policy '%s %s' (see devmemctl --help)\n",
				argv[0], argv[1]);
			return 2;
		}
		p = (struct dm_policy){ 1, (uint32_t)kind, (uint32_t)value };
	} else if (argc) {
		fprintf(stderr,
			"devmemctl: policy takes no argument or KIND VALUE\n");
		return 2;
	}
	err = call(c, DM_POLICY, &p, &rep);
	if (err)
		die("policy", err);
	if (c->json) {
		printf("{");
		print_policy(true, rep.u.policy_reply.value);
		printf("}\n");
	} else {
		print_policy(false, rep.u.policy_reply.value);
	}
	dm_msg_release(&rep);
	return 0;
}

static int cmd_inject(struct ctl *c, int argc, char **argv)
{
	struct dm_inject inj;
	struct dm_msg rep;
	char *end;
	unsigned long n;
	int err;

	if (argc != 2)
		goto bad;
	if (!strcmp(argv[0], "fail-huge"))
		inj.what = DEVMEM_INJECT_FAIL_HUGE_ALLOC;
	else if (!strcmp(argv[0], "fail-any"))
		inj.what = DEVMEM_INJECT_FAIL_ALLOC;
	else if (!strcmp(argv[0], "slow-events"))
		inj.what = DM_INJECT_SLOW_EVENTS;
	else
		goto bad;
	errno = 0;
	n = strtoul(argv[1], &end, 10);
	if (errno || *end || end == argv[1] || n > UINT32_MAX)
		goto bad;
	inj.count = (uint32_t)n;
	err = call(c, DM_INJECT, &inj, &rep);
	dm_msg_release(&rep);
	if (err)
		die("inject", err);
	if (c->json)
		printf("{\"inject\": \"%s\", \"count\": %u}\n", argv[0],
		       inj.count);
	return 0;
bad:
	fprintf(stderr,
		"devmemctl: usage: inject fail-huge|fail-any|slow-events N\n");
	return 2;
}

static int cmd_evict(struct ctl *c)
{
	struct dm_msg rep;
	int err = call(c, DM_EVICT, NULL, &rep);

	if (err)
		die("evict", err);
	if (c->json)
		printf("{\"evicted_units\": %llu}\n",
		       (unsigned long long)rep.u.count_reply.count);
	else
		printf("%llu units evicted\n",
		       (unsigned long long)rep.u.count_reply.count);
	dm_msg_release(&rep);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	static struct ctl c;
	const char *path = NULL, *cmd;
	int opt, nargs;

	/* options may come after the command too ("status --json") */
	opterr = 0; /* our own one-line messages */
	while ((opt = getopt_long(argc, argv, "s:jhV", opts, NULL)) != -1) {
		switch (opt) {
		case 's':
			path = optarg;
			break;
		case 'j':
			c.json = true;
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		case 'V':
			printf("devmemctl %s\n", PACKAGE_VERSION);
			return 0;
		default:
			fprintf(stderr,
				"devmemctl: unknown option or missing value (see devmemctl --help)\n");
			return 2;
		}
	}
	if (optind >= argc) {
		fputs(usage, stderr);
		return 2;
	}
	cmd = argv[optind++];
	if (strcmp(cmd, "status") && strcmp(cmd, "stats") &&
	    strcmp(cmd, "clients") && strcmp(cmd, "policy") &&
	    strcmp(cmd, "inject") && strcmp(cmd, "evict")) {
		fprintf(stderr,
			"devmemctl: unknown command '%s' (see devmemctl --help)\n",
			cmd);
		return 2;
	}
	nargs = argc - optind;
	if (nargs && strcmp(cmd, "policy") && strcmp(cmd, "inject")) {
		fprintf(stderr, "devmemctl: %s takes no argument ('%s')\n", cmd,
			argv[optind]);
		return 2;
	}
	connect_ctl(&c, path);
	if (!strcmp(cmd, "status"))
		return cmd_status(&c);
	if (!strcmp(cmd, "stats"))
		return cmd_stats(&c);
	if (!strcmp(cmd, "clients"))
		return cmd_clients(&c);
	if (!strcmp(cmd, "policy"))
		return cmd_policy(&c, argc - optind, argv + optind);
	if (!strcmp(cmd, "evict"))
		return cmd_evict(&c);
	return cmd_inject(&c, argc - optind, argv + optind);
}
