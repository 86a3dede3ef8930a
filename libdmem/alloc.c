/* SPDX-License-Identifier: MIT */
/*
 * alloc.c - the public allocation calls: alloc, timed alloc, free,
 * allocation descriptors, ownership and reclaim.
 */
#include <errno.h>
#include <string.h>

#include "dmem_private.h"

static int nospace(struct dmem_pool *p, uint64_t size, uint64_t align)
{
	return dmem__fail(-DMEM_E_NOSPACE,
			  "pool %s (%llu bytes) cannot serve %llu bytes "
			  "(alignment %llu): largest free block %llu bytes, "
			  "%llu bytes free in %llu blocks, %llu live "
			  "allocations; free some, or create a larger pool "
			  "(size argument or DRAGON_DEFAULT_SEG_SZ)",
			  p->desc.segname, (unsigned long long)p->size,
			  (unsigned long long)size, (unsigned long long)align,
			  (unsigned long long)dmem__heap_largest(p),
			  (unsigned long long)p->sh->free_bytes,
			  (unsigned long long)p->sh->free_blocks,
			  (unsigned long long)p->sh->live_allocs);
}

static int check_args(struct dmem_pool *p, size_t size, size_t *align,
		      void **ptr_out)
{
	uint64_t heap;

	if (!p || !ptr_out || size == 0)
		return dmem__fail(-EINVAL, "alloc needs a pool, size >= 1 and "
					   "ptr_out");
	if (*align == 0)
		*align = DMEM_ALIGN;
	if ((*align & (*align - 1)) || *align > DMEM_MAX_ALIGN)
		return dmem__fail(-EINVAL,
				  "alignment %zu is not a power of two up to "
				  "DMEM_MAX_ALIGN",
				  *align);
	heap = p->sh->heap_end - p->sh->heap_start;
	if (size > heap || *align > heap || size + DMEM_BLK_HDR > heap ||
	    (*align > DMEM_ALIGN &&
	     size + *align + DMEM_MIN_BLOCK + DMEM_BLK_HDR > heap))
		return dmem__fail(-DMEM_E_TOOBIG,
				  "pool %s (%llu bytes) can never serve %zu "
				  "bytes aligned to %zu: create a larger pool "
				  "(size argument or DRAGON_DEFAULT_SEG_SZ)",
				  p->desc.segname, (unsigned long long)p->size,
				  size, *align);
	return 0;
}

/* One attempt under the lock.  On failure *seq_out is the free_seq value a
 * waiter must sleep on: read under the lock, so no later free is missed.
 * The pool may have room that /dev/shm cannot back (commit.c): that is
 * -DMEM_E_NOSPACE too, with the message saying so, and *shm_out set. */
static int try_alloc(struct dmem_pool *p, size_t size, size_t align,
		     void **ptr_out, uint32_t *seq_out, int *shm_out)
{
	uint64_t off;
	int rc;

	if ((rc = dmem__lock(p)))
		return rc;
	rc = dmem__heap_alloc(p, size, align, dmem__self_pid(), &off);
	if (rc == -DMEM_E_NOSPACE) {
		/* Our own cached small blocks may be what is missing. */
		dmem__cache_flush(p);
		rc = dmem__heap_alloc(p, size, align, dmem__self_pid(), &off);
	}
	if (shm_out)
		*shm_out = rc == -ENOSPC;
	if (rc == -ENOSPC)
		rc = -DMEM_E_NOSPACE; /* commit.c wrote the message */
	else if (rc == -DMEM_E_NOSPACE && !seq_out)
		rc = nospace(p, size, align);
	if (rc == 0)
		dmem__commit(p);
	else if (seq_out)
		*seq_out = atomic_load(&p->sh->free_seq);
	dmem__unlock(p);
	if (rc == 0)
		*ptr_out = p->base + off + DMEM_BLK_HDR;
	return rc;
}

DMEM_EXPORT int dmem_alloc(dmem_pool_t *pool, size_t size, size_t align,
			   void **ptr_out)
{
	int rc = check_args(pool, size, &align, ptr_out);

	if (rc)
		return rc;
	if (align == DMEM_ALIGN && dmem__cache_alloc(pool, size, ptr_out) == 0)
		return 0;
	return try_alloc(pool, size, align, ptr_out, NULL, NULL);
}

static int deadline_passed(const struct timespec *d)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > d->tv_sec ||
	       (now.tv_sec == d->tv_sec && now.tv_nsec >= d->tv_nsec);
}

/* /dev/shm space freed by other pools or programs wakes nobody here:
 * look again every 20 ms, or at the deadline if that comes first. */
