/* SPDX-License-Identifier: MIT */
/*
 * waiters.c - who is blocked in dmem_alloc_timed.
 *
 * A free must know whether anyone waits for memory (to wake them, and to
 * stop parking blocks in its cache), at the cost of one load when nobody
 * does.  A plain counter would do, except that a waiter killed while
 * waiting would leave it raised forever, and every later free would pay a
 * wake-up system call.  So a waiter takes a slot holding its pid, and
 * dmem_pool_reclaim() clears the slots of a dead process like the rest of
 * its state.  Past DMEM_WAITER_SLOTS concurrent waiters a counter takes
 * over (correct, just not repaired after a crash).
 */
#include "dmem_private.h"

int dmem__waiter_enter(struct dmem_pool *p)
{
	struct dmem_shared *s = p->sh;
	uint32_t self = (uint32_t)dmem__self_pid();

	for (int i = 0; i < DMEM_WAITER_SLOTS; i++) {
		uint32_t zero = 0;

		if (atomic_load_explicit(&s->waiter_pid[i],
					 memory_order_relaxed))
			continue;
		/* pid first, then the bit: killed in between, the slot is
		 * still found by reclaim. */
		if (atomic_compare_exchange_strong(&s->waiter_pid[i], &zero,
						   self)) {
			atomic_fetch_or(&s->waiter_bits, 1ull << i);
			return i;
		}
	}
	atomic_fetch_add(&s->waiter_overflow, 1);
	return -1;
}

void dmem__waiter_leave(struct dmem_pool *p, int slot)
{
	struct dmem_shared *s = p->sh;

	if (slot < 0) {
		atomic_fetch_sub(&s->waiter_overflow, 1);
		return;
	}
	atomic_fetch_and(&s->waiter_bits, ~(1ull << slot));
	atomic_store(&s->waiter_pid[slot], 0);
}

void dmem__waiters_reclaim(struct dmem_pool *p, pid_t pid)
{
	struct dmem_shared *s = p->sh;

	for (int i = 0; i < DMEM_WAITER_SLOTS; i++) {
		uint32_t dead = (uint32_t)pid;

		if (atomic_load_explicit(&s->waiter_pid[i],
					 memory_order_relaxed) != dead)
			continue;
		atomic_fetch_and(&s->waiter_bits, ~(1ull << i));
		atomic_compare_exchange_strong(&s->waiter_pid[i], &dead, 0);
	}
}
