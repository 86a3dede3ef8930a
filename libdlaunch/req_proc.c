/* Local services: the requests on processes the runtime starts.  Each
 * handler decodes its request, calls spawn.c or the process table, and
 * replies (or parks the request, for a wait on a running process). */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "svc.h"

/* SPAWN: path, argv, base environment, added environment, flags, cwd,
 * then mode and path of fds 0..2; the reply's status is the pid. */
static void spawn_request(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
			  dlaunch__msg_t *m)
{
	dlaunch__client_t *c = dlaunch__client_find(s, h->client);
	dlaunch__spawn_t sp = {0};
	bool null;
	int rc;

	sp.path = dlaunch__msg_get_str(m);
	sp.argv = dlaunch__msg_get_strv(m, &null);
	sp.base_env = dlaunch__msg_get_strv(m, &null);
	sp.env = dlaunch__msg_get_strv(m, &null);
	sp.flags = (uint32_t)dlaunch__msg_get_u64(m);
	sp.cwd = dlaunch__msg_get_str(m);
	for (int i = 0; i < 3; i++) {
		sp.stdio[i] = (int)dlaunch__msg_get_i64(m);
		sp.stdio_path[i] = dlaunch__msg_get_str(m);
	}
	if (m->err || !sp.path || !sp.argv || !c)
		dlaunch__svc_reply_err(s, h->client, h->req_id,
				       -DLAUNCH_E_PROTO,
				       "malformed spawn request");
	else if (s->stopping)
		dlaunch__svc_reply_err(s, h->client, h->req_id,
				       -DLAUNCH_E_CLOSED,
				       "runtime %s is shutting down: no new "
				       "processes",
				       s->instance);
	else if ((rc = dlaunch__spawn(s, &sp, c->pid)) < 0)
		dlaunch__svc_reply_err(s, h->client, h->req_id, rc, "%s",
				       dlaunch_errmsg());
	else
		dlaunch__svc_reply_status(s, h->client, h->req_id, rc);
	free(sp.argv);
	free(sp.base_env);
	free(sp.env);
}
DLAUNCH_SVC_HANDLER(DLAUNCH_MSG_SPAWN, spawn_request)

/* STATUS: pid, timeout, peek.  Answered at once from the record, or
 * parked until the process ends or the timeout passes (ended.c). */
static void status_request(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
			   dlaunch__msg_t *m)
{
	pid_t pid = (pid_t)dlaunch__msg_get_i64(m);
	uint64_t timeout = dlaunch__msg_get_u64(m);
	bool peek = dlaunch__msg_get_u64(m) != 0;
	dlaunch__client_t *c = dlaunch__client_find(s, h->client);
	dlaunch__proc_t *p = dlaunch__proc_find(s, pid);
	dlaunch__waiter_t wnow = {.client = h->client, .req_id = h->req_id};

	if (m->err || !c)
		return;
	wnow.client_pid = c->pid;
	wnow.peek = peek;
	if (!p) {
		dlaunch__svc_reply_err(
			s, h->client, h->req_id, -DLAUNCH_E_NOPROC,
			"pid %d was not started by runtime %s, or ended "
			"so long ago that its status is no longer kept "
			"(the last %d collected are)",
			(int)pid, s->instance, DLAUNCH_STATUS_KEEP);
	} else if (p->ended) {
		dlaunch__svc_reply_wstatus(s, h->client, h->req_id, p->wstatus);
		dlaunch__proc_collected(s, p, c->pid, peek);
	} else if (timeout == 0) {
		dlaunch__svc_reply_err(s, h->client, h->req_id, -EAGAIN,
				       "pid %d is still running", (int)pid);
	} else if (dlaunch__proc_park(p, &wnow, timeout)) {
		dlaunch__svc_reply_err(s, h->client, h->req_id, -ENOMEM,
				       "out of memory");
	}
}
DLAUNCH_SVC_HANDLER(DLAUNCH_MSG_STATUS, status_request)

/* SIGNAL: pid, signal number. */
static void signal_request(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
			   dlaunch__msg_t *m)
{
	pid_t pid = (pid_t)dlaunch__msg_get_i64(m);
	int signo = (int)dlaunch__msg_get_i64(m);
	dlaunch__proc_t *p = dlaunch__proc_find(s, pid);
	int rc;

	if (m->err)
		return;
	if (!p) {
		dlaunch__svc_reply_err(s, h->client, h->req_id,
				       -DLAUNCH_E_NOPROC,
				       "pid %d was not started by runtime %s",
				       (int)pid, s->instance);
		return;
	}
	/* An ended process is a zombie or gone: nothing to send. */
	if (!p->ended && (rc = dlaunch__proc_kill(p, signo)) < 0) {
		dlaunch__svc_reply_err(s, h->client, h->req_id, rc,
				       "signal %d to pid %d: %s", signo,
				       (int)pid, strerror(-rc));
		return;
	}
	dlaunch__svc_reply_status(s, h->client, h->req_id, 0);
}
DLAUNCH_SVC_HANDLER(DLAUNCH_MSG_SIGNAL, signal_request)
