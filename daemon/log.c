/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"

int log_level = LOG_INFO;
static int log_to_syslog;

void log_open(int use_syslog)
{
	log_to_syslog = use_syslog;
	if (use_syslog)
		openlog("devmemd", LOG_PID, LOG_DAEMON);
}

void dm_log(int level, const char *fmt, ...)
{
	static const char *const names[] = { [LOG_ERR] = "error",
					     [LOG_WARNING] = "warn",
					     [LOG_NOTICE] = "notice",
					     [LOG_INFO] = "info",
					     [LOG_DEBUG] = "debug" };
	char msg[512];
	va_list ap;

	if (level > log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (log_to_syslog) {
		syslog(level, "%s", msg);
		return;
	}
	fprintf(stderr, "devmemd: %s: %s\n",
		level <= LOG_DEBUG && names[level] ? names[level] : "log", msg);
}

int log_level_parse(const char *name)
{
	if (!strcmp(name, "error"))
		return LOG_ERR;
	if (!strcmp(name, "warn"))
		return LOG_WARNING;
	if (!strcmp(name, "info"))
		return LOG_INFO;
	if (!strcmp(name, "debug"))
		return LOG_DEBUG;
	return -1;
}
