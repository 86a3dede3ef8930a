/*
 * libdtransport's tcp backend between two agents, against raw TCP
 * (TCP_NODELAY) between the same two endpoints, interleaved in the same
 * run: remote channel round trip (8 B, 1 KiB, 64 KiB, 1 MiB), one-way 8 B
 * message rate (synchronous sends from 8 threads, buffered sends from one),
 * the frames each send carried, and 1 MiB streaming bandwidth.
 *
 * The two endpoints are two network namespaces joined by a veth pair when
 * this runs as root (names from $DRAGON_BENCH_NETNS_PREFIX, default
 * "dtb", and the pid; removed at exit), else loopback;
 * DRAGON_BENCH_NETNS=0 asks for loopback.  Node 0 is this process (its
 * agent runs on a thread of it) and the raw baselines' client; node 1 and
 * the raw baselines' servers run in children on the other endpoint.
 *
 * One round trip: node 0 sends into a channel of node 1 (remote), node 1
 * receives it locally and sends it back into a channel of node 0 (remote
 * for it), node 0 receives it locally.  Each direction crosses the network
 * once, as in the ping-pong.
 *
 * Every backend in $DRAGON_BENCH_BACKENDS (default "tcp ofi ucx") runs
 * the same rows between the same two endpoints, in a process of its own
 * (a library loaded for one backend stays out of the next), against the
 * same raw TCP baselines; the bench name says the backend
 * ("dtransport_ucx").  A backend whose library is absent is skipped,
 * saying so.  The ofi and ucx rows' own raw baselines (fi_pingpong,
 * ucx_perftest) are left to those tools.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <dragon/dtransport.h>

#define BWMSG  (1u << 20) /* the streaming bandwidth's message */
#define MAXMSG BWMSG	  /* the largest round trip */
#define NBW    2	  /* threads of node 0 streaming at once */

/* The two endpoints: node 0's and node 1's address, and their network
 * namespaces (empty: this one). */
static struct {
	char ns[2][32];
	char ip[2][32];
} ep = {.ip = {"127.0.0.1", "127.0.0.1"}};

static const char secret[] = "benchmark runtime secret, not a real one";

struct xchg {
	char addr[128];
	dchan_desc_t chan, sink;
};

static void ns_enter(int idx);

/* The backend of this process's rows, and their bench name. */
static const char *backend = "tcp";
static char bname[32] = "dtransport_tcp";

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
	char name[64], laddr[64];
	int rc;

	snprintf(name, sizeof name, "dtrans-bench-%d-%d", idx, (int)getpid());
	if ((rc = dmem_pool_create(name, 256u << 20, NULL, &pool)) ||
	    (rc = dchan_create(pool, &ga, &gw)) ||
	    (rc = dchan_create(pool, NULL, ch_out)))
		die("pool/channels", rc);
	dchan_gw_register(gw);
	a.node = (uint32_t)idx;
	a.nnodes = 2;
	snprintf(laddr, sizeof laddr, "%s:0", ep.ip[idx]);
	a.listen_addr = laddr;
	a.secret = secret;
	a.secret_len = sizeof secret - 1;
	a.gateway = gw;
	a.field_mask = DTRANS_ATTR_BACKEND;
	a.backend = backend;
	if ((rc = dtrans_agent_create(&a, &ag))) {
		if (rc == -DTRANS_E_BACKEND) { /* no rows, not a failure */
			fprintf(stderr, "%s: skipped: %s\n", bname,
				dtrans_errmsg());
			dmem_pool_destroy(pool);
			exit(0);
		}
		die("agent", rc);
	}
	*pool_out = pool;
	return ag;
}

