/* libdmem black-box unit tests: pools, allocations, descriptors, owners. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <fcntl.h>

#include "dmem_test.h"

#define MiB (1ul << 20)

START_TEST(create_names_segment_0600)
{
	dmem_pool_t *p = dmt_pool("basic", MiB);
	dmem_pool_desc_t d;
	char path[256];
	struct stat st;

	ck_assert_int_eq(dmem_pool_desc_get(p, &d), 0);
	ck_assert_msg(strncmp(d.segname, "dragon.", 7) == 0, "%s", d.segname);
	ck_assert_ptr_nonnull(strstr(d.segname, dmt_instance));
	ck_assert_ptr_nonnull(strstr(d.segname, ".basic"));
	snprintf(path, sizeof path, "/dev/shm/%s", d.segname);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	ck_assert_uint_eq((uint64_t)st.st_size, MiB);
	ck_assert_uint_eq(dmem_pool_size(p), MiB);
	ck_assert_int_eq(dmem_pool_destroy(p), 0);
	ck_assert_int_ne(stat(path, &st), 0);
}
END_TEST

START_TEST(create_rejects_bad_names_and_duplicates)
{
	dmem_pool_t *p = dmt_pool("dup", MiB), *q = NULL;

	ck_assert_int_eq(dmem_pool_create("dup", MiB, NULL, &q), -EEXIST);
	ck_assert_ptr_nonnull(strstr(dmem_errmsg(), "dup"));
	ck_assert_int_eq(dmem_pool_create("a/b", MiB, NULL, &q), -EINVAL);
	ck_assert_int_eq(dmem_pool_create("", MiB, NULL, &q), -EINVAL);
	ck_assert_int_eq(dmem_pool_create("ok", 1024, NULL, &q), -EINVAL);
	ck_assert_ptr_null(q);
	dmem_pool_destroy(p);
}
END_TEST

START_TEST(attr_instance_and_replace)
{
	dmem_pool_attr_t a = {.field_mask = DMEM_POOL_ATTR_INSTANCE |
					    DMEM_POOL_ATTR_FLAGS,
			      .instance = dmt_instance,
			      .flags = DMEM_POOL_F_REPLACE};
	dmem_pool_t *p, *q;

	ck_assert_int_eq(dmem_pool_create("rep", MiB, &a, &p), 0);
	/* A leftover of the same name is replaced when asked. */
	ck_assert_int_eq(dmem_pool_create("rep", MiB, &a, &q), 0);
	dmem_pool_detach(p);
	dmem_pool_destroy(q);
	a.instance = "bad/instance";
	ck_assert_int_eq(dmem_pool_create("rep", MiB, &a, &p), -DMEM_E_ENV);
}
END_TEST

START_TEST(default_size_from_env)
{
	dmem_pool_t *p;

	setenv("DRAGON_DEFAULT_SEG_SZ", "2M", 1);
	ck_assert_int_eq(dmem_pool_create("envsz", 0, NULL, &p), 0);
	ck_assert_uint_eq(dmem_pool_size(p), 2 * MiB);
	dmem_pool_destroy(p);
	setenv("DRAGON_DEFAULT_SEG_SZ", "1048576", 1);
	ck_assert_int_eq(dmem_pool_create("envsz", 0, NULL, &p), 0);
	ck_assert_uint_eq(dmem_pool_size(p), MiB);
	dmem_pool_destroy(p);
	unsetenv("DRAGON_DEFAULT_SEG_SZ");
	/* Default: 4 GiB, sparse. */
	ck_assert_int_eq(dmem_pool_create("envsz", 0, NULL, &p), 0);
	ck_assert_uint_eq(dmem_pool_size(p), 4ul << 30);
	dmem_pool_destroy(p);
}
END_TEST

static const char *bad_sizes[] = {"",	 "abc", "12x",	"-5",
				  " 5",	 "0",	"1.5G", "99999999999999999999",
				  "4GG", "1K",	"100"};

