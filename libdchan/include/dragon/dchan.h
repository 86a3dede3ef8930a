/* libdchan — channels: message queues in pool memory, sync objects.
 *
 * Public interface.  Functions return 0 or a non-negative count on success
 * and a negative error code on failure: a negative errno, or one of the
 * DCHAN_E* codes below; dchan_strerror() turns either into text and
 * dchan_errmsg() gives this thread's detail message for its last failure.
 *
 * Conventions (see dchan(7)):
 *  - Output arguments come last and are written only on success.
 *  - Timeouts are relative, in nanoseconds: 0 tries once, DCHAN_FOREVER
 *    waits without limit.  Relative, unlike libdmem's absolute deadlines,
 *    because a channel operation may run on another node: the gateway
 *    carries the timeout there, and an absolute CLOCK_MONOTONIC time means
 *    nothing on a node whose clock started elsewhere.  A plain integer also
 *    passes by value through every binding, as Python's timeout= does.
 *    Each call turns it into a deadline once, on entry, and waits on
 *    libdmem with that.
 *  - Handles (dchan_t and the sync objects) are process-local and may be
 *    used by several threads at once.  Descriptors (dchan_desc_t) are plain
 *    data that name a channel in any process on any node.
 */
#ifndef DRAGON_DCHAN_H
#define DRAGON_DCHAN_H

#include <dragon/dmem.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DCHAN_EXPORT __attribute__((visibility("default")))

#define DCHAN_VERSION_MAJOR 0
#define DCHAN_VERSION_MINOR 1
#define DCHAN_VERSION_PATCH 0
/* One integer, comparable: (major << 16) | (minor << 8) | patch. */
#define DCHAN_VERSION_NUMBER                                                   \
	((DCHAN_VERSION_MAJOR << 16) | (DCHAN_VERSION_MINOR << 8) |            \
	 DCHAN_VERSION_PATCH)

/* Library error codes are negative and start past the errno range. */
#define DCHAN_ERRBASE 1100
enum dchan_error {
	DCHAN_E_BADDESC = DCHAN_ERRBASE + 1, /* corrupt channel descriptor */
	DCHAN_E_VERSION = DCHAN_ERRBASE + 2, /* layout/format version unknown */
	DCHAN_E_DESTROYED = DCHAN_ERRBASE + 3, /* channel was destroyed */
	DCHAN_E_NOGATEWAY = DCHAN_ERRBASE + 4, /* remote channel, no gateway */
	DCHAN_E_BADREQ = DCHAN_ERRBASE + 5,    /* malformed gateway message */
	DCHAN_E_BROKEN = DCHAN_ERRBASE + 6,    /* barrier is broken */
	DCHAN_E_REMOTE = DCHAN_ERRBASE + 7,    /* not available remotely */
	DCHAN_E_NODELOST = DCHAN_ERRBASE + 8   /* channel's node unreachable */
};

/* Timeout meaning "wait as long as it takes". */
#define DCHAN_FOREVER UINT64_MAX

/* The version of the library actually loaded, as DCHAN_VERSION_NUMBER; it may
 * be newer than the header a program was compiled with. */
DCHAN_EXPORT unsigned dchan_version(void);

/* Text for an error code returned by this library or a layer below it (a
 * negative errno, or a library code).  Never NULL; static storage. */
DCHAN_EXPORT const char *dchan_strerror(int err);

/* Detail message for the most recent failing libdchan call in this thread
 * (which channel, which sizes, what to do).  Never NULL ("" if none). */
DCHAN_EXPORT const char *dchan_errmsg(void);

/* ---- descriptors -------------------------------------------------------- */

#define DCHAN_DESC_MAGIC    0x4e414843u /* "CHAN" */
#define DCHAN_DESC_VERSION  1
/* Text form fits a buffer of this size (including the NUL). */
#define DCHAN_DESC_TEXT_MAX 384

/*
 * Names a channel: plain fixed-size data, valid on every node.  node_id is
 * the node whose pool holds the channel; on any other node operations go
 * through the gateway (see dchan_gw_register).
 */
typedef struct dchan_desc {
	uint32_t magic;	  /* DCHAN_DESC_MAGIC */
	uint16_t version; /* DCHAN_DESC_VERSION */
	uint16_t reserved0;
	uint64_t node_id;      /* node of the channel's pool */
	uint64_t chan_uid;     /* random per channel */
	uint64_t offset;       /* of the channel header in the pool */
	dmem_pool_desc_t pool; /* the pool holding the channel */
	uint64_t check;	       /* checksum of everything above */
} dchan_desc_t;

