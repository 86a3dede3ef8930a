/* The launcher's start-up watchdog.
 *
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
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
