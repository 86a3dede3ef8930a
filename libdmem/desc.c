/* SPDX-License-Identifier: MIT */
/*
 * desc.c - pool and allocation descriptors: binary and text forms.
 *
 * Descriptors arrive from other processes, environment variables and the
 * network, so every parser here treats its input as hostile: bounded reads,
 * strict grammar, checksum, and an error (never a crash) on anything odd.
 *
 * The two kinds share their shape: a magic and version header, a run of
 * 64-bit fields, an optional segment name, and a checksum of everything
 * before it.  Each kind is described once by a struct desc_kind; one set of
 * functions checks, copies, prints and parses both, so the binary and text
 * forms of a kind cannot drift apart.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmem_private.h"

/* The header both descriptor structs start with (a common initial
 * sequence, so it may be read through union desc_any). */
struct desc_head {
	uint32_t magic;
	uint16_t version;
	uint16_t reserved0;
};

union desc_any {
	struct desc_head head;
	dmem_pool_desc_t pool;
	dmem_alloc_desc_t alloc;
};

_Static_assert(offsetof(dmem_pool_desc_t, version) ==
			       offsetof(struct desc_head, version) &&
		       offsetof(dmem_alloc_desc_t, version) ==
			       offsetof(struct desc_head, version) &&
		       offsetof(dmem_pool_desc_t, node_id) ==
			       sizeof(struct desc_head) &&
		       offsetof(dmem_alloc_desc_t, node_id) ==
			       sizeof(struct desc_head),
	       "descriptors must start with struct desc_head");

/* A uint64_t member written in the text form, in base 10 or 16. */
struct desc_field {
	size_t off;
	int base;
};

#define DESC_MAX_FIELDS 5

struct desc_kind {
	const char *name; /* in messages: "pool descriptor" */
	const char *tag;  /* text form prefix, up to the version */
	uint32_t magic;
	uint64_t seed;	    /* of the checksum */
	size_t size;	    /* of the struct, which is the binary form */
	size_t check_off;   /* of the checksum, the last member */
	size_t segname_off; /* of a segment name ending the text, 0: none */
	int (*fields_valid)(const void *d); /* checks beyond the checksum */
	unsigned nfields;
	struct desc_field fields[DESC_MAX_FIELDS];
};

/* Text form: <tag><version>:<fields, ':'-separated>[:<segname>] */
static int pool_fields_valid(const void *d);

static const struct desc_kind pool_kind = {
	.name = "pool descriptor",
	.tag = "dmem-pool:",
	.magic = DMEM_POOL_DESC_MAGIC,
	.seed = 0x706f6f6c,
	.size = sizeof(dmem_pool_desc_t),
	.check_off = offsetof(dmem_pool_desc_t, check),
	.segname_off = offsetof(dmem_pool_desc_t, segname),
	.fields_valid = pool_fields_valid,
	.nfields = 3,
	.fields = {{offsetof(dmem_pool_desc_t, node_id), 16},
		   {offsetof(dmem_pool_desc_t, pool_uid), 16},
		   {offsetof(dmem_pool_desc_t, size), 10}},
};

static const struct desc_kind alloc_kind = {
	.name = "allocation descriptor",
	.tag = "dmem-alloc:",
	.magic = DMEM_ALLOC_DESC_MAGIC,
	.seed = 0x616c6c63,
	.size = sizeof(dmem_alloc_desc_t),
	.check_off = offsetof(dmem_alloc_desc_t, check),
	.nfields = 5,
	.fields = {{offsetof(dmem_alloc_desc_t, node_id), 16},
		   {offsetof(dmem_alloc_desc_t, pool_uid), 16},
		   {offsetof(dmem_alloc_desc_t, offset), 10},
		   {offsetof(dmem_alloc_desc_t, size), 10},
		   {offsetof(dmem_alloc_desc_t, generation), 10}},
};

static uint64_t get_u64(const void *d, size_t off)
{
	uint64_t v;

	memcpy(&v, (const char *)d + off, sizeof(v));
	return v;
}

static uint64_t desc_check(const struct desc_kind *k, const void *d)
{
	return dmem__hash64(d, k->check_off, k->seed);
}

uint64_t dmem__pool_desc_check(const dmem_pool_desc_t *d)
{
	return desc_check(&pool_kind, d);
}

