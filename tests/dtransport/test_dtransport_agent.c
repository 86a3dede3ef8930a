/*
 * libdtransport: two agents in two processes on loopback, and processes of
 * node 0 using node 1's channels and sync objects exactly as if they were
 * local.  The same suite is built once per backend (DTRANS_TEST_BACKEND):
 * test_dtransport_agent (the default, tcp), _ofi and _ucx.
 */
#include "dtrans_test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

static int attach(struct cluster *c, int o, dchan_t **ch)
{
	return dchan_attach(&c->obj[o], ch);
}

/* ---- send / recv / peek / poll / stats ---------------------------------- */

/* node 0: inline and pool-copied messages into node 1's channel */
static int c_send(struct cluster *c)
{
	static char big[64 << 10];
	dchan_t *ch;

	T_OK(attach(c, O_BIG, &ch));
	T_EQ(dchan_pool(ch) == NULL, 1); /* really remote */
	T_OK(dchan_send(ch, "hello", 5, 2 * S));
	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (char)(i * 7);
	T_OK(dchan_send(ch, big, sizeof big, 2 * S));
	T_OK(dchan_send(ch, "", 0, 0));
	T_OK(dchan_detach(ch));
	return 0;
}

/* node 1, locally: what node 0 sent, then messages for node 0 (one
 * zero-copy) */
static int c_local_check(struct cluster *c)
{
	static char big[64 << 10];
	dchan_t *ch;
	size_t len;
	void *p;

	T_OK(attach(c, O_BIG, &ch));
	T_EQ(dchan_pool(ch) != NULL, 1);
	T_OK(dchan_recv(ch, big, sizeof big, 0, &len));
	T_EQ(len, 5);
	T_EQ(memcmp(big, "hello", 5), 0);
	T_OK(dchan_recv(ch, big, sizeof big, 0, &len));
	T_EQ(len, sizeof big);
	for (size_t i = 0; i < sizeof big; i++)
		T_EQ(big[i], (char)(i * 7));
	T_OK(dchan_recv(ch, big, sizeof big, 0, &len));
	T_EQ(len, 0);
	T_OK(dmem_alloc(dchan_pool(ch), 1000, 0, &p));
	memset(p, 'z', 1000);
	T_OK(dchan_send_zc(ch, p, 1000, 0));
	T_OK(dchan_send(ch, "abc", 3, 0));
	T_OK(dchan_detach(ch));
	return 0;
}

/* node 0: peek, poll, stats, recv of node 1's messages */
static int c_recv(struct cluster *c)
{
	char buf[2000];
	dchan_stats_t st;
	unsigned rev;
	size_t len;
	dchan_t *ch;

	T_OK(attach(c, O_BIG, &ch));
	T_OK(dchan_poll(ch, DCHAN_POLLIN | DCHAN_POLLOUT, 2 * S, &rev));
	T_EQ(rev, DCHAN_POLLIN | DCHAN_POLLOUT);
	T_OK(dchan_stats(ch, &st));
	T_EQ(st.count, 2);
	T_EQ(st.capacity, 64);
	T_OK(dchan_peek(ch, buf, 10, 0, &len));
	T_EQ(len, 1000);
	T_EQ(buf[9], 'z');
	T_EQ(dchan_recv(ch, buf, 10, 0, &len), -EMSGSIZE);
	T_OK(dchan_recv(ch, buf, sizeof buf, 0, &len));
	T_EQ(len, 1000);
	T_EQ(buf[999], 'z');
	T_OK(dchan_recv(ch, buf, sizeof buf, DCHAN_FOREVER, &len));
	T_EQ(len, 3);
	T_EQ(dchan_count(ch), 0);
	T_EQ(dchan_recv(ch, buf, sizeof buf, 0, &len), -EAGAIN);
	T_OK(dchan_detach(ch));
	return 0;
}

