/*
 * libdtransport: memory of node 1 read and written from node 0 through
 * the agents (dchan_mem_read, dchan_mem_write): the bytes both nodes see,
 * a counter incremented under a lock by processes of both nodes, ranges
 * outside the allocation refused (by the caller and, for a forged
 * request, by the owner node's agent), a pool the owner's agent keeps
 * mapped between copies and lets go of once it is destroyed, and a lost
 * owner node reported.
 */
#include "dtrans_test.h"

#include <sys/mman.h>

#define CHUNK	 (256u << 10)
#define CTR_OFF	 4096u
#define INCS	 100
#define PER_NODE 2

static unsigned char pattern(size_t i)
{
	return (unsigned char)(i * 7 + 3);
}

/* node 1: fill the first CHUNK bytes in place */
static int c_fill(struct cluster *c)
{
	static unsigned char buf[CHUNK];

	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = pattern(i);
	T_OK(dchan_mem_write(&c->mem_pool, &c->mem, 0, buf, sizeof buf, 0));
	return 0;
}

/* node 0: read them through the agents, then write a few */
static int c_read_write(struct cluster *c)
{
	static unsigned char buf[CHUNK];
	unsigned char last = 0xaa;

	T_OK(dchan_mem_read(&c->mem_pool, &c->mem, 0, buf, sizeof buf, 10 * S));
	for (size_t i = 0; i < sizeof buf; i++)
		if (buf[i] != pattern(i)) {
			fprintf(stderr, "byte %zu: %u, not %u\n", i, buf[i],
				pattern(i));
			return 1;
		}
	T_OK(dchan_mem_read(&c->mem_pool, &c->mem, 100, buf, 3, 10 * S));
	T_EQ(buf[0], pattern(100));
	T_EQ(buf[2], pattern(102));
	T_OK(dchan_mem_write(&c->mem_pool, &c->mem, 1000, "remote", 6, 10 * S));
	T_OK(dchan_mem_write(&c->mem_pool, &c->mem, T_MEM_BYTES - 1, &last, 1,
			     10 * S));
	T_OK(dchan_mem_read(&c->mem_pool, &c->mem, 0, buf, 0, 10 * S));
	return 0;
}

/* node 1: what node 0 wrote is in the pool */
static int c_check_written(struct cluster *c)
{
	unsigned char buf[8], last;

	T_OK(dchan_mem_read(&c->mem_pool, &c->mem, 999, buf, 8, 0));
	T_EQ(buf[0], pattern(999));
	T_EQ(memcmp(buf + 1, "remote", 6), 0);
	T_EQ(buf[7], pattern(1006));
	T_OK(dchan_mem_read(&c->mem_pool, &c->mem, T_MEM_BYTES - 1, &last, 1,
			    0));
	T_EQ(last, 0xaa);
	return 0;
}

START_TEST(t_mem_read_write)
{
	struct cluster *c = t_cluster_up(10 * S);

	ck_assert_int_eq(t_run(c, 1, c_fill), 0);
	ck_assert_int_eq(t_run(c, 0, c_read_write), 0);
	ck_assert_int_eq(t_run(c, 1, c_check_written), 0);
	t_cluster_down(c);
}
END_TEST

/* INCS increments of the counter, each under node 1's lock */
static int c_increment(struct cluster *c)
{
	dchan_lock_t *lk;
	uint64_t v;

	T_OK(dchan_lock_attach(&c->obj[O_LOCK], &lk));
	for (int i = 0; i < INCS; i++) {
		T_OK(dchan_lock_acquire(lk, DCHAN_FOREVER));
		T_OK(dchan_mem_read(&c->mem_pool, &c->mem, CTR_OFF, &v,
				    sizeof v, 10 * S));
		v++;
		T_OK(dchan_mem_write(&c->mem_pool, &c->mem, CTR_OFF, &v,
				     sizeof v, 10 * S));
		T_OK(dchan_lock_release(lk));
	}
	T_OK(dchan_lock_detach(lk));
	return 0;
}

static int c_counted(struct cluster *c)
{
	uint64_t v;

	T_OK(dchan_mem_read(&c->mem_pool, &c->mem, CTR_OFF, &v, sizeof v, 0));
	T_EQ(v, 2 * PER_NODE * INCS);
	return 0;
}

START_TEST(t_mem_counter)
{
	struct cluster *c = t_cluster_up(10 * S);
	pid_t p[2 * PER_NODE];

	for (int i = 0; i < 2 * PER_NODE; i++)
		p[i] = t_start(c, i % 2, c_increment);
	for (int i = 0; i < 2 * PER_NODE; i++)
		ck_assert_int_eq(t_wait(p[i]), 0);
	ck_assert_int_eq(t_run(c, 1, c_counted), 0);
	t_cluster_down(c);
}
END_TEST