/* Binary form (the struct's bytes, for the same byte order); returns the
 * number of bytes written, -ENOSPC if len is too small. */
DCHAN_EXPORT int dchan_desc_serialize(const dchan_desc_t *desc, void *buf,
				      size_t len);
/* Validate len bytes at buf (magic, version, checksum, pool descriptor) and
 * copy them into *desc_out.  Never reads past buf + len. */
DCHAN_EXPORT int dchan_desc_deserialize(const void *buf, size_t len,
					dchan_desc_t *desc_out);
/* Text form for environment variables:
 *   dchan:1:<node hex>:<uid hex>:<offset hex>:<pool text form>
 * Returns the length written (buf holds DCHAN_DESC_TEXT_MAX bytes at most). */
DCHAN_EXPORT int dchan_desc_to_text(const dchan_desc_t *desc, char *buf,
				    size_t len);
/* Parse the whole text form strictly. */
DCHAN_EXPORT int dchan_desc_from_text(const char *text, dchan_desc_t *desc_out);

/* ---- channels ----------------------------------------------------------- */

/* Opaque: this process's handle of a channel. */
typedef struct dchan dchan_t;

#define DCHAN_ATTR_CAPACITY  (1u << 0)
#define DCHAN_ATTR_SLOT_SIZE (1u << 1)

#define DCHAN_CAPACITY_DEFAULT	128
#define DCHAN_CAPACITY_MAX	(1u << 24)
#define DCHAN_SLOT_SIZE_DEFAULT 224
#define DCHAN_SLOT_SIZE_MAX	(1u << 20)

typedef struct dchan_attr {
	uint64_t field_mask;  /* DCHAN_ATTR_* bits for the fields set */
	uint32_t capacity;    /* messages the channel holds, 1..CAPACITY_MAX */
	uint32_t slot_size;   /* bytes a message may have to travel inline */
	uint64_t reserved[6]; /* zero */
} dchan_attr_t;

/*
 * Create a channel in pool (borrowed: it must outlive the channel handle).
 * attr may be NULL for the defaults.  *ch_out is owned by the caller:
 * dchan_destroy frees the channel, dchan_detach only the handle.
 * -EINVAL (zero or too large capacity/slot size), -DMEM_E_NOSPACE/TOOBIG.
 */
DCHAN_EXPORT int dchan_create(dmem_pool_t *pool, const dchan_attr_t *attr,
			      dchan_t **ch_out);

/* Mark the channel destroyed (others' operations then fail with
 * -DCHAN_E_DESTROYED), free the messages it still holds and its memory,
 * and free the handle.  ch is consumed even on error.  Like freeing a
 * mutex, this is for when no other process is inside an operation on the
 * channel any more: a sender still finishing its send touches the
 * channel's memory after the receiver has the message. */
DCHAN_EXPORT int dchan_destroy(dchan_t *ch);

/*
 * Attach to the channel named by desc (borrowed).  On this node the pool
 * is mapped (once per process, shared by all its channels); on another node
 * the handle routes every operation through the registered gateway.
 */
DCHAN_EXPORT int dchan_attach(const dchan_desc_t *desc, dchan_t **ch_out);

/* Free the handle (and unmap the pool if this process mapped it for its
 * channels and no other handle uses it).  Consumes ch. */
DCHAN_EXPORT int dchan_detach(dchan_t *ch);

/* The channel's descriptor. */
DCHAN_EXPORT int dchan_desc_get(const dchan_t *ch, dchan_desc_t *desc_out);

/* The pool holding the channel (NULL for a remote channel).  Zero-copy
 * sends take allocations from this pool.  Borrowed from the handle. */
DCHAN_EXPORT dmem_pool_t *dchan_pool(const dchan_t *ch);

/*
 * Send len bytes from buf (borrowed; copied).  A message that fits the
 * slot travels inline; a larger one is copied into a pool allocation.
 * -EAGAIN when timeout_ns is 0 and the channel is full, -ETIMEDOUT,
 * -DMEM_E_NOSPACE when a large message finds no room in the pool by the
 * deadline (at once for timeout 0), -DMEM_E_TOOBIG when it can never fit.
 */
