/* Private to dragon-cleanup: the options, and what its two halves share.
 *
 *   dragon_cleanup.c  options; the cleanup (which runtimes are live,
 *                     ending runtimes, removing segments)
 *   cleanup_watch.c   the watchdog of one runtime (--when-gone)
 *   cleanup_slurm.c   inside an allocation: run it on every node
 *   cleanup_hosts.c   in a PBS job, or over --hostfile/--hostlist hosts:
 *                     run it on every node (mpiexec, ssh)
 *   rtrec.c           the runtime record (shared with libdlaunch)
 */
#ifndef DRAGON_CLEANUP_H
#define DRAGON_CLEANUP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>
#include "rtrec.h"

#define SHM_DIR "/dev/shm"

struct opts {
	int dry_run;
	int force;	      /* end live runtimes too */
	const char *instance; /* only this runtime (ended even if live) */
	pid_t when_gone;      /* watch this owner; 0: clean up now */
	double grace; /* seconds between SIGTERM and SIGKILL (watchdog) */
	/* When the watchdog saw its owner gone, in clock ticks since boot
	 * (the unit of a process's start time); 0: not known. */
	unsigned long long gone_at;
	const char *log;	   /* the owner's log, removed if left empty */
	struct timespec gone_wall; /* when the owner was seen gone */
	int this_node;	      /* only this node, even inside an allocation */
	int label;	      /* prefix each line with this node's name */
	const char *hostfile; /* every host of FILE, over ssh */
	const char *hostlist; /* every host of "a,b,c", over ssh */
};

/* Inside a Slurm allocation (cleanup_slurm.c). */
bool cleanup_in_allocation(void);
/* Run dragon-cleanup --this-node on every node of the allocation (one
 * srun --overlap step); returns the exit status. */
int cleanup_allocation(const struct opts *o);

/* Inside a PBS job (cleanup_hosts.c). */
bool cleanup_in_pbs_job(void);
/* Run dragon-cleanup --this-node on every node of the PBS job (one PALS
 * mpiexec, one rank per node); returns the exit status. */
int cleanup_pbs(const struct opts *o);
/* Run dragon-cleanup --this-node on every host of o->hostfile or
 * o->hostlist (one ssh each, at once); returns the exit status. */
int cleanup_hosts(const struct opts *o);

/* The value of DRAGON_INSTANCE in the environment of pid, or "". */
void cleanup_proc_instance(pid_t pid, char *out, size_t len);
/* Remove this user's segments of instance; returns how many were (or,
 * dry run, would be) removed, -1 if one could not be. */
int cleanup_remove_segments(const struct opts *o, const char *instance);
int cleanup_pidfd_open(pid_t pid);
int cleanup_pidfd_signal(int fd, int signo);
/* CLOCK_MONOTONIC in seconds. */
double cleanup_now(void);

/* A process of this user, as a scan of /proc saw it. */
struct pinfo {
	pid_t pid, ppid;
	uint64_t start; /* clock ticks since boot */
	bool mark;	/* one of the runtime's */
};

/* Every process of this user but this one (malloc'd, *n_out of them). */
struct pinfo *cleanup_snapshot(size_t *n_out);

/* A runtime's record as last read. */
struct rtrec {
	bool has; /* read and valid */
	dlaunch__rec_hdr_t hdr;
	dlaunch__rec_slot_t *slots;
	size_t nslots;
};

/* (Re)read the record of instance into rec; false (rec unchanged) when
 * there is none that can be read. */
bool cleanup_rec_load(const char *instance, struct rtrec *rec);

/* Mark the processes of runtime instance in ps: those in its record (with
 * the start times recorded), its owner too if with_owner, a process
 * started during a spawn the record says was under way, and the
 * descendants of marked processes that carry the instance in their
 * environment.  Without a record (legacy), every process whose environment
 * names the instance.  before != 0: only processes started at or before
 * it.  Marks already set stay (and count as roots).  Returns how many are
 * marked. */
size_t cleanup_mark(const char *instance, const struct rtrec *rec,
		    bool with_owner, uint64_t before, struct pinfo *ps,
		    size_t n);

/* --when-gone: returns the exit status once the watch is set up. */
int cleanup_watch_owner(struct opts *o);

#endif
