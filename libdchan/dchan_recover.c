/*
 * Recovery of slots left claimed by processes that died.
 *
 * A process that meets a claimed slot in its way (dchan_wait.c,
 * dchan_poll.c) calls dchan__recover.  If the owner named by the slot's
 * tag no longer runs (dchan__owner_dead: gone, a zombie, or its pid now
 * someone else's), the slot is brought back to a state the ring can move
 * past:
 *
 *   being written (even seq, writer tag)  ->  abandoned (odd seq): the next
 *       reader skips it; an allocation already recorded in it is freed
 *   being read (odd seq, reader tag)      ->  free for the next lap: the
 *       message is counted as delivered to the dead reader; its allocation,
 *       if any, is freed
 *   being peeked (odd seq, PEEK tag)      ->  full again, untouched
 *
 * The order is what makes this safe with several survivors: first the
 * state word is compared with the one seen (a slot that moved on is
 * left alone without asking about its owner), then the owner is asked
 * about, then the survivor takes the slot over with one CAS from exactly
 * the state seen, putting its own tag in.  Only the survivor whose CAS
 * won touches the slot's contents, and while it does the slot is claimed
 * by a live process, so no reader or writer of the next lap can be in it;
 * if that survivor dies in turn, the next one recovers the slot from it.
 */
#include "config.h"
#include "dchan_private.h"

#include <string.h>

/* Free the allocation a slot refers to.  The descriptor carries the
 * block's generation, so a block that its owner's reclaim already freed
 * (or that was handed out again since) is refused, not freed twice. */
void dchan__free_slot_desc(dchan_t *ch, struct dchan__slot *s)
{
	dmem_alloc_desc_t d;

	if (__atomic_load_n(&s->kind, __ATOMIC_ACQUIRE) != DCHAN__KIND_DESC)
		return;
	memcpy(&d, s->data, sizeof d);
	(void)dmem_alloc_free(ch->pool, &d);
}

static uint32_t seq_next_lap(const dchan_t *ch, uint32_t odd_seq)
{
	return odd_seq - 1 + 2 * ch->cap;
}

/* Returns 1 if the slot was recovered (by us), 0 if nothing was done. */
int dchan__recover(dchan_t *ch, const struct dchan__claim *c)
{
	uint32_t tag = c->blocker, seq = dchan__seq(c->state);
	uint64_t st = c->state;
	struct dchan__slot *s = c->slot;

	if (!tag || (tag & DCHAN__TAG_ABANDONED))
		return 0;
	if (DCHAN__LOAD(&s->state) != st || !dchan__owner_dead(tag))
		return 0;
	if (tag & DCHAN__TAG_PEEK) {
		/* a peek changed nothing: the message is the oldest again */
		if (!DCHAN__CAS(&s->state, &st, dchan__state(seq, 0)))
			return 0;
		__atomic_fetch_add(&ch->hdr->recovered, 1, __ATOMIC_RELAXED);
		dchan__waiter_sweep(ch->hdr);
		dchan__notify_data(ch->hdr);
		return 1;
	}
	if (!DCHAN__CAS(&s->state, &st, dchan__state(seq, dchan__self_tag())))
		return 0;
	dchan__free_slot_desc(ch, s);
	__atomic_store_n(&s->kind, 0, __ATOMIC_RELAXED);
	__atomic_fetch_add(&ch->hdr->recovered, 1, __ATOMIC_RELAXED);
	if (seq % 2 == 0) {
		DCHAN__STORE(&s->state,
			     dchan__state(seq + 1, DCHAN__TAG_ABANDONED));
		dchan__notify_data(ch->hdr);
	} else {
		DCHAN__STORE(&s->state, dchan__state(seq_next_lap(ch, seq), 0));
		dchan__notify_space(ch->hdr);
	}
	dchan__waiter_sweep(ch->hdr); /* a process died: maybe asleep too */
	return 1;
}
