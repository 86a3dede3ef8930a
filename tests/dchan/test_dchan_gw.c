/*
 * libdchan gateway: a channel and every kind of sync object on "node A",
 * used from processes of "node B".  The nodes are faked with
 * DRAGON_NODE_ID.  A small servicer in two processes stands in for the
 * transport: its B half reads requests from B's gateway channel and
 * forwards them over a pipe; its A half executes them on A's objects and
 * sends the completions back, which the B half delivers.  The A half
 * counts what it executed, so a test can tell that the operations really
 * went through it.
 */
#include "dchan_test.h"

#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>

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

/* What node A makes and hands to B, in this order. */
enum {
	D_CHAN,	  /* a plain channel, capacity 4 */
	D_LOCK,	  /* a lock */
	D_SEM2,	  /* a semaphore, value 1, bounded by 2 */
	D_RLOCK,  /* a recursive lock */
	D_SEMU,	  /* an unbounded semaphore, value 0 */
	D_SEMBIG, /* an unbounded semaphore one below DCHAN_SEM_VALUE_MAX */
	D_SEMB3,  /* a semaphore, value 0, bounded by 3 */
	D_EVENT,  /* an event */
	D_BAR,	  /* a barrier of 3 parties */
	D_COND,	  /* a condition ... */
	D_CLOCK,  /* ... and the lock that goes with it */
	D_N
};

/* Requests node A's servicer carried out, by operation (shared memory). */
struct served {
	uint64_t op[8];
};

struct node_a {
	dmem_pool_t *pool;
	dchan_t *ch;
	dchan_lock_t *lock, *rlock, *clock;
	dchan_sem_t *sem2, *semu, *sembig, *semb3;
	dchan_event_t *ev;
	dchan_barrier_t *bar;
	dchan_cond_t *cond;
};

static int send_desc(int fd, const dchan_desc_t *d)
{
	char text[DCHAN_DESC_TEXT_MAX];

	if (dchan_desc_to_text(d, text, sizeof text) < 0)
		return -1;
	return write_frame(fd, text, strlen(text) + 1);
}

/* Make node A's objects and send their descriptors, in enum order. */
static int node_a_make(struct node_a *n, int fd)
{
	dchan_attr_t a = {.field_mask = DCHAN_ATTR_CAPACITY, .capacity = 4};
	dchan_desc_t d[D_N];
	char name[64];

	snprintf(name, sizeof name, "tdchan-gw-a-%d", (int)getpid());
	if (dmem_pool_create(name, 64u << 20, NULL, &n->pool) ||
	    dchan_create(n->pool, &a, &n->ch) ||
	    dchan_lock_create(n->pool, 0, &n->lock) ||
	    dchan_sem_create(n->pool, 1, 2, &n->sem2) ||
	    dchan_lock_create(n->pool, DCHAN_LOCK_RECURSIVE, &n->rlock) ||
	    dchan_sem_create(n->pool, 0, 0, &n->semu) ||
	    dchan_sem_create(n->pool, DCHAN_SEM_VALUE_MAX - 1, 0, &n->sembig) ||
	    dchan_sem_create(n->pool, 0, 3, &n->semb3) ||
	    dchan_event_create(n->pool, &n->ev) ||
	    dchan_barrier_create(n->pool, 3, &n->bar) ||
	    dchan_cond_create(n->pool, &n->cond) ||
	    dchan_lock_create(n->pool, 0, &n->clock))
		return -1;
	if (dchan_desc_get(n->ch, &d[D_CHAN]) ||
	    dchan_lock_desc_get(n->lock, &d[D_LOCK]) ||
	    dchan_sem_desc_get(n->sem2, &d[D_SEM2]) ||
	    dchan_lock_desc_get(n->rlock, &d[D_RLOCK]) ||
	    dchan_sem_desc_get(n->semu, &d[D_SEMU]) ||
	    dchan_sem_desc_get(n->sembig, &d[D_SEMBIG]) ||
	    dchan_sem_desc_get(n->semb3, &d[D_SEMB3]) ||
	    dchan_event_desc_get(n->ev, &d[D_EVENT]) ||
	    dchan_barrier_desc_get(n->bar, &d[D_BAR]) ||
	    dchan_cond_desc_get(n->cond, &d[D_COND]) ||
	    dchan_lock_desc_get(n->clock, &d[D_CLOCK]))
		return -1;
	for (int i = 0; i < D_N; i++)
		if (send_desc(fd, &d[i]))
			return -1;
	return 0;
}

