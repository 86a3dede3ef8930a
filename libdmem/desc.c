/* SPDX-License-Identifier: MIT */
/*
 * desc.c - pool and allocation descriptors: binary and text forms.
 *
 * Descriptors arrive from other processes, environment variables and the
 * network, so every parser here treats its input as hostile: bounded reads,
 * strict grammar, checksum, and an error (never a crash) on anything odd.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmem_int.h"

uint64_t dmem__pool_desc_check(const dmem_pool_desc_t *d)
{
	return dmem__hash64(d, offsetof(dmem_pool_desc_t, check), 0x706f6f6c);
}

uint64_t dmem__alloc_desc_check(const dmem_alloc_desc_t *d)
{
	return dmem__hash64(d, offsetof(dmem_alloc_desc_t, check), 0x616c6c63);
}

static int valid_segname(const char *s, size_t max)
{
	size_t n = strnlen(s, max);

	if (n == max || n < 8 || strncmp(s, "dragon.", 7) != 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '-' ||
		      c == '.'))
			return 0;
	}
	return 1;
}

int dmem__pool_desc_valid(const dmem_pool_desc_t *d)
{
	if (d->magic != DMEM_POOL_DESC_MAGIC)
		return dmem__fail(-DMEM_E_BADMAGIC,
				  "not a pool descriptor (magic %#x)",
				  d->magic);
	if (d->version != DMEM_DESC_VERSION)
		return dmem__fail(-DMEM_E_VERSION,
				  "pool descriptor version %u, this libdmem "
				  "understands %u: use the same Dragon version "
				  "everywhere",
				  d->version, DMEM_DESC_VERSION);
	if (d->check != dmem__pool_desc_check(d) ||
	    !valid_segname(d->segname, sizeof(d->segname)) ||
	    d->size < DMEM_MIN_POOL || d->size > DMEM_MAX_POOL)
		return dmem__fail(
			-DMEM_E_CORRUPT,
			"pool descriptor is corrupt (checksum, segment "
			"name or size)");
	return 0;
}

int dmem__alloc_desc_valid(const dmem_alloc_desc_t *d)
{
	if (d->magic != DMEM_ALLOC_DESC_MAGIC)
		return dmem__fail(-DMEM_E_BADMAGIC,
				  "not an allocation descriptor (magic %#x)",
				  d->magic);
	if (d->version != DMEM_DESC_VERSION)
		return dmem__fail(
			-DMEM_E_VERSION,
			"allocation descriptor version %u, expected %u",
			d->version, DMEM_DESC_VERSION);
	if (d->check != dmem__alloc_desc_check(d))
		return dmem__fail(-DMEM_E_CORRUPT,
				  "allocation descriptor checksum mismatch");
	return 0;
}

DMEM_EXPORT int dmem_pool_desc_serialize(const dmem_pool_desc_t *desc,
					 void *buf, size_t len)
{
	if (!desc || !buf || len < sizeof(*desc))
		return dmem__fail(-EINVAL, "need a descriptor and %zu bytes",
				  sizeof(*desc));
	memcpy(buf, desc, sizeof(*desc));
	return (int)sizeof(*desc);
}

DMEM_EXPORT int dmem_pool_desc_deserialize(const void *buf, size_t len,
					   dmem_pool_desc_t *desc_out)
{
	dmem_pool_desc_t d;
	int rc;

	if (!buf || !desc_out)
		return dmem__fail(-EINVAL, "NULL argument");
	if (len != sizeof(d))
		return dmem__fail(-DMEM_E_CORRUPT,
				  "pool descriptor is %zu bytes, got %zu",
				  sizeof(d), len);
	memcpy(&d, buf, sizeof(d));
	if ((rc = dmem__pool_desc_valid(&d)))
		return rc;
	*desc_out = d;
	return 0;
}

DMEM_EXPORT int dmem_alloc_desc_serialize(const dmem_alloc_desc_t *desc,
					  void *buf, size_t len)
{
	if (!desc || !buf || len < sizeof(*desc))
		return dmem__fail(-EINVAL, "need a descriptor and %zu bytes",
				  sizeof(*desc));
	memcpy(buf, desc, sizeof(*desc));
	return (int)sizeof(*desc);
}

DMEM_EXPORT int dmem_alloc_desc_deserialize(const void *buf, size_t len,
					    dmem_alloc_desc_t *desc_out)
{
	dmem_alloc_desc_t d;
	int rc;

	if (!buf || !desc_out)
		return dmem__fail(-EINVAL, "NULL argument");
	if (len != sizeof(d))
		return dmem__fail(-DMEM_E_CORRUPT,
				  "allocation descriptor is %zu bytes, got %zu",
				  sizeof(d), len);
	memcpy(&d, buf, sizeof(d));
	if ((rc = dmem__alloc_desc_valid(&d)))
		return rc;
	*desc_out = d;
	return 0;
}

/* Strict unsigned field: 1-20 digits of the base, nothing else, no wrap.
 * Advances *s past the field and its ':' separator (or the final NUL). */
