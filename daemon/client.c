/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "client.h"
#include "events.h"
#include "fault.h"
#include "log.h"
#include "uffdops.h"

struct client *client_new(struct device *d, pid_t pid, uid_t uid)
{
	struct client *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->dev = d;
	c->pid = pid;
	c->uid = uid;
	c->uffd = c->helper_sock = c->proc_dirfd = c->pagemap_fd = -1;
	atomic_init(&c->refs, 1);
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->helper_lock, NULL);
	pthread_mutex_init(&c->intake_lock, NULL);
	pthread_cond_init(&c->idle, NULL);
	pt_init(&c->pt);
	pthread_mutex_lock(&d->clients_lock);
	c->id = ++d->next_client_id;
	list_add_tail(&c->node, &d->clients);
	d->nclients++;
	pthread_mutex_unlock(&d->clients_lock);
	return c;
}

void client_get(struct client *c)
{
	atomic_fetch_add(&c->refs, 1);
}

void client_put(struct client *c)
{
	if (atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	pt_destroy(&c->pt);
	free(c->events.q);
	free(c->retry.f);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->helper_lock);
	pthread_mutex_destroy(&c->intake_lock);
	free(c->in_hand);
	pthread_cond_destroy(&c->idle);
	free(c);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Is fd a userfaultfd? (anything else would not block a resolver's read) */
static bool is_uffd(int fd)
{
	char path[64], target[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = '\0';
	return !strcmp(target, "anon_inode:[userfaultfd]");
}

int client_attach(struct client *c, const struct dm_attach *a, int uffd,
		  int helper_sock)
{
	struct timeval helper_timeout = { .tv_sec = 10 };
	struct stat st;
	char path[64];
	int err;

	/* the fds are the client's only once all is checked */
	if (c->attached) {
		err = -EALREADY;
		goto refuse;
	}
	if (!is_uffd(uffd) || fstat(helper_sock, &st) ||
	    !S_ISSOCK(st.st_mode)) {
		err = -EBADF;
		goto refuse;
	}
	if (!a->nslots || a->nslots > DM_MAX_BATCH || !a->nfault_slots ||
	    a->nfault_slots > 64 || a->staging & UNIT_MASK || !a->staging ||
	    a->staging + (uint64_t)(a->nslots + a->nfault_slots) * UNIT_SIZE <
		    a->staging) {
		err = -EINVAL;
		goto refuse;
	}
	c->uffd = uffd;
	c->helper_sock = helper_sock;
	/* a helper that never answers must not hold a resolver for ever */
	setsockopt(helper_sock, SOL_SOCKET, SO_RCVTIMEO, &helper_timeout,
		   sizeof(helper_timeout));
	snprintf(path, sizeof(path), "/proc/%d", (int)c->pid);
	c->proc_dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c->proc_dirfd < 0) {
		err = -errno;
		log_err("client %u: cannot open %s: %s", c->id, path,
			strerror(-err));
		goto undo;
	}
	c->pagemap_fd = openat(c->proc_dirfd, "pagemap", O_RDONLY | O_CLOEXEC);
	if (c->pagemap_fd < 0) {
		err = -errno;
		log_err("client %u: cannot open %s/pagemap: %s", c->id, path,
			strerror(-err));
		goto undo;
	}
	c->uffd_features = a->uffd_features;
	c->uffd_flags = a->uffd_flags;
	c->staging = a->staging;
	c->nslots = a->nslots;
	c->nfault_slots = a->nfault_slots;
	err = fault_start(c);
	if (err)
		goto undo;
	c->attached = true;
	log_debug("client %u (pid %d): attached, uffd features %#llx%s", c->id,
		  (int)c->pid, (unsigned long long)c->uffd_features,
		  c->uffd_flags & DM_UFFD_USER_MODE_ONLY ? ", user mode only"
							 : "");
	return 0;
undo:
	close_fd(&c->pagemap_fd);
	close_fd(&c->proc_dirfd);
	close_fd(&c->uffd);
	close_fd(&c->helper_sock);
	return err;
refuse:
	close(uffd);
	close(helper_sock);
	return err;
}

struct unit *client_wait_unit(struct client *c, uint64_t va)
{
	struct unit *u;

	while ((u = pt_unit(&c->pt, va)) && atomic_load(&u->busy) != UNIT_IDLE)
		pthread_cond_wait(&c->idle, &c->lock);
	return u;
}

static void unregister_span(uint64_t start, uint64_t end, void *arg)
{
	struct client *c = arg;
	int err = uffd_unregister(c->uffd, start, end - start);

	/* -ENOENT/-EINVAL: the mapping is gone (munmap, mremap); -ESRCH,
	 * -ENOMEM: so is the process */
	if (err && err != -ESRCH && err != -ENOENT && err != -EINVAL &&
	    err != -ENOMEM)
		log_warn("client %u: unregistering %#llx-%#llx: %s", c->id,
			 (unsigned long long)start, (unsigned long long)end,
			 strerror(-err));
}

void client_unit_drop_if_empty(struct client *c, struct unit *u)
{
	if (u->ndevice || atomic_load(&u->busy) != UNIT_IDLE)
		return;
	/* also wakes any thread still waiting on a hole here: it retries
	 * as an ordinary fault */
	if (u->registered)
		pt_for_each_registered(&c->pt, u->va, u->va + UNIT_SIZE,
				       unregister_span, c);
	device_lru_remove(c->dev, u);
	pt_unit_free(&c->pt, u);
}

uint32_t client_unit_unbusy(struct client *c, struct unit *u,
			    struct parked_fault *out, uint32_t max)
{
	uint32_t n = pt_unpark(&c->pt, u->va, u->va + UNIT_SIZE, out, max);

	atomic_store(&u->busy, UNIT_IDLE);
	if (u->ndevice)
		device_lru_touch(c->dev, u);
	client_unit_drop_if_empty(c, u);
	pthread_cond_broadcast(&c->idle);
	/* events held back by this unit may go now */
	events_run(c);
	return n;
}

void client_unbusy_resolve(struct client *c, struct unit *u)
{
	struct parked_fault parked[32];
	uint64_t va = u->va;
	uint32_t n = client_unit_unbusy(c, u, parked, ARRAY_SIZE(parked));

	while (n) {
		pthread_mutex_unlock(&c->lock);
		for (uint32_t i = 0; i < n; i++)
			fault_resolve(c, &parked[i]);
		pthread_mutex_lock(&c->lock);
		/* busy again: its new holder resolves what is parked */
		u = pt_unit(&c->pt, va);
		if (u && atomic_load(&u->busy) != UNIT_IDLE)
			break;
		n = pt_unpark(&c->pt, va, va + UNIT_SIZE, parked,
			      ARRAY_SIZE(parked));
	}
}

bool client_unit_split(struct client *c, struct unit *u)
{
	if (!u->huge)
		return false;
	u->huge = false;
	count(c, CNT_SPLITS, 1);
	if (device_policy(c->dev, DM_POL_FREE) == 1 /* split */)
		client_unit_unfolio(c, u);
	return true;
}

void client_unit_unfolio(struct client *c, struct unit *u)
{
	struct buddy *b = &c->dev->buddy;
	unsigned released = 0;
	uint32_t head = DPFN_NONE;

	for (unsigned i = 0; i < FOLIO_PAGES && head == DPFN_NONE; i++)
		if (u->pte[i].state == DPTE_DEVICE &&
		    u->pte[i].flags & DPTE_FOLIO)
			head = u->pte[i].dpfn & ~(FOLIO_PAGES - 1);
	if (head == DPFN_NONE)
		return;
	u->huge = false;
	buddy_split(b, head, FOLIO_ORDER);
	/* page k of the folio is page k of this unit (DPTE_FOLIO); those no
	 * longer there were dropped while the folio was kept whole */
	for (unsigned k = 0; k < FOLIO_PAGES; k++) {
		struct dpte *p = &u->pte[k];

		if (p->state == DPTE_DEVICE && p->flags & DPTE_FOLIO) {
			p->flags &= ~DPTE_FOLIO;
		} else {
			buddy_free(b, head + k, 0);
			released++;
		}
	}
	atomic_fetch_sub(&c->used_pages, released);
}

unsigned client_free_page(struct client *c, struct unit *u, unsigned i)
{
	struct buddy *b = &c->dev->buddy;
	struct dpte *p = &u->pte[i];
	unsigned released = 0;

	if (p->state != DPTE_DEVICE)
		return 0;
	if (u->huge)
		client_unit_split(c, u);
	/* the free policy may have changed since the folio was split */
	if (p->flags & DPTE_FOLIO && device_policy(c->dev, DM_POL_FREE) == 1)
		client_unit_unfolio(c, u);
	if (p->flags & DPTE_FOLIO) {
		if (!buddy_put(b, p->dpfn & ~(FOLIO_PAGES - 1), FOLIO_ORDER, 1))
			released = FOLIO_PAGES;
	} else {
		buddy_free(b, p->dpfn, 0);
		released = 1;
	}
	p->state = DPTE_SYSTEM;
	p->flags = 0;
	u->ndevice--;
	atomic_fetch_sub(&c->used_pages, released);
	return released;
}

unsigned client_unit_free_all(struct client *c, struct unit *u)
{
	unsigned n = u->ndevice;

	if (u->huge) {
		/* freed whole: no split */
		buddy_free(&c->dev->buddy, u->pte[0].dpfn & ~(FOLIO_PAGES - 1),
			   FOLIO_ORDER);
		atomic_fetch_sub(&c->used_pages, FOLIO_PAGES);
		memset(u->pte, 0, sizeof(u->pte));
		u->ndevice = 0;
		u->huge = false;
		return n;
	}
	for (unsigned i = 0; i < FOLIO_PAGES && u->ndevice; i++)
		client_free_page(c, u, i);
	return n;
}

/* Poison the holes of [start, end), leave what is present (lock held) */
static void poison_holes(uint64_t start, uint64_t end, void *arg)
{
	struct client *c = arg;

	while (start < end) {
		int err = uffd_poison(c->uffd, start, PAGE_SIZE);

		if (err == -ESRCH || err == -ENOENT || err == -EINVAL)
			return;
		start += PAGE_SIZE;
	}
}

/*
 * The process lives on without its device memory (its connection broke):
 * make its device pages raise SIGBUS instead of reading zeros.  Returns the
 * pages poisoned; *gone is set once the process turns out to have exited.
 */
static uint64_t unit_poison(struct client *c, struct unit *u, bool *gone)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < FOLIO_PAGES && !*gone; i++) {
		unsigned k = i;
		int err;

		if (u->pte[i].state != DPTE_DEVICE)
			continue;
		while (k + 1 < FOLIO_PAGES &&
		       u->pte[k + 1].state == DPTE_DEVICE)
			k++;
		err = uffd_poison(c->uffd, u->va + ((uint64_t)i << PAGE_SHIFT),
				  (uint64_t)(k - i + 1) << PAGE_SHIFT);
		if (err == -ESRCH)
			*gone = true;
		else if (!err)
			n += k - i + 1;
		i = k;
	}
	return n;
}

