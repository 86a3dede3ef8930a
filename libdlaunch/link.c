/* Endpoints that carry service messages: infrastructure channels.
 *
 * Everything above this file sees only "an endpoint that receives, named
 * by text that others send to".  Here an endpoint is a libdchan channel in
 * the runtime's infrastructure pool (not the default pool, so a user who
 * fills the default pool cannot starve the services): the receive side
 * creates it, its descriptor's text form travels in messages and in the
 * environment, and senders attach to it.  Messages larger than a slot
 * travel as pool allocations, which dchan handles.
 */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "dlaunch_private.h"

struct dlaunch__ep {
	dchan_t *ch;
	bool owner; /* made here: destroyed on close */
};

int dlaunch__link_init(const char *pool_text)
{
	(void)pool_text;
	return 0;
}

/* The pool an endpoint's channel lives in (borrowed from its handle).
 * Clients make their reply channels there: through the handle dchan
 * already mapped, never a second mapping of the same segment. */
dmem_pool_t *dlaunch__ep_pool(const dlaunch__ep_t *ep)
{
	return dchan_pool(ep->ch);
}

/* libdchan reaches the channels of a pool through one mapping per process,
 * the first it was given.  Were that the runtime's own pool handle, it
 * would be unmapped by dlaunch_runtime_stop under any channel handle still
 * open in this process (the embedded runtime's own program keeps some).
 * So the anchor is created through pool, let go, and attached again by its
 * descriptor: libdchan then maps the pool itself and unmaps it only with
 * the last handle that uses it, whoever made that handle. */
int dlaunch__pool_lend(dmem_pool_t *pool, dchan_t **anchor_out)
{
	dchan_attr_t a = {.field_mask =
				  DCHAN_ATTR_CAPACITY | DCHAN_ATTR_SLOT_SIZE,
			  .capacity = 1,
			  .slot_size = 8};
	dchan_desc_t d;
	dchan_t *ch;
	int rc;

	rc = dchan_create(pool, &a, &ch);
	if (rc)
		return rc;
	rc = dchan_desc_get(ch, &d);
	if (rc) {
		dchan_destroy(ch);
		return rc;
	}
	dchan_detach(ch);
	rc = dchan_attach(&d, anchor_out);
	if (rc == 0 && dchan_pool(*anchor_out) == pool)
		dlaunch__log(DLAUNCH_LOG_WARNING,
			     "libdchan kept the runtime's own mapping of a "
			     "pool: channel handles must be closed before "
			     "dlaunch_runtime_stop");
	return rc;
}

int dlaunch__ep_create(dmem_pool_t *pool, unsigned capacity,
		       dlaunch__ep_t **ep_out)
{
	dchan_attr_t a = {.field_mask =
				  DCHAN_ATTR_CAPACITY | DCHAN_ATTR_SLOT_SIZE,
			  .capacity = capacity,
			  .slot_size = 512};
	dlaunch__ep_t *ep = calloc(1, sizeof *ep);
	int rc;

	if (!ep)
		return -ENOMEM;
	rc = pool ? dchan_create(pool, &a, &ep->ch) : -DLAUNCH_E_ENV;
	if (rc) {
		free(ep);
		return rc;
	}
	ep->owner = true;
	*ep_out = ep;
	return 0;
}

int dlaunch__ep_text(const dlaunch__ep_t *ep, char *buf, size_t len)
{
	dchan_desc_t d;
	int rc = dchan_desc_get(ep->ch, &d);

	return rc ? rc : dchan_desc_to_text(&d, buf, len);
}

int dlaunch__ep_open(const char *text, dlaunch__ep_t **ep_out)
{
	dlaunch__ep_t *ep;
	dchan_desc_t d;
	int rc;

	if (!text || dchan_desc_from_text(text, &d))
		return -DLAUNCH_E_ENV;
	ep = calloc(1, sizeof *ep);
	if (!ep)
		return -ENOMEM;
	rc = dchan_attach(&d, &ep->ch);
	if (rc) {
		free(ep);
		return rc == -DCHAN_E_DESTROYED ? -DLAUNCH_E_SERVICES : rc;
	}
	*ep_out = ep;
	return 0;
}

int dlaunch__ep_send(dlaunch__ep_t *ep, const void *buf, size_t len,
		     uint64_t timeout_ns)
{
	int rc = dchan_send(ep->ch, buf, len, timeout_ns);

	return rc == -DCHAN_E_DESTROYED ? -DLAUNCH_E_SERVICES : rc;
}

int dlaunch__ep_recv(dlaunch__ep_t *ep, void *buf, size_t cap,
		     uint64_t timeout_ns, size_t *len_out)
{
	int rc = dchan_recv(ep->ch, buf, cap, timeout_ns, len_out);

	return rc == -DCHAN_E_DESTROYED ? -DLAUNCH_E_SERVICES : rc;
}

void dlaunch__ep_close(dlaunch__ep_t *ep)
{
	if (!ep)
		return;
	if (ep->owner)
		dchan_destroy(ep->ch);
	else
		dchan_detach(ep->ch);
	free(ep);
}

void dlaunch__ep_destroy_text(const char *text)
{
	dlaunch__ep_t *ep;

	if (dlaunch__ep_open(text, &ep) == 0) {
		ep->owner = true;
		dlaunch__ep_close(ep);
	}
}
