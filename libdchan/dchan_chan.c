/* Channel life cycle: create, attach, detach, destroy. */
#include "config.h"
#include "dchan_private.h"

#include <stdlib.h>
#include <string.h>

struct dchan__geom {
	uint32_t cap, slot_size, stride, slots_off;
	uint64_t total;
};

static uint32_t round_up(uint64_t v, uint32_t a)
{
	return (uint32_t)((v + a - 1) / a * a);
}

static int geometry_of(const dchan_attr_t *attr, struct dchan__geom *g)
{
	uint64_t payload;

	g->cap = DCHAN_CAPACITY_DEFAULT;
	g->slot_size = DCHAN_SLOT_SIZE_DEFAULT;
	if (attr && (attr->field_mask & DCHAN_ATTR_CAPACITY))
		g->cap = attr->capacity;
	if (attr && (attr->field_mask & DCHAN_ATTR_SLOT_SIZE))
		g->slot_size = attr->slot_size;
	if (g->cap == 0 || g->cap > DCHAN_CAPACITY_MAX)
		return dchan__fail(-EINVAL,
				   "channel capacity %u is not in "
				   "1..%u",
				   g->cap, DCHAN_CAPACITY_MAX);
	if (g->slot_size > DCHAN_SLOT_SIZE_MAX)
		return dchan__fail(-EINVAL, "slot size %u is larger than %u",
				   g->slot_size, DCHAN_SLOT_SIZE_MAX);
	payload = g->slot_size;
	if (payload < sizeof(dmem_alloc_desc_t))
		payload = sizeof(dmem_alloc_desc_t);
	g->stride = round_up(DCHAN__SLOT_HDR + payload, DCHAN__CACHELINE);
	g->slots_off = round_up(sizeof(struct dchan__hdr), DCHAN__CACHELINE);
	g->total = g->slots_off + (uint64_t)g->stride * g->cap;
	return 0;
}

/* Fill the process-local fields of a handle from a checked header. */
static void bind_handle(dchan_t *ch, struct dchan__hdr *h)
{
	ch->hdr = h;
	ch->slots = (unsigned char *)h + h->slots_off;
	ch->cap = h->capacity;
	ch->stride = h->stride;
	ch->slot_size = h->slot_size;
	ch->mask = (ch->cap & (ch->cap - 1)) == 0 ? ch->cap - 1 : 0;
	if (ch->cap == 1)
		ch->mask = 0; /* pos % 1 */
}

static void init_hdr(struct dchan__hdr *h, const struct dchan__geom *g,
		     uint64_t pool_uid, uint32_t obj_kind)
{
	memset(h, 0, g->slots_off);
	h->layout_version = DCHAN__LAYOUT_VERSION;
	h->obj_kind = obj_kind;
	h->chan_uid = dchan__random64();
	h->pool_uid = pool_uid;
	h->capacity = g->cap;
	h->slot_size = g->slot_size;
	h->stride = g->stride;
	h->slots_off = g->slots_off;
	h->total_size = g->total;
	for (uint32_t i = 0; i < g->cap; i++) {
		struct dchan__slot *s =
			(struct dchan__slot *)((unsigned char *)h +
					       g->slots_off +
					       (uint64_t)i * g->stride);

		s->state = dchan__state(2 * i, 0);
		s->kind = 0;
		s->len = 0;
	}
	/* the magic goes last: a half-built header is never accepted */
	__atomic_store_n(&h->magic, DCHAN__HDR_MAGIC, __ATOMIC_RELEASE);
}

static void make_desc(dchan_t *ch, const dmem_pool_desc_t *pd)
{
	dchan_desc_t *d = &ch->desc;

	memset(d, 0, sizeof *d);
	d->magic = DCHAN_DESC_MAGIC;
	d->version = DCHAN_DESC_VERSION;
	d->node_id = pd->node_id;
	d->chan_uid = ch->hdr->chan_uid;
	d->offset = dmem_pool_offset(ch->pool, ch->hdr);
	d->pool = *pd;
	dchan__desc_seal(d);
}

