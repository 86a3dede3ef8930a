/*
 * Memory of any node: copies in and out of an allocation named by its
 * descriptors.  A process cannot map the pools of another node, so there
 * a copy becomes a gateway request (MEM_READ, MEM_WRITE) that the
 * transport agent carries to the allocation's node, whose agent runs it
 * with dchan__mem_execute.  The memory never moves: it stays in its
 * owner's pool, and the bytes of each copy travel once.
 */
#include "config.h"
#include "dchan_private.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Copy len bytes between the local allocation a and src or dst. */
static int mem_local(const dmem_pool_desc_t *pd, const dmem_alloc_desc_t *a,
		     uint64_t off, const void *src, void *dst, size_t len)
{
	struct dchan__pref *pref;
	void *base;
	int rc = dchan__pool_hold(pd, NULL, &pref);

	if (rc < 0)
		return rc;
	rc = dmem_alloc_attach(dchan__pref_pool(pref), a, &base);
	if (rc < 0) {
		rc = dchan__fail_dmem(rc, "the allocation to copy");
	} else if (len) {
		if (src)
			memcpy((char *)base + off, src, len);
		else
			memcpy(dst, (char *)base + off, len);
	}
	dchan__pool_drop(pref);
	return rc;
}

/* The target of a memory request: the pool, as a channel descriptor
 * with no channel (chan_uid and offset 0). */
static void mem_target(const dmem_pool_desc_t *pd, dchan_desc_t *t)
{
	memset(t, 0, sizeof *t);
	t->magic = DCHAN_DESC_MAGIC;
	t->version = DCHAN_DESC_VERSION;
	t->node_id = pd->node_id;
	t->pool = *pd;
	dchan__desc_seal(t);
}

static int mem_remote(uint16_t op, const dmem_pool_desc_t *pd,
		      const dmem_alloc_desc_t *a, uint64_t off, const void *src,
		      void *dst, size_t len, uint64_t timeout_ns)
{
	size_t plen = DCHAN_GW_MEM_HDR + (op == DCHAN_GW_MEM_WRITE ? len : 0);
	unsigned char small[512];
	unsigned char *p = plen <= sizeof small ? small : malloc(plen);
	dchan_gw_req_t req = {.op = op,
			      .cap = op == DCHAN_GW_MEM_READ ? len : 0,
			      .payload = p,
			      .payload_len = plen};
	dchan_gw_cpl_t c;
	dchan_desc_t t;
	char why[256];
	int rc;

	if (!p)
		return dchan__fail(-ENOMEM,
				   "no memory for a request of %zu "
				   "bytes",
				   plen);
	mem_target(pd, &t);
	dchan__gw_mem_hdr(p, a, off, len);
	if (op == DCHAN_GW_MEM_WRITE && len)
		memcpy(p + DCHAN_GW_MEM_HDR, src, len);
	rc = dchan__gw_call_to(&t, &req, timeout_ns, dst, req.cap, &c);
	if (p != small)
		free(p);
	if (rc == 0 && c.status < 0)
		rc = c.status;
	else if (rc == 0 && op == DCHAN_GW_MEM_READ && c.payload_len != len)
		rc = dchan__fail(-DCHAN_E_BADREQ,
				 "read of %zu bytes answered "
				 "with %llu",
				 len, (unsigned long long)c.payload_len);
	if (rc < 0) {
		snprintf(why, sizeof why, "%s",
			 rc == c.status ? dchan_strerror(rc) : dchan_errmsg());
		return dchan__fail(rc,
				   "%s bytes %llu to %llu of the allocation at "
				   "%#llx of pool %s on node %llu: %s",
				   op == DCHAN_GW_MEM_READ ? "reading"
							   : "writing",
				   (unsigned long long)off,
				   (unsigned long long)(off + len),
				   (unsigned long long)a->offset, pd->segname,
				   (unsigned long long)pd->node_id, why);
	}
	return 0;
}

/* Arguments common to both directions: descriptors and the range. */
static int mem_check(const dmem_pool_desc_t *pd, const dmem_alloc_desc_t *a,
		     uint64_t off, const void *buf, size_t len)
{
	dmem_pool_desc_t p;
	dmem_alloc_desc_t d;
	int rc;

	if (!pd || !a || (len && !buf))
		return dchan__fail(-EINVAL, "NULL descriptor or buffer");
	if ((rc = dmem_pool_desc_deserialize(pd, sizeof *pd, &p)) < 0)
		return dchan__fail_dmem(rc, "the pool descriptor");
	if ((rc = dmem_alloc_desc_deserialize(a, sizeof *a, &d)) < 0)
		return dchan__fail_dmem(rc, "the allocation descriptor");
	if (d.node_id != p.node_id || d.pool_uid != p.pool_uid)
		return dchan__fail(-EINVAL,
				   "the allocation descriptor names "
				   "another pool than %s",
				   p.segname);
	return dchan__mem_range_check(&d, off, len);
}

DCHAN_EXPORT int dchan_mem_read(const dmem_pool_desc_t *pool,
				const dmem_alloc_desc_t *alloc, uint64_t offset,
				void *buf, size_t len, uint64_t timeout_ns)
{
	int rc = mem_check(pool, alloc, offset, buf, len);

	if (rc < 0)
		return rc;
	if (pool->node_id == dmem_node_id())
		return mem_local(pool, alloc, offset, NULL, buf, len);
	return mem_remote(DCHAN_GW_MEM_READ, pool, alloc, offset, NULL, buf,
			  len, timeout_ns);
}

