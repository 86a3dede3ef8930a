/*
 * libdchan: bad input gives clear errors, never a crash.  White box: it
 * reseals tampered descriptors (dchan_private.h) so that the checks behind
 * the checksum are reached too.
 */
#include "dchan_test.h"
#include "dchan_private.h"

#define MiB (1024u * 1024u)

START_TEST(bad_attributes)
{
	dmem_pool_t *pool = t_pool("attr", 16 * MiB);
	dchan_attr_t a = {.field_mask = DCHAN_ATTR_CAPACITY};
	dchan_t *ch;

	a.capacity = 0;
	ck_assert_int_eq(dchan_create(pool, &a, &ch), -EINVAL);
	ck_assert_ptr_nonnull(strstr(dchan_errmsg(), "capacity 0"));
	a.capacity = DCHAN_CAPACITY_MAX + 1;
	ck_assert_int_eq(dchan_create(pool, &a, &ch), -EINVAL);
	a.field_mask = DCHAN_ATTR_SLOT_SIZE;
	a.slot_size = DCHAN_SLOT_SIZE_MAX + 1;
	ck_assert_int_eq(dchan_create(pool, &a, &ch), -EINVAL);
	ck_assert_int_eq(dchan_create(NULL, NULL, &ch), -EINVAL);
	ck_assert_int_eq(dchan_create(pool, NULL, NULL), -EINVAL);
	/* a channel larger than the pool */
	a.field_mask = DCHAN_ATTR_CAPACITY | DCHAN_ATTR_SLOT_SIZE;
	a.capacity = 1u << 20;
	a.slot_size = 4096;
	ck_assert_int_lt(dchan_create(pool, &a, &ch), 0);
	ck_assert_ptr_nonnull(strstr(dchan_errmsg(), "bytes of the pool"));
	t_pool_done(pool);
}
END_TEST

START_TEST(message_larger_than_pool)
{
	dmem_pool_t *pool = t_pool("huge", 16 * MiB);
	dchan_t *ch = t_chan(pool, 4, 64);
	size_t big = 64 * MiB, len;
	char *buf = malloc(big);
	int rc;

	rc = dchan_send(ch, buf, big, DCHAN_FOREVER);
	ck_assert_int_eq(rc, -DMEM_E_TOOBIG);
	ck_assert_ptr_nonnull(strstr(dchan_errmsg(), "67108864-byte message"));
	ck_assert_int_eq(dchan_count(ch), 0);
	T_OK(dchan_send(ch, "ok", 2, 0));
	T_OK(dchan_recv(ch, buf, 2, 0, &len));
	ck_assert_int_eq(dchan_send(NULL, buf, 1, 0), -EINVAL);
	ck_assert_int_eq(dchan_send(ch, NULL, 1, 0), -EINVAL);
	ck_assert_int_eq(dchan_recv(ch, buf, 1, 0, NULL), -EINVAL);
	ck_assert_int_eq(dchan_poll(ch, 0, 0, (unsigned *)&rc), -EINVAL);
	ck_assert_int_eq(dchan_poll_many(NULL, 0, 0), -EINVAL);
	free(buf);
	T_OK(dchan_destroy(ch));
	t_pool_done(pool);
}
END_TEST

/* A full pool is a full-pool error for a large send, at once when the
 * send must not wait and at the deadline when it may. */
START_TEST(large_send_on_a_full_pool)
{
	dmem_pool_t *pool = t_pool("fullsend", 4 * MiB);
	dchan_t *ch = t_chan(pool, 8, 64);
	size_t n = MiB;
	char *buf = calloc(1, n);
	int rc, sent = 0;

	while ((rc = dchan_send(ch, buf, n, 0)) == 0)
		sent++;
	ck_assert_int_gt(sent, 0);
	ck_assert_int_eq(rc, -DMEM_E_NOSPACE);
	ck_assert_ptr_nonnull(strstr(dchan_errmsg(), "1048576-byte message"));
	ck_assert_int_eq(dchan_send(ch, buf, n, 20 * 1000 * 1000),
			 -DMEM_E_NOSPACE);
	free(buf);
	T_OK(dchan_destroy(ch));
	t_pool_done(pool);
}
END_TEST

/* A lock's descriptor is not a channel's: a plain recv on it would take
 * the lock's token. */
