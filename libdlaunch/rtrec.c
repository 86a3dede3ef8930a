/* The runtime record (rtrec.h): written by the runtime's services, read
 * by dragon-cleanup.
 *
 * The writer keeps the file open and writes each slot with one pwrite;
 * slots of ended processes are reused.  The first slots are allocated when
 * the file is made, so that a crowded /dev/shm seldom refuses one later
 * (a process whose slot cannot be written is then only not known to
 * dragon-cleanup; the runtime itself does not depend on the record).
 */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <dragon/dmem.h>
#include "rtrec.h"

#define SHM_DIR	       "/dev/shm"
/* Slots allocated with the file (16 bytes each). */
#define PREALLOC_SLOTS 1024

struct dlaunch__rec {
	int fd;
	char path[sizeof SHM_DIR + DMEM_SEGNAME_MAX];
	uint8_t *used; /* one byte per slot */
	size_t cap;
	size_t hint; /* no free slot below it */
};

uint64_t dlaunch__proc_start(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long start = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* After the command (which may hold anything, ')' too): state
	 * (field 3) ... starttime (field 22). */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 2,
			 "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
			 "%*u %*u %*d %*d %*d %*d %*d %*d %llu",
			 &start) != 1)
		return 0;
	return start;
}

uint64_t dlaunch__ticks_now(void)
{
	uint64_t hz = (uint64_t)sysconf(_SC_CLK_TCK);
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * hz +
	       (uint64_t)ts.tv_nsec / (1000000000ull / hz);
}

uint64_t dlaunch__pidns(void)
{
	struct stat st;

	return stat("/proc/self/ns/pid", &st) == 0 ? (uint64_t)st.st_ino : 0;
}

static off_t slot_off(size_t i)
{
	return (off_t)(sizeof(dlaunch__rec_hdr_t) +
		       i * sizeof(dlaunch__rec_slot_t));
}

int dlaunch__rec_create(const char *instance, bool launcher,
			dlaunch__rec_t **rec_out)
{
	dlaunch__rec_t *rec = calloc(1, sizeof *rec);
	dlaunch__rec_hdr_t h = {.magic = DLAUNCH_REC_MAGIC,
				.version = DLAUNCH_REC_VERSION};
	char seg[DMEM_SEGNAME_MAX], fdpath[64];
	int rc;

	if (!rec)
		return -ENOMEM;
	rec->fd = -1;
	rc = dmem_segname_format(NULL, instance, DLAUNCH_REC_NAME, seg,
				 sizeof seg);
	if (rc < 0)
		goto fail;
	snprintf(rec->path, sizeof rec->path, SHM_DIR "/%s", seg);
	rec->cap = PREALLOC_SLOTS;
	rec->used = calloc(rec->cap, 1);
	if (!rec->used) {
		rc = -ENOMEM;
		goto fail;
	}
	h.flags = launcher ? DLAUNCH_REC_F_LAUNCHER : 0;
	h.owner = (int32_t)getpid();
	h.owner_start = dlaunch__proc_start(getpid());
	h.pidns = dlaunch__pidns();
	snprintf(h.instance, sizeof h.instance, "%s", instance);
	/* Written unnamed, then given its name: a reader sees the whole
	 * header or no file, and a record of the instance that exists
	 * already is not replaced. */
	rec->fd = open(SHM_DIR, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (rec->fd < 0) {
		rc = -errno;
		goto fail;
	}
	if (pwrite(rec->fd, &h, sizeof h, 0) != (ssize_t)sizeof h) {
		rc = -ENOSPC;
		goto fail;
	}
	(void)posix_fallocate(rec->fd, slot_off(0),
			      slot_off(PREALLOC_SLOTS) - slot_off(0));
	snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", rec->fd);
	if (linkat(AT_FDCWD, fdpath, AT_FDCWD, rec->path, AT_SYMLINK_FOLLOW) <
	    0) {
		rc = -errno;
		goto fail;
	}
	*rec_out = rec;
	return 0;
fail:
	if (rec->fd >= 0)
		close(rec->fd);
	free(rec->used);
	free(rec);
	return rc;
}

int dlaunch__rec_add(dlaunch__rec_t *rec, pid_t pid)
{
	dlaunch__rec_slot_t s = {.pid = (int32_t)pid};
	size_t i = rec->hint;

	while (i < rec->cap && rec->used[i])
		i++;
	if (i == rec->cap) {
		uint8_t *u = realloc(rec->used, rec->cap * 2);
		if (!u)
			return -ENOMEM;
		memset(u + rec->cap, 0, rec->cap);
		rec->used = u;
		rec->cap *= 2;
	}
	s.start = dlaunch__proc_start(pid);
	if (pwrite(rec->fd, &s, sizeof s, slot_off(i)) != (ssize_t)sizeof s)
		return -ENOSPC;
	rec->used[i] = 1;
	rec->hint = i + 1;
	return (int)i;
}

void dlaunch__rec_spawning(dlaunch__rec_t *rec, bool on)
{
	uint64_t t = on ? dlaunch__ticks_now() : 0;

	if (rec)
		(void)!pwrite(rec->fd, &t, sizeof t,
			      offsetof(dlaunch__rec_hdr_t, spawning));
}

void dlaunch__rec_clear(dlaunch__rec_t *rec, int slot)
{
	static const dlaunch__rec_slot_t none;

	if (!rec || slot < 0 || (size_t)slot >= rec->cap || !rec->used[slot])
		return;
	(void)!pwrite(rec->fd, &none, sizeof none, slot_off((size_t)slot));
	rec->used[slot] = 0;
	if ((size_t)slot < rec->hint)
		rec->hint = (size_t)slot;
}

void dlaunch__rec_remove(dlaunch__rec_t *rec)
{
	if (!rec)
		return;
	unlink(rec->path);
	close(rec->fd);
	free(rec->used);
	free(rec);
}

int dlaunch__rec_read(const char *path, dlaunch__rec_hdr_t *hdr,
		      dlaunch__rec_slot_t **slots_out, size_t *n_out)
{
	dlaunch__rec_slot_t *slots = NULL, s;
	size_t n = 0, cap = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	int rc = 0;

	if (fd < 0)
		return -errno;
	if (pread(fd, hdr, sizeof *hdr, 0) != (ssize_t)sizeof *hdr ||
	    hdr->magic != DLAUNCH_REC_MAGIC ||
	    hdr->version != DLAUNCH_REC_VERSION) {
		close(fd);
		return -EBADMSG;
	}
	hdr->instance[sizeof hdr->instance - 1] = '\0';
	for (size_t i = 0;
	     pread(fd, &s, sizeof s, slot_off(i)) == (ssize_t)sizeof s; i++) {
		if (s.pid <= 0)
			continue;
		if (n == cap) {
			size_t c = cap ? cap * 2 : 64;
			dlaunch__rec_slot_t *t = realloc(slots, c * sizeof *t);
			if (!t) {
				rc = -ENOMEM;
				break;
			}
			slots = t;
			cap = c;
		}
		slots[n++] = s;
	}
	close(fd);
	if (rc) {
		free(slots);
		return rc;
	}
	*slots_out = slots;
	*n_out = n;
	return 0;
}
