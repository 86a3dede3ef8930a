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
 *
 * The helper costs a hop: a publisher wakes the helper, which wakes the
 * owner through the eventfd.  An owner that sleeps in dchan_watch_wait
 * instead does the helper's round itself and sleeps on the channels'
 * event words and its own descriptor at once (io_uring: a vectored futex
 * wait beside a poll), so a publisher wakes it directly.  The helper then
 * never starts: it starts at the first dchan_watch_fd, or where io_uring
 * cannot wait on futexes (before Linux 6.7, or forbidden by a seccomp
 * filter), in which case dchan_watch_wait polls the descriptor and the
 * helper's eventfd.
 */
#include "config.h"
#include "dchan_private.h"

#include <linux/futex.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
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

/* A small io_uring of the owner's waits (dchan_watch_wait). */
struct dchan__ring {
	int fd;
	unsigned *sq_tail, *sq_mask, *sq_array;
	unsigned *cq_head, *cq_tail, *cq_mask;
	struct io_uring_sqe *sqes;
	struct io_uring_cqe *cqes;
	void *map, *sqe_map;
	size_t map_len, sqe_len;
	/* the waits left in from earlier sleeps (user_data, 0: none): the
	 * futex vector over fut_addr, the poll of poll_fd */
	uint64_t gen, fut_ud, poll_ud;
	int poll_fd;
	uint32_t fut_members; /* the set's members then */
	size_t fut_n;
	uint64_t fut_addr[DCHAN_WATCH_MAX + 1];
};

struct dchan_watch {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct dchan__witem item[DCHAN_WATCH_MAX];
	size_t n;
	uint32_t ctl;	   /* bumped and woken on every change of the set */
	uint32_t members;  /* bumped on every add and del */
	uint32_t done_ctl; /* ctl value of the helper's last finished round */
	bool in_round;	   /* the helper uses the channels of round_ctl */
	uint32_t round_ctl;
	bool stop;
	int efd;
	pthread_t thr;
	bool helper;		  /* the helper thread runs */
	bool ring_tried;	  /* the ring was set up, or could not be */
	struct dchan__ring *ring; /* NULL: the owner waits through the helper */
};

static void *dchan__watch_main(void *arg);

/* Make the helper, or the owner in dchan_watch_wait, look at the set
 * again (call with mu held).  Nobody sleeps on ctl outside a round; the
 * owner's ring may still hold a wait on it (dchan__ring_wait), so the
 * wake is for all, lest that one take the helper's. */
static void dchan__watch_poke(dchan_watch_t *w)
{
	__atomic_add_fetch(&w->ctl, 1, __ATOMIC_SEQ_CST);
	if (w->helper || w->in_round)
		syscall(SYS_futex, &w->ctl, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL,
			NULL, 0);
}

/* Start the helper thread once (call with mu held). */
static int dchan__watch_helper(dchan_watch_t *w)
{
	int rc;

	if (w->helper)
		return 0;
	rc = -pthread_create(&w->thr, NULL, dchan__watch_main, w);
	if (rc < 0)
		return dchan__fail(rc, "cannot start a watch set's helper "
				       "thread");
	w->helper = true;
	return 0;
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
				const bool *ready, size_t k, bool signal)
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
	if (signal && any && write(w->efd, &one, sizeof one) < 0) {
		/* the counter is far from overflowing: cannot fail */
	}
}

/* The owner's wait (dchan_watch_wait): its descriptor and time. */
struct dchan__owner {
	int fd;
	int timeout_ms;
};

static int dchan__ring_wait(struct dchan__ring *r, const struct futex_waitv *fw,
			    size_t nfw, uint32_t members, int fd,
			    int timeout_ms);

/* The owner sleeps on the control word, the channels' event words and
 * its descriptor at once. */
static void dchan__watch_owner_sleep(dchan_watch_t *w, uint32_t c,
				     uint32_t members, dchan_t **chs,
				     const uint32_t *v, size_t k, bool stuck,
				     const struct dchan__owner *ow)
{
	struct futex_waitv fw[DCHAN_WATCH_MAX + 1];
	int tmo = ow->timeout_ms;

	fw[0] = (struct futex_waitv){.val = c,
				     .uaddr = (uintptr_t)&w->ctl,
				     .flags = FUTEX_32 | FUTEX_PRIVATE_FLAG};
	for (size_t i = 0; i < k; i++)
		fw[i + 1] = (struct futex_waitv){
			.val = v[i],
			.uaddr = (uintptr_t)&chs[i]->hdr->ev_seq,
			.flags = FUTEX_32};
	if (stuck && (tmo < 0 || tmo > 1)) /* DCHAN__WATCH_STUCK_NS */
		tmo = 1;
	dchan__ring_wait(w->ring, fw, k + 1, members, ow->fd, tmo);
}