START_TEST(attach_refuses_other_object_kinds)
{
	dmem_pool_t *pool = t_pool("kind", 16 * MiB);
	dchan_lock_t *l;
	dchan_event_t *e;
	dchan_desc_t d;
	dchan_t *ch = t_chan(pool, 4, 64), *c2;

	T_OK(dchan_lock_create(pool, 0, &l));
	T_OK(dchan_lock_desc_get(l, &d));
	ck_assert_int_eq(dchan_attach(&d, &c2), -DCHAN_E_BADDESC);
	ck_assert_ptr_nonnull(strstr(dchan_errmsg(), "dchan_lock_attach"));
	T_OK(dchan_lock_destroy(l));
	T_OK(dchan_event_create(pool, &e));
	T_OK(dchan_event_desc_get(e, &d));
	ck_assert_int_eq(dchan_attach(&d, &c2), -DCHAN_E_BADDESC);
	ck_assert_ptr_nonnull(strstr(dchan_errmsg(), "dchan_event_attach"));
	/* and the other way round: a channel is no lock */
	T_OK(dchan_desc_get(ch, &d));
	ck_assert_int_lt(dchan_lock_attach(&d, &l), 0);
	T_OK(dchan_attach(&d, &c2));
	T_OK(dchan_detach(c2));
	T_OK(dchan_event_destroy(e));
	T_OK(dchan_destroy(ch));
	t_pool_done(pool);
}
END_TEST

START_TEST(corrupt_descriptors)
{
	dmem_pool_t *pool = t_pool("corrupt", 16 * MiB);
	dchan_t *ch = t_chan(pool, 4, 0), *c2;
	dchan_desc_t d, d2;
	unsigned char bin[sizeof d];

	T_OK(dchan_desc_get(ch, &d));
	T_OK(dchan_desc_serialize(&d, bin, sizeof bin));
	/* any single flipped byte is caught, also right after the intact
	 * descriptor was found valid (a check remembers those) */
	T_OK(dchan_desc_deserialize(bin, sizeof bin, &d2));
	for (size_t i = 0; i < sizeof bin; i++) {
		bin[i] ^= 0x5a;
		ck_assert_int_lt(dchan_desc_deserialize(bin, sizeof bin, &d2),
				 0);
		bin[i] ^= 0x5a;
	}
	ck_assert_int_eq(dchan_desc_deserialize(bin, sizeof bin - 1, &d2),
			 -DCHAN_E_BADDESC);
	ck_assert_int_eq(dchan_desc_serialize(&d, bin, 10), -ENOSPC);
	/* resealed lies: offset off the channel, outside the pool, version */
	d2 = d;
	d2.offset += 64;
	dchan__desc_seal(&d2);
	ck_assert_int_eq(dchan_attach(&d2, &c2), -DCHAN_E_BADDESC);
	d2.offset = d.pool.size + 64;
	dchan__desc_seal(&d2);
	ck_assert_int_eq(dchan_attach(&d2, &c2), -DCHAN_E_BADDESC);
	d2 = d;
	d2.version = 9;
	dchan__desc_seal(&d2);
	ck_assert_int_eq(dchan_attach(&d2, &c2), -DCHAN_E_VERSION);
	d2 = d;
	d2.chan_uid ^= 1;
	dchan__desc_seal(&d2);
	ck_assert_int_eq(dchan_attach(&d2, &c2), -DCHAN_E_BADDESC);
	/* a destroyed channel is refused, not attached */
	T_OK(dchan_destroy(ch));
	ck_assert_int_eq(dchan_attach(&d, &c2), -DCHAN_E_BADDESC);
	t_pool_done(pool);
}
END_TEST

/* Put dir (len bytes) as the only message of the object's first channel
 * and return what attaching the condition says. */
static int cond_attach_with(dchan_t *id, const dchan_desc_t *cd,
			    const void *dir, size_t len)
{
	unsigned char junk[512];
	dchan_cond_t *c;
	size_t got;
	int rc;

	while (dchan_recv(id, junk, sizeof junk, 0, &got) == 0)
		;
	if (dir)
		T_OK(dchan_send(id, dir, len, 0));
	rc = dchan_cond_attach(cd, &c);
	if (rc == 0)
		T_OK(dchan_cond_detach(c));
	return rc;
}

/* The directory a multi-channel object keeps in its first channel is
 * checked like a descriptor: a lie in it is an error, never a crash. */
