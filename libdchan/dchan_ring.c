/*
 * The lock-free ring: claiming a slot to write or read, handing it on, and
 * the wake-ups that follow.  The layout and the meaning of a slot's state
 * word are described in dchan_private.h.
 */
#include "config.h"
#include "dchan_private.h"

/* A slot was published: wake one armed receiver and the armed pollers.
 * The fence pairs with the waiter's register-then-recheck, so either it
 * sees the message or we see its bit (dchan_waiters.c).  With nobody armed,
 * as when the waiter was already woken and has not run yet, this is two
 * loads. */
void dchan__notify_data(struct dchan__hdr *h)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (DCHAN__WAITING(h, recv_waiters, recv_over))
		dchan__wake(h, DCHAN__WAIT_RECV);
	if (DCHAN__WAITING(h, ev_waiters, ev_over))
		dchan__wake(h, DCHAN__WAIT_EV);
}

void dchan__notify_space(struct dchan__hdr *h)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (DCHAN__WAITING(h, send_waiters, send_over))
		dchan__wake(h, DCHAN__WAIT_SEND);
	if (DCHAN__WAITING(h, ev_waiters, ev_over))
		dchan__wake(h, DCHAN__WAIT_EV);
}

/* Move a hint (head or tail) from pos to pos + 1 unless someone did. */
static uint64_t forward(uint64_t *hint, uint64_t pos)
{
	uint64_t expect = pos;

	if (DCHAN__CAS(hint, &expect, pos + 1))
		return pos + 1;
	return expect;
}

/*
 * Claim the slot for the next position to write.  Returns 0 with the slot
 * tagged by this process, or -EAGAIN when the ring is full; then
 * c->blocker is the tag of the slot in the way (0: an unread message).
 */
int dchan__put_claim(dchan_t *ch, struct dchan__claim *c)
{
	struct dchan__hdr *h = ch->hdr;
	uint32_t me = dchan__self_tag();
	uint64_t pos = DCHAN__LOADR(&h->head);

	for (;;) {
		struct dchan__slot *s = dchan__slot_at(ch, pos);
		uint64_t st = DCHAN__LOAD(&s->state);
		int32_t diff = (int32_t)(dchan__seq(st) - (uint32_t)(2 * pos));

		if (diff == 0 && dchan__tag(st) == 0) {
			if (!DCHAN__CAS(&s->state, &st,
					dchan__state(dchan__seq(st), me)))
				continue;
			forward(&h->head, pos);
			c->slot = s;
			c->pos = pos;
			return 0;
		}
		if (diff >= 0) {
			/* another writer has pos, or our view is stale */
			pos = forward(&h->head, pos);
			continue;
		}
		c->slot = s;
		c->pos = pos;
		c->state = st;
		c->blocker = dchan__tag(st);
		return -EAGAIN;
	}
}

/* The message in the claimed slot is complete: let readers have it. */
void dchan__put_publish(dchan_t *ch, struct dchan__claim *c)
{
	DCHAN__STORE(&c->slot->state,
		     dchan__state((uint32_t)(2 * c->pos + 1), 0));
	dchan__notify_data(ch->hdr);
}

/*
 * A slot handed to the writer of the next lap holds no message: its kind
 * is cleared first, so that a writer that dies before filling it leaves
 * nothing for recovery to free (the descriptor of the message before may
 * name a block that its receiver still holds).
 */
static void hand_on(dchan_t *ch, struct dchan__slot *s, uint64_t pos)
{
	__atomic_store_n(&s->kind, 0, __ATOMIC_RELAXED);
	DCHAN__STORE(&s->state,
		     dchan__state((uint32_t)(2 * (pos + ch->cap)), 0));
	dchan__notify_space(ch->hdr);
}

/* Claim for a reader; peek claims without moving the tail, so that other
 * readers wait for the slot instead of passing it. */
static int get_take(dchan_t *ch, struct dchan__slot *s, uint64_t st,
		    uint64_t pos, bool peek)
{
	uint32_t tag = dchan__self_tag() | (peek ? DCHAN__TAG_PEEK : 0);

	if (!DCHAN__CAS(&s->state, &st, dchan__state(dchan__seq(st), tag)))
		return -EAGAIN;
	if (!peek)
		forward(&ch->hdr->tail, pos);
	return 0;
}

