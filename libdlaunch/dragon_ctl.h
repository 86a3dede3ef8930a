/* The control link between the dragon launcher (the frontend) and the
 * backends of a runtime over several nodes (not installed).
 *
 * One TCP connection per backend, which the backend opens.  A frame is a
 * 4-byte length (network order) of what follows, a type byte and fields,
 * each a NUL-terminated string.  Frames are small (the head's argv is the
 * largest) and bounded by CTL_FRAME_MAX.
 */
#ifndef DRAGON_CTL_H
#define DRAGON_CTL_H

#include <stddef.h>

#define CTL_VERSION   "1"
#define CTL_FRAME_MAX (4u << 20)

enum ctl_type {
	CTL_HELLO = 1,	   /* backend: version, node, host, secret, agent,
			      services (primary only), pid */
	CTL_CONFIG = 2,	   /* frontend: global services, agent of node 0..N-1 */
	CTL_CONFIG_OK = 3, /* backend: agent running, local services up */
	CTL_CHECK = 4,	   /* (unused: a backend goes on after CONFIG) */
	CTL_READY = 5,	   /* backend: reached them through the agents */
	CTL_HEAD = 6,	   /* frontend: cwd, path, argv... */
	CTL_HEAD_OK = 7,   /* backend: pid */
	CTL_EXIT = 8,	   /* backend: head exited: exited, code, signo */
	CTL_SIGNAL = 9,	   /* frontend: signo for the head */
	CTL_STOP = 10,	   /* frontend: end everything on the node */
	CTL_BYE = 11,	   /* backend: ended everything, leaving */
	CTL_ERR = 12,	   /* backend: phase, message */
	CTL_PING = 13	   /* backend: alive */
};

struct ctl_conn {
	int fd;
	char *buf;
	size_t len, cap;
};

struct ctl_msg {
	int type;
	int n;	   /* fields */
	char **f;  /* n fields, into the message */
	char *mem; /* owned copy of the frame */
};

/* Send one frame with n fields (blocking; the socket may be non-blocking:
 * it waits for room).  0 or -errno. */
int ctl_send(int fd, int type, const char *const *f, int n);
/* Read what the socket has into c's buffer: 1 read something, 0 nothing
 * yet, -1 end of file or an error. */
int ctl_fill(struct ctl_conn *c);
/* Take the next whole frame out of c's buffer: 1 and *m (free with
 * ctl_msg_free), 0 none yet, -1 a malformed frame. */
int ctl_next(struct ctl_conn *c, struct ctl_msg *m);
void ctl_msg_free(struct ctl_msg *m);
/* Field i of m, "" if it has fewer. */
const char *ctl_field(const struct ctl_msg *m, int i);

#endif
