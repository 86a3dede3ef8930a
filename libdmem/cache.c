/* SPDX-License-Identifier: MIT */
/*
 * cache.c - the small-block fast path: a per-process cache of freed small
 * blocks, used without the pool lock.
 *
 * The pool lock (a robust mutex) plus a TLSF split and merge costs several
 * times a glibc malloc/free pair.  Most traffic is small and repetitive, so
 * a process keeps up to DMEM_CACHE_PER_CLASS freed blocks of each small
 * size class and hands them out again directly.
 *
 * Crash safety comes from ownership rather than from the journal: a cached
 * block stays allocated in the heap, owned by this process's pid, so if the
 * process dies with blocks cached the runtime's dmem_pool_reclaim() frees
 * them like any other allocation.  No shared metadata changes here, only
 * the block's own generation and tag:
 *  - the tag gets DMEM_TAG_CACHED, so a second dmem_free of the same
 *    pointer, or a descriptor of it, is refused while it is cached;
 *  - handing it out again takes a new generation (from a batch reserved
 *    from the shared counter), so old descriptors stay stale.
 * Only blocks this process owns are cached, at most DMEM_CACHE_MAX_BYTES of
 * them, and none while anyone waits in dmem_alloc_timed: the next free
 * then goes to the pool and returns the whole cache with it.  After fork the
 * child starts with an empty cache (the blocks belong to the parent).
 */
#include <errno.h>

#include "dmem_private.h"

/*
 * The lock word holds the pid of the process whose thread holds it.  The
 * handle is process-local memory, so after fork() the child has a copy of
 * the word as the parent left it: if another parent thread was inside the
 * cache at that moment, the word names the parent, and that holder does not
 * exist in the child.  The child takes such a lock over (cache_mine() then
 * drops the parent's list), instead of spinning forever.
 */
static void cache_lock(struct dmem_pool *p, pid_t self)
{
	for (;;) {
		int cur = 0;

		if (atomic_compare_exchange_weak_explicit(
			    &p->cache_lock, &cur, (int)self,
			    memory_order_acquire, memory_order_relaxed))
			return;
		if (cur != 0 && cur != (int)self &&
		    atomic_compare_exchange_strong_explicit(
			    &p->cache_lock, &cur, (int)self,
			    memory_order_acquire, memory_order_relaxed))
			return; /* inherited from the parent over fork */
		while ((cur = atomic_load_explicit(&p->cache_lock,
						   memory_order_relaxed)) ==
		       (int)self)
			__builtin_ia32_pause();
	}
}

static void cache_unlock(struct dmem_pool *p)
{
	atomic_store_explicit(&p->cache_lock, 0, memory_order_release);
}

/* Caller holds the cache lock.  A forked child drops the parent's list. */
static int cache_mine(struct dmem_pool *p, pid_t self)
{
	if (__builtin_expect(p->cache_pid == self, 1))
		return 1;
	for (unsigned c = 0; c < DMEM_CACHE_CLASSES; c++) {
		p->cache_head[c] = 0;
		p->cache_count[c] = 0;
	}
	p->gen_next = p->gen_end = 0;
	p->cache_bytes = 0;
	p->cache_pid = self;
	return 0;
}

static uint64_t next_gen(struct dmem_pool *p)
{
	if (p->gen_next == p->gen_end) {
		p->gen_next = atomic_fetch_add_explicit(&p->sh->gen_counter,
							DMEM_GEN_BATCH,
							memory_order_relaxed) +
			      1;
		p->gen_end = p->gen_next + DMEM_GEN_BATCH;
	}
	return p->gen_next++;
}

static uint64_t *link_of(struct dmem_pool *p, uint64_t blk)
{
	return (uint64_t *)(p->base + blk + DMEM_BLK_HDR);
}

