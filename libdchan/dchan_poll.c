/*
 * Readiness: poll on one channel or on a set.
 *
 * Every channel header has an event word (ev_seq) that senders and
 * receivers bump, and wake, whenever ev_waiters says a poller is
 * registered (a peer clears the bits of the pollers it wakes, so that
 * later changes make no wake-up call until they have run; dchan_waiters.c).
 * A poller registers on every channel of its set, re-checks them all, and
 * then (when no peer has woken it meanwhile) sleeps on all their event
 * words at once with the kernel's vectored futex wait (futex_waitv, Linux
 * 5.16).  libdmem's wait/wake covers one word; on a kernel without
 * futex_waitv the set falls back to sleeping on the first channel's word
 * with a short bound.
 */
#include "config.h"
#include "dchan_private.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DCHAN__POLL_MAX	   128
#define DCHAN__FALLBACK_NS 1000000ull

static unsigned ready_events(dchan_t *ch, unsigned events, bool *stuck)
{
	struct dchan__claim blk = {0};
	unsigned r = 0;

	if ((events & DCHAN_POLLIN) && dchan__readable(ch, &blk))
		r |= DCHAN_POLLIN;
	else if ((events & DCHAN_POLLIN) && blk.blocker &&
		 dchan__recover(ch, &blk))
		return ready_events(ch, events, stuck);
	else if (events & DCHAN_POLLIN)
		*stuck |= blk.blocker != 0;
	blk.blocker = 0;
	if ((events & DCHAN_POLLOUT) && dchan__writable(ch, &blk))
		r |= DCHAN_POLLOUT;
	else if ((events & DCHAN_POLLOUT) && blk.blocker &&
		 dchan__recover(ch, &blk))
		return ready_events(ch, events, stuck);
	else if (events & DCHAN_POLLOUT)
		*stuck |= blk.blocker != 0;
	return r;
}

/* Readiness of every item; returns how many are ready. */
static int scan_items(dchan_pollitem_t *items, size_t n, bool *stuck)
{
	int nready = 0;

	for (size_t i = 0; i < n; i++) {
		items[i].revents =
			ready_events(items[i].ch, items[i].events, stuck);
		nready += items[i].revents != 0;
	}
	return nready;
}

static int waitv(dchan_pollitem_t *items, size_t n, const uint32_t *v,
		 const struct timespec *dl, bool stuck)
{
	static int no_waitv;
	struct futex_waitv w[DCHAN__POLL_MAX];
	struct timespec shortdl;
	long rc;

	if (stuck || __atomic_load_n(&no_waitv, __ATOMIC_RELAXED)) {
		dmem_deadline_after(DCHAN__FALLBACK_NS, &shortdl);
		if (!dl || shortdl.tv_sec < dl->tv_sec ||
		    (shortdl.tv_sec == dl->tv_sec &&
		     shortdl.tv_nsec < dl->tv_nsec))
			dl = &shortdl;
	}
	if (n == 1 || __atomic_load_n(&no_waitv, __ATOMIC_RELAXED))
		return dmem_futex_wait(&items[0].ch->hdr->ev_seq, v[0], dl);
	for (size_t i = 0; i < n; i++) {
		w[i].val = v[i];
		w[i].uaddr = (uintptr_t)&items[i].ch->hdr->ev_seq;
		w[i].flags = FUTEX_32;
		w[i].__reserved = 0;
	}
	rc = syscall(__NR_futex_waitv, w, (unsigned)n, 0, dl, CLOCK_MONOTONIC);
	if (rc < 0 && errno == ENOSYS) {
		__atomic_store_n(&no_waitv, 1, __ATOMIC_RELAXED);
		return waitv(items, n, v, dl, true);
	}
	return rc < 0 ? -errno : 0;
}

