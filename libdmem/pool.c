/* SPDX-License-Identifier: MIT */
/*
 * pool.c - pool segments: create, attach, detach, destroy, stats.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dmem_private.h"

/* The heap starts on the first page after the header so block payloads of
 * page-aligned requests line up with pages. */
static uint64_t heap_start(void)
{
	return (sizeof(struct dmem_shared) + 4095) & ~4095ull;
}

static uint64_t random_uid(void)
{
	uint64_t v = 0;

	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != sizeof(v)) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		v = dmem__hash64(&ts, sizeof(ts), (uint64_t)getpid());
	}
	return v ? v : 1;
}

static int init_lock(pthread_mutex_t *m)
{
	pthread_mutexattr_t a;
	int rc;

	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	rc = pthread_mutex_init(m, &a);
	pthread_mutexattr_destroy(&a);
	return -rc;
}

static void init_shared(struct dmem_pool *p, uint64_t node)
{
	struct dmem_shared *s = p->sh;

	s->layout_version = DMEM_LAYOUT_VERSION;
	s->hdr_size = sizeof(*s);
	s->size = p->size;
	s->node_id = node;
	s->pool_uid = random_uid();
	s->heap_start = heap_start();
	s->heap_end = (p->size - DMEM_BLK_HDR) & ~(uint64_t)(DMEM_ALIGN - 1);
	memcpy(s->segname, p->desc.segname, sizeof(s->segname));
	dmem__heap_init(p);
	p->desc.magic = DMEM_POOL_DESC_MAGIC;
	p->desc.version = DMEM_DESC_VERSION;
	p->desc.node_id = node;
	p->desc.pool_uid = s->pool_uid;
	p->desc.size = p->size;
	p->desc.check = dmem__pool_desc_check(&p->desc);
	/* Publish last: an attacher that sees the magic sees a whole pool. */
	__atomic_store_n(&s->magic, DMEM_HDR_MAGIC, __ATOMIC_RELEASE);
}

/*
 * Map the segment at a DMEM_MAX_ALIGN-aligned address (reserve a larger
 * range, map over it, trim), so that an offset aligned to A <= 2 MiB is a
 * pointer aligned to A in every process, whatever address each one gets.
 */