static const struct timespec *shm_retry(const struct timespec *deadline,
					struct timespec *t)
{
	clock_gettime(CLOCK_MONOTONIC, t);
	t->tv_nsec += 20000000;
	if (t->tv_nsec >= 1000000000) {
		t->tv_sec++;
		t->tv_nsec -= 1000000000;
	}
	if (deadline &&
	    (deadline->tv_sec < t->tv_sec ||
	     (deadline->tv_sec == t->tv_sec && deadline->tv_nsec < t->tv_nsec)))
		return deadline;
	return t;
}

DMEM_EXPORT int dmem_alloc_timed(dmem_pool_t *pool, size_t size, size_t align,
				 const struct timespec *deadline,
				 void **ptr_out)
{
	struct dmem_shared *s;
	struct timespec retry;
	uint32_t seq;
	int shm = 0, slot, rc = check_args(pool, size, &align, ptr_out);

	if (rc)
		return rc;
	if (align == DMEM_ALIGN && dmem__cache_alloc(pool, size, ptr_out) == 0)
		return 0;
	s = pool->sh;
	/* Announce the waiter before looking, so a free that happens after a
	 * failed attempt sees it and wakes us. */
	slot = dmem__waiter_enter(pool);
	for (;;) {
		rc = try_alloc(pool, size, align, ptr_out, &seq, &shm);
		if (rc != -DMEM_E_NOSPACE)
			break;
		if (deadline && deadline_passed(deadline)) {
			if (!shm) {
				dmem__lock(pool);
				nospace(pool, size, align);
				dmem__unlock(pool);
			}
			rc = -ETIMEDOUT;
			break;
		}
		rc = dmem_futex_wait((uint32_t *)&s->free_seq, seq,
				     shm ? shm_retry(deadline, &retry)
					 : deadline);
		if (rc != 0 && rc != -ETIMEDOUT)
			break;
	}
	dmem__waiter_leave(pool, slot);
	return rc;
}

/* After a free, wake the sleepers of dmem_alloc_timed, if any.  The caller
 * checks for waiters while still holding the lock: a waiter announces itself
 * before it takes the lock for its failed attempt, so either that attempt
 * saw our free or we see the waiter.  No waiters costs nothing. */
static void wake_waiters(struct dmem_pool *p)
{
	struct dmem_shared *s = p->sh;

	atomic_fetch_add(&s->free_seq, 1);
	dmem_futex_wake((uint32_t *)&s->free_seq, INT32_MAX);
}

/*
 * Take the live block b out of reach of the owner's lock-free cache: swap
 * its owner_tag, still a live one, for DMEM_FREE_TAG.  A thread of the
 * owner may be parking the same block in its cache at this moment (a
 * double free); exactly one of the two swaps wins.
 */
static int claim_live(struct dmem_pool *p, struct dmem_blk *b)
{
	uint64_t off = (uint64_t)((char *)b - p->base);
	uint64_t ot = __atomic_load_n(&b->owner_tag, __ATOMIC_ACQUIRE);

	if ((uint32_t)(ot >> 32) !=
		    dmem__blk_tag(p, off,
				  __atomic_load_n(&b->gen, __ATOMIC_RELAXED)) ||
	    dmem__jcas(p, &b->owner_tag, ot, DMEM_FREE_TAG))
		return -DMEM_E_STALE;
	return 0;
}

/*
 * Why user_off is no live allocation: inside one, not at its start
 * (-EINVAL, a pointer dmem_alloc never returned), or in free space
 * (-DMEM_E_STALE, already freed).  *start_out: the live one's payload.
 * A walk of the heap under the lock, so on the error path only.
 */
static int bad_free_code(struct dmem_pool *p, uint64_t user_off,
			 uint64_t *start_out)
{
	uint64_t off, size;

	for (off = p->sh->heap_start; off < p->sh->heap_end; off += size) {
		struct dmem_blk *b = dmem__blk(p, off);

		if ((size = dmem__blk_size(b)) == 0)
			break; /* corrupt: never loop forever */
		if (user_off >= off + size)
			continue;
		if ((b->sf & DMEM_BF_FREE) || user_off == off + DMEM_BLK_HDR)
			return -DMEM_E_STALE;
		*start_out = off + DMEM_BLK_HDR;
		return -EINVAL;
	}
	return -DMEM_E_STALE;
}

