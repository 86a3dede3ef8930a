/*
 * Remote channels: an operation on a channel of another node becomes a
 * request in this node's gateway channel.  Each request names a reply
 * channel, made for it in the gateway's pool, where the servicer writes
 * the completion; the caller waits there.
 */
#include "config.h"
#include "dchan_private.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#define DCHAN__GW_GRACE_NS                                                     \
	30000000000ull /* servicer's slack past a timeout                      \
			*/

static pthread_mutex_t gw_lock = PTHREAD_MUTEX_INITIALIZER;
static dchan_t *registered_gw;
static bool gw_owned; /* attached from the environment by us */
static uint64_t gw_next_id;

DCHAN_EXPORT int dchan_gw_register(dchan_t *ch)
{
	if (!ch || ch->remote)
		return dchan__fail(-EINVAL,
				   "a gateway must be a local channel");
	pthread_mutex_lock(&gw_lock);
	if (gw_owned)
		dchan_detach(registered_gw);
	registered_gw = ch;
	gw_owned = false;
	pthread_mutex_unlock(&gw_lock);
	return 0;
}

DCHAN_EXPORT int dchan_gw_unregister(void)
{
	pthread_mutex_lock(&gw_lock);
	if (gw_owned)
		dchan_detach(registered_gw);
	registered_gw = NULL;
	gw_owned = false;
	pthread_mutex_unlock(&gw_lock);
	return 0;
}

/* The gateway: the registered one, else the one $DRAGON_GW_CHANNEL names. */
static int gw_get(dchan_t **gw_out)
{
	const char *env;
	dchan_desc_t d;
	int rc = 0;

	pthread_mutex_lock(&gw_lock);
	if (!registered_gw) {
		env = getenv(DCHAN_GW_ENV);
		if (!env || !*env)
			rc = dchan__fail(-DCHAN_E_NOGATEWAY,
					 "the channel is on "
					 "another node; register a gateway "
					 "or set %s",
					 DCHAN_GW_ENV);
		else if ((rc = dchan_desc_from_text(env, &d)) == 0 &&
			 (rc = dchan_attach(&d, &registered_gw)) == 0)
			gw_owned = true;
	}
	if (rc == 0 && registered_gw->remote)
		rc = dchan__fail(-DCHAN_E_NOGATEWAY,
				 "%s names a channel of "
				 "another node",
				 DCHAN_GW_ENV);
	if (rc == 0)
		*gw_out = registered_gw;
	pthread_mutex_unlock(&gw_lock);
	return rc;
}

/* Encode a request into the gateway channel; a small one is built on the
 * stack (no allocation on the latency path), one too large for a slot
 * straight into a block of the gateway's pool, which the channel then
 * takes without a copy (the servicer writes it to the network from
 * there); only when the pool has no room now is it built on the heap and
 * copied in, waiting for room. */
static int gw_post(dchan_t *gw, const dchan_gw_req_t *req)
{
	unsigned char small[1024];
	size_t len = sizeof(dchan_desc_t) * 2 + 64 + req->payload_len;
	void *buf;
	int64_t n;
	int rc;

	if (len > gw->slot_size && dmem_alloc(gw->pool, len, 0, &buf) == 0) {
		n = dchan_gw_req_encode(req, buf, len);
		rc = n < 0 ? (int)n
			   : dchan__send_zc_local(gw, buf, (size_t)n,
						  DCHAN_FOREVER);
		if (rc < 0)
			dmem_free(gw->pool, buf);
		return rc;
	}
	buf = len <= sizeof small ? small : malloc(len);
	if (!buf)
		return dchan__fail(-ENOMEM, "no memory for a gateway request");
	n = dchan_gw_req_encode(req, buf, len);
	rc = n < 0 ? (int)n
		   : dchan__send_local(gw, buf, (size_t)n, DCHAN_FOREVER);
	if (buf != small)
		free(buf);
	return rc;
}

