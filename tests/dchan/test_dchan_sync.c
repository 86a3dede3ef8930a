/* libdchan sync objects with real processes: lock, recursive lock,
 * semaphores, event, barrier, condition. */
#include "dchan_test.h"

#include <sched.h>
#include <sys/mman.h>

#define MS 1000000ull

static void *sync_shared(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	ck_assert_ptr_ne(p, MAP_FAILED);
	memset(p, 0, len);
	return p;
}

START_TEST(lock_mutual_exclusion)
{
	dmem_pool_t *pool = t_pool("lock", 16u << 20);
	dchan_lock_t *l;
	dchan_desc_t d;
	volatile uint64_t *counter = sync_shared(4096);
	uint64_t n = t_scaled(2000, 50);
	pid_t pid[4];

	T_OK(dchan_lock_create(pool, 0, &l));
	t_keep(l);
	T_OK(dchan_lock_desc_get(l, &d));
	for (int i = 0; i < 4; i++) {
		pid[i] = fork();
		if (pid[i] == 0) {
			dchan_lock_t *cl;

			if (dchan_lock_attach(&d, &cl))
				_exit(1);
			for (uint64_t k = 0; k < n; k++) {
				uint64_t v;

				if (dchan_lock_acquire(cl, DCHAN_FOREVER))
					_exit(2);
				v = *counter; /* not atomic: the lock protects
					       */
				sched_yield();
				*counter = v + 1;
				if (dchan_lock_release(cl))
					_exit(3);
			}
			_exit(dchan_lock_detach(cl) ? 4 : 0);
		}
	}
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(t_wait(pid[i]), 0);
	ck_assert_uint_eq(*counter, 4 * n);
	/* try-once and timeout while held; release when free is an error */
	T_OK(dchan_lock_acquire(l, 0));
	ck_assert_int_eq(dchan_lock_is_mine(l, NULL), 1);
	ck_assert_int_eq(dchan_lock_acquire(l, 0), -EAGAIN);
	ck_assert_int_eq(dchan_lock_acquire(l, MS), -ETIMEDOUT);
	T_OK(dchan_lock_release(l));
	ck_assert_int_eq(dchan_lock_release(l), -EPERM);
	T_OK(dchan_lock_destroy(l));
	t_pool_done(pool);
}
END_TEST

START_TEST(rlock_owner_and_depth)
{
	dmem_pool_t *pool = t_pool("rlock", 16u << 20);
	dchan_lock_t *l;
	dchan_desc_t d;
	unsigned depth = 0;
	int fds[2];
	char k;
	pid_t pid;

	T_OK(dchan_lock_create(pool, DCHAN_LOCK_RECURSIVE, &l));
	t_keep(l);
	T_OK(dchan_lock_desc_get(l, &d));
	ck_assert_int_eq(dchan_lock_release(l), -EPERM);
	T_OK(dchan_lock_acquire(l, 0));
	T_OK(dchan_lock_acquire(l, 0));
	T_OK(dchan_lock_acquire(l, 0));
	ck_assert_int_eq(dchan_lock_is_mine(l, &depth), 1);
	ck_assert_uint_eq(depth, 3);
	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	if (pid == 0) {
		dchan_lock_t *cl;

		if (dchan_lock_is_mine(l, NULL) != 0)
			_exit(8); /* the parent's thread holds it, not ours */
		if (dchan_lock_attach(&d, &cl))
			_exit(1);
		if (dchan_lock_is_mine(cl, NULL) != 0)
			_exit(2);
		if (dchan_lock_release(cl) != -EPERM)
			_exit(3);
		if (dchan_lock_acquire(cl, 0) != -EAGAIN)
			_exit(4);
		if (write(fds[1], "k", 1) != 1)
			_exit(9);
		/* blocks until the parent's last release */
		if (dchan_lock_acquire(cl, DCHAN_FOREVER))
			_exit(5);
		if (dchan_lock_release(cl))
			_exit(6);
		_exit(dchan_lock_detach(cl) ? 7 : 0);
	}
	ck_assert_int_eq(read(fds[0], &k, 1), 1); /* the child tried */
	T_OK(dchan_lock_release(l));
	T_OK(dchan_lock_release(l));
	ck_assert_int_eq(dchan_lock_is_mine(l, &depth), 1);
	ck_assert_uint_eq(depth, 1);
	T_OK(dchan_lock_release(l));
	ck_assert_int_eq(dchan_lock_is_mine(l, NULL), 0);
	ck_assert_int_eq(t_wait(pid), 0);
	T_OK(dchan_lock_acquire(l, DCHAN_FOREVER));
	T_OK(dchan_lock_release(l));
	T_OK(dchan_lock_destroy(l));
	t_pool_done(pool);
}
END_TEST

