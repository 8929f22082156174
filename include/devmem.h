/* SPDX-License-Identifier: MIT */
/*
 * devmem.h - public API of libdevmem, the client side of devmem.
 *
 * devmem emulates GPU-style device-private memory in user space: ranges of a
 * process's private anonymous memory can be migrated to "device memory" owned
 * by the devmemd daemon; CPU access to a device-resident page faults through
 * userfaultfd and the data is migrated back.  See devmem(3).
 *
 * Every function returns 0 or a negative errno and does not rely on errno,
 * except devmem_alloc(), which returns NULL and sets errno.
 */
#ifndef DEVMEM_H
#define DEVMEM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct devmem devmem_t;

/* socket_path NULL: $DEVMEM_SOCKET, else the default path */
int devmem_connect(const char *socket_path, devmem_t **out);
void devmem_disconnect(devmem_t *dm);

int devmem_register(devmem_t *dm, void *addr, size_t len);
/* brings device pages back first */
int devmem_unregister(devmem_t *dm, void *addr, size_t len);
/* 2 MB-aligned, registered */
void *devmem_alloc(devmem_t *dm, size_t len, unsigned flags);
int devmem_free(devmem_t *dm, void *addr, size_t len);
#define DEVMEM_ALLOC_HUGE (1u << 0) /* ask for THP backing (MADV_HUGEPAGE) */

enum devmem_target { DEVMEM_TO_SYSTEM = 0, DEVMEM_TO_DEVICE = 1 };
#define DEVMEM_MIGRATE_4K (1u << 0) /* no 2 MB units for this call */

struct devmem_result {
	uint64_t pages;	 /* 4 KB pages that are at the target after the call */
	uint64_t huge;	 /* 2 MB units that moved as one folio */
	uint64_t split;	 /* 2 MB units that fell back to 4 KB pages */
	uint64_t faults; /* device faults taken (device access calls) */
};

/* res may be NULL */
int devmem_migrate(devmem_t *dm, void *addr, size_t len, enum devmem_target to,
		   unsigned flags, struct devmem_result *res);
int devmem_device_read(devmem_t *dm, const void *addr, size_t len, void *buf,
		       struct devmem_result *res);
int devmem_device_write(devmem_t *dm, void *addr, size_t len, const void *buf,
			struct devmem_result *res);

/* one byte per 4 KB page */
#define DEVMEM_PAGE_ERROR 0xff /* not in a managed range */
#define DEVMEM_PAGE_NONE 0x00  /* managed, not populated */
#define DEVMEM_PAGE_READ 0x01
#define DEVMEM_PAGE_WRITE 0x02
/* part of a 2 MB folio (device) or THP (system) */
#define DEVMEM_PAGE_HUGE 0x04
#define DEVMEM_PAGE_ZERO 0x10
#define DEVMEM_PAGE_DEVICE 0x20 /* resident in device memory */
int devmem_snapshot(devmem_t *dm, const void *addr, size_t npages,
		    uint8_t *state);

struct devmem_stats {	      /* fields may be added at the end only */
	uint64_t capacity;    /* bytes of device memory */
	uint64_t used;	      /* bytes allocated, all clients */
	uint64_t client_used; /* bytes allocated to this client */
	uint64_t to_device_pages, to_system_pages;
	uint64_t huge_migrations, splits, cpu_faults, evictions;
};
int devmem_stats(devmem_t *dm, struct devmem_stats *st);

#define DEVMEM_INJECT_FAIL_HUGE_ALLOC 1
#define DEVMEM_INJECT_FAIL_ALLOC 2
int devmem_inject(devmem_t *dm, int what, unsigned count);

const char *devmem_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* DEVMEM_H */
