/* The registry of named objects (global services); the client calls are
 * in name_calls.c.
 *
 * A name maps to a kind and a few bytes (a serialized descriptor, usually).
 * Create-or-look-up of pools and channels happens here, in the services,
 * so that the check and the creation are one step for every caller and the
 * objects belong to the runtime, which removes them when it ends.
 */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "svc.h"

static svc_name_t *find(dlaunch__server_t *s, const char *name)
{
	for (svc_name_t *n = s->names; n; n = n->next)
		if (strcmp(n->name, name) == 0)
			return n;
	return NULL;
}

static int insert(dlaunch__server_t *s, const char *name, int kind,
		  const void *v, size_t len)
{
	svc_name_t *n = calloc(1, sizeof *n);

	if (!n || !(n->name = strdup(name)) ||
	    !(n->value = malloc(len ? len : 1))) {
		if (n)
			free(n->name);
		free(n);
		return -ENOMEM;
	}
	memcpy(n->value, v, len);
	n->len = len;
	n->kind = kind;
	n->next = s->names;
	s->names = n;
	return 0;
}

static void reply_value(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
			int status, const svc_name_t *n)
{
	dlaunch__msg_t m;

	dlaunch__msg_init(&m, DLAUNCH_MSG_REPLY, h->req_id, status);
	dlaunch__msg_put_bytes(&m, n->value, n->len);
	dlaunch__svc_reply(s, h->client, h->req_id, &m);
}

/* A pool made for POOL_GET: "u<n>" in this instance. */
static int make_pool(dlaunch__server_t *s, const char *name, uint64_t size,
		     svc_name_t **out)
{
	dmem_pool_attr_t attr = {.field_mask = DMEM_POOL_ATTR_INSTANCE,
				 .instance = s->instance};
	svc_pool_t *sp = calloc(1, sizeof *sp);
	dmem_pool_desc_t d;
	char seg[32];
	int rc;

	if (!sp)
		return -ENOMEM;
	snprintf(seg, sizeof seg, "u%u", ++s->npools);
	rc = dmem_pool_create(seg, (size_t)size, &attr, &sp->pool);
	if (rc) {
		free(sp);
		return dlaunch__fail(rc, "pool '%s': %s", name, dmem_errmsg());
	}
	dmem_pool_desc_get(sp->pool, &d);
	rc = insert(s, name, DLAUNCH_KIND_POOL, &d, sizeof d);
	if (rc) {
		dmem_pool_destroy(sp->pool);
		free(sp);
		return rc;
	}
	sp->next = s->pools;
	s->pools = sp;
	*out = s->names;
	return 0;
}

/* A channel made for CHAN_GET, in the default pool.  It is created through
 * the services' own pool handle; libdchan works on it through the mapping
 * it holds for the anchor channel (see svc_chan_anchor).  Only the
 * descriptor is kept: the channel lives in the pool until the runtime
 * removes it. */
static int make_channel(dlaunch__server_t *s, const char *name,
			uint64_t capacity, uint64_t slot_size, svc_name_t **out)
{
	dchan_attr_t attr = {0};
	dchan_desc_t d;
	dchan_t *ch;
	int rc;

	if (capacity > DCHAN_CAPACITY_MAX || slot_size > UINT32_MAX)
		return dlaunch__fail(-EINVAL,
				     "channel '%s': capacity %llu or slot size "
				     "%llu too large",
				     name, (unsigned long long)capacity,
				     (unsigned long long)slot_size);
	if (capacity) {
		attr.field_mask |= DCHAN_ATTR_CAPACITY;
		attr.capacity = (uint32_t)capacity;
	}
	if (slot_size) {
		attr.field_mask |= DCHAN_ATTR_SLOT_SIZE;
		attr.slot_size = (uint32_t)slot_size;
	}
	rc = dchan_create(s->default_pool, &attr, &ch);
	if (rc)
		return dlaunch__fail(rc, "channel '%s': %s", name,
				     dchan_errmsg());
	rc = dchan_desc_get(ch, &d);
	if (rc == 0)
		rc = insert(s, name, DLAUNCH_KIND_CHANNEL, &d, sizeof d);
	if (rc) {
		dchan_destroy(ch);
		return rc;
	}
	dchan_detach(ch);
	*out = s->names;
	return 0;
}

