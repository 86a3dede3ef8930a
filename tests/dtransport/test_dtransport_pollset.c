/*
 * libdtransport: dchan_poll_many over a set that mixes a channel of this
 * node with channels of node 1, reached through the agents: try-once,
 * timeouts, either side becoming ready while the set waits (past the
 * remote polls' slice too), and no remote wait or stale answer left
 * behind by a set that returned early.
 */
#include "dtrans_test.h"

#include <pthread.h>

/* A channel of node 0, in its gateway's pool. */
static int local_chan(struct cluster *c, dchan_t **gw, dchan_t **ch)
{
	dchan_attr_t a = {.field_mask = DCHAN_ATTR_CAPACITY, .capacity = 4};
	dchan_desc_t gd;

	T_OK(dchan_desc_from_text(c->gw[0], &gd));
	T_OK(dchan_attach(&gd, gw));
	T_OK(dchan_create(dchan_pool(*gw), &a, ch));
	return 0;
}

static void set_of(dchan_pollitem_t it[3], dchan_t *loc, dchan_t *r1,
		   dchan_t *r2, unsigned ev_remote)
{
	it[0] = (dchan_pollitem_t){.ch = r1, .events = ev_remote};
	it[1] = (dchan_pollitem_t){.ch = loc, .events = DCHAN_POLLIN};
	it[2] = (dchan_pollitem_t){.ch = r2, .events = ev_remote};
}

static void *send_later(void *arg)
{
	usleep(200000);
	dchan_send(arg, "l", 1, DCHAN_FOREVER);
	return NULL;
}

/* node 0: everything that needs no other process */
static int c_pollset(struct cluster *c)
{
	dchan_t *gw, *loc, *r1, *r2;
	dchan_pollitem_t it[3];
	pthread_t thr;
	uint64_t t0;
	char buf[8];
	size_t len;

	if (local_chan(c, &gw, &loc))
		return 1;
	T_OK(dchan_attach(&c->obj[O_CHAN], &r1));
	T_OK(dchan_attach(&c->obj[O_PING], &r2));

	/* nothing ready: try once, then a timeout no earlier than asked */
	set_of(it, loc, r1, r2, DCHAN_POLLIN);
	T_EQ(dchan_poll_many(it, 3, 0), -EAGAIN);
	t0 = t_now();
	T_EQ(dchan_poll_many(it, 3, 300 * MS), -ETIMEDOUT);
	T_EQ(t_now() - t0 >= 300 * MS, 1);
	T_EQ(it[0].revents | it[1].revents | it[2].revents, 0);

	/* ready at once: every ready item is reported */
	set_of(it, loc, r1, r2, DCHAN_POLLIN | DCHAN_POLLOUT);
	T_EQ(dchan_poll_many(it, 3, DCHAN_FOREVER), 2);
	T_EQ(it[0].revents, DCHAN_POLLOUT);
	T_EQ(it[1].revents, 0);
	T_EQ(it[2].revents, DCHAN_POLLOUT);
	T_OK(dchan_send(r1, "r", 1, 0));
	T_EQ(dchan_poll_many(it, 3, 0), 2);
	T_EQ(it[0].revents, DCHAN_POLLIN | DCHAN_POLLOUT);
	T_OK(dchan_recv(r1, buf, sizeof buf, 0, &len));

	/* the local channel becomes ready while the set waits; each time
	 * the remote polls are left behind, and their late answers must
	 * not disturb what the thread does next */
	for (int i = 0; i < 20; i++) {
		set_of(it, loc, r1, r2, DCHAN_POLLIN);
		if (i == 0) {
			T_EQ(pthread_create(&thr, NULL, send_later, loc), 0);
		} else {
			T_OK(dchan_send(loc, "l", 1, 0));
		}
		T_EQ(dchan_poll_many(it, 3, DCHAN_FOREVER), 1);
		T_EQ(it[1].revents, DCHAN_POLLIN);
		if (i == 0)
			pthread_join(thr, NULL);
		T_OK(dchan_recv(loc, buf, sizeof buf, 0, &len));
		/* a plain remote operation of the same thread */
		T_OK(dchan_send(r2, "p", 1, 2 * S));
		T_OK(dchan_recv(r2, buf, sizeof buf, 2 * S, &len));
		T_EQ(len, 1);
	}
	T_OK(dchan_detach(r1));
	T_OK(dchan_detach(r2));
	T_OK(dchan_destroy(loc));
	T_OK(dchan_detach(gw));
	return 0;
}

