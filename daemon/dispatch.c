/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access.h"
#include "client.h"
#include "devmem.h"
#include "dispatch.h"
#include "events.h"
#include "log.h"
#include "migrate.h"
#include "procfs.h"
#include "uffdops.h"

/* The largest user-space address on x86-64 with 5-level paging */
#define USER_VA_END (1ull << 56)

union reply {
	struct dm_status status;
	struct dm_hello_reply hello;
	struct dm_begin_reply begin;
	struct dm_result_reply result;
	struct dm_stats_reply stats;
	struct dm_policy_reply policy;
	struct dm_status_reply status_full;
	struct dm_count_reply count;
};

struct reply_ctx {
	union reply body;
	void *tail;
	uint32_t ntail;
	bool close; /* close the connection after replying */
};

static int do_hello(struct session *s, const struct dm_msg *m,
		    struct reply_ctx *rc)
{
	const struct dm_hello *h = &m->u.hello;
	struct dm_hello_reply *rep = &rc->body.hello;

	rep->proto = DM_PROTO_VERSION;
	rep->capacity = s->dev->pool.size;
	snprintf(rep->version, sizeof(rep->version), "%s", PACKAGE_VERSION);
	if (s->role) {
		rc->close = true;
		return -EPROTO;
	}
	if (s->refused) {
		rc->close = true;
		return -EACCES;
	}
	if (h->proto_min > DM_PROTO_VERSION ||
	    h->proto_max < DM_PROTO_VERSION) {
		rc->close = true;
		return -EPROTONOSUPPORT;
	}
	if (h->role != DM_ROLE_CLIENT && h->role != DM_ROLE_CONTROL) {
		rc->close = true;
		return -EINVAL;
	}
	if (h->role == DM_ROLE_CLIENT) {
		s->client = client_new(s->dev, s->pid, s->uid);
		if (!s->client)
			return -ENOMEM;
		rep->client_id = s->client->id;
	}
	s->role = h->role;
	return 0;
}

static int do_attach(struct session *s, const struct dm_msg *m, int *fds,
		     int nfds)
{
	int err;

	if (nfds != 2) {
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		return -EBADF;
	}
	err = client_attach(s->client, &m->u.attach, fds[0], fds[1]);
	if (err)
		log_warn("client %u (pid %d): attach refused: %s",
			 s->client->id, (int)s->pid, strerror(-err));
	return err;
}

static int check_user_span(uint64_t addr, uint64_t len)
{
	if (!len || addr & (PAGE_SIZE - 1) || len & (PAGE_SIZE - 1) ||
	    addr + len < addr || addr + len > USER_VA_END)
		return -EINVAL;
	return 0;
}

static int do_register(struct session *s, const struct dm_msg *m)
{
	struct client *c = s->client;
	uint64_t addr = m->u.range.addr, end = addr + m->u.range.len;
	uint64_t staging_end;
	int err = check_user_span(addr, m->u.range.len);

	if (err)
		return err;
	if (!c->attached)
		return -EPROTO;
	/* libdevmem's staging area is not the application's to register */
	staging_end = c->staging +
		      (uint64_t)(c->nslots + c->nfault_slots) * UNIT_SIZE;
	if (addr < staging_end && end > c->staging)
		return -EINVAL;
	/* semantics 1: only private anonymous memory */
	err = maps_check_anon(c->proc_dirfd, addr, end);
	if (err)
		return err == -ESRCH ? err : -EINVAL;
	pthread_mutex_lock(&c->lock);
	if (client_mid_migration(c)) {
		pthread_mutex_unlock(&c->lock);
		return -EBUSY;
	}
	events_wait(c);
	err = pt_add_range(&c->pt, addr, end);
	pthread_mutex_unlock(&c->lock);
	return err;
}

/* Whatever registered memory lies in [addr, addr + len) stops being managed
 * (a munmap may have ended part of a registration already) */
