/* libdlaunch: an embedded runtime starting, waiting for and signalling real
 * processes, the registry, and children that attach from the environment. */
#define _GNU_SOURCE
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dragon/dlaunch.h>
#include "dlaunch_test.h"

static char self[4096];

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static int count_segments(const char *instance)
{
	DIR *d = opendir("/dev/shm");
	struct dirent *de;
	char key[128];
	int n = 0;

	snprintf(key, sizeof key, ".%s.", instance);
	while ((de = readdir(d)))
		n += strstr(de->d_name, key) != NULL;
	closedir(d);
	return n;
}

static pid_t spawn_sh(dlaunch_t *rt, const char *script)
{
	char *argv[] = {"sh", "-c", (char *)script, NULL};
	pid_t pid = 0;
	int rc = dlaunch_spawn(rt, "/bin/sh", argv, NULL, &pid);

	ck_assert_msg(rc == 0, "spawn: %s", dlaunch_errmsg());
	ck_assert_int_gt(pid, 0);
	return pid;
}

START_TEST(exit_code_and_cleanup)
{
	dlaunch_t *rt = dlt_start(0);
	dlaunch_status_t st;
	char inst[64];
	pid_t pid = spawn_sh(rt, "exit 7");

	snprintf(inst, sizeof inst, "%s", dlaunch_instance(rt));
	ck_assert_int_eq(dlaunch_wait(rt, pid, DLAUNCH_FOREVER, &st), 0);
	ck_assert_int_eq(st.exited, 1);
	ck_assert_int_eq(st.code, 7);
	ck_assert_int_eq(dlaunch_status_code(&st), 7);
	ck_assert_int_gt(count_segments(inst), 0);
	ck_assert_int_eq(dlaunch_runtime_stop(rt, 5 * SEC), 0);
	ck_assert_int_eq(count_segments(inst), 0);
}
END_TEST

START_TEST(signal_and_timeouts)
{
	dlaunch_t *rt = dlt_start(0);
	dlaunch_status_t st;
	pid_t pid = spawn_sh(rt, "exec sleep 30");

	ck_assert_int_eq(dlaunch_wait(rt, pid, 0, &st), -EAGAIN);
	ck_assert_int_eq(dlaunch_wait(rt, pid, SEC / 20, &st), -ETIMEDOUT);
	ck_assert_int_eq(dlaunch_signal(rt, pid, SIGTERM), 0);
	ck_assert_int_eq(dlaunch_wait(rt, pid, DLAUNCH_FOREVER, &st), 0);
	ck_assert_int_eq(st.exited, 0);
	ck_assert_int_eq(st.signo, SIGTERM);
	ck_assert_int_eq(dlaunch_status_code(&st), -SIGTERM);
	/* Collected by its spawner, and still there for a second wait. */
	memset(&st, 0, sizeof st);
	ck_assert_int_eq(dlaunch_wait(rt, pid, 0, &st), 0);
	ck_assert_int_eq(st.signo, SIGTERM);
	ck_assert_int_eq(dlaunch_signal(rt, 1, SIGTERM), -DLAUNCH_E_NOPROC);
	dlaunch_runtime_stop(rt, 5 * SEC);
}
END_TEST

START_TEST(proc_fd_is_a_sentinel)
{
	dlaunch_t *rt = dlt_start(0);
	dlaunch_status_t st;
	pid_t pid = spawn_sh(rt, "exec sleep 30");
	struct pollfd p = {.events = POLLIN};

	ck_assert_int_eq(dlaunch_proc_fd(rt, pid, &p.fd), 0);
	ck_assert_int_eq(poll(&p, 1, 0), 0);
	ck_assert_int_eq(dlaunch_signal(rt, pid, SIGKILL), 0);
	ck_assert_int_eq(poll(&p, 1, 30000), 1);
	close(p.fd);
	ck_assert_int_eq(dlaunch_wait(rt, pid, DLAUNCH_FOREVER, &st), 0);
	ck_assert_int_eq(st.signo, SIGKILL);
	dlaunch_runtime_stop(rt, 5 * SEC);
}
END_TEST

