/*
 * This node's side of remote operations: requests that processes of this
 * node write into the gateway channel go to the agent of the channel's
 * node, and the completions that come back go to the requesters' reply
 * channels.  Each request in flight is a small record keyed by an xid of
 * this agent's; when a peer is lost, every record waiting for it is
 * completed with -DCHAN_E_NODELOST so that no requester waits for an
 * answer that will not come.
 */
#include "config.h"
#include "dtrans_agent.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static struct dtrans__pending **xid_slot(struct dtrans_agent *ag, uint64_t xid)
{
	struct dtrans__pending **pp = &ag->xids[xid % DTRANS__XID_BUCKETS];

	while (*pp && (*pp)->xid != xid)
		pp = &(*pp)->hnext;
	return pp;
}

/* Hand a completion to the requester's reply channel; never waits (a
 * requester that gave up leaves no channel, or a full one). */
static void deliver(struct dtrans_agent *ag, const dchan_desc_t *reply,
		    const void *cpl, size_t len)
{
	dchan_t *kept = dtrans__reply_chan(ag, reply), *ch = kept;
	int rc = ch ? 0 : dchan_attach(reply, &ch);

	if (rc == 0 && cpl == ag->sunk &&
	    dchan_pool(ch) == dchan_pool(ag->gw)) {
		/* read into the gateway's pool already: hand it over */
		rc = dchan_send_zc(ch, ag->sunk, len, 0);
		if (rc == 0)
			ag->sunk = NULL;
	} else if (rc == 0) {
		rc = dchan_send(ch, cpl, len, 0);
	}
	if (ch && ch != kept)
		dchan_detach(ch);
	if (rc < 0)
		dtrans__log(ag, "completion dropped: reply channel: %s",
			    dchan_strerror(rc));
}

/* What a request's answer needs, kept from its decoding. */
struct who {
	const dchan_desc_t *reply;
	uint16_t op;
	uint64_t req_id;
	bool buffered;
	uint64_t node_id, chan_uid; /* the target */
};

/* Complete a request here, with an error, without its node; a buffered
 * send's error goes into its thread's next acknowledgement. */
static void fail_req(struct dtrans_agent *ag, const struct who *w, int status)
{
	dchan_gw_cpl_t c = {.op = w->op, .req_id = w->req_id, .status = status};
	unsigned char buf[128];
	int64_t n;

	if (w->buffered) {
		dtrans__reply_ack(ag, w->reply, w->req_id, status, w->node_id,
				  w->chan_uid);
		return;
	}
	n = dchan_gw_cpl_encode(&c, buf, sizeof buf);
	if (n > 0)
		deliver(ag, w->reply, buf, (size_t)n);
}

static struct who who_of(const struct dtrans__pending *p)
{
	return (struct who){&p->reply,	 p->op,	      p->req_id,
			    p->buffered, p->node + 1, /* DTRANS_NODE_ID */
			    p->chan_uid};
}

/* Records are reused: a request in flight costs no allocation. */
#define PFREE_MAX 1024

static struct dtrans__pending *pending_new(struct dtrans_agent *ag)
{
	struct dtrans__pending *p = ag->pfree;

	if (!p)
		return calloc(1, sizeof *p);
	ag->pfree = p->hnext;
	ag->npfree--;
	memset(p, 0, sizeof *p);
	return p;
}

static void pending_free(struct dtrans_agent *ag, struct dtrans__pending *p)
{
	struct dtrans__pending **pp = xid_slot(ag, p->xid);
	struct dtrans__peer *pe = &ag->peers[p->node];

	*pp = p->hnext;
	pe->npending--;
	if (p->raw)
		pe->nunsent--;
	if (p->msg.data)
		dchan_msg_release(&p->msg);
	else
		free(p->raw);
	if (ag->npfree < PFREE_MAX) {
		p->hnext = ag->pfree;
		ag->pfree = p;
		ag->npfree++;
	} else {
		free(p);
	}
}

/* The agent goes: the records kept for reuse go too. */
void dtrans__fwd_forget(struct dtrans_agent *ag)
{
	while (ag->pfree) {
		struct dtrans__pending *p = ag->pfree;

		ag->pfree = p->hnext;
		free(p);
	}
	ag->npfree = 0;
}