/*
 * Claim the oldest message.  maxlen: a message longer than this is left
 * where it is (-EMSGSIZE).  Returns 0, or -EAGAIN when the ring is empty
 * (c->blocker: tag of a slot still being written or peeked, else 0).
 */
int dchan__get_claim(dchan_t *ch, size_t maxlen, bool peek,
		     struct dchan__claim *c)
{
	struct dchan__hdr *h = ch->hdr;
	uint64_t pos = DCHAN__LOADR(&h->tail);

	for (;;) {
		struct dchan__slot *s = dchan__slot_at(ch, pos);
		uint64_t st = DCHAN__LOAD(&s->state);
		uint32_t tag = dchan__tag(st);
		int32_t diff =
			(int32_t)(dchan__seq(st) - (uint32_t)(2 * pos + 1));

		if (diff == 0 && tag == 0) {
			/* the state word is re-checked by the CAS, so a
			 * length read in between belongs to this message */
			if (__atomic_load_n(&s->len, __ATOMIC_RELAXED) > maxlen)
				return -EMSGSIZE;
			if (get_take(ch, s, st, pos, peek) < 0)
				continue;
			c->slot = s;
			c->pos = pos;
			return 0;
		}
		if (diff == 0 && (tag & DCHAN__TAG_ABANDONED)) {
			/* abandoned by a dead writer: nobody reads it */
			if (get_take(ch, s, st, pos, false) == 0)
				hand_on(ch, s, pos);
			pos = DCHAN__LOADR(&h->tail);
			continue;
		}
		if ((diff == 0 && !(tag & DCHAN__TAG_PEEK)) || diff > 0) {
			pos = forward(&h->tail, pos);
			continue;
		}
		c->slot = s;
		c->pos = pos;
		c->state = st;
		c->blocker = tag;
		return -EAGAIN;
	}
}

/* The reader is done with the slot: give it to the writer of the next lap. */
void dchan__get_release(dchan_t *ch, struct dchan__claim *c)
{
	hand_on(ch, c->slot, c->pos);
}

/* Undo a peek claim: the message is the oldest again. */
void dchan__peek_release(dchan_t *ch, struct dchan__claim *c)
{
	DCHAN__STORE(&c->slot->state,
		     dchan__state((uint32_t)(2 * c->pos + 1), 0));
	dchan__notify_data(ch->hdr);
}

/* Slots a readiness test looks past (taken, abandoned, or behind a stale
 * hint) before it gives up looking and lets the caller try. */
#define READY_LOOKAHEAD 64

/* Would a receive find a message now?  *blk gets the slot in the way. */
bool dchan__readable(dchan_t *ch, struct dchan__claim *blk)
{
	uint64_t pos = DCHAN__LOADR(&ch->hdr->tail);

	for (int i = 0; i < READY_LOOKAHEAD; i++) {
		struct dchan__slot *s = dchan__slot_at(ch, pos);
		uint64_t st = DCHAN__LOAD(&s->state);
		int32_t diff =
			(int32_t)(dchan__seq(st) - (uint32_t)(2 * pos + 1));

		if (diff == 0 &&
		    (dchan__tag(st) == 0 || (dchan__tag(st) & DCHAN__TAG_PEEK)))
			return true;
		if (diff < 0) {
			blk->slot = s;
			blk->pos = pos;
			blk->state = st;
			blk->blocker = dchan__tag(st);
			return false;
		}
		pos++; /* taken, abandoned, or a stale tail: look further */
	}
	return true; /* moving fast: let the caller try */
}

/* Would a send find a free slot now? */
bool dchan__writable(dchan_t *ch, struct dchan__claim *blk)
{
	uint64_t pos = DCHAN__LOADR(&ch->hdr->head);

	for (int i = 0; i < READY_LOOKAHEAD; i++) {
		struct dchan__slot *s = dchan__slot_at(ch, pos);
		uint64_t st = DCHAN__LOAD(&s->state);
		int32_t diff = (int32_t)(dchan__seq(st) - (uint32_t)(2 * pos));

		if (diff == 0 && dchan__tag(st) == 0)
			return true;
		if (diff < 0) {
			blk->slot = s;
			blk->pos = pos;
			blk->state = st;
			blk->blocker = dchan__tag(st);
			return false;
		}
		pos++;
	}
	return true;
}
