/* SPDX-License-Identifier: MIT */
/*
 * dmem_private.h - libdmem private layout and internal functions.
 *
 * The pool segment starts with struct dmem_shared (magic, layout version,
 * robust lock, allocator index, undo journal) and the heap follows it.
 * Everything inside the segment refers to other things by offset from the
 * segment start, because each process maps it at a different address.
 */
#ifndef DMEM_PRIVATE_H
#define DMEM_PRIVATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "dragon/dmem.h"

#define DMEM_HDR_MAGIC	    0x4d454d444e474452ull /* "RDGNDMEM" little-endian */
#define DMEM_LAYOUT_VERSION 2

/* Allocator geometry (TLSF, see heap.c). */
#define DMEM_ALIGN	 16u /* block and payload alignment */
#define DMEM_BLK_HDR	 32u /* header bytes before the payload */
#define DMEM_MIN_BLOCK	 48u /* header + two free-list links */
#define DMEM_SL_LOG2	 4   /* 16 second-level classes */
#define DMEM_SL_COUNT	 (1u << DMEM_SL_LOG2)
#define DMEM_FL_SHIFT	 (DMEM_SL_LOG2 + 4) /* sizes < 256 form class 0 */
#define DMEM_SMALL_BLOCK (1ull << DMEM_FL_SHIFT)
#define DMEM_FL_COUNT	 40 /* up to 2^47-byte blocks */
#define DMEM_MAX_POOL	 (1ull << 46)
#define DMEM_MIN_POOL	 (64ull << 10)

#define DMEM_JOURNAL_MAX  128
#define DMEM_WAITER_SLOTS 64

/* Block header flags, in the low bits of sf (sizes are multiples of 16). */
#define DMEM_BF_FREE  1ull
#define DMEM_BF_MASK  15ull
#define DMEM_FREE_TAG 0x46524545ull /* "FREE" in owner_tag of free blocks */
#define DMEM_TAG_CACHED                                                        \
	0x80000000u /* tag bit: block sits in a process cache                  \
		     */

/* Small-block cache (cache.c): block sizes up to DMEM_CACHE_MAX_BLOCK. */
#define DMEM_CACHE_MAX_BLOCK 512u
#define DMEM_CACHE_CLASSES   (DMEM_CACHE_MAX_BLOCK / DMEM_ALIGN + 1)
#define DMEM_CACHE_PER_CLASS 32u
#define DMEM_CACHE_MAX_BYTES (64u << 10) /* per process and pool */
#define DMEM_GEN_BATCH	     256u

/*
 * Header of every heap block (boundary-tag layout).  prev is always valid,
 * which costs one store on split/merge but lets free() find the previous
 * block without footers.  For an allocated block owner_tag holds
 * (tag << 32 | owner pid), where tag is a hash of (pool uid, offset,
 * generation): a pointer or descriptor that does not hit a live header is
 * refused instead of corrupting the heap.  A free block keeps its list links
 * in the first 16 payload bytes.
 */
struct dmem_blk {
	uint64_t sf;	    /* size in bytes incl. header | flags */
	uint64_t prev;	    /* offset of the previous block, 0 for the first */
	uint64_t owner_tag; /* allocated: tag<<32 | pid; free: DMEM_FREE_TAG */
	uint64_t gen;	    /* generation handed out with this block */
	uint64_t next_free; /* free blocks only (payload) */
	uint64_t prev_free; /* free blocks only (payload) */
};

struct dmem_jent {
	uint64_t off; /* of the 8-byte word from the segment start */
	uint64_t old; /* its value before the operation */
};

struct dmem_shared {
	uint64_t magic;		 /* DMEM_HDR_MAGIC, written last at creation */
	uint32_t layout_version; /* DMEM_LAYOUT_VERSION */
	uint32_t hdr_size;	 /* sizeof(struct dmem_shared) */
	uint64_t size;		 /* segment size */
	uint64_t node_id;
	uint64_t pool_uid;
	uint64_t heap_start; /* offset of the first block */
	uint64_t heap_end;   /* offset of the end sentinel block */
	/* [0, committed) and the last page are backed by /dev/shm pages
	 * (commit.c); only grows, under the lock, never journaled. */
	uint64_t committed;
	char segname[DMEM_SEGNAME_MAX];

