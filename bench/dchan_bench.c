/*
 * libdchan benchmarks: two processes pinned to two cores, with baselines
 * measured in the same run, interleaved: a pipe, a socketpair and a raw
 * single-producer shared-memory ring that either busy-polls or spins and
 * then sleeps on a futex.
 *
 *   rtt        round trip of one message, 8 B .. 1 MiB
 *   oneway     8-byte messages per second, one direction
 *   bw         1 MiB messages, GB/s: copied, and handed over (zero copy)
 *   sleeping   round trip when the peer has been idle for 1 ms, so it
 *              sleeps in the kernel when the message arrives
 *
 * An argument (e.g. "rtt,sleeping") runs only the cases it names.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <dragon/dchan.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB	   (1u << 20)
#define RING_SLOTS 4
#define SPIN_NS	   20000ull

/* ---- a raw single-producer single-consumer ring ----------------------- */

struct ring {
	uint32_t head __attribute__((aligned(64)));
	uint32_t head_waiters;
	uint32_t tail __attribute__((aligned(64)));
	uint32_t tail_waiters;
	uint64_t len[RING_SLOTS] __attribute__((aligned(64)));
	unsigned char data[]; /* RING_SLOTS * slot bytes */
};

static void futex_wait(uint32_t *w, uint32_t v)
{
	syscall(SYS_futex, w, FUTEX_WAIT, v, NULL, NULL, 0);
}

static void futex_wake(uint32_t *w)
{
	syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* Wait until *w != v: spin, then (if sleep) futex with a waiter count. */
static void ring_wait(uint32_t *w, uint32_t *waiters, uint32_t v, bool sleep)
{
	uint64_t t0 = 0;

	for (unsigned i = 0; __atomic_load_n(w, __ATOMIC_ACQUIRE) == v; i++) {
		__builtin_ia32_pause();
		if (!sleep || i % 64)
			continue;
		if (!t0)
			t0 = bench_now_ns();
		if (bench_now_ns() - t0 < SPIN_NS)
			continue;
		__atomic_fetch_add(waiters, 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(w, __ATOMIC_SEQ_CST) == v)
			futex_wait(w, v);
		__atomic_fetch_sub(waiters, 1, __ATOMIC_SEQ_CST);
	}
}

static void ring_publish(uint32_t *w, uint32_t *waiters, bool sleep)
{
	__atomic_fetch_add(w, 1, __ATOMIC_SEQ_CST);
	if (sleep && __atomic_load_n(waiters, __ATOMIC_SEQ_CST))
		futex_wake(w);
}

static void ring_send(struct ring *r, size_t slot, const void *buf, size_t len,
		      bool sleep)
{
	uint32_t h = r->head;

	ring_wait(&r->tail, &r->tail_waiters, h - RING_SLOTS, sleep);
	memcpy(r->data + (h % RING_SLOTS) * slot, buf, len);
	r->len[h % RING_SLOTS] = len;
	ring_publish(&r->head, &r->head_waiters, sleep);
}

static size_t ring_recv(struct ring *r, size_t slot, void *buf, bool sleep)
{
	uint32_t t = r->tail;
	size_t len;

	ring_wait(&r->head, &r->head_waiters, t, sleep);
	len = r->len[t % RING_SLOTS];
	memcpy(buf, r->data + (t % RING_SLOTS) * slot, len);
	ring_publish(&r->tail, &r->tail_waiters, sleep);
	return len;
}

/* ---- transports ---------------------------------------------------------- */

enum tp_kind { TP_DCHAN, TP_DCHAN_ZC, TP_PIPE, TP_SOCK, TP_RING, TP_FRING };
static const char *const tp_name[] = {"dchan",	    "dchan-zc",	 "pipe",
				      "socketpair", "ring-busy", "ring-futex"};

struct tp {
	enum tp_kind kind;
	size_t max;
	dchan_t *ch[2];
	int fd[2][2];
	struct ring *ring[2];
	size_t ring_bytes;
};

static dmem_pool_t *pool;

static void tp_open(struct tp *t, enum tp_kind kind, size_t max)
{
	memset(t, 0, sizeof *t);
	t->kind = kind;
	t->max = max;
	switch (kind) {
	case TP_DCHAN:
	case TP_DCHAN_ZC:
		for (int d = 0; d < 2; d++)
			if (dchan_create(pool, NULL, &t->ch[d]))
				abort();
		break;
	case TP_PIPE:
		if (pipe(t->fd[0]) || pipe(t->fd[1]))
			abort();
		break;
	case TP_SOCK:
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, t->fd[0]))
			abort();
		t->fd[1][0] = t->fd[0][1]; /* child reads [0][1] ... */
		t->fd[1][1] = t->fd[0][0];
		break;
	case TP_RING:
	case TP_FRING:
		t->ring_bytes = sizeof(struct ring) + RING_SLOTS * max;
		for (int d = 0; d < 2; d++) {
			t->ring[d] = mmap(NULL, t->ring_bytes,
					  PROT_READ | PROT_WRITE,
					  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
			if (t->ring[d] == MAP_FAILED)
				abort();
		}
		break;
	}
}

