/*
 * The agent: its public calls, its thread and the event loop.  One epoll
 * set holds the listening endpoint, every link and a stop eventfd; the
 * loop sleeps in dchan_watch_wait, on that epoll set and the watch set
 * (this node's gateway channel and the channels with parked waits) at
 * once, so a requester's message wakes the agent's thread itself.  The
 * sleep's timeout is the nearest parked deadline, bounded by a
 * housekeeping tick (handshake deadlines, pings, redials).  A peer's
 * address or loss that another thread gives wakes the loop through an
 * eventfd of its own, so it acts on it at once.
 */
#include "config.h"
#include "dtrans_agent.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* Forwarding's half of the links' callbacks: a lost link fails the
 * requests it carried; those not sent yet wait for the next link. */
static void link_lost(struct dtrans_agent *ag, uint32_t node, const char *why)
{
	dtrans__fwd_lost(ag, node, false, why);
}

/* A refused dial: no agent listens there any more, so what waits for it
 * fails now, not after the peer timeout (a survivor's goodbye to a node
 * that has already ended and left, say). */
static void link_gone(struct dtrans_agent *ag, uint32_t node, const char *why)
{
	dtrans__fwd_lost(ag, node, true, why);
}

/* The layers above the links, as the links see them. */
static const struct dtrans__link_ops link_ops = {
	.ready = dtrans__fwd_ready,
	.cpl = dtrans__fwd_cpl,
	.lost = link_lost,
	.gone = link_gone,
	.req = dtrans__serve_req,
	.cancel = dtrans__serve_cancel,
	.unlink = dtrans__serve_unlink,
};

static int attr_check(const dtrans_attr_t *a)
{
	if (!a)
		return dtrans__fail(-EINVAL, "NULL attributes");
	if (a->nnodes == 0 || a->nnodes > DTRANS_NODES_MAX ||
	    a->node >= a->nnodes)
		return dtrans__fail(-DTRANS_E_NODE,
				    "node %u of %u: need node < nnodes <= %u",
				    a->node, a->nnodes, DTRANS_NODES_MAX);
	if (dmem_node_id() != DTRANS_NODE_ID(a->node))
		return dtrans__fail(
			-DTRANS_E_NODE,
			"this process has node id %llu, not %llu "
			"(node index %u): set DRAGON_NODE_ID=%llu",
			(unsigned long long)dmem_node_id(),
			(unsigned long long)DTRANS_NODE_ID(a->node), a->node,
			(unsigned long long)DTRANS_NODE_ID(a->node));
	if (!a->listen_addr)
		return dtrans__fail(-EINVAL, "no listen address");
	if (!a->secret || a->secret_len < DTRANS_SECRET_MIN ||
	    a->secret_len > DTRANS_SECRET_MAX)
		return dtrans__fail(-EINVAL,
				    "the secret must have %d to %d bytes, "
				    "not %zu",
				    DTRANS_SECRET_MIN, DTRANS_SECRET_MAX,
				    a->secret ? a->secret_len : 0);
	if (!a->gateway || !dchan_pool(a->gateway))
		return dtrans__fail(-EINVAL,
				    "the gateway must be a local channel");
	if ((a->field_mask & DTRANS_ATTR_PEER_TIMEOUT) &&
	    a->peer_timeout_ns < 1000000ull)
		return dtrans__fail(-EINVAL, "peer timeout below 1 ms");
	return 0;
}

/* How long the loop polls after traffic: $DRAGON_TRANSPORT_SPIN_US
 * microseconds (0: always sleep), else DTRANS__SPIN_US. */
static int spin_from_env(uint64_t *ns_out)
{
	const char *s = getenv("DRAGON_TRANSPORT_SPIN_US");
	char *end;
	unsigned long long us;

	if (!s || !*s) {
		*ns_out = DTRANS__SPIN_US * 1000ull;
		return 0;
	}
	errno = 0;
	us = strtoull(s, &end, 10);
	if (errno || *end || *s == '-' || us > 1000000)
		return dtrans__fail(-EINVAL,
				    "DRAGON_TRANSPORT_SPIN_US=%s: want a "
				    "number of microseconds from 0 to 1000000",
				    s);
	*ns_out = us * 1000ull;
	return 0;
}

