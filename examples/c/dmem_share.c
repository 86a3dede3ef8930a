/* dmem_share: share a pool with another process through a descriptor.
 *
 * The parent creates a pool, writes a message into an allocation and hands
 * the pool and the allocation to a child as text in the environment, the
 * way a runtime hands descriptors to the processes it starts.  The child
 * attaches, reads and answers in place; the parent prints the answer.
 *
 *   cc dmem_share.c $(pkg-config --cflags --libs dragon-dmem) -o dmem_share
 *   ./dmem_share
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dragon/dmem.h>

static int die(const char *what, int rc)
{
	fprintf(stderr, "%s: %s\n  %s\n", what, dmem_strerror(rc),
		dmem_errmsg());
	return 1;
}

static int child(void)
{
	dmem_pool_desc_t pd;
	dmem_alloc_desc_t ad;
	dmem_pool_t *pool;
	char *msg;
	int rc;

	if ((rc = dmem_pool_desc_from_text(getenv("DMEM_SHARE_POOL"), &pd)) ||
	    (rc = dmem_pool_attach(&pd, &pool)))
		return die("attach pool", rc);
	if ((rc = dmem_alloc_desc_from_text(getenv("DMEM_SHARE_MSG"), &ad)) ||
	    (rc = dmem_alloc_attach(pool, &ad, (void **)&msg)))
		return die("attach allocation", rc);
	printf("child %d read: %s\n", (int)getpid(), msg);
	snprintf(msg, ad.size, "hello back from %d", (int)getpid());
	dmem_pool_detach(pool);
	return 0;
}

int main(int argc, char **argv)
{
	char ptext[DMEM_POOL_DESC_TEXT_MAX], atext[DMEM_ALLOC_DESC_TEXT_MAX];
	dmem_pool_desc_t pd;
	dmem_alloc_desc_t ad;
	dmem_pool_t *pool;
	char *msg;
	int rc, status;
	pid_t pid;

	if (argc > 1 && strcmp(argv[1], "child") == 0)
		return child();
	if ((rc = dmem_pool_create("share", 1 << 20, NULL, &pool)))
		return die("create pool", rc);
	if ((rc = dmem_alloc(pool, 128, 0, (void **)&msg))) {
		dmem_pool_destroy(pool);
		return die("alloc", rc);
	}
	snprintf(msg, 128, "hello from %d", (int)getpid());
	dmem_pool_desc_get(pool, &pd);
	dmem_alloc_desc_get(pool, msg, &ad);
	dmem_pool_desc_to_text(&pd, ptext, sizeof ptext);
	dmem_alloc_desc_to_text(&ad, atext, sizeof atext);
	setenv("DMEM_SHARE_POOL", ptext, 1);
	setenv("DMEM_SHARE_MSG", atext, 1);
	printf("pool  %s\nalloc %s\n", ptext, atext);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		execl("/proc/self/exe", argv[0], "child", (char *)NULL);
		_exit(127);
	}
	waitpid(pid, &status, 0);
	printf("parent read: %s\n", msg);
	dmem_free(pool, msg);
	dmem_pool_destroy(pool);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
