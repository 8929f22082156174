/* SPDX-License-Identifier: MIT */
/* Requests in, replies out: one session per connection. */
#ifndef DEVMEM_DISPATCH_H
#define DEVMEM_DISPATCH_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "device.h"
#include "protocol.h"

struct client;

struct session {
	struct device *dev;
	int fd;	   /* the connection */
	pid_t pid; /* SO_PEERCRED */
	uid_t uid;
	uint32_t role;	       /* enum dm_role once HELLO is done, else 0 */
	bool refused;	       /* another user's process: HELLO gets -EACCES */
	struct client *client; /* DM_ROLE_CLIENT */
};

/* Handle one decoded request (fds: those it carried, owned by the callee)
 * and send its reply, using buf (DM_MAX_MSG bytes) to encode it.  Returns 0,
 * or a negative errno when the connection must be closed (protocol
 * violation, or the reply could not be sent). */
int session_handle(struct session *s, const struct dm_msg *msg, int *fds,
		   int nfds, uint8_t *buf);

/* The connection is gone: release the client, if any. */
void session_end(struct session *s);

#endif /* DEVMEM_DISPATCH_H */
