/* The requests that open and close a conversation (reply.c keeps them),
 * and HOLD, a conversation a process of this node has with another node's
 * services, closed for it when it ends. */
#define _GNU_SOURCE
#include "config.h"
#include "svc.h"

/* HELLO: pid and the text of its reply endpoint; the reply carries the
 * new client id. */
static void hello(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
		  dlaunch__msg_t *m)
{
	pid_t pid = (pid_t)dlaunch__msg_get_i64(m);
	const char *text = dlaunch__msg_get_str(m);
	dlaunch__client_t *c;

	if (m->err || !text)
		return; /* nobody to answer */
	c = dlaunch__client_add(s, pid, text);
	/* HELLO itself has no client id yet. */
	if (c)
		dlaunch__svc_reply_status(s, c->id, h->req_id, (int)c->id);
}
DLAUNCH_SVC_HANDLER(DLAUNCH_MSG_HELLO, hello)

/* BYE: the client destroyed its endpoint; no reply. */
static void bye(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
		dlaunch__msg_t *m)
{
	(void)m;
	dlaunch__client_remove(s, h->client);
}
DLAUNCH_SVC_HANDLER(DLAUNCH_MSG_BYE, bye)

/* HOLD: the sender (a process of this node) opened conversation `id` with
 * the services at svc, on another node, or (release) closed it; no
 * reply. */
static void hold(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
		 dlaunch__msg_t *m)
{
	pid_t pid = (pid_t)dlaunch__msg_get_i64(m);
	const char *svc = dlaunch__msg_get_str(m);
	uint32_t id = (uint32_t)dlaunch__msg_get_u64(m);
	bool release = dlaunch__msg_get_u64(m) != 0;

	(void)h;
	if (m->err || !svc || pid <= 0)
		return;
	if (release)
		dlaunch__client_unhold(s, pid, svc, id);
	else if (dlaunch__client_hold(s, pid, svc, id))
		dlaunch__log(DLAUNCH_LOG_WARNING,
			     "pid %d: no room to remember its conversation "
			     "with %s",
			     (int)pid, svc);
}
DLAUNCH_SVC_HANDLER(DLAUNCH_MSG_HOLD, hold)