/*
 * A completion comes back within a network round trip through two agents,
 * longer than a local wait's polling (dchan__spin_ns) and shorter than
 * what a futex sleep and wake-up cost on a loaded or virtual machine.  So
 * the requester polls its reply channel, yielding the CPU between looks,
 * for a budget that adapts per thread: it doubles (up to GW_POLL_NS)
 * when a poll was answered and halves (down to a 16th) when it ran out,
 * and every GW_POLL_PROBE-th poll runs the whole GW_POLL_NS so that a
 * budget shrunk during a slow phase grows back.  It polls when local
 * waits poll (dchan__spin_ns: not on one CPU, not while the machine is
 * crowded, always when DRAGON_DCHAN_SPIN_NS asks for it, never with 0).
 */
#define GW_POLL_NS    200000ull
#define GW_POLL_PROBE 32

static __thread uint64_t gw_poll_budget = GW_POLL_NS;
static __thread uint32_t gw_poll_n;

static int gw_poll_reply(dchan_t *reply, dchan_msg_t *m)
{
	uint64_t budget = gw_poll_budget, t0, now;
	int rc;

	if (!dchan__spin_ns())
		return -EAGAIN;
	if (++gw_poll_n % GW_POLL_PROBE == 0)
		budget = GW_POLL_NS;
	t0 = dchan__now_ns();
	for (;;) {
		rc = dchan__recv_zc_local(reply, 0, m);
		if (rc != -EAGAIN)
			break;
		now = dchan__now_ns();
		if (now - t0 > budget) {
			gw_poll_budget = budget / 2 > GW_POLL_NS / 16
						 ? budget / 2
						 : GW_POLL_NS / 16;
			return rc;
		}
		sched_yield();
	}
	gw_poll_budget = budget * 2 < GW_POLL_NS ? budget * 2 : GW_POLL_NS;
	return rc;
}

/* Wait for the completion; copy its payload (at most cap bytes) to out. */
static int gw_await(dchan_t *reply, const dchan_gw_req_t *req, uint64_t wait,
		    void *out, size_t cap, dchan_gw_cpl_t *cpl_out)
{
	dchan_gw_cpl_t c;
	dchan_msg_t m;
	int rc;

	for (bool first = true;; first = false) {
		rc = first ? gw_poll_reply(reply, &m) : -EAGAIN;
		if (rc == -EAGAIN)
			rc = dchan__recv_zc_local(reply, wait, &m);
		if (rc < 0)
			return dchan__fail(rc == -ETIMEDOUT ? -EHOSTUNREACH
							    : rc,
					   "the gateway's servicer did not "
					   "answer");
		rc = dchan_gw_cpl_decode(m.data, m.len, &c);
		if (rc < 0 || c.req_id == req->req_id)
			break;
		/* a late answer to a request that gave up: drop it */
		dchan_msg_release(&m);
	}
	if (rc == 0 && c.op != req->op)
		rc = dchan__fail(-DCHAN_E_BADREQ, "completion for another "
						  "operation");
	if (rc == 0 && c.payload_len > cap)
		rc = dchan__fail(-DCHAN_E_BADREQ, "completion payload larger "
						  "than asked for");
	if (rc == 0 && c.payload_len)
		memcpy(out, c.payload, c.payload_len);
	dchan_msg_release(&m);
	if (rc == 0)
		*cpl_out = c;
	return rc;
}

/*
 * Each thread waits for its completions in a reply channel of its own in
 * the gateway's pool, made on first use and kept: a servicer may still be
 * inside its send (waking the receiver) after the completion was taken,
 * so a reply channel is never freed while requests may be in flight.
 */
static pthread_once_t reply_once = PTHREAD_ONCE_INIT;

/*
 * A thread's reply channel: `inherited` is, in a forked child, this
 * process's copy of the parent's handle (the parent's channel stays the
 * parent's); `inflight` counts requests posted and not yet answered
 * (poll sets only, see dchan__gw_pollset_begin).
 */