int dchan__create(dmem_pool_t *pool, const dchan_attr_t *attr,
		  uint32_t obj_kind, dchan_t **ch_out)
{
	struct dchan__geom g;
	dmem_pool_desc_t pd;
	dchan_t *ch;
	void *mem;
	int rc;

	if (!pool || !ch_out)
		return dchan__fail(-EINVAL, "NULL pool or output handle");
	rc = geometry_of(attr, &g);
	if (rc < 0)
		return rc;
	rc = dmem_pool_desc_get(pool, &pd);
	if (rc < 0)
		return dchan__fail_dmem(rc, "reading the pool's descriptor");
	ch = calloc(1, sizeof *ch);
	if (!ch)
		return dchan__fail(-ENOMEM, "no memory for a channel handle");
	rc = dmem_alloc(pool, g.total, DCHAN__CACHELINE, &mem);
	if (rc < 0) {
		rc = dchan__fail(rc,
				 "a channel of %u slots of %u bytes needs "
				 "%llu bytes of the pool: %s",
				 g.cap, g.stride, (unsigned long long)g.total,
				 dmem_errmsg());
		goto fail_alloc;
	}
	rc = dmem_alloc_chown(pool, mem, DMEM_OWNER_NONE);
	if (rc < 0) {
		rc = dchan__fail_dmem(rc, "giving the channel to the pool");
		goto fail_chown;
	}
	rc = dchan__pool_hold(&pd, pool, &ch->pref);
	if (rc < 0)
		goto fail_chown;
	ch->pool = dchan__pref_pool(ch->pref);
	/* The handle works through the mapping libdchan holds for this pool,
	 * which is not the caller's when the process maps the pool twice. */
	if (ch->pool != pool)
		mem = dmem_pool_ptr(ch->pool, dmem_pool_offset(pool, mem));
	init_hdr(mem, &g, pd.pool_uid, obj_kind);
	bind_handle(ch, mem);
	make_desc(ch, &pd);
	*ch_out = ch;
	return 0;

fail_chown:
	dmem_free(pool, mem);
fail_alloc:
	free(ch);
	return rc;
}

DCHAN_EXPORT int dchan_create(dmem_pool_t *pool, const dchan_attr_t *attr,
			      dchan_t **ch_out)
{
	return dchan__create(pool, attr, DCHAN__OBJ_CHANNEL, ch_out);
}

/* A header in shared memory is checked before the handle trusts any field
 * of it: magic, version, geometry and that it fits the pool. */
int dchan__validate_hdr(const struct dchan__hdr *h, uint64_t avail)
{
	struct dchan__geom g;
	dchan_attr_t a = {.field_mask =
				  DCHAN_ATTR_CAPACITY | DCHAN_ATTR_SLOT_SIZE};

	if (avail < sizeof *h)
		return dchan__fail(-DCHAN_E_BADDESC,
				   "channel header would "
				   "extend past the end of its pool");
	if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != DCHAN__HDR_MAGIC)
		return dchan__fail(-DCHAN_E_BADDESC,
				   "no channel at that "
				   "offset (destroyed, or a bad descriptor)");
	if (h->layout_version != DCHAN__LAYOUT_VERSION)
		return dchan__fail(-DCHAN_E_VERSION,
				   "channel layout version "
				   "%u, this library knows %u",
				   h->layout_version, DCHAN__LAYOUT_VERSION);
	a.capacity = h->capacity;
	a.slot_size = h->slot_size;
	if (geometry_of(&a, &g) < 0 || g.stride != h->stride ||
	    g.slots_off != h->slots_off || g.total != h->total_size ||
	    g.total > avail)
		return dchan__fail(-DCHAN_E_BADDESC, "channel header fails its "
						     "geometry checks");
	return 0;
}

static int attach_local(dchan_t *ch, const dchan_desc_t *d)
{
	struct dchan__hdr *h;
	int rc;

	rc = dchan__pool_hold(&d->pool, NULL, &ch->pref);
	if (rc < 0)
		return rc;
	ch->pool = dchan__pref_pool(ch->pref);
	h = dmem_pool_ptr(ch->pool, d->offset);
	rc = h ? dchan__validate_hdr(h, dmem_pool_size(ch->pool) - d->offset)
	       : dchan__fail(-DCHAN_E_BADDESC, "offset outside the pool");
	if (rc == 0 && h->chan_uid != d->chan_uid)
		rc = dchan__fail(
			-DCHAN_E_BADDESC,
			"the channel at that offset "
			"is another one (the named one was destroyed)");
	if (rc < 0) {
		dchan__pool_drop(ch->pref);
		return rc;
	}
	bind_handle(ch, h);
	return 0;
}

/* Attach whatever object the descriptor names: a channel or the channel
 * of a sync object (their own attach calls check the kind). */
