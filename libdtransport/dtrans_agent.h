/* The agent's internals, shared by its files; not installed.
 *
 * Its files call downward only (see dtrans_private.h for the whole map):
 *
 *   dtrans_log.c      the log and the clock; calls nothing above it
 *   dtrans_link.c     links: buffers, frames, the handshake; hands what
 *                     arrives on a link to the layer above through the
 *                     callbacks of struct dtrans__link_ops
 *   dtrans_reply.c    the requesters' reply channels: freed when their
 *                     process has ended
 *   dtrans_forward.c  this node's requests: gateway -> peer, completions back
 *   dtrans_serve.c    the peers' requests: executed here, parked waits
 *   dtrans_agent.c    public calls, the thread, the epoll loop, timers; the
 *                     top: registers forward's and serve's callbacks with
 *                     the links and calls every layer below
 */
#ifndef DRAGON_DTRANS_AGENT_H
#define DRAGON_DTRANS_AGENT_H

#include "dtrans_private.h"

/* What an epoll event's data pointer points at (first member). */
enum dtrans__ekind {
	DTRANS__EK_EP,
	DTRANS__EK_LINK,
	DTRANS__EK_STOP,
	DTRANS__EK_NEWS /* a peer's address came, or its loss */
};

#define DTRANS__HS_TIMEOUT_NS 5000000000ull /* handshake must finish */
#define DTRANS__REDIAL_NS     200000000ull  /* between dial attempts */
#define DTRANS__TICK_MS	      100	    /* housekeeping period */
#define DTRANS__XID_BUCKETS   4096
#define DTRANS__GW_BATCH      256	    /* gateway messages per loop turn */
#define DTRANS__REAP_NS	      1000000000ull /* look for dead requesters */
#define DTRANS__SPIN_US	      100 /* default busy-poll after traffic */
/* Acknowledgements of buffered sends that found their reply channel full
 * are tried again this often: a thread that flushes takes them soon, and
 * one that stopped taking them costs the agent few wake-ups. */
#define DTRANS__ACK_RETRY_MS  5

struct dtrans__buf {
	unsigned char *p;
	size_t off, len, cap; /* bytes p[off, len) are pending */
};

enum dtrans__lstate {
	DTRANS__L_CONNECTING, /* dialer: connect in progress */
	DTRANS__L_WAIT_HELLO, /* dialer: waiting for the listener's nonce */
	DTRANS__L_WAIT_OK,    /* dialer: sent AUTH, waiting for AUTH_OK */
	DTRANS__L_WAIT_AUTH,  /* listener: sent HELLO, waiting for AUTH */
	DTRANS__L_READY
};

struct dtrans__parked;
struct dtrans__link;
struct dtrans__replies;

/*
 * A large frame payload written from where it lies instead of through the
 * output buffer: a gateway message in pool memory (msg.data) or a heap
 * buffer (heap), which the link frees once it has been written.  at is the
 * position in the output buffer it follows.
 */
struct dtrans__zseg {
	struct dtrans__zseg *next;
	size_t at;
	const unsigned char *p;
	size_t len, off;
	dchan_msg_t msg; /* msg.data set: a pool message to release */
	void *heap;	 /* else a heap buffer to free (or NULL) */
	dchan_t *hold;	 /* detached after: keeps msg's pool mapped */
};

/* Frames with at least this much payload are written without a copy. */
#define DTRANS__ZC_MIN (64u << 10)

/*
 * What a link needs of the layers above it, registered by the agent (the
 * link layer names none of their functions).  All are called on the
 * agent's thread.
 */
struct dtrans__link_ops {
	/* Our dialed link to node finished its handshake. */
	void (*ready)(struct dtrans_agent *ag, uint32_t node);
	/* A completion (CPL) came back on our dialed link to node. */
	void (*cpl)(struct dtrans_agent *ag, uint32_t node, uint64_t xid,
		    const void *cpl, size_t len);
	/* Our dialed link to node is gone: its sent requests fail. */
	void (*lost)(struct dtrans_agent *ag, uint32_t node, const char *why);
	/* Nobody listens at node's address (a dial was refused): its agent
	 * has ended, and the requests waiting to be sent fail too. */
	void (*gone)(struct dtrans_agent *ag, uint32_t node, const char *why);
	/* A peer's request (REQ) arrived on a link it dialed. */
	void (*req)(struct dtrans__link *l, uint64_t xid, const void *raw,
		    size_t len);
	/* The peer dropped its request xid (CANCEL). */
	void (*cancel)(struct dtrans__link *l, uint64_t xid);
	/* A link the peer dialed is closing: forget what it left here. */
	void (*unlink)(struct dtrans__link *l);
};

