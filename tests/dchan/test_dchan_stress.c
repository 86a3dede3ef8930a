/*
 * libdchan: many producer and consumer processes on one channel.  Every
 * message is received exactly once, and each consumer sees each producer's
 * messages in the order they were sent.
 */
#include "dchan_test.h"

#define NPROD  4
#define NCONS  4
#define MAXMSG (64 * 1024)

struct msg_hdr {
	uint32_t prod;
	uint32_t pad;
	uint64_t seq;
};

static size_t msg_size(uint64_t seq, uint32_t prod)
{
	uint64_t x = (seq * 2654435761u) ^ (prod * 40503u);

	if (x % 97 == 0)
		return sizeof(struct msg_hdr) + 1000 +
		       x % (MAXMSG - 1000 - sizeof(struct msg_hdr));
	return sizeof(struct msg_hdr) + x % 200;
}

static int producer(dchan_t *ch, uint32_t id, uint64_t n)
{
	unsigned char *buf = malloc(MAXMSG);
	struct msg_hdr h = {id, 0, 0};

	for (uint64_t s = 0; s < n; s++) {
		size_t len = msg_size(s, id);

		h.seq = s;
		memcpy(buf, &h, sizeof h);
		t_fill(buf + sizeof h, len - sizeof h, s ^ id);
		if (dchan_send(ch, buf, len, DCHAN_FOREVER) != 0)
			return 10;
	}
	free(buf);
	return 0;
}

/* seen: NPROD bitmaps of n bytes each, shared by all consumers; total:
 * the shared count of received messages. */
static int consumer(dchan_t *ch, uint8_t *seen, uint64_t *total, uint64_t n)
{
	unsigned char *buf = malloc(MAXMSG);
	int64_t last[NPROD];

	for (int i = 0; i < NPROD; i++)
		last[i] = -1;
	while (__atomic_load_n(total, __ATOMIC_RELAXED) < NPROD * n) {
		struct msg_hdr h;
		size_t len;
		int rc = dchan_recv(ch, buf, MAXMSG, 50000000, &len);

		if (rc == -ETIMEDOUT)
			continue;
		if (rc != 0)
			return 20;
		memcpy(&h, buf, sizeof h);
		if (h.prod >= NPROD || h.seq >= n)
			return 21;
		if (len != msg_size(h.seq, h.prod))
			return 22;
		if (!t_check(buf + sizeof h, len - sizeof h, h.seq ^ h.prod))
			return 23;
		if ((int64_t)h.seq <= last[h.prod])
			return 24; /* reordered */
		last[h.prod] = (int64_t)h.seq;
		if (__atomic_exchange_n(&seen[h.prod * n + h.seq], 1,
					__ATOMIC_RELAXED))
			return 25; /* duplicate */
		__atomic_fetch_add(total, 1, __ATOMIC_RELAXED);
	}
	free(buf);
	return 0;
}

START_TEST(four_by_four_million)
{
	uint64_t n = t_scaled(250000, 2000); /* per producer: 1 M in all */
	struct t_fix f = t_fix_open("stress", 512u << 20, 64, 0);
	size_t shsz = NPROD * n + 64;
	uint8_t *sh = t_shared(shsz);
	uint64_t *total = (uint64_t *)sh;
	pid_t pids[NPROD + NCONS];

	for (int i = 0; i < NPROD + NCONS; i++) {
		pids[i] = t_fork();
		if (pids[i] == 0)
			_exit(i < NPROD ? producer(f.ch, (uint32_t)i, n)
					: consumer(f.ch, sh + 64, total, n));
	}
	for (int i = 0; i < NPROD + NCONS; i++)
		ck_assert_int_eq(t_wait(pids[i]), 0);
	ck_assert_uint_eq(*total, NPROD * n);
	for (uint64_t i = 0; i < NPROD * n; i++)
		ck_assert_msg(sh[64 + i], "message %llu lost",
			      (unsigned long long)i);
	ck_assert_int_eq(dchan_count(f.ch), 0);
	for (int i = 0; i < NPROD + NCONS; i++)
		T_OK(dmem_pool_reclaim(f.pool, pids[i], NULL));
	munmap(sh, shsz);
	t_fix_close(&f); /* every large message's allocation was freed */
}
END_TEST

T_MAIN("dchan_stress", 600, four_by_four_million)