DCHAN_EXPORT int dchan_send(dchan_t *ch, const void *buf, size_t len,
			    uint64_t timeout_ns);

/*
 * Zero-copy send: hand over the allocation at ptr (from dmem_alloc on
 * dchan_pool(ch)), of which the first len bytes are the message.  On
 * success the channel owns it and the receiver gets it; on failure the
 * caller still does.
 */
DCHAN_EXPORT int dchan_send_zc(dchan_t *ch, void *ptr, size_t len,
			       uint64_t timeout_ns);

/*
 * Receive one message into buf (cap bytes); *len_out receives its length.
 * -EMSGSIZE (message left in the channel; dchan_peek tells its size) if
 * cap is too small, -EAGAIN when timeout_ns is 0 and the channel is
 * empty, -ETIMEDOUT.
 */
DCHAN_EXPORT int dchan_recv(dchan_t *ch, void *buf, size_t cap,
			    uint64_t timeout_ns, size_t *len_out);

/* A message received without a copy. */
typedef struct dchan_msg {
	void *data;	   /* a pool allocation now owned by the caller */
	size_t len;	   /* message bytes at data */
	dmem_pool_t *pool; /* the pool data lives in (borrowed) */
} dchan_msg_t;

/*
 * Zero-copy receive: *msg_out gets the message's allocation itself (an
 * inline message is put into a fresh allocation).  Free it with
 * dchan_msg_release() (or dmem_free on msg.pool).
 */
DCHAN_EXPORT int dchan_recv_zc(dchan_t *ch, uint64_t timeout_ns,
			       dchan_msg_t *msg_out);

/* Free a message from dchan_recv_zc. */
DCHAN_EXPORT int dchan_msg_release(dchan_msg_t *msg);

/*
 * Copy the oldest message into buf without removing it; *len_out gets its
 * full length (only min(len, cap) bytes are copied, so cap 0 asks the size).
 */
DCHAN_EXPORT int dchan_peek(dchan_t *ch, void *buf, size_t cap,
			    uint64_t timeout_ns, size_t *len_out);

/* ---- poll --------------------------------------------------------------- */

#define DCHAN_POLLIN  0x1u /* a message can be received */
#define DCHAN_POLLOUT 0x2u /* a message can be sent */

/*
 * Wait until the channel is ready for one of events; *revents_out gets the
 * ready ones.  -EAGAIN (timeout 0) or -ETIMEDOUT when none became ready.
 */
DCHAN_EXPORT int dchan_poll(dchan_t *ch, unsigned events, uint64_t timeout_ns,
			    unsigned *revents_out);

typedef struct dchan_pollitem {
	dchan_t *ch;	  /* channel (borrowed) */
	unsigned events;  /* DCHAN_POLL* wanted */
	unsigned revents; /* DCHAN_POLL* ready, written by dchan_poll_many */
} dchan_pollitem_t;

/*
 * Wait until at least one of the n channels is ready (like poll(2)): fills
 * every item's revents and returns the number of ready items, or -EAGAIN
 * (timeout 0) / -ETIMEDOUT.  Sleeps in the kernel on all the channels'
 * event words at once; n <= 128.  Local and remote channels may be mixed:
 * the remote ones are polled through the gateway, all at once, while the
 * caller sleeps on the local ones and on the completions' channel (each
 * remote poll waits at most half a second at its node before it is posted
 * again, so one left behind by a set that returned ends there soon).
 */
DCHAN_EXPORT int dchan_poll_many(dchan_pollitem_t *items, size_t n,
				 uint64_t timeout_ns);

/* ---- state -------------------------------------------------------------- */

typedef struct dchan_stats {
	uint64_t count;		    /* messages in the channel now */
	uint64_t capacity;	    /* messages it can hold */
	uint64_t slot_size;	    /* inline bytes per slot */
	uint64_t blocked_senders;   /* waiting in send now */
	uint64_t blocked_receivers; /* waiting in recv/poll now */
	uint64_t sent;		    /* sends ever started (head) */
	uint64_t received;	    /* receives ever started (tail) */
	uint64_t recovered;	    /* slots recovered from dead processes */
	uint64_t object;	    /* 0: a plain channel; else a sync object */
	uint64_t object_param;	    /* the sync object's parameter */
	uint64_t reserved[6];
} dchan_stats_t;