struct reply_slot {
	dchan_t *ch;
	dchan_t *inherited;
	unsigned inflight;
};

/* One for each thread's calls, one for its poll sets, one for the
 * acknowledgements of its buffered sends (coalesced by the servicer when
 * the channel is full, so a few slots do). */
#define REPLY_CALLS    0
#define REPLY_POLLSETS 1
#define REPLY_ACKS     2
#define REPLY_KINDS    3
static pthread_key_t reply_key[REPLY_KINDS];
static __thread struct reply_slot reply_slot[REPLY_KINDS];
static const uint32_t reply_cap[REPLY_KINDS] = {4, DCHAN__GW_POLLSET_CAP, 16};

/* The thread's buffered sends: how many are in flight (posted, not yet
 * acknowledged) and the first error of those acknowledged, not yet
 * reported, with the channel it concerned. */
static __thread struct {
	uint64_t inflight;
	int err;
	uint64_t err_node, err_uid;
} bufd;

static void reply_drop(void *ch)
{
	dchan_detach(ch);
}

/* The child's copy of a handle is freed at its next remote operation,
 * not here, where taking the library's locks is not safe. */
static void reply_forget(void)
{
	memset(&bufd, 0, sizeof bufd); /* the parent's sends stay its own */
	for (int i = 0; i < REPLY_KINDS; i++) {
		if (reply_slot[i].ch)
			reply_slot[i].inherited = reply_slot[i].ch;
		reply_slot[i].ch = NULL;
		reply_slot[i].inflight = 0;
	}
}

static void reply_init(void)
{
	for (int i = 0; i < REPLY_KINDS; i++)
		pthread_key_create(&reply_key[i], reply_drop);
	pthread_atfork(NULL, NULL, reply_forget);
}

/* Forget the thread's reply channel `which` (it stays in the pool: a
 * servicer may still be sending to it). */
static void reply_abandon(int which)
{
	struct reply_slot *s = &reply_slot[which];

	pthread_setspecific(reply_key[which], NULL);
	if (s->ch)
		dchan_detach(s->ch);
	s->ch = NULL;
	s->inflight = 0;
	if (which == REPLY_ACKS)
		bufd.inflight = 0; /* their answers went to that channel */
}

static int reply_get(dchan_t *gw, int which, dchan_t **reply_out)
{
	dchan_attr_t a = {.field_mask = DCHAN_ATTR_CAPACITY,
			  .capacity = reply_cap[which]};
	struct reply_slot *s = &reply_slot[which];
	int rc;

	pthread_once(&reply_once, reply_init);
	if (s->inherited) {
		pthread_setspecific(reply_key[which], NULL);
		dchan_detach(s->inherited);
		s->inherited = NULL;
	}
	if (s->ch && s->ch->desc.pool.pool_uid != gw->desc.pool.pool_uid)
		reply_abandon(which);
	if (!s->ch) {
		rc = dchan__create(gw->pool, &a, DCHAN__OBJ_CHANNEL, &s->ch);
		if (rc < 0)
			return rc;
		pthread_setspecific(reply_key[which], s->ch);
	}
	*reply_out = s->ch;
	return 0;
}

/* A request id: the requester's pid in the top 24 bits. */
static uint64_t req_id_next(void)
{
	return (uint64_t)dchan__self() << 40 |
	       __atomic_add_fetch(&gw_next_id, 1, __ATOMIC_RELAXED);
}

int dchan__gw_call_to(const dchan_desc_t *target, dchan_gw_req_t *req,
		      uint64_t wait_ns, void *out, size_t cap,
		      dchan_gw_cpl_t *cpl_out)
{
	dchan_t *gw = NULL, *reply = NULL;
	int rc;

	rc = gw_get(&gw);
	if (rc == 0)
		rc = reply_get(gw, REPLY_CALLS, &reply);
	if (rc < 0)
		return rc;
	req->version = DCHAN_GW_VERSION;
	req->req_id = req_id_next();
	req->target = *target;
	req->reply = reply->desc;
	rc = gw_post(gw, req);
	if (rc == 0)
		rc = gw_await(reply, req, wait_ns, out, cap, cpl_out);
	return rc;
}

