/* libdlaunch: closing a handle (dlaunch_runtime_stop, dlaunch_detach) while
 * other threads are blocked in calls on it, and channel handles of the
 * runtime's default pool that outlive the runtime.
 *
 * White-box only in that it reads the handle's in-flight count (under the
 * handle's lock) to know that a thread really is inside its call before the
 * handle is closed: closing a handle no call is in is the ordinary case. */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dragon/dchan.h>
#include <dragon/dlaunch.h>
#include "dlaunch_test.h"
#include "dlaunch_private.h"

#define NWAITERS 3

static pid_t spawn_sleep(dlaunch_t *rt)
{
	char *argv[] = {"sleep", "1000", NULL};
	pid_t pid = 0;
	int rc = dlaunch_spawn(rt, "/bin/sleep", argv, NULL, &pid);

	ck_assert_msg(rc == 0, "spawn: %s", dlaunch_errmsg());
	return pid;
}

/* Wait until n calls are in flight on rt. */
static void await_inflight(dlaunch_t *rt, unsigned n)
{
	for (;;) {
		unsigned k;

		pthread_mutex_lock(&rt->lock);
		k = rt->inflight;
		pthread_mutex_unlock(&rt->lock);
		if (k >= n)
			return;
		usleep(1000);
	}
}

struct waiter {
	dlaunch_t *rt;
	pid_t pid;
	int rc;
	char msg[256];
	pthread_t t;
};

static void *wait_thread(void *arg)
{
	struct waiter *w = arg;
	dlaunch_status_t st;

	w->rc = dlaunch_wait(w->rt, w->pid, DLAUNCH_FOREVER, &st);
	snprintf(w->msg, sizeof w->msg, "%s", dlaunch_errmsg());
	return NULL;
}

static void start_waiters(struct waiter *w, int n, dlaunch_t *rt)
{
	for (int i = 0; i < n; i++) {
		w[i].rt = rt;
		w[i].pid = spawn_sleep(rt);
		w[i].rc = 1;
		ck_assert_int_eq(
			pthread_create(&w[i].t, NULL, wait_thread, &w[i]), 0);
	}
	await_inflight(rt, (unsigned)n);
}

static void check_waiters(struct waiter *w, int n)
{
	for (int i = 0; i < n; i++) {
		pthread_join(w[i].t, NULL);
		ck_assert_msg(w[i].rc == -DLAUNCH_E_CLOSED,
			      "waiter %d: %d (%s), expected "
			      "-DLAUNCH_E_CLOSED",
			      i, w[i].rc, w[i].msg);
		ck_assert_msg(strstr(w[i].msg, "closed"), "message: %s",
			      w[i].msg);
	}
}

/* The processes are gone once the runtime stopped (reaped by it). */
static void check_gone(struct waiter *w, int n)
{
	for (int i = 0; i < n; i++)
		ck_assert_msg(kill(w[i].pid, 0) < 0 && errno == ESRCH,
			      "pid %d still exists", (int)w[i].pid);
}

START_TEST(stop_wakes_waiters)
{
	struct waiter w[NWAITERS];
	dlaunch_t *rt = dlt_start(0);
	int rc;

	start_waiters(w, NWAITERS, rt);
	rc = dlaunch_runtime_stop(rt, 5 * SEC);
	ck_assert_msg(rc == 0, "stop: %d %s", rc, dlaunch_errmsg());
	check_waiters(w, NWAITERS);
	check_gone(w, NWAITERS);
}
END_TEST

/* dlaunch_detach of the runtime's own handle is dlaunch_runtime_stop. */
START_TEST(detach_own_handle_wakes_waiter)
{
	struct waiter w[1];
	dlaunch_t *rt = dlt_start(0);

	start_waiters(w, 1, rt);
	ck_assert_int_eq(dlaunch_detach(rt), 0);
	check_waiters(w, 1);
	check_gone(w, 1);
}
END_TEST

/* A handle from dlaunch_attach: detaching it wakes its waiter; the
 * runtime goes on serving its own handle. */
START_TEST(detach_attached_wakes_waiter)
{
	struct waiter w[1];
	dlaunch_t *rt = dlt_start(DLAUNCH_RT_F_SETENV), *h = NULL;
	dlaunch_status_t st;
	pid_t pid;
	int rc;

	rc = dlaunch_attach(NULL, &h);
	ck_assert_msg(rc == 0, "attach: %s", dlaunch_errmsg());
	start_waiters(w, 1, h);
	ck_assert_int_eq(dlaunch_detach(h), 0);
	check_waiters(w, 1);
	/* The runtime itself is untouched. */
	pid = spawn_sleep(rt);
	ck_assert_int_eq(dlaunch_signal(rt, pid, SIGKILL), 0);
	ck_assert_int_eq(dlaunch_wait(rt, pid, 30 * SEC, &st), 0);
	ck_assert_int_eq(st.signo, SIGKILL);
	ck_assert_int_eq(dlaunch_runtime_stop(rt, 5 * SEC), 0);
	check_gone(w, 1);
}
END_TEST

