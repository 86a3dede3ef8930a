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
int dchan__sync_create_slot(dmem_pool_t *pool, uint32_t kind, uint32_t cap,
			    uint32_t slot_size, dchan_t **ch_out);
int dchan__sync_attach(const dchan_desc_t *d, uint32_t kind, dchan_t **ch_out,
		       uint64_t *param_out);

/*
 * Objects of several channels (semaphore, barrier, condition): the first
 * channel, the one the object's descriptor names, holds one permanent message,
 * the directory, naming the others.  Its layout (native byte order, like the
 * tokens and the binary descriptor):
 *   u32 magic DCHAN__DIR_MAGIC, u16 version, u16 count,
 *   count x { u64 offset, u64 chan_uid }   channels of the same pool
 * Reading it is a peek, so a process on another node reads it through the
 * gateway like any other message, and then names each sibling with a
 * descriptor of its own (the first one's node and pool).
 */
#define DCHAN__DIR_MAGIC    0x44595344u /* "DSYD" */
#define DCHAN__DIR_VERSION  1u
#define DCHAN__DIR_MAX	    3u
#define DCHAN__DIR_BYTES(n) (8u + 16u * (n))

int dchan__sync_dir_write(dchan_t *first, dchan_t *const *chs, unsigned n);
int dchan__sync_dir_decode(const void *buf, size_t len,
			   const dchan_desc_t *first, unsigned n,
			   dchan_desc_t *descs_out);
int dchan__sync_dir_open(dchan_t *first, const uint32_t *kinds, unsigned n,
			 dchan_t **chs_out);

int dchan__peek_now(dchan_t *ch, void *buf, size_t cap, size_t *len_out);
int dchan__tok_send(dchan_t *ch, const struct dchan__tok *t,
		    uint64_t timeout_ns);
int dchan__tok_recv(dchan_t *ch, struct dchan__tok *t, uint64_t timeout_ns);
int dchan__tok_peek(dchan_t *ch, struct dchan__tok *t, uint64_t timeout_ns);
int dchan__count_add(dchan_t *ch, uint64_t delta);
int dchan__count_take(dchan_t *ch, uint64_t timeout_ns);

#endif
