/*
 * libdtransport between network namespaces: node 0 and node 1 each live in
 * a network namespace of their own, joined by veth pairs on a bridge, and
 * each has a private /dev/shm (a tmpfs in a mount namespace of its own),
 * so nothing passes between the nodes but TCP through the bridge.  Needs
 * root; skipped, with the reason, otherwise.
 */
#define _GNU_SOURCE
#include "dtrans_test.h"

#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <sys/mount.h>
#include <sys/stat.h>

static char ns_name[2][32], br_name[16], veth_name[2][16];
/* What this run's namespaces and links are named from: "dtr", or
 * DRAGON_TEST_NETNS_PREFIX (up to 4 characters) where several runs share
 * the machine and each keeps to a prefix of its own. */
static char prefix[8] = "dtr";
static const char *const ns_addr[2] = {"10.77.0.1", "10.77.0.2"};

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void net_down(void)
{
	for (int i = 0; i < 2; i++)
		sh("ip netns del %s 2>/dev/null", ns_name[i]);
	sh("ip link del %s 2>/dev/null", br_name);
}

/* Two namespaces on a bridge; the reason it cannot be done, or NULL. */
static const char *net_up(void)
{
	int p = (int)getpid();

#ifdef T_TSAN
	/* ThreadSanitizer starts its background thread again in every
	 * forked child, and a process whose threads share its filesystem
	 * attributes cannot join or unshare a mount namespace (EINVAL). */
	return "a ThreadSanitizer build cannot enter a mount namespace "
	       "(its runtime thread shares the filesystem attributes); "
	       "run the plain or ASan build";
#endif
	if (geteuid() != 0)
		return "making network namespaces needs root";
	if (getenv("DRAGON_TEST_NETNS_PREFIX")) {
		const char *v = getenv("DRAGON_TEST_NETNS_PREFIX");

		if (!*v || strlen(v) > 4 ||
		    strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789") !=
			    strlen(v))
			return "DRAGON_TEST_NETNS_PREFIX must be 1 to 4 "
			       "lower-case letters or digits";
		snprintf(prefix, sizeof prefix, "%s", v);
	}
	if (sh("command -v ip >/dev/null") != 0)
		return "the ip command (iproute2) is missing";
	snprintf(br_name, sizeof br_name, "%.4sbr%d", prefix, p % 1000000);
	for (int i = 0; i < 2; i++) {
		snprintf(ns_name[i], sizeof ns_name[i], "%s-%c%d", prefix,
			 'a' + i, p);
		snprintf(veth_name[i], sizeof veth_name[i], "%.4s%c%d", prefix,
			 'a' + i, p % 10000000);
	}
	if (sh("ip link add %s type bridge && ip link set %s up", br_name,
	       br_name) != 0) {
		net_down();
		return "cannot make a bridge (ip link add type bridge failed)";
	}
	for (int i = 0; i < 2; i++) {
		if (sh("ip netns add %s && "
		       "ip link add %s type veth peer name eth0 netns %s && "
		       "ip link set %s master %s up && "
		       "ip -n %s addr add %s/24 dev eth0 && "
		       "ip -n %s link set eth0 up && ip -n %s link set lo up",
		       ns_name[i], veth_name[i], ns_name[i], veth_name[i],
		       br_name, ns_name[i], ns_addr[i], ns_name[i],
		       ns_name[i]) != 0) {
			net_down();
			return "cannot make a network namespace with a veth "
			       "pair (ip netns add / ip link add type veth "
			       "failed)";
		}
	}
	return NULL;
}

static void die(const char *what)
{
	fprintf(stderr, "entering the node's namespaces: %s: %s\n", what,
		strerror(errno));
	_exit(4);
}

static void join(pid_t pid, const char *ns, int type)
{
	char path[64];
	int fd;

	snprintf(path, sizeof path, "/proc/%d/ns/%s", (int)pid, ns);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, type) < 0)
		die(path);
	close(fd);
}

/* The agent makes the node's namespaces (its network one, a mount one
 * with a tmpfs of its own on /dev/shm); the node's other processes join
 * the agent's. */
