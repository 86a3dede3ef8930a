/*
 * A two-node cluster on loopback for the libdtransport suites: two agent
 * processes, "node 0" and "node 1" (DRAGON_NODE_ID 1 and 2), each with its
 * own pool and gateway channel; node 1 also owns the objects the tests use
 * from node 0.  The test process itself never touches libdmem, so that its
 * children pick their node id freely.
 */
#ifndef DTRANS_TEST_H
#define DTRANS_TEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* setns */
#endif

#include <check.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dragon/dtransport.h>

#define MS 1000000ull
#define S  1000000000ull

/*
 * The suite's processes make their segments in a runtime instance of the
 * suite's own (tdtrans<pid>), and what a failed or killed one left in
 * /dev/shm is removed when the suite's main process exits (not when a
 * forked test or agent does).  Call before srunner_run_all.
 */
static pid_t t_suite_pid;
static char t_suite_inst[32];

static inline void t_sweep_instance(void)
{
	char cmd[128];

	if (getpid() != t_suite_pid)
		return;
	snprintf(cmd, sizeof cmd, "rm -f /dev/shm/dragon.*.%s.* 2>/dev/null",
		 t_suite_inst);
	if (system(cmd) != 0)
		return;
}

static inline void t_own_instance(void)
{
	t_suite_pid = getpid();
	snprintf(t_suite_inst, sizeof t_suite_inst, "tdtrans%d",
		 (int)t_suite_pid);
	setenv("DRAGON_INSTANCE", t_suite_inst, 1);
	atexit(t_sweep_instance);
}

/* T_TSAN: a ThreadSanitizer build (gcc or clang). */
#if defined(__SANITIZE_THREAD__)
#define T_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define T_TSAN 1
#endif
#endif

/* main() of a suite: run it in an instance of its own (t_own_instance);
 * 0 when every test passed. */
static inline int t_run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	t_own_instance();
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

static const char t_secret[] = "a secret of the test runtime, 48 bytes long..!";

/* Each agent's pool (its gateway, node 1's objects); a suite that moves
 * large messages sets it before t_cluster_up. */
static size_t t_pool_bytes = 256u << 20;

/* What node 1 makes for the tests, in this order. */
enum {
	O_CHAN,
	O_BIG,
	O_LOCK,
	O_SEM,
	O_EVENT,
	O_RLOCK,
	O_PARK,
	O_PING,
	O_BARRIER, /* 3 parties */
	O_COND,
	O_CLOCK, /* the condition's lock */
	O_N
};

/* Shared (MAP_SHARED) between the test and its processes. */
struct cluster {
	pid_t agent[2];
	int ctl[2][2];	 /* test -> agent: 'g' go, 's' stats, 'q' quit */
	int ready[2][2]; /* agent -> test: one byte per step */
	char addr[2][128];
	char gw[2][DCHAN_DESC_TEXT_MAX];
	char segname[2][DMEM_SEGNAME_MAX];
	dchan_desc_t obj[O_N];
	dtrans_peer_stats_t stats[2]; /* each agent's stats of the other */
	uint64_t peer_timeout_ns;
	/* Nodes in namespaces of their own (test_dtransport_netns.c): what
	 * each agent listens on ("" = 127.0.0.1:0), and a hook that moves
	 * a new process of node idx there (agent: 1 for the agent itself,
	 * which then notes its pid in nspid). */
	char listen[2][64];
	void (*enter)(struct cluster *c, int idx, int agent);
	pid_t nspid[2];
	/* An allocation of T_MEM_BYTES in node 1's pool, zeroed. */
	dmem_pool_desc_t mem_pool;
	dmem_alloc_desc_t mem;
};

#define T_MEM_BYTES (1u << 20)

static inline uint64_t t_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * S + (uint64_t)ts.tv_nsec;
}

static inline double t_scale(void)
{
	const char *s = getenv("DRAGON_TEST_SCALE");
	double f = s ? strtod(s, NULL) : 1.0;

	return f > 0 ? f : 1.0;
}

/* A factor on the agents' peer timeout, $DRAGON_TEST_TIME_SCALE (default
 * 1): under valgrind an agent restarting, or a handshake, takes longer
 * than the seconds a suite gives a peer, and a healthy peer would be
 * declared lost.  The bounds a test asserts on failing within the peer
 * timeout grow with it. */