/* Any unit, or NULL */
static struct unit *any_unit(struct pagetable *pt)
{
	for (uint32_t b = 0; b < pt->nbuckets; b++)
		if (pt->buckets[b])
			return pt->buckets[b];
	return NULL;
}

void client_release(struct client *c)
{
	struct device *d = c->dev;
	uint64_t poisoned = 0;
	struct unit *u;
	bool gone = false;

	/* a resolver waiting for the helper hears the end of it */
	if (c->helper_sock >= 0)
		shutdown(c->helper_sock, SHUT_RDWR);
	fault_stop(c);
	pthread_mutex_lock(&c->lock);
	while ((u = any_unit(&c->pt))) {
		/* the client's own migration ends with it; what it had moved
		 * out is in its staging, out of reach: if it lives on, its
		 * holes must fail loudly too */
		if (atomic_load(&u->busy) == BUSY_REQUEST) {
			if (c->attached && !gone && u->registered)
				pt_for_each_registered(&c->pt, u->va,
						       u->va + UNIT_SIZE,
						       poison_holes, c);
			atomic_store(&u->busy, UNIT_IDLE);
		}
		/* an evictor may still be returning it */
		u = client_wait_unit(c, u->va);
		if (!u)
			continue;
		if (c->attached && u->ndevice)
			poisoned += unit_poison(c, u, &gone);
		client_unit_free_all(c, u);
		client_unit_drop_if_empty(c, u);
	}
	c->batch.active = false;
	c->back.n = 0;
	c->events.n = 0;
	c->retry.n = 0;
	pthread_mutex_unlock(&c->lock);
	if (poisoned)
		log_warn(
			"client %u (pid %d): connection lost with %llu device pages; they raise SIGBUS now",
			c->id, (int)c->pid, (unsigned long long)poisoned);

	pthread_mutex_lock(&d->clients_lock);
	list_del_init(&c->node);
	d->nclients--;
	pthread_mutex_unlock(&d->clients_lock);

	close_fd(&c->uffd);
	close_fd(&c->helper_sock);
	close_fd(&c->pagemap_fd);
	close_fd(&c->proc_dirfd);
	if (atomic_load(&c->used_pages))
		log_err("client %u: %llu device pages still accounted after release",
			c->id, (unsigned long long)atomic_load(&c->used_pages));
	log_debug("client %u (pid %d): released", c->id, (int)c->pid);
}
