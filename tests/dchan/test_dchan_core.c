/* libdchan: create/attach/send/recv/peek/poll, black box, real processes.
 * (The wake-up counting tests read the channel header's wake counter.) */
#include "dchan_test.h"
#include "../../libdchan/dchan_private.h"

#define MiB (1024u * 1024u)

START_TEST(send_recv_inline)
{
	struct t_fix f = t_fix_open("inl", 16 * MiB, 4, 64);
	char buf[64];
	size_t len = 0;

	T_OK(dchan_send(f.ch, "hello", 5, 0));
	T_OK(dchan_send(f.ch, "", 0, 0));
	ck_assert_int_eq(dchan_count(f.ch), 2);
	T_OK(dchan_recv(f.ch, buf, sizeof buf, 0, &len));
	ck_assert_uint_eq(len, 5);
	ck_assert(memcmp(buf, "hello", 5) == 0);
	T_OK(dchan_recv(f.ch, buf, sizeof buf, 0, &len));
	ck_assert_uint_eq(len, 0);
	ck_assert_int_eq(dchan_recv(f.ch, buf, sizeof buf, 0, &len), -EAGAIN);
	ck_assert_int_eq(dchan_count(f.ch), 0);
	t_fix_close(&f);
}
END_TEST

START_TEST(full_and_empty_try_once)
{
	struct t_fix f = t_fix_open("full", 16 * MiB, 3, 8);
	uint64_t v;
	size_t len;

	for (v = 0; v < 3; v++)
		T_OK(dchan_send(f.ch, &v, sizeof v, 0));
	ck_assert_int_eq(dchan_send(f.ch, &v, sizeof v, 0), -EAGAIN);
	ck_assert_int_eq(dchan_send(f.ch, &v, sizeof v, 1000000), -ETIMEDOUT);
	ck_assert_int_eq(dchan_capacity(f.ch), 3);
	for (uint64_t i = 0; i < 3; i++) {
		T_OK(dchan_recv(f.ch, &v, sizeof v, 0, &len));
		ck_assert_uint_eq(v, i);
	}
	ck_assert_int_eq(dchan_recv(f.ch, &v, sizeof v, 1000000, &len),
			 -ETIMEDOUT);
	/* wrap around many laps with capacity 1 and 3 */
	for (uint64_t i = 0; i < 1000; i++) {
		T_OK(dchan_send(f.ch, &i, sizeof i, 0));
		T_OK(dchan_recv(f.ch, &v, sizeof v, 0, &len));
		ck_assert_uint_eq(v, i);
	}
	T_OK(dchan_destroy(f.ch));
	f.ch = t_chan(f.pool, 1, 8);
	for (uint64_t i = 0; i < 1000; i++) {
		T_OK(dchan_send(f.ch, &i, sizeof i, 0));
		ck_assert_int_eq(dchan_send(f.ch, &i, sizeof i, 0), -EAGAIN);
		T_OK(dchan_recv(f.ch, &v, sizeof v, 0, &len));
		ck_assert_uint_eq(v, i);
	}
	t_fix_close(&f);
}
END_TEST

START_TEST(large_messages_copy)
{
	struct t_fix f = t_fix_open("large", 64 * MiB, 8, 32);
	static const size_t sizes[] = {33, 4096, 100000, 4 * MiB};
	size_t len;
	char *buf = malloc(4 * MiB), *out = malloc(4 * MiB);

	for (size_t i = 0; i < 4; i++) {
		t_fill(buf, sizes[i], i);
		T_OK(dchan_send(f.ch, buf, sizes[i], 0));
	}
	/* too small a buffer leaves the message where it is */
	ck_assert_int_eq(dchan_recv(f.ch, out, 10, 0, &len), -EMSGSIZE);
	ck_assert_ptr_nonnull(strstr(dchan_errmsg(), "longer"));
	for (size_t i = 0; i < 4; i++) {
		T_OK(dchan_recv(f.ch, out, 4 * MiB, 0, &len));
		ck_assert_uint_eq(len, sizes[i]);
		ck_assert(t_check(out, len, i));
	}
	free(buf);
	free(out);
	t_fix_close(&f); /* every copy's allocation was freed */
}
END_TEST

