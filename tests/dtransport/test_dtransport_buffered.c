/*
 * libdtransport: buffered remote sends (dchan_send_mode_set) between two
 * agents in two processes on loopback: a thread's sends arrive in the
 * order it made them, a send's failure at the channel's node reaches the
 * sender on a later send or on dchan_gw_flush, and a peer lost with sends
 * in flight fails them within the peer timeout.  DCHAN_SEND_BUFFERED_WAIT
 * sends wait at the channel's node for room, and their timeout bounds only
 * the window; buffered sends outlive their sender.  Built once per backend
 * (DTRANS_TEST_BACKEND): test_dtransport_buffered (tcp), _ofi and _ucx.
 */
#include "dtrans_test.h"

#include <dlfcn.h>

#define NMSG 2000 /* sends in the ordering test: many windows' worth */

static int attach_buffered(struct cluster *c, int o, dchan_t **ch)
{
	int rc = dchan_attach(&c->obj[o], ch);

	if (rc == 0)
		rc = dchan_send_mode_set(*ch, DCHAN_SEND_BUFFERED);
	return rc;
}

/* ---- order -------------------------------------------------------------- */

/* A message's size by its number: inline ones, and every 97th one large
 * enough to travel through the pool. */
static size_t msg_len(uint32_t i)
{
	return i % 97 == 0 ? 3000 : 8 + i % 13;
}

/* node 0: NMSG numbered sends into node 1's channel of 64 slots, which a
 * reader there empties more slowly than they come: most sends wait at
 * node 1 for room, parked behind each other. */
static int c_send_numbered(struct cluster *c)
{
	static unsigned char buf[3000];
	dchan_t *ch;

	T_OK(attach_buffered(c, O_BIG, &ch));
	for (uint32_t i = 0; i < NMSG; i++) {
		memset(buf, (int)(i & 0xff), sizeof buf);
		memcpy(buf, &i, sizeof i);
		T_OK(dchan_send(ch, buf, msg_len(i), DCHAN_FOREVER));
	}
	T_OK(dchan_gw_flush(60 * S));
	T_OK(dchan_detach(ch));
	return 0;
}

/* node 1: every message, in order, whole */
static int c_recv_numbered(struct cluster *c)
{
	static unsigned char buf[3000];
	dchan_t *ch;
	size_t len;

	T_OK(dchan_attach(&c->obj[O_BIG], &ch));
	for (uint32_t i = 0; i < NMSG; i++) {
		uint32_t got;

		if (i % 200 == 0)
			usleep(20000); /* let the channel fill */
		T_OK(dchan_recv(ch, buf, sizeof buf, 60 * S, &len));
		memcpy(&got, buf, sizeof got);
		T_EQ(got, i);
		T_EQ(len, msg_len(i));
		T_EQ(buf[len - 1], i & 0xff);
	}
	T_EQ(dchan_count(ch), 0);
	T_OK(dchan_detach(ch));
	return 0;
}

START_TEST(t_buffered_order)
{
	struct cluster *c = t_cluster_up(10 * S);
	pid_t rd = t_start(c, 1, c_recv_numbered);

	/* the first sends go out before the link to node 1 is up */
	ck_assert_int_eq(t_run(c, 0, c_send_numbered), 0);
	ck_assert_int_eq(t_wait(rd), 0);
	t_cluster_stats(c);
	ck_assert_uint_ge(c->stats[0].requests_sent, NMSG);
	ck_assert_uint_eq(c->stats[0].completions_recv,
			  c->stats[0].requests_sent);
	/* under valgrind (a time scale past 1) the handshake can miss its
	 * fixed deadline and be made again, an error of the link that every
	 * request above still survived */
	if (t_time_scale() == 1)
		ck_assert_uint_eq(c->stats[0].errors, 0);
	t_cluster_down(c);
}
END_TEST

/* ---- errors ------------------------------------------------------------- */