START_TEST(t_channel_ops)
{
	struct cluster *c = t_cluster_up(10 * S);

	ck_assert_int_eq(t_run(c, 0, c_send), 0);
	ck_assert_int_eq(t_run(c, 1, c_local_check), 0);
	ck_assert_int_eq(t_run(c, 0, c_recv), 0);
	t_cluster_stats(c);
	ck_assert_uint_ge(c->stats[0].requests_sent, 10);
	ck_assert_uint_ge(c->stats[1].requests_served, 10);
	ck_assert_uint_eq(c->stats[0].completions_recv,
			  c->stats[0].requests_sent);
	ck_assert_uint_ge(c->stats[0].bytes_sent, 64 << 10);
	ck_assert_uint_ge(c->stats[1].bytes_sent, 1000);
	ck_assert_uint_eq(c->stats[0].connections, 1);
	ck_assert_uint_eq(c->stats[0].errors, 0);
	t_cluster_down(c);
}
END_TEST

/* ---- timeouts ----------------------------------------------------------- */

static int c_timeouts(struct cluster *c)
{
	char buf[8];
	size_t len;
	unsigned rev;
	dchan_t *ch;
	uint64_t t0, dt;

	T_OK(attach(c, O_CHAN, &ch));
	T_EQ(dchan_recv(ch, buf, sizeof buf, 0, &len), -EAGAIN);
	T_EQ(dchan_poll(ch, DCHAN_POLLIN, 0, &rev), -EAGAIN);
	t0 = t_now();
	T_EQ(dchan_recv(ch, buf, sizeof buf, 2 * S, &len), -ETIMEDOUT);
	dt = t_now() - t0;
	if (dt < 2 * S) {
		fprintf(stderr, "a 2 s remote recv failed after %llu ns\n",
			(unsigned long long)dt);
		return 1;
	}
	/* a full channel: a send times out, not earlier */
	for (int i = 0; i < 4; i++)
		T_OK(dchan_send(ch, "x", 1, 0));
	T_EQ(dchan_send(ch, "x", 1, 0), -EAGAIN);
	t0 = t_now();
	T_EQ(dchan_send(ch, "x", 1, 300 * MS), -ETIMEDOUT);
	T_EQ(t_now() - t0 >= 300 * MS, 1);
	for (int i = 0; i < 4; i++)
		T_OK(dchan_recv(ch, buf, sizeof buf, 0, &len));
	T_OK(dchan_detach(ch));
	return 0;
}

START_TEST(t_timeouts)
{
	struct cluster *c = t_cluster_up(10 * S);

	ck_assert_int_eq(t_run(c, 0, c_timeouts), 0);
	t_cluster_down(c);
}
END_TEST

/* A remote recv that waits forever gets the message sent later. */
static int c_wait_forever(struct cluster *c)
{
	char buf[8];
	size_t len;
	dchan_t *ch;

	T_OK(attach(c, O_CHAN, &ch));
	T_OK(dchan_recv(ch, buf, sizeof buf, DCHAN_FOREVER, &len));
	T_EQ(len, 4);
	T_EQ(memcmp(buf, "late", 4), 0);
	T_OK(dchan_detach(ch));
	return 0;
}

static int c_send_late(struct cluster *c)
{
	dchan_t *ch;

	usleep(300000);
	T_OK(attach(c, O_CHAN, &ch));
	T_OK(dchan_send(ch, "late", 4, 0));
	T_OK(dchan_detach(ch));
	return 0;
}

START_TEST(t_wait_forever)
{
	struct cluster *c = t_cluster_up(10 * S);
	pid_t w = t_start(c, 0, c_wait_forever);

	ck_assert_int_eq(t_run(c, 1, c_send_late), 0);
	ck_assert_int_eq(t_wait(w), 0);
	t_cluster_down(c);
}
END_TEST

/* ---- sync objects ------------------------------------------------------- */

/* The remote waiter tells the setter when it is about to wait. */
static int go_pipe[2];