/* Checks the items; returns how many are remote. */
static int poll_check(dchan_pollitem_t *items, size_t n)
{
	int nremote = 0;

	if (!items || n == 0 || n > DCHAN__POLL_MAX)
		return dchan__fail(-EINVAL, "poll needs 1..%d items, got %zu",
				   DCHAN__POLL_MAX, n);
	for (size_t i = 0; i < n; i++) {
		if (!items[i].ch)
			return dchan__fail(-EINVAL,
					   "poll item %zu has no "
					   "channel",
					   i);
		if (items[i].ch->remote)
			nremote++;
		else if (dchan__check_local(items[i].ch) < 0)
			return -DCHAN_E_DESTROYED;
	}
	return nremote;
}

static int poll_round(dchan_pollitem_t *items, size_t n,
		      const struct timespec *dlp)
{
	uint32_t v[DCHAN__POLL_MAX];
	int idx[DCHAN__POLL_MAX];
	bool stuck = false, armed = true;
	int nready;

	for (size_t i = 0; i < n; i++)
		idx[i] = dchan__waiter_add(items[i].ch->hdr, DCHAN__WAIT_EV);
	for (size_t i = 0; i < n; i++)
		v[i] = __atomic_load_n(&items[i].ch->hdr->ev_seq,
				       __ATOMIC_SEQ_CST);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	nready = scan_items(items, n, &stuck);
	/* a cleared bit: a peer has woken us already (its bump may have come
	 * before we read v, and it will not wake us again), so look again */
	for (size_t i = 0; i < n; i++)
		armed &= dchan__waiter_armed(items[i].ch->hdr, DCHAN__WAIT_EV,
					     idx[i]);
	if (nready == 0 && armed && !dchan__expired(dlp))
		waitv(items, n, v, dlp, stuck);
	for (size_t i = 0; i < n; i++)
		dchan__waiter_del(items[i].ch->hdr, DCHAN__WAIT_EV, idx[i]);
	return nready;
}

/* ---- sets with remote channels ------------------------------------------ */
/*
 * The remote items are polled through the gateway, all at once, with the
 * completions coming to one local reply channel, which the set then waits
 * on beside its local channels.  The first round tries every item once
 * (so a set already ready reports all its ready items, as poll(2) does);
 * later rounds post remote polls that wait at most DCHAN__POLL_SLICE_NS,
 * so that when a local channel (or another remote one) wins, the polls
 * left behind end at their nodes' agents within the slice rather than
 * waiting there forever.
 */
#define DCHAN__POLL_SLICE_NS 500000000ull
#define DCHAN__POLL_GRACE_NS 30000000000ull /* the servicer's slack */

struct mixed {
	dchan_pollitem_t *items;
	size_t n, nlocal, nremote;
	dchan_pollitem_t loc[DCHAN__POLL_MAX]; /* local items, then reply */
	size_t lidx[DCHAN__POLL_MAX], ridx[DCHAN__POLL_MAX];
	uint64_t ids[DCHAN__POLL_MAX];
	bool answered[DCHAN__POLL_MAX];
	size_t unanswered;
	dchan_t *reply;
};

static void ns_to_ts(uint64_t ns, struct timespec *ts)
{
	ts->tv_sec = (time_t)(ns / 1000000000ull);
	ts->tv_nsec = (long)(ns % 1000000000ull);
}

/* Post this round's remote polls, each waiting at most slice. */
static int mixed_post(struct mixed *m, uint64_t slice)
{
	int rc = dchan__gw_pollset_begin((unsigned)m->nremote, &m->reply);

	for (size_t k = 0; rc == 0 && k < m->nremote; k++) {
		dchan_pollitem_t *it = &m->items[m->ridx[k]];

		it->revents = 0;
		m->answered[k] = false;
		rc = dchan__gw_poll_post(it->ch, it->events, slice, m->reply,
					 &m->ids[k]);
		if (rc == 0)
			m->unanswered++;
	}
	return rc;
}

