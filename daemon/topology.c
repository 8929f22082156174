/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <errno.h>
#include <hwloc.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "topology.h"

static void describe(struct topology *t, hwloc_topology_t topo)
{
	hwloc_obj_t pkg = hwloc_get_obj_by_type(topo, HWLOC_OBJ_PACKAGE, 0);
	const char *model =
		pkg ? hwloc_obj_get_info_by_name(pkg, "CPUModel") : NULL;

	t->nr_packages = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PACKAGE);
	t->nr_cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
	t->nr_pus = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
	snprintf(t->cpu_model, sizeof(t->cpu_model), "%s",
		 model ? model : "unknown CPU");
	snprintf(t->summary, sizeof(t->summary),
		 "%d package%s, %d core%s, %d PU%s, %d NUMA node%s",
		 t->nr_packages, t->nr_packages == 1 ? "" : "s", t->nr_cores,
		 t->nr_cores == 1 ? "" : "s", t->nr_pus,
		 t->nr_pus == 1 ? "" : "s", t->nr_nodes,
		 t->nr_nodes == 1 ? "" : "s");
}

int topology_probe(struct topology *t, int want_node)
{
	hwloc_topology_t topo;
	hwloc_bitmap_t allowed;
	hwloc_obj_t node, best = NULL;

	memset(t, 0, sizeof(*t));
	t->node = -1;
	if (hwloc_topology_init(&topo) || hwloc_topology_load(topo)) {
		log_err("hwloc cannot load the topology: %s", strerror(errno));
		return -EIO;
	}
	t->nr_nodes = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
	describe(t, topo);

	allowed = hwloc_bitmap_alloc();
	if (!allowed || hwloc_get_cpubind(topo, allowed, HWLOC_CPUBIND_PROCESS))
		hwloc_bitmap_copy(allowed,
				  hwloc_topology_get_allowed_cpuset(topo));
	for (node = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_NUMANODE, NULL);
	     node; node = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_NUMANODE,
						     node)) {
		if (want_node >= 0) {
			if ((int)node->os_index == want_node)
				best = node;
			continue;
		}
		/* a node without CPUs near us is a poor place for a device
		 * whose work is done by our threads */
		if (!hwloc_bitmap_intersects(node->cpuset, allowed))
			continue;
		if (!best || node->attr->numanode.local_memory >
				     best->attr->numanode.local_memory)
			best = node;
	}
	hwloc_bitmap_free(allowed);
	if (!best && want_node < 0)
		best = hwloc_get_obj_by_type(topo, HWLOC_OBJ_NUMANODE, 0);
	if (!best) {
		log_err("NUMA node %d does not exist (this machine has %d)",
			want_node, t->nr_nodes);
		hwloc_topology_destroy(topo);
		return -EINVAL;
	}
	t->node = (int)best->os_index;
	t->node_memory = best->attr->numanode.local_memory;
	hwloc_bitmap_list_snprintf(t->cpus, sizeof(t->cpus), best->cpuset);
	hwloc_topology_destroy(topo);
	return 0;
}