static int free_user_off(struct dmem_pool *p, uint64_t user_off,
			 const dmem_alloc_desc_t *desc)
{
	struct dmem_blk *b;
	uint64_t start = 0;
	uint32_t waiters = 0;
	int rc;

	if ((rc = dmem__lock(p)))
		return rc;
	rc = dmem__heap_blk_of(p, user_off, &b);
	if (rc == 0 && desc && b->gen != desc->generation)
		rc = -DMEM_E_STALE;
	if (rc == 0)
		rc = claim_live(p, b);
	if (rc == 0) {
		dmem__heap_free(p, user_off - DMEM_BLK_HDR);
		dmem__commit(p);
		waiters = dmem__waiters(p);
		if (waiters) /* someone needs memory: return our cache too */
			dmem__cache_flush(p);
	} else if (rc == -DMEM_E_STALE && !desc) {
		rc = bad_free_code(p, user_off, &start);
	}
	dmem__unlock(p);
	if (rc == -EINVAL && !desc)
		return dmem__fail(rc,
				  "free in pool %s: offset %#llx lies inside "
				  "the allocation at %#llx, not at its start: "
				  "pass the pointer dmem_alloc returned",
				  p->desc.segname, (unsigned long long)user_off,
				  (unsigned long long)start);
	if (rc)
		return dmem__fail(rc,
				  "free in pool %s: offset %#llx is not a live "
				  "allocation (already freed, or not from this "
				  "pool)",
				  p->desc.segname,
				  (unsigned long long)user_off);
	if (waiters)
		wake_waiters(p);
	return 0;
}

DMEM_EXPORT int dmem_free(dmem_pool_t *pool, void *ptr)
{
	uint64_t off = dmem_pool_offset(pool, ptr);

	if (off == DMEM_OFFSET_INVALID)
		return dmem__fail(-EINVAL, "free: pointer %p is not in pool %s",
				  ptr, pool ? pool->desc.segname : "(null)");
	if (dmem__cache_free(pool, off) == 0)
		return 0;
	return free_user_off(pool, off, NULL);
}

static int desc_for_pool(struct dmem_pool *p, const dmem_alloc_desc_t *d)
{
	int rc;

	if (!p || !d)
		return dmem__fail(-EINVAL, "NULL argument");
	if ((rc = dmem__alloc_desc_valid(d)))
		return rc;
	if (d->node_id != p->desc.node_id || d->pool_uid != p->desc.pool_uid)
		return dmem__fail(
			-DMEM_E_FOREIGN,
			"allocation descriptor names pool %#llx on node "
			"%#llx, not pool %s (%#llx on node %#llx)",
			(unsigned long long)d->pool_uid,
			(unsigned long long)d->node_id, p->desc.segname,
			(unsigned long long)p->desc.pool_uid,
			(unsigned long long)p->desc.node_id);
	if (d->offset >= p->size || d->size > p->size - d->offset)
		return dmem__fail(-DMEM_E_CORRUPT,
				  "allocation descriptor [%#llx, +%llu) lies "
				  "outside pool %s",
				  (unsigned long long)d->offset,
				  (unsigned long long)d->size, p->desc.segname);
	return 0;
}

DMEM_EXPORT int dmem_alloc_free(dmem_pool_t *pool,
				const dmem_alloc_desc_t *desc)
{
	int rc = desc_for_pool(pool, desc);

	return rc ? rc : free_user_off(pool, desc->offset, desc);
}

/* Run fn on the live block at ptr under the lock. */
static int with_block(struct dmem_pool *p, const void *ptr,
		      void (*fn)(struct dmem_pool *, struct dmem_blk *, void *),
		      void *arg)
{
	uint64_t off = dmem_pool_offset(p, ptr);
	struct dmem_blk *b;
	int rc;

	if (off == DMEM_OFFSET_INVALID)
		return dmem__fail(-EINVAL, "pointer %p is not in the pool",
				  ptr);
	if ((rc = dmem__lock(p)))
		return rc;
	if ((rc = dmem__heap_blk_of(p, off, &b)) == 0)
		fn(p, b, arg);
	dmem__unlock(p);
	if (rc)
		return dmem__fail(rc,
				  "pointer %p is not a live allocation of "
				  "pool %s",
				  ptr, p->desc.segname);
	return 0;
}

static void get_gen_size(struct dmem_pool *p, struct dmem_blk *b, void *arg)
{
	dmem_alloc_desc_t *d = arg;

	(void)p;
	d->generation = b->gen;
	d->size = dmem__blk_size(b) - DMEM_BLK_HDR;
}

DMEM_EXPORT int dmem_alloc_desc_get(dmem_pool_t *pool, const void *ptr,
				    dmem_alloc_desc_t *desc_out)
{
	dmem_alloc_desc_t d;
	int rc;

	if (!pool || !desc_out)
		return dmem__fail(-EINVAL, "NULL argument");
	memset(&d, 0, sizeof(d));
	if ((rc = with_block(pool, ptr, get_gen_size, &d)))
		return rc;
	d.magic = DMEM_ALLOC_DESC_MAGIC;
	d.version = DMEM_DESC_VERSION;
	d.node_id = pool->desc.node_id;
	d.pool_uid = pool->desc.pool_uid;
	d.offset = dmem_pool_offset(pool, ptr);
	d.check = dmem__alloc_desc_check(&d);
	*desc_out = d;
	return 0;
}