static inline uint64_t t_time_scale(void)
{
	const char *s = getenv("DRAGON_TEST_TIME_SCALE");
	unsigned long f = s ? strtoul(s, NULL, 10) : 1;

	return f >= 1 && f <= 100 ? f : 1;
}

/* The backend the suite runs on: the one the program was built for
 * (DTRANS_TEST_BACKEND), else $DRAGON_TEST_BACKEND (tcp, ofi, ucx), else
 * the library's default. */
static inline const char *t_backend(void)
{
#ifdef DTRANS_TEST_BACKEND
	return DTRANS_TEST_BACKEND;
#else
	const char *b = getenv("DRAGON_TEST_BACKEND");

	return b && *b ? b : NULL;
#endif
}

/* Whether the backend's library is absent from this machine: 1 after
 * printing SKIP, the library and why (then consequence, if not empty).
 * It is looked for where the backend looks (the tests' config file
 * records nothing: the system's search path), and in a child process: a
 * library loaded here would be inherited by the agents before they enter
 * their network namespace, and UCX keeps the network devices it saw when
 * it was loaded. */
static inline int t_backend_absent(const char *consequence)
{
	const char *b = t_backend(), *lib;
	int st;
	pid_t pid;

	if (!b || !strcmp(b, "tcp"))
		return 0;
	lib = !strcmp(b, "ofi") ? "libfabric.so.1" : "libucp.so.0";
	pid = fork();
	if (pid == 0) {
		void *h = dlopen(lib, RTLD_LAZY | RTLD_LOCAL);

		if (!h)
			printf("SKIP: the %s backend's library %s is absent "
			       "(%s)%s\n",
			       b, lib, dlerror(), consequence);
		_exit(h ? 0 : 1);
	}
	return pid < 0 || waitpid(pid, &st, 0) != pid || st != 0;
}

/*
 * Where agent idx listens: "127.0.0.1:0", or DRAGON_TEST_HOST<idx>:0 when
 * set.  With DRAGON_TEST_NETNS<idx> (a path such as /run/netns/NAME) the
 * agent process enters that network namespace first, as ip netns exec
 * does: a /sys of its own shows the namespace's devices (UCX looks for
 * them in /sys/class/net).  tests/dtransport/netns.sh runs the suite so
 * across two network stacks.
 */
static inline const char *t_listen_addr(int idx)
{
	static char addr[128];
	char var[32];
	const char *v;

	snprintf(var, sizeof var, "DRAGON_TEST_NETNS%d", idx);
	v = getenv(var);
	if (v && *v) {
		int fd = open(v, O_RDONLY | O_CLOEXEC);

		if (fd < 0 || setns(fd, CLONE_NEWNET) < 0 ||
		    unshare(CLONE_NEWNS) < 0 ||
		    mount("", "/", NULL, MS_SLAVE | MS_REC, NULL) < 0 ||
		    umount2("/sys", MNT_DETACH) < 0 ||
		    mount("sysfs", "/sys", "sysfs", 0, NULL) < 0) {
			fprintf(stderr, "cannot enter %s: %s\n", v,
				strerror(errno));
			_exit(4);
		}
		close(fd);
	}
	snprintf(var, sizeof var, "DRAGON_TEST_HOST%d", idx);
	v = getenv(var);
	snprintf(addr, sizeof addr, "%s:0", v && *v ? v : "127.0.0.1");
	return addr;
}

/* Become a process of node idx (before any libdmem call). */
static inline void t_become(int idx, const struct cluster *c)
{
	char id[16];

	if (c->enter && c->nspid[idx] != getpid())
		c->enter((struct cluster *)c, idx, 0);
	snprintf(id, sizeof id, "%d", idx + 1);
	setenv("DRAGON_NODE_ID", id, 1);
	setenv(DCHAN_GW_ENV, c->gw[idx], 1);
}

static inline void t_fatal(const char *what, int rc)
{
	fprintf(stderr, "%s: %s (%s / %s)\n", what, dtrans_strerror(rc),
		dtrans_errmsg(), dchan_errmsg());
	_exit(3);
}

