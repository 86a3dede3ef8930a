/*
 * Watch sets: readiness of many local channels as one file descriptor.
 *
 * An event loop that parks operations on channels (the transport agent
 * parks remote receives, sends and lock acquisitions) cannot give each a
 * thread sleeping in dchan_recv.  A watch set has one helper thread that
 * registers as a poller on every channel of the set, checks them, and
 * sleeps on all their event words and on the set's own control word at
 * once (futex_waitv).  A channel found ready is reported through an
 * eventfd and left out of the sleep until the owner takes the report, so
 * a ready channel costs one wake-up, not a spin.  Publishers bump a
 * channel's event word only while a poller is registered, so channels
 * nobody remote waits on pay nothing.
 */
#include "config.h"
#include "dchan_private.h"

#include <linux/futex.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef FUTEX_PRIVATE_FLAG
#define FUTEX_PRIVATE_FLAG 128
#endif

#define DCHAN__WATCH_STUCK_NS 1000000ull /* a slot held mid-operation */

struct dchan__witem {
	dchan_t *ch;
	unsigned events;
	void *cookie;
	bool reported; /* ready, not yet taken: out of the helper's sleep */
	bool held;     /* polled by the owner itself: out of the sleep */
};

struct dchan_watch {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct dchan__witem item[DCHAN_WATCH_MAX];
	size_t n;
	uint32_t ctl;	   /* bumped and woken on every change of the set */
	uint32_t done_ctl; /* ctl value of the helper's last finished round */
	bool in_round;	   /* the helper uses the channels of round_ctl */
	uint32_t round_ctl;
	bool stop;
	int efd;
	pthread_t thr;
};

