/* The client side of the services: connecting, conversations and the
 * request/reply transaction every public call is built on.
 *
 * A conversation is a reply endpoint the services know by a client id.
 * Calls take one from the handle's free list (making a new one when all
 * are busy), so a thread blocked in dlaunch_wait never holds up another
 * thread's dlaunch_spawn.  Replies carry the request id; a reply that
 * arrives after its caller gave up is recognised and dropped.
 *
 * Closing a handle (dlaunch_detach, dlaunch_runtime_stop) while other
 * threads are inside calls on it: new calls are refused, each busy
 * conversation gets a wake message on its reply endpoint (a STOP, which
 * the services never send to clients) so that its caller returns
 * -DLAUNCH_E_CLOSED, and the closer waits for the last call to leave
 * before anything is freed.
 */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "dlaunch_private.h"

/* How long the services may take to answer a request that does not wait
 * for anything. */
#define SERVICE_DEADLINE_NS (30ull * 1000000000ull)

/* How long dlaunch__disconnect waits for the services to confirm they
 * handled its goodbyes (they are quick unless gone or stuck). */
#define FENCE_DEADLINE_NS (5ull * 1000000000ull)

/* recv_reply: the wake message of dlaunch__close arrived. */
#define WOKEN (-DLAUNCH_ERRBASE - 1000)

static void conv_free(dlaunch__conv_t *c)
{
	dlaunch__ep_close(c->reply);
	free(c->rbuf);
	free(c);
}

static int send_locked(dlaunch_t *rt, dlaunch__msg_t *m)
{
	int rc;

	pthread_mutex_lock(&rt->svc_lock);
	rc = dlaunch__ep_send(rt->svc, m->buf, m->len, SERVICE_DEADLINE_NS);
	pthread_mutex_unlock(&rt->svc_lock);
	if (rc == -ETIMEDOUT)
		rc = -DLAUNCH_E_SERVICES;
	return rc;
}

/* Wait for the reply to req_id on c, dropping stale ones. */
static int recv_reply(dlaunch__conv_t *c, uint64_t req_id, uint64_t timeout,
		      dlaunch__msg_t *reply)
{
	dlaunch__msg_hdr_t h;
	size_t len;
	int rc;

	for (;;) {
		rc = dlaunch__ep_recv(c->reply, c->rbuf, DLAUNCH_MSG_MAX,
				      timeout, &len);
		if (rc == -ETIMEDOUT || rc == -EAGAIN)
			return -DLAUNCH_E_SERVICES;
		if (rc)
			return rc;
		rc = dlaunch__msg_open(reply, c->rbuf, len, &h);
		if (rc)
			return rc;
		if (h.type == DLAUNCH_MSG_REPLY && h.req_id == req_id)
			return h.status;
		if (h.type == DLAUNCH_MSG_STOP)
			return WOKEN;
	}
}

/* Unlink c from the handle's list of conversations (lock held). */
static void conv_unlink(dlaunch_t *rt, dlaunch__conv_t *c)
{
	for (dlaunch__conv_t **pp = &rt->all_convs; *pp; pp = &(*pp)->all_next)
		if (*pp == c) {
			*pp = c->all_next;
			return;
		}
}

/* A conversation with another node's services: this node's services are
 * told, so that they close it there when this process ends (the record
 * of a client on another node would otherwise outlive it: nothing there
 * sees this process end).  On failure the conversation still works.
 * release: the conversation is closed (a BYE was sent): forget it. */
static void hold(dlaunch_t *sub, const dlaunch__conv_t *c, bool release)
{
	char text[DLAUNCH_EP_TEXT_MAX];
	dlaunch__msg_t m;

	if (dlaunch__ep_text(sub->svc, text, sizeof text) < 0)
		return;
	dlaunch__msg_init(&m, DLAUNCH_MSG_HOLD, 0, 0);
	dlaunch__msg_put_i64(&m, getpid());
	dlaunch__msg_put_str(&m, text);
	dlaunch__msg_put_u64(&m, c->client_id);
	dlaunch__msg_put_u64(&m, release);
	if (dlaunch__notify(sub->parent, &m))
		dlaunch__log(DLAUNCH_LOG_DEBUG,
			     "conversation %u with %s: not held (%s)",
			     c->client_id, text, dlaunch_errmsg());
}

