/* libdmem white-box: the /dev/shm check with statvfs injected, and the
 * undo journal interrupted at every store. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>

#include "dmem_test.h"
#include "dmem_private.h"

static uint64_t fake_avail;

static uint64_t fake(void)
{
	return fake_avail;
}

START_TEST(pool_larger_than_shm_is_refused)
{
	dmem_pool_t *p = NULL;

	dmem__shm_avail_hook = fake;
	fake_avail = 64ull << 20; /* a container's default /dev/shm */
	setenv("DRAGON_DEFAULT_SEG_SZ", "4G", 1);
	ck_assert_int_eq(dmem_pool_create("shm", 0, NULL, &p),
			 -DMEM_E_SHMSMALL);
	ck_assert_ptr_null(p);
	/* Says how much is free and both ways out. */
	ck_assert_ptr_nonnull(strstr(dmem_errmsg(), "67108864"));
	ck_assert_ptr_nonnull(strstr(dmem_errmsg(), "DRAGON_DEFAULT_SEG_SZ"));
	ck_assert_ptr_nonnull(strstr(dmem_errmsg(), "enlarge /dev/shm"));
	/* Within what is free: fine. */
	setenv("DRAGON_DEFAULT_SEG_SZ", "32M", 1);
	ck_assert_int_eq(dmem_pool_create("shm", 0, NULL, &p), 0);
	dmem_pool_destroy(p);
	fake_avail = 32ull << 20;
	ck_assert_int_eq(dmem_pool_create("shm", 0, NULL, &p), 0);
	dmem_pool_destroy(p);
	fake_avail = (32ull << 20) - 1;
	ck_assert_int_eq(dmem_pool_create("shm", 0, NULL, &p),
			 -DMEM_E_SHMSMALL);
	unsetenv("DRAGON_DEFAULT_SEG_SZ");
}
END_TEST

/*
 * The journal, exhaustively: for an operation of n journaled stores, a
 * process killed after any k of them leaves exactly the first k applied.
 * Recreate each such state and check that recovery restores the heap.
 */
typedef void (*op_fn)(struct dmem_pool *ip, void *arg);

static void op_alloc_small(struct dmem_pool *ip, void *arg)
{
	uint64_t off;
	ck_assert_int_eq(dmem__heap_alloc(ip, 700, 16, 1, &off), 0);
}

static void op_alloc_aligned(struct dmem_pool *ip, void *arg)
{
	uint64_t off;
	ck_assert_int_eq(dmem__heap_alloc(ip, 3000, 4096, 1, &off), 0);
}

static void op_free_merge(struct dmem_pool *ip, void *arg)
{
	dmem__heap_free(ip, dmem_pool_offset((dmem_pool_t *)ip, arg) -
				    DMEM_BLK_HDR);
}

static void crash_at_every_store(dmem_pool_t *p, op_fn op, void *arg)
{
	struct dmem_pool *ip = (struct dmem_pool *)p;
	dmem_pool_stats_t st0, st;
	unsigned n = 0;

	dmem_pool_flush(p);
	ck_assert_int_eq(dmem_pool_stats(p, &st0), 0);
	for (unsigned k = 0; k <= n || k == 0; k++) {
		ck_assert_int_eq(dmem__lock(ip), 0);
		op(ip, arg);
		n = ip->jn;
		ck_assert_uint_gt(n, 0);
		for (unsigned i = n; i-- > k;)
			*(uint64_t *)(ip->base + ip->journal[i].off) =
				ip->journal[i].old;
		ip->journal[k].off = 0; /* entry k never published */
		dmem__rollback(ip);
		dmem__unlock(ip);
		ck_assert_msg(dmem_pool_check(p) == 0,
			      "crash after %u of %u: %s", k, n, dmem_errmsg());
		ck_assert_int_eq(dmem_pool_stats(p, &st), 0);
		ck_assert_uint_eq(st.free_bytes, st0.free_bytes);
		ck_assert_uint_eq(st.free_blocks, st0.free_blocks);
		ck_assert_uint_eq(st.live_allocs, st0.live_allocs);
	}
}

START_TEST(journal_rollback_at_every_store)
{
	dmem_pool_t *p = dmt_pool("jrnl", 1ul << 20);
	void *a, *b, *c;

	ck_assert_int_eq(dmem_alloc(p, 1000, 0, &a), 0);
	ck_assert_int_eq(dmem_alloc(p, 3000, 0, &b), 0);
	ck_assert_int_eq(dmem_alloc(p, 2000, 0, &c), 0);
	ck_assert_int_eq(dmem_free(p, a), 0);
	crash_at_every_store(p, op_alloc_small, NULL);
	crash_at_every_store(p, op_alloc_aligned, NULL);
	crash_at_every_store(p, op_free_merge, b); /* merges both sides */
	ck_assert_int_eq(dmem_free(p, c), 0);
	crash_at_every_store(p, op_free_merge, b); /* merges into the tail */
	ck_assert_int_eq(dmem_free(p, b), 0);
	dmem_pool_destroy(p);
}
END_TEST

/* A process killed while blocked in dmem_alloc_timed must not leave the
 * pool believing someone waits (every free would then pay a wake-up). */
