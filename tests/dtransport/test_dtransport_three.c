/*
 * libdtransport: three agents, three nodes.  A process of node 0 uses
 * channels of nodes 1 and 2 at once, waits on a poll set that mixes a
 * channel of its own node with one of each of the others, and after
 * node 2's agent is killed its operations on node 2 fail, naming the
 * node, while node 1 goes on serving it.
 *
 * Each agent listens where t_listen_addr says: loopback, or with
 * DRAGON_TEST_NETNS<i> / DRAGON_TEST_HOST<i> a network namespace of its
 * own (netns.sh runs the suite so across three namespaces).
 */
#include "dtrans_test.h"

#define N3 3

/* What the test and the agents share (one mapping, before the forks). */
struct three {
	pid_t agent[N3];
	int ctl[N3][2], ready[N3][2];
	char addr[N3][128];
	char gw[N3][DCHAN_DESC_TEXT_MAX];
	dchan_desc_t chan[N3]; /* one channel of each node */
};

static void three_agent(struct three *t, int idx)
{
	dchan_attr_t ga = {.field_mask = DCHAN_ATTR_CAPACITY, .capacity = 1024};
	dchan_attr_t ca = {.field_mask = DCHAN_ATTR_CAPACITY, .capacity = 16};
	dtrans_attr_t a = {0};
	dtrans_agent_t *ag;
	dmem_pool_t *pool;
	dchan_t *gw, *ch;
	dchan_desc_t d;
	char name[64], id[16];
	int rc;

	a.listen_addr = t_listen_addr(idx); /* enters its namespace */
	snprintf(id, sizeof id, "%d", idx + 1);
	setenv("DRAGON_NODE_ID", id, 1);
	snprintf(name, sizeof name, "tdtrans3-%d-%d", idx, (int)getpid());
	if ((rc = dmem_pool_create(name, 64u << 20, NULL, &pool)) ||
	    (rc = dchan_create(pool, &ga, &gw)) ||
	    (rc = dchan_create(pool, &ca, &ch)))
		t_fatal("pool", rc);
	dchan_desc_get(gw, &d);
	dchan_desc_to_text(&d, t->gw[idx], sizeof t->gw[idx]);
	dchan_desc_get(ch, &t->chan[idx]);
	a.node = (uint32_t)idx;
	a.nnodes = N3;
	a.secret = t_secret;
	a.secret_len = sizeof t_secret - 1;
	a.gateway = gw;
	a.field_mask = DTRANS_ATTR_PEER_TIMEOUT;
	a.peer_timeout_ns = 2 * S * t_time_scale();
	if (t_backend()) {
		a.field_mask |= DTRANS_ATTR_BACKEND;
		a.backend = t_backend();
	}
	if ((rc = dtrans_agent_create(&a, &ag)))
		t_fatal("agent", rc);
	dtrans_agent_address(ag, t->addr[idx], sizeof t->addr[idx]);
	t_say(t->ready[idx][1], 'r');
	if (t_hear(t->ctl[idx][0]) != 'g')
		_exit(5);
	for (int i = 0; i < N3; i++)
		if (i != idx &&
		    (rc = dtrans_agent_peer_set(ag, (uint32_t)i, t->addr[i])))
			t_fatal("peer", rc);
	if ((rc = dtrans_agent_start(ag)))
		t_fatal("start", rc);
	t_say(t->ready[idx][1], 'r');
	t_hear(t->ctl[idx][0]); /* quit, or end of file */
	dtrans_agent_destroy(ag);
	dchan_destroy(ch);
	dchan_destroy(gw);
	dmem_pool_destroy(pool);
	_exit(0);
}

static struct three *three_up(void)
{
	struct three *t = mmap(NULL, sizeof *t, PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	ck_assert(t != MAP_FAILED);
	memset(t, 0, sizeof *t);
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < N3; i++) {
		ck_assert_int_eq(pipe(t->ctl[i]), 0);
		ck_assert_int_eq(pipe(t->ready[i]), 0);
	}
	for (int i = 0; i < N3; i++) {
		pid_t pid = fork();

		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			for (int j = 0; j < N3; j++) {
				close(t->ctl[j][1]);
				close(t->ready[j][0]);
			}
			three_agent(t, i);
		}
		t->agent[i] = pid;
		close(t->ctl[i][0]);
		close(t->ready[i][1]);
		ck_assert_int_eq(t_hear(t->ready[i][0]), 'r');
	}
	for (int i = 0; i < N3; i++)
		t_say(t->ctl[i][1], 'g');
	for (int i = 0; i < N3; i++)
		ck_assert_int_eq(t_hear(t->ready[i][0]), 'r');
	return t;
}

