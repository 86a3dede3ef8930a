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

#endif