static void enter(struct cluster *c, int idx, int agent)
{
	char path[64];
	int fd;

	if (!agent) {
		join(c->nspid[idx], "net", CLONE_NEWNET);
		join(c->nspid[idx], "mnt", CLONE_NEWNS);
		return;
	}
	c->nspid[idx] = getpid();
	snprintf(path, sizeof path, "/var/run/netns/%s", ns_name[idx]);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, CLONE_NEWNET) < 0)
		die(path);
	close(fd);
	if (unshare(CLONE_NEWNS) < 0)
		die("unshare(CLONE_NEWNS)");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		die("mount --make-rprivate /");
	if (mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV,
		  "size=1g,mode=1777") < 0)
		die("mount tmpfs /dev/shm");
}

static struct cluster *ns_cluster(uint64_t peer_timeout_ns)
{
	char l[2][64];
	const char *listen[2] = {l[0], l[1]};

	for (int i = 0; i < 2; i++)
		snprintf(l[i], sizeof l[i], "%s:0", ns_addr[i]);
	return t_cluster_up_in(peer_timeout_ns, enter, listen);
}

/* ---- the clients -------------------------------------------------------- */

/* node 0: node 1's segment is not visible here; its channels are. */
static int c_send(struct cluster *c)
{
	static char big[64 << 10];
	char path[DMEM_SEGNAME_MAX + 16];
	dchan_t *ch;

	snprintf(path, sizeof path, "/dev/shm/%s", c->segname[1]);
	T_EQ(access(path, F_OK) == -1 && errno == ENOENT, 1);
	T_OK(dchan_attach(&c->obj[O_BIG], &ch));
	T_EQ(dchan_pool(ch) == NULL, 1);
	memset(big, 'n', sizeof big);
	T_OK(dchan_send(ch, big, sizeof big, 5 * S));
	T_OK(dchan_send(ch, "hello", 5, 5 * S));
	T_OK(dchan_detach(ch));
	return 0;
}

/* node 1, locally: what node 0 sent; then a zero-copy message back */
static int c_check_reply(struct cluster *c)
{
	static char big[64 << 10];
	dchan_t *ch;
	size_t len;
	void *p;

	T_OK(dchan_attach(&c->obj[O_BIG], &ch));
	T_EQ(dchan_pool(ch) != NULL, 1);
	T_OK(dchan_recv(ch, big, sizeof big, 0, &len));
	T_EQ(len, sizeof big);
	T_EQ(big[len - 1], 'n');
	T_OK(dchan_recv(ch, big, sizeof big, 0, &len));
	T_EQ(len, 5);
	T_OK(dmem_alloc(dchan_pool(ch), 3000, 0, &p));
	memset(p, 'z', 3000);
	T_OK(dchan_send_zc(ch, p, 3000, 0));
	T_OK(dchan_detach(ch));
	return 0;
}

/* node 0: the zero-copy message, a remote timeout, sync objects */
static int c_recv_sync(struct cluster *c)
{
	char buf[4000];
	dchan_lock_t *lk;
	dchan_sem_t *sem;
	dchan_t *ch;
	uint64_t t0;
	size_t len;

	T_OK(dchan_attach(&c->obj[O_BIG], &ch));
	T_OK(dchan_recv(ch, buf, sizeof buf, 5 * S, &len));
	T_EQ(len, 3000);
	T_EQ(buf[2999], 'z');
	t0 = t_now();
	T_EQ(dchan_recv(ch, buf, sizeof buf, 1 * S, &len), -ETIMEDOUT);
	T_EQ(t_now() - t0 >= 1 * S, 1);
	T_OK(dchan_detach(ch));
	T_OK(dchan_lock_attach(&c->obj[O_LOCK], &lk));
	T_OK(dchan_lock_acquire(lk, 5 * S));
	T_EQ(dchan_lock_acquire(lk, 0), -EAGAIN);
	T_OK(dchan_lock_release(lk));
	T_OK(dchan_lock_detach(lk));
	T_OK(dchan_sem_attach(&c->obj[O_SEM], &sem));
	T_OK(dchan_sem_acquire(sem, 5 * S));
	T_OK(dchan_sem_release(sem));
	T_OK(dchan_sem_detach(sem));
	return 0;
}

static int c_bar_wait(struct cluster *c)
{
	dchan_barrier_t *b;
	int idx;

	T_OK(dchan_barrier_attach(&c->obj[O_BARRIER], &b));
	idx = dchan_barrier_wait(b, 30 * S);
	T_OK(idx);
	T_OK(dchan_barrier_detach(b));
	return 10 + idx;
}