/* A small channel held for the runtime's life through which libdchan maps
 * the default pool itself (dlaunch__pool_lend): channel handles of that
 * pool in this process, the services' or the program's, then keep working
 * until they are closed, even after the runtime removed the pool. */
int svc_chan_anchor(dlaunch__server_t *s)
{
	return dlaunch__pool_lend(s->default_pool, &s->chan_anchor);
}

static void get_object(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
		       dlaunch__msg_t *m, int kind)
{
	const char *name = dlaunch__msg_get_str(m);
	uint64_t a = dlaunch__msg_get_u64(m);
	uint64_t b = dlaunch__msg_get_u64(m);
	svc_name_t *n;
	int rc;

	if (m->err || !name) {
		dlaunch__svc_reply_err(s, h->client, h->req_id,
				       -DLAUNCH_E_PROTO, "malformed request");
		return;
	}
	n = find(s, name);
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
		rc = make_pool(s, name, a, &n);
	else
		rc = make_channel(s, name, a, b, &n);
	if (rc)
		dlaunch__svc_reply_err(s, h->client, h->req_id, rc, "%s",
				       dlaunch_errmsg());
	else
		reply_value(s, h, 1, n);
}

static void name_op(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
		    dlaunch__msg_t *m)
{
	const char *name = dlaunch__msg_get_str(m);
	int kind = (int)dlaunch__msg_get_i64(m);
	svc_name_t *n = name ? find(s, name) : NULL;
	const void *v = NULL;
	size_t len = 0;
	int rc;

	if (h->type == DLAUNCH_MSG_NAME_REG)
		v = dlaunch__msg_get_bytes(m, &len);
	if (m->err || !name) {
		dlaunch__svc_reply_err(s, h->client, h->req_id,
				       -DLAUNCH_E_PROTO, "malformed request");
	} else if (h->type == DLAUNCH_MSG_NAME_REG) {
		rc = n ? 0 : insert(s, name, kind, v, len);
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
		for (svc_name_t **pp = &s->names; *pp; pp = &(*pp)->next)
			if (*pp == n) {
				*pp = n->next;
				break;
			}
		free(n->name);
		free(n->value);
		free(n);
		dlaunch__svc_reply_err(s, h->client, h->req_id, 0, "%s", "");
	}
}

void svc_names_request(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
		       dlaunch__msg_t *m)
{
	switch (h->type) {
	case DLAUNCH_MSG_NAME_REG:
	case DLAUNCH_MSG_NAME_GET:
	case DLAUNCH_MSG_NAME_DEL:
		name_op(s, h, m);
		break;
	case DLAUNCH_MSG_POOL_GET:
		get_object(s, h, m, DLAUNCH_KIND_POOL);
		break;
	case DLAUNCH_MSG_CHAN_GET:
		get_object(s, h, m, DLAUNCH_KIND_CHANNEL);
		break;
	default:
		dlaunch__svc_reply_err(s, h->client, h->req_id,
				       -DLAUNCH_E_PROTO,
				       "unknown request type %u", h->type);
	}
}

void svc_names_free(dlaunch__server_t *s)
{
	while (s->names) {
		svc_name_t *n = s->names;
		s->names = n->next;
		free(n->name);
		free(n->value);
		free(n);
	}
	while (s->pools) {
		svc_pool_t *p = s->pools;
		s->pools = p->next;
		dmem_pool_destroy(p->pool);
		free(p);
	}
	if (s->chan_anchor)
		dchan_detach(s->chan_anchor);
	s->chan_anchor = NULL;
}
