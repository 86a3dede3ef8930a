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

/* The node whose pool holds the endpoint of text (0: cannot tell). */
static uint64_t node_of(const char *text)
{
	dchan_desc_t d;

	return dchan_desc_from_text(text, &d) == 0 ? d.node_id : 0;
}

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
	c->node = node_of(text);
	c->remote = c->node && c->node != dmem_node_id();
	c->next = s->clients;
	s->clients = c;
	if (c->remote)
		dlaunch__log(DLAUNCH_LOG_DEBUG,
			     "client %u: pid %d of node %llu", c->id, (int)pid,
			     (unsigned long long)c->node);
	else
		dlaunch__log(DLAUNCH_LOG_DEBUG, "client %u: pid %d", c->id,
			     (int)pid);
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
			if (c->remote)
				dlaunch__log(DLAUNCH_LOG_DEBUG,
					     "client %u: pid %d of node %llu "
					     "is gone",
					     c->id, (int)c->pid,
					     (unsigned long long)c->node);
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
		if (c->pid == pid && !c->remote) {
			*pp = c->next;
			client_free(c, true);
		} else {
			pp = &c->next;
		}
	}
}

int dlaunch__client_hold(dlaunch__server_t *s, pid_t pid, const char *svc,
			 uint32_t client)
{
	dlaunch__held_t *h;

	if (strlen(svc) >= sizeof h->svc || !(h = calloc(1, sizeof *h)))
		return -ENOMEM;
	h->pid = pid;
	h->client = client;
	strcpy(h->svc, svc);
	h->next = s->held;
	s->held = h;
	return 0;
}

/* A BYE for conversation h->client, sent to its services as if from the
 * process itself (no reply comes to a BYE).  Their node may be gone: the
 * send is bounded, and a failure only logged. */
static void send_bye_for(const dlaunch__held_t *h)
{
	dlaunch__ep_t *ep;
	dlaunch__msg_t m;
	int rc;

	dlaunch__msg_init(&m, DLAUNCH_MSG_BYE, 0, 0);
	memcpy(m.buf + offsetof(dlaunch__msg_hdr_t, client), &h->client,
	       sizeof h->client);
	rc = m.err ? m.err : dlaunch__ep_open(h->svc, &ep);
	if (rc == 0) {
		rc = dlaunch__ep_send(ep, m.buf, m.len, REPLY_TIMEOUT_NS);
		dlaunch__ep_close(ep);
	}
	if (rc)
		dlaunch__log(DLAUNCH_LOG_WARNING,
			     "pid %d ended; its conversation %u with the "
			     "services of node %llu cannot be closed: %s",
			     (int)h->pid, h->client,
			     (unsigned long long)node_of(h->svc),
			     dlaunch_strerror(rc));
	dlaunch__msg_free(&m);
}

void dlaunch__client_unhold(dlaunch__server_t *s, pid_t pid, const char *svc,
			    uint32_t client)
{
	for (dlaunch__held_t **pp = &s->held; *pp; pp = &(*pp)->next) {
		dlaunch__held_t *h = *pp;
		if (h->pid == pid && h->client == client &&
		    strcmp(h->svc, svc) == 0) {
			*pp = h->next;
			free(h);
			return;
		}
	}
}

void dlaunch__client_release_held(dlaunch__server_t *s, pid_t pid)
{
	dlaunch__held_t **pp = &s->held;

	while (*pp) {
		dlaunch__held_t *h = *pp;
		if (h->pid == pid) {
			*pp = h->next;
			h->next = s->byes;
			s->byes = h;
		} else {
			pp = &h->next;
		}
	}
}

void dlaunch__client_send_byes(dlaunch__server_t *s)
{
	dlaunch__held_t *h;

	pthread_mutex_lock(&s->lock);
	h = s->byes;
	s->byes = NULL;
	pthread_mutex_unlock(&s->lock);
	while (h) {
		dlaunch__held_t *next = h->next;

		send_bye_for(h);
		free(h);
		h = next;
	}
}

void dlaunch__clients_free(dlaunch__server_t *s)
{
	while (s->byes) {
		dlaunch__held_t *h = s->byes;
		s->byes = h->next;
		send_bye_for(h);
		free(h);
	}
	while (s->held) {
		dlaunch__held_t *h = s->held;
		s->held = h->next;
		free(h);
	}
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
