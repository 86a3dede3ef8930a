/*
 * Wire frames between agents and the handshake's messages.  Every frame
 * starts with a fixed little-endian header (magic, version, type, flags,
 * length, reserved, xid) that is checked before a byte past it is read;
 * decoders take (buffer, length) and never trust a length field.  The
 * handshake's proof is HMAC-SHA256 from OpenSSL's libcrypto.
 */
#include "config.h"
#include "dtrans_private.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <string.h>

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t get64(const unsigned char *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

void dtrans__fhdr_encode(const struct dtrans__fhdr *h, void *buf)
{
	unsigned char *p = buf;

	put32(p, DTRANS__FRAME_MAGIC);
	p[4] = DTRANS__FRAME_VERSION;
	p[5] = h->type;
	p[6] = p[7] = 0;
	put32(p + 8, h->len);
	put32(p + 12, 0);
	put64(p + 16, h->xid);
}

/* The largest payload each type may carry. */
static uint32_t dtrans__fmax(unsigned type)
{
	switch (type) {
	case DTRANS__F_HELLO:
		return 8 + DTRANS__NONCE;
	case DTRANS__F_AUTH:
		return 8 + DTRANS__NONCE + DTRANS__MAC;
	case DTRANS__F_AUTH_OK:
		return DTRANS__MAC;
	case DTRANS__F_REQ:
	case DTRANS__F_CPL:
		return DTRANS__FRAME_MAX;
	case DTRANS__F_PING:
	case DTRANS__F_PONG:
	case DTRANS__F_CANCEL:
		return 0;
	}
	return 0;
}

int dtrans__fhdr_decode(const void *buf, size_t len, struct dtrans__fhdr *h)
{
	const unsigned char *p = buf;
	struct dtrans__fhdr f;

	if (!buf || len < DTRANS__FRAME_HDR)
		return -DTRANS_E_FRAME;
	f.magic = get32(p);
	f.version = p[4];
	f.type = p[5];
	f.flags = (uint16_t)(p[6] | p[7] << 8);
	f.len = get32(p + 8);
	f.reserved = get32(p + 12);
	f.xid = get64(p + 16);
	if (f.magic != DTRANS__FRAME_MAGIC)
		return -DTRANS_E_FRAME;
	if (f.version != DTRANS__FRAME_VERSION)
		return -DCHAN_E_VERSION;
	if (f.type < DTRANS__F_HELLO || f.type > DTRANS__F_CANCEL || f.flags ||
	    f.reserved)
		return -DTRANS_E_FRAME;
	if (f.len > dtrans__fmax(f.type))
		return -DTRANS_E_FRAME;
	*h = f;
	return 0;
}

size_t dtrans__hello_encode(const struct dtrans__hello *m, void *buf)
{
	unsigned char *p = buf;

	put32(p, m->node);
	put32(p + 4, m->nnodes);
	memcpy(p + 8, m->nonce, DTRANS__NONCE);
	return 8 + DTRANS__NONCE;
}

int dtrans__hello_decode(const void *buf, size_t len, struct dtrans__hello *m)
{
	const unsigned char *p = buf;

	if (!buf || len != 8 + DTRANS__NONCE)
		return -DTRANS_E_FRAME;
	m->node = get32(p);
	m->nnodes = get32(p + 4);
	memcpy(m->nonce, p + 8, DTRANS__NONCE);
	return 0;
}

size_t dtrans__auth_encode(const struct dtrans__auth *m, void *buf)
{
	unsigned char *p = buf;

	put32(p, m->node);
	put32(p + 4, m->nnodes);
	memcpy(p + 8, m->nonce, DTRANS__NONCE);
	memcpy(p + 8 + DTRANS__NONCE, m->mac, DTRANS__MAC);
	return 8 + DTRANS__NONCE + DTRANS__MAC;
}

int dtrans__auth_decode(const void *buf, size_t len, struct dtrans__auth *m)
{
	const unsigned char *p = buf;

	if (!buf || len != 8 + DTRANS__NONCE + DTRANS__MAC)
		return -DTRANS_E_FRAME;
	m->node = get32(p);
	m->nnodes = get32(p + 4);
	memcpy(m->nonce, p + 8, DTRANS__NONCE);
	memcpy(m->mac, p + 8 + DTRANS__NONCE, DTRANS__MAC);
	return 0;
}

int dtrans__mac(const void *secret, size_t secret_len, char role,
		const unsigned char *n1, const unsigned char *n2,
		uint32_t dialer, uint32_t listener, uint32_t nnodes,
		unsigned char *mac_out)
{
	unsigned char msg[16 + 2 * DTRANS__NONCE + 12];
	unsigned int maclen = 0;

	memcpy(msg, "dragon-dtrans-1", 15);
	msg[15] = (unsigned char)role;
	memcpy(msg + 16, n1, DTRANS__NONCE);
	memcpy(msg + 16 + DTRANS__NONCE, n2, DTRANS__NONCE);
	put32(msg + 16 + 2 * DTRANS__NONCE, dialer);
	put32(msg + 20 + 2 * DTRANS__NONCE, listener);
	put32(msg + 24 + 2 * DTRANS__NONCE, nnodes);
	if (!HMAC(EVP_sha256(), secret, (int)secret_len, msg, sizeof msg,
		  mac_out, &maclen) ||
	    maclen != DTRANS__MAC)
		return -EIO;
	return 0;
}

bool dtrans__mac_equal(const unsigned char *a, const unsigned char *b)
{
	return CRYPTO_memcmp(a, b, DTRANS__MAC) == 0;
}

int dtrans__random(void *buf, size_t len)
{
	return RAND_bytes(buf, (int)len) == 1 ? 0 : -EIO;
}