START_TEST(zero_copy_both_ways)
{
	struct t_fix f = t_fix_open("zc", 64 * MiB, 4, 64);
	dchan_msg_t m;
	void *p;
	pid_t owner;

	T_OK(dmem_alloc(dchan_pool(f.ch), MiB, 0, &p));
	t_fill(p, MiB, 7);
	T_OK(dchan_send_zc(f.ch, p, MiB, 0));
	T_OK(dmem_alloc_owner(f.pool, p, &owner));
	ck_assert_int_eq(owner, DMEM_OWNER_NONE);
	T_OK(dchan_recv_zc(f.ch, 0, &m));
	ck_assert_ptr_eq(m.data, p); /* the same block: no copy */
	ck_assert_uint_eq(m.len, MiB);
	ck_assert(t_check(m.data, m.len, 7));
	T_OK(dmem_alloc_owner(f.pool, m.data, &owner));
	ck_assert_int_eq(owner, getpid());
	T_OK(dchan_msg_release(&m));
	/* an inline message arrives in an allocation too */
	T_OK(dchan_send(f.ch, "abc", 3, 0));
	T_OK(dchan_recv_zc(f.ch, 0, &m));
	ck_assert_uint_eq(m.len, 3);
	ck_assert(memcmp(m.data, "abc", 3) == 0);
	T_OK(dchan_msg_release(&m));
	/* a buffer that is not an allocation is refused; nothing changes */
	ck_assert_int_lt(
		dchan_send_zc(f.ch, (char *)dmem_pool_base(f.pool) + 8, 8, 0),
		0);
	ck_assert_int_eq(dchan_count(f.ch), 0);
	t_fix_close(&f);
}
END_TEST

START_TEST(peek_keeps_message)
{
	struct t_fix f = t_fix_open("peek", 16 * MiB, 4, 16);
	char big[1000], buf[1000];
	size_t len;

	ck_assert_int_eq(dchan_peek(f.ch, buf, sizeof buf, 0, &len), -EAGAIN);
	t_fill(big, sizeof big, 3);
	T_OK(dchan_send(f.ch, big, sizeof big, 0));
	T_OK(dchan_send(f.ch, "x", 1, 0));
	T_OK(dchan_peek(f.ch, NULL, 0, 0, &len));
	ck_assert_uint_eq(len, sizeof big);
	T_OK(dchan_peek(f.ch, buf, 10, 0, &len));
	ck_assert_uint_eq(len, sizeof big);
	ck_assert(t_check(buf, 10, 3));
	T_OK(dchan_recv(f.ch, buf, sizeof buf, 0, &len));
	ck_assert(t_check(buf, sizeof big, 3));
	T_OK(dchan_peek(f.ch, buf, sizeof buf, 0, &len));
	ck_assert_uint_eq(len, 1);
	ck_assert_int_eq(dchan_count(f.ch), 1);
	t_fix_close(&f);
}
END_TEST

START_TEST(descriptor_round_trip_and_child_attach)
{
	struct t_fix f = t_fix_open("desc", 16 * MiB, 8, 0);
	dchan_desc_t d, d2;
	char text[DCHAN_DESC_TEXT_MAX], bin[sizeof(dchan_desc_t)];
	pid_t pid;

	T_OK(dchan_desc_get(f.ch, &d));
	T_OK(dchan_desc_to_text(&d, text, sizeof text));
	T_OK(dchan_desc_from_text(text, &d2));
	ck_assert(memcmp(&d, &d2, sizeof d) == 0);
	ck_assert_int_eq(dchan_desc_serialize(&d, bin, sizeof bin),
			 (int)sizeof d);
	T_OK(dchan_desc_deserialize(bin, sizeof bin, &d2));
	ck_assert(memcmp(&d, &d2, sizeof d) == 0);
	pid = t_fork();
	if (pid == 0) {
		/* a fresh process would attach by text: so does this one */
		dchan_t *c;
		dchan_desc_t cd;
		uint32_t v = 42;

		if (dchan_desc_from_text(text, &cd) || dchan_attach(&cd, &c))
			_exit(1);
		if (dchan_send(c, &v, sizeof v, DCHAN_FOREVER))
			_exit(2);
		_exit(dchan_detach(c) ? 3 : 0);
	}
	{
		uint32_t v = 0;
		size_t len;

		T_OK(dchan_recv(f.ch, &v, sizeof v, DCHAN_FOREVER, &len));
		ck_assert_uint_eq(v, 42);
	}
	ck_assert_int_eq(t_wait(pid), 0);
	t_fix_close(&f);
}
END_TEST

