/*
 * libdchan: producers and consumers killed with SIGKILL at random points
 * of their sends and receives, hundreds of times.  The survivors are never
 * wedged (every operation has a 20 ms timeout and returns), and after each
 * trial, with try-once operations only, the channel and the pool account
 * exactly for every slot, every allocation and every message:
 *   - a message whose send returned was received exactly once (by a
 *     consumer, or in the drain after the trial), unless a consumer was
 *     killed inside its receive (at most one message per such consumer);
 *   - the message a killed producer was sending was received at most once
 *     (it is lost when the producer died before publishing it);
 *   - no message is received twice, and a consumer sees each producer's
 *     messages in order;
 *   - the drained channel is empty and takes exactly `capacity` messages;
 *   - no process is counted as waiting on the channel any more.
 */
#include "dchan_test.h"
#include "dchan_private.h"

#include <time.h>

#define NWORK  4 /* even ids produce, odd ids consume */
#define NPROD  (NWORK / 2)
#define MAXSEQ 65536 /* messages one producer sends in a trial, at most */
#define CAP    8
#define SEC    1000000000ull
#define OP_NS  20000000ull /* every operation's timeout */

/*
 * Under ThreadSanitizer: a worker killed while it holds the pool's robust
 * lock hands the next locker EOWNERDEAD, and when that comes from
 * pthread_mutex_timedlock the sanitizer's interceptor (unlike its trylock
 * one) does not count the lock as taken, so it reports the unlock that
 * follows as an unlock of an unlocked mutex.  Killing lock holders is what
 * this test does; the pool's own checks below say whether the lock's
 * recovery worked.  (Read by the sanitizer only.)
 */
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void)
{
	return "mutex:dmem__unlock\n";
}

struct msg_hdr {
	uint32_t prod;
	uint32_t seq;
};

struct board {
	uint32_t stop;
	uint32_t busy[NWORK];	 /* inside an operation */
	int32_t err[NWORK];	 /* what failed, when a worker fails */
	uint32_t attempt[NPROD]; /* messages whose send began */
	uint32_t sent[NPROD];	 /* messages whose send returned 0 */
	uint64_t ops[NWORK];
	uint64_t max_op_ns;	    /* longest single operation of any worker */
	uint8_t got[NPROD][MAXSEQ]; /* times each message was received */
};

/* Totals over all trials (the board is reset per trial). */
static struct {
	uint64_t kills, killed_busy, delivered, lost_in_flight, swallowed;
	uint64_t max_op_ns;
} tot;

static size_t msg_len(uint32_t prod, uint32_t seq)
{
	uint64_t x = (uint64_t)seq * 2654435761u ^ prod * 40503u;

	return x % 3 ? 24 : 300 + x % 7000;
}

static uint64_t msg_seed(uint32_t prod, uint32_t seq)
{
	return (uint64_t)prod << 32 | seq;
}

/* Check a received message and count it; a consumer's last[] keeps the
 * order of each producer's messages.  Returns 0 or a failure code. */
static int take_msg(struct board *b, const void *buf, size_t len, int64_t *last)
{
	struct msg_hdr h;

	if (len < sizeof h)
		return 41;
	memcpy(&h, buf, sizeof h);
	if (h.prod >= NPROD || h.seq >= MAXSEQ)
		return 42;
	if (len != msg_len(h.prod, h.seq) ||
	    !t_check((const char *)buf + sizeof h, len - sizeof h,
		     msg_seed(h.prod, h.seq)))
		return 43;
	if ((int64_t)h.seq <= last[h.prod])
		return 44; /* out of order */
	last[h.prod] = h.seq;
	__atomic_fetch_add(&b->got[h.prod][h.seq], 1, __ATOMIC_RELAXED);
	return 0;
}

