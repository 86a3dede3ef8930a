/*
 * The agent's log and clock: the bottom of the agent's files, which every
 * layer above calls and which calls none of them.
 */
#include "config.h"
#include "dtrans_agent.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

uint64_t dtrans__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void dtrans__log(struct dtrans_agent *ag, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	if (ag->log_fd < 0)
		return;
	n = snprintf(buf, sizeof buf, "dragon-transport[node %u]: ", ag->node);
	va_start(ap, fmt);
	vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
	va_end(ap);
	n = (int)strlen(buf);
	buf[n++] = '\n';
	if (write(ag->log_fd, buf, (size_t)n) < 0) {
		/* nowhere left to say it */
	}
}
