/*
 * Barriers, from three channels:
 *   id       capacity 1: the barrier's name; holds its directory (the
 *            other two channels, dchan_sync.h) and the number of parties
 *   state    capacity 1: one token {generation, count waiting, broken}; a
 *            party changes the state by receiving the token and sending
 *            it back, so the token is the barrier's lock
 *   release  capacity 2 * parties: {generation, go|broken} messages, one
 *            for each party that waits, sent by the party that completes
 *            (or breaks) the generation
 * A waiter receives release messages until it gets one of its own
 * generation; one of another generation is put back for its owner.  A
 * waiter that times out breaks the barrier if its generation is still
 * open; if the generation closed meanwhile, its message is already on the
 * way and it takes it.  Everything is a channel operation on a channel
 * the id names, so a barrier on another node works through the gateway.
 */
#include "config.h"
#include "dchan_sync.h"

#include <sched.h>
#include <stdlib.h>

#define REL_GO	   1
#define REL_BROKEN 2

struct dchan_barrier {
	dchan_t *id;
	dchan_t *state;
	dchan_t *rel;
	unsigned parties;
};

/* state token: a = generation, b = waiting, c = broken */

static int bar_new(dchan_t *id, uint64_t parties, dchan_barrier_t **out)
{
	static const uint32_t kinds[2] = {DCHAN__OBJ_BARRIER,
					  DCHAN__OBJ_BARRIER};
	dchan_barrier_t *b;
	dchan_t *chs[2];
	int rc;

	if (parties == 0 || parties > DCHAN_BARRIER_PARTIES_MAX)
		return dchan__fail(-DCHAN_E_BADDESC,
				   "barrier records %llu parties (1..%u)",
				   (unsigned long long)parties,
				   DCHAN_BARRIER_PARTIES_MAX);
	rc = dchan__sync_dir_open(id, kinds, 2, chs);
	if (rc < 0)
		return rc;
	b = calloc(1, sizeof *b);
	if (!b) {
		dchan_detach(chs[1]);
		dchan_detach(chs[0]);
		return dchan__fail(-ENOMEM, "no memory for a barrier handle");
	}
	b->id = id;
	b->state = chs[0];
	b->rel = chs[1];
	b->parties = (unsigned)parties;
	*out = b;
	return 0;
}

DCHAN_EXPORT int dchan_barrier_create(dmem_pool_t *pool, unsigned parties,
				      dchan_barrier_t **bar_out)
{
	struct dchan__tok t = {0};
	dchan_t *chs[3] = {NULL, NULL, NULL}; /* id, state, release */
	int rc;

	if (!bar_out || parties == 0 || parties > DCHAN_BARRIER_PARTIES_MAX)
		return dchan__fail(-EINVAL, "a barrier needs 1..%u parties",
				   DCHAN_BARRIER_PARTIES_MAX);
	rc = dchan__sync_create_slot(pool, DCHAN__OBJ_BARRIER, 1,
				     DCHAN__DIR_BYTES(2), &chs[0]);
	if (rc == 0)
		rc = dchan__sync_create(pool, DCHAN__OBJ_BARRIER, 1, &chs[1]);
	if (rc == 0)
		rc = dchan__sync_create(pool, DCHAN__OBJ_BARRIER, 2 * parties,
					&chs[2]);
	if (rc == 0) {
		chs[0]->hdr->aux[0] = parties;
		rc = dchan__sync_dir_write(chs[0], chs + 1, 2);
	}
	if (rc == 0)
		rc = dchan__tok_send(chs[1], &t, 0);
	if (rc == 0)
		rc = bar_new(chs[0], parties, bar_out);
	for (int i = 2; i >= 1; i--)
		if (chs[i])
			(rc ? dchan_destroy : dchan_detach)(chs[i]);
	if (rc < 0 && chs[0])
		dchan_destroy(chs[0]);
	return rc;
}

DCHAN_EXPORT int dchan_barrier_attach(const dchan_desc_t *desc,
				      dchan_barrier_t **bar_out)
{
	uint64_t parties = 0;
	dchan_t *id;
	int rc;

	if (!bar_out)
		return dchan__fail(-EINVAL, "NULL output");
	rc = dchan__sync_attach(desc, DCHAN__OBJ_BARRIER, &id, &parties);
	if (rc < 0)
		return rc;
	rc = bar_new(id, parties, bar_out);
	if (rc < 0)
		dchan_detach(id);
	return rc;
}

DCHAN_EXPORT int dchan_barrier_desc_get(const dchan_barrier_t *bar,
					dchan_desc_t *desc_out)
{
	if (!bar)
		return dchan__fail(-EINVAL, "NULL barrier");
	return dchan_desc_get(bar->id, desc_out);
}