/* One round: register, check, sleep unless something is ready; the
 * helper's (ow NULL) or the owner's.  Returns the channels reported. */
static int dchan__watch_round(dchan_watch_t *w, const struct dchan__owner *ow)
{
	dchan_t *chs[DCHAN_WATCH_MAX];
	unsigned ev[DCHAN_WATCH_MAX];
	uint32_t v[DCHAN_WATCH_MAX], c, members;
	int idx[DCHAN_WATCH_MAX], nready = 0;
	bool ready[DCHAN_WATCH_MAX], stuck = false, armed = true;
	size_t k = 0;

	pthread_mutex_lock(&w->mu);
	c = __atomic_load_n(&w->ctl, __ATOMIC_SEQ_CST);
	members = w->members;
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
		nready += ready[i];
		armed &= dchan__waiter_armed(chs[i]->hdr, DCHAN__WAIT_EV,
					     idx[i]);
	}
	if (nready)
		dchan__watch_report(w, chs, ready, k, !ow);
	else if (armed && !ow)
		dchan__watch_sleep(w, c, chs, v, k, stuck);
	else if (armed && ow->timeout_ms != 0)
		dchan__watch_owner_sleep(w, c, members, chs, v, k, stuck, ow);
	for (size_t i = 0; i < k; i++)
		dchan__waiter_del(chs[i]->hdr, DCHAN__WAIT_EV, idx[i]);

	pthread_mutex_lock(&w->mu);
	w->in_round = false;
	w->done_ctl = c;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	return nready;
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
		dchan__watch_round(w, NULL);
	}
}

/* ---- the owner's wait: io_uring --------------------------------------- */

#ifndef IORING_OP_FUTEX_WAITV
#define IORING_OP_FUTEX_WAITV 53 /* Linux 6.7 */
#endif
#define DCHAN__RING_FUTEX  1 /* the low bits of user_data: its kind */
#define DCHAN__RING_POLL   2
#define DCHAN__RING_CANCEL 3

static void dchan__ring_close(struct dchan__ring *r)
{
	if (!r)
		return;
	if (r->sqe_map)
		munmap(r->sqe_map, r->sqe_len);
	if (r->map)
		munmap(r->map, r->map_len);
	close(r->fd);
	free(r);
}

/* Can this kernel wait on futexes through io_uring? */
static bool dchan__ring_has_futex(int fd)
{
	size_t sz = sizeof(struct io_uring_probe) +
		    256 * sizeof(struct io_uring_probe_op);
	struct io_uring_probe *pr = calloc(1, sz);
	bool ok;

	if (!pr)
		return false;
	ok = syscall(__NR_io_uring_register, fd, IORING_REGISTER_PROBE, pr,
		     256) == 0 &&
	     pr->last_op >= IORING_OP_FUTEX_WAITV &&
	     (pr->ops[IORING_OP_FUTEX_WAITV].flags & IO_URING_OP_SUPPORTED) &&
	     (pr->ops[IORING_OP_POLL_ADD].flags & IO_URING_OP_SUPPORTED) &&
	     (pr->ops[IORING_OP_ASYNC_CANCEL].flags & IO_URING_OP_SUPPORTED);
	free(pr);
	return ok;
}

/* DRAGON_DCHAN_WATCH_URING=0: never wait through io_uring, as where the
 * kernel or a seccomp filter does not allow it -- so that the path taken
 * there can be run (and tested) anywhere.  Read once per process. */
static bool dchan__ring_refused(void)
{
	static int refused = -1; /* -1: not read yet */
	int v = __atomic_load_n(&refused, __ATOMIC_RELAXED);

	if (v < 0) {
		const char *e = getenv("DRAGON_DCHAN_WATCH_URING");

		v = e && strcmp(e, "0") == 0;
		__atomic_store_n(&refused, v, __ATOMIC_RELAXED);
	}
	return v;
}

/* A ring of a few entries, or NULL where io_uring cannot do the wait. */
static struct dchan__ring *dchan__ring_open(void)
{
	struct io_uring_params p = {0};
	struct dchan__ring *r;
	unsigned char *m;

