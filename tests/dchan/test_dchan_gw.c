/*
 * libdchan gateway: a channel on "node A" used from "node B".  The nodes
 * are faked with DRAGON_NODE_ID.  A small servicer in two processes stands
 * in for the transport: its B half reads requests from B's gateway channel
 * and forwards them over a pipe; its A half executes them on A's channel
 * and sends the completions back, which the B half delivers.
 */
#include "dchan_test.h"

#define NODE_A "0xa1"
#define NODE_B "0xb2"
#define MS     1000000ull

static int write_frame(int fd, const void *buf, uint64_t len)
{
	if (write(fd, &len, sizeof len) != (ssize_t)sizeof len)
		return -1;
	for (uint64_t off = 0; off < len;) {
		ssize_t n = write(fd, (const char *)buf + off, len - off);

		if (n <= 0)
			return -1;
		off += (uint64_t)n;
	}
	return 0;
}

static void *read_frame(int fd, uint64_t *len)
{
	char *buf;

	if (read(fd, len, sizeof *len) != (ssize_t)sizeof *len)
		return NULL;
	buf = malloc(*len ? *len : 1);
	for (uint64_t off = 0; buf && off < *len;) {
		ssize_t n = read(fd, buf + off, *len - off);

		if (n <= 0) {
			free(buf);
			return NULL;
		}
		off += (uint64_t)n;
	}
	return buf;
}

/* Node A: own the target channel, execute what arrives on `in`. */
static int servicer_a(int in, int out, int desc_fd)
{
	char text[DCHAN_DESC_TEXT_MAX], name[64];
	dmem_pool_t *pool;
	dchan_t *ch;
	dchan_lock_t *lock;
	dchan_sem_t *sem;
	dchan_desc_t d;
	dchan_attr_t a = {.field_mask = DCHAN_ATTR_CAPACITY, .capacity = 4};
	uint64_t len;
	void *req;

	setenv("DRAGON_NODE_ID", NODE_A, 1);
	snprintf(name, sizeof name, "tdchan-gw-a-%d", (int)getpid());
	if (dmem_pool_create(name, 64u << 20, NULL, &pool) ||
	    dchan_create(pool, &a, &ch) || dchan_desc_get(ch, &d) ||
	    dchan_desc_to_text(&d, text, sizeof text) < 0) {
		fprintf(stderr, "servicer A: %s\n", dchan_errmsg());
		return 1;
	}
	if (write_frame(desc_fd, text, strlen(text) + 1))
		return 2;
	/* and a lock and a semaphore on node A, for remote sync objects */
	if (dchan_lock_create(pool, 0, &lock) ||
	    dchan_lock_desc_get(lock, &d) ||
	    dchan_desc_to_text(&d, text, sizeof text) < 0 ||
	    write_frame(desc_fd, text, strlen(text) + 1) ||
	    dchan_sem_create(pool, 1, 2, &sem) || dchan_sem_desc_get(sem, &d) ||
	    dchan_desc_to_text(&d, text, sizeof text) < 0 ||
	    write_frame(desc_fd, text, strlen(text) + 1))
		return 5;
	while ((req = read_frame(in, &len))) {
		dchan_gw_req_t r;
		void *cpl;
		size_t clen;

		if (dchan_gw_req_decode(req, len, &r) ||
		    dchan_gw_execute(&r, &cpl, &clen) ||
		    write_frame(out, cpl, clen)) {
			fprintf(stderr, "servicer A: %s\n", dchan_errmsg());
			return 3;
		}
		free(cpl);
		free(req);
	}
	dchan_lock_destroy(lock);
	dchan_sem_destroy(sem);
	dchan_destroy(ch);
	return dmem_pool_destroy(pool) ? 4 : 0;
}

