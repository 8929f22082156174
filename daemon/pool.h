/* SPDX-License-Identifier: MIT */
/* Device memory: one pool reserved at start, backed lazily, bound to a node. */
#ifndef DEVMEM_POOL_H
#define DEVMEM_POOL_H

#include <stdint.h>

#include "common.h"

struct pool {
	uint8_t *base; /* 2 MB-aligned */
	uint64_t size;
	int node; /* NUMA node the pool is bound to, -1 if none */
};

/* Reserve size bytes (THP-eligible, not populated) and bind them to node
 * (-1: no binding).  Returns 0 or a negative errno (logged). */
int pool_create(struct pool *p, uint64_t size, int node);
void pool_destroy(struct pool *p);

static inline void *pool_page(const struct pool *p, uint32_t dpfn)
{
	return p->base + ((uint64_t)dpfn << PAGE_SHIFT);
}

#endif /* DEVMEM_POOL_H */
