/* Global services: the request loop, conversations (clients) and replies.
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

/* A reply that cannot be delivered within this time is dropped: its client
 * is gone or not reading, and the services must not stall for it. */
#define REPLY_TIMEOUT_NS (1000000000ull)

svc_client_t *svc_client_find(dlaunch__server_t *s, uint32_t id)
{
	for (svc_client_t *c = s->clients; c; c = c->next)
		if (c->id == id)
			return c;
	return NULL;
}

void svc_reply(dlaunch__server_t *s, uint32_t client, uint64_t req_id,
	       dlaunch__msg_t *m)
{
	svc_client_t *c = svc_client_find(s, client);
	int rc;

	memcpy(m->buf + offsetof(dlaunch__msg_hdr_t, req_id), &req_id,
	       sizeof req_id);
	if (c && m->err == 0) {
		rc = dlaunch__ep_send(c->ep, m->buf, m->len, REPLY_TIMEOUT_NS);
		if (rc)
			dlaunch__log(DLAUNCH_LOG_WARNING,
				     "reply to client %u (pid %d) dropped: %s",
				     client, (int)c->pid, dlaunch_strerror(rc));
	}
	dlaunch__msg_free(m);
}

int svc_reply_err(dlaunch__server_t *s, uint32_t client, uint64_t req_id,
		  int code, const char *fmt, ...)
{
	char why[512];
	dlaunch__msg_t m;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	dlaunch__msg_init(&m, DLAUNCH_MSG_REPLY, req_id, code);
	dlaunch__msg_put_str(&m, why);
	svc_reply(s, client, req_id, &m);
	return code;
}

static void reply_status(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
			 int status)
{
	dlaunch__msg_t m;

	dlaunch__msg_init(&m, DLAUNCH_MSG_REPLY, h->req_id, status);
	svc_reply(s, h->client, h->req_id, &m);
}

static void hello(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
		  dlaunch__msg_t *m)
{
	pid_t pid = (pid_t)dlaunch__msg_get_i64(m);
	const char *text = dlaunch__msg_get_str(m);
	svc_client_t *c;
	dlaunch__ep_t *ep;

	int rc;

	if (m->err || !text || strlen(text) >= sizeof c->text)
		return; /* nobody to answer */
	rc = dlaunch__ep_open(text, &ep);
	if (rc) {
		dlaunch__log(
			DLAUNCH_LOG_WARNING,
			"pid %d: cannot open its reply channel %s: %s (%s)",
			(int)pid, text, dlaunch_strerror(rc), dchan_errmsg());
		return;
	}
	c = calloc(1, sizeof *c);
	if (!c) {
		dlaunch__ep_close(ep);
		return;
	}
	c->id = ++s->next_client;
	c->pid = pid;
	c->ep = ep;
	strcpy(c->text, text);
	c->next = s->clients;
	s->clients = c;
	dlaunch__log(DLAUNCH_LOG_DEBUG, "client %u: pid %d", c->id, (int)pid);
	{
		dlaunch__msg_hdr_t to = *h;
		to.client = c->id; /* HELLO itself has no client id yet */
		reply_status(s, &to, (int)c->id);
	}
}

static void client_free(svc_client_t *c, bool destroy_endpoint)
{
	dlaunch__ep_close(c->ep);
	if (destroy_endpoint)
		dlaunch__ep_destroy_text(c->text);
	free(c);
}

/* A conversation ended: its endpoint was destroyed by its owner. */
static void bye(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h)
{
	for (svc_client_t **pp = &s->clients; *pp; pp = &(*pp)->next) {
		svc_client_t *c = *pp;
		if (c->id == h->client) {
			*pp = c->next;
			client_free(c, false);
			return;
		}
	}
}

/* A process ended: its conversations go, and their reply endpoints are
 * destroyed for it (it could not say goodbye). */
void svc_forget_pid(dlaunch__server_t *s, pid_t pid)
{
	svc_client_t **pp = &s->clients;

	while (*pp) {
		svc_client_t *c = *pp;
		if (c->pid == pid) {
			*pp = c->next;
			client_free(c, true);
		} else {
			pp = &c->next;
		}
	}
}

static void spawn_request(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
			  dlaunch__msg_t *m)
{
	svc_client_t *c = svc_client_find(s, h->client);
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
		rc = svc_reply_err(s, h->client, h->req_id, -DLAUNCH_E_PROTO,
				   "malformed spawn request");
	else if (s->stopping)
		rc = svc_reply_err(s, h->client, h->req_id, -DLAUNCH_E_CLOSED,
				   "runtime %s is shutting down: no new "
				   "processes",
				   s->instance);
	else if ((rc = svc_spawn(s, &sp, c->pid)) < 0)
		svc_reply_err(s, h->client, h->req_id, rc, "%s",
			      dlaunch_errmsg());
	else
		reply_status(s, h, rc);
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
		bye(s, &h);
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

void svc_clients_free(dlaunch__server_t *s)
{
	while (s->clients) {
		svc_client_t *c = s->clients;
		s->clients = c->next;
		client_free(c, true);
	}
}
