/* How dragon starts the backends of a multi-node run (not installed).
 *
 * One launcher per workload manager, each a table of the few things that
 * differ between them, as a transport's backends are:
 *
 *   dragon_wlm_slurm.c   one `srun --overlap` step, one task per node
 *   dragon_wlm_pbs.c     PALS's `mpiexec`, one rank per node of PBS_NODEFILE
 *   dragon_wlm_ssh.c     one `ssh HOST dragon-backend` per host of
 *                        --hostfile or --hostlist
 *
 * dragon_multi.c picks one (-w, else detection), asks it for the nodes,
 * starts it, reads the stderr of the processes it started (attributing a
 * failure to a node), and stops them.  dragon_wlm.c holds what the
 * launchers share: spawning a process with pipes (or one serving every
 * node), the backend's path, the frontend's address, lists of hosts, and
 * PALS's mpiexec step (which dragon-cleanup's cleanup_hosts.c runs too).
 * Files call downward: dragon_multi.c -> dragon_wlm_*.c -> dragon_wlm.c.
 */
#ifndef DRAGON_WLM_H
#define DRAGON_WLM_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include "launcher.h"

/* A process a launcher started (srun, mpiexec, or one ssh per node). */
struct wlm_proc {
	pid_t pid;  /* leader of a process group of its own */
	int node;   /* the node it starts, or -1: every node */
	int err_fd; /* its stderr (non-blocking), -1 once closed */
	bool done;  /* it ended; status is waitpid's */
	int status;
	char line[512]; /* the stderr line being read */
	size_t linelen;
	char last[512]; /* its last complete stderr line */
};

/* A run's backends: filled by dragon_multi.c, started by a launcher. */
struct wlm_job {
	unsigned n;	      /* nodes */
	char **hosts;	      /* their names by index (NULL: the WLM's order) */
	const char *prog;     /* dragon-backend */
	char **env;	      /* DRAGON_BE_* for every backend, NULL-ended
				 with room for one more after the NULL (a
				 launcher may add the secret there for a
				 moment); the secret is not among them */
	const char *secret;   /* how it reaches the nodes is the launcher's */
	const char *frontend; /* address the backends connect to ("": the
				 backend finds it) */
	double timeout;	      /* -t */
	/* Set by start: */
	struct wlm_proc *procs;
	unsigned nprocs;
	int in_fd; /* the stdin of node 0's backend, or -1 */
};

struct wlm {
	const char *name; /* -w NAME: "slurm", "pbs", "ssh" */
	const char *tool; /* what it runs, for messages: "srun", ... */
	/* Does this run's environment (or options) say this WLM? */
	bool (*detect)(const struct dragon_opts *o);
	/* The nodes the run may use: count, and names by index where the
	 * launcher knows them (*names NULL otherwise; free with
	 * wlm_names_free).  -1 after printing why there are none. */
	int (*nodes)(const struct dragon_opts *o, char ***names,
		     unsigned *count);
	/* Start the backends of j: 0, or -1 after printing why. */
	int (*start)(struct wlm_job *j);
	/* A stderr line of a process serving every node: the index of the
	 * node it says could not start its backend, or -1. */
	int (*failed_node)(const char *line);
	/* What to do when a backend cannot start. */
	const char *hint;
};

extern const struct wlm dragon_wlm_slurm, dragon_wlm_pbs, dragon_wlm_ssh;

/* Start file (searched in PATH) with argv and envp in a process group of
 * its own, its stderr to a pipe p->err_fd and, with in_fd, its stdin from
 * a pipe whose write end goes to *in_fd (else it keeps dragon's stdin
 * closed: /dev/null).  0 or a positive errno (posix_spawnp's). */
int wlm_spawn(struct wlm_proc *p, const char *file, char *const *argv,
	      char *const *envp, int *in_fd);
/* dragon's environment without DRAGON_BE_*, then add; free() the array
 * only (its strings are environ's and add's). */
char **wlm_env(char *const *add);
/* Append the words of environment variable var to argv at *k (at most
 * max words in all); returns the copy the words point into (free it). */
char *wlm_words(const char *var, char **argv, int *k, int max);
/* PALS's step of one rank on each of n hosts, as dragon's backends and
 * dragon-cleanup's tasks run it. */
struct wlm_mpiexec {
	char np[32];
	char *hosts; /* "h1,h2,..." */
	char *opts;  /* the words of DRAGON_MPIEXEC_OPTS */
};
/* Append "mpiexec -n N --ppn 1 --hosts H1,...,HN" and the words of
 * DRAGON_MPIEXEC_OPTS to argv at *k (at most max words in all; the
 * command's own words after them are the caller's).  0, or -1 without
 * memory; m holds what the words point into (wlm_mpiexec_free). */
int wlm_mpiexec_argv(struct wlm_mpiexec *m, char *const *hosts, unsigned n,
		     char **argv, int *k, int max);
void wlm_mpiexec_free(struct wlm_mpiexec *m);
/* Start j's backends as one process serving every node (srun, mpiexec):
 * file with argv, the secret in its environment beside j->env.  0, or -1
 * after printing that file could not run, with fix: what to check. */
int wlm_start_single(struct wlm_job *j, const char *file, char *const *argv,
		     const char *fix);
/* dragon-backend's path: $DRAGON_BACKEND_PROGRAM, else beside dragon. */
int wlm_backend_program(char *out, size_t len);
/* The address the backends reach this host at: $DRAGON_FRONTEND_ADDR,
 * else the address this host routes to the first host of hosts from
 * (skipping loopback), else (with hosts) the first address of the
 * interface --network-prefix names.  Empty when none of those gives one
 * (without hosts, under Slurm: the backends use the step's launch
 * address). */
void wlm_frontend_addr(const struct dragon_opts *o, char **hosts, unsigned n,
		       char *out, size_t len);
/* Read a list of hosts: one per line (first word; blank lines and
 * #-comments skipped), or, with sep, separated by sep; repeats dropped,
 * order kept.  The array is NULL-ended; *count is its length. */
char **wlm_hosts_parse(const char *text, const char *sep, unsigned *count);
char *wlm_read_file(const char *path, int *err);
void wlm_names_free(char **names, unsigned n);
/* Free names[keep] to names[n - 1] (the nodes a run does not use) and
 * leave NULL in their place. */
void wlm_names_trim(char **names, unsigned n, unsigned keep);

#endif
