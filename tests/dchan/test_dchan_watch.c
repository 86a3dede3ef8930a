/*
 * libdchan watch sets: changes of local channels made by other processes
 * become readiness of one descriptor, without a thread per channel.
 */
#include "dchan_test.h"

#include <dirent.h>
#include <poll.h>

#define MS 1000000ull

/* Is the watch set's descriptor readable within ms? */
static int readable(dchan_watch_t *w, int ms)
{
	struct pollfd p = {.fd = dchan_watch_fd(w), .events = POLLIN};

	return poll(&p, 1, ms) == 1;
}

START_TEST(t_watch_reports_changes)
{
	dmem_pool_t *pool = t_pool("watch", 8 << 20);
	dchan_attr_t a = {.field_mask = DCHAN_ATTR_CAPACITY, .capacity = 2};
	dchan_t *in, *out;
	dchan_watch_t *w;
	void *ck[4];
	char buf[8];
	size_t len;
	pid_t pid;
	int st;

	ck_assert_int_eq(dchan_create(pool, NULL, &in), 0);
	ck_assert_int_eq(dchan_create(pool, &a, &out), 0);
	ck_assert_int_eq(dchan_watch_create(&w), 0);
	ck_assert_int_ge(dchan_watch_fd(w), 0);
	ck_assert_int_eq(dchan_watch_add(w, in, DCHAN_POLLIN, in), 0);
	ck_assert_int_eq(dchan_send(out, "a", 1, 0), 0);
	ck_assert_int_eq(dchan_send(out, "b", 1, 0), 0);
	ck_assert_int_eq(dchan_watch_add(w, out, DCHAN_POLLOUT, out), 0);
	/* nothing ready: empty input, full output */
	ck_assert_int_eq(readable(w, 200), 0);
	ck_assert_int_eq(dchan_watch_take(w, ck, 4), 0);

	/* another process sends: the input channel is reported */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		usleep(100000);
		_exit(dchan_send(in, "x", 1, 0) == 0 ? 0 : 1);
	}
	ck_assert_int_eq(readable(w, 20000), 1);
	ck_assert_int_eq(dchan_watch_take(w, ck, 4), 1);
	ck_assert_ptr_eq(ck[0], in);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_int_eq(st, 0);
	ck_assert_int_eq(dchan_recv(in, buf, sizeof buf, 0, &len), 0);
	/* a report made before the receive may still wait; once it is taken
	 * and the channel is no longer ready, the set is quiet */
	ck_assert_int_le(dchan_watch_take(w, ck, 4), 1);
	ck_assert_int_eq(readable(w, 200), 0);

	/* a receive makes room: the output channel is reported */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		usleep(100000);
		_exit(dchan_recv(out, buf, sizeof buf, 0, &len) == 0 ? 0 : 1);
	}
	ck_assert_int_eq(readable(w, 20000), 1);
	ck_assert_int_eq(dchan_watch_take(w, ck, 4), 1);
	ck_assert_ptr_eq(ck[0], out);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_int_eq(st, 0);

	/* still ready after a take: reported again (level, not edge) */
	ck_assert_int_eq(readable(w, 20000), 1);
	ck_assert_int_eq(dchan_watch_take(w, ck, 4), 1);
	ck_assert_int_eq(dchan_watch_del(w, out), 0);
	ck_assert_int_eq(dchan_watch_del(w, out), -ENOENT);
	ck_assert_int_le(dchan_watch_take(w, ck, 4), 0);
	ck_assert_int_eq(readable(w, 200), 0);
	ck_assert_int_eq(dchan_watch_del(w, in), 0);
	ck_assert_int_eq(dchan_watch_destroy(w), 0);
	ck_assert_int_eq(dchan_destroy(in), 0);
	ck_assert_int_eq(dchan_destroy(out), 0);
	t_pool_done(pool);
}
END_TEST

/* A held channel is the caller's to poll: not reported while held, and
 * reported as soon as it is released if it became ready meanwhile. */
