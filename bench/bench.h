/* Helpers shared by the benchmark programs.
 *
 * A benchmark measures our figure and a baseline's in the same process
 * run, interleaved round by round (alternating which goes first), and
 * reports the median of the rounds of each, so that a ratio survives a noisy
 * machine.  Rows go to stdout as JSON objects, one per line, which
 * bench/run turns into tables and bench/results.jsonl.
 */
#ifndef DRAGON_BENCH_H
#define DRAGON_BENCH_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* n scaled by $DRAGON_BENCH_SCALE (default 1), at least 1: a quick run for
 * tests of the harness, a longer one for careful measurement. */
static inline uint64_t bench_iters(uint64_t n)
{
	const char *s = getenv("DRAGON_BENCH_SCALE");
	double f = s ? strtod(s, NULL) : 1.0;
	double v = (double)n * (f > 0 ? f : 1.0);

	return v < 1 ? 1 : (uint64_t)v;
}

/* One measurement of `iters` operations; returns the figure in the row's
 * unit (ns per operation, messages per second, ...). */
typedef double (*bench_fn)(void *arg, uint64_t iters);

static int bench__cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static inline double bench_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, bench__cmp);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Runs ours and base alternately for `rounds` rounds (at most 64) of
 * `iters` operations each, after one untimed warm-up of each, and stores
 * the medians. */
static inline void bench_interleave(int rounds, uint64_t iters, bench_fn ours,
				    void *ours_arg, bench_fn base,
				    void *base_arg, double *ours_out,
				    double *base_out)
{
	double o[64], b[64];

	if (rounds > 64)
		rounds = 64;
	if (rounds < 1)
		rounds = 1;
	ours(ours_arg, iters / 10 + 1);
	base(base_arg, iters / 10 + 1);
	for (int r = 0; r < rounds; r++) {
		if (r % 2) {
			b[r] = base(base_arg, iters);
			o[r] = ours(ours_arg, iters);
		} else {
			o[r] = ours(ours_arg, iters);
			b[r] = base(base_arg, iters);
		}
	}
	*ours_out = bench_median(o, rounds);
	*base_out = bench_median(b, rounds);
}

static inline void bench__json_str(const char *key, const char *s)
{
	printf("\"%s\":\"", key);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			putchar('\\');
		if ((unsigned char)*s >= 0x20)
			putchar(*s);
	}
	putchar('"');
}

/* One row.  unit names the direction: time units (ns, us) are lower-is-
 * better, rates (msg/s, GB/s, ops/s) higher-is-better; ratio is always
 * value / baseline_value. */
static inline void bench_row(const char *bench, const char *kase, uint64_t size,
			     const char *unit, double value,
			     const char *baseline, double baseline_value)
{
	putchar('{');
	bench__json_str("bench", bench);
	putchar(',');
	bench__json_str("case", kase);
	printf(",\"size\":%llu,", (unsigned long long)size);
	bench__json_str("unit", unit);
	printf(",\"value\":%.6g,", value);
	bench__json_str("baseline", baseline);
	printf(",\"baseline_value\":%.6g,\"ratio\":%.4g}\n", baseline_value,
	       baseline_value > 0 ? value / baseline_value : 0.0);
	fflush(stdout);
}

#endif
