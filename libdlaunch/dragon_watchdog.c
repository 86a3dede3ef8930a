/* The launcher's watchdogs.
 *
 * Its death: dragon_guard_start() starts `dragon-cleanup --when-gone`
 * (the embedded runtime's protection, see dragon-cleanup(1)) on the
 * launcher, so that a launcher killed with SIGKILL has its processes ended
 * and its segments and empty log removed within a few seconds.
 *
 * Its start-up:
 * The runtime bounds its own start-up phases (-t reaches it as
 * startup_timeout_ns), but a call can block past any deadline — an exec
 * that hangs in the services, a pool that takes forever to map.  The
 * watchdog guards each phase the launcher waits for: if the phase is still
 * running at its deadline, it says which phase timed out, kills what the
 * launcher started, removes the instance's segments and exits with 1.  An
 * orderly teardown is not possible then: the phase that hangs may hold the
 * services' lock.
 */
#define _GNU_SOURCE
#include "config.h"
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dragon/dmem.h>
#include "launcher.h"

static struct {
	pthread_mutex_t lock;
	pthread_cond_t changed;
	const char *phase; /* NULL: nothing guarded */
	struct timespec deadline;
	double secs;
	char instance[64];
} wd = {.lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER};

/* Rounds of SIGKILL to the launcher's children, and the pause between
 * two, in which the children of killed ones are adopted by the launcher. */
#define KILL_ROUNDS   20
#define ADOPT_WAIT_US 20000

/* SIGKILL every child of the launcher (only it can have reaped them, so
 * the pids are theirs), and their children as they get adopted. */
static void kill_children(void)
{
	for (int round = 0; round < KILL_ROUNDS; round++) {
		char path[300], buf[512], *p;
		struct dirent *de;
		DIR *d = opendir("/proc");
		long ppid;
		int n = 0;

		while (d && (de = readdir(d))) {
			FILE *f;
			if (!isdigit((unsigned char)de->d_name[0]))
				continue;
			snprintf(path, sizeof path, "/proc/%s/stat",
				 de->d_name);
			if (!(f = fopen(path, "re")))
				continue;
			p = fgets(buf, sizeof buf, f) ? strrchr(buf, ')')
						      : NULL;
			fclose(f);
			if (p && sscanf(p + 2, "%*c %ld", &ppid) == 1 &&
			    ppid == (long)getpid() &&
			    kill((pid_t)atol(de->d_name), SIGKILL) == 0)
				n++;
		}
		if (d)
			closedir(d);
		if (!n)
			return;
		usleep(ADOPT_WAIT_US);
	}
}

/* This uid's segments of the instance: dragon.<user>.<instance>.<name>. */
static void remove_segments(const char *instance)
{
	char path[512];
	struct dirent *de;
	struct stat st;
	DIR *d = opendir("/dev/shm");

	while (d && (de = readdir(d))) {
		if (dmem_segname_match(de->d_name, NULL, instance) != 1)
			continue;
		snprintf(path, sizeof path, "/dev/shm/%s", de->d_name);
		if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
		    st.st_uid == getuid())
			unlink(path);
	}
	if (d)
		closedir(d);
}

static void *watch(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&wd.lock);
	for (;;) {
		if (!wd.phase) {
			pthread_cond_wait(&wd.changed, &wd.lock);
			continue;
		}
		if (pthread_cond_timedwait(&wd.changed, &wd.lock,
					   &wd.deadline) == 0)
			continue;
		if (!wd.phase)
			continue;
		char what[160], why[160];
		snprintf(what, sizeof what, "start-up phase '%s'", wd.phase);
		snprintf(why, sizeof why, "timed out after %.3f s (runtime %s)",
			 wd.secs, wd.instance);
		dragon_fail(what, why);
		kill_children();
		remove_segments(wd.instance);
		_exit(1);
	}
	return NULL;
}

