/*
 * Locks: a channel of capacity 1 holding one token while the lock is free.
 * Acquiring receives the token, releasing sends it back, so a lock works
 * wherever its channel can be reached.  A recursive lock remembers its
 * owner (process and thread) and depth in the handle: only the owner's
 * process holds the token, and within it only the owning thread.
 */
#include "config.h"
#include "dchan_sync.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

struct dchan_lock {
	dchan_t *ch;
	unsigned flags;
	long owner; /* thread id holding it in this process, or 0 */
	unsigned depth;
};

static __thread long tid_cache;
static pthread_once_t tid_once = PTHREAD_ONCE_INIT;

/* A forked child's thread has an id of its own. */
static void tid_forget(void)
{
	tid_cache = 0;
}

static void tid_init(void)
{
	pthread_atfork(NULL, NULL, tid_forget);
}

static long thread_id(void)
{
	if (!tid_cache) {
		pthread_once(&tid_once, tid_init);
		tid_cache = syscall(SYS_gettid);
	}
	return tid_cache;
}

static int lock_new(dchan_t *ch, unsigned flags, dchan_lock_t **out)
{
	dchan_lock_t *l = calloc(1, sizeof *l);

	if (!l)
		return dchan__fail(-ENOMEM, "no memory for a lock handle");
	l->ch = ch;
	l->flags = flags;
	*out = l;
	return 0;
}

DCHAN_EXPORT int dchan_lock_create(dmem_pool_t *pool, unsigned flags,
				   dchan_lock_t **lock_out)
{
	struct dchan__tok t = {0};
	dchan_t *ch;
	int rc;

	if (!lock_out || (flags & ~DCHAN_LOCK_RECURSIVE))
		return dchan__fail(-EINVAL, "NULL output or unknown flags");
	rc = dchan__sync_create(pool, DCHAN__OBJ_LOCK, 1, &ch);
	if (rc < 0)
		return rc;
	ch->hdr->aux[0] = flags;
	rc = dchan__tok_send(ch, &t, 0);
	if (rc == 0)
		rc = lock_new(ch, flags, lock_out);
	if (rc < 0)
		dchan_destroy(ch);
	return rc;
}

DCHAN_EXPORT int dchan_lock_attach(const dchan_desc_t *desc,
				   dchan_lock_t **lock_out)
{
	uint64_t flags = 0;
	dchan_t *ch;
	int rc;

	if (!lock_out)
		return dchan__fail(-EINVAL, "NULL output");
	rc = dchan__sync_attach(desc, DCHAN__OBJ_LOCK, &ch, &flags);
	if (rc < 0)
		return rc;
	rc = lock_new(ch, (unsigned)flags, lock_out);
	if (rc < 0)
		dchan_detach(ch);
	return rc;
}

DCHAN_EXPORT int dchan_lock_desc_get(const dchan_lock_t *lock,
				     dchan_desc_t *desc_out)
{
	if (!lock)
		return dchan__fail(-EINVAL, "NULL lock");
	return dchan_desc_get(lock->ch, desc_out);
}

DCHAN_EXPORT int dchan_lock_acquire(dchan_lock_t *lock, uint64_t timeout_ns)
{
	struct dchan__tok t;
	long me = thread_id();
	int rc;

	if (!lock)
		return dchan__fail(-EINVAL, "NULL lock");
	if ((lock->flags & DCHAN_LOCK_RECURSIVE) &&
	    __atomic_load_n(&lock->owner, __ATOMIC_RELAXED) == me) {
		lock->depth++;
		return 0;
	}
	rc = dchan__tok_recv(lock->ch, &t, timeout_ns);
	if (rc < 0)
		return rc;
	__atomic_store_n(&lock->owner, me, __ATOMIC_RELAXED);
	lock->depth = 1;
	return 0;
}

DCHAN_EXPORT int dchan_lock_release(dchan_lock_t *lock)
{
	struct dchan__tok t = {0};
	bool mine;
	int rc;

	if (!lock)
		return dchan__fail(-EINVAL, "NULL lock");
	mine = __atomic_load_n(&lock->owner, __ATOMIC_RELAXED) == thread_id();
	if ((lock->flags & DCHAN_LOCK_RECURSIVE) && !mine)
		return dchan__fail(-EPERM, "release of a recursive lock by a "
					   "thread that does not own it");
	if (mine && --lock->depth > 0)
		return 0;
	if (mine)
		__atomic_store_n(&lock->owner, 0, __ATOMIC_RELAXED);
	rc = dchan__tok_send(lock->ch, &t, 0);
	if (rc == -EAGAIN)
		return dchan__fail(-EPERM, "release of a lock that is not "
					   "held");
	return rc;
}

DCHAN_EXPORT int dchan_lock_is_mine(const dchan_lock_t *lock,
				    unsigned *depth_out)
{
	if (!lock)
		return dchan__fail(-EINVAL, "NULL lock");
	if (__atomic_load_n(&lock->owner, __ATOMIC_RELAXED) != thread_id())
		return 0;
	if (depth_out)
		*depth_out = lock->depth;
	return 1;
}

DCHAN_EXPORT int dchan_lock_detach(dchan_lock_t *lock)
{
	int rc;

	if (!lock)
		return dchan__fail(-EINVAL, "NULL lock");
	rc = dchan_detach(lock->ch);
	free(lock);
	return rc;
}

DCHAN_EXPORT int dchan_lock_destroy(dchan_lock_t *lock)
{
	int rc;

	if (!lock)
		return dchan__fail(-EINVAL, "NULL lock");
	rc = dchan_destroy(lock->ch);
	free(lock);
	return rc;
}
