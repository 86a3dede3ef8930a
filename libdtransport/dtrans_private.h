/*
 * Private declarations of libdtransport; not installed.
 *
 * Its files, bottom-up; each calls only the files listed before it
 * (tests/abi/check-cycles.sh checks it), and a lower file that needs
 * behaviour of a higher one gets a callback the higher one registers:
 *
 *   dtrans_error.c    error names, the per-thread message, the version
 *   dtrans_wire.c     frame and handshake encodings, MACs, random bytes
 *   dtrans_tcp.c      the tcp backend (struct dtrans__backend_ops); host:port
 *                     addresses, which every backend speaks
 *   dtrans_dl.c       opening a backend's library at run time
 *   dtrans_ofi.c      the ofi backend: libfabric (tcp provider), dlopen-ed
 *   dtrans_ucx.c      the ucx backend: UCP streams, dlopen-ed
 *   dtrans_backend.c  which backend: the name asked, dragon-config's file
 *   dtrans_log.c      the agent's log and clock
 *   dtrans_link.c     links: buffers, frames, the handshake; delivers what
 *                     arrives through struct dtrans__link_ops
 *   dtrans_reply.c    the requesters' reply channels, freed when their
 *                     process has ended
 *   dtrans_forward.c  this node's requests to peers, their completions
 *   dtrans_serve.c    the peers' requests executed here, parked waits
 *   dtrans_agent.c    public calls, the thread and the event loop; the top,
 *                     it registers forward's and serve's link callbacks
 *
 * The agent's shared structures are in dtrans_agent.h.
 */
#ifndef DRAGON_DTRANS_PRIVATE_H
#define DRAGON_DTRANS_PRIVATE_H

#include <dragon/dtransport.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

/* ---- backends ----------------------------------------------------------- */
/*
 * A backend moves bytes between agents.  The core knows only this table:
 * every endpoint and link is an opaque pointer and exposes a file
 * descriptor the core multiplexes in its epoll set (readable: accept or
 * recv may make progress; writable: send or a pending connect may).  All
 * calls are non-blocking: -EAGAIN means "wait for the fd".
 */
struct dtrans__backend_ops {
	const char *name;
	/* Listen on "host:port"; *ep_out is the listening endpoint. */
	int (*listen)(const char *addr, void **ep_out);
	/* The endpoint's address, port resolved. */
	int (*ep_address)(void *ep, char *buf, size_t len);
	int (*ep_fd)(void *ep);
	/* Take one incoming link (-EAGAIN when none is waiting). */
	int (*accept)(void *ep, void **link_out);
	void (*ep_close)(void *ep);
	/* Start connecting to "host:port"; the link is usable once
	 * link_connected returns 0 (-EINPROGRESS before that). */
	int (*dial)(const char *addr, void **link_out);
	int (*link_connected)(void *link);
	int (*link_fd)(void *link);
	/* Bytes written (> 0) or -EAGAIN or another negative errno. */
	ssize_t (*send)(void *link, const struct iovec *iov, int iovcnt);
	/* Bytes read (> 0), 0 at end of stream, -EAGAIN, negative errno. */
	ssize_t (*recv)(void *link, void *buf, size_t len);
	void (*link_close)(void *link);
	/* Optional: after send or recv failed, what failed in the
	 * library's own words (NULL: the errno says all there is). */
	const char *(*link_error)(void *link);
};

extern const struct dtrans__backend_ops dtrans__tcp_ops;
/* A tcp link around a connected non-blocking stream socket (owns fd). */
int dtrans__tcp_adopt(int fd, void **link_out);
/* "host:port" (host may be "[v6]"), as every backend speaks it
 * (dtrans_tcp.c): split, format a socket address, resolve. */
struct addrinfo;
struct sockaddr;
int dtrans__addr_split(const char *addr, char *host, size_t hlen, char *port,
		       size_t plen);
int dtrans__addr_format(const struct sockaddr *sa, unsigned sl, char *buf,
			size_t len);
int dtrans__addr_resolve(const char *addr, bool passive, struct addrinfo **out);

/*
 * The backend to use (dtrans_backend.c): name is "tcp", "ofi", "ucx" or
 * NULL/"auto" (what dragon-config recorded; tcp, with a notice on log_fd
 * once per process, when nothing is).  NULL, with an error message, when
 * the backend is unknown, not built, or its library does not load.
 */
