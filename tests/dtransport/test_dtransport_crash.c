/*
 * libdtransport under faults: a peer agent that dies and comes back with
 * the same node id, clients killed with SIGKILL in the middle of remote
 * operations, and a campaign of trials that kill an agent or a client at
 * a random point.  After each, nothing may be wedged (the survivors
 * finish within a bound, the agents stop when asked) or left behind
 * (parked waits, pool memory of the channels' node, segments).
 *
 * DRAGON_TEST_CRASH_TRIALS sets the campaign's trials (make check-stress
 * runs many more).
 */
#include "dtrans_test.h"

#include <sys/stat.h>

/* The small-block cache a process keeps of a pool (libdmem's bound). */
#define CACHE_MAX_BYTES (64u << 10)

/* Whether a lost node is an outcome the clients accept. */
static int lost_ok;

static int ok_rc(int rc)
{
	if (rc >= 0 || rc == -EAGAIN || rc == -ETIMEDOUT)
		return 1;
	return lost_ok && (rc == -DCHAN_E_NODELOST || rc == -EHOSTUNREACH);
}

#define T_ANY(expr)                                                            \
	do {                                                                   \
		int r_ = (expr);                                               \
		if (!ok_rc(r_)) {                                              \
			fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__,      \
				__LINE__, #expr, dchan_strerror(r_),           \
				dchan_errmsg());                               \
			return 1;                                              \
		}                                                              \
		if (r_ == -DCHAN_E_NODELOST || r_ == -EHOSTUNREACH)            \
			return 0;                                              \
	} while (0)

/* Remote operations of every kind, at random, rounds times.  A lost
 * node ends the loop early (an outcome a client accepts). */
static int busy_loop(dchan_t *bigc, dchan_t *park, dchan_t *ping, int rounds)
{
	static char big[64 << 10];
	char buf[64];
	unsigned rev;
	size_t len;

	for (int i = 0; i < rounds; i++) {
		switch (rand() % 6) {
		case 0: /* pool-copied at node 1 */
			T_ANY(dchan_send(bigc, big, sizeof big, 100 * MS));
			break;
		case 1:
			T_ANY(dchan_recv(bigc, big, sizeof big, 0, &len));
			break;
		case 2: /* parks at node 1's agent */
			T_ANY(dchan_recv(park, buf, sizeof buf, 20 * MS, &len));
			break;
		case 3:
			T_ANY(dchan_poll(park, DCHAN_POLLIN, 10 * MS, &rev));
			break;
		case 4:
			T_ANY(dchan_send(ping, "ping", 4, 100 * MS));
			T_ANY(dchan_recv(ping, buf, sizeof buf, 100 * MS,
					 &len));
			break;
		default: /* parks with no deadline: only its death ends it
			  * (clients that must finish wait 50 ms instead) */
			if (rand() % 4 == 0)
				T_ANY(dchan_recv(park, buf, sizeof buf,
						 rounds > 1000 ? DCHAN_FOREVER
							       : 50 * MS,
						 &len));
			break;
		}
	}
	return 0;
}

/* The handles are detached however the loop ended: a client that lost
 * its node still frees what it attached. */
static int busy(struct cluster *c, int rounds)
{
	dchan_t *bigc = NULL, *park = NULL, *ping = NULL;
	int rc = 1;

	srand((unsigned)getpid());
	if (dchan_attach(&c->obj[O_BIG], &bigc) == 0 &&
	    dchan_attach(&c->obj[O_PARK], &park) == 0 &&
	    dchan_attach(&c->obj[O_PING], &ping) == 0)
		rc = busy_loop(bigc, park, ping, rounds);
	else
		fprintf(stderr, "attach: %s\n", dchan_errmsg());
	if (bigc)
		dchan_detach(bigc);
	if (park)
		dchan_detach(park);
	if (ping)
		dchan_detach(ping);
	return rc;
}

static int c_busy(struct cluster *c)
{
	return busy(c, 1000000);
}