static int node_a_unmake(struct node_a *n)
{
	int bad = 0;

	bad |= dchan_lock_destroy(n->lock) | dchan_lock_destroy(n->rlock) |
	       dchan_lock_destroy(n->clock);
	bad |= dchan_sem_destroy(n->sem2) | dchan_sem_destroy(n->semu) |
	       dchan_sem_destroy(n->sembig) | dchan_sem_destroy(n->semb3);
	bad |= dchan_event_destroy(n->ev) | dchan_barrier_destroy(n->bar) |
	       dchan_cond_destroy(n->cond) | dchan_destroy(n->ch);
	return bad | dmem_pool_destroy(n->pool);
}

/*
 * Node A's servicer runs each request in a thread of its own, as a
 * transport agent must: a request may block (a lock held elsewhere, a
 * barrier not yet full) while others arrive that will unblock it.  Each
 * completion goes back to B behind the reply channel's descriptor.
 */
struct a_ctx {
	pthread_mutex_t out_lock;
	pthread_mutex_t run_lock;
	pthread_cond_t run_cv;
	int running;
	int out;
	int failed;
	struct served *served;
};

struct a_job {
	struct a_ctx *ctx;
	void *req;
	uint64_t len;
};

static void *a_run(void *arg)
{
	struct a_job *j = arg;
	struct a_ctx *x = j->ctx;
	dchan_gw_req_t r;
	void *cpl = NULL;
	size_t clen;
	int bad;

	bad = dchan_gw_req_decode(j->req, j->len, &r) ||
	      dchan_gw_execute(&r, &cpl, &clen);
	if (!bad) {
		__atomic_fetch_add(&x->served->op[r.op & 7], 1,
				   __ATOMIC_SEQ_CST);
		pthread_mutex_lock(&x->out_lock);
		bad = write_frame(x->out, &r.reply, sizeof r.reply) ||
		      write_frame(x->out, cpl, clen);
		pthread_mutex_unlock(&x->out_lock);
	} else {
		fprintf(stderr, "servicer A: %s\n", dchan_errmsg());
	}
	free(cpl);
	free(j->req);
	free(j);
	pthread_mutex_lock(&x->run_lock);
	x->failed |= bad;
	x->running--;
	pthread_cond_broadcast(&x->run_cv);
	pthread_mutex_unlock(&x->run_lock);
	return NULL;
}

/* Node A: own the objects, execute what arrives on `in`. */
static int servicer_a(int in, int out, int desc_fd, struct served *served)
{
	struct a_ctx x = {.out = out, .served = served};
	struct node_a n;
	struct a_job *j;
	pthread_attr_t pa;
	pthread_t t;
	uint64_t len;
	void *req;

	setenv("DRAGON_NODE_ID", NODE_A, 1);
	if (node_a_make(&n, desc_fd)) {
		fprintf(stderr, "servicer A: %s\n", dchan_errmsg());
		return 1;
	}
	close(desc_fd);
	pthread_mutex_init(&x.out_lock, NULL);
	pthread_mutex_init(&x.run_lock, NULL);
	pthread_cond_init(&x.run_cv, NULL);
	pthread_attr_init(&pa);
	pthread_attr_setdetachstate(&pa, PTHREAD_CREATE_DETACHED);
	while ((req = read_frame(in, &len))) {
		j = malloc(sizeof *j);
		if (!j)
			return 2;
		*j = (struct a_job){&x, req, len};
		pthread_mutex_lock(&x.run_lock);
		x.running++;
		pthread_mutex_unlock(&x.run_lock);
		if (pthread_create(&t, &pa, a_run, j))
			return 3;
	}
	pthread_mutex_lock(&x.run_lock);
	while (x.running)
		pthread_cond_wait(&x.run_cv, &x.run_lock);
	pthread_mutex_unlock(&x.run_lock);
	pthread_attr_destroy(&pa);
	if (x.failed)
		return 4;
	return node_a_unmake(&n) ? 5 : 0;
}