const struct dtrans__backend_ops *dtrans__backend_find(const char *name,
						       int log_fd);

/* ---- backends opened at run time (dtrans_dl.c, dtrans_ofi.c, ucx.c) ----- */

/* A library directory that means "the system's default search path". */
#define DTRANS__DL_SYSTEM "system"

/* dlopen the first of names (NULL-terminated) found in dir (NULL or
 * DTRANS__DL_SYSTEM: the default search path); the error names the
 * path and dlerror(). */
int dtrans__dl_open(const char *backend, const char *dir,
		    const char *const *names, void **handle_out);
/* dlsym every name (NULL-terminated) into table[i]. */
int dtrans__dl_syms(void *h, const char *backend, const char *const *names,
		    void **table);

/* Open libfabric / UCP from dir (once per process) and give the
 * backend's ops; -DTRANS_E_BACKEND with a message when the library or
 * what it needs (libfabric's tcp provider) is missing, or when the
 * backend was not built (no headers at build time). */
int dtrans__ofi_load(const char *dir,
		     const struct dtrans__backend_ops **ops_out);
int dtrans__ucx_load(const char *dir,
		     const struct dtrans__backend_ops **ops_out);

/* ---- wire frames (dtrans_wire.c) ---------------------------------------- */

#define DTRANS__FRAME_MAGIC   0x46525444u /* "DTRF" */
#define DTRANS__FRAME_VERSION 1u
#define DTRANS__FRAME_HDR     24u
/* a gateway request of the largest payload, with room for its header */
#define DTRANS__FRAME_MAX     (DCHAN_GW_PAYLOAD_MAX + 4096u)

enum dtrans__ftype {
	DTRANS__F_HELLO = 1,   /* listener -> dialer: node, nnodes, nonce */
	DTRANS__F_AUTH = 2,    /* dialer -> listener: node, nonce, mac */
	DTRANS__F_AUTH_OK = 3, /* listener -> dialer: mac */
	DTRANS__F_REQ = 4,     /* an encoded gateway request, xid */
	DTRANS__F_CPL = 5,     /* an encoded gateway completion, xid */
	DTRANS__F_PING = 6,
	DTRANS__F_PONG = 7,
	DTRANS__F_CANCEL = 8 /* dialer -> listener: drop request xid */
};

struct dtrans__fhdr {
	uint32_t magic;
	uint8_t version;
	uint8_t type;
	uint16_t flags;	   /* zero */
	uint32_t len;	   /* payload bytes after the header */
	uint32_t reserved; /* zero */
	uint64_t xid;	   /* REQ/CPL: the requesting agent's id */
};

#define DTRANS__NONCE 32
#define DTRANS__MAC   32 /* HMAC-SHA256 */

struct dtrans__hello {
	uint32_t node, nnodes;
	unsigned char nonce[DTRANS__NONCE];
};
struct dtrans__auth {
	uint32_t node, nnodes;
	unsigned char nonce[DTRANS__NONCE];
	unsigned char mac[DTRANS__MAC];
};

void dtrans__fhdr_encode(const struct dtrans__fhdr *h, void *buf);
/* Check the header's bytes (len >= DTRANS__FRAME_HDR): magic, version,
 * known type, zero flags/reserved, length within the type's bound. */
int dtrans__fhdr_decode(const void *buf, size_t len, struct dtrans__fhdr *h);
size_t dtrans__hello_encode(const struct dtrans__hello *m, void *buf);
int dtrans__hello_decode(const void *buf, size_t len, struct dtrans__hello *m);
size_t dtrans__auth_encode(const struct dtrans__auth *m, void *buf);
int dtrans__auth_decode(const void *buf, size_t len, struct dtrans__auth *m);
/* HMAC-SHA256 over (role, first nonce, second nonce, dialer node,
 * listener node, nnodes) with the secret. */
int dtrans__mac(const void *secret, size_t secret_len, char role,
		const unsigned char *n1, const unsigned char *n2,
		uint32_t dialer, uint32_t listener, uint32_t nnodes,
		unsigned char *mac_out);
/* Constant-time comparison of two MACs: true when equal. */
bool dtrans__mac_equal(const unsigned char *a, const unsigned char *b);
int dtrans__random(void *buf, size_t len);

/* ---- errors (dtrans_error.c) -------------------------------------------- */
int dtrans__fail(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
