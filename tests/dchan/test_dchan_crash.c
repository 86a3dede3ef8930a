/*
 * libdchan: processes killed with SIGKILL in the middle of sends and
 * receives.  Survivors are never held up for more than a second, and after
 * the dead are reclaimed the channel and the pool account for every slot
 * and every allocation.
 */
#include "dchan_test.h"
#include "dchan_private.h"

#include <sys/mman.h>
#include <time.h>

#define NWORK 4
#define SEC   1000000000ull

struct board {
	uint32_t stop;
	uint32_t pad;
	uint64_t ops[NWORK];
	uint64_t max_op_ns; /* longest single operation of any worker */
};

/* Longest operation over all trials (the board is reset per trial). */
static uint64_t max_op_all;

/* Producers (even ids) and consumers (odd ids) until told to stop; every
 * operation has a timeout well under a second. */
static int worker(dchan_t *ch, struct board *b, int id, uint64_t seed)
{
	static unsigned char buf[8192];
	size_t len;

	while (!__atomic_load_n(&b->stop, __ATOMIC_RELAXED)) {
		struct timespec t0, t1;
		uint64_t ns, old;
		int rc;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		if (id % 2 == 0) {
			len = (seed >> 33) % 3 ? 24 : 300 + (seed >> 40) % 7000;
			rc = dchan_send(ch, buf, len, 20000000);
		} else if ((seed >> 33) % 5 == 0) {
			rc = dchan_peek(ch, buf, sizeof buf, 20000000, &len);
		} else if ((seed >> 33) % 7 == 0) {
			dchan_msg_t m;

			rc = dchan_recv_zc(ch, 20000000, &m);
			if (rc == 0)
				rc = dchan_msg_release(&m);
		} else {
			rc = dchan_recv(ch, buf, sizeof buf, 20000000, &len);
		}
		if (rc != 0 && rc != -ETIMEDOUT)
			return 30;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		ns = (uint64_t)(t1.tv_sec - t0.tv_sec) * SEC +
		     (uint64_t)t1.tv_nsec - (uint64_t)t0.tv_nsec;
		old = __atomic_load_n(&b->max_op_ns, __ATOMIC_RELAXED);
		while (ns > old && !__atomic_compare_exchange_n(
					   &b->max_op_ns, &old, ns, 0,
					   __ATOMIC_RELAXED, __ATOMIC_RELAXED))
			;
		__atomic_fetch_add(&b->ops[id], 1, __ATOMIC_RELAXED);
	}
	return 0;
}

/* Reap pid, waiting at most `ns`; kill it and fail if it takes longer. */
static int reap_within(pid_t pid, uint64_t ns)
{
	uint64_t t0 = 0;
	struct timespec ts;
	int st;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	t0 = (uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec;
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st)
					     : 128 + WTERMSIG(st);
		clock_gettime(CLOCK_MONOTONIC, &ts);
		if ((uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec - t0 >
		    ns) {
			if (getenv("DCHAN_TEST_GDB")) { /* where is it stuck? */
				char cmd[128];

				snprintf(cmd, sizeof cmd,
					 "gdb -p %d -batch -ex bt 2>&1 | "
					 "grep '^#' >&2",
					 (int)pid);
				if (system(cmd) != 0)
					fprintf(stderr, "no stack\n");
			}
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -1;
		}
		usleep(1000);
	}
}

static pid_t last_pids[4]; /* the workers of the current trial */

/* What each slot holds, when a check fails. */
static void dump(dchan_t *ch)
{
	fprintf(stderr, "self %d (lib %u) workers %d %d %d %d\n", (int)getpid(),
		dchan__self(), (int)last_pids[0], (int)last_pids[1],
		(int)last_pids[2], (int)last_pids[3]);
	fprintf(stderr, "head %llu tail %llu\n",
		(unsigned long long)ch->hdr->head,
		(unsigned long long)ch->hdr->tail);
	for (uint32_t i = 0; i < ch->cap; i++) {
		struct dchan__slot *s =
			(struct dchan__slot *)(ch->slots + i * ch->stride);

		uint32_t tag = dchan__tag(s->state) & DCHAN__TAG_PID_MASK;
		char path[64], comm[64] = "";
		FILE *f;

		snprintf(path, sizeof path, "/proc/%u/stat", tag);
		f = tag ? fopen(path, "r") : NULL;
		if (f) {
			if (!fgets(comm, sizeof comm, f))
				comm[0] = 0;
			fclose(f);
		}
		fprintf(stderr,
			"slot %u: seq %u tag %08x kind %u len %llu "
			"kill %d [%s]\n",
			i, dchan__seq(s->state), dchan__tag(s->state), s->kind,
			(unsigned long long)s->len,
			tag ? kill((pid_t)tag, 0) : 0, comm);
	}
}

