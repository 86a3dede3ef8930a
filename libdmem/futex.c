/* SPDX-License-Identifier: MIT */
/*
 * futex.c - wait/wake on a 32-bit word in shared memory, and deadlines.
 *
 * The word may be in any MAP_SHARED mapping, so the futex is a shared
 * (not FUTEX_PRIVATE) one, keyed by the kernel on the physical page.
 * Deadlines are absolute CLOCK_MONOTONIC, which FUTEX_WAIT_BITSET takes
 * directly, so a wait that is interrupted and restarted never drifts.
 *
 * Before sleeping we spin for a while, because a futex sleep plus wake-up
 * costs several microseconds and a peer on another core often changes the
 * word sooner.  Spinning only pays if that peer is actually running, so we
 * never spin on a single-core machine or when more threads are runnable
 * than there are cores (the spinner would steal the peer's CPU).  The spin
 * length adapts: it doubles when a spin ended in success and halves when it did
 * not, so a workload where spins never pay quickly stops spinning.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "dmem_private.h"

/* Polls of the word a wait makes before it sleeps: the budget doubles when
 * the word changed in time and halves when it did not, within these. */
#define SPIN_MIN       16
#define SPIN_START     256
#define SPIN_MAX       4096
#define LOAD_SAMPLE_NS 50000000ull /* re-read /proc/loadavg every 50 ms */

static _Atomic int spin_budget = SPIN_START;
static _Atomic uint64_t load_sampled_at;
static _Atomic int oversubscribed = 1;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Runnable threads right now: the 4th field of /proc/loadavg ("r/total"). */
static long runnable(void)
{
	char buf[128];
	long r = LONG_MAX;
	int fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return r;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n > 0) {
		buf[n] = '\0';
		if (sscanf(buf, "%*s %*s %*s %ld/", &r) != 1)
			r = LONG_MAX;
	}
	return r;
}

/* CPUs that can run threads now.  Not the affinity mask: a process pinned
 * to one core usually has its peer pinned to another (srun --cpu-bind, an
 * MPI binding), where spinning pays.  A peer on the same core cannot
 * change the word while this one spins, so every spin there runs out and
 * the adaptive budget falls to SPIN_MIN polls within a few waits. */
static long online_cpus(void)
{
	long c = sysconf(_SC_NPROCESSORS_ONLN);

	return c > 0 ? c : 1;
}

/* Whether spinning can pay now; re-decided every LOAD_SAMPLE_NS, so a
 * change of load or of affinity is noticed. */
int dmem__spin_pays(void)
{
	uint64_t t = now_ns();

	if (t - atomic_load_explicit(&load_sampled_at, memory_order_relaxed) >
	    LOAD_SAMPLE_NS) {
		long cpus = online_cpus();

		atomic_store(&load_sampled_at, t);
		atomic_store(&oversubscribed, cpus <= 1 || runnable() > cpus);
	}
	return !atomic_load_explicit(&oversubscribed, memory_order_relaxed);
}

/* Spin while *addr == expected; 1 if it changed. */
static int spin(uint32_t *addr, uint32_t expected)
{
	int budget = atomic_load_explicit(&spin_budget, memory_order_relaxed);

	for (int i = 0; i < budget; i++) {
		if (__atomic_load_n(addr, __ATOMIC_ACQUIRE) != expected) {
			if (budget < SPIN_MAX)
				atomic_store_explicit(&spin_budget, budget * 2,
						      memory_order_relaxed);
			return 1;
		}
		__builtin_ia32_pause();
	}
	if (budget > SPIN_MIN)
		atomic_store_explicit(&spin_budget, budget / 2,
				      memory_order_relaxed);
	return 0;
}

static int past(const struct timespec *d)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > d->tv_sec ||
	       (now.tv_sec == d->tv_sec && now.tv_nsec >= d->tv_nsec);
}

DMEM_EXPORT int dmem_futex_wait(uint32_t *addr, uint32_t expected,
				const struct timespec *deadline)
{
	long rc;

	if (!addr || ((uintptr_t)addr & 3) ||
	    (deadline &&
	     (deadline->tv_nsec < 0 || deadline->tv_nsec >= 1000000000L)))
		return dmem__fail(-EINVAL,
				  "futex wait: bad address or deadline");
	if (__atomic_load_n(addr, __ATOMIC_ACQUIRE) != expected)
		return 0;
	if (deadline && past(deadline))
		return -ETIMEDOUT;
	if (dmem__spin_pays() && spin(addr, expected))
		return 0;
	rc = syscall(SYS_futex, addr, FUTEX_WAIT_BITSET, expected, deadline,
		     NULL, FUTEX_BITSET_MATCH_ANY);
	if (rc == 0 || errno == EAGAIN || errno == EINTR)
		return 0;
	if (errno == ETIMEDOUT)
		return -ETIMEDOUT;
	return dmem__fail(-errno, "futex wait failed: errno %d", errno);
}

DMEM_EXPORT int dmem_futex_wake(uint32_t *addr, int n)
{
	long rc;

	if (!addr || ((uintptr_t)addr & 3) || n <= 0)
		return dmem__fail(-EINVAL, "futex wake: bad address or count");
	rc = syscall(SYS_futex, addr, FUTEX_WAKE, n, NULL, NULL, 0);
	if (rc < 0)
		return dmem__fail(-errno, "futex wake failed: errno %d", errno);
	return (int)rc;
}

DMEM_EXPORT int dmem_deadline_after(uint64_t timeout_ns,
				    struct timespec *deadline_out)
{
	struct timespec now;

	if (!deadline_out)
		return dmem__fail(-EINVAL, "deadline_out is NULL");
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (timeout_ns > (uint64_t)INT64_MAX / 2)
		timeout_ns = (uint64_t)INT64_MAX / 2;
	now.tv_sec += (time_t)(timeout_ns / 1000000000ull);
	now.tv_nsec += (long)(timeout_ns % 1000000000ull);
	if (now.tv_nsec >= 1000000000L) {
		now.tv_sec++;
		now.tv_nsec -= 1000000000L;
	}
	*deadline_out = now;
	return 0;
}
