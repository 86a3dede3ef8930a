/* A head process for remote.sh: processes on another node seen from the
 * primary through the C API, and what the services keep of them.
 *
 *   mn_remote procfd   dlaunch_proc_fd on a process of the last node:
 *                      not ready while it runs, ready once it ended, and
 *                      ready at once for one that already ended; the
 *                      exit codes; a status collected stays there for
 *                      another wait; its OS pid alone names no process
 *   mn_remote client K from the last node, start `true` on node 0 (a
 *                      conversation with node 0's services), say its
 *                      pid, then end: K=kill by SIGKILL, K=exit normally
 *                      after dlaunch_detach; the head waits for it
 *   mn_remote spawner K (client's process on the last node)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MN_NAME "mn_remote"
#include "mn.h"

static int ready(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	return poll(&p, 1, ms) == 1 && (p.revents & (POLLIN | POLLHUP));
}

static int procfd(void)
{
	unsigned last = dlaunch_node_count(rt) - 1;
	char *slow[] = {"sh", "-c", "sleep 2; exit 4", NULL};
	char *quick[] = {"sh", "-c", "exit 6", NULL};
	dlaunch_status_t st;
	pid_t pid;
	int fd, rc;

	if ((rc = spawn_on(last, "sh", slow, &pid)))
		return die("spawn on the last node", rc);
	/* Its OS pid alone names a process of this node, never it (the
	 * nodes share one pid space here, so none has that pid). */
	rc = dlaunch_wait(rt, pid % (1 << 22), 0, &st);
	printf("its os pid here: %s\n", rc == -DLAUNCH_E_NOPROC ? "no process"
					: rc == -EAGAIN ? "the remote process"
							: dlaunch_strerror(rc));
	printf("its pid names node %d\n", (int)(pid / (1 << 22)) - 1);
	if ((rc = dlaunch_proc_fd(rt, pid, &fd)))
		return die("dlaunch_proc_fd of a running remote process", rc);
	printf("running: fd ready %s\n", ready(fd, 0) ? "yes" : "no");
	printf("ended: fd ready %s\n", ready(fd, 20000) ? "yes" : "no");
	close(fd);
	if ((rc = dlaunch_wait(rt, pid, 10 * SEC, &st)))
		return die("wait", rc);
	printf("slow exited %d\n", dlaunch_status_code(&st));
	rc = dlaunch_wait(rt, pid, 0, &st);
	printf("a second wait: %s\n", rc ? dlaunch_strerror(rc) : "a status");
	if ((rc = spawn_on(last, "sh", quick, &pid)))
		return die("spawn on the last node", rc);
	sleep(2);
	if ((rc = dlaunch_proc_fd(rt, pid, &fd)))
		return die("dlaunch_proc_fd of an ended remote process", rc);
	printf("already ended: fd ready %s\n", ready(fd, 0) ? "yes" : "no");
	close(fd);
	if ((rc = dlaunch_wait(rt, pid, 10 * SEC, &st)))
		return die("wait", rc);
	printf("quick exited %d\n", dlaunch_status_code(&st));
	return 0;
}

static int client(const char *self, const char *how)
{
	unsigned last = dlaunch_node_count(rt) - 1;
	char *argv[] = {(char *)self, "spawner", (char *)how, NULL};
	dlaunch_status_t st;
	pid_t pid;
	int rc;

	if ((rc = spawn_on(last, self, argv, &pid)))
		return die("spawn the spawner", rc);
	if ((rc = dlaunch_wait(rt, pid, 30 * SEC, &st)))
		return die("wait for the spawner", rc);
	printf("spawner ended %d\n", dlaunch_status_code(&st));
	fflush(stdout);
	/* Time for its node's services to close its conversation here. */
	sleep(2);
	return 0;
}

static int spawner(const char *how)
{
	char *argv[] = {"true", NULL};
	dlaunch_status_t st;
	pid_t pid;
	int rc;

	if ((rc = spawn_on(0, "true", argv, &pid)))
		return die("spawn on node 0", rc);
	if ((rc = dlaunch_wait(rt, pid, 30 * SEC, &st)))
		return die("wait on node 0", rc);
	printf("spawner %d: true on node 0 exited %d\n", (int)getpid(),
	       dlaunch_status_code(&st));
	fflush(stdout);
	if (strcmp(how, "kill") == 0)
		raise(SIGKILL);
	return 0;
}

static int command(int argc, char **argv)
{
	int rc;

	if (strcmp(argv[1], "procfd") == 0)
		rc = procfd();
	else if (strcmp(argv[1], "client") == 0 && argc > 2)
		rc = client(argv[0], argv[2]);
	else if (strcmp(argv[1], "spawner") == 0 && argc > 2)
		rc = spawner(argv[2]);
	else
		rc = 2;
	return rc;
}
