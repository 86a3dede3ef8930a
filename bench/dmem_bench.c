/* libdmem against glibc malloc/free, measured in the same run.
 *
 *  alloc_free   one process: ns per allocate+free pair of 64 B, 4 KiB and
 *               1 MiB (baseline: malloc+free of the same size).
 *  2proc        two processes hammering one pool, pairs per second in
 *               total (baseline: two processes each doing malloc/free in
 *               their own heap, i.e. the best a private allocator can do).
 *               64 B is served by each process's small-block cache; 1 KiB
 *               goes through the shared pool lock every time.
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dragon/dmem.h>

#include "bench.h"

static dmem_pool_t *pool;
static size_t cur_size;

static double dmem_pairs(void *arg, uint64_t iters)
{
	uint64_t t0 = bench_now_ns();
	void *p;

	(void)arg;
	for (uint64_t i = 0; i < iters; i++) {
		if (dmem_alloc(pool, cur_size, 0, &p))
			abort();
		__asm__ volatile("" : : "r"(p) : "memory");
		dmem_free(pool, p);
	}
	return (double)(bench_now_ns() - t0) / (double)iters;
}

static double malloc_pairs(void *arg, uint64_t iters)
{
	uint64_t t0 = bench_now_ns();

	(void)arg;
	for (uint64_t i = 0; i < iters; i++) {
		void *p = malloc(cur_size);
		__asm__ volatile("" : : "r"(p) : "memory");
		free(p);
	}
	return (double)(bench_now_ns() - t0) / (double)iters;
}

/* Two processes run fn(iters) at once; returns pairs per second in total. */
static double two_procs(double (*fn)(void *, uint64_t), uint64_t iters)
{
	volatile int *go = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
				MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t pid[2];
	uint64_t t0;

	if (go == MAP_FAILED)
		abort();
	for (int i = 0; i < 2; i++) {
		pid[i] = fork();
		if (pid[i] == 0) {
			while (!__atomic_load_n(go, __ATOMIC_ACQUIRE))
				;
			fn(NULL, iters);
			_exit(0);
		}
	}
	t0 = bench_now_ns();
	__atomic_store_n(go, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 2; i++)
		waitpid(pid[i], NULL, 0);
	munmap((void *)go, 4096);
	return 2.0 * (double)iters * 1e9 / (double)(bench_now_ns() - t0);
}

static double dmem_2p(void *arg, uint64_t iters)
{
	(void)arg;
	return two_procs(dmem_pairs, iters);
}

static double malloc_2p(void *arg, uint64_t iters)
{
	(void)arg;
	return two_procs(malloc_pairs, iters);
}

int main(void)
{
	static const size_t sizes[] = {64, 4096, 1 << 20};
	static const size_t sizes2[] = {64, 1024};
	double ours, base;
	int rc = dmem_pool_create("bench", 256u << 20, NULL, &pool);

	if (rc) {
		fprintf(stderr, "dmem_bench: %s\n", dmem_errmsg());
		return 1;
	}
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		cur_size = sizes[i];
		bench_interleave(
			9, bench_iters(sizes[i] > 4096 ? 200000 : 2000000),
			dmem_pairs, NULL, malloc_pairs, NULL, &ours, &base);
		bench_row("dmem", "alloc_free", sizes[i], "ns", ours,
			  "glibc malloc/free", base);
	}
	for (size_t i = 0; i < sizeof sizes2 / sizeof sizes2[0]; i++) {
		cur_size = sizes2[i];
		bench_interleave(5, bench_iters(1000000), dmem_2p, NULL,
				 malloc_2p, NULL, &ours, &base);
		bench_row("dmem", "2proc_one_pool", sizes2[i], "pairs/s", ours,
			  "glibc malloc/free, 2 processes", base);
	}
	dmem_pool_destroy(pool);
	return 0;
}
