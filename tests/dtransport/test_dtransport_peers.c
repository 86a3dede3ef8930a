/*
 * libdtransport: where a peer's address comes from and what happens when a
 * peer is gone.  Two agents; node 0 knows no address of node 1 and asks
 * its resolve callback, which answers from another thread, as a runtime's
 * lookup does.  Then node 0 is told that node 1 is lost
 * (dtrans_agent_peer_down): a remote receive waiting there, and every
 * later operation, fail at once with the node named, until
 * dtrans_agent_peer_set gives node 1 back.  Last, node 1's agent is
 * killed: a dial that it refuses fails what waits for it at once.  The
 * agents' peer timeout is far longer than the suite's bound, so none of
 * these failures comes from it.
 *
 * The time from the first operation to its answer (dial, lookup,
 * handshake) is printed: a measurement, not asserted.
 */
#include "dtrans_test.h"

#include <pthread.h>

#define N2	     2
#define LONG_TIMEOUT (600 * S) /* agents' peer timeout: never reached */

struct peers {
	pid_t agent[N2];
	int ctl[N2][2], ready[N2][2];
	char addr[N2][128];
	char gw[N2][DCHAN_DESC_TEXT_MAX];
	dchan_desc_t chan; /* node 1's */
	int asked;	   /* node 0's lookups of node 1 */
};

/* Node 0's lookups: the callback writes the node to a pipe (it must not
 * block), a thread of the agent's process answers with peer_set. */
struct resolver {
	struct peers *t;
	dtrans_agent_t *ag;
	int pipe[2];
};

static void ask(void *arg, uint32_t node)
{
	struct resolver *r = arg;

	__atomic_fetch_add(&r->t->asked, 1, __ATOMIC_SEQ_CST);
	if (write(r->pipe[1], &node, sizeof node) != sizeof node)
		_exit(6);
}

static void *answer(void *arg)
{
	struct resolver *r = arg;
	uint32_t node;

	while (read(r->pipe[0], &node, sizeof node) == sizeof node)
		if (dtrans_agent_peer_set(r->ag, node, r->t->addr[node]) < 0)
			_exit(7);
	return NULL;
}

static void peers_agent(struct peers *t, int idx)
{
	dchan_attr_t ga = {.field_mask = DCHAN_ATTR_CAPACITY, .capacity = 1024};
	dchan_attr_t ca = {.field_mask = DCHAN_ATTR_CAPACITY, .capacity = 16};
	struct resolver r = {.t = t};
	dtrans_attr_t a = {0};
	dmem_pool_t *pool;
	dchan_t *gw, *ch = NULL;
	dchan_desc_t d;
	pthread_t thr;
	char name[64], id[16];
	int rc;

	a.listen_addr = t_listen_addr(idx);
	snprintf(id, sizeof id, "%d", idx + 1);
	setenv("DRAGON_NODE_ID", id, 1);
	snprintf(name, sizeof name, "tdtranspeers-%d-%d", idx, (int)getpid());
	if ((rc = dmem_pool_create(name, 64u << 20, NULL, &pool)) ||
	    (rc = dchan_create(pool, &ga, &gw)))
		t_fatal("pool", rc);
	if (idx == 1 && (rc = dchan_create(pool, &ca, &ch)))
		t_fatal("channel", rc);
	dchan_desc_get(gw, &d);
	dchan_desc_to_text(&d, t->gw[idx], sizeof t->gw[idx]);
	if (ch)
		dchan_desc_get(ch, &t->chan);
	a.node = (uint32_t)idx;
	a.nnodes = N2;
	a.secret = t_secret;
	a.secret_len = sizeof t_secret - 1;
	a.gateway = gw;
	a.field_mask = DTRANS_ATTR_PEER_TIMEOUT;
	a.peer_timeout_ns = LONG_TIMEOUT;
	if (idx == 0) {
		a.field_mask |= DTRANS_ATTR_RESOLVE;
		a.resolve = ask;
		a.resolve_arg = &r;
		if (pipe(r.pipe) < 0)
			t_fatal("pipe", -errno);
	}
	if (t_backend()) {
		a.field_mask |= DTRANS_ATTR_BACKEND;
		a.backend = t_backend();
	}
	if ((rc = dtrans_agent_create(&a, &r.ag)))
		t_fatal("agent", rc);
	dtrans_agent_address(r.ag, t->addr[idx], sizeof t->addr[idx]);
	if (idx == 0 && pthread_create(&thr, NULL, answer, &r))
		t_fatal("thread", -EAGAIN);
	if ((rc = dtrans_agent_start(r.ag)))
		t_fatal("start", rc);
	t_say(t->ready[idx][1], 'r');
	for (;;) {
		char c = t_hear(t->ctl[idx][0]);

		if (c == 'd') /* node 1 is lost */
			rc = dtrans_agent_peer_down(r.ag, 1);
		else if (c == 'u') /* ... and back */
			rc = dtrans_agent_peer_set(r.ag, 1, t->addr[1]);
		else
			break;
		if (rc < 0)
			t_fatal("peer", rc);
		t_say(t->ready[idx][1], 'r');
	}
	dtrans_agent_destroy(r.ag);
	if (idx == 0) {
		close(r.pipe[1]);
		pthread_join(thr, NULL);
	}
	if (ch)
		dchan_destroy(ch);
	dchan_destroy(gw);
	dmem_pool_destroy(pool);
	_exit(0);
}

