/* SPDX-License-Identifier: MIT */
/*
 * check.c - the heap invariant checker used by tests and diagnostics.
 *
 * It walks every block in address order and every free list, and reports
 * the first broken invariant in the thread's error message.  It is the
 * oracle of the stress and kill tests, so it checks everything the
 * allocator relies on rather than only what is cheap.
 */
#include <errno.h>

#include "dmem_private.h"

#define BAD(...) dmem__fail(-DMEM_E_CORRUPT, __VA_ARGS__)

struct tally {
	uint64_t free_bytes, free_blocks, live;
};

static int check_block(struct dmem_pool *p, uint64_t off, uint64_t prev,
		       int prev_free)
{
	struct dmem_blk *b = dmem__blk(p, off);
	uint64_t size = dmem__blk_size(b), ot, gen;
	int is_free = (b->sf & DMEM_BF_FREE) != 0;
	uint32_t tag;

	if (size < DMEM_MIN_BLOCK || size % DMEM_ALIGN ||
	    size > p->sh->heap_end - off)
		return BAD("block at %#llx: bad size %llu",
			   (unsigned long long)off, (unsigned long long)size);
	if (b->prev != prev)
		return BAD("block at %#llx: prev %#llx, expected %#llx",
			   (unsigned long long)off, (unsigned long long)b->prev,
			   (unsigned long long)prev);
	if (is_free && prev_free)
		return BAD("adjacent free blocks at %#llx",
			   (unsigned long long)off);
	ot = __atomic_load_n(&b->owner_tag, __ATOMIC_ACQUIRE);
	gen = __atomic_load_n(&b->gen, __ATOMIC_RELAXED);
	tag = (uint32_t)(ot >> 32);
	if (is_free && ot != DMEM_FREE_TAG)
		return BAD("free block at %#llx: bad tag",
			   (unsigned long long)off);
	/* A block in a process cache (DMEM_TAG_CACHED) may sit between its new
	 * generation and its new tag (cache.c), so only live tags must match.
	 */
	if (!is_free && !(tag & DMEM_TAG_CACHED) &&
	    tag != dmem__blk_tag(p, off, gen))
		return BAD("allocated block at %#llx: bad tag",
			   (unsigned long long)off);
	if (!is_free && gen > atomic_load(&p->sh->gen_counter))
		return BAD("block at %#llx: generation from the future",
			   (unsigned long long)off);
	return 0;
}

static int walk_blocks(struct dmem_pool *p, struct tally *t)
{
	struct dmem_shared *s = p->sh;
	uint64_t off = s->heap_start, prev = 0;
	int prev_free = 0, rc;

	while (off < s->heap_end) {
		struct dmem_blk *b = dmem__blk(p, off);

		if ((rc = check_block(p, off, prev, prev_free)))
			return rc;
		prev_free = (b->sf & DMEM_BF_FREE) != 0;
		if (prev_free) {
			t->free_bytes += dmem__blk_size(b);
			t->free_blocks++;
		} else {
			t->live++;
		}
		prev = off;
		off += dmem__blk_size(b);
	}
	if (off != s->heap_end || dmem__blk(p, off)->prev != prev ||
	    dmem__blk(p, off)->sf != 0)
		return BAD("heap does not end at the sentinel");
	return 0;
}

static int check_list(struct dmem_pool *p, int fl, int sl, uint64_t *count)
{
	uint64_t prev = 0, n = 0;

	for (uint64_t o = p->sh->heads[fl][sl]; o;
	     o = dmem__blk(p, o)->next_free) {
		struct dmem_blk *b;
		uint64_t size, lo;

		if (o < p->sh->heap_start || o >= p->sh->heap_end ||
		    o % DMEM_ALIGN || ++n > p->sh->free_blocks)
			return BAD("free list [%d][%d]: bad link %#llx", fl, sl,
				   (unsigned long long)o);
		b = dmem__blk(p, o);
		size = dmem__blk_size(b);
		lo = fl == 0 ? (uint64_t)sl * (DMEM_SMALL_BLOCK / DMEM_SL_COUNT)
			     : (1ull << (fl + DMEM_FL_SHIFT - 1)) +
				       ((uint64_t)sl << (fl + DMEM_FL_SHIFT -
							 1 - DMEM_SL_LOG2));
		if (!(b->sf & DMEM_BF_FREE) || b->prev_free != prev ||
		    size < lo)
			return BAD("free list [%d][%d]: block %#llx misfiled",
				   fl, sl, (unsigned long long)o);
		prev = o;
	}
	*count += n;
	return 0;
}

static int check_lists(struct dmem_pool *p)
{
	struct dmem_shared *s = p->sh;
	uint64_t n = 0;
	int rc;

	for (int fl = 0; fl < DMEM_FL_COUNT; fl++) {
		int fl_set = (s->fl_bitmap >> fl) & 1;

		if (fl_set != (s->sl_bitmap[fl] != 0))
			return BAD("first-level bitmap wrong at %d", fl);
		for (int sl = 0; sl < (int)DMEM_SL_COUNT; sl++) {
			int set = (s->sl_bitmap[fl] >> sl) & 1;
			if (set != (s->heads[fl][sl] != 0))
				return BAD(
					"second-level bitmap wrong at [%d][%d]",
					fl, sl);
			if ((rc = check_list(p, fl, sl, &n)))
				return rc;
		}
	}
	if (n != s->free_blocks)
		return BAD("free lists hold %llu blocks, walk found %llu",
			   (unsigned long long)n,
			   (unsigned long long)s->free_blocks);
	return 0;
}

int dmem__heap_check(struct dmem_pool *p)
{
	struct dmem_shared *s = p->sh;
	struct tally t = {0};
	int rc;

	if (__atomic_load_n(&p->journal[0].off, __ATOMIC_ACQUIRE) != 0)
		return BAD("journal not empty outside an operation");
	if ((rc = walk_blocks(p, &t)))
		return rc;
	if (t.free_bytes != s->free_bytes || t.free_blocks != s->free_blocks ||
	    t.live != s->live_allocs)
		return BAD("accounting: free %llu/%llu blocks %llu/%llu live "
			   "%llu/%llu (walked/recorded)",
			   (unsigned long long)t.free_bytes,
			   (unsigned long long)s->free_bytes,
			   (unsigned long long)t.free_blocks,
			   (unsigned long long)s->free_blocks,
			   (unsigned long long)t.live,
			   (unsigned long long)s->live_allocs);
	return check_lists(p);
}
