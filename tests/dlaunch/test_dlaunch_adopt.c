/* libdlaunch: processes a client forked itself and had the runtime adopt
 * (dlaunch_proc_adopt, dlaunch_proc_reaped): signalled, waited for and
 * ended at teardown like spawned ones, while the client stays their
 * reaper; their output forwarded like theirs (dlaunch_proc_forward). */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dragon/dlaunch.h>
#include "dlaunch_test.h"

/* A child that waits for a byte on fd and exits with it as its code (or
 * is killed first). */
static pid_t fork_waiter(int *wfd)
{
	int p[2];
	pid_t pid;

	sigset_t term, old;

	ck_assert_int_eq(pipe(p), 0);
	/* The test runner's SIGTERM handler is not the child's: a signal
	 * waits, blocked, until the child has the default action. */
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigprocmask(SIG_BLOCK, &term, &old);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		unsigned char code = 0;
		signal(SIGTERM, SIG_DFL);
		sigprocmask(SIG_UNBLOCK, &term, NULL);
		close(p[1]);
		if (read(p[0], &code, 1) != 1)
			_exit(100);
		_exit(code);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(p[0]);
	*wfd = p[1];
	return pid;
}

/* Adoption needs pidfd_open (Linux 5.3; valgrind does not have it). */
static bool have_pidfd(void)
{
	int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

/* Without pidfd_open adoption is refused with -ENOSYS: check that, stop
 * the runtime and skip the rest (no child is forked: under valgrind a
 * forked copy of the services' threads reports their buffers lost).
 * Returns true when the test may go on. */
static bool adoption_possible(dlaunch_t *rt)
{
	if (have_pidfd())
		return true;
	ck_assert_int_eq(dlaunch_proc_adopt(rt, getpid(), 0), -ENOSYS);
	ck_assert_int_eq(dlaunch_runtime_stop(rt, SEC), 0);
	return false;
}

static int reap(pid_t pid)
{
	int st = 0;
	pid_t r;

	do
		r = waitpid(pid, &st, 0);
	while (r < 0 && errno == EINTR);
	ck_assert_msg(r == pid, "waitpid(%d): %s", (int)pid, strerror(errno));
	return st;
}

/* End a waiter from fork_waiter (with code, or code -1: by closing its
 * pipe, which makes it exit with 100), reap it, report the reap with flags
 * and check that the runtime gives its status. */
static void end_reap_and_report(dlaunch_t *rt, pid_t pid, int wfd, int code,
				uint64_t flags)
{
	unsigned char c = (unsigned char)code;
	dlaunch_status_t st;
	int ws;

	if (code >= 0)
		ck_assert_int_eq(write(wfd, &c, 1), 1);
	close(wfd);
	ws = reap(pid);
	ck_assert_int_eq(dlaunch_proc_reaped(rt, pid, ws, flags), 0);
	ck_assert_int_eq(dlaunch_wait(rt, pid, 10 * SEC, &st), 0);
	ck_assert_int_eq(dlaunch_status_code(&st), code >= 0 ? code : 100);
}

START_TEST(adopted_child_is_waited_for)
{
	dlaunch_t *rt = dlt_start(0);
	dlaunch_status_t st;
	unsigned char code = 7;
	int wfd, fd, ws;
	struct pollfd pf;
	pid_t pid;

	if (!adoption_possible(rt))
		return;
	pid = fork_waiter(&wfd);
	/* Unknown until adopted. */
	ck_assert_int_eq(dlaunch_wait(rt, pid, 0, &st), -DLAUNCH_E_NOPROC);
	ck_assert_int_eq(dlaunch_proc_adopt(rt, pid, 0), 0);
	ck_assert_int_eq(dlaunch_proc_adopt(rt, pid, 0), -EEXIST);
	ck_assert_int_eq(dlaunch_wait(rt, pid, 0, &st), -EAGAIN);
	ck_assert_int_eq(dlaunch_proc_fd(rt, pid, &fd), 0);
	ck_assert_int_eq(write(wfd, &code, 1), 1);
	pf.fd = fd;
	pf.events = POLLIN;
	ck_assert_int_eq(poll(&pf, 1, 30000), 1);
	close(fd);
	/* The services (threads of this process) saw it end and must have
	 * left the reaping to us. */
	usleep(50000);
	ws = reap(pid);
	ck_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == 7);
	ck_assert_int_eq(dlaunch_proc_reaped(rt, pid, ws, 0), 0);
	ck_assert_int_eq(dlaunch_proc_reaped(rt, pid, ws, 0),
			 -DLAUNCH_E_NOPROC);
	ck_assert_int_eq(dlaunch_wait(rt, pid, 10 * SEC, &st), 0);
	ck_assert_int_eq(dlaunch_status_code(&st), 7);
	close(wfd);
	ck_assert_int_eq(dlaunch_runtime_stop(rt, SEC), 0);
}
END_TEST

