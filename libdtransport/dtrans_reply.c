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
	struct reply *next;
};

struct dtrans__replies {
	struct reply *b[BUCKETS];
	uint64_t last_reap_ns;
};

void dtrans__reply_note(struct dtrans_agent *ag, const dchan_desc_t *reply,
			uint64_t req_id)
{
	struct reply **pp, *r;
	pid_t pid = (pid_t)(req_id >> 40);
	dchan_desc_t gw;

	if (pid <= 0 || dchan_desc_get(ag->gw, &gw) < 0 ||
	    reply->node_id != gw.node_id ||
	    reply->pool.pool_uid != gw.pool.pool_uid)
		return; /* not one of the gateway pool's channels */
	if (!ag->replies && !(ag->replies = calloc(1, sizeof *ag->replies)))
		return; /* no memory: the channel stays, nothing worse */
	pp = &ag->replies->b[reply->chan_uid % BUCKETS];
	for (r = *pp; r; r = r->next)
		if (r->desc.chan_uid == reply->chan_uid)
			return;
	r = malloc(sizeof *r);
	if (!r)
		return;
	r->desc = *reply;
	r->pid = pid;
	r->next = *pp;
	*pp = r;
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
			if (dchan_attach(&r->desc, &ch) == 0)
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
			free(r);
		}
	}
	free(ag->replies);
	ag->replies = NULL;
}
