/* Private declarations of libdchan; not installed.
 *
 * Shared layout of a channel (one pool allocation):
 *
 *   struct dchan__hdr   magic, layout version, geometry, ring positions,
 *                       counters and the futex words, each group on its
 *                       own cache line
 *   slot[capacity]      struct dchan__slot + payload, `stride` bytes each
 *
 * The ring is a bounded MPMC queue with a sequence number per slot.  A
 * slot's 64-bit state word holds the sequence (low 32 bits) and a tag (high
 * 32 bits): 0 when no process is inside the slot, else the owner tag of the
 * process that claimed it (its pid and 8 bits of its start time, so that a
 * reused pid is not taken for the dead owner), possibly with
 * DCHAN__TAG_PEEK or DCHAN__TAG_ABANDONED.  For ring position pos the
 * sequence reads
 *   2*pos       empty, ready for the producer of pos (tag: writer)
 *   2*pos + 1   full, ready for the consumer of pos (tag: reader)
 * and the consumer hands the slot on with 2*(pos + capacity).  Claiming is
 * a CAS on the state word that puts the claimer's pid into it, so a claim
 * and its owner appear in one step; head and tail are hints that whoever
 * sees a claimed slot helps forward.  A slot whose owner died is found by
 * the next process blocked behind it and recovered (dchan_recover.c).
 */
#ifndef DRAGON_DCHAN_PRIVATE_H
#define DRAGON_DCHAN_PRIVATE_H

#include <dragon/dchan.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>

/* futex_waitv(2) (Linux 5.16), for headers that predate it: poll and the
 * watch sets sleep on the futex words of many channels at once. */
#include <linux/futex.h>
#include <sys/syscall.h>
#ifndef __NR_futex_waitv
#define __NR_futex_waitv 449
#endif
#ifndef FUTEX_32
#define FUTEX_32 2
struct futex_waitv {
	uint64_t val;
	uint64_t uaddr;
	uint32_t flags;
	uint32_t __reserved;
};
#endif

#define DCHAN__HDR_MAGIC      0x52444843414e4844ull /* "DHNACHDR" */
#define DCHAN__LAYOUT_VERSION 2u /* 2: owner tags carry a start time */
#define DCHAN__CACHELINE      64

#define DCHAN__TAG_PID_MASK  0x003fffffu /* Linux pids are below 2^22 */
#define DCHAN__TAG_GEN_MASK  0x3fc00000u /* 1 + start time % 255 */
#define DCHAN__TAG_GEN_SHIFT 22
#define DCHAN__TAG_OWNER     (DCHAN__TAG_PID_MASK | DCHAN__TAG_GEN_MASK)
#define DCHAN__TAG_PEEK	     0x40000000u
#define DCHAN__TAG_ABANDONED 0x80000000u

/* dchan__slot.kind */
#define DCHAN__KIND_INLINE 1u
#define DCHAN__KIND_DESC   2u

/* dchan__hdr.kind: what the channel implements. */
#define DCHAN__OBJ_CHANNEL 0u
#define DCHAN__OBJ_LOCK	   1u
#define DCHAN__OBJ_SEM	   2u
#define DCHAN__OBJ_EVENT   3u
#define DCHAN__OBJ_BARRIER 4u
#define DCHAN__OBJ_COND	   5u

#define DCHAN__ALIGNED __attribute__((aligned(DCHAN__CACHELINE)))

#define DCHAN__NWAITER	32 /* waiters noted by name; more are only counted */
/* Entries given out by name; the last bit is the overflow sleepers'. */
#define DCHAN__NAMED	(DCHAN__NWAITER - 1)
#define DCHAN__OVER_BIT (1u << DCHAN__NAMED)

/* kinds of waiters */
#define DCHAN__WAIT_SEND 0
#define DCHAN__WAIT_RECV 1
#define DCHAN__WAIT_EV	 2