DCHAN_EXPORT int dchan_stats(dchan_t *ch, dchan_stats_t *stats_out);
/* Shorthands; a negative code on error. */
DCHAN_EXPORT int64_t dchan_count(dchan_t *ch);
DCHAN_EXPORT int64_t dchan_capacity(dchan_t *ch);

/* ---- sync objects ------------------------------------------------------- */
/*
 * Each sync object is made of channels in one pool and is named by the
 * descriptor of its first channel; dchan_*_attach rebuilds it from that in
 * another process.  Every operation, attach included, is a channel
 * operation on a channel the descriptor names (a barrier's or condition's
 * first channel holds a directory of the others), so a sync object of
 * another node works through the gateway like a channel does.  Waiting
 * calls take a timeout like send/recv.
 */

typedef struct dchan_lock dchan_lock_t;
/* recursive: the owner (process and thread) may acquire it again. */
#define DCHAN_LOCK_RECURSIVE (1u << 0)

DCHAN_EXPORT int dchan_lock_create(dmem_pool_t *pool, unsigned flags,
				   dchan_lock_t **lock_out);
DCHAN_EXPORT int dchan_lock_attach(const dchan_desc_t *desc,
				   dchan_lock_t **lock_out);
DCHAN_EXPORT int dchan_lock_desc_get(const dchan_lock_t *lock,
				     dchan_desc_t *desc_out);
/* -EAGAIN/-ETIMEDOUT when not acquired (a non-recursive lock that this
 * thread holds is not acquired again).
 */
DCHAN_EXPORT int dchan_lock_acquire(dchan_lock_t *lock, uint64_t timeout_ns);
/* -EPERM if the lock is free, or (recursive) the caller's thread does not
 * own it.  A non-recursive lock may be released by any thread or process. */
DCHAN_EXPORT int dchan_lock_release(dchan_lock_t *lock);
/* 1 if this thread owns it (recursion depth in *depth_out, may be NULL). */
DCHAN_EXPORT int dchan_lock_is_mine(const dchan_lock_t *lock,
				    unsigned *depth_out);
DCHAN_EXPORT int dchan_lock_detach(dchan_lock_t *lock);
DCHAN_EXPORT int dchan_lock_destroy(dchan_lock_t *lock);

typedef struct dchan_sem dchan_sem_t;
/* max 0: unbounded (up to DCHAN_SEM_VALUE_MAX, which is INT_MAX like
 * Linux's SEM_VALUE_MAX, so dchan_sem_value's int holds every value). */
#define DCHAN_SEM_VALUE_MAX 2147483647u
DCHAN_EXPORT int dchan_sem_create(dmem_pool_t *pool, unsigned value,
				  unsigned max, dchan_sem_t **sem_out);
DCHAN_EXPORT int dchan_sem_attach(const dchan_desc_t *desc,
				  dchan_sem_t **sem_out);
DCHAN_EXPORT int dchan_sem_desc_get(const dchan_sem_t *sem,
				    dchan_desc_t *desc_out);
DCHAN_EXPORT int dchan_sem_acquire(dchan_sem_t *sem, uint64_t timeout_ns);
/* -EOVERFLOW past the maximum (bounded) or DCHAN_SEM_VALUE_MAX; the value
 * is then unchanged. */
DCHAN_EXPORT int dchan_sem_release(dchan_sem_t *sem);
/* The current value (>= 0) or a negative code. */
DCHAN_EXPORT int dchan_sem_value(dchan_sem_t *sem);
DCHAN_EXPORT int dchan_sem_detach(dchan_sem_t *sem);
DCHAN_EXPORT int dchan_sem_destroy(dchan_sem_t *sem);

typedef struct dchan_event dchan_event_t;
DCHAN_EXPORT int dchan_event_create(dmem_pool_t *pool, dchan_event_t **ev_out);
DCHAN_EXPORT int dchan_event_attach(const dchan_desc_t *desc,
				    dchan_event_t **ev_out);
DCHAN_EXPORT int dchan_event_desc_get(const dchan_event_t *ev,
				      dchan_desc_t *desc_out);
