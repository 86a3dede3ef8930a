/* SPDX-License-Identifier: MIT */
/*
 * heap.c - the pool allocator: TLSF (two-level segregated fit).
 *
 * Why TLSF: allocation and free are O(1) (two bitmap scans and a few list
 * operations), it serves any size from a byte to the whole heap, and it
 * coalesces immediately with boundary tags.  A buddy allocator would also be
 * O(log n) but wastes up to half of every large block, which matters when a
 * single allocation may be most of a 4 GiB pool.  TLSF's metadata is a fixed
 * index in the pool header plus 32 bytes per block, so a sparse pool touches
 * only the pages it hands out.
 *
 * Free blocks live in DMEM_FL_COUNT x DMEM_SL_COUNT lists: the first level
 * is the power of two of the size, the second splits it into 16 linear
 * classes.  Two bitmaps say which lists are non-empty.  A request is
 * rounded up to the next class so the head of any list found is big enough
 * (good fit in O(1)); when that finds nothing, the request's own class is
 * scanned as well so that the largest block can still be handed out.
 *
 * Every store goes through dmem__jset() (see journal.c), which is what
 * makes a SIGKILL inside these functions harmless.  Callers hold the lock.
 */
#include <errno.h>

#include "dmem_private.h"

#define J(p, field, val) dmem__jset((p), &(field), (val))

uint32_t dmem__blk_tag(const struct dmem_pool *p, uint64_t blk_off,
		       uint64_t gen)
{
	uint64_t h =
		(blk_off * 0x9e3779b97f4a7c15ull) ^ (gen + p->sh->pool_uid);

	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 32;
	/* Never 0 (DMEM_FREE_TAG's high half); bit 31 is DMEM_TAG_CACHED. */
	return ((uint32_t)h & ~DMEM_TAG_CACHED) | 1u;
}

static inline int fls64(uint64_t v)
{
	return 63 - __builtin_clzll(v);
}

static void mapping_insert(uint64_t size, int *fl, int *sl)
{
	if (size < DMEM_SMALL_BLOCK) {
		*fl = 0;
		*sl = (int)(size / (DMEM_SMALL_BLOCK / DMEM_SL_COUNT));
	} else {
		int f = fls64(size);
		*sl = (int)((size >> (f - DMEM_SL_LOG2)) ^ DMEM_SL_COUNT);
		*fl = f - (DMEM_FL_SHIFT - 1);
	}
}

/* Class whose every block is >= size. */
static void mapping_search(uint64_t size, int *fl, int *sl)
{
	if (size >= DMEM_SMALL_BLOCK)
		size += (1ull << (fls64(size) - DMEM_SL_LOG2)) - 1;
	mapping_insert(size, fl, sl);
}

/* fresh: off's header was just written inside a block being split, so its
 * own link words need no journal entries (see dmem__fset). */
static void list_insert(struct dmem_pool *p, uint64_t off, int fresh)
{
	struct dmem_shared *s = p->sh;
	struct dmem_blk *b = dmem__blk(p, off);
	int fl, sl;
	uint64_t head;

	mapping_insert(dmem__blk_size(b), &fl, &sl);
	head = s->heads[fl][sl];
	if (fresh) {
		dmem__fset(&b->next_free, head);
		dmem__fset(&b->prev_free, 0);
	} else {
		J(p, b->next_free, head);
		J(p, b->prev_free, 0);
	}
	if (head)
		J(p, dmem__blk(p, head)->prev_free, off);
	J(p, s->heads[fl][sl], off);
	if (!(s->sl_bitmap[fl] & (1ull << sl)))
		J(p, s->sl_bitmap[fl], s->sl_bitmap[fl] | (1ull << sl));
	if (!(s->fl_bitmap & (1ull << fl)))
		J(p, s->fl_bitmap, s->fl_bitmap | (1ull << fl));
	p->d_free_bytes += (int64_t)dmem__blk_size(b);
	p->d_free_blocks++;
}

static void list_remove(struct dmem_pool *p, uint64_t off)
{
	struct dmem_shared *s = p->sh;
	struct dmem_blk *b = dmem__blk(p, off);
	int fl, sl;

	mapping_insert(dmem__blk_size(b), &fl, &sl);
	if (b->prev_free)
		J(p, dmem__blk(p, b->prev_free)->next_free, b->next_free);
	else
		J(p, s->heads[fl][sl], b->next_free);
	if (b->next_free)
		J(p, dmem__blk(p, b->next_free)->prev_free, b->prev_free);
	if (!s->heads[fl][sl]) {
		J(p, s->sl_bitmap[fl], s->sl_bitmap[fl] & ~(1ull << sl));
		if (!s->sl_bitmap[fl])
			J(p, s->fl_bitmap, s->fl_bitmap & ~(1ull << fl));
	}
	p->d_free_bytes -= (int64_t)dmem__blk_size(b);
	p->d_free_blocks--;
}