/* Tell `n` waiters of generation gen how it ended. */
static int bar_release(dchan_barrier_t *b, uint64_t gen, uint64_t n,
		       uint64_t how)
{
	struct dchan__tok m = {gen, how, 0, 0};

	for (uint64_t i = 0; i < n; i++) {
		int rc = dchan__tok_send(b->rel, &m, DCHAN_FOREVER);

		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Wait for this generation's message; others' go back for their owners. */
static int bar_await(dchan_barrier_t *b, uint64_t gen, uint64_t timeout_ns)
{
	struct dchan__tok m;
	int rc;

	for (;;) {
		rc = dchan__tok_recv(b->rel, &m, timeout_ns);
		if (rc < 0)
			return rc;
		if (m.a == gen)
			return m.b == REL_GO ? 0 : -DCHAN_E_BROKEN;
		rc = dchan__tok_send(b->rel, &m, DCHAN_FOREVER);
		if (rc < 0)
			return rc;
		sched_yield(); /* let its owner have it */
	}
}

/* Our wait timed out: break the generation if it is still open, or take
 * the message that already closed it. */
static int bar_timeout(dchan_barrier_t *b, uint64_t gen)
{
	struct dchan__tok t;
	int rc = dchan__tok_recv(b->state, &t, DCHAN_FOREVER);

	if (rc < 0)
		return rc;
	if (t.a == gen && !t.c) {
		rc = bar_release(b, gen, t.b - 1, REL_BROKEN);
		t.b = 0;
		t.c = 1;
		dchan__tok_send(b->state, &t, DCHAN_FOREVER);
		return rc < 0 ? rc
			      : dchan__fail(-ETIMEDOUT,
					    "barrier wait "
					    "timed out; barrier broken");
	}
	rc = dchan__tok_send(b->state, &t, DCHAN_FOREVER);
	if (rc < 0)
		return rc;
	return bar_await(b, gen, DCHAN_FOREVER);
}

DCHAN_EXPORT int dchan_barrier_wait(dchan_barrier_t *bar, uint64_t timeout_ns)
{
	struct dchan__tok t;
	uint64_t gen, index;
	int rc;

	if (!bar)
		return dchan__fail(-EINVAL, "NULL barrier");
	rc = dchan__tok_recv(bar->state, &t, DCHAN_FOREVER);
	if (rc < 0)
		return rc;
	if (t.c) {
		dchan__tok_send(bar->state, &t, DCHAN_FOREVER);
		return dchan__fail(-DCHAN_E_BROKEN, "barrier is broken");
	}
	gen = t.a;
	index = t.b++;
	if (t.b == bar->parties) {
		rc = bar_release(bar, gen, t.b - 1, REL_GO);
		t.a++;
		t.b = 0;
		dchan__tok_send(bar->state, &t, DCHAN_FOREVER);
		return rc < 0 ? rc : (int)index;
	}
	rc = dchan__tok_send(bar->state, &t, DCHAN_FOREVER);
	if (rc < 0)
		return rc;
	rc = bar_await(bar, gen, timeout_ns);
	if (rc == -ETIMEDOUT || rc == -EAGAIN)
		rc = bar_timeout(bar, gen);
	if (rc == -DCHAN_E_BROKEN)
		return dchan__fail(rc, "barrier broken while waiting");
	return rc < 0 ? rc : (int)index;
}

/* Break (reset == false) or reset the barrier; waiters get BROKEN. */
static int bar_end(dchan_barrier_t *b, bool reset)
{
	struct dchan__tok t;
	int rc = dchan__tok_recv(b->state, &t, DCHAN_FOREVER);

	if (rc < 0)
		return rc;
	if (!t.c || t.b)
		rc = bar_release(b, t.a, t.b, REL_BROKEN);
	t.b = 0;
	t.c = !reset;
	if (reset)
		t.a++;
	dchan__tok_send(b->state, &t, DCHAN_FOREVER);
	return rc;
}

DCHAN_EXPORT int dchan_barrier_abort(dchan_barrier_t *bar)
{
	if (!bar)
		return dchan__fail(-EINVAL, "NULL barrier");
	return bar_end(bar, false);
}

DCHAN_EXPORT int dchan_barrier_reset(dchan_barrier_t *bar)
{
	if (!bar)
		return dchan__fail(-EINVAL, "NULL barrier");
	return bar_end(bar, true);
}

static int bar_peek(dchan_barrier_t *b, struct dchan__tok *t)
{
	if (!b)
		return dchan__fail(-EINVAL, "NULL barrier");
	return dchan__tok_peek(b->state, t, DCHAN_FOREVER);
}

DCHAN_EXPORT int dchan_barrier_n_waiting(dchan_barrier_t *bar)
{
	struct dchan__tok t;
	int rc = bar_peek(bar, &t);

	return rc < 0 ? rc : (int)t.b;
}

DCHAN_EXPORT int dchan_barrier_is_broken(dchan_barrier_t *bar)
{
	struct dchan__tok t;
	int rc = bar_peek(bar, &t);

	return rc < 0 ? rc : t.c != 0;
}

DCHAN_EXPORT int dchan_barrier_parties(const dchan_barrier_t *bar)
{
	if (!bar)
		return dchan__fail(-EINVAL, "NULL barrier");
	return (int)bar->parties;
}

DCHAN_EXPORT int dchan_barrier_detach(dchan_barrier_t *bar)
{
	if (!bar)
		return dchan__fail(-EINVAL, "NULL barrier");
	dchan_detach(bar->rel);
	dchan_detach(bar->state);
	dchan_detach(bar->id);
	free(bar);
	return 0;
}

DCHAN_EXPORT int dchan_barrier_destroy(dchan_barrier_t *bar)
{
	int rc, rc2, rc3;

	if (!bar)
		return dchan__fail(-EINVAL, "NULL barrier");
	rc = dchan_destroy(bar->rel);
	rc2 = dchan_destroy(bar->state);
	rc3 = dchan_destroy(bar->id);
	free(bar);
	if (rc == 0)
		rc = rc2 < 0 ? rc2 : rc3;
	return rc;
}