/*
 * Node B's servicer is two processes: one forwards requests from the
 * gateway channel to A, the other delivers A's completions.  (Two threads
 * of one process would do; as processes, a thread checker is not misled
 * by pool memory one frees and another process reuses.)
 */
static int servicer_b_out(int from_a)
{
	dchan_desc_t *reply;
	uint64_t dlen, clen;
	void *cpl;
	int rc = 0;

	while (rc == 0 && (reply = read_frame(from_a, &dlen))) {
		dchan_gw_req_t r = {0};

		cpl = read_frame(from_a, &clen);
		if (dlen != sizeof *reply || !cpl) {
			rc = 13;
		} else {
			r.reply = *reply;
			if (dchan_gw_complete(&r, cpl, clen)) {
				fprintf(stderr, "servicer B: %s\n",
					dchan_errmsg());
				rc = 14;
			}
		}
		free(reply);
		free(cpl);
	}
	return rc;
}

/* Node B: requests from the gateway go to A. */
static int servicer_b(dchan_t *gw, int to_a)
{
	for (;;) {
		dchan_gw_req_t r;
		dchan_msg_t m;

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
		dchan_msg_release(&m);
	}
}

struct rig {
	dmem_pool_t *pool;
	dchan_t *gw;
	dchan_t *remote;
	pid_t a, b, b2;
	char gwtext[DCHAN_DESC_TEXT_MAX];
	dchan_desc_t d[D_N]; /* node A's objects */
	struct served *served;
};

static void *gw_shared(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	ck_assert_ptr_ne(p, MAP_FAILED);
	memset(p, 0, len);
	return p;
}

static void rig_up(struct rig *g)
{
	int ab[2], ba[2], dp[2];
	char *text;
	uint64_t len;

	setenv("DRAGON_NODE_ID", NODE_B, 1);
	g->served = gw_shared(sizeof *g->served);
	g->pool = t_pool("gw-b", 64u << 20);
	g->gw = t_chan(g->pool, 16, 0);
	T_OK(dchan_desc_get(g->gw, &g->d[0]));
	T_OK(dchan_desc_to_text(&g->d[0], g->gwtext, sizeof g->gwtext));
	ck_assert(pipe(ab) == 0 && pipe(ba) == 0 && pipe(dp) == 0);
	g->a = fork();
	if (g->a == 0) {
		close(ba[1]);
		close(ab[0]);
		close(dp[0]);
		_exit(servicer_a(ba[0], ab[1], dp[1], g->served));
	}
	g->b = fork();
	if (g->b == 0) {
		close(dp[0]);
		close(dp[1]);
		close(ab[0]);
		close(ab[1]);
		close(ba[0]);
		_exit(servicer_b(g->gw, ba[1]));
	}
	g->b2 = fork();
	if (g->b2 == 0) {
		close(dp[0]);
		close(dp[1]);
		close(ab[1]);
		close(ba[0]);
		close(ba[1]);
		_exit(servicer_b_out(ab[0]));
	}
	close(ab[0]);
	close(ab[1]);
	close(ba[0]);
	close(ba[1]);
	close(dp[1]);
	for (int i = 0; i < D_N; i++) {
		text = read_frame(dp[0], &len);
		ck_assert_ptr_nonnull(text);
		T_OK(dchan_desc_from_text(text, &g->d[i]));
		free(text);
		/* every object is on the other node */
		ck_assert_uint_ne(g->d[i].node_id, dmem_node_id());
	}
	close(dp[0]);
	T_OK(dchan_attach(&g->d[D_CHAN], &g->remote));
	t_keep(g->remote);
	ck_assert_ptr_null(dchan_pool(g->remote)); /* nothing mapped */
}

/* Stop the servicer; what it served stays readable in g->served. */
static void rig_down(struct rig *g)
{
	T_OK(dchan_send(g->gw, "quit", 4, DCHAN_FOREVER));
	ck_assert_int_eq(t_wait(g->b), 0);
	ck_assert_int_eq(t_wait(g->a), 0);
	ck_assert_int_eq(t_wait(g->b2), 0);
	T_OK(dchan_detach(g->remote));
	dchan_gw_unregister();
	T_OK(dchan_destroy(g->gw));
	t_pool_done(g->pool);
}