START_TEST(blocking_recv_is_woken)
{
	dmem_pool_t *pool = t_pool("wake", 16 * MiB);
	dchan_t *ch = t_chan(pool, 2, 0), *back = t_chan(pool, 2, 0);
	pid_t pid = t_fork();

	if (pid == 0) {
		/* ping-pong with sleeps, so the parent really sleeps */
		for (uint32_t i = 0; i < 50; i++) {
			size_t len;
			uint32_t v;

			usleep(i % 5 == 0 ? 2000 : 0);
			if (dchan_send(ch, &i, sizeof i, DCHAN_FOREVER))
				_exit(1);
			if (dchan_recv(back, &v, sizeof v, DCHAN_FOREVER,
				       &len) ||
			    v != i)
				_exit(2);
		}
		_exit(0);
	}
	for (uint32_t i = 0; i < 50; i++) {
		uint32_t v;
		size_t len;

		T_OK(dchan_recv(ch, &v, sizeof v, DCHAN_FOREVER, &len));
		ck_assert_uint_eq(v, i);
		T_OK(dchan_send(back, &v, sizeof v, DCHAN_FOREVER));
	}
	ck_assert_int_eq(t_wait(pid), 0);
	T_OK(dchan_destroy(ch));
	T_OK(dchan_destroy(back));
	t_pool_done(pool);
}
END_TEST

START_TEST(poll_one_and_many)
{
	dmem_pool_t *pool = t_pool("poll", 16 * MiB);
	dchan_t *a = t_chan(pool, 1, 0), *b = t_chan(pool, 1, 0);
	dchan_pollitem_t it[2] = {{a, DCHAN_POLLIN, 0}, {b, DCHAN_POLLIN, 0}};
	unsigned rev;
	pid_t pid;
	char c;
	size_t len;

	T_OK(dchan_poll(a, DCHAN_POLLIN | DCHAN_POLLOUT, 0, &rev));
	ck_assert_uint_eq(rev, DCHAN_POLLOUT);
	ck_assert_int_eq(dchan_poll(a, DCHAN_POLLIN, 0, &rev), -EAGAIN);
	ck_assert_int_eq(dchan_poll(a, DCHAN_POLLIN, 2000000, &rev),
			 -ETIMEDOUT);
	ck_assert_int_eq(dchan_poll_many(it, 2, 1000000), -ETIMEDOUT);
	pid = t_fork();
	if (pid == 0) {
		usleep(20000);
		_exit(dchan_send(b, "b", 1, 0) ? 1 : 0);
	}
	ck_assert_int_eq(dchan_poll_many(it, 2, DCHAN_FOREVER), 1);
	ck_assert_uint_eq(it[0].revents, 0);
	ck_assert_uint_eq(it[1].revents, DCHAN_POLLIN);
	ck_assert_int_eq(t_wait(pid), 0);
	T_OK(dchan_poll(b, DCHAN_POLLOUT | DCHAN_POLLIN, 0, &rev));
	ck_assert_uint_eq(rev, DCHAN_POLLIN);
	/* writable again once the message is taken, seen by a waiting poll */
	pid = t_fork();
	if (pid == 0) {
		usleep(20000);
		_exit(dchan_recv(b, &c, 1, 0, &len) ? 1 : 0);
	}
	T_OK(dchan_poll(b, DCHAN_POLLOUT, DCHAN_FOREVER, &rev));
	ck_assert_uint_eq(rev, DCHAN_POLLOUT);
	ck_assert_int_eq(t_wait(pid), 0);
	T_OK(dchan_destroy(a));
	T_OK(dchan_destroy(b));
	t_pool_done(pool);
}
END_TEST

