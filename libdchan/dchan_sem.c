/*
 * Semaphores, three channels of the pool:
 *   - the one the descriptor names holds the directory of the other two
 *     (dchan_sync.h) and, in its header, the maximum;
 *   - the counter: a channel of capacity 1 holding one token, always
 *     (value 0 included), {a = value, b = number of registered waiters}.
 *     An operation receives it, changes it and sends it back, so while a
 *     process holds it no other can read or change the value: the bound
 *     and the value read are exact;
 *   - the signal channel, where a release leaves one wake-up per unit for
 *     registered waiters.  Wake-ups are hints: a woken waiter takes the
 *     counter again and re-checks, so a stale one costs one look.
 * Only channel operations, so a semaphore of another node works through
 * the gateway.  The counter is absent only for the moment a process holds
 * it; a process killed in that window takes it along, and the others'
 * operations then fail with -EDEADLK after DCHAN__SEM_HOLD_NS.  A waiter
 * killed while registered only leaves the waiting count too high, which
 * costs spare wake-ups (at most the signal channel's capacity), nothing
 * else.
 */
#include "config.h"
#include "dchan_sync.h"

#include <stdlib.h>

/* The longest any process holds the counter: one receive and one send. */
#define DCHAN__SEM_HOLD_NS (60ull * 1000000000ull)
/* Wake-ups the signal channel holds; a waiter that takes a unit and
 * leaves units and waiters behind passes a wake-up on, so a full signal
 * channel never loses one. */
#define DCHAN__SEM_SIGNALS 8u

struct dchan_sem {
	dchan_t *id, *cnt, *sig;
	uint64_t max;
};

static void sem_free(dchan_sem_t *s, bool destroy)
{
	dchan_t *chs[3] = {s->cnt, s->sig, s->id};

	for (int i = 0; i < 3; i++)
		if (chs[i])
			(destroy ? dchan_destroy : dchan_detach)(chs[i]);
	free(s);
}

static int sem_open(dchan_t *id, uint64_t max, dchan_sem_t **out)
{
	static const uint32_t kinds[2] = {DCHAN__OBJ_SEM, DCHAN__OBJ_SEM};
	dchan_sem_t *s = calloc(1, sizeof *s);
	dchan_t *chs[2];
	int rc;

	if (!s)
		return dchan__fail(-ENOMEM, "no memory for a semaphore handle");
	rc = dchan__sync_dir_open(id, kinds, 2, chs);
	if (rc < 0) {
		free(s);
		return rc;
	}
	s->id = id;
	s->cnt = chs[0];
	s->sig = chs[1];
	s->max = max;
	*out = s;
	return 0;
}

/* Take the counter token out of the channel (it is never gone for long). */
static int sem_hold(dchan_sem_t *s, struct dchan__tok *t)
{
	int rc = dchan__tok_recv(s->cnt, t, DCHAN__SEM_HOLD_NS);

	if (rc == -ETIMEDOUT || rc == -EAGAIN)
		return dchan__fail(-EDEADLK,
				   "the semaphore's counter has been held "
				   "for over %llu s: a process was probably "
				   "killed while holding it; destroy the "
				   "semaphore and make a new one",
				   DCHAN__SEM_HOLD_NS / 1000000000ull);
	return rc;
}

/* Put the counter token back; nothing else can fill its slot meanwhile. */
static int sem_put(dchan_sem_t *s, const struct dchan__tok *t)
{
	return dchan__tok_send(s->cnt, t, DCHAN_FOREVER);
}

/* Leave up to n wake-ups; a full signal channel already holds enough. */
static void sem_signal(dchan_sem_t *s, uint64_t n)
{
	struct dchan__tok z = {0};

	for (uint64_t i = 0; i < n; i++)
		if (dchan__tok_send(s->sig, &z, 0) < 0)
			break;
}

DCHAN_EXPORT int dchan_sem_create(dmem_pool_t *pool, unsigned value,
				  unsigned max, dchan_sem_t **sem_out)
{
	uint64_t m = max ? max : DCHAN_SEM_VALUE_MAX;
	struct dchan__tok t = {.a = value};
	dchan_t *id = NULL, *ch[2] = {NULL, NULL};
	int rc;

	if (!sem_out || value > m || m > DCHAN_SEM_VALUE_MAX)
		return dchan__fail(-EINVAL,
				   "semaphore value %u above its "
				   "maximum %llu (at most %u)",
				   value, (unsigned long long)m,
				   DCHAN_SEM_VALUE_MAX);
	rc = dchan__sync_create_slot(pool, DCHAN__OBJ_SEM, 1,
				     DCHAN__DIR_BYTES(2), &id);
	if (rc == 0)
		rc = dchan__sync_create(pool, DCHAN__OBJ_SEM, 1, &ch[0]);
	if (rc == 0)
		rc = dchan__sync_create(pool, DCHAN__OBJ_SEM,
					DCHAN__SEM_SIGNALS, &ch[1]);
	if (rc == 0)
		rc = dchan__tok_send(ch[0], &t, 0);
	if (rc == 0) {
		id->hdr->aux[0] = m;
		rc = dchan__sync_dir_write(id, ch, 2);
	}
	if (rc == 0)
		rc = sem_open(id, m, sem_out);
	for (int i = 0; i < 2; i++)
		if (ch[i])
			(rc ? dchan_destroy : dchan_detach)(ch[i]);
	if (rc < 0 && id)
		dchan_destroy(id);
	return rc;
}

