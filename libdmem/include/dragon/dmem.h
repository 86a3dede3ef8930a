/* SPDX-License-Identifier: MIT */
/*
 * dmem.h - Dragon shared-memory pools.
 *
 * A pool is a POSIX shared-memory segment that many processes map at the
 * same time.  libdmem hands out variable-size blocks of it (any size from one
 * byte to most of the pool), names pools and blocks with small fixed-size
 * descriptors that other processes use to attach, records which process owns
 * each block so the runtime can reclaim a dead process's memory in one call,
 * and offers the futex wait/wake primitive the upper layers block on.
 *
 * Conventions (see dmem(7)):
 *  - Functions returning int give 0 (or a documented non-negative value) on
 *    success and a negative errno or a negative DMEM_E_* code on failure.
 *    dmem_strerror() names the code; dmem_errmsg() gives this thread's detail
 *    message for its most recent failure (which pool, what sizes, what to do).
 *  - Output arguments come last and are written only on success.
 *  - Deadlines are absolute CLOCK_MONOTONIC times.  A NULL deadline waits
 *    forever; a deadline already in the past (e.g. {0, 0}) tries once.
 *    Absolute, because libdmem's waits are primitives that callers retry
 *    in loops (a futex wait may return early; libdchan sleeps many times
 *    in one operation): a deadline computed once stays right across every
 *    retry, and the kernel's futex takes one.  The layers above take
 *    relative timeouts instead (see dchan.h); dmem_deadline_after converts.
 *  - Each process maps a pool at its own address.  Anything stored inside
 *    shared memory must be an offset (dmem_pool_offset / dmem_pool_ptr), never
 *    a pointer.
 *  - All functions are thread-safe.  A pool handle may be used by many
 *    threads of the process that made it.
 */
#ifndef DRAGON_DMEM_H
#define DRAGON_DMEM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define DMEM_EXPORT __attribute__((visibility("default")))
#else
#define DMEM_EXPORT
#endif

/* ---- version ------------------------------------------------------------ */

#define DMEM_VERSION_MAJOR 0
#define DMEM_VERSION_MINOR 1
#define DMEM_VERSION_PATCH 0
/* One integer, comparable: (major << 16) | (minor << 8) | patch. */
#define DMEM_VERSION_NUMBER                                                    \
	((DMEM_VERSION_MAJOR << 16) | (DMEM_VERSION_MINOR << 8) |              \
	 DMEM_VERSION_PATCH)

/* The version of the library actually loaded, as DMEM_VERSION_NUMBER. */
DMEM_EXPORT unsigned dmem_version(void);

/* ---- errors ------------------------------------------------------------- */

#define DMEM_ERRBASE 1000
enum dmem_error {
	DMEM_E_NOSPACE =
		DMEM_ERRBASE + 1, /* pool has no free block that large */
	DMEM_E_TOOBIG = DMEM_ERRBASE + 2, /* request can never fit this pool */
	DMEM_E_BADMAGIC = DMEM_ERRBASE + 3, /* not a dmem layout / descriptor */
	DMEM_E_VERSION = DMEM_ERRBASE + 4,  /* layout version not understood */
	DMEM_E_CORRUPT =
		DMEM_ERRBASE + 5,	 /* descriptor or heap failed checks */
	DMEM_E_STALE = DMEM_ERRBASE + 6, /* allocation was freed (generation) */
	DMEM_E_FOREIGN = DMEM_ERRBASE + 7,  /* other pool or other node */
	DMEM_E_SHMSMALL = DMEM_ERRBASE + 8, /* /dev/shm cannot back the pool */
	DMEM_E_ENV = DMEM_ERRBASE + 9	    /* malformed environment variable */
};

/*
 * Name of an error code: a negative errno, a negative DMEM_E_* code, or 0.
 * Returns a static string (never NULL).
 */
DMEM_EXPORT const char *dmem_strerror(int err);

/*
 * Detail message for the most recent failing libdmem call in this thread:
 * what failed, with which pool and sizes, and what to do.  Valid until the
 * next libdmem call in this thread fails.  Never NULL ("" if none).
 */
DMEM_EXPORT const char *dmem_errmsg(void);

/* ---- node identity ------------------------------------------------------ */

