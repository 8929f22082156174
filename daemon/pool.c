/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <errno.h>
#include <numa.h>
#include <string.h>
#include <sys/mman.h>

#include "log.h"
#include "pool.h"

int pool_create(struct pool *p, uint64_t size, int node)
{
	uint8_t *raw, *base;
	size_t span = size + UNIT_SIZE;

	memset(p, 0, sizeof(*p));
	p->node = -1;
	/* NORESERVE: a large pool must not need overcommit headroom; it is
	 * backed page by page as the device uses it. */
	raw = mmap(NULL, span, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (raw == MAP_FAILED) {
		int err = -errno;

		log_err("cannot reserve %llu bytes of device memory: %s",
			(unsigned long long)size, strerror(-err));
		return err;
	}
	base = (uint8_t *)ALIGN_UP((uintptr_t)raw, UNIT_SIZE);
	if (base > raw)
		munmap(raw, base - raw);
	if (raw + span > base + size)
		munmap(base + size, raw + span - (base + size));
	/* device folios are 2 MB: let the host back them with THPs */
	if (madvise(base, size, MADV_HUGEPAGE))
		log_warn("MADV_HUGEPAGE on device memory: %s", strerror(errno));
	if (node >= 0) {
		if (numa_available() < 0) {
			log_warn(
				"NUMA is not available; device memory is not bound to node %d",
				node);
		} else {
			numa_tonode_memory(base, size, node);
			p->node = node;
		}
	}
	p->base = base;
	p->size = size;
	return 0;
}

void pool_destroy(struct pool *p)
{
	if (p->base)
		munmap(p->base, p->size);
	p->base = NULL;
}
