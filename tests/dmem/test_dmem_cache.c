/* libdmem's per-process small-block cache at its edges: fork while another
 * thread is inside it, racing double frees, and a reclaim of the caller's
 * own pid.  Each of these once handed one block to two owners or hung. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>

#include "dmem_test.h"

#define MiB (1ul << 20)

static dmem_pool_t *pool;
static atomic_int stop;

/* Small alloc/free pairs as fast as possible: the cache lock is held for a
 * good part of every iteration. */
static void *churn(void *arg)
{
	(void)arg;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		void *x;

		if (dmem_alloc(pool, 64, 0, &x) || dmem_free(pool, x))
			return (void *)1;
	}
	return NULL;
}

/*
 * fork() copies the cache lock in whatever state another thread left it.
 * The child must still be able to allocate: a lock held by a thread that
 * does not exist in the child must not be waited for.
 */
START_TEST(fork_while_another_thread_holds_the_cache)
{
	long rounds = dmt_scaled(300);
	pthread_t t;
	void *r;
	int hung = 0;

	pool = dmt_pool("cfork", 4 * MiB);
	ck_assert_int_eq(pthread_create(&t, NULL, churn, NULL), 0);
	for (long i = 0; i < rounds && !hung; i++) {
		pid_t pid = fork();

		if (pid == 0) {
			void *y;

			/* A hang shows as SIGALRM (not Check's handler,
			 * which would kill the whole test). */
			signal(SIGALRM, SIG_DFL);
			alarm(10);
			if (dmem_alloc(pool, 64, 0, &y) || dmem_free(pool, y))
				_exit(1);
			_exit(0);
		}
		ck_assert_int_ne(pid, -1);
		int st = dmt_wait(pid);
		ck_assert_msg(st == 0 || st == 128 + SIGALRM, "child status %d",
			      st);
		hung = st != 0;
	}
	atomic_store(&stop, 1);
	ck_assert_int_eq(pthread_join(t, &r), 0);
	ck_assert_ptr_null(r);
	ck_assert_msg(!hung, "a forked child hung on the inherited cache lock");
	ck_assert_int_eq(dmem_pool_flush(pool), 0);
	ck_assert_int_eq(dmem_pool_check(pool), 0);
	dmem_pool_destroy(pool);
}
END_TEST

/* Two threads free the same pointers at the same moment: for each, one
 * succeeds and the other is refused.  Both succeeding parks the block twice
 * in the cache, and it is later handed to two callers.  The threads walk
 * the same list of blocks in step, so each round has many chances. */
#define NTARGET 32
static atomic_long round_no;
static _Atomic uint32_t done;
static void *targets[NTARGET];
static int results[2][NTARGET];

static void *double_freer(void *arg)
{
	int me = (int)(intptr_t)arg;
	long seen = 0;

	for (;;) {
		long r;

		/* Spin hot for a while so both start together, then yield. */
		for (int n = 0; (r = atomic_load(&round_no)) == seen; n++)
			if (n > 2000)
				sched_yield();
		if (r < 0)
			return NULL;
		seen = r;
		for (int i = 0; i < NTARGET; i++)
			results[me][i] = dmem_free(pool, targets[i]);
		if (atomic_fetch_add(&done, 1) == 1)
			dmem_futex_wake((uint32_t *)&done, 1);
	}
}

START_TEST(racing_double_free_is_refused_once)
{
	long rounds = dmt_scaled(4000);
	pthread_t t[2];
	long both = 0;

	pool = dmt_pool("cdbl", 4 * MiB);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, double_freer,
						(void *)(intptr_t)i),
				 0);
	for (long r = 1; r <= rounds; r++) {
		for (int i = 0; i < NTARGET; i++) /* many size classes */
			ck_assert_int_eq(dmem_alloc(pool, 1 + (i % 24) * 16, 0,
						    &targets[i]),
					 0);
		atomic_store(&done, 0);
		atomic_store(&round_no, r);
		/* Sleep, so that the two freers have both cores. */
		for (uint32_t d; (d = atomic_load(&done)) != 2;)
			dmem_futex_wait((uint32_t *)&done, d, NULL);
		for (int i = 0; i < NTARGET; i++) {
			both += results[0][i] == 0 && results[1][i] == 0;
			ck_assert_msg(results[0][i] == 0 || results[1][i] == 0,
				      "neither free succeeded");
		}
	}
	atomic_store(&round_no, -1);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	ck_assert_msg(both == 0, "%ld of %ld double frees both succeeded", both,
		      rounds * NTARGET);
	ck_assert_int_eq(dmem_pool_flush(pool), 0);
	ck_assert_int_eq(dmem_pool_check(pool), 0);
	dmem_pool_destroy(pool);
}
END_TEST

/* Reclaiming one's own pid frees one's own cached blocks too; they must
 * leave the cache first, or the next allocation hands out a free block. */
START_TEST(reclaim_of_own_pid_empties_the_cache)
{
	dmem_pool_stats_t st0, st;
	void *x, *y, *z;
	size_t n;

	pool = dmt_pool("cself", MiB);
	ck_assert_int_eq(dmem_pool_stats(pool, &st0), 0);
	ck_assert_int_eq(dmem_alloc(pool, 64, 0, &x), 0);
	ck_assert_int_eq(dmem_alloc(pool, 100, 0, &y), 0);
	ck_assert_int_eq(dmem_free(pool, x), 0); /* parked in the cache */
	ck_assert_int_eq(dmem_pool_reclaim(pool, getpid(), &n), 0);
	ck_assert_uint_eq(n, 1); /* y; x was already freed by its owner */
	ck_assert_int_eq(dmem_pool_stats(pool, &st), 0);
	ck_assert_uint_eq(st.live_allocs, 0);
	ck_assert_uint_eq(st.cached, 0);
	ck_assert_uint_eq(st.free_bytes, st0.free_bytes);
	ck_assert_int_eq(dmem_alloc(pool, 64, 0, &z), 0);
	ck_assert_msg(dmem_pool_check(pool) == 0, "%s", dmem_errmsg());
	ck_assert_int_eq(dmem_free(pool, z), 0);
	dmem_pool_destroy(pool);
}
END_TEST

int main(void)
{
	TCase *tc;
	Suite *s = dmt_suite("dmem_cache", "cache", 0, &tc);

	/* No tcase timeout: CK_DEFAULT_TIMEOUT (tests/c-tests.am) is longer
	 * under valgrind, where each of the forks here is slow. */
	tcase_add_test(tc, fork_while_another_thread_holds_the_cache);
	tcase_add_test(tc, racing_double_free_is_refused_once);
	tcase_add_test(tc, reclaim_of_own_pid_empties_the_cache);
	return dmt_run(s);
}