static void note_time(struct board *b, const struct timespec *t0)
{
	struct timespec t1;
	uint64_t ns, old;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	ns = (uint64_t)(t1.tv_sec - t0->tv_sec) * SEC + (uint64_t)t1.tv_nsec -
	     (uint64_t)t0->tv_nsec;
	old = __atomic_load_n(&b->max_op_ns, __ATOMIC_RELAXED);
	while (ns > old &&
	       !__atomic_compare_exchange_n(&b->max_op_ns, &old, ns, 0,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

/* One send of the next message of producer p. */
static int produce(dchan_t *ch, struct board *b, uint32_t p, uint32_t *seq,
		   unsigned char *buf)
{
	struct msg_hdr h = {p, *seq};
	size_t len = msg_len(p, *seq);
	int rc;

	if (*seq >= MAXSEQ) { /* sent all it may: idle */
		usleep(1000);
		return 0;
	}
	memcpy(buf, &h, sizeof h);
	t_fill(buf + sizeof h, len - sizeof h, msg_seed(p, *seq));
	__atomic_store_n(&b->attempt[p], *seq + 1, __ATOMIC_SEQ_CST);
	rc = dchan_send(ch, buf, len, OP_NS);
	if (rc == 0) {
		__atomic_store_n(&b->sent[p], *seq + 1, __ATOMIC_SEQ_CST);
		++*seq;
	}
	return rc;
}

/* One receive (a copy, a zero-copy one, or a peek that takes nothing). */
static int consume(dchan_t *ch, struct board *b, uint64_t r, unsigned char *buf,
		   size_t cap, int64_t *last, int *bad)
{
	dchan_msg_t m;
	size_t len;
	int rc;

	if (r % 5 == 0)
		return dchan_peek(ch, buf, cap, OP_NS, &len);
	if (r % 7 == 0) {
		rc = dchan_recv_zc(ch, OP_NS, &m);
		if (rc == 0) {
			*bad = take_msg(b, m.data, m.len, last);
			rc = dchan_msg_release(&m);
		}
		return rc;
	}
	rc = dchan_recv(ch, buf, cap, OP_NS, &len);
	if (rc == 0)
		*bad = take_msg(b, buf, len, last);
	return rc;
}

/* Producers and consumers until told to stop. */
static int worker(dchan_t *ch, struct board *b, int id, uint64_t seed)
{
	static unsigned char buf[8192];
	int64_t last[NPROD] = {-1, -1};
	uint32_t seq = 0;

	while (!__atomic_load_n(&b->stop, __ATOMIC_RELAXED)) {
		struct timespec t0;
		int rc, bad = 0;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		__atomic_store_n(&b->busy[id], 1, __ATOMIC_SEQ_CST);
		if (id % 2 == 0)
			rc = produce(ch, b, (uint32_t)id / 2, &seq, buf);
		else
			rc = consume(ch, b, seed >> 33, buf, sizeof buf, last,
				     &bad);
		__atomic_store_n(&b->busy[id], 0, __ATOMIC_SEQ_CST);
		if (bad || (rc != 0 && rc != -ETIMEDOUT)) {
			b->err[id] = bad ? bad : rc;
			return 30;
		}
		note_time(b, &t0);
		__atomic_fetch_add(&b->ops[id], 1, __ATOMIC_RELAXED);
	}
	return 0;
}

/* Reap pid, waiting at most `ns`; kill it and fail if it takes longer. */
static int reap_within(pid_t pid, uint64_t ns)
{
	uint64_t t0 = dchan__now_ns();
	int st;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st)
					     : 128 + WTERMSIG(st);
		if (dchan__now_ns() - t0 > ns) {
			if (getenv("DCHAN_TEST_GDB")) { /* where is it stuck? */
				char cmd[128];

				snprintf(cmd, sizeof cmd,
					 "gdb -p %d -batch -ex bt 2>&1 | "
					 "grep '^#' >&2",
					 (int)pid);
				if (system(cmd) != 0)
					fprintf(stderr, "no stack\n");
			}
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -1;
		}
		usleep(1000);
	}
}

static pid_t last_pids[NWORK]; /* the workers of the current trial */

/* What each slot holds, when a check fails. */
static void dump(dchan_t *ch, const char *why)
{
	fprintf(stderr, "%s: self %d workers %d %d %d %d\n", why, (int)getpid(),
		(int)last_pids[0], (int)last_pids[1], (int)last_pids[2],
		(int)last_pids[3]);
	fprintf(stderr, "head %llu tail %llu\n",
		(unsigned long long)ch->hdr->head,
		(unsigned long long)ch->hdr->tail);
	for (uint32_t i = 0; i < ch->cap; i++) {
		struct dchan__slot *s =
			(struct dchan__slot *)(ch->slots + i * ch->stride);
		uint32_t tag = dchan__tag(s->state);

		fprintf(stderr,
			"slot %u: seq %u tag %08x (pid %u, owner dead %d) "
			"kind %u len %llu\n",
			i, dchan__seq(s->state), tag, tag & DCHAN__TAG_PID_MASK,
			(int)dchan__owner_dead(tag), s->kind,
			(unsigned long long)s->len);
	}
}

/* Receive, with try-once calls, what the trial left in the channel. */
static void drain(dchan_t *ch, struct board *b)
{
	static unsigned char buf[8192];
	int64_t last[NPROD] = {-1, -1};
	size_t len;
	int rc;

	while ((rc = dchan_recv(ch, buf, sizeof buf, 0, &len)) == 0) {
		int bad = take_msg(b, buf, len, last);

		if (bad)
			ck_abort_msg("drained a bad message (%d)", bad);
	}
	if (rc != -EAGAIN || dchan_count(ch) != 0)
		dump(ch, "after the drain");
	ck_assert_int_eq(rc, -EAGAIN);
	ck_assert_int_eq(dchan_count(ch), 0);
}

/* Every message is accounted for; returns the messages delivered. */
static uint64_t check_messages(const struct board *b, uint32_t dead_busy)
{
	uint64_t delivered = 0, swallowed = 0;

	for (uint32_t p = 0; p < NPROD; p++) {
		uint32_t sent = b->sent[p], attempt = b->attempt[p];

		ck_assert_uint_le(sent, attempt);
		ck_assert_uint_le(attempt, sent + 1);
		/* (check's assertions are costly: only failures call it) */
		for (uint32_t s = 0; s < MAXSEQ; s++) {
			uint8_t g = b->got[p][s];

			if (g > 1)
				ck_abort_msg("message %u/%u received %u times",
					     p, s, g);
			if (s >= attempt && g != 0)
				ck_abort_msg("message %u/%u received, never "
					     "sent",
					     p, s);
			delivered += g;
			if (s < sent && g == 0)
				swallowed++;
			if (s == sent && s < attempt && g == 0)
				tot.lost_in_flight++;
		}
	}
	/* a consumer killed inside a receive may take one message along */
	ck_assert_msg(swallowed <= dead_busy,
		      "%llu sent messages lost; %u consumers were killed "
		      "inside a receive",
		      (unsigned long long)swallowed, dead_busy);
	tot.swallowed += swallowed;
	return delivered;
}

/* The channel works at exactly full capacity, in order, try-once. */
static void check_slots(dchan_t *ch)
{
	uint32_t v;
	size_t len;

	for (uint32_t i = 0; i < CAP; i++) {
		int rc = dchan_send(ch, &i, sizeof i, 0);

		if (rc != 0 || dchan_count(ch) != i + 1)
			dump(ch, "refilling");
		ck_assert_msg(rc == 0, "slot %u lost for good: %s", i,
			      dchan_errmsg());
		ck_assert_int_eq(dchan_count(ch), i + 1);
	}
	ck_assert_int_eq(dchan_send(ch, &v, sizeof v, 0), -EAGAIN);
	for (uint32_t i = 0; i < CAP; i++) {
		T_OK(dchan_recv(ch, &v, sizeof v, 0, &len));
		ck_assert_uint_eq(v, i);
	}
	ck_assert_int_eq(dchan_recv(ch, &v, sizeof v, 0, &len), -EAGAIN);
	ck_assert_int_eq(dchan_count(ch), 0);
}

/* Nobody is left counted as waiting: the dead are taken back. */
static void check_waiters(dchan_t *ch)
{
	dchan_stats_t st;

	T_OK(dchan_stats(ch, &st));
	ck_assert_uint_eq(st.blocked_senders, 0);
	ck_assert_uint_eq(st.blocked_receivers, 0);
	ck_assert_uint_eq(dchan__waiter_count(ch->hdr, DCHAN__WAIT_EV), 0);
}

static uint64_t next_rand(uint64_t *seed)
{
	*seed = *seed * 6364136223846793005ull + 1442695040888963407ull;
	return *seed >> 33;
}

static void one_trial(struct t_fix *f, struct board *b, uint64_t seed)
{
	pid_t pid[NWORK];
	bool killed[NWORK] = {false};
	int nkill = 1 + (int)(next_rand(&seed) % NWORK);
	uint32_t dead_busy = 0;
	/* A wedged survivor never returns; the bound only has to be long
	 * enough for a busy machine's scheduling, and grows with the
	 * slowdown that DRAGON_TEST_SCALE stands for (each operation times
	 * out after 20 ms, and the longest one is reported). */
	uint64_t bound = (uint64_t)(5 * SEC / (t_scale() < 1 ? t_scale() : 1));

	memset(b, 0, sizeof *b);
	for (int i = 0; i < NWORK; i++) {
		pid[i] = t_fork();
		if (pid[i] == 0)
			_exit(worker(f->ch, b, i, seed + (uint64_t)i * 977));
		last_pids[i] = pid[i];
	}
	usleep(200 + (useconds_t)(next_rand(&seed) % 3000));
	for (int i = 0; i < nkill; i++) {
		int v = (int)(next_rand(&seed) % NWORK);

		while (killed[v])
			v = (v + 1) % NWORK;
		usleep((useconds_t)(next_rand(&seed) % 300));
		kill(pid[v], SIGKILL);
		killed[v] = true;
	}
	/* the survivors keep going past what the dead left, then stop */
	usleep(2000);
	__atomic_store_n(&b->stop, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < NWORK; i++) {
		int st = reap_within(pid[i], bound);

		ck_assert_msg(st == (killed[i] ? 128 + SIGKILL : 0),
			      "worker %d: status %d (wedged if -1), "
			      "failure %d",
			      i, st, b->err[i]);
		T_OK(dmem_pool_reclaim(f->pool, pid[i], NULL));
		if (killed[i] && i % 2 == 1 && b->busy[i])
			dead_busy++;
		tot.killed_busy += killed[i] && b->busy[i];
	}
	tot.kills += (uint64_t)nkill;
	if (b->max_op_ns > tot.max_op_ns)
		tot.max_op_ns = b->max_op_ns;
	drain(f->ch, b);
	tot.delivered += check_messages(b, dead_busy);
	check_slots(f->ch);
	check_waiters(f->ch);
	ck_assert_uint_eq(t_live(f->pool), f->live0);
	ck_assert_int_eq(dmem_pool_check(f->pool), 0);
}

START_TEST(sigkill_at_random_points)
{
	uint64_t trials = t_scaled(1000, 40), seed = 12345;
	struct t_fix f = t_fix_open("crash", 64u << 20, CAP, 64);
	struct board *b = t_shared(sizeof *b);
	dchan_stats_t st;

	for (uint64_t t = 0; t < trials; t++)
		one_trial(&f, b, next_rand(&seed) << 20 | t);
	T_OK(dchan_stats(f.ch, &st));
	fprintf(stderr,
		"crash: %llu trials, %llu kills (%llu inside an operation), "
		"%llu slots recovered, %llu messages delivered, %llu lost "
		"with their producer, %llu with their consumer; longest "
		"survivor operation %.1f ms (timeouts %llu ms)\n",
		(unsigned long long)trials, (unsigned long long)tot.kills,
		(unsigned long long)tot.killed_busy,
		(unsigned long long)st.recovered,
		(unsigned long long)tot.delivered,
		(unsigned long long)tot.lost_in_flight,
		(unsigned long long)tot.swallowed, (double)tot.max_op_ns / 1e6,
		OP_NS / 1000000);
	munmap(b, sizeof *b);
	t_fix_close(&f);
}
END_TEST

T_MAIN("dchan_crash", 900, sigkill_at_random_points)
