/*
 * Blocking: how send and receive wait for room or for a message.
 *
 * First the ring itself is polled for a short while (dchan__spin_ns).
 * Then the waiter registers and sleeps, in the steps W1..W6 that
 * dchan_waiters.c describes with the peer's side and the reasons no
 * wake-up is lost.  When the slot in the way is claimed by another
 * process, the sleep is bounded so that a dead owner is noticed and its
 * slot recovered (dchan_recover.c).
 */
#include "config.h"
#include "dchan_private.h"

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#define DCHAN__STUCK_NS	 1000000ull /* re-check a claimed slot's owner */
#define SPIN_CLOCK_EVERY 64 /* tries of the ring between looks at the clock */

typedef int (*try_fn)(dchan_t *ch, size_t maxlen, bool peek,
		      struct dchan__claim *c);

static int try_put(dchan_t *ch, size_t maxlen, bool peek,
		   struct dchan__claim *c)
{
	return dchan__put_claim(ch, c);
}

static inline void cpu_relax(void)
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
static int try_recover(dchan_t *ch, try_fn try, size_t maxlen, bool peek,
		       struct dchan__claim *c)
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
static int first_try(dchan_t *ch, try_fn try, size_t maxlen, bool peek,
		     uint64_t timeout_ns, struct dchan__claim *c)
{
	if (timeout_ns)
		return try(ch, maxlen, peek, c);
	return try_recover(ch, try, maxlen, peek, c);
}

/*
 * Poll the ring for up to the spin budget.  The budget adapts per handle:
 * it halves when a poll ran out (down to a 64th of dchan__spin_ns) and
 * doubles when one found what it waited for (up to dchan__spin_ns), and
 * every SPIN_PROBE-th poll runs the whole dchan__spin_ns.  A peer
 * that shares this process's CPU cannot answer while it polls: there
 * every poll runs its whole budget (20 us per wait by default, which a
 * ping-pong then pays on every message); the halving ends that within a
 * few round trips.  A budget that has shrunk below the peer's time to
 * answer would never grow again by itself; a probe that is answered
 * restores it when the peer runs beside this process again (after a slow
 * phase, or once the scheduler has moved one of them to another CPU).
 */
#define SPIN_PROBE 32