static int field_u64(const char **s, int base, uint64_t *out)
{
	const char *p = *s;
	uint64_t v = 0;
	int n = 0;

	for (; *p && *p != ':'; p++, n++) {
		int d;
		if (*p >= '0' && *p <= '9')
			d = *p - '0';
		else if (base == 16 && *p >= 'a' && *p <= 'f')
			d = *p - 'a' + 10;
		else
			return -1;
		if (n >= 20 || v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
			return -1;
		v = v * (uint64_t)base + (uint64_t)d;
	}
	if (n == 0)
		return -1;
	*s = *p ? p + 1 : p;
	*out = v;
	return 0;
}

static int text_prefix(const char **s, const char *prefix)
{
	size_t n = strlen(prefix);

	if (strncmp(*s, prefix, n) != 0)
		return -1;
	*s += n;
	return 0;
}

DMEM_EXPORT int dmem_pool_desc_to_text(const dmem_pool_desc_t *desc, char *buf,
				       size_t len)
{
	int n;

	if (!desc || !buf)
		return dmem__fail(-EINVAL, "NULL argument");
	n = snprintf(buf, len,
		     "dmem-pool:%u:%" PRIx64 ":%" PRIx64 ":%" PRIu64 ":%s",
		     (unsigned)desc->version, desc->node_id, desc->pool_uid,
		     desc->size,
		     strnlen(desc->segname, sizeof(desc->segname)) <
				     sizeof(desc->segname)
			     ? desc->segname
			     : "");
	if (n < 0 || (size_t)n >= len)
		return dmem__fail(-ENOSPC, "text buffer of %zu bytes too small",
				  len);
	return n;
}

DMEM_EXPORT int dmem_pool_desc_from_text(const char *text,
					 dmem_pool_desc_t *desc_out)
{
	dmem_pool_desc_t d;
	uint64_t ver;
	const char *s = text;

	if (!text || !desc_out)
		return dmem__fail(-EINVAL, "NULL argument");
	memset(&d, 0, sizeof(d));
	if (text_prefix(&s, "dmem-pool:"))
		return dmem__fail(-DMEM_E_BADMAGIC,
				  "'%.40s' is not a pool descriptor (expected "
				  "dmem-pool:...)",
				  text);
	if (field_u64(&s, 10, &ver) || ver != DMEM_DESC_VERSION) {
		return dmem__fail(-DMEM_E_VERSION,
				  "pool descriptor text version not %u",
				  DMEM_DESC_VERSION);
	}
	if (field_u64(&s, 16, &d.node_id) || field_u64(&s, 16, &d.pool_uid) ||
	    field_u64(&s, 10, &d.size) || strlen(s) >= sizeof(d.segname))
		return dmem__fail(-DMEM_E_CORRUPT,
				  "malformed pool descriptor text '%.80s'",
				  text);
	strcpy(d.segname, s);
	d.magic = DMEM_POOL_DESC_MAGIC;
	d.version = DMEM_DESC_VERSION;
	d.check = dmem__pool_desc_check(&d);
	if (dmem__pool_desc_valid(&d))
		return dmem__fail(-DMEM_E_CORRUPT,
				  "malformed pool descriptor text '%.80s'",
				  text);
	*desc_out = d;
	return 0;
}

DMEM_EXPORT int dmem_alloc_desc_to_text(const dmem_alloc_desc_t *desc,
					char *buf, size_t len)
{
	int n;

	if (!desc || !buf)
		return dmem__fail(-EINVAL, "NULL argument");
	n = snprintf(buf, len,
		     "dmem-alloc:%u:%" PRIx64 ":%" PRIx64 ":%" PRIu64
		     ":%" PRIu64 ":%" PRIu64,
		     (unsigned)desc->version, desc->node_id, desc->pool_uid,
		     desc->offset, desc->size, desc->generation);
	if (n < 0 || (size_t)n >= len)
		return dmem__fail(-ENOSPC, "text buffer of %zu bytes too small",
				  len);
	return n;
}

DMEM_EXPORT int dmem_alloc_desc_from_text(const char *text,
					  dmem_alloc_desc_t *desc_out)
{
	dmem_alloc_desc_t d;
	uint64_t ver;
	const char *s = text;

	if (!text || !desc_out)
		return dmem__fail(-EINVAL, "NULL argument");
	memset(&d, 0, sizeof(d));
	if (text_prefix(&s, "dmem-alloc:"))
		return dmem__fail(-DMEM_E_BADMAGIC,
				  "'%.40s' is not an allocation descriptor "
				  "(expected dmem-alloc:...)",
				  text);
	if (field_u64(&s, 10, &ver) || ver != DMEM_DESC_VERSION)
		return dmem__fail(-DMEM_E_VERSION,
				  "allocation descriptor text version not %u",
				  DMEM_DESC_VERSION);
	if (field_u64(&s, 16, &d.node_id) || field_u64(&s, 16, &d.pool_uid) ||
	    field_u64(&s, 10, &d.offset) || field_u64(&s, 10, &d.size) ||
	    field_u64(&s, 10, &d.generation) || *s)
		return dmem__fail(
			-DMEM_E_CORRUPT,
			"malformed allocation descriptor text '%.80s'", text);
	/* field_u64 leaves s at the NUL only if the last field ended there;
	 * a trailing ':' would have been consumed, so reject it. */
	if (text[strlen(text) - 1] == ':')
		return dmem__fail(
			-DMEM_E_CORRUPT,
			"malformed allocation descriptor text '%.80s'", text);
	d.magic = DMEM_ALLOC_DESC_MAGIC;
	d.version = DMEM_DESC_VERSION;
	d.check = dmem__alloc_desc_check(&d);
	*desc_out = d;
	return 0;
}
