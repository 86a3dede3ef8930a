/*
 * Condition variables over a dchan lock, from three counters (each a
 * channel of semaphore kind holding a dchan__count token): how many
 * sleep, how many woke, and the one sleepers wait on.  A notifier wakes
 * sleepers one by one and waits until each has woken, so a notification
 * is never lost to a sleeper that had not yet started waiting, and never
 * counted for one that timed out.  A fourth, capacity-1 channel names the
 * object and holds its directory of the others (dchan_sync.h), so that
 * the whole object is reached by channel operations, through the gateway
 * from another node.
 */
#include "config.h"
#include "dchan_sync.h"

#include <stdlib.h>

struct dchan_cond {
	dchan_t *id;
	dchan_t *sleeping, *woken, *wait;
};

static void cond_free(dchan_cond_t *c, bool destroy)
{
	dchan_t *chs[4] = {c->sleeping, c->woken, c->wait, c->id};

	for (int i = 0; i < 4; i++)
		if (chs[i])
			(destroy ? dchan_destroy : dchan_detach)(chs[i]);
	free(c);
}

static int cond_open(dchan_t *id, dchan_cond_t **out)
{
	static const uint32_t kinds[3] = {DCHAN__OBJ_SEM, DCHAN__OBJ_SEM,
					  DCHAN__OBJ_SEM};
	dchan_cond_t *c = calloc(1, sizeof *c);
	dchan_t *chs[3];
	int rc;

	if (!c)
		return dchan__fail(-ENOMEM, "no memory for a condition handle");
	rc = dchan__sync_dir_open(id, kinds, 3, chs);
	if (rc < 0) {
		free(c);
		return rc;
	}
	c->id = id;
	c->sleeping = chs[0];
	c->woken = chs[1];
	c->wait = chs[2];
	*out = c;
	return 0;
}

DCHAN_EXPORT int dchan_cond_create(dmem_pool_t *pool, dchan_cond_t **cond_out)
{
	dchan_t *id = NULL, *ch[3] = {NULL, NULL, NULL};
	int rc;

	if (!cond_out)
		return dchan__fail(-EINVAL, "NULL output");
	rc = dchan__sync_create_slot(pool, DCHAN__OBJ_COND, 1,
				     DCHAN__DIR_BYTES(3), &id);
	for (int i = 0; rc == 0 && i < 3; i++)
		rc = dchan__sync_create(pool, DCHAN__OBJ_SEM, 1, &ch[i]);
	if (rc == 0)
		rc = dchan__sync_dir_write(id, ch, 3);
	if (rc == 0)
		rc = cond_open(id, cond_out);
	for (int i = 0; i < 3; i++)
		if (ch[i])
			(rc ? dchan_destroy : dchan_detach)(ch[i]);
	if (rc < 0 && id)
		dchan_destroy(id);
	return rc;
}

DCHAN_EXPORT int dchan_cond_attach(const dchan_desc_t *desc,
				   dchan_cond_t **cond_out)
{
	dchan_t *id;
	int rc;

	if (!cond_out)
		return dchan__fail(-EINVAL, "NULL output");
	rc = dchan__sync_attach(desc, DCHAN__OBJ_COND, &id, NULL);
	if (rc < 0)
		return rc;
	rc = cond_open(id, cond_out);
	if (rc < 0)
		dchan_detach(id);
	return rc;
}

DCHAN_EXPORT int dchan_cond_desc_get(const dchan_cond_t *cond,
				     dchan_desc_t *desc_out)
{
	if (!cond)
		return dchan__fail(-EINVAL, "NULL condition");
	return dchan_desc_get(cond->id, desc_out);
}

DCHAN_EXPORT int dchan_cond_wait(dchan_cond_t *cond, dchan_lock_t *lock,
				 uint64_t timeout_ns)
{
	unsigned depth = 0;
	int rc, rc2 = 0;

	if (!cond || !lock)
		return dchan__fail(-EINVAL, "NULL condition or lock");
	if (dchan_lock_is_mine(lock, &depth) != 1)
		return dchan__fail(-EPERM, "condition wait without holding "
					   "the lock");
	rc = dchan__count_add(cond->sleeping, 1);
	if (rc < 0)
		return rc;
	for (unsigned i = 0; i < depth; i++)
		dchan_lock_release(lock);
	rc = dchan__count_take(cond->wait, timeout_ns);
	/* woken (or not): say so, then take the lock back at its depth */
	if (dchan__count_add(cond->woken, 1) < 0)
		rc2 = -EIO;
	for (unsigned i = 0; i < depth; i++)
		dchan_lock_acquire(lock, DCHAN_FOREVER);
	if (rc == -EAGAIN)
		rc = -ETIMEDOUT;
	return rc < 0 ? rc : rc2;
}

DCHAN_EXPORT int dchan_cond_notify(dchan_cond_t *cond, unsigned n)
{
	unsigned woken = 0;

	if (!cond)
		return dchan__fail(-EINVAL, "NULL condition");
	/* forget sleepers that timed out since the last notify */
	while (dchan__count_take(cond->woken, 0) == 0)
		dchan__count_take(cond->sleeping, 0);
	while (woken < n && dchan__count_take(cond->sleeping, 0) == 0) {
		dchan__count_add(cond->wait, 1);
		woken++;
	}
	for (unsigned i = 0; i < woken; i++)
		dchan__count_take(cond->woken, DCHAN_FOREVER);
	/* a sleeper that timed out left its wake-up unused */
	while (dchan__count_take(cond->wait, 0) == 0)
		;
	return (int)woken;
}

DCHAN_EXPORT int dchan_cond_notify_all(dchan_cond_t *cond)
{
	return dchan_cond_notify(cond, UINT32_MAX);
}

DCHAN_EXPORT int dchan_cond_detach(dchan_cond_t *cond)
{
	if (!cond)
		return dchan__fail(-EINVAL, "NULL condition");
	cond_free(cond, false);
	return 0;
}

DCHAN_EXPORT int dchan_cond_destroy(dchan_cond_t *cond)
{
	if (!cond)
		return dchan__fail(-EINVAL, "NULL condition");
	cond_free(cond, true);
	return 0;
}