/* node 1: take every message of the sink until a 1-byte 'q' */
static void *drain(void *arg)
{
	static char buf[BWMSG];
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

	ns_enter(1);
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
	dchan_t *bsink; /* the sink again, sends buffered */
	int sinkfd;
	int sock;
	size_t size;
	char *buf, *bwbuf;
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

/* Messages per second, one thread sending 8 B one-way with buffered
 * sends (dchan_send_mode_set), flushed at the end. */
static double ours_rate_buffered(void *arg, uint64_t iters)
{
	struct rt *r = arg;
	uint64_t t0 = bench_now_ns(), v = 0;
	int rc;

	for (uint64_t i = 0; i < iters; i++)
		if ((rc = dchan_send(r->bsink, &v, 8, DCHAN_FOREVER)))
			die("buffered send", rc);
	if ((rc = dchan_gw_flush(DCHAN_FOREVER)))
		die("flush", rc);
	return (double)iters * 1e9 / (double)(bench_now_ns() - t0);
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

/* Join the network namespace of endpoint idx (none: stay). */
static void ns_enter(int idx)
{
	char path[64];
	int fd;

	if (!ep.ns[idx][0])
		return;
	snprintf(path, sizeof path, "/run/netns/%s", ep.ns[idx]);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	/* and a /sys of its own, as ip netns exec does: UCX finds the
	 * network devices in /sys/class/net */
	if (fd < 0 || setns(fd, CLONE_NEWNET) < 0 || unshare(CLONE_NEWNS) < 0 ||
	    mount("", "/", NULL, MS_SLAVE | MS_REC, NULL) < 0 ||
	    umount2("/sys", MNT_DETACH) < 0 ||
	    mount("sysfs", "/sys", "sysfs", 0, NULL) < 0)
		die("entering a network namespace", -errno);
	close(fd);
}

static pid_t ns_owner;

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	return system(cmd);
}

static void ns_down(void)
{
	if (getpid() != ns_owner)
		return; /* a child that failed: the parent cleans up */
	for (int i = 0; i < 2; i++)
		if (ep.ns[i][0])
			sh("ip netns del %s 2>/dev/null", ep.ns[i]);
}

/*
 * Two network namespaces joined by a veth pair, as two nodes would be,
 * when we may make them (root); else loopback.  The names carry our pid,
 * so that runs side by side do not meet.
 */
static void ns_up(void)
{
	const char *pfx = getenv("DRAGON_BENCH_NETNS_PREFIX");
	const char *want = getenv("DRAGON_BENCH_NETNS");
	char *n0 = ep.ns[0], *n1 = ep.ns[1];

	if (geteuid() != 0 || (want && strcmp(want, "0") == 0))
		goto loopback;
	ns_owner = getpid();
	snprintf(n0, sizeof ep.ns[0], "%s%d-0", pfx ? pfx : "dtb", ns_owner);
	snprintf(n1, sizeof ep.ns[1], "%s%d-1", pfx ? pfx : "dtb", ns_owner);
	if (sh("ip netns add %s", n0) != 0) {
		n0[0] = n1[0] = 0;
		goto loopback;
	}
	atexit(ns_down);
	if (sh("ip netns add %s", n1) != 0 ||
	    sh("ip link add %sv type veth peer name %sv", n0, n1) != 0 ||
	    sh("ip link set %sv netns %s && ip link set %sv netns %s", n0, n0,
	       n1, n1) != 0 ||
	    sh("ip -n %s addr add 10.213.0.1/24 dev %sv && "
	       "ip -n %s link set %sv up && ip -n %s link set lo up",
	       n0, n0, n0, n0, n0) != 0 ||
	    sh("ip -n %s addr add 10.213.0.2/24 dev %sv && "
	       "ip -n %s link set %sv up && ip -n %s link set lo up",
	       n1, n1, n1, n1, n1) != 0) {
		ns_down();
		n0[0] = n1[0] = 0;
		goto loopback;
	}
	snprintf(ep.ip[0], sizeof ep.ip[0], "10.213.0.1");
	snprintf(ep.ip[1], sizeof ep.ip[1], "10.213.0.2");
	fprintf(stderr,
		"dtrans_bench: endpoints: network namespaces %s and %s, "
		"joined by a veth pair\n",
		n0, n1);
	return;
loopback:
	fprintf(stderr, "dtrans_bench: endpoints: loopback (two network "
			"namespaces need root)\n");
}

/* A raw TCP_NODELAY server on node 1's endpoint that echoes (echo) or
 * only reads what it gets; returns node 0's connected socket. */
static int raw_pair(pid_t *pid_out, int echo)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof sa;
	int one = 1, p[2], fd;
	static char buf[BWMSG];
	pid_t pid;

	if (pipe(p))
		die("pipe", -errno);
	pid = fork();
	if (pid == 0) {
		int lfd;
		ssize_t n;

		ns_enter(1);
		lfd = socket(AF_INET, SOCK_STREAM, 0);
		inet_pton(AF_INET, ep.ip[1], &sa.sin_addr);
		if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) ||
		    listen(lfd, 1) ||
		    getsockname(lfd, (struct sockaddr *)&sa, &sl))
			die("raw socket", -errno);
		xfer(p[1], &sa, sizeof sa, 1);
		fd = accept(lfd, NULL, NULL);
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		while ((n = read(fd, buf, sizeof buf)) > 0)
			if (echo)
				xfer(fd, buf, (size_t)n, 1);
		_exit(0);
	}
	xfer(p[0], &sa, sizeof sa, 0);
	close(p[0]);
	close(p[1]);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa))
		die("raw connect", -errno);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	*pid_out = pid;
	return fd;
}

/* Streaming bandwidth: NBW threads of node 0 send 1 MiB messages into
 * node 1's sink, which a thread there drains. */
static void *send_bw(void *arg)
{
	struct sender *s = arg;
	int rc;

	for (uint64_t i = 0; i < s->n; i++)
		if ((rc = dchan_send(s->r->sink, s->r->buf, BWMSG,
				     DCHAN_FOREVER)))
			die("bandwidth send", rc);
	return NULL;
}

