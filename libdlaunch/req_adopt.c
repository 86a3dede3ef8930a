/* Local services: processes the runtime did not start but was asked to
 * adopt (dlaunch_proc_adopt), and the reports of their ends
 * (dlaunch_proc_reaped).
 *
 * A process that forks its own children (the Python zygote forks every
 * 'dragon' process) has the runtime adopt each one, so that they are in the
 * process table like the processes the services started: signalled, ended
 * at teardown, their allocations reclaimed, their status kept for
 * dlaunch_wait.  The services are not their parent and cannot reap them:
 * the parent (the reaper) reaps and reports the status.
 *
 * The services hold a pidfd of each adopted process, opened while the
 * reaper keeps it unreaped, so a signal never reaches a reused pid.  The
 * pidfd becoming readable says the process ended before the report comes
 * (ended.c): it no longer counts as running (teardown does not wait for
 * it).
 *
 * The output of an adopted process is forwarded like that of a process
 * the services started (dlaunch_proc_forward): its reaper made the pipes
 * and holds their read ends while it asks, and the services open the same
 * pipes through /proc/<reaper>/fd.  An open(2) there needs no more than
 * the caller's own uid (pidfd_getfd(2) would need ptrace rights, which
 * container seccomp profiles deny), and it makes a reader of the services'
 * own, so the caller's descriptors go when the call returns.
 */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "svc.h"

static void reply_ok(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
		     bool nowait)
{
	if (!nowait)
		dlaunch__svc_reply_status(s, h->client, h->req_id, 0);
}

/* A request failed: tell the caller, or (DLAUNCH_PROC_F_NOWAIT: nobody
 * waits for an answer) the log. */
static void __attribute__((format(printf, 5, 6)))
refuse(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h, bool nowait, int code,
       const char *fmt, ...)
{
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	if (nowait)
		dlaunch__log(DLAUNCH_LOG_WARNING, "%s", why);
	else
		dlaunch__svc_reply_err(s, h->client, h->req_id, code, "%s",
				       why);
}

/* A pidfd of pid, which must be a running or unreaped child of caller;
 * -ESRCH when pid is gone already. */
static int open_child(pid_t pid, pid_t caller, int *fd_out)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0), rc, code;
	pid_t ppid = 0;
	char state = 0;

	rc = fd < 0 ? -errno : 0;
	if (rc == 0) {
		rc = dlaunch__proc_stat(pid, &state, &ppid, &code);
		if (rc == 0 && ppid != caller)
			rc = -ECHILD;
	}
	if (rc) {
		if (fd >= 0)
			close(fd);
		return rc;
	}
	*fd_out = fd;
	return 0;
}

/* ADOPT: pid, 0, flags. */
static void adopt_request(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
			  dlaunch__msg_t *m)
{
	pid_t pid = (pid_t)dlaunch__msg_get_i64(m);
	dlaunch__client_t *c = dlaunch__client_find(s, h->client);
	dlaunch__proc_t *p, *old = dlaunch__proc_find(s, pid);
	int fd, rc;
	bool nowait;

	(void)dlaunch__msg_get_i64(m);
	nowait = dlaunch__msg_get_u64(m) & DLAUNCH_PROC_F_NOWAIT;
	if (m->err || !c)
		return;
	if (s->stopping) {
		/* Expected, not worth a warning, for an unanswered request: a
		 * zygote forks its next spare while the runtime stops, and the
		 * stop ends it with the zygote anyway. */
		if (nowait)
			dlaunch__log(DLAUNCH_LOG_DEBUG,
				     "runtime %s is shutting down: pid %d not "
				     "adopted",
				     s->instance, (int)pid);
		else
			refuse(s, h, false, -DLAUNCH_E_CLOSED,
			       "runtime %s is shutting down: no new processes",
			       s->instance);
		return;
	}
	if (old && !old->ended) {
		refuse(s, h, nowait, -EEXIST,
		       "pid %d is already a process of runtime %s", (int)pid,
		       s->instance);
		return;
	}
	rc = open_child(pid, c->pid, &fd);
	if (rc == -ESRCH && nowait) {
		/* An unanswered request can arrive after the caller has
		 * already reaped the process (it ran and ended in the
		 * meantime); its dlaunch_proc_reaped follows and is dropped
		 * the same way.  Nothing is left to manage. */
		dlaunch__log(DLAUNCH_LOG_DEBUG,
			     "pid %d ended and was reaped before its adoption "
			     "arrived",
			     (int)pid);
		return;
	}
	if (rc == -ESRCH)
		rc = -ECHILD;
	if (rc) {
		refuse(s, h, nowait, rc,
		       "cannot adopt pid %d: %s (only the parent of a running "
		       "or unreaped process may have it adopted; the caller is "
		       "pid %d)",
		       (int)pid, strerror(-rc), (int)c->pid);
		return;
	}
	/* A kept status of an older process with the same pid goes. */
	rc = dlaunch__proc_add(s, pid, fd, c->pid, c->pid, &p);
	if (rc) {
		close(fd);
		refuse(s, h, nowait, -ENOMEM,
		       "cannot adopt pid %d: out of memory", (int)pid);
		return;
	}
	rc = dlaunch__io_watch(s, fd, pid);
	if (rc) {
		dlaunch__proc_unlink(s, p);
		refuse(s, h, nowait, rc, "cannot watch pid %d: %s", (int)pid,
		       strerror(-rc));
		return;
	}
	dlaunch__log(DLAUNCH_LOG_DEBUG, "adopted pid %d, child of pid %d",
		     (int)pid, (int)c->pid);
	reply_ok(s, h, nowait);
}
DLAUNCH_SVC_HANDLER(DLAUNCH_MSG_ADOPT, adopt_request)