static struct peers *peers_up(void)
{
	struct peers *t = mmap(NULL, sizeof *t, PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	ck_assert(t != MAP_FAILED);
	memset(t, 0, sizeof *t);
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < N2; i++) {
		ck_assert_int_eq(pipe(t->ctl[i]), 0);
		ck_assert_int_eq(pipe(t->ready[i]), 0);
	}
	/* node 1 first: node 0's resolver answers with its address */
	for (int i = N2 - 1; i >= 0; i--) {
		pid_t pid = fork();

		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			for (int j = 0; j < N2; j++) {
				close(t->ctl[j][1]);
				close(t->ready[j][0]);
			}
			peers_agent(t, i);
		}
		t->agent[i] = pid;
		close(t->ctl[i][0]);
		close(t->ready[i][1]);
		ck_assert_int_eq(t_hear(t->ready[i][0]), 'r');
	}
	return t;
}

static void peers_down(struct peers *t)
{
	for (int i = 0; i < N2; i++) {
		int st;

		t_say(t->ctl[i][1], 'q');
		close(t->ctl[i][1]);
		ck_assert_int_eq(waitpid(t->agent[i], &st, 0), t->agent[i]);
		ck_assert_msg(WIFEXITED(st) || WTERMSIG(st) == SIGKILL,
			      "agent %d ended by signal %d", i, WTERMSIG(st));
		close(t->ready[i][0]);
	}
	munmap(t, sizeof *t);
}

/* Node 0's agent does c ('d' down, 'u' up) and says when it has. */
static void tell0(struct peers *t, char c)
{
	t_say(t->ctl[0][1], c);
	ck_assert_int_eq(t_hear(t->ready[0][0]), 'r');
}

