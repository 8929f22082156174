/* SPDX-License-Identifier: MIT */
/*
 * devmemd's control plane: the listening socket and client connections on an
 * io_uring event loop; requests run on a small pool of worker threads, one
 * at a time per connection, in order.
 */
#ifndef DEVMEM_SERVER_H
#define DEVMEM_SERVER_H

#include "device.h"

struct server;

/* Create the listening socket at path (mode 0600).  Refuses (-EADDRINUSE)
 * if a live devmemd answers there; replaces a stale socket file. */
int server_create(struct server **out, struct device *d, const char *path);

/* Start the workers and accept connections. */
int server_start(struct server *s);

/* Serve until SIGTERM or SIGINT, then release every client and return. */
int server_run(struct server *s);
void server_destroy(struct server *s);

#endif /* DEVMEM_SERVER_H */