DCHAN_EXPORT int dchan_sem_attach(const dchan_desc_t *desc,
				  dchan_sem_t **sem_out)
{
	uint64_t max = 0;
	dchan_t *id;
	int rc;

	if (!sem_out)
		return dchan__fail(-EINVAL, "NULL output");
	rc = dchan__sync_attach(desc, DCHAN__OBJ_SEM, &id, &max);
	if (rc < 0)
		return rc;
	rc = sem_open(id, max ? max : DCHAN_SEM_VALUE_MAX, sem_out);
	if (rc < 0)
		dchan_detach(id);
	return rc;
}

DCHAN_EXPORT int dchan_sem_desc_get(const dchan_sem_t *sem,
				    dchan_desc_t *desc_out)
{
	if (!sem)
		return dchan__fail(-EINVAL, "NULL semaphore");
	return dchan_desc_get(sem->id, desc_out);
}

/*
 * Take the counter; with a unit there, take it.  Otherwise register as a
 * waiter in the token, put it back and wait for a wake-up (or the
 * deadline), then take the counter again to re-check and unregister.
 */
DCHAN_EXPORT int dchan_sem_acquire(dchan_sem_t *sem, uint64_t timeout_ns)
{
	uint64_t start = dchan__now_ns(), left = timeout_ns;
	bool waiting = false;
	struct dchan__tok t, z;
	int rc;

	if (!sem)
		return dchan__fail(-EINVAL, "NULL semaphore");
	for (;;) {
		rc = sem_hold(sem, &t);
		if (rc < 0)
			return rc;
		if (waiting && t.b > 0)
			t.b--;
		waiting = false;
		if (t.a > 0) {
			t.a--;
			rc = sem_put(sem, &t);
			if (rc == 0 && t.a > 0 && t.b > 0)
				sem_signal(sem, 1);
			return rc;
		}
		if (timeout_ns != DCHAN_FOREVER) {
			uint64_t spent = dchan__now_ns() - start;

			left = spent < timeout_ns ? timeout_ns - spent : 0;
		}
		if (left == 0) {
			rc = sem_put(sem, &t);
			return rc < 0 ? rc
				      : (timeout_ns ? -ETIMEDOUT : -EAGAIN);
		}
		t.b++;
		rc = sem_put(sem, &t);
		if (rc < 0)
			return rc;
		waiting = true;
		rc = dchan__tok_recv(sem->sig, &z, left);
		if (rc < 0 && rc != -ETIMEDOUT && rc != -EAGAIN) {
			/* unregister, then report the failure */
			if (sem_hold(sem, &t) == 0) {
				if (t.b > 0)
					t.b--;
				sem_put(sem, &t);
			}
			return rc;
		}
	}
}

DCHAN_EXPORT int dchan_sem_release(dchan_sem_t *sem)
{
	struct dchan__tok t;
	int rc;

	if (!sem)
		return dchan__fail(-EINVAL, "NULL semaphore");
	rc = sem_hold(sem, &t);
	if (rc < 0)
		return rc;
	if (t.a + 1 > sem->max) {
		rc = sem_put(sem, &t);
		return rc < 0 ? rc
			      : dchan__fail(-EOVERFLOW,
					    "semaphore release past its "
					    "maximum %llu",
					    (unsigned long long)sem->max);
	}
	t.a++;
	rc = sem_put(sem, &t);
	if (rc == 0 && t.b > 0)
		sem_signal(sem, 1);
	return rc;
}

DCHAN_EXPORT int dchan_sem_value(dchan_sem_t *sem)
{
	struct dchan__tok t;
	int rc;

	if (!sem)
		return dchan__fail(-EINVAL, "NULL semaphore");
	rc = dchan__tok_peek(sem->cnt, &t, DCHAN__SEM_HOLD_NS);
	if (rc == -ETIMEDOUT || rc == -EAGAIN)
		return dchan__fail(-EDEADLK,
				   "the semaphore's counter has been held "
				   "for over %llu s: a process was probably "
				   "killed while holding it",
				   DCHAN__SEM_HOLD_NS / 1000000000ull);
	return rc < 0 ? rc : (int)t.a;
}

DCHAN_EXPORT int dchan_sem_detach(dchan_sem_t *sem)
{
	if (!sem)
		return dchan__fail(-EINVAL, "NULL semaphore");
	sem_free(sem, false);
	return 0;
}

DCHAN_EXPORT int dchan_sem_destroy(dchan_sem_t *sem)
{
	if (!sem)
		return dchan__fail(-EINVAL, "NULL semaphore");
	sem_free(sem, true);
	return 0;
}