struct dtrans__link {
	int kind; /* DTRANS__EK_LINK */
	struct dtrans_agent *ag;
	void *be;
	int fd;
	enum dtrans__lstate state;
	bool dialed;   /* ours, to carry our requests to peer */
	bool want_out; /* EPOLLOUT armed */
	bool dead;     /* closed; freed at the end of the loop turn */
	uint32_t peer; /* node index (listener side: known after AUTH) */
	/* listener: the node its AUTH named, proven or not */
	uint32_t claimed;
	unsigned char nonce_mine[DTRANS__NONCE], nonce_peer[DTRANS__NONCE];
	struct dtrans__buf in, out;
	struct dtrans__zseg *zq, *zq_tail; /* zero-copy payloads, in order */
	/* a large frame being read straight into pool memory */
	struct {
		unsigned char *mem; /* NULL: none */
		dmem_pool_t *pool;
		size_t got;
		uint32_t type, len;
		uint64_t xid;
	} sink;
	uint64_t last_recv_ns, last_ping_ns, hs_deadline_ns;
	struct dtrans__parked *parked; /* the peer's waits parked here */
	struct dtrans__link *next;
};

struct dtrans__peer {
	char *addr; /* guarded by agent->mu */
	struct dtrans__link *out;
	uint64_t next_dial_ns;
	bool dial_quiet;	/* a failure to reach it was logged already */
	bool out_lost, in_lost; /* the drop of our / its link was logged:
				   its return will be */
	bool asked;		/* its address was asked of the resolver */
	bool news;		/* guarded by agent->mu: an address or a loss
				   came since the loop last looked */
	bool down;		/* known lost (dtrans_agent_peer_down):
				   written under agent->mu, read atomically */
	uint64_t npending;	/* our requests waiting for this node */
	uint64_t nunsent;	/* ... not yet written to a link */
	dtrans_peer_stats_t st; /* updated with atomics */
};

/* One of our requests, waiting for its completion from a peer. */
struct dtrans__pending {
	uint64_t xid;
	uint32_t node;
	uint16_t op;
	uint64_t req_id;
	dchan_desc_t reply;
	void *raw; /* the encoded request until it is written */
	size_t raw_len;
	dchan_msg_t msg; /* a large one stays in the gateway's pool: raw
			  * points into msg.data, which is ours to release */
	uint64_t since_ns;
	bool buffered;	   /* a buffered send: acknowledged in a batch */
	uint64_t chan_uid; /* its target, named when it fails */
	struct dtrans__pending *hnext;
};

/* A local channel that parked waits are waiting on. */
struct dtrans__wchan {
	uint64_t chan_uid;
	dchan_t *ch;
	unsigned events;
	bool watched; /* in the watch set (else retried on every tick) */
	struct dtrans__parked *head, *tail;
	struct dtrans__wchan *next;
};

/* A peer's request that has to wait: state and a deadline, no thread. */
struct dtrans__parked {
	struct dtrans__link *link;
	uint64_t xid;
	void *raw;
	size_t raw_len;
	dchan_gw_req_t req; /* decoded from raw */
	unsigned events;
	uint64_t deadline_ns; /* UINT64_MAX: forever */
	size_t heap_idx;
	struct dtrans__wchan *wc;
	struct dtrans__parked *wnext, *wprev, *lnext, *lprev;
};

struct dtrans__agent_ctl {
	int kind;
};

struct dtrans_agent {
	pthread_mutex_t mu; /* peers' addresses, running */
	const struct dtrans__backend_ops *be;
	const struct dtrans__link_ops *link_ops; /* set before any link */
	uint32_t node, nnodes;
	unsigned char *secret;
	size_t secret_len;
	dchan_t *gw;
	uint64_t peer_timeout_ns;
	void (*resolve)(void *arg, uint32_t node); /* or NULL */
	void *resolve_arg;
	int log_fd;

	void *ep;
	struct dtrans__agent_ctl ep_tag, stop_tag, news_tag;
	int epfd, stopfd;
	int newsfd; /* eventfd: another thread set a peer's address or
		       loss (the loop acts at once, not at its next tick) */
	dchan_watch_t *watch;
	pthread_t thr;
	bool running;
	bool gw_again;	  /* the gateway may hold more than one turn took */
	bool gw_held;	  /* the loop polls the gateway itself (busy) */
	uint64_t spin_ns; /* how long to poll after traffic */
	uint64_t busy_until_ns; /* poll, do not sleep, until then */

	struct dtrans__peer *peers;
	struct dtrans__link *links;
	struct dtrans__pending *xids[DTRANS__XID_BUCKETS];
	uint64_t next_xid;
	uint64_t last_reap_ns;
	/* A completion read into the gateway's pool (link_sink_end) while
	 * it is handed up: forward may keep it (and clears this). */
	void *sunk;
	struct dtrans__wchan *wchans;
	struct dtrans__parked **heap;
	size_t nheap, heap_cap;
	uint64_t nparked;
	struct dtrans__replies *replies; /* dtrans_reply.c */
	bool acks_waiting; /* acknowledgements wait for room (retry soon) */
	struct dtrans__pending *pfree; /* records to reuse */
	size_t npfree;
};

