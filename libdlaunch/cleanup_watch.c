/* dragon-cleanup --when-gone PID --instance ID: the watchdog of a runtime
 * embedded in process PID, or of a launcher (an embedded runtime lives in
 * its owner's threads, so when the owner is killed nothing else would end
 * its processes or remove its segments).
 *
 * It detaches, waits on a pidfd of the owner, and once the owner is gone
 * does the cleanup of instance ID — unless the runtime's own segments are
 * gone too, which means the owner stopped it: then it leaves quietly.
 * With --log PATH (the launcher's log), it also removes that file if the
 * owner left it empty.
 *
 * Unlike a plain dragon-cleanup, it ends every process of this user whose
 * environment names ID and that started before the owner was gone, not
 * only those in the runtime record: the owner told it the instance, and a
 * process the owner started just before it died may not be recorded yet.
 */
#define _GNU_SOURCE
#include "config.h"
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dragon/dmem.h>
#include "cleanup.h"
#include "rtrec.h"

/* The segments every running runtime has: while one of them exists the
 * runtime was not stopped (libdlaunch makes the record first, then the
 * default pool, and removes the infrastructure pool, then the record,
 * last). */
static const char *const runtime_segments[] = {DLAUNCH_REC_NAME, "default",
					       "infra"};

#define MAX_TRACKED    4096
/* After the grace period: rounds of SIGKILL to the instance's processes
 * (and to those they started meanwhile), each waiting this long for them
 * to end, before the watchdog gives up on stragglers. */
#define KILL_ROUNDS    20
#define KILL_WAIT_S    1.0
/* Between two scans that find no new process of the instance. */
#define SCAN_SETTLE_NS (100 * 1000 * 1000)

struct tracked {
	pid_t pid;
	int fd; /* pidfd; -1 once the process has ended */
};

/* True while one of the runtime's own segments of the instance exists. */
static bool runtime_left(const struct opts *o)
{
	char name[DMEM_SEGNAME_MAX], path[sizeof SHM_DIR + DMEM_SEGNAME_MAX];
	struct stat st;

	for (size_t i = 0;
	     i < sizeof runtime_segments / sizeof runtime_segments[0]; i++) {
		if (dmem_segname_format(NULL, o->instance, runtime_segments[i],
					name, sizeof name) < 0)
			continue;
		snprintf(path, sizeof path, SHM_DIR "/%s", name);
		if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
		    st.st_uid == getuid())
			return true;
	}
	return false;
}

/* The owner's pid names a process that started after the owner was gone. */
static bool owner_pid_reused(const struct opts *o)
{
	return o->gone_at && dlaunch__proc_start(o->when_gone) > o->gone_at;
}

static bool tracked_pid(const struct tracked *t, int n, pid_t pid)
{
	for (int i = 0; i < n; i++)
		if (t[i].pid == pid)
			return true;
	return false;
}

/* Send signo to every process of the runtime that is not in t[] yet and
 * add it there.  The runtime's processes are those cleanup_mark() finds
 * (from the runtime record, re-read each time), the processes already in
 * t[] and their descendants; only those that started before the owner
 * was gone: a later one belongs to a runtime that reuses the name (an
 * instance is named after its owner's pid, which a new process can have
 * once the owner is gone).  Each is signalled through a pidfd opened
 * before its start time is checked again, so a pid reused since the scan
 * is never hit.  Returns how many were added. */
static int signal_new(const struct opts *o, struct rtrec *rec,
		      struct tracked *t, int *n, int signo)
{
	size_t np;
	struct pinfo *ps = cleanup_snapshot(&np);
	int added = 0;

	if (!ps)
		return 0;
	cleanup_rec_load(o->instance, rec);
	for (size_t i = 0; i < np; i++)
		for (int j = 0; j < *n && !ps[i].mark; j++)
			ps[i].mark = t[j].fd >= 0 && t[j].pid == ps[i].pid;
	cleanup_mark(o->instance, rec, false, o->gone_at, ps, np);
	for (size_t i = 0; i < np && *n < MAX_TRACKED; i++) {
		pid_t pid = ps[i].pid;
		int fd;

		if (!ps[i].mark || tracked_pid(t, *n, pid))
			continue;
		fd = cleanup_pidfd_open(pid);
		if (fd < 0)
			continue;
		if (dlaunch__proc_start(pid) != ps[i].start) {
			close(fd);
			continue;
		}
		printf("%s process %d (instance %s)\n",
		       signo == SIGKILL ? "killing" : "ending", (int)pid,
		       o->instance);
		cleanup_pidfd_signal(fd, signo);
		t[(*n)++] = (struct tracked){pid, fd};
		added++;
	}
	free(ps);
	return added;
}

/* Wait until every process in t[] has ended or the deadline has passed;
 * returns how many still run. */
