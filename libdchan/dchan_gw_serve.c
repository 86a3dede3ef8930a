/*
 * The servicer's side of the gateway: carry out a decoded request on a
 * local channel and deliver its completion.  The transport agent calls
 * dchan_gw_execute on the target's node and dchan_gw_complete on the
 * requester's; a servicer on the target's own node can use
 * dchan_gw_serve_one for both.
 */
#include "config.h"
#include "dchan_private.h"

#include <stdlib.h>
#include <string.h>

/* How long a servicer waits for room in a requester's reply channel: the
 * requester takes its completions from there, so room comes soon unless
 * it has stopped waiting. */
#define REPLY_ROOM_NS 1000000000ull

struct dchan__gw_out {
	void *payload;
	uint64_t len;
	uint64_t value;
};

/* Receive a message of unknown size: learn it by peeking, then take it;
 * another receiver may take it first, so repeat until the deadline. */
static int gw_do_recv(dchan_t *ch, const dchan_gw_req_t *r,
		      struct dchan__gw_out *o)
{
	uint64_t t0 = dchan__now_ns(), left = r->timeout_ns;
	size_t len;
	int rc;

	for (;;) {
		rc = dchan_peek(ch, NULL, 0, left, &len);
		if (rc < 0)
			return rc;
		if (len > r->cap)
			return dchan__fail(-EMSGSIZE,
					   "message of %zu bytes, "
					   "buffer of %llu",
					   len, (unsigned long long)r->cap);
		o->payload = malloc(len ? len : 1);
		if (!o->payload)
			return -ENOMEM;
		rc = dchan_recv(ch, o->payload, len, 0, &o->len);
		if (rc != -EAGAIN && rc != -EMSGSIZE)
			return rc;
		free(o->payload);
		o->payload = NULL;
		if (left != DCHAN_FOREVER) {
			uint64_t spent = dchan__now_ns() - t0;

			/* try-once means -EAGAIN, as for a local receive */
			if (r->timeout_ns == 0)
				return -EAGAIN;
			if (spent >= r->timeout_ns)
				return -ETIMEDOUT;
			left = r->timeout_ns - spent;
		}
	}
}

static int gw_do_peek(dchan_t *ch, const dchan_gw_req_t *r,
		      struct dchan__gw_out *o)
{
	size_t len, n;
	int rc = dchan_peek(ch, NULL, 0, r->timeout_ns, &len);

	if (rc < 0)
		return rc;
	n = len < r->cap ? len : (size_t)r->cap;
	o->payload = malloc(n ? n : 1);
	if (!o->payload)
		return -ENOMEM;
	rc = dchan_peek(ch, o->payload, n, 0, &len);
	o->len = len < n ? len : n;
	o->value = len;
	return rc;
}

static int gw_run(dchan_t *ch, const dchan_gw_req_t *r, struct dchan__gw_out *o)
{
	unsigned rev = 0;
	int rc;

	switch (r->op) {
	case DCHAN_GW_SEND:
		return dchan_send(ch, r->payload, r->payload_len,
				  r->timeout_ns);
	case DCHAN_GW_RECV:
		return gw_do_recv(ch, r, o);
	case DCHAN_GW_PEEK:
		return gw_do_peek(ch, r, o);
	case DCHAN_GW_POLL:
		rc = dchan_poll(ch, r->arg, r->timeout_ns, &rev);
		o->value = rev;
		return rc;
	case DCHAN_GW_STATS:
		o->payload = malloc(sizeof(dchan_stats_t));
		if (!o->payload)
			return -ENOMEM;
		o->len = sizeof(dchan_stats_t);
		return dchan_stats(ch, o->payload);
	}
	return -DCHAN_E_BADREQ;
}

DCHAN_EXPORT int dchan_gw_attach(const dchan_desc_t *desc, dchan_t **ch_out)
{
	if (!desc || !ch_out)
		return dchan__fail(-EINVAL, "NULL descriptor or output");
	return dchan__attach(desc, ch_out);
}

DCHAN_EXPORT int dchan_gw_execute(const dchan_gw_req_t *req, void **cpl_out,
				  size_t *len_out)
{
	struct dchan__gw_out o = {NULL, 0, 0};
	dchan_gw_cpl_t c = {0};
	dchan_t *ch = NULL;
	int64_t n;
	void *buf;
	int rc;

	if (!req || !cpl_out || !len_out)
		return dchan__fail(-EINVAL, "NULL request or output");
	if (req->op == DCHAN_GW_MEM_READ || req->op == DCHAN_GW_MEM_WRITE) {
		rc = dchan__mem_execute(req, &o.payload, &o.len, &o.value);
	} else {
		rc = dchan__attach(&req->target, &ch);
		if (rc == 0 && ch->remote)
			rc = dchan__fail(-DCHAN_E_REMOTE,
					 "request for a channel that is not "
					 "on this node");
		if (rc == 0)
			rc = gw_run(ch, req, &o);
		if (ch)
			dchan_detach(ch);
	}
	c.op = req->op;
	c.req_id = req->req_id;
	c.status = rc < 0 ? rc : 0;
	c.value = o.value;
	c.payload = rc < 0 ? NULL : o.payload;
	c.payload_len = rc < 0 ? 0 : o.len;
	buf = malloc(48 + c.payload_len);
	n = buf ? dchan_gw_cpl_encode(&c, buf, 48 + c.payload_len) : -ENOMEM;
	free(o.payload);
	if (n < 0) {
		free(buf);
		return (int)n;
	}
	*cpl_out = buf;
	*len_out = (size_t)n;
	return 0;
}

DCHAN_EXPORT int dchan_gw_complete(const dchan_gw_req_t *req, const void *cpl,
				   size_t len)
{
	dchan_t *reply;
	int rc;

	if (!req || !cpl)
		return dchan__fail(-EINVAL, "NULL request or completion");
	rc = dchan__attach(&req->reply, &reply);
	if (rc < 0)
		return rc; /* the requester gave up and removed it */
	rc = dchan_send(reply, cpl, len, REPLY_ROOM_NS);
	dchan_detach(reply);
	return rc;
}

DCHAN_EXPORT int dchan_gw_serve_one(dchan_t *gw, uint64_t timeout_ns)
{
	dchan_gw_req_t req;
	dchan_msg_t m;
	void *cpl;
	size_t len;
	int rc;

	if (!gw)
		return dchan__fail(-EINVAL, "NULL gateway channel");
	rc = dchan_recv_zc(gw, timeout_ns, &m);
	if (rc < 0)
		return rc;
	rc = dchan_gw_req_decode(m.data, m.len, &req);
	if (rc == 0)
		rc = dchan_gw_execute(&req, &cpl, &len);
	if (rc == 0) {
		rc = dchan_gw_complete(&req, cpl, len);
		free(cpl);
	}
	dchan_msg_release(&m);
	return rc;
}