static uint64_t served_total(const struct rig *g)
{
	uint64_t n = 0;

	for (int i = 0; i < 8; i++)
		n += __atomic_load_n(&g->served->op[i], __ATOMIC_SEQ_CST);
	return n;
}

/* In a child: stop with a status that names the line when expr fails. */
#define C_OK(expr)                                                             \
	do {                                                                   \
		int c_rc_ = (int)(expr);                                       \
		if (c_rc_ < 0) {                                               \
			fprintf(stderr, "line %d: %s: %d %s\n", __LINE__,      \
				#expr, c_rc_, dchan_errmsg());                 \
			_exit(1);                                              \
		}                                                              \
	} while (0)
#define C_EQ(expr, want)                                                       \
	do {                                                                   \
		long c_v_ = (long)(expr);                                      \
		if (c_v_ != (long)(want)) {                                    \
			fprintf(stderr, "line %d: %s is %ld, not %ld (%s)\n",  \
				__LINE__, #expr, c_v_, (long)(want),           \
				dchan_errmsg());                               \
			_exit(1);                                              \
		}                                                              \
	} while (0)

START_TEST(remote_ops_through_servicer)
{
	struct rig g;
	char buf[200000], big[150000];
	size_t len;
	unsigned rev;
	dchan_stats_t st;

	rig_up(&g);
	ck_assert_int_eq(dchan_send(g.remote, "x", 1, 0), -DCHAN_E_NOGATEWAY);
	T_OK(dchan_gw_register(g.gw));
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
	T_OK(dchan_gw_register(g.gw));
	T_OK(dchan_lock_attach(&g.d[D_LOCK], &l));
	T_OK(dchan_lock_acquire(l, DCHAN_FOREVER));
	ck_assert_int_eq(dchan_lock_acquire(l, 0), -EAGAIN);
	T_OK(dchan_lock_release(l));
	ck_assert_int_eq(dchan_lock_release(l), -EPERM);
	T_OK(dchan_lock_detach(l));
	T_OK(dchan_sem_attach(&g.d[D_SEM2], &s));
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

		setenv(DCHAN_GW_ENV, g.gwtext, 1);
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
		unsetenv(DCHAN_GW_ENV);
		_exit(dchan_send(g.remote, "x", 1, 0) == -DCHAN_E_NOGATEWAY &&
				      strstr(dchan_errmsg(), DCHAN_GW_ENV)
			      ? 0
			      : 1);
	}
	ck_assert_int_eq(t_wait(pid), 0);
	rig_down(&g);
}
END_TEST

/* Fork n children running fn(g, i, arg); all must exit 0. */
static void run_children(struct rig *g, int n,
			 void (*fn)(struct rig *, int, void *), void *arg)
{
	pid_t pid[8];

	for (int i = 0; i < n; i++) {
		pid[i] = fork();
		ck_assert_int_ge(pid[i], 0);
		if (pid[i] == 0) {
			fn(g, i, arg);
			_exit(0);
		}
	}
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(t_wait(pid[i]), 0);
}

struct lock_arg {
	volatile uint64_t *counter;
	uint64_t n;
	int kind; /* D_LOCK or D_RLOCK */
};

/* Count up under the lock; a recursive lock is taken twice each time. */
static void lock_child(struct rig *g, int i, void *p)
{
	struct lock_arg *a = p;
	dchan_lock_t *l;
	unsigned depth;

	(void)i;
	C_OK(dchan_lock_attach(&g->d[a->kind], &l));
	for (uint64_t k = 0; k < a->n; k++) {
		uint64_t v;

		C_OK(dchan_lock_acquire(l, DCHAN_FOREVER));
		if (a->kind == D_RLOCK) {
			C_OK(dchan_lock_acquire(l, 0));
			C_EQ(dchan_lock_is_mine(l, &depth), 1);
			C_EQ(depth, 2);
		}
		v = *a->counter; /* not atomic: the lock protects it */
		sched_yield();
		*a->counter = v + 1;
		if (a->kind == D_RLOCK)
			C_OK(dchan_lock_release(l));
		C_OK(dchan_lock_release(l));
	}
	C_OK(dchan_lock_detach(l));
}