/* node 0: a set of a local channel and a remote one that becomes ready */
static int c_poll_mixed(struct cluster *c)
{
	dchan_attr_t a = {.field_mask = DCHAN_ATTR_CAPACITY, .capacity = 4};
	dchan_pollitem_t it[2];
	dchan_t *gw, *loc, *r;
	dchan_desc_t gd;

	T_OK(dchan_desc_from_text(c->gw[0], &gd));
	T_OK(dchan_attach(&gd, &gw));
	T_OK(dchan_create(dchan_pool(gw), &a, &loc));
	T_OK(dchan_attach(&c->obj[O_PING], &r));
	it[0] = (dchan_pollitem_t){.ch = loc, .events = DCHAN_POLLIN};
	it[1] = (dchan_pollitem_t){.ch = r, .events = DCHAN_POLLIN};
	T_EQ(dchan_poll_many(it, 2, 0), -EAGAIN);
	T_EQ(dchan_poll_many(it, 2, 20 * S), 1);
	T_EQ(it[1].revents, DCHAN_POLLIN);
	T_OK(dchan_detach(r));
	T_OK(dchan_destroy(loc));
	T_OK(dchan_detach(gw));
	return 0;
}

static int c_ping_later(struct cluster *c)
{
	dchan_t *ch;

	usleep(700000);
	T_OK(dchan_attach(&c->obj[O_PING], &ch));
	T_OK(dchan_send(ch, "p", 1, 0));
	T_OK(dchan_detach(ch));
	return 0;
}

static int c_round_trip(struct cluster *c)
{
	dchan_t *ch;
	char buf[8];
	size_t len;

	T_OK(dchan_attach(&c->obj[O_PING], &ch));
	while (dchan_recv(ch, buf, sizeof buf, 0, &len) == 0)
		;
	T_OK(dchan_send(ch, "rt", 2, 10 * S));
	T_OK(dchan_recv(ch, buf, sizeof buf, 10 * S, &len));
	T_EQ(len, 2);
	T_OK(dchan_detach(ch));
	return 0;
}

static int c_lost(struct cluster *c)
{
	dchan_t *ch;
	char buf[8];
	size_t len;

	T_OK(dchan_attach(&c->obj[O_PING], &ch));
	T_EQ(dchan_recv(ch, buf, sizeof buf, DCHAN_FOREVER, &len),
	     -DCHAN_E_NODELOST);
	T_OK(dchan_detach(ch));
	return 0;
}

/* ---- a link cut under parked waits ------------------------------------- */

/* Shared with the clients: node 1's lock holder lets go when told. */
static volatile int *holder_go;

/* node 1: hold the lock until told, then let it go */
static int c_hold_lock(struct cluster *c)
{
	dchan_lock_t *lk;

	T_OK(dchan_lock_attach(&c->obj[O_LOCK], &lk));
	T_OK(dchan_lock_acquire(lk, 0));
	holder_go[0] = 1;
	while (!holder_go[1])
		usleep(10000);
	T_OK(dchan_lock_release(lk));
	T_OK(dchan_lock_detach(lk));
	return 0;
}

/* node 0: waits parked at node 1's agent, each failing as the node lost */
static int c_park_recv(struct cluster *c)
{
	dchan_t *ch;
	char buf[8];
	size_t len;

	T_OK(dchan_attach(&c->obj[O_PARK], &ch));
	T_EQ(dchan_recv(ch, buf, sizeof buf, DCHAN_FOREVER, &len),
	     -DCHAN_E_NODELOST);
	T_OK(dchan_detach(ch));
	return 0;
}

static int c_park_lock(struct cluster *c)
{
	dchan_lock_t *lk;

	T_OK(dchan_lock_attach(&c->obj[O_LOCK], &lk));
	T_EQ(dchan_lock_acquire(lk, DCHAN_FOREVER), -DCHAN_E_NODELOST);
	T_OK(dchan_lock_detach(lk));
	return 0;
}

static int c_park_event(struct cluster *c)
{
	dchan_event_t *ev;

	T_OK(dchan_event_attach(&c->obj[O_EVENT], &ev));
	T_EQ(dchan_event_wait(ev, DCHAN_FOREVER), -DCHAN_E_NODELOST);
	T_OK(dchan_event_detach(ev));
	return 0;
}