uint64_t dmem__alloc_desc_check(const dmem_alloc_desc_t *d)
{
	return desc_check(&alloc_kind, d);
}

static bool valid_segname(const char *s, size_t max)
{
	size_t n = strnlen(s, max);

	if (n == max || n < 8 || strncmp(s, "dragon.", 7) != 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '-' ||
		      c == '.'))
			return false;
	}
	return true;
}

static int desc_valid(const struct desc_kind *k, const void *d)
{
	struct desc_head h;

	memcpy(&h, d, sizeof(h));
	if (h.magic != k->magic)
		return dmem__fail(-DMEM_E_BADMAGIC,
				  "%s expected, but the magic is %#x", k->name,
				  h.magic);
	if (h.version != DMEM_DESC_VERSION)
		return dmem__fail(-DMEM_E_VERSION,
				  "%s version %u, this libdmem understands "
				  "%u: use the same Dragon version everywhere",
				  k->name, h.version, DMEM_DESC_VERSION);
	if (get_u64(d, k->check_off) != desc_check(k, d))
		return dmem__fail(-DMEM_E_CORRUPT,
				  "%s checksum mismatch: it was altered or "
				  "cut short on its way",
				  k->name);
	return k->fields_valid ? k->fields_valid(d) : 0;
}

static int pool_fields_valid(const void *p)
{
	const dmem_pool_desc_t *d = p;

	if (!valid_segname(d->segname, sizeof(d->segname)) ||
	    d->size < DMEM_MIN_POOL || d->size > DMEM_MAX_POOL)
		return dmem__fail(-DMEM_E_CORRUPT,
				  "pool descriptor is corrupt: bad segment "
				  "name or size %" PRIu64,
				  d->size);
	return 0;
}

int dmem__pool_desc_valid(const dmem_pool_desc_t *d)
{
	return desc_valid(&pool_kind, d);
}

int dmem__alloc_desc_valid(const dmem_alloc_desc_t *d)
{
	return desc_valid(&alloc_kind, d);
}

/* ---- binary form: the struct's bytes ---------------------------------- */

static int desc_to_bytes(const struct desc_kind *k, const void *desc, void *buf,
			 size_t len)
{
	if (!desc || !buf || len < k->size)
		return dmem__fail(-EINVAL, "need a %s and %zu bytes", k->name,
				  k->size);
	memcpy(buf, desc, k->size);
	return (int)k->size;
}

static int desc_from_bytes(const struct desc_kind *k, const void *buf,
			   size_t len, void *desc_out)
{
	union desc_any d;
	int rc;

	if (!buf || !desc_out)
		return dmem__fail(-EINVAL, "NULL argument");
	if (len != k->size)
		return dmem__fail(-DMEM_E_CORRUPT, "%s is %zu bytes, got %zu",
				  k->name, k->size, len);
	memcpy(&d, buf, k->size);
	if ((rc = desc_valid(k, &d)))
		return rc;
	memcpy(desc_out, &d, k->size);
	return 0;
}

/* ---- text form --------------------------------------------------------- */

static int desc_to_text(const struct desc_kind *k, const void *desc, char *buf,
			size_t len)
{
	/* Large enough for either kind with every field at its widest. */
	char t[DMEM_POOL_DESC_TEXT_MAX];
	struct desc_head h;
	size_t n;

	if (!desc || !buf)
		return dmem__fail(-EINVAL, "NULL argument");
	memcpy(&h, desc, sizeof(h));
	n = (size_t)snprintf(t, sizeof(t), "%s%u", k->tag, (unsigned)h.version);
	for (unsigned i = 0; i < k->nfields && n < sizeof(t); i++) {
		uint64_t v = get_u64(desc, k->fields[i].off);

		n += (size_t)snprintf(
			t + n, sizeof(t) - n,
			k->fields[i].base == 16 ? ":%" PRIx64 : ":%" PRIu64, v);
	}
	if (k->segname_off && n < sizeof(t)) {
		const char *name = (const char *)desc + k->segname_off;

		n += (size_t)snprintf(t + n, sizeof(t) - n, ":%s",
				      strnlen(name, DMEM_SEGNAME_MAX) <
						      DMEM_SEGNAME_MAX
					      ? name
					      : "");
	}
	if (n >= len || n >= sizeof(t))
		return dmem__fail(-ENOSPC, "text buffer of %zu bytes too small",
				  len);
	memcpy(buf, t, n + 1);
	return (int)n;
}

