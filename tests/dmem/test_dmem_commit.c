/* Pool memory is committed before it is handed out: on a /dev/shm that
 * cannot back every pool, allocations fail with a full-pool error naming
 * /dev/shm, and no process dies of SIGBUS.
 *
 * Each test runs in its own mount namespace with a small tmpfs on
 * /dev/shm (root only; otherwise it says why it skips).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <time.h>

#include "dmem_test.h"

#define MiB (1ul << 20)

/* A private /dev/shm of mib MiB for this (forked test) process. */
static int small_shm(int mib)
{
	char opts[32];

	snprintf(opts, sizeof opts, "size=%dm", mib);
	if (geteuid() != 0 || unshare(CLONE_NEWNS) != 0 ||
	    mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0 ||
	    mount("tmpfs", "/dev/shm", "tmpfs", 0, opts) != 0) {
		fprintf(stderr,
			"SKIP: a private %d MiB /dev/shm needs root and mount "
			"namespaces (unshare -m): %s\n",
			mib, strerror(errno));
		return -1;
	}
	return 0;
}

/* Allocate and touch 1 MiB blocks of p until the pool says no (other is
 * the pool this child inherited and does not use).  Exit 0 when it
 * said so because /dev/shm is full, 1 when the pool itself was full, 2 on
 * any other error; a SIGBUS would kill the process instead. */
static void fill_and_touch(dmem_pool_t *p, dmem_pool_t *other)
{
	void *b;
	int rc, n = 0;

	while ((rc = dmem_alloc(p, MiB, 0, &b)) == 0) {
		memset(b, 0xa5, MiB);
		n++;
	}
	if (rc != -DMEM_E_NOSPACE)
		dmt_exit(p, other, 2);
	fprintf(stderr, "child %d: %d MiB, then: %s\n", (int)getpid(), n,
		dmem_errmsg());
	dmt_exit(p, other, strstr(dmem_errmsg(), "/dev/shm has only") ? 0 : 1);
}

START_TEST(two_pools_overcommit_shm_without_sigbus)
{
	dmem_pool_t *a, *b;
	int st, shm_full = 0;
	pid_t pa, pb;

	if (small_shm(16))
		return;
	/* Each fits /dev/shm alone; together they promise 24 of 16 MiB. */
	a = dmt_pool("ocA", 12 * MiB);
	b = dmt_pool("ocB", 12 * MiB);
	if ((pa = fork()) == 0)
		fill_and_touch(a, b);
	if ((pb = fork()) == 0)
		fill_and_touch(b, a);
	ck_assert_int_gt(pa, 0);
	ck_assert_int_gt(pb, 0);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(waitpid(i ? pb : pa, &st, 0), i ? pb : pa);
		ck_assert_msg(WIFEXITED(st), "child killed by signal %d",
			      WTERMSIG(st));
		ck_assert_int_lt(WEXITSTATUS(st), 2);
		shm_full += WEXITSTATUS(st) == 0;
	}
	ck_assert_int_ge(shm_full, 1);
	dmem_pool_destroy(a);
	dmem_pool_destroy(b);
}
END_TEST

/* Take every free byte of /dev/shm with a plain file, as another tenant
 * writing there after start-up would. */
static void fill_shm(const char *path)
{
	static char chunk[64 << 10];
	int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);

	ck_assert_int_ge(fd, 0);
	while (write(fd, chunk, sizeof chunk) > 0)
		;
	close(fd);
}

START_TEST(filler_after_creation_gives_full_pool_error)
{
	const char *filler = "/dev/shm/other-tenant";
	dmem_pool_t *p;
	struct timespec dl;
	void *x, *y;
	pid_t pid;
	int st;

	if (small_shm(16))
		return;
	p = dmt_pool("filler", 12 * MiB);
	ck_assert_int_eq(dmem_alloc(p, MiB, 0, &x), 0);
	memset(x, 1, MiB);
	fill_shm(filler);
	/* What was committed stays usable; beyond it, a clear error. */
	ck_assert_int_eq(dmem_free(p, x), 0);
	ck_assert_int_eq(dmem_alloc(p, MiB, 0, &x), 0);
	memset(x, 2, MiB);
	ck_assert_int_eq(dmem_alloc(p, 6 * MiB, 0, &y), -DMEM_E_NOSPACE);
	ck_assert_ptr_nonnull(strstr(dmem_errmsg(), "/dev/shm has only"));
	ck_assert_ptr_nonnull(strstr(dmem_errmsg(), "DRAGON_DEFAULT_SEG_SZ"));
	dmem_deadline_after(100000000, &dl);
	ck_assert_int_eq(dmem_alloc_timed(p, 6 * MiB, 0, &dl, &y), -ETIMEDOUT);
	ck_assert_ptr_nonnull(strstr(dmem_errmsg(), "/dev/shm has only"));
	/* A waiting allocation gets the space once the other tenant lets go
	 * of it, although no free in this pool wakes it. */
	if ((pid = fork()) == 0) {
		usleep(200000);
		unlink(filler);
		dmt_exit(p, NULL, 0);
	}
	dmem_deadline_after(30ull * 1000000000, &dl);
	ck_assert_int_eq(dmem_alloc_timed(p, 6 * MiB, 0, &dl, &y), 0);
	memset(y, 3, 6 * MiB);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_int_eq(dmem_pool_check(p), 0);
	dmem_pool_destroy(p);
}
END_TEST

int main(void)
{
	TCase *tc;
	Suite *s = dmt_suite("dmem_commit", "commit", 60, &tc);

	tcase_add_test(tc, two_pools_overcommit_shm_without_sigbus);
	tcase_add_test(tc, filler_after_creation_gives_full_pool_error);
	return dmt_run(s);
}