int dchan__attach(const dchan_desc_t *desc, dchan_t **ch_out)
{
	dchan_t *ch;
	int rc;

	if (!desc || !ch_out)
		return dchan__fail(-EINVAL, "NULL descriptor or output handle");
	rc = dchan__desc_check(desc);
	if (rc < 0)
		return rc;
	ch = calloc(1, sizeof *ch);
	if (!ch)
		return dchan__fail(-ENOMEM, "no memory for a channel handle");
	ch->desc = *desc;
	if (desc->node_id != dmem_node_id())
		ch->remote = true;
	else if ((rc = attach_local(ch, desc)) < 0) {
		free(ch);
		return rc;
	}
	*ch_out = ch;
	return 0;
}

/* The prefix of the kind's calls: dchan_<kind>_attach and so on. */
static const char *kind_name(uint32_t kind)
{
	static const char *const names[] = {"chan",  "lock",	"sem",
					    "event", "barrier", "cond"};

	return kind < sizeof names / sizeof names[0] ? names[kind] : "unknown";
}

/* A sync object's channel holds tokens, not messages: a plain recv would
 * take a lock's token.  Refuse a descriptor of another kind.  The kind of
 * a remote object is known only on its node; it is not checked here. */
DCHAN_EXPORT int dchan_attach(const dchan_desc_t *desc, dchan_t **ch_out)
{
	dchan_t *ch;
	uint32_t kind;
	int rc = dchan__attach(desc, &ch);

	if (rc < 0)
		return rc;
	kind = ch->remote
		       ? DCHAN__OBJ_CHANNEL
		       : __atomic_load_n(&ch->hdr->obj_kind, __ATOMIC_RELAXED);
	if (kind != DCHAN__OBJ_CHANNEL) {
		dchan_detach(ch);
		return dchan__fail(-DCHAN_E_BADDESC,
				   "the descriptor names a sync object "
				   "(kind '%s'), not a channel: attach it "
				   "with dchan_%s_attach",
				   kind_name(kind), kind_name(kind));
	}
	*ch_out = ch;
	return 0;
}

DCHAN_EXPORT int dchan_detach(dchan_t *ch)
{
	if (!ch)
		return dchan__fail(-EINVAL, "NULL channel handle");
	if (ch->pref)
		dchan__pool_drop(ch->pref);
	free(ch);
	return 0;
}

/* Free whatever messages are still queued (their allocations). */
static void drain(dchan_t *ch)
{
	for (uint32_t i = 0; i < ch->cap; i++) {
		struct dchan__slot *s =
			(struct dchan__slot *)(ch->slots +
					       (uint64_t)i * ch->stride);

		if (dchan__seq(DCHAN__LOAD(&s->state)) % 2 == 1)
			dchan__free_slot_desc(ch, s);
	}
}

DCHAN_EXPORT int dchan_destroy(dchan_t *ch)
{
	struct dchan__hdr *h;
	int rc;

	if (!ch)
		return dchan__fail(-EINVAL, "NULL channel handle");
	if (ch->remote) {
		dchan_detach(ch);
		return dchan__fail(-DCHAN_E_REMOTE,
				   "a remote channel is "
				   "destroyed on its own node");
	}
	h = ch->hdr;
	__atomic_store_n(&h->destroyed, 1, __ATOMIC_SEQ_CST);
	__atomic_store_n(&h->magic, 0, __ATOMIC_SEQ_CST);
	DCHAN__ADD(&h->data_seq, 1);
	DCHAN__ADD(&h->space_seq, 1);
	DCHAN__ADD(&h->ev_seq, 1);
	dmem_futex_wake(&h->data_seq, INT32_MAX);
	dmem_futex_wake(&h->space_seq, INT32_MAX);
	dmem_futex_wake(&h->ev_seq, INT32_MAX);
	drain(ch);
	rc = dmem_free(ch->pool, h);
	if (rc < 0)
		rc = dchan__fail_dmem(rc, "freeing the channel");
	dchan_detach(ch);
	return rc;
}

DCHAN_EXPORT int dchan_desc_get(const dchan_t *ch, dchan_desc_t *desc_out)
{
	if (!ch || !desc_out)
		return dchan__fail(-EINVAL, "NULL channel or output");
	*desc_out = ch->desc;
	return 0;
}

DCHAN_EXPORT dmem_pool_t *dchan_pool(const dchan_t *ch)
{
	return ch && !ch->remote ? ch->pool : NULL;
}
