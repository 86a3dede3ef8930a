/* dragon: run a program as the head process of a single-node runtime.
 *
 * The launcher is a thin user of the public API: it starts an embedded
 * runtime with DLAUNCH_RT_F_ADOPT (so orphans of the head are ended too),
 * starts the head through the services, waits on the head's pidfd and on a
 * signalfd, and tears everything down — pools included — on every way out
 * but SIGKILL of the launcher itself.  That one is covered by a watchdog,
 * `dragon-cleanup --when-gone`, started before anything else.
 */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>
#include "launcher.h"

/* How long the head and its processes get after a SIGTERM/SIGINT (or the
 * head's end) before whatever remains is killed. */
#define TEARDOWN_NS (5ull * 1000000000ull)

static int block_signals(sigset_t *set)
{
	static const int sigs[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT};

	sigemptyset(set);
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		sigaddset(set, sigs[i]);
	/* Forwarded output to a closed stdout must not kill the launcher. */
	signal(SIGPIPE, SIG_IGN);
	return pthread_sigmask(SIG_BLOCK, set, NULL);
}

static int start_head(dlaunch_t *rt, const struct dragon_opts *o,
		      pid_t *pid_out)
{
	dlaunch_spawn_attr_t a = {.field_mask = DLAUNCH_SPAWN_ATTR_STDIO |
						DLAUNCH_SPAWN_ATTR_FLAGS,
				  .stdio = {DLAUNCH_STDIO_INHERIT,
					    DLAUNCH_STDIO_FORWARD,
					    DLAUNCH_STDIO_FORWARD},
				  .flags = DLAUNCH_SPAWN_F_SEARCH_PATH};
	size_t n = strlen(o->argv[0]);
	char **argv = calloc((size_t)o->argc + 2, sizeof *argv);
	const char *path = o->argv[0];
	int k = 0, rc;

	if (!argv)
		return -ENOMEM;
	if (n > 3 && strcmp(o->argv[0] + n - 3, ".py") == 0) {
		path = DRAGON_PYTHON;
		argv[k++] = (char *)DRAGON_PYTHON;
	}
	for (int i = 0; i < o->argc; i++)
		argv[k++] = o->argv[i];
	rc = dlaunch_spawn(rt, path, argv, &a, pid_out);
	free(argv);
	return rc;
}

static void report(int wstatus_code, const dlaunch_status_t *st)
{
	char line[160];
	int n;

	if (st->exited)
		n = snprintf(line, sizeof line,
			     "+++ head proc exited, code %d\n", wstatus_code);
	else
		n = snprintf(line, sizeof line,
			     "+++ head proc exited, code %d (killed by signal "
			     "%d, SIG%s)\n",
			     wstatus_code, st->signo,
			     sigabbrev_np(st->signo) ? sigabbrev_np(st->signo)
						     : "?");
	if (write(1, line, (size_t)n) < 0)
		return;
}

/* The first SIGINT/SIGTERM goes to the head (a terminal's Ctrl-C already
 * reached it: the whole foreground group gets it); the teardown deadline
 * starts.  A second one ends everything now. */
static void on_signal(dlaunch_t *rt, pid_t head, int sfd, int *nsig,
		      struct timespec *deadline)
{
	struct signalfd_siginfo si;

	while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
		if (si.ssi_signo == SIGCHLD)
			continue;
		if (++*nsig > 1) {
			deadline->tv_sec = 0;
			continue;
		}
		if (!(si.ssi_pid == 0 &&
		      (si.ssi_signo == SIGINT || si.ssi_signo == SIGQUIT)))
			dlaunch_signal(rt, head, (int)si.ssi_signo);
		clock_gettime(CLOCK_MONOTONIC, deadline);
		deadline->tv_sec += (time_t)(TEARDOWN_NS / 1000000000u);
	}
}

static int ms_left(const struct timespec *d)
{
	struct timespec now;
	long long ms;

	if (d->tv_sec < 0)
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (long long)(d->tv_sec - now.tv_sec) * 1000 +
	     (d->tv_nsec - now.tv_nsec) / 1000000;
	return ms < 0 ? 0 : (int)ms;
}

/* Wait for the head to end (or the teardown deadline); returns its status
 * code, or -1 if the deadline came first. */