/* Take the completions that arrived; 0, or the error of a remote item. */
static int mixed_collect(struct mixed *m)
{
	uint64_t id;
	unsigned rev;
	int st;

	while (dchan__gw_poll_take(m->reply, 0, &id, &rev, &st) == 0) {
		size_t k;

		for (k = 0; k < m->nremote; k++)
			if (m->ids[k] == id && !m->answered[k])
				break;
		if (k == m->nremote)
			continue; /* a late answer of an earlier round */
		m->answered[k] = true;
		m->unanswered--;
		if (st == 0)
			m->items[m->ridx[k]].revents =
				rev & m->items[m->ridx[k]].events;
		else if (st != -EAGAIN && st != -ETIMEDOUT) {
			dchan_t *ch = m->items[m->ridx[k]].ch;

			return dchan__fail(
				st,
				"poll item %zu, channel %016llx of "
				"node %llu: %s",
				m->ridx[k],
				(unsigned long long)ch->desc.chan_uid,
				(unsigned long long)ch->desc.node_id,
				dchan_strerror(st));
		}
	}
	return 0;
}

/* Ready items now: the remote answers so far and a scan of the local. */
static int mixed_count(struct mixed *m)
{
	bool stuck = false;
	int nready = 0;

	for (size_t k = 0; k < m->nlocal; k++) {
		dchan_pollitem_t *it = &m->items[m->lidx[k]];

		it->revents = ready_events(it->ch, it->events, &stuck);
	}
	for (size_t i = 0; i < m->n; i++)
		nready += m->items[i].revents != 0;
	return nready;
}

/* Sleep until a local item or the reply channel changes, or until. */
static void mixed_sleep(struct mixed *m, uint64_t until)
{
	struct timespec dl;

	for (size_t k = 0; k < m->nlocal; k++)
		m->loc[k] = m->items[m->lidx[k]];
	m->loc[m->nlocal] =
		(dchan_pollitem_t){.ch = m->reply, .events = DCHAN_POLLIN};
	ns_to_ts(until, &dl);
	poll_round(m->loc, m->nlocal + 1, until == UINT64_MAX ? NULL : &dl);
}

/* One round: post, then wait for an answer of each remote poll or for
 * anything ready.  Returns the ready count, 0 for none, or an error. */
static int mixed_round(struct mixed *m, uint64_t slice, bool all)
{
	uint64_t bound = dchan__now_ns() + slice + DCHAN__POLL_GRACE_NS;
	int rc = mixed_post(m, slice);

	for (;;) {
		if (rc == 0)
			rc = mixed_collect(m);
		if (rc < 0)
			return rc;
		rc = mixed_count(m);
		if (rc > 0 && (!all || m->unanswered == 0))
			return rc;
		if (m->unanswered == 0)
			return 0;
		if (dchan__now_ns() >= bound)
			return dchan__fail(-EHOSTUNREACH,
					   "the gateway's servicer did not "
					   "answer a poll");
		if (poll_check(m->items, m->n) < 0)
			return -DCHAN_E_DESTROYED;
		mixed_sleep(m, bound);
		rc = 0;
	}
}

static int poll_mixed(dchan_pollitem_t *items, size_t n, uint64_t timeout_ns)
{
	struct mixed *m = calloc(1, sizeof *m);
	uint64_t end = timeout_ns >= DCHAN_FOREVER - dchan__now_ns()
			       ? UINT64_MAX
			       : dchan__now_ns() + timeout_ns;
	int rc;

	if (!m)
		return dchan__fail(-ENOMEM, "no memory for a poll set");
	m->items = items;
	m->n = n;
	for (size_t i = 0; i < n; i++) {
		items[i].revents = 0;
		if (items[i].ch->remote)
			m->ridx[m->nremote++] = i;
		else
			m->lidx[m->nlocal++] = i;
	}
	rc = mixed_round(m, 0, true);
	while (rc == 0 && timeout_ns != 0) {
		uint64_t now = dchan__now_ns();

		if (now >= end)
			break;
		rc = mixed_round(m,
				 end - now < DCHAN__POLL_SLICE_NS
					 ? end - now
					 : DCHAN__POLL_SLICE_NS,
				 false);
	}
	free(m);
	if (rc == 0)
		return dchan__fail(timeout_ns ? -ETIMEDOUT : -EAGAIN,
				   "no channel became ready in time");
	return rc;
}