/*
 * 64-bit id of this host.  DRAGON_NODE_ID (decimal or 0x-hex, non-zero)
 * overrides it so a runtime can number its nodes; otherwise it is derived
 * from /etc/machine-id and the host name.  Returns 0 if DRAGON_NODE_ID is
 * set but malformed; pool creation then fails with DMEM_E_ENV.
 */
DMEM_EXPORT uint64_t dmem_node_id(void);

/* ---- segment names ------------------------------------------------------ */

/* Longest runtime instance id, in characters of [A-Za-z0-9_-]. */
#define DMEM_INSTANCE_MAX 48
/* Segment name buffer, including the NUL: always large enough. */
#define DMEM_SEGNAME_MAX  192

/*
 * Every pool's segment is /dev/shm/dragon.<user>.<instance>.<name>, mode
 * 0600: the user is the name of this process's effective uid (characters
 * outside [A-Za-z0-9_-] become '_', at most 32 kept), the instance names
 * the runtime (1..DMEM_INSTANCE_MAX of [A-Za-z0-9_-]) and name is the
 * pool's (1..64 of them).  dragon-cleanup and the runtime find a runtime's
 * segments by these names and by nothing else.
 *
 * dmem_segname_format writes the name into buf (len bytes; DMEM_SEGNAME_MAX
 * is enough).  user NULL: this process's user; instance NULL:
 * $DRAGON_INSTANCE, else "p<pid>".  All arguments are borrowed.  Returns
 * 0, -EINVAL (bad name or user), -DMEM_E_ENV (bad instance, given or from
 * the environment) or -ENAMETOOLONG.
 */
DMEM_EXPORT int dmem_segname_format(const char *user, const char *instance,
				    const char *name, char *buf, size_t len);

/*
 * Is segname (a file name in /dev/shm, without the directory) the
 * segment name of a pool of user (NULL: this process's user) in runtime
 * instance (NULL: any instance)?  Returns 1 if it is, 0 if it is not
 * (also for anything not shaped dragon.<user>.<instance>.<name>), -EINVAL
 * if segname is NULL.
 */
DMEM_EXPORT int dmem_segname_match(const char *segname, const char *user,
				   const char *instance);

/* ---- descriptors (cross process boundaries) ----------------------------- */

#define DMEM_POOL_DESC_MAGIC  0x4c4f4f50u /* "POOL" */
#define DMEM_ALLOC_DESC_MAGIC 0x434f4c41u /* "ALOC" */
#define DMEM_DESC_VERSION     1

/*
 * Names a pool.  Plain data, fixed size: copy it anywhere (shared memory,
 * a pipe, a message).  Valid on the node that made it (node_id).
 */
typedef struct dmem_pool_desc {
	uint32_t magic;	  /* DMEM_POOL_DESC_MAGIC */
	uint16_t version; /* DMEM_DESC_VERSION */
	uint16_t reserved0;
	uint64_t node_id;  /* dmem_node_id() of the creating host */
	uint64_t pool_uid; /* random per pool; ties allocation descriptors to it
			    */
	uint64_t size;	   /* segment size in bytes */
	char segname[DMEM_SEGNAME_MAX]; /* "dragon.<user>.<instance>.<name>" */
	uint64_t check;			/* checksum of the fields above */
} dmem_pool_desc_t;

/*
 * Names one allocation in one pool.  generation changes every time the block
 * is handed out, so a descriptor of a freed block is refused (DMEM_E_STALE).
 */
typedef struct dmem_alloc_desc {
	uint32_t magic;	  /* DMEM_ALLOC_DESC_MAGIC */
	uint16_t version; /* DMEM_DESC_VERSION */
	uint16_t reserved0;
	uint64_t node_id;    /* node of the pool */
	uint64_t pool_uid;   /* dmem_pool_desc_t.pool_uid */
	uint64_t offset;     /* of the user data from the pool base */
	uint64_t size;	     /* usable bytes at offset */
	uint64_t generation; /* of the block when the descriptor was made */
	uint64_t check;	     /* checksum of the fields above */
} dmem_alloc_desc_t;

/* Text forms fit in buffers of these sizes (including the NUL). */
#define DMEM_POOL_DESC_TEXT_MAX	 288
#define DMEM_ALLOC_DESC_TEXT_MAX 160