static int epoll_add_fd(struct dtrans_agent *ag, int fd, void *tag)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = tag};

	return epoll_ctl(ag->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static int agent_open(struct dtrans_agent *ag, const char *listen_addr)
{
	int rc;

	ag->epfd = epoll_create1(EPOLL_CLOEXEC);
	ag->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ag->newsfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ag->epfd < 0 || ag->stopfd < 0 || ag->newsfd < 0)
		return dtrans__fail(-errno,
				    "epoll/eventfd: out of descriptors");
	rc = ag->be->listen(listen_addr, &ag->ep);
	if (rc < 0)
		return rc;
	rc = dchan_watch_create(&ag->watch);
	if (rc < 0)
		return dtrans__fail(rc, "watch set: %s", dchan_errmsg());
	ag->ep_tag.kind = DTRANS__EK_EP;
	ag->stop_tag.kind = DTRANS__EK_STOP;
	ag->news_tag.kind = DTRANS__EK_NEWS;
	rc = epoll_add_fd(ag, ag->be->ep_fd(ag->ep), &ag->ep_tag);
	if (rc == 0)
		rc = epoll_add_fd(ag, ag->stopfd, &ag->stop_tag);
	if (rc == 0)
		rc = epoll_add_fd(ag, ag->newsfd, &ag->news_tag);
	return rc;
}

DTRANS_EXPORT int dtrans_agent_create(const dtrans_attr_t *attr,
				      dtrans_agent_t **agent_out)
{
	struct dtrans_agent *ag;
	int rc;

	rc = attr_check(attr);
	if (rc < 0)
		return rc;
	if (!agent_out)
		return dtrans__fail(-EINVAL, "NULL output");
	ag = calloc(1, sizeof *ag);
	if (!ag)
		return dtrans__fail(-ENOMEM, "no memory for an agent");
	pthread_mutex_init(&ag->mu, NULL);
	ag->epfd = ag->stopfd = ag->newsfd = -1;
	ag->link_ops = &link_ops;
	ag->node = attr->node;
	ag->nnodes = attr->nnodes;
	ag->gw = attr->gateway;
	ag->log_fd = attr->field_mask & DTRANS_ATTR_LOG_FD ? attr->log_fd : 2;
	ag->peer_timeout_ns = attr->field_mask & DTRANS_ATTR_PEER_TIMEOUT
				      ? attr->peer_timeout_ns
				      : DTRANS_PEER_TIMEOUT_DEFAULT;
	if (attr->field_mask & DTRANS_ATTR_RESOLVE) {
		ag->resolve = attr->resolve;
		ag->resolve_arg = attr->resolve_arg;
	}
	ag->be = dtrans__backend_find(
		attr->field_mask & DTRANS_ATTR_BACKEND ? attr->backend : NULL,
		attr->field_mask & DTRANS_ATTR_NOTICE_FD ? attr->notice_fd
							 : ag->log_fd);
	ag->secret = malloc(attr->secret_len);
	ag->peers = calloc(attr->nnodes, sizeof *ag->peers);
	if (!ag->be)
		rc = -DTRANS_E_BACKEND;
	else if (!ag->secret || !ag->peers)
		rc = dtrans__fail(-ENOMEM, "no memory for an agent");
	if (rc == 0)
		rc = spin_from_env(&ag->spin_ns);
	if (rc == 0) {
		memcpy(ag->secret, attr->secret, attr->secret_len);
		ag->secret_len = attr->secret_len;
		rc = agent_open(ag, attr->listen_addr);
	}
	for (uint32_t i = 0; rc == 0 && attr->peers && i < attr->nnodes; i++)
		if (attr->peers[i] && i != attr->node)
			rc = dtrans_agent_peer_set(ag, i, attr->peers[i]);
	if (rc < 0) {
		dtrans_agent_destroy(ag);
		return rc;
	}
	*agent_out = ag;
	return 0;
}

DTRANS_EXPORT int dtrans_agent_address(const dtrans_agent_t *ag, char *buf,
				       size_t len)
{
	if (!ag || !buf)
		return dtrans__fail(-EINVAL, "NULL agent or buffer");
	return ag->be->ep_address(ag->ep, buf, len);
}

/* Wake the loop for a peer's news (dtrans__fwd_news acts on it). */
static int news_post(struct dtrans_agent *ag)
{
	uint64_t one = 1;

	if (write(ag->newsfd, &one, sizeof one) < 0 && errno != EAGAIN)
		return dtrans__fail(-errno, "cannot wake the agent's thread");
	return 0;
}

DTRANS_EXPORT int dtrans_agent_peer_set(dtrans_agent_t *ag, uint32_t node,
					const char *addr)
{
	char *copy;

	if (!ag || !addr || !strchr(addr, ':'))
		return dtrans__fail(-EINVAL, "peer address must be host:port");
	if (node >= ag->nnodes || node == ag->node)
		return dtrans__fail(-DTRANS_E_NODE,
				    "node %u is not a peer of node %u of %u",
				    node, ag->node, ag->nnodes);
	copy = strdup(addr);
	if (!copy)
		return -ENOMEM;
	pthread_mutex_lock(&ag->mu);
	free(ag->peers[node].addr);
	ag->peers[node].addr = copy;
	__atomic_store_n(&ag->peers[node].down, false, __ATOMIC_RELEASE);
	ag->peers[node].news = true;
	pthread_mutex_unlock(&ag->mu);
	return news_post(ag);
}