START_TEST(t_watch_hold)
{
	dmem_pool_t *pool = t_pool("watchhold", 8 << 20);
	dchan_t *ch, *other;
	dchan_watch_t *w;
	void *ck[4];
	char buf[8];
	size_t len;

	ck_assert_int_eq(dchan_create(pool, NULL, &ch), 0);
	ck_assert_int_eq(dchan_create(pool, NULL, &other), 0);
	ck_assert_int_eq(dchan_watch_create(&w), 0);
	ck_assert_int_eq(dchan_watch_hold(w, ch, 1), -ENOENT);
	ck_assert_int_eq(dchan_watch_add(w, ch, DCHAN_POLLIN, ch), 0);
	ck_assert_int_eq(dchan_watch_add(w, other, DCHAN_POLLIN, other), 0);
	ck_assert_int_eq(dchan_watch_hold(w, ch, 1), 0);
	ck_assert_int_eq(dchan_watch_hold(w, ch, 1), 0); /* idempotent */
	ck_assert_int_eq(dchan_send(ch, "h", 1, 0), 0);
	/* the other channel is still watched while ch is held */
	ck_assert_int_eq(dchan_send(other, "o", 1, 0), 0);
	ck_assert_int_eq(readable(w, 20000), 1);
	ck_assert_int_eq(dchan_watch_take(w, ck, 4), 1);
	ck_assert_ptr_eq(ck[0], other);
	ck_assert_int_eq(dchan_recv(other, buf, sizeof buf, 0, &len), 0);
	/* a report of other made before the receive may still wait; never
	 * one of ch */
	if (dchan_watch_take(w, ck, 4) == 1)
		ck_assert_ptr_eq(ck[0], other);
	/* ch has a message, but it is held: nothing reported */
	ck_assert_int_eq(readable(w, 200), 0);
	/* released while ready: reported at once */
	ck_assert_int_eq(dchan_watch_hold(w, ch, 0), 0);
	ck_assert_int_eq(readable(w, 20000), 1);
	ck_assert_int_eq(dchan_watch_take(w, ck, 4), 1);
	ck_assert_ptr_eq(ck[0], ch);
	ck_assert_int_eq(dchan_recv(ch, buf, sizeof buf, 0, &len), 0);
	ck_assert_int_eq(dchan_watch_hold(NULL, ch, 1), -EINVAL);
	ck_assert_int_eq(dchan_watch_del(w, ch), 0);
	ck_assert_int_eq(dchan_watch_del(w, other), 0);
	ck_assert_int_eq(dchan_watch_destroy(w), 0);
	ck_assert_int_eq(dchan_destroy(ch), 0);
	ck_assert_int_eq(dchan_destroy(other), 0);
	t_pool_done(pool);
}
END_TEST

/* The owner sleeps in dchan_watch_wait: a change of a watched channel by
 * another process, or its own descriptor, wakes it; no helper needed. */
START_TEST(t_watch_wait)
{
	dmem_pool_t *pool = t_pool("watchwait", 8 << 20);
	dchan_t *in;
	dchan_watch_t *w;
	void *ck[4];
	char buf[8];
	size_t len;
	int p[2], st, n = 0;
	pid_t pid;

	ck_assert_int_eq(dchan_create(pool, NULL, &in), 0);
	ck_assert_int_eq(dchan_watch_create(&w), 0);
	ck_assert_int_eq(dchan_watch_add(w, in, DCHAN_POLLIN, in), 0);
	ck_assert_int_eq(pipe(p), 0);
	/* nothing ready: a look reports nothing, a timed wait ends */
	ck_assert_int_eq(dchan_watch_wait(w, -1, 0), 0);
	ck_assert_int_eq(dchan_watch_wait(w, p[0], 50), 0);
	ck_assert_int_eq(dchan_watch_take(w, ck, 4), 0);
	/* the descriptor ends an unbounded wait */
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	ck_assert_int_eq(dchan_watch_wait(w, p[0], -1), 0);
	ck_assert_int_eq(dchan_watch_take(w, ck, 4), 0);

	/* another process sends: an unbounded wait ends with the report */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		usleep(100000);
		_exit(dchan_send(in, "x", 1, 0) == 0 ? 0 : 1);
	}
	while (n == 0) {
		ck_assert_int_ge(dchan_watch_wait(w, -1, -1), 0);
		n = dchan_watch_take(w, ck, 4);
	}
	ck_assert_int_eq(n, 1);
	ck_assert_ptr_eq(ck[0], in);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_int_eq(st, 0);
	/* held: left to the owner, not reported */
	ck_assert_int_eq(dchan_watch_hold(w, in, 1), 0);
	ck_assert_int_eq(dchan_watch_wait(w, -1, 0), 0);
	ck_assert_int_eq(dchan_watch_take(w, ck, 4), 0);
	ck_assert_int_eq(dchan_watch_hold(w, in, 0), 0);
	n = 0;
	while (n == 0) {
		ck_assert_int_ge(dchan_watch_wait(w, -1, -1), 0);
		n = dchan_watch_take(w, ck, 4);
	}
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(dchan_recv(in, buf, sizeof buf, 0, &len), 0);
	ck_assert_int_eq(dchan_watch_wait(w, p[0], 0), 0);
	ck_assert_int_eq(dchan_watch_take(w, ck, 4), 0);

	/* after dchan_watch_fd the helper reports, and the wait sees it */
	ck_assert_int_ge(dchan_watch_fd(w), 0);
	ck_assert_int_eq(dchan_send(in, "y", 1, 0), 0);
	n = 0;
	while (n == 0) {
		ck_assert_int_ge(dchan_watch_wait(w, -1, -1), 0);
		n = dchan_watch_take(w, ck, 4);
	}
	ck_assert_int_eq(n, 1);
	close(p[0]);
	close(p[1]);
	ck_assert_int_eq(dchan_watch_destroy(w), 0);
	ck_assert_int_eq(dchan_destroy(in), 0);
	t_pool_done(pool);
}
END_TEST