/* Make the helper look at the set again (call with mu held). */
static void dchan__watch_poke(dchan_watch_t *w)
{
	__atomic_add_fetch(&w->ctl, 1, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, &w->ctl, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static unsigned dchan__watch_ready(dchan_t *ch, unsigned events, bool *stuck)
{
	struct dchan__claim blk = {0};
	unsigned r = 0;

	if (__atomic_load_n(&ch->hdr->destroyed, __ATOMIC_RELAXED))
		return events; /* the retry will say it was destroyed */
	if ((events & DCHAN_POLLIN) && dchan__readable(ch, &blk))
		r |= DCHAN_POLLIN;
	else if ((events & DCHAN_POLLIN) && blk.blocker)
		*stuck |= !dchan__recover(ch, &blk);
	blk.blocker = 0;
	if ((events & DCHAN_POLLOUT) && dchan__writable(ch, &blk))
		r |= DCHAN_POLLOUT;
	else if ((events & DCHAN_POLLOUT) && blk.blocker)
		*stuck |= !dchan__recover(ch, &blk);
	return r;
}

/* One sleep on the control word and the channels' event words. */
static void dchan__watch_sleep(dchan_watch_t *w, uint32_t c, dchan_t **chs,
			       const uint32_t *v, size_t k, bool stuck)
{
	static int no_waitv;
	struct futex_waitv fw[DCHAN_WATCH_MAX + 1];
	struct timespec dl, *dlp = NULL;
	long rc = -1;

	if (stuck || __atomic_load_n(&no_waitv, __ATOMIC_RELAXED)) {
		dmem_deadline_after(DCHAN__WATCH_STUCK_NS, &dl);
		dlp = &dl;
	}
	if (!__atomic_load_n(&no_waitv, __ATOMIC_RELAXED)) {
		fw[0] = (struct futex_waitv){.val = c,
					     .uaddr = (uintptr_t)&w->ctl,
					     .flags = FUTEX_32 |
						      FUTEX_PRIVATE_FLAG};
		for (size_t i = 0; i < k; i++)
			fw[i + 1] = (struct futex_waitv){
				.val = v[i],
				.uaddr = (uintptr_t)&chs[i]->hdr->ev_seq,
				.flags = FUTEX_32};
		rc = syscall(__NR_futex_waitv, fw, (unsigned)(k + 1), 0, dlp,
			     CLOCK_MONOTONIC);
		if (rc < 0 && errno == ENOSYS)
			__atomic_store_n(&no_waitv, 1, __ATOMIC_RELAXED);
	}
	if (rc < 0 && __atomic_load_n(&no_waitv, __ATOMIC_RELAXED)) {
		/* no vectored wait: sleep on the control word, briefly */
		dmem_deadline_after(DCHAN__WATCH_STUCK_NS, &dl);
		dmem_futex_wait(&w->ctl, c, &dl);
	}
}

/* Report the channels of this round found ready (their cookies stay in
 * the set until dchan_watch_take). */
static void dchan__watch_report(dchan_watch_t *w, dchan_t **chs,
				const bool *ready, size_t k)
{
	uint64_t one = 1;
	bool any = false;

	pthread_mutex_lock(&w->mu);
	for (size_t i = 0; i < k; i++) {
		for (size_t j = 0; ready[i] && j < w->n; j++) {
			if (w->item[j].ch == chs[i] && !w->item[j].reported) {
				w->item[j].reported = true;
				any = true;
			}
		}
	}
	pthread_mutex_unlock(&w->mu);
	if (any && write(w->efd, &one, sizeof one) < 0) {
		/* the counter is far from overflowing: cannot fail */
	}
}

/* One round: register, check, sleep unless something is ready. */
static void dchan__watch_round(dchan_watch_t *w)
{
	dchan_t *chs[DCHAN_WATCH_MAX];
	unsigned ev[DCHAN_WATCH_MAX];
	uint32_t v[DCHAN_WATCH_MAX], c;
	int idx[DCHAN_WATCH_MAX];
	bool ready[DCHAN_WATCH_MAX], stuck = false, any = false, armed = true;
	size_t k = 0;

	pthread_mutex_lock(&w->mu);
	c = __atomic_load_n(&w->ctl, __ATOMIC_SEQ_CST);
	for (size_t j = 0; j < w->n; j++) {
		if (w->item[j].reported || w->item[j].held)
			continue;
		chs[k] = w->item[j].ch;
		ev[k++] = w->item[j].events;
	}
	w->in_round = true;
	w->round_ctl = c;
	pthread_mutex_unlock(&w->mu);

	for (size_t i = 0; i < k; i++)
		idx[i] = dchan__waiter_add(chs[i]->hdr, DCHAN__WAIT_EV);
	for (size_t i = 0; i < k; i++)
		v[i] = __atomic_load_n(&chs[i]->hdr->ev_seq, __ATOMIC_SEQ_CST);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	for (size_t i = 0; i < k; i++) {
		ready[i] = dchan__watch_ready(chs[i], ev[i], &stuck) != 0;
		any |= ready[i];
		armed &= dchan__waiter_armed(chs[i]->hdr, DCHAN__WAIT_EV,
					     idx[i]);
	}
	if (any)
		dchan__watch_report(w, chs, ready, k);
	else if (armed)
		dchan__watch_sleep(w, c, chs, v, k, stuck);
	for (size_t i = 0; i < k; i++)
		dchan__waiter_del(chs[i]->hdr, DCHAN__WAIT_EV, idx[i]);

	pthread_mutex_lock(&w->mu);
	w->in_round = false;
	w->done_ctl = c;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static void *dchan__watch_main(void *arg)
{
	dchan_watch_t *w = arg;

	for (;;) {
		pthread_mutex_lock(&w->mu);
		bool stop = w->stop;

		pthread_mutex_unlock(&w->mu);
		if (stop)
			return NULL;
		dchan__watch_round(w);
	}
}

DCHAN_EXPORT int dchan_watch_create(dchan_watch_t **watch_out)
{
	dchan_watch_t *w;
	int rc;

	if (!watch_out)
		return dchan__fail(-EINVAL, "NULL output");
	w = calloc(1, sizeof *w);
	if (!w)
		return dchan__fail(-ENOMEM, "no memory for a watch set");
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->efd < 0) {
		rc = dchan__fail(-errno, "eventfd for a watch set failed");
		goto fail_efd;
	}
	rc = -pthread_create(&w->thr, NULL, dchan__watch_main, w);
	if (rc < 0) {
		dchan__fail(rc, "cannot start a watch set's helper thread");
		goto fail_thr;
	}
	*watch_out = w;
	return 0;
fail_thr:
	close(w->efd);
fail_efd:
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
	return rc;
}

DCHAN_EXPORT int dchan_watch_fd(const dchan_watch_t *watch)
{
	return watch ? watch->efd : dchan__fail(-EINVAL, "NULL watch set");
}

DCHAN_EXPORT int dchan_watch_add(dchan_watch_t *w, dchan_t *ch, unsigned events,
				 void *cookie)
{
	size_t j;
	int rc = 0;

	if (!w || !ch || !(events & (DCHAN_POLLIN | DCHAN_POLLOUT)))
		return dchan__fail(-EINVAL, "NULL watch/channel or no events");
	if (ch->remote)
		return dchan__fail(-DCHAN_E_REMOTE,
				   "only local channels can be watched");
	pthread_mutex_lock(&w->mu);
	for (j = 0; j < w->n && w->item[j].ch != ch; j++)
		;
	if (j == w->n && w->n == DCHAN_WATCH_MAX)
		rc = dchan__fail(-ENOSPC, "a watch set holds %d channels",
				 DCHAN_WATCH_MAX);
	if (rc == 0) {
		if (j == w->n)
			w->n++;
		w->item[j] = (struct dchan__witem){
			.ch = ch, .events = events, .cookie = cookie};
		dchan__watch_poke(w);
	}
	pthread_mutex_unlock(&w->mu);
	return rc;
}

DCHAN_EXPORT int dchan_watch_del(dchan_watch_t *w, dchan_t *ch)
{
	uint32_t mine;
	size_t j;

	if (!w || !ch)
		return dchan__fail(-EINVAL, "NULL watch set or channel");
	pthread_mutex_lock(&w->mu);
	for (j = 0; j < w->n && w->item[j].ch != ch; j++)
		;
	if (j == w->n) {
		pthread_mutex_unlock(&w->mu);
		return dchan__fail(-ENOENT, "channel is not in the watch set");
	}
	w->item[j] = w->item[--w->n];
	dchan__watch_poke(w);
	mine = __atomic_load_n(&w->ctl, __ATOMIC_SEQ_CST);
	/* the caller may free the channel next: wait out a round using it */
	while (w->in_round && (int32_t)(w->round_ctl - mine) < 0)
		pthread_cond_wait(&w->cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
	return 0;
}

/*
 * An event loop busy with one channel's traffic polls it itself between
 * its other events; while it does, the helper leaves the channel out of
 * its sleep, so the channel's publishers stop paying a futex wake-up per
 * message and the owner does not pay the helper's round and an eventfd
 * per message either.  Taking the hold off puts the channel back into the
 * helper's next round (which reports it at once if it is ready), so no
 * change is lost between the owner's last look and the helper's first.
 */
DCHAN_EXPORT int dchan_watch_hold(dchan_watch_t *w, dchan_t *ch, int hold)
{
	size_t j;

	if (!w || !ch)
		return dchan__fail(-EINVAL, "NULL watch set or channel");
	pthread_mutex_lock(&w->mu);
	for (j = 0; j < w->n && w->item[j].ch != ch; j++)
		;
	if (j == w->n) {
		pthread_mutex_unlock(&w->mu);
		return dchan__fail(-ENOENT, "channel is not in the watch set");
	}
	if (w->item[j].held != (hold != 0)) {
		w->item[j].held = hold != 0;
		/* a held channel drops out of the helper's next round by
		 * itself; a released one needs the helper to look now */
		if (!hold)
			dchan__watch_poke(w);
	}
	pthread_mutex_unlock(&w->mu);
	return 0;
}

DCHAN_EXPORT int dchan_watch_take(dchan_watch_t *w, void **cookies, size_t max)
{
	uint64_t cnt, one = 1;
	bool more = false;
	int n = 0;

	if (!w || (!cookies && max))
		return dchan__fail(-EINVAL, "NULL watch set or output");
	pthread_mutex_lock(&w->mu);
	if (read(w->efd, &cnt, sizeof cnt) < 0) {
		/* nothing counted: fine, look anyway */
	}
	for (size_t j = 0; j < w->n; j++) {
		if (!w->item[j].reported)
			continue;
		if ((size_t)n == max) {
			more = true;
			break;
		}
		w->item[j].reported = false;
		cookies[n++] = w->item[j].cookie;
	}
	if (n)
		dchan__watch_poke(w);
	if (more && write(w->efd, &one, sizeof one) < 0) {
		/* cannot overflow */
	}
	pthread_mutex_unlock(&w->mu);
	return n;
}

DCHAN_EXPORT int dchan_watch_destroy(dchan_watch_t *w)
{
	if (!w)
		return 0;
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	dchan__watch_poke(w);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thr, NULL);
	close(w->efd);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
	return 0;
}