/* node 0: fill node 1's channel of 4 slots with buffered sends that try
 * once; the two that find it full fail there, and the failure comes back
 * on the flush, once, naming the channel. */
static int c_errors_on_flush(struct cluster *c)
{
	char uid[32];
	dchan_t *ch;

	T_OK(attach_buffered(c, O_CHAN, &ch));
	for (int i = 0; i < 6; i++)
		T_OK(dchan_send(ch, "m", 1, 0));
	T_EQ(dchan_gw_flush(30 * S), -EAGAIN);
	snprintf(uid, sizeof uid, "%016llx",
		 (unsigned long long)c->obj[O_CHAN].chan_uid);
	if (!strstr(dchan_errmsg(), uid) || !strstr(dchan_errmsg(), "node 2")) {
		fprintf(stderr, "error does not name the channel: %s\n",
			dchan_errmsg());
		return 1;
	}
	T_OK(dchan_gw_flush(30 * S)); /* reported once */
	T_OK(dchan_detach(ch));
	return 0;
}

static int sent_up[2], go[2]; /* sender -> test, test -> sender */

/* How many sends node 0 made before one reported the error (shared
 * with the test's processes). */
static int *sent_before_error;

/* node 0: one more send into the full channel fails at node 1; a later
 * buffered send to another channel reports it, and sends nothing.  Those
 * sends try once: past the 64 slots of that channel they would fail too,
 * and not wait for a reader that never comes. */
static int c_errors_on_send(struct cluster *c)
{
	dchan_t *full, *big;
	int rc = 0, sent = 0;
	uint64_t t0 = t_now();

	T_OK(attach_buffered(c, O_CHAN, &full));
	T_OK(attach_buffered(c, O_BIG, &big));
	T_OK(dchan_send(full, "late", 4, 0));
	while (t_now() - t0 < 30 * S) {
		rc = dchan_send(big, "b", 1, 0);
		if (rc < 0)
			break;
		sent++;
		usleep(1000);
	}
	T_EQ(rc, -EAGAIN);
	if (!strstr(dchan_errmsg(), "earlier buffered send")) {
		fprintf(stderr, "error does not say what failed: %s\n",
			dchan_errmsg());
		return 1;
	}
	rc = dchan_gw_flush(30 * S);
	T_EQ(rc, sent > 64 ? -EAGAIN : 0);
	*sent_before_error = sent;
	T_OK(dchan_detach(full));
	T_OK(dchan_detach(big));
	return 0;
}

/* node 1: the full channel holds the four first messages; the other
 * channel holds exactly what node 0's sends said they sent. */
static int c_errors_check(struct cluster *c)
{
	char buf[8];
	dchan_t *ch;
	size_t len;
	int n = 0;

	T_OK(dchan_attach(&c->obj[O_CHAN], &ch));
	T_EQ(dchan_count(ch), 4);
	while (dchan_recv(ch, buf, sizeof buf, 0, &len) == 0)
		n++;
	T_EQ(n, 4);
	/* a local channel ignores the mode: this send tries once, here */
	T_OK(dchan_send_mode_set(ch, DCHAN_SEND_BUFFERED));
	for (int i = 0; i < 4; i++)
		T_OK(dchan_send(ch, "l", 1, 0));
	T_EQ(dchan_send(ch, "l", 1, 0), -EAGAIN);
	while (dchan_recv(ch, buf, sizeof buf, 0, &len) == 0)
		;
	T_EQ(dchan_send_mode_set(ch, 7), -EINVAL);
	T_OK(dchan_detach(ch));
	T_OK(dchan_attach(&c->obj[O_BIG], &ch));
	T_EQ(dchan_count(ch),
	     *sent_before_error < 64 ? *sent_before_error : 64);
	while (dchan_recv(ch, buf, sizeof buf, 0, &len) == 0)
		;
	T_OK(dchan_detach(ch));
	return 0;
}

