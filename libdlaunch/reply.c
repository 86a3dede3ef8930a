/* The services' client table and reply path.
 *
 * A client is one conversation (dlaunch__conv_t on the other side): the
 * send side of its reply endpoint, known by the id HELLO gave it.  Every
 * handler answers through here; a reply that cannot be delivered in time
 * is dropped, because its client is gone or not reading and the services
 * must not stall for it.  Everything here runs with the server lock held.
 */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "svc.h"

/* A reply that cannot be delivered within this time is dropped. */
#define REPLY_TIMEOUT_NS (1000000000ull)

dlaunch__client_t *dlaunch__client_find(dlaunch__server_t *s, uint32_t id)
{
	for (dlaunch__client_t *c = s->clients; c; c = c->next)
		if (c->id == id)
			return c;
	return NULL;
}

dlaunch__client_t *dlaunch__client_add(dlaunch__server_t *s, pid_t pid,
				       const char *text)
{
	dlaunch__client_t *c;
	dlaunch__ep_t *ep;
	int rc;

	if (strlen(text) >= sizeof c->text)
		return NULL;
	rc = dlaunch__ep_open(text, &ep);
	if (rc) {
		dlaunch__log(
			DLAUNCH_LOG_WARNING,
			"pid %d: cannot open its reply channel %s: %s (%s)",
			(int)pid, text, dlaunch_strerror(rc), dchan_errmsg());
		return NULL;
	}
	c = calloc(1, sizeof *c);
	if (!c) {
		dlaunch__ep_close(ep);
		return NULL;
	}
	c->id = ++s->next_client;
	c->pid = pid;
	c->ep = ep;
	strcpy(c->text, text);
	c->next = s->clients;
	s->clients = c;
	dlaunch__log(DLAUNCH_LOG_DEBUG, "client %u: pid %d", c->id, (int)pid);
	return c;
}

static void client_free(dlaunch__client_t *c, bool destroy_endpoint)
{
	dlaunch__ep_close(c->ep);
	if (destroy_endpoint)
		dlaunch__ep_destroy_text(c->text);
	free(c);
}

void dlaunch__client_remove(dlaunch__server_t *s, uint32_t id)
{
	for (dlaunch__client_t **pp = &s->clients; *pp; pp = &(*pp)->next) {
		dlaunch__client_t *c = *pp;
		if (c->id == id) {
			*pp = c->next;
			client_free(c, false);
			return;
		}
	}
}

/* It could not say goodbye: its reply endpoints are destroyed for it. */
void dlaunch__client_forget_pid(dlaunch__server_t *s, pid_t pid)
{
	dlaunch__client_t **pp = &s->clients;

	while (*pp) {
		dlaunch__client_t *c = *pp;
		if (c->pid == pid) {
			*pp = c->next;
			client_free(c, true);
		} else {
			pp = &c->next;
		}
	}
}

void dlaunch__clients_free(dlaunch__server_t *s)
{
	while (s->clients) {
		dlaunch__client_t *c = s->clients;
		s->clients = c->next;
		client_free(c, true);
	}
}

void dlaunch__svc_reply(dlaunch__server_t *s, uint32_t client, uint64_t req_id,
			dlaunch__msg_t *m)
{
	dlaunch__client_t *c = dlaunch__client_find(s, client);
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

void dlaunch__svc_reply_status(dlaunch__server_t *s, uint32_t client,
			       uint64_t req_id, int status)
{
	dlaunch__msg_t m;

	dlaunch__msg_init(&m, DLAUNCH_MSG_REPLY, req_id, status);
	dlaunch__svc_reply(s, client, req_id, &m);
}

int dlaunch__svc_reply_err(dlaunch__server_t *s, uint32_t client,
			   uint64_t req_id, int code, const char *fmt, ...)
{
	char why[512];
	dlaunch__msg_t m;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	dlaunch__msg_init(&m, DLAUNCH_MSG_REPLY, req_id, code);
	dlaunch__msg_put_str(&m, why);
	dlaunch__svc_reply(s, client, req_id, &m);
	return code;
}

void dlaunch__svc_reply_wstatus(dlaunch__server_t *s, uint32_t client,
				uint64_t req_id, int wstatus)
{
	dlaunch__msg_t m;

	dlaunch__msg_init(&m, DLAUNCH_MSG_REPLY, req_id, 0);
	dlaunch__msg_put_i64(&m, wstatus);
	dlaunch__svc_reply(s, client, req_id, &m);
}