START_TEST(adopted_child_is_signalled_and_waiters_answered)
{
	dlaunch_t *rt = dlt_start(0);
	dlaunch_status_t st;
	int wfd, ws;
	pid_t pid;

	if (!adoption_possible(rt))
		return;
	pid = fork_waiter(&wfd);
	ck_assert_int_eq(dlaunch_proc_adopt(rt, pid, 0), 0);
	ck_assert_int_eq(dlaunch_signal(rt, pid, SIGTERM), 0);
	ws = reap(pid);
	ck_assert(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGTERM);
	ck_assert_int_eq(dlaunch_proc_reaped(rt, pid, ws, 0), 0);
	ck_assert_int_eq(dlaunch_wait(rt, pid, 10 * SEC, &st), 0);
	ck_assert_int_eq(st.signo, SIGTERM);
	ck_assert_int_eq(dlaunch_status_code(&st), -SIGTERM);
	/* Ended: signals are no longer sent (the pid may be reused). */
	ck_assert_int_eq(dlaunch_signal(rt, pid, SIGKILL), 0);
	close(wfd);
	ck_assert_int_eq(dlaunch_runtime_stop(rt, SEC), 0);
}
END_TEST

START_TEST(requests_that_do_not_wait)
{
	dlaunch_t *rt = dlt_start(0);
	dlaunch_status_t st;
	int wfd;
	pid_t pid;

	if (!adoption_possible(rt))
		return;
	pid = fork_waiter(&wfd);
	/* Not answered, but handled before the requests sent after it. */
	ck_assert_int_eq(dlaunch_proc_adopt(rt, pid, DLAUNCH_PROC_F_NOWAIT), 0);
	ck_assert_int_eq(dlaunch_wait(rt, pid, 0, &st), -EAGAIN);
	/* A refused one is logged, not returned. */
	ck_assert_int_eq(
		dlaunch_proc_adopt(rt, getppid(), DLAUNCH_PROC_F_NOWAIT), 0);
	ck_assert_int_eq(dlaunch_wait(rt, getppid(), 0, &st),
			 -DLAUNCH_E_NOPROC);
	ck_assert_int_eq(dlaunch_proc_adopt(rt, pid, 2), -EINVAL);
	end_reap_and_report(rt, pid, wfd, -1, DLAUNCH_PROC_F_NOWAIT);
	ck_assert_int_eq(dlaunch_runtime_stop(rt, SEC), 0);
}
END_TEST

/* A zygote's unanswered adoption can reach the services after the child
 * has run its course and been reaped: it is dropped quietly, and so is its
 * reaped report; nothing is left of the pid and nothing is logged. */
START_TEST(an_adoption_after_the_reap_is_dropped_quietly)
{
	dlaunch_t *rt = dlt_start(0);
	dlaunch_status_t st;
	char log[4096] = "";
	FILE *err = tmpfile();
	int wfd, saved, ws;
	size_t n;
	pid_t pid;

	if (!adoption_possible(rt))
		return;
	ck_assert_ptr_nonnull(err);
	pid = fork_waiter(&wfd);
	close(wfd);
	ws = reap(pid);
	/* The services log to this process's stderr. */
	fflush(stderr);
	saved = dup(2);
	ck_assert_int_ge(saved, 0);
	ck_assert_int_ge(dup2(fileno(err), 2), 0);
	ck_assert_int_eq(dlaunch_proc_adopt(rt, pid, DLAUNCH_PROC_F_NOWAIT), 0);
	ck_assert_int_eq(
		dlaunch_proc_reaped(rt, pid, ws, DLAUNCH_PROC_F_NOWAIT), 0);
	/* Handled after both requests. */
	ck_assert_int_eq(dlaunch_wait(rt, pid, 0, &st), -DLAUNCH_E_NOPROC);
	/* A refused unanswered request of another kind is still logged. */
	ck_assert_int_eq(
		dlaunch_proc_adopt(rt, getppid(), DLAUNCH_PROC_F_NOWAIT), 0);
	ck_assert_int_eq(dlaunch_wait(rt, getppid(), 0, &st),
			 -DLAUNCH_E_NOPROC);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(err);
	n = fread(log, 1, sizeof log - 1, err);
	log[n] = 0;
	fclose(err);
	ck_assert_msg(!strstr(log, "adopt pid") ||
			      strstr(log, "cannot adopt pid"),
		      "log: %s", log);
	{
		char mine[64];

		snprintf(mine, sizeof mine, "pid %d", (int)pid);
		ck_assert_msg(!strstr(log, mine),
			      "the reaped pid was logged: %s", log);
	}
	ck_assert_msg(strstr(log, "cannot adopt pid"),
		      "the refused adoption was not logged: %s", log);
	/* The runtime goes on adopting. */
	pid = fork_waiter(&wfd);
	ck_assert_int_eq(dlaunch_proc_adopt(rt, pid, 0), 0);
	end_reap_and_report(rt, pid, wfd, 7, 0);
	ck_assert_int_eq(dlaunch_runtime_stop(rt, SEC), 0);
}
END_TEST