static int map_segment(struct dmem_pool *p, int fd)
{
	size_t span = p->size + DMEM_MAX_ALIGN;
	char *r = mmap(NULL, span, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	char *a, *m;

	if (r == MAP_FAILED)
		return dmem__fail(-errno,
				  "cannot reserve %llu bytes of address "
				  "space for pool %s: %s",
				  (unsigned long long)span, p->desc.segname,
				  strerror(errno));
	a = (char *)(((uintptr_t)r + DMEM_MAX_ALIGN - 1) &
		     ~(uintptr_t)(DMEM_MAX_ALIGN - 1));
	m = mmap(a, p->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
		 0);
	if (m == MAP_FAILED) {
		int e = errno;
		munmap(r, span);
		return dmem__fail(-e, "cannot map pool %s (%llu bytes): %s",
				  p->desc.segname, (unsigned long long)p->size,
				  strerror(e));
	}
	if (a > r)
		munmap(r, (size_t)(a - r));
	if (r + span > a + p->size)
		munmap(a + p->size, (size_t)(r + span - (a + p->size)));
	p->base = m;
	p->sh = (struct dmem_shared *)m;
	p->journal = p->sh->journal;
	return 0;
}

static int create_segment(struct dmem_pool *p, uint32_t flags)
{
	struct stat st;
	int fd, rc;

	if (flags & DMEM_POOL_F_REPLACE)
		shm_unlink(p->desc.segname);
	fd = shm_open(p->desc.segname, O_CREAT | O_EXCL | O_RDWR, 0600);
	if (fd < 0)
		return dmem__fail(
			-errno, "cannot create segment /dev/shm/%s: %s%s",
			p->desc.segname, strerror(errno),
			errno == EEXIST ? " (a leftover? run dragon-cleanup "
					  "or pass DMEM_POOL_F_REPLACE)"
					: "");
	if (ftruncate(fd, (off_t)p->size) != 0) {
		rc = dmem__fail(-errno,
				"cannot size segment %s to %llu bytes: %s",
				p->desc.segname, (unsigned long long)p->size,
				strerror(errno));
		goto fail_unlink;
	}
	if ((rc = map_segment(p, fd)))
		goto fail_unlink;
	p->fd = fd;
	p->ino = fstat(fd, &st) == 0 ? (uint64_t)st.st_ino : 0;
	if ((rc = dmem__commit_init(p, heap_start()))) {
		munmap(p->base, p->size);
		goto fail_unlink;
	}
	return 0;

fail_unlink:
	close(fd);
	shm_unlink(p->desc.segname);
	return rc;
}

static int resolve_size(size_t size, uint64_t *out)
{
	uint64_t v = size;
	int rc;

	if (v == 0 && (rc = dmem__env_seg_size(&v)))
		return rc;
	if (size == 0 && (v < DMEM_MIN_POOL || v > DMEM_MAX_POOL))
		return dmem__fail(-DMEM_E_ENV,
				  "DRAGON_DEFAULT_SEG_SZ=%llu is not a usable "
				  "pool size: give %llu to %llu bytes",
				  (unsigned long long)v,
				  (unsigned long long)DMEM_MIN_POOL,
				  (unsigned long long)DMEM_MAX_POOL);
	if (v < DMEM_MIN_POOL || v > DMEM_MAX_POOL)
		return dmem__fail(-EINVAL,
				  "pool size %llu out of range [%llu, %llu]",
				  (unsigned long long)v,
				  (unsigned long long)DMEM_MIN_POOL,
				  (unsigned long long)DMEM_MAX_POOL);
	*out = (v + 4095) & ~4095ull;
	return 0;
}

DMEM_EXPORT int dmem_pool_create(const char *name, size_t size,
				 const dmem_pool_attr_t *attr,
				 dmem_pool_t **pool_out)
{
	const char *inst = NULL;
	uint32_t flags = 0;
	uint64_t node = dmem_node_id();
	struct dmem_pool *p;
	int rc;

	if (!pool_out)
		return dmem__fail(-EINVAL, "pool_out is NULL");
	if (attr && (attr->field_mask & DMEM_POOL_ATTR_INSTANCE))
		inst = attr->instance;
	if (attr && (attr->field_mask & DMEM_POOL_ATTR_FLAGS))
		flags = attr->flags;
	if (node == 0)
		return dmem__fail(-DMEM_E_ENV,
				  "DRAGON_NODE_ID='%.40s' is malformed: give a "
				  "non-zero decimal or 0x-hex 64-bit number",
				  getenv("DRAGON_NODE_ID"));
	if (!(p = calloc(1, sizeof(*p))))
		return dmem__fail(-ENOMEM, "out of memory");
	if ((rc = dmem_segname_format(NULL, inst, name, p->desc.segname,
				      sizeof(p->desc.segname))) ||
	    (rc = resolve_size(size, &p->size)) ||
	    (rc = dmem__shm_check(p->desc.segname, p->size)) ||
	    (rc = create_segment(p, flags)))
		goto fail_free;
	if ((rc = init_lock(&p->sh->lock))) {
		dmem__fail(rc, "cannot initialise the lock of pool %s",
			   p->desc.segname);
		goto fail_unmap;
	}
	init_shared(p, node);
	*pool_out = p;
	return 0;

fail_unmap:
	munmap(p->base, p->size);
	close(p->fd);
	shm_unlink(p->desc.segname);
fail_free:
	free(p);
	return rc;
}

static int check_mapped(struct dmem_pool *p, const dmem_pool_desc_t *d)
{
	struct dmem_shared *s = p->sh;

	if (__atomic_load_n(&s->magic, __ATOMIC_ACQUIRE) != DMEM_HDR_MAGIC)
		return dmem__fail(-DMEM_E_BADMAGIC,
				  "segment %s is not a dmem pool (bad magic)",
				  d->segname);
	if (s->layout_version != DMEM_LAYOUT_VERSION ||
	    s->hdr_size != sizeof(*s))
		return dmem__fail(-DMEM_E_VERSION,
				  "pool %s has layout version %u, this libdmem "
				  "uses %u: every process must use the same "
				  "Dragon version",
				  d->segname, s->layout_version,
				  DMEM_LAYOUT_VERSION);
	if (s->pool_uid != d->pool_uid || s->size != d->size ||
	    s->node_id != d->node_id)
		return dmem__fail(-DMEM_E_FOREIGN,
				  "segment %s is a different pool than the "
				  "descriptor names (recreated since?)",
				  d->segname);
	if (s->heap_start != heap_start() || s->heap_end >= s->size ||
	    s->heap_end <= s->heap_start)
		return dmem__fail(-DMEM_E_CORRUPT, "pool %s header is corrupt",
				  d->segname);
	return 0;
}

static int open_segment(struct dmem_pool *p)
{
	struct stat st;
	int fd = shm_open(p->desc.segname, O_RDWR, 0);
	int rc;

	if (fd < 0)
		return dmem__fail(-errno, "cannot open pool segment %s: %s",
				  p->desc.segname, strerror(errno));
	if (fstat(fd, &st) != 0 || (uint64_t)st.st_size != p->size) {
		close(fd);
		return dmem__fail(-DMEM_E_FOREIGN,
				  "segment %s is not %llu bytes: not the pool "
				  "the descriptor names",
				  p->desc.segname, (unsigned long long)p->size);
	}
	rc = map_segment(p, fd);
	if (rc)
		close(fd);
	else {
		p->fd = fd;
		p->ino = (uint64_t)st.st_ino;
	}
	return rc;
}

DMEM_EXPORT int dmem_pool_attach(const dmem_pool_desc_t *desc,
				 dmem_pool_t **pool_out)
{
	struct dmem_pool *p;
	int rc;

	if (!desc || !pool_out)
		return dmem__fail(-EINVAL, "NULL argument");
	if ((rc = dmem__pool_desc_valid(desc)))
		return rc;
	if (desc->node_id != dmem_node_id())
		return dmem__fail(-DMEM_E_FOREIGN,
				  "pool %s lives on node %#llx, this is node "
				  "%#llx: reach it through the transport",
				  desc->segname,
				  (unsigned long long)desc->node_id,
				  (unsigned long long)dmem_node_id());
	if (!(p = calloc(1, sizeof(*p))))
		return dmem__fail(-ENOMEM, "out of memory");
	p->desc = *desc;
	p->size = desc->size;
	if ((rc = open_segment(p)))
		goto fail_free;
	if ((rc = check_mapped(p, desc)))
		goto fail_unmap;
	*pool_out = p;
	return 0;

fail_unmap:
	munmap(p->base, p->size);
	close(p->fd);
fail_free:
	free(p);
	return rc;
}

DMEM_EXPORT int dmem_pool_detach(dmem_pool_t *pool)
{
	if (!pool)
		return dmem__fail(-EINVAL, "pool is NULL");
	if (dmem__lock(pool) == 0) {
		dmem__cache_flush(pool);
		dmem__unlock(pool);
	}
	munmap(pool->base, pool->size);
	close(pool->fd);
	free(pool);
	return 0;
}

DMEM_EXPORT int dmem_pool_destroy(dmem_pool_t *pool)
{
	int rc = 0;

	if (!pool)
		return dmem__fail(-EINVAL, "pool is NULL");
	if (shm_unlink(pool->desc.segname) != 0)
		rc = dmem__fail(-errno, "cannot remove segment %s: %s",
				pool->desc.segname, strerror(errno));
	dmem_pool_detach(pool);
	return rc;
}

DMEM_EXPORT int dmem_pool_desc_get(const dmem_pool_t *pool,
				   dmem_pool_desc_t *desc_out)
{
	if (!pool || !desc_out)
		return dmem__fail(-EINVAL, "NULL argument");
	*desc_out = pool->desc;
	return 0;
}

DMEM_EXPORT int dmem_pool_stats(dmem_pool_t *pool, dmem_pool_stats_t *stats_out)
{
	struct dmem_shared *s;
	dmem_pool_stats_t st;
	int rc;

	if (!pool || !stats_out)
		return dmem__fail(-EINVAL, "NULL argument");
	s = pool->sh;
	memset(&st, 0, sizeof(st));
	if ((rc = dmem__lock(pool)))
		return rc;
	st.size = pool->size;
	st.heap_size = s->heap_end - s->heap_start;
	st.free_bytes = s->free_bytes;
	st.largest_free = dmem__heap_largest(pool);
	st.live_allocs = s->live_allocs;
	st.free_blocks = s->free_blocks;
	st.recoveries = s->recoveries;
	dmem__unlock(pool);
	st.cached = dmem__cache_count(pool);
	*stats_out = st;
	return 0;
}

DMEM_EXPORT int dmem_pool_flush(dmem_pool_t *pool)
{
	int rc;

	if (!pool)
		return dmem__fail(-EINVAL, "pool is NULL");
	if ((rc = dmem__lock(pool)))
		return rc;
	dmem__cache_flush(pool);
	dmem__unlock(pool);
	return 0;
}

DMEM_EXPORT int dmem_pool_check(dmem_pool_t *pool)
{
	int rc;

	if (!pool)
		return dmem__fail(-EINVAL, "pool is NULL");
	if ((rc = dmem__lock(pool)))
		return rc;
	rc = dmem__heap_check(pool);
	dmem__unlock(pool);
	return rc;
}

DMEM_EXPORT void *dmem_pool_base(const dmem_pool_t *pool)
{
	return pool ? pool->base : NULL;
}

DMEM_EXPORT size_t dmem_pool_size(const dmem_pool_t *pool)
{
	return pool ? pool->size : 0;
}

DMEM_EXPORT uint64_t dmem_pool_offset(const dmem_pool_t *pool, const void *ptr)
{
	uintptr_t b, q = (uintptr_t)ptr;

	if (!pool)
		return DMEM_OFFSET_INVALID;
	b = (uintptr_t)pool->base;
	if (q < b || q - b >= pool->size)
		return DMEM_OFFSET_INVALID;
	return q - b;
}

DMEM_EXPORT void *dmem_pool_ptr(const dmem_pool_t *pool, uint64_t offset)
{
	if (!pool || offset >= pool->size)
		return NULL;
	return pool->base + offset;
}