START_TEST(poll_many_across_pools)
{
	dmem_pool_t *p1 = t_pool("pollx1", 16 * MiB);
	dmem_pool_t *p2 = t_pool("pollx2", 16 * MiB);
	dchan_t *a = t_chan(p1, 2, 0), *b = t_chan(p2, 2, 0);
	dchan_pollitem_t it[2] = {{a, DCHAN_POLLIN, 0}, {b, DCHAN_POLLIN, 0}};
	pid_t pid;

	for (int round = 0; round < 2; round++) {
		dchan_t *target = round ? a : b;
		char c;
		size_t len;

		pid = t_fork();
		if (pid == 0) {
			usleep(10000);
			_exit(dchan_send(target, "x", 1, 0) ? 1 : 0);
		}
		ck_assert_int_eq(dchan_poll_many(it, 2, DCHAN_FOREVER), 1);
		ck_assert_uint_eq(it[round ? 0 : 1].revents, DCHAN_POLLIN);
		ck_assert_int_eq(t_wait(pid), 0);
		T_OK(dchan_recv(target, &c, 1, 0, &len));
	}
	T_OK(dchan_destroy(a));
	T_OK(dchan_destroy(b));
	t_pool_done(p1);
	t_pool_done(p2);
}
END_TEST

/*
 * No wake-up is lost, with or without timeouts.  One side of a channel of
 * capacity 1 is a single process that never gives up; the other side is
 * shared by "patient" processes (no timeout) and "fickle" ones that wait
 * a few microseconds at a time and leave after a while.  A wake-up meant
 * for the patient ones that a fickle one takes and drops when it times
 * out or leaves would strand a message (or a free slot) with every
 * patient process asleep, and the single process would wait forever.
 */
#define WAKE_PATIENT 3
#define WAKE_FICKLE  3

struct wake_board {
	uint64_t got, sum;
};

static int wake_recv_side(dchan_t *ch, struct wake_board *b, int fickle,
			  uint64_t seed)
{
	uint64_t leave = 200 + seed % 200; /* rounds a fickle one stays */

	for (uint64_t round = 0;; round++) {
		uint64_t v;
		size_t len;
		int rc;

		seed = seed * 6364136223846793005ull + 1;
		if (fickle && round == leave)
			return 0;
		rc = dchan_recv(ch, &v, sizeof v,
				fickle ? 1000 + (seed >> 33) % 100000
				       : DCHAN_FOREVER,
				&len);
		if (rc == -ETIMEDOUT)
			continue;
		if (rc != 0 || len != sizeof v)
			return 1;
		if (v == UINT64_MAX) /* told to stop: meant for the patient */
			return fickle &&
			       dchan_send(ch, &v, sizeof v, DCHAN_FOREVER);
		__atomic_fetch_add(&b->got, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&b->sum, v, __ATOMIC_RELAXED);
	}
}

/* Senders take numbers from b->got until n are taken; a fickle one that
 * times out tries the same number again, with another short timeout. */
static int wake_send_side(dchan_t *ch, struct wake_board *b, int fickle,
			  uint64_t seed, uint64_t n)
{
	for (;;) {
		uint64_t v = __atomic_fetch_add(&b->got, 1, __ATOMIC_RELAXED);
		int rc;

		if (v >= n)
			return 0;
		do {
			seed = seed * 6364136223846793005ull + 1;
			rc = dchan_send(ch, &v, sizeof v,
					fickle ? 1000 + (seed >> 33) % 100000
					       : DCHAN_FOREVER);
		} while (rc == -ETIMEDOUT);
		if (rc != 0)
			return 1;
	}
}