struct dchan__hdr {
	uint64_t magic;
	uint32_t layout_version;
	uint32_t obj_kind; /* DCHAN__OBJ_*: sync objects tag their channel */
	uint64_t chan_uid;
	uint64_t pool_uid;
	uint32_t capacity;
	uint32_t slot_size; /* inline payload bytes */
	uint32_t stride;    /* bytes per slot */
	uint32_t slots_off; /* first slot, from the header */
	uint64_t total_size;
	uint64_t aux[6]; /* sync objects: parameters, sibling channel offsets */
	uint32_t destroyed;

	/* producer side */
	DCHAN__ALIGNED uint64_t head;
	uint64_t spare_p; /* spare, on the producer line */

	/* consumer side */
	DCHAN__ALIGNED uint64_t tail;
	uint64_t spare_c; /* spare, on the consumer line */

	/* waiting: a word is bumped (and woken) only when its waiters say
	 * someone may sleep on it.  *_waiters: bit i stands for the armed
	 * waiter named in waiter[i] (cleared by the peer that wakes it);
	 * *_over counts waiters that found no free entry (dchan_waiters.c) */
	DCHAN__ALIGNED uint32_t data_seq; /* a message was published */
	uint32_t recv_waiters;
	uint32_t space_seq; /* a slot was handed back */
	uint32_t send_waiters;
	uint32_t ev_seq; /* any change, for pollers */
	uint32_t ev_waiters;
	uint64_t recovered;
	uint32_t recv_over, send_over, ev_over;
	uint64_t wake_calls; /* futex wake calls made by publishers (tests) */

	/* owner tags of the waiters, so that a survivor can take back the
	 * bit of one that died asleep */
	DCHAN__ALIGNED uint32_t waiter[DCHAN__NWAITER];
};

struct dchan__slot {
	uint64_t state; /* seq (low 32) | tag (high 32) */
	uint32_t kind;	/* DCHAN__KIND_* */
	uint32_t reserved;
	uint64_t len;
	unsigned char data[]; /* inline bytes or a dmem_alloc_desc_t */
};

#define DCHAN__SLOT_HDR ((uint32_t)sizeof(struct dchan__slot))

struct dchan__pref; /* a pool in the per-process registry */

/* Process-local handle. */
struct dchan {
	struct dchan__hdr *hdr; /* NULL for a remote channel */
	unsigned char *slots;
	dmem_pool_t *pool;
	struct dchan__pref *pref;
	dchan_desc_t desc;
	uint32_t cap;
	uint32_t stride;
	uint32_t slot_size;
	uint32_t mask;	     /* cap - 1 when cap is a power of two, else 0 */
	uint32_t spin;	     /* ns its waits poll now, 0: unset (dchan__spin) */
	uint32_t spin_n;     /* polls made, for the full-length probes */
	uint64_t pace_stall; /* 1 + the tail a paced send waited on in
			      * vain, 0: pace (dchan__pace) */
	bool remote;
	unsigned send_mode; /* DCHAN_SEND_*: how a remote send completes */
};

/* What a claim found: the slot, its position, and who blocks it. */
struct dchan__claim {
	struct dchan__slot *slot;
	uint64_t pos;
	uint64_t state;	  /* state word seen (for recovery) */
	uint32_t blocker; /* tag of the claimed slot in the way, or 0 */
};

static inline uint32_t dchan__seq(uint64_t st)
{
	return (uint32_t)st;
}
static inline uint32_t dchan__tag(uint64_t st)
{
	return (uint32_t)(st >> 32);
}
static inline uint64_t dchan__state(uint32_t seq, uint32_t tag)
{
	return (uint64_t)seq | ((uint64_t)tag << 32);
}

static inline struct dchan__slot *dchan__slot_at(const dchan_t *ch,
						 uint64_t pos)
{
	uint64_t i = ch->mask ? (pos & ch->mask) : (pos % ch->cap);

	return (struct dchan__slot *)(ch->slots + i * ch->stride);
}

#define DCHAN__LOAD(p)	   __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define DCHAN__LOADR(p)	   __atomic_load_n((p), __ATOMIC_RELAXED)
#define DCHAN__STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define DCHAN__CAS(p, e, d)                                                    \
	__atomic_compare_exchange_n((p), (e), (d), false, __ATOMIC_ACQ_REL,    \
				    __ATOMIC_ACQUIRE)