static int c_busy_short(struct cluster *c)
{
	return busy(c, 12);
}

/* ---- a peer that comes back --------------------------------------------- */

static int c_round_trip(struct cluster *c)
{
	dchan_t *ch;
	char buf[8];
	size_t len;
	int rc;

	T_OK(dchan_attach(&c->obj[O_PING], &ch));
	rc = dchan_send(ch, "rt", 2, 10 * S);
	/* a "ping" of a client killed between its send and its receive
	 * may still arrive (its agent forwarded it): not ours, skip it */
	for (int i = 0; rc == 0 && i < 64; i++) {
		rc = dchan_recv(ch, buf, sizeof buf, 10 * S, &len);
		if (rc < 0 || len != 4 || memcmp(buf, "ping", 4))
			break;
	}
	if (rc < 0)
		fprintf(stderr, "round trip: %s (%s)\n", dchan_strerror(rc),
			dchan_errmsg());
	T_OK(dchan_detach(ch));
	T_OK(rc);
	T_EQ(len, 2);
	return 0;
}

static int c_lost(struct cluster *c)
{
	dchan_t *ch;
	char buf[8];
	size_t len;

	T_OK(dchan_attach(&c->obj[O_PING], &ch));
	T_EQ(dchan_recv(ch, buf, sizeof buf, DCHAN_FOREVER, &len),
	     -DCHAN_E_NODELOST);
	T_EQ(dchan_send(ch, "x", 1, DCHAN_FOREVER), -DCHAN_E_NODELOST);
	T_OK(dchan_detach(ch));
	return 0;
}

START_TEST(t_reconnect)
{
	struct cluster *c = t_cluster_up(2 * S);
	uint64_t t0;

	for (int round = 0; round < 3; round++) {
		ck_assert_int_eq(t_run(c, 0, c_round_trip), 0);
		kill(c->agent[1], SIGKILL);
		t0 = t_now();
		ck_assert_int_eq(t_run(c, 0, c_lost), 0);
		ck_assert_msg(t_now() - t0 < 30 * S * t_time_scale(),
			      "failing took too long");
		/* the same node id again, at a new address */
		t_agent_restart(c, 1);
		ck_assert_int_eq(t_run(c, 0, c_round_trip), 0);
	}
	t_agent_stats(c, 0);
	ck_assert_uint_ge(c->stats[0].connections, 4);
	ck_assert_uint_ge(c->stats[0].failed_ops, 6);
	t_cluster_down(c);
}
END_TEST

/* ---- clients killed in the middle --------------------------------------- */

/* Shared with the node-1 helper: free bytes of node 1's pool. */
static uint64_t *free_bytes;

/* node 1: empty the channels the clients fill, then note the pool's free
 * bytes (after this process's cache went back). */
static int c_drain_measure(struct cluster *c)
{
	static char big[64 << 10];
	dmem_pool_stats_t st;
	dchan_t *ch;
	size_t len;
	int objs[] = {O_BIG, O_PARK, O_PING};

	for (int i = 0; i < 3; i++) {
		T_OK(dchan_attach(&c->obj[objs[i]], &ch));
		while (dchan_recv(ch, big, sizeof big, 0, &len) == 0)
			;
		T_EQ(dchan_count(ch), 0);
		if (i == 2) {
			T_OK(dmem_pool_flush(dchan_pool(ch)));
			T_OK(dmem_pool_check(dchan_pool(ch)));
			T_OK(dmem_pool_stats(dchan_pool(ch), &st));
			*free_bytes = st.free_bytes;
		}
		T_OK(dchan_detach(ch));
	}
	return 0;
}

/* The clients killed, for c_gw_pool_free. */
static pid_t *killed;
static int nkilled;

/* node 0: free bytes of its gateway's pool, where the requesters' reply
 * channels live, into free_bytes[1].  A client killed before its first
 * request reached the agent is not known to it: what it allocated is
 * reclaimed here, as the runtime that reaps a process does. */
