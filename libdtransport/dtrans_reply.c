/*
 * The requesters' reply channels.  Each thread that uses a remote channel
 * makes a reply channel in the gateway's pool and keeps it for its life
 * (libdchan cannot free it: the agent may still be inside a send to it).
 * The agent is the only writer of reply channels and runs on one thread,
 * so it is the one place that knows when nobody can touch one any more:
 * once the process that made it has ended.  It notes each reply channel
 * with its maker's pid (a request id's top 24 bits) and destroys the
 * channels of ended processes, with the completions nobody took, and
 * reclaims what else they held in that pool, so that a process killed in
 * the middle of a remote operation, or one that just exited, leaves no
 * memory behind in the gateway's pool.
 *
 * The table also keeps each reply channel attached, so that a completion
 * costs one send, not an attach and a detach, and counts the buffered
 * sends answered since the last acknowledgement of each: one
 * acknowledgement per reply channel per loop turn, and when the channel
 * is full the count grows and waits for the next turn instead of a
 * completion being dropped.
 */
#include "config.h"
#include "dtrans_agent.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>

#define BUCKETS 1024u

struct reply {
	dchan_desc_t desc;
	pid_t pid;
	dchan_t *ch; /* attached on first use, NULL before */
	/* buffered sends answered and not acknowledged yet */
	uint64_t acks;
	int status; /* the first error among them */
	uint64_t err_node, err_uid;
	bool queued; /* in ackq */
	struct reply *next, *anext;
};

struct dtrans__replies {
	struct reply *b[BUCKETS];
	struct reply *ackq; /* with acknowledgements to write */
	uint64_t last_reap_ns;
	uint64_t gw_node, gw_pool; /* the gateway's, looked up once */
};

static struct reply *reply_find(struct dtrans_agent *ag, uint64_t uid)
{
	struct reply *r = ag->replies ? ag->replies->b[uid % BUCKETS] : NULL;

	while (r && r->desc.chan_uid != uid)
		r = r->next;
	return r;
}

static struct reply *reply_add(struct dtrans_agent *ag,
			       const dchan_desc_t *reply, uint64_t req_id)
{
	struct reply **pp, *r;
	pid_t pid = (pid_t)(req_id >> 40);

	if (!ag->replies) {
		dchan_desc_t gw;

		if (dchan_desc_get(ag->gw, &gw) < 0)
			return NULL;
		ag->replies = calloc(1, sizeof *ag->replies);
		if (!ag->replies)
			return NULL; /* the channel stays, nothing worse */
		ag->replies->gw_node = gw.node_id;
		ag->replies->gw_pool = gw.pool.pool_uid;
	}
	if (pid <= 0 || reply->node_id != ag->replies->gw_node ||
	    reply->pool.pool_uid != ag->replies->gw_pool)
		return NULL; /* not one of the gateway pool's channels */
	r = reply_find(ag, reply->chan_uid);
	if (r)
		return r;
	r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	pp = &ag->replies->b[reply->chan_uid % BUCKETS];
	r->desc = *reply;
	r->pid = pid;
	r->next = *pp;
	*pp = r;
	return r;
}

void dtrans__reply_note(struct dtrans_agent *ag, const dchan_desc_t *reply,
			uint64_t req_id)
{
	reply_add(ag, reply, req_id);
}

dchan_t *dtrans__reply_chan(struct dtrans_agent *ag, const dchan_desc_t *reply)
{
	struct reply *r = reply_find(ag, reply->chan_uid);

	if (r && !r->ch && dchan_attach(&r->desc, &r->ch) < 0)
		r->ch = NULL;
	return r ? r->ch : NULL;
}

/* Encode an acknowledgement of n buffered sends. */
static int64_t ack_encode(uint64_t n, int status, uint64_t node, uint64_t uid,
			  void *buf, size_t len)
{
	uint64_t who[2] = {node, uid};
	dchan_gw_cpl_t c = {.op = DCHAN_GW_SEND,
			    .req_id = DCHAN_GW_ACK_ID,
			    .status = status,
			    .value = n,
			    .payload = status < 0 ? who : NULL,
			    .payload_len = status < 0 ? sizeof who : 0};

	return dchan_gw_cpl_encode(&c, buf, len);
}