START_TEST(semaphores_bounded_and_not)
{
	dmem_pool_t *pool = t_pool("sem", 16u << 20);
	dchan_sem_t *s, *b;
	dchan_desc_t d;
	pid_t pid[3];

	ck_assert_int_eq(dchan_sem_create(pool, 3, 2, &b), -EINVAL);
	T_OK(dchan_sem_create(pool, 2, 2, &b));
	t_keep(b);
	ck_assert_int_eq(dchan_sem_release(b), -EOVERFLOW);
	ck_assert_int_eq(dchan_sem_value(b), 2);
	T_OK(dchan_sem_acquire(b, 0));
	T_OK(dchan_sem_acquire(b, 0));
	ck_assert_int_eq(dchan_sem_acquire(b, 0), -EAGAIN);
	ck_assert_int_eq(dchan_sem_acquire(b, MS), -ETIMEDOUT);
	T_OK(dchan_sem_release(b));
	ck_assert_int_eq(dchan_sem_value(b), 1);
	T_OK(dchan_sem_destroy(b));

	T_OK(dchan_sem_create(pool, 0, 0, &s));
	t_keep(s);
	T_OK(dchan_sem_desc_get(s, &d));
	for (int i = 0; i < 3; i++) {
		pid[i] = fork();
		if (pid[i] == 0) {
			dchan_sem_t *c;

			if (dchan_sem_attach(&d, &c))
				_exit(1);
			for (int k = 0; k < 100; k++)
				if (dchan_sem_acquire(c, DCHAN_FOREVER))
					_exit(2);
			_exit(dchan_sem_detach(c) ? 3 : 0);
		}
	}
	for (int k = 0; k < 1000; k++)
		T_OK(dchan_sem_release(s));
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(t_wait(pid[i]), 0);
	ck_assert_int_eq(dchan_sem_value(s), 700);
	T_OK(dchan_sem_destroy(s));
	t_pool_done(pool);
}
END_TEST

START_TEST(event_wakes_all_waiters)
{
	dmem_pool_t *pool = t_pool("event", 16u << 20);
	dchan_event_t *e;
	dchan_desc_t d;
	pid_t pid[3];

	T_OK(dchan_event_create(pool, &e));
	t_keep(e);
	T_OK(dchan_event_desc_get(e, &d));
	ck_assert_int_eq(dchan_event_is_set(e), 0);
	ck_assert_int_eq(dchan_event_wait(e, MS), -ETIMEDOUT);
	for (int i = 0; i < 3; i++) {
		pid[i] = fork();
		if (pid[i] == 0) {
			dchan_event_t *c;

			if (dchan_event_attach(&d, &c))
				_exit(1);
			if (dchan_event_wait(c, DCHAN_FOREVER))
				_exit(2);
			if (dchan_event_is_set(c) != 1)
				_exit(3);
			_exit(dchan_event_detach(c) ? 4 : 0);
		}
	}
	usleep(20000);
	T_OK(dchan_event_set(e));
	T_OK(dchan_event_set(e));
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(t_wait(pid[i]), 0);
	T_OK(dchan_event_clear(e));
	T_OK(dchan_event_clear(e));
	ck_assert_int_eq(dchan_event_is_set(e), 0);
	T_OK(dchan_event_destroy(e));
	t_pool_done(pool);
}
END_TEST

