/* SPDX-License-Identifier: MIT */
/* devmemd's command line. */
#ifndef DEVMEM_OPTIONS_H
#define DEVMEM_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/un.h>

#include "protocol.h"

#define DEFAULT_DEVICE_SIZE (1ull << 30)
#define MIN_DEVICE_SIZE (2ull << 20)

struct dm_config {
	char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	uint64_t size; /* bytes of device memory */
	int node;      /* -1: choose from the topology */
	bool foreground;
	int log_level;
	uint32_t policy[DM_POL_MAX];
	uint64_t client_limit; /* bytes of device memory per client, 0: none */
};

enum { OPTIONS_RUN = 0, OPTIONS_EXIT = 1 };

/* Fill cfg from argv.  Returns OPTIONS_RUN, OPTIONS_EXIT (--help or
 * --version was printed to out) or -EINVAL (a one-line message was printed
 * to err). */
int options_parse(int argc, char **argv, struct dm_config *cfg, FILE *out,
		  FILE *err);

#endif /* DEVMEM_OPTIONS_H */