START_TEST(no_lost_wakeups_with_timeouts)
{
	const uint64_t n = 4000;
	struct t_fix f = t_fix_open("wake", 16 * MiB, 1, 8);
	struct wake_board *b = t_shared(sizeof *b);
	pid_t pid[WAKE_PATIENT + WAKE_FICKLE];
	uint64_t v, sum = 0;
	size_t len;

	/* many receivers, one sender */
	for (int i = 0; i < WAKE_PATIENT + WAKE_FICKLE; i++) {
		pid[i] = t_fork();
		if (pid[i] == 0)
			_exit(wake_recv_side(f.ch, b, i >= WAKE_PATIENT,
					     (uint64_t)i * 7919));
	}
	for (v = 0; v < n; v++) {
		if (v % 97 == 0)
			usleep(200); /* let the receivers fall asleep */
		T_OK(dchan_send(f.ch, &v, sizeof v, DCHAN_FOREVER));
	}
	v = UINT64_MAX;
	for (int i = 0; i < WAKE_PATIENT; i++)
		T_OK(dchan_send(f.ch, &v, sizeof v, DCHAN_FOREVER));
	for (int i = 0; i < WAKE_PATIENT + WAKE_FICKLE; i++)
		ck_assert_int_eq(t_wait(pid[i]), 0);
	ck_assert_uint_eq(b->got, n);
	ck_assert_uint_eq(b->sum, n * (n - 1) / 2);
	/* many senders, one receiver */
	memset(b, 0, sizeof *b);
	for (int i = 0; i < WAKE_PATIENT + WAKE_FICKLE; i++) {
		pid[i] = t_fork();
		if (pid[i] == 0)
			_exit(wake_send_side(f.ch, b, i >= WAKE_PATIENT,
					     (uint64_t)i * 7919, n));
	}
	for (uint64_t i = 0; i < n; i++) {
		if (i % 97 == 0)
			usleep(200); /* let the senders fall asleep */
		T_OK(dchan_recv(f.ch, &v, sizeof v, DCHAN_FOREVER, &len));
		sum += v;
	}
	for (int i = 0; i < WAKE_PATIENT + WAKE_FICKLE; i++)
		ck_assert_int_eq(t_wait(pid[i]), 0);
	ck_assert_uint_eq(sum, n * (n - 1) / 2);
	ck_assert_int_eq(dchan_count(f.ch), 0);
	munmap(b, sizeof *b);
	t_fix_close(&f);
}
END_TEST

START_TEST(stats_and_waiters)
{
	struct t_fix f = t_fix_open("stats", 16 * MiB, 2, 0);
	dchan_stats_t st;
	pid_t pid;
	char c;
	size_t len;

	T_OK(dchan_send(f.ch, "a", 1, 0));
	T_OK(dchan_stats(f.ch, &st));
	ck_assert_uint_eq(st.count, 1);
	ck_assert_uint_eq(st.capacity, 2);
	ck_assert_uint_eq(st.sent, 1);
	T_OK(dchan_recv(f.ch, &c, 1, 0, &len));
	pid = t_fork();
	if (pid == 0)
		_exit(dchan_recv(f.ch, &c, 1, DCHAN_FOREVER, &len) ? 1 : 0);
	/* the child shows up as a blocked receiver */
	for (int i = 0; i < 5000; i++) {
		T_OK(dchan_stats(f.ch, &st));
		if (st.blocked_receivers)
			break;
		usleep(1000);
	}
	ck_assert_uint_eq(st.blocked_receivers, 1);
	T_OK(dchan_send(f.ch, "b", 1, 0));
	ck_assert_int_eq(t_wait(pid), 0);
	T_OK(dchan_stats(f.ch, &st));
	ck_assert_uint_eq(st.received, 2);
	ck_assert_uint_eq(st.blocked_receivers, 0);
	t_fix_close(&f);
}
END_TEST

START_TEST(many_channels_one_pool_attach_once)
{
	dmem_pool_t *pool = t_pool("many", 16 * MiB);
	dchan_t *ch[16], *at[16];

	for (int i = 0; i < 16; i++) {
		dchan_desc_t d;

		ch[i] = t_chan(pool, 2, 8);
		T_OK(dchan_desc_get(ch[i], &d));
		T_OK(dchan_attach(&d, &at[i]));
		ck_assert_ptr_eq(dchan_pool(at[i]), pool);
		T_OK(dchan_send(at[i], &i, sizeof i, 0));
	}
	for (int i = 0; i < 16; i++) {
		int v;
		size_t len;

		T_OK(dchan_recv(ch[i], &v, sizeof v, 0, &len));
		ck_assert_int_eq(v, i);
		T_OK(dchan_detach(at[i]));
		T_OK(dchan_destroy(ch[i]));
	}
	t_pool_done(pool);
}
END_TEST

