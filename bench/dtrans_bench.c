/*
 * Remote channel round trip through two transport agents on loopback,
 * against a raw TCP ping-pong (TCP_NODELAY) between the same two processes'
 * endpoints, interleaved in the same run.
 *
 * Node 0 is this process (its agent runs on a thread of it); node 1 is a
 * child with its agent and an echo loop.  One round trip: node 0 sends into
 * a channel of node 1 (remote), node 1 receives it locally and sends it
 * back into a channel of node 0 (remote for it), node 0 receives it
 * locally.  Each direction crosses the network once, as in the ping-pong.
 */
#include "bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <dragon/dtransport.h>

#define MAXMSG (64u << 10)

static const char secret[] = "benchmark runtime secret, not a real one";

struct xchg {
	char addr[128];
	dchan_desc_t chan, sink;
};

#define NSENDERS 8 /* threads of node 0 sending one-way at once */

static void die(const char *what, int rc)
{
	fprintf(stderr, "dtrans_bench: %s: %s (%s / %s)\n", what,
		dtrans_strerror(rc), dtrans_errmsg(), dchan_errmsg());
	exit(1);
}

static void xfer(int fd, void *buf, size_t len, int wr)
{
	for (size_t off = 0; off < len;) {
		ssize_t n = wr ? write(fd, (char *)buf + off, len - off)
			       : read(fd, (char *)buf + off, len - off);

		if (n <= 0) {
			fprintf(stderr, "dtrans_bench: pipe/socket closed\n");
			exit(1);
		}
		off += (size_t)n;
	}
}

/* Make this node's pool, gateway, one channel and agent. */
static dtrans_agent_t *node_up(int idx, dchan_t **ch_out,
			       dmem_pool_t **pool_out)
{
	dchan_attr_t ga = {.field_mask = DCHAN_ATTR_CAPACITY, .capacity = 1024};
	dtrans_attr_t a = {0};
	dtrans_agent_t *ag;
	dmem_pool_t *pool;
	dchan_t *gw;
	char name[64];
	int rc;

	snprintf(name, sizeof name, "dtrans-bench-%d-%d", idx, (int)getpid());
	if ((rc = dmem_pool_create(name, 64u << 20, NULL, &pool)) ||
	    (rc = dchan_create(pool, &ga, &gw)) ||
	    (rc = dchan_create(pool, NULL, ch_out)))
		die("pool/channels", rc);
	dchan_gw_register(gw);
	a.node = (uint32_t)idx;
	a.nnodes = 2;
	a.listen_addr = "127.0.0.1:0";
	a.secret = secret;
	a.secret_len = sizeof secret - 1;
	a.gateway = gw;
	if ((rc = dtrans_agent_create(&a, &ag)))
		die("agent", rc);
	*pool_out = pool;
	return ag;
}

/* node 1: take every message of the sink until a 1-byte 'q' */
static void *drain(void *arg)
{
	char buf[64];
	size_t len;

	while (dchan_recv(arg, buf, sizeof buf, DCHAN_FOREVER, &len) == 0)
		if (len == 1 && buf[0] == 'q')
			break;
	return NULL;
}

static void node1_main(int to0, int from0)
{
	static char buf[MAXMSG];
	struct xchg me, peer;
	dtrans_agent_t *ag;
	dchan_attr_t sa = {.field_mask = DCHAN_ATTR_CAPACITY, .capacity = 4096};
	dchan_t *req, *back, *sink;
	dmem_pool_t *pool;
	pthread_t thr;
	size_t len;
	int rc;

	setenv("DRAGON_NODE_ID", "2", 1);
	ag = node_up(1, &req, &pool);
	if ((rc = dchan_create(pool, &sa, &sink)))
		die("sink", rc);
	pthread_create(&thr, NULL, drain, sink);
	dtrans_agent_address(ag, me.addr, sizeof me.addr);
	dchan_desc_get(req, &me.chan);
	dchan_desc_get(sink, &me.sink);
	xfer(to0, &me, sizeof me, 1);
	xfer(from0, &peer, sizeof peer, 0);
	if ((rc = dtrans_agent_peer_set(ag, 0, peer.addr)) ||
	    (rc = dtrans_agent_start(ag)) ||
	    (rc = dchan_attach(&peer.chan, &back)))
		die("node 1", rc);
	for (;;) {
		if ((rc = dchan_recv(req, buf, sizeof buf, DCHAN_FOREVER,
				     &len)))
			die("echo recv", rc);
		if (len == 1 && buf[0] == 'q')
			break;
		if ((rc = dchan_send(back, buf, len, DCHAN_FOREVER)))
			die("echo send", rc);
	}
	pthread_join(thr, NULL);
	dtrans_agent_destroy(ag);
	dchan_gw_unregister();
	dmem_pool_destroy(pool); /* the process ends: no need to detach */
	_exit(0);
}

struct rt {
	dchan_t *req, *back, *sink;
	int sinkfd;
	int sock;
	size_t size;
	char *buf;
};

static double ours(void *arg, uint64_t iters)
{
	struct rt *r = arg;
	uint64_t t0 = bench_now_ns();
	size_t len;
	int rc;

	for (uint64_t i = 0; i < iters; i++) {
		if ((rc = dchan_send(r->req, r->buf, r->size, DCHAN_FOREVER)) ||
		    (rc = dchan_recv(r->back, r->buf, MAXMSG, DCHAN_FOREVER,
				     &len)))
			die("round trip", rc);
	}
	return (double)(bench_now_ns() - t0) / (double)iters / 1000.0;
}

