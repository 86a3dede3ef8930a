/* Channel descriptors: checksums, the binary form and the text form. */
#include "config.h"
#include "dchan_private.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define DCHAN__DESC_CHECKED offsetof(dchan_desc_t, check)

void dchan__desc_seal(dchan_desc_t *d)
{
	d->check = dchan__hash(d, DCHAN__DESC_CHECKED);
}

/*
 * The descriptors this thread found valid last.  The verdict depends on
 * the descriptor's bytes alone, and a transport agent checks the same few
 * (the requests' targets and reply channels) several times per request:
 * when it decodes a request from its gateway channel, when the peer's
 * agent decodes it again and when that one attaches the target.  The two
 * checksums hash about 500 bytes one at a time; comparing the bytes with
 * a descriptor already found valid gives the same answer for much less.
 */
#define DESC_SEEN 4
static __thread dchan_desc_t seen[DESC_SEEN];
static __thread unsigned seen_n, seen_next;

static bool desc_seen(const dchan_desc_t *d)
{
	for (unsigned i = 0; i < seen_n; i++)
		if (memcmp(&seen[i], d, sizeof *d) == 0)
			return true;
	return false;
}

static void desc_saw(const dchan_desc_t *d)
{
	seen[seen_next] = *d;
	seen_next = (seen_next + 1) % DESC_SEEN;
	if (seen_n < DESC_SEEN)
		seen_n++;
}

/* Everything a descriptor must satisfy before anyone maps memory for it. */
int dchan__desc_check(const dchan_desc_t *desc)
{
	/* checked and remembered as one copy, wherever desc lies */
	const dchan_desc_t copy = *desc, *d = &copy;
	dmem_pool_desc_t pd;
	int rc;

	if (desc_seen(d))
		return 0;

	if (d->magic != DCHAN_DESC_MAGIC)
		return dchan__fail(-DCHAN_E_BADDESC,
				   "not a channel descriptor (magic %08x)",
				   d->magic);
	if (d->version != DCHAN_DESC_VERSION)
		return dchan__fail(-DCHAN_E_VERSION,
				   "channel descriptor version %u, this "
				   "library reads version %u",
				   d->version, DCHAN_DESC_VERSION);
	if (d->check != dchan__hash(d, DCHAN__DESC_CHECKED))
		return dchan__fail(-DCHAN_E_BADDESC,
				   "channel descriptor checksum mismatch "
				   "(corrupted or truncated)");
	rc = dmem_pool_desc_deserialize(&d->pool, sizeof d->pool, &pd);
	if (rc < 0)
		return dchan__fail_dmem(rc, "channel descriptor's pool");
	if (pd.node_id != d->node_id || d->offset >= pd.size ||
	    d->offset % 8 != 0 || d->reserved0 != 0)
		return dchan__fail(-DCHAN_E_BADDESC,
				   "channel descriptor's node/offset do not "
				   "match its pool");
	desc_saw(d);
	return 0;
}

DCHAN_EXPORT int dchan_desc_serialize(const dchan_desc_t *desc, void *buf,
				      size_t len)
{
	if (!desc || !buf)
		return dchan__fail(-EINVAL, "NULL descriptor or buffer");
	if (len < sizeof *desc)
		return dchan__fail(-ENOSPC,
				   "a channel descriptor needs %zu "
				   "bytes, the buffer has %zu",
				   sizeof *desc, len);
	memcpy(buf, desc, sizeof *desc);
	return (int)sizeof *desc;
}

DCHAN_EXPORT int dchan_desc_deserialize(const void *buf, size_t len,
					dchan_desc_t *desc_out)
{
	dchan_desc_t d;
	int rc;

	if (!buf || !desc_out)
		return dchan__fail(-EINVAL, "NULL buffer or output");
	if (len != sizeof d)
		return dchan__fail(-DCHAN_E_BADDESC,
				   "a channel descriptor is %zu bytes, got %zu",
				   sizeof d, len);
	memcpy(&d, buf, sizeof d);
	rc = dchan__desc_check(&d);
	if (rc < 0)
		return rc;
	*desc_out = d;
	return 0;
}

DCHAN_EXPORT int dchan_desc_to_text(const dchan_desc_t *desc, char *buf,
				    size_t len)
{
	char pool[DMEM_POOL_DESC_TEXT_MAX];
	int rc, n;

	if (!desc || !buf)
		return dchan__fail(-EINVAL, "NULL descriptor or buffer");
	rc = dmem_pool_desc_to_text(&desc->pool, pool, sizeof pool);
	if (rc < 0)
		return dchan__fail_dmem(rc, "channel descriptor's pool");
	n = snprintf(buf, len,
		     "dchan:%u:%" PRIx64 ":%" PRIx64 ":%" PRIx64 ":%s",
		     (unsigned)desc->version, desc->node_id, desc->chan_uid,
		     desc->offset, pool);
	if (n < 0 || (size_t)n >= len)
		return dchan__fail(-ENOSPC, "text descriptor needs %d bytes",
				   n + 1);
	return n;
}

/* One strict lower-case hex field ending at ':'; advances *p past it. */
static int hex_field(const char **p, uint64_t *out)
{
	uint64_t v = 0;
	const char *s = *p;
	int n = 0;

	for (; *s && *s != ':'; s++, n++) {
		int d;

		if (*s >= '0' && *s <= '9')
			d = *s - '0';
		else if (*s >= 'a' && *s <= 'f')
			d = *s - 'a' + 10;
		else
			return -1;
		if (n >= 16)
			return -1;
		v = v << 4 | (uint64_t)d;
	}
	if (n == 0 || *s != ':')
		return -1;
	*p = s + 1;
	*out = v;
	return 0;
}

DCHAN_EXPORT int dchan_desc_from_text(const char *text, dchan_desc_t *desc_out)
{
	uint64_t ver, node, uid, off;
	const char *p = text;
	dchan_desc_t d;
	int rc;

	if (!text || !desc_out)
		return dchan__fail(-EINVAL, "NULL text or output");
	if (strncmp(p, "dchan:", 6) != 0)
		return dchan__fail(-DCHAN_E_BADDESC, "text descriptor does "
						     "not start with 'dchan:'");
	p += 6;
	if (hex_field(&p, &ver) || hex_field(&p, &node) ||
	    hex_field(&p, &uid) || hex_field(&p, &off))
		return dchan__fail(-DCHAN_E_BADDESC,
				   "malformed text "
				   "descriptor '%.80s'",
				   text);
	if (ver != DCHAN_DESC_VERSION)
		return dchan__fail(-DCHAN_E_VERSION,
				   "text descriptor version "
				   "%" PRIu64,
				   ver);
	memset(&d, 0, sizeof d);
	rc = dmem_pool_desc_from_text(p, &d.pool);
	if (rc < 0)
		return dchan__fail_dmem(rc, "text descriptor's pool");
	d.magic = DCHAN_DESC_MAGIC;
	d.version = DCHAN_DESC_VERSION;
	d.node_id = node;
	d.chan_uid = uid;
	d.offset = off;
	dchan__desc_seal(&d);
	rc = dchan__desc_check(&d);
	if (rc < 0)
		return rc;
	*desc_out = d;
	return 0;
}
