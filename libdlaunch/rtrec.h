/* The runtime record: what a runtime tells dragon-cleanup about itself.
 *
 * Every runtime keeps one small file in /dev/shm beside its pools,
 * dragon.<user>.<instance>.procs (the segment naming of libdmem, so that it
 * is found, and removed, with the instance's segments).  It says who owns
 * the runtime (the launcher or the process that embeds it: pid, start
 * time, pid namespace) and which processes the runtime started or adopted
 * (pid and start time each).  A process is the runtime's only if its
 * record says so, and a runtime is live only while the owner it names runs:
 * nothing a stranger does by accident (a command named dragon, a
 * DRAGON_INSTANCE in its environment, a reused pid) makes a process look
 * like one of them.
 *
 * One writer, the runtime's services (under their lock); any number of
 * readers, who trust nothing they read: a pid counts only when the start
 * time /proc shows for it is the one recorded.  The file appears whole
 * (written unnamed, then linked), so a reader never sees a half-written
 * header.
 *
 * This file is compiled into libdlaunch and into dragon-cleanup, and calls
 * nothing else of the project but the segment names of libdmem.
 */
#ifndef DRAGON_DLAUNCH_RTREC_H
#define DRAGON_DLAUNCH_RTREC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define DLAUNCH_REC_MAGIC   0x31435244u /* "DRC1" */
#define DLAUNCH_REC_VERSION 1
/* The record's <name> in dragon.<user>.<instance>.<name>. */
#define DLAUNCH_REC_NAME    "procs"

#define DLAUNCH_REC_F_LAUNCHER 1u /* owner is a launcher (dragon) */

typedef struct dlaunch__rec_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t flags; /* DLAUNCH_REC_F_* */
	int32_t owner;	/* pid of the process that runs the services */
	uint32_t reserved0;
	uint64_t owner_start; /* its start time, clock ticks since boot */
	uint64_t pidns;	      /* inode of its pid namespace */
	char instance[64];
	/* A spawn in progress since this time (clock ticks since boot); 0:
	 * none.  A process started then may not be in a slot yet. */
	uint64_t spawning;
	uint64_t reserved[3];
} dlaunch__rec_hdr_t;

/* Slot i is at offset sizeof(dlaunch__rec_hdr_t) + i * sizeof(slot). */
typedef struct dlaunch__rec_slot {
	int32_t pid; /* 0: free */
	uint32_t reserved;
	uint64_t start; /* start time of pid, clock ticks since boot */
} dlaunch__rec_slot_t;

/* ---- writing (the runtime) ---------------------------------------------- */

typedef struct dlaunch__rec dlaunch__rec_t;

/* Create the record of instance, this process its owner.  -EEXIST when
 * the instance has one already; other negative errno values otherwise. */
int dlaunch__rec_create(const char *instance, bool launcher,
			dlaunch__rec_t **rec_out);
/* Record process pid; returns its slot (for dlaunch__rec_clear) or a
 * negative errno. */
int dlaunch__rec_add(dlaunch__rec_t *rec, pid_t pid);
/* A spawn begins (on) or is over (!on): see dlaunch__rec_hdr_t.spawning.
 * rec NULL: nothing. */
void dlaunch__rec_spawning(dlaunch__rec_t *rec, bool on);
/* Process of slot ended. */
void dlaunch__rec_clear(dlaunch__rec_t *rec, int slot);
/* Remove the record and free rec (NULL: nothing). */
void dlaunch__rec_remove(dlaunch__rec_t *rec);

/* ---- reading (dragon-cleanup) ------------------------------------------- */

/* Read the record at path: header into *hdr, the used slots into a
 * malloc'd *slots_out (*n_out of them).  -ENOENT when there is none,
 * -EBADMSG when the file is not a record of this layout version. */
int dlaunch__rec_read(const char *path, dlaunch__rec_hdr_t *hdr,
		      dlaunch__rec_slot_t **slots_out, size_t *n_out);

/* The start time of pid in clock ticks since boot (/proc/PID/stat field
 * 22), or 0 when it cannot be read. */
uint64_t dlaunch__proc_start(pid_t pid);
/* Now, in the unit of start times: clock ticks since boot. */
uint64_t dlaunch__ticks_now(void);
/* The inode of this process's pid namespace, or 0. */
uint64_t dlaunch__pidns(void);

#endif
