/* One Check suite for every library: the version it reports and its error
 * text.  A test file defines VT_NAME ("dmem", ...), VT_VERSION,
 * VT_VERSION_NUMBER and VT_STRERROR for its library, includes its public
 * header, then this file. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

START_TEST(version_matches_header_and_package)
{
	char s[32];
	unsigned v = VT_VERSION();

	ck_assert_uint_eq(v, VT_VERSION_NUMBER);
	snprintf(s, sizeof s, "%u.%u.%u", v >> 16, (v >> 8) & 0xff, v & 0xff);
	ck_assert_str_eq(s, PACKAGE_VERSION_EXPECTED);
}
END_TEST

START_TEST(strerror_knows_errno)
{
	ck_assert_str_eq(VT_STRERROR(-ENOMEM), strerror(ENOMEM));
	ck_assert_str_eq(VT_STRERROR(-ETIMEDOUT), strerror(ETIMEDOUT));
}
END_TEST

START_TEST(strerror_never_null)
{
	static const int codes[] = {0,	     1,	    -1,		-4095,
				    -999999, 12345, -2147483647};

	for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
		const char *s = VT_STRERROR(codes[i]);
		ck_assert_ptr_nonnull(s);
		ck_assert_int_gt((int)strlen(s), 0);
	}
}
END_TEST

START_TEST(strerror_knows_library_codes)
{
	/* libdmem's codes have their own text, not errno's, and reach a
	 * caller of any layer above unchanged. */
	int code = -DMEM_E_NOSPACE;

	ck_assert_str_eq(VT_STRERROR(code), dmem_strerror(code));
	ck_assert_ptr_null(strstr(VT_STRERROR(code), "Unknown error"));
}
END_TEST

int main(void)
{
	Suite *s = suite_create(VT_NAME "_version");
	TCase *tc = tcase_create("version");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, version_matches_header_and_package);
	tcase_add_test(tc, strerror_knows_errno);
	tcase_add_test(tc, strerror_never_null);
	tcase_add_test(tc, strerror_knows_library_codes);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
