/* SPDX-License-Identifier: MIT */
/* devmemd's log: stderr in the foreground, syslog once daemonized. */
#ifndef DEVMEM_LOG_H
#define DEVMEM_LOG_H

#include <syslog.h>

extern int log_level; /* LOG_ERR .. LOG_DEBUG */

void log_open(int use_syslog);
void dm_log(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* "error", "warn", "info", "debug" -> LOG_*; -1 if unknown */
int log_level_parse(const char *name);

#define log_err(...) dm_log(LOG_ERR, __VA_ARGS__)
#define log_warn(...) dm_log(LOG_WARNING, __VA_ARGS__)
#define log_info(...) dm_log(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                  \
	do {                                            \
		if (log_level >= LOG_DEBUG)             \
			dm_log(LOG_DEBUG, __VA_ARGS__); \
	} while (0)

#endif /* DEVMEM_LOG_H */