/* Write a free block header at off and list it.  fresh: off lies inside a
 * block being split, not on an existing header. */
static void make_free(struct dmem_pool *p, uint64_t off, uint64_t size,
		      uint64_t prev, int fresh)
{
	struct dmem_blk *b = dmem__blk(p, off);
	struct dmem_blk *next = dmem__blk(p, off + size);

	if (fresh) {
		dmem__fset(&b->sf, size | DMEM_BF_FREE);
		dmem__fset(&b->prev, prev);
		dmem__fset(&b->owner_tag, DMEM_FREE_TAG);
	} else {
		J(p, b->sf, size | DMEM_BF_FREE);
		J(p, b->prev, prev);
		J(p, b->owner_tag, DMEM_FREE_TAG);
	}
	J(p, next->prev, off);
	list_insert(p, off, fresh);
}

/* Fold the operation's accounting into the header: two journaled stores
 * per operation instead of two per list change. */
static void apply_stats(struct dmem_pool *p)
{
	struct dmem_shared *s = p->sh;

	if (p->d_free_bytes)
		J(p, s->free_bytes, s->free_bytes + (uint64_t)p->d_free_bytes);
	if (p->d_free_blocks)
		J(p, s->free_blocks,
		  s->free_blocks + (uint64_t)p->d_free_blocks);
	p->d_free_bytes = 0;
	p->d_free_blocks = 0;
}

/* First block >= size: good fit via the bitmaps, else scan the request's
 * own class (its blocks may or may not be large enough). */
static uint64_t find_block(struct dmem_pool *p, uint64_t size)
{
	struct dmem_shared *s = p->sh;
	int fl, sl;
	uint64_t map;

	mapping_search(size, &fl, &sl);
	if (fl < DMEM_FL_COUNT) {
		map = s->sl_bitmap[fl] & (~0ull << sl);
		if (!map) {
			uint64_t fmap =
				fl + 1 < 64 ? s->fl_bitmap & (~0ull << (fl + 1))
					    : 0;
			if (fmap) {
				fl = __builtin_ctzll(fmap);
				map = s->sl_bitmap[fl];
			}
		}
		if (map)
			return s->heads[fl][__builtin_ctzll(map)];
	}
	mapping_insert(size, &fl, &sl);
	if (fl >= DMEM_FL_COUNT)
		return 0;
	for (uint64_t o = s->heads[fl][sl]; o; o = dmem__blk(p, o)->next_free)
		if (dmem__blk_size(dmem__blk(p, o)) >= size)
			return o;
	return 0;
}

static uint64_t round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* Split an aligned payload out of free block off; returns the block that
 * will hold it.  The leading gap becomes a free block of its own. */
static uint64_t carve_aligned(struct dmem_pool *p, uint64_t off, uint64_t align)
{
	struct dmem_blk *b = dmem__blk(p, off);
	uint64_t user = off + DMEM_BLK_HDR;
	uint64_t aligned = round_up(user, align);
	uint64_t gap = aligned - user, bsize = dmem__blk_size(b);

	if (gap == 0)
		return off;
	if (gap < DMEM_MIN_BLOCK)
		gap = round_up(user + DMEM_MIN_BLOCK, align) - user;
	/* The block after the original one now follows off + gap. */
	J(p, dmem__blk(p, off + bsize)->prev, off + gap);
	make_free(p, off, gap, b->prev, 0);
	dmem__fset(&dmem__blk(p, off + gap)->sf, bsize - gap);
	dmem__fset(&dmem__blk(p, off + gap)->prev, off);
	return off + gap;
}

static int same_class(uint64_t a, uint64_t b)
{
	int fa, sa, fb, sb;

	mapping_insert(a, &fa, &sa);
	mapping_insert(b, &fb, &sb);
	return fa == fb && sa == sb;
}

/*
 * Put free block nb in the list slot of free block old (same class), the
 * common case of splitting a large block or merging into one: two or three
 * link updates instead of a remove and an insert.  fresh: nb's own link
 * words lie in space a rollback never exposes.
 */