DCHAN_EXPORT int dchan_event_set(dchan_event_t *ev);
DCHAN_EXPORT int dchan_event_clear(dchan_event_t *ev);
/* 1 if set, 0 if not. */
DCHAN_EXPORT int dchan_event_is_set(dchan_event_t *ev);
/* 0 once set; -EAGAIN/-ETIMEDOUT otherwise. */
DCHAN_EXPORT int dchan_event_wait(dchan_event_t *ev, uint64_t timeout_ns);
DCHAN_EXPORT int dchan_event_detach(dchan_event_t *ev);
DCHAN_EXPORT int dchan_event_destroy(dchan_event_t *ev);

typedef struct dchan_barrier dchan_barrier_t;
#define DCHAN_BARRIER_PARTIES_MAX 4096u
DCHAN_EXPORT int dchan_barrier_create(dmem_pool_t *pool, unsigned parties,
				      dchan_barrier_t **bar_out);
DCHAN_EXPORT int dchan_barrier_attach(const dchan_desc_t *desc,
				      dchan_barrier_t **bar_out);
DCHAN_EXPORT int dchan_barrier_desc_get(const dchan_barrier_t *bar,
					dchan_desc_t *desc_out);
/*
 * Wait for all parties.  Returns this party's arrival index (0 ..
 * parties-1).  A timeout breaks the barrier (-ETIMEDOUT here,
 * -DCHAN_E_BROKEN for the others and later callers until a reset).
 */
DCHAN_EXPORT int dchan_barrier_wait(dchan_barrier_t *bar, uint64_t timeout_ns);
/* Break the barrier: waiters and later callers get -DCHAN_E_BROKEN. */
DCHAN_EXPORT int dchan_barrier_abort(dchan_barrier_t *bar);
/* Back to the initial state; current waiters get -DCHAN_E_BROKEN. */
DCHAN_EXPORT int dchan_barrier_reset(dchan_barrier_t *bar);
/* Parties waiting now (>= 0), or a negative code. */
DCHAN_EXPORT int dchan_barrier_n_waiting(dchan_barrier_t *bar);
/* 1 if broken, 0 if not. */
DCHAN_EXPORT int dchan_barrier_is_broken(dchan_barrier_t *bar);
DCHAN_EXPORT int dchan_barrier_parties(const dchan_barrier_t *bar);
DCHAN_EXPORT int dchan_barrier_detach(dchan_barrier_t *bar);
DCHAN_EXPORT int dchan_barrier_destroy(dchan_barrier_t *bar);

/*
 * Condition variable support: waits release a dchan lock and take it back.
 * The lock must be held by the caller.
 */
typedef struct dchan_cond dchan_cond_t;
DCHAN_EXPORT int dchan_cond_create(dmem_pool_t *pool, dchan_cond_t **cond_out);
DCHAN_EXPORT int dchan_cond_attach(const dchan_desc_t *desc,
				   dchan_cond_t **cond_out);
DCHAN_EXPORT int dchan_cond_desc_get(const dchan_cond_t *cond,
				     dchan_desc_t *desc_out);
/* 0 when notified, -ETIMEDOUT otherwise; the lock is held again either
 * way. */
DCHAN_EXPORT int dchan_cond_wait(dchan_cond_t *cond, dchan_lock_t *lock,
				 uint64_t timeout_ns);
/* Wake up to n waiters; returns how many were woken. */
DCHAN_EXPORT int dchan_cond_notify(dchan_cond_t *cond, unsigned n);
DCHAN_EXPORT int dchan_cond_notify_all(dchan_cond_t *cond);
DCHAN_EXPORT int dchan_cond_detach(dchan_cond_t *cond);
DCHAN_EXPORT int dchan_cond_destroy(dchan_cond_t *cond);

/* ---- gateway ------------------------------------------------------------ */
/*
 * Operations on a channel of another node are written as requests into
 * this node's gateway channel; its servicer (the transport agent) carries
 * them out and writes the completion into the request's reply channel.
 * The format is in dchan(7).
 */

/* Environment variable holding the gateway channel's text descriptor. */
#define DCHAN_GW_ENV "DRAGON_GW_CHANNEL"

/* Use ch (a local channel, borrowed until unregistered) as this process's
 * gateway.  Without a registration, the first remote operation attaches
 * the channel named by $DRAGON_GW_CHANNEL. */
DCHAN_EXPORT int dchan_gw_register(dchan_t *ch);
DCHAN_EXPORT int dchan_gw_unregister(void);