/*
 * Binary form: copy the descriptor's bytes into buf (len >= sizeof *desc).
 * Returns the number of bytes written or a negative code.  The byte form is
 * the struct itself, so it is meant for the same node (same endianness).
 */
DMEM_EXPORT int dmem_pool_desc_serialize(const dmem_pool_desc_t *desc,
					 void *buf, size_t len);
/*
 * Validate len bytes at buf (magic, version, checksum, NUL-terminated
 * segment name with a dragon. prefix) and copy them into *desc_out.
 * Never reads past buf + len.  -DMEM_E_BADMAGIC, -DMEM_E_VERSION,
 * -DMEM_E_CORRUPT.
 */
DMEM_EXPORT int dmem_pool_desc_deserialize(const void *buf, size_t len,
					   dmem_pool_desc_t *desc_out);
/*
 * Text form for environment variables:
 *   dmem-pool:1:<node hex>:<uid hex>:<size>:<segname>
 * Writes a NUL-terminated string into buf (len bytes, DMEM_POOL_DESC_TEXT_MAX
 * is always enough) and returns its length, or -ENOSPC.
 */
DMEM_EXPORT int dmem_pool_desc_to_text(const dmem_pool_desc_t *desc, char *buf,
				       size_t len);
/* Parse the text form strictly (whole string) into *desc_out. */
DMEM_EXPORT int dmem_pool_desc_from_text(const char *text,
					 dmem_pool_desc_t *desc_out);

/* The same four for allocation descriptors.  Text form:
 *   dmem-alloc:1:<node hex>:<uid hex>:<offset>:<size>:<generation> */
DMEM_EXPORT int dmem_alloc_desc_serialize(const dmem_alloc_desc_t *desc,
					  void *buf, size_t len);
DMEM_EXPORT int dmem_alloc_desc_deserialize(const void *buf, size_t len,
					    dmem_alloc_desc_t *desc_out);
DMEM_EXPORT int dmem_alloc_desc_to_text(const dmem_alloc_desc_t *desc,
					char *buf, size_t len);
DMEM_EXPORT int dmem_alloc_desc_from_text(const char *text,
					  dmem_alloc_desc_t *desc_out);

/* ---- pools -------------------------------------------------------------- */

/* Opaque: this process's mapping of a pool. */
typedef struct dmem_pool dmem_pool_t;

/* Bits of dmem_pool_attr_t.field_mask saying which fields are set. */
#define DMEM_POOL_ATTR_INSTANCE (1u << 0)
#define DMEM_POOL_ATTR_FLAGS	(1u << 1)

/* dmem_pool_attr_t.flags */
#define DMEM_POOL_F_REPLACE                                                    \
	(1u << 0) /* unlink a leftover segment of that name */

typedef struct dmem_pool_attr {
	uint64_t field_mask;  /* DMEM_POOL_ATTR_* bits for the fields set */
	const char *instance; /* runtime instance ([A-Za-z0-9_-], at most
				 DMEM_INSTANCE_MAX chars);
				 default: $DRAGON_INSTANCE, else "p<pid>".
				 Borrowed: only read during the call. */
	uint32_t flags;	      /* DMEM_POOL_F_* */
	uint32_t reserved0;
	uint64_t reserved[6]; /* zero */
} dmem_pool_attr_t;

/*
 * Create a pool: a segment /dev/shm/dragon.<user>.<instance>.<name>, mode
 * 0600, mapped into this process.
 *   name  [A-Za-z0-9_-], 1..64 chars; borrowed.
 *   size  bytes; 0 means $DRAGON_DEFAULT_SEG_SZ (default 4 GiB).  The
 *         segment is sparse: pages are used only when touched.
 *   attr  may be NULL.
 *   pool_out  receives a handle owned by the caller; release it with
 *         dmem_pool_destroy (also removes the segment) or dmem_pool_detach.
 * Fails with -DMEM_E_SHMSMALL if size exceeds what /dev/shm has free (see
 * dmem(7)), -DMEM_E_ENV if DRAGON_DEFAULT_SEG_SZ/DRAGON_NODE_ID/
 * DRAGON_INSTANCE is malformed, -EEXIST if the segment exists, -EINVAL.
 */