START_TEST(t_buffered_errors)
{
	struct cluster *c = t_cluster_up(10 * S);

	sent_before_error =
		mmap(NULL, sizeof *sent_before_error, PROT_READ | PROT_WRITE,
		     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert(sent_before_error != MAP_FAILED);
	ck_assert_int_eq(t_run(c, 0, c_errors_on_flush), 0);
	/* (none, when the failure came back before the next send) */
	ck_assert_int_eq(t_run(c, 0, c_errors_on_send), 0);
	ck_assert_int_eq(t_run(c, 1, c_errors_check), 0);
	t_cluster_down(c);
}
END_TEST

/* ---- waiting at the channel's node -------------------------------------- */

#define NWAIT 200 /* more than the channel's 4 slots and the window of 128 */

/* node 0: sends that try once (timeout 0) into node 1's channel of 4
 * slots, which nobody reads yet: none fails there, they wait for room;
 * past the window (and the 4 that found room) the send returns -EAGAIN
 * at once, sending nothing.
 * Then node 1 reads (go), and every send is carried out. */
static int c_send_waiting(struct cluster *c)
{
	uint32_t i = 0;
	dchan_t *ch;
	char b;
	int rc;

	T_OK(dchan_attach(&c->obj[O_CHAN], &ch));
	T_OK(dchan_send_mode_set(ch, DCHAN_SEND_BUFFERED_WAIT));
	while ((rc = dchan_send(ch, &i, sizeof i, 0)) == 0)
		i++;
	T_EQ(rc, -EAGAIN);
	/* the 4 that found room may be acknowledged meanwhile */
	if (i < DCHAN_GW_BUFFERED_MAX || i > DCHAN_GW_BUFFERED_MAX + 4) {
		fprintf(stderr, "%u sends went before the window was full\n",
			i);
		return 1;
	}
	if (!strstr(dchan_errmsg(), "in flight")) {
		fprintf(stderr, "error does not say why: %s\n", dchan_errmsg());
		return 1;
	}
	if (write(sent_up[1], "p", 1) != 1 || read(go[0], &b, 1) != 1)
		return 3;
	for (; i < NWAIT; i++)
		T_OK(dchan_send(ch, &i, sizeof i, 60 * S));
	T_OK(dchan_gw_flush(60 * S));
	T_OK(dchan_detach(ch));
	return 0;
}

/* node 1: every message, in order */
static int c_recv_waiting(struct cluster *c)
{
	uint32_t got;
	dchan_t *ch;
	size_t len;

	T_OK(dchan_attach(&c->obj[O_CHAN], &ch));
	for (uint32_t i = 0; i < NWAIT; i++) {
		T_OK(dchan_recv(ch, &got, sizeof got, 60 * S, &len));
		T_EQ(got, i);
	}
	T_OK(dchan_detach(ch));
	return 0;
}

START_TEST(t_buffered_wait)
{
	struct cluster *c;
	pid_t w, rd;
	char b;

	ck_assert_int_eq(pipe(sent_up), 0);
	ck_assert_int_eq(pipe(go), 0);
	c = t_cluster_up(10 * S);
	w = t_start(c, 0, c_send_waiting);
	ck_assert_int_eq(read(sent_up[0], &b, 1), 1);
	usleep(300000); /* the sends reach node 1 and wait there */
	rd = t_start(c, 1, c_recv_waiting);
	ck_assert_int_eq(write(go[1], "g", 1), 1);
	ck_assert_int_eq(t_wait(w), 0);
	ck_assert_int_eq(t_wait(rd), 0);
	t_cluster_down(c);
}
END_TEST

/* node 0: buffered sends that wait at node 1 for room, and the sender
 * exits without waiting for them */
static int c_send_and_exit(struct cluster *c)
{
	/* left attached, as by a process that exits without detaching (kept
	 * reachable: the exit, not a lost pointer, is what is tested) */
	static dchan_t *ch;

	T_OK(attach_buffered(c, O_CHAN, &ch));
	for (uint32_t i = 0; i < 20; i++)
		T_OK(dchan_send(ch, &i, sizeof i, DCHAN_FOREVER));
	return 0;
}

/* node 1: the 20 messages, in order, once the sender has been gone for
 * longer than its agent takes to notice a dead requester */
static int c_recv_late(struct cluster *c)
{
	uint32_t got;
	dchan_t *ch;
	size_t len;

	T_OK(dchan_attach(&c->obj[O_CHAN], &ch));
	for (uint32_t i = 0; i < 20; i++) {
		T_OK(dchan_recv(ch, &got, sizeof got, 30 * S, &len));
		T_EQ(got, i);
	}
	T_OK(dchan_detach(ch));
	return 0;
}

START_TEST(t_buffered_outlive_sender)
{
	struct cluster *c = t_cluster_up(10 * S);

	ck_assert_int_eq(t_run(c, 0, c_send_and_exit), 0);
	usleep(3000000); /* past DTRANS__REAP_NS, and a reap */
	ck_assert_int_eq(t_run(c, 1, c_recv_late), 0);
	t_cluster_down(c);
}
END_TEST

/* ---- a lost peer -------------------------------------------------------- */

/* node 0: sends that wait at node 1 for room in a full channel when its
 * agent is killed: the flush reports the lost node, within the peer
 * timeout; a send made after that fails the same way. */
static int c_sends_in_flight(struct cluster *c)
{
	dchan_t *ch;
	char b;
	int rc;

	T_OK(attach_buffered(c, O_CHAN, &ch));
	for (int i = 0; i < 20; i++)
		T_OK(dchan_send(ch, "x", 1, DCHAN_FOREVER));
	if (write(sent_up[1], "p", 1) != 1 || read(go[0], &b, 1) != 1)
		return 3;
	rc = dchan_gw_flush(60 * S);
	T_EQ(rc, -DCHAN_E_NODELOST);
	if (!strstr(dchan_errmsg(), "node 2")) {
		fprintf(stderr, "error does not name the node: %s\n",
			dchan_errmsg());
		return 1;
	}
	T_OK(dchan_send(ch, "y", 1, DCHAN_FOREVER));
	T_EQ(dchan_gw_flush(60 * S), -DCHAN_E_NODELOST);
	T_OK(dchan_detach(ch));
	return 0;
}

START_TEST(t_buffered_peer_lost)
{
	struct cluster *c;
	pid_t w;
	char b;
	uint64_t t0;

	ck_assert_int_eq(pipe(sent_up), 0);
	ck_assert_int_eq(pipe(go), 0);
	c = t_cluster_up(2 * S);
	w = t_start(c, 0, c_sends_in_flight);
	ck_assert_int_eq(read(sent_up[0], &b, 1), 1);
	usleep(300000); /* the sends reach node 1 and wait there */
	kill(c->agent[1], SIGKILL);
	t0 = t_now();
	ck_assert_int_eq(write(go[1], "k", 1), 1);
	ck_assert_int_eq(t_wait(w), 0);
	ck_assert_msg(t_now() - t0 < 30 * S * t_time_scale(),
		      "failing took too long");
	t_agent_stats(c, 0);
	ck_assert_uint_ge(c->stats[0].failed_ops, 16);
	t_cluster_down(c);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("dtransport_buffered");
	TCase *tc = tcase_create("buffered");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, t_buffered_order);
	tcase_add_test(tc, t_buffered_errors);
	tcase_add_test(tc, t_buffered_peer_lost);
	tcase_add_test(tc, t_buffered_wait);
	tcase_add_test(tc, t_buffered_outlive_sender);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr;
	int failed;

	if (t_backend_absent(": its buffered-send suite is not run"))
		return 77;
	sr = srunner_create(suite());
	t_own_instance();
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
