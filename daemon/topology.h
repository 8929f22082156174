/* SPDX-License-Identifier: MIT */
/* The machine as hwloc sees it: where the emulated device lives. */
#ifndef DEVMEM_TOPOLOGY_H
#define DEVMEM_TOPOLOGY_H

#include <stdint.h>

struct topology {
	int nr_nodes, nr_packages, nr_cores, nr_pus;
	int node;	      /* the device's NUMA node */
	uint64_t node_memory; /* bytes local to it */
	char cpus[64];	      /* its CPUs, as a list: "0-1" */
	char cpu_model[96];
	char summary[128]; /* "1 package, 2 cores, 2 PUs, 1 NUMA node" */
};

/* Load the topology and pick the device's node: want_node if >= 0 (which
 * must exist: -EINVAL otherwise), else the node with the most memory among
 * those near the CPUs this process may run on.  Returns 0 or -errno. */
int topology_probe(struct topology *t, int want_node);

#endif /* DEVMEM_TOPOLOGY_H */