static int c_sync_remote(struct cluster *c)
{
	dchan_lock_t *lk, *rl;
	dchan_sem_t *sem;
	dchan_event_t *ev;

	T_OK(dchan_lock_attach(&c->obj[O_LOCK], &lk));
	T_OK(dchan_lock_acquire(lk, 2 * S));
	T_EQ(dchan_lock_acquire(lk, 0), -EAGAIN);
	T_EQ(dchan_lock_acquire(lk, 200 * MS), -ETIMEDOUT);
	T_OK(dchan_lock_release(lk));
	T_OK(dchan_lock_acquire(lk, 0));
	T_OK(dchan_lock_release(lk));

	T_OK(dchan_lock_attach(&c->obj[O_RLOCK], &rl));
	T_OK(dchan_lock_acquire(rl, 2 * S));
	T_OK(dchan_lock_acquire(rl, 2 * S));
	T_OK(dchan_lock_release(rl));
	T_OK(dchan_lock_release(rl));

	T_OK(dchan_sem_attach(&c->obj[O_SEM], &sem));
	T_EQ(dchan_sem_value(sem), 1);
	T_OK(dchan_sem_acquire(sem, 2 * S));
	T_EQ(dchan_sem_acquire(sem, 0), -EAGAIN);
	T_OK(dchan_sem_release(sem));
	T_OK(dchan_sem_release(sem));
	T_EQ(dchan_sem_release(sem), -EOVERFLOW);
	T_EQ(dchan_sem_value(sem), 2);

	T_OK(dchan_event_attach(&c->obj[O_EVENT], &ev));
	T_EQ(dchan_event_is_set(ev), 0);
	T_EQ(dchan_event_wait(ev, 100 * MS), -ETIMEDOUT);
	/* node 1 sets it while we wait */
	T_EQ(write(go_pipe[1], "g", 1), 1);
	T_OK(dchan_event_wait(ev, 20 * S));
	T_EQ(dchan_event_is_set(ev), 1);
	T_OK(dchan_event_clear(ev));
	T_EQ(dchan_event_is_set(ev), 0);
	T_OK(dchan_lock_detach(lk));
	T_OK(dchan_lock_detach(rl));
	T_OK(dchan_sem_detach(sem));
	T_OK(dchan_event_detach(ev));
	return 0;
}

static int c_event_set_late(struct cluster *c)
{
	dchan_event_t *ev;

	char b;

	T_OK(dchan_event_attach(&c->obj[O_EVENT], &ev));
	T_EQ(read(go_pipe[0], &b, 1), 1); /* the waiter is about to wait */
	usleep(200000);
	T_OK(dchan_event_set(ev));
	T_OK(dchan_event_detach(ev));
	return 0;
}

START_TEST(t_sync_objects)
{
	struct cluster *c = t_cluster_up(10 * S);
	pid_t setter;

	ck_assert_int_eq(pipe(go_pipe), 0);
	setter = t_start(c, 1, c_event_set_late);

	ck_assert_int_eq(t_run(c, 0, c_sync_remote), 0);
	ck_assert_int_eq(t_wait(setter), 0);
	t_cluster_down(c);
}
END_TEST

/* ---- thousands of parked waits ------------------------------------------ */

/* Park n remote receives at once: raw gateway requests with one reply
 * channel, so that one process holds them all. */
#define PARK_N 10000

static int c_park_many(struct cluster *c)
{
	int n = (int)(PARK_N * t_scale());
	dchan_attr_t ra = {.field_mask = DCHAN_ATTR_CAPACITY};
	dchan_desc_t gd;
	dchan_t *gw, *reply;
	static unsigned char buf[4096];
	int got = 0;

	if (n < 200)
		n = 200;
	ra.capacity = (uint32_t)n; /* room for every completion */
	T_OK(dchan_desc_from_text(c->gw[0], &gd));
	T_OK(dchan_attach(&gd, &gw));
	T_OK(dchan_create(dchan_pool(gw), &ra, &reply));
	for (int i = 0; i < n; i++) {
		dchan_gw_req_t r = {.version = DCHAN_GW_VERSION,
				    .op = DCHAN_GW_RECV,
				    .req_id = (uint64_t)i + 1,
				    .cap = 64,
				    .timeout_ns = 120 * S,
				    .target = c->obj[O_PARK]};
		int64_t len;

		dchan_desc_get(reply, &r.reply);
		len = dchan_gw_req_encode(&r, buf, sizeof buf);
		T_OK((int)len);
		T_OK(dchan_send(gw, buf, (size_t)len, DCHAN_FOREVER));
	}
	/* tell the test, then collect n completions as node 1 sends */
	printf("%d\n", n);
	fflush(stdout);
	while (got < n) {
		dchan_gw_cpl_t cpl;
		size_t len;

		T_OK(dchan_recv(reply, buf, sizeof buf, 60 * S, &len));
		T_OK(dchan_gw_cpl_decode(buf, len, &cpl));
		T_EQ(cpl.status, 0);
		T_EQ(cpl.payload_len, 8);
		got++;
	}
	T_EQ(dchan_count(reply), 0);
	T_OK(dchan_destroy(reply));
	T_OK(dchan_detach(gw));
	return 0;
}

