/*
 * libdtransport (white box): a peer that speaks the backend's own
 * transport but sends malformed frames -- garbage, a header claiming an
 * oversized payload, a frame cut short, a wrong proof, and after a good
 * handshake an unknown frame type and a request that does not decode --
 * is disconnected with a logged error, and the agent goes on serving
 * the real node 0.
 *
 * The bad peer dials with the backend's table (struct
 * dtrans__backend_ops), so that on ofi and ucx the bytes cross libfabric
 * and UCX exactly as an agent's do; raw TCP bytes would speak neither.
 * The suite is built once per backend (DTRANS_TEST_BACKEND) and skipped,
 * saying so, where the backend's library is absent.
 */
#include "dtrans_test.h"

#include "dtrans_private.h"

#include <poll.h>
#include <sys/stat.h>

#define HELLO_LEN (DTRANS__FRAME_HDR + 40)

/* Poll the link's fd for a slice: backends wake only through it. */
static void link_wait(const struct dtrans__backend_ops *ops, void *l)
{
	struct pollfd p = {.fd = ops->link_fd(l), .events = POLLIN};

	poll(&p, 1, 20);
}

/* Dial node 1's agent and take its HELLO (its nonce into nonce). */
static void *bad_dial(const struct dtrans__backend_ops *ops, struct cluster *c,
		      unsigned char *nonce)
{
	unsigned char buf[HELLO_LEN];
	uint64_t t0 = t_now();
	size_t got = 0;
	void *l;
	int rc;

	if (ops->dial(c->addr[1], &l) < 0)
		return NULL;
	while ((rc = ops->link_connected(l)) == -EINPROGRESS &&
	       t_now() - t0 < 20 * S)
		link_wait(ops, l);
	while (rc == 0 && got < sizeof buf && t_now() - t0 < 20 * S) {
		ssize_t n = ops->recv(l, buf + got, sizeof buf - got);

		if (n > 0)
			got += (size_t)n;
		else if (n == -EAGAIN)
			link_wait(ops, l);
		else
			rc = n == 0 ? -EPIPE : (int)n;
	}
	if (rc < 0 || got != sizeof buf) {
		fprintf(stderr, "no HELLO from node 1: %s (%s)\n",
			dtrans_strerror(rc), dtrans_errmsg());
		ops->link_close(l);
		return NULL;
	}
	memcpy(nonce, buf + DTRANS__FRAME_HDR + 8, DTRANS__NONCE);
	return l;
}

/* Send all of buf, bounded. */
static int bad_send(const struct dtrans__backend_ops *ops, void *l,
		    const void *buf, size_t len)
{
	uint64_t t0 = t_now();
	size_t off = 0;

	while (off < len && t_now() - t0 < 20 * S) {
		struct iovec v = {.iov_base = (char *)buf + off,
				  .iov_len = len - off};
		ssize_t n = ops->send(l, &v, 1);

		if (n > 0)
			off += (size_t)n;
		else if (n == -EAGAIN)
			link_wait(ops, l);
		else
			return (int)n;
	}
	return off == len ? 0 : -ETIMEDOUT;
}

/* 1 once the agent has closed the link (end of stream or an error),
 * within 20 s; what arrives before (AUTH_OK) is read and dropped. */
static int dropped(const struct dtrans__backend_ops *ops, void *l)
{
	unsigned char buf[256];
	uint64_t t0 = t_now();

	while (t_now() - t0 < 20 * S) {
		ssize_t n = ops->recv(l, buf, sizeof buf);

		if (n == 0 || (n < 0 && n != -EAGAIN))
			return 1;
		if (n == -EAGAIN)
			link_wait(ops, l);
	}
	return 0;
}

static size_t frame(unsigned char *buf, unsigned type, uint32_t len,
		    uint64_t xid)
{
	struct dtrans__fhdr h = {.magic = DTRANS__FRAME_MAGIC,
				 .version = DTRANS__FRAME_VERSION,
				 .type = (uint8_t)type,
				 .len = len,
				 .xid = xid};

	dtrans__fhdr_encode(&h, buf);
	return DTRANS__FRAME_HDR;
}

/* AUTH as node 0 with the runtime's secret (good) or a made-up mac. */
static size_t auth(unsigned char *buf, const unsigned char *hello_nonce,
		   bool good)
{
	struct dtrans__auth a = {.node = 0, .nnodes = 2};
	size_t n;

	memset(a.nonce, 0x33, sizeof a.nonce);
	if (good)
		dtrans__mac(t_secret, sizeof t_secret - 1, 'c', hello_nonce,
			    a.nonce, 0, 1, 2, a.mac);
	else
		memset(a.mac, 0x5a, sizeof a.mac);
	n = dtrans__auth_encode(&a, buf + DTRANS__FRAME_HDR);
	return frame(buf, DTRANS__F_AUTH, (uint32_t)n, 0) + n;
}

enum { B_GARBAGE, B_HUGE, B_CUT, B_PROOF, B_TYPE, B_REQ, B_CUT_REQ, B_N };
static const char *const bad_name[B_N] = {
	"garbage instead of a frame",
	"a header claiming a payload past the frame maximum",
	"an AUTH frame cut short, then the link closed",
	"a handshake with a wrong proof",
	"after a good handshake: a frame of an unknown type",
	"after a good handshake: a request that does not decode",
	"after a good handshake: a request cut short, then closed"};