/* The barrier and the condition (with its lock). */
static inline void t_make_sync(struct cluster *c, dmem_pool_t *pool)
{
	dchan_barrier_t *bar;
	dchan_cond_t *cond;
	dchan_lock_t *lk;
	int rc;

	if ((rc = dchan_barrier_create(pool, 3, &bar)) ||
	    dchan_barrier_desc_get(bar, &c->obj[O_BARRIER]) ||
	    dchan_barrier_detach(bar))
		t_fatal("barrier", rc);
	if ((rc = dchan_cond_create(pool, &cond)) ||
	    dchan_cond_desc_get(cond, &c->obj[O_COND]) ||
	    dchan_cond_detach(cond))
		t_fatal("condition", rc);
	if ((rc = dchan_lock_create(pool, 0, &lk)) ||
	    dchan_lock_desc_get(lk, &c->obj[O_CLOCK]) || dchan_lock_detach(lk))
		t_fatal("lock", rc);
}

static inline void t_make_objects(struct cluster *c, dmem_pool_t *pool)
{
	dchan_attr_t a4 = {.field_mask = DCHAN_ATTR_CAPACITY, .capacity = 4};
	dchan_attr_t abig = {.field_mask = DCHAN_ATTR_CAPACITY, .capacity = 64};
	dchan_t *ch;
	dchan_lock_t *lk;
	dchan_sem_t *sem;
	dchan_event_t *ev;
	int rc;

	if ((rc = dchan_create(pool, &a4, &ch)) ||
	    dchan_desc_get(ch, &c->obj[O_CHAN]) || dchan_detach(ch))
		t_fatal("channel", rc);
	if ((rc = dchan_create(pool, &abig, &ch)) ||
	    dchan_desc_get(ch, &c->obj[O_BIG]) || dchan_detach(ch))
		t_fatal("channel", rc);
	if ((rc = dchan_lock_create(pool, 0, &lk)) ||
	    dchan_lock_desc_get(lk, &c->obj[O_LOCK]) || dchan_lock_detach(lk))
		t_fatal("lock", rc);
	if ((rc = dchan_sem_create(pool, 1, 2, &sem)) ||
	    dchan_sem_desc_get(sem, &c->obj[O_SEM]) || dchan_sem_detach(sem))
		t_fatal("sem", rc);
	if ((rc = dchan_event_create(pool, &ev)) ||
	    dchan_event_desc_get(ev, &c->obj[O_EVENT]) ||
	    dchan_event_detach(ev))
		t_fatal("event", rc);
	if ((rc = dchan_lock_create(pool, DCHAN_LOCK_RECURSIVE, &lk)) ||
	    dchan_lock_desc_get(lk, &c->obj[O_RLOCK]) || dchan_lock_detach(lk))
		t_fatal("rlock", rc);
	if ((rc = dchan_create(pool, &abig, &ch)) ||
	    dchan_desc_get(ch, &c->obj[O_PARK]) || dchan_detach(ch))
		t_fatal("channel", rc);
	if ((rc = dchan_create(pool, &abig, &ch)) ||
	    dchan_desc_get(ch, &c->obj[O_PING]) || dchan_detach(ch))
		t_fatal("channel", rc);
	t_make_sync(c, pool);
	{
		void *p;

		if ((rc = dmem_alloc(pool, T_MEM_BYTES, 64, &p)) ||
		    (rc = dmem_alloc_desc_get(pool, p, &c->mem)) ||
		    (rc = dmem_pool_desc_get(pool, &c->mem_pool)))
			t_fatal("allocation", rc);
		memset(p, 0, T_MEM_BYTES);
	}
}

static inline void t_say(int fd, char b)
{
	if (write(fd, &b, 1) != 1) {
		/* the agent is gone; its end shows in waitpid */
	}
}

static inline char t_hear(int fd)
{
	char b = 'q';

	if (read(fd, &b, 1) != 1)
		return 'q';
	return b;
}