static int do_unregister(struct session *s, const struct dm_msg *m)
{
	struct client *c = s->client;
	uint64_t addr = m->u.range.addr, end = addr + m->u.range.len;
	uint64_t *vas;
	uint32_t n;
	int err = check_user_span(addr, m->u.range.len);

	if (err)
		return err;
	pthread_mutex_lock(&c->lock);
	if (client_mid_migration(c)) {
		pthread_mutex_unlock(&c->lock);
		return -EBUSY;
	}
	events_wait(c);
	if (!pt_intersects(&c->pt, addr, end)) {
		pthread_mutex_unlock(&c->lock);
		return -EINVAL;
	}
	/* libdevmem brought the data back first; what is left (pages that
	 * came to the device since) goes with the registration */
	err = pt_units_in(&c->pt, addr, end, &vas, &n);
	for (uint32_t k = 0; k < n; k++) {
		uint64_t va = vas[k];
		uint64_t ps = MAX(va, addr), pe = MIN(va + UNIT_SIZE, end);
		struct unit *u = client_wait_unit(c, va);

		if (!u)
			continue;
		if (ps == va && pe == va + UNIT_SIZE)
			client_unit_free_all(c, u);
		for (unsigned i = unit_page(ps);
		     i < unit_page(ps) + ((pe - ps) >> PAGE_SHIFT); i++)
			client_free_page(c, u, i);
		if (u->registered)
			uffd_unregister(c->uffd, ps, pe - ps);
		client_unit_drop_if_empty(c, u);
	}
	free(vas);
	if (err) {
		pthread_mutex_unlock(&c->lock);
		return err;
	}
	err = pt_carve(&c->pt, addr, end);
	pthread_mutex_unlock(&c->lock);
	return err;
}

static void fill_counters(uint64_t *out, const struct counters *cnt)
{
	for (unsigned k = 0; k < CNT_NR; k++)
		out[k] = atomic_load_explicit(&cnt->v[k], memory_order_relaxed);
}

static uint64_t device_used(struct device *d, struct buddy_info *info)
{
	buddy_get_info(&d->buddy, info);
	return (info->npages - info->free_pages) << PAGE_SHIFT;
}

static int do_stats(struct session *s, struct reply_ctx *rc)
{
	struct dm_stats_reply *rep = &rc->body.stats;
	struct buddy_info info;

	rep->nfields = DM_STATS_FIELDS;
	rep->field[0] = s->dev->pool.size;
	rep->field[1] = device_used(s->dev, &info);
	rep->field[2] = s->client ? atomic_load(&s->client->used_pages)
					    << PAGE_SHIFT
				  : 0;
	fill_counters(&rep->field[3],
		      s->client ? &s->client->counters : &s->dev->counters);
	return 0;
}

static int do_inject(struct session *s, const struct dm_msg *m)
{
	switch (m->u.inject.what) {
	case DEVMEM_INJECT_FAIL_HUGE_ALLOC:
		buddy_inject_fail_huge(&s->dev->buddy, m->u.inject.count);
		return 0;
	case DEVMEM_INJECT_FAIL_ALLOC:
		buddy_inject_fail_any(&s->dev->buddy, m->u.inject.count);
		return 0;
	case DM_INJECT_SLOW_EVENTS:
		atomic_store(&s->dev->inject_slow_events, m->u.inject.count);
		return 0;
	default:
		return -EINVAL;
	}
}

static int do_policy(struct session *s, const struct dm_msg *m,
		     struct reply_ctx *rc)
{
	const struct dm_policy *p = &m->u.policy;

	if (p->set) {
		if (p->kind >= DM_POL_MAX || p->value > 1)
			return -EINVAL;
		atomic_store(&s->dev->policy[p->kind], p->value);
		log_info("policy %s set to %s (pid %d)",
			 dm_policy_kind_name(p->kind),
			 dm_policy_value_name(p->kind, p->value), (int)s->pid);
	}
	for (unsigned k = 0; k < DM_POL_MAX; k++)
		rc->body.policy.value[k] = device_policy(s->dev, k);
	return 0;
}

