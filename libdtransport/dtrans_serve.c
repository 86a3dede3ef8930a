/*
 * The peers' requests, carried out on this node's channels.  Each request
 * is first tried without waiting; one that would have to wait (a receive
 * on an empty channel, a send to a full one, a lock someone holds) is
 * parked: a record with its deadline in a timer heap and a place in the
 * list of its channel, which the watch set (dchan_watch) reports when it
 * changes.  No request holds a thread, so thousands of parked waits cost
 * memory, not latency for the requests behind them.
 */
#include "config.h"
#include "dtrans_agent.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define DTRANS__UNWATCHED_MS 10 /* retry period past the watch set's size */

/* ---- the timer heap of parked deadlines --------------------------------- */

static void heap_set(struct dtrans_agent *ag, size_t i,
		     struct dtrans__parked *p)
{
	ag->heap[i] = p;
	p->heap_idx = i;
}

static void heap_up(struct dtrans_agent *ag, size_t i)
{
	struct dtrans__parked *p = ag->heap[i];

	while (i > 0 && ag->heap[(i - 1) / 2]->deadline_ns > p->deadline_ns) {
		heap_set(ag, i, ag->heap[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	heap_set(ag, i, p);
}

static void heap_down(struct dtrans_agent *ag, size_t i)
{
	struct dtrans__parked *p = ag->heap[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= ag->nheap)
			break;
		if (c + 1 < ag->nheap &&
		    ag->heap[c + 1]->deadline_ns < ag->heap[c]->deadline_ns)
			c++;
		if (ag->heap[c]->deadline_ns >= p->deadline_ns)
			break;
		heap_set(ag, i, ag->heap[c]);
		i = c;
	}
	heap_set(ag, i, p);
}

static int heap_push(struct dtrans_agent *ag, struct dtrans__parked *p)
{
	if (ag->nheap == ag->heap_cap) {
		size_t cap = ag->heap_cap ? 2 * ag->heap_cap : 256;
		struct dtrans__parked **h = realloc(ag->heap, cap * sizeof *h);

		if (!h)
			return -ENOMEM;
		ag->heap = h;
		ag->heap_cap = cap;
	}
	heap_set(ag, ag->nheap++, p);
	heap_up(ag, ag->nheap - 1);
	return 0;
}

static void heap_del(struct dtrans_agent *ag, struct dtrans__parked *p)
{
	size_t i = p->heap_idx;

	if (--ag->nheap == i)
		return;
	heap_set(ag, i, ag->heap[ag->nheap]);
	heap_up(ag, i);
	heap_down(ag, ag->heap[i]->heap_idx);
}

/* ---- watched channels --------------------------------------------------- */

static unsigned events_of(const dchan_gw_req_t *r)
{
	switch (r->op) {
	case DCHAN_GW_SEND:
		return DCHAN_POLLOUT;
	case DCHAN_GW_POLL:
		return r->arg & (DCHAN_POLLIN | DCHAN_POLLOUT);
	default:
		return DCHAN_POLLIN;
	}
}

static int wchan_get(struct dtrans_agent *ag, const dchan_desc_t *d,
		     unsigned events, struct dtrans__wchan **wc_out)
{
	struct dtrans__wchan *wc;
	int rc;

	for (wc = ag->wchans; wc && wc->chan_uid != d->chan_uid; wc = wc->next)
		;
	if (!wc) {
		wc = calloc(1, sizeof *wc);
		if (!wc)
			return -ENOMEM;
		rc = dchan_gw_attach(d, &wc->ch);
		if (rc < 0) {
			free(wc);
			return rc;
		}
		wc->chan_uid = d->chan_uid;
		wc->next = ag->wchans;
		ag->wchans = wc;
	}
	if ((wc->events | events) != wc->events || !wc->watched) {
		wc->events |= events;
		wc->watched =
			dchan_watch_add(ag->watch, wc->ch, wc->events, wc) == 0;
	}
	*wc_out = wc;
	return 0;
}

/* Watch only for what the waits left need: a channel watched for a
 * direction nobody waits on any more would be reported ready again and
 * again. */
static void wchan_rewatch(struct dtrans_agent *ag, struct dtrans__wchan *wc)
{
	unsigned ev = 0;

	for (struct dtrans__parked *p = wc->head; p; p = p->wnext)
		ev |= p->events;
	if (!ev || (ev == wc->events && wc->watched))
		return;
	wc->events = ev;
	wc->watched = dchan_watch_add(ag->watch, wc->ch, ev, wc) == 0;
}

static void wchan_put(struct dtrans_agent *ag, struct dtrans__wchan *wc)
{
	struct dtrans__wchan **pp = &ag->wchans;

	if (wc->head) {
		wchan_rewatch(ag, wc);
		return;
	}
	while (*pp != wc)
		pp = &(*pp)->next;
	*pp = wc->next;
	if (wc->watched)
		dchan_watch_del(ag->watch, wc->ch);
	dchan_detach(wc->ch);
	free(wc);
}

/* ---- parking ------------------------------------------------------------ */

static void unpark(struct dtrans_agent *ag, struct dtrans__parked *p)
{
	struct dtrans__wchan *wc = p->wc;
	struct dtrans__link *l = p->link;

	heap_del(ag, p);
	if (p->wprev)
		p->wprev->wnext = p->wnext;
	else
		wc->head = p->wnext;
	if (p->wnext)
		p->wnext->wprev = p->wprev;
	else
		wc->tail = p->wprev;
	if (p->lprev)
		p->lprev->lnext = p->lnext;
	else
		l->parked = p->lnext;
	if (p->lnext)
		p->lnext->lprev = p->lprev;
	if (l->peer < ag->nnodes)
		__atomic_fetch_sub(&ag->peers[l->peer].st.parked, 1,
				   __ATOMIC_RELAXED);
	ag->nparked--;
	free(p->raw);
	free(p);
}

static int park(struct dtrans__link *l, uint64_t xid, const void *raw,
		size_t len, const dchan_gw_req_t *req, uint64_t now)
{
	struct dtrans_agent *ag = l->ag;
	struct dtrans__parked *p = calloc(1, sizeof *p);
	int rc;

	if (!p)
		return -ENOMEM;
	p->raw = malloc(len);
	if (!p->raw ||
	    dchan_gw_req_decode(memcpy(p->raw, raw, len), len, &p->req) < 0) {
		free(p->raw);
		free(p);
		return -ENOMEM;
	}
	p->events = events_of(req);
	p->deadline_ns = req->timeout_ns >= UINT64_MAX - now
				 ? UINT64_MAX
				 : now + req->timeout_ns;
	rc = wchan_get(ag, &req->target, p->events, &p->wc);
	if (rc == 0)
		rc = heap_push(ag, p);
	if (rc < 0) {
		if (p->wc)
			wchan_put(ag, p->wc);
		free(p->raw);
		free(p);
		return rc;
	}
	p->link = l;
	p->xid = xid;
	p->wprev = p->wc->tail;
	if (p->wc->tail)
		p->wc->tail->wnext = p;
	else
		p->wc->head = p;
	p->wc->tail = p;
	p->lnext = l->parked;
	if (l->parked)
		l->parked->lprev = p;
	l->parked = p;
	__atomic_fetch_add(&ag->peers[l->peer].st.parked, 1, __ATOMIC_RELAXED);
	ag->nparked++;
	return 0;
}

/* Send a completion with only a status (timeouts, failures here). */
static void reply_status(struct dtrans__link *l, uint64_t xid,
			 const dchan_gw_req_t *req, int status)
{
	dchan_gw_cpl_t c = {
		.op = req->op, .req_id = req->req_id, .status = status};
	unsigned char buf[128];
	int64_t n = dchan_gw_cpl_encode(&c, buf, sizeof buf);

	if (n > 0)
		dtrans__link_frame(l, DTRANS__F_CPL, xid, buf, (size_t)n, NULL,
				   0);
}

/*
 * A receive of a large message is not built in the heap, as
 * dchan_gw_execute builds it (the message copied out of the channel, and
 * again behind the completion's header: twice its size): the message is
 * taken without a copy and written to the link from its pool allocation,
 * behind a header of its own, like a large send.  Returns 1 when the
 * completion is on its way; 0 leaves the request to the general path (a
 * requester taking only small messages -- the common round trip pays
 * nothing here --, a small message or none, a remote target, or one
 * past the requester's cap, whose error that path reports).
 */
static int try_recv_streamed(struct dtrans__link *l, uint64_t xid,
			     const dchan_gw_req_t *req)
{
	dchan_gw_cpl_t c = {.op = req->op, .req_id = req->req_id};
	struct dtrans__zseg z = {0};
	unsigned char head[64];
	dchan_t *ch;
	size_t len;
	int64_t n;
	int rc = -EAGAIN;

	if (req->op != DCHAN_GW_RECV || req->cap < DTRANS__ZC_MIN ||
	    dchan_gw_attach(&req->target, &ch) < 0)
		return 0;
	if (dchan_pool(ch) && dchan_peek(ch, NULL, 0, 0, &len) == 0 &&
	    len >= DTRANS__ZC_MIN && len <= req->cap)
		rc = dchan_recv_zc(ch, 0, &z.msg);
	/* a receiver of this node took the message peeked at, and the one
	 * taken instead is past the cap: it goes back (behind the others),
	 * and the general path answers */
	if (rc == 0 && z.msg.len > req->cap) {
		if (dchan_send_zc(ch, z.msg.data, z.msg.len, 0) < 0)
			dchan_msg_release(&z.msg);
		rc = -EMSGSIZE;
	}
	if (rc < 0) {
		dchan_detach(ch);
		return 0;
	}
	/* the handle keeps the message's pool mapped until it is written */
	z.hold = ch;
	c.payload_len = z.msg.len;
	n = dchan_gw_cpl_encode_head(&c, head, sizeof head);
	z.p = z.msg.data;
	z.len = z.msg.len;
	if (n < 0 || dtrans__link_frame_zc(l, DTRANS__F_CPL, xid, head,
					   (size_t)n, &z) < 0) {
		dchan_msg_release(&z.msg);
		dchan_detach(ch);
		reply_status(l, xid, req, n < 0 ? (int)n : -ENOMEM);
	}
	return 1;
}

/*
 * Try req once.  Returns 1 and sends the completion when it finished
 * (with success or with its error), 0 when it would have to wait.
 */
static int try_req(struct dtrans__link *l, uint64_t xid,
		   const dchan_gw_req_t *req)
{
	dchan_gw_req_t once = *req;
	dchan_gw_cpl_t c;
	size_t len;
	void *cpl;
	int rc;

	if (try_recv_streamed(l, xid, req))
		return 1;
	once.timeout_ns = 0;
	rc = dchan_gw_execute(&once, &cpl, &len);
	if (rc < 0) {
		reply_status(l, xid, req, rc);
		return 1;
	}
	rc = dchan_gw_cpl_decode(cpl, len, &c);
	if (rc == 0 && c.status == -EAGAIN && req->timeout_ns != 0) {
		free(cpl);
		return 0;
	}
	if (len >= DTRANS__ZC_MIN) {
		/* a large completion (a received message) is written from
		 * the buffer it was made in, which the link then frees */
		struct dtrans__zseg z = {.p = cpl, .len = len, .heap = cpl};

		if (dtrans__link_frame_zc(l, DTRANS__F_CPL, xid, NULL, 0, &z) ==
		    0)
			return 1;
	}
	dtrans__link_frame(l, DTRANS__F_CPL, xid, cpl, len, NULL, 0);
	free(cpl);
	return 1;
}

/* Sends wait parked for room in req's target: a new send queues behind
 * them (a thread's buffered sends stay in order), not ahead. */
static bool sends_parked(struct dtrans_agent *ag, const dchan_gw_req_t *req)
{
	struct dtrans__wchan *wc = ag->wchans;

	if (!wc || req->op != DCHAN_GW_SEND || req->timeout_ns == 0)
		return false;
	while (wc && wc->chan_uid != req->target.chan_uid)
		wc = wc->next;
	for (struct dtrans__parked *p = wc ? wc->head : NULL; p; p = p->wnext)
		if (p->req.op == DCHAN_GW_SEND)
			return true;
	return false;
}

void dtrans__serve_req(struct dtrans__link *l, uint64_t xid, const void *raw,
		       size_t len)
{
	struct dtrans_agent *ag = l->ag;
	dchan_gw_req_t req;
	int rc = dchan_gw_req_decode(raw, len, &req);

	if (rc < 0) {
		dtrans__log(ag, "malformed request from node %u dropped: %s",
			    l->peer, dchan_strerror(rc));
		DTRANS__STAT(ag, l->peer, errors, 1);
		return;
	}
	DTRANS__STAT(ag, l->peer, requests_served, 1);
	if (!sends_parked(ag, &req) && try_req(l, xid, &req))
		return;
	rc = park(l, xid, raw, len, &req, dtrans__now_ns());
	if (rc < 0)
		reply_status(l, xid, &req, rc);
}

/* Retry the waits of one channel, oldest first; once an operation of a
 * direction had to wait again, the others of that direction do too. */
void dtrans__serve_retry(struct dtrans_agent *ag, struct dtrans__wchan *wc)
{
	unsigned blocked = 0;
	struct dtrans__parked *p, *next;

	for (p = wc->head; p; p = next) {
		next = p->wnext;
		if ((p->events & ~blocked) == 0)
			continue;
		if (try_req(p->link, p->xid, &p->req))
			unpark(ag, p);
		else
			blocked |= p->events;
		if (blocked == (DCHAN_POLLIN | DCHAN_POLLOUT))
			break;
	}
	wchan_put(ag, wc);
}

void dtrans__serve_expire(struct dtrans_agent *ag, uint64_t now)
{
	while (ag->nheap && ag->heap[0]->deadline_ns <= now) {
		struct dtrans__parked *p = ag->heap[0];
		struct dtrans__wchan *wc = p->wc;

		/* one last try: it may have become possible just now */
		if (!try_req(p->link, p->xid, &p->req))
			reply_status(p->link, p->xid, &p->req, -ETIMEDOUT);
		unpark(ag, p);
		wchan_put(ag, wc);
	}
}

/* Channels the watch set had no room for are retried on every tick. */
void dtrans__serve_tick(struct dtrans_agent *ag)
{
	struct dtrans__wchan *wc, *next;

	for (wc = ag->wchans; wc; wc = next) {
		next = wc->next;
		if (!wc->watched)
			dtrans__serve_retry(ag, wc);
	}
}

/* The requester died: its wait, if parked here, goes (no completion). */
void dtrans__serve_cancel(struct dtrans__link *l, uint64_t xid)
{
	struct dtrans__parked *p;

	for (p = l->parked; p && p->xid != xid; p = p->lnext)
		;
	if (p) {
		struct dtrans__wchan *wc = p->wc;

		unpark(l->ag, p);
		wchan_put(l->ag, wc);
	}
}

/* A link to a peer is gone: its parked waits go with it. */
void dtrans__serve_unlink(struct dtrans__link *l)
{
	while (l->parked) {
		struct dtrans__wchan *wc = l->parked->wc;

		unpark(l->ag, l->parked);
		wchan_put(l->ag, wc);
	}
}

/* Milliseconds until the next parked deadline (-1: none). */
int dtrans__serve_timeout_ms(struct dtrans_agent *ag, uint64_t now)
{
	uint64_t d;
	bool unwatched = false;

	for (struct dtrans__wchan *wc = ag->wchans; wc && !unwatched;
	     wc = wc->next)
		unwatched = !wc->watched;
	if (!ag->nheap)
		return unwatched ? DTRANS__UNWATCHED_MS : -1;
	d = ag->heap[0]->deadline_ns;
	if (d <= now)
		return 0;
	d = (d - now + 999999) / 1000000;
	if (unwatched && d > DTRANS__UNWATCHED_MS)
		return DTRANS__UNWATCHED_MS;
	return d > 3600000 ? 3600000 : (int)d;
}
