/*
 * What the sync objects share: each is one or more small channels, tagged
 * in their header with the kind of object, so that attaching a lock's
 * descriptor as a semaphore is an error rather than a silent misuse.
 */
#include "config.h"
#include "dchan_sync.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>

int dchan__sync_create_slot(dmem_pool_t *pool, uint32_t kind, uint32_t cap,
			    uint32_t slot_size, dchan_t **ch_out)
{
	dchan_attr_t a = {.field_mask =
				  DCHAN_ATTR_CAPACITY | DCHAN_ATTR_SLOT_SIZE,
			  .capacity = cap,
			  .slot_size = slot_size};

	return dchan__create(pool, &a, kind, ch_out);
}

int dchan__sync_create(dmem_pool_t *pool, uint32_t kind, uint32_t cap,
		       dchan_t **ch_out)
{
	return dchan__sync_create_slot(pool, kind, cap,
				       sizeof(struct dchan__tok), ch_out);
}

int dchan__sync_attach(const dchan_desc_t *d, uint32_t kind, dchan_t **ch_out,
		       uint64_t *param_out)
{
	dchan_stats_t st;
	dchan_t *ch;
	int rc = dchan__attach(d, &ch);

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

/*
 * Peek without waiting for a message, but past another process's peek: a
 * try-once peek finds the slot claimed while someone else peeks at it
 * (-EAGAIN), which for a message that is always there (a directory) or
 * a token at rest is not an answer.  -EAGAIN only when the channel is
 * really empty.
 */
int dchan__peek_now(dchan_t *ch, void *buf, size_t cap, size_t *len_out)
{
	unsigned rev;
	int rc;

	for (;;) {
		rc = dchan_peek(ch, buf, cap, 0, len_out);
		if (rc != -EAGAIN)
			return rc;
		rc = dchan_poll(ch, DCHAN_POLLIN, 0, &rev);
		if (rc < 0)
			return rc; /* -EAGAIN: empty indeed */
		sched_yield();
	}
}

/* Write the directory naming chs[0..n) into first (local, just made). */
int dchan__sync_dir_write(dchan_t *first, dchan_t *const *chs, unsigned n)
{
	unsigned char buf[DCHAN__DIR_BYTES(DCHAN__DIR_MAX)];
	uint32_t magic = DCHAN__DIR_MAGIC;
	uint16_t ver = DCHAN__DIR_VERSION, cnt = (uint16_t)n;

	if (n > DCHAN__DIR_MAX)
		return dchan__fail(-EINVAL,
				   "a sync object directory names at "
				   "most %u channels",
				   DCHAN__DIR_MAX);
	memcpy(buf, &magic, 4);
	memcpy(buf + 4, &ver, 2);
	memcpy(buf + 6, &cnt, 2);
	for (unsigned i = 0; i < n; i++) {
		memcpy(buf + 8 + 16 * i, &chs[i]->desc.offset, 8);
		memcpy(buf + 16 + 16 * i, &chs[i]->desc.chan_uid, 8);
	}
	return dchan_send(first, buf, DCHAN__DIR_BYTES(n), 0);
}

/*
 * Check len bytes at buf as a directory of exactly n channels and make
 * their descriptors from first's (same node and pool).  Never reads past
 * buf + len; every descriptor made passes the checks of an attach.
 */
int dchan__sync_dir_decode(const void *buf, size_t len,
			   const dchan_desc_t *first, unsigned n,
			   dchan_desc_t *descs_out)
{
	const unsigned char *p = buf;
	uint32_t magic;
	uint16_t ver, cnt;

	if (n > DCHAN__DIR_MAX || len < 8)
		return dchan__fail(-DCHAN_E_BADDESC,
				   "sync object directory "
				   "of %zu bytes is too short",
				   len);
	memcpy(&magic, p, 4);
	memcpy(&ver, p + 4, 2);
	memcpy(&cnt, p + 6, 2);
	if (magic != DCHAN__DIR_MAGIC)
		return dchan__fail(-DCHAN_E_BADDESC,
				   "the sync object's first channel holds no "
				   "directory (magic %08x); was it made by an "
				   "older libdchan?",
				   magic);
	if (ver != DCHAN__DIR_VERSION)
		return dchan__fail(-DCHAN_E_VERSION,
				   "sync object directory version %u, this "
				   "library reads version %u",
				   ver, DCHAN__DIR_VERSION);
	if (cnt != n || len != DCHAN__DIR_BYTES(n))
		return dchan__fail(-DCHAN_E_BADDESC,
				   "sync object directory names %u channels "
				   "in %zu bytes, expected %u",
				   cnt, len, n);
	for (unsigned i = 0; i < n; i++) {
		dchan_desc_t d = *first;
		int rc;

		memcpy(&d.offset, p + 8 + 16 * i, 8);
		memcpy(&d.chan_uid, p + 16 + 16 * i, 8);
		dchan__desc_seal(&d);
		rc = dchan__desc_check(&d);
		if (rc < 0)
			return rc;
		descs_out[i] = d;
	}
	return 0;
}

/*
 * Attach the n channels first's directory names, each checked to be of
 * kinds[i].  Only channel operations (peek, stats), so it works the same
 * through the gateway.
 */
int dchan__sync_dir_open(dchan_t *first, const uint32_t *kinds, unsigned n,
			 dchan_t **chs_out)
{
	unsigned char buf[DCHAN__DIR_BYTES(DCHAN__DIR_MAX)];
	dchan_desc_t d[DCHAN__DIR_MAX];
	dchan_t *chs[DCHAN__DIR_MAX];
	unsigned got = 0;
	size_t len;
	int rc;

	rc = dchan__peek_now(first, buf, sizeof buf, &len);
	if (rc == -EAGAIN)
		return dchan__fail(-DCHAN_E_BADDESC,
				   "the sync object's first channel holds no "
				   "directory (destroyed, or made by an older "
				   "libdchan)");
	if (rc < 0)
		return rc;
	if (len > sizeof buf)
		return dchan__fail(-DCHAN_E_BADDESC,
				   "sync object directory of %zu bytes", len);
	rc = dchan__sync_dir_decode(buf, len, &first->desc, n, d);
	while (rc == 0 && got < n) {
		rc = dchan__sync_attach(&d[got], kinds[got], &chs[got], NULL);
		if (rc == 0)
			got++;
	}
	if (rc < 0) {
		while (got > 0)
			dchan_detach(chs[--got]);
		return rc;
	}
	memcpy(chs_out, chs, n * sizeof *chs);
	return 0;
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
	int rc = timeout_ns ? dchan_peek(ch, t, sizeof *t, timeout_ns, &len)
			    : dchan__peek_now(ch, t, sizeof *t, &len);

	if (rc == 0 && len != sizeof *t)
		return dchan__fail(-DCHAN_E_BADREQ,
				   "sync object token of %zu "
				   "bytes",
				   len);
	return rc;
}

/*
 * The conditions' counters (dchan_cond.c): one token in a channel of
 * capacity 1, unbounded.  Adding takes the token (if any), adds, and puts
 * it back; when another adder put a token in meanwhile, the two are
 * merged.  An empty channel means 0 or "another process holds the token
 * now", which is why there is no bound and no exact value read: the
 * conditions only need the sum to be right once every adder is done.
 * Semaphores keep an exact counter of their own (dchan_sem.c).
 */
int dchan__count_add(dchan_t *ch, uint64_t delta)
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
		return dchan__count_add(ch, t.a - 1);
	return 0;
}
