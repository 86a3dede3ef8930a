/* libdmem: futex wait/wake across processes, deadlines, blocking alloc. */
#include <errno.h>
#include <stdint.h>
#include <time.h>

#include "dmem_test.h"

#define MiB (1ul << 20)

static struct timespec in_ms(long ms)
{
	struct timespec t;

	dmem_deadline_after((uint64_t)ms * 1000000u, &t);
	return t;
}

static int passed(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > t->tv_sec ||
	       (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

START_TEST(futex_wait_times_out_at_deadline)
{
	dmem_pool_t *p = dmt_pool("fto", MiB);
	uint32_t *w;
	struct timespec d = in_ms(50), zero = {0, 0};

	ck_assert_int_eq(dmem_alloc(p, 4, 0, (void **)&w), 0);
	*w = 7;
	ck_assert_int_eq(dmem_futex_wait(w, 7, &d), -ETIMEDOUT);
	ck_assert(passed(&d));
	ck_assert_int_eq(dmem_futex_wait(w, 7, &zero), -ETIMEDOUT);
	ck_assert_int_eq(dmem_futex_wait(w, 8, NULL), 0); /* value differs */
	ck_assert_int_eq(dmem_futex_wait((uint32_t *)((char *)w + 1), 0, NULL),
			 -EINVAL);
	ck_assert_int_eq(dmem_futex_wake(w, 0), -EINVAL);
	ck_assert_int_eq(dmem_futex_wake(w, 1), 0);
	dmem_pool_destroy(p);
}
END_TEST

START_TEST(futex_wakes_other_process)
{
	dmem_pool_t *p = dmt_pool("fwk", MiB);
	uint32_t *w;
	pid_t pid;

	ck_assert_int_eq(dmem_alloc(p, 4, 0, (void **)&w), 0);
	__atomic_store_n(w, 0, __ATOMIC_SEQ_CST);
	pid = fork();
	if (pid == 0) {
		struct timespec d = in_ms(20000);
		while (__atomic_load_n(w, __ATOMIC_ACQUIRE) == 0)
			if (dmem_futex_wait(w, 0, &d) == -ETIMEDOUT)
				dmt_exit(p, NULL, 1);
		dmt_exit(p, NULL,
			 __atomic_load_n(w, __ATOMIC_ACQUIRE) == 5 ? 0 : 2);
	}
	usleep(20000);
	__atomic_store_n(w, 5, __ATOMIC_SEQ_CST);
	ck_assert_int_ge(dmem_futex_wake(w, INT32_MAX), 0);
	ck_assert_int_eq(dmt_wait(pid), 0);
	dmem_pool_destroy(p);
}
END_TEST

static void *fill(dmem_pool_t *p)
{
	dmem_pool_stats_t st;
	void *big;

	ck_assert_int_eq(dmem_pool_stats(p, &st), 0);
	ck_assert_int_eq(dmem_alloc(p, st.largest_free, 0, &big), 0);
	return big;
}

START_TEST(timed_alloc_times_out)
{
	dmem_pool_t *p = dmt_pool("tto", MiB);
	void *big = fill(p), *x;
	struct timespec d = in_ms(60), zero = {0, 0};

	ck_assert_int_eq(dmem_alloc_timed(p, 1000, 0, &d, &x), -ETIMEDOUT);
	ck_assert(passed(&d));
	ck_assert_int_eq(dmem_alloc_timed(p, 1000, 0, &zero, &x), -ETIMEDOUT);
	/* Never fits: fails at once, even with no deadline. */
	ck_assert_int_eq(dmem_alloc_timed(p, 2 * MiB, 0, NULL, &x),
			 -DMEM_E_TOOBIG);
	dmem_free(p, big);
	ck_assert_int_eq(dmem_alloc_timed(p, 1000, 0, &zero, &x), 0);
	dmem_free(p, x);
	dmem_pool_destroy(p);
}
END_TEST

/* A process blocked in dmem_alloc_timed is woken by another's free. */
static void blocked_alloc_woken(const struct timespec *deadline_or_null)
{
	dmem_pool_t *p = dmt_pool(deadline_or_null ? "twk" : "fwk2", MiB);
	void *big = fill(p);
	dmem_pool_desc_t d;
	pid_t pid;

	dmem_pool_desc_get(p, &d);
	pid = fork();
	if (pid == 0) {
		void *x;
		struct timespec dl = in_ms(30000);
		int rc = dmem_alloc_timed(p, 200000, 0,
					  deadline_or_null ? &dl : NULL, &x);
		dmt_exit(p, NULL, rc == 0 ? 0 : 1);
	}
	usleep(30000); /* let it block (correct either way) */
	/* Free from a third process, through its own attachment. */
	pid_t freer = fork();
	if (freer == 0) {
		dmem_pool_t *q;
		int rc;

		if (dmem_pool_attach(&d, &q))
			dmt_exit(p, NULL, 2);
		rc = dmem_free(q, (char *)dmem_pool_base(q) +
					  dmem_pool_offset(p, big));
		dmt_exit(p, q, rc ? 3 : 0);
	}
	ck_assert_int_eq(dmt_wait(freer), 0);
	ck_assert_int_eq(dmt_wait(pid), 0);
	ck_assert_int_eq(dmem_pool_check(p), 0);
	dmem_pool_destroy(p);
}

START_TEST(timed_alloc_woken_by_free)
{
	blocked_alloc_woken((struct timespec[]){{0, 0}});
}
END_TEST

START_TEST(forever_alloc_woken_by_free)
{
	blocked_alloc_woken(NULL);
}
END_TEST

START_TEST(deadline_after_normalises)
{
	struct timespec a, b;

	ck_assert_int_eq(dmem_deadline_after(0, &a), 0);
	ck_assert_int_eq(dmem_deadline_after(1999999999u, &b), 0);
	ck_assert_int_lt(b.tv_nsec, 1000000000L);
	ck_assert_int_ge(b.tv_sec, a.tv_sec + 1);
	ck_assert_int_eq(dmem_deadline_after(0, NULL), -EINVAL);
}
END_TEST

int main(void)
{
	TCase *tc;
	Suite *s = dmt_suite("dmem_wait", "wait", 60, &tc);

	tcase_add_test(tc, futex_wait_times_out_at_deadline);
	tcase_add_test(tc, futex_wakes_other_process);
	tcase_add_test(tc, timed_alloc_times_out);
	tcase_add_test(tc, timed_alloc_woken_by_free);
	tcase_add_test(tc, forever_alloc_woken_by_free);
	tcase_add_test(tc, deadline_after_normalises);
	return dmt_run(s);
}
