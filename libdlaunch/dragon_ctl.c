/* The control link's frames (see dragon_ctl.h). */
#define _GNU_SOURCE
#include "config.h"
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include "dragon_ctl.h"

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EAGAIN) {
			struct pollfd pf = {.fd = fd, .events = POLLOUT};

			if (poll(&pf, 1, 5000) == 0)
				return -ETIMEDOUT;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int ctl_data_fields(int type)
{
	switch (type) {
	case CTL_OUTPUT:
		return 2;
	case CTL_LOG:
		return 0;
	default:
		return -1;
	}
}

static int send_frame(int fd, int type, const char *const *f, int n,
		      const char *data, size_t dlen)
{
	size_t len = 1 + dlen;
	uint32_t be;
	char *buf, *p;
	int rc;

	for (int i = 0; i < n; i++)
		len += strlen(f[i] ? f[i] : "") + 1;
	if (len > CTL_FRAME_MAX)
		return -E2BIG;
	buf = malloc(4 + len);
	if (!buf)
		return -ENOMEM;
	be = htonl((uint32_t)len);
	memcpy(buf, &be, 4);
	buf[4] = (char)type;
	p = buf + 5;
	for (int i = 0; i < n; i++) {
		size_t k = strlen(f[i] ? f[i] : "") + 1;

		memcpy(p, f[i] ? f[i] : "", k);
		p += k;
	}
	if (dlen)
		memcpy(p, data, dlen);
	rc = write_all(fd, buf, 4 + len);
	free(buf);
	return rc;
}

int ctl_send(int fd, int type, const char *const *f, int n)
{
	return send_frame(fd, type, f, n, NULL, 0);
}

int ctl_send_data(int fd, int type, const char *const *f, const char *data,
		  size_t len)
{
	int n = ctl_data_fields(type);

	if (n < 0)
		return -EINVAL;
	return send_frame(fd, type, f, n, data, len);
}

int ctl_fill(struct ctl_conn *c)
{
	ssize_t r;

	if (c->cap - c->len < 65536) {
		size_t cap = c->cap ? c->cap * 2 : 131072;
		char *b;

		if (cap > 2 * (CTL_FRAME_MAX + 4))
			return -1;
		b = realloc(c->buf, cap);
		if (!b)
			return -1;
		c->buf = b;
		c->cap = cap;
	}
	r = read(c->fd, c->buf + c->len, c->cap - c->len);
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (r <= 0)
		return -1;
	c->len += (size_t)r;
	return 1;
}

/* The fields of the frame in m->mem[1..len): all of them, or in a data
 * frame the first ctl_data_fields and the bytes after them.  0 or -1. */
static int split_fields(struct ctl_msg *m, size_t len)
{
	int want = ctl_data_fields(m->type), n = 0;
	size_t i = 1;

	if (want < 0) {
		if (len > 1 && m->mem[len - 1] != '\0')
			return -1;
		for (size_t k = 1; k < len; k++)
			n += m->mem[k] == '\0';
	} else {
		n = want;
	}
	m->f = calloc((size_t)n + 1, sizeof *m->f);
	if (!m->f)
		return -1;
	for (; m->n < n; i += strlen(m->mem + i) + 1) {
		if (i >= len || !memchr(m->mem + i, '\0', len - i))
			return -1;
		m->f[m->n++] = m->mem + i;
	}
	if (want >= 0) {
		m->data = m->mem + i;
		m->datalen = len - i;
	}
	return 0;
}

int ctl_next(struct ctl_conn *c, struct ctl_msg *m)
{
	uint32_t be;
	size_t len;

	if (c->len < 4)
		return 0;
	memcpy(&be, c->buf, 4);
	len = ntohl(be);
	if (len < 1 || len > CTL_FRAME_MAX)
		return -1;
	if (c->len < 4 + len)
		return 0;
	memset(m, 0, sizeof *m);
	m->mem = malloc(len);
	if (!m->mem)
		return -1;
	memcpy(m->mem, c->buf + 4, len);
	m->type = (unsigned char)m->mem[0];
	if (split_fields(m, len)) {
		ctl_msg_free(m);
		return -1;
	}
	memmove(c->buf, c->buf + 4 + len, c->len - 4 - len);
	c->len -= 4 + len;
	return 1;
}

void ctl_msg_free(struct ctl_msg *m)
{
	free(m->f);
	free(m->mem);
	m->f = NULL;
	m->mem = NULL;
}

const char *ctl_field(const struct ctl_msg *m, int i)
{
	return i < m->n ? m->f[i] : "";
}

static void to_hex(const unsigned char *b, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
	out[2 * n] = '\0';
}

int ctl_nonce(char out[CTL_NONCE_HEX + 1])
{
	unsigned char raw[CTL_NONCE_HEX / 2];

	if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
		return -EIO;
	to_hex(raw, sizeof raw, out);
	return 0;
}

int ctl_proof(const char *secret, const char *role, const char *const *f, int n,
	      char out[CTL_PROOF_HEX + 1])
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	size_t total = strlen(role) + 1, k;
	char *msg, *p;
	bool ok;

	for (int i = 0; i < n; i++)
		total += strlen(f[i] ? f[i] : "") + 1;
	if (total > CTL_FRAME_MAX || !(msg = malloc(total)))
		return -1;
	k = strlen(role) + 1;
	memcpy(msg, role, k);
	p = msg + k;
	for (int i = 0; i < n; i++) {
		k = strlen(f[i] ? f[i] : "") + 1;
		memcpy(p, f[i] ? f[i] : "", k);
		p += k;
	}
	ok = HMAC(EVP_sha256(), secret, (int)strlen(secret),
		  (const unsigned char *)msg, total, mac, &len) &&
	     len == CTL_PROOF_HEX / 2;
	free(msg);
	if (!ok)
		return -1;
	to_hex(mac, len, out);
	OPENSSL_cleanse(mac, sizeof mac);
	return 0;
}

int ctl_proof_ok(const char *given, const char *expected)
{
	return strlen(given) == CTL_PROOF_HEX &&
	       strlen(expected) == CTL_PROOF_HEX &&
	       CRYPTO_memcmp(given, expected, CTL_PROOF_HEX) == 0;
}
