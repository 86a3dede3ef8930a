/*
 * Two processes bounce a message through a pair of channels and report the
 * round-trip time.  Build: cc dchan_pingpong.c $(pkg-config --cflags --libs
 * dragon-dchan)
 */
#include <dragon/dchan.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 100000 /* or the first argument */

static int die(const char *what, int rc)
{
	fprintf(stderr, "%s: %s (%s)\n", what, dchan_strerror(rc),
		dchan_errmsg());
	return 1;
}

static int bounce(dchan_t *in, dchan_t *out, int n)
{
	char msg[8];
	size_t len;

	for (int i = 0; i < n; i++) {
		if (dchan_recv(in, msg, sizeof msg, DCHAN_FOREVER, &len) ||
		    dchan_send(out, msg, len, DCHAN_FOREVER))
			return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : ROUNDS;
	dmem_pool_t *pool;
	dchan_t *ping, *pong;
	struct timespec t0, t1;
	char msg[8] = "ping";
	size_t len;
	pid_t pid;
	int rc;

	rc = dmem_pool_create("pingpong", 64u << 20, NULL, &pool);
	if (rc)
		return die("pool", rc);
	if ((rc = dchan_create(pool, NULL, &ping)) ||
	    (rc = dchan_create(pool, NULL, &pong)))
		return die("channel", rc);
	pid = fork();
	if (pid == 0)
		_exit(bounce(ping, pong, rounds));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < rounds; i++) {
		if ((rc = dchan_send(ping, msg, sizeof msg, DCHAN_FOREVER)) ||
		    (rc = dchan_recv(pong, msg, sizeof msg, DCHAN_FOREVER,
				     &len)))
			return die("ping-pong", rc);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	waitpid(pid, NULL, 0);
	printf("%d round trips, %.3f us each\n", rounds,
	       ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) /
		       rounds / 1e3);
	dchan_destroy(ping);
	dchan_destroy(pong);
	return dmem_pool_destroy(pool) ? 1 : 0;
}
