/* A head process for the multi-node tests: it uses the runtime's C API
 * across nodes and prints what it saw, for multinode.sh to check.
 *
 *   mn_prog hosts   start `hostname` on every node, wait for each
 *   mn_prog chan    a channel made on node 0 by name, used from the last
 *                   node (by name) both ways; a name registered there; the
 *                   peer's exit code
 *   mn_prog lines   on the last node, a shell that prints 200 lines
 *   mn_prog sleep   start `sleep 600` on every node, say "ready", sleep
 *   mn_prog flood K N
 *                   on every node K shells, each printing N numbered lines
 *                   in two writes per line (odd ones to stderr), at once
 *   mn_prog pids    on every node a shell that prints its pid and host,
 *                   on stdout and on stderr
 *   mn_prog peer    (chan's peer on the last node)
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MN_NAME "mn_prog"
#include "mn.h"

static int hosts(void)
{
	unsigned n = dlaunch_node_count(rt);
	char *argv[] = {"hostname", NULL};

	printf("nodes %u\n", n);
	fflush(stdout);
	for (unsigned i = 0; i < n; i++) {
		dlaunch_status_t st;
		pid_t pid;
		int rc = spawn_on(i, "hostname", argv, &pid);

		if (rc)
			return die("spawn hostname", rc);
		rc = dlaunch_wait(rt, pid, 30 * SEC, &st);
		if (rc)
			return die("wait hostname", rc);
		printf("node %u: hostname exited %d\n", i,
		       dlaunch_status_code(&st));
		fflush(stdout);
	}
	return 0;
}

static int get_chan(const char *name, dchan_t **ch)
{
	dchan_desc_t d;
	int rc = dlaunch_channel_get(rt, name, NULL, &d);

	if (rc < 0)
		return die("dlaunch_channel_get", rc);
	rc = dchan_attach(&d, ch);
	if (rc)
		return die("dchan_attach", rc);
	return 0;
}

static int chan(const char *self)
{
	unsigned last = dlaunch_node_count(rt) - 1;
	char *argv[] = {(char *)self, "peer", NULL};
	char buf[256], val[256];
	dlaunch_status_t st;
	dchan_t *to, *back;
	size_t len;
	pid_t pid;
	int rc;

	if (get_chan("mn-to-head", &to) || get_chan("mn-to-peer", &back))
		return 1;
	rc = spawn_on(last, self, argv, &pid);
	if (rc)
		return die("spawn peer", rc);
	rc = dchan_recv(to, buf, sizeof buf - 1, 30 * SEC, &len);
	if (rc)
		return die("dchan_recv", rc);
	buf[len] = '\0';
	printf("head got: %s\n", buf);
	fflush(stdout);
	rc = dchan_send(back, "pong", 4, 30 * SEC);
	if (rc)
		return die("dchan_send", rc);
	rc = dlaunch_wait(rt, pid, 30 * SEC, &st);
	if (rc)
		return die("wait peer", rc);
	printf("peer exited %d\n", dlaunch_status_code(&st));
	rc = dlaunch_name_lookup(rt, "mn-peer-host", DLAUNCH_KIND_BYTES, val,
				 sizeof val - 1, &len);
	if (rc)
		return die("dlaunch_name_lookup", rc);
	val[len] = '\0';
	printf("name mn-peer-host = %s\n", val);
	return 0;
}

static int peer(void)
{
	char host[64] = "", buf[64], msg[128];
	dchan_t *to, *back;
	size_t len;
	int rc;

	gethostname(host, sizeof host - 1);
	if (get_chan("mn-to-head", &to) || get_chan("mn-to-peer", &back))
		return 1;
	snprintf(msg, sizeof msg, "ping from %s (node id %llu)", host,
		 (unsigned long long)dlaunch_node(rt));
	rc = dchan_send(to, msg, strlen(msg), 30 * SEC);
	if (rc)
		return die("peer dchan_send", rc);
	rc = dchan_recv(back, buf, sizeof buf - 1, 30 * SEC, &len);
	if (rc)
		return die("peer dchan_recv", rc);
	buf[len] = '\0';
	printf("peer on %s got: %s\n", host, buf);
	rc = dlaunch_name_register(rt, "mn-peer-host", DLAUNCH_KIND_BYTES, host,
				   strlen(host));
	if (rc != 1)
		return die("dlaunch_name_register", rc);
	dchan_detach(to);
	dchan_detach(back);
	return 7;
}

static int lines(void)
{
	char *argv[] = {"sh", "-c",
			"i=0; while [ $i -lt 200 ]; do echo \"remote line $i "
			"of $(hostname)\"; i=$((i+1)); done; exit 5",
			NULL};
	dlaunch_status_t st;
	pid_t pid;
	int rc = spawn_on(dlaunch_node_count(rt) - 1, "sh", argv, &pid);

	if (rc)
		return die("spawn sh", rc);
	rc = dlaunch_wait(rt, pid, 60 * SEC, &st);
	if (rc)
		return die("wait sh", rc);
	printf("remote sh exited %d\n", dlaunch_status_code(&st));
	return 0;
}

static int sleeper(void)
{
	unsigned n = dlaunch_node_count(rt);
	char *argv[] = {"sleep", "600", NULL};

	for (unsigned i = 0; i < n; i++) {
		pid_t pid;
		int rc = spawn_on(i, "sleep", argv, &pid);

		if (rc)
			return die("spawn sleep", rc);
	}
	printf("ready\n");
	fflush(stdout);
	pause();
	return 0;
}

static int wait_all(pid_t *pids, unsigned n, const char *what)
{
	for (unsigned i = 0; i < n; i++) {
		dlaunch_status_t st;
		int rc = dlaunch_wait(rt, pids[i], 120 * SEC, &st);

		if (rc)
			return die(what, rc);
		if (dlaunch_status_code(&st) != 0) {
			fprintf(stderr, "mn_prog: %s %u exited %d\n", what, i,
				dlaunch_status_code(&st));
			return 1;
		}
	}
	return 0;
}

static int flood(int k, int lines)
{
	unsigned n = dlaunch_node_count(rt);
	pid_t *pids = calloc((size_t)n * (size_t)k, sizeof *pids);
	char script[512];
	int rc;

	if (!pids || k < 1 || lines < 1)
		return 2;
	for (unsigned i = 0; i < n; i++)
		for (int j = 0; j < k; j++) {
			char *argv[] = {"sh", "-c", script, NULL};

			snprintf(
				script, sizeof script,
				"h=$(hostname); i=0; while [ $i -lt %d ]; do "
				"printf 'flood %%s %d %%d ' $h $i; "
				"printf '%%s\\n' "
				"0123456789abcdefghijklmnopqrstuvwxyz0123456789"
				"abcdefghijklmnopqrstuvwxyz; "
				"i=$((i+1)); done %s",
				lines, j, j % 2 ? ">&2" : "");
			rc = spawn_on(i, "sh", argv,
				      &pids[i * (unsigned)k + (unsigned)j]);
			if (rc)
				return die("spawn flood", rc);
		}
	rc = wait_all(pids, n * (unsigned)k, "flood");
	free(pids);
	printf("flood done\n");
	return rc;
}

static int pids_of_all(void)
{
	unsigned n = dlaunch_node_count(rt);
	pid_t pids[64];
	char *argv[] = {"sh", "-c",
			"echo \"pid $$ on $(hostname)\"; "
			"echo \"err of $$ on $(hostname)\" >&2",
			NULL};

	printf("pid %d on head\n", (int)getpid());
	fflush(stdout);
	for (unsigned i = 0; i < n && i < 64; i++) {
		int rc = spawn_on(i, "sh", argv, &pids[i]);

		if (rc)
			return die("spawn sh", rc);
	}
	return wait_all(pids, n < 64 ? n : 64, "sh");
}

static int command(int argc, char **argv)
{
	int rc;

	if (strcmp(argv[1], "hosts") == 0)
		rc = hosts();
	else if (strcmp(argv[1], "chan") == 0)
		rc = chan(argv[0]);
	else if (strcmp(argv[1], "peer") == 0)
		rc = peer();
	else if (strcmp(argv[1], "lines") == 0)
		rc = lines();
	else if (strcmp(argv[1], "sleep") == 0)
		rc = sleeper();
	else if (strcmp(argv[1], "flood") == 0 && argc == 4)
		rc = flood(atoi(argv[2]), atoi(argv[3]));
	else if (strcmp(argv[1], "pids") == 0)
		rc = pids_of_all();
	else
		rc = 2;
	return rc;
}
