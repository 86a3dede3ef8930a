/*
 * The pools this process reaches its channels through.  Attaching many
 * channels of one pool maps the pool once; a pool the process created (or
 * attached itself) and passed to dchan_create is used as it is, borrowed.
 */
#include "config.h"
#include "dchan_private.h"

#include <pthread.h>
#include <stdlib.h>

struct dchan__pref {
	struct dchan__pref *next;
	uint64_t pool_uid;
	dmem_pool_t *pool;
	unsigned refs;
	bool owned; /* mapped by libdchan: unmapped with the last handle */
};

static pthread_mutex_t pools_lock = PTHREAD_MUTEX_INITIALIZER;
static struct dchan__pref *pool_list;

dmem_pool_t *dchan__pref_pool(const struct dchan__pref *pref)
{
	return pref->pool;
}

static struct dchan__pref *pool_find(uint64_t uid)
{
	for (struct dchan__pref *p = pool_list; p; p = p->next)
		if (p->pool_uid == uid)
			return p;
	return NULL;
}

static int pool_add(const dmem_pool_desc_t *pd, dmem_pool_t *known,
		    struct dchan__pref **pref_out)
{
	struct dchan__pref *p = calloc(1, sizeof *p);
	int rc;

	if (!p)
		return dchan__fail(-ENOMEM, "no memory for a pool handle");
	p->pool_uid = pd->pool_uid;
	p->pool = known;
	if (!known) {
		rc = dmem_pool_attach(pd, &p->pool);
		if (rc < 0) {
			free(p);
			return dchan__fail_dmem(rc,
						"attaching the channel's pool");
		}
		p->owned = true;
	}
	p->next = pool_list;
	pool_list = p;
	*pref_out = p;
	return 0;
}

/* Take a reference on the pool named by pd, mapping it if no handle of
 * this process has it yet; known is the caller's own mapping, if any. */
int dchan__pool_hold(const dmem_pool_desc_t *pd, dmem_pool_t *known,
		     struct dchan__pref **pref_out)
{
	struct dchan__pref *p;
	int rc = 0;

	pthread_mutex_lock(&pools_lock);
	p = pool_find(pd->pool_uid);
	if (!p)
		rc = pool_add(pd, known, &p);
	if (rc == 0) {
		p->refs++;
		*pref_out = p;
	}
	pthread_mutex_unlock(&pools_lock);
	return rc;
}

void dchan__pool_drop(struct dchan__pref *pref)
{
	struct dchan__pref **pp;

	pthread_mutex_lock(&pools_lock);
	if (--pref->refs == 0) {
		for (pp = &pool_list; *pp; pp = &(*pp)->next) {
			if (*pp == pref) {
				*pp = pref->next;
				break;
			}
		}
		if (pref->owned)
			dmem_pool_detach(pref->pool);
		free(pref);
	}
	pthread_mutex_unlock(&pools_lock);
}
