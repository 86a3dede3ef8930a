/* White-box: the services' message codec (libdlaunch/msg.c).  Every field
 * type goes through and back; every malformed or truncated input gives
 * DLAUNCH_E_PROTO (or DLAUNCH_E_VERSION) and never a read past its end. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "dlaunch_private.h"
#include "dlaunch_test.h"

#define HDR sizeof(dlaunch__msg_hdr_t)

/* One message with every kind of field. */
static void build_all(dlaunch__msg_t *m)
{
	char *argv[] = {"prog", "", "a b", NULL};
	char *empty[] = {NULL};

	ck_assert_int_eq(dlaunch__msg_init(m, DLAUNCH_MSG_SPAWN, 77, -5), 0);
	dlaunch__msg_put_u64(m, UINT64_MAX);
	dlaunch__msg_put_i64(m, -42);
	dlaunch__msg_put_bytes(m, "\0\1\2", 3);
	dlaunch__msg_put_bytes(m, NULL, 0);
	dlaunch__msg_put_str(m, "hello");
	dlaunch__msg_put_str(m, NULL);
	dlaunch__msg_put_str(m, "");
	dlaunch__msg_put_strv(m, argv);
	dlaunch__msg_put_strv(m, NULL);
	dlaunch__msg_put_strv(m, empty);
	ck_assert_int_eq(m->err, 0);
}

START_TEST(test_round_trip)
{
	dlaunch__msg_t m, r;
	dlaunch__msg_hdr_t h;
	const void *b;
	size_t n = 99;
	char **v;
	bool null = true;

	build_all(&m);
	ck_assert_int_eq(dlaunch__msg_open(&r, m.buf, m.len, &h), 0);
	ck_assert_uint_eq(h.magic, DLAUNCH_MSG_MAGIC);
	ck_assert_uint_eq(h.version, DLAUNCH_MSG_VERSION);
	ck_assert_uint_eq(h.type, DLAUNCH_MSG_SPAWN);
	ck_assert_uint_eq(h.req_id, 77);
	ck_assert_int_eq(h.status, -5);
	ck_assert_uint_eq(h.client, 0);
	ck_assert(dlaunch__msg_get_u64(&r) == UINT64_MAX);
	ck_assert(dlaunch__msg_get_i64(&r) == -42);
	b = dlaunch__msg_get_bytes(&r, &n);
	ck_assert_ptr_nonnull(b);
	ck_assert_uint_eq(n, 3);
	ck_assert(memcmp(b, "\0\1\2", 3) == 0);
	b = dlaunch__msg_get_bytes(&r, &n);
	ck_assert_ptr_nonnull(b);
	ck_assert_uint_eq(n, 0);
	ck_assert_str_eq(dlaunch__msg_get_str(&r), "hello");
	ck_assert_ptr_null(dlaunch__msg_get_str(&r));
	ck_assert_str_eq(dlaunch__msg_get_str(&r), "");
	ck_assert_int_eq(r.err, 0);
	v = dlaunch__msg_get_strv(&r, &null);
	ck_assert_ptr_nonnull(v);
	ck_assert(!null);
	ck_assert_str_eq(v[0], "prog");
	ck_assert_str_eq(v[1], "");
	ck_assert_str_eq(v[2], "a b");
	ck_assert_ptr_null(v[3]);
	free(v);
	ck_assert_ptr_null(dlaunch__msg_get_strv(&r, &null));
	ck_assert(null);
	ck_assert_int_eq(r.err, 0);
	v = dlaunch__msg_get_strv(&r, &null);
	ck_assert_ptr_nonnull(v);
	ck_assert(!null);
	ck_assert_ptr_null(v[0]);
	free(v);
	ck_assert_int_eq(r.err, 0);
	ck_assert_uint_eq(r.pos, r.len); /* every byte read */
	/* Reading past the end is an error, and it sticks. */
	ck_assert(dlaunch__msg_get_u64(&r) == 0);
	ck_assert_int_eq(r.err, -DLAUNCH_E_PROTO);
	dlaunch__msg_free(&m);
	ck_assert_ptr_null(m.buf);
}
END_TEST

