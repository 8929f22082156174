/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "events.h"
#include "fault.h"
#include "log.h"
#include "migrate.h"
#include "uffd_compat.h"
#include "uffdops.h"

struct resolver {
	struct client *client;
	int cpu;
	pthread_t thread;
	bool started;
	uint64_t read_ns; /* when this one last read faults */
};

/*
 * Every resolver polls the userfaultfd, and every fault wakes them all.
 * The one on the faulting thread's CPU runs at once and resolves it with
 * a cheap local wake-up; another CPU's resolver wakes later, and while one
 * thread faults page after page it would now and then take a later fault,
 * whose wake-up then crosses CPUs (tens of µs here, against ~5 µs).  So a
 * resolver that has read nothing lately, waking while another CPU's
 * resolver reads faults, leaves the message to it for a moment, and naps
 * if it was taken.  When both CPUs fault, both resolvers are hot and
 * neither waits.
 */
#define HOT_NS 50000u  /* "lately" */
#define DEFER_NS 5000u /* how long the message is left to the hot one */
#define NAP_US 50      /* out of the poll set: no wake-up for a while */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool uffd_readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 0) > 0;
}

/* Should this resolver read now?  False if the hot one took the message. */
static bool read_here(struct resolver *rs)
{
	struct client *c = rs->client;
	uint64_t t = now_ns();

	if (atomic_load(&c->fault_read_cpu) == rs->cpu ||
	    t - atomic_load(&c->fault_read_ns) > HOT_NS ||
	    t - rs->read_ns <= HOT_NS)
		return true;
	for (uint64_t end = t + DEFER_NS; now_ns() < end;)
		if (!uffd_readable(c->uffd))
			return false;
	return true;
}

static void note_read(struct resolver *rs)
{
	rs->read_ns = now_ns();
	atomic_store(&rs->client->fault_read_cpu, rs->cpu);
	atomic_store(&rs->client->fault_read_ns, rs->read_ns);
}

int helper_move(struct client *c, uint64_t src, uint64_t dst, uint64_t len,
		uint64_t *moved)
{
	struct dm_helper_move req = { .src = src, .dst = dst, .len = len };
	uint8_t buf[256];
	struct dm_msg rep;
	uint32_t id;
	int err;

	*moved = 0;
	pthread_mutex_lock(&c->helper_lock);
	id = ++c->helper_seq;
	err = dm_send_msg(c->helper_sock, buf, sizeof(buf), DM_HELPER_MOVE, id,
			  &req, NULL, 0, NULL, 0);
	if (!err)
		err = dm_recv_msg(c->helper_sock, buf, sizeof(buf), &rep, NULL,
				  NULL);
	pthread_mutex_unlock(&c->helper_lock);
	if (err)
		return err;
	if (rep.hdr.type != (DM_HELPER_MOVE | DM_REPLY) || rep.hdr.id != id) {
		dm_msg_release(&rep);
		return -EPROTO;
	}
	*moved = MIN(rep.u.helper_reply.moved, len);
	return rep.u.helper_reply.status;
}

/* The fault could not be resolved now (an event waits to be read, or the
 * helper is busy): resolve it again after the next messages (lock held) */
static void retry_later(struct client *c, const struct parked_fault *f)
{
	struct fault_queue *q = &c->retry;

	while (q->n == q->cap) {
		uint32_t cap = q->cap ? 2 * q->cap : 16;
		struct parked_fault *n = realloc(q->f, cap * sizeof(*n));

		if (n) {
			q->f = n;
			q->cap = cap;
			break;
		}
		pthread_mutex_unlock(&c->lock);
		usleep(1000); /* no memory to queue it: come back */
		pthread_mutex_lock(&c->lock);
	}
	q->f[q->n++] = *f;
}

/* Take the n oldest deferred faults off q into f (lock held) */
static void retry_take(struct fault_queue *q, struct parked_fault *f,
		       uint32_t n)
{
	if (!n)
		return;
	memcpy(f, q->f, n * sizeof(*f));
	memmove(q->f, q->f + n, (q->n - n) * sizeof(*f));
	q->n -= n;
}