/* A new conversation: a reply endpoint announced to the services.  It is
 * listed (busy) before the announcement so that closing can wake it; a
 * fence (see dlaunch__disconnect) is not listed and not refused. */
static int conv_new(dlaunch_t *rt, uint64_t timeout_ns, bool fence,
		    dlaunch__conv_t **out)
{
	dlaunch__conv_t *c = calloc(1, sizeof *c);
	char text[DLAUNCH_EP_TEXT_MAX];
	dlaunch__msg_t m, r;
	bool listed = false;
	int rc = -ENOMEM;

	if (!c || !(c->rbuf = malloc(DLAUNCH_MSG_MAX)))
		goto fail;
	rc = dlaunch__ep_create(rt->reply_pool ? rt->reply_pool
					       : dlaunch__ep_pool(rt->svc),
				16, &c->reply);
	if (rc)
		goto fail;
	rc = dlaunch__ep_text(c->reply, text, sizeof text);
	if (rc < 0)
		goto fail;
	pthread_mutex_lock(&rt->lock);
	if (fence) {
		/* not listed: dlaunch__disconnect frees it itself */
	} else if (rt->closing) {
		rc = dlaunch__fail(-DLAUNCH_E_CLOSED,
				   "the handle is being closed by "
				   "dlaunch_runtime_stop or dlaunch_detach");
	} else {
		c->busy = true;
		c->all_next = rt->all_convs;
		rt->all_convs = c;
		listed = true;
	}
	pthread_mutex_unlock(&rt->lock);
	if (rc < 0)
		goto fail;
	c->next_req = 1;
	dlaunch__msg_init(&m, DLAUNCH_MSG_HELLO, c->next_req, 0);
	dlaunch__msg_put_i64(&m, getpid());
	dlaunch__msg_put_str(&m, text);
	rc = m.err ? m.err : send_locked(rt, &m);
	dlaunch__msg_free(&m);
	if (rc == 0)
		rc = recv_reply(c, c->next_req++, timeout_ns, &r);
	if (rc == WOKEN)
		rc = dlaunch__fail(-DLAUNCH_E_CLOSED,
				   "the handle was closed by "
				   "dlaunch_runtime_stop or dlaunch_detach "
				   "while this call was connecting");
	if (rc < 0)
		goto fail;
	c->client_id = (uint32_t)rc;
	if (rt->parent && !fence)
		hold(rt, c, false);
	*out = c;
	return 0;
fail:
	if (listed) {
		pthread_mutex_lock(&rt->lock);
		conv_unlink(rt, c);
		pthread_mutex_unlock(&rt->lock);
	}
	if (c)
		conv_free(c);
	return rc;
}

static int conv_get(dlaunch_t *rt, dlaunch__conv_t **out)
{
	dlaunch__conv_t *c;
	bool closing;

	pthread_mutex_lock(&rt->lock);
	closing = rt->closing;
	c = closing ? NULL : rt->free_convs;
	if (c) {
		rt->free_convs = c->next;
		c->busy = true;
	}
	pthread_mutex_unlock(&rt->lock);
	if (closing)
		return dlaunch__fail(-DLAUNCH_E_CLOSED,
				     "the handle is being closed by "
				     "dlaunch_runtime_stop or dlaunch_detach");
	if (c) {
		*out = c;
		return 0;
	}
	return conv_new(rt, SERVICE_DEADLINE_NS, false, out);
}

static void conv_put(dlaunch_t *rt, dlaunch__conv_t *c)
{
	pthread_mutex_lock(&rt->lock);
	c->busy = false;
	c->next = rt->free_convs;
	rt->free_convs = c;
	pthread_mutex_unlock(&rt->lock);
}

