/*
 * Semaphores: the value is a counter token in a channel of capacity 1
 * (dchan__count_add/take in dchan_sync.c), so a semaphore costs one slot
 * whatever its value, and acquiring blocks in an ordinary receive.
 */
#include "config.h"
#include "dchan_sync.h"

#include <stdlib.h>

struct dchan_sem {
	dchan_t *ch;
	uint64_t max;
};

static int dchan__sem_new(dchan_t *ch, uint64_t max, dchan_sem_t **out)
{
	dchan_sem_t *s = calloc(1, sizeof *s);

	if (!s)
		return dchan__fail(-ENOMEM, "no memory for a semaphore handle");
	s->ch = ch;
	s->max = max;
	*out = s;
	return 0;
}

DCHAN_EXPORT int dchan_sem_create(dmem_pool_t *pool, unsigned value,
				  unsigned max, dchan_sem_t **sem_out)
{
	uint64_t m = max ? max : DCHAN_SEM_VALUE_MAX;
	dchan_t *ch;
	int rc;

	if (!sem_out || value > m || m > DCHAN_SEM_VALUE_MAX)
		return dchan__fail(-EINVAL,
				   "semaphore value %u above its "
				   "maximum %llu (at most %u)",
				   value, (unsigned long long)m,
				   DCHAN_SEM_VALUE_MAX);
	rc = dchan__sync_create(pool, DCHAN__OBJ_SEM, 1, &ch);
	if (rc < 0)
		return rc;
	ch->hdr->aux[0] = m;
	rc = value ? dchan__count_add(ch, value, m) : 0;
	if (rc == 0)
		rc = dchan__sem_new(ch, m, sem_out);
	if (rc < 0)
		dchan_destroy(ch);
	return rc;
}

DCHAN_EXPORT int dchan_sem_attach(const dchan_desc_t *desc,
				  dchan_sem_t **sem_out)
{
	uint64_t max = 0;
	dchan_t *ch;
	int rc;

	if (!sem_out)
		return dchan__fail(-EINVAL, "NULL output");
	rc = dchan__sync_attach(desc, DCHAN__OBJ_SEM, &ch, &max);
	if (rc < 0)
		return rc;
	rc = dchan__sem_new(ch, max ? max : DCHAN_SEM_VALUE_MAX, sem_out);
	if (rc < 0)
		dchan_detach(ch);
	return rc;
}

DCHAN_EXPORT int dchan_sem_desc_get(const dchan_sem_t *sem,
				    dchan_desc_t *desc_out)
{
	if (!sem)
		return dchan__fail(-EINVAL, "NULL semaphore");
	return dchan_desc_get(sem->ch, desc_out);
}

DCHAN_EXPORT int dchan_sem_acquire(dchan_sem_t *sem, uint64_t timeout_ns)
{
	if (!sem)
		return dchan__fail(-EINVAL, "NULL semaphore");
	return dchan__count_take(sem->ch, timeout_ns);
}

DCHAN_EXPORT int dchan_sem_release(dchan_sem_t *sem)
{
	if (!sem)
		return dchan__fail(-EINVAL, "NULL semaphore");
	return dchan__count_add(sem->ch, 1, sem->max);
}

DCHAN_EXPORT int dchan_sem_value(dchan_sem_t *sem)
{
	if (!sem)
		return dchan__fail(-EINVAL, "NULL semaphore");
	return (int)dchan__count_value(sem->ch);
}

DCHAN_EXPORT int dchan_sem_detach(dchan_sem_t *sem)
{
	int rc;

	if (!sem)
		return dchan__fail(-EINVAL, "NULL semaphore");
	rc = dchan_detach(sem->ch);
	free(sem);
	return rc;
}

DCHAN_EXPORT int dchan_sem_destroy(dchan_sem_t *sem)
{
	int rc;

	if (!sem)
		return dchan__fail(-EINVAL, "NULL semaphore");
	rc = dchan_destroy(sem->ch);
	free(sem);
	return rc;
}