START_TEST(spawn_failures)
{
	dlaunch_t *rt = dlt_start(0);
	char *argv[] = {"nope", NULL};
	dlaunch_spawn_attr_t a = {.field_mask = DLAUNCH_SPAWN_ATTR_STDIO,
				  .stdio = {0, 0, DLAUNCH_STDIO_FILE}};
	pid_t pid;

	ck_assert_int_eq(
		dlaunch_spawn(rt, "/nonexistent/prog", argv, NULL, &pid),
		-ENOENT);
	ck_assert_ptr_nonnull(strstr(dlaunch_errmsg(), "/nonexistent/prog"));
	ck_assert_int_eq(dlaunch_spawn(rt, "/bin/true", argv, &a, &pid),
			 -EINVAL);
	ck_assert_int_eq(dlaunch_spawn(rt, "/bin/true", NULL, NULL, &pid),
			 -EINVAL);
	dlaunch_runtime_stop(rt, 5 * SEC);
}
END_TEST

START_TEST(env_cwd_and_files)
{
	dlaunch_t *rt = dlt_start(0);
	char out[] = "/tmp/dlaunch-test-XXXXXX";
	char *env[] = {"DLTEST_VALUE=42", NULL};
	char *argv[] = {"sh", "-c",
			"echo $DLTEST_VALUE $(pwd) ${DRAGON_INSTANCE:+inst}",
			NULL};
	dlaunch_spawn_attr_t a = {
		.field_mask = DLAUNCH_SPAWN_ATTR_ENV | DLAUNCH_SPAWN_ATTR_CWD |
			      DLAUNCH_SPAWN_ATTR_STDIO,
		.env = env,
		.cwd = "/",
		.stdio = {0, DLAUNCH_STDIO_FILE, DLAUNCH_STDIO_STDOUT},
		.stdio_path = {NULL, out, NULL}};
	dlaunch_status_t st;
	char buf[256] = {0};
	FILE *f;
	pid_t pid;
	int fd = mkstemp(out);

	close(fd);
	ck_assert_int_eq(dlaunch_spawn(rt, "/bin/sh", argv, &a, &pid), 0);
	ck_assert_int_eq(dlaunch_wait(rt, pid, DLAUNCH_FOREVER, &st), 0);
	f = fopen(out, "r");
	ck_assert_ptr_nonnull(fgets(buf, sizeof buf, f));
	fclose(f);
	unlink(out);
	ck_assert_str_eq(buf, "42 / inst\n");
	dlaunch_runtime_stop(rt, 5 * SEC);
}
END_TEST

START_TEST(registry)
{
	dlaunch_t *rt = dlt_start(0);
	dmem_pool_desc_t d1, d2;
	char buf[64];
	size_t len;

	ck_assert_int_eq(
		dlaunch_name_register(rt, "a", DLAUNCH_KIND_BYTES, "xyz", 3),
		1);
	ck_assert_int_eq(
		dlaunch_name_register(rt, "a", DLAUNCH_KIND_BYTES, "other", 5),
		0);
	ck_assert_int_eq(dlaunch_name_lookup(rt, "a", DLAUNCH_KIND_ANY, buf,
					     sizeof buf, &len),
			 0);
	ck_assert_int_eq((int)len, 3);
	ck_assert_int_eq(memcmp(buf, "xyz", 3), 0);
	ck_assert_int_eq(dlaunch_name_lookup(rt, "a", DLAUNCH_KIND_POOL, buf,
					     sizeof buf, &len),
			 -DLAUNCH_E_KIND);
	ck_assert_int_eq(dlaunch_name_lookup(rt, "a", 0, buf, 1, &len),
			 -EMSGSIZE);
	ck_assert_int_eq(dlaunch_name_unregister(rt, "a"), 0);
	ck_assert_int_eq(dlaunch_name_lookup(rt, "a", 0, buf, sizeof buf, &len),
			 -DLAUNCH_E_NONAME);
	ck_assert_int_eq(dlaunch_pool_get(rt, "p", 1 << 20, &d1), 1);
	ck_assert_int_eq(dlaunch_pool_get(rt, "p", 0, &d2), 0);
	ck_assert_int_eq(memcmp(&d1, &d2, sizeof d1), 0);
	ck_assert_int_eq(dlaunch_default_pool(rt, &d1), 0);
	ck_assert_int_eq(d1.magic, DMEM_POOL_DESC_MAGIC);
	dlaunch_runtime_stop(rt, 5 * SEC);
}
END_TEST