/* MB/s (10^6 bytes per second) */
static double ours_bw(void *arg, uint64_t iters)
{
	struct sender s[NBW];
	pthread_t t[NBW];
	uint64_t t0 = bench_now_ns();

	for (int i = 0; i < NBW; i++) {
		s[i] = (struct sender){arg, iters / NBW + 1};
		pthread_create(&t[i], NULL, send_bw, &s[i]);
	}
	for (int i = 0; i < NBW; i++)
		pthread_join(t[i], NULL);
	return (double)(NBW * (iters / NBW + 1)) * BWMSG * 1e3 /
	       (double)(bench_now_ns() - t0);
}

/* The baseline: 1 MiB writes on a TCP_NODELAY socket to a reader. */
static double raw_bw(void *arg, uint64_t iters)
{
	struct rt *r = arg;
	uint64_t t0 = bench_now_ns();

	for (uint64_t i = 0; i < iters; i++)
		xfer(r->sinkfd, r->bwbuf, BWMSG, 1);
	return (double)iters * BWMSG * 1e3 / (double)(bench_now_ns() - t0);
}

/* Every row of one backend (this process: node 0 and the clients). */
static int run_backend(void)
{
	static char buf[MAXMSG];
	struct xchg me, peer;
	struct rt r = {.buf = buf};
	dtrans_agent_t *ag;
	dmem_pool_t *pool;
	dtrans_peer_stats_t st;
	int p01[2], p10[2], rc;
	pid_t node1, echo, sinker;
	const size_t sizes[] = {8, 1024, 64u << 10, MAXMSG};

	if (pipe(p01) || pipe(p10))
		return 1;
	r.bwbuf = calloc(1, BWMSG);
	if (!r.bwbuf)
		die("memory", -ENOMEM);
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
	    (rc = dchan_attach(&peer.sink, &r.sink)) ||
	    (rc = dchan_attach(&peer.sink, &r.bsink)) ||
	    (rc = dchan_send_mode_set(r.bsink, DCHAN_SEND_BUFFERED)))
		die("node 0", rc);
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		double o, b;

		r.size = sizes[i];
		bench_interleave(9,
				 bench_iters(sizes[i] > 65536  ? 100
					     : sizes[i] > 1024 ? 500
							       : 2000),
				 ours, &r, raw, &r, &o, &b);
		bench_row(bname, "remote round trip", sizes[i], "us", o,
			  "raw TCP ping-pong (TCP_NODELAY)", b);
	}
	{
		dtrans_peer_stats_t s0;
		double o, b;

		dtrans_agent_stats(ag, 1, &s0);
		bench_interleave(5, bench_iters(20000), ours_rate, &r, raw_rate,
				 &r, &o, &b);
		bench_row(bname, "one-way rate, 8 senders", 8, "msg/s", o,
			  "raw TCP, one send() per message", b);
		dtrans_agent_stats(ag, 1, &st);
		/* the batching: frames the link carried per send() call */
		bench_row(bname, "frames per send, 8 senders", 8, "frames",
			  (double)(st.frames_sent - s0.frames_sent) /
				  (double)(st.sends - s0.sends),
			  "one frame per send", 1.0);
		bench_interleave(5, bench_iters(50000), ours_rate_buffered, &r,
				 raw_rate, &r, &o, &b);
		bench_row("dtransport_tcp", "one-way rate, buffered, 1 sender",
			  8, "msg/s", o, "raw TCP, one send() per message", b);
	}
	{
		double o, b;

		r.buf = r.bwbuf;
		bench_interleave(5, bench_iters(200), ours_bw, &r, raw_bw, &r,
				 &o, &b);
		bench_row(bname, "streaming bandwidth, 2 senders", BWMSG,
			  "MB/s", o,
			  "raw TCP stream, 1 MiB writes (TCP_NODELAY)", b);
		r.buf = buf;
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
	free(r.bwbuf);
	return 0;
}

int main(void)
{
	const char *env = getenv("DRAGON_BENCH_BACKENDS");
	char list[128], *save = NULL;
	int failed = 0;

	snprintf(list, sizeof list, "%s", env && *env ? env : "tcp ofi ucx");
	ns_up();
	ns_enter(0);
	for (char *b = strtok_r(list, " ,", &save); b;
	     b = strtok_r(NULL, " ,", &save)) {
		pid_t pid;
		int st;

		fflush(stdout);
		pid = fork();
		if (pid < 0)
			die("fork", -errno);
		if (pid == 0) {
			backend = b;
			snprintf(bname, sizeof bname, "dtransport_%s", b);
			exit(run_backend());
		}
		if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
		    WEXITSTATUS(st) != 0) {
			fprintf(stderr, "dtrans_bench: the %s rows failed\n",
				b);
			failed = 1;
		}
	}
	return failed;
}
