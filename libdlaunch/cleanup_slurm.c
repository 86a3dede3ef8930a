/* dragon-cleanup inside a Slurm allocation: clean every node of it.
 *
 * A runtime over several nodes leaves its processes and segments on each
 * node, and each node's /dev/shm is its own: a cleanup of the node where
 * it is typed would miss the rest.  Inside an allocation (SLURM_JOB_ID
 * set) dragon-cleanup therefore runs itself once on every node, through
 * one `srun --overlap` step with one task per node and the srun options
 * of DRAGON_SRUN_OPTS, the way dragon starts its backends; each task runs
 * with --this-node, which cleans the node it runs on by the same rules as
 * outside an allocation (this user's runtimes only, live ones left alone
 * unless asked), and labels its lines with the node's name.
 */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "srun.h"

extern char **environ;

bool cleanup_in_allocation(void)
{
	const char *job = getenv("SLURM_JOB_ID");

	return job && *job;
}

/* Nodes of the allocation, from what salloc/sbatch (or srun) set. */
static long allocation_nodes(void)
{
	const char *nn = getenv("SLURM_JOB_NUM_NODES");
	long n;

	if (!nn || !*nn)
		nn = getenv("SLURM_NNODES");
	n = nn ? strtol(nn, NULL, 10) : 0;
	return n > 0 ? n : 1;
}

int cleanup_allocation(const struct opts *o)
{
	char self[4096], nodes[32], tasks[32], *opts = NULL;
	char *argv[96];
	long n = allocation_nodes();
	int k = 0, rc, st;
	ssize_t len;
	pid_t pid;

	len = readlink("/proc/self/exe", self, sizeof self - 1);
	if (len <= 0) {
		fprintf(stderr,
			"dragon-cleanup: cannot find this program "
			"(/proc/self/exe): %s; run dragon-cleanup "
			"--this-node on each node instead\n",
			strerror(errno));
		return 1;
	}
	self[len] = '\0';
	srun_step(argv, &k, nodes, tasks, n, "--input=none",
		  "--job-name=dragon-cleanup");
	if (getenv("DRAGON_SRUN_OPTS")) {
		opts = strdup(getenv("DRAGON_SRUN_OPTS"));
		for (char *sv, *t = opts ? strtok_r(opts, " \t\n", &sv) : NULL;
		     t && k < 80; t = strtok_r(NULL, " \t\n", &sv))
			argv[k++] = t;
	}
	argv[k++] = self;
	argv[k++] = "--this-node";
	argv[k++] = "--label";
	if (o->dry_run)
		argv[k++] = "--dry-run";
	if (o->force)
		argv[k++] = "--force";
	if (o->instance) {
		argv[k++] = "--instance";
		argv[k++] = (char *)o->instance;
	}
	argv[k] = NULL;
	fflush(stdout);
	rc = posix_spawnp(&pid, "srun", NULL, NULL, argv, environ);
	free(opts);
	if (rc) {
		fprintf(stderr,
			"dragon-cleanup: inside Slurm job %s but cannot run "
			"srun: %s; put Slurm's srun on PATH, or run "
			"dragon-cleanup --this-node on each node\n",
			getenv("SLURM_JOB_ID"), strerror(rc));
		return 1;
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return 1;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 1)
		return 1; /* a node's cleanup left something; it said what */
	fprintf(stderr,
		"dragon-cleanup: the srun step over the %ld node%s of job %s "
		"failed (%s %d): nodes it did not reach are not cleaned; "
		"DRAGON_SRUN_OPTS holds what your site's srun needs, or run "
		"dragon-cleanup --this-node on each node\n",
		n, n > 1 ? "s" : "", getenv("SLURM_JOB_ID"),
		WIFEXITED(st) ? "exit code" : "signal",
		WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	return 1;
}
