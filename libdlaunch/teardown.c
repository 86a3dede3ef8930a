/* Ending a runtime: every process it started is asked to stop, given a
 * deadline, then killed; adopted orphans too.  Only then are the service
 * threads stopped and the segments removed, so that no process is left
 * holding a mapping of a pool the runtime no longer knows about, and every
 * byte of forwarded output has been written.
 */
#define _GNU_SOURCE
#include "config.h"
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "svc.h"

/* After SIGKILL, how long processes and pipes get to go away. */
#define KILL_GRACE_NS (5ull * 1000000000ull)

static struct timespec deadline_after(uint64_t ns)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	if (ns == DLAUNCH_FOREVER) {
		t.tv_sec = -1;
		return t;
	}
	t.tv_sec += (time_t)(ns / 1000000000u);
	t.tv_nsec += (long)(ns % 1000000000u);
	if (t.tv_nsec >= 1000000000) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000;
	}
	return t;
}

/* Wait (lock held) until nothing runs (streams too, if asked). */
static bool wait_idle(dlaunch__server_t *s, uint64_t ns, bool streams)
{
	struct timespec d = deadline_after(ns);

	while (dlaunch__proc_nrunning(s) || (streams && s->live_streams > 0)) {
		int rc = d.tv_sec < 0 ? pthread_cond_wait(&s->changed, &s->lock)
				      : pthread_cond_timedwait(&s->changed,
							       &s->lock, &d);
		if (rc == ETIMEDOUT)
			return false;
	}
	return true;
}

/* Kill every child of this process (adopted orphans included); returns how
 * many were signalled.  A child's pid cannot be reused before we reap it. */
static int kill_children(void)
{
	char path[300], buf[512], *p;
	struct dirent *de;
	DIR *d = opendir("/proc");
	int n = 0;
	long ppid;

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		FILE *f;
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
		f = fopen(path, "re");
		if (!f)
			continue;
		p = fgets(buf, sizeof buf, f) ? strrchr(buf, ')') : NULL;
		fclose(f);
		if (p && sscanf(p + 2, "%*c %ld", &ppid) == 1 &&
		    ppid == (long)getpid()) {
			kill((pid_t)atol(de->d_name), SIGKILL);
			n++;
		}
	}
	closedir(d);
	return n;
}

static void end_processes(dlaunch__server_t *s, uint64_t timeout_ns)
{
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	if (dlaunch__proc_nrunning(s)) {
		dlaunch__log(DLAUNCH_LOG_INFO,
			     "teardown: SIGTERM to %d processes",
			     dlaunch__proc_nrunning(s));
		dlaunch__proc_signal_all(s, SIGTERM);
	}
	if (!wait_idle(s, timeout_ns, false)) {
		dlaunch__log(DLAUNCH_LOG_WARNING,
			     "teardown: %d processes still running at the "
			     "deadline: SIGKILL",
			     dlaunch__proc_nrunning(s));
		dlaunch__proc_signal_all(s, SIGKILL);
		wait_idle(s, KILL_GRACE_NS, false);
	}
	pthread_mutex_unlock(&s->lock);
	/* Orphans: kill, let the I/O thread reap, repeat for their own. */
	for (int round = 0; s->adopt && round < 50 && kill_children(); round++)
		usleep(10000);
	/* What is left of the output is in the pipes: forward it, without
	 * waiting for writers that are not ours (an embedded runtime's
	 * orphans live on). */
	dlaunch__io_drain(s);
	pthread_mutex_lock(&s->lock);
	if (!wait_idle(s, KILL_GRACE_NS, true))
		dlaunch__log(DLAUNCH_LOG_WARNING,
			     "teardown: output of %d streams cut short",
			     s->live_streams);
	pthread_mutex_unlock(&s->lock);
}

DLAUNCH_EXPORT int dlaunch_runtime_stop(dlaunch_t *rt, uint64_t timeout_ns)
{
	struct dlaunch__runtime *r;

	if (!rt || !rt->owned)
		return dlaunch__fail(-EINVAL,
				     "dlaunch_runtime_stop: not a "
				     "handle from dlaunch_runtime_start");
	/* First the handle's own calls, blocked in other threads: they
	 * return -DLAUNCH_E_CLOSED now (not when their process ends) and
	 * leave, so nothing below is freed under them. */
	if (dlaunch__close(rt, "dlaunch_runtime_stop"))
		return -DLAUNCH_E_CLOSED;
	r = rt->owned;
	end_processes(dlaunch__runtime_server(r), timeout_ns);
	/* Their process ended: process-end watchers of this process finish
	 * while the services can still answer them. */
	dlaunch__exit_fd_drain(KILL_GRACE_NS);
	rt->owned = NULL;
	dlaunch__disconnect(rt);
	dlaunch__log(DLAUNCH_LOG_INFO, "runtime %s stopped",
		     dlaunch__runtime_server(r)->instance);
	dlaunch__runtime_free(r);
	return 0;
}
