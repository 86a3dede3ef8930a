/*
 * Blocking: how send and receive wait for room or for a message, and how
 * the peer that makes room or publishes a message wakes them.
 *
 * First the ring itself is polled for a short while (dchan__spin_ns): a
 * waiter that has not registered costs the peer no wake-up call.  Then the
 * waiter registers: it takes an entry i of h->waiter with its owner tag and
 * sets bit i in its kind's word (recv_waiters, send_waiters, ev_waiters).
 * A set bit means "armed": the waiter may be asleep and nobody has woken it
 * yet.
 *
 * Waking once per sleep.  A peer that publishes (dchan_ring.c) looks at the
 * kind's word; when a bit is set it clears one bit with an atomic
 * fetch-and, and only if that cleared the bit (no other peer took it
 * first) bumps the sequence word (data_seq, space_seq) and wakes exactly
 * that waiter: receivers and senders sleep on the shared sequence word with
 * FUTEX_WAIT_BITSET and the bitset 1 << i, and the peer wakes with
 * FUTEX_WAKE_BITSET and the same bitset.  The bit stays clear until the
 * waiter has run and registered again, so further publishes see no bit and
 * make no system call.  If the wake found nobody in the kernel (the waiter
 * is still on its way to sleep, or it was killed while registered) the
 * peer goes on to the next set bit, so that a dead waiter's bit never eats
 * the wake-up that a live one needs.  Pollers sleep on ev_seq, possibly
 * with many channels at once (futex_waitv), and are all woken: the peer
 * clears all their bits at once with an exchange and wakes every sleeper.
 *
 * Why no wake-up is lost.  The waiter does, in this order (all SEQ_CST):
 *   W1 set bit i            W2 v = sequence word      W3 fence
 *   W4 try the ring         W5 bit i still set?       W6 sleep while word == v
 * The peer does:
 *   P1 publish the slot (release store of its state)  P2 fence
 *   P3 load the bits        P4 clear bit i (fetch-and) P5 bump the word
 *   P6 wake bitset 1 << i
 * Store-buffering on (bit, slot state) with the fences W3 and P2: either P3
 * sees bit i, or W4 sees the slot.  If the peer clears bit i (P4 reads W1),
 * P5 comes after W1 and so after W2 in every order: either W2 read the
 * word before the bump, and the kernel's check at W6 fails or P6 finds the
 * waiter queued (the kernel compares the word and queues the waiter under
 * one lock, and P6 runs after P5); or W2 read the bumped word, and then W4
 * sees the slot (P1 happens before P5).  W5 closes the remaining hole: a
 * waiter whose bit was cleared by a peer whose message another process took
 * in the meantime would otherwise sleep unarmed and be skipped by every
 * later publish.  A waiter that sees its bit cleared at W5 does not sleep
 * but registers again and retries; one whose bit is cleared after W5 is
 * cleared before a bump that follows W2, so the kernel check at W6 fails or
 * P6 wakes it.
 *
 * Handing a wake-up on.  A waiter that finds on leaving (its deregistering
 * fetch-and) that its bit was already cleared was chosen by a peer.  Woken
 * so, it tries the ring once more before registering again (so that the
 * peer's next publish finds no bit while the waiter runs).  The choice is
 * then answered by a try made after it: a message taken, or a ring found
 * empty.  A waiter chosen after its last try (it took a message that was
 * there before, or it leaves with an error or a timeout) may owe the
 * choice to another waiter, so it wakes the next armed waiter of its kind
 * as a peer does; with nobody armed this costs one load.
 *
 * Dead waiters.  A waiter killed while registered leaves its entry; its
 * bit is cleared by the first publish that picks it (the wake finds nobody
 * and the peer moves on), and its entry is taken back by a sweep.  Entry
 * DCHAN__NWAITER - 1 is never given out: its bit is the bitset of the
 * waiters that found no free entry, which are only counted (*_over) and
 * are woken on every publish while the count is non-zero, as before.
 *
 * When the slot in the way is claimed by another process, the sleep is
 * bounded so that a dead owner is noticed and its slot recovered.
 */
