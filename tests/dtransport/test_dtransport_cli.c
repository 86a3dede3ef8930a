/*
 * dragon-transport, the command-line agent: two of them carry a node-0
 * process's operations to a channel of node 1; a wrong secret keeps the
 * nodes apart; an unknown or unbuilt backend is refused with a message.
 */
#include "dtrans_test.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

struct cli {
	pid_t pid;
	FILE *out;
	char gw[DCHAN_DESC_TEXT_MAX];
};

/*
 * The program itself, not libtool's wrapper script around it, so that a
 * run under valgrind --trace-children checks the agent and not the shell
 * and sed of the wrapper: the binary in .libs, with the build tree's
 * libraries on LD_LIBRARY_PATH (what the wrapper would have set).
 */
static const char *prog(void)
{
	static char path[4096];
	const char *top =
		getenv("top_builddir") ? getenv("top_builddir") : "../..";
	const char *old = getenv("LD_LIBRARY_PATH");
	char libs[8192];

	snprintf(path, sizeof path, "%s/libdtransport/.libs/dragon-transport",
		 top);
	if (access(path, X_OK) != 0) {
		snprintf(path, sizeof path, "%s/libdtransport/dragon-transport",
			 top);
		return path;
	}
	snprintf(
		libs, sizeof libs,
		"%s/libdtransport/.libs:%s/libdchan/.libs:%s/libdmem/.libs%s%s",
		top, top, top, old ? ":" : "", old ? old : "");
	if (!old || !strstr(old, "/libdtransport/.libs"))
		setenv("LD_LIBRARY_PATH", libs, 1);
	return path;
}

/* A port free now (bound to 0, closed). */
static int free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

static void write_secret(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, s, strlen(s)), (ssize_t)strlen(s));
	close(fd);
}

/* One second, longer when the run is scaled down (valgrind, sanitizers)
 * and the agents start and answer slowly: up to 10 s. */
static const char *peer_timeout(void)
{
	static char buf[32];
	double t = 1.0 / t_scale();

	snprintf(buf, sizeof buf, "%g", t < 1 ? 1 : t > 10 ? 10 : t);
	return buf;
}