START_TEST(default_size_malformed)
{
	dmem_pool_t *p = NULL;

	setenv("DRAGON_DEFAULT_SEG_SZ", bad_sizes[_i], 1);
	ck_assert_int_eq(dmem_pool_create("envbad", 0, NULL, &p), -DMEM_E_ENV);
	ck_assert_ptr_nonnull(strstr(dmem_errmsg(), "DRAGON_DEFAULT_SEG_SZ"));
	ck_assert_ptr_null(p);
	/* An explicit size does not consult the variable. */
	ck_assert_int_eq(dmem_pool_create("envbad", MiB, NULL, &p), 0);
	dmem_pool_destroy(p);
}
END_TEST

START_TEST(shm_too_small_is_refused)
{
	dmem_pool_t *p = NULL;
	int rc = dmem_pool_create("huge", (size_t)1 << 45, NULL, &p);

	/* 32 TiB is more than any test machine's /dev/shm. */
	ck_assert_int_eq(rc, -DMEM_E_SHMSMALL);
	ck_assert_ptr_nonnull(strstr(dmem_errmsg(), "/dev/shm"));
	ck_assert_ptr_nonnull(strstr(dmem_errmsg(), "DRAGON_DEFAULT_SEG_SZ"));
	ck_assert_ptr_null(p);
}
END_TEST

START_TEST(node_id_env)
{
	dmem_pool_t *p = NULL;

	ck_assert_uint_ne(dmem_node_id(), 0);
	setenv("DRAGON_NODE_ID", "0x2a", 1);
	ck_assert_uint_eq(dmem_node_id(), 42);
	setenv("DRAGON_NODE_ID", "17", 1);
	ck_assert_uint_eq(dmem_node_id(), 17);
	setenv("DRAGON_NODE_ID", "nope", 1);
	ck_assert_uint_eq(dmem_node_id(), 0);
	ck_assert_int_eq(dmem_pool_create("node", MiB, NULL, &p), -DMEM_E_ENV);
	unsetenv("DRAGON_NODE_ID");
}
END_TEST

START_TEST(alloc_sizes_and_alignment)
{
	dmem_pool_t *p = dmt_pool("sizes", 4 * MiB);
	static const size_t sizes[] = {1,   7,	 16,  17,   64,	   100,
				       255, 256, 257, 4096, 65536, 1000000};
	static const size_t aligns[] = {0, 16, 64, 256, 4096, 65536};
	void *v[sizeof sizes / sizeof sizes[0]][6];

	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
		for (size_t j = 0; j < 6; j++) {
			size_t al = aligns[j] ? aligns[j] : 16;
			int rc = dmem_alloc(p, sizes[i] / 4 + 1, aligns[j],
					    &v[i][j]);
			ck_assert_msg(rc == 0, "%zu/%zu: %s", sizes[i], al,
				      dmem_errmsg());
			ck_assert_uint_eq((uintptr_t)v[i][j] % al, 0);
			memset(v[i][j], (int)i, sizes[i] / 4 + 1);
		}
	ck_assert_int_eq(dmem_pool_check(p), 0);
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
		for (size_t j = 0; j < 6; j++)
			ck_assert_int_eq(dmem_free(p, v[i][j]), 0);
	ck_assert_int_eq(dmem_pool_flush(p), 0);
	ck_assert_msg(dmem_pool_check(p) == 0, "%s", dmem_errmsg());
	dmem_pool_destroy(p);
}
END_TEST

START_TEST(coalesce_to_one_block)
{
	dmem_pool_t *p = dmt_pool("coal", MiB);
	dmem_pool_stats_t st0, st;
	void *v[200];

	ck_assert_int_eq(dmem_pool_stats(p, &st0), 0);
	ck_assert_uint_eq(st0.free_blocks, 1);
	for (int i = 0; i < 200; i++)
		ck_assert_int_eq(dmem_alloc(p, 100 + i * 13, 0, &v[i]), 0);
	for (int i = 0; i < 200; i += 2)
		ck_assert_int_eq(dmem_free(p, v[i]), 0);
	for (int i = 1; i < 200; i += 2)
		ck_assert_int_eq(dmem_free(p, v[i]), 0);
	dmem_pool_flush(p);
	ck_assert_int_eq(dmem_pool_stats(p, &st), 0);
	ck_assert_uint_eq(st.free_blocks, 1);
	ck_assert_uint_eq(st.live_allocs, 0);
	ck_assert_uint_eq(st.free_bytes, st0.free_bytes);
	ck_assert_uint_eq(st.largest_free, st0.largest_free);
	ck_assert_int_eq(dmem_pool_check(p), 0);
	dmem_pool_destroy(p);
}
END_TEST