START_TEST(barrier_rounds_timeout_abort_reset)
{
	dmem_pool_t *pool = t_pool("barrier", 16u << 20);
	dchan_barrier_t *b;
	dchan_desc_t d;
	int *idx = sync_shared(4096);
	pid_t pid[3];

	T_OK(dchan_barrier_create(pool, 4, &b));
	t_keep(b);
	T_OK(dchan_barrier_desc_get(b, &d));
	ck_assert_int_eq(dchan_barrier_parties(b), 4);
	for (int i = 0; i < 3; i++) {
		pid[i] = fork();
		if (pid[i] == 0) {
			dchan_barrier_t *c;

			if (dchan_barrier_attach(&d, &c))
				_exit(1);
			for (int r = 0; r < 20; r++) {
				int k = dchan_barrier_wait(c, DCHAN_FOREVER);

				if (k < 0 || k > 3)
					_exit(2);
				__atomic_fetch_or(&idx[r], 1 << k,
						  __ATOMIC_RELAXED);
			}
			_exit(dchan_barrier_detach(c) ? 3 : 0);
		}
	}
	for (int r = 0; r < 20; r++) {
		int k = dchan_barrier_wait(b, DCHAN_FOREVER);

		ck_assert_int_ge(k, 0);
		__atomic_fetch_or(&idx[r], 1 << k, __ATOMIC_RELAXED);
	}
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(t_wait(pid[i]), 0);
	for (int r = 0; r < 20; r++)
		ck_assert_int_eq(idx[r], 0xf); /* each index once per round */

	/* a timeout breaks it for the other waiters */
	pid[0] = fork();
	if (pid[0] == 0) {
		dchan_barrier_t *c;

		if (dchan_barrier_attach(&d, &c))
			_exit(1);
		if (dchan_barrier_wait(c, DCHAN_FOREVER) != -DCHAN_E_BROKEN)
			_exit(2);
		_exit(dchan_barrier_detach(c) ? 3 : 0);
	}
	while (dchan_barrier_n_waiting(b) != 1)
		usleep(1000);
	ck_assert_int_eq(dchan_barrier_wait(b, 5 * MS), -ETIMEDOUT);
	ck_assert_int_eq(t_wait(pid[0]), 0);
	ck_assert_int_eq(dchan_barrier_is_broken(b), 1);
	ck_assert_int_eq(dchan_barrier_wait(b, 0), -DCHAN_E_BROKEN);
	T_OK(dchan_barrier_reset(b));
	ck_assert_int_eq(dchan_barrier_is_broken(b), 0);
	/* abort releases a waiter with BROKEN */
	pid[0] = fork();
	if (pid[0] == 0) {
		dchan_barrier_t *c;

		if (dchan_barrier_attach(&d, &c))
			_exit(1);
		if (dchan_barrier_wait(c, DCHAN_FOREVER) != -DCHAN_E_BROKEN)
			_exit(2);
		_exit(dchan_barrier_detach(c) ? 3 : 0);
	}
	while (dchan_barrier_n_waiting(b) != 1)
		usleep(1000);
	T_OK(dchan_barrier_abort(b));
	ck_assert_int_eq(t_wait(pid[0]), 0);
	T_OK(dchan_barrier_reset(b));
	ck_assert_int_eq(dchan_barrier_n_waiting(b), 0);
	T_OK(dchan_barrier_destroy(b));
	ck_assert_int_eq(dchan_barrier_create(pool, 0, &b), -EINVAL);
	t_pool_done(pool);
}
END_TEST

START_TEST(condition_notify_and_timeout)
{
	dmem_pool_t *pool = t_pool("cond", 16u << 20);
	dchan_lock_t *l;
	dchan_cond_t *c;
	dchan_desc_t dl, dc;
	volatile int *state = sync_shared(4096);
	pid_t pid[3];

	T_OK(dchan_lock_create(pool, DCHAN_LOCK_RECURSIVE, &l));
	t_keep(l);
	T_OK(dchan_cond_create(pool, &c));
	t_keep(c);
	T_OK(dchan_lock_desc_get(l, &dl));
	T_OK(dchan_cond_desc_get(c, &dc));
	ck_assert_int_eq(dchan_cond_wait(c, l, 0), -EPERM);
	T_OK(dchan_lock_acquire(l, 0));
	ck_assert_int_eq(dchan_cond_wait(c, l, 2 * MS), -ETIMEDOUT);
	ck_assert_int_eq(dchan_lock_is_mine(l, NULL), 1);
	T_OK(dchan_lock_release(l));
	for (int i = 0; i < 3; i++) {
		pid[i] = fork();
		if (pid[i] == 0) {
			dchan_lock_t *cl;
			dchan_cond_t *cc;

			if (dchan_lock_attach(&dl, &cl) ||
			    dchan_cond_attach(&dc, &cc))
				_exit(1);
			if (dchan_lock_acquire(cl, DCHAN_FOREVER))
				_exit(2);
			state[1]++;
			while (state[0] == 0)
				if (dchan_cond_wait(cc, cl, DCHAN_FOREVER))
					_exit(3);
			state[2]++;
			dchan_lock_release(cl);
			_exit(dchan_cond_detach(cc) || dchan_lock_detach(cl)
				      ? 4
				      : 0);
		}
	}
	for (;;) {
		T_OK(dchan_lock_acquire(l, DCHAN_FOREVER));
		if (state[1] == 3)
			break;
		T_OK(dchan_lock_release(l));
		usleep(1000);
	}
	/* all three sleep now (they released the lock to wait) */
	state[0] = 1;
	ck_assert_int_eq(dchan_cond_notify(c, 1), 1);
	ck_assert_int_eq(dchan_cond_notify_all(c), 2);
	T_OK(dchan_lock_release(l));
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(t_wait(pid[i]), 0);
	ck_assert_int_eq(state[2], 3);
	T_OK(dchan_cond_destroy(c));
	T_OK(dchan_lock_destroy(l));
	t_pool_done(pool);
}
END_TEST