	/* Waiters for free space: dmem_alloc_timed sleeps on free_seq. */
	_Alignas(64) _Atomic uint32_t free_seq;
	_Atomic uint32_t waiter_overflow; /* waiters beyond the slots */
	_Atomic uint64_t waiter_bits;	  /* bit i: waiter_pid[i] is set */
	_Atomic uint32_t waiter_pid[DMEM_WAITER_SLOTS];

	_Alignas(64) pthread_mutex_t lock; /* robust, process-shared */

	/* Allocator state; every store to it goes through the journal. */
	_Alignas(64) uint64_t free_bytes;
	uint64_t free_blocks;
	uint64_t live_allocs;
	_Atomic uint64_t gen_counter; /* never rolled back: gens stay unique */
	uint64_t recoveries;
	uint64_t fl_bitmap;
	uint64_t sl_bitmap[DMEM_FL_COUNT];
	uint64_t heads[DMEM_FL_COUNT][DMEM_SL_COUNT];

	/* Undo journal of the operation in progress (see journal.c). */
	_Alignas(64) struct dmem_jent journal[DMEM_JOURNAL_MAX];
};

struct dmem_pool {
	char *base; /* this process's mapping */
	uint64_t size;
	struct dmem_shared *sh;
	dmem_pool_desc_t desc;
	struct dmem_jent *journal; /* = &sh->journal[0] */
	int fd;			   /* the segment, for committing memory */
	uint64_t ino;		   /* its inode: fd may be closed under us */
	/* Per-operation state of the lock holder (process-local, so only
	 * valid while this process holds the pool lock). */
	unsigned jn;	      /* journal entries written */
	int64_t d_free_bytes; /* accounting deltas, applied at the end */
	int64_t d_free_blocks;

	/* Small-block cache of this process (cache.c). */
	_Atomic int cache_lock;
	pid_t cache_pid; /* the process the cached blocks belong to */
	uint64_t gen_next, gen_end; /* generations reserved for the cache */
	uint64_t cache_head[DMEM_CACHE_CLASSES];
	uint32_t cache_count[DMEM_CACHE_CLASSES];
	uint64_t cache_bytes;
};