/* node 0: wait on the set; the remote channel O_PING becomes ready */
static int c_pollset_remote_wins(struct cluster *c)
{
	dchan_t *gw, *loc, *r1, *r2;
	dchan_pollitem_t it[3];
	char buf[8];
	size_t len;

	if (local_chan(c, &gw, &loc))
		return 1;
	T_OK(dchan_attach(&c->obj[O_CHAN], &r1));
	T_OK(dchan_attach(&c->obj[O_PING], &r2));
	set_of(it, loc, r1, r2, DCHAN_POLLIN);
	printf("w\n");
	fflush(stdout);
	T_EQ(dchan_poll_many(it, 3, 30 * S), 1);
	T_EQ(it[2].revents, DCHAN_POLLIN);
	T_EQ(it[0].revents | it[1].revents, 0);
	T_OK(dchan_recv(r2, buf, sizeof buf, 0, &len));
	T_OK(dchan_detach(r1));
	T_OK(dchan_detach(r2));
	T_OK(dchan_destroy(loc));
	T_OK(dchan_detach(gw));
	return 0;
}

/* node 1: a message for the waiting set, after more than a slice */
static int c_ping_late(struct cluster *c)
{
	dchan_t *ch;

	usleep(1200000);
	T_OK(dchan_attach(&c->obj[O_PING], &ch));
	T_OK(dchan_send(ch, "late", 4, 0));
	T_OK(dchan_detach(ch));
	return 0;
}

/* node 0: a remote item whose node is lost fails the set, naming it */
static int c_pollset_lost(struct cluster *c)
{
	dchan_t *gw, *loc, *r1, *r2;
	dchan_pollitem_t it[3];

	if (local_chan(c, &gw, &loc))
		return 1;
	T_OK(dchan_attach(&c->obj[O_CHAN], &r1));
	T_OK(dchan_attach(&c->obj[O_PING], &r2));
	set_of(it, loc, r1, r2, DCHAN_POLLIN);
	printf("w\n");
	fflush(stdout);
	T_EQ(dchan_poll_many(it, 3, DCHAN_FOREVER), -DCHAN_E_NODELOST);
	if (!strstr(dchan_errmsg(), "node 2")) {
		fprintf(stderr, "error names no node: %s\n", dchan_errmsg());
		return 1;
	}
	/* a handle of a lost node's channel is still the caller's to free */
	T_OK(dchan_detach(r1));
	T_OK(dchan_detach(r2));
	T_OK(dchan_destroy(loc));
	T_OK(dchan_detach(gw));
	return 0;
}

/* Run fn on node 0 and return once it printed its line. */
static pid_t start_waiter(struct cluster *c, int (*fn)(struct cluster *))
{
	int out[2];
	char line[8] = "";
	pid_t pid;
	FILE *f;

	ck_assert_int_eq(pipe(out), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(out[1], 1);
		close(out[0]);
		t_become(0, c);
		_exit(fn(c));
	}
	close(out[1]);
	f = fdopen(out[0], "r");
	ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
	fclose(f);
	return pid;
}

START_TEST(t_pollset_mixed)
{
	struct cluster *c = t_cluster_up(10 * S);
	pid_t w;
	int tries;

	ck_assert_int_eq(t_run(c, 0, c_pollset), 0);
	/* the remote polls the sets left behind end at node 1 */
	for (tries = 0; tries < 100; tries++) {
		t_agent_stats(c, 1);
		if (c->stats[1].parked == 0)
			break;
		usleep(50000);
	}
	ck_assert_uint_eq(c->stats[1].parked, 0);

	w = start_waiter(c, c_pollset_remote_wins);
	ck_assert_int_eq(t_run(c, 1, c_ping_late), 0);
	ck_assert_int_eq(t_wait(w), 0);
	t_cluster_down(c);
}
END_TEST

START_TEST(t_pollset_node_lost)
{
	struct cluster *c = t_cluster_up(2 * S);
	pid_t w = start_waiter(c, c_pollset_lost);

	usleep(200000);
	kill(c->agent[1], SIGKILL);
	ck_assert_int_eq(t_wait(w), 0);
	t_cluster_down(c);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("dtransport_pollset");
	TCase *tc = tcase_create("pollset");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, t_pollset_mixed);
	tcase_add_test(tc, t_pollset_node_lost);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run_suite(suite());
}
