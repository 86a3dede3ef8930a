/* libdtransport — the transport agent that carries channel operations between
 * nodes.
 *
 * One agent runs per node.  It reads the node's gateway channel (where
 * libdchan writes the requests for channels of other nodes), sends each
 * request to the agent of the node that owns the channel, executes the
 * requests other agents send it on its own node's channels, and carries
 * the completions back.  A remote operation that has to wait is parked in
 * the agent's event loop, never given a thread.  The design and the wire
 * format are in dtransport(7).
 *
 * Public interface.  Functions return 0 or a non-negative count on success
 * and a negative error code on failure: a negative errno, or one of the
 * DTRANS_E* codes below; dtrans_strerror() turns either into text and
 * dtrans_errmsg() gives this thread's detail message for its last failure.
 */
#ifndef DRAGON_DTRANSPORT_H
#define DRAGON_DTRANSPORT_H

#include <dragon/dchan.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DTRANS_EXPORT __attribute__((visibility("default")))

#define DTRANS_VERSION_MAJOR 0
#define DTRANS_VERSION_MINOR 1
#define DTRANS_VERSION_PATCH 0
/* One integer, comparable: (major << 16) | (minor << 8) | patch. */
#define DTRANS_VERSION_NUMBER                                                  \
	((DTRANS_VERSION_MAJOR << 16) | (DTRANS_VERSION_MINOR << 8) |          \
	 DTRANS_VERSION_PATCH)

/* Library error codes are negative and start past the errno range. */
#define DTRANS_ERRBASE 1200
enum dtrans_error {
	DTRANS_E_BACKEND = DTRANS_ERRBASE + 1, /* backend unknown, not built,
						  or its library won't load */
	DTRANS_E_AUTH = DTRANS_ERRBASE + 2,    /* peer failed the handshake */
	DTRANS_E_FRAME = DTRANS_ERRBASE + 3,   /* malformed wire frame */
	DTRANS_E_NODE = DTRANS_ERRBASE + 4     /* wrong node id/count */
};

/* The version of the library actually loaded, as DTRANS_VERSION_NUMBER; it may
 * be newer than the header a program was compiled with. */
DTRANS_EXPORT unsigned dtrans_version(void);

/* Text for an error code returned by this library or a layer below it (a
 * negative errno, or a library code).  Never NULL; static storage. */
DTRANS_EXPORT const char *dtrans_strerror(int err);

/* Detail message for the most recent failing libdtransport call in this
 * thread (which node, which address, what to do).  Never NULL. */
DTRANS_EXPORT const char *dtrans_errmsg(void);

/* ---- agents ------------------------------------------------------------- */

/* Opaque: one transport agent of this process. */
typedef struct dtrans_agent dtrans_agent_t;

/* libdmem's node ids are never 0: the node of index i (0 .. nnodes-1) has
 * the id i + 1 (DRAGON_NODE_ID=i+1 in its processes' environment), and a
 * channel whose descriptor says node_id belongs to the node of index
 * node_id - 1. */
#define DTRANS_NODE_ID(index) ((uint64_t)(index) + 1)

/* Optional fields of dtrans_attr_t, named in field_mask when set. */
#define DTRANS_ATTR_BACKEND	 (1u << 0)
#define DTRANS_ATTR_PEER_TIMEOUT (1u << 1)
#define DTRANS_ATTR_LOG_FD	 (1u << 2)
#define DTRANS_ATTR_RESOLVE	 (1u << 3)
#define DTRANS_ATTR_NOTICE_FD	 (1u << 4)

#define DTRANS_NODES_MAX	    4096
#define DTRANS_SECRET_MIN	    16		   /* bytes */
#define DTRANS_SECRET_MAX	    1024	   /* bytes */
#define DTRANS_PEER_TIMEOUT_DEFAULT 10000000000ull /* 10 s */

/*
 * What an agent is.  The fields before field_mask's optional ones are
 * required; every pointer is borrowed for the duration of
 * dtrans_agent_create only, except gateway, which must outlive the agent.
 */
