/* Client calls on the registry of named objects: register, look up and
 * unregister a name; get (making it if needed) a named pool or channel.
 * The services' side is registry.c and req_names.c. */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "dlaunch_private.h"

static int check_name(const char *fn, const char *name)
{
	if (!name || !*name || strlen(name) > DLAUNCH_NAME_MAX)
		return dlaunch__fail(-EINVAL, "%s: name must have 1..%d bytes",
				     fn, DLAUNCH_NAME_MAX);
	return 0;
}

DLAUNCH_EXPORT int dlaunch_name_register(dlaunch_t *rt, const char *name,
					 int kind, const void *value,
					 size_t len)
{
	if (rt && dlaunch__global(rt, &rt))
		return -DLAUNCH_E_SERVICES;
	dlaunch__conv_t *c;
	dlaunch__msg_t m, r;
	int rc = check_name("dlaunch_name_register", name);

	if (rc)
		return rc;
	if (!rt || (!value && len) || len > DLAUNCH_VALUE_MAX ||
	    kind <= DLAUNCH_KIND_ANY || kind > DLAUNCH_KIND_POOL)
		return dlaunch__fail(-EINVAL,
				     "dlaunch_name_register: bad kind, value "
				     "or length (at most %d bytes)",
				     DLAUNCH_VALUE_MAX);
	dlaunch__msg_init(&m, DLAUNCH_MSG_NAME_REG, 0, 0);
	dlaunch__msg_put_str(&m, name);
	dlaunch__msg_put_i64(&m, kind);
	dlaunch__msg_put_bytes(&m, value ? value : "", len);
	rc = dlaunch__call(rt, &m, 0, &r, &c);
	dlaunch__call_done(rt, c);
	return rc;
}

/* Copy the value of a reply into buf; status is the reply's. */
static int take_value(dlaunch__msg_t *r, int status, void *buf, size_t cap,
		      size_t *len_out)
{
	size_t n = 0;
	const void *v = dlaunch__msg_get_bytes(r, &n);

	if (!v)
		return -DLAUNCH_E_PROTO;
	if (n > cap) {
		*len_out = n;
		return dlaunch__fail(-EMSGSIZE,
				     "value has %zu bytes, buffer %zu", n, cap);
	}
	memcpy(buf, v, n);
	*len_out = n;
	return status;
}

DLAUNCH_EXPORT int dlaunch_name_lookup(dlaunch_t *rt, const char *name,
				       int kind, void *buf, size_t cap,
				       size_t *len_out)
{
	if (rt && dlaunch__global(rt, &rt))
		return -DLAUNCH_E_SERVICES;
	dlaunch__conv_t *c;
	dlaunch__msg_t m, r;
	int rc = check_name("dlaunch_name_lookup", name);

	if (rc)
		return rc;
	if (!rt || !len_out || (!buf && cap))
		return dlaunch__fail(-EINVAL, "dlaunch_name_lookup: NULL "
					      "argument");
	dlaunch__msg_init(&m, DLAUNCH_MSG_NAME_GET, 0, 0);
	dlaunch__msg_put_str(&m, name);
	dlaunch__msg_put_i64(&m, kind);
	rc = dlaunch__call(rt, &m, 0, &r, &c);
	if (rc >= 0)
		rc = take_value(&r, 0, buf, cap, len_out);
	dlaunch__call_done(rt, c);
	return rc;
}

DLAUNCH_EXPORT int dlaunch_name_unregister(dlaunch_t *rt, const char *name)
{
	if (rt && dlaunch__global(rt, &rt))
		return -DLAUNCH_E_SERVICES;
	dlaunch__conv_t *c;
	dlaunch__msg_t m, r;
	int rc = check_name("dlaunch_name_unregister", name);

	if (rc || !rt)
		return rc ? rc : -EINVAL;
	dlaunch__msg_init(&m, DLAUNCH_MSG_NAME_DEL, 0, 0);
	dlaunch__msg_put_str(&m, name);
	dlaunch__msg_put_i64(&m, 0);
	rc = dlaunch__call(rt, &m, 0, &r, &c);
	dlaunch__call_done(rt, c);
	return rc < 0 ? rc : 0;
}

static int get_object_call(dlaunch_t *rt, int type, const char *name,
			   uint64_t a, uint64_t b, void *out, size_t size)
{
	if (rt && dlaunch__global(rt, &rt))
		return -DLAUNCH_E_SERVICES;
	dlaunch__conv_t *c;
	dlaunch__msg_t m, r;
	size_t len;
	int rc = check_name("dlaunch_*_get", name);

	if (rc || !rt || !out)
		return rc ? rc : -EINVAL;
	dlaunch__msg_init(&m, (uint16_t)type, 0, 0);
	dlaunch__msg_put_str(&m, name);
	dlaunch__msg_put_u64(&m, a);
	dlaunch__msg_put_u64(&m, b);
	rc = dlaunch__call(rt, &m, 0, &r, &c);
	if (rc >= 0)
		rc = take_value(&r, rc, out, size, &len);
	if (rc >= 0 && len != size)
		rc = -DLAUNCH_E_PROTO;
	dlaunch__call_done(rt, c);
	return rc;
}

DLAUNCH_EXPORT int dlaunch_pool_get(dlaunch_t *rt, const char *name,
				    uint64_t size, dmem_pool_desc_t *desc_out)
{
	dmem_pool_desc_t d;
	int rc = get_object_call(rt, DLAUNCH_MSG_POOL_GET, name, size, 0, &d,
				 sizeof d);

	if (rc >= 0)
		*desc_out = d;
	return rc;
}

DLAUNCH_EXPORT int dlaunch_channel_get(dlaunch_t *rt, const char *name,
				       const dchan_attr_t *attr,
				       dchan_desc_t *desc_out)
{
	uint64_t mask = attr ? attr->field_mask : 0;
	uint64_t cap = (mask & DCHAN_ATTR_CAPACITY) ? attr->capacity : 0;
	uint64_t slot = (mask & DCHAN_ATTR_SLOT_SIZE) ? attr->slot_size : 0;
	dchan_desc_t d;
	int rc = get_object_call(rt, DLAUNCH_MSG_CHAN_GET, name, cap, slot, &d,
				 sizeof d);

	if (rc >= 0)
		*desc_out = d;
	return rc;
}