static double raw(void *arg, uint64_t iters)
{
	struct rt *r = arg;
	uint64_t t0 = bench_now_ns();

	for (uint64_t i = 0; i < iters; i++) {
		xfer(r->sock, r->buf, r->size, 1);
		xfer(r->sock, r->buf, r->size, 0);
	}
	return (double)(bench_now_ns() - t0) / (double)iters / 1000.0;
}

struct sender {
	struct rt *r;
	uint64_t n;
};

static void *send_some(void *arg)
{
	struct sender *s = arg;
	uint64_t v = 0;
	int rc;

	for (uint64_t i = 0; i < s->n; i++)
		if ((rc = dchan_send(s->r->sink, &v, 8, DCHAN_FOREVER)))
			die("one-way send", rc);
	return NULL;
}

/* Messages per second, NSENDERS threads sending 8 B one-way at once. */
static double ours_rate(void *arg, uint64_t iters)
{
	struct sender s[NSENDERS];
	pthread_t t[NSENDERS];
	uint64_t t0 = bench_now_ns();

	for (int i = 0; i < NSENDERS; i++) {
		s[i] = (struct sender){arg, iters / NSENDERS + 1};
		pthread_create(&t[i], NULL, send_some, &s[i]);
	}
	for (int i = 0; i < NSENDERS; i++)
		pthread_join(t[i], NULL);
	return (double)(NSENDERS * (iters / NSENDERS + 1)) * 1e9 /
	       (double)(bench_now_ns() - t0);
}

/* The baseline: one send() per 8 B message on a TCP_NODELAY socket. */
static double raw_rate(void *arg, uint64_t iters)
{
	struct rt *r = arg;
	uint64_t t0 = bench_now_ns(), v = 0;

	for (uint64_t i = 0; i < iters; i++)
		xfer(r->sinkfd, &v, 8, 1);
	return (double)iters * 1e9 / (double)(bench_now_ns() - t0);
}

/* The baseline's echo: a TCP_NODELAY socket that sends back what it got. */
static int raw_pair(pid_t *pid_out, int echo)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof sa;
	int one = 1, lfd = socket(AF_INET, SOCK_STREAM, 0), fd;
	static char buf[MAXMSG];
	pid_t pid;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) ||
	    listen(lfd, 1) || getsockname(lfd, (struct sockaddr *)&sa, &sl))
		die("raw socket", -errno);
	pid = fork();
	if (pid == 0) {
		ssize_t n;

		fd = accept(lfd, NULL, NULL);
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		while ((n = read(fd, buf, sizeof buf)) > 0)
			if (echo)
				xfer(fd, buf, (size_t)n, 1);
		_exit(0);
	}
	close(lfd);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa))
		die("raw connect", -errno);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	*pid_out = pid;
	return fd;
}

int main(void)
{
	static char buf[MAXMSG];
	struct xchg me, peer;
	struct rt r = {.buf = buf};
	dtrans_agent_t *ag;
	dmem_pool_t *pool;
	dtrans_peer_stats_t st;
	int p01[2], p10[2], rc;
	pid_t node1, echo, sinker;
	const size_t sizes[] = {8, MAXMSG};

	if (pipe(p01) || pipe(p10))
		return 1;
	node1 = fork();
	if (node1 == 0) {
		close(p10[0]);
		close(p01[1]);
		node1_main(p10[1], p01[0]);
	}
	r.sock = raw_pair(&echo, 1);
	r.sinkfd = raw_pair(&sinker, 0);
	setenv("DRAGON_NODE_ID", "1", 1);
	ag = node_up(0, &r.back, &pool);
	dtrans_agent_address(ag, me.addr, sizeof me.addr);
	dchan_desc_get(r.back, &me.chan);
	xfer(p10[0], &peer, sizeof peer, 0);
	xfer(p01[1], &me, sizeof me, 1);
	if ((rc = dtrans_agent_peer_set(ag, 1, peer.addr)) ||
	    (rc = dtrans_agent_start(ag)) ||
	    (rc = dchan_attach(&peer.chan, &r.req)) ||
	    (rc = dchan_attach(&peer.sink, &r.sink)))
		die("node 0", rc);
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		double o, b;

		r.size = sizes[i];
		bench_interleave(9, bench_iters(sizes[i] > 1024 ? 500 : 2000),
				 ours, &r, raw, &r, &o, &b);
		bench_row("dtransport_tcp", "remote round trip", sizes[i], "us",
			  o, "raw TCP ping-pong (TCP_NODELAY)", b);
	}
	{
		dtrans_peer_stats_t s0;
		double o, b;

		dtrans_agent_stats(ag, 1, &s0);
		bench_interleave(5, bench_iters(20000), ours_rate, &r, raw_rate,
				 &r, &o, &b);
		bench_row("dtransport_tcp", "one-way rate, 8 senders", 8,
			  "msg/s", o, "raw TCP, one send() per message", b);
		dtrans_agent_stats(ag, 1, &st);
		/* the batching: frames the link carried per send() call */
		bench_row("dtransport_tcp", "frames per send, 8 senders", 8,
			  "frames",
			  (double)(st.frames_sent - s0.frames_sent) /
				  (double)(st.sends - s0.sends),
			  "one frame per send", 1.0);
	}
	dchan_send(r.sink, "q", 1, DCHAN_FOREVER);
	close(r.sinkfd);
	waitpid(sinker, NULL, 0);
	dchan_send(r.req, "q", 1, DCHAN_FOREVER);
	waitpid(node1, NULL, 0);
	close(r.sock);
	waitpid(echo, NULL, 0);
	dtrans_agent_destroy(ag);
	dchan_gw_unregister();
	dmem_pool_destroy(pool);
	return 0;
}