/* The child side of children_attach: attach, start a grandchild, wait. */
static int child_main(void)
{
	dlaunch_t *rt;
	dlaunch_status_t st;
	char *argv[] = {"sh", "-c", "exit 5", NULL};
	pid_t pid;

	if (dlaunch_attach(NULL, &rt))
		return 100;
	if (dlaunch_name_register(rt, "child", DLAUNCH_KIND_BYTES, "c", 1) != 1)
		return 101;
	if (dlaunch_spawn(rt, "/bin/sh", argv, NULL, &pid) ||
	    dlaunch_wait(rt, pid, DLAUNCH_FOREVER, &st))
		return 102;
	dlaunch_detach(rt);
	return st.code == 5 ? 42 : 103;
}

START_TEST(children_attach)
{
	dlaunch_t *rt = dlt_start(0);
	char *argv[] = {self, "child", NULL};
	dlaunch_status_t st;
	char buf[8];
	size_t len;
	pid_t pid;

	ck_assert_int_eq(dlaunch_spawn(rt, self, argv, NULL, &pid), 0);
	ck_assert_int_eq(dlaunch_wait(rt, pid, DLAUNCH_FOREVER, &st), 0);
	ck_assert_int_eq(st.code, 42);
	ck_assert_int_eq(
		dlaunch_name_lookup(rt, "child", 0, buf, sizeof buf, &len), 0);
	dlaunch_runtime_stop(rt, 5 * SEC);
}
END_TEST

/* The child side of status_kept_for_others: wait for a pid its parent
 * started and already collected. */
static int waiter_main(const char *pidtext)
{
	dlaunch_status_t st;
	dlaunch_t *rt;
	int rc;

	if (dlaunch_attach(NULL, &rt))
		return 100;
	rc = dlaunch_wait(rt, (pid_t)atoi(pidtext), 0, &st);
	dlaunch_detach(rt);
	return rc ? 101 : st.exited && st.code == 9 ? 42 : 102;
}

START_TEST(status_kept_for_others)
{
	dlaunch_t *rt = dlt_start(0);
	pid_t pid = spawn_sh(rt, "exit 9"), w;
	char pidtext[16];
	char *argv[] = {self, "waiter", pidtext, NULL};
	dlaunch_status_t st;
	struct pollfd p = {.events = POLLIN};

	ck_assert_int_eq(dlaunch_wait(rt, pid, DLAUNCH_FOREVER, &st), 0);
	snprintf(pidtext, sizeof pidtext, "%d", (int)pid);
	ck_assert_int_eq(dlaunch_spawn(rt, self, argv, NULL, &w), 0);
	ck_assert_int_eq(dlaunch_wait(rt, w, DLAUNCH_FOREVER, &st), 0);
	ck_assert_int_eq(st.code, 42);
	/* A collected process's sentinel is ready at once. */
	ck_assert_int_eq(dlaunch_proc_fd(rt, pid, &p.fd), 0);
	ck_assert_int_eq(poll(&p, 1, 0), 1);
	close(p.fd);
	dlaunch_runtime_stop(rt, 5 * SEC);
}
END_TEST