static void cli_start(struct cli *c, int node, const int *port,
		      const char *secret_file, const char *extra)
{
	char me[32], listen[64], peer[64], line[512];
	int out[2];

	snprintf(me, sizeof me, "%d", node);
	snprintf(listen, sizeof listen, "127.0.0.1:%d", port[node]);
	snprintf(peer, sizeof peer, "%d=127.0.0.1:%d", !node, port[!node]);
	ck_assert_int_eq(pipe(out), 0);
	c->pid = fork();
	ck_assert_int_ge(c->pid, 0);
	if (c->pid == 0) {
		dup2(out[1], 1);
		close(out[0]);
		unsetenv("DRAGON_NODE_ID");
		execl(prog(), prog(), "--node", me, "--nodes", "2", "--listen",
		      listen, "--peer", peer, "--secret-file", secret_file,
		      "--peer-timeout", peer_timeout(), extra, (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	c->out = fdopen(out[0], "r");
	ck_assert_ptr_nonnull(fgets(line, sizeof line, c->out));
	ck_assert_msg(strncmp(line, "listening 127.0.0.1:", 20) == 0, "%s",
		      line);
	ck_assert_ptr_nonnull(fgets(line, sizeof line, c->out));
	ck_assert_int_eq(sscanf(line, "gateway %383s", c->gw), 1);
}

/* SIGTERM: the agent stops, prints its statistics and exits 0. */
static void cli_stop(struct cli *c, char *stats, size_t len)
{
	int st;

	kill(c->pid, SIGTERM);
	ck_assert_ptr_nonnull(fgets(stats, (int)len, c->out));
	ck_assert_int_eq(waitpid(c->pid, &st, 0), c->pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	fclose(c->out);
}

/* node 1's own process: a channel, its descriptor to the test, then the
 * message node 0 sends into it */
static int node1_owner(int to_test, int expect_msg)
{
	dmem_pool_t *pool;
	dchan_t *ch;
	dchan_desc_t d;
	char name[64], buf[16];
	size_t len;
	int rc = 0;

	setenv("DRAGON_NODE_ID", "2", 1);
	snprintf(name, sizeof name, "tdtcli-%d", (int)getpid());
	T_OK(dmem_pool_create(name, 4u << 20, NULL, &pool));
	T_OK(dchan_create(pool, NULL, &ch));
	T_OK(dchan_desc_get(ch, &d));
	T_EQ(write(to_test, &d, sizeof d), sizeof d);
	if (expect_msg) {
		rc = dchan_recv(ch, buf, sizeof buf, 20 * S, &len);
		if (rc == 0 && (len != 3 || memcmp(buf, "cli", 3)))
			rc = -EBADMSG;
	} else {
		/* nothing may arrive while node 0 tries */
		rc = dchan_recv(ch, buf, sizeof buf, 3 * S, &len) == -ETIMEDOUT
			     ? 0
			     : -EBADMSG;
	}
	dchan_destroy(ch);
	dmem_pool_destroy(pool);
	return rc < 0;
}

static int node0_send(const char *gw, const dchan_desc_t *d, int expect)
{
	dchan_t *ch;
	int rc;

	setenv("DRAGON_NODE_ID", "1", 1);
	setenv(DCHAN_GW_ENV, gw, 1);
	T_OK(dchan_attach(d, &ch));
	rc = dchan_send(ch, "cli", 3, 20 * S);
	T_EQ(rc, expect);
	if (expect == -DCHAN_E_NODELOST && !strstr(dchan_errmsg(), "node 2")) {
		fprintf(stderr, "message names no node: %s\n", dchan_errmsg());
		return 1;
	}
	T_OK(dchan_detach(ch));
	return 0;
}

static void run_pair(const char *secret0, const char *secret1, int expect)
{
	char f0[] = "/tmp/tdtcli-secret0.XXXXXX",
	     f1[] = "/tmp/tdtcli-secret1.XXXXXX";
	int port[2] = {free_port(), free_port()}, p[2], st;
	struct cli a[2];
	dchan_desc_t d;
	pid_t owner, sender;
	char stats[512];

	close(mkstemp(f0));
	close(mkstemp(f1));
	write_secret(f0, secret0);
	write_secret(f1, secret1);
	cli_start(&a[0], 0, port, f0, "--backend=tcp");
	cli_start(&a[1], 1, port, f1, "--backend=tcp");
	ck_assert_int_eq(pipe(p), 0);
	owner = fork();
	if (owner == 0)
		_exit(node1_owner(p[1], expect == 0));
	ck_assert_int_eq(read(p[0], &d, sizeof d), (ssize_t)sizeof d);
	sender = fork();
	if (sender == 0)
		_exit(node0_send(a[0].gw, &d, expect));
	ck_assert_int_eq(waitpid(sender, &st, 0), sender);
	ck_assert_int_eq(st, 0);
	ck_assert_int_eq(waitpid(owner, &st, 0), owner);
	ck_assert_int_eq(st, 0);
	cli_stop(&a[0], stats, sizeof stats);
	if (expect == 0)
		ck_assert_msg(strncmp(stats, "node 1: sent 1 ", 15) == 0, "%s",
			      stats);
	else
		ck_assert_msg(strncmp(stats, "node 1: sent 0 ", 15) == 0 &&
				      strstr(stats, " failed 1"),
			      "%s", stats);
	cli_stop(&a[1], stats, sizeof stats);
	ck_assert_msg(strncmp(stats, "node 0: sent 0 ", 15) == 0, "%s", stats);
	unlink(f0);
	unlink(f1);
}

START_TEST(t_cli_pair)
{
	run_pair("the runtime secret of this test",
		 "the runtime secret of this test", 0);
}
END_TEST

START_TEST(t_cli_wrong_secret)
{
	run_pair("the runtime secret of this test",
		 "another runtime's secret....", -DCHAN_E_NODELOST);
}
END_TEST

/* Run the program with args; its exit status and first stderr line. */
static int run_err(char *const *argv, char *err, size_t len)
{
	int e[2], st;
	pid_t pid;
	FILE *f;

	ck_assert_int_eq(pipe(e), 0);
	pid = fork();
	if (pid == 0) {
		dup2(e[1], 2);
		close(e[0]);
		execv(prog(), argv);
		_exit(127);
	}
	close(e[1]);
	f = fdopen(e[0], "r");
	err[0] = 0;
	if (!fgets(err, (int)len, f))
		err[0] = 0;
	fclose(f);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(t_cli_refuses)
{
	char err[512];
	char *ofi[] = {
		(char *)prog(), "--node",      "0",	    "--nodes", "2",
		"--listen",	"127.0.0.1:0", "--backend", "ofi",     NULL};
	char *nosecret[] = {(char *)prog(), "--node",	   "0", "--nodes", "2",
			    "--listen",	    "127.0.0.1:0", NULL};
	char *usage[] = {(char *)prog(), "--node",	"3", "--nodes", "2",
			 "--listen",	 "127.0.0.1:0", NULL};

	setenv("DRAGON_TRANSPORT_SECRET", "a secret long enough to be used", 1);
	ck_assert_int_eq(run_err(ofi, err, sizeof err), 1);
	ck_assert_msg(strstr(err, "ofi backend is not built"), "%s", err);
	ck_assert_int_eq(run_err(usage, err, sizeof err), 2);
	unsetenv("DRAGON_TRANSPORT_SECRET");
	ck_assert_int_eq(run_err(nosecret, err, sizeof err), 1);
	ck_assert_msg(strstr(err, "no secret"), "%s", err);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("dtransport_cli");
	TCase *tc = tcase_create("cli");
	SRunner *sr;
	int failed;

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, t_cli_pair);
	tcase_add_test(tc, t_cli_wrong_secret);
	tcase_add_test(tc, t_cli_refuses);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