/* One remote operation, start to end. */
static int gw_call(dchan_t *ch, dchan_gw_req_t *req, void *out, size_t cap,
		   dchan_gw_cpl_t *cpl_out)
{
	uint64_t wait = req->timeout_ns >= DCHAN_FOREVER - DCHAN__GW_GRACE_NS
				? DCHAN_FOREVER
				: req->timeout_ns + DCHAN__GW_GRACE_NS;
	int rc = dchan__gw_call_to(&ch->desc, req, wait, out, cap, cpl_out);

	if (rc == 0 && cpl_out->status < 0)
		rc = dchan__fail(cpl_out->status,
				 "remote channel %016llx of node %llu: %s",
				 (unsigned long long)ch->desc.chan_uid,
				 (unsigned long long)ch->desc.node_id,
				 dchan_strerror(cpl_out->status));
	return rc;
}

DCHAN_EXPORT int dchan_send_mode_set(dchan_t *ch, unsigned mode)
{
	if (!ch)
		return dchan__fail(-EINVAL, "NULL channel");
	if (mode != DCHAN_SEND_SYNC && mode != DCHAN_SEND_BUFFERED &&
	    mode != DCHAN_SEND_BUFFERED_WAIT)
		return dchan__fail(-EINVAL,
				   "send mode %u: want DCHAN_SEND_SYNC, "
				   "DCHAN_SEND_BUFFERED or "
				   "DCHAN_SEND_BUFFERED_WAIT",
				   mode);
	ch->send_mode = mode;
	return 0;
}

/* Take one acknowledgement of buffered sends (waiting up to timeout_ns). */
static int bufd_take(dchan_t *acks, uint64_t timeout_ns)
{
	dchan_gw_cpl_t c;
	dchan_msg_t m;
	uint64_t n;
	int rc = dchan__recv_zc_local(acks, timeout_ns, &m);

	if (rc < 0)
		return rc;
	if (dchan_gw_cpl_decode(m.data, m.len, &c) == 0) {
		n = c.req_id == DCHAN_GW_ACK_ID ? c.value : 1;
		bufd.inflight = n < bufd.inflight ? bufd.inflight - n : 0;
		if (c.status < 0 && bufd.err == 0) {
			uint64_t who[2] = {0, 0};

			if (c.payload_len == sizeof who)
				memcpy(who, c.payload, sizeof who);
			bufd.err = c.status;
			bufd.err_node = who[0];
			bufd.err_uid = who[1];
		}
	}
	dchan_msg_release(&m);
	return 0;
}

/* The first unreported error of the thread's buffered sends, reported. */
static int bufd_report(void)
{
	int err = bufd.err;

	bufd.err = 0;
	return dchan__fail(err,
			   "an earlier buffered send to channel %016llx of "
			   "node %llu failed: %s",
			   (unsigned long long)bufd.err_uid,
			   (unsigned long long)bufd.err_node,
			   dchan_strerror(err));
}

static uint64_t left_of(uint64_t timeout_ns, uint64_t t0)
{
	uint64_t spent = dchan__now_ns() - t0;

	if (timeout_ns == DCHAN_FOREVER)
		return DCHAN_FOREVER;
	return spent < timeout_ns ? timeout_ns - spent : 0;
}

/*
 * A buffered send: the request goes into the gateway channel and the call
 * returns; the acknowledgements come back in batches to a reply channel
 * of the thread's buffered sends, and are taken here, on the way, or by
 * dchan_gw_flush.  The window bounds what one thread has in flight.
 */