/* The recursive lock held by another process is not acquired. */
static void rlock_busy_child(struct rig *g, int i, void *p)
{
	dchan_lock_t *l;

	(void)i;
	(void)p;
	C_OK(dchan_lock_attach(&g->d[D_RLOCK], &l));
	C_EQ(dchan_lock_acquire(l, 0), -EAGAIN);
	C_EQ(dchan_lock_acquire(l, 5 * MS), -ETIMEDOUT);
	C_EQ(dchan_lock_release(l), -EPERM); /* not the owner */
	C_OK(dchan_lock_detach(l));
}

START_TEST(remote_locks_contended_by_processes)
{
	struct rig g;
	struct lock_arg a;
	dchan_lock_t *rl;
	unsigned depth;
	uint64_t before;

	rig_up(&g);
	T_OK(dchan_gw_register(g.gw));
	a.counter = gw_shared(4096);
	a.n = t_scaled(100, 10);
	a.kind = D_LOCK;
	run_children(&g, 2, lock_child, &a);
	ck_assert_uint_eq(*a.counter, 2 * a.n);
	/* acquires are receives, releases sends, all carried by A */
	ck_assert_uint_ge(g.served->op[DCHAN_GW_RECV], 2 * a.n);
	ck_assert_uint_ge(g.served->op[DCHAN_GW_SEND], 2 * a.n);

	*a.counter = 0;
	a.kind = D_RLOCK;
	run_children(&g, 2, lock_child, &a);
	ck_assert_uint_eq(*a.counter, 2 * a.n);

	/* owner and depth: this process holds it twice, another cannot */
	T_OK(dchan_lock_attach(&g.d[D_RLOCK], &rl));
	T_OK(dchan_lock_acquire(rl, DCHAN_FOREVER));
	T_OK(dchan_lock_acquire(rl, DCHAN_FOREVER));
	ck_assert_int_eq(dchan_lock_is_mine(rl, &depth), 1);
	ck_assert_uint_eq(depth, 2);
	run_children(&g, 1, rlock_busy_child, NULL);
	T_OK(dchan_lock_release(rl));
	run_children(&g, 1, rlock_busy_child, NULL); /* depth 1: still held */
	before = served_total(&g);
	T_OK(dchan_lock_release(rl));
	ck_assert_uint_eq(served_total(&g), before + 1); /* the token's send */
	ck_assert_int_eq(dchan_lock_is_mine(rl, NULL), 0);
	ck_assert_int_eq(dchan_lock_release(rl), -EPERM);
	T_OK(dchan_lock_detach(rl));
	*a.counter = 0;
	a.n = 3;
	run_children(&g, 1, lock_child, &a); /* free again for others */
	ck_assert_uint_eq(*a.counter, 3);
	rig_down(&g);
}
END_TEST

/* Semaphore producers and consumers across processes. */
static void sem_child(struct rig *g, int i, void *p)
{
	uint64_t n = *(uint64_t *)p;
	dchan_sem_t *s;

	C_OK(dchan_sem_attach(&g->d[D_SEMU], &s));
	for (uint64_t k = 0; k < n; k++)
		C_OK(i == 0 ? dchan_sem_release(s)
			    : dchan_sem_acquire(s, DCHAN_FOREVER));
	C_OK(dchan_sem_detach(s));
}

/* Takes the bounded semaphore's three units as they come. */
static void semb3_child(struct rig *g, int i, void *p)
{
	dchan_sem_t *s;

	(void)i;
	(void)p;
	C_OK(dchan_sem_attach(&g->d[D_SEMB3], &s));
	for (int k = 0; k < 3; k++)
		C_OK(dchan_sem_acquire(s, DCHAN_FOREVER));
	C_OK(dchan_sem_detach(s));
}