static int refused(int rc, const char *what)
{
	if (rc != -EINVAL ||
	    !strstr(dchan_errmsg(), "outside the allocation")) {
		fprintf(stderr, "%s: %d (%s), not a refused range\n", what, rc,
			dchan_errmsg());
		return 1;
	}
	return 0;
}

/* node 0 (and node 1 for the local path): ranges that do not fit */
static int c_bad_ranges(struct cluster *c)
{
	unsigned char buf[64] = {0};
	uint64_t size = c->mem.size;

	if (refused(dchan_mem_read(&c->mem_pool, &c->mem, size, buf, 1, S),
		    "read past the end") ||
	    refused(dchan_mem_read(&c->mem_pool, &c->mem, size - 4, buf, 8, S),
		    "read across the end") ||
	    refused(dchan_mem_write(&c->mem_pool, &c->mem, UINT64_MAX - 2, buf,
				    8, S),
		    "write at an offset that wraps") ||
	    refused(dchan_mem_read(&c->mem_pool, &c->mem, 0, buf, size + 1, S),
		    "read longer than the allocation"))
		return 1;
	T_EQ(dchan_mem_read(&c->mem_pool, &c->mem, 0, NULL, 1, S), -EINVAL);
	T_EQ(dchan_mem_read(NULL, &c->mem, 0, buf, 1, S), -EINVAL);
	return 0;
}

/* node 0: a request that lies about its range, written straight into
 * the gateway: node 1's agent refuses it with -EINVAL in the completion */
static int c_forged(struct cluster *c)
{
	dchan_attr_t a = {.field_mask = DCHAN_ATTR_CAPACITY, .capacity = 4};
	unsigned char payload[DCHAN_GW_MEM_HDR], buf[1024];
	uint64_t off = c->mem.size - 4, len = 64;
	dchan_gw_req_t req = {.version = DCHAN_GW_VERSION,
			      .op = DCHAN_GW_MEM_READ,
			      .req_id = 42,
			      .cap = len,
			      .payload = payload,
			      .payload_len = sizeof payload};
	dchan_t *gw, *reply;
	dchan_gw_cpl_t cpl;
	dchan_desc_t d;
	size_t n;
	int64_t w;

	/* the target names node 1's pool (any descriptor of it does) */
	req.target = c->obj[O_CHAN];
	memcpy(payload, &c->mem, sizeof c->mem);
	memcpy(payload + sizeof c->mem, &off, 8); /* little-endian host */
	memcpy(payload + sizeof c->mem + 8, &len, 8);
	T_OK(dchan_desc_from_text(c->gw[0], &d));
	T_OK(dchan_attach(&d, &gw));
	T_OK(dchan_create(dchan_pool(gw), &a, &reply));
	T_OK(dchan_desc_get(reply, &req.reply));
	w = dchan_gw_req_encode(&req, buf, sizeof buf);
	T_OK((int)w);
	T_OK(dchan_send(gw, buf, (size_t)w, 10 * S));
	T_OK(dchan_recv(reply, buf, sizeof buf, 30 * S, &n));
	T_OK(dchan_gw_cpl_decode(buf, n, &cpl));
	T_EQ(cpl.req_id, 42);
	T_EQ(cpl.status, -EINVAL);
	T_EQ(cpl.payload_len, 0);
	T_OK(dchan_destroy(reply));
	T_OK(dchan_detach(gw));
	return 0;
}

START_TEST(t_mem_bad_ranges)
{
	struct cluster *c = t_cluster_up(10 * S);

	ck_assert_int_eq(t_run(c, 0, c_bad_ranges), 0);
	ck_assert_int_eq(t_run(c, 1, c_bad_ranges), 0);
	ck_assert_int_eq(t_run(c, 0, c_forged), 0);
	t_cluster_down(c);
}
END_TEST

/* node 0, node 1's agent killed: the copies fail naming the node */
static int c_owner_lost(struct cluster *c)
{
	char name[32];
	uint64_t v = 1;

	snprintf(name, sizeof name, "on node %llu",
		 (unsigned long long)c->mem_pool.node_id);
	T_EQ(dchan_mem_read(&c->mem_pool, &c->mem, 0, &v, sizeof v,
			    DCHAN_FOREVER),
	     -DCHAN_E_NODELOST);
	if (!strstr(dchan_errmsg(), name)) {
		fprintf(stderr, "error does not name the node: %s\n",
			dchan_errmsg());
		return 1;
	}
	T_EQ(dchan_mem_write(&c->mem_pool, &c->mem, 0, &v, sizeof v,
			     DCHAN_FOREVER),
	     -DCHAN_E_NODELOST);
	return 0;
}

static int c_touch(struct cluster *c)
{
	uint64_t v;

	T_OK(dchan_mem_read(&c->mem_pool, &c->mem, 0, &v, sizeof v, 10 * S));
	return 0;
}

/* A pool of node 1 that its agent did not make, named the same each time
 * it is made (shared with the test's processes). */
static struct extra {
	char name[64];
	dmem_pool_desc_t pd;
	dmem_alloc_desc_t ad;
} * extra;