DMEM_EXPORT int dmem_pool_create(const char *name, size_t size,
				 const dmem_pool_attr_t *attr,
				 dmem_pool_t **pool_out);

/* Unmap the pool, remove its segment (others' mappings stay valid until they
 * detach) and free the handle.  pool is consumed even on error. */
DMEM_EXPORT int dmem_pool_destroy(dmem_pool_t *pool);

/* Map the pool named by desc (borrowed).  Checks node, magic, layout
 * version, size and uid.  *pool_out is owned by the caller. */
DMEM_EXPORT int dmem_pool_attach(const dmem_pool_desc_t *desc,
				 dmem_pool_t **pool_out);

/* Unmap the pool and free the handle; the segment stays.  Consumes pool. */
DMEM_EXPORT int dmem_pool_detach(dmem_pool_t *pool);

/* Fill *desc_out with the pool's descriptor (with its checksum). */
DMEM_EXPORT int dmem_pool_desc_get(const dmem_pool_t *pool,
				   dmem_pool_desc_t *desc_out);

typedef struct dmem_pool_stats {
	uint64_t size;	       /* segment size */
	uint64_t heap_size;    /* bytes managed by the allocator */
	uint64_t free_bytes;   /* sum of free blocks (including headers) */
	uint64_t largest_free; /* largest single allocation possible now */
	uint64_t live_allocs;  /* allocated blocks, including cached ones */
	uint64_t free_blocks;  /* number of free blocks (fragmentation) */
	uint64_t recoveries;   /* interrupted operations repaired so far */
	uint64_t cached;       /* of live_allocs: freed small blocks parked
				  in this process's cache (dmem_pool_flush) */
	uint64_t reserved[8];
} dmem_pool_stats_t;

/* Snapshot of the pool's accounting (taken under the pool lock). */
DMEM_EXPORT int dmem_pool_stats(dmem_pool_t *pool,
				dmem_pool_stats_t *stats_out);

/*
 * Walk the whole heap and check every invariant (block chain, boundary tags,
 * free lists vs. bitmaps, no adjacent free blocks, accounting).  Returns 0,
 * or -DMEM_E_CORRUPT with the first violation in dmem_errmsg().  O(blocks);
 * for tests and diagnostics.
 */
DMEM_EXPORT int dmem_pool_check(dmem_pool_t *pool);

/*
 * Give the small freed blocks this process keeps for fast reuse (see
 * dmem(7)) back to the pool.  Happens by itself in dmem_pool_detach, when
 * an allocation would otherwise fail, and is skipped while anyone waits in
 * dmem_alloc_timed.  Useful before reading exact statistics.
 */
DMEM_EXPORT int dmem_pool_flush(dmem_pool_t *pool);

/* Where this process mapped the pool, and its size. */
DMEM_EXPORT void *dmem_pool_base(const dmem_pool_t *pool);
DMEM_EXPORT size_t dmem_pool_size(const dmem_pool_t *pool);

/* Offset of ptr from the pool base; DMEM_OFFSET_INVALID if ptr is outside. */
#define DMEM_OFFSET_INVALID UINT64_MAX
DMEM_EXPORT uint64_t dmem_pool_offset(const dmem_pool_t *pool, const void *ptr);
/* Pointer for an offset in this process; NULL if offset is outside. */
DMEM_EXPORT void *dmem_pool_ptr(const dmem_pool_t *pool, uint64_t offset);

/* Unchecked inline twins for hot paths (base = dmem_pool_base(pool)). */
static inline void *dmem_off2ptr(void *base, uint64_t offset)
{
	return (char *)base + offset;
}
static inline uint64_t dmem_ptr2off(const void *base, const void *ptr)
{
	return (uint64_t)((const char *)ptr - (const char *)base);
}

/*
 * Free every allocation owned by pid (a process that has exited; the
 * runtime calls this when it reaps one).  One call, safe against
 * concurrent use and against the caller dying part-way.  *nfreed_out (may
 * be NULL) receives the number of allocations freed.
 */
DMEM_EXPORT int dmem_pool_reclaim(dmem_pool_t *pool, pid_t pid,
				  size_t *nfreed_out);

/* ---- allocations -------------------------------------------------------- */

/* Owner value meaning "held by a shared structure" (e.g. a channel): never
 * reclaimed by pid. */