/* The limit is Linux's SEM_VALUE_MAX (INT_MAX); past it, -EOVERFLOW and
 * the value is unchanged, also when processes race to the limit. */
/* Release n times through a descriptor, counting successes in res[0]
 * and refusals (-EOVERFLOW) in res[1]; the exit status of a child. */
static int sem_release_n(const dchan_desc_t *d, int n, volatile uint64_t *res)
{
	dchan_sem_t *c;

	if (dchan_sem_attach(d, &c))
		return 1;
	for (int k = 0; k < n; k++) {
		int rc = dchan_sem_release(c);

		if (rc == 0)
			__atomic_fetch_add(&res[0], 1, __ATOMIC_SEQ_CST);
		else if (rc == -EOVERFLOW)
			__atomic_fetch_add(&res[1], 1, __ATOMIC_SEQ_CST);
		else
			return 2;
	}
	return dchan_sem_detach(c) ? 3 : 0;
}

START_TEST(semaphore_value_limits)
{
	dmem_pool_t *pool = t_pool("semmax", 16u << 20);
	const unsigned max = DCHAN_SEM_VALUE_MAX;
	volatile uint64_t *res = sync_shared(4096);
	dchan_sem_t *s;
	dchan_desc_t d;
	pid_t pid[2];

	ck_assert_uint_eq(DCHAN_SEM_VALUE_MAX, 2147483647u);
	ck_assert_int_eq(dchan_sem_create(pool, 0, max + 1, &s), -EINVAL);
	ck_assert_int_eq(dchan_sem_create(pool, max + 1, 0, &s), -EINVAL);
	ck_assert_int_eq(dchan_sem_create(pool, UINT32_MAX, UINT32_MAX, &s),
			 -EINVAL);
	/* unbounded, at the limit */
	T_OK(dchan_sem_create(pool, max, 0, &s));
	ck_assert_int_eq(dchan_sem_value(s), (int)max);
	ck_assert_int_eq(dchan_sem_release(s), -EOVERFLOW);
	ck_assert_int_eq(dchan_sem_value(s), (int)max);
	T_OK(dchan_sem_acquire(s, 0));
	ck_assert_int_eq(dchan_sem_value(s), (int)max - 1);
	T_OK(dchan_sem_release(s));
	ck_assert_int_eq(dchan_sem_value(s), (int)max);
	T_OK(dchan_sem_destroy(s));
	/* bounded just below the limit */
	T_OK(dchan_sem_create(pool, max - 2, max - 1, &s));
	T_OK(dchan_sem_release(s));
	ck_assert_int_eq(dchan_sem_release(s), -EOVERFLOW);
	ck_assert_int_eq(dchan_sem_value(s), (int)max - 1);
	T_OK(dchan_sem_destroy(s));
	/*
	 * Two processes release 100 each into room for 100: exactly 100
	 * succeed, whoever holds the counter when the other looks.  Many
	 * rounds, as a lost bound shows only in some interleavings.
	 */
	for (uint64_t round = 0, rounds = t_scaled(200, 10); round < rounds;
	     round++) {
		res[0] = res[1] = 0;
		T_OK(dchan_sem_create(pool, max - 100, 0, &s));
		t_keep(s);
		T_OK(dchan_sem_desc_get(s, &d));
		for (int i = 0; i < 2; i++) {
			pid[i] = fork();
			if (pid[i] == 0)
				_exit(sem_release_n(&d, 100, res));
		}
		for (int i = 0; i < 2; i++)
			ck_assert_int_eq(t_wait(pid[i]), 0);
		ck_assert_uint_eq(res[0], 100);
		ck_assert_uint_eq(res[1], 100);
		ck_assert_int_eq(dchan_sem_value(s), (int)max);
		T_OK(dchan_sem_destroy(s));
	}
	t_pool_done(pool);
}
END_TEST

