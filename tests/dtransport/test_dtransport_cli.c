/*
 * dragon-transport, the command-line agent: two of them carry a node-0
 * process's operations to a channel of node 1; a wrong secret keeps the
 * nodes apart; an unknown backend is refused with a message; the backend
 * follows what dragon-config recorded (the TCP notice, a library that
 * does not load, the fallback).
 */
#include "dtrans_test.h"

#include <arpa/inet.h>
#include <dlfcn.h>
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
	char *pigeon[] = {
		(char *)prog(), "--node",      "0",	    "--nodes", "2",
		"--listen",	"127.0.0.1:0", "--backend", "pigeon",  NULL};
	char *nosecret[] = {(char *)prog(), "--node",	   "0", "--nodes", "2",
			    "--listen",	    "127.0.0.1:0", NULL};
	char *usage[] = {(char *)prog(), "--node",	"3", "--nodes", "2",
			 "--listen",	 "127.0.0.1:0", NULL};

	setenv("DRAGON_TRANSPORT_SECRET", "a secret long enough to be used", 1);
	ck_assert_int_eq(run_err(pigeon, err, sizeof err), 1);
	ck_assert_msg(strstr(err, "unknown transport backend \"pigeon\""), "%s",
		      err);
	ck_assert_int_eq(run_err(usage, err, sizeof err), 2);
	unsetenv("DRAGON_TRANSPORT_SECRET");
	ck_assert_int_eq(run_err(nosecret, err, sizeof err), 1);
	ck_assert_msg(strstr(err, "no secret"), "%s", err);
}
END_TEST

/* ---- which backend: dragon-config's file ------------------------------- */

static const char notice_first[] = "Dragon was unable to find a high-speed "
				   "network backend configuration.";
static const char notice_last[] = "we will use the lower performing TCP "
				  "transport agent for backend network "
				  "communication.";

static int count(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

/* One agent of one node, with the config file holding conf (NULL: no
 * file) and extra arguments; its exit status and all it wrote to stderr.
 * One that starts is stopped at once. */
static int run_conf(const char *conf, const char *arg, char *err, size_t len)
{
	char cf[] = "/tmp/tdtcli-conf.XXXXXX", line[512];
	int e[2], o[2], st;
	size_t got = 0;
	ssize_t n;
	pid_t pid;
	FILE *out;

	close(mkstemp(cf));
	if (conf)
		write_secret(cf, conf);
	else
		unlink(cf);
	ck_assert_int_eq(pipe(e), 0);
	ck_assert_int_eq(pipe(o), 0);
	pid = fork();
	if (pid == 0) {
		dup2(e[1], 2);
		dup2(o[1], 1);
		close(e[0]);
		close(o[0]);
		unsetenv("DRAGON_NODE_ID");
		setenv("DRAGON_CONFIG", cf, 1);
		setenv("DRAGON_TRANSPORT_SECRET", "a secret long enough here",
		       1);
		execl(prog(), prog(), "--node", "0", "--nodes", "2", "--listen",
		      "127.0.0.1:0", arg, (char *)NULL);
		_exit(127);
	}
	close(e[1]);
	close(o[1]);
	out = fdopen(o[0], "r");
	if (fgets(line, sizeof line, out) && !strncmp(line, "listening", 9))
		kill(pid, SIGTERM);
	while (fgets(line, sizeof line, out)) /* its statistics */
		;
	fclose(out);
	while (got + 1 < len && (n = read(e[0], err + got, len - 1 - got)) > 0)
		got += (size_t)n;
	err[got] = 0;
	close(e[0]);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	unlink(cf);
	if (!WIFEXITED(st))
		fprintf(stderr, "dragon-transport ended with status %d: %s\n",
			st, err);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* In a child: the libraries stay out of this process (what they keep
 * at exit is theirs, not a leak of ours). */
static int lib_present(const char *soname)
{
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		void *h = dlopen(soname, RTLD_LAZY | RTLD_LOCAL);

		if (!h)
			fprintf(stderr,
				"%s is absent: its choice is not "
				"checked\n",
				soname);
		_exit(h ? 0 : 1);
	}
	return pid > 0 && waitpid(pid, &st, 0) == pid && st == 0;
}

START_TEST(t_cli_backend_choice)
{
	char err[4096];

	/* nothing recorded: tcp, and the notice once */
	ck_assert_int_eq(run_conf(NULL, NULL, err, sizeof err), 0);
	ck_assert_msg(count(err, notice_first) == 1 &&
			      count(err, notice_last) == 1,
		      "%s", err);
	/* TCP on purpose: no notice */
	ck_assert_int_eq(run_conf("tcp-runtime=True\n", NULL, err, sizeof err),
			 0);
	ck_assert_msg(count(err, notice_first) == 0, "%s", err);
	/* a named backend is not a default: no notice either */
	ck_assert_int_eq(run_conf(NULL, "--backend=tcp", err, sizeof err), 0);
	ck_assert_msg(count(err, notice_first) == 0, "%s", err);
	/* a recorded library that is not there: the path and dlerror() */
	ck_assert_int_eq(run_conf("ofi-runtime-lib=/nonexistent/fabric\n", NULL,
				  err, sizeof err),
			 1);
	ck_assert_msg(strstr(err, "/nonexistent/fabric/libfabric.so.1") &&
			      strstr(err, "cannot open shared object file"),
		      "%s", err);
	ck_assert_int_eq(run_conf("ucx-runtime-lib=/nonexistent/ucx\n",
				  "--backend=ucx", err, sizeof err),
			 1);
	ck_assert_msg(strstr(err, "/nonexistent/ucx/libucp.so.0") &&
			      strstr(err, "cannot open shared object file"),
		      "%s", err);
	/* a recorded fast backend is the default, and no notice is due */
	if (lib_present("libucp.so.0")) {
		/* LeakSanitizer's tracer cannot stop UCX's threads at exit
		 * (it crashes); an ASan build checks this run without it */
		const char *asan = getenv("ASAN_OPTIONS");
		char opts[512];

		snprintf(opts, sizeof opts, "%s%sdetect_leaks=0",
			 asan ? asan : "", asan && *asan ? ":" : "");
		setenv("ASAN_OPTIONS", opts, 1);
		ck_assert_int_eq(run_conf("ucx-runtime-lib=system\n", NULL, err,
					  sizeof err),
				 0);
		ck_assert_msg(count(err, notice_first) == 0, "%s", err);
		if (asan)
			setenv("ASAN_OPTIONS", asan, 1);
		else
			unsetenv("ASAN_OPTIONS");
	}
	if (lib_present("libfabric.so.1")) {
		ck_assert_int_eq(run_conf("ofi-runtime-lib=system\n"
					  "ucx-runtime-lib=/nonexistent\n",
					  "--backend=auto", err, sizeof err),
				 0);
		ck_assert_msg(count(err, notice_first) == 0, "%s", err);
	}
	/* ... and tcp instead only when the user asked for it */
	ck_assert_int_eq(run_conf("ofi-runtime-lib=/nonexistent/fabric\n"
				  "tcp-fallback=True\n",
				  NULL, err, sizeof err),
			 0);
	ck_assert_msg(strstr(err, "/nonexistent/fabric/libfabric.so.1") &&
			      strstr(err, "using tcp instead"),
		      "%s", err);
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
	tcase_add_test(tc, t_cli_backend_choice);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	t_own_instance();
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
