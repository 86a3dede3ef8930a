/* Global services: the requests on the registry (registry.c).  Each
 * handler decodes its request, calls the registry and replies. */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "svc.h"

static void reply_value(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
			int status, const dlaunch__name_t *n)
{
	dlaunch__msg_t m;

	dlaunch__msg_init(&m, DLAUNCH_MSG_REPLY, h->req_id, status);
	dlaunch__msg_put_bytes(&m, n->value, n->len);
	dlaunch__svc_reply(s, h->client, h->req_id, &m);
}

/* POOL_GET and CHAN_GET: the object registered under the name, made if
 * the name is free (status 1 then). */
static void get_object(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
		       dlaunch__msg_t *m, int kind)
{
	const char *name = dlaunch__msg_get_str(m);
	uint64_t a = dlaunch__msg_get_u64(m);
	uint64_t b = dlaunch__msg_get_u64(m);
	dlaunch__name_t *n;
	int rc;

	if (m->err || !name) {
		dlaunch__svc_reply_err(s, h->client, h->req_id,
				       -DLAUNCH_E_PROTO, "malformed request");
		return;
	}
	n = dlaunch__name_find(s, name);
	if (n && n->kind != kind) {
		dlaunch__svc_reply_err(
			s, h->client, h->req_id, -DLAUNCH_E_KIND,
			"name '%s' holds an object of kind %d, not %d", name,
			n->kind, kind);
		return;
	}
	if (n) {
		reply_value(s, h, 0, n);
		return;
	}
	if (kind == DLAUNCH_KIND_POOL)
		rc = dlaunch__registry_make_pool(s, name, a, &n);
	else
		rc = dlaunch__registry_make_channel(s, name, a, b, &n);
	if (rc)
		dlaunch__svc_reply_err(s, h->client, h->req_id, rc, "%s",
				       dlaunch_errmsg());
	else
		reply_value(s, h, 1, n);
}

static void pool_get(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
		     dlaunch__msg_t *m)
{
	get_object(s, h, m, DLAUNCH_KIND_POOL);
}
DLAUNCH_SVC_HANDLER(DLAUNCH_MSG_POOL_GET, pool_get)

static void chan_get(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
		     dlaunch__msg_t *m)
{
	get_object(s, h, m, DLAUNCH_KIND_CHANNEL);
}
DLAUNCH_SVC_HANDLER(DLAUNCH_MSG_CHAN_GET, chan_get)

/* NAME_REG, NAME_GET and NAME_DEL: a name and a kind, then for NAME_REG
 * the value. */
static void name_op(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
		    dlaunch__msg_t *m)
{
	const char *name = dlaunch__msg_get_str(m);
	int kind = (int)dlaunch__msg_get_i64(m);
	dlaunch__name_t *n = name ? dlaunch__name_find(s, name) : NULL;
	const void *v = NULL;
	size_t len = 0;
	int rc;

	if (h->type == DLAUNCH_MSG_NAME_REG)
		v = dlaunch__msg_get_bytes(m, &len);
	if (m->err || !name) {
		dlaunch__svc_reply_err(s, h->client, h->req_id,
				       -DLAUNCH_E_PROTO, "malformed request");
	} else if (h->type == DLAUNCH_MSG_NAME_REG) {
		rc = n ? 0 : dlaunch__name_insert(s, name, kind, v, len);
		dlaunch__svc_reply_err(s, h->client, h->req_id, rc ? rc : !n,
				       "%s", "");
	} else if (!n) {
		dlaunch__svc_reply_err(s, h->client, h->req_id,
				       -DLAUNCH_E_NONAME,
				       "name '%s' is not registered", name);
	} else if (h->type == DLAUNCH_MSG_NAME_GET) {
		if (kind != DLAUNCH_KIND_ANY && kind != n->kind)
			dlaunch__svc_reply_err(
				s, h->client, h->req_id, -DLAUNCH_E_KIND,
				"name '%s' holds kind %d, not %d", name,
				n->kind, kind);
		else
			reply_value(s, h, 0, n);
	} else {
		dlaunch__name_remove(s, n);
		dlaunch__svc_reply_err(s, h->client, h->req_id, 0, "%s", "");
	}
}
DLAUNCH_SVC_HANDLER(DLAUNCH_MSG_NAME_REG, name_op)
DLAUNCH_SVC_HANDLER(DLAUNCH_MSG_NAME_GET, name_op)
DLAUNCH_SVC_HANDLER(DLAUNCH_MSG_NAME_DEL, name_op)
