/* Private: helpers shared by the sync objects. */
#ifndef DRAGON_DCHAN_SYNC_H
#define DRAGON_DCHAN_SYNC_H

#include "dchan_private.h"

/* The message sync objects exchange. */
struct dchan__tok {
	uint64_t a; /* count, generation, or owner */
	uint64_t b; /* kind of message, or waiting count */
	uint64_t c;
	uint64_t d;
};

int dchan__sync_create(dmem_pool_t *pool, uint32_t kind, uint32_t cap,
		       dchan_t **ch_out);
int dchan__sync_attach(const dchan_desc_t *d, uint32_t kind, dchan_t **ch_out,
		       uint64_t *param_out);
int dchan__sync_sibling(dchan_t *first, int i, dchan_t **ch_out);
int dchan__tok_send(dchan_t *ch, const struct dchan__tok *t,
		    uint64_t timeout_ns);
int dchan__tok_recv(dchan_t *ch, struct dchan__tok *t, uint64_t timeout_ns);
int dchan__tok_peek(dchan_t *ch, struct dchan__tok *t, uint64_t timeout_ns);
int dchan__count_add(dchan_t *ch, uint64_t delta, uint64_t max);
int dchan__count_take(dchan_t *ch, uint64_t timeout_ns);
int64_t dchan__count_value(dchan_t *ch);

#endif