DTRANS_EXPORT int dtrans_agent_peer_down(dtrans_agent_t *ag, uint32_t node)
{
	if (!ag)
		return dtrans__fail(-EINVAL, "NULL agent");
	if (node >= ag->nnodes || node == ag->node)
		return dtrans__fail(-DTRANS_E_NODE,
				    "node %u is not a peer of node %u of %u",
				    node, ag->node, ag->nnodes);
	pthread_mutex_lock(&ag->mu);
	__atomic_store_n(&ag->peers[node].down, true, __ATOMIC_RELEASE);
	ag->peers[node].news = true;
	pthread_mutex_unlock(&ag->mu);
	return news_post(ag);
}

/* The watch set has news: the gateway channel (cookie: the agent) has
 * requests, or a channel with parked waits may be ready.  Returns the
 * number of reports taken. */
static int watch_ready(struct dtrans_agent *ag)
{
	void *ck[64];
	int n, total = 0;

	while ((n = dchan_watch_take(ag->watch, ck, 64)) > 0) {
		total += n;
		for (int i = 0; i < n; i++) {
			if (ck[i] == ag)
				dtrans__gw_drain(ag);
			else
				dtrans__serve_retry(ag, ck[i]);
		}
		if (n < 64)
			break;
	}
	return total;
}

/* End of a loop turn: write every link's batch, free the closed ones. */
static void turn_end(struct dtrans_agent *ag)
{
	struct dtrans__link **pp = &ag->links;

	ag->acks_waiting = dtrans__reply_flush(ag);
	for (struct dtrans__link *l = ag->links; l; l = l->next)
		if (!l->dead && dtrans__link_busy(l) && !l->want_out)
			dtrans__link_flush(l);
	while (*pp) {
		struct dtrans__link *l = *pp;

		if (!l->dead) {
			pp = &l->next;
			continue;
		}
		*pp = l->next;
		free(l);
	}
}

static void tick(struct dtrans_agent *ag, uint64_t now)
{
	for (struct dtrans__link *l = ag->links; l; l = l->next)
		dtrans__link_tick(l, now);
	dtrans__fwd_tick(ag, now);
	dtrans__reply_reap(ag, now);
	dtrans__serve_tick(ag);
}

/*
 * Busy or idle.  A remote operation crosses the requester, this agent and
 * the peer's agent; every blocking wake-up on the way costs tens of
 * microseconds on a loaded or virtual machine, more than the network.  So
 * after traffic the loop polls for a while (ag->spin_ns) instead of
 * sleeping: the gateway channel directly (held out of the watch set's
 * sleep, so requesters pay no wake-up either) and the sockets with a
 * zero-timeout epoll_wait, yielding the CPU between looks.  Without
 * traffic for that long it releases the gateway to the watch set and
 * sleeps in epoll_wait; an idle agent costs nothing.
 */
static void agent_busy(struct dtrans_agent *ag, uint64_t now)
{
	ag->busy_until_ns = now + ag->spin_ns;
	if (!ag->gw_held && ag->spin_ns &&
	    dchan_watch_hold(ag->watch, ag->gw, 1) == 0)
		ag->gw_held = true;
}

static void agent_idle(struct dtrans_agent *ag)
{
	if (ag->gw_held && dchan_watch_hold(ag->watch, ag->gw, 0) == 0)
		ag->gw_held = false;
}

/* One sleep of at most tmo ms (0: a look) on the watch set and the
 * epoll set, and what they reported; returns the number of events that
 * carried work, or -1 when the agent is asked to stop. */
static int agent_events(struct dtrans_agent *ag, int tmo)
{
	struct epoll_event ev[64];
	int n, work;
	bool stop = false;

	dchan_watch_wait(ag->watch, tmo ? ag->epfd : -1, tmo);
	work = watch_ready(ag);
	n = epoll_wait(ag->epfd, ev, 64, 0);

	for (int i = 0; i < n; i++) {
		int kind = *(int *)ev[i].data.ptr;

		if (kind == DTRANS__EK_STOP) {
			stop = true;
		} else if (kind == DTRANS__EK_NEWS) {
			uint64_t cnt;

			if (read(ag->newsfd, &cnt, sizeof cnt) > 0)
				dtrans__fwd_news(ag, dtrans__now_ns());
			work++;
		} else if (kind == DTRANS__EK_EP)
			dtrans__accept_all(ag);
		else {
			dtrans__link_event(ev[i].data.ptr, ev[i].events);
			work++;
		}
	}
	return stop ? -1 : work;
}

