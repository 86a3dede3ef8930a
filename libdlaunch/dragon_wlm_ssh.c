/* Backends started with ssh, without a workload manager: one
 *
 *   ssh [$DRAGON_SSH_OPTS] -o BatchMode=yes -o ConnectTimeout=T HOST \
 *       exec env DRAGON_BE_...=... DRAGON_BE_NODE=I /path/of/dragon-backend
 *
 * per host of --hostfile or --hostlist, in their order.  Plain ssh, so the
 * user's ssh configuration applies (keys, agent, known_hosts, jump hosts);
 * BatchMode makes a host that would ask for a password an error, not a
 * prompt.  ssh passes no environment, so what the backend needs is on the
 * remote command line — but never the secret, which goes as the first line
 * of ssh's stdin.  The rest of node 0's stdin is the head's.  Each ssh's
 * stderr is its node's, so a host ssh cannot reach is named with ssh's own
 * words. */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "dragon_wlm.h"

/* Passed on to the backends, as srun and mpiexec pass the environment. */
static const char *const pass_env[] = {
	"DRAGON_DEBUG", "DRAGON_DEFAULT_SEG_SZ", "DRAGON_CLEANUP_PROGRAM",
	"DRAGON_TEST_STALL_PHASE", "DRAGON_TEST_STALL_NODE"};

static bool detect(const struct dragon_opts *o)
{
	return o->hostfile || o->hostlist;
}

static int nodes(const struct dragon_opts *o, char ***names, unsigned *count)
{
	const char *what = o->hostfile ? "--hostfile" : "--hostlist";
	char *text = NULL;
	unsigned n = 0;
	int err;

	*names = NULL;
	if (!detect(o)) {
		fprintf(stderr,
			"dragon: -w ssh: no hosts: give --hostfile FILE or "
			"--hostlist HOST1,HOST2,...\n");
		return -1;
	}
	if (o->hostfile && !(text = wlm_read_file(o->hostfile, &err))) {
		fprintf(stderr, "dragon: --hostfile %s: cannot read it: %s\n",
			o->hostfile, strerror(err));
		return -1;
	}
	*names = wlm_hosts_parse(o->hostfile ? text : o->hostlist,
				 o->hostfile ? NULL : ",", &n);
	free(text);
	if (n < 2 || o->nodes > (int)n) {
		if (n == 0)
			fprintf(stderr,
				"dragon: %s %s names no host: list the hosts, "
				"one a line (or a,b,c for --hostlist)\n",
				what, o->hostfile ? o->hostfile : o->hostlist);
		else if (n == 1)
			fprintf(stderr,
				"dragon: %s names one host (%s): a run over "
				"ssh needs two or more; for one node, run "
				"dragon on %s itself\n",
				what, (*names)[0], (*names)[0]);
		else
			fprintf(stderr, "dragon: -N %d: %s names %u hosts\n",
				o->nodes, what, n);
		wlm_names_free(*names, n);
		*names = NULL;
		return -1;
	}
	*count = o->nodes ? (unsigned)o->nodes : n;
	wlm_names_trim(*names, n, *count);
	return 0;
}

/* s in single quotes for the remote shell. */
static int quote(char **out, const char *s)
{
	size_t n = 3;
	char *q;

	for (const char *p = s; *p; p++)
		n += *p == '\'' ? 4 : 1;
	if (!(q = *out = malloc(n)))
		return -1;
	*q++ = '\'';
	for (const char *p = s; *p; p++)
		if (*p == '\'') {
			memcpy(q, "'\\''", 4);
			q += 4;
		} else {
			*q++ = *p;
		}
	*q++ = '\'';
	*q = '\0';
	return 0;
}