void fault_retry(struct client *c)
{
	struct parked_fault f[32];
	uint32_t n;

	pthread_mutex_lock(&c->lock);
	n = MIN(c->retry.n, ARRAY_SIZE(f));
	retry_take(&c->retry, f, n);
	pthread_mutex_unlock(&c->lock);
	for (uint32_t i = 0; i < n; i++)
		fault_resolve(c, &f[i]);
}

static int take_fault_slot(struct client *c)
{
	for (uint32_t j = 0; j < c->nfault_slots; j++)
		if (!(c->fault_slots_busy >> j & 1)) {
			c->fault_slots_busy |= 1ull << j;
			return (int)j;
		}
	return -1;
}

/*
 * The whole folio comes back as a THP: write it to a fault slot, and the
 * client's helper thread moves it into place (lock held on entry and exit,
 * dropped in between while the unit is busy).  The caller owns the fault
 * path (see fault_resolve).
 */
static void fault_return_folio(struct client *c, struct unit *u, int slot)
{
	uint64_t va = slot_addr(c, c->nslots + (uint32_t)slot), moved = 0;
	int err;

	atomic_store(&u->busy, BUSY_FAULT);
	pthread_mutex_unlock(&c->lock);
	err = folio_write_slot(c, u, va);
	if (!err)
		err = helper_move(c, va, u->va, UNIT_SIZE, &moved);
	pthread_mutex_lock(&c->lock);
	if (err)
		log_debug(
			"client %u: folio %#llx back through the helper: %s (moved %llu)",
			c->id, (unsigned long long)u->va, strerror(-err),
			(unsigned long long)moved);
	unit_finish_huge(c, u, moved);
	/* the helper moved without waking: the faulting threads resume only
	 * now, with the counters already telling what happened */
	uffd_wake(c->uffd, u->va, UNIT_SIZE);
	c->fault_slots_busy &= ~(1ull << slot);
	client_unbusy_resolve(c, u);
}

/*
 * A fault at an address devmemd knows nothing of: mremap moved device pages
 * there, and the thread touched them after the kernel released the mremap
 * (when the event was read) but before the event was applied.  Give the
 * reader a moment; an address still unknown after it is a plain hole.
 * Returns with the lock held and the unit at addr (or NULL).
 */
static struct unit *wait_stray(struct client *c, uint64_t addr)
{
	for (int i = 0; i < 10 && !pt_covered(&c->pt, addr, PAGE_SIZE); i++) {
		pthread_mutex_unlock(&c->lock);
		usleep(100);
		pthread_mutex_lock(&c->lock);
	}
	return pt_unit(&c->pt, ALIGN_DOWN(addr, UNIT_SIZE));
}

enum outcome { RESOLVED, AGAIN };

/* One attempt (lock held).  AGAIN: an event waits to be read (the kernel
 * refuses fills until then) or applied, or another resolver owns the fault
 * path. */