/*
 * How dchan_send reaches a remote channel through the handle ch.
 * DCHAN_SEND_SYNC (the default): each send waits for its completion from
 * the channel's node, so its result is the remote send's.
 * DCHAN_SEND_BUFFERED: a send returns once its request is in the
 * gateway channel, and the gateway acknowledges the calling thread's
 * buffered sends in batches; sends of one thread to one channel arrive in
 * the order they were made.  A buffered send that fails at its node
 * (full past its timeout, destroyed, node lost) is reported by the
 * thread's next buffered send (which then sends nothing) or by
 * dchan_gw_flush, whichever comes first.  At most DCHAN_GW_BUFFERED_MAX
 * of a thread's buffered sends are in flight; a send beyond waits for
 * room within its timeout.  DCHAN_SEND_BUFFERED_WAIT: buffered, and a
 * send waits at its node for room in the channel as long as it takes
 * (until the channel is destroyed or the node lost); its timeout bounds
 * only the wait for room among the thread's sends in flight, so a send
 * with timeout 0 returns -EAGAIN at once when DCHAN_GW_BUFFERED_MAX are in
 * flight and never fails later for a full channel (a stream of messages
 * whose sender must not block, as a queue's put).  Local channels ignore
 * the mode (a local send is complete when it returns).  -EINVAL for
 * another mode.
 */
#define DCHAN_SEND_SYNC		 0u
#define DCHAN_SEND_BUFFERED	 1u
#define DCHAN_SEND_BUFFERED_WAIT 2u
#define DCHAN_GW_BUFFERED_MAX	 128u
DCHAN_EXPORT int dchan_send_mode_set(dchan_t *ch, unsigned mode);

/* Wait until every buffered send of the calling thread has been carried
 * out at its node (up to timeout_ns); returns 0, the first error of
 * those sends not reported yet, or -ETIMEDOUT when some are still in
 * flight at the timeout (they stay in flight). */
DCHAN_EXPORT int dchan_gw_flush(uint64_t timeout_ns);

#define DCHAN_GW_MAGIC_REQ   0x51574744u /* "DGWQ" */
#define DCHAN_GW_MAGIC_CPL   0x43574744u /* "DGWC" */
#define DCHAN_GW_VERSION     1
#define DCHAN_GW_PAYLOAD_MAX (1u << 30)

enum dchan_gw_op {
	DCHAN_GW_SEND = 1,
	DCHAN_GW_RECV = 2,
	DCHAN_GW_PEEK = 3,
	DCHAN_GW_POLL = 4,
	DCHAN_GW_STATS = 5,
	DCHAN_GW_MEM_READ = 6, /* bytes of an allocation (dchan_mem_read) */
	DCHAN_GW_MEM_WRITE = 7 /* into an allocation (dchan_mem_write) */
};

/*
 * MEM_READ and MEM_WRITE name no channel: their target descriptor names
 * the pool (its node_id and pool; dchan_mem_* set chan_uid and offset to
 * 0, a servicer ignores them), and their payload is the allocation's
 * dmem_alloc_desc_t, the u64 offset of the first byte in the allocation
 * and the u64 length, then (MEM_WRITE only) the bytes.  A decoder refuses
 * an allocation of another pool or a payload of another length; the
 * servicer answers a range outside the allocation with -EINVAL and a
 * freed allocation with -DMEM_E_STALE.  The completion of a MEM_READ
 * carries the bytes; that of a MEM_WRITE has the length in its value.
 */
#define DCHAN_GW_MEM_HDR (sizeof(dmem_alloc_desc_t) + 16u)

/* SEND's arg: a buffered send (dchan_send_mode_set).  Its servicer on
 * the requester's node acknowledges it, with others, by a completion of
 * req_id DCHAN_GW_ACK_ID whose value counts the sends acknowledged and
 * whose status is the first error among them (0: none), with the failed
 * target's node id and channel uid (two u64) as payload.  A servicer
 * that knows no buffering answers each with its own completion, which
 * acknowledges one. */
#define DCHAN_GW_F_BUFFERED 1u
#define DCHAN_GW_ACK_ID	    UINT64_MAX

