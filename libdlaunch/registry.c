/* Global services: the registry of named objects.
 *
 * A name maps to a kind and a few bytes (a serialized descriptor, usually).
 * Create-or-look-up of pools and channels happens here, in the services,
 * so that the check and the creation are one step for every caller and the
 * objects belong to the runtime, which removes them when it ends.  The
 * requests that use the registry are answered in req_names.c.  Everything
 * runs with the server lock held.
 */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "svc.h"

dlaunch__name_t *dlaunch__name_find(dlaunch__server_t *s, const char *name)
{
	for (dlaunch__name_t *n = s->names; n; n = n->next)
		if (strcmp(n->name, name) == 0)
			return n;
	return NULL;
}

int dlaunch__name_insert(dlaunch__server_t *s, const char *name, int kind,
			 const void *v, size_t len)
{
	dlaunch__name_t *n = calloc(1, sizeof *n);

	if (!n || !(n->name = strdup(name)) ||
	    !(n->value = malloc(len ? len : 1))) {
		if (n)
			free(n->name);
		free(n);
		return -ENOMEM;
	}
	memcpy(n->value, v, len);
	n->len = len;
	n->kind = kind;
	n->next = s->names;
	s->names = n;
	return 0;
}

static void name_free(dlaunch__name_t *n)
{
	free(n->name);
	free(n->value);
	free(n);
}

void dlaunch__name_remove(dlaunch__server_t *s, dlaunch__name_t *n)
{
	for (dlaunch__name_t **pp = &s->names; *pp; pp = &(*pp)->next)
		if (*pp == n) {
			*pp = n->next;
			break;
		}
	name_free(n);
}

/* A pool made for POOL_GET: "u<n>" in this instance. */
int dlaunch__registry_make_pool(dlaunch__server_t *s, const char *name,
				uint64_t size, dlaunch__name_t **n_out)
{
	dmem_pool_attr_t attr = {.field_mask = DMEM_POOL_ATTR_INSTANCE,
				 .instance = s->instance};
	dlaunch__rpool_t *sp = calloc(1, sizeof *sp);
	dmem_pool_desc_t d;
	char seg[32];
	int rc;

	if (!sp)
		return -ENOMEM;
	snprintf(seg, sizeof seg, "u%u", ++s->npools);
	rc = dmem_pool_create(seg, (size_t)size, &attr, &sp->pool);
	if (rc) {
		free(sp);
		return dlaunch__fail(rc, "pool '%s': %s", name, dmem_errmsg());
	}
	dmem_pool_desc_get(sp->pool, &d);
	rc = dlaunch__name_insert(s, name, DLAUNCH_KIND_POOL, &d, sizeof d);
	if (rc) {
		dmem_pool_destroy(sp->pool);
		free(sp);
		return rc;
	}
	sp->next = s->pools;
	s->pools = sp;
	*n_out = s->names;
	return 0;
}

/* A channel made for CHAN_GET, in the default pool.  It is created through
 * the services' own pool handle; libdchan works on it through the mapping
 * it holds for the anchor channel (see dlaunch__registry_anchor).  Only
 * the descriptor is kept: the channel lives in the pool until the runtime
 * removes it. */
int dlaunch__registry_make_channel(dlaunch__server_t *s, const char *name,
				   uint64_t capacity, uint64_t slot_size,
				   dlaunch__name_t **n_out)
{
	dchan_attr_t attr = {0};
	dchan_desc_t d;
	dchan_t *ch;
	int rc;

	if (capacity > DCHAN_CAPACITY_MAX || slot_size > UINT32_MAX)
		return dlaunch__fail(-EINVAL,
				     "channel '%s': capacity %llu or slot size "
				     "%llu too large",
				     name, (unsigned long long)capacity,
				     (unsigned long long)slot_size);
	if (capacity) {
		attr.field_mask |= DCHAN_ATTR_CAPACITY;
		attr.capacity = (uint32_t)capacity;
	}
	if (slot_size) {
		attr.field_mask |= DCHAN_ATTR_SLOT_SIZE;
		attr.slot_size = (uint32_t)slot_size;
	}
	rc = dchan_create(s->default_pool, &attr, &ch);
	if (rc)
		return dlaunch__fail(rc, "channel '%s': %s", name,
				     dchan_errmsg());
	rc = dchan_desc_get(ch, &d);
	if (rc == 0)
		rc = dlaunch__name_insert(s, name, DLAUNCH_KIND_CHANNEL, &d,
					  sizeof d);
	if (rc) {
		dchan_destroy(ch);
		return rc;
	}
	dchan_detach(ch);
	*n_out = s->names;
	return 0;
}

/* A small channel held for the runtime's life through which libdchan maps
 * the default pool itself (dlaunch__pool_lend): channel handles of that
 * pool in this process, the services' or the program's, then keep working
 * until they are closed, even after the runtime removed the pool. */
int dlaunch__registry_anchor(dlaunch__server_t *s)
{
	return dlaunch__pool_lend(s->default_pool, &s->chan_anchor);
}

void dlaunch__registry_reclaim(dlaunch__server_t *s, pid_t pid, size_t *nfreed)
{
	if (s->default_pool)
		dmem_pool_reclaim(s->default_pool, pid, nfreed);
	if (s->inf_pool)
		dmem_pool_reclaim(s->inf_pool, pid, NULL);
	for (dlaunch__rpool_t *sp = s->pools; sp; sp = sp->next)
		dmem_pool_reclaim(sp->pool, pid, NULL);
}

void dlaunch__registry_free(dlaunch__server_t *s)
{
	while (s->names) {
		dlaunch__name_t *n = s->names;
		s->names = n->next;
		name_free(n);
	}
	while (s->pools) {
		dlaunch__rpool_t *p = s->pools;
		s->pools = p->next;
		dmem_pool_destroy(p->pool);
		free(p);
	}
	if (s->chan_anchor)
		dchan_detach(s->chan_anchor);
	s->chan_anchor = NULL;
}