/* node 1, while the link is cut: what the dropped waits would have
 * taken is still here -- the message, the lock, the event's setting */
static int c_local_after(struct cluster *c)
{
	dchan_event_t *ev;
	dchan_lock_t *lk;
	dchan_t *ch;
	char buf[8];
	size_t len;

	T_OK(dchan_attach(&c->obj[O_PARK], &ch));
	T_OK(dchan_event_attach(&c->obj[O_EVENT], &ev));
	T_OK(dchan_lock_attach(&c->obj[O_LOCK], &lk));
	T_OK(dchan_send(ch, "kept", 4, 0));
	T_OK(dchan_event_set(ev));
	holder_go[1] = 1;
	usleep(500000); /* time for a wait left parked to take them */
	T_OK(dchan_recv(ch, buf, sizeof buf, 0, &len));
	T_EQ(len, 4);
	T_OK(dchan_lock_acquire(lk, 5 * S));
	T_OK(dchan_lock_release(lk));
	T_OK(dchan_event_clear(ev));
	T_OK(dchan_lock_detach(lk));
	T_OK(dchan_event_detach(ev));
	T_OK(dchan_detach(ch));
	return 0;
}

/* node 0, after the link is back: the lock is free to take remotely */
static int c_lock_once(struct cluster *c)
{
	dchan_lock_t *lk;

	T_OK(dchan_lock_attach(&c->obj[O_LOCK], &lk));
	T_OK(dchan_lock_acquire(lk, 10 * S));
	T_OK(dchan_lock_release(lk));
	T_OK(dchan_lock_detach(lk));
	return 0;
}

/* Node 1's agent's count of node 0's waits parked there, once it is
 * want or the bound has passed. */
static uint64_t parked_at_1(struct cluster *c, uint64_t want, uint64_t bound)
{
	uint64_t t0 = t_now();

	for (;;) {
		t_agent_stats(c, 1);
		if (c->stats[1].parked == want || t_now() - t0 > bound)
			return c->stats[1].parked;
		usleep(50000);
	}
}

/* How many lines of the agents' log (file path) hold both a and b. */
static int log_lines(const char *path, const char *a, const char *b)
{
	char line[512];
	FILE *f = fopen(path, "r");
	int n = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		n += strstr(line, a) && strstr(line, b);
	fclose(f);
	return n;
}

static void show_log(const char *path)
{
	char line[512];
	FILE *f = fopen(path, "r");

	fputs("--- the agents' log ---\n", stderr);
	while (f && fgets(line, sizeof line, f))
		fputs(line, stderr);
	fputs("--- end of the agents' log ---\n", stderr);
	if (f)
		fclose(f);
}

/*
 * Waits of node 0 parked at node 1's agent -- a receive, a lock, an
 * event -- while the network between the agents is cut (node 1's end of
 * the link taken down; both agents live).  Each fails as the node lost;
 * node 1's agent drops them too, so that nothing is taken for a
 * requester already told its wait failed; and once the network is back
 * the agents connect again and serve.
 */