START_TEST(killed_waiter_is_forgotten_by_reclaim)
{
	dmem_pool_t *p = dmt_pool("kwait", 1ul << 20);
	struct dmem_pool *ip = (struct dmem_pool *)p;
	dmem_pool_stats_t st;
	void *big, *x;
	pid_t pid;

	ck_assert_int_eq(dmem_pool_stats(p, &st), 0);
	ck_assert_int_eq(dmem_alloc(p, st.largest_free, 0, &big), 0);
	pid = fork();
	if (pid == 0)
		_exit(dmem_alloc_timed(p, 1000, 0, NULL, &x) == 0 ? 0 : 1);
	while (!dmem__waiters(ip))
		usleep(1000);
	kill(pid, SIGKILL);
	ck_assert_int_eq(dmt_wait(pid), 128 + SIGKILL);
	ck_assert(dmem__waiters(ip));
	ck_assert_int_eq(dmem_pool_reclaim(p, pid, NULL), 0);
	ck_assert(!dmem__waiters(ip));
	ck_assert_int_eq(dmem_free(p, big), 0);
	dmem_pool_destroy(p);
}
END_TEST

/*
 * A lock sleeper whose wake-up went to a waiter killed before it retook the
 * lock, while a third process took it without marking FUTEX_WAITERS: the
 * mark that would make an unlock wake the sleeper is gone.  Recreated here
 * by clearing the mark while the parent holds the lock; the sleeper must
 * still get the lock soon after the unlock.
 */
START_TEST(lock_sleeper_survives_a_lost_wakeup)
{
	dmem_pool_t *p = dmt_pool("lostwake", 4u << 20);
	unsigned int *word = (unsigned int *)&p->sh->lock.__data.__lock;
	pid_t w;
	int st = -1;

	ck_assert_int_eq(dmem__lock(p), 0);
	w = fork();
	if (w == 0) {
		void *x;

		alarm(30);
		dmt_exit(p, NULL, dmem_alloc(p, 1000, 0, &x) ? 1 : 0);
	}
	/* wait until the child sleeps on the lock (it has marked the word) */
	for (int i = 0; i < 5000 && !(__atomic_load_n(word, __ATOMIC_ACQUIRE) &
				      0x80000000u);
	     i++)
		usleep(1000);
	ck_assert_msg(*word & 0x80000000u, "the child never waited");
	usleep(20000);
	__atomic_fetch_and(word, 0x7fffffffu, __ATOMIC_ACQ_REL);
	dmem__unlock(p);
	for (int i = 0; i < 3000; i++) {
		if (waitpid(w, &st, WNOHANG) == w)
			break;
		usleep(1000);
	}
	if (!WIFEXITED(st)) {
		kill(w, SIGKILL);
		waitpid(w, &st, 0);
		ck_abort_msg("the sleeper never got the lock (lost wake-up)");
	}
	ck_assert_int_eq(WEXITSTATUS(st), 0);
	ck_assert_int_eq(dmem_pool_reclaim(p, w, NULL), 0);
	ck_assert_int_eq(dmem_pool_check(p), 0);
	dmem_pool_destroy(p);
}
END_TEST

/* Runnable threads now, as the spin decision reads them. */
static long loadavg_runnable(void)
{
	long r = -1;
	FILE *f = fopen("/proc/loadavg", "r");

	if (f) {
		if (fscanf(f, "%*s %*s %*s %ld/", &r) != 1)
			r = -1;
		fclose(f);
	}
	return r;
}

/*
 * A process pinned to one core still spins on a machine of several: its
 * peer is usually pinned to another core (srun --cpu-bind, MPI bindings),
 * where a futex sleep would cost every wait a wake-up.  The decision is
 * re-read every 50 ms and also depends on the load, so it is checked only
 * at a moment when the machine had no more runnable threads than CPUs
 * just before and just after the decision was taken.
 */
START_TEST(pinned_to_one_core_still_spins)
{
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t one;
	int seen = 0;

	if (online < 2)
		return; /* one CPU: never spins, pinned or not */
	CPU_ZERO(&one);
	CPU_SET(sched_getcpu() < 0 ? 0 : sched_getcpu(), &one);
	ck_assert_int_eq(sched_setaffinity(0, sizeof(one), &one), 0);
	for (int i = 0; i < 100 && !seen; i++) {
		long r0, r1;
		int pays;

		usleep(60000); /* past the 50 ms the decision is kept */
		r0 = loadavg_runnable();
		pays = dmem__spin_pays();
		r1 = loadavg_runnable();
		if (r0 < 0 || r0 > online || r1 < 0 || r1 > online)
			continue; /* the machine was busy: no conclusion */
		ck_assert_msg(pays,
			      "pinned to one of %ld CPUs, %ld/%ld "
			      "runnable, and spinning was off",
			      online, r0, r1);
		seen = 1;
	}
}
END_TEST

int main(void)
{
	TCase *tc;
	Suite *s = dmt_suite("dmem_shm", "whitebox", 0, &tc);

	tcase_add_test(tc, pool_larger_than_shm_is_refused);
	tcase_add_test(tc, journal_rollback_at_every_store);
	tcase_add_test(tc, killed_waiter_is_forgotten_by_reclaim);
	tcase_add_test(tc, pinned_to_one_core_still_spins);
	tcase_add_test(tc, lock_sleeper_survives_a_lost_wakeup);
	return dmt_run(s);
}
