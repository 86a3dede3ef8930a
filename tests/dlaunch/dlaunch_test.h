/* Helpers shared by the libdlaunch Check suites. */
#ifndef DRAGON_TESTS_DLAUNCH_TEST_H
#define DRAGON_TESTS_DLAUNCH_TEST_H

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <dragon/dlaunch.h>

#define SEC 1000000000ull

/* n scaled by DRAGON_TEST_SCALE (slow builds: sanitizers, valgrind), at
 * least 2. */
static inline int dlt_scaled(int n)
{
	const char *s = getenv("DRAGON_TEST_SCALE");
	double f = s ? atof(s) : 1.0;
	int v = (int)(n * (f > 0 ? f : 1.0));

	return v < 2 ? 2 : v;
}

/* An embedded runtime with a 64 MiB default pool and the given flags. */
static inline dlaunch_t *dlt_start(uint32_t flags)
{
	dlaunch_runtime_attr_t a = {.field_mask = DLAUNCH_RT_ATTR_POOL_SIZE |
						  DLAUNCH_RT_ATTR_FLAGS,
				    .pool_size = 64u << 20,
				    .flags = flags};
	dlaunch_t *rt = NULL;
	int rc = dlaunch_runtime_start(&a, &rt);

	ck_assert_msg(rc == 0, "start: %s", dlaunch_errmsg());
	return rt;
}

/* main() of a suite of one test case (timeout in seconds; 0 keeps the
 * harness's default): DLT_MAIN("dlaunch_close", 0, test_a, test_b, ...). */
static inline int dlt_main(const char *name, unsigned timeout,
			   const TTest *const *tests, size_t n)
{
	Suite *s = suite_create(name);
	TCase *tc = tcase_create(name);
	SRunner *sr;
	int failed;

	if (timeout)
		tcase_set_timeout(tc, timeout);
	for (size_t i = 0; i < n; i++)
		tcase_add_test(tc, tests[i]);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#define DLT_MAIN(name, timeout, ...)                                           \
	int main(void)                                                         \
	{                                                                      \
		const TTest *const dlt_tests_[] = {__VA_ARGS__};               \
                                                                               \
		return dlt_main(name, timeout, dlt_tests_,                     \
				sizeof dlt_tests_ / sizeof *dlt_tests_);       \
	}

#endif
