/*
 * What the sync objects share: each is one or more small channels, tagged
 * in their header with the kind of object, so that attaching a lock's
 * descriptor as a semaphore is an error rather than a silent misuse.
 */
#include "config.h"
#include "dchan_sync.h"

#include <stdlib.h>

int dchan__sync_create(dmem_pool_t *pool, uint32_t kind, uint32_t cap,
		       dchan_t **ch_out)
{
	dchan_attr_t a = {.field_mask =
				  DCHAN_ATTR_CAPACITY | DCHAN_ATTR_SLOT_SIZE,
			  .capacity = cap,
			  .slot_size = 32};

	return dchan__create(pool, &a, kind, ch_out);
}

int dchan__sync_attach(const dchan_desc_t *d, uint32_t kind, dchan_t **ch_out,
		       uint64_t *param_out)
{
	dchan_stats_t st;
	dchan_t *ch;
	int rc = dchan_attach(d, &ch);

	if (rc < 0)
		return rc;
	rc = dchan_stats(ch, &st); /* through the gateway if remote */
	if (rc < 0) {
		dchan_detach(ch);
		return rc;
	}
	if (st.object != kind) {
		uint32_t found = (uint32_t)st.object;

		dchan_detach(ch);
		return dchan__fail(-DCHAN_E_BADDESC,
				   "the descriptor names a "
				   "sync object of kind %u, not %u",
				   found, kind);
	}
	*ch_out = ch;
	if (param_out)
		*param_out = st.object_param;
	return 0;
}

/* A sibling channel recorded in aux[i] of the first one; local only. */
int dchan__sync_sibling(dchan_t *first, int i, dchan_t **ch_out)
{
	if (first->remote)
		return dchan__fail(-DCHAN_E_REMOTE,
				   "this sync object is made "
				   "of several channels and is reachable only "
				   "on its own node");
	return dchan__open_at(first, first->hdr->aux[i], ch_out);
}

int dchan__tok_send(dchan_t *ch, const struct dchan__tok *t,
		    uint64_t timeout_ns)
{
	return dchan_send(ch, t, sizeof *t, timeout_ns);
}

int dchan__tok_recv(dchan_t *ch, struct dchan__tok *t, uint64_t timeout_ns)
{
	size_t len;
	int rc = dchan_recv(ch, t, sizeof *t, timeout_ns, &len);

	if (rc == 0 && len != sizeof *t)
		return dchan__fail(-DCHAN_E_BADREQ,
				   "sync object token of %zu "
				   "bytes",
				   len);
	return rc;
}

int dchan__tok_peek(dchan_t *ch, struct dchan__tok *t, uint64_t timeout_ns)
{
	size_t len;
	int rc = dchan_peek(ch, t, sizeof *t, timeout_ns, &len);

	if (rc == 0 && len != sizeof *t)
		return dchan__fail(-DCHAN_E_BADREQ,
				   "sync object token of %zu "
				   "bytes",
				   len);
	return rc;
}

/*
 * A counter kept as one token in a channel of capacity 1: adding takes the
 * token (if any), adds, and puts it back; when another adder put a token
 * in meanwhile, the two are merged.  The counter never exceeds max; a
 * request that would is refused (-EOVERFLOW) and changes nothing.
 */
int dchan__count_add(dchan_t *ch, uint64_t delta, uint64_t max)
{
	struct dchan__tok t = {0};
	uint64_t held = 0;
	int rc;

	for (;;) {
		rc = dchan__tok_recv(ch, &t, 0);
		if (rc == 0)
			held += t.a;
		else if (rc != -EAGAIN)
			return rc;
		if (held + delta > max) {
			t.a = held;
			rc = held ? dchan__tok_send(ch, &t, DCHAN_FOREVER) : 0;
			return rc < 0 ? rc
				      : dchan__fail(-EOVERFLOW,
						    "counter would exceed its "
						    "maximum %llu",
						    (unsigned long long)max);
		}
		t.a = held + delta;
		rc = dchan__tok_send(ch, &t, 0);
		if (rc != -EAGAIN)
			return rc;
	}
}

/* Take one unit, waiting up to timeout_ns for the counter to be non-zero;
 * the rest goes back into the channel. */
int dchan__count_take(dchan_t *ch, uint64_t timeout_ns)
{
	struct dchan__tok t;
	int rc;

	do {
		rc = dchan__tok_recv(ch, &t, timeout_ns);
		if (rc < 0)
			return rc;
	} while (t.a == 0);
	if (t.a > 1)
		return dchan__count_add(ch, t.a - 1, UINT64_MAX);
	return 0;
}

/* The counter's value now (0 while an adder holds the token). */
int64_t dchan__count_value(dchan_t *ch)
{
	struct dchan__tok t;
	int rc = dchan__tok_peek(ch, &t, 0);

	if (rc == -EAGAIN)
		return 0;
	return rc < 0 ? rc : (int64_t)t.a;
}