static enum outcome try_resolve(struct client *c, const struct parked_fault *f,
				bool *owner)
{
	uint64_t addr = f->addr;
	bool write = f->flags & UFFD_PAGEFAULT_FLAG_WRITE;
	struct unit *u = pt_unit(&c->pt, ALIGN_DOWN(addr, UNIT_SIZE));
	unsigned i = unit_page(addr);
	int slot, err;

	/* an event read before this fault but not applied yet (mremap,
	 * munmap, madvise) may change what this address holds: it goes
	 * first */
	if (events_before(c, f->seq))
		return AGAIN;
	if (!u && !pt_covered(&c->pt, addr, PAGE_SIZE))
		u = wait_stray(c, addr);
	if (u && atomic_load(&u->busy) != UNIT_IDLE) {
		while (pt_park(&c->pt, f)) {
			pthread_mutex_unlock(&c->lock);
			usleep(1000); /* no memory to park it: come back */
			pthread_mutex_lock(&c->lock);
		}
		return RESOLVED; /* when the unit is released */
	}
	if (!u || u->pte[i].state != DPTE_DEVICE) {
		/* a hole next to device pages, or a page that came back
		 * meanwhile (then this only wakes the thread); not where an
		 * event read since the fault puts pages */
		if (!events_fill_begin(c, addr, addr + PAGE_SIZE))
			return AGAIN;
		err = uffd_zero(c->uffd, addr, PAGE_SIZE, write, true);
		events_fill_end(c);
		if (err == -EAGAIN)
			return AGAIN;
		if (err == -ENOENT) /* unregistered meanwhile */
			uffd_wake(c->uffd, addr, PAGE_SIZE);
		return RESOLVED;
	}
	if (u->huge && device_policy(c->dev, DM_POL_FAULT) == 0 /* folio */) {
		if (unit_all_zero(u)) {
			/* unregistering wakes the thread; its retry maps a
			 * THP or the huge zero page, as on plain memory */
			count(c, CNT_CPU_FAULTS, 1);
			client_unit_free_all(c, u);
			count(c, CNT_TO_SYSTEM, FOLIO_PAGES);
			count(c, CNT_HUGE, 1);
			client_unit_drop_if_empty(c, u);
			return RESOLVED;
		}
		/* waiting for the helper needs another resolver free to
		 * read the events the helper's move may wait for */
		if (c->fault_owner && !*owner)
			return AGAIN;
		/* the folio lands at u->va: not if an event read since the
		 * fault moves or drops what is there (events_fill_begin;
		 * one read during the helper's move is not seen) */
		if (!events_fill_begin(c, u->va, u->va + UNIT_SIZE))
			return AGAIN;
		events_fill_end(c);
		slot = take_fault_slot(c);
		if (slot >= 0) {
			c->fault_owner = *owner = true;
			count(c, CNT_CPU_FAULTS, 1);
			fault_return_folio(c, u, slot);
			return RESOLVED;
		}
	}
	client_unit_split(c, u);
	if (unit_return_page(c, u, i) == -EAGAIN)
		return AGAIN;
	client_unit_drop_if_empty(c, u);
	return RESOLVED;
}

/*
 * A fault that cannot be resolved at once waits, but only in one resolver
 * per client (the "owner"): while it waits, the others must stay free to
 * read the events it waits for.  Faults meeting an owner are deferred to
 * it, and it resolves them when it is done.
 */
void fault_resolve(struct client *c, const struct parked_fault *fault)
{
	struct parked_fault later[32], f = *fault;
	bool owner = false;
	uint32_t n = 0;

	f.addr = ALIGN_DOWN(f.addr, PAGE_SIZE);
	pthread_mutex_lock(&c->lock);
	while (try_resolve(c, &f, &owner) == AGAIN) {
		if (!owner) {
			if (c->fault_owner) {
				retry_later(c, &f);
				break;
			}
			c->fault_owner = owner = true;
		}
		pthread_mutex_unlock(&c->lock);
		usleep(50);
		pthread_mutex_lock(&c->lock);
	}
	if (owner) {
		/* give up the role and take what was deferred to it, in one
		 * go: a fault deferred later finds no owner and goes on */
		n = MIN(c->retry.n, ARRAY_SIZE(later));
		retry_take(&c->retry, later, n);
		c->fault_owner = false;
	}
	pthread_mutex_unlock(&c->lock);
	for (uint32_t k = 0; k < n; k++)
		fault_resolve(c, &later[k]);
}

/* Read what the userfaultfd has, one reader at a time, numbering the
 * messages and recording the events among them before anyone else reads:
 * that is the kernel's order, which the events need (returns the count) */
static size_t intake(struct client *c, struct uffd_msg *msgs, size_t max,
		     uint64_t *seq)
{
	ssize_t n;
	size_t count;

	pthread_mutex_lock(&c->intake_lock);
	n = read(c->uffd, msgs, max * sizeof(*msgs));
	count = n > 0 ? (size_t)n / sizeof(*msgs) : 0;
	*seq = c->intake_seq;
	c->intake_seq += count;
	for (size_t k = 0; k < count; k++) {
		if (msgs[k].event == UFFD_EVENT_PAGEFAULT)
			continue;
		if (c->nin_hand == c->in_hand_cap) {
			uint32_t cap = c->in_hand_cap ? 2 * c->in_hand_cap : 32;
			struct in_hand *q =
				realloc(c->in_hand, cap * sizeof(*q));

			if (!q) {
				log_err("client %u: out of memory reading events",
					c->id);
				break;
			}
			c->in_hand = q;
			c->in_hand_cap = cap;
		}
		c->in_hand[c->nin_hand].seq = *seq + k;
		c->in_hand[c->nin_hand].msg = msgs[k];
		c->nin_hand++;
	}
	pthread_mutex_unlock(&c->intake_lock);
	if (n < 0 && errno != EAGAIN && errno != EINTR) {
		log_err("client %u: reading its userfaultfd: %s", c->id,
			strerror(errno));
		return SIZE_MAX;
	}
	if (n == 0) {
		log_err("client %u: its userfaultfd reads empty", c->id);
		return SIZE_MAX;
	}
	return count;
}