static int do_status(struct session *s, struct reply_ctx *rc)
{
	struct dm_status_reply *rep = &rc->body.status_full;
	struct device *d = s->dev;
	struct buddy_info info;

	rep->pid = (uint32_t)getpid();
	rep->capacity = d->pool.size;
	rep->used = device_used(d, &info);
	rep->free_pages = info.free_pages;
	rep->metadata_bytes = info.metadata_bytes;
	rep->client_limit = d->client_limit_pages << PAGE_SHIFT;
	for (unsigned o = 0; o < BUDDY_NR_ORDERS; o++)
		rep->nr_free[o] = info.nr_free[o];
	rep->fragmentation = info.fragmentation;
	rep->node = d->pool.node;
	pthread_mutex_lock(&d->clients_lock);
	rep->nclients = d->nclients;
	pthread_mutex_unlock(&d->clients_lock);
	for (unsigned k = 0; k < DM_POL_MAX; k++)
		rep->policy[k] = device_policy(d, k);
	rep->uptime_ms = now_ms() - d->start_ms;
	fill_counters(rep->counters, &d->counters);
	snprintf(rep->version, sizeof(rep->version), "%s", PACKAGE_VERSION);
	snprintf(rep->socket, sizeof(rep->socket), "%s", d->socket_path);
	snprintf(rep->topology, sizeof(rep->topology), "%.60s; %.60s",
		 d->topo.cpu_model, d->topo.summary);
	snprintf(rep->cpus, sizeof(rep->cpus), "%s", d->topo.cpus);
	return 0;
}

static int do_clients(struct session *s, struct reply_ctx *rc)
{
	struct device *d = s->dev;
	struct dm_client_info *list;
	struct client *c;
	uint32_t n = 0;

	list = calloc(DM_MAX_CLIENTS_LIST, sizeof(*list));
	if (!list)
		return -ENOMEM;
	pthread_mutex_lock(&d->clients_lock);
	list_for_each_entry (c, &d->clients, node) {
		struct dm_client_info *ci = &list[n];

		if (n == DM_MAX_CLIENTS_LIST)
			break;
		ci->id = c->id;
		ci->pid = (uint32_t)c->pid;
		ci->uid = (uint32_t)c->uid;
		pthread_mutex_lock(&c->lock);
		ci->nranges = c->pt.nranges;
		ci->registered = c->pt.registered_bytes;
		pthread_mutex_unlock(&c->lock);
		ci->used = atomic_load(&c->used_pages) << PAGE_SHIFT;
		fill_counters(ci->counters, &c->counters);
		n++;
	}
	pthread_mutex_unlock(&d->clients_lock);
	rc->tail = list;
	rc->ntail = n;
	return 0;
}

static int do_ranges(struct session *s, const struct dm_msg *m,
		     struct reply_ctx *rc)
{
	struct client *c = s->client;
	struct dm_range *list = calloc(DM_MAX_RANGES_LIST, sizeof(*list));
	uint32_t n = 0;

	if (!list)
		return -ENOMEM;
	pthread_mutex_lock(&c->lock);
	for (uint32_t i = 0; i < c->pt.nranges && n < DM_MAX_RANGES_LIST; i++)
		if (c->pt.ranges[i].end > m->u.range.addr) {
			list[n].addr = c->pt.ranges[i].start;
			list[n].len =
				c->pt.ranges[i].end - c->pt.ranges[i].start;
			n++;
		}
	pthread_mutex_unlock(&c->lock);
	rc->tail = list;
	rc->ntail = n;
	return 0;
}

static int do_snapshot(struct session *s, const struct dm_msg *m,
		       struct reply_ctx *rc)
{
	uint64_t n = m->u.snapshot.npages;
	int err;

	if (!n || n > DM_MAX_SNAPSHOT)
		return -EINVAL;
	rc->tail = malloc(n);
	if (!rc->tail)
		return -ENOMEM;
	err = access_snapshot(s->client, m->u.snapshot.addr, n, rc->tail);
	if (!err)
		rc->ntail = (uint32_t)n;
	return err;
}

/* Which roles may send each request */
#define ANY (1u << DM_ROLE_CLIENT | 1u << DM_ROLE_CONTROL)
#define CLIENT (1u << DM_ROLE_CLIENT)
static const unsigned allowed[DM_TYPE_MAX] = {
	[DM_HELLO] = ANY | 1, /* 1: before HELLO */
	[DM_ATTACH] = CLIENT,
	[DM_REGISTER] = CLIENT,
	[DM_UNREGISTER] = CLIENT,
	[DM_MIGRATE_BEGIN] = CLIENT,
	[DM_MIGRATE_COMMIT] = CLIENT,
	[DM_MIGRATE_FINISH] = CLIENT,
	[DM_MIGRATE_BACK] = CLIENT,
	[DM_MIGRATE_BACK_DONE] = CLIENT,
	[DM_DEVICE_READ] = CLIENT,
	[DM_DEVICE_WRITE] = CLIENT,
	[DM_SNAPSHOT] = CLIENT,
	[DM_STATS] = ANY,
	[DM_INJECT] = ANY,
	[DM_STATUS] = ANY,
	[DM_CLIENTS] = ANY,
	[DM_POLICY] = ANY,
	[DM_RANGES] = CLIENT,
	[DM_EVICT] = ANY,
};