static void list_replace(struct dmem_pool *p, uint64_t old, uint64_t nb,
			 int fresh)
{
	struct dmem_blk *o = dmem__blk(p, old), *n = dmem__blk(p, nb);
	uint64_t next = o->next_free, prev = o->prev_free;
	int fl, sl;

	mapping_insert(dmem__blk_size(o), &fl, &sl);
	if (fresh) {
		dmem__fset(&n->next_free, next);
		dmem__fset(&n->prev_free, prev);
	} else {
		J(p, n->next_free, next);
		J(p, n->prev_free, prev);
	}
	if (prev)
		J(p, dmem__blk(p, prev)->next_free, nb);
	else
		J(p, p->sh->heads[fl][sl], nb);
	if (next)
		J(p, dmem__blk(p, next)->prev_free, nb);
}

/* Take need bytes from the front of free block off (no alignment).  The
 * rest stays free, in place in its list when its class is unchanged. */
static uint64_t take_front(struct dmem_pool *p, uint64_t off, uint64_t need)
{
	struct dmem_blk *b = dmem__blk(p, off);
	uint64_t bsize = dmem__blk_size(b), rest = bsize - need, r = off + need;

	if (rest < DMEM_MIN_BLOCK) {
		list_remove(p, off);
		return bsize;
	}
	if (!same_class(bsize, rest)) {
		list_remove(p, off);
		make_free(p, r, rest, off, 1);
		return need;
	}
	dmem__fset(&dmem__blk(p, r)->sf, rest | DMEM_BF_FREE);
	dmem__fset(&dmem__blk(p, r)->prev, off);
	dmem__fset(&dmem__blk(p, r)->owner_tag, DMEM_FREE_TAG);
	J(p, dmem__blk(p, off + bsize)->prev, r);
	list_replace(p, off, r, 1);
	p->d_free_bytes -= (int64_t)need;
	return need;
}

/* Aligned requests: remove the block, carve the aligned part, split. */
static uint64_t take_aligned(struct dmem_pool *p, uint64_t *off, uint64_t need,
			     uint64_t align)
{
	uint64_t bsize = dmem__blk_size(dmem__blk(p, *off)), noff;

	list_remove(p, *off);
	noff = carve_aligned(p, *off, align);
	bsize -= noff - *off;
	*off = noff;
	if (bsize - need >= DMEM_MIN_BLOCK) {
		make_free(p, noff + need, bsize - need, noff, 1);
		bsize = need;
	}
	return bsize;
}

int dmem__heap_alloc(struct dmem_pool *p, uint64_t size, uint64_t align,
		     pid_t owner, uint64_t *off_out)
{
	struct dmem_shared *s = p->sh;
	uint64_t need = round_up(size + DMEM_BLK_HDR, DMEM_ALIGN);
	uint64_t off, bsize, gen, reach;
	struct dmem_blk *b;
	int rc;

	if (need < DMEM_MIN_BLOCK)
		need = DMEM_MIN_BLOCK;
	off = find_block(p, align > DMEM_ALIGN ? need + align + DMEM_MIN_BLOCK
					       : need);
	if (!off)
		return -DMEM_E_NOSPACE;
	/* The block, and the header of the free rest split off after it,
	 * must lie in committed memory before either is written. */
	reach = off + need + DMEM_MIN_BLOCK +
		(align > DMEM_ALIGN ? align + DMEM_MIN_BLOCK : 0);
	if (reach > off + dmem__blk_size(dmem__blk(p, off)))
		reach = off + dmem__blk_size(dmem__blk(p, off));
	if ((rc = dmem__commit_reach(p, reach)))
		return rc;
	if (align > DMEM_ALIGN)
		bsize = take_aligned(p, &off, need, align);
	else
		bsize = take_front(p, off, need);
	b = dmem__blk(p, off);
	gen = atomic_fetch_add_explicit(&s->gen_counter, 1,
					memory_order_relaxed) +
	      1;
	J(p, b->sf, bsize);
	J(p, b->gen, gen);
	J(p, b->owner_tag,
	  ((uint64_t)dmem__blk_tag(p, off, gen) << 32) | (uint32_t)owner);
	J(p, s->live_allocs, s->live_allocs + 1);
	apply_stats(p);
	*off_out = off;
	return 0;
}

/* Validate that user_off is the payload of a live block. */
int dmem__heap_blk_of(struct dmem_pool *p, uint64_t user_off,
		      struct dmem_blk **blk_out)
{
	struct dmem_shared *s = p->sh;
	uint64_t off = user_off - DMEM_BLK_HDR;
	struct dmem_blk *b;