/* error.c */
int dmem__fail(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* env.c */
int dmem__env_seg_size(uint64_t *size_out);
extern uint64_t (*dmem__shm_avail_hook)(void); /* tests inject statvfs */
int dmem__shm_check(const char *segname, uint64_t size);
pid_t dmem__self_pid(void);
uint64_t dmem__hash64(const void *p, size_t n, uint64_t seed);

/* journal.c: the pool lock and the undo log that makes it crash-safe */
int dmem__lock(struct dmem_pool *p);
void dmem__unlock(struct dmem_pool *p);
void dmem__commit(struct dmem_pool *p);
void dmem__rollback(struct dmem_pool *p); /* repair after a dead holder */

/*
 * Ordered stores for the journal.  A process killed between two of them
 * must leave them in program order.  x86 keeps stores in order in
 * hardware, so volatile (which stops the compiler reordering them among
 * themselves, but lets it keep other state such as p->jn in registers) is
 * enough and keeps the fast path free of compiler barriers.  Elsewhere use
 * release stores.
 */
#if defined(__x86_64__) || defined(__i386__)
#define DMEM_OSTORE(addr, val) (*(volatile uint64_t *)(addr) = (val))
#else
#define DMEM_OSTORE(addr, val) __atomic_store_n((addr), (val), __ATOMIC_RELEASE)
#endif

/*
 * Log *addr's old value, then store val.  The journal is a run of entries
 * ended by one whose off is 0 (offset 0 is the pool magic, never logged).
 * Order matters for a process killed between any two stores: the next
 * slot is made the terminator first, then the old value is written, then
 * the entry is published by its offset, then the word changes.
 */
static inline void dmem__jset(struct dmem_pool *p, uint64_t *addr, uint64_t val)
{
	unsigned n = p->jn;
	struct dmem_jent *e = &p->journal[n];

	if (__builtin_expect(n + 1 >= DMEM_JOURNAL_MAX, 0))
		__builtin_trap(); /* an operation outgrew the journal: a bug */
	DMEM_OSTORE(&e[1].off, 0);
	DMEM_OSTORE(&e->old, *(volatile uint64_t *)addr);
	DMEM_OSTORE(&e->off, (uint64_t)((char *)addr - p->base));
	p->jn = n + 1;
	DMEM_OSTORE(addr, val);
}

/*
 * As dmem__jset, but only if *addr still holds expect (compare-and-swap):
 * for a block's owner_tag, which the lock-free cache of the owning process
 * may change without the pool lock.  Returns 0, or -1 with nothing changed
 * and no journal entry.  A process killed between publishing the entry and
 * the swap is rolled back to expect, which *addr then still held (only a
 * thread of the same, dead, process could have changed it).
 */
static inline int dmem__jcas(struct dmem_pool *p, uint64_t *addr,
			     uint64_t expect, uint64_t val)
{
	unsigned n = p->jn;
	struct dmem_jent *e = &p->journal[n];

	if (__builtin_expect(n + 1 >= DMEM_JOURNAL_MAX, 0))
		__builtin_trap();
	DMEM_OSTORE(&e[1].off, 0);
	DMEM_OSTORE(&e->old, expect);
	DMEM_OSTORE(&e->off, (uint64_t)((char *)addr - p->base));
	if (!__atomic_compare_exchange_n(addr, &expect, val, 0,
					 __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
		DMEM_OSTORE(&e->off, 0);
		return -1;
	}
	p->jn = n + 1;
	return 0;
}

/* Store into memory no rollback can expose (a header written inside a free
 * block's payload while splitting it): no journal entry needed. */
static inline void dmem__fset(uint64_t *addr, uint64_t val)
{
	*addr = val;
}

/* commit.c */
int dmem__commit_init(struct dmem_pool *p, uint64_t heap_start);
int dmem__commit_grow(struct dmem_pool *p, uint64_t end);

/* Make sure [0, end) is backed before anything there is written: free
 * when end is below the high-water mark.  -ENOSPC when /dev/shm is full
 * (the message says so). */
static inline int dmem__commit_reach(struct dmem_pool *p, uint64_t end)
{
	if (__builtin_expect(end <= p->sh->committed, 1))
		return 0;
	return dmem__commit_grow(p, end);
}

/* heap.c */
void dmem__heap_init(struct dmem_pool *p);
int dmem__heap_alloc(struct dmem_pool *p, uint64_t size, uint64_t align,
		     pid_t owner, uint64_t *off_out);
int dmem__heap_free(struct dmem_pool *p, uint64_t blk_off);
int dmem__heap_blk_of(struct dmem_pool *p, uint64_t user_off,
		      struct dmem_blk **blk_out);
uint64_t dmem__heap_largest(struct dmem_pool *p);
uint32_t dmem__blk_tag(const struct dmem_pool *p, uint64_t blk_off,
		       uint64_t gen);

static inline struct dmem_blk *dmem__blk(struct dmem_pool *p, uint64_t off)
{
	return (struct dmem_blk *)(p->base + off);
}
static inline uint64_t dmem__blk_size(const struct dmem_blk *b)
{
	return b->sf & ~DMEM_BF_MASK;
}

/* cache.c */
int dmem__cache_alloc(struct dmem_pool *p, uint64_t size, void **ptr_out);
int dmem__cache_free(struct dmem_pool *p, uint64_t user_off);
void dmem__cache_flush(struct dmem_pool *p);
uint64_t dmem__cache_count(struct dmem_pool *p);

/* waiters.c */
int dmem__waiter_enter(struct dmem_pool *p);
void dmem__waiter_leave(struct dmem_pool *p, int slot);
void dmem__waiters_reclaim(struct dmem_pool *p, pid_t pid);

static inline int dmem__waiters(struct dmem_pool *p)
{
	return atomic_load_explicit(&p->sh->waiter_bits,
				    memory_order_relaxed) ||
	       atomic_load_explicit(&p->sh->waiter_overflow,
				    memory_order_relaxed);
}

/* futex.c */
int dmem__spin_pays(void);

/* check.c */
int dmem__heap_check(struct dmem_pool *p);

/* desc.c */
uint64_t dmem__pool_desc_check(const dmem_pool_desc_t *d);
uint64_t dmem__alloc_desc_check(const dmem_alloc_desc_t *d);
int dmem__pool_desc_valid(const dmem_pool_desc_t *d);
int dmem__alloc_desc_valid(const dmem_alloc_desc_t *d);

#endif /* DMEM_PRIVATE_H */