DMEM_EXPORT int dmem_alloc_attach(dmem_pool_t *pool,
				  const dmem_alloc_desc_t *desc, void **ptr_out)
{
	struct dmem_blk *b;
	int rc = desc_for_pool(pool, desc);

	if (rc)
		return rc;
	if (!ptr_out)
		return dmem__fail(-EINVAL, "ptr_out is NULL");
	if ((rc = dmem__lock(pool)))
		return rc;
	rc = dmem__heap_blk_of(pool, desc->offset, &b);
	if (rc == 0 && b->gen != desc->generation)
		rc = -DMEM_E_STALE;
	if (rc == 0 && dmem__blk_size(b) - DMEM_BLK_HDR != desc->size)
		rc = -DMEM_E_CORRUPT;
	dmem__unlock(pool);
	if (rc)
		return dmem__fail(
			rc,
			"allocation %#llx (generation %llu) of pool %s "
			"is %s",
			(unsigned long long)desc->offset,
			(unsigned long long)desc->generation,
			pool->desc.segname,
			rc == -DMEM_E_CORRUPT ? "corrupt"
					      : "no longer live (freed)");
	*ptr_out = pool->base + desc->offset;
	return 0;
}

static void set_owner(struct dmem_pool *p, struct dmem_blk *b, void *arg)
{
	uint64_t tag = b->owner_tag & ~0xffffffffull;

	dmem__jset(p, &b->owner_tag, tag | (uint32_t) * (pid_t *)arg);
	dmem__commit(p);
}

static void get_owner(struct dmem_pool *p, struct dmem_blk *b, void *arg)
{
	(void)p;
	*(pid_t *)arg = (pid_t)(uint32_t)b->owner_tag;
}

DMEM_EXPORT int dmem_alloc_chown(dmem_pool_t *pool, void *ptr, pid_t new_owner)
{
	if (!pool || new_owner < 0)
		return dmem__fail(-EINVAL,
				  "chown needs a pool and an owner >= 0");
	return with_block(pool, ptr, set_owner, &new_owner);
}

DMEM_EXPORT int dmem_alloc_owner(dmem_pool_t *pool, const void *ptr,
				 pid_t *owner_out)
{
	pid_t o;
	int rc;

	if (!pool || !owner_out)
		return dmem__fail(-EINVAL, "NULL argument");
	if ((rc = with_block(pool, ptr, get_owner, &o)) == 0)
		*owner_out = o;
	return rc;
}

/*
 * One pass in address order under the lock.  Each block is freed by its own
 * committed operation, so a reclaimer killed part-way loses at most the
 * block in progress (rolled back by the next locker) and a repeated call
 * finishes the job.  Freeing coalesces only with neighbours, which the walk
 * has already passed or will revisit from the merged block's end.
 */
DMEM_EXPORT int dmem_pool_reclaim(dmem_pool_t *pool, pid_t pid,
				  size_t *nfreed_out)
{
	struct dmem_shared *s;
	uint64_t off;
	size_t n = 0;
	int rc;

	if (!pool || pid <= 0)
		return dmem__fail(-EINVAL,
				  "reclaim needs a pool and a pid > 0");
	s = pool->sh;
	if ((rc = dmem__lock(pool)))
		return rc;
	/* Our own pid: our cached blocks carry it too.  Free them through the
	 * cache, or they would stay listed there while free in the heap. */
	if (pid == dmem__self_pid())
		dmem__cache_flush(pool);
	for (off = s->heap_start; off < s->heap_end;) {
		struct dmem_blk *b = dmem__blk(pool, off);
		uint64_t size;

		if (!(b->sf & DMEM_BF_FREE) &&
		    (uint32_t)b->owner_tag == (uint32_t)pid) {
			uint64_t prev = b->prev;
			int prev_free = prev && (dmem__blk(pool, prev)->sf &
						 DMEM_BF_FREE);

			dmem__heap_free(pool, off);
			dmem__commit(pool);
			n++;
			/* It may have merged backwards: go on from the
			 * block that now covers off. */
			if (prev_free)
				off = prev;
		}
		size = dmem__blk_size(dmem__blk(pool, off));
		if (size == 0)
			break; /* corrupt: never loop forever */
		off += size;
	}
	dmem__unlock(pool);
	dmem__waiters_reclaim(pool, pid);
	if (n)
		wake_waiters(pool);
	if (nfreed_out)
		*nfreed_out = n;
	return 0;
}
