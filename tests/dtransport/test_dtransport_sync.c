/*
 * libdtransport: barriers and condition variables of node 1 used from
 * node 0 through the agents, with their local semantics: arrival indexes,
 * generations, a timeout that breaks the barrier, abort and reset, a
 * condition wait that gives the lock up and takes it back, notified or
 * timed out.
 */
#include "dtrans_test.h"

static uint64_t elapsed_since(uint64_t t0)
{
	return t_now() - t0;
}

/* ---- barrier ------------------------------------------------------------ */

/* Wait at the barrier; exit code 10 + the arrival index. */
static int c_bar_wait(struct cluster *c)
{
	dchan_barrier_t *b;
	int idx;

	T_OK(dchan_barrier_attach(&c->obj[O_BARRIER], &b));
	T_EQ(dchan_barrier_parties(b), 3);
	idx = dchan_barrier_wait(b, 30 * S);
	T_OK(idx);
	T_OK(dchan_barrier_detach(b));
	return 10 + idx;
}

/* Wait without a deadline: the barrier must break under us. */
static int c_bar_forever(struct cluster *c)
{
	dchan_barrier_t *b;

	T_OK(dchan_barrier_attach(&c->obj[O_BARRIER], &b));
	T_EQ(dchan_barrier_wait(b, DCHAN_FOREVER), -DCHAN_E_BROKEN);
	T_OK(dchan_barrier_detach(b));
	return 0;
}

/* Until one party waits (read remotely from node 0). */
static int c_bar_one_waits(struct cluster *c)
{
	dchan_barrier_t *b;
	int n = -1;

	T_OK(dchan_barrier_attach(&c->obj[O_BARRIER], &b));
	for (int i = 0; i < 2000 && n != 1; i++) {
		n = dchan_barrier_n_waiting(b);
		T_OK(n);
		if (n != 1)
			usleep(10000);
	}
	T_EQ(n, 1);
	T_OK(dchan_barrier_detach(b));
	return 0;
}

/* A wait of 500 ms: times out no earlier, and breaks the barrier. */
static int c_bar_timeout(struct cluster *c)
{
	dchan_barrier_t *b;
	uint64_t t0;

	T_OK(dchan_barrier_attach(&c->obj[O_BARRIER], &b));
	t0 = t_now();
	T_EQ(dchan_barrier_wait(b, 500 * MS), -ETIMEDOUT);
	if (elapsed_since(t0) < 500 * MS) {
		fprintf(stderr, "barrier timed out after %llu ns\n",
			(unsigned long long)elapsed_since(t0));
		return 1;
	}
	T_EQ(dchan_barrier_is_broken(b), 1);
	T_EQ(dchan_barrier_wait(b, 0), -DCHAN_E_BROKEN);
	T_OK(dchan_barrier_reset(b));
	T_EQ(dchan_barrier_is_broken(b), 0);
	T_EQ(dchan_barrier_n_waiting(b), 0);
	T_OK(dchan_barrier_detach(b));
	return 0;
}

/* node 1, locally: break the barrier, then make it usable again. */
static int c_bar_abort(struct cluster *c)
{
	dchan_barrier_t *b;

	T_OK(dchan_barrier_attach(&c->obj[O_BARRIER], &b));
	T_OK(dchan_barrier_abort(b));
	T_EQ(dchan_barrier_is_broken(b), 1);
	T_OK(dchan_barrier_reset(b));
	T_OK(dchan_barrier_detach(b));
	return 0;
}

/* Three parties, two on node 0, one on node 1: indexes 0, 1, 2. */
static void three_parties(struct cluster *c)
{
	pid_t p[3];
	int seen = 0;

	p[0] = t_start(c, 0, c_bar_wait);
	p[1] = t_start(c, 0, c_bar_wait);
	p[2] = t_start(c, 1, c_bar_wait);
	for (int i = 0; i < 3; i++) {
		int st = t_wait(p[i]);

		ck_assert_msg(st >= 10 && st <= 12, "party %d ended with %d", i,
			      st);
		seen |= 1 << (st - 10);
	}
	ck_assert_int_eq(seen, 7);
}

