/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "devmem-internal.h"

int dm_call(struct devmem *dm, uint16_t type, const void *body,
	    const void *tail, uint32_t ntail, const int *fds, int nfds,
	    struct dm_msg *rep)
{
	ssize_t len;
	uint32_t id;
	int err;

	memset(rep, 0, sizeof(*rep));
	if (atomic_load(&dm->lost))
		dm->broken = true;
	if (dm->broken)
		return -ENOTCONN;
	id = ++dm->next_id;
	len = dm_encode(dm->buf, DM_MAX_MSG, type, id, body, tail, ntail);
	if (len < 0)
		return (int)len; /* nothing was sent */
	len = dm_send(dm->sock, dm->buf, (size_t)len, fds, nfds);
	err = len < 0 ? (int)len
		      : dm_recv_msg(dm->sock, dm->buf, DM_MAX_MSG, rep, NULL,
				    NULL);
	if (!err && (rep->hdr.type != (type | DM_REPLY) || rep->hdr.id != id)) {
		dm_msg_release(rep);
		err = -EPROTO;
	}
	if (err) {
		/* a request without its reply leaves the stream out of step:
		 * nothing after it can be trusted */
		dm->broken = true;
		return -ENOTCONN;
	}
	return rep->u.status.status;
}
