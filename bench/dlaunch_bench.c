/* Process start through the runtime: spawn + wait of /bin/true via
 * dlaunch_spawn/dlaunch_wait (an embedded runtime in this process) against
 * posix_spawn + waitpid directly, interleaved in the same run.  Target:
 * ratio <= 1.5. */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <dragon/dlaunch.h>
#include "bench.h"

extern char **environ;
static char *argv_true[] = {"true", NULL};

static double via_runtime(void *arg, uint64_t iters)
{
	dlaunch_t *rt = arg;
	dlaunch_status_t st;
	uint64_t t0 = bench_now_ns();
	pid_t pid;

	for (uint64_t i = 0; i < iters; i++) {
		if (dlaunch_spawn(rt, "/bin/true", argv_true, NULL, &pid) ||
		    dlaunch_wait(rt, pid, DLAUNCH_FOREVER, &st)) {
			fprintf(stderr, "dlaunch: %s\n", dlaunch_errmsg());
			exit(1);
		}
	}
	return (double)(bench_now_ns() - t0) / (double)iters;
}

static double direct(void *arg, uint64_t iters)
{
	uint64_t t0 = bench_now_ns();
	pid_t pid;
	int st;

	(void)arg;
	for (uint64_t i = 0; i < iters; i++) {
		if (posix_spawn(&pid, "/bin/true", NULL, NULL, argv_true,
				environ) ||
		    waitpid(pid, &st, 0) != pid)
			exit(1);
	}
	return (double)(bench_now_ns() - t0) / (double)iters;
}

int main(void)
{
	double ours, base;
	dlaunch_t *rt;

	if (dlaunch_runtime_start(NULL, &rt)) {
		fprintf(stderr, "runtime: %s\n", dlaunch_errmsg());
		return 1;
	}
	bench_interleave(7, bench_iters(200), via_runtime, rt, direct, NULL,
			 &ours, &base);
	bench_row("dlaunch_spawn", "spawn+wait /bin/true", 0, "ns", ours,
		  "posix_spawn+waitpid", base);
	dlaunch_runtime_stop(rt, 5000000000ull);
	return 0;
}
