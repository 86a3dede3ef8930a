/*
 * Gateway messages: encoding and strict decoding.  The layout (all
 * integers little-endian, offsets in bytes) is documented in dchan(7):
 *
 * request                              completion
 *   0  u32 magic "DGWQ"                  0  u32 magic "DGWC"
 *   4  u16 version                       4  u16 version
 *   6  u16 op                            6  u16 op
 *   8  u32 header length                 8  u32 header length (48)
 *  12  u32 arg                          12  i32 status
 *  16  u64 total length                 16  u64 total length
 *  24  u64 request id                   24  u64 request id
 *  32  u64 timeout (ns)                 32  u64 value
 *  40  u64 cap                          40  u64 payload length
 *  48  u64 payload length               48  payload
 *  56  u64 reserved (0)
 *  64  target channel descriptor
 *  64+D reply channel descriptor
 *  64+2D payload
 *
 * D is sizeof(dchan_desc_t).  A decoder checks every length against the
 * buffer before it reads, so a short, long or lying message is refused
 * with -DCHAN_E_BADREQ and never read past its end.
 */
#include "config.h"
#include "dchan_private.h"

#include <stdio.h>
#include <string.h>

#define REQ_HDR 64u
#define CPL_HDR 48u
#define DESC_SZ ((uint32_t)sizeof(dchan_desc_t))

static void put16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
}

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

static uint16_t get16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const unsigned char *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t get64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static bool gw_op_ok(uint16_t op)
{
	return op >= DCHAN_GW_SEND && op <= DCHAN_GW_MEM_WRITE;
}

static int bad_frame(const char *what);

static bool gw_op_mem(uint16_t op)
{
	return op == DCHAN_GW_MEM_READ || op == DCHAN_GW_MEM_WRITE;
}

int dchan__mem_range_check(const dmem_alloc_desc_t *a, uint64_t off,
			   uint64_t len)
{
	if (off > a->size || len > a->size - off)
		return dchan__fail(-EINVAL,
				   "bytes %llu to %llu are outside the "
				   "allocation of %llu bytes (at offset %#llx "
				   "of its pool)",
				   (unsigned long long)off,
				   (unsigned long long)(off + len),
				   (unsigned long long)a->size,
				   (unsigned long long)a->offset);
	if (len > DCHAN_GW_PAYLOAD_MAX)
		return dchan__fail(
			-DMEM_E_TOOBIG, "%llu bytes in one copy; at most %u",
			(unsigned long long)len, DCHAN_GW_PAYLOAD_MAX);
	return 0;
}

void dchan__gw_mem_hdr(void *buf, const dmem_alloc_desc_t *a, uint64_t off,
		       uint64_t len)
{
	unsigned char *p = buf;

	memcpy(p, a, sizeof *a);
	put64(p + sizeof *a, off);
	put64(p + sizeof *a + 8, len);
}

int dchan__gw_mem_parse(const dchan_gw_req_t *req, struct dchan__gw_mem *m)
{
	const unsigned char *p = req->payload;
	struct dchan__gw_mem r;
	char why[256];
	int rc;

	if (req->payload_len < DCHAN_GW_MEM_HDR)
		return bad_frame("memory request shorter than its header");
	rc = dmem_alloc_desc_deserialize(p, sizeof r.alloc, &r.alloc);
	if (rc < 0) {
		snprintf(why, sizeof why, "%s", dmem_errmsg());
		return dchan__fail(-DCHAN_E_BADREQ,
				   "memory request carries a bad "
				   "allocation descriptor: %s",
				   why);
	}
	r.off = get64(p + sizeof r.alloc);
	r.len = get64(p + sizeof r.alloc + 8);
	r.data = p + DCHAN_GW_MEM_HDR;
	if (r.alloc.node_id != req->target.node_id ||
	    r.alloc.pool_uid != req->target.pool.pool_uid)
		return bad_frame("memory request's allocation is not of its "
				 "pool");
	if (req->payload_len - DCHAN_GW_MEM_HDR !=
	    (req->op == DCHAN_GW_MEM_WRITE ? r.len : 0))
		return bad_frame("memory request's length does not match its "
				 "payload");
	*m = r;
	return 0;
}