static int c_gw_pool_free(struct cluster *c)
{
	dmem_pool_stats_t st;
	dchan_desc_t gd;
	dchan_t *gw;

	T_OK(dchan_desc_from_text(c->gw[0], &gd));
	T_OK(dchan_attach(&gd, &gw));
	for (int i = 0; i < nkilled; i++)
		T_OK(dmem_pool_reclaim(dchan_pool(gw), killed[i], NULL));
	T_OK(dmem_pool_check(dchan_pool(gw)));
	T_OK(dmem_pool_stats(dchan_pool(gw), &st));
	free_bytes[1] = st.free_bytes;
	T_OK(dchan_detach(gw));
	return 0;
}

/* node 0: its gateway channel holds nothing left over.  A request a
 * client was killed in the middle of writing holds its slot until the
 * agent, taking the requests behind it, recovers the slot (libdchan's
 * bound): round trips make those requests, within a bound. */
static int c_gateway_empty(struct cluster *c)
{
	dchan_desc_t gd;
	dchan_t *gw, *ping;
	char buf[8];
	size_t len;
	int64_t n;
	uint64_t t0 = t_now();

	T_OK(dchan_desc_from_text(c->gw[0], &gd));
	T_OK(dchan_attach(&gd, &gw));
	T_OK(dchan_attach(&c->obj[O_PING], &ping));
	while ((n = dchan_count(gw)) != 0 && t_now() - t0 < 20 * S) {
		T_OK(dchan_send(ping, "gw", 2, 10 * S));
		T_OK(dchan_recv(ping, buf, sizeof buf, 10 * S, &len));
		usleep(50000);
	}
	T_EQ(n, 0);
	T_OK(dchan_detach(ping));
	T_OK(dchan_detach(gw));
	return 0;
}

static void wait_unparked(struct cluster *c, int i, uint64_t bound)
{
	uint64_t t0 = t_now();

	do {
		t_agent_stats(c, i);
		if (c->stats[i].parked == 0)
			return;
		usleep(20000);
	} while (t_now() - t0 < bound);
	ck_abort_msg("agent %d still holds %llu parked waits", i,
		     (unsigned long long)c->stats[i].parked);
}