	if (user_off < s->heap_start + DMEM_BLK_HDR ||
	    user_off >= s->heap_end || (user_off & (DMEM_ALIGN - 1)))
		return -EINVAL;
	b = dmem__blk(p, off);
	/* Atomic loads: a cached block's gen and tag change outside the lock
	 * (cache.c); a mismatch then simply reads as stale. */
	if ((b->sf & DMEM_BF_FREE) || dmem__blk_size(b) < DMEM_MIN_BLOCK ||
	    dmem__blk_size(b) > s->heap_end - off ||
	    (uint32_t)(__atomic_load_n(&b->owner_tag, __ATOMIC_RELAXED) >>
		       32) !=
		    dmem__blk_tag(p, off,
				  __atomic_load_n(&b->gen, __ATOMIC_RELAXED)))
		return -DMEM_E_STALE;
	*blk_out = b;
	return 0;
}

/* Merge the freed block at off (size bytes) into the free block before it. */
static void merge_into_prev(struct dmem_pool *p, uint64_t prev, uint64_t size)
{
	struct dmem_blk *pb = dmem__blk(p, prev);
	uint64_t psize = dmem__blk_size(pb), total = psize + size;

	if (same_class(psize, total)) {
		J(p, pb->sf, total | DMEM_BF_FREE);
		p->d_free_bytes += (int64_t)size;
	} else {
		list_remove(p, prev);
		J(p, pb->sf, total | DMEM_BF_FREE);
		list_insert(p, prev, 0);
	}
	J(p, dmem__blk(p, prev + total)->prev, prev);
}

/* Merge the free block after off into the freed block at off. */
static void absorb_next(struct dmem_pool *p, uint64_t off, uint64_t size)
{
	struct dmem_blk *b = dmem__blk(p, off), *n = dmem__blk(p, off + size);
	uint64_t nsize = dmem__blk_size(n), total = size + nsize;

	if (same_class(nsize, total)) {
		list_replace(p, off + size, off, 0);
		J(p, b->sf, total | DMEM_BF_FREE);
		p->d_free_bytes += (int64_t)size;
	} else {
		list_remove(p, off + size);
		J(p, b->sf, total | DMEM_BF_FREE);
		list_insert(p, off, 0);
	}
	J(p, n->owner_tag, 0); /* no longer a header */
	J(p, dmem__blk(p, off + total)->prev, off);
}

int dmem__heap_free(struct dmem_pool *p, uint64_t off)
{
	struct dmem_shared *s = p->sh;
	struct dmem_blk *b = dmem__blk(p, off), *n;
	uint64_t size = dmem__blk_size(b);
	int prev_free = b->prev && (dmem__blk(p, b->prev)->sf & DMEM_BF_FREE);

	J(p, b->owner_tag, DMEM_FREE_TAG);
	J(p, s->live_allocs, s->live_allocs - 1);
	n = dmem__blk(p, off + size);
	if (prev_free && (n->sf & DMEM_BF_FREE)) {
		/* Both sides: the next block disappears into the previous. */
		list_remove(p, off + size);
		J(p, n->owner_tag, 0);
		merge_into_prev(p, b->prev, size + dmem__blk_size(n));
	} else if (prev_free) {
		merge_into_prev(p, b->prev, size);
	} else if (n->sf & DMEM_BF_FREE) {
		absorb_next(p, off, size);
	} else {
		J(p, b->sf, size | DMEM_BF_FREE);
		list_insert(p, off, 0);
	}
	apply_stats(p);
	return 0;
}

uint64_t dmem__heap_largest(struct dmem_pool *p)
{
	struct dmem_shared *s = p->sh;
	uint64_t best = 0;
	int fl, sl;

	if (!s->fl_bitmap)
		return 0;
	fl = fls64(s->fl_bitmap);
	sl = fls64(s->sl_bitmap[fl]);
	for (uint64_t o = s->heads[fl][sl]; o; o = dmem__blk(p, o)->next_free)
		if (dmem__blk_size(dmem__blk(p, o)) > best)
			best = dmem__blk_size(dmem__blk(p, o));
	return best > DMEM_BLK_HDR ? best - DMEM_BLK_HDR : 0;
}

/* One free block covering the heap, then a zero-size allocated sentinel at
 * heap_end so that coalescing never runs off the end. */
void dmem__heap_init(struct dmem_pool *p)
{
	struct dmem_shared *s = p->sh;
	struct dmem_blk *end = dmem__blk(p, s->heap_end);

	end->sf = 0;
	end->owner_tag = 0;
	make_free(p, s->heap_start, s->heap_end - s->heap_start, 0, 0);
	apply_stats(p);
	dmem__commit(p);
}