int dlaunch__enter(dlaunch_t *rt, const char *fn)
{
	int rc = 0;

	pthread_mutex_lock(&rt->lock);
	if (rt->closing)
		rc = -DLAUNCH_E_CLOSED;
	else
		rt->inflight++;
	pthread_mutex_unlock(&rt->lock);
	if (rc)
		return dlaunch__fail(rc,
				     "%s: the handle is being closed by "
				     "dlaunch_runtime_stop or "
				     "dlaunch_detach",
				     fn);
	return 0;
}

void dlaunch__leave(dlaunch_t *rt)
{
	pthread_mutex_lock(&rt->lock);
	if (--rt->inflight == 0 && rt->closing)
		pthread_cond_broadcast(&rt->idle);
	pthread_mutex_unlock(&rt->lock);
}

/* Send the wake message to every busy conversation not yet woken (lock
 * held).  The reply endpoints are this handle's own, so they exist until
 * dlaunch__disconnect; a full one is tried again on the next round. */
static void wake_busy(dlaunch_t *rt)
{
	dlaunch__msg_t m;

	if (dlaunch__msg_init(&m, DLAUNCH_MSG_STOP, 0, 0))
		return;
	for (dlaunch__conv_t *c = rt->all_convs; c; c = c->all_next)
		if (c->busy && !c->woken &&
		    dlaunch__ep_send(c->reply, m.buf, m.len, 0) == 0)
			c->woken = true;
	dlaunch__msg_free(&m);
}

int dlaunch__close(dlaunch_t *rt, const char *fn)
{
	struct timespec t;

	pthread_mutex_lock(&rt->lock);
	if (rt->closing) {
		pthread_mutex_unlock(&rt->lock);
		return dlaunch__fail(-DLAUNCH_E_CLOSED,
				     "%s: another thread is already closing "
				     "this handle",
				     fn);
	}
	rt->closing = true;
	while (rt->inflight > 0) {
		wake_busy(rt);
		/* A caller between taking a conversation and marking it
		 * busy is covered by the next round. */
		clock_gettime(CLOCK_MONOTONIC, &t);
		t.tv_nsec += 20 * 1000000;
		if (t.tv_nsec >= 1000000000) {
			t.tv_sec++;
			t.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&rt->idle, &rt->lock, &t);
	}
	pthread_mutex_unlock(&rt->lock);
	return 0;
}

void dlaunch__call_done(dlaunch_t *rt, dlaunch__conv_t *c)
{
	if (!c)
		return;
	conv_put(rt, c);
	dlaunch__leave(rt);
}

int dlaunch__call(dlaunch_t *rt, dlaunch__msg_t *m, uint64_t timeout_ns,
		  dlaunch__msg_t *reply, dlaunch__conv_t **conv_out)
{
	dlaunch__conv_t *c = NULL;
	uint64_t req, wait;
	uint32_t id;
	int rc = m->err;

	*conv_out = NULL;
	if (rc == 0)
		rc = dlaunch__enter(rt, "dlaunch call");
	if (rc)
		goto out;
	rc = conv_get(rt, &c);
	if (rc) {
		dlaunch__leave(rt);
		goto out;
	}
	*conv_out = c;
	req = c->next_req++;
	id = c->client_id;
	memcpy(m->buf + offsetof(dlaunch__msg_hdr_t, req_id), &req, sizeof req);
	memcpy(m->buf + offsetof(dlaunch__msg_hdr_t, client), &id, sizeof id);
	rc = send_locked(rt, m);
	if (rc)
		goto out;
	/* The services answer timed requests themselves at the deadline;
	 * the slack only covers services that have gone away. */
	wait = timeout_ns > DLAUNCH_FOREVER - SERVICE_DEADLINE_NS
		       ? DLAUNCH_FOREVER
		       : timeout_ns + SERVICE_DEADLINE_NS;
	rc = recv_reply(c, req, wait, reply);
	if (rc == WOKEN) {
		rc = dlaunch__fail(-DLAUNCH_E_CLOSED,
				   "the handle was closed by "
				   "dlaunch_runtime_stop or dlaunch_detach "
				   "while this call waited for its reply");
	} else if (rc < 0 && rc != -DLAUNCH_E_SERVICES) {
		/* Failed replies carry the services' detail message. */
		const char *why = dlaunch__msg_get_str(reply);
		dlaunch__fail(rc, "%s", why ? why : dlaunch_strerror(rc));
	} else if (rc == -DLAUNCH_E_SERVICES) {
		dlaunch__fail(rc, "the runtime services did not answer");
	}
out:
	dlaunch__msg_free(m);
	return rc;
}

