/* SPDX-License-Identifier: MIT */
/*
 * journal.c - the pool lock and the undo journal that make the allocator
 * survive a process killed at any instruction.
 *
 * All allocator metadata lives in 8-byte words in the segment and every
 * store to one goes through dmem__jset(), which first appends (offset, old
 * value) to the journal in the pool header (stores into a free block's
 * payload that a rollback can never expose skip it: dmem__fset).  The lock is a
 * robust, process-shared pthread mutex, so when its holder dies the next locker
 * gets EOWNERDEAD; it then restores the logged words newest-first, which
 * puts the heap back exactly as it was before the interrupted operation,
 * and marks the mutex consistent.  An operation ends by emptying the
 * journal (dmem__commit: one store making entry 0 the terminator), which
 * is its single commit point.
 *
 * Undo rather than redo: an interrupted alloc must not hand out a block
 * nobody received, and an interrupted free is simply not done yet (the
 * block keeps its owner, so the runtime's reclaim of the dead process frees
 * it later).  Rolling back is correct for both.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "dmem_private.h"

void dmem__rollback(struct dmem_pool *p)
{
	struct dmem_jent *j = p->journal;
	unsigned n = 0;

	while (n + 1 < DMEM_JOURNAL_MAX &&
	       __atomic_load_n(&j[n].off, __ATOMIC_ACQUIRE) != 0)
		n++;
	while (n-- > 0) {
		uint64_t off = j[n].off;

		if (off >= 8 && off + 8 <= p->size && (off & 7) == 0)
			*(uint64_t *)(p->base + off) = j[n].old;
	}
	__atomic_store_n(&j[0].off, 0, __ATOMIC_RELEASE);
	p->jn = 0;
	p->sh->recoveries++;
}

/*
 * Take the robust mutex, sleeping at most DMEM_LOCK_SLICE_NS at a time.
 *
 * A sleeper can miss its wake-up for good: an unlock clears the lock word
 * and wakes one sleeper; if that one is killed before it takes the lock
 * and another process has meanwhile taken it (a plain compare-and-swap
 * that does not set FUTEX_WAITERS), the kernel's clean-up of the killed
 * waiter sees a live owner and wakes nobody.  The remaining sleepers'
 * FUTEX_WAITERS mark is gone, so no later unlock wakes them, and they sleep
 * until someone else happens to contend.  Sleeping in slices bounds that
 * to one slice: the next attempt marks the word again.
 */
#define DMEM_LOCK_SLICE_NS 10000000L

static int lock_robust(pthread_mutex_t *m)
{
	int rc = pthread_mutex_trylock(m);

	while (rc == EBUSY || rc == ETIMEDOUT) {
		struct timespec t;

		clock_gettime(CLOCK_REALTIME, &t);
		t.tv_nsec += DMEM_LOCK_SLICE_NS;
		if (t.tv_nsec >= 1000000000L) {
			t.tv_sec++;
			t.tv_nsec -= 1000000000L;
		}
		rc = pthread_mutex_timedlock(m, &t);
	}
	return rc;
}

int dmem__lock(struct dmem_pool *p)
{
	int rc = lock_robust(&p->sh->lock);

	if (__builtin_expect(rc == 0, 1)) {
		p->jn = 0;
		return 0;
	}
	if (rc == EOWNERDEAD) {
		dmem__rollback(p);
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
	__atomic_store_n(&p->journal[0].off, 0, __ATOMIC_RELEASE);
	p->jn = 0;
}

void dmem__unlock(struct dmem_pool *p)
{
	pthread_mutex_unlock(&p->sh->lock);
}
