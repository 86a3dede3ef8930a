/* Start processes through the Dragon runtime and wait for them.
 *
 *   dragon ./dlaunch_spawn [-s] N PROG [ARGS...]
 *
 * starts N copies of PROG (all at once, or one after the other with -s),
 * waits for each and prints how many ended with status 0.  Exits 0 if all
 * did.  Build: cc dlaunch_spawn.c $(pkg-config --cflags --libs dragon)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dragon/dlaunch.h>

static int fail(const char *what, int rc)
{
	fprintf(stderr, "%s: %s (%s)\n", what, dlaunch_strerror(rc),
		dlaunch_errmsg());
	return 1;
}

int main(int argc, char **argv)
{
	int serial = argc > 1 && strcmp(argv[1], "-s") == 0;
	dlaunch_spawn_attr_t attr = {.field_mask = DLAUNCH_SPAWN_ATTR_FLAGS,
				     .flags = DLAUNCH_SPAWN_F_SEARCH_PATH};
	dlaunch_status_t st;
	dlaunch_t *rt;
	pid_t *pids;
	int n, ok = 0, rc;

	argv += serial;
	argc -= serial;
	if (argc < 3 || (n = atoi(argv[1])) <= 0) {
		fprintf(stderr, "usage: dlaunch_spawn [-s] N PROG [ARGS...]\n");
		return 2;
	}
	rc = dlaunch_attach(NULL, &rt);
	if (rc)
		return fail("dlaunch_attach", rc);
	pids = calloc((size_t)n, sizeof *pids);
	for (int i = 0; i < n && pids; i++) {
		rc = dlaunch_spawn(rt, argv[2], argv + 2, &attr, &pids[i]);
		if (rc)
			return fail("dlaunch_spawn", rc);
		if (serial &&
		    dlaunch_wait(rt, pids[i], DLAUNCH_FOREVER, &st) == 0)
			ok += dlaunch_status_code(&st) == 0;
	}
	for (int i = 0; i < n && pids && !serial; i++)
		if (dlaunch_wait(rt, pids[i], DLAUNCH_FOREVER, &st) == 0)
			ok += dlaunch_status_code(&st) == 0;
	printf("%d of %d processes ended with status 0\n", ok, n);
	free(pids);
	dlaunch_detach(rt);
	return ok == n ? 0 : 1;
}