static int run_head(dlaunch_t *rt, pid_t head, int sfd, dlaunch_status_t *st)
{
	struct timespec deadline = {.tv_sec = -1};
	int pfd, nsig = 0, rc;

	rc = dlaunch_proc_fd(rt, head, &pfd);
	if (rc)
		return rc;
	for (;;) {
		struct pollfd p[2] = {{.fd = pfd, .events = POLLIN},
				      {.fd = sfd, .events = POLLIN}};
		int t = ms_left(&deadline);
		if (t == 0)
			break;
		if (poll(p, 2, t) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			on_signal(rt, head, sfd, &nsig, &deadline);
		if (p[0].revents)
			break;
	}
	close(pfd);
	if (ms_left(&deadline) == 0)
		dlaunch_signal(rt, head, SIGKILL);
	return dlaunch_wait(rt, head, TEARDOWN_NS, st);
}

/* --label and its kin on one node: node 0, this host. */
static char host[256];
static int label_mode;

static void on_output(void *arg, pid_t pid, int fd, const char *data,
		      size_t len)
{
	(void)arg;
	dragon_output_write(label_mode, fd, 0, host, pid, data, len);
}

/* The launcher names the instance itself, so that the watchdog knows
 * which segments are its own before the runtime has answered. */
static const char *make_instance(char *buf, size_t len)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(buf, len, "rt%dx%04lx", (int)getpid(),
		 (unsigned long)(ts.tv_nsec & 0xffff));
	return buf;
}

/* Enter a start-up phase under the watchdog.  DRAGON_TEST_STALL_PHASE
 * names a phase that then hangs, so that tests can see a timeout. */
static void phase(const char *name, double secs)
{
	const char *stall = getenv("DRAGON_TEST_STALL_PHASE");

	dragon_watchdog_arm(name, secs);
	if (stall && strcmp(stall, name) == 0)
		for (;;)
			pause();
}

int main(int argc, char **argv)
{
	struct dragon_opts o;
	dlaunch_runtime_attr_t ra = {0};
	dlaunch_status_t st = {0};
	sigset_t set;
	char inst[64];
	dlaunch_t *rt;
	pid_t head;
	int rc, sfd, code;

	rc = dragon_parse_opts(argc, argv, &o);
	if (rc >= 0)
		return rc;
	if (block_signals(&set) ||
	    (sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK)) < 0)
		return dragon_fail("start-up phase 'signals'", strerror(errno));
	make_instance(inst, sizeof inst);
	/* Inside an allocation: one backend per node (dragon_multi.c). */
	rc = dragon_multi_nodes(&o);
	if (rc < 0)
		return 2;
	if (rc > 0)
		return dragon_multi_run(&o, (unsigned)rc, sfd, inst);
	if (o.netprefix && dragon_check_netprefix(o.netprefix) >= 0)
		return 1;
	ra.field_mask = DLAUNCH_RT_ATTR_FLAGS | DLAUNCH_RT_ATTR_LOG_LEVEL |
			DLAUNCH_RT_ATTR_LOG_FD | DLAUNCH_RT_ATTR_INSTANCE |
			DLAUNCH_RT_ATTR_TIMEOUT;
	ra.flags = DLAUNCH_RT_F_ADOPT;
	if (o.label) {
		label_mode = o.label;
		gethostname(host, sizeof host - 1);
		ra.field_mask |= DLAUNCH_RT_ATTR_OUTPUT;
		ra.output = on_output;
	}
	ra.log_level = o.log_level;
	ra.instance = inst;
	/* The watchdog first: from the moment the log exists, a SIGKILL of
	 * the launcher leaves nothing behind. */
	rc = dragon_guard_start(inst,
				dragon_log_path(&o) == 0 ? o.log_path : NULL,
				o.log_level >= DLAUNCH_LOG_DEBUG);
	ra.log_fd = dragon_open_log(&o);
	if (rc)
		fprintf(stderr,
			"dragon: warning: no watchdog (dragon-cleanup "
			"--when-gone): %s; if the launcher is killed, "
			"`dragon-cleanup --instance %s` ends what it "
			"leaves\n",
			rc == -ENOENT ? "dragon-cleanup is not beside the "
					"launcher (DRAGON_CLEANUP_PROGRAM "
					"names it)"
				      : strerror(-rc),
			inst);
	ra.startup_timeout_ns = (uint64_t)(o.timeout * 1e9);
	if ((rc = dragon_watchdog_start(inst)))
		return dragon_fail("start-up phase 'watchdog'", strerror(-rc));
	/* The runtime times each of its four phases itself; the watchdog
	 * only catches a call that never returns. */
	phase("runtime (default pool, infrastructure, services)",
	      4 * o.timeout);
	rc = dlaunch_runtime_start(&ra, &rt);
	dragon_watchdog_disarm();
	if (rc)
		return dragon_fail("start-up", dlaunch_errmsg());
	phase("head process", o.timeout);
	rc = start_head(rt, &o, &head);
	dragon_watchdog_disarm();
	if (rc) {
		dlaunch_runtime_stop(rt, 0);
		dragon_fail("start-up phase 'head process'", dlaunch_errmsg());
		return rc == -ENOENT ? 127 : 126;
	}
	rc = run_head(rt, head, sfd, &st);
	dlaunch_runtime_stop(rt, TEARDOWN_NS);
	if (rc) {
		dragon_fail("head process", dlaunch_errmsg());
		return 1;
	}
	code = st.exited ? st.code : 128 + st.signo;
	report(code, &st);
	dragon_close_log(&o);
	return code;
}