/*
 * Takers and releasers race on a bounded semaphore while another process
 * reads its value: the value read never leaves [0, max], and at the end
 * it is exactly the initial value plus the releases that succeeded minus
 * the acquires that succeeded.
 */
START_TEST(semaphore_bounded_take_release_race)
{
	dmem_pool_t *pool = t_pool("semrace", 16u << 20);
	const int max = 4, init = 2;
	volatile uint64_t *res = sync_shared(4096);
	uint64_t n = t_scaled(1500, 50);
	dchan_sem_t *s;
	dchan_desc_t d;
	pid_t pid[5];

	T_OK(dchan_sem_create(pool, init, max, &s));
	t_keep(s);
	T_OK(dchan_sem_desc_get(s, &d));
	/* res: 0 releases ok, 1 refused, 2 acquires ok, 3 not available,
	 * 4 reads out of range, 5 reads done, 6 stop */
	for (int i = 0; i < 5; i++) {
		pid[i] = fork();
		if (pid[i] != 0)
			continue;
		dchan_sem_t *c;

		if (dchan_sem_attach(&d, &c))
			_exit(1);
		for (uint64_t k = 0; i < 4 && k < n; k++) {
			int rc;

			if (i < 2) {
				rc = dchan_sem_release(c);
				if (rc != 0 && rc != -EOVERFLOW)
					_exit(2);
				__atomic_fetch_add(&res[rc ? 1 : 0], 1,
						   __ATOMIC_SEQ_CST);
			} else {
				rc = dchan_sem_acquire(c, k % 2 ? MS / 10 : 0);
				if (rc != 0 && rc != -EAGAIN &&
				    rc != -ETIMEDOUT)
					_exit(3);
				__atomic_fetch_add(&res[rc ? 3 : 2], 1,
						   __ATOMIC_SEQ_CST);
			}
		}
		while (i == 4 && !__atomic_load_n(&res[6], __ATOMIC_SEQ_CST)) {
			int v = dchan_sem_value(c);

			if (v < 0 || v > max)
				__atomic_fetch_add(&res[4], 1,
						   __ATOMIC_SEQ_CST);
			__atomic_fetch_add(&res[5], 1, __ATOMIC_SEQ_CST);
		}
		_exit(dchan_sem_detach(c) ? 4 : 0);
	}
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(t_wait(pid[i]), 0);
	__atomic_store_n(&res[6], 1, __ATOMIC_SEQ_CST);
	ck_assert_int_eq(t_wait(pid[4]), 0);
	ck_assert_uint_eq(res[0] + res[1], 2 * n);
	ck_assert_uint_eq(res[2] + res[3], 2 * n);
	ck_assert_uint_eq(res[4], 0);
	ck_assert_int_eq(dchan_sem_value(s), init + (int)res[0] - (int)res[2]);
	T_OK(dchan_sem_destroy(s));
	ck_assert_uint_eq(t_live(pool), 0);
	t_pool_done(pool);
}
END_TEST

/*
 * Two processes acquire and release a semaphore of 3 over and over, so
 * that one of them holds the counter most of the time: a value read waits
 * for it and sees 1, 2 or 3, never 0 (what an absent counter once read as).
 */
