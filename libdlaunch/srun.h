/* The srun step that runs one task on each node of a Slurm allocation
 * (not installed): dragon's backends (dragon_wlm_slurm.c) and
 * dragon-cleanup's tasks (cleanup_slurm.c), which links no libdlaunch. */
#ifndef DRAGON_SRUN_H
#define DRAGON_SRUN_H

#include <stdio.h>

/* Append to argv at *k "srun --overlap --nodes=N --ntasks=N
 * --ntasks-per-node=1 --input=INPUT --job-name=NAME" for n nodes; nodes
 * and tasks hold the counts' words. */
static inline void srun_step(char **argv, int *k, char nodes[32],
			     char tasks[32], long n, const char *input,
			     const char *name)
{
	snprintf(nodes, 32, "--nodes=%ld", n);
	snprintf(tasks, 32, "--ntasks=%ld", n);
	argv[(*k)++] = "srun";
	argv[(*k)++] = "--overlap";
	argv[(*k)++] = nodes;
	argv[(*k)++] = tasks;
	argv[(*k)++] = "--ntasks-per-node=1";
	argv[(*k)++] = (char *)input;
	argv[(*k)++] = (char *)name;
}

#endif