START_TEST(t_barrier_remote)
{
	struct cluster *c = t_cluster_up(10 * S);
	pid_t w;

	three_parties(c);
	three_parties(c); /* the next generation */

	/* a remote timeout breaks it for the party still waiting */
	w = t_start(c, 0, c_bar_forever);
	ck_assert_int_eq(t_run(c, 0, c_bar_one_waits), 0);
	ck_assert_int_eq(t_run(c, 0, c_bar_timeout), 0);
	ck_assert_int_eq(t_wait(w), 0);

	/* a local abort reaches the remote waiter */
	w = t_start(c, 0, c_bar_forever);
	ck_assert_int_eq(t_run(c, 0, c_bar_one_waits), 0);
	ck_assert_int_eq(t_run(c, 1, c_bar_abort), 0);
	ck_assert_int_eq(t_wait(w), 0);

	three_parties(c); /* usable after the reset */
	t_cluster_down(c);
}
END_TEST

/* ---- condition ---------------------------------------------------------- */

static int cond_open(struct cluster *c, dchan_cond_t **cv, dchan_lock_t **lk)
{
	T_OK(dchan_cond_attach(&c->obj[O_COND], cv));
	T_OK(dchan_lock_attach(&c->obj[O_CLOCK], lk));
	return 0;
}

/* Wait until notified, holding the lock before and after. */
static int c_cond_wait(struct cluster *c)
{
	dchan_cond_t *cv;
	dchan_lock_t *lk;

	if (cond_open(c, &cv, &lk))
		return 1;
	T_OK(dchan_lock_acquire(lk, 10 * S));
	T_OK(dchan_cond_wait(cv, lk, 30 * S));
	T_EQ(dchan_lock_is_mine(lk, NULL), 1);
	T_OK(dchan_lock_release(lk));
	T_OK(dchan_cond_detach(cv));
	T_OK(dchan_lock_detach(lk));
	return 0;
}

/* Notify until one sleeper was woken; the lock is free while it sleeps. */
static int c_cond_notify(struct cluster *c)
{
	dchan_cond_t *cv;
	dchan_lock_t *lk;
	int woken = 0;

	if (cond_open(c, &cv, &lk))
		return 1;
	for (int i = 0; i < 2000 && woken == 0; i++) {
		T_OK(dchan_lock_acquire(lk, 10 * S));
		woken = dchan_cond_notify(cv, 1);
		T_OK(woken);
		T_OK(dchan_lock_release(lk));
		if (!woken)
			usleep(10000);
	}
	T_EQ(woken, 1);
	T_OK(dchan_cond_detach(cv));
	T_OK(dchan_lock_detach(lk));
	return 0;
}

/* No notification: times out no earlier than asked, lock held again. */
static int c_cond_timeout(struct cluster *c)
{
	dchan_cond_t *cv;
	dchan_lock_t *lk;
	uint64_t t0;

	if (cond_open(c, &cv, &lk))
		return 1;
	T_OK(dchan_lock_acquire(lk, 10 * S));
	t0 = t_now();
	T_EQ(dchan_cond_wait(cv, lk, 400 * MS), -ETIMEDOUT);
	if (elapsed_since(t0) < 400 * MS) {
		fprintf(stderr, "condition timed out after %llu ns\n",
			(unsigned long long)elapsed_since(t0));
		return 1;
	}
	T_EQ(dchan_lock_is_mine(lk, NULL), 1);
	/* nobody else can take it meanwhile */
	T_OK(dchan_lock_release(lk));
	/* the timed-out sleeper is forgotten: nobody is woken */
	T_EQ(dchan_cond_notify(cv, 1), 0);
	T_OK(dchan_cond_detach(cv));
	T_OK(dchan_lock_detach(lk));
	return 0;
}

START_TEST(t_cond_remote)
{
	struct cluster *c = t_cluster_up(10 * S);
	pid_t w;

	/* remote sleeper, local notifier */
	w = t_start(c, 0, c_cond_wait);
	ck_assert_int_eq(t_run(c, 1, c_cond_notify), 0);
	ck_assert_int_eq(t_wait(w), 0);
	/* local sleeper, remote notifier */
	w = t_start(c, 1, c_cond_wait);
	ck_assert_int_eq(t_run(c, 0, c_cond_notify), 0);
	ck_assert_int_eq(t_wait(w), 0);
	/* both remote */
	w = t_start(c, 0, c_cond_wait);
	ck_assert_int_eq(t_run(c, 0, c_cond_notify), 0);
	ck_assert_int_eq(t_wait(w), 0);
	ck_assert_int_eq(t_run(c, 0, c_cond_timeout), 0);
	t_cluster_down(c);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("dtransport_sync");
	TCase *tc = tcase_create("sync");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, t_barrier_remote);
	tcase_add_test(tc, t_cond_remote);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run_suite(suite());
}