/* A decoded request; payload points into the decoded buffer. */
typedef struct dchan_gw_req {
	uint16_t version;
	uint16_t op;	 /* enum dchan_gw_op */
	uint32_t arg;	 /* POLL: events; otherwise 0 */
	uint64_t req_id; /* chosen by the requester, echoed back; its top
			    24 bits are the requester's pid */
	uint64_t cap;	 /* RECV/PEEK: largest message accepted */
	uint64_t timeout_ns;
	dchan_desc_t target; /* the channel to operate on */
	dchan_desc_t reply;  /* where the completion goes */
	const void *payload; /* SEND: the message */
	uint64_t payload_len;
} dchan_gw_req_t;

/* A decoded completion; payload points into the decoded buffer. */
typedef struct dchan_gw_cpl {
	uint16_t version;
	uint16_t op;
	int32_t status; /* 0 or a negative code */
	uint64_t req_id;
	uint64_t value; /* POLL: revents; PEEK: full length */
	const void
		*payload; /* RECV/PEEK: message bytes; STATS: dchan_stats_t */
	uint64_t payload_len;
} dchan_gw_cpl_t;

/* Encode into buf (len bytes); returns the bytes written or -ENOSPC. */
DCHAN_EXPORT int64_t dchan_gw_req_encode(const dchan_gw_req_t *req, void *buf,
					 size_t len);
/* Check and decode len bytes at buf; never reads past buf + len.
 * -DCHAN_E_BADREQ, -DCHAN_E_VERSION. */
DCHAN_EXPORT int dchan_gw_req_decode(const void *buf, size_t len,
				     dchan_gw_req_t *req_out);
DCHAN_EXPORT int64_t dchan_gw_cpl_encode(const dchan_gw_cpl_t *cpl, void *buf,
					 size_t len);
/* Only the header of a completion whose cpl->payload_len payload bytes
 * the caller sends right after it (cpl->payload is not read); returns
 * the header's bytes or -ENOSPC. */
DCHAN_EXPORT int64_t dchan_gw_cpl_encode_head(const dchan_gw_cpl_t *cpl,
					      void *buf, size_t len);
DCHAN_EXPORT int dchan_gw_cpl_decode(const void *buf, size_t len,
				     dchan_gw_cpl_t *cpl_out);

/*
 * Servicer side, on the target's node: carry out req on its local target
 * channel and encode the completion (the operation's own status travels in
 * it) into a malloc'ed buffer *cpl_out of *len_out bytes; the caller
 * frees it with free().  Fails only if no completion could be built.
 */
DCHAN_EXPORT int dchan_gw_execute(const dchan_gw_req_t *req, void **cpl_out,
				  size_t *len_out);

/* Servicer side, on the requester's node: deliver the encoded completion
 * (len bytes at cpl) to the reply channel of req. */
DCHAN_EXPORT int dchan_gw_complete(const dchan_gw_req_t *req, const void *cpl,
				   size_t len);

/* Both steps at once, for a servicer that runs where the target lives:
 * receive one request from gw (waiting up to timeout_ns), execute it and
 * deliver the completion. */
DCHAN_EXPORT int dchan_gw_serve_one(dchan_t *gw, uint64_t timeout_ns);

/* Servicer side, on the target's node: attach the local channel a request
 * names, whatever object it implements.  dchan_attach refuses the channels
 * of sync objects (a plain receive would take a lock's token); a servicer
 * carries out the sync objects' own channel operations on them, so it
 * attaches them with this call.  Detach with dchan_detach. */
DCHAN_EXPORT int dchan_gw_attach(const dchan_desc_t *desc, dchan_t **ch_out);

/* ---- memory of any node ------------------------------------------------ */
/*
 * Bytes of an allocation wherever it lives.  On the allocation's own node
 * the bytes are copied in place (the pool is mapped for the copy unless
 * libdchan maps it already); on another node the copy is a gateway request that
 * the transport agent carries to that node's agent (MEM_READ, MEM_WRITE), so a
 * process can use memory it cannot map.  pool and alloc are the descriptors of
 * the pool and of the allocation (borrowed); the range [offset, offset + len)
 * must lie inside the allocation (-EINVAL otherwise, before anything is sent);
 * len is at most DCHAN_GW_PAYLOAD_MAX.  timeout_ns bounds the wait for the
 * owner node's answer (DCHAN_FOREVER: the transport's detection of a lost node
 * bounds it).  A freed allocation is -DMEM_E_STALE, a lost node
 * -DCHAN_E_NODELOST, a timeout -EHOSTUNREACH; each copy is atomic only
 * as memcpy is, so concurrent writers take a lock (dchan_lock_acquire).
 */