static int wait_ended(struct tracked *t, int n, double deadline)
{
	static struct pollfd p[MAX_TRACKED];
	static int idx[MAX_TRACKED];

	for (;;) {
		double rest = deadline - cleanup_now();
		int k = 0, ms = rest > 0 ? (int)(rest * 1e3) + 1 : 0;

		for (int i = 0; i < n; i++) {
			if (t[i].fd < 0)
				continue;
			p[k] = (struct pollfd){.fd = t[i].fd, .events = POLLIN};
			idx[k++] = i;
		}
		if (!k)
			return 0;
		if (poll(p, (nfds_t)k, ms) < 0 && errno != EINTR)
			return k;
		for (int j = 0; j < k; j++) {
			if (p[j].revents) {
				close(t[idx[j]].fd);
				t[idx[j]].fd = -1;
			}
		}
		if (cleanup_now() >= deadline) {
			int still = 0;
			for (int i = 0; i < n; i++)
				still += t[i].fd >= 0;
			return still;
		}
	}
}

/* End the instance's processes: SIGTERM, o->grace seconds to end, then
 * SIGKILL.  Processes they start meanwhile are found by scanning again. */
static void end_instance(const struct opts *o)
{
	static struct tracked t[MAX_TRACKED];
	struct rtrec rec = {0};
	const struct timespec settle = {0, SCAN_SETTLE_NS};
	double deadline = cleanup_now() + o->grace;
	int n = 0, fresh, left = 0, quiet = 0;

	/* A process started just before the owner died can still be in its
	 * exec, its environment not readable yet: a scan that finds nothing
	 * new is trusted once another one, a moment later, agrees. */
	do {
		fresh = signal_new(o, &rec, t, &n, SIGTERM);
		quiet = fresh ? 0 : quiet + 1;
		left = wait_ended(t, n, deadline);
		if (!left && quiet < 2)
			nanosleep(&settle, NULL);
	} while (!left && quiet < 2 && cleanup_now() < deadline);
	for (int round = 0; round < KILL_ROUNDS && (left || fresh); round++) {
		for (int i = 0; i < n; i++) {
			if (t[i].fd < 0)
				continue;
			if (!round)
				printf("killing process %d (instance %s)\n",
				       (int)t[i].pid, o->instance);
			cleanup_pidfd_signal(t[i].fd, SIGKILL);
		}
		fresh = signal_new(o, &rec, t, &n, SIGKILL);
		left = wait_ended(t, n, cleanup_now() + KILL_WAIT_S);
	}
	for (int i = 0; i < n; i++)
		if (t[i].fd >= 0)
			close(t[i].fd);
	free(rec.slots);
}

/* The owner's log, if it left it empty.  A file changed after the owner
 * was gone is another process's (a new launcher with the same pid). */
static void remove_empty_log(const struct opts *o)
{
	struct stat st;

	if (!o->log || lstat(o->log, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_uid != getuid() || st.st_size != 0)
		return;
	if (st.st_mtim.tv_sec > o->gone_wall.tv_sec ||
	    (st.st_mtim.tv_sec == o->gone_wall.tv_sec &&
	     st.st_mtim.tv_nsec > o->gone_wall.tv_nsec))
		return;
	printf("removing the empty log %s\n", o->log);
	unlink(o->log);
}

/* The watchdog: returns in the caller once the watch is set up (the exit
 * status of dragon-cleanup says whether it is); the watch goes on in a
 * detached process, so that it is nobody's child (a wait for any child in
 * the owner does not find it) and the terminal's signals do not reach
 * it. */
int cleanup_watch_owner(struct opts *o)
{
	bool owner_is_parent = getppid() == o->when_gone;
	int fd = cleanup_pidfd_open(o->when_gone);
	pid_t pid;

	if (fd < 0 && errno != ESRCH) {
		fprintf(stderr,
			"dragon-cleanup: cannot watch process %d: pidfd_open: "
			"%s (Linux 5.3 or later is needed)\n",
			(int)o->when_gone, strerror(errno));
		return 1;
	}
	/* Started by the owner, which died before the pidfd was open: the
	 * pid may belong to someone else now. */
	if (fd >= 0 && owner_is_parent && getppid() != o->when_gone) {
		close(fd);
		fd = -1;
	}
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		fprintf(stderr,
			"dragon-cleanup: cannot start the watchdog: "
			"fork: %s\n",
			strerror(errno));
		return 1;
	}
	if (pid > 0)
		return 0;
	setsid();
	if (fd >= 0) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		while (poll(&p, 1, -1) < 0 && errno == EINTR)
			;
		close(fd);
		o->gone_at = dlaunch__ticks_now();
	}
	clock_gettime(CLOCK_REALTIME, &o->gone_wall);
	remove_empty_log(o);
	/* The owner stopped the runtime before it went: nothing is the
	 * runtime's any more (processes that merely inherited its variables
	 * are left alone). */
	if (!runtime_left(o))
		return 0;
	end_instance(o);
	/* A new process has the owner's pid: if it started a runtime of its
	 * own, that one has the same name and its segments are not ours to
	 * remove (it removed the dead runtime's when it started). */
	if (owner_pid_reused(o)) {
		printf("process %d is a new process: the segments of instance "
		       "%s are left (dragon-cleanup --instance %s removes "
		       "them once no runtime of that name runs)\n",
		       (int)o->when_gone, o->instance, o->instance);
		return 0;
	}
	return cleanup_remove_segments(o, o->instance) < 0 ? 1 : 0;
}
