/* Small helpers: who we are, whether a peer lives, time, hashing. */
#include "config.h"
#include "dchan_private.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

static uint32_t self_pid;
static uint32_t own_tag; /* 0 until computed in this process */
static pthread_once_t pid_once = PTHREAD_ONCE_INIT;

static void pid_reset(void)
{
	__atomic_store_n(&self_pid, (uint32_t)getpid(), __ATOMIC_RELAXED);
	__atomic_store_n(&own_tag, 0, __ATOMIC_RELAXED);
}

static void pid_init(void)
{
	pid_reset();
	pthread_atfork(NULL, NULL, pid_reset);
}

/* This process's pid.  getpid() is a system call in current glibc; the hot
 * path reads a cache that a fork handler refreshes. */
uint32_t dchan__self(void)
{
	pthread_once(&pid_once, pid_init);
	return __atomic_load_n(&self_pid, __ATOMIC_RELAXED);
}

/* What /proc/<pid>/stat says of a process. */
struct dchan__proc {
	char state;	/* R, S, D, Z (exited, not reaped), ... */
	long threads;	/* threads still counted (a zombie: 1) */
	uint64_t start; /* start time, clock ticks after boot */
};

/*
 * Read /proc/<pid>/stat.  Returns 0, -ENOENT when there is no such
 * process, or another negative errno when /proc cannot tell.
 */