/* Closing twice from one thread: the second call is refused, not a
 * double free (the handle is still alive while its closer runs). */
START_TEST(calls_after_close_started_are_refused)
{
	dlaunch_t *rt = dlt_start(DLAUNCH_RT_F_SETENV), *h = NULL;
	dlaunch_status_t st;
	pid_t pid;

	ck_assert_int_eq(dlaunch_attach(NULL, &h), 0);
	pthread_mutex_lock(&h->lock);
	h->closing = true; /* as dlaunch__close leaves it while it waits */
	pthread_mutex_unlock(&h->lock);
	ck_assert_int_eq(dlaunch_spawn(h, "/bin/true", (char *[]){"true", NULL},
				       NULL, &pid),
			 -DLAUNCH_E_CLOSED);
	ck_assert_int_eq(dlaunch_wait(h, 1234, 0, &st), -DLAUNCH_E_CLOSED);
	ck_assert_int_eq(dlaunch_proc_adopt(h, 1234, DLAUNCH_PROC_F_NOWAIT),
			 -DLAUNCH_E_CLOSED);
	ck_assert_int_eq(dlaunch_detach(h), -DLAUNCH_E_CLOSED);
	ck_assert_int_eq(h->inflight, 0);
	pthread_mutex_lock(&h->lock);
	h->closing = false;
	pthread_mutex_unlock(&h->lock);
	ck_assert_int_eq(dlaunch_detach(h), 0);
	ck_assert_int_eq(dlaunch_runtime_stop(rt, 5 * SEC), 0);
}
END_TEST

/* Mappings of this process whose path names the runtime's segments. */
static int count_mappings(const char *instance)
{
	char line[1024], key[128];
	FILE *f = fopen("/proc/self/maps", "re");
	int n = 0;

	snprintf(key, sizeof key, ".%s.", instance);
	while (fgets(line, sizeof line, f))
		n += strstr(line, key) != NULL;
	fclose(f);
	return n;
}

/* A channel handle of the default pool opened in this process stays
 * usable after dlaunch_runtime_stop (its segment is removed but libdchan
 * keeps its mapping), and closing it unmaps the pool. */
START_TEST(channel_outlives_runtime)
{
	dlaunch_t *rt = dlt_start(0);
	char instance[64], buf[64];
	dchan_desc_t d;
	dchan_t *ch;
	size_t len;
	int rc;

	snprintf(instance, sizeof instance, "%s", dlaunch_instance(rt));
	rc = dlaunch_channel_get(rt, "outlives", NULL, &d);
	ck_assert_msg(rc == 1, "channel_get: %d %s", rc, dlaunch_errmsg());
	ck_assert_int_eq(dchan_attach(&d, &ch), 0);
	ck_assert_int_eq(dchan_send(ch, "before", 7, SEC), 0);
	ck_assert_int_eq(dlaunch_runtime_stop(rt, 5 * SEC), 0);
	ck_assert_int_gt(count_mappings(instance), 0);
	ck_assert_int_eq(dchan_recv(ch, buf, sizeof buf, SEC, &len), 0);
	ck_assert_str_eq(buf, "before");
	ck_assert_int_eq(dchan_send(ch, "after", 6, SEC), 0);
	ck_assert_int_eq(dchan_recv(ch, buf, sizeof buf, SEC, &len), 0);
	ck_assert_str_eq(buf, "after");
	ck_assert_int_eq(dchan_detach(ch), 0);
	ck_assert_int_eq(count_mappings(instance), 0);
}
END_TEST

/* Without channel handles left, stopping leaves no mapping behind. */
START_TEST(stop_unmaps_everything)
{
	dlaunch_t *rt = dlt_start(0);
	char instance[64];
	dchan_desc_t d;

	snprintf(instance, sizeof instance, "%s", dlaunch_instance(rt));
	ck_assert_int_eq(dlaunch_channel_get(rt, "c", NULL, &d), 1);
	ck_assert_int_gt(count_mappings(instance), 0);
	ck_assert_int_eq(dlaunch_runtime_stop(rt, 5 * SEC), 0);
	ck_assert_int_eq(count_mappings(instance), 0);
}
END_TEST

DLT_MAIN("dlaunch_close", 0, stop_wakes_waiters, detach_own_handle_wakes_waiter,
	 detach_attached_wakes_waiter, calls_after_close_started_are_refused,
	 channel_outlives_runtime, stop_unmaps_everything)