START_TEST(test_header_checks)
{
	dlaunch__msg_t m, r;
	dlaunch__msg_hdr_t h, *raw;

	ck_assert_int_eq(dlaunch__msg_init(&m, DLAUNCH_MSG_HELLO, 1, 0), 0);
	ck_assert_uint_eq(m.len, HDR);
	ck_assert_int_eq(dlaunch__msg_open(&r, m.buf, m.len, &h), 0);
	ck_assert_int_eq(dlaunch__msg_open(&r, m.buf, HDR - 1, &h),
			 -DLAUNCH_E_PROTO);
	ck_assert_int_eq(dlaunch__msg_open(&r, m.buf, 0, &h), -DLAUNCH_E_PROTO);
	raw = (dlaunch__msg_hdr_t *)m.buf;
	raw->magic ^= 1;
	ck_assert_int_eq(dlaunch__msg_open(&r, m.buf, m.len, &h),
			 -DLAUNCH_E_PROTO);
	raw->magic ^= 1;
	raw->version = DLAUNCH_MSG_VERSION + 1;
	ck_assert_int_eq(dlaunch__msg_open(&r, m.buf, m.len, &h),
			 -DLAUNCH_E_VERSION);
	ck_assert_int_eq(r.err, -DLAUNCH_E_VERSION);
	dlaunch__msg_free(&m);
}
END_TEST

/* Reads the fields of build_all in order; returns the first error. */
static int read_all(dlaunch__msg_t *r)
{
	size_t n;
	bool null;
	char **v;

	dlaunch__msg_get_u64(r);
	dlaunch__msg_get_i64(r);
	dlaunch__msg_get_bytes(r, &n);
	dlaunch__msg_get_bytes(r, &n);
	dlaunch__msg_get_str(r);
	dlaunch__msg_get_str(r);
	dlaunch__msg_get_str(r);
	for (int i = 0; i < 3; i++) {
		v = dlaunch__msg_get_strv(r, &null);
		free(v);
	}
	return r->err;
}

/* Every cut of a good message, into a buffer of exactly that size (so
 * that the address sanitizer and valgrind see any read past it). */
START_TEST(test_truncated)
{
	dlaunch__msg_t m, r;
	dlaunch__msg_hdr_t h;

	build_all(&m);
	for (size_t len = HDR; len < m.len; len++) {
		uint8_t *cut = malloc(len);
		memcpy(cut, m.buf, len);
		ck_assert_int_eq(dlaunch__msg_open(&r, cut, len, &h), 0);
		ck_assert_msg(read_all(&r) == -DLAUNCH_E_PROTO,
			      "cut at %zu of %zu bytes read cleanly", len,
			      m.len);
		ck_assert_uint_le(r.pos, len);
		free(cut);
	}
	ck_assert_int_eq(dlaunch__msg_open(&r, m.buf, m.len, &h), 0);
	ck_assert_int_eq(read_all(&r), 0);
	dlaunch__msg_free(&m);
}
END_TEST

/* A header then raw field bytes, for hand-made malformed messages. */
static size_t raw_msg(uint8_t *buf, const void *fields, size_t n)
{
	dlaunch__msg_t m;

	dlaunch__msg_init(&m, DLAUNCH_MSG_NAME_GET, 1, 0);
	memcpy(buf, m.buf, HDR);
	memcpy(buf + HDR, fields, n);
	dlaunch__msg_free(&m);
	return HDR + n;
}

START_TEST(test_bad_strings)
{
	static const struct {
		const char *what;
		uint8_t bytes[12];
		size_t n;
	} bad[] = {
		{"no NUL", {3, 0, 0, 0, 'a', 'b', 'c'}, 7},
		{"NUL inside", {3, 0, 0, 0, 'a', 0, 0}, 7},
		{"zero length", {0, 0, 0, 0}, 4},
		{"length past the end", {9, 0, 0, 0, 'a', 0}, 6},
		{"length word cut", {2, 0}, 2},
	};
	uint8_t buf[64];
	dlaunch__msg_t r;
	dlaunch__msg_hdr_t h;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		size_t len = raw_msg(buf, bad[i].bytes, bad[i].n);
		ck_assert_int_eq(dlaunch__msg_open(&r, buf, len, &h), 0);
		ck_assert_msg(dlaunch__msg_get_str(&r) == NULL &&
				      r.err == -DLAUNCH_E_PROTO,
			      "%s: accepted", bad[i].what);
	}
}
END_TEST

