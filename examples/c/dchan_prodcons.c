/*
 * Producer/consumer: several producer processes send numbered messages of
 * mixed sizes (large ones travel through the pool) to one channel that
 * several consumer processes drain.  A consumer in another program could
 * attach the same channel from the text descriptor printed at start.
 * Build: cc dchan_prodcons.c $(pkg-config --cflags --libs dragon-dchan)
 */
#include <dragon/dchan.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PRODUCERS    2
#define CONSUMERS    2
#define PER_PRODUCER 10000
#define STOP	     0xffffffffu

struct item {
	unsigned producer, seq;
	char pad[];
};

static int produce(dchan_t *ch, unsigned id)
{
	static char buf[20000];
	struct item *it = (struct item *)buf;

	for (unsigned s = 0; s < PER_PRODUCER; s++) {
		size_t len = s % 100 ? 64 : sizeof buf; /* 1 in 100 is big */

		it->producer = id;
		it->seq = s;
		if (dchan_send(ch, buf, len, DCHAN_FOREVER))
			return 1;
	}
	return 0;
}

static int consume(dchan_t *ch)
{
	static char buf[20000];
	struct item *it = (struct item *)buf;
	unsigned long got = 0;
	size_t len;

	for (;;) {
		if (dchan_recv(ch, buf, sizeof buf, DCHAN_FOREVER, &len))
			return 1;
		if (it->producer == STOP)
			break;
		got++;
	}
	printf("consumer %d: %lu messages\n", (int)getpid(), got);
	fflush(stdout);
	return 0;
}

int main(void)
{
	char text[DCHAN_DESC_TEXT_MAX];
	struct item stop = {STOP, 0};
	dmem_pool_t *pool;
	dchan_desc_t desc;
	dchan_t *ch;
	pid_t pid[PRODUCERS + CONSUMERS];
	int rc, bad = 0;

	if ((rc = dmem_pool_create("prodcons", 256u << 20, NULL, &pool)) ||
	    (rc = dchan_create(pool, NULL, &ch)) ||
	    (rc = dchan_desc_get(ch, &desc)) ||
	    (rc = dchan_desc_to_text(&desc, text, sizeof text)) < 0) {
		fprintf(stderr, "setup: %s\n", dchan_errmsg());
		return 1;
	}
	printf("channel: %s\n", text);
	fflush(stdout);
	for (int i = 0; i < PRODUCERS + CONSUMERS; i++) {
		pid[i] = fork();
		if (pid[i] == 0)
			_exit(i < PRODUCERS ? produce(ch, (unsigned)i)
					    : consume(ch));
	}
	for (int i = 0; i < PRODUCERS; i++) {
		int st;

		waitpid(pid[i], &st, 0);
		bad |= !WIFEXITED(st) || WEXITSTATUS(st);
	}
	for (int i = 0; i < CONSUMERS; i++)
		dchan_send(ch, &stop, sizeof stop, DCHAN_FOREVER);
	for (int i = PRODUCERS; i < PRODUCERS + CONSUMERS; i++) {
		int st;

		waitpid(pid[i], &st, 0);
		bad |= !WIFEXITED(st) || WEXITSTATUS(st);
	}
	dchan_destroy(ch);
	dmem_pool_destroy(pool);
	return bad;
}
