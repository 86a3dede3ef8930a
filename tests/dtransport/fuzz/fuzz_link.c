/*
 * libFuzzer target: the agent's frame decoder and handshake.  Each input
 * is fed to a fresh listener-side link of a real (not running) agent, in
 * chunks whose sizes the input chooses.  When the first byte is odd, the
 * target first completes a genuine handshake (it knows the secret), so
 * that the rest of the input reaches the request path of an
 * authenticated link.  The pure decoders see the input too.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "dtrans_agent.h"

static const char secret[] = "the fuzz target's runtime secret";
static dtrans_agent_t *ag;
static dmem_pool_t *pool;
static dchan_t *gw;

static void done(void)
{
	dtrans_agent_destroy(ag);
	dchan_destroy(gw);
	dmem_pool_destroy(pool);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	dtrans_attr_t a = {0};
	char name[64];

	(void)argc;
	(void)argv;
	setenv("DRAGON_NODE_ID", "2", 1);
	snprintf(name, sizeof name, "fuzzdtrans-%d", (int)getpid());
	if (dmem_pool_create(name, 16u << 20, NULL, &pool) ||
	    dchan_create(pool, NULL, &gw))
		abort();
	a.node = 1;
	a.nnodes = 2;
	a.listen_addr = "127.0.0.1:0";
	a.secret = secret;
	a.secret_len = sizeof secret - 1;
	a.gateway = gw;
	a.field_mask = DTRANS_ATTR_LOG_FD;
	a.log_fd = -1;
	if (dtrans_agent_create(&a, &ag))
		abort();
	atexit(done);
	return 0;
}

/* Answer the link's HELLO (still in its output buffer) as node 0 would. */
static void handshake(struct dtrans__link *l)
{
	struct dtrans__hello h;
	struct dtrans__auth au = {.node = 0, .nnodes = 2};
	struct dtrans__fhdr fh = {.type = DTRANS__F_AUTH};
	unsigned char buf[DTRANS__FRAME_HDR + 128];
	size_t n;

	if (dtrans__hello_decode(l->out.p + DTRANS__FRAME_HDR,
				 8 + DTRANS__NONCE, &h))
		abort();
	memset(au.nonce, 7, DTRANS__NONCE);
	if (dtrans__mac(secret, sizeof secret - 1, 'c', h.nonce, au.nonce, 0, 1,
			2, au.mac))
		abort();
	n = dtrans__auth_encode(&au, buf + DTRANS__FRAME_HDR);
	fh.len = (uint32_t)n;
	dtrans__fhdr_encode(&fh, buf);
	dtrans__link_feed(l, buf, DTRANS__FRAME_HDR + n);
	if (l->state != DTRANS__L_READY)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dtrans__fhdr fh;
	struct dtrans__hello h;
	struct dtrans__auth au;
	struct dtrans__link *l;
	size_t off = 1;
	void *be;
	int sv[2];

	if (size > DTRANS__FRAME_HDR) {
		dtrans__fhdr_decode(data, size, &fh);
		dtrans__hello_decode(data + DTRANS__FRAME_HDR,
				     size - DTRANS__FRAME_HDR, &h);
		dtrans__auth_decode(data + DTRANS__FRAME_HDR,
				    size - DTRANS__FRAME_HDR, &au);
	}
	if (size < 2)
		return 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
		abort();
	if (dtrans__tcp_adopt(sv[0], &be) ||
	    dtrans__link_new(ag, be, false, UINT32_MAX, &l))
		abort();
	dtrans__link_accepted(l);
	if (data[0] & 1)
		handshake(l);
	/* chunks of 1 + (data[0] >> 1) bytes: frames split at any point */
	while (off < size && !l->dead) {
		size_t n = 1 + (size_t)(data[0] >> 1);

		if (n > size - off)
			n = size - off;
		dtrans__link_feed(l, data + off, n);
		off += n;
	}
	dtrans__link_drop(l, NULL);
	ag->links = l->next;
	free(l);
	close(sv[1]);
	return 0;
}