/* The mean round trip of the last c_round_trips, in ns (shared). */
static uint64_t *rtt_ns;

/* Round trips through both agents on another channel. */
static int c_round_trips(struct cluster *c)
{
	dchan_t *ch;
	char buf[16];
	size_t len;
	uint64_t t0;

	T_OK(attach(c, O_PING, &ch));
	t0 = t_now();
	for (int i = 0; i < 200; i++) {
		T_OK(dchan_send(ch, &i, sizeof i, 10 * S));
		T_OK(dchan_recv(ch, buf, sizeof buf, 10 * S, &len));
		T_EQ(len, sizeof i);
		T_EQ(memcmp(buf, &i, sizeof i), 0);
	}
	if (rtt_ns)
		*rtt_ns = (t_now() - t0) / 200;
	T_OK(dchan_detach(ch));
	return 0;
}

static int c_feed_parked(struct cluster *c)
{
	dchan_t *ch;
	int n = (int)c->stats[1].parked;

	T_OK(attach(c, O_PARK, &ch));
	for (uint64_t i = 0; i < (uint64_t)n; i++)
		T_OK(dchan_send(ch, &i, sizeof i, 60 * S));
	T_OK(dchan_detach(ch));
	return 0;
}

/*
 * Ten thousand receives parked at node 1's agent at once, while another
 * client's round trips through the same agents go on: its mean round trip
 * with and without them is printed (not asserted: the machine is shared).
 */
START_TEST(t_parked_waits)
{
	struct cluster *c = t_cluster_up(30 * S);
	int out[2], n = 0;
	uint64_t alone;
	pid_t parker;
	FILE *f;

	rtt_ns = mmap(NULL, sizeof *rtt_ns, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert(rtt_ns != MAP_FAILED);
	ck_assert_int_eq(t_run(c, 0, c_round_trips), 0);
	alone = *rtt_ns;
	ck_assert_int_eq(pipe(out), 0);
	parker = fork();
	ck_assert_int_ge(parker, 0);
	if (parker == 0) {
		dup2(out[1], 1);
		close(out[0]);
		t_become(0, c);
		_exit(c_park_many(c));
	}
	close(out[1]);
	f = fdopen(out[0], "r");
	ck_assert_int_eq(fscanf(f, "%d", &n), 1);
	/* every wait parked at node 1's agent */
	for (int tries = 0; tries < 600; tries++) {
		t_cluster_stats(c);
		if (c->stats[1].parked == (uint64_t)n)
			break;
		usleep(50000);
	}
	ck_assert_uint_eq(c->stats[1].parked, (uint64_t)n);
	/* others' round trips go through meanwhile */
	ck_assert_int_eq(t_run(c, 0, c_round_trips), 0);
	fprintf(stderr,
		"round trip through the agents: %.1f us alone, %.1f us with "
		"%d parked waits (ratio %.2f)\n",
		alone / 1e3, *rtt_ns / 1e3, n, (double)*rtt_ns / (double)alone);
	t_agent_stats(c, 1);
	ck_assert_uint_eq(c->stats[1].parked, (uint64_t)n);
	ck_assert_int_eq(t_run(c, 1, c_feed_parked), 0);
	ck_assert_int_eq(t_wait(parker), 0);
	fclose(f);
	t_cluster_stats(c);
	ck_assert_uint_eq(c->stats[1].parked, 0);
	t_cluster_down(c);
	munmap(rtt_ns, sizeof *rtt_ns);
	rtt_ns = NULL;
}
END_TEST

/* ---- a requester killed while its operation waits ---------------------- */

static int c_recv_park_forever(struct cluster *c)
{
	char buf[16];
	size_t len;
	dchan_t *ch;

	T_OK(attach(c, O_PARK, &ch));
	T_OK(dchan_recv(ch, buf, sizeof buf, DCHAN_FOREVER, &len));
	return 1; /* killed before anything arrives */
}

/* node 1: a message sent now stays: no dead requester's wait takes it */
static int c_send_one_stays(struct cluster *c)
{
	dchan_t *ch;

	T_OK(attach(c, O_PARK, &ch));
	T_OK(dchan_send(ch, "kept", 4, 0));
	usleep(300000);
	T_EQ(dchan_count(ch), 1);
	T_OK(dchan_detach(ch));
	return 0;
}

START_TEST(t_dead_requester)
{
	struct cluster *c = t_cluster_up(10 * S);
	pid_t w = t_start(c, 0, c_recv_park_forever);
	int tries;

	for (tries = 0; tries < 600; tries++) {
		t_agent_stats(c, 1);
		if (c->stats[1].parked == 1)
			break;
		usleep(50000);
	}
	ck_assert_uint_eq(c->stats[1].parked, 1);
	kill(w, SIGKILL);
	ck_assert_int_eq(t_wait(w), 128 + SIGKILL);
	/* node 0's agent notices and node 1 drops the wait */
	for (tries = 0; tries < 600; tries++) {
		t_agent_stats(c, 1);
		if (c->stats[1].parked == 0)
			break;
		usleep(50000);
	}
	ck_assert_uint_eq(c->stats[1].parked, 0);
	ck_assert_int_eq(t_run(c, 1, c_send_one_stays), 0);
	t_cluster_down(c);
}
END_TEST

/* ---- bad peers ---------------------------------------------------------- */

static int t_dial(const char *addr)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	const char *colon = strrchr(addr, ':');
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	char host[64];

	ck_assert_int_ge(fd, 0);
	sa.sin_port = htons((uint16_t)atoi(colon + 1));
	snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
	ck_assert_int_eq(inet_pton(AF_INET, host, &sa.sin_addr), 1);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	return fd;
}

