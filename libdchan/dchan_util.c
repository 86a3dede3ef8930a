/* Small helpers: who we are, whether a peer lives, time, hashing. */
#include "config.h"
#include "dchan_private.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <unistd.h>

static uint32_t dchan__pid;
static pthread_once_t dchan__pid_once = PTHREAD_ONCE_INIT;

static void dchan__pid_reset(void)
{
	__atomic_store_n(&dchan__pid, (uint32_t)getpid(), __ATOMIC_RELAXED);
}

static void dchan__pid_init(void)
{
	dchan__pid_reset();
	pthread_atfork(NULL, NULL, dchan__pid_reset);
}

/* The tag this process writes into the slots it claims.  getpid() is a
 * system call in current glibc; the hot path reads a cache that a fork
 * handler refreshes. */
uint32_t dchan__self(void)
{
	pthread_once(&dchan__pid_once, dchan__pid_init);
	return __atomic_load_n(&dchan__pid, __ATOMIC_RELAXED) &
	       DCHAN__TAG_PID_MASK;
}

/* True only when pid certainly no longer exists (a process we may not
 * signal is alive). */
bool dchan__pid_dead(uint32_t pid)
{
	if (pid == 0)
		return false;
	if (pid == dchan__self())
		return false;
	return kill((pid_t)pid, 0) == -1 && errno == ESRCH;
}

uint64_t dchan__random64(void)
{
	uint64_t v = 0;

	if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		v = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^
		    ((uint64_t)getpid() << 40);
	}
	return v ? v : 1;
}

/* FNV-1a, 64 bit: descriptors' checksum (catches corruption, not forgery). */
uint64_t dchan__hash(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint64_t h = 0xcbf29ce484222325ull;

	while (len--) {
		h ^= *p++;
		h *= 0x100000001b3ull;
	}
	return h;
}

uint64_t dchan__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A relative timeout as the absolute deadline libdmem takes: *dlp is NULL
 * for DCHAN_FOREVER. */
int dchan__deadline(uint64_t timeout_ns, struct timespec *dl,
		    const struct timespec **dlp)
{
	int rc;

	if (timeout_ns == DCHAN_FOREVER) {
		*dlp = NULL;
		return 0;
	}
	rc = dmem_deadline_after(timeout_ns, dl);
	if (rc < 0)
		return dchan__fail_dmem(rc, "computing a deadline");
	*dlp = dl;
	return 0;
}

bool dchan__expired(const struct timespec *dl)
{
	struct timespec now;

	if (!dl)
		return false;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > dl->tv_sec ||
	       (now.tv_sec == dl->tv_sec && now.tv_nsec >= dl->tv_nsec);
}

/* Runnable threads on the machine now (4th field of /proc/loadavg). */
static long dchan__runnable(void)
{
	char buf[128];
	long r = -1;
	int fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n > 0) {
		buf[n] = '\0';
		if (sscanf(buf, "%*s %*s %*s %ld/", &r) != 1)
			r = -1;
	}
	return r;
}

static int dchan__spin_forced; /* DRAGON_DCHAN_SPIN_NS was given */

static uint64_t dchan__spin_default(void)
{
	const char *e = getenv("DRAGON_DCHAN_SPIN_NS");
	uint64_t v = 20000;

	if (e && *e) {
		char *end;
		unsigned long long x = strtoull(e, &end, 10);

		if (*end == '\0' && x < 1000000000ull) {
			v = x;
			__atomic_store_n(&dchan__spin_forced, 1,
					 __ATOMIC_RELAXED);
		}
	}
	return v;
}

/*
 * How long a blocked operation polls the ring itself before it registers
 * as a waiter.  A waiter that is not registered costs its peer no wake-up
 * system call, which is what keeps a continuous ping-pong under a
 * microsecond.  Spinning pays only while the peer runs on another core:
 * it is off on one core and while more threads are runnable than there are
 * cores (sampled every 50 ms).  DRAGON_DCHAN_SPIN_NS sets the length
 * and, when given, spins whatever the load (pinned, dedicated cores).
 */
uint64_t dchan__spin_ns(void)
{
	static uint64_t spin = UINT64_MAX, sampled, ncpu;
	static int crowded;
	uint64_t now = dchan__now_ns();

	if (__atomic_load_n(&spin, __ATOMIC_RELAXED) == UINT64_MAX) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);

		__atomic_store_n(&ncpu, c > 0 ? (uint64_t)c : 1,
				 __ATOMIC_RELAXED);
		__atomic_store_n(&spin, dchan__spin_default(),
				 __ATOMIC_RELAXED);
	}
	if (__atomic_load_n(&ncpu, __ATOMIC_RELAXED) < 2)
		return 0;
	if (__atomic_load_n(&dchan__spin_forced, __ATOMIC_RELAXED))
		return __atomic_load_n(&spin, __ATOMIC_RELAXED);
	if (now - __atomic_load_n(&sampled, __ATOMIC_RELAXED) > 50000000ull) {
		long r = dchan__runnable();

		__atomic_store_n(&sampled, now, __ATOMIC_RELAXED);
		__atomic_store_n(
			&crowded,
			r < 0 || (uint64_t)r > __atomic_load_n(
						       &ncpu, __ATOMIC_RELAXED),
			__ATOMIC_RELAXED);
	}
	if (__atomic_load_n(&crowded, __ATOMIC_RELAXED))
		return 0;
	return __atomic_load_n(&spin, __ATOMIC_RELAXED);
}
