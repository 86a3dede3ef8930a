/* Helpers shared by the libdchan test suites. */
#ifndef DCHAN_TEST_H
#define DCHAN_TEST_H

#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <dragon/dchan.h>

/* DRAGON_TEST_SCALE scales loop sizes down under valgrind/sanitizers. */
static inline double t_scale(void)
{
	const char *s = getenv("DRAGON_TEST_SCALE");
	double f = s ? strtod(s, NULL) : 1.0;

	return f > 0 ? f : 1.0;
}

static inline uint64_t t_scaled(uint64_t n, uint64_t min)
{
	double v = (double)n * t_scale();

	return v < (double)min ? min : (uint64_t)v;
}

/*
 * Handles a test makes stay reachable from here, so that a forked child
 * that exits without detaching its inherited copies leaks nothing in
 * valgrind's eyes (the memory is the parent's, still in use there).
 */
static void *t_kept[256];

static inline void *t_keep(void *p)
{
	for (size_t i = 0; i < sizeof t_kept / sizeof *t_kept; i++) {
		if (!t_kept[i]) {
			t_kept[i] = p;
			break;
		}
	}
	return p;
}

/* A pool with a name unique to this process and test; destroyed by
 * t_pool_done (and the tests leave nothing in /dev/shm). */
static inline dmem_pool_t *t_pool(const char *tag, size_t size)
{
	char name[64];
	dmem_pool_t *pool = NULL;
	int rc;

	snprintf(name, sizeof name, "tdchan-%s-%d", tag, (int)getpid());
	rc = dmem_pool_create(name, size, NULL, &pool);
	ck_assert_msg(rc == 0, "pool create: %s %s", dmem_strerror(rc),
		      dmem_errmsg());
	return t_keep(pool);
}

static inline void t_pool_done(dmem_pool_t *pool)
{
	ck_assert_int_eq(dmem_pool_check(pool), 0);
	ck_assert_int_eq(dmem_pool_destroy(pool), 0);
}

/* Allocations alive in the pool, not counting this process's cache. */
static inline uint64_t t_live(dmem_pool_t *pool)
{
	dmem_pool_stats_t st;

	ck_assert_int_eq(dmem_pool_flush(pool), 0);
	ck_assert_int_eq(dmem_pool_stats(pool, &st), 0);
	return st.live_allocs;
}

static inline dchan_t *t_chan(dmem_pool_t *pool, uint32_t cap, uint32_t slot)
{
	dchan_attr_t a = {0};
	dchan_t *ch = NULL;
	int rc;

	if (cap) {
		a.field_mask |= DCHAN_ATTR_CAPACITY;
		a.capacity = cap;
	}
	if (slot) {
		a.field_mask |= DCHAN_ATTR_SLOT_SIZE;
		a.slot_size = slot;
	}
	rc = dchan_create(pool, &a, &ch);
	ck_assert_msg(rc == 0, "create: %s", dchan_errmsg());
	return t_keep(ch);
}

/*
 * The common setting of a test: a pool, one channel in it, and the number
 * of allocations alive in the pool before the test (t_fix_close checks
 * that the test left no more).
 */
struct t_fix {
	dmem_pool_t *pool;
	dchan_t *ch;
	uint64_t live0;
};

static inline struct t_fix t_fix_open(const char *tag, size_t pool_size,
				      uint32_t cap, uint32_t slot)
{
	struct t_fix f;

	f.pool = t_pool(tag, pool_size);
	f.ch = t_chan(f.pool, cap, slot);
	f.live0 = t_live(f.pool);
	return f;
}

static inline void t_fix_close(struct t_fix *f)
{
	ck_assert_uint_eq(t_live(f->pool), f->live0);
	ck_assert_int_eq(dchan_destroy(f->ch), 0);
	t_pool_done(f->pool);
}

/* Memory shared with the children a test forks (zeroed). */
static inline void *t_shared(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	ck_assert_ptr_ne(p, MAP_FAILED);
	return p;
}

/*
 * fork(), failing the test if it fails.  Not ck_assert: a passing
 * assertion writes a location record to Check's message file, and the
 * child would write one too; a child SIGKILLed in that write leaves half a
 * record, and Check then fails the whole test with "Bad message type".
 */
static inline pid_t t_fork(void)
{
	pid_t pid = fork();

	if (pid < 0)
		ck_abort_msg("fork: %s", strerror(errno));
	return pid;
}

#define T_OK(expr)                                                             \
	do {                                                                   \
		int t_rc_ = (int)(expr);                                       \
		ck_assert_msg(t_rc_ >= 0, "%s: %d %s", #expr, t_rc_,           \
			      dchan_errmsg());                                 \
	} while (0)

/* Wait for a child and return its exit status (or 128 + signal). */
static inline int t_wait(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	return 128 + WTERMSIG(st);
}

/* Fill buf with a pattern tied to seed, and check it. */
static inline void t_fill(void *buf, size_t len, uint64_t seed)
{
	unsigned char *p = buf;

	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(seed * 131 + i * 7 + (i >> 8));
}

static inline int t_check(const void *buf, size_t len, uint64_t seed)
{
	const unsigned char *p = buf;

	for (size_t i = 0; i < len; i++)
		if (p[i] != (unsigned char)(seed * 131 + i * 7 + (i >> 8)))
			return 0;
	return 1;
}

/* Remove the segments of this run's instance that a failed test left. */
static inline void t_sweep(const char *inst)
{
	char cmd[256];

	snprintf(cmd, sizeof cmd, "rm -f /dev/shm/dragon.*.%s.* 2>/dev/null",
		 inst);
	if (system(cmd) != 0)
		return;
}

/* Run the suite in fork mode, in a runtime instance of its own. */
static inline int t_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	char inst[32];
	int failed;

	snprintf(inst, sizeof inst, "tdchan%d", (int)getpid());
	setenv("DRAGON_INSTANCE", inst, 1);
	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	t_sweep(inst);
	return failed ? 1 : 0;
}

/*
 * main() of a suite of one test case: T_MAIN("dchan_core", 60, test_a,
 * test_b, ...) (the case's timeout in seconds; 0 keeps check's default).
 */
static inline int t_main(const char *name, unsigned timeout,
			 const TTest *const *tests, size_t n)
{
	Suite *s = suite_create(name);
	TCase *tc = tcase_create(name);

	if (timeout)
		tcase_set_timeout(tc, timeout);
	for (size_t i = 0; i < n; i++)
		tcase_add_test(tc, tests[i]);
	suite_add_tcase(s, tc);
	return t_run(s);
}

#define T_MAIN(name, timeout, ...)                                             \
	int main(void)                                                         \
	{                                                                      \
		const TTest *const t_tests_[] = {__VA_ARGS__};                 \
                                                                               \
		return t_main(name, timeout, t_tests_,                         \
			      sizeof t_tests_ / sizeof *t_tests_);             \
	}

#endif
