/* Local services: how processes end and who learns it.
 *
 * A process is reaped by the I/O thread (its pidfd became readable, or,
 * without pidfd_open, a periodic check found it gone; in the launcher also
 * SIGCHLD).  Its record then holds the status (proctab.c), the waiters
 * parked on it are answered, and what the process held goes with it: its
 * allocations in the runtime's pools, its conversations, its say over the
 * processes it started or adopted.  Later waits are answered from the
 * record (req_proc.c).
 *
 * An adopted process is its reaper's to reap (req_adopt.c): the pidfd
 * becoming readable says only that it ended.  If the reaper has ended
 * without reporting, the status is read from /proc while the process is
 * still a zombie, else recorded as killed by SIGKILL (it died with its
 * parent, or its status went to whoever reaped it).
 */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "svc.h"

/* The status recorded when nobody can tell how an adopted process ended. */
#define UNKNOWN_STATUS SIGKILL

int dlaunch__proc_stat(pid_t pid, char *state, pid_t *ppid, int *exit_code)
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

#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

/* The process behind pidfd still exists (as a zombie, here). */
static bool pidfd_alive(int pidfd)
{
	return syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) == 0;
}

/* p ended and its reaper is gone: the kernel's word while p is a zombie. */
static void finish_unreported(dlaunch__server_t *s, dlaunch__proc_t *p)
{
	int code = -1, wstatus = UNKNOWN_STATUS;
	pid_t ppid;
	char state;

	if (dlaunch__proc_stat(p->pid, &state, &ppid, &code) == 0 &&
	    state == 'Z' && code >= 0 && pidfd_alive(p->pidfd))
		wstatus = code;
	dlaunch__svc_adopted_finish(s, p, wstatus);
}

/* What pid held goes: the pools give back its allocations, its
 * conversations go, the processes it started lose their spawner and the
 * ones it adopted their reaper. */
static void forget_pid(dlaunch__server_t *s, pid_t pid, size_t *nfreed)
{
	dlaunch__proc_t *p;

	dlaunch__registry_reclaim(s, pid, nfreed);
	dlaunch__client_forget_pid(s, pid);
	dlaunch__client_release_held(s, pid);
	/* Finishing one may change the table: ask again after each. */
	while ((p = dlaunch__proc_reaper_gone(s, pid)))
		finish_unreported(s, p);
	dlaunch__proc_spawner_gone(s, pid);
}

void dlaunch__svc_reaped(dlaunch__server_t *s, pid_t pid, int wstatus)
{
	dlaunch__proc_t *p = dlaunch__proc_find(s, pid);
	dlaunch__waiter_t *w;
	size_t nfreed = 0;

	if (p && p->ended)
		p = NULL; /* an older record of a reused pid */
	forget_pid(s, pid, &nfreed);
	if (p) {
		dlaunch__log(DLAUNCH_LOG_DEBUG,
			     "pid %d ended, status 0x%x, %zu allocations "
			     "reclaimed",
			     (int)pid, wstatus, nfreed);
		w = dlaunch__proc_end(s, p, wstatus);
		while (w) {
			dlaunch__waiter_t *next = w->next;
			dlaunch__svc_reply_wstatus(s, w->client, w->req_id,
						   wstatus);
			free(w);
			w = next;
		}
	}
	pthread_cond_broadcast(&s->changed);
	dlaunch__proc_trim(s);
}

void dlaunch__svc_adopted_finish(dlaunch__server_t *s, dlaunch__proc_t *p,
				 int wstatus)
{
	dlaunch__proc_release(p);
	dlaunch__svc_reaped(s, p->pid, wstatus);
}

static bool alive(pid_t pid)
{
	return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

void dlaunch__svc_adopted_ended(dlaunch__server_t *s, dlaunch__proc_t *p)
{
	struct pollfd pf = {.fd = p->pidfd, .events = POLLIN};

	/* The event may be that of an older process with this pid: only p's
	 * own pidfd says whether p ended. */
	if (!p->adopted || p->ended || p->gone || p->pidfd < 0 ||
	    poll(&pf, 1, 0) != 1)
		return;
	dlaunch__proc_set_gone(p);
	pthread_cond_broadcast(&s->changed);
	if (!alive(p->reaper))
		finish_unreported(s, p);
}

int dlaunch__svc_expire_waiters(dlaunch__server_t *s)
{
	dlaunch__waiter_t *w;
	dlaunch__proc_t *p;
	int next_ms;

	while ((w = dlaunch__proc_expired(s, &p, &next_ms))) {
		dlaunch__svc_reply_err(s, w->client, w->req_id, -ETIMEDOUT,
				       "pid %d still running at the deadline",
				       (int)p->pid);
		free(w);
	}
	return next_ms;
}
