/*
 * Events: a channel of capacity 1 that holds a token while the event is
 * set.  Waiting is a poll for a readable channel, so any number of waiters
 * see the same token without taking it.
 */
#include "config.h"
#include "dchan_sync.h"

#include <stdlib.h>

struct dchan_event {
	dchan_t *ch;
};

static int event_new(dchan_t *ch, dchan_event_t **out)
{
	dchan_event_t *e = calloc(1, sizeof *e);

	if (!e)
		return dchan__fail(-ENOMEM, "no memory for an event handle");
	e->ch = ch;
	*out = e;
	return 0;
}

DCHAN_EXPORT int dchan_event_create(dmem_pool_t *pool, dchan_event_t **ev_out)
{
	dchan_t *ch;
	int rc;

	if (!ev_out)
		return dchan__fail(-EINVAL, "NULL output");
	rc = dchan__sync_create(pool, DCHAN__OBJ_EVENT, 1, &ch);
	if (rc < 0)
		return rc;
	rc = event_new(ch, ev_out);
	if (rc < 0)
		dchan_destroy(ch);
	return rc;
}

DCHAN_EXPORT int dchan_event_attach(const dchan_desc_t *desc,
				    dchan_event_t **ev_out)
{
	dchan_t *ch;
	int rc;

	if (!ev_out)
		return dchan__fail(-EINVAL, "NULL output");
	rc = dchan__sync_attach(desc, DCHAN__OBJ_EVENT, &ch, NULL);
	if (rc < 0)
		return rc;
	rc = event_new(ch, ev_out);
	if (rc < 0)
		dchan_detach(ch);
	return rc;
}

DCHAN_EXPORT int dchan_event_desc_get(const dchan_event_t *ev,
				      dchan_desc_t *desc_out)
{
	if (!ev)
		return dchan__fail(-EINVAL, "NULL event");
	return dchan_desc_get(ev->ch, desc_out);
}

DCHAN_EXPORT int dchan_event_set(dchan_event_t *ev)
{
	struct dchan__tok t = {1, 0, 0, 0};
	int rc;

	if (!ev)
		return dchan__fail(-EINVAL, "NULL event");
	rc = dchan__tok_send(ev->ch, &t, 0);
	return rc == -EAGAIN ? 0 : rc; /* already set */
}

DCHAN_EXPORT int dchan_event_clear(dchan_event_t *ev)
{
	struct dchan__tok t;
	int rc;

	if (!ev)
		return dchan__fail(-EINVAL, "NULL event");
	rc = dchan__tok_recv(ev->ch, &t, 0);
	return rc == -EAGAIN ? 0 : rc; /* already clear */
}

DCHAN_EXPORT int dchan_event_is_set(dchan_event_t *ev)
{
	unsigned rev;
	int rc;

	if (!ev)
		return dchan__fail(-EINVAL, "NULL event");
	rc = dchan_poll(ev->ch, DCHAN_POLLIN, 0, &rev);
	if (rc == -EAGAIN)
		return 0;
	return rc < 0 ? rc : 1;
}

DCHAN_EXPORT int dchan_event_wait(dchan_event_t *ev, uint64_t timeout_ns)
{
	unsigned rev;

	if (!ev)
		return dchan__fail(-EINVAL, "NULL event");
	return dchan_poll(ev->ch, DCHAN_POLLIN, timeout_ns, &rev);
}

DCHAN_EXPORT int dchan_event_detach(dchan_event_t *ev)
{
	int rc;

	if (!ev)
		return dchan__fail(-EINVAL, "NULL event");
	rc = dchan_detach(ev->ch);
	free(ev);
	return rc;
}

DCHAN_EXPORT int dchan_event_destroy(dchan_event_t *ev)
{
	int rc;

	if (!ev)
		return dchan__fail(-EINVAL, "NULL event");
	rc = dchan_destroy(ev->ch);
	free(ev);
	return rc;
}
