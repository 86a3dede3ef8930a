/*
 * libdchan white box: a process dies while it holds a slot (writing,
 * reading with an allocation, peeking); the next process that meets the
 * slot recovers it, with a single try-once call, and the channel and pool
 * account for everything.  The owner counts as dead once it has exited,
 * before its parent reaps it, and a process that reuses its pid is not
 * taken for it.
 */
#include "dchan_test.h"
#include "dchan_private.h"

#include <pthread.h>

#define MiB (1024u * 1024u)
#define SEC 1000000000ull

/* Run fn in a child that dies (exits without cleaning up) afterwards;
 * reaped unless `zombie`, when it is only waited for. */
static pid_t die_holding_as(void (*fn)(dchan_t *), dchan_t *ch,
			    dmem_pool_t *pool, bool zombie)
{
	pid_t pid = t_fork();
	siginfo_t si;

	if (pid == 0) {
		fn(ch);
		_exit(0);
	}
	if (zombie) {
		ck_assert_int_eq(
			waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
		ck_assert_int_eq(si.si_status, 0);
		return pid;
	}
	ck_assert_int_eq(t_wait(pid), 0);
	T_OK(dmem_pool_reclaim(pool, pid, NULL));
	return pid;
}

static void die_holding(void (*fn)(dchan_t *), dchan_t *ch, dmem_pool_t *pool)
{
	die_holding_as(fn, ch, pool, false);
}

static uint64_t recovered(dchan_t *ch)
{
	dchan_stats_t st;

	T_OK(dchan_stats(ch, &st));
	return st.recovered;
}

static void claim_write(dchan_t *ch)
{
	struct dchan__claim c;

	if (dchan__put_claim(ch, &c) != 0)
		_exit(1);
	memcpy(c.slot->data, "half", 4); /* and never publishes */
}

static void claim_write_big(dchan_t *ch)
{
	struct dchan__claim c;
	dmem_alloc_desc_t d;
	void *p;

	if (dmem_alloc(dchan_pool(ch), MiB, 0, &p) ||
	    dmem_alloc_desc_get(dchan_pool(ch), p, &d) ||
	    dchan__put_claim(ch, &c) != 0)
		_exit(1);
	memcpy(c.slot->data, &d, sizeof d);
	c.slot->len = MiB;
	__atomic_store_n(&c.slot->kind, DCHAN__KIND_DESC, __ATOMIC_RELEASE);
	dmem_alloc_chown(dchan_pool(ch), p, DMEM_OWNER_NONE);
}

static void claim_read(dchan_t *ch)
{
	struct dchan__claim c;

	if (dchan__get_claim(ch, SIZE_MAX, false, &c) != 0)
		_exit(1);
}

static void claim_peek(dchan_t *ch)
{
	struct dchan__claim c;

	if (dchan__get_claim(ch, SIZE_MAX, true, &c) != 0)
		_exit(1);
}

START_TEST(dead_writers_are_skipped_by_one_try)
{
	struct t_fix f = t_fix_open("rw", 64 * MiB, 4, 64);
	char buf[16];
	size_t len;

	die_holding(claim_write, f.ch, f.pool);
	die_holding(claim_write_big, f.ch, f.pool);
	T_OK(dchan_send(f.ch, "after", 5, 0));
	/* one try-once receive meets two abandoned slots before the
	 * message, and recovers both */
	T_OK(dchan_recv(f.ch, buf, sizeof buf, 0, &len));
	ck_assert_uint_eq(len, 5);
	ck_assert_uint_eq(recovered(f.ch), 2);
	ck_assert_int_eq(dchan_count(f.ch), 0);
	ck_assert_int_eq(dchan_recv(f.ch, buf, sizeof buf, 0, &len), -EAGAIN);
	for (int i = 0; i < 4; i++)
		T_OK(dchan_send(f.ch, &i, sizeof i, 0)); /* full capacity */
	ck_assert_int_eq(dchan_send(f.ch, buf, 1, 0), -EAGAIN);
	for (int i = 0; i < 4; i++)
		T_OK(dchan_recv(f.ch, buf, sizeof buf, 0, &len));
	t_fix_close(&f); /* the 1 MiB block is freed */
}
END_TEST

START_TEST(dead_reader_frees_slot_and_block)
{
	struct t_fix f = t_fix_open("rr", 64 * MiB, 1, 64);
	char *big = calloc(1, MiB), c;
	size_t len;

	T_OK(dchan_send(f.ch, big, MiB, 0));
	die_holding(claim_read, f.ch, f.pool);
	/* the writer meets the dead reader's slot and gets it at once */
	T_OK(dchan_send(f.ch, "x", 1, 0));
	ck_assert_uint_eq(recovered(f.ch), 1);
	ck_assert_int_eq(dchan_count(f.ch), 1);
	T_OK(dchan_recv(f.ch, &c, 1, 0, &len));
	free(big);
	t_fix_close(&f);
}
END_TEST

START_TEST(dead_peeker_is_undone)
{
	struct t_fix f = t_fix_open("rp", 16 * MiB, 2, 64);
	char buf[8];
	size_t len;

	T_OK(dchan_send(f.ch, "keep", 4, 0));
	die_holding(claim_peek, f.ch, f.pool);
	T_OK(dchan_recv(f.ch, buf, sizeof buf, 0, &len));
	ck_assert(len == 4 && memcmp(buf, "keep", 4) == 0);
	ck_assert_uint_eq(recovered(f.ch), 1);
	t_fix_close(&f);
}
END_TEST

START_TEST(poll_sees_past_a_dead_writer)
{
	struct t_fix f = t_fix_open("rpoll", 16 * MiB, 2, 64);
	unsigned rev;

	die_holding(claim_write, f.ch, f.pool);
	ck_assert_int_eq(dchan_poll(f.ch, DCHAN_POLLIN, 20000000, &rev),
			 -ETIMEDOUT);
	T_OK(dchan_poll(f.ch, DCHAN_POLLOUT, 0, &rev));
	ck_assert_uint_eq(recovered(f.ch), 1);
	t_fix_close(&f);
}
END_TEST

/* A parent blocked behind its dead child's slot cannot reap the child
 * first: the zombie is dead enough. */
START_TEST(zombie_owner_is_recovered)
{
	struct t_fix f = t_fix_open("rz", 16 * MiB, 2, 64);
	pid_t pid = die_holding_as(claim_write, f.ch, f.pool, true);
	char buf[8];
	size_t len;

	T_OK(dchan_send(f.ch, "z", 1, 0));
	T_OK(dchan_recv(f.ch, buf, sizeof buf, 0, &len));
	ck_assert(len == 1 && buf[0] == 'z');
	ck_assert_uint_eq(recovered(f.ch), 1);
	ck_assert_int_eq(t_wait(pid), 0);
	T_OK(dmem_pool_reclaim(f.pool, pid, NULL));
	t_fix_close(&f);
}
END_TEST

/* Claim a slot to write and make it look claimed by `tag`. */
static void claim_as(dchan_t *ch, uint32_t tag)
{
	struct dchan__claim c;

	T_OK(dchan__put_claim(ch, &c));
	__atomic_store_n(&c.slot->state,
			 dchan__state((uint32_t)(2 * c.pos), tag),
			 __ATOMIC_RELEASE);
}

/* A live process with the dead owner's pid but another start time does
 * not hold the slot; the owner itself, alive, does. */
START_TEST(reused_pid_is_not_the_owner)
{
	struct t_fix f = t_fix_open("rpid", 16 * MiB, 4, 64);
	uint32_t tag = 0, gen;
	char buf[8];
	size_t len;
	int fd[2];
	pid_t pid;

	ck_assert_int_eq(pipe(fd), 0);
	pid = t_fork();
	if (pid == 0) {
		tag = dchan__self_tag();
		if (write(fd[1], &tag, sizeof tag) != sizeof tag)
			_exit(1);
		pause();
		_exit(0);
	}
	ck_assert_int_eq(read(fd[0], &tag, sizeof tag), sizeof tag);
	ck_assert_uint_eq(tag & DCHAN__TAG_PID_MASK, (uint32_t)pid);
	gen = (tag & DCHAN__TAG_GEN_MASK) >> DCHAN__TAG_GEN_SHIFT;
	ck_assert_uint_ne(gen, 0); /* /proc tells start times */
	/* another start time: an earlier process that had this pid */
	claim_as(f.ch, (tag & ~DCHAN__TAG_GEN_MASK) |
			       (gen % 255 + 1) << DCHAN__TAG_GEN_SHIFT);
	ck_assert_int_eq(dchan_recv(f.ch, buf, sizeof buf, 0, &len), -EAGAIN);
	ck_assert_uint_eq(recovered(f.ch), 1);
	/* the live owner keeps its slot until it dies */
	claim_as(f.ch, tag);
	ck_assert_int_eq(dchan_recv(f.ch, buf, sizeof buf, 0, &len), -EAGAIN);
	ck_assert_uint_eq(recovered(f.ch), 1);
	ck_assert_int_eq(dchan_count(f.ch), 1);
	kill(pid, SIGKILL);
	ck_assert_int_eq(t_wait(pid), 128 + SIGKILL);
	ck_assert_int_eq(dchan_recv(f.ch, buf, sizeof buf, 0, &len), -EAGAIN);
	ck_assert_uint_eq(recovered(f.ch), 2);
	ck_assert_int_eq(dchan_count(f.ch), 0);
	close(fd[0]);
	close(fd[1]);
	t_fix_close(&f);
}
END_TEST

static void *sleeper(void *arg)
{
	(void)arg;
	pause();
	return NULL;
}

/* A process whose main thread left with pthread_exit shows as a zombie
 * while its other threads run: its slots stay its own. */
START_TEST(zombie_leader_with_live_threads_is_alive)
{
	struct t_fix f = t_fix_open("rthr", 16 * MiB, 2, 64);
	char path[64], line[512], *st = NULL;
	char buf[8];
	size_t len;
	pthread_t th;
	pid_t pid;

	pid = t_fork();
	if (pid == 0) {
		struct dchan__claim c;

		if (pthread_create(&th, NULL, sleeper, NULL) != 0 ||
		    dchan__put_claim(f.ch, &c) != 0)
			_exit(1);
		pthread_exit(NULL);
	}
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	for (int i = 0; i < 10000 && !(st && st[2] == 'Z'); i++) {
		FILE *fp = fopen(path, "r");

		st = fp && fgets(line, sizeof line, fp) ? strrchr(line, ')')
							: NULL;
		if (fp)
			fclose(fp);
		usleep(1000);
	}
	ck_assert_msg(st && st[2] == 'Z', "the main thread did not leave");
	ck_assert_int_eq(dchan_recv(f.ch, buf, sizeof buf, 0, &len), -EAGAIN);
	ck_assert_uint_eq(recovered(f.ch), 0);
	kill(pid, SIGKILL);
	ck_assert_int_eq(t_wait(pid), 128 + SIGKILL);
	ck_assert_int_eq(dchan_recv(f.ch, buf, sizeof buf, 0, &len), -EAGAIN);
	ck_assert_uint_eq(recovered(f.ch), 1);
	t_fix_close(&f);
}
END_TEST

/* A process killed while asleep in a receive, a send or a poll stays
 * counted as a waiter (every publish then pays a wake-up call) until a
 * survivor takes the count back. */
START_TEST(dead_waiters_are_taken_back)
{
	struct t_fix f = t_fix_open("rwait", 16 * MiB, 1, 8);
	dchan_stats_t st;
	pid_t pid[3];
	char c = 'x';
	size_t len;
	unsigned rev;

	for (int i = 0; i < 3; i++) {
		pid[i] = t_fork();
		if (pid[i] == 0) {
			if (i == 0)
				dchan_recv(f.ch, &c, 1, DCHAN_FOREVER, &len);
			else
				dchan_poll(f.ch, DCHAN_POLLIN, DCHAN_FOREVER,
					   &rev);
			_exit(1);
		}
	}
	for (int i = 0; i < 5000; i++) {
		T_OK(dchan_stats(f.ch, &st));
		if (st.blocked_receivers == 1 &&
		    dchan__waiter_count(f.ch->hdr, DCHAN__WAIT_EV) == 2)
			break;
		usleep(1000);
	}
	ck_assert_uint_eq(st.blocked_receivers, 1);
	ck_assert_uint_eq(dchan__waiter_count(f.ch->hdr, DCHAN__WAIT_EV), 2);
	for (int i = 0; i < 3; i++) {
		kill(pid[i], SIGKILL);
		ck_assert_int_eq(t_wait(pid[i]), 128 + SIGKILL);
	}
	T_OK(dchan_stats(f.ch, &st));
	ck_assert_uint_eq(st.blocked_receivers, 0);
	ck_assert_uint_eq(dchan__waiter_count(f.ch->hdr, DCHAN__WAIT_EV), 0);
	/* a sender killed asleep on a full channel */
	T_OK(dchan_send(f.ch, &c, 1, 0));
	pid[0] = t_fork();
	if (pid[0] == 0)
		_exit(dchan_send(f.ch, &c, 1, DCHAN_FOREVER) ? 1 : 2);
	for (int i = 0; i < 5000 && st.blocked_senders == 0; i++) {
		T_OK(dchan_stats(f.ch, &st));
		usleep(1000);
	}
	ck_assert_uint_eq(st.blocked_senders, 1);
	kill(pid[0], SIGKILL);
	ck_assert_int_eq(t_wait(pid[0]), 128 + SIGKILL);
	T_OK(dchan_stats(f.ch, &st));
	ck_assert_uint_eq(st.blocked_senders, 0);
	T_OK(dchan_recv(f.ch, &c, 1, 0, &len));
	t_fix_close(&f);
}
END_TEST

/* A writer that dies right after claiming a slot leaves in it what the
 * message before held; recovery must not free the block of that message,
 * which its zero-copy receiver still holds. */
START_TEST(held_message_outlives_a_dead_writer)
{
	struct t_fix f = t_fix_open("rheld", 64 * MiB, 1, 64);
	char *big = malloc(MiB);
	dchan_msg_t m;
	size_t len;

	t_fill(big, MiB, 3);
	T_OK(dchan_send(f.ch, big, MiB, 0));
	T_OK(dchan_recv_zc(f.ch, 0, &m));
	die_holding(claim_write, f.ch, f.pool); /* same slot, next lap */
	ck_assert_int_eq(dchan_recv(f.ch, big, MiB, 0, &len), -EAGAIN);
	ck_assert_uint_eq(recovered(f.ch), 1);
	ck_assert(t_check(m.data, m.len, 3));
	ck_assert_int_eq(dmem_pool_check(f.pool), 0);
	T_OK(dchan_msg_release(&m));
	free(big);
	t_fix_close(&f);
}
END_TEST

T_MAIN("dchan_recover", 0, dead_writers_are_skipped_by_one_try,
       dead_reader_frees_slot_and_block, dead_peeker_is_undone,
       poll_sees_past_a_dead_writer, zombie_owner_is_recovered,
       zombie_leader_with_live_threads_is_alive, reused_pid_is_not_the_owner,
       held_message_outlives_a_dead_writer, dead_waiters_are_taken_back)