START_TEST(remote_semaphores_count_across_processes)
{
	struct rig g;
	dchan_sem_t *u, *b3, *big;
	uint64_t n, before;

	rig_up(&g);
	T_OK(dchan_gw_register(g.gw));
	/* unbounded: one process releases 2n, two take n each */
	n = t_scaled(60, 10);
	{
		pid_t pid[3];

		for (int i = 0; i < 3; i++) {
			pid[i] = fork();
			if (pid[i] == 0) {
				uint64_t m = i == 0 ? 2 * n : n;

				sem_child(&g, i, &m);
				_exit(0);
			}
		}
		for (int i = 0; i < 3; i++)
			ck_assert_int_eq(t_wait(pid[i]), 0);
	}
	T_OK(dchan_sem_attach(&g.d[D_SEMU], &u));
	ck_assert_int_eq(dchan_sem_value(u), 0);
	ck_assert_int_eq(dchan_sem_acquire(u, 0), -EAGAIN);
	T_OK(dchan_sem_release(u));
	T_OK(dchan_sem_release(u));
	ck_assert_int_eq(dchan_sem_value(u), 2);
	T_OK(dchan_sem_detach(u));

	/* bounded by 3: a fourth release is refused and changes nothing */
	T_OK(dchan_sem_attach(&g.d[D_SEMB3], &b3));
	for (int k = 0; k < 3; k++)
		T_OK(dchan_sem_release(b3));
	ck_assert_int_eq(dchan_sem_release(b3), -EOVERFLOW);
	ck_assert_int_eq(dchan_sem_value(b3), 3);
	run_children(&g, 1, semb3_child, NULL);
	ck_assert_int_eq(dchan_sem_value(b3), 0);
	ck_assert_int_eq(dchan_sem_acquire(b3, 5 * MS), -ETIMEDOUT);
	T_OK(dchan_sem_detach(b3));

	/* unbounded up to DCHAN_SEM_VALUE_MAX, then -EOVERFLOW */
	T_OK(dchan_sem_attach(&g.d[D_SEMBIG], &big));
	ck_assert_int_eq(dchan_sem_value(big), DCHAN_SEM_VALUE_MAX - 1);
	T_OK(dchan_sem_release(big));
	ck_assert_int_eq(dchan_sem_value(big), DCHAN_SEM_VALUE_MAX);
	before = served_total(&g);
	ck_assert_int_eq(dchan_sem_release(big), -EOVERFLOW);
	ck_assert_uint_gt(served_total(&g), before);
	ck_assert_int_eq(dchan_sem_value(big), DCHAN_SEM_VALUE_MAX);
	T_OK(dchan_sem_acquire(big, 0));
	ck_assert_int_eq(dchan_sem_value(big), DCHAN_SEM_VALUE_MAX - 1);
	T_OK(dchan_sem_detach(big));
	/* each unit of the first phase went through A: 4n sends/receives */
	ck_assert_uint_ge(g.served->op[DCHAN_GW_RECV] +
				  g.served->op[DCHAN_GW_SEND],
			  4 * n);
	rig_down(&g);
}
END_TEST

/* Wait for the event, and report it through the shared word. */
static void event_child(struct rig *g, int i, void *p)
{
	volatile uint64_t *woke = p;
	dchan_event_t *e;

	(void)i;
	C_OK(dchan_event_attach(&g->d[D_EVENT], &e));
	C_OK(dchan_event_wait(e, DCHAN_FOREVER));
	C_EQ(dchan_event_is_set(e), 1);
	__atomic_fetch_add(woke, 1, __ATOMIC_SEQ_CST);
	C_OK(dchan_event_detach(e));
}

START_TEST(remote_event_wakes_processes)
{
	struct rig g;
	volatile uint64_t *woke;
	dchan_event_t *e;
	pid_t pid[3];
	uint64_t polls;

	rig_up(&g);
	T_OK(dchan_gw_register(g.gw));
	woke = gw_shared(4096);
	T_OK(dchan_event_attach(&g.d[D_EVENT], &e));
	ck_assert_int_eq(dchan_event_is_set(e), 0);
	ck_assert_int_eq(dchan_event_wait(e, 0), -EAGAIN);
	ck_assert_int_eq(dchan_event_wait(e, 5 * MS), -ETIMEDOUT);
	for (int i = 0; i < 3; i++) {
		pid[i] = fork();
		if (pid[i] == 0) {
			event_child(&g, i, (void *)woke);
			_exit(0);
		}
	}
	/* the waiters block in A's servicer until the set arrives */
	ck_assert_uint_eq(*woke, 0);
	T_OK(dchan_event_set(e));
	T_OK(dchan_event_set(e)); /* already set: fine */
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(t_wait(pid[i]), 0);
	ck_assert_uint_eq(*woke, 3);
	T_OK(dchan_event_clear(e));
	T_OK(dchan_event_clear(e));
	ck_assert_int_eq(dchan_event_is_set(e), 0);
	T_OK(dchan_event_detach(e));
	polls = g.served->op[DCHAN_GW_POLL];
	ck_assert_uint_ge(polls, 3 + 3 + 3); /* waits, is_set checks */
	rig_down(&g);
}
END_TEST

