/*
 * libFuzzer target: channel descriptors, binary and text, and attaching.
 * Inputs are also applied as a patch to a real channel's descriptor and
 * resealed, so that attach's checks behind the checksum (pool, offset,
 * header, uid) meet hostile values too.  Last, each input is the directory
 * of a condition (the message in its first channel that names the other
 * channels), decoded and then attached.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <stdio.h>
#include "dchan_sync.h"

static dmem_pool_t *pool;
static dchan_desc_t good, cond_desc;
static dchan_t *cond_id; /* the condition's first channel */

static void done(void)
{
	if (pool)
		dmem_pool_destroy(pool);
}

static void setup(void)
{
	char name[64];
	dchan_t *ch;

	snprintf(name, sizeof name, "fuzzdesc%d", (int)getpid());
	dchan_cond_t *cond;
	unsigned char dir[256];
	size_t len;

	if (dmem_pool_create(name, 8u << 20, NULL, &pool) ||
	    dchan_create(pool, NULL, &ch) || dchan_desc_get(ch, &good) ||
	    dchan_cond_create(pool, &cond) ||
	    dchan_cond_desc_get(cond, &cond_desc) ||
	    dchan__attach(&cond_desc, &cond_id) ||
	    dchan_recv(cond_id, dir, sizeof dir, 0, &len))
		abort();
	atexit(done);
}

/* The input as a condition's directory: decoded alone, then attached. */
static void fuzz_directory(const uint8_t *data, size_t size)
{
	dchan_desc_t descs[DCHAN__DIR_MAX];
	unsigned char junk[4096];
	dchan_cond_t *c;
	size_t len;

	for (unsigned n = 0; n <= DCHAN__DIR_MAX; n++)
		dchan__sync_dir_decode(data, size, &good, n, descs);
	if (size > sizeof junk || dchan_send(cond_id, data, size, 0) != 0)
		return;
	if (dchan_cond_attach(&cond_desc, &c) == 0)
		dchan_cond_detach(c);
	while (dchan_recv(cond_id, junk, sizeof junk, 0, &len) == 0)
		;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	dchan_desc_t d;
	dchan_t *ch;
	char *text;

	if (!pool)
		setup();
	if (dchan_desc_deserialize(data, size, &d) == 0 &&
	    dchan_attach(&d, &ch) == 0)
		dchan_detach(ch);
	text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	if (dchan_desc_from_text(text, &d) == 0 && dchan_attach(&d, &ch) == 0)
		dchan_detach(ch);
	free(text);
	/* patch the good descriptor past its magic and version, reseal */
	d = good;
	for (size_t i = 0; i < size && 8 + i < offsetof(dchan_desc_t, check);
	     i++)
		((uint8_t *)&d)[8 + i] ^= data[i];
	dchan__desc_seal(&d);
	if (dchan_attach(&d, &ch) == 0)
		dchan_detach(ch);
	fuzz_directory(data, size);
	return 0;
}