/* Read until the agent closes the connection (0), bounded. */
static int t_read_to_eof(int fd)
{
	struct timeval tv = {.tv_sec = 20};
	char buf[256];
	ssize_t n;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	while ((n = read(fd, buf, sizeof buf)) > 0)
		;
	return (int)n;
}

static void t_put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

START_TEST(t_bad_peers)
{
	struct cluster *c;
	unsigned char hello[24 + 40], frame[24 + 72];
	int fd;

	/* raw TCP bytes speak the tcp backend's wire; the others' are the
	 * libraries' own (t_wrong_secret covers them) */
	if (t_backend() && strcmp(t_backend(), "tcp")) {
		fprintf(stderr,
			"t_bad_peers: skipped on the %s backend: it "
			"writes tcp frames on a raw socket\n",
			t_backend());
		return;
	}
	c = t_cluster_up(10 * S);
	/* garbage instead of a frame */
	fd = t_dial(c->addr[1]);
	ck_assert_int_eq(write(fd, "GET / HTTP/1.0\r\n\r\n-----------", 30),
			 30);
	ck_assert_int_eq(t_read_to_eof(fd), 0);
	close(fd);

	/* a handshake with a wrong proof */
	fd = t_dial(c->addr[1]);
	ck_assert_int_eq(read(fd, hello, sizeof hello), (ssize_t)sizeof hello);
	memset(frame, 0, sizeof frame);
	memcpy(frame, hello, 24); /* magic, version */
	frame[5] = 2;		  /* AUTH */
	t_put32(frame + 8, 72);
	t_put32(frame + 24, 0);	      /* node 0 */
	t_put32(frame + 28, 2);	      /* of 2 */
	memset(frame + 32, 0x5a, 64); /* nonce and a made-up mac */
	ck_assert_int_eq(write(fd, frame, sizeof frame), (ssize_t)sizeof frame);
	ck_assert_int_eq(t_read_to_eof(fd), 0);
	close(fd);

	/* a header that claims too long a payload */
	fd = t_dial(c->addr[1]);
	memcpy(frame, hello, 24);
	frame[5] = 1;
	t_put32(frame + 8, 0x7fffffff);
	ck_assert_int_eq(write(fd, frame, 24), 24);
	ck_assert_int_eq(t_read_to_eof(fd), 0);
	close(fd);

	/* a request of 1 GiB before any handshake: dropped unread */
	fd = t_dial(c->addr[1]);
	memcpy(frame, hello, 24);
	frame[5] = 4;
	t_put32(frame + 8, 1u << 30);
	ck_assert_int_eq(write(fd, frame, 24), 24);
	ck_assert_int_eq(t_read_to_eof(fd), 0);
	close(fd);

	/* a requester that connects and says nothing keeps no one waiting */
	fd = t_dial(c->addr[1]);
	ck_assert_int_eq(t_run(c, 0, c_round_trips), 0);
	close(fd);

	t_cluster_stats(c);
	ck_assert_uint_eq(c->stats[0].errors, 0);
	t_cluster_down(c);
}
END_TEST