/* Threads of this process now. */
static int threads(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* DRAGON_DCHAN_WATCH_URING=0: the wait takes the path of a kernel (or a
 * seccomp filter) without futex waits in io_uring -- through the helper
 * thread, which starts at the first wait -- and a change made by another
 * process still ends it. */
START_TEST(t_watch_wait_fallback)
{
	dmem_pool_t *pool = t_pool("watchfall", 8 << 20);
	dchan_t *in;
	dchan_watch_t *w;
	void *ck[4];
	int st, n = 0, before;
	pid_t pid;

	setenv("DRAGON_DCHAN_WATCH_URING", "0", 1);
	ck_assert_int_eq(dchan_create(pool, NULL, &in), 0);
	ck_assert_int_eq(dchan_watch_create(&w), 0);
	ck_assert_int_eq(dchan_watch_add(w, in, DCHAN_POLLIN, in), 0);
	before = threads();
	ck_assert_int_eq(dchan_watch_wait(w, -1, 0), 0);
	/* the helper (a sanitizer's runtime may start threads of its own) */
	ck_assert_int_gt(threads(), before);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		usleep(100000);
		_exit(dchan_send(in, "x", 1, 0) == 0 ? 0 : 1);
	}
	while (n == 0) {
		ck_assert_int_ge(dchan_watch_wait(w, -1, -1), 0);
		n = dchan_watch_take(w, ck, 4);
	}
	ck_assert_int_eq(n, 1);
	ck_assert_ptr_eq(ck[0], in);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_int_eq(st, 0);
	ck_assert_int_eq(dchan_watch_destroy(w), 0);
	ck_assert_int_eq(dchan_destroy(in), 0);
	t_pool_done(pool);
}
END_TEST

/* Another process sends one byte into ch after a while; the owner waits
 * (on fd as well) until the set reports ch. */
static void wait_for_send(dchan_watch_t *w, dchan_t *ch, int fd)
{
	void *ck[4];
	char buf[8];
	size_t len;
	int st, n = 0;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		usleep(50000);
		_exit(dchan_send(ch, "x", 1, 0) == 0 ? 0 : 1);
	}
	while (n == 0) {
		ck_assert_int_ge(dchan_watch_wait(w, fd, -1), 0);
		n = dchan_watch_take(w, ck, 4);
	}
	ck_assert_int_eq(n, 1);
	ck_assert_ptr_eq(ck[0], ch);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_int_eq(st, 0);
	ck_assert_int_eq(dchan_recv(ch, buf, sizeof buf, 0, &len), 0);
}

/* A sleep that one wait ends leaves the other in the ring for the next
 * sleep: a later change of the same channels still wakes the owner, and
 * another descriptor or another set of channels is waited on, not the
 * one left in. */
