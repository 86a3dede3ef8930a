/*
 * libFuzzer target: channel descriptors, binary and text, and attaching.
 * Inputs are also applied as a patch to a real channel's descriptor and
 * resealed, so that attach's checks behind the checksum (pool, offset,
 * header, uid) meet hostile values too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <stdio.h>
#include "dchan_private.h"

static dmem_pool_t *pool;
static dchan_desc_t good;

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
	if (dmem_pool_create(name, 8u << 20, NULL, &pool) ||
	    dchan_create(pool, NULL, &ch) || dchan_desc_get(ch, &good))
		abort();
	atexit(done);
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
	return 0;
}