/* A process of node 0 with an agent of its own that holds another
 * secret: its request for node 1 reaches no one, and node 1 goes on
 * serving the real node 0. */
static int c_impostor(struct cluster *c)
{
	static const char wrong[] = "not the secret of this runtime, 40 byt";
	dchan_attr_t ga = {.field_mask = DCHAN_ATTR_CAPACITY, .capacity = 64};
	dtrans_attr_t a = {0};
	dtrans_agent_t *ag;
	dmem_pool_t *pool;
	dchan_desc_t d;
	dchan_t *gw, *ch;
	char name[64], text[DCHAN_DESC_TEXT_MAX];
	const char *peers[2] = {NULL, c->addr[1]};
	int rc;

	snprintf(name, sizeof name, "tdtrans-imp-%d", (int)getpid());
	T_OK(dmem_pool_create(name, 16u << 20, NULL, &pool));
	T_OK(dchan_create(pool, &ga, &gw));
	T_OK(dchan_desc_get(gw, &d));
	T_OK(dchan_desc_to_text(&d, text, sizeof text));
	setenv(DCHAN_GW_ENV, text, 1);
	a.node = 0;
	a.nnodes = 2;
	a.listen_addr = t_listen_addr(0);
	a.peers = peers;
	a.secret = wrong;
	a.secret_len = sizeof wrong - 1;
	a.gateway = gw;
	a.field_mask = DTRANS_ATTR_PEER_TIMEOUT | DTRANS_ATTR_LOG_FD;
	a.peer_timeout_ns = 2 * S;
	a.log_fd = -1;
	if (t_backend()) {
		a.field_mask |= DTRANS_ATTR_BACKEND;
		a.backend = t_backend();
	}
	T_OK(dtrans_agent_create(&a, &ag));
	T_OK(dtrans_agent_start(ag));
	T_OK(dchan_attach(&c->obj[O_CHAN], &ch));
	rc = dchan_send(ch, "x", 1, 5 * S);
	if (rc == 0) {
		fprintf(stderr, "a send through an impostor's agent arrived\n");
		return 1;
	}
	T_OK(dchan_detach(ch));
	T_OK(dtrans_agent_destroy(ag));
	T_OK(dchan_destroy(gw));
	T_OK(dmem_pool_destroy(pool));
	return 0;
}

START_TEST(t_wrong_secret)
{
	struct cluster *c = t_cluster_up(10 * S);

	ck_assert_int_eq(t_run(c, 0, c_impostor), 0);
	ck_assert_int_eq(t_run(c, 0, c_round_trips), 0);
	t_cluster_stats(c);
	ck_assert_uint_eq(c->stats[0].errors, 0);
	ck_assert_uint_eq(c->stats[1].requests_served,
			  c->stats[0].requests_sent);
	t_cluster_down(c);
}
END_TEST

/* ---- a lost peer -------------------------------------------------------- */

static int c_recv_lost(struct cluster *c)
{
	char buf[8];
	size_t len;
	dchan_t *ch;
	int rc;

	T_OK(attach(c, O_CHAN, &ch));
	rc = dchan_recv(ch, buf, sizeof buf, DCHAN_FOREVER, &len);
	T_EQ(rc, -DCHAN_E_NODELOST);
	if (!strstr(dchan_errmsg(), "node 2")) {
		fprintf(stderr, "error does not name the node: %s\n",
			dchan_errmsg());
		return 1;
	}
	/* a new operation fails too, within the peer timeout */
	rc = dchan_send(ch, "x", 1, DCHAN_FOREVER);
	T_EQ(rc, -DCHAN_E_NODELOST);
	T_OK(dchan_detach(ch));
	return 0;
}