static void three_down(struct three *t)
{
	for (int i = 0; i < N3; i++) {
		int st;

		t_say(t->ctl[i][1], 'q');
		close(t->ctl[i][1]);
		ck_assert_int_eq(waitpid(t->agent[i], &st, 0), t->agent[i]);
		ck_assert_msg(t->agent[i] == -1 || WIFEXITED(st) ||
				      WTERMSIG(st) == SIGKILL,
			      "agent %d ended by signal %d", i, WTERMSIG(st));
		close(t->ready[i][0]);
	}
	munmap(t, sizeof *t);
}

/* A process of node 0: its gateway. */
static void three_become0(const struct three *t)
{
	setenv("DRAGON_NODE_ID", "1", 1);
	setenv(DCHAN_GW_ENV, t->gw[0], 1);
}

/* Channels of nodes 1 and 2 at once, and a poll set of all three. */
static int c_both(struct three *t)
{
	dchan_t *c0, *c1, *c2;
	dchan_pollitem_t it[3];
	char buf[16];
	size_t len;

	T_OK(dchan_attach(&t->chan[0], &c0));
	T_OK(dchan_attach(&t->chan[1], &c1));
	T_OK(dchan_attach(&t->chan[2], &c2));
	for (int i = 0; i < 50; i++) {
		T_OK(dchan_send(c1, "one", 3, 10 * S));
		T_OK(dchan_send(c2, "two", 3, 10 * S));
		T_OK(dchan_recv(c2, buf, sizeof buf, 10 * S, &len));
		T_EQ(len == 3 && !memcmp(buf, "two", 3), 1);
		T_OK(dchan_recv(c1, buf, sizeof buf, 10 * S, &len));
		T_EQ(len == 3 && !memcmp(buf, "one", 3), 1);
	}
	/* nothing ready anywhere, then node 2's channel, then node 0's */
	it[0] = (dchan_pollitem_t){.ch = c0, .events = DCHAN_POLLIN};
	it[1] = (dchan_pollitem_t){.ch = c1, .events = DCHAN_POLLIN};
	it[2] = (dchan_pollitem_t){.ch = c2, .events = DCHAN_POLLIN};
	T_EQ(dchan_poll_many(it, 3, 200 * MS), -ETIMEDOUT);
	T_OK(dchan_send(c2, "x", 1, 10 * S));
	T_EQ(dchan_poll_many(it, 3, 10 * S), 1);
	T_EQ(it[2].revents, DCHAN_POLLIN);
	T_EQ(it[0].revents | it[1].revents, 0);
	T_OK(dchan_recv(c2, buf, sizeof buf, 0, &len));
	T_OK(dchan_send(c0, "l", 1, 0));
	T_OK(dchan_send(c1, "r", 1, 10 * S));
	T_EQ(dchan_poll_many(it, 3, 10 * S), 2);
	T_EQ(it[0].revents, DCHAN_POLLIN);
	T_EQ(it[1].revents, DCHAN_POLLIN);
	T_EQ(it[2].revents, 0);
	T_OK(dchan_recv(c0, buf, sizeof buf, 0, &len));
	T_OK(dchan_recv(c1, buf, sizeof buf, 10 * S, &len));
	T_OK(dchan_detach(c0));
	T_OK(dchan_detach(c1));
	T_OK(dchan_detach(c2));
	return 0;
}

/* After node 2's agent died: node 2 fails, naming it; node 1 serves. */
static int c_one_lost(struct three *t)
{
	dchan_t *c1, *c2;
	char buf[16];
	size_t len;
	int rc;

	T_OK(dchan_attach(&t->chan[1], &c1));
	T_OK(dchan_attach(&t->chan[2], &c2));
	rc = dchan_send(c2, "x", 1, DCHAN_FOREVER);
	if (rc != -DCHAN_E_NODELOST || !strstr(dchan_errmsg(), "node 3")) {
		fprintf(stderr, "node 2's channel: %s (%s)\n",
			dchan_strerror(rc), dchan_errmsg());
		dchan_detach(c1);
		dchan_detach(c2);
		return 1;
	}
	for (int i = 0; i < 50; i++) {
		T_OK(dchan_send(c1, "one", 3, 10 * S));
		T_OK(dchan_recv(c1, buf, sizeof buf, 10 * S, &len));
		T_EQ(len, 3);
	}
	T_OK(dchan_detach(c1));
	T_OK(dchan_detach(c2));
	return 0;
}

static int run0(struct three *t, int (*fn)(struct three *))
{
	pid_t pid = fork();
	int st;

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		three_become0(t);
		_exit(fn(t));
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

START_TEST(t_three_nodes)
{
	struct three *t = three_up();

	ck_assert_int_eq(run0(t, c_both), 0);
	kill(t->agent[2], SIGKILL);
	ck_assert_int_eq(run0(t, c_one_lost), 0);
	/* and what worked before still does */
	ck_assert_int_eq(run0(t, c_one_lost), 0);
	three_down(t);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("dtransport_three");
	TCase *tc = tcase_create("three");

	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, t_three_nodes);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run_suite(suite());
}