/* node 1: make the pool, put text in an allocation, leave it there */
static int c_extra_make(struct cluster *c, const char *text)
{
	dmem_pool_t *pool;
	void *p;

	(void)c;
	T_OK(dmem_pool_create(extra->name, 4u << 20, NULL, &pool));
	T_OK(dmem_alloc(pool, 4096, 64, &p));
	memcpy(p, text, 5);
	T_OK(dmem_alloc_desc_get(pool, p, &extra->ad));
	dmem_pool_desc_get(pool, &extra->pd);
	dmem_pool_detach(pool);
	return 0;
}

static int c_extra_old(struct cluster *c)
{
	return c_extra_make(c, "old!");
}

static int c_extra_new(struct cluster *c)
{
	return c_extra_make(c, "new!");
}

static int c_extra_destroy(struct cluster *c)
{
	dmem_pool_t *pool;

	(void)c;
	T_OK(dmem_pool_attach(&extra->pd, &pool));
	T_OK(dmem_pool_destroy(pool));
	return 0;
}

/* node 0: what the allocation holds is what node 1 put there last */
static int c_extra_read(struct cluster *c, const char *want)
{
	char buf[5];

	(void)c;
	T_OK(dchan_mem_read(&extra->pd, &extra->ad, 0, buf, 5, 10 * S));
	T_EQ(memcmp(buf, want, 5), 0);
	return 0;
}

static int c_extra_read_old(struct cluster *c)
{
	return c_extra_read(c, "old!");
}

static int c_extra_read_new(struct cluster *c)
{
	return c_extra_read(c, "new!");
}

/* How many mappings of segment segname process pid has. */
static int mappings(pid_t pid, const char *segname)
{
	char path[64], line[1024];
	FILE *f;
	int n = 0;

	snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
	f = fopen(path, "r");
	ck_assert_msg(f != NULL, "reading %s", path);
	while (fgets(line, sizeof line, f))
		if (strstr(line, segname))
			n++;
	fclose(f);
	return n;
}

START_TEST(t_mem_pool_kept_mapped)
{
	struct cluster *c = t_cluster_up(10 * S);
	char seg[DMEM_SEGNAME_MAX];

	extra = mmap(NULL, sizeof *extra, PROT_READ | PROT_WRITE,
		     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert(extra != MAP_FAILED);
	snprintf(extra->name, sizeof extra->name, "tdtrans-extra-%d",
		 (int)getpid());
	ck_assert_int_eq(t_run(c, 1, c_extra_old), 0);
	snprintf(seg, sizeof seg, "%s", extra->pd.segname);
	ck_assert_int_eq(mappings(c->agent[1], seg), 0);
	/* the owner's agent maps the pool for the first copy, and keeps it */
	ck_assert_int_eq(t_run(c, 0, c_extra_read_old), 0);
	ck_assert_int_eq(t_run(c, 0, c_extra_read_old), 0);
	ck_assert_msg(mappings(c->agent[1], seg) > 0,
		      "the agent keeps %s mapped between copies", seg);
	/* destroyed: the next copy the agent serves lets its mapping go */
	ck_assert_int_eq(t_run(c, 1, c_extra_destroy), 0);
	ck_assert_int_eq(t_run(c, 0, c_touch), 0);
	ck_assert_msg(mappings(c->agent[1], seg) == 0,
		      "the agent let go of destroyed pool %s", seg);
	/* a new pool of the same name is a new mapping, never the old one */
	ck_assert_int_eq(t_run(c, 1, c_extra_old), 0);
	ck_assert_int_eq(t_run(c, 0, c_extra_read_old), 0);
	ck_assert_int_eq(t_run(c, 1, c_extra_destroy), 0);
	ck_assert_int_eq(t_run(c, 1, c_extra_new), 0);
	ck_assert_int_eq(t_run(c, 0, c_extra_read_new), 0);
	ck_assert_int_eq(t_run(c, 1, c_extra_destroy), 0);
	munmap(extra, sizeof *extra);
	t_cluster_down(c);
}
END_TEST

START_TEST(t_mem_owner_lost)
{
	struct cluster *c = t_cluster_up(2 * S);
	uint64_t t0;

	ck_assert_int_eq(t_run(c, 0, c_touch), 0);
	kill(c->agent[1], SIGKILL);
	t0 = t_now();
	ck_assert_int_eq(t_run(c, 0, c_owner_lost), 0);
	ck_assert_msg(t_now() - t0 < 30 * S * t_time_scale(),
		      "failing took too long");
	t_cluster_down(c);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("dtransport_mem");
	TCase *tc = tcase_create("mem");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, t_mem_read_write);
	tcase_add_test(tc, t_mem_counter);
	tcase_add_test(tc, t_mem_bad_ranges);
	tcase_add_test(tc, t_mem_pool_kept_mapped);
	tcase_add_test(tc, t_mem_owner_lost);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run_suite(suite());
}
