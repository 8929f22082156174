/* SPDX-License-Identifier: MIT */
/*
 * fork(): the child must see the parent's data, device-resident pages
 * included, and neither may see the other's later writes (semantics 7).
 *
 * A child's registered memory is plain memory (libdevmem does not ask for
 * UFFD_FEATURE_EVENT_FORK, so the kernel drops the child's registrations),
 * and the kernel's copy-on-write takes care of everything in system memory.
 * So before fork() every handle brings its device pages back, with the
 * handle locked until fork() returns so that nothing goes to the device in
 * between.  The child's copy of a handle is cut off: every call on it
 * returns -ENOTCONN; the child connects anew to use devmem.
 */
#include "config.h"

#include <pthread.h>
#include <unistd.h>

#include "devmem-internal.h"

static pthread_mutex_t handles_lock = PTHREAD_MUTEX_INITIALIZER;
static struct devmem *handles;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void prepare(void)
{
	pthread_mutex_lock(&handles_lock);
	for (struct devmem *dm = handles; dm; dm = dm->next) {
		pthread_mutex_lock(&dm->lock);
		if (dm->attached && !dm->broken)
			dm_migrate_all_to_system(dm);
	}
}

static void parent(void)
{
	for (struct devmem *dm = handles; dm; dm = dm->next)
		pthread_mutex_unlock(&dm->lock);
	pthread_mutex_unlock(&handles_lock);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void child(void)
{
	for (struct devmem *dm = handles; dm; dm = dm->next) {
		dm->forked = true;
		dm->broken = true;
		/* the parent's helper thread was not copied, and the fds
		 * belong to the parent's connection and address space:
		 * close our copies (closing, never shutting down, leaves the
		 * parent's alone), or devmemd would keep the parent's device
		 * memory for as long as this child lives */
		dm->helper_running = false;
		close_fd(&dm->sock);
		close_fd(&dm->helper_sock);
		close_fd(&dm->uffd);
		close_fd(&dm->staging_uffd);
		pthread_mutex_unlock(&dm->lock);
	}
	pthread_mutex_unlock(&handles_lock);
}

static void install(void)
{
	pthread_atfork(prepare, parent, child);
}

void dm_fork_track(struct devmem *dm)
{
	pthread_once(&atfork_once, install);
	pthread_mutex_lock(&handles_lock);
	dm->next = handles;
	handles = dm;
	pthread_mutex_unlock(&handles_lock);
}

void dm_fork_untrack(struct devmem *dm)
{
	pthread_mutex_lock(&handles_lock);
	for (struct devmem **pp = &handles; *pp; pp = &(*pp)->next)
		if (*pp == dm) {
			*pp = dm->next;
			break;
		}
	pthread_mutex_unlock(&handles_lock);
}
