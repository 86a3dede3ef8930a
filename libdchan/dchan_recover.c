/*
 * Recovery of slots left claimed by processes that died.
 *
 * A process blocked behind a claimed slot (dchan_wait.c) calls
 * dchan__recover after a short bound.  If the owner recorded in the slot's
 * tag no longer exists, the slot is brought back to a state the ring can
 * move past, with one CAS from exactly the state that was seen, so that two
 * survivors never recover the same slot twice:
 *
 *   being written (even seq, writer tag)  ->  abandoned (odd seq): the next
 *       reader skips it; an allocation already recorded in it is freed
 *   being read (odd seq, reader tag)      ->  free for the next lap: the
 *       message is counted as delivered to the dead reader; its allocation,
 *       if any, is freed
 *   being peeked (odd seq, PEEK tag)      ->  full again, untouched
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

static uint32_t dchan__seq_next_lap(const dchan_t *ch, uint32_t odd_seq)
{
	return odd_seq - 1 + 2 * ch->cap;
}

/* Returns 1 if the slot was recovered (by us), 0 if nothing was done. */
int dchan__recover(dchan_t *ch, const struct dchan__claim *c)
{
	uint32_t tag = c->blocker, seq = dchan__seq(c->state);
	uint64_t st = c->state, next;
	struct dchan__slot *s = c->slot;

	if (!tag || (tag & DCHAN__TAG_ABANDONED))
		return 0;
	if (!dchan__pid_dead(tag & DCHAN__TAG_PID_MASK))
		return 0;
	if (tag & DCHAN__TAG_PEEK)
		next = dchan__state(seq, 0);
	else if (seq % 2 == 0)
		next = dchan__state(seq + 1, DCHAN__TAG_ABANDONED);
	else
		next = dchan__state(dchan__seq_next_lap(ch, seq), 0);
	if (DCHAN__LOAD(&s->state) != st)
		return 0;
	if (!(tag & DCHAN__TAG_PEEK))
		dchan__free_slot_desc(ch, s);
	if (!DCHAN__CAS(&s->state, &st, next))
		return 0;
	__atomic_fetch_add(&ch->hdr->recovered, 1, __ATOMIC_RELAXED);
	if (seq % 2 == 0 || (tag & DCHAN__TAG_PEEK))
		dchan__notify_data(ch->hdr);
	else
		dchan__notify_space(ch->hdr);
	return 1;
}