/* Strict unsigned field: 1-20 digits of the base, nothing else, no wrap.
 * Leaves *s at the character that ends it (':' or the final NUL). */
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
	*s = p;
	*out = v;
	return 0;
}

/* The fields after the version, each behind a ':', then the segment name
 * (the rest of the text) or the end of the text. */
static int text_body(const struct desc_kind *k, const char *s, void *d)
{
	for (unsigned i = 0; i < k->nfields; i++) {
		uint64_t v;

		if (*s++ != ':' || field_u64(&s, k->fields[i].base, &v))
			return -1;
		memcpy((char *)d + k->fields[i].off, &v, sizeof(v));
	}
	if (!k->segname_off)
		return *s ? -1 : 0;
	if (*s++ != ':' || strlen(s) >= DMEM_SEGNAME_MAX)
		return -1;
	strcpy((char *)d + k->segname_off, s);
	return 0;
}

static int desc_from_text(const struct desc_kind *k, const char *text,
			  void *desc_out)
{
	union desc_any d;
	size_t taglen;
	uint64_t ver, check;
	const char *s = text;

	if (!text || !desc_out)
		return dmem__fail(-EINVAL, "NULL argument");
	taglen = strlen(k->tag);
	if (strncmp(s, k->tag, taglen) != 0)
		return dmem__fail(-DMEM_E_BADMAGIC,
				  "'%.40s' is not %s text (expected %s...)",
				  text, k->name, k->tag);
	s += taglen;
	if (field_u64(&s, 10, &ver) || ver != DMEM_DESC_VERSION)
		return dmem__fail(-DMEM_E_VERSION,
				  "%s text version not %u: use the same "
				  "Dragon version everywhere",
				  k->name, DMEM_DESC_VERSION);
	memset(&d, 0, sizeof(d));
	if (text_body(k, s, &d))
		goto malformed;
	d.head.magic = k->magic;
	d.head.version = DMEM_DESC_VERSION;
	check = desc_check(k, &d);
	memcpy((char *)&d + k->check_off, &check, sizeof(check));
	if (desc_valid(k, &d))
		goto malformed;
	memcpy(desc_out, &d, k->size);
	return 0;
malformed:
	return dmem__fail(-DMEM_E_CORRUPT, "malformed %s text '%.80s'", k->name,
			  text);
}

/* ---- the public functions ---------------------------------------------- */

DMEM_EXPORT int dmem_pool_desc_serialize(const dmem_pool_desc_t *desc,
					 void *buf, size_t len)
{
	return desc_to_bytes(&pool_kind, desc, buf, len);
}

DMEM_EXPORT int dmem_alloc_desc_serialize(const dmem_alloc_desc_t *desc,
					  void *buf, size_t len)
{
	return desc_to_bytes(&alloc_kind, desc, buf, len);
}

DMEM_EXPORT int dmem_pool_desc_deserialize(const void *buf, size_t len,
					   dmem_pool_desc_t *desc_out)
{
	return desc_from_bytes(&pool_kind, buf, len, desc_out);
}

DMEM_EXPORT int dmem_alloc_desc_deserialize(const void *buf, size_t len,
					    dmem_alloc_desc_t *desc_out)
{
	return desc_from_bytes(&alloc_kind, buf, len, desc_out);
}

DMEM_EXPORT int dmem_pool_desc_to_text(const dmem_pool_desc_t *desc, char *buf,
				       size_t len)
{
	return desc_to_text(&pool_kind, desc, buf, len);
}

DMEM_EXPORT int dmem_alloc_desc_to_text(const dmem_alloc_desc_t *desc,
					char *buf, size_t len)
{
	return desc_to_text(&alloc_kind, desc, buf, len);
}

DMEM_EXPORT int dmem_pool_desc_from_text(const char *text,
					 dmem_pool_desc_t *desc_out)
{
	return desc_from_text(&pool_kind, text, desc_out);
}

DMEM_EXPORT int dmem_alloc_desc_from_text(const char *text,
					  dmem_alloc_desc_t *desc_out)
{
	return desc_from_text(&alloc_kind, text, desc_out);
}