/* REAPED: pid, wait status, flags. */
static void reaped_request(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
			   dlaunch__msg_t *m)
{
	pid_t pid = (pid_t)dlaunch__msg_get_i64(m);
	int wstatus = (int)dlaunch__msg_get_i64(m);
	bool nowait = dlaunch__msg_get_u64(m) & DLAUNCH_PROC_F_NOWAIT;
	dlaunch__client_t *c = dlaunch__client_find(s, h->client);
	dlaunch__proc_t *p = dlaunch__proc_find(s, pid);

	if (m->err || !c)
		return;
	if (!p && nowait) {
		/* Its adoption arrived after the reap (see above). */
		dlaunch__log(DLAUNCH_LOG_DEBUG, "pid %d reaped, never adopted",
			     (int)pid);
		return;
	}
	if (!p || !p->adopted || p->ended || p->reaper != c->pid) {
		refuse(s, h, nowait, -DLAUNCH_E_NOPROC,
		       "pid %d is not a running process adopted by pid %d in "
		       "runtime %s",
		       (int)pid, (int)c->pid, s->instance);
		return;
	}
	dlaunch__svc_adopted_finish(s, p, wstatus);
	reply_ok(s, h, nowait);
}
DLAUNCH_SVC_HANDLER(DLAUNCH_MSG_REAPED, reaped_request)

/* The pipe behind descriptor fd of process pid, opened for reading. */
static int open_pipe(pid_t pid, int fd, int *fd_out)
{
	char path[64];
	struct stat st;
	int nfd;

	snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)pid, fd);
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? -EBADF : -errno;
	nfd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (nfd < 0)
		return -errno;
	if (fstat(nfd, &st) < 0 || !S_ISFIFO(st.st_mode)) {
		close(nfd);
		return -EINVAL;
	}
	*fd_out = nfd;
	return 0;
}

/* FORWARD: pid, the caller's stdout and stderr descriptors (-1: none). */
static void forward_request(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
			    dlaunch__msg_t *m)
{
	pid_t pid = (pid_t)dlaunch__msg_get_i64(m);
	int fds[3] = {-1, -1, -1}, own[3] = {-1, -1, -1}, rc = 0;
	dlaunch__client_t *c = dlaunch__client_find(s, h->client);
	dlaunch__proc_t *p = dlaunch__proc_find(s, pid);

	fds[1] = (int)dlaunch__msg_get_i64(m);
	fds[2] = (int)dlaunch__msg_get_i64(m);
	if (m->err || !c)
		return;
	if (s->stopping) {
		refuse(s, h, false, -DLAUNCH_E_CLOSED,
		       "runtime %s is shutting down: no output forwarded",
		       s->instance);
		return;
	}
	if (!p || !p->adopted || p->reaper != c->pid) {
		refuse(s, h, false, -DLAUNCH_E_NOPROC,
		       "pid %d is not a process adopted by pid %d in runtime "
		       "%s",
		       (int)pid, (int)c->pid, s->instance);
		return;
	}
	for (int i = 1; i < 3 && rc == 0; i++)
		if (fds[i] >= 0)
			rc = open_pipe(c->pid, fds[i], &own[i]);
	for (int i = 1; i < 3 && rc == 0; i++) {
		if (own[i] < 0)
			continue;
		rc = dlaunch__io_forward(s, own[i], i, pid);
		if (rc == 0)
			dlaunch__proc_stream_opened(p);
	}
	for (int i = 1; i < 3; i++)
		if (own[i] >= 0)
			close(own[i]);
	if (rc) {
		refuse(s, h, false, rc,
		       "cannot forward the output of pid %d: %s (give the read "
		       "ends of pipes, open in the caller)",
		       (int)pid, strerror(-rc));
		return;
	}
	reply_ok(s, h, false);
}
DLAUNCH_SVC_HANDLER(DLAUNCH_MSG_FORWARD, forward_request)