static int spin_try(dchan_t *ch, try_fn try, size_t maxlen, bool peek,
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
	budget = cur && cur < cap && n % SPIN_PROBE ? cur : cap;
	start = dchan__now_ns();
	for (unsigned i = 1;; i++) {
		cpu_relax();
		rc = try(ch, maxlen, peek, c);
		if (rc != -EAGAIN) {
			budget = budget * 2 < cap ? budget * 2 : cap;
			break;
		}
		if (i % SPIN_CLOCK_EVERY == 0 &&
		    dchan__now_ns() - start > budget) {
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
static void sleep_on(uint32_t *word, uint32_t v, int idx,
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

static int block_wait(dchan_t *ch, try_fn try, size_t maxlen, bool peek,
		      uint64_t timeout_ns, struct dchan__claim *c,
		      uint32_t *word, uint32_t kind, bool spin)
{
	const struct timespec *dlp;
	struct timespec dl;
	int rc;

	rc = dchan__deadline(timeout_ns, &dl, &dlp);
	if (rc < 0)
		return rc;
	rc = spin ? spin_try(ch, try, maxlen, peek, c) : -EAGAIN;
	while (rc == -EAGAIN) {
		int idx = dchan__waiter_add(ch->hdr, kind);	      /* W1 */
		uint32_t v = __atomic_load_n(word, __ATOMIC_SEQ_CST); /* W2 */
		bool chosen;

		__atomic_thread_fence(__ATOMIC_SEQ_CST);    /* W3 */
		rc = try_recover(ch, try, maxlen, peek, c); /* W4 */
		if (rc == -EAGAIN && DCHAN__LOADR(&ch->hdr->destroyed))
			rc = -DCHAN_E_DESTROYED;
		if (rc == -EAGAIN && dchan__expired(dlp))
			rc = -ETIMEDOUT;
		/* W5: not armed, a peer chose us after W1: look again */
		if (rc == -EAGAIN && dchan__waiter_armed(ch->hdr, kind, idx))
			sleep_on(word, v, idx, dlp, c->blocker != 0); /* W6 */
		chosen = dchan__waiter_del(ch->hdr, kind, idx);
		if (idx < 0)
			chosen = rc != 0 &&
				 __atomic_load_n(word, __ATOMIC_RELAXED) != v;
		if (rc == -EAGAIN && chosen) {
			/* woken for a change: look before registering again,
			 * so that the peer's next change finds no bit */
			rc = try_recover(ch, try, maxlen, peek, c);
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

static int wait_error(dchan_t *ch, int rc, const char *what)
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
	int rc = first_try(ch, try_put, 0, false, timeout_ns, c);

	if (rc == -EAGAIN && timeout_ns)
		rc = block_wait(ch, try_put, 0, false, timeout_ns, c,
				&ch->hdr->space_seq, DCHAN__WAIT_SEND, true);
	if (rc < 0)
		return wait_error(ch, rc, "full");
	return rc;
}

/* Claim the oldest message, waiting up to timeout_ns. */
int dchan__get_wait(dchan_t *ch, size_t maxlen, bool peek, uint64_t timeout_ns,
		    struct dchan__claim *c)
{
	int rc = first_try(ch, dchan__get_claim, maxlen, peek, timeout_ns, c);

	if (rc == -EAGAIN && timeout_ns)
		rc = block_wait(ch, dchan__get_claim, maxlen, peek, timeout_ns,
				c, &ch->hdr->data_seq, DCHAN__WAIT_RECV, true);
	if (rc == -EMSGSIZE)
		return dchan__fail(rc,
				   "channel %016llx: the next message is "
				   "longer than the %zu-byte buffer",
				   (unsigned long long)ch->desc.chan_uid,
				   maxlen);
	if (rc < 0)
		return wait_error(ch, rc, "empty");
	return rc;
}

/*
 * Pacing of large copied messages.  A channel holds up to its capacity of
 * messages, and a sender of large copied messages that runs ahead of its
 * receiver fills all of it: at 1 MiB a message and the default 128 slots
 * that is 128 MiB in flight, far more than the caches hold, so the
 * receiver reads every message from memory and the sender writes into
 * blocks that left the caches long ago (copying 1 MiB at a time then runs
 * at about half the speed of a ring of a few slots).  So a blocking send
 * of a message of DCHAN__PACE_MIN bytes or more first waits, while the
 * channel holds DCHAN__PACE_BYTES or more of such messages, for the
 * receiver to take one; the block it then copies into is usually the one
 * the receiver has just freed, still in the caches.
 *
 * Pacing never makes a send fail or wait for a receiver that is not
 * receiving: it waits at most DCHAN__PACE_WAIT_NS (and never past the
 * send's own timeout), and after a wait in which the receiver took
 * nothing, the handle does not pace again until the receiver has moved.
 * A try-once send is never paced.
 */
static int try_paced(dchan_t *ch, size_t limit, bool peek,
		     struct dchan__claim *c)
{
	struct dchan__hdr *h = ch->hdr;
	uint64_t tail = DCHAN__LOAD(&h->tail);
	uint64_t head = DCHAN__LOAD(&h->head);

	(void)peek;
	c->blocker = 0;
	return (int64_t)(head - tail) < (int64_t)limit ? 0 : -EAGAIN;
}

void dchan__pace(dchan_t *ch, size_t len, uint64_t timeout_ns)
{
	uint64_t tail = DCHAN__LOADR(&ch->hdr->tail);
	size_t limit = DCHAN__PACE_BYTES / (len ? len : 1);
	struct dchan__claim c;
	int rc;

	if (len < DCHAN__PACE_MIN || !timeout_ns || limit >= ch->cap)
		return;
	if (tail + 1 == __atomic_load_n(&ch->pace_stall, __ATOMIC_RELAXED))
		return; /* the receiver has not moved since it last stalled */
	if (limit < 2)
		limit = 2;
	if (try_paced(ch, limit, false, &c) == 0)
		return;
	if (timeout_ns > DCHAN__PACE_WAIT_NS)
		timeout_ns = DCHAN__PACE_WAIT_NS;
	rc = block_wait(ch, try_paced, limit, false, timeout_ns, &c,
			&ch->hdr->space_seq, DCHAN__WAIT_SEND, false);
	if (rc == -ETIMEDOUT && DCHAN__LOADR(&ch->hdr->tail) == tail)
		__atomic_store_n(&ch->pace_stall, tail + 1, __ATOMIC_RELAXED);
}