static void *agent_main(void *arg)
{
	struct dtrans_agent *ag = arg;
	uint64_t next_tick = 0;

	dtrans__gw_drain(ag);
	for (;;) {
		uint64_t now = dtrans__now_ns();
		int tmo = dtrans__serve_timeout_ms(ag, now), work;
		bool spin = now < ag->busy_until_ns;

		if (tmo < 0 || tmo > DTRANS__TICK_MS)
			tmo = DTRANS__TICK_MS;
		if (!spin)
			agent_idle(ag);
		if (ag->gw_again || spin)
			tmo = 0;
		else if (ag->acks_waiting && tmo > DTRANS__ACK_RETRY_MS)
			tmo = DTRANS__ACK_RETRY_MS;
		work = agent_events(ag, tmo);
		if (work < 0)
			break;
		if (ag->gw_again || ag->gw_held)
			work += dtrans__gw_drain(ag);
		now = dtrans__now_ns();
		if (work)
			agent_busy(ag, now);
		dtrans__serve_expire(ag, now);
		if (now >= next_tick) {
			tick(ag, now);
			next_tick = now + DTRANS__TICK_MS * 1000000ull;
		}
		turn_end(ag);
		if (spin && !work)
			sched_yield();
	}
	agent_idle(ag);
	return NULL;
}

DTRANS_EXPORT int dtrans_agent_start(dtrans_agent_t *ag)
{
	int rc;

	if (!ag)
		return dtrans__fail(-EINVAL, "NULL agent");
	if (ag->running)
		return dtrans__fail(-EALREADY, "the agent runs already");
	rc = dchan_watch_add(ag->watch, ag->gw, DCHAN_POLLIN, ag);
	if (rc < 0)
		return dtrans__fail(rc, "cannot watch the gateway channel: %s",
				    dchan_errmsg());
	/* set before the thread runs: it reads the flags beside this one */
	ag->running = true;
	rc = -pthread_create(&ag->thr, NULL, agent_main, ag);
	if (rc < 0) {
		ag->running = false;
		dchan_watch_del(ag->watch, ag->gw);
		return dtrans__fail(rc, "cannot start the agent's thread");
	}
	return 0;
}

DTRANS_EXPORT int dtrans_agent_stop(dtrans_agent_t *ag)
{
	uint64_t one = 1, cnt;

	if (!ag)
		return dtrans__fail(-EINVAL, "NULL agent");
	if (!ag->running)
		return 0;
	if (write(ag->stopfd, &one, sizeof one) < 0)
		return dtrans__fail(-errno, "cannot signal the agent's thread");
	pthread_join(ag->thr, NULL);
	ag->running = false;
	if (read(ag->stopfd, &cnt, sizeof cnt) < 0) {
		/* already reset */
	}
	dchan_watch_del(ag->watch, ag->gw);
	dtrans__fwd_fail_all(ag);
	for (struct dtrans__link *l = ag->links; l; l = l->next)
		dtrans__link_drop(l, NULL);
	turn_end(ag);
	for (uint32_t i = 0; i < ag->nnodes; i++)
		ag->peers[i].out = NULL;
	return 0;
}

DTRANS_EXPORT int dtrans_agent_destroy(dtrans_agent_t *ag)
{
	if (!ag)
		return 0;
	dtrans_agent_stop(ag);
	if (ag->watch)
		dchan_watch_destroy(ag->watch);
	if (ag->ep)
		ag->be->ep_close(ag->ep);
	if (ag->epfd >= 0)
		close(ag->epfd);
	if (ag->stopfd >= 0)
		close(ag->stopfd);
	if (ag->newsfd >= 0)
		close(ag->newsfd);
	for (uint32_t i = 0; ag->peers && i < ag->nnodes; i++)
		free(ag->peers[i].addr);
	free(ag->peers);
	free(ag->heap);
	dtrans__fwd_forget(ag);
	dtrans__reply_forget(ag);
	if (ag->secret)
		memset(ag->secret, 0, ag->secret_len);
	free(ag->secret);
	pthread_mutex_destroy(&ag->mu);
	free(ag);
	return 0;
}

DTRANS_EXPORT int dtrans_agent_stats(dtrans_agent_t *ag, uint32_t node,
				     dtrans_peer_stats_t *out)
{
	const uint64_t *src;
	uint64_t *dst;

	if (!ag || !out)
		return dtrans__fail(-EINVAL, "NULL agent or output");
	if (node >= ag->nnodes || node == ag->node)
		return dtrans__fail(-DTRANS_E_NODE,
				    "node %u is not a peer of node %u of %u",
				    node, ag->node, ag->nnodes);
	src = (const uint64_t *)&ag->peers[node].st;
	dst = (uint64_t *)out;
	for (size_t i = 0; i < sizeof *out / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
	return 0;
}