struct bar_arg {
	volatile uint64_t *seen; /* per round: bit of each arrival index */
	int rounds;
};

static void barrier_child(struct rig *g, int i, void *p)
{
	struct bar_arg *a = p;
	dchan_barrier_t *b;

	(void)i;
	C_OK(dchan_barrier_attach(&g->d[D_BAR], &b));
	C_EQ(dchan_barrier_parties(b), 3);
	for (int r = 0; r < a->rounds; r++) {
		int idx = dchan_barrier_wait(b, DCHAN_FOREVER);

		C_OK(idx);
		__atomic_fetch_or(&a->seen[r], 1ull << idx, __ATOMIC_SEQ_CST);
	}
	C_OK(dchan_barrier_detach(b));
}

/* Wait forever; the barrier is aborted or reset under us. */
static void barrier_broken_child(struct rig *g, int i, void *p)
{
	dchan_barrier_t *b;

	(void)i;
	(void)p;
	C_OK(dchan_barrier_attach(&g->d[D_BAR], &b));
	C_EQ(dchan_barrier_wait(b, DCHAN_FOREVER), -DCHAN_E_BROKEN);
	C_OK(dchan_barrier_detach(b));
}

static pid_t fork_child(struct rig *g, void (*fn)(struct rig *, int, void *))
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		fn(g, 0, NULL);
		_exit(0);
	}
	return pid;
}

/* Wait (without a time limit; the test's own timeout bounds it) until n
 * parties wait at the barrier. */
static void await_waiting(dchan_barrier_t *b, int n)
{
	int w;

	while ((w = dchan_barrier_n_waiting(b)) != n) {
		ck_assert_int_ge(w, 0);
		usleep(2000);
	}
}

START_TEST(remote_barrier_of_three_processes)
{
	struct rig g;
	struct bar_arg a;
	dchan_barrier_t *b;
	pid_t pid;

	rig_up(&g);
	T_OK(dchan_gw_register(g.gw));
	a.rounds = (int)t_scaled(20, 4);
	a.seen = gw_shared(sizeof *a.seen * (size_t)a.rounds + 64);
	run_children(&g, 3, barrier_child, &a);
	for (int r = 0; r < a.rounds; r++)
		ck_assert_uint_eq(a.seen[r], 7); /* indices 0, 1 and 2 */

	T_OK(dchan_barrier_attach(&g.d[D_BAR], &b));
	ck_assert_int_eq(dchan_barrier_parties(b), 3);
	ck_assert_int_eq(dchan_barrier_n_waiting(b), 0);
	/* a lone waiter times out and breaks it */
	ck_assert_int_eq(dchan_barrier_wait(b, 5 * MS), -ETIMEDOUT);
	ck_assert_int_eq(dchan_barrier_is_broken(b), 1);
	ck_assert_int_eq(dchan_barrier_wait(b, 0), -DCHAN_E_BROKEN);
	T_OK(dchan_barrier_reset(b));
	ck_assert_int_eq(dchan_barrier_is_broken(b), 0);
	/* abort while another process waits: it sees the break */
	pid = fork_child(&g, barrier_broken_child);
	await_waiting(b, 1);
	T_OK(dchan_barrier_abort(b));
	ck_assert_int_eq(t_wait(pid), 0);
	ck_assert_int_eq(dchan_barrier_is_broken(b), 1);
	/* reset while another process waits: it sees the break too */
	T_OK(dchan_barrier_reset(b));
	pid = fork_child(&g, barrier_broken_child);
	await_waiting(b, 1);
	T_OK(dchan_barrier_reset(b));
	ck_assert_int_eq(t_wait(pid), 0);
	ck_assert_int_eq(dchan_barrier_is_broken(b), 0);
	ck_assert_int_eq(dchan_barrier_n_waiting(b), 0);
	/* and it still works for three */
	a.rounds = 2;
	memset((void *)a.seen, 0, 2 * sizeof *a.seen);
	run_children(&g, 3, barrier_child, &a);
	ck_assert_uint_eq(a.seen[0], 7);
	ck_assert_uint_eq(a.seen[1], 7);
	T_OK(dchan_barrier_detach(b));
	ck_assert_uint_ge(g.served->op[DCHAN_GW_RECV], 3 * 20 / 4);
	ck_assert_uint_ge(g.served->op[DCHAN_GW_PEEK], 3); /* directories */
	rig_down(&g);
}
END_TEST