START_TEST(only_the_parent_may_adopt)
{
	dlaunch_t *rt = dlt_start(0);
	int wfd;
	pid_t pid;

	if (!adoption_possible(rt))
		return;
	pid = fork_waiter(&wfd);
	ck_assert_int_eq(dlaunch_proc_adopt(rt, getppid(), 0), -ECHILD);
	ck_assert_int_eq(dlaunch_proc_adopt(rt, getpid(), 0), -ECHILD);
	ck_assert_int_eq(dlaunch_proc_adopt(rt, 0, 0), -EINVAL);
	ck_assert_int_eq(dlaunch_proc_reaped(rt, pid, 0, 0), -DLAUNCH_E_NOPROC);
	close(wfd);
	reap(pid);
	/* Reaped: no longer a child of ours. */
	ck_assert_int_eq(dlaunch_proc_adopt(rt, pid, 0), -ECHILD);
	ck_assert_int_eq(dlaunch_runtime_stop(rt, SEC), 0);
}
END_TEST

START_TEST(teardown_ends_adopted_children)
{
	dlaunch_t *rt = dlt_start(0);
	struct timespec t0, t1;
	int wfd[4], ws;
	pid_t pid[4];

	if (!adoption_possible(rt))
		return;
	for (int i = 0; i < 4; i++) {
		pid[i] = fork_waiter(&wfd[i]);
		ck_assert_int_eq(dlaunch_proc_adopt(rt, pid[i], 0), 0);
	}
	/* Nobody reports (as when the reaper is busy ending too): the stop
	 * must not wait for reports, only for the processes to end. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_int_eq(dlaunch_runtime_stop(rt, 20 * SEC), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 15);
	for (int i = 0; i < 4; i++) {
		ws = reap(pid[i]);
		ck_assert(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGTERM);
		close(wfd[i]);
	}
}
END_TEST

START_TEST(reaper_gone_without_report)
{
	/* R attaches, forks G, has it adopted and exits without reporting:
	 * G is still signalled through the runtime and its end recorded. */
	dlaunch_t *rt = dlt_start(DLAUNCH_RT_F_SETENV);
	dlaunch_status_t st;
	sigset_t term;
	int p[2], ws;
	pid_t r, g = 0;

	if (!adoption_possible(rt))
		return;
	ck_assert_int_eq(pipe(p), 0);
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigprocmask(SIG_BLOCK, &term, NULL);
	r = fork();
	ck_assert_int_ge(r, 0);
	if (r == 0) {
		dlaunch_t *h;
		pid_t gp;
		close(p[0]);
		if (dlaunch_attach(NULL, &h))
			_exit(2);
		gp = fork();
		if (gp == 0) {
			signal(SIGTERM, SIG_DFL);
			sigprocmask(SIG_UNBLOCK, &term, NULL);
			pause();
			_exit(0);
		}
		if (dlaunch_proc_adopt(h, gp, 0))
			_exit(3);
		if (write(p[1], &gp, sizeof gp) != sizeof gp)
			_exit(4);
		_exit(0);
	}
	sigprocmask(SIG_UNBLOCK, &term, NULL);
	close(p[1]);
	ck_assert_int_eq(read(p[0], &g, sizeof g), (ssize_t)sizeof g);
	close(p[0]);
	ws = reap(r);
	ck_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
	ck_assert_int_eq(dlaunch_wait(rt, g, 0, &st), -EAGAIN);
	ck_assert_int_eq(dlaunch_signal(rt, g, SIGKILL), 0);
	ck_assert_int_eq(dlaunch_wait(rt, g, 30 * SEC, &st), 0);
	ck_assert_int_eq(st.signo, SIGKILL);
	ck_assert_int_eq(dlaunch_runtime_stop(rt, SEC), 0);
}
END_TEST

