/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "copier.h"
#include "list.h"

struct batch_run {
	struct list_head node;
	struct copy_job *jobs;
	unsigned n;
	atomic_uint next; /* next job to take */
	atomic_uint done;
	unsigned users; /* helpers working on it (under lock) */
	bool finished;
	pthread_cond_t cond; /* finished, and no helper on it */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work = PTHREAD_COND_INITIALIZER;
static struct list_head runs = LIST_HEAD_INIT(runs);
static pthread_t *helpers;
static unsigned nhelpers;
static bool stopping;

static void do_job(struct copy_job *j)
{
	ssize_t n = j->to_client
			    ? process_vm_writev(j->pid, j->local, j->nlocal,
						j->remote, j->nremote, 0)
			    : process_vm_readv(j->pid, j->local, j->nlocal,
					       j->remote, j->nremote, 0);

	if (n < 0)
		j->err = -errno;
	else
		j->err = (size_t)n == j->len ? 0 : -EFAULT;
}

/* Take and do jobs of run r until none is left; true if this finished it */
static bool work_on(struct batch_run *r)
{
	unsigned i, did = 0;

	while ((i = atomic_fetch_add(&r->next, 1)) < r->n) {
		do_job(&r->jobs[i]);
		did++;
	}
	return did && atomic_fetch_add(&r->done, did) + did == r->n;
}

static void *helper_main(void *arg)
{
	pthread_mutex_lock(&lock);
	for (;;) {
		struct batch_run *r = NULL, *it;
		bool last;

		list_for_each_entry (it, &runs, node)
			if (atomic_load(&it->next) < it->n) {
				r = it;
				break;
			}
		if (!r) {
			if (stopping)
				break;
			pthread_cond_wait(&work, &lock);
			continue;
		}
		r->users++;
		pthread_mutex_unlock(&lock);
		last = work_on(r);

		pthread_mutex_lock(&lock);
		if (last)
			r->finished = true;
		/* the caller's stack holds r: it may go once we let go */
		if (!--r->users && r->finished)
			pthread_cond_signal(&r->cond);
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

int copier_start(unsigned n)
{
	if (n < 2)
		return 0;
	helpers = calloc(n - 1, sizeof(*helpers));
	if (!helpers)
		return -ENOMEM;
	for (unsigned i = 0; i < n - 1; i++) {
		int err = pthread_create(&helpers[i], NULL, helper_main, NULL);

		if (err) {
			copier_stop();
			return -err;
		}
		nhelpers++;
	}
	return 0;
}

void copier_stop(void)
{
	pthread_mutex_lock(&lock);
	stopping = true;
	pthread_cond_broadcast(&work);
	pthread_mutex_unlock(&lock);
	for (unsigned i = 0; i < nhelpers; i++)
		pthread_join(helpers[i], NULL);
	free(helpers);
	helpers = NULL;
	nhelpers = 0;
}

void copier_run(struct copy_job *jobs, unsigned n)
{
	struct batch_run r = { .jobs = jobs, .n = n };
	bool mine;

	if (!n)
		return;
	if (n == 1 || !nhelpers) {
		for (unsigned i = 0; i < n; i++)
			do_job(&jobs[i]);
		return;
	}
	pthread_cond_init(&r.cond, NULL);
	pthread_mutex_lock(&lock);
	list_add_tail(&r.node, &runs);
	pthread_cond_broadcast(&work);
	pthread_mutex_unlock(&lock);

	mine = work_on(&r);

	pthread_mutex_lock(&lock);
	if (mine)
		r.finished = true;
	while (!r.finished || r.users)
		pthread_cond_wait(&r.cond, &lock);
	list_del_init(&r.node);
	pthread_mutex_unlock(&lock);
	pthread_cond_destroy(&r.cond);
}
