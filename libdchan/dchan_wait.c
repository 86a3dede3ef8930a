/*
 * Blocking: how send and receive wait for room or for a message.
 *
 * First the ring itself is polled for a short while (dchan__spin_ns):
 * a waiter that has not registered costs the peer no wake-up call.  Then
 * the waiter registers in the header's waiter count, re-checks, and sleeps
 * on the header's sequence word through dmem_futex_wait.  A peer that
 * publishes (dchan_ring.c) bumps the word and wakes only when the count is
 * non-zero.  When the slot in the way is claimed by another process, the
 * sleep is bounded so that a dead owner is noticed and its slot recovered.
 */
#include "config.h"
#include "dchan_private.h"

#include <sched.h>

#define DCHAN__STUCK_NS 1000000ull /* re-check a claimed slot's owner */

/* The bits and the overflow count of a kind of waiters. */
static uint32_t *dchan__wbits(struct dchan__hdr *h, uint32_t kind)
{
	if (kind == DCHAN__WAIT_SEND)
		return &h->send_waiters;
	if (kind == DCHAN__WAIT_RECV)
		return &h->recv_waiters;
	return &h->ev_waiters;
}

static uint32_t *dchan__wover(struct dchan__hdr *h, uint32_t kind)
{
	if (kind == DCHAN__WAIT_SEND)
		return &h->send_over;
	if (kind == DCHAN__WAIT_RECV)
		return &h->recv_over;
	return &h->ev_over;
}

/*
 * Register as a waiter of a kind: take a free entry of h->waiter with this
 * process's owner tag, then set the entry's bit in the kind's word (a peer
 * that publishes wakes only when a bit or the overflow count says someone
 * may sleep).  Every step is one atomic operation, so a process killed at
 * any point leaves either nothing or a named entry that a sweep takes
 * back.  With no free entry the waiter is only counted (and a death then
 * costs its peers needless wake-ups).  Returns the entry, or -1.
 */
int dchan__waiter_add(struct dchan__hdr *h, uint32_t kind)
{
	uint32_t me = dchan__self_tag();

	for (int i = 0; i < DCHAN__NWAITER; i++) {
		uint32_t free_entry = 0;

		if (DCHAN__LOADR(&h->waiter[i]) == 0 &&
		    DCHAN__CAS(&h->waiter[i], &free_entry, me)) {
			__atomic_fetch_or(dchan__wbits(h, kind), 1u << i,
					  __ATOMIC_SEQ_CST);
			return i;
		}
	}
	DCHAN__ADD(dchan__wover(h, kind), 1);
	return -1;
}

/* The bit goes before the entry, so that nobody else's bit is cleared. */
void dchan__waiter_del(struct dchan__hdr *h, uint32_t kind, int idx)
{
	if (idx < 0) {
		DCHAN__SUB(dchan__wover(h, kind), 1);
		return;
	}
	__atomic_fetch_and(dchan__wbits(h, kind), ~(1u << idx),
			   __ATOMIC_SEQ_CST);
	DCHAN__STORE(&h->waiter[idx], 0);
}

/*
 * Take back the entries of waiters whose process is dead.  The sweeper
 * first puts its own tag into the entry (so that the entry is neither
 * taken by a new waiter nor swept twice meanwhile), clears the entry's
 * bit, and frees it.
 */
void dchan__waiter_sweep(struct dchan__hdr *h)
{
	for (int i = 0; i < DCHAN__NWAITER; i++) {
		uint32_t w = DCHAN__LOAD(&h->waiter[i]);

		if (!w || !dchan__owner_dead(w))
			continue;
		if (!DCHAN__CAS(&h->waiter[i], &w, dchan__self_tag()))
			continue;
		for (uint32_t k = DCHAN__WAIT_SEND; k <= DCHAN__WAIT_EV; k++)
			__atomic_fetch_and(dchan__wbits(h, k), ~(1u << i),
					   __ATOMIC_SEQ_CST);
		DCHAN__STORE(&h->waiter[i], 0);
	}
}

/* Waiters of a kind now (a snapshot). */
uint32_t dchan__waiter_count(struct dchan__hdr *h, uint32_t kind)
{
	return (uint32_t)__builtin_popcount(
		       DCHAN__LOADR(dchan__wbits(h, kind))) +
	       DCHAN__LOADR(dchan__wover(h, kind));
}

typedef int (*dchan__try_fn)(dchan_t *ch, size_t maxlen, bool peek,
			     struct dchan__claim *c);

static int dchan__try_put(dchan_t *ch, size_t maxlen, bool peek,
			  struct dchan__claim *c)
{
	return dchan__put_claim(ch, c);
}

static inline void dchan__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/*
 * One try, and as many more as recovering a dead owner's slot in the way
 * lets us make (two writers killed on neighbouring slots leave two slots
 * to recover before the message behind them).  Each recovery takes a slot
 * out of a dead owner's hands, so this ends.
 */
static int dchan__try_recover(dchan_t *ch, dchan__try_fn try, size_t maxlen,
			      bool peek, struct dchan__claim *c)
{
	int rc;

	do
		rc = try(ch, maxlen, peek, c);
	while (rc == -EAGAIN && c->blocker && dchan__recover(ch, c));
	return rc;
}

