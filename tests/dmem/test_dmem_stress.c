/* libdmem under load: many processes, random sizes, and SIGKILL at any
 * instruction.  The oracle is dmem_pool_check() plus the accounting. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>

#include "dmem_test.h"

#define MiB   (1ul << 20)
#define SLOTS 256

/*
 * Under ThreadSanitizer: a victim killed while it holds the pool's robust
 * lock hands the next locker EOWNERDEAD, and when that comes from
 * pthread_mutex_timedlock the sanitizer's interceptor does not count the
 * lock as taken, so it reports the unlock that follows as an unlock of an
 * unlocked mutex.  Killing lock holders is what this test does;
 * dmem_pool_check() and the accounting say whether the lock's recovery
 * worked.  (Read by the sanitizer only.)
 */
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void)
{
	return "mutex:dmem__unlock\n";
}

static uint64_t rng(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Mostly small, some medium, rarely large: the shape of message traffic. */
static size_t random_size(uint64_t *s)
{
	uint64_t r = rng(s) % 1000;

	if (r < 700)
		return 1 + rng(s) % 512;
	if (r < 980)
		return 513 + rng(s) % 65536;
	return 65536 + rng(s) % MiB;
}

struct slot {
	unsigned char *p;
	size_t n;
	unsigned char tag;
};

static int check_slot(const struct slot *s)
{
	return s->p[0] == s->tag && s->p[s->n - 1] == s->tag &&
	       s->p[s->n / 2] == s->tag;
}

/* One worker: ops random operations, every block stamped and verified. */
static int worker(dmem_pool_t *p, uint64_t seed, long ops)
{
	struct slot sl[SLOTS] = {{0}};

	for (long i = 0; i < ops; i++) {
		struct slot *s = &sl[rng(&seed) % SLOTS];
		int rc;

		if (!s->p) {
			size_t al = rng(&seed) % 16 == 0 ? 256 : 0;
			s->n = random_size(&seed);
			if (rng(&seed) % 16 == 0) { /* waiter slot, try once */
				static const struct timespec past = {0, 0};
				rc = dmem_alloc_timed(p, s->n, al, &past,
						      (void **)&s->p);
				if (rc == -ETIMEDOUT)
					rc = -DMEM_E_NOSPACE;
			} else {
				rc = dmem_alloc(p, s->n, al, (void **)&s->p);
			}
			if (rc == -DMEM_E_NOSPACE) {
				s->p = NULL;
				continue;
			}
			if (rc)
				return 10;
			s->tag = (unsigned char)rng(&seed);
			s->p[0] = s->p[s->n / 2] = s->p[s->n - 1] = s->tag;
		} else {
			if (!check_slot(s))
				return 11; /* someone else wrote into our block
					    */
			if (rng(&seed) % 16 == 0 &&
			    dmem_alloc_chown(p, s->p, getpid()))
				return 16; /* journaled, like alloc and free */
			if (rng(&seed) % 8 == 0) {
				dmem_alloc_desc_t d;
				if (dmem_alloc_desc_get(p, s->p, &d) ||
				    dmem_alloc_free(p, &d))
					return 12;
			} else if (dmem_free(p, s->p)) {
				return 13;
			}
			s->p = NULL;
		}
	}
	for (int i = 0; i < SLOTS; i++)
		if (sl[i].p && dmem_free(p, sl[i].p))
			return 14;
	return 0;
}

START_TEST(stress_4_procs_1m_ops)
{
	enum { NPROC = 4 };
	long ops = dmt_scaled(1000000) / NPROC;
	dmem_pool_t *p = dmt_pool("stress", 64 * MiB);
	dmem_pool_stats_t st0, st;
	pid_t pid[NPROC];

	ck_assert_int_eq(dmem_pool_stats(p, &st0), 0);
	for (int i = 0; i < NPROC; i++) {
		pid[i] = fork();
		if (pid[i] == 0) {
			int rc =
				worker(p, 0x9e3779b97f4a7c15ull * (i + 1), ops);
			_exit(rc ? rc : dmem_pool_detach(p) ? 15 : 0);
		}
	}
	for (int i = 0; i < NPROC; i++)
		ck_assert_int_eq(dmt_wait(pid[i]), 0);
	ck_assert_msg(dmem_pool_check(p) == 0, "%s", dmem_errmsg());
	ck_assert_int_eq(dmem_pool_stats(p, &st), 0);
	ck_assert_uint_eq(st.live_allocs, 0);
	ck_assert_uint_eq(st.free_blocks, 1);
	ck_assert_uint_eq(st.free_bytes, st0.free_bytes);
	dmem_pool_destroy(p);
}
END_TEST

/* Worker for the kill test: never returns; it is killed. */
static void victim(dmem_pool_t *p, uint64_t seed)
{
	for (;;)
		worker(p, seed++, 1000);
}

static pid_t spawn(dmem_pool_t *p, uint64_t seed)
{
	pid_t pid = fork();

	if (pid == 0) {
		victim(p, seed);
		_exit(0);
	}
	return pid;
}

static void kill_and_reap(dmem_pool_t *p, pid_t pid, uint64_t *seed)
{
	size_t n;

	kill(pid, SIGKILL);
	ck_assert_int_eq(dmt_wait(pid), 128 + SIGKILL);
	if (rng(seed) % 8 == 0) {
		/* Reclaim from a reaper that is itself killed part-way. */
		pid_t r = fork();
		if (r == 0)
			_exit(dmem_pool_reclaim(p, pid, NULL) ? 1 : 0);
		usleep((useconds_t)(rng(seed) % 300));
		kill(r, SIGKILL);
		dmt_wait(r);
	}
	ck_assert_int_eq(dmem_pool_reclaim(p, pid, &n), 0);
	ck_assert_msg(dmem_pool_check(p) == 0, "after kill: %s", dmem_errmsg());
}

START_TEST(sigkill_anywhere_leaves_pool_usable)
{
	enum { NW = 3, NKEEP = 64 };
	struct slot keep[NKEEP];
	long rounds = dmt_scaled(400);
	dmem_pool_t *p = dmt_pool("kill", 32 * MiB);
	dmem_pool_stats_t st0, st;
	uint64_t seed = 0x1234567;
	pid_t w[NW];
	void *big;

	ck_assert_int_eq(dmem_pool_stats(p, &st0), 0);
	/* Blocks of a live process: every rollback and reclaim must leave
	 * them allocated, owned and intact. */
	for (int i = 0; i < NKEEP; i++) {
		keep[i].n = 1 + rng(&seed) % 4096;
		ck_assert_int_eq(
			dmem_alloc(p, keep[i].n, 0, (void **)&keep[i].p), 0);
		keep[i].tag = (unsigned char)(i + 1);
		memset(keep[i].p, keep[i].tag, keep[i].n);
	}
	for (int i = 0; i < NW; i++)
		w[i] = spawn(p, rng(&seed));
	for (long r = 0; r < rounds; r++) {
		int i = (int)(rng(&seed) % NW);

		usleep((useconds_t)(200 + rng(&seed) % 1500));
		kill_and_reap(p, w[i], &seed);
		w[i] = spawn(p, rng(&seed));
	}
	for (int i = 0; i < NW; i++)
		kill_and_reap(p, w[i], &seed);
	for (int i = 0; i < NKEEP; i++) {
		pid_t o;

		ck_assert_int_eq(dmem_alloc_owner(p, keep[i].p, &o), 0);
		ck_assert_int_eq(o, getpid());
		for (size_t k = 0; k < keep[i].n; k++)
			ck_assert_int_eq(keep[i].p[k], keep[i].tag);
		ck_assert_int_eq(dmem_free(p, keep[i].p), 0);
	}
	ck_assert_int_eq(dmem_pool_flush(p), 0);
	/* Nothing is owned by a live process now: all of it comes back. */
	ck_assert_int_eq(dmem_pool_stats(p, &st), 0);
	fprintf(stderr,
		"kill test: %ld kills, %llu interrupted operations "
		"repaired\n",
		rounds + NW, (unsigned long long)st.recoveries);
	ck_assert_uint_eq(st.live_allocs, 0);
	ck_assert_uint_eq(st.free_blocks, 1);
	ck_assert_uint_eq(st.free_bytes, st0.free_bytes);
	ck_assert_uint_eq(st.largest_free, st0.largest_free);
	ck_assert_int_eq(dmem_alloc(p, st.largest_free, 0, &big), 0);
	ck_assert_int_eq(dmem_free(p, big), 0);
	ck_assert_int_eq(dmem_pool_check(p), 0);
	dmem_pool_destroy(p);
}
END_TEST

int main(void)
{
	TCase *tc;
	Suite *s = dmt_suite("dmem_stress", "stress", 600, &tc);

	tcase_add_test(tc, stress_4_procs_1m_ops);
	tcase_add_test(tc, sigkill_anywhere_leaves_pool_usable);
	return dmt_run(s);
}