	if (dchan__ring_refused())
		return NULL;
	r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	/* a wait left in that ends while the owner runs posts its
	 * completion at the owner's next io_uring_enter, not through an
	 * interrupt of the running owner (Linux 5.19; else without) */
	p.flags = IORING_SETUP_COOP_TASKRUN;
	r->fd = (int)syscall(__NR_io_uring_setup, 8, &p);
	if (r->fd < 0 && errno == EINVAL) {
		memset(&p, 0, sizeof p);
		r->fd = (int)syscall(__NR_io_uring_setup, 8, &p);
	}
	if (r->fd < 0) {
		free(r);
		return NULL;
	}
	if (!(p.features & IORING_FEAT_SINGLE_MMAP) ||
	    !(p.features & IORING_FEAT_EXT_ARG) ||
	    !dchan__ring_has_futex(r->fd))
		goto fail;
	r->map_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	if (r->map_len < p.cq_off.cqes + p.cq_entries * sizeof(*r->cqes))
		r->map_len = p.cq_off.cqes + p.cq_entries * sizeof(*r->cqes);
	r->map = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQ_RING);
	if (r->map == MAP_FAILED) {
		r->map = NULL;
		goto fail;
	}
	r->sqe_len = p.sq_entries * sizeof(struct io_uring_sqe);
	r->sqe_map = mmap(NULL, r->sqe_len, PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
	if (r->sqe_map == MAP_FAILED) {
		r->sqe_map = NULL;
		goto fail;
	}
	m = r->map;
	r->sq_tail = (unsigned *)(m + p.sq_off.tail);
	r->sq_mask = (unsigned *)(m + p.sq_off.ring_mask);
	r->sq_array = (unsigned *)(m + p.sq_off.array);
	r->cq_head = (unsigned *)(m + p.cq_off.head);
	r->cq_tail = (unsigned *)(m + p.cq_off.tail);
	r->cq_mask = (unsigned *)(m + p.cq_off.ring_mask);
	r->cqes = (struct io_uring_cqe *)(m + p.cq_off.cqes);
	r->sqes = r->sqe_map;
	return r;
fail:
	dchan__ring_close(r);
	return NULL;
}

/* Queue one entry (the caller submits: at most a few, the ring has 8). */
static struct io_uring_sqe *dchan__ring_sqe(struct dchan__ring *r,
					    unsigned *queued)
{
	unsigned tail = *r->sq_tail + *queued, i = tail & *r->sq_mask;
	struct io_uring_sqe *e = &r->sqes[i];

	memset(e, 0, sizeof *e);
	r->sq_array[i] = i;
	(*queued)++;
	return e;
}

/* Submit what is queued and wait for min completions (timeout_ms < 0:
 * no bound); -ETIME when the time ran out first. */
static int dchan__ring_enter(struct dchan__ring *r, unsigned queued,
			     unsigned min, int timeout_ms)
{
	struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000,
				       .tv_nsec =
					       (timeout_ms % 1000) * 1000000ll};
	struct io_uring_getevents_arg arg = {0};
	long rc;

	if (timeout_ms >= 0)
		arg.ts = (uintptr_t)&ts;
	__atomic_store_n(r->sq_tail, *r->sq_tail + queued, __ATOMIC_RELEASE);
	do
		rc = syscall(__NR_io_uring_enter, r->fd, queued, min,
			     IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG,
			     &arg, sizeof arg);
	while (rc < 0 && errno == EINTR && (queued = 0, timeout_ms < 0));
	return rc < 0 ? -errno : 0;
}

/* Take the completions there are: which of the waits left in ended. */
static void dchan__ring_reap(struct dchan__ring *r)
{
	unsigned head = *r->cq_head;

	while (head != __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE)) {
		const struct io_uring_cqe *c = &r->cqes[head & *r->cq_mask];

		if (c->user_data == r->fut_ud)
			r->fut_ud = 0;
		else if (c->user_data == r->poll_ud &&
			 !(c->flags & IORING_CQE_F_MORE))
			r->poll_ud = 0;
		head++;
	}
	__atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
}

/* Take a wait left in out of the ring, and wait until it is out. */
static void dchan__ring_cancel(struct dchan__ring *r, const uint64_t *ud)
{
	while (*ud) {
		uint64_t target = *ud;
		unsigned queued = 0;
		struct io_uring_sqe *e = dchan__ring_sqe(r, &queued);

		e->opcode = IORING_OP_ASYNC_CANCEL;
		e->addr = target;
		e->user_data = DCHAN__RING_CANCEL;
		dchan__ring_enter(r, queued, 1, -1);
		dchan__ring_reap(r);
	}
}

static uint64_t dchan__ring_ud(struct dchan__ring *r, unsigned kind)
{
	return ++r->gen << 2 | kind;
}

/*
 * One sleep on nfw futexes and fd (< 0: none) for at most timeout_ms
 * (< 0: no bound); the first of the two waits to end ends the sleep.
 *
 * The other wait is left in the ring for the next sleep rather than
 * cancelled, which would cost a second io_uring_enter per wake-up.  That
 * is sound: a futex wait once queued is ended by any wake of its words,
 * whatever their values since, and the caller registers as a waiter and
 * looks at its channels before every sleep, so a vector over the same
 * words serves the next sleep as well as a new one would (the kernel
 * keeps its own copy of the vector: the caller's may go).  A vector over
 * other words, or made before a channel joined or left the set (a new
 * channel may sit where an old one was, in another segment), and a poll
 * of another descriptor are cancelled.
 */
