/*
 * libdchan white box: how long a blocked operation polls before it
 * sleeps (dchan__spin_ns), with the load it samples given by the test.
 */
#include "dchan_test.h"
#include "dchan_private.h"

#define MS 1000000ull

static long runnable_now;

static long fake_runnable(void)
{
	return runnable_now;
}

/*
 * A process that took its first sample of the load while the machine was
 * briefly busy (its own start: the parent, the zygote forking the next
 * spare) polls again once the burst is over, within a few milliseconds,
 * not after the 50 ms an uncrowded sample is kept for.  Polling, once on,
 * stays on for those 50 ms whatever a single busy instant shows.
 */
START_TEST(crowded_sample_is_rechecked_soon)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	uint64_t t = dchan__now_ns();

	if (ncpu < 2)
		return; /* one CPU: never polls */
	unsetenv("DRAGON_DCHAN_SPIN_NS");
	runnable_now = ncpu + 3;
	ck_assert_uint_eq(dchan__spin_ns_at(t, fake_runnable), 0);
	runnable_now = 1;
	ck_assert_msg(dchan__spin_ns_at(t + 5 * MS, fake_runnable) > 0,
		      "5 ms after a crowded sample, on an idle machine, "
		      "a wait still does not poll");
	runnable_now = ncpu + 3;
	ck_assert_uint_gt(dchan__spin_ns_at(t + 10 * MS, fake_runnable), 0);
	ck_assert_uint_eq(dchan__spin_ns_at(t + 60 * MS, fake_runnable), 0);
}
END_TEST

/* Where the load cannot be read, or one CPU is online, nothing polls. */
START_TEST(unknown_load_does_not_poll)
{
	uint64_t t = dchan__now_ns();

	unsetenv("DRAGON_DCHAN_SPIN_NS");
	runnable_now = -1;
	ck_assert_uint_eq(dchan__spin_ns_at(t, fake_runnable), 0);
	ck_assert_uint_eq(dchan__spin_ns_at(t + 5 * MS, fake_runnable), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("dchan_spin");
	TCase *tc = tcase_create("spin");

	tcase_add_test(tc, crowded_sample_is_rechecked_soon);
	tcase_add_test(tc, unknown_load_does_not_poll);
	suite_add_tcase(s, tc);
	return t_run(s);
}