START_TEST(t_watch_wait_kept)
{
	dmem_pool_t *pool = t_pool("watchkept", 8 << 20);
	dchan_t *a, *b;
	dchan_watch_t *w;
	void *ck[4];
	char c;
	int p[2], q[2];

	ck_assert_int_eq(dchan_create(pool, NULL, &a), 0);
	ck_assert_int_eq(dchan_create(pool, NULL, &b), 0);
	ck_assert_int_eq(dchan_watch_create(&w), 0);
	ck_assert_int_eq(dchan_watch_add(w, a, DCHAN_POLLIN, a), 0);
	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(pipe(q), 0);
	/* the time ends a sleep: both waits stay in, and serve again */
	ck_assert_int_eq(dchan_watch_wait(w, p[0], 20), 0);
	wait_for_send(w, a, p[0]);
	wait_for_send(w, a, p[0]);
	/* the poll of p stays in; another descriptor is polled instead */
	ck_assert_int_eq(write(q[1], "x", 1), 1);
	ck_assert_int_eq(dchan_watch_wait(w, q[0], -1), 0);
	ck_assert_int_eq(read(q[0], &c, 1), 1);
	ck_assert_int_eq(dchan_watch_wait(w, q[0], 20), 0);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	ck_assert_int_eq(dchan_watch_wait(w, p[0], -1), 0);
	ck_assert_int_eq(read(p[0], &c, 1), 1);
	/* the futex wait left in covers a alone; b joins the set */
	ck_assert_int_eq(dchan_watch_wait(w, -1, 20), 0);
	ck_assert_int_eq(dchan_watch_add(w, b, DCHAN_POLLIN, b), 0);
	wait_for_send(w, b, p[0]);
	/* and leaves it: a alone again, without a descriptor */
	ck_assert_int_eq(dchan_watch_del(w, b), 0);
	wait_for_send(w, a, -1);
	ck_assert_int_eq(dchan_watch_take(w, ck, 4), 0);
	close(p[0]);
	close(p[1]);
	close(q[0]);
	close(q[1]);
	ck_assert_int_eq(dchan_watch_destroy(w), 0);
	ck_assert_int_eq(dchan_destroy(a), 0);
	ck_assert_int_eq(dchan_destroy(b), 0);
	t_pool_done(pool);
}
END_TEST

START_TEST(t_watch_limits)
{
	dmem_pool_t *pool = t_pool("watchlim", 32 << 20);
	dchan_attr_t a = {.field_mask = DCHAN_ATTR_CAPACITY, .capacity = 1};
	dchan_t *ch[DCHAN_WATCH_MAX + 1];
	dchan_watch_t *w;

	ck_assert_int_eq(dchan_watch_create(&w), 0);
	for (int i = 0; i <= DCHAN_WATCH_MAX; i++)
		ck_assert_int_eq(dchan_create(pool, &a, &ch[i]), 0);
	for (int i = 0; i < DCHAN_WATCH_MAX; i++)
		ck_assert_int_eq(dchan_watch_add(w, ch[i], DCHAN_POLLIN, NULL),
				 0);
	ck_assert_int_eq(
		dchan_watch_add(w, ch[DCHAN_WATCH_MAX], DCHAN_POLLIN, NULL),
		-ENOSPC);
	ck_assert_int_eq(dchan_watch_add(w, ch[0], 0, NULL), -EINVAL);
	/* a message in the last one is seen among all the others */
	ck_assert_int_eq(dchan_send(ch[DCHAN_WATCH_MAX - 1], "m", 1, 0), 0);
	ck_assert_int_eq(readable(w, 20000), 1);
	for (int i = 0; i < DCHAN_WATCH_MAX; i++)
		ck_assert_int_eq(dchan_watch_del(w, ch[i]), 0);
	ck_assert_int_eq(dchan_watch_destroy(w), 0);
	for (int i = 0; i <= DCHAN_WATCH_MAX; i++)
		ck_assert_int_eq(dchan_destroy(ch[i]), 0);
	t_pool_done(pool);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("dchan_watch");
	TCase *tc = tcase_create("watch");

	tcase_add_test(tc, t_watch_reports_changes);
	tcase_add_test(tc, t_watch_limits);
	tcase_add_test(tc, t_watch_hold);
	tcase_add_test(tc, t_watch_wait);
	tcase_add_test(tc, t_watch_wait_fallback);
	tcase_add_test(tc, t_watch_wait_kept);
	suite_add_tcase(s, tc);
	return t_run(s);
}