int dmem__cache_alloc(struct dmem_pool *p, uint64_t size, void **ptr_out)
{
	uint64_t need = (size + DMEM_BLK_HDR + DMEM_ALIGN - 1) & ~(uint64_t)15;
	unsigned c;
	uint64_t blk, gen;
	pid_t self = dmem__self_pid();
	struct dmem_blk *b;

	if (need > DMEM_CACHE_MAX_BLOCK)
		return -EAGAIN;
	if (need < DMEM_MIN_BLOCK)
		need = DMEM_MIN_BLOCK;
	c = (unsigned)(need / DMEM_ALIGN);
	cache_lock(p, self);
	if (!cache_mine(p, self) || !(blk = p->cache_head[c])) {
		cache_unlock(p);
		return -EAGAIN;
	}
	p->cache_head[c] = *link_of(p, blk);
	p->cache_count[c]--;
	p->cache_bytes -= (uint64_t)c * DMEM_ALIGN;
	gen = next_gen(p);
	cache_unlock(p);
	b = dmem__blk(p, blk);
	__atomic_store_n(&b->gen, gen, __ATOMIC_RELAXED);
	__atomic_store_n(&b->owner_tag,
			 ((uint64_t)dmem__blk_tag(p, blk, gen) << 32) |
				 (uint32_t)self,
			 __ATOMIC_RELEASE);
	*ptr_out = p->base + blk + DMEM_BLK_HDR;
	return 0;
}

/* 0 if the block went into the cache, -EAGAIN to free it for real. */
int dmem__cache_free(struct dmem_pool *p, uint64_t user_off)
{
	struct dmem_shared *s = p->sh;
	uint64_t blk = user_off - DMEM_BLK_HDR, ot, size;
	pid_t self = dmem__self_pid();
	struct dmem_blk *b;
	unsigned c;

	if (user_off < s->heap_start + DMEM_BLK_HDR ||
	    user_off >= s->heap_end || (user_off & (DMEM_ALIGN - 1)) ||
	    dmem__waiters(p))
		return -EAGAIN;
	b = dmem__blk(p, blk);
	size = b->sf; /* flags included: a free block never qualifies */
	ot = __atomic_load_n(&b->owner_tag, __ATOMIC_RELAXED);
	if (size > DMEM_CACHE_MAX_BLOCK || size < DMEM_MIN_BLOCK ||
	    (uint32_t)ot != (uint32_t)self ||
	    (uint32_t)(ot >> 32) !=
		    dmem__blk_tag(p, blk,
				  __atomic_load_n(&b->gen, __ATOMIC_RELAXED)))
		return -EAGAIN; /* not ours, not small, or not live: slow path
				 */
	c = (unsigned)(size / DMEM_ALIGN);
	cache_lock(p, self);
	if (!cache_mine(p, self) || p->cache_count[c] >= DMEM_CACHE_PER_CLASS ||
	    p->cache_bytes + size > DMEM_CACHE_MAX_BYTES) {
		cache_unlock(p);
		return -EAGAIN;
	}
	/* Compare-and-swap, not store: a racing second free of the same
	 * block (another thread here, or the locked path in alloc.c) changed
	 * the tag since we looked, and must not let the block be parked twice
	 * or parked after it was freed. */
	if (!__atomic_compare_exchange_n(
		    &b->owner_tag, &ot, ot | ((uint64_t)DMEM_TAG_CACHED << 32),
		    0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
		cache_unlock(p);
		return -EAGAIN; /* the slow path reports the double free */
	}
	*link_of(p, blk) = p->cache_head[c];
	p->cache_head[c] = blk;
	p->cache_count[c]++;
	p->cache_bytes += size;
	cache_unlock(p);
	return 0;
}

/* Free every cached block for real.  Caller holds the pool lock; each block
 * is its own committed operation. */
void dmem__cache_flush(struct dmem_pool *p)
{
	pid_t self = dmem__self_pid();

	cache_lock(p, self);
	if (cache_mine(p, self)) {
		for (unsigned c = 0; c < DMEM_CACHE_CLASSES; c++) {
			uint64_t blk = p->cache_head[c];

			while (blk) {
				uint64_t next = *link_of(p, blk);

				dmem__heap_free(p, blk);
				dmem__commit(p);
				blk = next;
			}
			p->cache_head[c] = 0;
			p->cache_count[c] = 0;
		}
		p->cache_bytes = 0;
	}
	cache_unlock(p);
}

uint64_t dmem__cache_count(struct dmem_pool *p)
{
	uint64_t n = 0;
	pid_t self = dmem__self_pid();

	cache_lock(p, self);
	if (cache_mine(p, self))
		for (unsigned c = 0; c < DMEM_CACHE_CLASSES; c++)
			n += p->cache_count[c];
	cache_unlock(p);
	return n;
}
