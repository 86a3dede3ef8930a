/* SPDX-License-Identifier: MIT */
/*
 * commit.c - back pool memory with /dev/shm pages before handing it out.
 *
 * A pool is a sparse tmpfs file: ftruncate promises its size, but tmpfs
 * finds a page only when one is first touched, and a page it cannot find
 * kills the toucher with SIGBUS.  Several programs, or another tenant
 * writing to /dev/shm after start-up, easily promise more than /dev/shm
 * holds.  So the allocator commits (fallocate) the region an allocation
 * reaches before it hands the allocation out.  Heap blocks are carved
 * from the low end first, so the committed region is a prefix of the
 * segment whose end, the high-water mark, only grows: an allocation below
 * it costs one comparison, and /dev/shm running out becomes an ordinary
 * full-pool error instead of a signal.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "dmem_private.h"

/* Committed space grows in steps of this much (or to the segment's end). */
#define COMMIT_STEP (2ull << 20)
#define PAGE	    4096ull

static uint64_t up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* The process may have closed every descriptor it holds (a child that
 * finishes does): make sure p->fd is still this segment, or reopen it. */
static int segment_fd(struct dmem_pool *p)
{
	struct stat st;
	int fd;

	if (fstat(p->fd, &st) == 0 && (uint64_t)st.st_ino == p->ino)
		return 0;
	fd = shm_open(p->desc.segname, O_RDWR, 0);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) != 0 || (uint64_t)st.st_ino != p->ino) {
		close(fd);
		return -ESTALE;
	}
	p->fd = fd;
	return 0;
}

static int do_fallocate(struct dmem_pool *p, uint64_t from, uint64_t to)
{
	int rc;

	if (to <= from)
		return 0;
	if ((rc = segment_fd(p)))
		return rc;
	if (fallocate(p->fd, 0, (off_t)from, (off_t)(to - from)) == 0)
		return 0;
	return -errno;
}

static int shm_full(struct dmem_pool *p, uint64_t want)
{
	struct statvfs sv;
	unsigned long long avail = 0;

	if (statvfs("/dev/shm", &sv) == 0)
		avail = (unsigned long long)sv.f_bavail * sv.f_frsize;
	return dmem__fail(-ENOSPC,
			  "pool %s cannot back %llu more bytes: /dev/shm has "
			  "only %llu bytes free (other segments fill it). "
			  "Free space there (end other programs, remove "
			  "leftovers with dragon-cleanup), give this program "
			  "a smaller pool (DRAGON_DEFAULT_SEG_SZ), or enlarge "
			  "/dev/shm (docker run --shm-size=..., or mount -o "
			  "remount,size=... /dev/shm)",
			  p->desc.segname, (unsigned long long)want, avail);
}

/*
 * Commit [committed, end) and a step more when /dev/shm has it.  Called
 * under the pool lock, so one process at a time moves the mark.  A process
 * killed part-way leaves the mark where it was; pages it committed stay
 * committed and the next caller commits them again at no cost.
 */
int dmem__commit_grow(struct dmem_pool *p, uint64_t end)
{
	uint64_t have = p->sh->committed, exact, step;
	int rc;

	if (end > p->size)
		end = p->size;
	if (end <= have)
		return 0;
	exact = up(end, PAGE);
	step = up(end, COMMIT_STEP);
	if (step > p->size)
		step = p->size;
	rc = do_fallocate(p, have, step);
	if (rc == -ENOSPC && exact < step) {
		step = exact;
		rc = do_fallocate(p, have, step);
	}
	if (rc == -EOPNOTSUPP || rc == -ENODEV) {
		/* Not tmpfs-like: nothing to commit, nothing to fear. */
		step = p->size;
		rc = 0;
	}
	if (rc == -ENOSPC || rc == -ENOMEM)
		return shm_full(p, exact - have);
	if (rc)
		return dmem__fail(rc, "pool %s: cannot commit memory: %s",
				  p->desc.segname, strerror(-rc));
	__atomic_store_n(&p->sh->committed, step, __ATOMIC_RELEASE);
	return 0;
}

/* At creation: the header and the first step of the heap, and the last
 * page, where the heap's end sentinel lives. */
int dmem__commit_init(struct dmem_pool *p, uint64_t heap_start)
{
	uint64_t first = up(heap_start + COMMIT_STEP, PAGE);
	int rc;

	if (first > p->size)
		first = p->size;
	rc = do_fallocate(p, p->size - PAGE, p->size);
	if (rc == 0)
		rc = do_fallocate(p, 0, first);
	if (rc == -EOPNOTSUPP || rc == -ENODEV) {
		p->sh->committed = p->size;
		return 0;
	}
	if (rc == -ENOSPC || rc == -ENOMEM)
		return shm_full(p, first + PAGE);
	if (rc)
		return dmem__fail(rc, "pool %s: cannot commit memory: %s",
				  p->desc.segname, strerror(-rc));
	p->sh->committed = first;
	return 0;
}
