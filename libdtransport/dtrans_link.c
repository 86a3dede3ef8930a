/*
 * Links between agents: byte buffers in and out, frames, the handshake.
 *
 * The listener speaks first: HELLO with its node and a fresh nonce.  The
 * dialer answers AUTH: its node, its own nonce and HMAC(secret, 'c',
 * listener's nonce, dialer's nonce, nodes); the listener checks it and
 * answers AUTH_OK with HMAC(secret, 's', dialer's nonce, listener's nonce,
 * nodes), which the dialer checks.  Each side proves it holds the secret
 * without sending it, and fresh nonces on both sides make a recorded
 * exchange useless.  Only then do requests flow; anything out of order,
 * malformed or failing the proof drops the link (and is logged), and
 * the agent goes on serving every other link.
 *
 * Output is batched: frames are appended to the link's buffer and written
 * with one send at the end of the loop turn, or when the socket drains,
 * so that many small frames bound for one node while the link is busy
 * leave in one send, and a lone frame leaves at once.
 *
 * What arrives on a ready link (requests, completions, cancels) and what a
 * link's end means to the requests it carried belong to the layers above:
 * the link hands them over through the agent's struct dtrans__link_ops.
 */
#include "config.h"
#include "dtrans_agent.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#define DTRANS__RECV_CHUNK (256u << 10)