/* Dial node unless a link to it exists or the last try was recent. */
static void fwd_dial(struct dtrans_agent *ag, uint32_t node, uint64_t now)
{
	struct dtrans__peer *pe = &ag->peers[node];
	struct dtrans__link *l;
	char *addr = NULL;
	void *be;
	int rc;

	if (pe->out || now < pe->next_dial_ns)
		return;
	pe->next_dial_ns = now + DTRANS__REDIAL_NS;
	pthread_mutex_lock(&ag->mu);
	if (pe->addr)
		addr = strdup(pe->addr);
	pthread_mutex_unlock(&ag->mu);
	if (!addr && ag->resolve) {
		/* looked up when first needed: the answer comes through
		 * dtrans_agent_peer_set, and a later dial uses it */
		if (!pe->asked) {
			pe->asked = true;
			ag->resolve(ag->resolve_arg, node);
		}
		return;
	}
	if (!addr) {
		dtrans__log(ag, "no address known for node %u", node);
		return;
	}
	rc = ag->be->dial(addr, &be);
	if (rc == -ECONNREFUSED) /* nobody listens: its agent has ended */
		dtrans__fwd_lost(ag, node, true,
				 "its agent refuses connections (it has "
				 "ended)");
	else if (rc < 0) /* the backend's own words: UCX's status, say */
		dtrans__log(ag, "cannot connect to node %u at %s: %s", node,
			    addr, dtrans_errmsg());
	else if ((rc = dtrans__link_new(ag, be, true, node, &l)) < 0)
		dtrans__log(ag, "cannot connect to node %u at %s: %s", node,
			    addr, dtrans_strerror(rc));
	else
		pe->out = l;
	free(addr);
}

/* Write one request to the peer's link.  A large one is written from the
 * gateway's pool where it lies (m, whose ownership then passes to the
 * link: m->data is cleared); a small one is copied with its neighbours. */
static int fwd_send(struct dtrans_agent *ag, struct dtrans__link *l,
		    uint64_t xid, const void *raw, size_t len, dchan_msg_t *m)
{
	int rc;

	if (m && m->data && len >= DTRANS__ZC_MIN) {
		struct dtrans__zseg z = {.p = raw, .len = len, .msg = *m};

		rc = dtrans__link_frame_zc(l, DTRANS__F_REQ, xid, NULL, 0, &z);
		if (rc == 0)
			m->data = NULL;
	} else {
		rc = dtrans__link_frame(l, DTRANS__F_REQ, xid, raw, len, NULL,
					0);
	}
	if (rc == 0)
		DTRANS__STAT(ag, l->peer, requests_sent, 1);
	return rc;
}

/* One message from the gateway channel (m: taken when it is kept). */
static void fwd_one(struct dtrans_agent *ag, dchan_msg_t *m)
{
	const void *raw = m->data;
	size_t len = m->len;
	struct dtrans__pending *p;
	struct dtrans__peer *pe;
	dchan_gw_req_t req;
	struct who w;
	uint64_t node;
	int rc = dchan_gw_req_decode(raw, len, &req);

	if (rc < 0) {
		dtrans__log(ag,
			    "malformed request in the gateway channel "
			    "dropped: %s",
			    dchan_strerror(rc));
		return;
	}
	dtrans__reply_note(ag, &req.reply, req.req_id);
	w = (struct who){
		&req.reply,
		req.op,
		req.req_id,
		req.op == DCHAN_GW_SEND && (req.arg & DCHAN_GW_F_BUFFERED),
		req.target.node_id,
		req.target.chan_uid};
	node = req.target.node_id - 1; /* DTRANS_NODE_ID's inverse */
	if (node >= ag->nnodes || node == ag->node) {
		dtrans__log(ag,
			    "request for node id %llu, which this runtime "
			    "of %u nodes has no agent for",
			    (unsigned long long)req.target.node_id, ag->nnodes);
		fail_req(ag, &w, -DCHAN_E_NODELOST);
		return;
	}
	if (__atomic_load_n(&ag->peers[node].down, __ATOMIC_ACQUIRE)) {
		/* known lost: no dial, no wait for the peer timeout */
		DTRANS__STAT(ag, node, failed_ops, 1);
		fail_req(ag, &w, -DCHAN_E_NODELOST);
		return;
	}
	p = pending_new(ag);
	if (!p) {
		fail_req(ag, &w, -ENOMEM);
		return;
	}
	pe = &ag->peers[node];
	p->xid = ++ag->next_xid;
	p->node = (uint32_t)node;
	p->op = req.op;
	p->req_id = req.req_id;
	p->reply = req.reply;
	p->buffered = w.buffered;
	p->chan_uid = req.target.chan_uid;
	p->since_ns = dtrans__now_ns();
	/* behind requests still waiting for the link, never ahead of them:
	 * a thread's buffered sends arrive in the order it made them */
	if (pe->out && pe->out->state == DTRANS__L_READY && !pe->nunsent &&
	    fwd_send(ag, pe->out, p->xid, raw, len, m) == 0) {
		/* sent */
	} else if (len >= DTRANS__ZC_MIN) {
		/* no link yet: it waits where it lies */
		p->msg = *m;
		m->data = NULL;
		p->raw = p->msg.data;
		p->raw_len = len;
		pe->nunsent++;
	} else if ((p->raw = malloc(len ? len : 1))) {
		memcpy(p->raw, raw, len);
		p->raw_len = len;
		pe->nunsent++;
	} else {
		fail_req(ag, &w, -ENOMEM);
		free(p);
		return;
	}
	pe->npending++;
	p->hnext = ag->xids[p->xid % DTRANS__XID_BUCKETS];
	ag->xids[p->xid % DTRANS__XID_BUCKETS] = p;
	if (p->raw) /* waits for a link: after it is recorded, so that a
		       dial refused at once fails it too */
		fwd_dial(ag, p->node, p->since_ns);
}