DCHAN_EXPORT int dchan_mem_write(const dmem_pool_desc_t *pool,
				 const dmem_alloc_desc_t *alloc,
				 uint64_t offset, const void *buf, size_t len,
				 uint64_t timeout_ns)
{
	int rc = mem_check(pool, alloc, offset, buf, len);

	if (rc < 0)
		return rc;
	if (pool->node_id == dmem_node_id())
		return mem_local(pool, alloc, offset, buf, NULL, len);
	return mem_remote(DCHAN_GW_MEM_WRITE, pool, alloc, offset, buf, NULL,
			  len, timeout_ns);
}

/*
 * The pools the owner's side of remote copies keeps mapped.  A transport
 * agent serves every copy of another node's Value or Array: mapping the
 * pool for each one (and unmapping it after) costs more than the copy.
 * The last MEM_KEEP pools it copied in stay mapped (one reference in the
 * pool registry), each with a descriptor of its segment: a segment whose
 * pool was destroyed has no name left (st_nlink 0), and its mapping is
 * let go at the next copy this process serves, as is one not used for
 * MEM_IDLE_NS, so that an agent pins the memory of a pool that went away
 * no longer than until its next copy and that bound.
 */
#define MEM_KEEP    8
#define MEM_IDLE_NS (2 * 1000000000ull)

struct mem_kept {
	struct dchan__pref *pref; /* NULL: a free entry */
	uint64_t pool_uid;
	uint64_t used_ns;
	int fd;
};

static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mem_kept kept[MEM_KEEP];

static void kept_drop(struct mem_kept *k)
{
	dchan__pool_drop(k->pref);
	close(k->fd);
	k->pref = NULL;
}

/* Let go of the pools that went away or were not used for a while
 * (kept_lock held). */
static void kept_sweep(uint64_t now)
{
	struct stat st;

	for (int i = 0; i < MEM_KEEP; i++) {
		struct mem_kept *k = &kept[i];

		if (k->pref && (now - k->used_ns > MEM_IDLE_NS ||
				fstat(k->fd, &st) != 0 || st.st_nlink == 0))
			kept_drop(k);
	}
}

/* Keep the pool of pd mapped for the next copies.  Failing to is no
 * error: the copy maps the pool itself. */
static void kept_hold(const dmem_pool_desc_t *pd)
{
	uint64_t now = dchan__now_ns();
	struct mem_kept *slot = NULL;
	struct dchan__pref *pref;
	int fd;

	if (!memchr(pd->segname, '\0', sizeof pd->segname))
		return; /* the mapping refuses it */
	pthread_mutex_lock(&kept_lock);
	kept_sweep(now);
	for (int i = 0; i < MEM_KEEP; i++) {
		if (kept[i].pref && kept[i].pool_uid == pd->pool_uid) {
			kept[i].used_ns = now;
			goto out;
		}
		if (!kept[i].pref && !slot)
			slot = &kept[i];
	}
	if (!slot) { /* the one used longest ago goes */
		slot = &kept[0];
		for (int i = 1; i < MEM_KEEP; i++)
			if (kept[i].used_ns < slot->used_ns)
				slot = &kept[i];
		kept_drop(slot);
	}
	/* The segment is opened before it is mapped: if a new pool took
	 * its name in between, the mapping is refused (another pool uid)
	 * or this descriptor names the old, unlinked, segment and the
	 * mapping goes at the next sweep. */
	fd = shm_open(pd->segname, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		goto out;
	if (dchan__pool_hold(pd, NULL, &pref) < 0) {
		close(fd);
		goto out;
	}
	*slot = (struct mem_kept){.pref = pref,
				  .pool_uid = pd->pool_uid,
				  .used_ns = now,
				  .fd = fd};
out:
	pthread_mutex_unlock(&kept_lock);
}

int dchan__mem_execute(const dchan_gw_req_t *req, void **data_out,
		       uint64_t *len_out, uint64_t *value_out)
{
	struct dchan__gw_mem m;
	void *buf = NULL;
	int rc = dchan__gw_mem_parse(req, &m);

	if (rc == 0) /* the sender checked it too, unless it lied */
		rc = dchan__mem_range_check(&m.alloc, m.off, m.len);
	if (rc < 0)
		return rc;
	if (req->target.node_id != dmem_node_id())
		return dchan__fail(-DCHAN_E_REMOTE,
				   "memory request for node "
				   "%llu served on node %llu",
				   (unsigned long long)req->target.node_id,
				   (unsigned long long)dmem_node_id());
	if (req->op == DCHAN_GW_MEM_READ) {
		buf = malloc(m.len ? m.len : 1);
		if (!buf)
			return dchan__fail(-ENOMEM,
					   "no memory to read %llu "
					   "bytes",
					   (unsigned long long)m.len);
	}
	kept_hold(&req->target.pool);
	rc = mem_local(&req->target.pool, &m.alloc, m.off, buf ? NULL : m.data,
		       buf, (size_t)m.len);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	*data_out = buf;
	*len_out = buf ? m.len : 0;
	*value_out = m.len;
	return 0;
}