/* One bad peer of kind k; 0 when the agent behaved. */
static int bad_peer(const struct dtrans__backend_ops *ops, struct cluster *c,
		    int k)
{
	unsigned char nonce[DTRANS__NONCE], buf[512];
	size_t n = 0;
	void *l = bad_dial(ops, c, nonce);
	int rc, gone = 1;

	if (!l)
		return 1;
	switch (k) {
	case B_GARBAGE:
		memcpy(buf, "GET / HTTP/1.0\r\n\r\n-----------", 30);
		n = 30;
		break;
	case B_HUGE:
		n = frame(buf, DTRANS__F_AUTH, 0x7fffffff, 0);
		break;
	case B_CUT:
		n = auth(buf, nonce, true) - 20;
		break;
	case B_PROOF:
		n = auth(buf, nonce, false);
		break;
	case B_TYPE:
	case B_REQ:
	case B_CUT_REQ:
		n = auth(buf, nonce, true);
		if (k == B_TYPE) {
			n += frame(buf + n, 0x7e, 0, 0);
		} else {
			n += frame(buf + n, DTRANS__F_REQ, 64, 7);
			memset(buf + n, 0xa5, 64);
			n += k == B_REQ ? 64 : 10;
		}
		break;
	}
	rc = bad_send(ops, l, buf, n);
	/* a cut frame ends with our close; a request that does not decode
	 * is dropped alone (logged), from an authenticated peer */
	if (rc == 0 && k != B_CUT && k != B_CUT_REQ && k != B_REQ)
		gone = dropped(ops, l);
	else if (rc == 0)
		usleep(100000); /* the agent reads what was sent first */
	ops->link_close(l);
	if (rc < 0 || !gone) {
		fprintf(stderr, "bad peer (%s): %s\n", bad_name[k],
			rc < 0 ? "could not send" : "the agent kept the link");
		return 1;
	}
	return 0;
}

/* node 0, the real one: round trips through both agents */
static int c_round_trips(struct cluster *c)
{
	dchan_t *ch;
	char buf[16];
	size_t len;

	T_OK(dchan_attach(&c->obj[O_PING], &ch));
	for (int i = 0; i < 20; i++) {
		T_OK(dchan_send(ch, &i, sizeof i, 10 * S));
		T_OK(dchan_recv(ch, buf, sizeof buf, 10 * S, &len));
		T_EQ(len, sizeof i);
	}
	T_OK(dchan_detach(ch));
	return 0;
}

/* A process of node 0: every kind of bad peer, each followed by the
 * real node 0's round trips.  The backend's library loads here, after
 * the agents started (they must not inherit it). */
static int c_bad_peers(struct cluster *c)
{
	const struct dtrans__backend_ops *ops =
		dtrans__backend_find(t_backend(), -1);

	if (!ops) {
		fprintf(stderr, "backend: %s\n", dtrans_errmsg());
		return 1;
	}
	for (int k = 0; k < B_N; k++) {
		if (bad_peer(ops, c, k))
			return 1;
		if (c_round_trips(c))
			return 1;
	}
	return 0;
}

/* The agents' log lines of dropped links in the file at path, each
 * copied to stderr so that a failure shows what the agents said. */
static int count_drops(const char *path)
{
	char line[512];
	FILE *f = fopen(path, "r");
	int n = 0;

	if (!f)
		return -1;
	fputs("--- the agents' log ---\n", stderr);
	while (fgets(line, sizeof line, f)) {
		fputs(line, stderr);
		if (strstr(line, "dragon-transport[node 1]") &&
		    strstr(line, "dropped"))
			n++;
	}
	fputs("--- end of the agents' log ---\n", stderr);
	fclose(f);
	return n;
}

START_TEST(t_malformed_frames)
{
	char path[] = "/tmp/dtrans-badframes-XXXXXX";
	int fd = mkstemp(path), saved = dup(2), drops, good, bad;
	struct cluster *c;

	/* the agents log to the stderr they inherit: a file here, shown
	 * (and removed) before any assertion can end the test */
	ck_assert_int_ge(fd, 0);
	ck_assert_int_ge(saved, 0);
	dup2(fd, 2);
	c = t_cluster_up(10 * S);
	good = t_run(c, 0, c_round_trips);
	bad = good == 0 ? t_run(c, 0, c_bad_peers) : -1;
	t_cluster_stats(c);
	t_cluster_down(c);
	dup2(saved, 2);
	close(saved);
	close(fd);
	drops = count_drops(path);
	unlink(path);
	ck_assert_int_eq(good, 0);
	ck_assert_int_eq(bad, 0);
	/* each bad peer is one logged drop by node 1 */
	ck_assert_int_ge(drops, B_N);
	/* the real node 0 saw no error, and all it sent was served */
	ck_assert_uint_eq(c->stats[0].errors, 0);
	ck_assert_uint_eq(c->stats[1].requests_served,
			  c->stats[0].requests_sent);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("dtransport_badframes");
	TCase *tc = tcase_create("badframes");

	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, t_malformed_frames);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	if (t_backend_absent(""))
		return 77;
	return t_run_suite(suite());
}