#define DTRANS__STAT(ag, node, field, v)                                       \
	__atomic_fetch_add(&(ag)->peers[(node)].st.field, (v), __ATOMIC_RELAXED)

/* log and clock (dtrans_log.c) */
uint64_t dtrans__now_ns(void);
void dtrans__log(struct dtrans_agent *ag, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* links (dtrans_link.c) */
int dtrans__link_new(struct dtrans_agent *ag, void *be, bool dialed,
		     uint32_t peer, struct dtrans__link **l_out);
void dtrans__link_drop(struct dtrans__link *l, const char *why);
int dtrans__link_frame(struct dtrans__link *l, unsigned type, uint64_t xid,
		       const void *a, size_t alen, const void *b, size_t blen);
/* A frame whose payload is hd (hdlen bytes, copied) followed by the
 * zero-copy payload zs (body/len with msg or heap set).  On success the
 * link owns what zs owns; on failure the caller still does. */
int dtrans__link_frame_zc(struct dtrans__link *l, unsigned type, uint64_t xid,
			  const void *hd, size_t hdlen,
			  const struct dtrans__zseg *zs);
/* Bytes are waiting to be written. */
bool dtrans__link_busy(const struct dtrans__link *l);
void dtrans__link_event(struct dtrans__link *l, uint32_t events);
void dtrans__link_flush(struct dtrans__link *l);
void dtrans__link_tick(struct dtrans__link *l, uint64_t now);
void dtrans__accept_all(struct dtrans_agent *ag);
/* A listener's new link: say HELLO. */
void dtrans__link_accepted(struct dtrans__link *l);
/* Bytes as if received on l: parse and act on every whole frame (drops
 * the link on a malformed one).  The read path and the fuzz target. */
int dtrans__link_feed(struct dtrans__link *l, const void *buf, size_t len);

/* the requesters' reply channels (dtrans_reply.c) */
void dtrans__reply_note(struct dtrans_agent *ag, const dchan_desc_t *reply,
			uint64_t req_id);
/* The reply channel, attached once and kept (NULL: not noted; attach it). */
dchan_t *dtrans__reply_chan(struct dtrans_agent *ag, const dchan_desc_t *reply);
/* One buffered send to the channel chan_uid of node_id ended with status:
 * counted into the next acknowledgement for its reply channel. */
void dtrans__reply_ack(struct dtrans_agent *ag, const dchan_desc_t *reply,
		       uint64_t req_id, int status, uint64_t node_id,
		       uint64_t chan_uid);
/* Write the counted acknowledgements; true when some wait for room. */
bool dtrans__reply_flush(struct dtrans_agent *ag);
void dtrans__reply_reap(struct dtrans_agent *ag, uint64_t now);
void dtrans__reply_forget(struct dtrans_agent *ag);

/* forwarding our requests (dtrans_forward.c) */
int dtrans__gw_drain(struct dtrans_agent *ag);
void dtrans__fwd_ready(struct dtrans_agent *ag, uint32_t node);
void dtrans__fwd_cpl(struct dtrans_agent *ag, uint32_t node, uint64_t xid,
		     const void *cpl, size_t len);
void dtrans__fwd_lost(struct dtrans_agent *ag, uint32_t node, bool all,
		      const char *why);
void dtrans__fwd_tick(struct dtrans_agent *ag, uint64_t now);
/* Peers' addresses and losses given by other threads: dial at once the
 * peers whose requests waited for an address, fail the lost ones'. */
void dtrans__fwd_news(struct dtrans_agent *ag, uint64_t now);
void dtrans__fwd_fail_all(struct dtrans_agent *ag);
void dtrans__fwd_forget(struct dtrans_agent *ag);

/* serving the peers' requests (dtrans_serve.c) */
void dtrans__serve_req(struct dtrans__link *l, uint64_t xid, const void *raw,
		       size_t len);
/* A watched channel with parked waits (its watch cookie) may be ready. */
void dtrans__serve_retry(struct dtrans_agent *ag, struct dtrans__wchan *wc);
void dtrans__serve_expire(struct dtrans_agent *ag, uint64_t now);
void dtrans__serve_tick(struct dtrans_agent *ag);
void dtrans__serve_unlink(struct dtrans__link *l);
void dtrans__serve_cancel(struct dtrans__link *l, uint64_t xid);
int dtrans__serve_timeout_ms(struct dtrans_agent *ag, uint64_t now);

#endif
