/* SPDX-License-Identifier: MIT */
/*
 * env.c - what libdmem learns from the process environment: node id,
 * default pool size, the /dev/shm capacity, our own pid (segment names:
 * segname.c).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "dmem_private.h"

#define DEFAULT_SEG_SZ (4ull << 30)

uint64_t (*dmem__shm_avail_hook)(void);

/* A 64-bit mixing hash (FNV-1a core, murmur finaliser).  Not for security:
 * it detects accidental corruption of descriptors and stale headers. */
uint64_t dmem__hash64(const void *p, size_t n, uint64_t seed)
{
	const unsigned char *c = p;
	uint64_t h = 0xcbf29ce484222325ull ^ seed;

	for (size_t i = 0; i < n; i++)
		h = (h ^ c[i]) * 0x100000001b3ull;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return h;
}

/* getpid() is a real system call on current glibc; the allocator records
 * the owner on every allocation, so cache it and refresh it after fork. */
static pid_t cached_pid;

static void reset_pid(void)
{
	cached_pid = 0;
}

__attribute__((constructor)) static void env_init(void)
{
	pthread_atfork(NULL, NULL, reset_pid);
}

pid_t dmem__self_pid(void)
{
	pid_t p = __atomic_load_n(&cached_pid, __ATOMIC_RELAXED);

	if (__builtin_expect(p == 0, 0)) {
		p = getpid();
		__atomic_store_n(&cached_pid, p, __ATOMIC_RELAXED);
	}
	return p;
}

static int parse_u64(const char *s, int base, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || isspace((unsigned char)*s) || *s == '-' || *s == '+')
		return -1;
	errno = 0;
	v = strtoull(s, &end, base);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

/* Machine id and host name together: cloned container images share a
 * machine id, and host names alone repeat across clusters. */
static uint64_t host_id(void)
{
	char buf[320] = "";
	size_t n;
	FILE *f = fopen("/etc/machine-id", "r");

	if (f) {
		if (!fgets(buf, 128, f))
			buf[0] = '\0';
		fclose(f);
	}
	n = strlen(buf);
	if (gethostname(buf + n, sizeof(buf) - n - 1) != 0)
		buf[n] = '\0';
	buf[sizeof(buf) - 1] = '\0';
	return dmem__hash64(buf, strlen(buf), 0x6e6f6465) | 1; /* never 0 */
}

DMEM_EXPORT uint64_t dmem_node_id(void)
{
	static uint64_t host;
	const char *s = getenv("DRAGON_NODE_ID");
	uint64_t v;

	if (s) {
		int base =
			(s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) ? 16 : 10;
		if (parse_u64(base == 16 ? s + 2 : s, base, &v) || v == 0)
			return 0;
		return v;
	}
	if (!__atomic_load_n(&host, __ATOMIC_RELAXED))
		__atomic_store_n(&host, host_id(), __ATOMIC_RELAXED);
	return __atomic_load_n(&host, __ATOMIC_RELAXED);
}

/* DRAGON_DEFAULT_SEG_SZ: bytes, with an optional K/M/G/T suffix (powers of
 * 1024).  Anything else is an error rather than a silent default, because a
 * typo would otherwise surface much later as a full pool. */
int dmem__env_seg_size(uint64_t *size_out)
{
	const char *s = getenv("DRAGON_DEFAULT_SEG_SZ");
	char num[32];
	size_t n;
	unsigned shift = 0;
	uint64_t v;

	if (!s) {
		*size_out = DEFAULT_SEG_SZ;
		return 0;
	}
	n = strlen(s);
	if (n > 0 && n < sizeof(num)) {
		memcpy(num, s, n + 1);
		const char *sfx =
			strchr("KMGT", toupper((unsigned char)num[n - 1]));
		if (sfx && num[n - 1] != '\0') {
			shift = 10 * (unsigned)(sfx - "KMGT" + 1);
			num[n - 1] = '\0';
		}
		if (parse_u64(num, 10, &v) == 0 &&
		    v <= (DMEM_MAX_POOL >> shift) && v != 0) {
			*size_out = v << shift;
			return 0;
		}
	}
	return dmem__fail(
		-DMEM_E_ENV,
		"DRAGON_DEFAULT_SEG_SZ='%.40s' is not a pool size: give "
		"bytes as a positive integer, optionally with a K, M, G "
		"or T suffix (e.g. 4294967296 or 4G), at most %llu",
		s, (unsigned long long)DMEM_MAX_POOL);
}

static uint64_t shm_avail(void)
{
	struct statvfs sv;

	if (dmem__shm_avail_hook)
		return dmem__shm_avail_hook();
	if (statvfs("/dev/shm", &sv) != 0)
		return UINT64_MAX; /* cannot tell: let the kernel decide */
	return (uint64_t)sv.f_bavail * sv.f_frsize;
}

/*
 * Pools are sparse, so a 4 GiB pool costs nothing until it is touched, but
 * touching a page that tmpfs cannot back kills the process with SIGBUS.
 * Refusing a pool larger than what /dev/shm has free right now is the
 * sensible line: it catches the 64 MiB container /dev/shm at creation, and
 * it does not forbid several sparse pools that together promise more.
 */
int dmem__shm_check(const char *segname, uint64_t size)
{
	uint64_t avail = shm_avail();

	if (size <= avail)
		return 0;
	return dmem__fail(
		-DMEM_E_SHMSMALL,
		"pool %s needs %llu bytes but /dev/shm has only %llu "
		"bytes free: set DRAGON_DEFAULT_SEG_SZ (or the size "
		"argument) to at most %llu, or enlarge /dev/shm (docker "
		"run --shm-size=..., or mount -o remount,size=... "
		"/dev/shm)",
		segname, (unsigned long long)size, (unsigned long long)avail,
		(unsigned long long)avail);
}
