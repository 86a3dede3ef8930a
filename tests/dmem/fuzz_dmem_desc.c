/* libFuzzer target: descriptor parsing (binary and text) and attach.
 *
 * The input is tried as every descriptor form; whatever parses is attached.
 * To reach the heap checks behind attach, the input's numbers are also
 * turned into an allocation descriptor of a real pool (right node and pool,
 * arbitrary offset, size and generation).  Nothing may crash or leak.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dragon/dmem.h>

static dmem_pool_t *pool;
static dmem_pool_desc_t pdesc;
static void *live[4];

static void teardown(void)
{
	if (pool)
		dmem_pool_destroy(pool);
	pool = NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (dmem_pool_create("fuzz", 1u << 20, NULL, &pool)) {
		fprintf(stderr, "fuzz: %s\n", dmem_errmsg());
		exit(1);
	}
	dmem_pool_desc_get(pool, &pdesc);
	for (int i = 0; i < 4; i++)
		dmem_alloc(pool, 100u << i * 3, 0, &live[i]);
	atexit(teardown);
	return 0;
}

static void try_alloc_desc(const dmem_alloc_desc_t *d)
{
	void *p;

	if (dmem_alloc_attach(pool, d, &p) == 0)
		memset(p, 0xab, d->size < 64 ? d->size : 64);
}

static void deep_attach(const uint8_t *data, size_t size)
{
	uint64_t v[3] = {0, 0, 0};
	char text[DMEM_ALLOC_DESC_TEXT_MAX];
	dmem_alloc_desc_t d;

	memcpy(v, data, size < sizeof v ? size : sizeof v);
	snprintf(text, sizeof text, "dmem-alloc:1:%llx:%llx:%llu:%llu:%llu",
		 (unsigned long long)pdesc.node_id,
		 (unsigned long long)pdesc.pool_uid, (unsigned long long)v[0],
		 (unsigned long long)v[1], (unsigned long long)(v[2] & 0xff));
	if (dmem_alloc_desc_from_text(text, &d) == 0)
		try_alloc_desc(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	dmem_pool_desc_t pd;
	dmem_alloc_desc_t ad;
	dmem_pool_t *q;
	char *text = malloc(size + 1);

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (dmem_pool_desc_deserialize(data, size, &pd) == 0 &&
	    dmem_pool_attach(&pd, &q) == 0)
		dmem_pool_detach(q);
	if (dmem_pool_desc_from_text(text, &pd) == 0 &&
	    dmem_pool_attach(&pd, &q) == 0)
		dmem_pool_detach(q);
	if (dmem_alloc_desc_deserialize(data, size, &ad) == 0)
		try_alloc_desc(&ad);
	if (dmem_alloc_desc_from_text(text, &ad) == 0)
		try_alloc_desc(&ad);
	deep_attach(data, size);
	free(text);
	return 0;
}
