/* libdchan: the version it reports and its error text. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <dragon/dchan.h>

START_TEST(version_matches_header_and_package)
{
	char s[32];
	unsigned v = dchan_version();

	ck_assert_uint_eq(v, DCHAN_VERSION_NUMBER);
	snprintf(s, sizeof s, "%u.%u.%u", v >> 16, (v >> 8) & 0xff, v & 0xff);
	ck_assert_str_eq(s, PACKAGE_VERSION_EXPECTED);
}
END_TEST

START_TEST(strerror_knows_errno)
{
	ck_assert_str_eq(dchan_strerror(-ENOMEM), strerror(ENOMEM));
	ck_assert_str_eq(dchan_strerror(-ETIMEDOUT), strerror(ETIMEDOUT));
}
END_TEST

START_TEST(strerror_never_null)
{
	static const int codes[] = {0,	     1,	    -1,		-4095,
				    -999999, 12345, -2147483647};

	for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
		const char *s = dchan_strerror(codes[i]);
		ck_assert_ptr_nonnull(s);
		ck_assert_int_gt((int)strlen(s), 0);
	}
}
END_TEST

START_TEST(strerror_knows_lower_layer_codes)
{
	/* A code from libdmem reaches a caller of this library unchanged. */
	int code = -DMEM_E_NOSPACE;

	ck_assert_str_eq(dchan_strerror(code), dmem_strerror(code));
	ck_assert_ptr_null(strstr(dchan_strerror(code), "Unknown error"));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("dchan_version");
	TCase *tc = tcase_create("version");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, version_matches_header_and_package);
	tcase_add_test(tc, strerror_knows_errno);
	tcase_add_test(tc, strerror_never_null);
	tcase_add_test(tc, strerror_knows_lower_layer_codes);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