static int handle(struct session *s, const struct dm_msg *m, int *fds, int nfds,
		  struct reply_ctx *rc)
{
	struct client *c = s->client;

	switch (m->hdr.type) {
	case DM_HELLO:
		return do_hello(s, m, rc);
	case DM_ATTACH:
		return do_attach(s, m, fds, nfds);
	case DM_REGISTER:
		return do_register(s, m);
	case DM_UNREGISTER:
		return do_unregister(s, m);
	case DM_MIGRATE_BEGIN:
		return migrate_begin(c, &m->u.migrate, &rc->body.begin);
	case DM_MIGRATE_COMMIT:
		return migrate_commit(c, &m->u.migrate, &rc->body.result);
	case DM_MIGRATE_FINISH:
		return migrate_finish(c, &m->u.migrate);
	case DM_MIGRATE_BACK:
		rc->tail = calloc(DM_MAX_BATCH, sizeof(struct dm_move));
		if (!rc->tail)
			return -ENOMEM;
		{
			int err = migrate_back(c, &m->u.migrate,
					       &rc->body.result, rc->tail);

			rc->ntail = rc->body.result.nmoves;
			return err;
		}
	case DM_MIGRATE_BACK_DONE:
		return migrate_back_done(c, m->tail, m->ntail,
					 &rc->body.result);
	case DM_DEVICE_READ:
	case DM_DEVICE_WRITE:
		return access_device(c, &m->u.access,
				     m->hdr.type == DM_DEVICE_WRITE,
				     &rc->body.result);
	case DM_SNAPSHOT:
		return do_snapshot(s, m, rc);
	case DM_STATS:
		return do_stats(s, rc);
	case DM_INJECT:
		return do_inject(s, m);
	case DM_STATUS:
		return do_status(s, rc);
	case DM_CLIENTS:
		return do_clients(s, rc);
	case DM_POLICY:
		return do_policy(s, m, rc);
	case DM_RANGES:
		return do_ranges(s, m, rc);
	case DM_EVICT:
		rc->body.count.count = device_evict_all(s->dev);
		log_info("pid %d: %llu units evicted", (int)s->pid,
			 (unsigned long long)rc->body.count.count);
		return 0;
	default:
		return -EPROTO;
	}
}

int session_handle(struct session *s, const struct dm_msg *m, int *fds,
		   int nfds, uint8_t *buf)
{
	struct reply_ctx rc = { 0 };
	uint16_t type = m->hdr.type;
	unsigned need = type < DM_TYPE_MAX ? allowed[type] : 0;
	int status, err;

	if (type & DM_REPLY || !(need & (s->role ? 1u << s->role : 1u))) {
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		log_warn(
			"pid %d: unexpected %s message; closing the connection",
			(int)s->pid, dm_type_name(type));
		return -EPROTO;
	}
	if (type != DM_ATTACH)
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
	status = handle(s, m, fds, type == DM_ATTACH ? nfds : 0, &rc);
	/* every reply starts with its status */
	rc.body.status.status = status;
	err = dm_send_msg(s->fd, buf, DM_MAX_MSG, type | DM_REPLY, m->hdr.id,
			  &rc.body, rc.tail, rc.ntail, NULL, 0);
	free(rc.tail);
	if (err) {
		log_debug("pid %d: sending the %s reply: %s", (int)s->pid,
			  dm_type_name(type), strerror(-err));
		return err;
	}
	return rc.close ? -EPROTO : 0;
}

void session_end(struct session *s)
{
	if (s->client) {
		client_release(s->client);
		client_put(s->client);
		s->client = NULL;
	}
}