START_TEST(semaphore_value_while_held)
{
	dmem_pool_t *pool = t_pool("semheld", 16u << 20);
	volatile uint64_t *stop = sync_shared(4096);
	uint64_t n = t_scaled(3000, 100);
	dchan_sem_t *s;
	dchan_desc_t d;
	pid_t pid[2];

	T_OK(dchan_sem_create(pool, 3, 3, &s));
	t_keep(s);
	T_OK(dchan_sem_desc_get(s, &d));
	for (int i = 0; i < 2; i++) {
		pid[i] = fork();
		if (pid[i] == 0) {
			dchan_sem_t *c;

			if (dchan_sem_attach(&d, &c))
				_exit(1);
			while (!__atomic_load_n(stop, __ATOMIC_SEQ_CST))
				if (dchan_sem_acquire(c, DCHAN_FOREVER) ||
				    dchan_sem_release(c))
					_exit(2);
			_exit(dchan_sem_detach(c) ? 3 : 0);
		}
	}
	for (uint64_t k = 0; k < n; k++) {
		int v = dchan_sem_value(s);

		ck_assert_int_ge(v, 1);
		ck_assert_int_le(v, 3);
	}
	__atomic_store_n(stop, 1, __ATOMIC_SEQ_CST);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(t_wait(pid[i]), 0);
	ck_assert_int_eq(dchan_sem_value(s), 3);
	T_OK(dchan_sem_destroy(s));
	t_pool_done(pool);
}
END_TEST

/*
 * Waiters that time out leave the semaphore as it was (they unregister),
 * and more waiters than the signal channel holds wake-ups all get their
 * unit: a waiter that takes one passes a wake-up on.
 */
START_TEST(semaphore_timeouts_with_waiters)
{
	dmem_pool_t *pool = t_pool("semwait", 16u << 20);
	volatile uint64_t *res = sync_shared(4096);
	enum { SHORT = 3, LONG = 12 };
	dchan_sem_t *s;
	dchan_desc_t d;
	pid_t pid[SHORT + LONG];

	T_OK(dchan_sem_create(pool, 0, LONG, &s));
	t_keep(s);
	T_OK(dchan_sem_desc_get(s, &d));
	for (int i = 0; i < SHORT + LONG; i++) {
		pid[i] = fork();
		if (pid[i] == 0) {
			dchan_sem_t *c;
			int rc;

			if (dchan_sem_attach(&d, &c))
				_exit(1);
			rc = dchan_sem_acquire(c, i < SHORT ? 20 * MS
							    : DCHAN_FOREVER);
			if (i < SHORT && rc != -ETIMEDOUT)
				_exit(2);
			if (i >= SHORT && rc != 0)
				_exit(3);
			__atomic_fetch_add(&res[0], 1, __ATOMIC_SEQ_CST);
			_exit(dchan_sem_detach(c) ? 4 : 0);
		}
	}
	/* nobody releases until the short waiters gave up */
	for (int i = 0; i < SHORT; i++)
		ck_assert_int_eq(t_wait(pid[i]), 0);
	ck_assert_int_eq(dchan_sem_value(s), 0);
	ck_assert_int_eq(dchan_sem_acquire(s, 0), -EAGAIN);
	ck_assert_int_eq(dchan_sem_acquire(s, MS), -ETIMEDOUT);
	for (int k = 0; k < LONG; k++)
		T_OK(dchan_sem_release(s));
	for (int i = SHORT; i < SHORT + LONG; i++)
		ck_assert_int_eq(t_wait(pid[i]), 0);
	ck_assert_uint_eq(res[0], SHORT + LONG);
	/* every unit was taken, and the semaphore works as new */
	ck_assert_int_eq(dchan_sem_value(s), 0);
	T_OK(dchan_sem_release(s));
	T_OK(dchan_sem_acquire(s, 0));
	ck_assert_int_eq(dchan_sem_value(s), 0);
	T_OK(dchan_sem_destroy(s));
	t_pool_done(pool);
}
END_TEST

/* Processes attaching the same objects at once, and reading a value
 * at once, all see them whole: another process's peek at the directory
 * or the token is no reason to fail. */