#define DMEM_OWNER_NONE 0

/* Largest alignment dmem_alloc honours: pools are mapped at addresses
 * aligned to it in every process. */
#define DMEM_MAX_ALIGN (2u << 20)

/*
 * Allocate size bytes (>= 1) aligned to align (0 means 16; else a power of
 * two up to DMEM_MAX_ALIGN) from the pool.  The calling process
 * becomes the owner.  *ptr_out points into this process's mapping.
 * -DMEM_E_NOSPACE if no free block is large enough now (dmem_errmsg says
 * which pool, its size, what was asked, the largest free block and how to
 * get a larger pool), -DMEM_E_TOOBIG if it can never fit, -EINVAL.
 */
DMEM_EXPORT int dmem_alloc(dmem_pool_t *pool, size_t size, size_t align,
			   void **ptr_out);

/*
 * As dmem_alloc, but while the pool is full wait until enough is freed or
 * until deadline (absolute CLOCK_MONOTONIC; NULL = forever; past = try
 * once), then -ETIMEDOUT.  A request that can never fit fails at once.
 */
DMEM_EXPORT int dmem_alloc_timed(dmem_pool_t *pool, size_t size, size_t align,
				 const struct timespec *deadline,
				 void **ptr_out);

/* Free an allocation by its pointer in this process's mapping.  Any process
 * may free any allocation.  -EINVAL if ptr is not a live allocation start. */
DMEM_EXPORT int dmem_free(dmem_pool_t *pool, void *ptr);

/* Free by descriptor; refuses stale (-DMEM_E_STALE), foreign and corrupt
 * descriptors, so a duplicate free through descriptors is detected. */
DMEM_EXPORT int dmem_alloc_free(dmem_pool_t *pool,
				const dmem_alloc_desc_t *desc);

/* Descriptor of the live allocation starting at ptr. */
DMEM_EXPORT int dmem_alloc_desc_get(dmem_pool_t *pool, const void *ptr,
				    dmem_alloc_desc_t *desc_out);

/*
 * Pointer, in this process, of the allocation named by desc (borrowed):
 * checks node, pool, bounds, checksum and generation.  Does not change the
 * owner.  -DMEM_E_FOREIGN, -DMEM_E_STALE, -DMEM_E_CORRUPT.
 */
DMEM_EXPORT int dmem_alloc_attach(dmem_pool_t *pool,
				  const dmem_alloc_desc_t *desc,
				  void **ptr_out);

/*
 * Give the allocation at ptr to new_owner (a pid, or DMEM_OWNER_NONE while a
 * channel holds it).  After the call a reclaim of the old owner no longer
 * frees it.
 */
DMEM_EXPORT int dmem_alloc_chown(dmem_pool_t *pool, void *ptr, pid_t new_owner);

/* Current owner of the allocation at ptr. */
DMEM_EXPORT int dmem_alloc_owner(dmem_pool_t *pool, const void *ptr,
				 pid_t *owner_out);

/* ---- deadlines, wait/wake ----------------------------------------------- */

/* *deadline_out = now (CLOCK_MONOTONIC) + timeout_ns. */
DMEM_EXPORT int dmem_deadline_after(uint64_t timeout_ns,
				    struct timespec *deadline_out);

/*
 * Block while *addr == expected.  addr is a 4-byte aligned word in memory
 * shared between processes (a pool, or any MAP_SHARED mapping; not
 * process-private futexes).  Spins briefly first when spinning can pay
 * (more than one core and no more runnable threads than cores), then
 * sleeps in the kernel.  Returns 0 when woken or when *addr != expected
 * (spurious returns are possible: re-check the condition), -ETIMEDOUT at
 * deadline (absolute CLOCK_MONOTONIC; NULL = forever), -EINVAL.
 */
DMEM_EXPORT int dmem_futex_wait(uint32_t *addr, uint32_t expected,
				const struct timespec *deadline);

/* Wake up to n waiters on addr (INT32_MAX: all).  Change *addr first.
 * Returns the number woken or a negative errno. */
DMEM_EXPORT int dmem_futex_wake(uint32_t *addr, int n);

#ifdef __cplusplus
}
#endif

#endif /* DRAGON_DMEM_H */