static int proc_stat(uint32_t pid, struct dchan__proc *pr)
{
	char path[40], buf[1024], *p, *tok[20];
	ssize_t n;
	int fd;

	snprintf(path, sizeof path, "/proc/%u/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ESRCH ? -ENOENT : -errno;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return n < 0 && errno == ESRCH ? -ENOENT : -EIO;
	buf[n] = '\0';
	/* "pid (comm) state ppid ...": comm may hold anything, ')' too;
	 * after it come fields 3 (state), ... 20 (threads), 21, 22 (start) */
	p = strrchr(buf, ')');
	for (int i = 0; i < 20; i++) {
		p = p ? strchr(p, ' ') : NULL;
		if (!p)
			return -EIO;
		tok[i] = ++p;
	}
	pr->state = tok[0][0];
	pr->threads = strtol(tok[17], NULL, 10);
	pr->start = strtoull(tok[19], NULL, 10);
	return 0;
}

/* A start time as the 8 bits of a tag: 1..255 (0: not known). */
static uint32_t gen_bits(uint64_t start)
{
	return (uint32_t)(start % 255 + 1) << DCHAN__TAG_GEN_SHIFT;
}

/*
 * The owner tag this process writes into the slots it claims: its pid and
 * its start time modulo 255.  A pid the kernel hands out again belongs to
 * a process started later, so a tag whose start time does not match the
 * living process of that pid names a dead owner (two processes of one pid
 * started a multiple of 255 ticks apart still look alike).  Without /proc
 * the start time is left out, and only the pid is checked.
 */
uint32_t dchan__self_tag(void)
{
	uint32_t tag = __atomic_load_n(&own_tag, __ATOMIC_RELAXED);
	struct dchan__proc pr;

	if (tag)
		return tag;
	tag = dchan__self() & DCHAN__TAG_PID_MASK;
	if (proc_stat(tag, &pr) == 0)
		tag |= gen_bits(pr.start);
	__atomic_store_n(&own_tag, tag, __ATOMIC_RELAXED);
	return tag;
}

/*
 * True only when the process that wrote an owner tag certainly no longer
 * runs: no process has its pid; the process of that pid has exited and
 * waits to be reaped (a zombie is not reaped while its parent is blocked
 * behind the zombie's slot; a main thread that left with pthread_exit
 * looks like one while other threads run, and is alive); or it is
 * another process that reuses the pid.  A pid that /proc does not show
 * is asked about with kill(pid, 0).
 */
bool dchan__owner_dead(uint32_t tag)
{
	uint32_t pid = tag & DCHAN__TAG_PID_MASK;
	struct dchan__proc pr;

	if (pid == 0)
		return false;
	if ((tag & DCHAN__TAG_OWNER) == dchan__self_tag())
		return false;
	if (proc_stat(pid, &pr) < 0) /* gone, or hidden (hidepid) */
		return kill((pid_t)pid, 0) == -1 && errno == ESRCH;
	if (pr.state == 'X' || pr.state == 'x' ||
	    (pr.state == 'Z' && pr.threads <= 1))
		return true;
	return (tag & DCHAN__TAG_GEN_MASK) &&
	       (tag & DCHAN__TAG_GEN_MASK) != gen_bits(pr.start);
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
static long runnable_threads(void)
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

static int spin_forced; /* DRAGON_DCHAN_SPIN_NS was given */

static uint64_t spin_default(void)
{
	const char *e = getenv("DRAGON_DCHAN_SPIN_NS");
	uint64_t v = 20000;

	if (e && *e) {
		char *end;
		unsigned long long x = strtoull(e, &end, 10);

		if (*end == '\0' && x < 1000000000ull) {
			v = x;
			__atomic_store_n(&spin_forced, 1, __ATOMIC_RELAXED);
		}
	}
	return v;
}

/*
 * CPUs that can run threads now.  Not the affinity mask: a process pinned
 * to one core (taskset, srun --cpu-bind, an MPI binding) usually has its
 * peer pinned to another, and polling is what a pinned ping-pong needs.
 * A peer pinned to the same core cannot answer while this one polls, so
 * every poll there runs out; the adaptive budget (dchan_wait.c) shrinks
 * to a 64th within a few waits, which costs such a pair well under a
 * microsecond per wait.
 */
static uint64_t online_cpus(void)
{
	long c = sysconf(_SC_NPROCESSORS_ONLN);

	return c > 0 ? (uint64_t)c : 1;
}

/*
 * How often the load is sampled.  One sample is one instant: a process
 * just started, its parent and the zygote forking the next spare are all
 * runnable at once for a few milliseconds, and any third thread on a
 * machine of two CPUs makes a sample say "crowded".  Kept for 50 ms, such
 * a sample made every wait of a new process sleep through its first
 * thousand round trips (15-25 us each instead of 2-4).  Spinning wrongly
 * costs a little CPU, which the adaptive budget (dchan_wait.c) bounds;
 * sleeping wrongly costs every message a wake-up.  So a "crowded" sample
 * is re-checked after a millisecond (at most a thousand reads of
 * /proc/loadavg a second, a few microseconds each, by a process that is
 * sleeping on every wait anyway), an uncrowded one after 50 ms.
 */
#define SPIN_SAMPLE_NS	50000000ull
#define SPIN_RECHECK_NS 1000000ull

/*
 * How long a blocked operation polls the ring itself before it registers
 * as a waiter.  A waiter that is not registered costs its peer no wake-up
 * system call, which is what keeps a continuous ping-pong under a
 * microsecond.  Spinning pays only while the peer runs on another core:
 * it is off on a machine with one CPU online, and while more threads are
 * runnable than the machine has CPUs (sampled as above).
 * DRAGON_DCHAN_SPIN_NS sets the length and, when given, spins whatever
 * the load (pinned, dedicated cores).
 */
uint64_t dchan__spin_ns(void)
{
	return dchan__spin_ns_at(dchan__now_ns(), runnable_threads);
}

/* dchan__spin_ns at time now, with the load read by runnable (white-box
 * tests give their own). */
uint64_t dchan__spin_ns_at(uint64_t now, long (*runnable)(void))
{
	static uint64_t spin = UINT64_MAX, sampled;
	static int crowded = 1;
	int was_crowded;

	if (__atomic_load_n(&spin, __ATOMIC_RELAXED) == UINT64_MAX)
		__atomic_store_n(&spin, spin_default(), __ATOMIC_RELAXED);
	if (__atomic_load_n(&spin_forced, __ATOMIC_RELAXED))
		return __atomic_load_n(&spin, __ATOMIC_RELAXED);
	was_crowded = __atomic_load_n(&crowded, __ATOMIC_RELAXED);
	if (now - __atomic_load_n(&sampled, __ATOMIC_RELAXED) >
	    (was_crowded ? SPIN_RECHECK_NS : SPIN_SAMPLE_NS)) {
		uint64_t ncpu = online_cpus();
		long r = runnable();

		__atomic_store_n(&sampled, now, __ATOMIC_RELAXED);
		__atomic_store_n(&crowded,
				 ncpu < 2 || r < 0 || (uint64_t)r > ncpu,
				 __ATOMIC_RELAXED);
	}
	if (__atomic_load_n(&crowded, __ATOMIC_RELAXED))
		return 0;
	return __atomic_load_n(&spin, __ATOMIC_RELAXED);
}