START_TEST(largest_block_and_full_pool_message)
{
	dmem_pool_t *p = dmt_pool("full", MiB);
	dmem_pool_stats_t st;
	void *big, *x;

	ck_assert_int_eq(dmem_pool_stats(p, &st), 0);
	ck_assert_uint_gt(st.largest_free, MiB - 64 * 1024);
	ck_assert_int_eq(dmem_alloc(p, st.largest_free, 0, &big), 0);
	ck_assert_int_eq(dmem_alloc(p, 4096, 0, &x), -DMEM_E_NOSPACE);
	/* Which pool, its size, what was asked, how to make it larger. */
	ck_assert_ptr_nonnull(strstr(dmem_errmsg(), ".full"));
	ck_assert_ptr_nonnull(strstr(dmem_errmsg(), "1048576"));
	ck_assert_ptr_nonnull(strstr(dmem_errmsg(), "4096"));
	ck_assert_ptr_nonnull(strstr(dmem_errmsg(), "DRAGON_DEFAULT_SEG_SZ"));
	ck_assert_int_eq(dmem_alloc(p, 2 * MiB, 0, &x), -DMEM_E_TOOBIG);
	ck_assert_int_eq(dmem_alloc(p, 0, 0, &x), -EINVAL);
	ck_assert_int_eq(dmem_alloc(p, 8, 3, &x), -EINVAL);
	ck_assert_int_eq(dmem_free(p, big), 0);
	dmem_pool_destroy(p);
}
END_TEST

START_TEST(bad_frees_are_errors)
{
	dmem_pool_t *p = dmt_pool("badfree", MiB);
	char *a, *b, local;

	ck_assert_int_eq(dmem_alloc(p, 64, 0, (void **)&a), 0);
	ck_assert_int_eq(dmem_alloc(p, 5000, 0, (void **)&b), 0);
	ck_assert_int_eq(dmem_free(p, &local), -EINVAL);
	/* Interior pointers are not allocations: -EINVAL, as documented. */
	ck_assert_int_eq(dmem_free(p, a + 16), -EINVAL);
	ck_assert_int_eq(dmem_free(p, b + 1), -EINVAL);
	ck_assert_int_eq(dmem_free(p, b + 4096), -EINVAL);
	ck_assert_ptr_nonnull(strstr(dmem_errmsg(), "not at its start"));
	ck_assert_int_eq(dmem_free(p, a), 0);
	ck_assert_int_lt(dmem_free(p, a), 0); /* double free, cached block */
	ck_assert_int_eq(dmem_free(p, b), 0);
	ck_assert_int_lt(dmem_free(p, b), 0); /* double free, merged block */
	ck_assert_int_eq(dmem_pool_check(p), 0);
	dmem_pool_destroy(p);
}
END_TEST

START_TEST(offsets_and_pointers)
{
	dmem_pool_t *p = dmt_pool("offs", MiB);
	char *a;
	uint64_t off;

	ck_assert_int_eq(dmem_alloc(p, 32, 0, (void **)&a), 0);
	off = dmem_pool_offset(p, a);
	ck_assert_uint_ne(off, DMEM_OFFSET_INVALID);
	ck_assert_ptr_eq(dmem_pool_ptr(p, off), a);
	ck_assert_ptr_eq(dmem_off2ptr(dmem_pool_base(p), off), a);
	ck_assert_uint_eq(dmem_ptr2off(dmem_pool_base(p), a), off);
	ck_assert_uint_eq(dmem_pool_offset(p, &off), DMEM_OFFSET_INVALID);
	ck_assert_ptr_null(dmem_pool_ptr(p, MiB));
	dmem_free(p, a);
	dmem_pool_destroy(p);
}
END_TEST

/* d comes back unchanged from its text and binary forms (kind: pool or
 * alloc), and a 10-byte text buffer is too small for it. */