static void tp_close(struct tp *t)
{
	for (int d = 0; d < 2; d++) {
		if (t->ch[d])
			dchan_destroy(t->ch[d]);
		if (t->ring[d])
			munmap(t->ring[d], t->ring_bytes);
	}
	if (t->kind == TP_PIPE)
		for (int d = 0; d < 2; d++)
			close(t->fd[d][0]), close(t->fd[d][1]);
	if (t->kind == TP_SOCK)
		close(t->fd[0][0]), close(t->fd[0][1]);
}

static void full_write(int fd, const void *buf, size_t len)
{
	for (size_t off = 0; off < len;) {
		ssize_t n = write(fd, (const char *)buf + off, len - off);

		if (n <= 0)
			abort();
		off += (size_t)n;
	}
}

static void full_read(int fd, void *buf, size_t len)
{
	for (size_t off = 0; off < len;) {
		ssize_t n = read(fd, (char *)buf + off, len - off);

		if (n <= 0)
			abort();
		off += (size_t)n;
	}
}

/* Send len bytes in direction d (0: parent to child, 1: back). */
static void tp_send(struct tp *t, int d, const void *buf, size_t len)
{
	void *p;

	switch (t->kind) {
	case TP_DCHAN:
		if (dchan_send(t->ch[d], buf, len, DCHAN_FOREVER))
			abort();
		break;
	case TP_DCHAN_ZC:
		/* the sender fills an allocation and hands it over */
		if (dmem_alloc(pool, len, 0, &p) ||
		    dchan_send_zc(t->ch[d], p, len, DCHAN_FOREVER))
			abort();
		break;
	case TP_PIPE:
		full_write(t->fd[d][1], buf, len);
		break;
	case TP_SOCK:
		full_write(d == 0 ? t->fd[0][0] : t->fd[0][1], buf, len);
		break;
	case TP_RING:
	case TP_FRING:
		ring_send(t->ring[d], t->max, buf, len, t->kind == TP_FRING);
		break;
	}
}

static void tp_recv(struct tp *t, int d, void *buf, size_t len)
{
	dchan_msg_t m;
	size_t got;

	switch (t->kind) {
	case TP_DCHAN:
		if (dchan_recv(t->ch[d], buf, t->max, DCHAN_FOREVER, &got))
			abort();
		break;
	case TP_DCHAN_ZC:
		if (dchan_recv_zc(t->ch[d], DCHAN_FOREVER, &m) ||
		    dchan_msg_release(&m))
			abort();
		break;
	case TP_PIPE:
		full_read(t->fd[d][0], buf, len);
		break;
	case TP_SOCK:
		full_read(d == 0 ? t->fd[0][1] : t->fd[0][0], buf, len);
		break;
	case TP_RING:
	case TP_FRING:
		ring_recv(t->ring[d], t->max, buf, t->kind == TP_FRING);
		break;
	}
}

/* ---- the two processes --------------------------------------------------- */

enum pattern { P_RTT, P_ONEWAY, P_SLEEPING };

struct run {
	enum tp_kind kind;
	enum pattern pat;
	size_t size;
};

static void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu % (int)sysconf(_SC_NPROCESSORS_ONLN), &set);
	sched_setaffinity(0, sizeof set, &set);
}

static void child(struct tp *t, const struct run *r, uint64_t iters, void *buf)
{
	pin(1);
	tp_recv(t, 0, buf, r->size); /* start */
	tp_send(t, 1, buf, r->size);
	if (r->pat == P_ONEWAY) {
		for (uint64_t i = 0; i < iters; i++)
			tp_recv(t, 0, buf, r->size);
		tp_send(t, 1, buf, 8);
		return;
	}
	for (uint64_t i = 0; i < iters; i++) {
		tp_recv(t, 0, buf, r->size);
		tp_send(t, 1, buf, r->size);
	}
}

