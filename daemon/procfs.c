/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "procfs.h"
#include "uffd_compat.h"

static int pm_scan_ioctl(int fd, uint64_t start, uint64_t end, uint8_t *flags)
{
	struct page_region regions[256];
	uint64_t at = start;

	while (at < end) {
		struct pm_scan_arg arg = {
			.size = sizeof(arg),
			.start = at,
			.end = end,
			.vec = (uintptr_t)regions,
			.vec_len = ARRAY_SIZE(regions),
			.category_anyof_mask =
				PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
			.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED |
				       PAGE_IS_PFNZERO | PAGE_IS_HUGE,
		};
		long n = ioctl(fd, PAGEMAP_SCAN, &arg);

		if (n < 0)
			return -errno;
		for (long i = 0; i < n; i++) {
			uint8_t f = PM_PRESENT;

			if (regions[i].categories & PAGE_IS_PFNZERO)
				f |= PM_ZERO;
			if (regions[i].categories & PAGE_IS_HUGE)
				f |= PM_HUGE;
			for (uint64_t a = regions[i].start; a < regions[i].end;
			     a += PAGE_SIZE)
				flags[(a - start) >> PAGE_SHIFT] = f;
		}
		if (arg.walk_end <= at)
			return -EIO;
		at = arg.walk_end;
	}
	return 0;
}

static int pm_scan_read(int fd, uint64_t start, uint64_t end, uint8_t *flags)
{
	uint64_t entries[512];
	uint64_t at = start;

	while (at < end) {
		size_t n = MIN((end - at) >> PAGE_SHIFT, ARRAY_SIZE(entries));
		ssize_t got = pread(fd, entries, n * 8,
				    (off_t)(at >> PAGE_SHIFT) * 8);

		if (got < 0)
			return -errno;
		if ((size_t)got != n * 8)
			return -EIO;
		for (size_t i = 0; i < n; i++)
			if (entries[i] & (3ull << 62)) /* present or swapped */
				flags[((at - start) >> PAGE_SHIFT) + i] =
					PM_PRESENT;
		at += n << PAGE_SHIFT;
	}
	return 0;
}

int pm_scan(int pagemap_fd, uint64_t start, uint64_t end, uint8_t *flags)
{
	int err;

	memset(flags, 0, (end - start) >> PAGE_SHIFT);
	err = pm_scan_ioctl(pagemap_fd, start, end, flags);
	if (err == -ENOTTY || err == -EINVAL) /* before Linux 6.7 */
		err = pm_scan_read(pagemap_fd, start, end, flags);
	return err;
}

static unsigned vma_flags(const char *perms, unsigned long inode,
			  const char *path)
{
	unsigned f = 0;

	if (perms[0] == 'r')
		f |= VMA_READ;
	if (perms[1] == 'w')
		f |= VMA_WRITE;
	/* private, no file behind it, and not a special mapping
	 * ([vdso], [vvar], ...); hugetlb and shared anonymous memory have
	 * an inode */
	if (perms[3] == 'p' && inode == 0 &&
	    (!path[0] || !strcmp(path, "[heap]") || !strcmp(path, "[stack]") ||
	     !strncmp(path, "[anon:", 6)))
		f |= VMA_ANON_PRIVATE;
	return f;
}

int maps_walk(int proc_dirfd, uint64_t start, uint64_t end,
	      int (*fn)(uint64_t start, uint64_t end, unsigned flags,
			void *arg),
	      void *arg)
{
	char line[512];
	uint64_t at = start;
	int fd, ret = 0;
	FILE *f;

	fd = openat(proc_dirfd, "maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	f = fdopen(fd, "r");
	if (!f) {
		close(fd);
		return -ENOMEM;
	}
	while (at < end && fgets(line, sizeof(line), f)) {
		uint64_t vs, ve;
		unsigned long inode;
		char perms[5], path[256] = "";
		int n;

		if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %4s %*s %*s %lu %n",
			   &vs, &ve, perms, &inode, &n) < 4)
			continue;
		sscanf(line + n, "%255[^\n]", path);
		if (ve <= at)
			continue;
		if (vs >= end)
			break;
		if (vs > at) {
			ret = fn(at, vs, 0, arg);
			if (ret)
				break;
			at = vs;
		}
		ret = fn(at, MIN(ve, end), vma_flags(perms, inode, path), arg);
		if (ret)
			break;
		at = MIN(ve, end);
	}
	if (!ret && at < end)
		ret = fn(at, end, 0, arg);
	fclose(f);
	return ret;
}

static int need_anon(uint64_t start, uint64_t end, unsigned flags, void *arg)
{
	return flags & VMA_ANON_PRIVATE ? 0 : -EINVAL;
}

int maps_check_anon(int proc_dirfd, uint64_t start, uint64_t end)
{
	return maps_walk(proc_dirfd, start, end, need_anon, NULL);
}