START_TEST(corrupt_sync_directories)
{
	dmem_pool_t *pool = t_pool("dir", 16 * MiB);
	unsigned char dir[64], bad[256];
	dchan_desc_t cd, bd, ld, chd;
	dchan_cond_t *cond;
	dchan_barrier_t *bar;
	dchan_lock_t *lock;
	dchan_t *id, *ch = t_chan(pool, 4, 0);
	uint64_t v;
	size_t len;

	T_OK(dchan_cond_create(pool, &cond));
	T_OK(dchan_barrier_create(pool, 2, &bar));
	T_OK(dchan_lock_create(pool, 0, &lock));
	T_OK(dchan_cond_desc_get(cond, &cd));
	T_OK(dchan_barrier_desc_get(bar, &bd));
	T_OK(dchan_lock_desc_get(lock, &ld));
	T_OK(dchan_desc_get(ch, &chd));
	T_OK(dchan__attach(&cd, &id));
	T_OK(dchan_recv(id, dir, sizeof dir, 0, &len));
	ck_assert_uint_eq(len, 8 + 16 * 3);
	T_OK(cond_attach_with(id, &cd, dir, len)); /* as it was: fine */
	ck_assert_int_eq(cond_attach_with(id, &cd, NULL, 0), -DCHAN_E_BADDESC);
	ck_assert_int_eq(cond_attach_with(id, &cd, dir, len - 1),
			 -DCHAN_E_BADDESC);
	ck_assert_int_eq(cond_attach_with(id, &cd, dir, 6), -DCHAN_E_BADDESC);
	memset(bad, 0, sizeof bad);
	memcpy(bad, dir, len);
	ck_assert_int_eq(cond_attach_with(id, &cd, bad, sizeof bad),
			 -DCHAN_E_BADDESC);
	/* magic, version, count */
	memcpy(bad, dir, len);
	bad[0] ^= 1;
	ck_assert_int_eq(cond_attach_with(id, &cd, bad, len), -DCHAN_E_BADDESC);
	memcpy(bad, dir, len);
	bad[4] = 9;
	ck_assert_int_eq(cond_attach_with(id, &cd, bad, len), -DCHAN_E_VERSION);
	memcpy(bad, dir, len);
	bad[6] = 2;
	ck_assert_int_eq(cond_attach_with(id, &cd, bad, len), -DCHAN_E_BADDESC);
	ck_assert_int_eq(cond_attach_with(id, &cd, bad, len - 16),
			 -DCHAN_E_BADDESC);
	/* offsets outside the pool, misaligned, at another channel; uids */
	memcpy(bad, dir, len);
	v = cd.pool.size + 64;
	memcpy(bad + 8 + 16, &v, 8);
	ck_assert_int_eq(cond_attach_with(id, &cd, bad, len), -DCHAN_E_BADDESC);
	memcpy(bad, dir, len);
	bad[8] += 4;
	ck_assert_int_eq(cond_attach_with(id, &cd, bad, len), -DCHAN_E_BADDESC);
	memcpy(bad, dir, len);
	memcpy(bad + 8, &chd.offset, 8); /* a plain channel, its own uid */
	ck_assert_int_eq(cond_attach_with(id, &cd, bad, len), -DCHAN_E_BADDESC);
	memcpy(bad + 16, &chd.chan_uid, 8);
	ck_assert_int_eq(cond_attach_with(id, &cd, bad, len), -DCHAN_E_BADDESC);
	memcpy(bad + 8, &ld.offset, 8); /* a lock: the wrong kind */
	memcpy(bad + 16, &ld.chan_uid, 8);
	ck_assert_int_eq(cond_attach_with(id, &cd, bad, len), -DCHAN_E_BADDESC);
	memcpy(bad, dir, len);
	bad[8 + 16 * 2 + 8] ^= 0x10;
	ck_assert_int_eq(cond_attach_with(id, &cd, bad, len), -DCHAN_E_BADDESC);
	/* any single flipped byte: an error or the same object, no crash */
	for (size_t i = 0; i < len; i++) {
		memcpy(bad, dir, len);
		bad[i] ^= 0xa5;
		ck_assert_int_le(cond_attach_with(id, &cd, bad, len), 0);
	}
	/* a barrier's directory names two channels, not three */
	T_OK(cond_attach_with(id, &cd, dir, len));
	T_OK(dchan_detach(id));
	T_OK(dchan__attach(&bd, &id));
	T_OK(dchan_recv(id, bad, sizeof bad, 0, &len));
	ck_assert_uint_eq(len, 8 + 16 * 2);
	T_OK(dchan_send(id, dir, 8 + 16 * 3, 0));
	ck_assert_int_eq(dchan_barrier_attach(&bd, &bar), -DCHAN_E_BADDESC);
	T_OK(dchan_recv(id, dir, sizeof dir, 0, &len));
	T_OK(dchan_send(id, bad, 8 + 16 * 2, 0));
	T_OK(dchan_detach(id));
	T_OK(dchan_barrier_destroy(bar));
	T_OK(dchan_cond_destroy(cond));
	T_OK(dchan_lock_destroy(lock));
	T_OK(dchan_destroy(ch));
	ck_assert_uint_eq(t_live(pool), 0);
	t_pool_done(pool);
}
END_TEST