START_TEST(t_ns_link_reset)
{
	char path[] = "/tmp/dtrans-reset-XXXXXX";
	int fd = mkstemp(path), saved = dup(2), rc[3];
	uint64_t T = 2 * S * t_time_scale(), left, back;
	struct cluster *c;
	pid_t holder, w[3];

	ck_assert_int_ge(fd, 0);
	ck_assert_int_ge(saved, 0);
	holder_go = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert(holder_go != MAP_FAILED);
	/* the agents log to the stderr they inherit: a file here, shown
	 * before any assertion can end the test */
	dup2(fd, 2);
	c = ns_cluster(2 * S);
	dup2(saved, 2);
	ck_assert_int_eq(t_run(c, 0, c_round_trip), 0);
	holder = t_start(c, 1, c_hold_lock);
	while (!holder_go[0])
		usleep(10000);
	w[0] = t_start(c, 0, c_park_recv);
	w[1] = t_start(c, 0, c_park_lock);
	w[2] = t_start(c, 0, c_park_event);
	ck_assert_uint_eq(parked_at_1(c, 3, 20 * S), 3);

	ck_assert_int_eq(sh("ip link set %s down", veth_name[1]), 0);
	for (int i = 0; i < 3; i++)
		rc[i] = t_wait(w[i]);
	/* node 1's agent lets them go too, within its peer timeout */
	left = parked_at_1(c, 0, 5 * T);
	rc[0] |= t_run(c, 1, c_local_after);
	rc[1] |= t_wait(holder);
	ck_assert_int_eq(sh("ip link set %s up", veth_name[1]), 0);
	back = (uint64_t)t_run(c, 0, c_round_trip);
	back |= (uint64_t)t_run(c, 0, c_lock_once);
	t_cluster_stats(c);
	t_cluster_down(c);
	close(fd);
	show_log(path);
	ck_assert_msg(!rc[0] && !rc[1] && !rc[2],
		      "waits across the cut: recv %d, lock %d, event %d", rc[0],
		      rc[1], rc[2]);
	ck_assert_uint_eq(left, 0);
	ck_assert_uint_eq(back, 0);
	/* every request sent was answered once or failed once */
	ck_assert_uint_eq(c->stats[0].failed_ops, 3);
	ck_assert_uint_eq(c->stats[0].requests_sent,
			  c->stats[0].completions_recv + 3);
	ck_assert_uint_ge(c->stats[0].connections, 2);
	/* each side said what happened, naming the other */
	ck_assert_int_ge(log_lines(path, "[node 0]", "link to node 1 dropped"),
			 1);
	ck_assert_int_ge(
		log_lines(path, "[node 1]", "link from node 0 dropped"), 1);
	ck_assert_int_eq(log_lines(path, "[node 0]", "link to node 1 is back"),
			 1);
	unlink(path);
	munmap((void *)holder_go, 4096);
}
END_TEST

/* ---- the tests ---------------------------------------------------------- */

START_TEST(t_ns_operations)
{
	struct cluster *c = ns_cluster(10 * S);
	pid_t p[3];
	int seen = 0;

	ck_assert_int_eq(t_run(c, 0, c_send), 0);
	ck_assert_int_eq(t_run(c, 1, c_check_reply), 0);
	ck_assert_int_eq(t_run(c, 0, c_recv_sync), 0);
	p[0] = t_start(c, 0, c_bar_wait);
	p[1] = t_start(c, 0, c_bar_wait);
	p[2] = t_start(c, 1, c_bar_wait);
	for (int i = 0; i < 3; i++) {
		int st = t_wait(p[i]);

		ck_assert_msg(st >= 10 && st <= 12, "party %d: %d", i, st);
		seen |= 1 << (st - 10);
	}
	ck_assert_int_eq(seen, 7);
	p[0] = t_start(c, 0, c_poll_mixed);
	ck_assert_int_eq(t_run(c, 1, c_ping_later), 0);
	ck_assert_int_eq(t_wait(p[0]), 0);
	t_cluster_stats(c);
	ck_assert_uint_eq(c->stats[0].errors, 0);
	ck_assert_uint_ge(c->stats[0].bytes_sent, 64 << 10);
	t_cluster_down(c);
}
END_TEST

START_TEST(t_ns_peer_lost_and_back)
{
	struct cluster *c = ns_cluster(2 * S);
	pid_t w;

	ck_assert_int_eq(t_run(c, 0, c_round_trip), 0);
	w = t_start(c, 0, c_lost);
	usleep(300000);
	kill(c->agent[1], SIGKILL);
	ck_assert_int_eq(t_wait(w), 0);
	t_agent_restart(c, 1);
	ck_assert_int_eq(t_run(c, 0, c_round_trip), 0);
	t_cluster_down(c);
}
END_TEST

int main(void)
{
	const char *why = net_up();
	Suite *s;
	TCase *tc;
	SRunner *sr;
	int failed;

	if (why) {
		printf("SKIP: agents in network namespaces: %s\n", why);
		return 77;
	}
	if (t_backend_absent(": its namespace suite is not run")) {
		net_down();
		return 77;
	}
	s = suite_create("dtransport_netns");
	tc = tcase_create("netns");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, t_ns_operations);
	tcase_add_test(tc, t_ns_peer_lost_and_back);
	tcase_add_test(tc, t_ns_link_reset);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	t_own_instance();
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	net_down();
	return failed ? 1 : 0;
}