/* A process may map one pool twice (a runtime's own mapping and the
 * caller's); a channel created through the second mapping must work
 * although libdchan already reaches that pool through the first. */
START_TEST(create_through_a_second_mapping)
{
	dmem_pool_t *pool = t_pool("twomap", 16 * MiB);
	dmem_pool_t *other;
	dmem_pool_desc_t pd;
	dchan_t *first, *ch, *at;
	dchan_barrier_t *b;
	dchan_desc_t d;
	int v = 7;
	size_t len;

	T_OK(dmem_pool_desc_get(pool, &pd));
	T_OK(dmem_pool_attach(&pd, &other));
	first = t_chan(other, 2, 8); /* libdchan now knows `other` */
	ch = t_chan(pool, 2, 8);     /* ... and is handed `pool` */
	T_OK(dchan_desc_get(ch, &d));
	T_OK(dchan_attach(&d, &at));
	T_OK(dchan_send(ch, &v, sizeof v, 0));
	v = 0;
	T_OK(dchan_recv(at, &v, sizeof v, 0, &len));
	ck_assert_int_eq(v, 7);
	T_OK(dchan_barrier_create(pool, 1, &b));
	ck_assert_int_eq(dchan_barrier_wait(b, 0), 0);
	T_OK(dchan_barrier_destroy(b));
	T_OK(dchan_detach(at));
	T_OK(dchan_destroy(ch));
	T_OK(dchan_destroy(first));
	T_OK(dmem_pool_detach(other));
	t_pool_done(pool);
}
END_TEST

/*
 * A sleeping waiter is woken once.  The child blocks and is stopped
 * (SIGSTOP) while registered, so that it cannot run between the peer's
 * operations: the peer then does many operations that each could wake it,
 * and the count of wake calls (the header's counter) shows that only the
 * first one did.  After SIGCONT the child must finish its work: the wake
 * was not lost.
 */
#define WAKE_ONCE_N 1000u

static uint64_t wake_calls(dchan_t *ch)
{
	return __atomic_load_n(&ch->hdr->wake_calls, __ATOMIC_RELAXED);
}

/* Armed waiters of a kind now (bits only: these tests stay far below the
 * named entries). */
static unsigned armed(dchan_t *ch, uint32_t kind)
{
	uint32_t *w = kind == DCHAN__WAIT_SEND	 ? &ch->hdr->send_waiters
		      : kind == DCHAN__WAIT_RECV ? &ch->hdr->recv_waiters
						 : &ch->hdr->ev_waiters;

	return (unsigned)__builtin_popcount(
		__atomic_load_n(w, __ATOMIC_SEQ_CST));
}

/* Wait until the child is an armed waiter of the kind, then stop it. */
static void stop_when_armed(dchan_t *ch, pid_t pid, uint32_t kind)
{
	int st;

	for (int i = 0; i < 10000 && armed(ch, kind) != 1; i++)
		usleep(1000);
	ck_assert_uint_eq(armed(ch, kind), 1);
	ck_assert_int_eq(kill(pid, SIGSTOP), 0);
	ck_assert_int_eq(waitpid(pid, &st, WUNTRACED), pid);
	ck_assert(WIFSTOPPED(st));
	/* still armed: nobody has woken it yet */
	ck_assert_uint_eq(armed(ch, kind), 1);
}

static void resume(pid_t pid)
{
	ck_assert_int_eq(kill(pid, SIGCONT), 0);
	ck_assert_int_eq(t_wait(pid), 0);
}

