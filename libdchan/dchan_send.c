/* Sending on a local channel: inline into the slot, copied into a pool
 * allocation, or an allocation handed over without a copy.  The public
 * calls, which also reach remote channels, are in dchan_io.c. */
#include "config.h"
#include "dchan_private.h"

#include <string.h>

/* A slot's len is stored atomically: a receiver reads it before its claim
 * of the slot is settled (dchan__get_claim, re-checked by the CAS). */
static void fill_inline(struct dchan__slot *s, const void *buf, size_t len)
{
	if (len)
		memcpy(s->data, buf, len);
	__atomic_store_n(&s->len, len, __ATOMIC_RELAXED);
	__atomic_store_n(&s->kind, DCHAN__KIND_INLINE, __ATOMIC_RELEASE);
}

/*
 * Record the allocation in the claimed slot, then give it to the channel.
 * The order matters if we die in between: the descriptor is in the slot
 * (and marked so) before ownership moves, so whoever recovers the slot can
 * free it, and until then the pool's reclaim of our pid can.
 */
static int fill_desc(dchan_t *ch, struct dchan__slot *s, void *ptr,
		     const dmem_alloc_desc_t *d, size_t len)
{
	memcpy(s->data, d, sizeof *d);
	__atomic_store_n(&s->len, len, __ATOMIC_RELAXED);
	__atomic_store_n(&s->kind, DCHAN__KIND_DESC, __ATOMIC_RELEASE);
	return dmem_alloc_chown(ch->pool, ptr, DMEM_OWNER_NONE);
}

static int send_alloc(dchan_t *ch, void *ptr, size_t len, uint64_t timeout_ns)
{
	struct dchan__claim c;
	dmem_alloc_desc_t d;
	int rc;

	rc = dmem_alloc_desc_get(ch->pool, ptr, &d);
	if (rc < 0)
		return dchan__fail_dmem(rc,
					"zero-copy send: the buffer is not "
					"an allocation of the channel's pool");
	if (d.size < len)
		return dchan__fail(-EINVAL,
				   "zero-copy send of %zu bytes from "
				   "an allocation of %llu",
				   len, (unsigned long long)d.size);
	rc = dchan__put_wait(ch, timeout_ns, &c);
	if (rc < 0)
		return rc;
	rc = fill_desc(ch, c.slot, ptr, &d, len);
	if (rc < 0) {
		/* the slot is ours: publish it as a message nobody reads */
		__atomic_store_n(&c.slot->kind, 0, __ATOMIC_RELAXED);
		DCHAN__STORE(&c.slot->state,
			     dchan__state((uint32_t)(2 * c.pos + 1),
					  DCHAN__TAG_ABANDONED));
		dchan__notify_data(ch->hdr);
		return dchan__fail_dmem(rc,
					"handing the message to the channel");
	}
	dchan__put_publish(ch, &c);
	return 0;
}

static int send_copy(dchan_t *ch, const void *buf, size_t len,
		     uint64_t timeout_ns)
{
	const struct timespec *dlp;
	struct timespec dl;
	void *ptr;
	int rc;

	rc = dchan__deadline(timeout_ns, &dl, &dlp);
	if (rc < 0)
		return rc;
	/* before the allocation: it is then usually the block the receiver
	 * has just freed, still in the caches */
	dchan__pace(ch, len, timeout_ns);
	/* A pool that stays full is a full pool, whether the caller waited
	 * (-ETIMEDOUT from the timed alloc) or not: -DMEM_E_NOSPACE. */
	if (timeout_ns == 0)
		rc = dmem_alloc(ch->pool, len, 0, &ptr);
	else if ((rc = dmem_alloc_timed(ch->pool, len, 0, dlp, &ptr)) ==
		 -ETIMEDOUT)
		rc = -DMEM_E_NOSPACE;
	if (rc < 0)
		return dchan__fail(rc,
				   "a %zu-byte message does not fit the "
				   "channel's slots (%u bytes) and no pool "
				   "block was had for it: %s",
				   len, ch->slot_size, dmem_errmsg());
	memcpy(ptr, buf, len);
	rc = send_alloc(ch, ptr, len, timeout_ns);
	if (rc < 0)
		dmem_free(ch->pool, ptr);
	return rc;
}

/* Send on a local channel: inline when the message fits a slot, else
 * copied into a pool allocation. */
int dchan__send_local(dchan_t *ch, const void *buf, size_t len,
		      uint64_t timeout_ns)
{
	struct dchan__claim c;
	int rc;

	rc = dchan__check_local(ch);
	if (rc < 0)
		return rc;
	if (len > ch->slot_size)
		return send_copy(ch, buf, len, timeout_ns);
	rc = dchan__put_wait(ch, timeout_ns, &c);
	if (rc < 0)
		return rc;
	fill_inline(c.slot, buf, len);
	dchan__put_publish(ch, &c);
	return 0;
}

/* Hand the allocation at ptr to a local channel without a copy. */
int dchan__send_zc_local(dchan_t *ch, void *ptr, size_t len,
			 uint64_t timeout_ns)
{
	int rc = dchan__check_local(ch);

	if (rc < 0)
		return rc;
	return send_alloc(ch, ptr, len, timeout_ns);
}