static void *resolver_main(void *arg)
{
	struct resolver *rs = arg;
	struct client *c = rs->client;
	struct uffd_msg msgs[16];
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(rs->cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	while (!atomic_load(&c->stopping)) {
		struct pollfd p = { .fd = c->uffd, .events = POLLIN };
		uint64_t seq;
		size_t n;

		/* every resolver waits; the one on the faulting thread's
		 * CPU usually gets there first */
		if (poll(&p, 1, -1) < 0)
			continue; /* EINTR: are we stopping? */
		if (!read_here(rs)) {
			usleep(NAP_US);
			continue;
		}
		n = intake(c, msgs, ARRAY_SIZE(msgs), &seq);
		if (n == SIZE_MAX)
			break;
		if (n)
			note_read(rs);
		/* events first: held while resolving a fault (which can
		 * take long), they would hold up other resolvers' events, and
		 * the calls that sent them */
		for (size_t k = 0; k < n; k++)
			if (msgs[k].event != UFFD_EVENT_PAGEFAULT)
				events_queue(c, &msgs[k], seq + k);
		for (size_t k = 0; k < n; k++) {
			struct parked_fault f = {
				.addr = msgs[k].arg.pagefault.address,
				.flags = msgs[k].arg.pagefault.flags,
				.seq = seq + k,
			};

			if (msgs[k].event == UFFD_EVENT_PAGEFAULT)
				fault_resolve(c, &f);
		}
		/* events just read may let waiting faults through */
		if (c->retry.n)
			fault_retry(c);
	}
	return NULL;
}

int fault_start(struct client *c)
{
	struct resolver *rs;
	pthread_attr_t attr;
	/* at least two: one may wait for the helper while another reads */
	int flags, n = MAX(c->dev->ncpus, 2);

	/* resolvers wait in poll() and read without blocking: another one
	 * may have taken the message (the flag is shared by both ends) */
	flags = fcntl(c->uffd, F_GETFL);
	if (flags >= 0 && !(flags & O_NONBLOCK))
		fcntl(c->uffd, F_SETFL, flags | O_NONBLOCK);
	rs = calloc((size_t)n, sizeof(*rs));
	if (!rs)
		return -ENOMEM;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 << 10);
	c->resolvers = rs;
	for (int k = 0; k < n; k++) {
		int err;

		rs[k].client = c;
		rs[k].cpu = k % c->dev->ncpus;
		err = pthread_create(&rs[k].thread, &attr, resolver_main,
				     &rs[k]);
		if (err) {
			log_err("client %u: starting a fault resolver: %s",
				c->id, strerror(err));
			pthread_attr_destroy(&attr);
			c->nresolvers = k;
			fault_stop(c);
			return -err;
		}
		rs[k].started = true;
	}
	c->nresolvers = n;
	pthread_attr_destroy(&attr);
	return 0;
}

void fault_stop(struct client *c)
{
	struct resolver *rs = c->resolvers;

	if (!rs)
		return;
	atomic_store(&c->stopping, true);
	for (int k = 0; k < c->nresolvers; k++) {
		/* a resolver blocks in poll(): SIGUSR1 (no SA_RESTART)
		 * interrupts it; repeat in case it arrived just before */
		for (;;) {
			struct timespec ts;

			pthread_kill(rs[k].thread, SIGUSR1);
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 5 * 1000 * 1000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			if (!pthread_timedjoin_np(rs[k].thread, NULL, &ts))
				break;
		}
	}
	free(rs);
	c->resolvers = NULL;
	c->nresolvers = 0;
}