/* Node B: requests from the gateway go to A; completions come back. */
static int servicer_b(dchan_t *gw, int to_a, int from_a)
{
	for (;;) {
		dchan_gw_req_t r;
		dchan_msg_t m;
		uint64_t clen;
		void *cpl;

		if (dchan_recv_zc(gw, DCHAN_FOREVER, &m)) {
			fprintf(stderr, "servicer B: %s\n", dchan_errmsg());
			return 10;
		}
		if (m.len == 4 && memcmp(m.data, "quit", 4) == 0)
			return dchan_msg_release(&m) ? 11 : 0;
		if (dchan_gw_req_decode(m.data, m.len, &r) ||
		    write_frame(to_a, m.data, m.len)) {
			fprintf(stderr, "servicer B: %s\n", dchan_errmsg());
			return 12;
		}
		cpl = read_frame(from_a, &clen);
		if (!cpl || dchan_gw_complete(&r, cpl, clen)) {
			fprintf(stderr, "servicer B: %s\n", dchan_errmsg());
			return 13;
		}
		free(cpl);
		dchan_msg_release(&m);
	}
}

struct rig {
	dmem_pool_t *pool;
	dchan_t *gw;
	dchan_t *remote;
	pid_t a, b;
	char gwtext[DCHAN_DESC_TEXT_MAX];
	dchan_desc_t sync[2]; /* a lock and a semaphore on node A */
};

static void rig_up(struct rig *g)
{
	int ab[2], ba[2], dp[2];
	char *text;
	uint64_t len;
	dchan_desc_t d;

	setenv("DRAGON_NODE_ID", NODE_B, 1);
	g->pool = t_pool("gw-b", 64u << 20);
	g->gw = t_chan(g->pool, 16, 0);
	T_OK(dchan_desc_get(g->gw, &d));
	T_OK(dchan_desc_to_text(&d, g->gwtext, sizeof g->gwtext));
	ck_assert(pipe(ab) == 0 && pipe(ba) == 0 && pipe(dp) == 0);
	g->a = fork();
	if (g->a == 0) {
		close(ba[1]);
		close(ab[0]);
		close(dp[0]);
		_exit(servicer_a(ba[0], ab[1], dp[1]));
	}
	g->b = fork();
	if (g->b == 0) {
		close(dp[0]);
		close(dp[1]);
		close(ab[1]);
		close(ba[0]);
		_exit(servicer_b(g->gw, ba[1], ab[0]));
	}
	close(ab[0]);
	close(ab[1]);
	close(ba[0]);
	close(ba[1]);
	close(dp[1]);
	text = read_frame(dp[0], &len);
	ck_assert_ptr_nonnull(text);
	T_OK(dchan_desc_from_text(text, &d));
	free(text);
	for (int i = 0; i < 2; i++) {
		text = read_frame(dp[0], &len);
		ck_assert_ptr_nonnull(text);
		T_OK(dchan_desc_from_text(text, &g->sync[i]));
		free(text);
	}
	close(dp[0]);
	ck_assert_uint_ne(d.node_id, dmem_node_id());
	T_OK(dchan_attach(&d, &g->remote));
	t_keep(g->remote);
	ck_assert_ptr_null(dchan_pool(g->remote)); /* nothing mapped */
}

static void rig_down(struct rig *g)
{
	T_OK(dchan_send(g->gw, "quit", 4, DCHAN_FOREVER));
	ck_assert_int_eq(t_wait(g->b), 0);
	ck_assert_int_eq(t_wait(g->a), 0);
	T_OK(dchan_detach(g->remote));
	dchan_gateway_unregister();
	T_OK(dchan_destroy(g->gw));
	t_pool_done(g->pool);
}