/* The channel works at full capacity, in order, and is empty after. */
static void check_channel_whole(dchan_t *ch, uint32_t cap)
{
	unsigned char buf[8192];
	size_t len;
	int rc;

	/* drain what the dead left behind; a blocked receive re-checks the
	 * owner of a claimed slot every millisecond */
	while ((rc = dchan_recv(ch, buf, sizeof buf, 10000000, &len)) == 0)
		;
	ck_assert_int_eq(rc, -ETIMEDOUT);
	if (dchan_count(ch) != 0) { /* something is stuck: say what */
		struct dchan__claim c = {0};

		rc = dchan__get_claim(ch, SIZE_MAX, false, &c);
		fprintf(stderr, "after drain: claim %d blocker %08x dead %d\n",
			rc, c.blocker,
			(int)dchan__pid_dead(c.blocker & DCHAN__TAG_PID_MASK));
		dump(ch);
		fprintf(stderr, "recover now: %d\n", dchan__recover(ch, &c));
		dump(ch);
	}
	for (uint32_t i = 0; i < cap; i++) {
		int src = dchan_send(ch, &i, sizeof i, SEC);

		if (src != 0 || dchan_count(ch) != i + 1) {
			fprintf(stderr, "send %u: %d, count %lld\n", i, src,
				(long long)dchan_count(ch));
			dump(ch);
		}
		ck_assert_msg(dchan_count(ch) == i + 1,
			      "slot %u lost for good: "
			      "%s",
			      i, dchan_errmsg());
	}
	ck_assert_int_eq(dchan_send(ch, buf, 4, 0), -EAGAIN);
	for (uint32_t i = 0; i < cap; i++) {
		uint32_t v;

		ck_assert_int_eq(dchan_recv(ch, &v, sizeof v, SEC, &len), 0);
		ck_assert_uint_eq(v, i);
	}
	ck_assert_int_eq(dchan_count(ch), 0);
}

static void one_trial(dmem_pool_t *pool, dchan_t *ch, struct board *b,
		      uint64_t seed, uint64_t live0)
{
	pid_t pid[NWORK];
	int nkill = 1 + (int)(seed % NWORK);
	/* A wedged survivor never returns; the bound only has to be long
	 * enough for a busy machine's scheduling (each operation times out
	 * after 20 ms, and the longest one is reported below). */
	uint64_t bound = t_scale() < 1 ? 30 * SEC : 5 * SEC;

	memset(b, 0, sizeof *b);
	for (int i = 0; i < NWORK; i++) {
		pid[i] = fork();
		ck_assert_int_ge(pid[i], 0);
		if (pid[i] == 0)
			_exit(worker(ch, b, i, seed + (uint64_t)i * 977));
		last_pids[i] = pid[i];
	}
	usleep(200 + (useconds_t)(seed % 3000));
	for (int i = 0; i < nkill; i++)
		kill(pid[(seed / 7 + (uint64_t)i) % NWORK], SIGKILL);
	/* the survivors keep going, then stop within a second */
	usleep(2000);
	__atomic_store_n(&b->stop, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < NWORK; i++) {
		int st = reap_within(pid[i], bound);

		ck_assert_msg(st == 0 || st == 128 + SIGKILL,
			      "worker %d: status %d (wedged if -1)", i, st);
		T_OK(dmem_pool_reclaim(pool, pid[i], NULL));
	}
	if (b->max_op_ns > max_op_all)
		max_op_all = b->max_op_ns;
	check_channel_whole(ch, 8);
	ck_assert_uint_eq(t_live(pool), live0);
	ck_assert_int_eq(dmem_pool_check(pool), 0);
}

START_TEST(sigkill_at_random_points)
{
	uint64_t trials = t_scaled(300, 20), seed = 12345;
	dmem_pool_t *pool = t_pool("crash", 64u << 20);
	dchan_t *ch = t_chan(pool, 8, 64);
	struct board *b = mmap(NULL, sizeof *b, PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint64_t live0 = t_live(pool);
	dchan_stats_t st;

	ck_assert_ptr_ne(b, MAP_FAILED);
	for (uint64_t t = 0; t < trials; t++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		one_trial(pool, ch, b, seed >> 16, live0);
	}
	T_OK(dchan_stats(ch, &st));
	fprintf(stderr,
		"crash: %llu trials, %llu slots recovered, longest survivor "
		"operation %.1f ms (timeouts 20 ms)\n",
		(unsigned long long)trials, (unsigned long long)st.recovered,
		(double)max_op_all / 1e6);
	munmap(b, sizeof *b);
	T_OK(dchan_destroy(ch));
	t_pool_done(pool);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("dchan_crash");
	TCase *tc = tcase_create("crash");

	tcase_set_timeout(tc, 900);
	tcase_add_test(tc, sigkill_at_random_points);
	suite_add_tcase(s, tc);
	return t_run(s);
}