static int buf_reserve(struct dtrans__buf *b, size_t more)
{
	size_t need, cap;
	unsigned char *p;

	if (b->off && b->off == b->len)
		b->off = b->len = 0;
	if (b->len + more <= b->cap)
		return 0;
	if (b->off) { /* compact first */
		memmove(b->p, b->p + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
		if (b->len + more <= b->cap)
			return 0;
	}
	need = b->len + more;
	cap = b->cap ? b->cap : 4096;
	while (cap < need)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

static void buf_free(struct dtrans__buf *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

/* Room in the output buffer; moving its bytes moves the zero-copy
 * payloads' places with them. */
static int out_reserve(struct dtrans__link *l, size_t more)
{
	size_t shift = l->out.off;
	int rc = buf_reserve(&l->out, more);

	if (rc == 0 && shift && l->out.off == 0)
		for (struct dtrans__zseg *z = l->zq; z; z = z->next)
			z->at -= shift;
	return rc;
}

static void zseg_free(struct dtrans__zseg *z)
{
	if (z->msg.data)
		dchan_msg_release(&z->msg);
	if (z->hold)
		dchan_detach(z->hold);
	free(z->heap);
	free(z);
}

static void zq_free(struct dtrans__link *l)
{
	while (l->zq) {
		struct dtrans__zseg *z = l->zq;

		l->zq = z->next;
		zseg_free(z);
	}
	l->zq_tail = NULL;
}

bool dtrans__link_busy(const struct dtrans__link *l)
{
	return l->out.len > l->out.off || l->zq;
}

static void link_arm(struct dtrans__link *l, bool out)
{
	struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0),
				 .data.ptr = l};

	if (l->want_out == out)
		return;
	l->want_out = out;
	epoll_ctl(l->ag->epfd, EPOLL_CTL_MOD, l->fd, &ev);
}

int dtrans__link_new(struct dtrans_agent *ag, void *be, bool dialed,
		     uint32_t peer, struct dtrans__link **l_out)
{
	struct dtrans__link *l = calloc(1, sizeof *l);
	struct epoll_event ev;

	if (!l) {
		ag->be->link_close(be);
		return -ENOMEM;
	}
	l->kind = DTRANS__EK_LINK;
	l->ag = ag;
	l->be = be;
	l->fd = ag->be->link_fd(be);
	l->dialed = dialed;
	l->peer = peer;
	l->claimed = UINT32_MAX;
	l->state = dialed ? DTRANS__L_CONNECTING : DTRANS__L_WAIT_AUTH;
	l->last_recv_ns = dtrans__now_ns();
	l->hs_deadline_ns = l->last_recv_ns + DTRANS__HS_TIMEOUT_NS;
	l->want_out = dialed;
	ev = (struct epoll_event){.events = EPOLLIN | (dialed ? EPOLLOUT : 0),
				  .data.ptr = l};
	if (epoll_ctl(ag->epfd, EPOLL_CTL_ADD, l->fd, &ev) < 0) {
		int rc = -errno;

		ag->be->link_close(be);
		free(l);
		return rc;
	}
	l->next = ag->links;
	ag->links = l;
	*l_out = l;
	return 0;
}

/* Why the backend's send or recv failed with err: its own words when
 * it has them (a library status names the cause an errno hides). */
static const char *link_why(struct dtrans__link *l, int err)
{
	const char *why =
		l->ag->be->link_error ? l->ag->be->link_error(l->be) : NULL;

	return why ? why : strerror(-err);
}

/* What link_read drops a link with when the peer closed it. */
static const char peer_closed[] = "closed by the peer";

/* Nothing of ours waits on the link: no request sent on it waits for
 * its completion, no wait of the peer's is parked on it. */
static bool link_idle(const struct dtrans__link *l)
{
	const struct dtrans__peer *pe = &l->ag->peers[l->peer];

	return l->dialed ? pe->npending == pe->nunsent : !l->parked;
}

/* Who is at the other end of a link that has not finished its
 * handshake: the node it claimed, its address where the backend's
 * descriptor is a socket (tcp), or neither. */
static void link_who(const struct dtrans__link *l, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	char addr[128];
	int n;

	if (getpeername(l->fd, (struct sockaddr *)&ss, &sl) < 0 ||
	    dtrans__addr_format((struct sockaddr *)&ss, sl, addr, sizeof addr) <
		    0)
		snprintf(addr, sizeof addr, "an unknown address");
	n = snprintf(buf, len, "a peer at %s", addr);
	if (l->claimed < l->ag->nnodes && n > 0 && (size_t)n < len)
		snprintf(buf + n, len - (size_t)n, " claiming to be node %u",
			 l->claimed);
}

/* Close the link now; the structure is freed at the end of the turn. */
void dtrans__link_drop(struct dtrans__link *l, const char *why)
{
	struct dtrans_agent *ag = l->ag;
	bool known = l->dialed || l->state == DTRANS__L_READY;
	/* A link the peer closed between frames with nothing in flight on
	 * it is how a peer agent stops (a runtime's teardown): nothing to
	 * report. */
	bool quiet = why == peer_closed && known && link_idle(l) &&
		     l->in.len == l->in.off && !l->sink.mem;
	char reason[160], who[200];

	if (l->dead)
		return;
	l->dead = true;
	/* The reason may live in the backend's link (link_why), which
	 * link_close frees before the peer's requests are failed with it. */
	if (why) {
		snprintf(reason, sizeof reason, "%s", why);
		why = reason;
	}
	if (why && l->dialed && l->state == DTRANS__L_CONNECTING &&
	    ag->peers[l->peer].dial_quiet)
		why = NULL; /* once per outage is enough */
	else if (why && l->dialed && l->state == DTRANS__L_CONNECTING)
		ag->peers[l->peer].dial_quiet = true;
	if (why && known && !quiet) {
		dtrans__log(ag, "link %s node %u dropped: %s",
			    l->dialed ? "to" : "from", l->peer, why);
		if (l->dialed)
			ag->peers[l->peer].out_lost = true;
		else
			ag->peers[l->peer].in_lost = true;
	} else if (why && !known) {
		link_who(l, who, sizeof who);
		dtrans__log(ag, "handshake with %s failed, link dropped: %s",
			    who, why);
	}
	if (why && known)
		DTRANS__STAT(ag, l->peer, errors, 1);
	epoll_ctl(ag->epfd, EPOLL_CTL_DEL, l->fd, NULL);
	ag->be->link_close(l->be);
	l->be = NULL;
	buf_free(&l->in);
	buf_free(&l->out);
	zq_free(l);
	if (l->sink.mem)
		dmem_free(l->sink.pool, l->sink.mem);
	l->sink.mem = NULL;
	if (!l->dialed)
		ag->link_ops->unlink(l);
	if (l->dialed && ag->peers[l->peer].out == l) {
		ag->peers[l->peer].out = NULL;
		ag->link_ops->lost(ag, l->peer, why ? why : "link closed");
	}
}

int dtrans__link_frame(struct dtrans__link *l, unsigned type, uint64_t xid,
		       const void *a, size_t alen, const void *b, size_t blen)
{
	struct dtrans__fhdr h = {.type = (uint8_t)type,
				 .len = (uint32_t)(alen + blen),
				 .xid = xid};
	int rc;

	if (l->dead)
		return -EPIPE;
	rc = out_reserve(l, DTRANS__FRAME_HDR + alen + blen);
	if (rc < 0)
		return rc;
	dtrans__fhdr_encode(&h, l->out.p + l->out.len);
	l->out.len += DTRANS__FRAME_HDR;
	if (alen)
		memcpy(l->out.p + l->out.len, a, alen);
	l->out.len += alen;
	if (blen)
		memcpy(l->out.p + l->out.len, b, blen);
	l->out.len += blen;
	if (l->state == DTRANS__L_READY && l->peer < l->ag->nnodes)
		DTRANS__STAT(l->ag, l->peer, frames_sent, 1);
	return 0;
}

int dtrans__link_frame_zc(struct dtrans__link *l, unsigned type, uint64_t xid,
			  const void *hd, size_t hdlen,
			  const struct dtrans__zseg *zs)
{
	struct dtrans__zseg *z;
	int rc;

	if (l->dead)
		return -EPIPE;
	if (hdlen + zs->len > DTRANS__FRAME_MAX)
		return -EMSGSIZE;
	z = malloc(sizeof *z);
	if (!z)
		return -ENOMEM;
	rc = dtrans__link_frame(l, type, xid, hd, hdlen, NULL, 0);
	if (rc < 0) {
		free(z);
		return rc;
	}
	/* the header says hdlen bytes; the payload follows from zs */
	{
		struct dtrans__fhdr h = {.type = (uint8_t)type,
					 .len = (uint32_t)(hdlen + zs->len),
					 .xid = xid};

		dtrans__fhdr_encode(&h, l->out.p + l->out.len -
						DTRANS__FRAME_HDR - hdlen);
	}
	*z = *zs;
	z->next = NULL;
	z->off = 0;
	z->at = l->out.len;
	if (l->zq_tail)
		l->zq_tail->next = z;
	else
		l->zq = z;
	l->zq_tail = z;
	return 0;
}

/* The output's next pieces, inline bytes and zero-copy payloads in
 * order, as at most max iovecs. */
static int out_iov(struct dtrans__link *l, struct iovec *iov, int max)
{
	size_t pos = l->out.off;
	int n = 0;

	for (struct dtrans__zseg *z = l->zq; z && n + 2 <= max; z = z->next) {
		if (z->at > pos)
			iov[n++] = (struct iovec){l->out.p + pos, z->at - pos};
		pos = z->at;
		iov[n++] = (struct iovec){(void *)(z->p + z->off),
					  z->len - z->off};
	}
	if (n < max && l->out.len > pos)
		iov[n++] = (struct iovec){l->out.p + pos, l->out.len - pos};
	return n;
}

/* n bytes of the output were written: move past them. */
static void out_advance(struct dtrans__link *l, size_t n)
{
	while (n) {
		struct dtrans__zseg *z = l->zq;
		size_t end = z ? z->at : l->out.len, take;

		if (l->out.off < end) {
			take = end - l->out.off < n ? end - l->out.off : n;
			l->out.off += take;
			n -= take;
			continue;
		}
		take = z->len - z->off < n ? z->len - z->off : n;
		z->off += take;
		n -= take;
		if (z->off == z->len) {
			l->zq = z->next;
			if (!l->zq)
				l->zq_tail = NULL;
			zseg_free(z);
		}
	}
}

/* Write what is queued, in as few sends as the socket allows (one
 * writev carries many small frames and the large payloads between them
 * from where they lie). */
void dtrans__link_flush(struct dtrans__link *l)
{
	struct dtrans_agent *ag = l->ag;
	struct iovec iov[64];
	/* The socket was full: what it takes now, the peer has taken. */
	bool drained = l->want_out, streaming;

	if (l->dead || l->state == DTRANS__L_CONNECTING)
		return;
	while (dtrans__link_busy(l)) {
		int cnt = out_iov(l, iov, 64);
		ssize_t n = ag->be->send(l->be, iov, cnt);

		if (n == -EAGAIN) {
			link_arm(l, true);
			return;
		}
		if (n < 0) {
			dtrans__link_drop(l, link_why(l, (int)n));
			return;
		}
		streaming = l->zq != NULL;
		out_advance(l, (size_t)n);
		/* The peer takes what we write once the socket was full, or
		 * while a large payload streams to it: alive, even while
		 * that frame keeps it from answering (and our pings queue
		 * behind it).  A small write into a socket with room proves
		 * nothing: the kernel takes it when the network to the peer
		 * is cut, and a ping written every quarter of the peer
		 * timeout would keep a dead peer's link up for ever. */
		if (drained || streaming)
			l->last_recv_ns = dtrans__now_ns();
		if (l->peer < ag->nnodes) {
			DTRANS__STAT(ag, l->peer, sends, 1);
			DTRANS__STAT(ag, l->peer, bytes_sent, (uint64_t)n);
		}
	}
	l->out.off = l->out.len = 0;
	link_arm(l, false);
}

static void hs_hello(struct dtrans__link *l)
{
	struct dtrans_agent *ag = l->ag;
	struct dtrans__hello m = {.node = ag->node, .nnodes = ag->nnodes};
	unsigned char buf[64];

	if (dtrans__random(l->nonce_mine, DTRANS__NONCE) < 0) {
		dtrans__link_drop(l, "no random bytes for a nonce");
		return;
	}
	memcpy(m.nonce, l->nonce_mine, DTRANS__NONCE);
	dtrans__link_frame(l, DTRANS__F_HELLO, 0, buf,
			   dtrans__hello_encode(&m, buf), NULL, 0);
}

/* Dialer: the listener's HELLO; answer with our proof. */
static int hs_on_hello(struct dtrans__link *l, const void *p, size_t len)
{
	struct dtrans_agent *ag = l->ag;
	struct dtrans__hello h;
	struct dtrans__auth a = {.node = ag->node, .nnodes = ag->nnodes};
	unsigned char buf[128];

	if (dtrans__hello_decode(p, len, &h) < 0)
		return -DTRANS_E_FRAME;
	if (h.node != l->peer || h.nnodes != ag->nnodes)
		return -DTRANS_E_NODE;
	memcpy(l->nonce_peer, h.nonce, DTRANS__NONCE);
	if (dtrans__random(l->nonce_mine, DTRANS__NONCE) < 0 ||
	    dtrans__mac(ag->secret, ag->secret_len, 'c', l->nonce_peer,
			l->nonce_mine, ag->node, l->peer, ag->nnodes,
			a.mac) < 0)
		return -EIO;
	memcpy(a.nonce, l->nonce_mine, DTRANS__NONCE);
	l->state = DTRANS__L_WAIT_OK;
	return dtrans__link_frame(l, DTRANS__F_AUTH, 0, buf,
				  dtrans__auth_encode(&a, buf), NULL, 0);
}

/* Listener: the dialer's proof; answer with ours. */
static int hs_on_auth(struct dtrans__link *l, const void *p, size_t len)
{
	struct dtrans_agent *ag = l->ag;
	unsigned char mac[DTRANS__MAC];
	struct dtrans__auth a;
	int rc;

	if (dtrans__auth_decode(p, len, &a) < 0)
		return -DTRANS_E_FRAME;
	l->claimed = a.node;
	if (a.node >= ag->nnodes || a.node == ag->node ||
	    a.nnodes != ag->nnodes)
		return -DTRANS_E_NODE;
	if (dtrans__mac(ag->secret, ag->secret_len, 'c', l->nonce_mine, a.nonce,
			a.node, ag->node, ag->nnodes, mac) < 0)
		return -EIO;
	if (!dtrans__mac_equal(mac, a.mac))
		return -DTRANS_E_AUTH;
	memcpy(l->nonce_peer, a.nonce, DTRANS__NONCE);
	if (dtrans__mac(ag->secret, ag->secret_len, 's', l->nonce_peer,
			l->nonce_mine, a.node, ag->node, ag->nnodes, mac) < 0)
		return -EIO;
	l->peer = a.node;
	l->state = DTRANS__L_READY;
	DTRANS__STAT(ag, l->peer, connections, 1);
	if (ag->peers[l->peer].in_lost)
		dtrans__log(ag, "link from node %u is back", l->peer);
	ag->peers[l->peer].in_lost = false;
	rc = dtrans__link_frame(l, DTRANS__F_AUTH_OK, 0, mac, DTRANS__MAC, NULL,
				0);
	return rc;
}

/* Dialer: the listener's proof. */
static int hs_on_ok(struct dtrans__link *l, const void *p, size_t len)
{
	struct dtrans_agent *ag = l->ag;
	unsigned char mac[DTRANS__MAC];

	if (len != DTRANS__MAC)
		return -DTRANS_E_FRAME;
	if (dtrans__mac(ag->secret, ag->secret_len, 's', l->nonce_mine,
			l->nonce_peer, ag->node, l->peer, ag->nnodes, mac) < 0)
		return -EIO;
	if (!dtrans__mac_equal(mac, p))
		return -DTRANS_E_AUTH;
	l->state = DTRANS__L_READY;
	DTRANS__STAT(ag, l->peer, connections, 1);
	if (ag->peers[l->peer].dial_quiet || ag->peers[l->peer].out_lost)
		dtrans__log(ag, "link to node %u is back", l->peer);
	ag->peers[l->peer].dial_quiet = false;
	ag->peers[l->peer].out_lost = false;
	ag->link_ops->ready(ag, l->peer);
	return 0;
}

/* One whole frame; a negative return drops the link. */
static int link_on_frame(struct dtrans__link *l, const struct dtrans__fhdr *h,
			 const void *p)
{
	switch (l->state) {
	case DTRANS__L_WAIT_HELLO:
		return h->type == DTRANS__F_HELLO ? hs_on_hello(l, p, h->len)
						  : -DTRANS_E_FRAME;
	case DTRANS__L_WAIT_AUTH:
		return h->type == DTRANS__F_AUTH ? hs_on_auth(l, p, h->len)
						 : -DTRANS_E_FRAME;
	case DTRANS__L_WAIT_OK:
		return h->type == DTRANS__F_AUTH_OK ? hs_on_ok(l, p, h->len)
						    : -DTRANS_E_FRAME;
	case DTRANS__L_CONNECTING:
		return -DTRANS_E_FRAME;
	case DTRANS__L_READY:
		break;
	}
	switch (h->type) {
	case DTRANS__F_REQ:
		if (l->dialed)
			return -DTRANS_E_FRAME;
		l->ag->link_ops->req(l, h->xid, p, h->len);
		return 0;
	case DTRANS__F_CPL:
		if (!l->dialed)
			return -DTRANS_E_FRAME;
		l->ag->link_ops->cpl(l->ag, l->peer, h->xid, p, h->len);
		return 0;
	case DTRANS__F_PING:
		return dtrans__link_frame(l, DTRANS__F_PONG, 0, NULL, 0, NULL,
					  0);
	case DTRANS__F_PONG:
		return 0;
	case DTRANS__F_CANCEL:
		if (l->dialed)
			return -DTRANS_E_FRAME;
		l->ag->link_ops->cancel(l, h->xid);
		return 0;
	}
	return -DTRANS_E_FRAME;
}

/*
 * A large request or completion is not gathered in the input buffer: the
 * link reads it straight into an allocation of the gateway's pool (the
 * memory the message has to reach anyway), so an agent's own memory stays
 * bounded by the read chunk whatever the message size.  Returns 1 when
 * the frame is sunk (its bytes so far copied and consumed), 0 when it is
 * buffered as usual (small, or the pool has no room).
 */
static int link_sink_begin(struct dtrans__link *l, const struct dtrans__fhdr *h,
			   const unsigned char *p, size_t avail)
{
	dmem_pool_t *pool = dchan_pool(l->ag->gw);
	void *mem;

	if (h->len < DTRANS__ZC_MIN || l->state != DTRANS__L_READY ||
	    (h->type != DTRANS__F_REQ && h->type != DTRANS__F_CPL) ||
	    avail >= DTRANS__FRAME_HDR + (size_t)h->len || !pool ||
	    dmem_alloc(pool, h->len, 0, &mem) < 0)
		return 0;
	l->sink.mem = mem;
	l->sink.pool = pool;
	l->sink.type = h->type;
	l->sink.len = h->len;
	l->sink.xid = h->xid;
	l->sink.got = avail - DTRANS__FRAME_HDR;
	memcpy(mem, p + DTRANS__FRAME_HDR, l->sink.got);
	l->in.off += avail;
	return 1;
}

static int link_on_frame(struct dtrans__link *l, const struct dtrans__fhdr *h,
			 const void *p);

/* The sunk frame is whole: act on it, then free its memory. */
static int link_sink_end(struct dtrans__link *l)
{
	struct dtrans__fhdr h = {.type = (uint8_t)l->sink.type,
				 .len = l->sink.len,
				 .xid = l->sink.xid};
	unsigned char *mem = l->sink.mem;
	dmem_pool_t *pool = l->sink.pool;
	int rc;

	l->sink.mem = NULL;
	l->ag->sunk = mem;
	rc = link_on_frame(l, &h, mem);
	if (l->ag->sunk) /* not kept above */
		dmem_free(pool, mem);
	l->ag->sunk = NULL;
	return rc;
}

/* Take every whole frame the input buffer holds. */
static int link_parse(struct dtrans__link *l)
{
	struct dtrans__fhdr h;
	int rc;

	while (!l->dead && l->in.len - l->in.off >= DTRANS__FRAME_HDR) {
		const unsigned char *p = l->in.p + l->in.off;
		size_t avail = l->in.len - l->in.off;

		rc = dtrans__fhdr_decode(p, avail, &h);
		if (rc < 0)
			return rc;
		/* before the handshake, nothing large: no memory for strangers
		 */
		if (l->state != DTRANS__L_READY &&
		    h.len > 8 + DTRANS__NONCE + DTRANS__MAC)
			return -DTRANS_E_FRAME;
		if (link_sink_begin(l, &h, p, avail))
			return 0;
		/* the rest comes with later reads, and the buffer grows
		 * with what arrives (link_read), not with what the header
		 * claims: memory follows the bytes a peer really sent */
		if (avail < DTRANS__FRAME_HDR + (size_t)h.len)
			return 0;
		rc = link_on_frame(l, &h, p + DTRANS__FRAME_HDR);
		if (rc < 0)
			return rc;
		if (l->dead)
			return 0;
		l->in.off += DTRANS__FRAME_HDR + h.len;
	}
	return 0;
}

static void link_read(struct dtrans__link *l)
{
	struct dtrans_agent *ag = l->ag;
	int rc;

	for (int turns = 0; !l->dead && turns < 16; turns++) {
		ssize_t n;
		size_t room;

		if (l->sink.mem) {
			room = l->sink.len - l->sink.got;
			n = ag->be->recv(l->be, l->sink.mem + l->sink.got,
					 room);
			if (n == -EAGAIN)
				return;
			if (n <= 0) {
				dtrans__link_drop(l,
						  n == 0 ? peer_closed
							 : strerror((int)-n));
				return;
			}
			l->sink.got += (size_t)n;
			l->last_recv_ns = dtrans__now_ns();
			DTRANS__STAT(ag, l->peer, bytes_recv, (uint64_t)n);
			if (l->sink.got == l->sink.len) {
				rc = link_sink_end(l);
				if (rc == 0)
					rc = link_parse(l);
				if (rc < 0) {
					dtrans__link_drop(l,
							  dtrans_strerror(rc));
					return;
				}
			}
			if ((size_t)n < room)
				return;
			continue;
		}
		rc = buf_reserve(&l->in, DTRANS__RECV_CHUNK);
		if (rc < 0) {
			dtrans__link_drop(l, "no memory for input");
			return;
		}
		room = l->in.cap - l->in.len;
		n = ag->be->recv(l->be, l->in.p + l->in.len, room);
		if (n == -EAGAIN)
			return;
		if (n <= 0) {
			dtrans__link_drop(l, n == 0 ? peer_closed
						    : link_why(l, (int)n));
			return;
		}
		l->in.len += (size_t)n;
		l->last_recv_ns = dtrans__now_ns();
		if (l->state == DTRANS__L_READY)
			DTRANS__STAT(ag, l->peer, bytes_recv, (uint64_t)n);
		rc = link_parse(l);
		if (rc < 0) {
			dtrans__link_drop(l, dtrans_strerror(rc));
			return;
		}
		/* a short read took all there was: the next recv would only
		 * say EAGAIN, a system call for nothing (epoll is level
		 * triggered and reports what comes later) */
		if ((size_t)n < room)
			return;
	}
}

void dtrans__link_event(struct dtrans__link *l, uint32_t events)
{
	struct dtrans_agent *ag = l->ag;

	if (l->dead)
		return;
	if (l->state == DTRANS__L_CONNECTING) {
		int rc = ag->be->link_connected(l->be);

		if (rc == -EINPROGRESS)
			return;
		if (rc < 0) {
			uint32_t peer = l->peer;

			dtrans__link_drop(l, strerror(-rc));
			if (rc == -ECONNREFUSED)
				ag->link_ops->gone(ag, peer,
						   "its agent refuses "
						   "connections (it has "
						   "ended)");
			return;
		}
		l->state = DTRANS__L_WAIT_HELLO;
		l->last_recv_ns = dtrans__now_ns();
		link_arm(l, dtrans__link_busy(l));
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		link_read(l);
	/* a backend whose fd only turns readable (ofi, ucx) says "you can
	 * write again" that way too */
	if (!l->dead && (events & EPOLLOUT || l->want_out))
		dtrans__link_flush(l);
}

/* Handshake deadlines and liveness: a dialed link with requests in
 * flight pings a quiet peer, and gives it up after the peer timeout. */
void dtrans__link_tick(struct dtrans__link *l, uint64_t now)
{
	struct dtrans_agent *ag = l->ag;

	if (l->dead)
		return;
	if (l->state != DTRANS__L_READY) {
		if (now > l->hs_deadline_ns)
			dtrans__link_drop(l, "handshake did not finish in "
					     "time");
		return;
	}
	/* The peer's link with its waits parked here: the peer pings while
	 * they wait, so a link silent for the peer timeout is cut (or its
	 * peer gone) and the waits go with it -- before a message or a
	 * lock is taken for a requester already told its wait failed. */
	if (!l->dialed && l->parked &&
	    now - l->last_recv_ns > ag->peer_timeout_ns) {
		dtrans__link_drop(l, "peer silent for the peer timeout while "
				     "its waits were parked here");
		return;
	}
	if (!l->dialed || ag->peers[l->peer].npending == 0)
		return;
	if (now - l->last_recv_ns > ag->peer_timeout_ns) {
		dtrans__link_drop(l, "peer did not answer within the peer "
				     "timeout");
		return;
	}
	if (now - l->last_recv_ns > ag->peer_timeout_ns / 4 &&
	    now - l->last_ping_ns > ag->peer_timeout_ns / 4) {
		l->last_ping_ns = now;
		dtrans__link_frame(l, DTRANS__F_PING, 0, NULL, 0, NULL, 0);
	}
}

void dtrans__link_accepted(struct dtrans__link *l)
{
	hs_hello(l);
}

void dtrans__accept_all(struct dtrans_agent *ag)
{
	struct dtrans__link *l;
	void *be;

	while (ag->be->accept(ag->ep, &be) == 0) {
		if (dtrans__link_new(ag, be, false, UINT32_MAX, &l) == 0)
			dtrans__link_accepted(l);
	}
}

int dtrans__link_feed(struct dtrans__link *l, const void *buf, size_t len)
{
	int rc;

	if (l->dead)
		return -EPIPE;
	if (l->sink.mem) { /* the rest of a large frame first */
		size_t take = l->sink.len - l->sink.got;

		take = take < len ? take : len;
		memcpy(l->sink.mem + l->sink.got, buf, take);
		l->sink.got += take;
		buf = (const char *)buf + take;
		len -= take;
		if (l->sink.got < l->sink.len)
			return 0;
		rc = link_sink_end(l);
		if (rc < 0) {
			dtrans__link_drop(l, dtrans_strerror(rc));
			return rc;
		}
	}
	rc = buf_reserve(&l->in, len);
	if (rc < 0)
		return rc;
	memcpy(l->in.p + l->in.len, buf, len);
	l->in.len += len;
	rc = link_parse(l);
	if (rc < 0)
		dtrans__link_drop(l, dtrans_strerror(rc));
	return rc;
}