START_TEST(sleeping_receiver_woken_once)
{
	struct t_fix f = t_fix_open("once_r", 16 * MiB, WAKE_ONCE_N, 8);
	uint64_t w0, w1;
	pid_t pid = t_fork();

	if (pid == 0) {
		for (uint64_t i = 0; i < WAKE_ONCE_N; i++) {
			uint64_t v;
			size_t len;

			if (dchan_recv(f.ch, &v, sizeof v, DCHAN_FOREVER,
				       &len) ||
			    v != i)
				_exit(1);
		}
		_exit(0);
	}
	stop_when_armed(f.ch, pid, DCHAN__WAIT_RECV);
	w0 = wake_calls(f.ch);
	for (uint64_t i = 0; i < WAKE_ONCE_N; i++)
		T_OK(dchan_send(f.ch, &i, sizeof i, 0));
	w1 = wake_calls(f.ch);
	/* the first message woke it; the other 999 made no wake call */
	ck_assert_uint_eq(w1 - w0, 1);
	ck_assert_uint_eq(armed(f.ch, DCHAN__WAIT_RECV), 0);
	resume(pid);
	ck_assert_int_eq(dchan_count(f.ch), 0);
	t_fix_close(&f);
}
END_TEST

START_TEST(sleeping_sender_woken_once)
{
	struct t_fix f = t_fix_open("once_s", 16 * MiB, WAKE_ONCE_N, 8);
	uint64_t w0, w1, v, last = 0;
	size_t len;
	pid_t pid = t_fork();

	if (pid == 0) {
		/* fills the channel, then blocks on the next send */
		for (uint64_t i = 0; i < WAKE_ONCE_N + 1; i++)
			if (dchan_send(f.ch, &i, sizeof i, DCHAN_FOREVER))
				_exit(1);
		_exit(0);
	}
	stop_when_armed(f.ch, pid, DCHAN__WAIT_SEND);
	ck_assert_int_eq(dchan_count(f.ch), WAKE_ONCE_N);
	w0 = wake_calls(f.ch);
	for (uint64_t i = 0; i < WAKE_ONCE_N; i++) {
		T_OK(dchan_recv(f.ch, &v, sizeof v, 0, &len));
		ck_assert_uint_eq(v, i);
	}
	w1 = wake_calls(f.ch);
	ck_assert_uint_eq(w1 - w0, 1);
	resume(pid);
	T_OK(dchan_recv(f.ch, &last, sizeof last, 0, &len));
	ck_assert_uint_eq(last, WAKE_ONCE_N);
	t_fix_close(&f);
}
END_TEST

START_TEST(sleeping_poller_woken_once)
{
	struct t_fix f = t_fix_open("once_p", 16 * MiB, WAKE_ONCE_N, 8);
	uint64_t w0, w1;
	pid_t pid = t_fork();

	if (pid == 0) {
		unsigned rev = 0;

		if (dchan_poll(f.ch, DCHAN_POLLIN, DCHAN_FOREVER, &rev) ||
		    !(rev & DCHAN_POLLIN))
			_exit(1);
		_exit(0);
	}
	stop_when_armed(f.ch, pid, DCHAN__WAIT_EV);
	w0 = wake_calls(f.ch);
	for (uint64_t i = 0; i < WAKE_ONCE_N; i++)
		T_OK(dchan_send(f.ch, &i, sizeof i, 0));
	w1 = wake_calls(f.ch);
	ck_assert_uint_eq(w1 - w0, 1);
	resume(pid);
	ck_assert_int_eq(dchan_count(f.ch), WAKE_ONCE_N);
	for (uint64_t i = 0; i < WAKE_ONCE_N; i++) {
		uint64_t v;
		size_t len;

		T_OK(dchan_recv(f.ch, &v, sizeof v, 0, &len));
	}
	t_fix_close(&f);
}
END_TEST

/*
 * Two receivers asleep, both stopped: both must be woken, each by one
 * call, however many messages follow.  (A stopped process has left the
 * kernel's queue, so the first publish finds nobody to wake in the first
 * armed waiter and goes on to the second, as it would past a dead one.)
 */