/* The whole of file path (at most len - 1 bytes), as a string. */
static char *slurp(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	ck_assert_int_ge(fd, 0);
	n = read(fd, buf, len - 1);
	close(fd);
	ck_assert_int_ge(n, 0);
	buf[n] = '\0';
	return buf;
}

/* A child with pipes of its own as stdout and stderr: it waits for a byte
 * on go, writes (its last line without a newline), leaves a grandchild
 * that writes to the same stdout and then holds both pipes open (its pid
 * on gpid), and exits. */
static pid_t fork_writer(int out_w, int err_w, int go, int gpid)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char c;
		pid_t g;
		dup2(out_w, 1);
		dup2(err_w, 2);
		if (read(go, &c, 1) != 1)
			_exit(100);
		if (write(1, "a", 1) != 1 || write(1, "b\nta", 4) != 4 ||
		    write(2, "err", 3) != 3 || write(1, "il", 2) != 2)
			_exit(101);
		g = fork();
		if (g == 0) {
			/* Its pid once it has written. */
			g = getpid();
			if (write(1, "-grandchild", 11) != 11 ||
			    write(gpid, &g, sizeof g) != sizeof g)
				_exit(1);
			close(gpid);
			pause();
			_exit(0);
		}
		_exit(g > 0 ? 0 : 102);
	}
	return pid;
}

START_TEST(adopted_child_output_is_forwarded)
{
	char dir[] = "/tmp/dlt-forward.XXXXXX", out[64], err[64], buf[256];
	int o[2], e[2], go[2], gp[2], fd, ws;
	dlaunch_t *rt;
	pid_t pid, g = 0;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(out, sizeof out, "%s/out", dir);
	snprintf(err, sizeof err, "%s/err", dir);
	/* The runtime's own stdout and stderr, where forwarded lines go. */
	fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 1);
	close(fd);
	fd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 2);
	close(fd);
	rt = dlt_start(0);
	if (!adoption_possible(rt))
		return;
	ck_assert_int_eq(pipe(o), 0);
	ck_assert_int_eq(pipe(e), 0);
	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(gp), 0);
	pid = fork_writer(o[1], e[1], go[0], gp[1]);
	close(o[1]);
	close(e[1]);
	close(go[0]);
	close(gp[1]);
	/* Not adopted yet; not pipes; not open. */
	ck_assert_int_eq(dlaunch_proc_forward(rt, pid, o[0], e[0]),
			 -DLAUNCH_E_NOPROC);
	ck_assert_int_eq(dlaunch_proc_adopt(rt, pid, DLAUNCH_PROC_F_NOWAIT), 0);
	fd = open(out, O_RDONLY);
	ck_assert_int_eq(dlaunch_proc_forward(rt, pid, fd, -1), -EINVAL);
	close(fd);
	ck_assert_int_eq(dlaunch_proc_forward(rt, pid, 999, -1), -EBADF);
	ck_assert_int_eq(dlaunch_proc_forward(rt, pid, o[0], e[0]), 0);
	close(o[0]);
	close(e[0]);
	ck_assert_int_eq(write(go[1], "x", 1), 1);
	close(go[1]);
	ck_assert_int_eq(read(gp[0], &g, sizeof g), (ssize_t)sizeof g);
	close(gp[0]);
	ws = reap(pid);
	ck_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
	ck_assert_int_eq(dlaunch_proc_reaped(rt, pid, ws, 0), 0);
	/* The grandchild still holds the pipes: the stop passes on what
	 * they hold and does not wait for their end. */
	ck_assert_int_eq(dlaunch_runtime_stop(rt, 10 * SEC), 0);
	kill(g, SIGKILL);
	slurp(out, buf, sizeof buf);
	/* The grandchild writes to the same pipe, after the child's last,
	 * unended line; the stop ends the line. */
	ck_assert_str_eq(slurp(out, buf, sizeof buf), "ab\ntail-grandchild\n");
	ck_assert_str_eq(slurp(err, buf, sizeof buf), "err\n");
	unlink(out);
	unlink(err);
	rmdir(dir);
}
END_TEST

DLT_MAIN("dlaunch_adopt", 120, adopted_child_is_waited_for,
	 adopted_child_is_signalled_and_waiters_answered,
	 only_the_parent_may_adopt, requests_that_do_not_wait,
	 an_adoption_after_the_reap_is_dropped_quietly,
	 teardown_ends_adopted_children, reaper_gone_without_report,
	 adopted_child_output_is_forwarded)
