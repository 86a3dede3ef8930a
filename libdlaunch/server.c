/* Global services: the request loop and the handling of requests
 * (reply.c keeps the clients and sends the replies).
 *
 * One thread receives every request from the request endpoint and answers
 * it while holding the server lock; nothing it does blocks for long (a
 * posix_spawn, a table update, a non-blocking send).  Requests that wait —
 * a dlaunch_wait on a running process — are parked as waiters and answered
 * by the I/O thread when the process is reaped, or here at their deadline.
 */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "svc.h"

/* HELLO: pid and the text of its reply endpoint; the reply carries the
 * new client id. */
static void hello(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
		  dlaunch__msg_t *m)
{
	pid_t pid = (pid_t)dlaunch__msg_get_i64(m);
	const char *text = dlaunch__msg_get_str(m);
	svc_client_t *c;

	if (m->err || !text)
		return; /* nobody to answer */
	c = dlaunch__client_add(s, pid, text);
	/* HELLO itself has no client id yet. */
	if (c)
		dlaunch__svc_reply_status(s, c->id, h->req_id, (int)c->id);
}

static void spawn_request(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
			  dlaunch__msg_t *m)
{
	svc_client_t *c = dlaunch__client_find(s, h->client);
	svc_spawn_t sp = {0};
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
		rc = dlaunch__svc_reply_err(s, h->client, h->req_id,
					    -DLAUNCH_E_PROTO,
					    "malformed spawn request");
	else if (s->stopping)
		rc = dlaunch__svc_reply_err(
			s, h->client, h->req_id, -DLAUNCH_E_CLOSED,
			"runtime %s is shutting down: no new "
			"processes",
			s->instance);
	else if ((rc = svc_spawn(s, &sp, c->pid)) < 0)
		dlaunch__svc_reply_err(s, h->client, h->req_id, rc, "%s",
				       dlaunch_errmsg());
	else
		dlaunch__svc_reply_status(s, h->client, h->req_id, rc);
	free(sp.argv);
	free(sp.base_env);
	free(sp.env);
}

/* Handle one request; returns false on STOP. */
static bool dispatch(dlaunch__server_t *s, const uint8_t *buf, size_t len)
{
	dlaunch__msg_hdr_t h;
	dlaunch__msg_t m;
	int rc = dlaunch__msg_open(&m, buf, len, &h);

	if (rc) {
		dlaunch__log(DLAUNCH_LOG_WARNING,
			     "dropped a malformed service message (%zu bytes)",
			     len);
		return true;
	}
	switch (h.type) {
	case DLAUNCH_MSG_HELLO:
		hello(s, &h, &m);
		break;
	case DLAUNCH_MSG_BYE:
		dlaunch__client_remove(s, h.client);
		break;
	case DLAUNCH_MSG_SPAWN:
		spawn_request(s, &h, &m);
		break;
	case DLAUNCH_MSG_STATUS:
		svc_status_request(s, &h, &m);
		break;
	case DLAUNCH_MSG_SIGNAL:
		svc_signal_request(s, &h, &m);
		break;
	case DLAUNCH_MSG_ADOPT:
		svc_adopt_request(s, &h, &m);
		break;
	case DLAUNCH_MSG_REAPED:
		svc_reaped_request(s, &h, &m);
		break;
	case DLAUNCH_MSG_STOP:
		return false;
	default:
		svc_names_request(s, &h, &m);
		break;
	}
	return true;
}

static void *request_loop(void *arg)
{
	dlaunch__server_t *s = arg;
	uint8_t *buf = malloc(DLAUNCH_MSG_MAX);
	bool run = buf != NULL;
	size_t len;
	int ms = -1, rc;

	while (run) {
		rc = dlaunch__ep_recv(s->req, buf, DLAUNCH_MSG_MAX,
				      ms < 0 ? DLAUNCH_FOREVER
					     : (uint64_t)ms * 1000000u + 1,
				      &len);
		pthread_mutex_lock(&s->lock);
		if (rc == 0)
			run = dispatch(s, buf, len);
		else if (rc != -ETIMEDOUT && rc != -EAGAIN && rc != -EMSGSIZE)
			dlaunch__log(DLAUNCH_LOG_ERROR, "request receive: %s",
				     dlaunch_strerror(rc));
		ms = svc_expire_waiters(s);
		pthread_mutex_unlock(&s->lock);
	}
	free(buf);
	return NULL;
}

int svc_start_threads(dlaunch__server_t *s)
{
	int rc = svc_io_start(s);

	if (rc)
		return rc;
	rc = -pthread_create(&s->req_thread, NULL, request_loop, s);
	if (rc)
		svc_io_stop(s);
	return rc;
}