START_TEST(t_peer_killed)
{
	struct cluster *c = t_cluster_up(2 * S);
	pid_t w = t_start(c, 0, c_recv_lost);
	uint64_t t0;

	usleep(300000); /* the recv is parked at node 1 */
	ck_assert_int_gt(c->agent[1], 0);
	kill(c->agent[1], SIGKILL);
	t0 = t_now();
	ck_assert_int_eq(t_wait(w), 0);
	ck_assert_msg(t_now() - t0 < 30 * S, "failing took too long");
	t_agent_stats(c, 0);
	ck_assert_uint_ge(c->stats[0].failed_ops, 2);
	t_cluster_down(c);
}
END_TEST

/* ---- where the notices go ---------------------------------------------- */

/* Bytes waiting in a pipe's read end (it is non-blocking). */
static size_t drain(int fd, char *buf, size_t len)
{
	ssize_t n = read(fd, buf, len - 1);

	buf[n > 0 ? n : 0] = '\0';
	return n > 0 ? (size_t)n : 0;
}

/* With nothing configured the tcp notice goes to notice_fd, the log
 * keeps to link events; without notice_fd it goes to the log. */
START_TEST(t_notice_fd)
{
	dchan_attr_t ga = {.field_mask = DCHAN_ATTR_CAPACITY, .capacity = 64};
	char conf[] = "/tmp/dtrans-conf-XXXXXX", name[64], buf[4096];
	dtrans_attr_t a = {0};
	dtrans_agent_t *ag;
	dmem_pool_t *pool;
	int log[2], note[2], fd = mkstemp(conf);
	dchan_t *gw;

	ck_assert_int_ge(fd, 0);
	close(fd); /* an empty configuration: no backend recorded */
	setenv("DRAGON_CONFIG", conf, 1);
	setenv("DRAGON_NODE_ID", "1", 1);
	ck_assert_int_eq(pipe2(log, O_NONBLOCK), 0);
	ck_assert_int_eq(pipe2(note, O_NONBLOCK), 0);
	snprintf(name, sizeof name, "tdtrans-note-%d", (int)getpid());
	ck_assert_int_eq(dmem_pool_create(name, 16u << 20, NULL, &pool), 0);
	ck_assert_int_eq(dchan_create(pool, &ga, &gw), 0);
	a.node = 0;
	a.nnodes = 1;
	a.listen_addr = "127.0.0.1:0";
	a.secret = t_secret;
	a.secret_len = sizeof t_secret - 1;
	a.gateway = gw;
	a.field_mask = DTRANS_ATTR_LOG_FD | DTRANS_ATTR_NOTICE_FD;
	a.log_fd = log[1];
	a.notice_fd = note[1];
	ck_assert_int_eq(dtrans_agent_create(&a, &ag), 0);
	ck_assert_int_eq(dtrans_agent_destroy(ag), 0);
	ck_assert_uint_gt(drain(note[0], buf, sizeof buf), 0);
	ck_assert_ptr_nonnull(strstr(buf, "TCP transport agent"));
	ck_assert_uint_eq(drain(log[0], buf, sizeof buf), 0);
	ck_assert_int_eq(dchan_destroy(gw), 0);
	ck_assert_int_eq(dmem_pool_destroy(pool), 0);
	unlink(conf);
	for (int i = 0; i < 2; i++) {
		close(log[i]);
		close(note[i]);
	}
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("dtransport_agent");
	TCase *tc = tcase_create("agent");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, t_channel_ops);
	tcase_add_test(tc, t_timeouts);
	tcase_add_test(tc, t_wait_forever);
	tcase_add_test(tc, t_sync_objects);
	tcase_add_test(tc, t_parked_waits);
	tcase_add_test(tc, t_dead_requester);
	tcase_add_test(tc, t_bad_peers);
	tcase_add_test(tc, t_wrong_secret);
	tcase_add_test(tc, t_peer_killed);
	if (!t_backend()) /* a backend named is no default: no notice */
		tcase_add_test(tc, t_notice_fd);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr;
	int failed;

	if (t_backend_absent(": its conformance suite is not run"))
		return 77;
	sr = srunner_create(suite());

	t_own_instance();
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
