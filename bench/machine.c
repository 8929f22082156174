/* SPDX-License-Identifier: MIT */
/* devmem-bench: what the run ran on, printed with the results. */
#include "config.h"

#include <hwloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bench.h"
#include "common.h"

static void read_cpu_model(char *out, size_t len)
{
	FILE *f = fopen("/proc/cpuinfo", "re");
	char line[256];

	snprintf(out, len, "unknown");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');

		if (strncmp(line, "model name", 10) || !colon)
			continue;
		colon++;
		colon += strspn(colon, " \t");
		colon[strcspn(colon, "\n")] = '\0';
		snprintf(out, len, "%s", colon);
		break;
	}
	fclose(f);
}

/* The bracketed choice of a sysfs THP knob: "always [madvise] never" */
static void read_thp_knob(const char *file, char *out, size_t len)
{
	char path[128], line[256], *open, *close;
	FILE *f;

	snprintf(out, len, "unknown");
	snprintf(path, sizeof(path), "/sys/kernel/mm/transparent_hugepage/%s",
		 file);
	f = fopen(path, "re");
	if (!f)
		return;
	if (fgets(line, sizeof(line), f)) {
		open = strchr(line, '[');
		close = open ? strchr(open, ']') : NULL;
		if (open && close)
			snprintf(out, len, "%.*s", (int)(close - open - 1),
				 open + 1);
	}
	fclose(f);
}

static void read_topology(struct machine *m)
{
	hwloc_topology_t topo;
	int n;

	m->cores = m->pus = m->packages = m->numa_nodes = -1;
	if (hwloc_topology_init(&topo))
		return;
	if (hwloc_topology_load(topo)) {
		hwloc_topology_destroy(topo);
		return;
	}
	m->cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
	m->pus = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
	m->packages = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PACKAGE);
	n = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
	m->numa_nodes = n;
	m->total_memory = 0;
	for (int i = 0; i < n; i++) {
		hwloc_obj_t node =
			hwloc_get_obj_by_type(topo, HWLOC_OBJ_NUMANODE, i);
		uint64_t mem = node ? node->attr->numanode.local_memory : 0;

		if (i < (int)ARRAY_SIZE(m->node_memory))
			m->node_memory[i] = mem;
		m->total_memory += mem;
	}
	hwloc_topology_destroy(topo);
}

static uint64_t read_mem_total(void)
{
	FILE *f = fopen("/proc/meminfo", "re");
	unsigned long long kb = 0;
	char line[128];

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemTotal: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return (uint64_t)kb << 10;
}

void machine_probe(struct machine *m)
{
	struct utsname u;

	memset(m, 0, sizeof(*m));
	read_cpu_model(m->cpu_model, sizeof(m->cpu_model));
	m->cpus_online = sysconf(_SC_NPROCESSORS_ONLN);
	if (!uname(&u))
		snprintf(m->kernel, sizeof(m->kernel), "%s %s %s %s", u.sysname,
			 u.release, u.version, u.machine);
	else
		snprintf(m->kernel, sizeof(m->kernel), "unknown");
	if (gethostname(m->hostname, sizeof(m->hostname)))
		snprintf(m->hostname, sizeof(m->hostname), "unknown");
	m->hostname[sizeof(m->hostname) - 1] = '\0';
	read_thp_knob("enabled", m->thp_enabled, sizeof(m->thp_enabled));
	read_thp_knob("defrag", m->thp_defrag, sizeof(m->thp_defrag));
	read_topology(m);
	m->mem_total = read_mem_total();
}