/* An agent process: node idx. */
static inline void t_agent_main(struct cluster *c, int idx)
{
	dchan_attr_t ga = {.field_mask = DCHAN_ATTR_CAPACITY, .capacity = 1024};
	dtrans_attr_t a = {0};
	dtrans_agent_t *ag;
	dmem_pool_t *pool;
	dchan_desc_t d;
	dchan_t *gw;
	char name[64], cmd;
	int rc;

	for (int i = 0; i < 2; i++) {
		if (i != idx) {
			close(c->ctl[i][0]);
			close(c->ready[i][1]);
		}
		close(c->ctl[i][1]);
		close(c->ready[i][0]);
	}
	if (c->enter)
		c->enter(c, idx, 1);
	t_become(idx, c);
	/* the time too: a killed agent's segment of a run that did not clean
	 * up may carry a pid that comes round again */
	snprintf(name, sizeof name, "tdtrans-%d-%d-%llx", idx, (int)getpid(),
		 (unsigned long long)(t_now() & 0xffffffffffull));
	if ((rc = dmem_pool_create(name, t_pool_bytes, NULL, &pool)))
		t_fatal("pool", rc);
	{
		dmem_pool_desc_t pd;

		dmem_pool_desc_get(pool, &pd);
		snprintf(c->segname[idx], sizeof c->segname[idx], "%s",
			 pd.segname);
	}
	if ((rc = dchan_create(pool, &ga, &gw)))
		t_fatal("gateway", rc);
	dchan_desc_get(gw, &d);
	dchan_desc_to_text(&d, c->gw[idx], sizeof c->gw[idx]);
	if (idx == 1)
		t_make_objects(c, pool);
	a.node = (uint32_t)idx;
	a.nnodes = 2;
	a.listen_addr = c->listen[idx][0] ? c->listen[idx] : t_listen_addr(idx);
	a.secret = t_secret;
	a.secret_len = sizeof t_secret - 1;
	a.gateway = gw;
	a.field_mask = DTRANS_ATTR_PEER_TIMEOUT;
	a.peer_timeout_ns = c->peer_timeout_ns;
	if (t_backend()) {
		a.field_mask |= DTRANS_ATTR_BACKEND;
		a.backend = t_backend();
	}
	if ((rc = dtrans_agent_create(&a, &ag)))
		t_fatal("agent", rc);
	dtrans_agent_address(ag, c->addr[idx], sizeof c->addr[idx]);
	t_say(c->ready[idx][1], 'r');
	if (t_hear(c->ctl[idx][0]) != 'g')
		_exit(5);
	if ((rc = dtrans_agent_peer_set(ag, (uint32_t)!idx, c->addr[!idx])) ||
	    (rc = dtrans_agent_start(ag)))
		t_fatal("start", rc);
	t_say(c->ready[idx][1], 'r');
	while ((cmd = t_hear(c->ctl[idx][0])) == 's' || cmd == 'a') {
		if (cmd == 'a') /* the peer's agent moved (restarted) */
			dtrans_agent_peer_set(ag, (uint32_t)!idx,
					      c->addr[!idx]);
		else
			dtrans_agent_stats(ag, (uint32_t)!idx, &c->stats[idx]);
		t_say(c->ready[idx][1], 'r');
	}
	dtrans_agent_destroy(ag);
	dchan_destroy(gw);
	dmem_pool_destroy(pool);
	_exit(0);
}

/* A cluster whose nodes live in namespaces of their own: enter moves
 * each new process of a node there, listen[i] is agent i's address. */