START_TEST(test_bad_bytes_and_vectors)
{
	/* The NULL mark where bytes are expected. */
	static const uint8_t null_bytes[] = {0xff, 0xff, 0xff, 0xff};
	/* A vector claiming 2^31 strings in a few bytes: refused before
	 * anything is allocated for it. */
	static const uint8_t huge_vec[] = {0, 0, 0, 0x80, 2, 0, 0, 0, 'a', 0};
	/* A vector holding a NULL string. */
	static const uint8_t null_in_vec[] = {1,    0,	  0,	0,
					      0xff, 0xff, 0xff, 0xff};
	uint8_t buf[64];
	dlaunch__msg_t r;
	dlaunch__msg_hdr_t h;
	size_t n, len;
	bool null;

	len = raw_msg(buf, null_bytes, sizeof null_bytes);
	dlaunch__msg_open(&r, buf, len, &h);
	ck_assert_ptr_null(dlaunch__msg_get_bytes(&r, &n));
	ck_assert_int_eq(r.err, -DLAUNCH_E_PROTO);

	len = raw_msg(buf, huge_vec, sizeof huge_vec);
	dlaunch__msg_open(&r, buf, len, &h);
	ck_assert_ptr_null(dlaunch__msg_get_strv(&r, &null));
	ck_assert(!null);
	ck_assert_int_eq(r.err, -DLAUNCH_E_PROTO);

	len = raw_msg(buf, null_in_vec, sizeof null_in_vec);
	dlaunch__msg_open(&r, buf, len, &h);
	ck_assert_ptr_null(dlaunch__msg_get_strv(&r, &null));
	ck_assert_int_eq(r.err, -DLAUNCH_E_PROTO);
}
END_TEST

/* A message may not grow past DLAUNCH_MSG_MAX; the error sticks and
 * later fields are not added. */
START_TEST(test_too_big)
{
	size_t big = DLAUNCH_MSG_MAX;
	char *s = malloc(big);
	dlaunch__msg_t m;
	size_t len;

	memset(s, 'x', big - 1);
	s[big - 1] = '\0';
	dlaunch__msg_init(&m, DLAUNCH_MSG_SPAWN, 1, 0);
	dlaunch__msg_put_str(&m, "fits");
	ck_assert_int_eq(m.err, 0);
	len = m.len;
	dlaunch__msg_put_str(&m, s);
	ck_assert_int_eq(m.err, -E2BIG);
	ck_assert_uint_le(m.len, DLAUNCH_MSG_MAX);
	dlaunch__msg_put_u64(&m, 1);
	ck_assert_int_eq(m.err, -E2BIG);
	ck_assert_uint_le(m.len, len + sizeof(uint32_t));
	dlaunch__msg_free(&m);
	free(s);
}
END_TEST

/* A read error is sticky: later reads of fields that would fit give
 * nothing. */
START_TEST(test_sticky_error)
{
	dlaunch__msg_t m, r;
	dlaunch__msg_hdr_t h;
	bool null;
	size_t n;

	dlaunch__msg_init(&m, DLAUNCH_MSG_STATUS, 1, 0);
	dlaunch__msg_put_str(&m, "abc");
	dlaunch__msg_put_u64(&m, 5);
	dlaunch__msg_put_str(&m, "def");
	dlaunch__msg_open(&r, m.buf, m.len, &h);
	/* Read as a vector, the string's length is a count and its bytes a
	 * length word far too large: an error. */
	ck_assert_ptr_null(dlaunch__msg_get_strv(&r, &null));
	ck_assert_int_eq(r.err, -DLAUNCH_E_PROTO);
	ck_assert(dlaunch__msg_get_u64(&r) == 0);
	ck_assert_ptr_null(dlaunch__msg_get_str(&r));
	ck_assert_ptr_null(dlaunch__msg_get_bytes(&r, &n));
	ck_assert_int_eq(r.err, -DLAUNCH_E_PROTO);
	dlaunch__msg_free(&m);
}
END_TEST

DLT_MAIN("dlaunch_msg", 0, test_round_trip, test_header_checks, test_truncated,
	 test_bad_strings, test_bad_bytes_and_vectors, test_too_big,
	 test_sticky_error)
