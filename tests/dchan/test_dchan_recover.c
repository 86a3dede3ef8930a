/*
 * libdchan white box: a process dies while it holds a slot (writing,
 * reading with an allocation, peeking); the next process blocked behind
 * the slot recovers it and the channel and pool account for everything.
 */
#include "dchan_test.h"
#include "dchan_private.h"

#define MiB (1024u * 1024u)
#define SEC 1000000000ull

/* Run fn in a child that dies (exits without cleaning up) afterwards. */
static void die_holding(void (*fn)(dchan_t *), dchan_t *ch, dmem_pool_t *pool)
{
	pid_t pid = fork();

	if (pid == 0) {
		fn(ch);
		_exit(0);
	}
	ck_assert_int_eq(t_wait(pid), 0);
	T_OK(dmem_pool_reclaim(pool, pid, NULL));
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

START_TEST(dead_writer_is_skipped)
{
	dmem_pool_t *pool = t_pool("rw", 64 * MiB);
	dchan_t *ch = t_chan(pool, 4, 64);
	uint64_t live0 = t_live(pool);
	dchan_stats_t st;
	char buf[16];
	size_t len;

	die_holding(claim_write, ch, pool);
	die_holding(claim_write_big, ch, pool);
	T_OK(dchan_send(ch, "after", 5, 0));
	/* the reader meets two abandoned slots before the message */
	T_OK(dchan_recv(ch, buf, sizeof buf, SEC, &len));
	ck_assert_uint_eq(len, 5);
	T_OK(dchan_stats(ch, &st));
	ck_assert_uint_eq(st.recovered, 2);
	ck_assert_int_eq(dchan_count(ch), 0);
	ck_assert_uint_eq(t_live(pool), live0); /* the 1 MiB block is freed */
	for (int i = 0; i < 4; i++)
		T_OK(dchan_send(ch, &i, sizeof i, 0)); /* full capacity back */
	T_OK(dchan_destroy(ch));
	t_pool_done(pool);
}
END_TEST

START_TEST(dead_reader_frees_slot_and_block)
{
	dmem_pool_t *pool = t_pool("rr", 64 * MiB);
	dchan_t *ch = t_chan(pool, 1, 64);
	uint64_t live0 = t_live(pool);
	char *big = calloc(1, MiB);

	T_OK(dchan_send(ch, big, MiB, 0));
	die_holding(claim_read, ch, pool);
	/* the writer waits behind the dead reader's slot, then gets it */
	T_OK(dchan_send(ch, "x", 1, SEC));
	ck_assert_int_eq(dchan_count(ch), 1);
	{
		char c;
		size_t len;

		T_OK(dchan_recv(ch, &c, 1, 0, &len));
	}
	ck_assert_uint_eq(t_live(pool), live0);
	free(big);
	T_OK(dchan_destroy(ch));
	t_pool_done(pool);
}
END_TEST

START_TEST(dead_peeker_is_undone)
{
	dmem_pool_t *pool = t_pool("rp", 16 * MiB);
	dchan_t *ch = t_chan(pool, 2, 64);
	char buf[8];
	size_t len;

	T_OK(dchan_send(ch, "keep", 4, 0));
	die_holding(claim_peek, ch, pool);
	T_OK(dchan_recv(ch, buf, sizeof buf, SEC, &len));
	ck_assert(len == 4 && memcmp(buf, "keep", 4) == 0);
	T_OK(dchan_destroy(ch));
	t_pool_done(pool);
}
END_TEST

START_TEST(poll_sees_past_a_dead_writer)
{
	dmem_pool_t *pool = t_pool("rpoll", 16 * MiB);
	dchan_t *ch = t_chan(pool, 2, 64);
	unsigned rev;

	die_holding(claim_write, ch, pool);
	ck_assert_int_eq(dchan_poll(ch, DCHAN_POLLIN, 20000000, &rev),
			 -ETIMEDOUT);
	T_OK(dchan_poll(ch, DCHAN_POLLOUT, SEC, &rev));
	T_OK(dchan_destroy(ch));
	t_pool_done(pool);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("dchan_recover");
	TCase *tc = tcase_create("recover");

	tcase_add_test(tc, dead_writer_is_skipped);
	tcase_add_test(tc, dead_reader_frees_slot_and_block);
	tcase_add_test(tc, dead_peeker_is_undone);
	tcase_add_test(tc, poll_sees_past_a_dead_writer);
	suite_add_tcase(s, tc);
	return t_run(s);
}
