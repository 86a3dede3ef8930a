/* Local services: processes the runtime did not start but was asked to
 * adopt (dlaunch_proc_adopt).
 *
 * A process that forks its own children (the Python zygote forks every
 * 'dragon' process) has the runtime adopt each one, so that they are in the
 * process table like the processes the services started: signalled, ended
 * at teardown, their allocations reclaimed, their status kept for
 * dlaunch_wait.  The services are not their parent and cannot reap them:
 * the parent (the reaper) reaps and reports the status (dlaunch_proc_reaped).
 *
 * The services hold a pidfd of each adopted process, opened while the
 * reaper keeps it unreaped, so a signal never reaches a reused pid.  The
 * pidfd becoming readable says the process ended before the report comes:
 * it no longer counts as running (teardown does not wait for it).  If the
 * reaper has ended without reporting, the status is read from /proc while
 * the process is still a zombie, else recorded as killed by SIGKILL (it
 * died with its parent, or its status went to whoever reaped it).
 */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "svc.h"

#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

/* The status recorded when nobody can tell how an adopted process ended. */
#define UNKNOWN_STATUS SIGKILL

static int pidfd_kill(int pidfd, int signo)
{
	return syscall(SYS_pidfd_send_signal, pidfd, signo, NULL, 0) < 0
		       ? -errno
		       : 0;
}

int svc_proc_kill(svc_proc_t *p, int signo)
{
	if (!p->adopted)
		return kill(p->pid, signo) < 0 ? -errno : 0;
	if (p->gone || p->pidfd < 0)
		return 0;
	return pidfd_kill(p->pidfd, signo);
}

/* Fields 3 (state), 4 (ppid) and 52 (exit_code, the wait status) of
 * /proc/<pid>/stat; exit_code is -1 where the kernel does not show it. */
static int proc_stat(pid_t pid, char *state, pid_t *ppid, int *exit_code)
{
	char path[64], buf[1024], *p, *save = NULL;
	size_t n;
	FILE *f;
	int field = 3;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: skip to the last
	 * ')'. */
	p = strrchr(buf, ')');
	if (!p || p[1] != ' ')
		return -EPROTO;
	*exit_code = -1;
	for (p = strtok_r(p + 2, " \n", &save); p;
	     p = strtok_r(NULL, " \n", &save), field++) {
		if (field == 3)
			*state = p[0];
		else if (field == 4)
			*ppid = (pid_t)atoi(p);
		else if (field == 52)
			*exit_code = atoi(p);
	}
	return field > 4 ? 0 : -EPROTO;
}

static void reply_ok(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
		     bool nowait)
{
	dlaunch__msg_t r;

	if (nowait)
		return;
	dlaunch__msg_init(&r, DLAUNCH_MSG_REPLY, h->req_id, 0);
	dlaunch__svc_reply(s, h->client, h->req_id, &r);
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

void svc_adopt_request(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
		       dlaunch__msg_t *m)
{
	pid_t pid = (pid_t)dlaunch__msg_get_i64(m), ppid = 0;
	svc_client_t *c = dlaunch__client_find(s, h->client);
	svc_proc_t *p, *old = svc_proc_find(s, pid);
	int fd, rc, code;
	char state = 0;
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
	fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0 && errno == ESRCH && nowait) {
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
	rc = fd < 0 ? (errno == ESRCH ? -ECHILD : -errno) : 0;
	if (rc == 0) {
		rc = proc_stat(pid, &state, &ppid, &code);
		if (rc == 0 && ppid != c->pid)
			rc = -ECHILD;
	}
	if (rc) {
		if (fd >= 0)
			close(fd);
		refuse(s, h, nowait, rc,
		       "cannot adopt pid %d: %s (only the parent of a running "
		       "or unreaped process may have it adopted; the caller is "
		       "pid %d)",
		       (int)pid, strerror(-rc), (int)c->pid);
		return;
	}
	p = calloc(1, sizeof *p);
	if (!p) {
		close(fd);
		refuse(s, h, nowait, -ENOMEM,
		       "cannot adopt pid %d: out of memory", (int)pid);
		return;
	}
	/* A kept status of an older process with the same pid. */
	if (old)
		svc_proc_unlink(s, old);
	p->pid = pid;
	p->pidfd = fd;
	p->spawner = c->pid;
	p->reaper = c->pid;
	p->adopted = true;
	p->next = s->procs;
	s->procs = p;
	rc = svc_io_watch(s, fd, pid);
	if (rc) {
		svc_proc_unlink(s, p);
		refuse(s, h, nowait, rc, "cannot watch pid %d: %s", (int)pid,
		       strerror(-rc));
		return;
	}
	dlaunch__log(DLAUNCH_LOG_DEBUG, "adopted pid %d, child of pid %d",
		     (int)pid, (int)c->pid);
	reply_ok(s, h, nowait);
}

/* Record how p ended; nobody has a status to collect any more. */
static void finish(dlaunch__server_t *s, svc_proc_t *p, int wstatus)
{
	p->spawner = 0;
	p->reaper = 0;
	p->gone = false;
	svc_proc_reaped(s, p->pid, wstatus);
}

/* p ended and its reaper is gone: the kernel's word while p is a zombie. */
static void finish_unreported(dlaunch__server_t *s, svc_proc_t *p)
{
	int code = -1, wstatus = UNKNOWN_STATUS;
	pid_t ppid;
	char state;

	if (proc_stat(p->pid, &state, &ppid, &code) == 0 && state == 'Z' &&
	    code >= 0 && pidfd_kill(p->pidfd, 0) == 0)
		wstatus = code;
	finish(s, p, wstatus);
}

void svc_reaped_request(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
			dlaunch__msg_t *m)
{
	pid_t pid = (pid_t)dlaunch__msg_get_i64(m);
	int wstatus = (int)dlaunch__msg_get_i64(m);
	bool nowait = dlaunch__msg_get_u64(m) & DLAUNCH_PROC_F_NOWAIT;
	svc_client_t *c = dlaunch__client_find(s, h->client);
	svc_proc_t *p = svc_proc_find(s, pid);

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
	finish(s, p, wstatus);
	reply_ok(s, h, nowait);
}

static bool alive(pid_t pid)
{
	return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

void svc_adopted_ended(dlaunch__server_t *s, svc_proc_t *p)
{
	struct pollfd pf = {.fd = p->pidfd, .events = POLLIN};

	/* The event may be that of an older process with this pid: only p's
	 * own pidfd says whether p ended. */
	if (!p->adopted || p->ended || p->gone || p->pidfd < 0 ||
	    poll(&pf, 1, 0) != 1)
		return;
	p->gone = true;
	pthread_cond_broadcast(&s->changed);
	if (!alive(p->reaper))
		finish_unreported(s, p);
}

void svc_adopted_orphan(dlaunch__server_t *s, pid_t pid)
{
	svc_proc_t *p;

again:
	for (p = s->procs; p; p = p->next) {
		if (!p->adopted || p->ended || p->reaper != pid)
			continue;
		p->reaper = 0;
		if (p->gone) {
			finish_unreported(s, p); /* may change the table */
			goto again;
		}
	}
}