int dragon_watchdog_start(const char *instance)
{
	pthread_t t;
	sigset_t all, old;
	int rc;

	snprintf(wd.instance, sizeof wd.instance, "%s", instance);
	/* Signals stay with the launcher's main thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(&t, NULL, watch, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc == 0)
		pthread_detach(t);
	return -rc;
}

void dragon_watchdog_arm(const char *phase, double secs)
{
	pthread_mutex_lock(&wd.lock);
	wd.phase = phase;
	wd.secs = secs;
	clock_gettime(CLOCK_REALTIME, &wd.deadline);
	wd.deadline.tv_sec += (time_t)secs;
	wd.deadline.tv_nsec += (long)((secs - (double)(time_t)secs) * 1e9);
	if (wd.deadline.tv_nsec >= 1000000000) {
		wd.deadline.tv_sec++;
		wd.deadline.tv_nsec -= 1000000000;
	}
	pthread_cond_signal(&wd.changed);
	pthread_mutex_unlock(&wd.lock);
}

void dragon_watchdog_disarm(void)
{
	pthread_mutex_lock(&wd.lock);
	wd.phase = NULL;
	pthread_cond_signal(&wd.changed);
	pthread_mutex_unlock(&wd.lock);
}

/* dragon-cleanup beside this program: $DRAGON_CLEANUP_PROGRAM (empty: none
 * wanted), else in the directory of the executable or, when that is the
 * build tree's .libs, the one above it.  Returns 0, 1 (none wanted) or -1
 * (not found). */
static int cleanup_program(char *out, size_t len)
{
	const char *env = getenv("DRAGON_CLEANUP_PROGRAM");
	char dir[4000], *slash;
	ssize_t n;

	if (env) {
		snprintf(out, len, "%s", env);
		return *env ? 0 : 1;
	}
	n = readlink("/proc/self/exe", dir, sizeof dir - 1);
	if (n <= 0)
		return -1;
	dir[n] = '\0';
	for (int up = 0; up < 2 && (slash = strrchr(dir, '/')); up++) {
		*slash = '\0';
		snprintf(out, len, "%s/dragon-cleanup", dir);
		if (access(out, X_OK) == 0)
			return 0;
		slash = strrchr(dir, '/');
		if (!slash || strcmp(slash, "/.libs"))
			break;
	}
	return -1;
}

int dragon_guard_spawn(const char *instance, const char *log_path, int debug,
		       pid_t *pid_out)
{
	static const int dflt[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE};
	char prog[4096], me[32];
	char *argv[] = {
		prog,	 "--when-gone",	   me,	"--instance", (char *)instance,
		"--log", (char *)log_path, NULL};
	/* dragon-cleanup reads no variable; an empty environment keeps it out
	 * of any runtime this launcher runs inside of. */
	char *envp[] = {NULL};
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t sa;
	sigset_t none, def;
	int rc;
	pid_t pid;

	*pid_out = 0;
	rc = cleanup_program(prog, sizeof prog);
	if (rc)
		return rc > 0 ? 0 : -ENOENT;
	snprintf(me, sizeof me, "%d", (int)getpid());
	if (!log_path)
		argv[5] = NULL;
	/* No descriptor of the launcher's stdio: whoever reads its output
	 * sees the end when the launcher ends, not when the watchdog does. */
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (debug) {
		posix_spawn_file_actions_adddup2(&fa, 2, 1);
	} else {
		posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY,
						 0);
		posix_spawn_file_actions_adddup2(&fa, 1, 2);
	}
	sigemptyset(&none);
	sigemptyset(&def);
	for (size_t i = 0; i < sizeof dflt / sizeof dflt[0]; i++)
		sigaddset(&def, dflt[i]);
	posix_spawnattr_init(&sa);
	posix_spawnattr_setsigmask(&sa, &none);
	posix_spawnattr_setsigdefault(&sa, &def);
	posix_spawnattr_setflags(&sa, POSIX_SPAWN_SETSIGMASK |
					      POSIX_SPAWN_SETSIGDEF);
	rc = posix_spawn(&pid, prog, &fa, &sa, argv, envp);
	posix_spawnattr_destroy(&sa);
	posix_spawn_file_actions_destroy(&fa);
	if (rc)
		return -rc;
	*pid_out = pid;
	return 0;
}

int dragon_guard_wait(pid_t pid)
{
	int status;

	/* The starter exits once the watchdog runs detached.  Reaped before
	 * the runtime makes the launcher a subreaper, so the watchdog is
	 * never adopted by it. */
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -ECHILD;
}

int dragon_guard_start(const char *instance, const char *log_path, int debug)
{
	pid_t pid = 0;
	int rc = dragon_guard_spawn(instance, log_path, debug, &pid);

	return rc || !pid ? rc : dragon_guard_wait(pid);
}
