/* The services' message format: a fixed, versioned header, then fields in
 * the order each message type defines.
 *
 * Every field is length-checked on the way in so that a corrupt or
 * hostile message gives DLAUNCH_E_PROTO, never a read past its end.  The
 * format is little-endian host order: services of one runtime talk on one
 * node; the transport converts between nodes later.
 */
#include "config.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "dlaunch_private.h"

#define HDR_SIZE  sizeof(dlaunch__msg_hdr_t)
#define NULL_MARK UINT32_MAX

static void reserve(dlaunch__msg_t *m, size_t n)
{
	size_t cap = m->cap ? m->cap : 256;
	uint8_t *p;

	if (m->err)
		return;
	if (m->len + n > DLAUNCH_MSG_MAX) {
		m->err = -E2BIG;
		return;
	}
	while (cap < m->len + n)
		cap *= 2;
	if (cap == m->cap)
		return;
	p = realloc(m->buf, cap);
	if (!p) {
		m->err = -ENOMEM;
		return;
	}
	m->buf = p;
	m->cap = cap;
}

static void put(dlaunch__msg_t *m, const void *p, size_t n)
{
	reserve(m, n);
	if (m->err)
		return;
	if (n)
		memcpy(m->buf + m->len, p, n);
	m->len += n;
}

int dlaunch__msg_init(dlaunch__msg_t *m, uint16_t type, uint64_t req_id,
		      int32_t status)
{
	dlaunch__msg_hdr_t h = {.magic = DLAUNCH_MSG_MAGIC,
				.version = DLAUNCH_MSG_VERSION,
				.type = type,
				.req_id = req_id,
				.status = status,
				.client = 0};

	memset(m, 0, sizeof *m);
	put(m, &h, sizeof h);
	return m->err;
}

void dlaunch__msg_free(dlaunch__msg_t *m)
{
	free(m->buf);
	m->buf = NULL;
	m->len = m->cap = 0;
}

void dlaunch__msg_put_u64(dlaunch__msg_t *m, uint64_t v)
{
	put(m, &v, sizeof v);
}

void dlaunch__msg_put_i64(dlaunch__msg_t *m, int64_t v)
{
	put(m, &v, sizeof v);
}

void dlaunch__msg_put_bytes(dlaunch__msg_t *m, const void *p, size_t n)
{
	uint32_t n32 = (uint32_t)n;

	if (n >= NULL_MARK) {
		m->err = -E2BIG;
		return;
	}
	put(m, &n32, sizeof n32);
	put(m, p, n);
}

/* Strings travel with their NUL so readers can hand out pointers. */
void dlaunch__msg_put_str(dlaunch__msg_t *m, const char *s)
{
	uint32_t mark = NULL_MARK;

	if (!s) {
		put(m, &mark, sizeof mark);
		return;
	}
	dlaunch__msg_put_bytes(m, s, strlen(s) + 1);
}

void dlaunch__msg_put_strv(dlaunch__msg_t *m, char *const *v)
{
	uint32_t n = 0;

	if (!v) {
		n = NULL_MARK;
		put(m, &n, sizeof n);
		return;
	}
	while (v[n])
		n++;
	put(m, &n, sizeof n);
	for (uint32_t i = 0; i < n; i++)
		dlaunch__msg_put_str(m, v[i]);
}

int dlaunch__msg_open(dlaunch__msg_t *m, const void *buf, size_t len,
		      dlaunch__msg_hdr_t *hdr_out)
{
	dlaunch__msg_hdr_t h;

	memset(m, 0, sizeof *m);
	if (len < HDR_SIZE)
		return m->err = -DLAUNCH_E_PROTO;
	memcpy(&h, buf, sizeof h);
	if (h.magic != DLAUNCH_MSG_MAGIC)
		return m->err = -DLAUNCH_E_PROTO;
	if (h.version != DLAUNCH_MSG_VERSION)
		return m->err = -DLAUNCH_E_VERSION;
	m->buf = (uint8_t *)buf;
	m->len = len;
	m->pos = HDR_SIZE;
	*hdr_out = h;
	return 0;
}

static const void *take(dlaunch__msg_t *m, size_t n)
{
	const void *p;

	if (m->err || n > m->len - m->pos) {
		m->err = -DLAUNCH_E_PROTO;
		return NULL;
	}
	p = m->buf + m->pos;
	m->pos += n;
	return p;
}

uint64_t dlaunch__msg_get_u64(dlaunch__msg_t *m)
{
	const void *p = take(m, sizeof(uint64_t));
	uint64_t v = 0;

	if (p)
		memcpy(&v, p, sizeof v);
	return v;
}

int64_t dlaunch__msg_get_i64(dlaunch__msg_t *m)
{
	return (int64_t)dlaunch__msg_get_u64(m);
}

static uint32_t get_u32(dlaunch__msg_t *m)
{
	const void *p = take(m, sizeof(uint32_t));
	uint32_t v = 0;

	if (p)
		memcpy(&v, p, sizeof v);
	return v;
}

const void *dlaunch__msg_get_bytes(dlaunch__msg_t *m, size_t *n_out)
{
	uint32_t n = get_u32(m);
	const void *p;

	if (n == NULL_MARK) {
		m->err = -DLAUNCH_E_PROTO;
		return NULL;
	}
	p = take(m, n);
	if (p)
		*n_out = n;
	return p;
}

const char *dlaunch__msg_get_str(dlaunch__msg_t *m)
{
	uint32_t n = get_u32(m);
	const char *p;

	if (m->err || n == NULL_MARK)
		return NULL;
	p = take(m, n);
	if (p && (n == 0 || p[n - 1] != '\0' || memchr(p, 0, n) != p + n - 1)) {
		m->err = -DLAUNCH_E_PROTO;
		return NULL;
	}
	return p;
}

char **dlaunch__msg_get_strv(dlaunch__msg_t *m, bool *null_out)
{
	uint32_t n = get_u32(m);
	char **v;

	*null_out = (n == NULL_MARK);
	if (m->err || n == NULL_MARK || n > (m->len - m->pos) / 5 + 1) {
		if (n != NULL_MARK)
			m->err = -DLAUNCH_E_PROTO;
		return NULL;
	}
	v = calloc((size_t)n + 1, sizeof *v);
	if (!v) {
		m->err = -ENOMEM;
		return NULL;
	}
	for (uint32_t i = 0; i < n; i++) {
		v[i] = (char *)dlaunch__msg_get_str(m);
		if (!v[i]) {
			m->err = m->err ? m->err : -DLAUNCH_E_PROTO;
			free(v);
			return NULL;
		}
	}
	return v;
}
