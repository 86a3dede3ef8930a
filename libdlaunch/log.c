/* The log of libdlaunch: the services' and the launcher's lines, to
 * stderr or the launcher's log file. */
#define _GNU_SOURCE
#include "config.h"
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include "dlaunch_private.h"

int dlaunch__log_level = DLAUNCH_LOG_WARNING;
static int log_fd = -1;

void dlaunch__log_set_fd(int fd)
{
	log_fd = fd;
}

/* One write per line so that lines of several threads never mix. */
void dlaunch__log(int level, const char *fmt, ...)
{
	static const char *const names[] = {"error", "warning", "info",
					    "debug"};
	char line[1024];
	struct timespec ts;
	va_list ap;
	int n;

	if (level > dlaunch__log_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	n = snprintf(line, sizeof line,
		     "%lld.%03ld [%d] %s: ", (long long)ts.tv_sec,
		     ts.tv_nsec / 1000000, (int)getpid(), names[level & 3]);
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof line - 2)
		n = (int)sizeof line - 2;
	line[n++] = '\n';
	if (write(log_fd >= 0 ? log_fd : 2, line, (size_t)n) < 0)
		return;
}