DCHAN_EXPORT int dchan_poll_many(dchan_pollitem_t *items, size_t n,
				 uint64_t timeout_ns)
{
	const struct timespec *dlp;
	struct timespec dl;
	bool stuck = false;
	int rc;

	rc = poll_check(items, n);
	if (rc < 0)
		return rc;
	if (rc > 0)
		return poll_mixed(items, n, timeout_ns);
	rc = scan_items(items, n, &stuck);
	if (rc || timeout_ns == 0)
		return rc ? rc : dchan__fail(-EAGAIN, "no channel is ready");
	rc = dchan__deadline(timeout_ns, &dl, &dlp);
	if (rc < 0)
		return rc;
	for (;;) {
		rc = poll_round(items, n, dlp);
		if (rc)
			return rc;
		if (poll_check(items, n) < 0)
			return -DCHAN_E_DESTROYED;
		rc = scan_items(items, n, &stuck);
		if (rc)
			return rc;
		if (dchan__expired(dlp))
			return dchan__fail(-ETIMEDOUT, "no channel became "
						       "ready in time");
	}
}

DCHAN_EXPORT int dchan_poll(dchan_t *ch, unsigned events, uint64_t timeout_ns,
			    unsigned *revents_out)
{
	dchan_pollitem_t it = {.ch = ch, .events = events};
	int rc;

	if (!ch || !revents_out || !(events & (DCHAN_POLLIN | DCHAN_POLLOUT)))
		return dchan__fail(-EINVAL, "NULL channel/output or no events");
	if (ch->remote)
		return dchan__gw_poll(ch, events, timeout_ns, revents_out);
	rc = dchan_poll_many(&it, 1, timeout_ns);
	if (rc < 0)
		return rc;
	*revents_out = it.revents;
	return 0;
}

/* The numbers of a local channel; `sweep`: first take back the waiter
 * counts of dead processes (reading /proc for each noted waiter). */
static int local_stats(dchan_t *ch, dchan_stats_t *st, bool sweep)
{
	struct dchan__hdr *h;
	uint64_t head, tail;
	int rc;

	if (!ch || !st)
		return dchan__fail(-EINVAL, "NULL channel or output");
	if (ch->remote)
		return dchan__gw_stats(ch, st);
	rc = dchan__check_local(ch);
	if (rc < 0)
		return rc;
	h = ch->hdr;
	if (sweep)
		dchan__waiter_sweep(h);
	memset(st, 0, sizeof *st);
	tail = DCHAN__LOAD(&h->tail);
	head = DCHAN__LOAD(&h->head);
	st->count = head > tail ? head - tail : 0;
	if (st->count > ch->cap)
		st->count = ch->cap;
	st->capacity = ch->cap;
	st->slot_size = ch->slot_size;
	st->blocked_senders = dchan__waiter_count(h, DCHAN__WAIT_SEND);
	st->blocked_receivers = dchan__waiter_count(h, DCHAN__WAIT_RECV);
	/* positions ever claimed: no counter of its own on the fast path */
	st->sent = head;
	st->received = tail;
	st->recovered = DCHAN__LOADR(&h->recovered);
	st->object = h->obj_kind;
	st->object_param = h->aux[0];
	return 0;
}

DCHAN_EXPORT int dchan_stats(dchan_t *ch, dchan_stats_t *st)
{
	return local_stats(ch, st, true);
}

DCHAN_EXPORT int64_t dchan_count(dchan_t *ch)
{
	dchan_stats_t st;
	int rc = local_stats(ch, &st, false);

	return rc < 0 ? rc : (int64_t)st.count;
}

DCHAN_EXPORT int64_t dchan_capacity(dchan_t *ch)
{
	dchan_stats_t st;
	int rc = local_stats(ch, &st, false);

	return rc < 0 ? rc : (int64_t)st.capacity;
}