START_TEST(concurrent_attach_and_value)
{
	dmem_pool_t *pool = t_pool("concur", 32u << 20);
	dchan_barrier_t *b;
	dchan_cond_t *c;
	dchan_sem_t *s;
	dchan_desc_t bd, cd, sd;
	uint64_t n = t_scaled(1500, 50);
	pid_t pid[4];

	T_OK(dchan_barrier_create(pool, 2, &b));
	T_OK(dchan_cond_create(pool, &c));
	T_OK(dchan_sem_create(pool, 5, 0, &s));
	t_keep(b);
	t_keep(c);
	t_keep(s);
	T_OK(dchan_barrier_desc_get(b, &bd));
	T_OK(dchan_cond_desc_get(c, &cd));
	T_OK(dchan_sem_desc_get(s, &sd));
	for (int i = 0; i < 4; i++) {
		pid[i] = fork();
		if (pid[i] == 0) {
			dchan_sem_t *cs;

			if (dchan_sem_attach(&sd, &cs))
				_exit(1);
			for (uint64_t k = 0; k < n; k++) {
				dchan_barrier_t *cb;
				dchan_cond_t *cc;

				if (dchan_barrier_attach(&bd, &cb) ||
				    dchan_barrier_parties(cb) != 2 ||
				    dchan_barrier_detach(cb)) {
					fprintf(stderr, "barrier: %s\n",
						dchan_errmsg());
					_exit(2);
				}
				if (dchan_cond_attach(&cd, &cc) ||
				    dchan_cond_detach(cc))
					_exit(3);
				if (dchan_sem_value(cs) != 5)
					_exit(4);
			}
			_exit(dchan_sem_detach(cs) ? 5 : 0);
		}
	}
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(t_wait(pid[i]), 0);
	T_OK(dchan_barrier_destroy(b));
	T_OK(dchan_cond_destroy(c));
	T_OK(dchan_sem_destroy(s));
	ck_assert_uint_eq(t_live(pool), 0);
	t_pool_done(pool);
}
END_TEST

/* A descriptor of one kind of object does not attach as another. */
START_TEST(attach_as_wrong_kind_fails)
{
	dmem_pool_t *pool = t_pool("kind", 16u << 20);
	dchan_lock_t *l;
	dchan_sem_t *s;
	dchan_barrier_t *b;
	dchan_cond_t *c;
	dchan_desc_t d, bd, cd;

	T_OK(dchan_lock_create(pool, 0, &l));
	t_keep(l);
	T_OK(dchan_lock_desc_get(l, &d));
	ck_assert_int_eq(dchan_sem_attach(&d, &s), -DCHAN_E_BADDESC);
	ck_assert_int_eq(dchan_barrier_attach(&d, &b), -DCHAN_E_BADDESC);
	T_OK(dchan_barrier_create(pool, 2, &b));
	t_keep(b);
	T_OK(dchan_cond_create(pool, &c));
	t_keep(c);
	T_OK(dchan_barrier_desc_get(b, &bd));
	T_OK(dchan_cond_desc_get(c, &cd));
	ck_assert_int_eq(dchan_cond_attach(&bd, &c), -DCHAN_E_BADDESC);
	ck_assert_int_eq(dchan_barrier_attach(&cd, &b), -DCHAN_E_BADDESC);
	ck_assert_int_eq(dchan_lock_attach(&cd, &l), -DCHAN_E_BADDESC);
	T_OK(dchan_barrier_attach(&bd, &b));
	T_OK(dchan_barrier_destroy(b));
	T_OK(dchan_cond_attach(&cd, &c));
	T_OK(dchan_cond_destroy(c));
	T_OK(dchan_lock_attach(&d, &l));
	T_OK(dchan_lock_destroy(l));
	/* everything the objects took from the pool went back */
	ck_assert_uint_eq(t_live(pool), 0);
	t_pool_done(pool);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("dchan_sync");
	TCase *tc = tcase_create("sync");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, lock_mutual_exclusion);
	tcase_add_test(tc, rlock_owner_and_depth);
	tcase_add_test(tc, semaphores_bounded_and_not);
	tcase_add_test(tc, event_wakes_all_waiters);
	tcase_add_test(tc, barrier_rounds_timeout_abort_reset);
	tcase_add_test(tc, condition_notify_and_timeout);
	tcase_add_test(tc, semaphore_value_limits);
	tcase_add_test(tc, semaphore_bounded_take_release_race);
	tcase_add_test(tc, semaphore_value_while_held);
	tcase_add_test(tc, semaphore_timeouts_with_waiters);
	tcase_add_test(tc, concurrent_attach_and_value);
	tcase_add_test(tc, attach_as_wrong_kind_fails);
	suite_add_tcase(s, tc);
	return t_run(s);
}
