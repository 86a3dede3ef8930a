/* Helpers shared by the libdmem test suites.
 *
 * Every pool a suite makes lives under the instance "dmt<pid of main>", so
 * main can remove whatever a failed (or killed) test left in /dev/shm.
 */
#ifndef DMEM_TEST_H
#define DMEM_TEST_H

#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dragon/dmem.h>

static char dmt_instance[32];

/* Set the instance for every pool made from now on (children inherit). */
static inline void dmt_init(void)
{
	snprintf(dmt_instance, sizeof dmt_instance, "dmt%d", (int)getpid());
	setenv("DRAGON_INSTANCE", dmt_instance, 1);
	unsetenv("DRAGON_DEFAULT_SEG_SZ");
	unsetenv("DRAGON_NODE_ID");
}

/* Remove the segments of this suite's instance; returns how many. */
static inline int dmt_cleanup(void)
{
	char pat[64];
	int n = 0;
	DIR *d = opendir("/dev/shm");
	struct dirent *e;

	snprintf(pat, sizeof pat, ".%s.", dmt_instance);
	while (d && (e = readdir(d)))
		if (!strncmp(e->d_name, "dragon.", 7) &&
		    strstr(e->d_name, pat)) {
			shm_unlink(e->d_name);
			n++;
		}
	if (d)
		closedir(d);
	return n;
}

/* DRAGON_TEST_SCALE (default 1) scales loop counts; at least 1. */
static inline long dmt_scaled(long n)
{
	const char *s = getenv("DRAGON_TEST_SCALE");
	double f = s ? atof(s) : 1.0;
	long v = (long)((double)n * (f > 0 ? f : 1.0));

	return v < 1 ? 1 : v;
}

static inline dmem_pool_t *dmt_pool(const char *name, size_t size)
{
	dmem_pool_t *p = NULL;
	int rc = dmem_pool_create(name, size, NULL, &p);

	ck_assert_msg(rc == 0, "create %s: %s: %s", name, dmem_strerror(rc),
		      dmem_errmsg());
	return p;
}

/* End a forked child: detach what it inherited, so leak checkers see no
 * lost handle, then _exit. */
static inline void dmt_exit(dmem_pool_t *p, dmem_pool_t *q, int code)
{
	if (p)
		dmem_pool_detach(p);
	if (q)
		dmem_pool_detach(q);
	_exit(code);
}

/* Wait for a child; returns its exit status (or 128 + signal). */
static inline int dmt_wait(pid_t pid)
{
	int st;

	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/*
 * Start a suite of one test case: sets up the instance (dmt_init) and, when
 * timeout > 0, the case's timeout in seconds (else CK_DEFAULT_TIMEOUT holds).
 * The caller adds the tests to *tc_out and hands the suite to dmt_run.
 */
static inline Suite *dmt_suite(const char *name, const char *tcname,
			       double timeout, TCase **tc_out)
{
	Suite *s = suite_create(name);
	TCase *tc = tcase_create(tcname);

	dmt_init();
	if (timeout > 0)
		tcase_set_timeout(tc, timeout);
	suite_add_tcase(s, tc);
	*tc_out = tc;
	return s;
}

/* Run a suite in fork mode, clean /dev/shm, return the exit code. */
static inline int dmt_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed, left;

	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	left = dmt_cleanup();
	if (left && !failed) {
		fprintf(stderr, "%d segment(s) left in /dev/shm\n", left);
		failed = 1;
	}
	return failed ? 1 : 0;
}

#endif