START_TEST(remote_ops_through_servicer)
{
	struct rig g;
	char buf[200000], big[150000];
	size_t len;
	unsigned rev;
	dchan_stats_t st;

	rig_up(&g);
	ck_assert_int_eq(dchan_send(g.remote, "x", 1, 0), -DCHAN_E_NOGATEWAY);
	T_OK(dchan_gateway_register(g.gw));
	ck_assert_int_eq(dchan_poll(g.remote, DCHAN_POLLIN, 0, &rev), -EAGAIN);
	T_OK(dchan_send(g.remote, "hello", 5, DCHAN_FOREVER));
	t_fill(big, sizeof big, 9);
	T_OK(dchan_send(g.remote, big, sizeof big, DCHAN_FOREVER));
	T_OK(dchan_poll(g.remote, DCHAN_POLLIN, DCHAN_FOREVER, &rev));
	ck_assert_uint_eq(rev, DCHAN_POLLIN);
	T_OK(dchan_stats(g.remote, &st));
	ck_assert_uint_eq(st.count, 2);
	ck_assert_int_eq(dchan_count(g.remote), 2);
	T_OK(dchan_peek(g.remote, buf, 3, 0, &len));
	ck_assert_uint_eq(len, 5);
	ck_assert(memcmp(buf, "hel", 3) == 0);
	T_OK(dchan_recv(g.remote, buf, sizeof buf, 0, &len));
	ck_assert_uint_eq(len, 5);
	ck_assert(memcmp(buf, "hello", 5) == 0);
	ck_assert_int_eq(dchan_recv(g.remote, buf, 10, 0, &len), -EMSGSIZE);
	T_OK(dchan_recv(g.remote, buf, sizeof buf, 0, &len));
	ck_assert_uint_eq(len, sizeof big);
	ck_assert(t_check(buf, len, 9));
	ck_assert_msg(dchan_recv(g.remote, buf, 10, 0, &len) == -EAGAIN, "%s",
		      dchan_errmsg());
	ck_assert_int_eq(dchan_recv(g.remote, buf, 10, 5 * MS, &len),
			 -ETIMEDOUT);
	ck_assert_int_eq(dchan_send_zc(g.remote, buf, 1, 0), -DCHAN_E_REMOTE);
	rig_down(&g);
}
END_TEST

START_TEST(remote_lock_and_semaphore)
{
	struct rig g;
	dchan_lock_t *l;
	dchan_sem_t *s;

	rig_up(&g);
	T_OK(dchan_gateway_register(g.gw));
	T_OK(dchan_lock_attach(&g.sync[0], &l));
	T_OK(dchan_lock_acquire(l, DCHAN_FOREVER));
	ck_assert_int_eq(dchan_lock_acquire(l, 0), -EAGAIN);
	T_OK(dchan_lock_release(l));
	ck_assert_int_eq(dchan_lock_release(l), -EPERM);
	T_OK(dchan_lock_detach(l));
	T_OK(dchan_sem_attach(&g.sync[1], &s));
	T_OK(dchan_sem_acquire(s, 0));
	ck_assert_int_eq(dchan_sem_acquire(s, 1000000), -ETIMEDOUT);
	T_OK(dchan_sem_release(s));
	T_OK(dchan_sem_release(s));
	ck_assert_int_eq(dchan_sem_value(s), 2);
	ck_assert_int_eq(dchan_sem_release(s), -EOVERFLOW); /* bound of 2 */
	T_OK(dchan_sem_detach(s));
	rig_down(&g);
}
END_TEST

START_TEST(gateway_from_environment)
{
	struct rig g;
	pid_t pid;

	rig_up(&g);
	pid = fork();
	if (pid == 0) {
		/* a child learns the gateway from the environment */
		char buf[8];
		size_t len;

		setenv(DCHAN_GATEWAY_ENV, g.gwtext, 1);
		if (dchan_send(g.remote, "env", 3, DCHAN_FOREVER))
			_exit(1);
		if (dchan_recv(g.remote, buf, sizeof buf, DCHAN_FOREVER,
			       &len) ||
		    len != 3)
			_exit(2);
		_exit(0);
	}
	ck_assert_int_eq(t_wait(pid), 0);
	/* and without either, a remote operation says what is missing */
	pid = fork();
	if (pid == 0) {
		unsetenv(DCHAN_GATEWAY_ENV);
		_exit(dchan_send(g.remote, "x", 1, 0) == -DCHAN_E_NOGATEWAY &&
				      strstr(dchan_errmsg(), DCHAN_GATEWAY_ENV)
			      ? 0
			      : 1);
	}
	ck_assert_int_eq(t_wait(pid), 0);
	rig_down(&g);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("dchan_gw");
	TCase *tc = tcase_create("gw");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, remote_ops_through_servicer);
	tcase_add_test(tc, remote_lock_and_semaphore);
	tcase_add_test(tc, gateway_from_environment);
	suite_add_tcase(s, tc);
	return t_run(s);
}
