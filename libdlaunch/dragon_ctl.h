/* The control link between the dragon launcher (the frontend) and the
 * backends of a runtime over several nodes (not installed).
 *
 * One TCP connection per backend, which the backend opens.  A frame is a
 * 4-byte length (network order) of what follows, a type byte and fields,
 * each a NUL-terminated string.  Frames are bounded by CTL_FRAME_MAX.
 * The data frames (CTL_OUTPUT, CTL_LOG) carry a fixed number of fields
 * (ctl_data_fields) and then bytes to the frame's end, NULs included.
 *
 * The handshake: each side proves to the other that it holds the
 * runtime's secret without sending it.  The backend's HELLO carries a
 * nonce; the frontend answers CHALLENGE with its own nonce and
 * HMAC-SHA256(secret, "frontend" | the hello's fields | both nonces); the
 * backend checks it and answers AUTH with HMAC-SHA256(secret, "backend" |
 * the same fields), which the frontend checks.  Nothing else is sent
 * before both checks pass.
 *
 * The configuration a backend gets holds the address of node 0's agent
 * only (every node's first request goes there; node 0, which answers
 * them, gets every node's): an agent asks for any other node's address
 * when it first has a request for that node
 * (CTL_WHERE, answered by CTL_PEER), so the bytes sent grow with the
 * node count and the links used, not with its square.
 */
#ifndef DRAGON_CTL_H
#define DRAGON_CTL_H

#include <stddef.h>

#define CTL_VERSION    "3"
#define CTL_FRAME_MAX  (4u << 20)
#define CTL_OUTPUT_MAX (1u << 20) /* bytes of output per frame */

enum ctl_type {
	CTL_HELLO = 1,	    /* backend: link version, node, host, nonce, pid,
			       Dragon version */
	CTL_CONFIG = 2,	    /* frontend: global services, agent of node 0
			       (to node 0: of nodes 0..N-1) */
	CTL_CONFIG_OK = 3,  /* backend: agent running, local services up */
	CTL_CHECK = 4,	    /* (unused: a backend goes on after CONFIG) */
	CTL_READY = 5,	    /* backend: reached them through the agents */
	CTL_HEAD = 6,	    /* frontend: cwd, path, argv... */
	CTL_HEAD_OK = 7,    /* backend: pid */
	CTL_EXIT = 8,	    /* backend: head exited: exited, code, signo */
	CTL_SIGNAL = 9,	    /* frontend: signo for the head */
	CTL_STOP = 10,	    /* frontend: end everything on the node; the
			       indices of the nodes lost */
	CTL_BYE = 11,	    /* backend: ended everything, leaving */
	CTL_ERR = 12,	    /* backend: phase, message */
	CTL_PING = 13,	    /* either side: alive (every second) */
	CTL_OUTPUT = 14,    /* backend: pid, fd; then whole lines of output */
	CTL_LOG = 15,	    /* backend: then lines of the node's log */
	CTL_CHALLENGE = 16, /* frontend: nonce, its proof */
	CTL_AUTH = 17,	    /* backend: its proof */
	CTL_NET = 18,	    /* backend: chosen address ("" none), agent,
			       services (primary only), "ifname address"... */
	CTL_WHERE = 19,	    /* backend: node whose agent its agent must reach */
	CTL_PEER = 20,	    /* frontend: node, its agent's address ("" none) */
	CTL_LOST = 21	    /* frontend: index, host, why of a lost node */
};

/* How many NUL-terminated fields a data frame has before its bytes; -1 if
 * type is not a data frame. */
int ctl_data_fields(int type);

struct ctl_conn {
	int fd;
	char *buf;
	size_t len, cap;
};

struct ctl_msg {
	int type;
	int n;		  /* fields */
	char **f;	  /* n fields, into the message */
	char *mem;	  /* owned copy of the frame */
	const char *data; /* data frames: the bytes after the fields */
	size_t datalen;
};

/* Send one frame with n fields (blocking; the socket may be non-blocking:
 * it waits for room).  0 or -errno. */
int ctl_send(int fd, int type, const char *const *f, int n);
/* Send a data frame: ctl_data_fields(type) fields, then len bytes. */
int ctl_send_data(int fd, int type, const char *const *f, const char *data,
		  size_t len);
/* Read what the socket has into c's buffer: 1 read something, 0 nothing
 * yet, -1 end of file or an error. */
int ctl_fill(struct ctl_conn *c);
/* Take the next whole frame out of c's buffer: 1 and *m (free with
 * ctl_msg_free), 0 none yet, -1 a malformed frame. */
int ctl_next(struct ctl_conn *c, struct ctl_msg *m);
void ctl_msg_free(struct ctl_msg *m);
/* Field i of m, "" if it has fewer. */
const char *ctl_field(const struct ctl_msg *m, int i);

#define CTL_NONCE_HEX 64 /* hex digits of a nonce (32 random bytes) */
#define CTL_PROOF_HEX 64 /* hex digits of a proof (HMAC-SHA256) */

/* A fresh nonce, CTL_NONCE_HEX hex digits and a NUL.  0 or -errno. */
int ctl_nonce(char out[CTL_NONCE_HEX + 1]);
/* The proof of one side ("frontend" or "backend") that it holds secret:
 * HMAC-SHA256 keyed with secret over role and the n fields, each with its
 * NUL, in hex.  0 or -1. */
int ctl_proof(const char *secret, const char *role, const char *const *f, int n,
	      char out[CTL_PROOF_HEX + 1]);
/* Does the proof given match the one expected (constant time)? */
int ctl_proof_ok(const char *given, const char *expected);

#endif