#include "config.h"
#include "dchan_private.h"

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#define DCHAN__STUCK_NS 1000000ull /* re-check a claimed slot's owner */

/* Entries given out by name; the last bit is the overflow sleepers'. */
#define DCHAN__NAMED	(DCHAN__NWAITER - 1)
#define DCHAN__OVER_BIT (1u << DCHAN__NAMED)

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

/* The word a kind of waiters sleeps on. */
static uint32_t *dchan__wword(struct dchan__hdr *h, uint32_t kind)
{
	if (kind == DCHAN__WAIT_SEND)
		return &h->space_seq;
	if (kind == DCHAN__WAIT_RECV)
		return &h->data_seq;
	return &h->ev_seq;
}

static long dchan__futex_wake_bits(uint32_t *word, int n, uint32_t bits)
{
	return syscall(SYS_futex, word, FUTEX_WAKE_BITSET, n, NULL, NULL, bits);
}

/* Bump a kind's word and wake the waiters in bits; returns how many the
 * kernel woke. */
static long dchan__kick(struct dchan__hdr *h, uint32_t *word, int n,
			uint32_t bits)
{
	DCHAN__ADD(word, 1);
	__atomic_fetch_add(&h->wake_calls, 1, __ATOMIC_RELAXED);
	return dchan__futex_wake_bits(word, n, bits);
}

/*
 * Wake one armed waiter of a kind (send or receive) that sleeps, or every
 * armed poller (see the top of this file).  The caller has made its change
 * visible and passed a SEQ_CST fence.
 */
