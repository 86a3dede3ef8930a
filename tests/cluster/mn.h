/* What the head processes of the cluster tests (mn_prog.c, mn_remote.c)
 * share: the runtime's handle, reporting a failed call, starting a process
 * on a node, and main, which attaches, runs the program's command(argv[1]
 * and what follows) and detaches.  A program defines MN_NAME (its name in
 * messages) before including this, and command(), which returns 2 for a
 * command it does not know. */
#ifndef MN_H
#define MN_H

#include <dragon/dlaunch.h>
#include <stdio.h>

#define SEC 1000000000ull

static dlaunch_t *rt;

static int die(const char *what, int rc)
{
	fprintf(stderr, MN_NAME ": %s: %s (%s)\n", what, dlaunch_strerror(rc),
		dlaunch_errmsg());
	return 1;
}

static int spawn_on(unsigned node, const char *path, char *const *argv,
		    pid_t *pid)
{
	dlaunch_spawn_attr_t a = {.field_mask = DLAUNCH_SPAWN_ATTR_NODE |
						DLAUNCH_SPAWN_ATTR_FLAGS,
				  .node = node,
				  .flags = DLAUNCH_SPAWN_F_SEARCH_PATH};

	return dlaunch_spawn(rt, path, argv, &a, pid);
}

static int command(int argc, char **argv);

int main(int argc, char **argv)
{
	int rc;

	if (argc < 2)
		return 2;
	rc = dlaunch_attach(NULL, &rt);
	if (rc)
		return die("dlaunch_attach", rc);
	rc = command(argc, argv);
	fflush(stdout);
	dlaunch_detach(rt);
	return rc;
}

#endif