static int run0(struct peers *t, int (*fn)(struct peers *))
{
	pid_t pid = fork();
	int st;

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		setenv("DRAGON_NODE_ID", "1", 1);
		setenv(DCHAN_GW_ENV, t->gw[0], 1);
		_exit(fn(t));
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Operations on node 1's channel: the first one looks its agent up. */
static int c_use(struct peers *t)
{
	uint64_t t0 = t_now(), first = 0;
	dchan_t *ch;
	char buf[16];
	size_t len;

	T_OK(dchan_attach(&t->chan, &ch));
	for (int i = 0; i < 20; i++) {
		T_OK(dchan_send(ch, "one", 3, 30 * S));
		if (i == 0)
			first = t_now() - t0;
		T_OK(dchan_recv(ch, buf, sizeof buf, 30 * S, &len));
		T_EQ(len == 3 && !memcmp(buf, "one", 3), 1);
	}
	T_OK(dchan_detach(ch));
	printf("first operation on a node looked up: %.1f ms\n", first / 1e6);
	fflush(stdout);
	return 0;
}

/* A receive parked on node 1 (nothing comes): it must end with the node
 * lost, named. */
static int c_wait_lost(struct peers *t)
{
	dchan_t *ch;
	char buf[16];
	size_t len;
	int rc;

	T_OK(dchan_attach(&t->chan, &ch));
	rc = dchan_recv(ch, buf, sizeof buf, DCHAN_FOREVER, &len);
	if (rc != -DCHAN_E_NODELOST || !strstr(dchan_errmsg(), "node 2")) {
		fprintf(stderr, "parked receive on node 1: %s (%s)\n",
			dchan_strerror(rc), dchan_errmsg());
		return 1;
	}
	T_OK(dchan_detach(ch));
	return 0;
}

/* An operation on node 1 fails at once, naming it. */
static int c_lost(struct peers *t)
{
	dchan_t *ch;
	int rc;

	T_OK(dchan_attach(&t->chan, &ch));
	rc = dchan_send(ch, "x", 1, DCHAN_FOREVER);
	if (rc != -DCHAN_E_NODELOST || !strstr(dchan_errmsg(), "node 2")) {
		fprintf(stderr, "send to node 1: %s (%s)\n", dchan_strerror(rc),
			dchan_errmsg());
		return 1;
	}
	T_OK(dchan_detach(ch));
	return 0;
}

START_TEST(t_lookup)
{
	struct peers *t = peers_up();

	ck_assert_int_eq(run0(t, c_use), 0);
	ck_assert_int_eq(run0(t, c_use), 0);
	ck_assert_int_eq(__atomic_load_n(&t->asked, __ATOMIC_SEQ_CST), 1);
	peers_down(t);
}
END_TEST

START_TEST(t_down_and_up)
{
	struct peers *t = peers_up();
	pid_t waiter;
	int st;

	ck_assert_int_eq(run0(t, c_use), 0);
	/* a receive parked on node 1, then node 1 is known lost */
	waiter = fork();
	ck_assert_int_ge(waiter, 0);
	if (waiter == 0) {
		setenv("DRAGON_NODE_ID", "1", 1);
		setenv(DCHAN_GW_ENV, t->gw[0], 1);
		_exit(c_wait_lost(t));
	}
	/* (whether the receive reached node 1 before the loss or not, it
	 * fails the same way) */
	usleep(200000);
	tell0(t, 'd');
	ck_assert_int_eq(waitpid(waiter, &st, 0), waiter);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "the parked receive did not fail with the node lost");
	ck_assert_int_eq(run0(t, c_lost), 0);
	ck_assert_int_eq(run0(t, c_lost), 0);
	/* node 1 given an address again: it is reached again */
	tell0(t, 'u');
	ck_assert_int_eq(run0(t, c_use), 0);
	peers_down(t);
}
END_TEST

START_TEST(t_refused)
{
	struct peers *t = peers_up();
	pid_t stand_in;
	int st;

	ck_assert_int_eq(run0(t, c_use), 0);
	kill(t->agent[1], SIGKILL);
	ck_assert_int_eq(waitpid(t->agent[1], &st, 0), t->agent[1]);
	stand_in = fork(); /* a stand-in to reap in peers_down */
	if (stand_in == 0)
		_exit(0);
	t->agent[1] = stand_in;
	/* nobody listens at node 1's address: no wait for the timeout */
	ck_assert_int_eq(run0(t, c_lost), 0);
	ck_assert_int_eq(run0(t, c_lost), 0);
	peers_down(t);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("dtransport_peers");
	TCase *tc = tcase_create("peers");

	/* far below the agents' peer timeout */
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, t_lookup);
	tcase_add_test(tc, t_down_and_up);
	tcase_add_test(tc, t_refused);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run_suite(suite());
}