/* "exec env 'K=V' ... DRAGON_BE_NODE=I ... 'PROG'" for node i. */
static char *remote_command(const struct wlm_job *j, unsigned i)
{
	char *cmd = NULL, *q, *nv;
	size_t len = 0;
	FILE *f = open_memstream(&cmd, &len);
	char node[48];

	if (!f)
		return NULL;
	/* exec: the backend is the session's own process (its end is the
	 * backend's, see dragon_backend.c), whatever the login shell. */
	fputs("exec env", f);
	snprintf(node, sizeof node, "DRAGON_BE_NODE=%u", i);
	for (size_t k = 0; j->env[k]; k++)
		if (quote(&q, j->env[k]) == 0) {
			fprintf(f, " %s", q);
			free(q);
		}
	for (size_t k = 0; k < sizeof pass_env / sizeof pass_env[0]; k++) {
		const char *v = getenv(pass_env[k]);

		if (!v || asprintf(&nv, "%s=%s", pass_env[k], v) < 0)
			continue;
		if (quote(&q, nv) == 0) {
			fprintf(f, " %s", q);
			free(q);
		}
		free(nv);
	}
	fprintf(f, " %s DRAGON_BE_SECRET_STDIN=1", node);
	if (quote(&q, j->prog) == 0) {
		fprintf(f, " %s", q);
		free(q);
	}
	if (fclose(f)) {
		free(cmd);
		return NULL;
	}
	return cmd;
}

static int start_one(struct wlm_job *j, unsigned i)
{
	char ct[48], *argv[96], *opts, *cmd, **envp;
	struct wlm_proc *p = &j->procs[i];
	int k = 0, in_fd = -1, rc = ENOMEM;
	size_t sl = strlen(j->secret);

	argv[k++] = "ssh";
	opts = wlm_words("DRAGON_SSH_OPTS", argv, &k, 86);
	snprintf(ct, sizeof ct, "ConnectTimeout=%d",
		 j->timeout < 1 ? 1 : (int)j->timeout);
	argv[k++] = "-o";
	argv[k++] = "BatchMode=yes";
	argv[k++] = "-o";
	argv[k++] = ct;
	argv[k++] = j->hosts[i];
	argv[k++] = cmd = remote_command(j, i);
	argv[k] = NULL;
	p->node = (int)i;
	p->err_fd = -1;
	envp = wlm_env(NULL);
	if (cmd && envp)
		rc = wlm_spawn(p, "ssh", argv, envp, &in_fd);
	free(envp);
	free(cmd);
	free(opts);
	if (rc) {
		fprintf(stderr,
			"dragon: start-up phase 'launch backends' failed on "
			"node %u (%s): cannot run ssh: %s (is OpenSSH's ssh "
			"on PATH?)\n",
			i, j->hosts[i], strerror(rc));
		return -1;
	}
	/* The secret, then (node 0) dragon's stdin.  A pipe holds far more
	 * than a line, so this never blocks; an ssh that has already failed
	 * says so on its stderr. */
	if (write(in_fd, j->secret, sl) != (ssize_t)sl ||
	    write(in_fd, "\n", 1) != 1) {
		/* reported when the ssh's end is seen */
	}
	if (i == 0)
		j->in_fd = in_fd;
	else
		close(in_fd);
	return 0;
}

static int start(struct wlm_job *j)
{
	j->procs = calloc(j->n, sizeof *j->procs);
	if (!j->procs)
		return -1;
	for (unsigned i = 0; i < j->n; i++) {
		if (start_one(j, i))
			return -1;
		j->nprocs = i + 1;
	}
	return 0;
}

/* Each ssh serves one node: its stderr names no other. */
static int failed_node(const char *line)
{
	(void)line;
	return -1;
}

const struct wlm dragon_wlm_ssh = {
	.name = "ssh",
	.tool = "ssh",
	.detect = detect,
	.nodes = nodes,
	.start = start,
	.failed_node = failed_node,
	.hint = "check that 'ssh -o BatchMode=yes HOST true' works from here "
		"without a password (a key, the host in known_hosts), that "
		"dragon-backend is at the same path on HOST, and that "
		"DRAGON_SSH_OPTS holds what your ssh needs",
};