static inline struct cluster *t_cluster_up_in(uint64_t peer_timeout_ns,
					      void (*enter)(struct cluster *,
							    int, int),
					      const char *const listen[2])
{
	struct cluster *c = mmap(NULL, sizeof *c, PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	ck_assert(c != MAP_FAILED);
	memset(c, 0, sizeof *c);
	signal(SIGPIPE, SIG_IGN); /* a killed agent's pipe */
	c->peer_timeout_ns = peer_timeout_ns * t_time_scale();
	c->enter = enter;
	for (int i = 0; listen && i < 2; i++)
		snprintf(c->listen[i], sizeof c->listen[i], "%s", listen[i]);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(pipe(c->ctl[i]), 0);
		ck_assert_int_eq(pipe(c->ready[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		pid_t pid = fork(); /* not into c: the child shares it */

		ck_assert_int_ge(pid, 0);
		if (pid == 0)
			t_agent_main(c, i);
		c->agent[i] = pid;
		/* the agent's ends, closed here at once: an agent that fails
		 * to start is an end of file, not a wait without end */
		close(c->ctl[i][0]);
		close(c->ready[i][1]);
		ck_assert_int_eq(t_hear(c->ready[i][0]), 'r');
	}
	for (int i = 0; i < 2; i++)
		t_say(c->ctl[i][1], 'g');
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(t_hear(c->ready[i][0]), 'r');
	return c;
}

static inline struct cluster *t_cluster_up(uint64_t peer_timeout_ns)
{
	return t_cluster_up_in(peer_timeout_ns, NULL, NULL);
}

/* Start agent idx again (after it was killed: its segment goes) with
 * the same node id; it makes its objects anew, and the other agent
 * learns its new address. */
static inline void t_agent_restart(struct cluster *c, int idx)
{
	int st;
	pid_t pid;

	ck_assert_int_eq(waitpid(c->agent[idx], &st, 0), c->agent[idx]);
	if (WIFSIGNALED(st))
		shm_unlink(c->segname[idx]);
	close(c->ctl[idx][1]);
	close(c->ready[idx][0]);
	/* the new agent closes the fd numbers the other agent's pipe ends
	 * had in the test (t_agent_main): keep its own well above them */
	for (int k = 0; k < 2; k++) {
		int p[2], *to = k ? c->ready[idx] : c->ctl[idx];

		ck_assert_int_eq(pipe(p), 0);
		for (int e = 0; e < 2; e++) {
			to[e] = fcntl(p[e], F_DUPFD, 200 + 4 * idx + 2 * k + e);
			ck_assert_int_ge(to[e], 200);
			close(p[e]);
		}
	}
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		t_agent_main(c, idx);
	c->agent[idx] = pid;
	close(c->ctl[idx][0]); /* the agent's ends (the numbers stay in c) */
	close(c->ready[idx][1]);
	ck_assert_int_eq(t_hear(c->ready[idx][0]), 'r');
	t_say(c->ctl[!idx][1], 'a');
	ck_assert_int_eq(t_hear(c->ready[!idx][0]), 'r');
	t_say(c->ctl[idx][1], 'g');
	ck_assert_int_eq(t_hear(c->ready[idx][0]), 'r');
}

/* Agent i's statistics of its peer, into c->stats[i]. */
static inline void t_agent_stats(struct cluster *c, int i)
{
	t_say(c->ctl[i][1], 's');
	ck_assert_int_eq(t_hear(c->ready[i][0]), 'r');
}

static inline void t_cluster_stats(struct cluster *c)
{
	for (int i = 0; i < 2; i++)
		t_agent_stats(c, i);
}

/* Stop the agents (a killed one is only reaped) and remove what a killed
 * agent left in /dev/shm. */
static inline void t_cluster_down(struct cluster *c)
{
	for (int i = 0; i < 2; i++) {
		int st;

		t_say(c->ctl[i][1], 'q');
		ck_assert_int_eq(waitpid(c->agent[i], &st, 0), c->agent[i]);
		if (WIFSIGNALED(st))
			shm_unlink(c->segname[i]);
		else
			ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
				      "agent %d ended with %d", i, st);
	}
}

/* Run fn in a process of node idx; returns its exit status. */
static inline int t_run(struct cluster *c, int idx, int (*fn)(struct cluster *))
{
	pid_t pid = fork();
	int st;

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		t_become(idx, c);
		_exit(fn(c));
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static inline pid_t t_start(struct cluster *c, int idx,
			    int (*fn)(struct cluster *))
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		t_become(idx, c);
		_exit(fn(c));
	}
	return pid;
}

static inline int t_wait(pid_t pid)
{
	int st;

	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* In a client: fail with a message naming the step. */
#define T_OK(expr)                                                             \
	do {                                                                   \
		int rc_ = (expr);                                              \
		if (rc_ < 0) {                                                 \
			fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__,      \
				__LINE__, #expr, dchan_strerror(rc_),          \
				dchan_errmsg());                               \
			return 1;                                              \
		}                                                              \
	} while (0)
#define T_EQ(a, b)                                                             \
	do {                                                                   \
		long long a_ = (long long)(a), b_ = (long long)(b);            \
		if (a_ != b_) {                                                \
			fprintf(stderr, "%s:%d: %s == %lld, not %lld (%s)\n",  \
				__FILE__, __LINE__, #a, a_, b_,                \
				dchan_errmsg());                               \
			return 1;                                              \
		}                                                              \
	} while (0)

#endif
