/* SPDX-License-Identifier: MIT */
/*
 * journal.c - the pool lock and the undo journal that make the allocator
 * survive a process killed at any instruction.
 *
 * All allocator metadata lives in 8-byte words in the segment and every
 * store to one goes through dmem__jset(), which first appends (offset, old
 * value) to the journal in the pool header.  The lock is a robust,
 * process-shared pthread mutex, so when its holder dies the next locker
 * gets EOWNERDEAD; it then restores the logged words newest-first, which
 * puts the heap back exactly as it was before the interrupted operation,
 * and marks the mutex consistent.  An operation ends by emptying the
 * journal (dmem__commit), which is its single commit point.
 *
 * Undo rather than redo: an interrupted alloc must not hand out a block
 * nobody received, and an interrupted free is simply not done yet (the
 * block keeps its owner, so the runtime's reclaim of the dead process frees
 * it later).  Rolling back is correct for both.
 */
#include <errno.h>
#include <string.h>

#include "dmem_int.h"

static void rollback(struct dmem_pool *p)
{
	struct dmem_shared *s = p->sh;
	uint64_t n = atomic_load_explicit(&s->jcount, memory_order_acquire);

	if (n > DMEM_JOURNAL_MAX)
		n = DMEM_JOURNAL_MAX; /* cannot happen; stay in bounds */
	while (n-- > 0) {
		struct dmem_jent *e = &s->journal[n];

		if (e->off >= sizeof(*s) && e->off + 8 <= p->size &&
		    (e->off & 7) == 0)
			*(uint64_t *)(p->base + e->off) = e->old;
	}
	atomic_store_explicit(&s->jcount, 0, memory_order_release);
	s->recoveries++;
}

int dmem__lock(struct dmem_pool *p)
{
	int rc = pthread_mutex_lock(&p->sh->lock);

	if (__builtin_expect(rc == 0, 1)) {
		/* A holder killed after committing but before unlocking leaves
		 * an empty journal; a non-empty one here means a dead holder on
		 * a kernel that lost the robust list (should not happen). */
		return 0;
	}
	if (rc == EOWNERDEAD) {
		rollback(p);
		pthread_mutex_consistent(&p->sh->lock);
		return 0;
	}
	return dmem__fail(-rc,
			  "cannot lock pool %s: %s (the pool lock is unusable; "
			  "recreate the pool)",
			  p->desc.segname, strerror(rc));
}

void dmem__commit(struct dmem_pool *p)
{
	atomic_store_explicit(&p->sh->jcount, 0, memory_order_release);
}

void dmem__unlock(struct dmem_pool *p)
{
	pthread_mutex_unlock(&p->sh->lock);
}
