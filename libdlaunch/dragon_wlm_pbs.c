/* Backends started in a PBS job by PALS: `mpiexec -n N --ppn 1 --hosts
 * a,b,...` with one rank per node, the nodes being the distinct lines of
 * PBS_NODEFILE in their order (PBS repeats a node once per slot), the
 * first -N of them.  PALS passes mpiexec's environment to every rank
 * (the secret goes that way, as with srun) and tells each its index in
 * PALS_NODEID (PMI_RANK: with one rank per node the same).  It gives
 * stdin to rank 0 and reports a rank that failed on its stderr
 * ("node2: rank 1 exited with code 42"). */
#define _GNU_SOURCE
#include "config.h"
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "dragon_wlm.h"

static bool detect(const struct dragon_opts *o)
{
	const char *f = getenv("PBS_NODEFILE");

	(void)o;
	return f && *f;
}

static int nodes(const struct dragon_opts *o, char ***names, unsigned *count)
{
	const char *path = getenv("PBS_NODEFILE");
	char *text;
	unsigned n = 0;
	int err;

	*names = NULL;
	if (!detect(o)) {
		fprintf(stderr,
			"dragon: -w pbs: not inside a PBS job (PBS_NODEFILE "
			"is not set): run dragon in a qsub script or "
			"interactive job\n");
		return -1;
	}
	if (!(text = wlm_read_file(path, &err))) {
		fprintf(stderr,
			"dragon: cannot read PBS_NODEFILE %s: %s (is this "
			"the job's node file?)\n",
			path, strerror(err));
		return -1;
	}
	*names = wlm_hosts_parse(text, NULL, &n);
	free(text);
	if (n == 0) {
		fprintf(stderr,
			"dragon: PBS_NODEFILE %s names no node: it should "
			"list the job's nodes, one a line\n",
			path);
		wlm_names_free(*names, n);
		*names = NULL;
		return -1;
	}
	if (o->nodes > (int)n) {
		fprintf(stderr, "dragon: -N %d: the PBS job has %u node%s\n",
			o->nodes, n, n > 1 ? "s" : "");
		wlm_names_free(*names, n);
		*names = NULL;
		return -1;
	}
	*count = o->nodes ? (unsigned)o->nodes : n;
	wlm_names_trim(*names, n, *count);
	return 0;
}

static int start(struct wlm_job *j)
{
	struct wlm_mpiexec m;
	char *argv[96];
	int k = 0, rc;

	if (wlm_mpiexec_argv(&m, j->hosts, j->n, argv, &k, 90))
		return -1;
	argv[k++] = (char *)j->prog;
	argv[k] = NULL;
	rc = wlm_start_single(j, "mpiexec", argv,
			      "is PALS's mpiexec on PATH? module load "
			      "cray-pals, or -w ssh with --hostfile "
			      "$PBS_NODEFILE");
	wlm_mpiexec_free(&m);
	return rc;
}

/* "HOST: rank K exited with code C", "HOST: rank K died from signal S" */
static int failed_node(const char *l)
{
	const char *r = strstr(l, ": rank ");
	char *end;
	long k;

	if (!r || !isdigit((unsigned char)r[7]))
		return -1;
	k = strtol(r + 7, &end, 10);
	if (strncmp(end, " exited", 7) != 0 && strncmp(end, " died", 5) != 0)
		return -1;
	return (int)k;
}

const struct wlm dragon_wlm_pbs = {
	.name = "pbs",
	.tool = "mpiexec",
	.detect = detect,
	.nodes = nodes,
	.start = start,
	.failed_node = failed_node,
	.hint = "check that dragon-backend runs on that node (mpiexec -n 1 "
		"--hosts NODE dragon-backend says why if not) and that "
		"DRAGON_MPIEXEC_OPTS holds what your site's mpiexec needs",
};