int dlaunch__notify(dlaunch_t *rt, dlaunch__msg_t *m)
{
	dlaunch__conv_t *c = NULL;
	uint64_t req;
	uint32_t id;
	int rc = m->err;

	if (rc == 0 && (rc = dlaunch__enter(rt, "dlaunch call")) == 0) {
		rc = conv_get(rt, &c);
		if (rc)
			dlaunch__leave(rt);
	}
	if (rc == 0) {
		req = c->next_req++;
		id = c->client_id;
		memcpy(m->buf + offsetof(dlaunch__msg_hdr_t, req_id), &req,
		       sizeof req);
		memcpy(m->buf + offsetof(dlaunch__msg_hdr_t, client), &id,
		       sizeof id);
		rc = send_locked(rt, m);
		dlaunch__call_done(rt, c);
	}
	dlaunch__msg_free(m);
	if (rc == -DLAUNCH_E_SERVICES)
		dlaunch__fail(rc, "the runtime services did not take the "
				  "request");
	return rc;
}

static int connect_to(const char *svc_text, uint64_t timeout_ns,
		      dlaunch_t *parent, dlaunch_t **rt_out)
{
	dlaunch_t *rt = calloc(1, sizeof *rt);
	dlaunch__conv_t *c;
	int rc;

	if (!rt)
		return -ENOMEM;
	rt->nnodes = 1;
	rt->parent = parent;
	rt->reply_pool = parent ? dlaunch__ep_pool(parent->svc) : NULL;
	rt->sub = parent != NULL;
	pthread_mutex_init(&rt->lock, NULL);
	pthread_mutex_init(&rt->svc_lock, NULL);
	pthread_mutex_init(&rt->sub_lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&rt->idle, &ca);
		pthread_condattr_destroy(&ca);
	}
	rc = dlaunch__ep_open(svc_text, &rt->svc);
	if (rc)
		goto fail;
	/* The first conversation proves the services answer. */
	rc = conv_new(rt, timeout_ns ? timeout_ns : SERVICE_DEADLINE_NS, false,
		      &c);
	if (rc)
		goto fail;
	conv_put(rt, c);
	*rt_out = rt;
	return 0;
fail:
	dlaunch__disconnect(rt);
	return rc;
}

int dlaunch__connect(const char *svc_text, uint64_t timeout_ns,
		     dlaunch_t **rt_out)
{
	return connect_to(svc_text, timeout_ns, NULL, rt_out);
}

void dlaunch__multi_env(dlaunch_t *rt)
{
	const char *gs = getenv(DLAUNCH_ENV_GLOBAL);
	const char *nn = getenv(DLAUNCH_ENV_NNODES);
	char own[DLAUNCH_EP_TEXT_MAX];
	long n = nn ? strtol(nn, NULL, 10) : 1;

	rt->nnodes = n > 1 && n <= 65536 ? (unsigned)n : 1;
	if (rt->nnodes > 1 && gs && strlen(gs) < sizeof rt->gs_text &&
	    !(dlaunch__ep_text(rt->svc, own, sizeof own) >= 0 &&
	      strcmp(own, gs) == 0))
		strcpy(rt->gs_text, gs);
}

