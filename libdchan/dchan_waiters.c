/*
 * Waiters: how a send, receive or poll that must wait registers on the
 * channel, and how the peer that makes room or publishes a message wakes
 * it.  The waiting loop itself, which follows the steps W1..W6 below, is
 * in dchan_wait.c.
 *
 * A waiter first polls the ring for a short while (dchan__spin_ns): a
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
 */
#include "config.h"
#include "dchan_private.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The bits and the overflow count of a kind of waiters. */
static uint32_t *wbits(struct dchan__hdr *h, uint32_t kind)
{
	if (kind == DCHAN__WAIT_SEND)
		return &h->send_waiters;
	if (kind == DCHAN__WAIT_RECV)
		return &h->recv_waiters;
	return &h->ev_waiters;
}

static uint32_t *wover(struct dchan__hdr *h, uint32_t kind)
{
	if (kind == DCHAN__WAIT_SEND)
		return &h->send_over;
	if (kind == DCHAN__WAIT_RECV)
		return &h->recv_over;
	return &h->ev_over;
}

/* The word a kind of waiters sleeps on. */
static uint32_t *wword(struct dchan__hdr *h, uint32_t kind)
{
	if (kind == DCHAN__WAIT_SEND)
		return &h->space_seq;
	if (kind == DCHAN__WAIT_RECV)
		return &h->data_seq;
	return &h->ev_seq;
}

static long futex_wake_bits(uint32_t *word, int n, uint32_t bits)
{
	return syscall(SYS_futex, word, FUTEX_WAKE_BITSET, n, NULL, NULL, bits);
}

/* Bump a kind's word and wake the waiters in bits; returns how many the
 * kernel woke. */
static long kick(struct dchan__hdr *h, uint32_t *word, int n, uint32_t bits)
{
	DCHAN__ADD(word, 1);
	__atomic_fetch_add(&h->wake_calls, 1, __ATOMIC_RELAXED);
	return futex_wake_bits(word, n, bits);
}

/*
 * Wake one armed waiter of a kind (send or receive) that sleeps, or every
 * armed poller (see the top of this file).  The caller has made its change
 * visible and passed a SEQ_CST fence.
 */
void dchan__wake(struct dchan__hdr *h, uint32_t kind)
{
	uint32_t *bits = wbits(h, kind), *word = wword(h, kind);
	uint32_t b = DCHAN__LOADR(bits);

	if (kind == DCHAN__WAIT_EV) {
		if (b)
			b = __atomic_exchange_n(bits, 0, __ATOMIC_SEQ_CST);
		if (b || DCHAN__LOADR(wover(h, kind)))
			kick(h, word, INT32_MAX, FUTEX_BITSET_MATCH_ANY);
		return;
	}
	while (b) {
		uint32_t one = b & -b;
		uint32_t old = __atomic_fetch_and(bits, ~one, __ATOMIC_SEQ_CST);

		if ((old & one) && kick(h, word, 1, one) > 0)
			return;
		b = old & ~one;
	}
	if (DCHAN__LOADR(wover(h, kind)))
		kick(h, word, 1, DCHAN__OVER_BIT);
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
			__atomic_fetch_or(wbits(h, kind), 1u << i,
					  __ATOMIC_SEQ_CST);
			return i;
		}
	}
	DCHAN__ADD(wover(h, kind), 1);
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
		DCHAN__SUB(wover(h, kind), 1);
		return false;
	}
	old = __atomic_fetch_and(wbits(h, kind), ~(1u << idx),
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
	return __atomic_load_n(wbits(h, kind), __ATOMIC_SEQ_CST) & (1u << idx);
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
			__atomic_fetch_and(wbits(h, k), ~(1u << i),
					   __ATOMIC_SEQ_CST);
		DCHAN__STORE(&h->waiter[i], 0);
	}
}

/* Waiters of a kind now (a snapshot). */
uint32_t dchan__waiter_count(struct dchan__hdr *h, uint32_t kind)
{
	return (uint32_t)__builtin_popcount(DCHAN__LOADR(wbits(h, kind))) +
	       DCHAN__LOADR(wover(h, kind));
}
