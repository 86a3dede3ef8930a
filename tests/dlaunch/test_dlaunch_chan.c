/* libdlaunch: channels by name.  Create-or-look-up gives one channel per
 * name, usable across processes, also when several processes ask for the
 * same name at once. */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dragon/dchan.h>
#include <dragon/dlaunch.h>
#include "dlaunch_test.h"

static char self[4096];

START_TEST(get_twice_same_channel)
{
	dlaunch_t *rt = dlt_start(0);
	dchan_attr_t attr = {.field_mask = DCHAN_ATTR_CAPACITY, .capacity = 8};
	dchan_desc_t d1, d2;
	dchan_t *a, *b;
	char buf[16];
	size_t len;

	ck_assert_int_eq(dlaunch_channel_get(rt, "c", &attr, &d1), 1);
	ck_assert_int_eq(dlaunch_channel_get(rt, "c", NULL, &d2), 0);
	ck_assert_int_eq(memcmp(&d1, &d2, sizeof d1), 0);
	ck_assert_int_ne(d1.offset, UINT64_MAX);
	/* This process maps the default pool through libdchan now; a
	 * channel the services create afterwards must still be usable. */
	ck_assert_int_eq(dchan_attach(&d1, &a), 0);
	ck_assert_int_eq(dlaunch_channel_get(rt, "d", NULL, &d2), 1);
	ck_assert_int_ne(d2.offset, UINT64_MAX);
	ck_assert_int_eq(dchan_attach(&d2, &b), 0);
	ck_assert_int_eq(dchan_send(a, "hi", 2, 0), 0);
	ck_assert_int_eq(dchan_recv(a, buf, sizeof buf, 0, &len), 0);
	ck_assert_int_eq(dchan_send(b, "yo", 2, 0), 0);
	ck_assert_int_eq(dchan_recv(b, buf, sizeof buf, 0, &len), 0);
	ck_assert_int_eq(memcmp(buf, "yo", 2), 0);
	dchan_detach(a);
	dchan_detach(b);
	/* Names hold one kind. */
	ck_assert_int_eq(dlaunch_pool_get(rt, "c", 0, &(dmem_pool_desc_t){0}),
			 -DLAUNCH_E_KIND);
	ck_assert_int_eq(
		dlaunch_name_register(rt, "bytes", DLAUNCH_KIND_BYTES, "x", 1),
		1);
	ck_assert_int_eq(dlaunch_channel_get(rt, "bytes", NULL, &d2),
			 -DLAUNCH_E_KIND);
	dlaunch_runtime_stop(rt, 5 * SEC);
}
END_TEST

START_TEST(bad_attributes)
{
	dlaunch_t *rt = dlt_start(0);
	dchan_attr_t attr = {.field_mask = DCHAN_ATTR_CAPACITY,
			     .capacity = DCHAN_CAPACITY_MAX + 1u};
	dchan_desc_t d;

	ck_assert_int_eq(dlaunch_channel_get(rt, "big", &attr, &d), -EINVAL);
	ck_assert_ptr_nonnull(strstr(dlaunch_errmsg(), "big"));
	ck_assert_int_eq(dlaunch_channel_get(rt, "", NULL, &d), -EINVAL);
	/* A failed create registers nothing. */
	attr.capacity = 4;
	ck_assert_int_eq(dlaunch_channel_get(rt, "big", &attr, &d), 1);
	dlaunch_runtime_stop(rt, 5 * SEC);
}
END_TEST

/* The child side of many_processes_one_channel: wait for the start, ask
 * for the channel, send our pid on it.  Exit 11 if this call created it,
 * 10 if it found it, other values on errors. */
static int child_main(void)
{
	dchan_desc_t d;
	dlaunch_t *rt;
	dchan_t *ch;
	pid_t me = getpid();
	char buf[4];
	size_t len;
	int created;

	if (dlaunch_attach(NULL, &rt))
		return 100;
	while (dlaunch_name_lookup(rt, "go", 0, buf, sizeof buf, &len) ==
	       -DLAUNCH_E_NONAME)
		usleep(1000);
	created = dlaunch_channel_get(rt, "shared", NULL, &d);
	if (created < 0)
		return 101;
	if (dchan_attach(&d, &ch) || dchan_send(ch, &me, sizeof me, 30 * SEC))
		return 102;
	dchan_detach(ch);
	dlaunch_detach(rt);
	return 10 + created;
}

START_TEST(many_processes_one_channel)
{
	dlaunch_t *rt = dlt_start(0);
	char *argv[] = {self, "chanchild", NULL};
	int n = dlt_scaled(8), ncreated = 0;
	pid_t *pids = calloc((size_t)n, sizeof *pids);
	dlaunch_status_t st;
	dchan_desc_t d;
	dchan_t *ch;
	size_t len;

	for (int i = 0; i < n; i++)
		ck_assert_int_eq(dlaunch_spawn(rt, self, argv, NULL, &pids[i]),
				 0);
	ck_assert_int_eq(
		dlaunch_name_register(rt, "go", DLAUNCH_KIND_BYTES, "", 0), 1);
	for (int i = 0; i < n; i++) {
		ck_assert_int_eq(
			dlaunch_wait(rt, pids[i], DLAUNCH_FOREVER, &st), 0);
		ck_assert_msg(st.exited && (st.code == 10 || st.code == 11),
			      "child %d: exited %d code %d", i, st.exited,
			      st.code);
		ncreated += st.code == 11;
	}
	ck_assert_int_eq(ncreated, 1);
	ck_assert_int_eq(dlaunch_channel_get(rt, "shared", NULL, &d), 0);
	ck_assert_int_eq(dchan_attach(&d, &ch), 0);
	for (int i = 0; i < n; i++) {
		pid_t got = 0;
		bool known = false;
		ck_assert_int_eq(dchan_recv(ch, &got, sizeof got, 0, &len), 0);
		for (int j = 0; j < n; j++)
			known |= pids[j] == got;
		ck_assert_msg(known, "message %d: pid %d", i, (int)got);
	}
	dchan_detach(ch);
	free(pids);
	dlaunch_runtime_stop(rt, 5 * SEC);
}
END_TEST

int main(int argc, char **argv)
{
	const TTest *const tests[] = {
		get_twice_same_channel,
		bad_attributes,
		many_processes_one_channel,
	};

	if (argc > 1 && strcmp(argv[1], "chanchild") == 0)
		return child_main();
	if (!realpath("/proc/self/exe", self))
		return 1;
	return dlt_main("dlaunch_chan", 0, tests, sizeof tests / sizeof *tests);
}