DCHAN_EXPORT int64_t dchan_gw_req_encode(const dchan_gw_req_t *req, void *buf,
					 size_t len)
{
	uint64_t hdr = REQ_HDR + 2 * DESC_SZ, total;
	unsigned char *p = buf;

	if (!req || !buf || !gw_op_ok(req->op) ||
	    req->payload_len > DCHAN_GW_PAYLOAD_MAX ||
	    (req->payload_len && !req->payload))
		return dchan__fail(-EINVAL, "bad gateway request to encode");
	total = hdr + req->payload_len;
	if (len < total)
		return dchan__fail(-ENOSPC, "gateway request needs %llu bytes",
				   (unsigned long long)total);
	memset(p, 0, REQ_HDR);
	put32(p, DCHAN_GW_MAGIC_REQ);
	put16(p + 4, DCHAN_GW_VERSION);
	put16(p + 6, req->op);
	put32(p + 8, (uint32_t)hdr);
	put32(p + 12, req->arg);
	put64(p + 16, total);
	put64(p + 24, req->req_id);
	put64(p + 32, req->timeout_ns);
	put64(p + 40, req->cap);
	put64(p + 48, req->payload_len);
	memcpy(p + REQ_HDR, &req->target, DESC_SZ);
	memcpy(p + REQ_HDR + DESC_SZ, &req->reply, DESC_SZ);
	if (req->payload_len)
		memcpy(p + hdr, req->payload, req->payload_len);
	return (int64_t)total;
}

static int bad_frame(const char *what)
{
	return dchan__fail(-DCHAN_E_BADREQ, "gateway message: %s", what);
}

/* Magic, version and the three lengths of either kind of message. */
static int gw_frame(const unsigned char *p, size_t len, uint32_t magic,
		    uint32_t hdr_expect, uint64_t plen_at)
{
	if (len < 16)
		return bad_frame("shorter than its fixed header");
	if (get32(p) != magic)
		return bad_frame("wrong magic");
	if (get16(p + 4) != DCHAN_GW_VERSION)
		return dchan__fail(-DCHAN_E_VERSION,
				   "gateway message version "
				   "%u, this library speaks %u",
				   get16(p + 4), DCHAN_GW_VERSION);
	if (get32(p + 8) != hdr_expect || len < hdr_expect)
		return bad_frame("header length does not match");
	if (get64(p + 16) != len)
		return bad_frame("total length does not match the buffer");
	if (get64(p + plen_at) != len - hdr_expect ||
	    get64(p + plen_at) > DCHAN_GW_PAYLOAD_MAX)
		return bad_frame("payload length does not match");
	if (!gw_op_ok(get16(p + 6)))
		return bad_frame("unknown operation");
	return 0;
}

DCHAN_EXPORT int dchan_gw_req_decode(const void *buf, size_t len,
				     dchan_gw_req_t *req_out)
{
	const unsigned char *p = buf;
	uint32_t hdr = REQ_HDR + 2 * DESC_SZ;
	dchan_gw_req_t r;
	int rc;

	if (!buf || !req_out)
		return dchan__fail(-EINVAL, "NULL buffer or output");
	rc = gw_frame(p, len, DCHAN_GW_MAGIC_REQ, hdr, 48);
	if (rc < 0)
		return rc;
	if (get64(p + 56) != 0)
		return bad_frame("reserved field is not zero");
	memset(&r, 0, sizeof r);
	r.version = get16(p + 4);
	r.op = get16(p + 6);
	r.arg = get32(p + 12);
	r.req_id = get64(p + 24);
	r.timeout_ns = get64(p + 32);
	r.cap = get64(p + 40);
	r.payload_len = get64(p + 48);
	r.payload = p + hdr;
	if (dchan_desc_deserialize(p + REQ_HDR, DESC_SZ, &r.target) < 0 ||
	    dchan_desc_deserialize(p + REQ_HDR + DESC_SZ, DESC_SZ, &r.reply) <
		    0) {
		char why[256];

		snprintf(why, sizeof why, "%s", dchan_errmsg());
		return dchan__fail(-DCHAN_E_BADREQ,
				   "gateway request carries a "
				   "bad channel descriptor: %s",
				   why);
	}
	if (r.op != DCHAN_GW_SEND && !gw_op_mem(r.op) && r.payload_len)
		return bad_frame("payload on an operation that takes none");
	if (gw_op_mem(r.op)) {
		struct dchan__gw_mem m;

		rc = dchan__gw_mem_parse(&r, &m);
		if (rc < 0)
			return rc;
	}
	*req_out = r;
	return 0;
}