START_TEST(bad_text_descriptors)
{
	static const char *bad[] = {
		"",
		"dchan",
		"dchan:",
		"dchan:1",
		"dchan:1:2:3:4",
		"dchan:1:2:3:4:",
		"dchan:2:2:3:4:dmem-pool:1:0:0:0:x",
		"dchan:1:G:3:4:dmem-pool",
		"dchan:1:2:3:4:5:6:7:8:9",
		"dchan:1:11111111111111111:3:4:x",
		"chan:1:2:3:4:5",
	};
	dchan_desc_t d;

	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		ck_assert_int_lt(dchan_desc_from_text(bad[i], &d), 0);
	ck_assert_int_eq(dchan_desc_from_text(NULL, &d), -EINVAL);
}
END_TEST

START_TEST(gateway_messages_checked)
{
	dmem_pool_t *pool = t_pool("gwbad", 16 * MiB);
	dchan_t *ch = t_chan(pool, 4, 0);
	dchan_gw_req_t r = {.op = DCHAN_GW_SEND,
			    .payload = "abc",
			    .payload_len = 3},
		       r2;
	dchan_gw_cpl_t c = {.op = DCHAN_GW_RECV, .status = -EAGAIN}, c2;
	unsigned char buf[2048];
	int64_t n;

	T_OK(dchan_desc_get(ch, &r.target));
	r.reply = r.target;
	n = dchan_gw_req_encode(&r, buf, sizeof buf);
	ck_assert_int_gt(n, 0);
	T_OK(dchan_gw_req_decode(buf, (size_t)n, &r2));
	ck_assert_uint_eq(r2.payload_len, 3);
	/* every truncation is refused */
	for (int64_t len = 0; len < n; len++)
		ck_assert_int_lt(dchan_gw_req_decode(buf, (size_t)len, &r2), 0);
	buf[4] = 2; /* a newer version */
	ck_assert_int_eq(dchan_gw_req_decode(buf, (size_t)n, &r2),
			 -DCHAN_E_VERSION);
	buf[4] = 1;
	buf[48] ^= 1; /* payload length lies */
	ck_assert_int_eq(dchan_gw_req_decode(buf, (size_t)n, &r2),
			 -DCHAN_E_BADREQ);
	buf[48] ^= 1;
	buf[6] = 77; /* unknown operation */
	ck_assert_int_eq(dchan_gw_req_decode(buf, (size_t)n, &r2),
			 -DCHAN_E_BADREQ);
	ck_assert_int_eq(dchan_gw_req_encode(&r, buf, 10), -ENOSPC);
	n = dchan_gw_cpl_encode(&c, buf, sizeof buf);
	T_OK(dchan_gw_cpl_decode(buf, (size_t)n, &c2));
	ck_assert_int_eq(c2.status, -EAGAIN);
	buf[12] = 5; /* a positive status is not a status */
	buf[13] = buf[14] = buf[15] = 0;
	ck_assert_int_eq(dchan_gw_cpl_decode(buf, (size_t)n, &c2),
			 -DCHAN_E_BADREQ);
	T_OK(dchan_destroy(ch));
	t_pool_done(pool);
}
END_TEST

START_TEST(strerror_knows_dchan_codes)
{
	for (int i = 1; i <= 7; i++) {
		const char *s = dchan_strerror(-(DCHAN_ERRBASE + i));

		ck_assert_ptr_null(strstr(s, "Unknown"));
		ck_assert_int_gt((int)strlen(s), 5);
	}
	ck_assert_str_eq(dchan_strerror(-DMEM_E_TOOBIG),
			 dmem_strerror(-DMEM_E_TOOBIG));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("dchan_bad");
	TCase *tc = tcase_create("bad");

	tcase_add_test(tc, bad_attributes);
	tcase_add_test(tc, message_larger_than_pool);
	tcase_add_test(tc, large_send_on_a_full_pool);
	tcase_add_test(tc, attach_refuses_other_object_kinds);
	tcase_add_test(tc, corrupt_descriptors);
	tcase_add_test(tc, bad_text_descriptors);
	tcase_add_test(tc, corrupt_sync_directories);
	tcase_add_test(tc, gateway_messages_checked);
	tcase_add_test(tc, strerror_knows_dchan_codes);
	suite_add_tcase(s, tc);
	return t_run(s);
}