static int dchan__ring_wait(struct dchan__ring *r, const struct futex_waitv *fw,
			    size_t nfw, uint32_t members, int fd,
			    int timeout_ms)
{
	unsigned queued = 0;
	struct io_uring_sqe *e;
	bool same = r->fut_ud && r->fut_n == nfw && r->fut_members == members;
	int rc;

	for (size_t i = 0; same && i < nfw; i++)
		same = r->fut_addr[i] == fw[i].uaddr;
	if (r->fut_ud && !same)
		dchan__ring_cancel(r, &r->fut_ud);
	if (r->poll_ud && r->poll_fd != fd)
		dchan__ring_cancel(r, &r->poll_ud);
	if (!r->fut_ud) {
		e = dchan__ring_sqe(r, &queued);
		e->opcode = IORING_OP_FUTEX_WAITV;
		e->addr = (uintptr_t)fw;
		e->len = (unsigned)nfw;
		e->user_data = r->fut_ud = dchan__ring_ud(r, DCHAN__RING_FUTEX);
		r->fut_n = nfw;
		r->fut_members = members;
		for (size_t i = 0; i < nfw; i++)
			r->fut_addr[i] = fw[i].uaddr;
	}
	if (fd >= 0 && !r->poll_ud) {
		e = dchan__ring_sqe(r, &queued);
		e->opcode = IORING_OP_POLL_ADD;
		e->fd = fd;
		e->poll32_events = POLLIN;
		e->user_data = r->poll_ud = dchan__ring_ud(r, DCHAN__RING_POLL);
		r->poll_fd = fd;
	}
	rc = dchan__ring_enter(r, queued, 1, timeout_ms);
	dchan__ring_reap(r);
	return rc == -ETIME ? 0 : rc;
}

/* The ring, set up at the first wait; false: wait through the helper. */
static bool dchan__watch_ring(dchan_watch_t *w)
{
	bool ok;

	pthread_mutex_lock(&w->mu);
	if (!w->ring_tried && !w->helper) {
		w->ring = dchan__ring_open();
		w->ring_tried = true;
	}
	ok = w->ring && !w->helper;
	pthread_mutex_unlock(&w->mu);
	return ok;
}

DCHAN_EXPORT int dchan_watch_wait(dchan_watch_t *w, int fd, int timeout_ms)
{
	struct dchan__owner ow = {fd, timeout_ms};
	struct pollfd pfd[2];
	int rc;

	if (!w)
		return dchan__fail(-EINVAL, "NULL watch set");
	if (dchan__watch_ring(w))
		return dchan__watch_round(w, &ow);
	/* no futex wait in io_uring here: the helper reports through its
	 * eventfd, which is polled beside fd */
	pthread_mutex_lock(&w->mu);
	rc = dchan__watch_helper(w);
	pthread_mutex_unlock(&w->mu);
	if (rc < 0)
		return rc;
	pfd[0] = (struct pollfd){.fd = w->efd, .events = POLLIN};
	pfd[1] = (struct pollfd){.fd = fd, .events = POLLIN};
	rc = poll(pfd, fd >= 0 ? 2 : 1, timeout_ms);
	if (rc < 0 && errno != EINTR)
		return dchan__fail(-errno, "poll of a watch set failed");
	/* what the helper found is the caller's to take: 0, as documented */
	return 0;
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
	*watch_out = w;
	return 0;
fail_efd:
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
	return rc;
}

/* The descriptor needs the helper, which starts here (the set's state is
 * not the caller's to see: the const is about that). */
DCHAN_EXPORT int dchan_watch_fd(const dchan_watch_t *watch)
{
	dchan_watch_t *w = (dchan_watch_t *)watch;
	int rc;

	if (!w)
		return dchan__fail(-EINVAL, "NULL watch set");
	pthread_mutex_lock(&w->mu);
	rc = dchan__watch_helper(w);
	pthread_mutex_unlock(&w->mu);
	return rc < 0 ? rc : w->efd;
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
		w->members++;
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
	w->members++;
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
	if (w->helper && read(w->efd, &cnt, sizeof cnt) < 0) {
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
	if (more && w->helper && write(w->efd, &one, sizeof one) < 0) {
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
	if (w->helper)
		pthread_join(w->thr, NULL);
	dchan__ring_close(w->ring);
	close(w->efd);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
	return 0;
}