/* Take up to a batch of requests from the gateway channel; returns how
 * many. */
int dtrans__gw_drain(struct dtrans_agent *ag)
{
	dchan_msg_t m;
	int i;

	for (i = 0; i < DTRANS__GW_BATCH; i++) {
		if (dchan_recv_zc(ag->gw, 0, &m) < 0)
			break;
		fwd_one(ag, &m);
		if (m.data)
			dchan_msg_release(&m);
	}
	ag->gw_again = i == DTRANS__GW_BATCH;
	return i;
}

static int by_xid(const void *a, const void *b)
{
	uint64_t x = (*(struct dtrans__pending *const *)a)->xid;
	uint64_t y = (*(struct dtrans__pending *const *)b)->xid;

	return (x > y) - (x < y);
}

/* The link to node became ready: send what waited for it, in the order
 * it came (the hash table's order is not). */
void dtrans__fwd_ready(struct dtrans_agent *ag, uint32_t node)
{
	struct dtrans__peer *pe = &ag->peers[node];
	struct dtrans__pending **v;
	size_t n = 0;

	if (!pe->nunsent)
		return;
	v = malloc(pe->nunsent * sizeof *v);
	if (!v)
		return; /* they wait for the next tick's try */
	for (size_t b = 0; n < pe->nunsent && b < DTRANS__XID_BUCKETS; b++)
		for (struct dtrans__pending *p = ag->xids[b]; p; p = p->hnext)
			if (p->node == node && p->raw)
				v[n++] = p;
	qsort(v, n, sizeof *v, by_xid);
	for (size_t i = 0; i < n; i++) {
		struct dtrans__pending *p = v[i];
		bool kept = p->msg.data != NULL; /* in the pool */

		if (fwd_send(ag, pe->out, p->xid, p->raw, p->raw_len, &p->msg) <
		    0)
			break;
		if (!kept)
			free(p->raw); /* the link took a copy */
		p->raw = NULL;
		pe->nunsent--;
	}
	free(v);
}

void dtrans__fwd_cpl(struct dtrans_agent *ag, uint32_t node, uint64_t xid,
		     const void *cpl, size_t len)
{
	struct dtrans__pending *p = *xid_slot(ag, xid);

	if (!p || p->node != node || p->raw) {
		dtrans__log(ag,
			    "completion from node %u for no request of "
			    "ours dropped",
			    node);
		return;
	}
	DTRANS__STAT(ag, node, completions_recv, 1);
	if (p->buffered) {
		struct who w = who_of(p);
		dchan_gw_cpl_t c;
		int st = dchan_gw_cpl_decode(cpl, len, &c);

		fail_req(ag, &w, st < 0 ? st : c.status);
	} else {
		deliver(ag, &p->reply, cpl, len);
	}
	pending_free(ag, p);
}