/* One measurement: fork the peer, time `iters` operations. */
static double measure(void *arg, uint64_t iters)
{
	const struct run *r = arg;
	void *buf = calloc(1, r->size < 8 ? 8 : r->size);
	uint64_t t0, spent = 0;
	struct tp t;
	pid_t pid;

	tp_open(&t, r->kind, r->size < 8 ? 8 : r->size);
	pid = fork();
	if (pid == 0) {
		/* the peer spins on its CPU: it must not outlive a killed bench
		 */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() == 1)
			_exit(1);
		child(&t, r, iters, buf);
		_exit(0);
	}
	pin(0);
	tp_send(&t, 0, buf, r->size);
	tp_recv(&t, 1, buf, r->size);
	t0 = bench_now_ns();
	for (uint64_t i = 0; i < iters; i++) {
		if (r->pat == P_SLEEPING) {
			usleep(1000);
			t0 = bench_now_ns();
		}
		if (r->pat == P_ONEWAY) {
			tp_send(&t, 0, buf, r->size);
			continue;
		}
		tp_send(&t, 0, buf, r->size);
		tp_recv(&t, 1, buf, r->size);
		if (r->pat == P_SLEEPING)
			spent += bench_now_ns() - t0;
	}
	if (r->pat == P_ONEWAY)
		tp_recv(&t, 1, buf, 8);
	if (r->pat != P_SLEEPING)
		spent = bench_now_ns() - t0;
	waitpid(pid, NULL, 0);
	tp_close(&t);
	free(buf);
	if (r->pat == P_ONEWAY && r->size >= MiB)
		return (double)iters * (double)r->size /
		       (double)spent; /* GB/s */
	if (r->pat == P_ONEWAY)
		return (double)iters * 1e9 / (double)spent; /* msg/s */
	return (double)spent / (double)iters / 1000.0;	    /* us */
}

static const char *only; /* argv[1]: run only the cases it names */

static void compare(const char *kase, enum pattern pat, size_t size,
		    enum tp_kind ours, enum tp_kind base, uint64_t iters,
		    const char *unit)
{
	struct run a = {ours, pat, size}, b = {base, pat, size};
	double va, vb;

	if (only && !strstr(only, kase))
		return;
	bench_interleave(5, iters, measure, &a, measure, &b, &va, &vb);
	bench_row("dchan", kase, size, unit, va, tp_name[base], vb);
}

int main(int argc, char **argv)
{
	static const size_t sizes[] = {8, 1024, 64 * 1024, MiB};
	static const enum tp_kind rtt_base[] = {TP_PIPE, TP_SOCK, TP_RING,
						TP_FRING};
	char name[64];

	only = argc > 1 ? argv[1] : NULL;
	signal(SIGPIPE, SIG_IGN); /* a closed stdout must not skip cleanup */
	snprintf(name, sizeof name, "bench%d", (int)getpid());
	if (dmem_pool_create(name, 256u << 20, NULL, &pool)) {
		fprintf(stderr, "pool: %s\n", dmem_errmsg());
		return 1;
	}
	for (size_t s = 0; s < 4; s++) {
		uint64_t n = bench_iters(sizes[s] >= MiB     ? 500
					 : sizes[s] >= 65536 ? 5000
							     : 50000);

		for (size_t b = 0; b < 4; b++)
			compare("rtt", P_RTT, sizes[s], TP_DCHAN, rtt_base[b],
				n, "us");
	}
	compare("oneway", P_ONEWAY, 8, TP_DCHAN, TP_RING, bench_iters(2000000),
		"msg/s");
	compare("oneway", P_ONEWAY, 8, TP_DCHAN, TP_PIPE, bench_iters(500000),
		"msg/s");
	compare("bw-copy", P_ONEWAY, MiB, TP_DCHAN, TP_RING, bench_iters(2000),
		"GB/s");
	compare("bw-zerocopy", P_ONEWAY, MiB, TP_DCHAN_ZC, TP_RING,
		bench_iters(2000), "GB/s");
	compare("sleeping", P_SLEEPING, 8, TP_DCHAN, TP_FRING, bench_iters(300),
		"us");
	compare("sleeping", P_SLEEPING, 8, TP_DCHAN, TP_PIPE, bench_iters(300),
		"us");
	dmem_pool_destroy(pool);
	return 0;
}
