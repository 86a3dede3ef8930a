/* Backends started by Slurm: one `srun --overlap` step, one task per node
 * and no --nodelist, so that Slurm picks the nodes of the allocation (the
 * first -N of them).  The backend learns its index from SLURM_NODEID and
 * the frontend's address from SLURM_LAUNCH_NODE_IPADDR; the secret goes
 * with srun's environment.  srun names a task that failed on its stderr
 * ("srun: error: node2: task 1: Exited with exit code 42"). */
#define _GNU_SOURCE
#include "config.h"
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "dragon_wlm.h"
#include "srun.h"

static bool detect(const struct dragon_opts *o)
{
	const char *job = getenv("SLURM_JOB_ID");

	(void)o;
	return job && *job;
}

/* Expand a Slurm node list ("node[1-3,5],login2") into names. */
static char **expand_nodelist(const char *list, unsigned *count)
{
	char **v = NULL;
	unsigned n = 0, cap = 0;
	const char *p = list;

	while (p && *p) {
		const char *e = p, *lb = NULL, *rb = NULL;
		int depth = 0;

		for (; *e && (depth || *e != ','); e++) {
			if (*e == '[' && !lb)
				lb = e;
			if (*e == ']' && !rb)
				rb = e;
			depth += *e == '[' ? 1 : *e == ']' ? -1 : 0;
		}
		if (lb && rb && rb > lb) {
			char ranges[512];
			size_t rl = (size_t)(rb - lb - 1);

			if (rl >= sizeof ranges)
				rl = sizeof ranges - 1;
			memcpy(ranges, lb + 1, rl);
			ranges[rl] = '\0';
			for (char *sv, *r = strtok_r(ranges, ",", &sv); r;
			     r = strtok_r(NULL, ",", &sv)) {
				char *dash = strchr(r, '-');
				long a = strtol(r, NULL, 10);
				long b = dash ? strtol(dash + 1, NULL, 10) : a;
				int w = dash ? (int)(dash - r) : (int)strlen(r);

				for (long k = a; k <= b && n < 65536; k++) {
					if (n == cap) {
						cap = cap ? cap * 2 : 16;
						v = realloc(v, cap * sizeof *v);
					}
					if (asprintf(&v[n], "%.*s%0*ld%.*s",
						     (int)(lb - p), p, w, k,
						     (int)(e - rb - 1),
						     rb + 1) < 0)
						v[n] = NULL;
					n++;
				}
			}
		} else if (e > p) {
			if (n == cap) {
				cap = cap ? cap * 2 : 16;
				v = realloc(v, cap * sizeof *v);
			}
			v[n++] = strndup(p, (size_t)(e - p));
		}
		p = *e ? e + 1 : e;
	}
	*count = n;
	return v;
}

static int nodes(const struct dragon_opts *o, char ***names, unsigned *count)
{
	const char *job = getenv("SLURM_JOB_ID");
	const char *nn = getenv("SLURM_JOB_NUM_NODES");
	const char *list = getenv("SLURM_JOB_NODELIST");
	unsigned nl = 0;
	long avail;

	*names = NULL;
	if (!detect(o)) {
		fprintf(stderr,
			"dragon: %s: not inside a Slurm allocation "
			"(SLURM_JOB_ID is not set): run dragon inside "
			"salloc or an sbatch script\n",
			o->wlm ? "-w slurm" : "-N");
		return -1;
	}
	if (!nn)
		nn = getenv("SLURM_NNODES");
	avail = nn ? strtol(nn, NULL, 10) : 1;
	if (avail < 1)
		avail = 1;
	if (o->nodes > avail) {
		fprintf(stderr,
			"dragon: -N %d: the allocation (job %s) has %ld "
			"node%s\n",
			o->nodes, job, avail, avail > 1 ? "s" : "");
		return -1;
	}
	*count = o->nodes ? (unsigned)o->nodes : (unsigned)avail;
	*names = expand_nodelist(list ? list : getenv("SLURM_NODELIST"), &nl);
	if (nl < *count) {
		wlm_names_free(*names, nl);
		*names = NULL;
	} else {
		wlm_names_trim(*names, nl, *count);
	}
	return 0;
}

static int start(struct wlm_job *j)
{
	char nodes[32], tasks[32], *opts, *argv[96];
	int k = 0, rc;

	srun_step(argv, &k, nodes, tasks, (long)j->n, "--input=0",
		  "--job-name=dragon-backend");
	opts = wlm_words("DRAGON_SRUN_OPTS", argv, &k, 90);
	argv[k++] = (char *)j->prog;
	argv[k] = NULL;
	rc = wlm_start_single(j, "srun", argv, "is Slurm's srun on PATH?");
	free(opts);
	return rc;
}

/* "srun: error: NODE: task K: ..." */
static int failed_node(const char *l)
{
	const char *t = strstr(l, ": task ");

	if (strncmp(l, "srun: error: ", 13) == 0 && t &&
	    isdigit((unsigned char)t[7]))
		return atoi(t + 7);
	return -1;
}

const struct wlm dragon_wlm_slurm = {
	.name = "slurm",
	.tool = "srun",
	.detect = detect,
	.nodes = nodes,
	.start = start,
	.failed_node = failed_node,
	.hint = "check that dragon-backend runs on that node (srun -N1 -w "
		"NODE dragon-backend says why if not) and that "
		"DRAGON_SRUN_OPTS holds what your site's srun needs",
};