START_TEST(t_killed_clients)
{
	struct cluster *c = t_cluster_up(10 * S);
	int rounds = (int)(10 * t_scale());
	uint64_t before, gw_before, t0;
	pid_t p[4];

	free_bytes = mmap(NULL, 2 * sizeof *free_bytes, PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert(free_bytes != MAP_FAILED);
	lost_ok = 0;
	ck_assert_int_eq(t_run(c, 1, c_drain_measure), 0);
	before = *free_bytes;
	ck_assert_int_eq(t_run(c, 0, c_gw_pool_free), 0);
	gw_before = free_bytes[1];
	srand((unsigned)getpid());
	killed = calloc((size_t)rounds * 4 + 1, sizeof *killed);
	ck_assert_ptr_nonnull(killed);
	for (int r = 0; r < rounds; r++) {
		for (int i = 0; i < 4; i++)
			p[i] = t_start(c, 0, c_busy);
		usleep(1000 + (useconds_t)(rand() % 40000));
		for (int i = 0; i < 4; i++) {
			int st;

			usleep((useconds_t)(rand() % 5000));
			kill(p[i], SIGKILL);
			st = t_wait(p[i]);
			killed[nkilled++] = p[i];
			ck_assert_msg(st == 128 + SIGKILL,
				      "client ended with %d before its kill",
				      st);
		}
	}
	/* the dead requesters' waits go (forever ones by the reaper) */
	wait_unparked(c, 1, 10 * S * t_time_scale());
	ck_assert_int_eq(t_run(c, 1, c_drain_measure), 0);
	ck_assert_int_eq(t_run(c, 0, c_gateway_empty), 0);
	ck_assert_int_eq(t_run(c, 0, c_round_trip), 0);
	ck_assert_int_eq(t_run(c, 1, c_drain_measure), 0);
	/* node 1's pool: what the clients sent was received and freed;
	 * at most the agent's small-block cache is out */
	ck_assert_msg(before - *free_bytes <= CACHE_MAX_BYTES,
		      "node 1's pool lost %lld bytes",
		      (long long)(before - *free_bytes));
	/* node 0's gateway pool: the dead requesters' reply channels, and
	 * the completions in them, go once the agent sees them dead */
	t0 = t_now();
	do {
		usleep(100000);
		ck_assert_int_eq(t_run(c, 0, c_gw_pool_free), 0);
	} while (gw_before - free_bytes[1] > CACHE_MAX_BYTES &&
		 t_now() - t0 < 10 * S);
	fprintf(stderr, "gateway pool: %lld bytes out after the kills\n",
		(long long)(gw_before - free_bytes[1]));
	ck_assert_msg(gw_before - free_bytes[1] <= CACHE_MAX_BYTES,
		      "node 0's gateway pool lost %lld bytes",
		      (long long)(gw_before - free_bytes[1]));
	t_cluster_down(c);
	munmap(free_bytes, 2 * sizeof *free_bytes);
}
END_TEST

/* ---- the campaign ------------------------------------------------------- */

static int trials(void)
{
	const char *s = getenv("DRAGON_TEST_CRASH_TRIALS");

	return s ? atoi(s) : (int)(100 * t_scale());
}

static int seg_exists(const char *name)
{
	char path[DMEM_SEGNAME_MAX + 16];
	struct stat st;

	snprintf(path, sizeof path, "/dev/shm/%s", name);
	return stat(path, &st) == 0;
}

/* Wait up to bound for pid; kill it if it did not end. 1: it ended. */
static int wait_bounded(pid_t pid, uint64_t bound)
{
	uint64_t t0 = t_now();
	int st;

	while (t_now() - t0 < bound) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 1 : -st;
		usleep(2000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return 0;
}

/* One trial: two clients at work, one victim killed at a random point. */
static void trial(int n)
{
	struct cluster *c = t_cluster_up(500 * MS);
	int victim = rand() % 3; /* 0: a client, 1: agent 1, 2: agent 0 */
	char seg[2][DMEM_SEGNAME_MAX];
	pid_t cl[2];

	lost_ok = 1;
	for (int i = 0; i < 2; i++)
		cl[i] = t_start(c, 0, c_busy_short);
	usleep((useconds_t)(rand() % 30000));
	if (victim == 0)
		kill(cl[0], SIGKILL);
	else
		kill(c->agent[victim == 1 ? 1 : 0], SIGKILL);
	for (int i = victim == 0; i < 2; i++) {
		/* a client whose own agent died waits for its servicer's
		 * answer until the gateway's grace: not a wedge of ours */
		int r = wait_bounded(cl[i], (victim == 2 ? 200 * MS : 20 * S) *
						    t_time_scale());

		ck_assert_msg(victim == 2 || r == 1,
			      "trial %d (victim %d): client %d: %d", n, victim,
			      i, r);
	}
	if (victim == 0)
		t_wait(cl[0]);
	if (victim != 1)
		wait_unparked(c, 1, 10 * S * t_time_scale());
	memcpy(seg, c->segname, sizeof seg);
	t_cluster_down(c);
	for (int i = 0; i < 2; i++)
		ck_assert_msg(!seg_exists(seg[i]), "trial %d left %s", n,
			      seg[i]);
	munmap(c, sizeof *c);
}

START_TEST(t_crash_campaign)
{
	int n = trials();
	uint64_t t0 = t_now();

	srand((unsigned)getpid());
	for (int i = 0; i < n; i++)
		trial(i);
	fprintf(stderr, "%d crash trials in %.1f s\n", n, (t_now() - t0) / 1e9);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("dtransport_crash");
	TCase *tc = tcase_create("crash");

	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, t_reconnect);
	tcase_add_test(tc, t_killed_clients);
	tcase_add_test(tc, t_crash_campaign);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run_suite(suite());
}