void dtrans__reply_ack(struct dtrans_agent *ag, const dchan_desc_t *reply,
		       uint64_t req_id, int status, uint64_t node_id,
		       uint64_t chan_uid)
{
	struct reply *r = reply_add(ag, reply, req_id);
	unsigned char buf[128];
	dchan_t *ch;
	int64_t n;

	if (!r) {
		/* a reply channel we cannot keep: answer this one alone */
		n = ack_encode(1, status, node_id, chan_uid, buf, sizeof buf);
		if (n > 0 && dchan_attach(reply, &ch) == 0) {
			if (dchan_send(ch, buf, (size_t)n, 0) < 0)
				dtrans__log(ag, "acknowledgement dropped: "
						"reply channel full");
			dchan_detach(ch);
		}
		return;
	}
	r->acks++;
	if (status < 0 && r->status == 0) {
		r->status = status;
		r->err_node = node_id;
		r->err_uid = chan_uid;
	}
	if (!r->queued) {
		r->queued = true;
		r->anext = ag->replies->ackq;
		ag->replies->ackq = r;
	}
}

bool dtrans__reply_flush(struct dtrans_agent *ag)
{
	struct reply **pp;
	bool waiting = false;

	if (!ag->replies)
		return false;
	for (pp = &ag->replies->ackq; *pp;) {
		struct reply *r = *pp;
		unsigned char buf[128];
		int64_t n = ack_encode(r->acks, r->status, r->err_node,
				       r->err_uid, buf, sizeof buf);
		int rc = -EIO;

		if (!r->ch && dchan_attach(&r->desc, &r->ch) < 0)
			r->ch = NULL;
		if (n > 0 && r->ch)
			rc = dchan_send(r->ch, buf, (size_t)n, 0);
		if (rc == -EAGAIN) {
			/* full: the count waits for the next turn */
			waiting = true;
			pp = &r->anext;
			continue;
		}
		if (rc < 0)
			dtrans__log(ag,
				    "%llu acknowledgements dropped: reply "
				    "channel: %s",
				    (unsigned long long)r->acks,
				    dchan_strerror(rc));
		r->acks = 0;
		r->status = 0;
		r->queued = false;
		*pp = r->anext;
	}
	return waiting;
}

static void reply_unqueue(struct dtrans__replies *rs, struct reply *r)
{
	struct reply **pp = &rs->ackq;

	while (r->queued && *pp) {
		if (*pp == r) {
			*pp = r->anext;
			r->queued = false;
		} else {
			pp = &(*pp)->anext;
		}
	}
}

/* Destroy the reply channels of processes that ended (once a period). */
void dtrans__reply_reap(struct dtrans_agent *ag, uint64_t now)
{
	if (!ag->replies || now - ag->replies->last_reap_ns < DTRANS__REAP_NS)
		return;
	ag->replies->last_reap_ns = now;
	for (size_t b = 0; b < BUCKETS; b++) {
		struct reply **pp = &ag->replies->b[b];

		while (*pp) {
			struct reply *r = *pp;
			dchan_t *ch;

			if (kill(r->pid, 0) == 0 || errno != ESRCH) {
				pp = &r->next;
				continue;
			}
			reply_unqueue(ag->replies, r);
			if (r->ch)
				dchan_destroy(r->ch);
			else if (dchan_attach(&r->desc, &ch) == 0)
				dchan_destroy(ch);
			/* and what it allocated there and never handed over
			 * (a request's payload it was killed copying), as
			 * a runtime does for the processes it reaps */
			dmem_pool_reclaim(dchan_pool(ag->gw), r->pid, NULL);
			*pp = r->next;
			free(r);
		}
	}
}

/* The agent goes: forget the notes (the channels stay with the pool). */
void dtrans__reply_forget(struct dtrans_agent *ag)
{
	if (!ag->replies)
		return;
	for (size_t b = 0; b < BUCKETS; b++) {
		while (ag->replies->b[b]) {
			struct reply *r = ag->replies->b[b];

			ag->replies->b[b] = r->next;
			if (r->ch)
				dchan_detach(r->ch);
			free(r);
		}
	}
	free(ag->replies);
	ag->replies = NULL;
}