int dlaunch__connect_sub(dlaunch_t *rt, const char *svc_text,
			 dlaunch_t **sub_out)
{
	dlaunch_t *sub;
	int rc = connect_to(svc_text, 0, rt, &sub);

	if (rc)
		return rc;
	strcpy(sub->instance, rt->instance);
	sub->node = rt->node;
	sub->default_pool = rt->default_pool;
	sub->nnodes = rt->nnodes;
	*sub_out = sub;
	return 0;
}

int dlaunch__global(dlaunch_t *rt, dlaunch_t **g_out)
{
	int rc = 0;

	if (!rt->gs_text[0]) {
		*g_out = rt;
		return 0;
	}
	pthread_mutex_lock(&rt->sub_lock);
	if (!rt->global)
		rc = dlaunch__connect_sub(rt, rt->gs_text, &rt->global);
	pthread_mutex_unlock(&rt->sub_lock);
	if (rc)
		return dlaunch__fail(rc,
				     "cannot reach the global services on "
				     "the primary node through the transport "
				     "agents: %s",
				     dlaunch_strerror(rc));
	*g_out = rt->global;
	return 0;
}

/* Free a sub-handle without a goodbye: its services may be on a node
 * that is already gone, and a goodbye would wait for it. */
static void sub_free(dlaunch_t *sub)
{
	dlaunch__conv_t *c;

	if (dlaunch__close(sub, "dlaunch_detach") != 0)
		return;
	while ((c = sub->all_convs)) {
		sub->all_convs = c->all_next;
		conv_free(c);
	}
	dlaunch__ep_close(sub->svc);
	pthread_mutex_destroy(&sub->lock);
	pthread_mutex_destroy(&sub->svc_lock);
	pthread_mutex_destroy(&sub->sub_lock);
	pthread_cond_destroy(&sub->idle);
	free(sub);
}

static void subs_free(dlaunch_t *rt)
{
	if (rt->global)
		sub_free(rt->global);
	for (unsigned i = 0; rt->nodes && i < rt->nnodes; i++)
		if (rt->nodes[i])
			sub_free(rt->nodes[i]);
	free(rt->nodes);
}

static void send_bye(dlaunch_t *rt, const dlaunch__conv_t *c)
{
	dlaunch__msg_t m;

	dlaunch__msg_init(&m, DLAUNCH_MSG_BYE, 0, 0);
	memcpy(m.buf + offsetof(dlaunch__msg_hdr_t, client), &c->client_id,
	       sizeof c->client_id);
	if (m.err == 0)
		send_locked(rt, &m);
	dlaunch__msg_free(&m);
}

/* Say goodbye for every conversation (so the services forget the client
 * ids and the processes this one started) and free the handle.  No call
 * may be in flight (dlaunch__close saw to that).
 *
 * Until the services have handled a conversation's BYE they may still
 * send it a reply (a wait a closed call gave up on, answered when its
 * process ends), so its reply channel must not be destroyed before.  The
 * services handle requests in order and reply only under their lock: the
 * answer to the HELLO of a fresh conversation, sent after the BYEs, says
 * they are all handled. */
void dlaunch__disconnect(dlaunch_t *rt)
{
	dlaunch__conv_t *c, *fence = NULL;

	subs_free(rt);
	if (rt->svc && rt->all_convs) {
		for (c = rt->all_convs; c; c = c->all_next) {
			send_bye(rt, c);
			if (rt->parent)
				hold(rt, c, true);
		}
		if (conv_new(rt, FENCE_DEADLINE_NS, true, &fence) == 0) {
			send_bye(rt, fence);
			conv_free(fence);
		}
	}
	while ((c = rt->all_convs)) {
		rt->all_convs = c->all_next;
		conv_free(c);
	}
	dlaunch__ep_close(rt->svc);
	pthread_mutex_destroy(&rt->lock);
	pthread_mutex_destroy(&rt->svc_lock);
	pthread_mutex_destroy(&rt->sub_lock);
	pthread_cond_destroy(&rt->idle);
	free(rt);
}
