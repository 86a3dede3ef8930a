/* dragon-cleanup in a PBS job, or over a list of hosts: clean every node.
 *
 * As inside a Slurm allocation (cleanup_slurm.c), dragon-cleanup runs
 * itself with --this-node --label on every node, started the way dragon
 * starts its backends there:
 *
 * - in a PBS job (PBS_NODEFILE set), one PALS `mpiexec -n N --ppn 1
 *   --hosts a,b,...` over the distinct nodes of PBS_NODEFILE, in order,
 *   with the options of DRAGON_MPIEXEC_OPTS;
 * - with --hostfile FILE or --hostlist a,b,c, one `ssh -o BatchMode=yes
 *   HOST` per host, all at once, with the options of DRAGON_SSH_OPTS.
 *
 * Each node's cleanup follows the rules of a cleanup outside a job (this
 * user's runtimes only, live ones left alone unless asked).  The program
 * is at the same path on every node, as dragon-backend is for dragon.
 */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "dragon_wlm.h"

extern char **environ;

#define MAX_ARGS 96

bool cleanup_in_pbs_job(void)
{
	const char *f = getenv("PBS_NODEFILE");

	return f && *f;
}

/* This program's path, which every node is taken to have too. */
static int self_path(char *out, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", out, len - 1);

	if (n <= 0) {
		fprintf(stderr,
			"dragon-cleanup: cannot find this program "
			"(/proc/self/exe): %s; run dragon-cleanup "
			"--this-node on each node instead\n",
			strerror(errno));
		return -1;
	}
	out[n] = '\0';
	return 0;
}

/* The task each node runs: SELF --this-node --label and o's options. */
static void task_args(const struct opts *o, char *self, char **argv, int *k)
{
	argv[(*k)++] = self;
	argv[(*k)++] = "--this-node";
	argv[(*k)++] = "--label";
	if (o->dry_run)
		argv[(*k)++] = "--dry-run";
	if (o->force)
		argv[(*k)++] = "--force";
	if (o->instance) {
		argv[(*k)++] = "--instance";
		argv[(*k)++] = (char *)o->instance;
	}
	argv[*k] = NULL;
}

static int wait_status(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return st;
}

int cleanup_pbs(const struct opts *o)
{
	const char *path = getenv("PBS_NODEFILE");
	char self[4096], *argv[MAX_ARGS], *text;
	struct wlm_mpiexec m;
	char **hosts;
	unsigned n = 0;
	int k = 0, rc, st, err = 0;
	pid_t pid;

	if (self_path(self, sizeof self))
		return 1;
	if (!(text = wlm_read_file(path, &err))) {
		fprintf(stderr,
			"dragon-cleanup: in a PBS job, but cannot read "
			"PBS_NODEFILE %s: %s; run dragon-cleanup --this-node "
			"on each node instead\n",
			path, strerror(err));
		return 1;
	}
	hosts = wlm_hosts_parse(text, NULL, &n);
	free(text);
	if (!hosts || !n ||
	    wlm_mpiexec_argv(&m, hosts, n, argv, &k, MAX_ARGS - 10)) {
		fprintf(stderr,
			"dragon-cleanup: PBS_NODEFILE %s names no node; run "
			"dragon-cleanup --this-node on each node instead\n",
			path);
		wlm_names_free(hosts, n);
		return 1;
	}
	task_args(o, self, argv, &k);
	fflush(stdout);
	/* Only rank 0 would get stdin, and no task reads it. */
	rc = posix_spawnp(&pid, "mpiexec", NULL, NULL, argv, environ);
	wlm_names_free(hosts, n);
	if (rc) {
		fprintf(stderr,
			"dragon-cleanup: in a PBS job but cannot run mpiexec: "
			"%s; put PALS's mpiexec on PATH (module load "
			"cray-pals), or run dragon-cleanup --hostfile "
			"$PBS_NODEFILE, or --this-node on each node\n",
			strerror(rc));
		wlm_mpiexec_free(&m);
		return 1;
	}
	st = wait_status(pid);
	if (st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) <= 1) {
		wlm_mpiexec_free(&m);
		return WEXITSTATUS(st);
	}
	fprintf(stderr,
		"dragon-cleanup: mpiexec over the %u node%s of the PBS job "
		"(%s) failed (%s %d): nodes it did not reach are not cleaned; "
		"DRAGON_MPIEXEC_OPTS holds what your site's mpiexec needs, or "
		"run dragon-cleanup --this-node on each node\n",
		n, n > 1 ? "s" : "", m.hosts,
		st >= 0 && WIFSIGNALED(st) ? "signal" : "exit code",
		st < 0		  ? -1
		: WIFSIGNALED(st) ? WTERMSIG(st)
				  : WEXITSTATUS(st));
	wlm_mpiexec_free(&m);
	return 1;
}