DCHAN_EXPORT int dchan_mem_read(const dmem_pool_desc_t *pool,
				const dmem_alloc_desc_t *alloc, uint64_t offset,
				void *buf, size_t len, uint64_t timeout_ns);
DCHAN_EXPORT int dchan_mem_write(const dmem_pool_desc_t *pool,
				 const dmem_alloc_desc_t *alloc,
				 uint64_t offset, const void *buf, size_t len,
				 uint64_t timeout_ns);

/* ---- watching channels without a thread per wait ----------------------- */
/*
 * A watch set turns changes of local channels into readiness of one file
 * descriptor, for an event loop (the transport agent) that has many
 * operations waiting on channels and no thread to give each.  A channel in
 * the set has a poller registered on it, so its senders and receivers bump
 * and wake its event word as they do for dchan_poll; channels outside every
 * watch set pay nothing.  One helper thread per set sleeps on all the
 * set's event words at once (futex_waitv) and reports through the
 * descriptor; it starts at the first dchan_watch_fd.  An event loop may
 * sleep in dchan_watch_wait instead, which covers the channels and the
 * loop's own descriptor in one wait and saves the helper's wake-up.
 */
typedef struct dchan_watch dchan_watch_t;

/* At most this many channels in one set. */
#define DCHAN_WATCH_MAX 127

DCHAN_EXPORT int dchan_watch_create(dchan_watch_t **watch_out);
/* A descriptor that polls readable while channels of the set are reported
 * ready and not yet taken with dchan_watch_take.  Owned by the set. */
DCHAN_EXPORT int dchan_watch_fd(const dchan_watch_t *watch);
/*
 * Watch ch (local, borrowed until removed) for events (DCHAN_POLL*);
 * cookie comes back from dchan_watch_take.  Adding a channel that is in
 * the set already changes its events and cookie.  -ENOSPC past
 * DCHAN_WATCH_MAX channels, -DCHAN_E_REMOTE for a remote channel.
 */
DCHAN_EXPORT int dchan_watch_add(dchan_watch_t *watch, dchan_t *ch,
				 unsigned events, void *cookie);
/*
 * Sleep in the calling thread until a channel of the set may be ready for
 * its events (reported: take it with dchan_watch_take), fd (< 0: none;
 * borrowed, an epoll descriptor say) polls readable, or timeout_ms passes
 * (< 0: no bound; 0: look once, do not sleep).  One thread at a time.  A
 * publisher on a watched channel wakes this thread itself (io_uring's
 * futex wait beside a poll of fd, Linux 6.7); where the kernel cannot do
 * that, or after dchan_watch_fd started the helper, it polls fd and the
 * helper's descriptor.  Returns the channels reported by this call (0
 * also when the helper reported some: take them anyway) or a negative
 * errno.
 */
DCHAN_EXPORT int dchan_watch_wait(dchan_watch_t *watch, int fd, int timeout_ms);
/* Stop watching ch; -ENOENT if it is not in the set. */
DCHAN_EXPORT int dchan_watch_del(dchan_watch_t *watch, dchan_t *ch);
/*
 * Take up to max cookies of channels that became ready for their events
 * (or may have: a caller retries its operation and adds the channel back
 * to the watch when it still has to wait, which dchan_watch_take's
 * clearing of the report needs no call for: a taken channel stays in the
 * set and is reported again at its next change).  Returns the count.
 */
DCHAN_EXPORT int dchan_watch_take(dchan_watch_t *watch, void **cookies,
				  size_t max);
/*
 * Hold (hold != 0) or release ch: while held, the set's helper leaves ch
 * out of its sleep and does not report it, because the caller polls ch
 * itself (an event loop busy with ch's traffic); ch's publishers then pay
 * no wake-up.  Releasing puts ch back: the helper looks at it at once and
 * reports it if it is ready.  -ENOENT if ch is not in the set.
 */
DCHAN_EXPORT int dchan_watch_hold(dchan_watch_t *watch, dchan_t *ch, int hold);
/* Stop the helper thread and free the set (the channels are borrowed). */
DCHAN_EXPORT int dchan_watch_destroy(dchan_watch_t *watch);

#ifdef __cplusplus
}
#endif
#endif