START_TEST(two_sleeping_receivers_each_woken)
{
	struct t_fix f = t_fix_open("once_2", 16 * MiB, 8, 8);
	pid_t pid[2];
	uint64_t w0;
	int st;

	for (int k = 0; k < 2; k++) {
		pid[k] = t_fork();
		if (pid[k] == 0) {
			uint64_t v;
			size_t len;

			_exit(dchan_recv(f.ch, &v, sizeof v, DCHAN_FOREVER,
					 &len)
				      ? 1
				      : 0);
		}
	}
	for (int i = 0; i < 10000 && armed(f.ch, DCHAN__WAIT_RECV) != 2; i++)
		usleep(1000);
	ck_assert_uint_eq(armed(f.ch, DCHAN__WAIT_RECV), 2);
	for (int k = 0; k < 2; k++) {
		ck_assert_int_eq(kill(pid[k], SIGSTOP), 0);
		ck_assert_int_eq(waitpid(pid[k], &st, WUNTRACED), pid[k]);
	}
	w0 = wake_calls(f.ch);
	for (uint64_t i = 0; i < 3; i++)
		T_OK(dchan_send(f.ch, &i, sizeof i, 0));
	ck_assert_uint_eq(wake_calls(f.ch) - w0, 2);
	ck_assert_uint_eq(armed(f.ch, DCHAN__WAIT_RECV), 0);
	for (int k = 0; k < 2; k++)
		resume(pid[k]);
	ck_assert_int_eq(dchan_count(f.ch), 1);
	{
		uint64_t v;
		size_t len;

		T_OK(dchan_recv(f.ch, &v, sizeof v, 0, &len));
	}
	t_fix_close(&f);
}
END_TEST

/*
 * A blocking sender of large copied messages waits for the receiver while
 * the channel holds DCHAN__PACE_BYTES of them, though slots are free; a
 * receiver that takes nothing does not hold it for longer than the bound,
 * and what it waited for arrives in order.
 */
#define PACE_N (DCHAN__PACE_BYTES / MiB + 8)

START_TEST(large_sends_paced_by_receiver)
{
	struct t_fix f = t_fix_open("pace", 64 * MiB, 128, 64);
	unsigned char *buf = malloc(MiB);
	size_t len;
	pid_t pid;

	ck_assert_ptr_nonnull(buf);
	pid = t_fork();
	if (pid == 0) {
		for (unsigned i = 0; i < PACE_N; i++) {
			memset(buf, (int)i, MiB);
			if (dchan_send(f.ch, buf, MiB, DCHAN_FOREVER))
				_exit(1);
		}
		_exit(0);
	}
	/* the sender waits with 8 MiB queued and 120 slots free */
	stop_when_armed(f.ch, pid, DCHAN__WAIT_SEND);
	ck_assert_int_eq(dchan_count(f.ch), DCHAN__PACE_BYTES / MiB);
	/* taking one lets it go on */
	T_OK(dchan_recv(f.ch, buf, MiB, 0, &len));
	ck_assert_uint_eq(len, MiB);
	ck_assert_uint_eq(buf[0], 0);
	/* nothing taken from here on: it sends the rest within the bound */
	resume(pid);
	ck_assert_int_eq(dchan_count(f.ch), PACE_N - 1);
	for (unsigned i = 1; i < PACE_N; i++) {
		T_OK(dchan_recv(f.ch, buf, MiB, 0, &len));
		ck_assert_uint_eq(buf[0], i);
		ck_assert_uint_eq(buf[MiB - 1], i);
	}
	free(buf);
	t_fix_close(&f);
}
END_TEST

T_MAIN("dchan_core", 60, send_recv_inline, full_and_empty_try_once,
       large_messages_copy, zero_copy_both_ways, peek_keeps_message,
       descriptor_round_trip_and_child_attach, blocking_recv_is_woken,
       poll_one_and_many, poll_many_across_pools, no_lost_wakeups_with_timeouts,
       stats_and_waiters, many_channels_one_pool_attach_once,
       create_through_a_second_mapping, sleeping_receiver_woken_once,
       sleeping_sender_woken_once, sleeping_poller_woken_once,
       two_sleeping_receivers_each_woken, large_sends_paced_by_receiver)