struct cond_arg {
	volatile uint64_t *ready, *go, *woke;
};

/* Classic condition use: wait under the lock until go is set. */
static void cond_child(struct rig *g, int i, void *p)
{
	struct cond_arg *a = p;
	dchan_cond_t *c;
	dchan_lock_t *l;

	(void)i;
	C_OK(dchan_cond_attach(&g->d[D_COND], &c));
	C_OK(dchan_lock_attach(&g->d[D_CLOCK], &l));
	C_OK(dchan_lock_acquire(l, DCHAN_FOREVER));
	(*a->ready)++;
	while (!*a->go)
		C_OK(dchan_cond_wait(c, l, DCHAN_FOREVER));
	C_EQ(dchan_lock_is_mine(l, NULL), 1);
	(*a->woke)++;
	C_OK(dchan_lock_release(l));
	C_OK(dchan_lock_detach(l));
	C_OK(dchan_cond_detach(c));
}

START_TEST(remote_condition_notify_and_wait)
{
	struct rig g;
	struct cond_arg a;
	volatile uint64_t *mem;
	dchan_cond_t *c;
	dchan_lock_t *l;
	pid_t pid[2];

	rig_up(&g);
	T_OK(dchan_gw_register(g.gw));
	mem = gw_shared(4096);
	a.ready = mem;
	a.go = mem + 1;
	a.woke = mem + 2;
	T_OK(dchan_cond_attach(&g.d[D_COND], &c));
	T_OK(dchan_lock_attach(&g.d[D_CLOCK], &l));
	/* a timed wait comes back with the lock held */
	T_OK(dchan_lock_acquire(l, DCHAN_FOREVER));
	ck_assert_int_eq(dchan_cond_wait(c, l, 5 * MS), -ETIMEDOUT);
	ck_assert_int_eq(dchan_lock_is_mine(l, NULL), 1);
	ck_assert_int_eq(dchan_cond_notify(c, 1), 0); /* nobody waits */
	T_OK(dchan_lock_release(l));
	ck_assert_int_eq(dchan_cond_wait(c, l, 0), -EPERM);

	for (int i = 0; i < 2; i++) {
		pid[i] = fork();
		if (pid[i] == 0) {
			cond_child(&g, i, &a);
			_exit(0);
		}
	}
	/* once both counted themselves ready under the lock and we hold it
	 * again, both are inside their wait */
	for (;;) {
		T_OK(dchan_lock_acquire(l, DCHAN_FOREVER));
		if (*a.ready == 2)
			break;
		T_OK(dchan_lock_release(l));
		usleep(2000);
	}
	*a.go = 1;
	ck_assert_int_eq(dchan_cond_notify(c, 1), 1);
	ck_assert_int_eq(dchan_cond_notify_all(c), 1);
	ck_assert_int_eq(dchan_cond_notify_all(c), 0);
	T_OK(dchan_lock_release(l));
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(t_wait(pid[i]), 0);
	ck_assert_uint_eq(*a.woke, 2);
	T_OK(dchan_lock_detach(l));
	T_OK(dchan_cond_detach(c));
	ck_assert_uint_ge(g.served->op[DCHAN_GW_PEEK], 3); /* directories */
	ck_assert_uint_ge(g.served->op[DCHAN_GW_RECV], 8);
	rig_down(&g);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("dchan_gw");
	TCase *tc = tcase_create("gw");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, remote_ops_through_servicer);
	tcase_add_test(tc, remote_lock_and_semaphore);
	tcase_add_test(tc, gateway_from_environment);
	tcase_add_test(tc, remote_locks_contended_by_processes);
	tcase_add_test(tc, remote_semaphores_count_across_processes);
	tcase_add_test(tc, remote_event_wakes_processes);
	tcase_add_test(tc, remote_barrier_of_three_processes);
	tcase_add_test(tc, remote_condition_notify_and_wait);
	suite_add_tcase(s, tc);
	return t_run(s);
}