void dchan__wake(struct dchan__hdr *h, uint32_t kind)
{
	uint32_t *bits = dchan__wbits(h, kind), *word = dchan__wword(h, kind);
	uint32_t b = DCHAN__LOADR(bits);

	if (kind == DCHAN__WAIT_EV) {
		if (b)
			b = __atomic_exchange_n(bits, 0, __ATOMIC_SEQ_CST);
		if (b || DCHAN__LOADR(dchan__wover(h, kind)))
			dchan__kick(h, word, INT32_MAX, FUTEX_BITSET_MATCH_ANY);
		return;
	}
	while (b) {
		uint32_t one = b & -b;
		uint32_t old = __atomic_fetch_and(bits, ~one, __ATOMIC_SEQ_CST);

		if ((old & one) && dchan__kick(h, word, 1, one) > 0)
			return;
		b = old & ~one;
	}
	if (DCHAN__LOADR(dchan__wover(h, kind)))
		dchan__kick(h, word, 1, DCHAN__OVER_BIT);
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

	for (int i = 0; i < DCHAN__NAMED; i++) {
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

/*
 * The bit goes before the entry, so that nobody else's bit is cleared.
 * Returns true when the bit was already clear: a peer chose this waiter
 * to wake (a sweep clears only the bits of the dead).
 */
bool dchan__waiter_del(struct dchan__hdr *h, uint32_t kind, int idx)
{
	uint32_t old;

	if (idx < 0) {
		DCHAN__SUB(dchan__wover(h, kind), 1);
		return false;
	}
	old = __atomic_fetch_and(dchan__wbits(h, kind), ~(1u << idx),
				 __ATOMIC_SEQ_CST);
	DCHAN__STORE(&h->waiter[idx], 0);
	return !(old & (1u << idx));
}

/* Is the waiter still armed (no peer has chosen it yet)?  Overflow
 * waiters always are. */
bool dchan__waiter_armed(struct dchan__hdr *h, uint32_t kind, int idx)
{
	if (idx < 0)
		return true;
	return __atomic_load_n(dchan__wbits(h, kind), __ATOMIC_SEQ_CST) &
	       (1u << idx);
}

/*
 * Take back the entries of waiters whose process is dead.  The sweeper
 * first puts its own tag into the entry (so that the entry is neither
 * taken by a new waiter nor swept twice meanwhile), clears the entry's
 * bit, and frees it.
 */
void dchan__waiter_sweep(struct dchan__hdr *h)
{
	for (int i = 0; i < DCHAN__NAMED; i++) {
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

/*
 * Poll the ring for up to the spin budget.  The budget adapts per handle:
 * it halves when a poll ran out (down to a 64th of dchan__spin_ns) and
 * doubles when one found what it waited for (up to dchan__spin_ns), and
 * every DCHAN__SPIN_PROBE-th poll runs the whole dchan__spin_ns.  A peer
 * that shares this process's CPU cannot answer while it polls: there
 * every poll runs its whole budget (20 us per wait by default, which a
 * ping-pong then pays on every message); the halving ends that within a
 * few round trips.  A budget that has shrunk below the peer's time to
 * answer would never grow again by itself; a probe that is answered
 * restores it when the peer runs beside this process again (after a slow
 * phase, or once the scheduler has moved one of them to another CPU).
 */
#define DCHAN__SPIN_PROBE 32

static int dchan__spin(dchan_t *ch, dchan__try_fn try, size_t maxlen, bool peek,
		       struct dchan__claim *c)
{
	uint64_t cap = dchan__spin_ns(), budget, start;
	uint32_t cur = __atomic_load_n(&ch->spin, __ATOMIC_RELAXED);
	uint32_t n = __atomic_fetch_add(&ch->spin_n, 1, __ATOMIC_RELAXED);
	int rc = -EAGAIN;

	if (!cap)
		return rc;
	if (cap > UINT32_MAX)
		cap = UINT32_MAX;
	budget = cur && cur < cap && n % DCHAN__SPIN_PROBE ? cur : cap;
	start = dchan__now_ns();
	for (unsigned i = 1;; i++) {
		dchan__cpu_relax();
		rc = try(ch, maxlen, peek, c);
		if (rc != -EAGAIN) {
			budget = budget * 2 < cap ? budget * 2 : cap;
			break;
		}
		if (i % 64 == 0 && dchan__now_ns() - start > budget) {
			budget = budget / 2 > cap / 64 ? budget / 2 : cap / 64;
			break;
		}
	}
	__atomic_store_n(&ch->spin, (uint32_t)(budget ? budget : 1),
			 __ATOMIC_RELAXED);
	return rc;
}

/* Sleep until *word moves from v, a wake-up for this waiter's bit, the
 * deadline, or (when the way is blocked by a claimed slot) a short bound. */
static void dchan__sleep(uint32_t *word, uint32_t v, int idx,
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
	/* absolute CLOCK_MONOTONIC deadline; EINTR and EAGAIN: re-check */
	syscall(SYS_futex, word, FUTEX_WAIT_BITSET, v, deadline, NULL,
		idx < 0 ? DCHAN__OVER_BIT : 1u << idx);
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
		int idx = dchan__waiter_add(ch->hdr, kind);	      /* W1 */
		uint32_t v = __atomic_load_n(word, __ATOMIC_SEQ_CST); /* W2 */
		bool chosen;

		__atomic_thread_fence(__ATOMIC_SEQ_CST);	   /* W3 */
		rc = dchan__try_recover(ch, try, maxlen, peek, c); /* W4 */
		if (rc == -EAGAIN && DCHAN__LOADR(&ch->hdr->destroyed))
			rc = -DCHAN_E_DESTROYED;
		if (rc == -EAGAIN && dchan__expired(dlp))
			rc = -ETIMEDOUT;
		/* W5: not armed, a peer chose us after W1: look again */
		if (rc == -EAGAIN && dchan__waiter_armed(ch->hdr, kind, idx))
			dchan__sleep(word, v, idx, dlp,
				     c->blocker != 0); /* W6 */
		chosen = dchan__waiter_del(ch->hdr, kind, idx);
		if (idx < 0)
			chosen = rc != 0 &&
				 __atomic_load_n(word, __ATOMIC_RELAXED) != v;
		if (rc == -EAGAIN && chosen) {
			/* woken for a change: look before registering again,
			 * so that the peer's next change finds no bit */
			rc = dchan__try_recover(ch, try, maxlen, peek, c);
			chosen = rc != 0;
		}
		/* a wake-up this waiter may not have used goes to the next */
		if (rc != -EAGAIN && chosen) {
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			dchan__wake(ch->hdr, kind);
		}
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