#define CK_DESC_ROUNDTRIP(kind, d)                                             \
	do {                                                                   \
		__typeof__(d) back_;                                           \
		char t_[DMEM_POOL_DESC_TEXT_MAX];                              \
		unsigned char b_[sizeof(d) + 8];                               \
                                                                               \
		ck_assert_int_gt(                                              \
			dmem_##kind##_desc_to_text(&(d), t_, sizeof t_), 0);   \
		ck_assert_int_eq(dmem_##kind##_desc_from_text(t_, &back_), 0); \
		ck_assert_mem_eq(&(d), &back_, sizeof(d));                     \
		ck_assert_int_eq(                                              \
			dmem_##kind##_desc_serialize(&(d), b_, sizeof b_),     \
			(int)sizeof(d));                                       \
		ck_assert_int_eq(                                              \
			dmem_##kind##_desc_deserialize(b_, sizeof(d), &back_), \
			0);                                                    \
		ck_assert_mem_eq(&(d), &back_, sizeof(d));                     \
		ck_assert_int_eq(dmem_##kind##_desc_to_text(&(d), t_, 10),     \
				 -ENOSPC);                                     \
	} while (0)

START_TEST(desc_text_and_binary_roundtrip)
{
	dmem_pool_t *p = dmt_pool("rt", MiB);
	dmem_pool_desc_t d;
	dmem_alloc_desc_t a;
	void *x;

	ck_assert_int_eq(dmem_pool_desc_get(p, &d), 0);
	CK_DESC_ROUNDTRIP(pool, d);
	ck_assert_int_eq(dmem_alloc(p, 300, 0, &x), 0);
	ck_assert_int_eq(dmem_alloc_desc_get(p, x, &a), 0);
	ck_assert_uint_ge(a.size, 300);
	CK_DESC_ROUNDTRIP(alloc, a);
	ck_assert_int_eq(dmem_alloc_attach(p, &a, &x), 0);
	ck_assert_int_eq(dmem_alloc_free(p, &a), 0);
	ck_assert_int_eq(dmem_alloc_free(p, &a), -DMEM_E_STALE);
	dmem_pool_destroy(p);
}
END_TEST

/* The forms other processes and other builds of Dragon read: text, struct
 * size, field offsets and the checksum, pinned to values of release 1. */
START_TEST(desc_wire_format_is_pinned)
{
	static const char pt[] = "dmem-pool:1:1a2b:ffffffffffffffff:1048576:"
				 "dragon.user.inst.name";
	static const char at[] =
		"dmem-alloc:1:1a2b:ffffffffffffffff:4096:304:7";
	dmem_pool_desc_t d;
	dmem_alloc_desc_t a;
	char t[DMEM_POOL_DESC_TEXT_MAX];
	unsigned char raw[sizeof d];

	ck_assert_uint_eq(sizeof d, 232);
	ck_assert_uint_eq(sizeof a, 56);
	ck_assert_int_eq(dmem_pool_desc_from_text(pt, &d), 0);
	ck_assert_uint_eq(d.node_id, 0x1a2b);
	ck_assert_uint_eq(d.pool_uid, UINT64_MAX);
	ck_assert_uint_eq(d.size, MiB);
	ck_assert_str_eq(d.segname, "dragon.user.inst.name");
	ck_assert_uint_eq(d.check, 0x2839291ce641b2efull);
	ck_assert_int_eq(dmem_pool_desc_to_text(&d, t, sizeof t),
			 (int)strlen(pt));
	ck_assert_str_eq(t, pt);
	ck_assert_int_eq(dmem_pool_desc_serialize(&d, raw, sizeof raw),
			 (int)sizeof d);
	ck_assert_mem_eq(raw, &d, sizeof d);

	ck_assert_int_eq(dmem_alloc_desc_from_text(at, &a), 0);
	ck_assert_uint_eq(a.node_id, 0x1a2b);
	ck_assert_uint_eq(a.pool_uid, UINT64_MAX);
	ck_assert_uint_eq(a.offset, 4096);
	ck_assert_uint_eq(a.size, 304);
	ck_assert_uint_eq(a.generation, 7);
	ck_assert_uint_eq(a.check, 0xce6e16d0ae430a4dull);
	ck_assert_int_eq(dmem_alloc_desc_to_text(&a, t, sizeof t),
			 (int)strlen(at));
	ck_assert_str_eq(t, at);
	ck_assert_int_eq(dmem_alloc_desc_serialize(&a, raw, sizeof raw),
			 (int)sizeof a);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	ck_assert_mem_eq(raw,
			 "ALOC\1\0\0\0"
			 "\x2b\x1a\0\0\0\0\0\0"
			 "\xff\xff\xff\xff\xff\xff\xff\xff"
			 "\0\x10\0\0\0\0\0\0"
			 "\x30\x01\0\0\0\0\0\0"
			 "\7\0\0\0\0\0\0\0"
			 "\x4d\x0a\x43\xae\xd0\x16\x6e\xce",
			 56);
#endif
	ck_assert_int_eq(dmem_alloc_desc_deserialize(raw, sizeof a, &a), 0);
	ck_assert_uint_eq(a.check, 0xce6e16d0ae430a4dull);
}
END_TEST

START_TEST(stale_foreign_corrupt_refused)
{
	dmem_pool_t *p = dmt_pool("sfc", MiB), *q = dmt_pool("sfc2", MiB);
	dmem_alloc_desc_t a, b;
	dmem_pool_desc_t d;
	void *x, *y;
	unsigned char raw[sizeof a];

	ck_assert_int_eq(dmem_alloc(p, 5000, 0, &x), 0);
	ck_assert_int_eq(dmem_alloc_desc_get(p, x, &a), 0);
	/* Foreign: another pool, another node. */
	ck_assert_int_eq(dmem_alloc_attach(q, &a, &y), -DMEM_E_FOREIGN);
	b = a;
	b.node_id ^= 1;
	b.check = 0;
	ck_assert_int_eq(dmem_alloc_attach(p, &b, &y), -DMEM_E_CORRUPT);
	/* Corrupt: any flipped bit fails the checksum or the magic. */
	for (size_t i = 0; i < sizeof a * 8; i += 3) {
		memcpy(raw, &a, sizeof a);
		raw[i / 8] ^= (unsigned char)(1u << (i % 8));
		ck_assert_int_lt(
			dmem_alloc_desc_deserialize(raw, sizeof raw, &b), 0);
	}
	ck_assert_int_eq(dmem_alloc_desc_deserialize(raw, 3, &b),
			 -DMEM_E_CORRUPT);
	/* Stale: freed, and freed then reused at the same offset. */
	ck_assert_int_eq(dmem_free(p, x), 0);
	ck_assert_int_eq(dmem_alloc_attach(p, &a, &y), -DMEM_E_STALE);
	ck_assert_int_eq(dmem_alloc(p, 5000, 0, &y), 0);
	ck_assert_ptr_eq(x, y);
	ck_assert_int_eq(dmem_alloc_attach(p, &a, &y), -DMEM_E_STALE);
	ck_assert_int_eq(dmem_alloc_free(p, &a), -DMEM_E_STALE);
	/* Pool descriptors. */
	ck_assert_int_eq(dmem_pool_desc_get(p, &d), 0);
	d.node_id++;
	d.check = 0;
	ck_assert_int_eq(dmem_pool_attach(&d, &q), -DMEM_E_CORRUPT);
	ck_assert_int_eq(dmem_pool_desc_from_text("dmem-pool:1:zz", &d),
			 -DMEM_E_CORRUPT);
	ck_assert_int_eq(dmem_pool_desc_from_text("xyz", &d), -DMEM_E_BADMAGIC);
	ck_assert_int_eq(
		dmem_pool_desc_from_text("dmem-pool:9:1:1:1:dragon.a", &d),
		-DMEM_E_VERSION);
	ck_assert_int_eq(
		dmem_alloc_desc_from_text("dmem-alloc:1:1:1:1:1:1:", &b),
		-DMEM_E_CORRUPT);
	dmem_free(p, y);
	dmem_pool_destroy(p);
	dmem_pool_destroy(q);
}
END_TEST

START_TEST(foreign_node_pool_refused)
{
	dmem_pool_t *p = dmt_pool("fnode", MiB), *q = NULL;
	dmem_pool_desc_t d;
	char t[DMEM_POOL_DESC_TEXT_MAX];

	dmem_pool_desc_get(p, &d);
	setenv("DRAGON_NODE_ID", "12345", 1);
	ck_assert_int_eq(dmem_pool_attach(&d, &q), -DMEM_E_FOREIGN);
	ck_assert_ptr_nonnull(strstr(dmem_errmsg(), "node"));
	unsetenv("DRAGON_NODE_ID");
	/* A descriptor of a destroyed pool cannot be attached. */
	dmem_pool_desc_to_text(&d, t, sizeof t);
	dmem_pool_destroy(p);
	ck_assert_int_eq(dmem_pool_desc_from_text(t, &d), 0);
	ck_assert_int_eq(dmem_pool_attach(&d, &q), -ENOENT);
	ck_assert_ptr_null(q);
}
END_TEST

START_TEST(layout_magic_and_version_checked)
{
	dmem_pool_t *p = dmt_pool("magic", MiB), *q;
	dmem_pool_desc_t d;
	uint64_t *hdr = dmem_pool_base(p);
	uint64_t save = hdr[0];
	uint32_t version = ((uint32_t *)hdr)[2];

	dmem_pool_desc_get(p, &d);
	hdr[0] ^= 1;
	ck_assert_int_eq(dmem_pool_attach(&d, &q), -DMEM_E_BADMAGIC);
	hdr[0] = save;
	((uint32_t *)hdr)[2] = 99; /* layout version */
	ck_assert_int_eq(dmem_pool_attach(&d, &q), -DMEM_E_VERSION);
	((uint32_t *)hdr)[2] = version;
	ck_assert_int_eq(dmem_pool_attach(&d, &q), 0);
	dmem_pool_detach(q);
	dmem_pool_destroy(p);
}
END_TEST

static int child_attach_and_write(const char *text, const char *atext)
{
	dmem_pool_desc_t d;
	dmem_alloc_desc_t a;
	dmem_pool_t *p;
	char *x;

	if (dmem_pool_desc_from_text(text, &d) || dmem_pool_attach(&d, &p))
		return 10;
	if (dmem_alloc_desc_from_text(atext, &a) ||
	    dmem_alloc_attach(p, &a, (void **)&x))
		return 11;
	if (strcmp(x, "hello") != 0)
		return 12;
	strcpy(x, "world");
	if (dmem_alloc_owner(p, x, &(pid_t){0}) != 0)
		return 13;
	dmem_pool_detach(p);
	return 0;
}

START_TEST(attach_from_other_process_by_text)
{
	dmem_pool_t *p = dmt_pool("xproc", MiB);
	dmem_pool_desc_t d;
	dmem_alloc_desc_t a;
	char t[DMEM_POOL_DESC_TEXT_MAX], u[DMEM_ALLOC_DESC_TEXT_MAX];
	char *x;
	pid_t pid;

	ck_assert_int_eq(dmem_alloc(p, 100, 0, (void **)&x), 0);
	strcpy(x, "hello");
	dmem_pool_desc_get(p, &d);
	dmem_alloc_desc_get(p, x, &a);
	dmem_pool_desc_to_text(&d, t, sizeof t);
	dmem_alloc_desc_to_text(&a, u, sizeof u);
	setenv("DMT_POOL", t, 1);
	setenv("DMT_ALLOC", u, 1);
	pid = fork();
	if (pid == 0) {
		/* exec ourselves so the child shares nothing but the text. */
		char self[4096];
		ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
		char *argv[] = {self, "--child", NULL};

		if (n <= 0)
			_exit(98);
		self[n] = '\0';
		execv(self, argv);
		_exit(99);
	}
	ck_assert_int_eq(dmt_wait(pid), 0);
	ck_assert_str_eq(x, "world");
	dmem_free(p, x);
	dmem_pool_destroy(p);
}
END_TEST

START_TEST(owner_chown_reclaim)
{
	dmem_pool_t *p = dmt_pool("own", MiB);
	void *x, *y, *z;
	pid_t o;
	size_t n;
	pid_t child;

	ck_assert_int_eq(dmem_alloc(p, 64, 0, &x), 0);
	ck_assert_int_eq(dmem_alloc_owner(p, x, &o), 0);
	ck_assert_int_eq(o, getpid());
	/* A child allocates two blocks and dies; reclaim frees them. */
	child = fork();
	if (child == 0) {
		void *a, *b;
		if (dmem_alloc(p, 1000, 0, &a) || dmem_alloc(p, 24, 0, &b))
			_exit(1);
		/* freed-then-cached small block is reclaimed too */
		if (dmem_alloc(p, 24, 0, &a) || dmem_free(p, a))
			_exit(2);
		raise(SIGKILL); /* die holding all three */
	}
	ck_assert_int_eq(dmt_wait(child), 128 + SIGKILL);
	ck_assert_int_eq(dmem_alloc(p, 64, 0, &y), 0);
	ck_assert_int_eq(dmem_alloc_chown(p, y, child), 0);
	ck_assert_int_eq(dmem_alloc(p, 64, 0, &z), 0);
	ck_assert_int_eq(dmem_alloc_chown(p, z, DMEM_OWNER_NONE), 0);
	ck_assert_int_eq(dmem_alloc_owner(p, z, &o), 0);
	ck_assert_int_eq(o, DMEM_OWNER_NONE);
	ck_assert_int_eq(dmem_pool_reclaim(p, child, &n), 0);
	ck_assert_uint_eq(n, 4);
	ck_assert_int_lt(dmem_free(p, y), 0); /* reclaimed already */
	ck_assert_int_eq(dmem_pool_reclaim(p, child, &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(dmem_free(p, x), 0);
	ck_assert_int_eq(dmem_free(p, z), 0);
	ck_assert_int_eq(dmem_pool_check(p), 0);
	ck_assert_int_eq(dmem_alloc_chown(p, x, -1), -EINVAL);
	dmem_pool_destroy(p);
}
END_TEST

static void *thread_ops(void *arg)
{
	dmem_pool_t *p = arg;
	void *v[16] = {0};
	unsigned s = (unsigned)(uintptr_t)&v;

	for (int i = 0; i < 20000; i++) {
		int k = (int)((s = s * 1103515245u + 12345u) >> 16) % 16;
		if (v[k]) {
			if (dmem_free(p, v[k]))
				return (void *)1;
			v[k] = NULL;
		} else if (dmem_alloc(p, k < 12 ? 1 + k * 30 : 3000, 0,
				      &v[k])) {
			return (void *)2;
		} else {
			memset(v[k], k, k < 12 ? 1 + k * 30 : 3000);
		}
	}
	for (int k = 0; k < 16; k++)
		if (v[k] && dmem_free(p, v[k]))
			return (void *)3;
	return NULL;
}

START_TEST(threads_share_a_handle)
{
	dmem_pool_t *p = dmt_pool("threads", 4 * MiB);
	pthread_t t[4];
	void *r;

	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, thread_ops, p), 0);
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(pthread_join(t[i], &r), 0);
		ck_assert_ptr_null(r);
	}
	ck_assert_int_eq(dmem_pool_flush(p), 0);
	ck_assert_int_eq(dmem_pool_check(p), 0);
	dmem_pool_destroy(p);
}
END_TEST

/* The one spelling of segment names: what pools are created under is what
 * dmem_segname_format builds and what dmem_segname_match recognises. */
START_TEST(segname_format_and_match)
{
	dmem_pool_t *p = dmt_pool("named", MiB);
	char buf[DMEM_SEGNAME_MAX], longinst[DMEM_INSTANCE_MAX + 2];
	dmem_pool_desc_t d;

	ck_assert_int_eq(dmem_pool_desc_get(p, &d), 0);
	ck_assert_int_eq(
		dmem_segname_format(NULL, NULL, "named", buf, sizeof buf), 0);
	ck_assert_str_eq(buf, d.segname);
	ck_assert_int_eq(dmem_segname_match(d.segname, NULL, dmt_instance), 1);
	ck_assert_int_eq(dmem_segname_match(d.segname, NULL, NULL), 1);
	ck_assert_int_eq(dmem_segname_match(d.segname, NULL, "other"), 0);
	ck_assert_int_eq(dmem_segname_match(d.segname, "someone_else", NULL),
			 0);
	ck_assert_int_eq(dmem_pool_destroy(p), 0);

	ck_assert_int_eq(
		dmem_segname_format("u-1", "rt1", "default", buf, sizeof buf),
		0);
	ck_assert_str_eq(buf, "dragon.u-1.rt1.default");
	ck_assert_int_eq(dmem_segname_match(buf, "u-1", "rt1"), 1);
	ck_assert_int_eq(dmem_segname_match(buf, "u-1", "rt"), 0);
	ck_assert_int_eq(dmem_segname_match(buf, "u", NULL), 0);
	/* not shaped dragon.<user>.<instance>.<name> */
	ck_assert_int_eq(dmem_segname_match("dragonfly.u-1.rt1.x", "u-1", NULL),
			 0);
	ck_assert_int_eq(dmem_segname_match("dragon.u-1.rt1", "u-1", NULL), 0);
	ck_assert_int_eq(dmem_segname_match("dragon.u-1.rt1.a.b", "u-1", NULL),
			 0);
	ck_assert_int_eq(dmem_segname_match("dragon.u-1..x", "u-1", NULL), 0);
	ck_assert_int_eq(dmem_segname_match("dragon.u-1.r/t.x", "u-1", NULL),
			 0);
	ck_assert_int_eq(dmem_segname_match(NULL, NULL, NULL), -EINVAL);

	/* the instance limit is DMEM_INSTANCE_MAX, in both directions */
	memset(longinst, 'i', sizeof longinst - 1);
	longinst[sizeof longinst - 1] = '\0';
	ck_assert_int_eq(
		dmem_segname_format("u", longinst, "x", buf, sizeof buf),
		-DMEM_E_ENV);
	longinst[DMEM_INSTANCE_MAX] = '\0';
	ck_assert_int_eq(
		dmem_segname_format("u", longinst, "x", buf, sizeof buf), 0);
	ck_assert_int_eq(dmem_segname_match(buf, "u", longinst), 1);
	ck_assert_int_eq(
		dmem_segname_format("u", "rt1", "bad.name", buf, sizeof buf),
		-EINVAL);
	ck_assert_int_eq(
		dmem_segname_format("u.v", "rt1", "x", buf, sizeof buf),
		-EINVAL);
	ck_assert_int_eq(dmem_segname_format("u", "rt1", "x", buf, 8),
			 -ENAMETOOLONG);
}
END_TEST

START_TEST(strerror_and_errmsg)
{
	for (int c = DMEM_E_NOSPACE; c <= DMEM_E_ENV; c++)
		ck_assert_ptr_null(strstr(dmem_strerror(-c), "nknown"));
	ck_assert_ptr_nonnull(dmem_errmsg());
}
END_TEST

int main(int argc, char **argv)
{
	TCase *tc;
	Suite *s;

	if (argc > 1 && !strcmp(argv[1], "--child"))
		return child_attach_and_write(getenv("DMT_POOL"),
					      getenv("DMT_ALLOC"));
	s = dmt_suite("dmem_pool", "unit", 0, &tc);
	tcase_add_test(tc, create_names_segment_0600);
	tcase_add_test(tc, create_rejects_bad_names_and_duplicates);
	tcase_add_test(tc, attr_instance_and_replace);
	tcase_add_test(tc, default_size_from_env);
	tcase_add_loop_test(tc, default_size_malformed, 0,
			    sizeof bad_sizes / sizeof bad_sizes[0]);
	tcase_add_test(tc, shm_too_small_is_refused);
	tcase_add_test(tc, node_id_env);
	tcase_add_test(tc, alloc_sizes_and_alignment);
	tcase_add_test(tc, coalesce_to_one_block);
	tcase_add_test(tc, largest_block_and_full_pool_message);
	tcase_add_test(tc, bad_frees_are_errors);
	tcase_add_test(tc, offsets_and_pointers);
	tcase_add_test(tc, desc_text_and_binary_roundtrip);
	tcase_add_test(tc, desc_wire_format_is_pinned);
	tcase_add_test(tc, stale_foreign_corrupt_refused);
	tcase_add_test(tc, foreign_node_pool_refused);
	tcase_add_test(tc, layout_magic_and_version_checked);
	tcase_add_test(tc, attach_from_other_process_by_text);
	tcase_add_test(tc, owner_chown_reclaim);
	tcase_add_test(tc, threads_share_a_handle);
	tcase_add_test(tc, segname_format_and_match);
	tcase_add_test(tc, strerror_and_errmsg);
	return dmt_run(s);
}