static int gw_send_buffered(dchan_t *ch, const void *buf, size_t len,
			    uint64_t timeout_ns)
{
	dchan_gw_req_t req = {.version = DCHAN_GW_VERSION,
			      .op = DCHAN_GW_SEND,
			      .arg = DCHAN_GW_F_BUFFERED,
			      .timeout_ns = timeout_ns,
			      .payload = buf,
			      .payload_len = len};
	uint64_t t0 = dchan__now_ns();
	dchan_t *gw = NULL, *acks = NULL;
	int rc;

	rc = gw_get(&gw);
	if (rc == 0)
		rc = reply_get(gw, REPLY_ACKS, &acks);
	if (rc < 0)
		return rc;
	while (bufd.inflight && bufd_take(acks, 0) == 0)
		;
	while (!bufd.err && bufd.inflight >= DCHAN_GW_BUFFERED_MAX) {
		rc = bufd_take(acks, left_of(timeout_ns, t0));
		if (rc == -EAGAIN || rc == -ETIMEDOUT)
			return dchan__fail(rc,
					   "%llu buffered sends of this "
					   "thread are in flight, and none "
					   "completed within the timeout",
					   (unsigned long long)bufd.inflight);
		if (rc < 0)
			return rc;
	}
	if (bufd.err)
		return bufd_report();
	req.req_id = req_id_next();
	req.target = ch->desc;
	req.reply = acks->desc;
	if (ch->send_mode == DCHAN_SEND_BUFFERED_WAIT)
		req.timeout_ns =
			DCHAN_FOREVER; /* timeout_ns was the window's */
	rc = gw_post(gw, &req);
	if (rc == 0)
		bufd.inflight++;
	return rc;
}

DCHAN_EXPORT int dchan_gw_flush(uint64_t timeout_ns)
{
	dchan_t *acks = reply_slot[REPLY_ACKS].ch;
	uint64_t t0 = dchan__now_ns();
	int rc;

	while (acks && bufd.inflight) {
		rc = bufd_take(acks, left_of(timeout_ns, t0));
		if (rc == -EAGAIN || rc == -ETIMEDOUT)
			return dchan__fail(-ETIMEDOUT,
					   "%llu buffered sends of this "
					   "thread still in flight at the "
					   "timeout",
					   (unsigned long long)bufd.inflight);
		if (rc < 0)
			return rc;
	}
	return bufd.err ? bufd_report() : 0;
}

int dchan__gw_send(dchan_t *ch, const void *buf, size_t len,
		   uint64_t timeout_ns)
{
	dchan_gw_req_t req = {.op = DCHAN_GW_SEND,
			      .timeout_ns = timeout_ns,
			      .payload = buf,
			      .payload_len = len};
	dchan_gw_cpl_t c;

	if (len > DCHAN_GW_PAYLOAD_MAX)
		return dchan__fail(-DMEM_E_TOOBIG,
				   "a remote message is at most "
				   "%u bytes",
				   DCHAN_GW_PAYLOAD_MAX);
	if (ch->send_mode != DCHAN_SEND_SYNC)
		return gw_send_buffered(ch, buf, len, timeout_ns);
	return gw_call(ch, &req, NULL, 0, &c);
}

int dchan__gw_recv(dchan_t *ch, int op, void *buf, size_t cap,
		   uint64_t timeout_ns, size_t *len_out)
{
	dchan_gw_req_t req = {
		.op = (uint16_t)op, .timeout_ns = timeout_ns, .cap = cap};
	dchan_gw_cpl_t c;
	int rc = gw_call(ch, &req, buf, cap, &c);

	if (rc == 0)
		*len_out = op == DCHAN_GW_PEEK ? c.value : c.payload_len;
	return rc;
}

