/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#include "common.h"
#include "uffd_compat.h"
#include "uffdops.h"

static const uint8_t zero_page[PAGE_SIZE] __attribute__((aligned(PAGE_SIZE)));

static int xioctl(int fd, unsigned long req, void *arg)
{
	int ret;

	do
		ret = ioctl(fd, req, arg);
	while (ret < 0 && errno == EINTR);
	return ret < 0 ? -errno : 0;
}

int uffd_register_missing(int uffd, uint64_t start, uint64_t len)
{
	struct uffdio_register reg = {
		.range = { .start = start, .len = len },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};

	return xioctl(uffd, UFFDIO_REGISTER, &reg);
}

int uffd_unregister(int uffd, uint64_t start, uint64_t len)
{
	struct uffdio_range r = { .start = start, .len = len };

	return xioctl(uffd, UFFDIO_UNREGISTER, &r);
}

int uffd_wake(int uffd, uint64_t start, uint64_t len)
{
	struct uffdio_range r = { .start = start, .len = len };

	return xioctl(uffd, UFFDIO_WAKE, &r);
}

int uffd_poison(int uffd, uint64_t start, uint64_t len)
{
	struct uffdio_poison p = { .range = { .start = start, .len = len } };

	return xioctl(uffd, UFFDIO_POISON, &p);
}

/*
 * One step of a fill: the kernel reports how far it got in *done (bytes, or
 * a negative errno).  A partial fill comes back as -EAGAIN with *done > 0;
 * the caller continues after it.  EEXIST at the first page means that page
 * is already there: wake whoever waits on it and skip it.
 */
static int fill_step(int uffd, uint64_t *dst, uint64_t *len, int64_t done,
		     int err, const uint8_t **src)
{
	if (done > 0) {
		*dst += (uint64_t)done;
		*len -= (uint64_t)done;
		if (src && *src)
			*src += done;
		return 0;
	}
	if (err == -EEXIST) {
		uffd_wake(uffd, *dst, PAGE_SIZE);
		*dst += PAGE_SIZE;
		*len -= PAGE_SIZE;
		if (src && *src)
			*src += PAGE_SIZE;
		return 0;
	}
	return err;
}

int uffd_copy(int uffd, uint64_t dst, const void *src, uint64_t len, bool wake)
{
	const uint8_t *s = src;

	while (len) {
		struct uffdio_copy c = {
			.dst = dst,
			.src = (uintptr_t)s,
			.len = len,
			.mode = wake ? 0 : UFFDIO_COPY_MODE_DONTWAKE,
		};
		int err = xioctl(uffd, UFFDIO_COPY, &c);

		if (!err)
			return 0;
		err = fill_step(uffd, &dst, &len, c.copy, err, &s);
		if (err)
			return err;
	}
	return 0;
}

int uffd_zero(int uffd, uint64_t dst, uint64_t len, bool write, bool wake)
{
	/* a write would fault again on the read-only zero page: give it a
	 * page of its own in one step */
	if (write) {
		while (len) {
			int err = uffd_copy(uffd, dst, zero_page, PAGE_SIZE,
					    wake);

			if (err)
				return err;
			dst += PAGE_SIZE;
			len -= PAGE_SIZE;
		}
		return 0;
	}
	while (len) {
		struct uffdio_zeropage z = {
			.range = { .start = dst, .len = len },
			.mode = wake ? 0 : UFFDIO_ZEROPAGE_MODE_DONTWAKE,
		};
		int err = xioctl(uffd, UFFDIO_ZEROPAGE, &z);

		if (!err)
			return 0;
		err = fill_step(uffd, &dst, &len, z.zeropage, err, NULL);
		if (err)
			return err;
	}
	return 0;
}