#define DCHAN__ADD(p, v) __atomic_fetch_add((p), (v), __ATOMIC_SEQ_CST)
#define DCHAN__SUB(p, v) __atomic_fetch_sub((p), (v), __ATOMIC_SEQ_CST)

/* errors (dchan_error.c) */
int dchan__fail(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int dchan__fail_dmem(int err, const char *what);

/* process identity (dchan_util.c) */
uint32_t dchan__self(void);
uint32_t dchan__self_tag(void);
bool dchan__owner_dead(uint32_t tag);
uint64_t dchan__random64(void);
uint64_t dchan__hash(const void *buf, size_t len);
int dchan__deadline(uint64_t timeout_ns, struct timespec *dl,
		    const struct timespec **dlp);
bool dchan__expired(const struct timespec *dl);
uint64_t dchan__spin_ns(void);
uint64_t dchan__spin_ns_at(uint64_t now, long (*runnable)(void));
uint64_t dchan__now_ns(void);

/* handles and the pool registry (dchan_pools.c, dchan_chan.c) */
int dchan__pool_hold(const dmem_pool_desc_t *pd, dmem_pool_t *known,
		     struct dchan__pref **pref_out);
void dchan__pool_drop(struct dchan__pref *pref);
dmem_pool_t *dchan__pref_pool(const struct dchan__pref *pref);
int dchan__create(dmem_pool_t *pool, const dchan_attr_t *attr,
		  uint32_t obj_kind, dchan_t **ch_out);
int dchan__attach(const dchan_desc_t *desc, dchan_t **ch_out);
int dchan__validate_hdr(const struct dchan__hdr *h, uint64_t avail);
int dchan__desc_check(const dchan_desc_t *d);
void dchan__desc_seal(dchan_desc_t *d);

/* ring (dchan_ring.c) */
int dchan__put_claim(dchan_t *ch, struct dchan__claim *c);
void dchan__put_publish(dchan_t *ch, struct dchan__claim *c);
int dchan__get_claim(dchan_t *ch, size_t maxlen, bool peek,
		     struct dchan__claim *c);
void dchan__get_release(dchan_t *ch, struct dchan__claim *c);
void dchan__peek_release(dchan_t *ch, struct dchan__claim *c);
bool dchan__readable(dchan_t *ch, struct dchan__claim *blk);
bool dchan__writable(dchan_t *ch, struct dchan__claim *blk);
void dchan__notify_data(struct dchan__hdr *h);
void dchan__notify_space(struct dchan__hdr *h);

/* waiters and wake-ups (dchan_waiters.c) */
int dchan__waiter_add(struct dchan__hdr *h, uint32_t kind);
bool dchan__waiter_del(struct dchan__hdr *h, uint32_t kind, int idx);
bool dchan__waiter_armed(struct dchan__hdr *h, uint32_t kind, int idx);
void dchan__wake(struct dchan__hdr *h, uint32_t kind);
void dchan__waiter_sweep(struct dchan__hdr *h);
uint32_t dchan__waiter_count(struct dchan__hdr *h, uint32_t kind);

/* Might a waiter of this kind sleep?  (the notifier's test) */
#define DCHAN__WAITING(h, mask, over)                                          \
	(DCHAN__LOADR(&(h)->mask) | DCHAN__LOADR(&(h)->over))

/* recovery (dchan_recover.c) */
int dchan__recover(dchan_t *ch, const struct dchan__claim *c);
void dchan__free_slot_desc(dchan_t *ch, struct dchan__slot *s);

/* waiting (dchan_wait.c) */
int dchan__put_wait(dchan_t *ch, uint64_t timeout_ns, struct dchan__claim *c);
int dchan__get_wait(dchan_t *ch, size_t maxlen, bool peek, uint64_t timeout_ns,
		    struct dchan__claim *c);
/* A blocking send of len bytes or more is paced: it waits (bounded) while
 * the channel holds DCHAN__PACE_BYTES of such messages (dchan_wait.c). */
#define DCHAN__PACE_MIN	    (256u << 10)
#define DCHAN__PACE_BYTES   (8u << 20)
#define DCHAN__PACE_WAIT_NS 50000000ull
void dchan__pace(dchan_t *ch, size_t len, uint64_t timeout_ns);

/* local channels' messages (dchan_send.c, dchan_recv.c); the public calls
 * that also reach remote channels are in dchan_io.c */
int dchan__send_local(dchan_t *ch, const void *buf, size_t len,
		      uint64_t timeout_ns);
int dchan__send_zc_local(dchan_t *ch, void *ptr, size_t len,
			 uint64_t timeout_ns);
int dchan__recv_local(dchan_t *ch, void *buf, size_t cap, uint64_t timeout_ns,
		      size_t *len_out);
int dchan__recv_zc_local(dchan_t *ch, uint64_t timeout_ns,
			 dchan_msg_t *msg_out);
int dchan__peek_local(dchan_t *ch, void *buf, size_t cap, uint64_t timeout_ns,
		      size_t *len_out);

/* memory requests (dchan_gw_codec.c): the range check, the payload's
 * header, and its strict parse (node, pool, lengths, range) */
struct dchan__gw_mem {
	dmem_alloc_desc_t alloc;
	uint64_t off, len;
	const void *data; /* MEM_WRITE: len bytes */
};
int dchan__mem_range_check(const dmem_alloc_desc_t *a, uint64_t off,
			   uint64_t len);
void dchan__gw_mem_hdr(void *buf, const dmem_alloc_desc_t *a, uint64_t off,
		       uint64_t len);
int dchan__gw_mem_parse(const dchan_gw_req_t *req, struct dchan__gw_mem *m);

/* gateway client (dchan_gw_client.c) */
int dchan__gw_send(dchan_t *ch, const void *buf, size_t len,
		   uint64_t timeout_ns);
int dchan__gw_recv(dchan_t *ch, int op, void *buf, size_t cap,
		   uint64_t timeout_ns, size_t *len_out);
int dchan__gw_poll(dchan_t *ch, unsigned events, uint64_t timeout_ns,
		   unsigned *revents_out);
int dchan__gw_stats(dchan_t *ch, dchan_stats_t *st);
/* One request to target (a channel, or a pool for memory requests),
 * waiting up to wait_ns for its completion; the completion's payload (at
 * most cap bytes) goes to out.  The remote status is left in cpl_out. */
int dchan__gw_call_to(const dchan_desc_t *target, dchan_gw_req_t *req,
		      uint64_t wait_ns, void *out, size_t cap,
		      dchan_gw_cpl_t *cpl_out);

/* memory of any node (dchan_mem.c): the servicer's side of MEM_READ and
 * MEM_WRITE; a MEM_READ's bytes come back in a malloc'ed *data_out */
int dchan__mem_execute(const dchan_gw_req_t *req, void **data_out,
		       uint64_t *len_out, uint64_t *value_out);
/* Poll sets with remote channels: the thread's reply channel for them,
 * with room for n more requests (waiting up to DCHAN__GW_POLLSET_LATE_NS
 * for late answers of earlier sets); post one poll; take one completion
 * (its request id, revents and status). */
#define DCHAN__GW_POLLSET_CAP	  256u
#define DCHAN__GW_POLLSET_LATE_NS 5000000000ull
int dchan__gw_pollset_begin(unsigned n, dchan_t **reply_out);
int dchan__gw_poll_post(dchan_t *ch, unsigned events, uint64_t timeout_ns,
			dchan_t *reply, uint64_t *req_id_out);
int dchan__gw_poll_take(dchan_t *reply, uint64_t timeout_ns,
			uint64_t *req_id_out, unsigned *revents_out,
			int *status_out);

/* Stop unless the handle names a usable local channel. */
static inline int dchan__check_local(const dchan_t *ch)
{
	if (!ch)
		return dchan__fail(-EINVAL, "channel handle is NULL");
	if (__atomic_load_n(&ch->hdr->destroyed, __ATOMIC_RELAXED))
		return dchan__fail(-DCHAN_E_DESTROYED,
				   "channel %016llx was destroyed",
				   (unsigned long long)ch->desc.chan_uid);
	return 0;
}

#endif