typedef struct dtrans_attr {
	uint64_t
		field_mask; /* DTRANS_ATTR_* bits for the optional fields set */
	uint32_t node;	    /* this node's index: dmem_node_id() must equal it
			       (a runtime sets DRAGON_NODE_ID) */
	uint32_t nnodes;    /* nodes in the runtime, 1..DTRANS_NODES_MAX */
	const char *listen_addr; /* "host:port" (port 0: any free port) */
	/* nnodes addresses "host:port" of the agents, by node index; entry
	 * `node` and any other may be NULL and be given later with
	 * dtrans_agent_peer_set. The array itself may be NULL. */
	const char *const *peers;
	const void *secret; /* the runtime's shared secret, DTRANS_SECRET_MIN..
			       DTRANS_SECRET_MAX bytes; copied */
	size_t secret_len;
	dchan_t *gateway; /* this node's gateway channel (local) */
	/* optional */
	const char *backend;	  /* "tcp", "ofi" (libfabric), "ucx" (UCP) or
				     "auto" (the default): what dragon-config
				     recorded, else tcp with a notice; ofi and
				     ucx are opened with dlopen, see
				     dtransport(7) */
	uint64_t peer_timeout_ns; /* an unreachable or silent peer fails its
				     operations after this long (default
				     DTRANS_PEER_TIMEOUT_DEFAULT) */
	int log_fd;		  /* where dropped connections and frames are
				     reported (default 2, -1: nowhere) */
	/* where the notices about the backend chosen go (tcp used for want
	 * of a configured one, or as a configured one's fallback): default
	 * log_fd, -1: nowhere */
	int notice_fd;
	/* Asked, from the agent's thread, for the address of a node it must
	 * reach and has none for; it must not block: it starts a lookup
	 * and returns, and the address comes later through
	 * dtrans_agent_peer_set (the requests for that node wait for it, up
	 * to the peer timeout).  Asked once per node.  Without it such
	 * requests fail after the peer timeout. */
	void (*resolve)(void *arg, uint32_t node);
	void *resolve_arg;
	uint64_t reserved[5]; /* zero */
} dtrans_attr_t;

/*
 * Make an agent: check attr, open the backend and start listening on
 * listen_addr (so that dtrans_agent_address knows the port), but carry
 * nothing yet.  *agent_out is owned by the caller (dtrans_agent_destroy).
 * -EINVAL (a missing field, a secret too short), -DTRANS_E_NODE (node >=
 * nnodes, or dmem_node_id() is not DTRANS_NODE_ID(node)), -DTRANS_E_BACKEND (a
 * backend that is unknown or not built in, or whose library does not load:
 * the message names the path and dlerror()), -EADDRINUSE and the like from
 * the backend.
 */
DTRANS_EXPORT int dtrans_agent_create(const dtrans_attr_t *attr,
				      dtrans_agent_t **agent_out);

/* The address the agent listens on, port resolved, "host:port" into buf
 * (len bytes).  Returns the length, -ENOSPC if buf is too small. */
DTRANS_EXPORT int dtrans_agent_address(const dtrans_agent_t *agent, char *buf,
				       size_t len);

/* Set or change the address of node's agent (used at its next connection;
 * callable while the agent runs). */
DTRANS_EXPORT int dtrans_agent_peer_set(dtrans_agent_t *agent, uint32_t node,
					const char *addr);

/* The caller knows node is lost (its runtime said so): the operations
 * waiting for it fail now with -DCHAN_E_NODELOST, and later ones at once,
 * without waiting for the peer timeout, until dtrans_agent_peer_set gives
 * node an address again.  Callable while the agent runs. */
DTRANS_EXPORT int dtrans_agent_peer_down(dtrans_agent_t *agent, uint32_t node);

/* Run the agent on a thread of its own until dtrans_agent_stop.  -EALREADY
 * if it runs. */
DTRANS_EXPORT int dtrans_agent_start(dtrans_agent_t *agent);

/* Stop the agent's thread: requests still waiting for another node fail
 * with -DCHAN_E_NODELOST, remote waits parked here are dropped (their
 * requesters see the connection go).  The agent can be started again. */
DTRANS_EXPORT int dtrans_agent_stop(dtrans_agent_t *agent);

/* Stop it if it runs, close everything and free it.  Consumes agent. */
DTRANS_EXPORT int dtrans_agent_destroy(dtrans_agent_t *agent);

/* What the agent did with one peer node. */
typedef struct dtrans_peer_stats {
	uint64_t requests_sent;	   /* requests forwarded to the peer */
	uint64_t requests_served;  /* the peer's requests executed here */
	uint64_t completions_recv; /* completions the peer returned */
	uint64_t bytes_sent;	   /* bytes written to the peer's links */
	uint64_t bytes_recv;	   /* bytes read from them */
	uint64_t frames_sent;	   /* frames written */
	uint64_t sends;		   /* backend send calls (frames / sends is
				      the batching factor) */
	uint64_t connections;	   /* links made (either direction) */
	uint64_t errors;	   /* links dropped: handshake, frame, I/O */
	uint64_t failed_ops;	   /* operations failed as the node was lost */
	uint64_t parked;	   /* the peer's operations waiting here now */
	uint64_t reserved[5];
} dtrans_peer_stats_t;

/* Statistics for one peer node (node != the agent's own). */
DTRANS_EXPORT int dtrans_agent_stats(dtrans_agent_t *agent, uint32_t node,
				     dtrans_peer_stats_t *stats_out);

#ifdef __cplusplus
}
#endif
#endif