/* s in single quotes for the remote shell (malloc'd). */
static char *quote(const char *s)
{
	char *q = malloc(4 * strlen(s) + 3), *p = q;

	if (!q)
		return NULL;
	*p++ = '\'';
	for (; *s; s++)
		if (*s == '\'') {
			memcpy(p, "'\\''", 4);
			p += 4;
		} else {
			*p++ = *s;
		}
	*p++ = '\'';
	*p = '\0';
	return q;
}

/* "exec 'SELF' '--this-node' ..." for ssh's remote shell. */
static char *remote_command(char **task)
{
	size_t len = 5;
	char *cmd, *q;

	for (int i = 0; task[i]; i++)
		len += 4 * strlen(task[i]) + 4;
	if (!(cmd = malloc(len)))
		return NULL;
	strcpy(cmd, "exec");
	for (int i = 0; task[i]; i++) {
		if (!(q = quote(task[i]))) {
			free(cmd);
			return NULL;
		}
		strcat(cmd, " ");
		strcat(cmd, q);
		free(q);
	}
	return cmd;
}

static int ssh_all(char **hosts, unsigned n, char *cmd)
{
	char *argv[MAX_ARGS], *opts;
	pid_t *pids = calloc(n, sizeof *pids);
	int k = 0, host_at, status = 0;

	if (!pids)
		return 1;
	argv[k++] = "ssh";
	opts = wlm_words("DRAGON_SSH_OPTS", argv, &k, MAX_ARGS - 8);
	argv[k++] = "-o";
	argv[k++] = "BatchMode=yes";
	argv[k++] = "-o";
	argv[k++] = "ConnectTimeout=10";
	host_at = k++;
	argv[k++] = cmd;
	argv[k] = NULL;
	fflush(stdout);
	for (unsigned i = 0; i < n; i++) {
		int rc;

		argv[host_at] = hosts[i];
		rc = posix_spawnp(&pids[i], "ssh", NULL, NULL, argv, environ);
		if (rc) {
			fprintf(stderr,
				"dragon-cleanup: cannot run ssh for %s: %s (is "
				"OpenSSH's ssh on PATH?); %s is not cleaned\n",
				hosts[i], strerror(rc), hosts[i]);
			pids[i] = 0;
			status = 1;
		}
	}
	for (unsigned i = 0; i < n; i++) {
		int st;

		if (!pids[i])
			continue;
		st = wait_status(pids[i]);
		if (st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) <= 1) {
			status |= WEXITSTATUS(st);
			continue;
		}
		fprintf(stderr,
			"dragon-cleanup: ssh to %s failed (%s %d): %s is not "
			"cleaned; check that 'ssh -o BatchMode=yes %s true' "
			"works without a password and that dragon-cleanup is "
			"at the same path there, or run dragon-cleanup "
			"--this-node on %s\n",
			hosts[i],
			st >= 0 && WIFSIGNALED(st) ? "signal" : "exit code",
			st < 0		  ? -1
			: WIFSIGNALED(st) ? WTERMSIG(st)
					  : WEXITSTATUS(st),
			hosts[i], hosts[i], hosts[i]);
		status = 1;
	}
	free(opts);
	free(pids);
	return status;
}

int cleanup_hosts(const struct opts *o)
{
	const char *what = o->hostfile ? "--hostfile" : "--hostlist";
	char self[4096], *task[16], *text, *cmd, **hosts;
	unsigned n = 0;
	int k = 0, status, err = 0;

	if (self_path(self, sizeof self))
		return 1;
	text = o->hostfile ? wlm_read_file(o->hostfile, &err)
			   : strdup(o->hostlist);
	if (!text) {
		fprintf(stderr, "dragon-cleanup: %s %s: cannot read it: %s\n",
			what, o->hostfile ? o->hostfile : o->hostlist,
			strerror(o->hostfile ? err : ENOMEM));
		return 2;
	}
	hosts = wlm_hosts_parse(text, o->hostfile ? NULL : ",", &n);
	free(text);
	if (!hosts || !n) {
		fprintf(stderr,
			"dragon-cleanup: %s %s names no host: list the hosts, "
			"one a line (or a,b,c for --hostlist)\n",
			what, o->hostfile ? o->hostfile : o->hostlist);
		wlm_names_free(hosts, n);
		return 2;
	}
	task_args(o, self, task, &k);
	cmd = remote_command(task);
	status = cmd ? ssh_all(hosts, n, cmd) : 1;
	free(cmd);
	wlm_names_free(hosts, n);
	return status;
}