DCHAN_EXPORT int64_t dchan_gw_cpl_encode(const dchan_gw_cpl_t *cpl, void *buf,
					 size_t len)
{
	unsigned char *p = buf;
	uint64_t total;

	if (!cpl || !buf || !gw_op_ok(cpl->op) ||
	    cpl->payload_len > DCHAN_GW_PAYLOAD_MAX ||
	    (cpl->payload_len && !cpl->payload))
		return dchan__fail(-EINVAL, "bad gateway completion to encode");
	total = CPL_HDR + cpl->payload_len;
	if (len < total)
		return dchan__fail(-ENOSPC,
				   "gateway completion needs %llu "
				   "bytes",
				   (unsigned long long)total);
	put32(p, DCHAN_GW_MAGIC_CPL);
	put16(p + 4, DCHAN_GW_VERSION);
	put16(p + 6, cpl->op);
	put32(p + 8, CPL_HDR);
	put32(p + 12, (uint32_t)cpl->status);
	put64(p + 16, total);
	put64(p + 24, cpl->req_id);
	put64(p + 32, cpl->value);
	put64(p + 40, cpl->payload_len);
	if (cpl->payload_len)
		memcpy(p + CPL_HDR, cpl->payload, cpl->payload_len);
	return (int64_t)total;
}

/* A servicer that streams a large received message from the pool
 * where it lies writes the completion's header here and the payload
 * after it, instead of copying both into one buffer. */
DCHAN_EXPORT int64_t dchan_gw_cpl_encode_head(const dchan_gw_cpl_t *cpl,
					      void *buf, size_t len)
{
	dchan_gw_cpl_t head;
	unsigned char *p = buf;
	int64_t n;

	if (!cpl || !buf || cpl->payload_len > DCHAN_GW_PAYLOAD_MAX)
		return dchan__fail(-EINVAL, "bad gateway completion to encode");
	head = *cpl;
	head.payload = NULL;
	head.payload_len = 0;
	n = dchan_gw_cpl_encode(&head, buf, len);
	if (n < 0)
		return n;
	put64(p + 16, CPL_HDR + cpl->payload_len);
	put64(p + 40, cpl->payload_len);
	return n;
}

DCHAN_EXPORT int dchan_gw_cpl_decode(const void *buf, size_t len,
				     dchan_gw_cpl_t *cpl_out)
{
	const unsigned char *p = buf;
	dchan_gw_cpl_t c;
	int rc;

	if (!buf || !cpl_out)
		return dchan__fail(-EINVAL, "NULL buffer or output");
	rc = gw_frame(p, len, DCHAN_GW_MAGIC_CPL, CPL_HDR, 40);
	if (rc < 0)
		return rc;
	memset(&c, 0, sizeof c);
	c.version = get16(p + 4);
	c.op = get16(p + 6);
	c.status = (int32_t)get32(p + 12);
	c.req_id = get64(p + 24);
	c.value = get64(p + 32);
	c.payload_len = get64(p + 40);
	c.payload = p + CPL_HDR;
	if (c.status > 0 || c.status < -65535)
		return bad_frame("status out of range");
	*cpl_out = c;
	return 0;
}
