/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "device.h"
#include "log.h"
#include "migrate.h"

uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int device_init(struct device *d, const struct dm_config *cfg)
{
	int err;

	memset(d, 0, sizeof(*d));
	pthread_mutex_init(&d->lru_lock, NULL);
	pthread_mutex_init(&d->clients_lock, NULL);
	INIT_LIST_HEAD(&d->lru);
	INIT_LIST_HEAD(&d->clients);
	for (unsigned k = 0; k < DM_POL_MAX; k++)
		atomic_init(&d->policy[k], cfg->policy[k]);
	snprintf(d->socket_path, sizeof(d->socket_path), "%s",
		 cfg->socket_path);
	d->start_ms = now_ms();
	d->client_limit_pages = cfg->client_limit >> PAGE_SHIFT;
	d->ncpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (d->ncpus < 1)
		d->ncpus = 1;

	err = topology_probe(&d->topo, cfg->node);
	if (err)
		return err;
	if (cfg->node < 0)
		log_info(
			"device memory on NUMA node %d (CPUs %s), chosen from the topology: %s",
			d->topo.node, d->topo.cpus, d->topo.summary);
	err = pool_create(&d->pool, cfg->size, d->topo.node);
	if (err)
		return err;
	err = buddy_init(&d->buddy, cfg->size >> PAGE_SHIFT);
	if (err) {
		log_err("cannot set up the device allocator: %s",
			strerror(-err));
		pool_destroy(&d->pool);
		return err;
	}
	return 0;
}

void device_destroy(struct device *d)
{
	buddy_destroy(&d->buddy);
	pool_destroy(&d->pool);
}

void count(struct client *c, enum counter what, uint64_t n)
{
	if (!n)
		return;
	atomic_fetch_add_explicit(&c->counters.v[what], n,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&c->dev->counters.v[what], n,
				  memory_order_relaxed);
}

int device_alloc(struct device *d, struct client *c, unsigned order,
		 uint32_t *dpfn)
{
	int err;

	/* a client at its limit is full, whatever the device has left */
	while (d->client_limit_pages &&
	       atomic_load(&c->used_pages) + (1u << order) >
		       d->client_limit_pages) {
		if (device_policy(d, DM_POL_ON_FULL) == 1 /* fail */ ||
		    !migrate_evict_one(d, c))
			return -ENOMEM;
	}
	for (;;) {
		err = buddy_alloc(&d->buddy, order, dpfn);
		if (err != -ENOMEM)
			break;
		if (device_policy(d, DM_POL_ON_FULL) == 1 /* fail */)
			break;
		/* a fragmented device with room for 512 pages: falling back to
		 * 4 KB pages beats evicting other folios to make a 2 MB hole */
		if (order == FOLIO_ORDER) {
			struct buddy_info info;

			buddy_get_info(&d->buddy, &info);
			if (info.free_pages >= FOLIO_PAGES)
				break;
		}
		if (!migrate_evict_one(d, NULL))
			break;
	}
	if (!err)
		atomic_fetch_add(&c->used_pages, 1u << order);
	return err;
}

void device_lru_touch(struct device *d, struct unit *u)
{
	pthread_mutex_lock(&d->lru_lock);
	if (u->on_lru)
		list_del_init(&u->lru);
	list_add_tail(&u->lru, &d->lru);
	u->on_lru = true;
	pthread_mutex_unlock(&d->lru_lock);
}

void device_lru_remove(struct device *d, struct unit *u)
{
	pthread_mutex_lock(&d->lru_lock);
	if (u->on_lru)
		list_del_init(&u->lru);
	u->on_lru = false;
	pthread_mutex_unlock(&d->lru_lock);
}

unsigned device_evict_all(struct device *d)
{
	unsigned n = 0;

	while (migrate_evict_one(d, NULL))
		n++;
	return n;
}