/* Collected statuses are kept up to DLAUNCH_STATUS_KEEP, oldest dropped
 * first.  Too many spawns for valgrind's scale: there it is skipped. */
START_TEST(status_table_is_bounded)
{
	const char *sc = getenv("DRAGON_TEST_SCALE");
	dlaunch_t *rt;
	char *argv[] = {"true", NULL};
	dlaunch_status_t st;
	pid_t first = 0, pid;
	bool reused = false;

	if (sc && atof(sc) < 0.2)
		return;
	rt = dlt_start(0);
	for (int i = 0; i <= DLAUNCH_STATUS_KEEP; i++) {
		ck_assert_int_eq(
			dlaunch_spawn(rt, "/bin/true", argv, NULL, &pid), 0);
		ck_assert_int_eq(dlaunch_wait(rt, pid, DLAUNCH_FOREVER, &st),
				 0);
		if (i == 0)
			first = pid;
		else
			reused |= pid == first;
	}
	/* The newest is kept; the oldest went (unless its pid came back). */
	ck_assert_int_eq(dlaunch_wait(rt, pid, 0, &st), 0);
	if (!reused)
		ck_assert_int_eq(dlaunch_wait(rt, first, 0, &st),
				 -DLAUNCH_E_NOPROC);
	dlaunch_runtime_stop(rt, 5 * SEC);
}
END_TEST

START_TEST(attach_outside_runtime)
{
	dlaunch_t *rt;

	unsetenv("DRAGON_INSTANCE");
	ck_assert_int_eq(dlaunch_in_runtime(), 0);
	ck_assert_int_eq(dlaunch_attach(NULL, &rt), -DLAUNCH_E_NORUNTIME);
	ck_assert_int_gt((int)strlen(dlaunch_errmsg()), 0);
}
END_TEST

START_TEST(many_spawns_no_leak)
{
	dlaunch_t *rt = dlt_start(0);
	char *argv[] = {"true", NULL};
	dlaunch_status_t st;
	int n = dlt_scaled(200), fds;
	pid_t pid;

	/* Warm up so lazily made conversations are not counted. */
	ck_assert_int_eq(dlaunch_spawn(rt, "/bin/true", argv, NULL, &pid), 0);
	ck_assert_int_eq(dlaunch_wait(rt, pid, DLAUNCH_FOREVER, &st), 0);
	fds = count_fds();
	for (int i = 0; i < n; i++) {
		ck_assert_int_eq(
			dlaunch_spawn(rt, "/bin/true", argv, NULL, &pid), 0);
		ck_assert_int_eq(dlaunch_wait(rt, pid, DLAUNCH_FOREVER, &st),
				 0);
		ck_assert_int_eq(st.code, 0);
	}
	/* The last process's pipes close when the I/O thread has read them
	 * to their end, which may be just after the wait returned. */
	for (int i = 0; i < 500 && count_fds() > fds; i++)
		usleep(10000);
	/* The baseline may still have held the warm-up's pipes: no growth. */
	ck_assert_int_le(count_fds(), fds);
	dlaunch_runtime_stop(rt, 5 * SEC);
}
END_TEST

int main(int argc, char **argv)
{
	const TTest *const tests[] = {
		exit_code_and_cleanup,	 signal_and_timeouts,
		proc_fd_is_a_sentinel,	 spawn_failures,
		env_cwd_and_files,	 registry,
		children_attach,	 attach_outside_runtime,
		many_spawns_no_leak,	 status_kept_for_others,
		status_table_is_bounded,
	};

	if (argc > 1 && strcmp(argv[1], "child") == 0)
		return child_main();
	if (argc > 2 && strcmp(argv[1], "waiter") == 0)
		return waiter_main(argv[2]);
	if (!realpath("/proc/self/exe", self))
		return 1;
	return dlt_main("dlaunch_proc", 0, tests, sizeof tests / sizeof *tests);
}