int dchan__gw_poll(dchan_t *ch, unsigned events, uint64_t timeout_ns,
		   unsigned *revents_out)
{
	dchan_gw_req_t req = {
		.op = DCHAN_GW_POLL, .timeout_ns = timeout_ns, .arg = events};
	dchan_gw_cpl_t c;
	int rc = gw_call(ch, &req, NULL, 0, &c);

	if (rc == 0)
		*revents_out = (unsigned)c.value;
	return rc;
}

int dchan__gw_stats(dchan_t *ch, dchan_stats_t *st)
{
	dchan_gw_req_t req = {.op = DCHAN_GW_STATS};
	dchan_gw_cpl_t c;
	dchan_stats_t s;
	int rc = gw_call(ch, &req, &s, sizeof s, &c);

	if (rc == 0 && c.payload_len != sizeof s)
		rc = dchan__fail(-DCHAN_E_BADREQ,
				 "stats completion of %llu "
				 "bytes",
				 (unsigned long long)c.payload_len);
	if (rc == 0)
		*st = s;
	return rc;
}

/*
 * Poll sets with remote channels (dchan_poll_many).  A set returns as
 * soon as one of its channels is ready and leaves its other remote polls
 * to end on their own, each within the slice it was posted with; their
 * late completions go to a reply channel of the thread's poll sets, with
 * room for them and a whole new set, never to the channel of its calls,
 * where they could crowd out an answer.
 */
int dchan__gw_pollset_begin(unsigned n, dchan_t **reply_out)
{
	struct reply_slot *s = &reply_slot[REPLY_POLLSETS];
	uint64_t id;
	unsigned rev;
	dchan_t *gw, *reply;
	int rc, st;

	rc = gw_get(&gw);
	if (rc == 0)
		rc = reply_get(gw, REPLY_POLLSETS, &reply);
	if (rc < 0)
		return rc;
	while (s->inflight + n > DCHAN__GW_POLLSET_CAP) {
		rc = dchan__gw_poll_take(reply, DCHAN__GW_POLLSET_LATE_NS, &id,
					 &rev, &st);
		if (rc == -ETIMEDOUT || rc == -EAGAIN) {
			/* answers that will not come: start afresh */
			reply_abandon(REPLY_POLLSETS);
			return dchan__gw_pollset_begin(n, reply_out);
		}
		if (rc < 0)
			return rc;
	}
	*reply_out = reply;
	return 0;
}

int dchan__gw_poll_post(dchan_t *ch, unsigned events, uint64_t timeout_ns,
			dchan_t *reply, uint64_t *req_id_out)
{
	dchan_gw_req_t req = {.version = DCHAN_GW_VERSION,
			      .op = DCHAN_GW_POLL,
			      .arg = events,
			      .timeout_ns = timeout_ns,
			      .req_id = req_id_next(),
			      .target = ch->desc,
			      .reply = reply->desc};
	dchan_t *gw;
	int rc = gw_get(&gw);

	if (rc == 0)
		rc = gw_post(gw, &req);
	if (rc < 0)
		return rc;
	reply_slot[REPLY_POLLSETS].inflight++;
	*req_id_out = req.req_id;
	return 0;
}

int dchan__gw_poll_take(dchan_t *reply, uint64_t timeout_ns,
			uint64_t *req_id_out, unsigned *revents_out,
			int *status_out)
{
	dchan_gw_cpl_t c;
	dchan_msg_t m;
	int rc = dchan__recv_zc_local(reply, timeout_ns, &m);

	if (rc < 0)
		return rc;
	if (reply_slot[REPLY_POLLSETS].inflight)
		reply_slot[REPLY_POLLSETS].inflight--;
	rc = dchan_gw_cpl_decode(m.data, m.len, &c);
	if (rc == 0 && c.op != DCHAN_GW_POLL)
		rc = dchan__fail(-DCHAN_E_BADREQ, "completion for another "
						  "operation in a poll set");
	if (rc == 0) {
		*req_id_out = c.req_id;
		*revents_out = (unsigned)c.value;
		*status_out = c.status;
	}
	dchan_msg_release(&m);
	return rc;
}