/*
 * The first try of an operation.  A call that may wait leaves asking after
 * the owner of a claimed slot in its way to its waiting loop: reading
 * /proc takes microseconds, and a live owner usually moves on sooner.  A
 * try-once call asks at once, so that it gets past every dead owner.
 */
static int dchan__first_try(dchan_t *ch, dchan__try_fn try, size_t maxlen,
			    bool peek, uint64_t timeout_ns,
			    struct dchan__claim *c)
{
	if (timeout_ns)
		return try(ch, maxlen, peek, c);
	return dchan__try_recover(ch, try, maxlen, peek, c);
}

/* Poll the ring for up to the spin budget. */
static int dchan__spin(dchan_t *ch, dchan__try_fn try, size_t maxlen, bool peek,
		       struct dchan__claim *c)
{
	uint64_t budget = dchan__spin_ns(), start;
	int rc = -EAGAIN;

	if (!budget)
		return rc;
	start = dchan__now_ns();
	for (unsigned i = 1;; i++) {
		dchan__cpu_relax();
		rc = try(ch, maxlen, peek, c);
		if (rc != -EAGAIN)
			return rc;
		if (i % 64 == 0 && dchan__now_ns() - start > budget)
			return rc;
	}
}

/* Sleep until *word moves from v, the deadline, or (when the way is
 * blocked by a claimed slot) a short bound. */
static int dchan__sleep(uint32_t *word, uint32_t v,
			const struct timespec *deadline, bool stuck)
{
	struct timespec shortdl;

	if (stuck) {
		dmem_deadline_after(DCHAN__STUCK_NS, &shortdl);
		if (!deadline || shortdl.tv_sec < deadline->tv_sec ||
		    (shortdl.tv_sec == deadline->tv_sec &&
		     shortdl.tv_nsec < deadline->tv_nsec))
			deadline = &shortdl;
	}
	return dmem_futex_wait(word, v, deadline);
}

static int dchan__block(dchan_t *ch, dchan__try_fn try, size_t maxlen,
			bool peek, uint64_t timeout_ns, struct dchan__claim *c,
			uint32_t *word, uint32_t kind)
{
	const struct timespec *dlp;
	struct timespec dl;
	int rc;

	rc = dchan__deadline(timeout_ns, &dl, &dlp);
	if (rc < 0)
		return rc;
	rc = dchan__spin(ch, try, maxlen, peek, c);
	while (rc == -EAGAIN) {
		int idx = dchan__waiter_add(ch->hdr, kind);
		uint32_t v = __atomic_load_n(word, __ATOMIC_SEQ_CST);

		rc = dchan__try_recover(ch, try, maxlen, peek, c);
		if (rc == -EAGAIN && DCHAN__LOADR(&ch->hdr->destroyed))
			rc = -DCHAN_E_DESTROYED;
		if (rc == -EAGAIN && dchan__expired(dlp))
			rc = -ETIMEDOUT;
		if (rc == -EAGAIN)
			dchan__sleep(word, v, dlp, c->blocker != 0);
		dchan__waiter_del(ch->hdr, kind, idx);
		/* a wake-up this waiter will not use goes to the next one */
		if (rc != -EAGAIN && rc != 0 &&
		    __atomic_load_n(word, __ATOMIC_RELAXED) != v)
			dmem_futex_wake(word, 1);
	}
	return rc;
}

static int dchan__wait_error(dchan_t *ch, int rc, const char *what)
{
	if (rc == -ETIMEDOUT || rc == -EAGAIN)
		return dchan__fail(rc, "channel %016llx: %s",
				   (unsigned long long)ch->desc.chan_uid, what);
	if (rc == -DCHAN_E_DESTROYED)
		return dchan__fail(rc,
				   "channel %016llx was destroyed while "
				   "waiting",
				   (unsigned long long)ch->desc.chan_uid);
	return rc;
}

/* Claim a slot to write, waiting up to timeout_ns. */
int dchan__put_wait(dchan_t *ch, uint64_t timeout_ns, struct dchan__claim *c)
{
	int rc = dchan__first_try(ch, dchan__try_put, 0, false, timeout_ns, c);

	if (rc == -EAGAIN && timeout_ns)
		rc = dchan__block(ch, dchan__try_put, 0, false, timeout_ns, c,
				  &ch->hdr->space_seq, DCHAN__WAIT_SEND);
	if (rc < 0)
		return dchan__wait_error(ch, rc, "full");
	return rc;
}

/* Claim the oldest message, waiting up to timeout_ns. */
int dchan__get_wait(dchan_t *ch, size_t maxlen, bool peek, uint64_t timeout_ns,
		    struct dchan__claim *c)
{
	int rc = dchan__first_try(ch, dchan__get_claim, maxlen, peek,
				  timeout_ns, c);

	if (rc == -EAGAIN && timeout_ns)
		rc = dchan__block(ch, dchan__get_claim, maxlen, peek,
				  timeout_ns, c, &ch->hdr->data_seq,
				  DCHAN__WAIT_RECV);
	if (rc == -EMSGSIZE)
		return dchan__fail(rc,
				   "channel %016llx: the next message is "
				   "longer than the %zu-byte buffer",
				   (unsigned long long)ch->desc.chan_uid,
				   maxlen);
	if (rc < 0)
		return dchan__wait_error(ch, rc, "empty");
	return rc;
}
