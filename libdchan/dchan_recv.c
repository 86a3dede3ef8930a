/* Receiving from a local channel: copy out, take the allocation itself,
 * or peek.  The public calls, which also reach remote channels, are in
 * dchan_io.c. */
#include "config.h"
#include "dchan_private.h"

#include <string.h>

/* The allocation a DESC slot refers to, checked, in this process.  The
 * slot is claimed by us, so nothing changes under us. */
static int slot_alloc(dchan_t *ch, struct dchan__slot *s, void **ptr)
{
	dmem_alloc_desc_t d;
	int rc;

	memcpy(&d, s->data, sizeof d);
	rc = dmem_alloc_attach(ch->pool, &d, ptr);
	if (rc < 0)
		return dchan__fail_dmem(rc, "the message's allocation");
	if (s->len > d.size)
		return dchan__fail(-DMEM_E_CORRUPT,
				   "message length %llu "
				   "exceeds its allocation",
				   (unsigned long long)s->len);
	return 0;
}

/*
 * Take the message out of a claimed slot and release the slot.  Copies
 * into buf, or (buf NULL) returns the allocation in *ptr_out, owned by us.
 * A descriptor the pool refuses loses that message, never the slot.
 */
static int take_msg(dchan_t *ch, struct dchan__claim *c, void *buf,
		    void **ptr_out, size_t *len_out)
{
	struct dchan__slot *s = c->slot;
	size_t len = s->len;
	void *ptr = NULL;
	int rc = 0;

	if (__atomic_load_n(&s->kind, __ATOMIC_ACQUIRE) == DCHAN__KIND_INLINE) {
		memcpy(buf ? buf : *ptr_out, s->data, len);
		dchan__get_release(ch, c);
		*len_out = len;
		return 0;
	}
	rc = slot_alloc(ch, s, &ptr);
	if (rc == 0)
		rc = dmem_alloc_chown(ch->pool, ptr, (pid_t)dchan__self());
	dchan__get_release(ch, c);
	if (rc < 0)
		return rc;
	if (buf) {
		memcpy(buf, ptr, len);
		dmem_free(ch->pool, ptr);
	} else {
		dmem_free(ch->pool, *ptr_out);
		*ptr_out = ptr;
	}
	*len_out = len;
	return 0;
}

/* Receive from a local channel into buf (cap bytes). */
int dchan__recv_local(dchan_t *ch, void *buf, size_t cap, uint64_t timeout_ns,
		      size_t *len_out)
{
	struct dchan__claim c;
	size_t len;
	int rc;

	rc = dchan__check_local(ch);
	if (rc < 0)
		return rc;
	rc = dchan__get_wait(ch, cap, false, timeout_ns, &c);
	if (rc < 0)
		return rc;
	rc = take_msg(ch, &c, buf ? buf : (void *)"", NULL, &len);
	if (rc == 0)
		*len_out = len;
	return rc;
}

/* Receive from a local channel the message's own allocation. */
int dchan__recv_zc_local(dchan_t *ch, uint64_t timeout_ns, dchan_msg_t *msg_out)
{
	struct dchan__claim c;
	void *ptr;
	size_t len;
	int rc;

	rc = dchan__check_local(ch);
	if (rc < 0)
		return rc;
	/* room for an inline message, taken before the slot is claimed so
	 * that a full pool cannot strand a claimed slot */
	rc = dmem_alloc(ch->pool, ch->slot_size ? ch->slot_size : 1, 0, &ptr);
	if (rc < 0)
		return dchan__fail_dmem(rc, "zero-copy receive buffer");
	rc = dchan__get_wait(ch, SIZE_MAX, false, timeout_ns, &c);
	if (rc == 0)
		rc = take_msg(ch, &c, NULL, &ptr, &len);
	if (rc < 0) {
		dmem_free(ch->pool, ptr);
		return rc;
	}
	msg_out->data = ptr;
	msg_out->len = len;
	msg_out->pool = ch->pool;
	return 0;
}

DCHAN_EXPORT int dchan_msg_release(dchan_msg_t *msg)
{
	int rc;

	if (!msg || !msg->data || !msg->pool)
		return dchan__fail(-EINVAL, "not a received message");
	rc = dmem_free(msg->pool, msg->data);
	if (rc < 0)
		return dchan__fail_dmem(rc, "releasing a message");
	msg->data = NULL;
	return 0;
}

/* Copy the oldest message of a local channel, leaving it there. */
int dchan__peek_local(dchan_t *ch, void *buf, size_t cap, uint64_t timeout_ns,
		      size_t *len_out)
{
	struct dchan__claim c;
	void *src = NULL;
	size_t len;
	int rc;

	rc = dchan__check_local(ch);
	if (rc < 0)
		return rc;
	rc = dchan__get_wait(ch, SIZE_MAX, true, timeout_ns, &c);
	if (rc < 0)
		return rc;
	len = c.slot->len;
	if (__atomic_load_n(&c.slot->kind, __ATOMIC_ACQUIRE) ==
	    DCHAN__KIND_INLINE)
		src = c.slot->data;
	else
		rc = slot_alloc(ch, c.slot, &src);
	if (rc == 0 && cap)
		memcpy(buf, src, len < cap ? len : cap);
	dchan__peek_release(ch, &c);
	if (rc == 0)
		*len_out = len;
	return rc;
}