/* Node's link is gone: its requests in flight fail (all: the unsent too). */
void dtrans__fwd_lost(struct dtrans_agent *ag, uint32_t node, bool all,
		      const char *why)
{
	struct dtrans__peer *pe = &ag->peers[node];
	uint64_t n = 0;

	for (size_t b = 0;
	     pe->npending > pe->nunsent * !all && b < DTRANS__XID_BUCKETS;
	     b++) {
		struct dtrans__pending **pp = &ag->xids[b];

		while (*pp) {
			struct dtrans__pending *p = *pp;
			struct who w;

			if (p->node != node || (p->raw && !all)) {
				pp = &p->hnext;
				continue;
			}
			/* counted before the requester can see it */
			DTRANS__STAT(ag, node, failed_ops, 1);
			w = who_of(p);
			fail_req(ag, &w, -DCHAN_E_NODELOST);
			pending_free(ag, p);
			n++;
		}
	}
	if (n)
		dtrans__log(ag, "%llu operations on node %u failed: %s",
			    (unsigned long long)n, node, why);
}

/*
 * Requests of processes that died while waiting: the peer is told to drop
 * them (a receive parked there with no deadline would otherwise wait
 * forever and take a message nobody will get), and their records go.  A
 * gateway request's id carries its requester's pid in the top 24 bits.
 * A buffered send stays: its sender counted it as sent, as bytes written
 * to a pipe stay readable after the writer is gone.
 */
static void fwd_reap(struct dtrans_agent *ag, uint64_t now)
{
	for (size_t b = 0; b < DTRANS__XID_BUCKETS; b++) {
		struct dtrans__pending **pp = &ag->xids[b];

		while (*pp) {
			struct dtrans__pending *p = *pp;
			struct dtrans__link *l = ag->peers[p->node].out;
			pid_t pid = (pid_t)(p->req_id >> 40);

			if (p->raw || p->buffered ||
			    now - p->since_ns < DTRANS__REAP_NS || pid <= 0 ||
			    kill(pid, 0) == 0 || errno != ESRCH) {
				pp = &p->hnext;
				continue;
			}
			if (l && l->state == DTRANS__L_READY)
				dtrans__link_frame(l, DTRANS__F_CANCEL, p->xid,
						   NULL, 0, NULL, 0);
			pending_free(ag, p);
		}
	}
}

/* Requests that could not be sent within the peer timeout fail; peers
 * with unsent requests are dialed again. */
void dtrans__fwd_tick(struct dtrans_agent *ag, uint64_t now)
{
	if (now - ag->last_reap_ns >= DTRANS__REAP_NS) {
		ag->last_reap_ns = now;
		fwd_reap(ag, now);
	}
	for (uint32_t node = 0; node < ag->nnodes; node++) {
		struct dtrans__peer *pe = &ag->peers[node];
		bool old = false;

		if (!pe->nunsent)
			continue;
		for (size_t b = 0; !old && b < DTRANS__XID_BUCKETS; b++)
			for (struct dtrans__pending *p = ag->xids[b]; p;
			     p = p->hnext)
				old |= p->node == node && p->raw &&
				       now - p->since_ns > ag->peer_timeout_ns;
		if (old && (!pe->out || pe->out->state != DTRANS__L_READY))
			dtrans__fwd_lost(ag, node, true,
					 "node unreachable for the peer "
					 "timeout");
		else
			fwd_dial(ag, node, now);
	}
}

void dtrans__fwd_news(struct dtrans_agent *ag, uint64_t now)
{
	for (uint32_t node = 0; node < ag->nnodes; node++) {
		struct dtrans__peer *pe = &ag->peers[node];
		bool news, down;

		pthread_mutex_lock(&ag->mu);
		news = pe->news;
		down = pe->down;
		pe->news = false;
		pthread_mutex_unlock(&ag->mu);
		if (!news)
			continue;
		if (down) {
			if (pe->out)
				dtrans__link_drop(pe->out, "the node is lost");
			if (pe->npending)
				dtrans__fwd_lost(ag, node, true,
						 "the node is lost");
		} else if (pe->nunsent && !pe->out) {
			pe->next_dial_ns = 0; /* its address came: now */
			fwd_dial(ag, node, now);
		}
	}
}

/* The agent stops: nothing waiting for a peer will be answered. */
void dtrans__fwd_fail_all(struct dtrans_agent *ag)
{
	for (uint32_t node = 0; node < ag->nnodes; node++)
		if (ag->peers[node].npending)
			dtrans__fwd_lost(ag, node, true, "the agent stopped");
}
