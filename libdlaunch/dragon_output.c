/* Forwarded output at the launcher: each line of a process, with the label
 * --label, --basic-label or --verbose-label asks for, written whole.
 *
 *   --label          [node2:1234] text        node name and pid
 *   --basic-label    [stdout: node 1 PID 1234] text
 *                                             the stream, node index and
 *                                             pid: unique in the runtime
 *   --verbose-label  [stdout: PID 1234 @ node2] text
 *                                             the stream, pid and node name
 *
 * The last two follow DragonHPC's labels of the same names (its basic
 * label names its own runtime-wide process id, here node index and pid).
 */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "fdio.h"
#include "launcher.h"

/* The process whose last piece ended mid-line: its next piece goes on
 * without a label. */
static struct {
	unsigned node;
	pid_t pid;
	int fd;
	bool open;
} partial;

static size_t label(char *out, size_t cap, int mode, int fd, unsigned node,
		    const char *host, pid_t pid)
{
	const char *stream = fd == 2 ? "stderr" : "stdout";
	int n;

	switch (mode) {
	case DRAGON_LABEL_NODE:
		n = snprintf(out, cap, "[%s:%d] ", host, (int)pid);
		break;
	case DRAGON_LABEL_BASIC:
		n = snprintf(out, cap, "[%s: node %u PID %d] ", stream, node,
			     (int)pid);
		break;
	case DRAGON_LABEL_VERBOSE:
		n = snprintf(out, cap, "[%s: PID %d @ %s] ", stream, (int)pid,
			     host);
		break;
	default:
		n = 0;
	}
	return n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double dragon_output_write(int mode, int fd, unsigned node, const char *host,
			   pid_t pid, const char *data, size_t len)
{
	char lab[320], *buf;
	size_t ll, nlines = 0, k = 0;
	bool cont = partial.open && partial.node == node &&
		    partial.pid == pid && partial.fd == fd;
	double t0 = now();

	if (!len)
		return 0;
	if (fd != 2)
		fd = 1;
	ll = label(lab, sizeof lab, mode, fd, node, host, pid);
	for (size_t i = 0; i < len; i++)
		nlines += data[i] == '\n';
	buf = ll ? malloc(len + (nlines + 1) * ll) : NULL;
	if (!buf) {
		write_all(fd, data, len);
	} else {
		for (size_t i = 0; i < len;) {
			const char *nl = memchr(data + i, '\n', len - i);
			size_t n = nl ? (size_t)(nl - (data + i)) + 1 : len - i;

			if (!(i == 0 && cont)) {
				memcpy(buf + k, lab, ll);
				k += ll;
			}
			memcpy(buf + k, data + i, n);
			k += n;
			i += n;
		}
		write_all(fd, buf, k);
		free(buf);
	}
	partial.open = data[len - 1] != '\n';
	partial.node = node;
	partial.pid = pid;
	partial.fd = fd;
	return now() - t0;
}
