/* dragon-cleanup: end this user's leftover Dragon runtime processes and
 * remove this user's Dragon segments, and nothing else.
 *
 * A runtime process is one of this uid whose environment names a runtime
 * (DRAGON_INSTANCE, set in everything the runtime starts), or a launcher
 * (command name dragon).  A segment is a regular file in /dev/shm owned by
 * this uid and named dragon.<user>.<instance>.<name> — the naming every
 * Dragon segment has, which dmem_segname_match() recognises.  --instance
 * narrows both to one runtime.
 *
 * --when-gone PID makes it the watchdog of a runtime embedded in process
 * PID (an embedded runtime lives in its owner's threads, so when the owner
 * is killed nothing else would end its processes or remove its segments).
 * It detaches, waits on a pidfd of the owner, and once the owner is gone
 * does the --instance cleanup — unless the runtime's own segments are gone
 * too, which means the owner stopped it: then it leaves quietly.  With
 * --log PATH (the launcher's log), it also removes that file if the owner
 * left it empty.
 */
#define _GNU_SOURCE
#include "config.h"
#include <ctype.h>
#include <stdbool.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <dragon/dmem.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

#define SHM_DIR "/dev/shm"

/* The segments every running runtime has: while one of them exists the
 * runtime was not stopped (libdlaunch creates the default pool first and
 * removes the infrastructure pool last). */
static const char *const runtime_segments[] = {"default", "infra"};

struct opts {
	int dry_run;
	const char *instance;
	pid_t when_gone; /* watch this owner; 0: clean up now */
	double grace;	 /* seconds between SIGTERM and SIGKILL (watchdog) */
	/* When the watchdog saw its owner gone, in clock ticks since boot
	 * (the unit of a process's start time); 0: not known. */
	unsigned long long gone_at;
	const char *log;	   /* the owner's log, removed if left empty */
	struct timespec gone_wall; /* when the owner was seen gone */
};

/* The value of DRAGON_INSTANCE in /proc/<pid>/environ, or "". */
static void proc_instance(const char *pid, char *out, size_t len)
{
	char path[300], buf[65536];
	ssize_t n;
	int fd;

	out[0] = '\0';
	snprintf(path, sizeof path, "/proc/%s/environ", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	for (ssize_t i = 0; n > 0 && i < n; i += (ssize_t)strlen(buf + i) + 1) {
		buf[n] = '\0';
		if (strncmp(buf + i, "DRAGON_INSTANCE=", 16) == 0) {
			snprintf(out, len, "%s", buf + i + 16);
			return;
		}
	}
}

static void proc_comm(const char *pid, char *out, size_t len)
{
	char path[300];
	FILE *f;

	out[0] = '\0';
	snprintf(path, sizeof path, "/proc/%s/comm", pid);
	f = fopen(path, "re");
	if (f) {
		if (fgets(out, (int)len, f))
			out[strcspn(out, "\n")] = '\0';
		fclose(f);
	}
}

/* Launchers name their instance rt<pid>x...: with --instance, only the
 * launcher whose pid is in it matches. */
static int is_target(const struct opts *o, const char *pid, char *why,
		     size_t len)
{
	char inst[128], comm[64];
	bool launcher;

	proc_instance(pid, inst, sizeof inst);
	proc_comm(pid, comm, sizeof comm);
	launcher = !strcmp(comm, "dragon") || !strcmp(comm, "lt-dragon");
	if (o->instance) {
		char mine[300];
		snprintf(mine, sizeof mine, "rt%sx", pid);
		if (!strcmp(inst, o->instance) ||
		    (launcher && !strncmp(o->instance, mine, strlen(mine)))) {
			snprintf(why, len, "%s, instance %s", comm,
				 o->instance);
			return 1;
		}
		return 0;
	}
	if (inst[0] || launcher) {
		snprintf(why, len, "%s%s%s", comm, inst[0] ? ", instance " : "",
			 inst);
		return 1;
	}
	return 0;
}

static int end_processes(const struct opts *o)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	char path[300], why[256];
	struct stat st;
	int n = 0;

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		pid_t pid;
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		pid = (pid_t)atol(de->d_name);
		snprintf(path, sizeof path, "/proc/%s", de->d_name);
		if (pid == getpid() || pid == getppid() ||
		    stat(path, &st) < 0 || st.st_uid != getuid())
			continue;
		if (!is_target(o, de->d_name, why, sizeof why))
			continue;
		printf("%s process %d (%s)\n",
		       o->dry_run ? "would kill" : "killing", (int)pid, why);
		if (!o->dry_run)
			kill(pid, SIGKILL);
		n++;
	}
	closedir(d);
	return n;
}

static int remove_segments(const struct opts *o)
{
	DIR *d = opendir(SHM_DIR);
	struct dirent *de;
	char path[512];
	struct stat st;
	int n = 0, bad = 0;

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		if (dmem_segname_match(de->d_name, NULL, o->instance) != 1)
			continue;
		snprintf(path, sizeof path, SHM_DIR "/%s", de->d_name);
		if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode) ||
		    st.st_uid != getuid())
			continue;
		printf("%s %s\n", o->dry_run ? "would remove" : "removing",
		       path);
		if (!o->dry_run && unlink(path) < 0 && errno != ENOENT) {
			fprintf(stderr, "dragon-cleanup: %s: %s\n", path,
				strerror(errno));
			bad = 1;
		}
		n++;
	}
	closedir(d);
	return bad ? -1 : n;
}

/* ---- the watchdog of an embedded runtime (--when-gone) ---------------- */

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

static int pidfd_open_pid(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

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

/* The start time of process pid (/proc/PID/stat, field 22) in clock ticks
 * since boot, or 0. */
static unsigned long long proc_start(const char *pid)
{
	char path[300], buf[1024], *p;
	unsigned long long start = 0;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%s/stat", pid);
	if (!(f = fopen(path, "re")))
		return 0;
	p = fgets(buf, sizeof buf, f) ? strrchr(buf, ')') : NULL;
	fclose(f);
	/* after the command: state (field 3) ... starttime (field 22) */
	if (!p || sscanf(p + 2,
			 "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
			 "%*u %*u %*d %*d %*d %*d %*d %*d %llu",
			 &start) != 1)
		return 0;
	return start;
}

static unsigned long long ticks_since_boot(void)
{
	unsigned long long hz = (unsigned long long)sysconf(_SC_CLK_TCK);
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (unsigned long long)ts.tv_sec * hz +
	       (unsigned long long)ts.tv_nsec / (1000000000ull / hz);
}

/* A process of the instance: its environment names it, and (for the
 * watchdog) it started before the owner was gone.  A later one belongs to
 * a runtime that reuses the name: an instance is named after its owner's
 * pid, which a new process can have once the owner is gone. */
static bool of_instance(const struct opts *o, const char *pid)
{
	char inst[128];

	proc_instance(pid, inst, sizeof inst);
	if (strcmp(inst, o->instance))
		return false;
	return !o->gone_at || proc_start(pid) <= o->gone_at;
}

/* The owner's pid names a process that started after the owner was gone. */
static bool owner_pid_reused(const struct opts *o)
{
	char pid[32];

	snprintf(pid, sizeof pid, "%d", (int)o->when_gone);
	return o->gone_at && proc_start(pid) > o->gone_at;
}

static bool tracked_pid(const struct tracked *t, int n, pid_t pid)
{
	for (int i = 0; i < n; i++)
		if (t[i].pid == pid)
			return true;
	return false;
}

/* Send signo to every process of the instance that is not in t[] yet and
 * add it there.  Each is signalled through a pidfd opened before its owner
 * and environment are checked again, so a pid reused since the scan is
 * never hit.  Returns how many were added. */
static int signal_new(const struct opts *o, struct tracked *t, int *n,
		      int signo)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	char path[300];
	struct stat st;
	int added = 0;

	while (d && (de = readdir(d)) && *n < MAX_TRACKED) {
		pid_t pid;
		int fd;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		pid = (pid_t)atol(de->d_name);
		snprintf(path, sizeof path, "/proc/%s", de->d_name);
		if (pid == getpid() || tracked_pid(t, *n, pid) ||
		    stat(path, &st) < 0 || st.st_uid != getuid() ||
		    !of_instance(o, de->d_name))
			continue;
		fd = pidfd_open_pid(pid);
		if (fd < 0)
			continue;
		if (stat(path, &st) < 0 || st.st_uid != getuid() ||
		    !of_instance(o, de->d_name)) {
			close(fd);
			continue;
		}
		printf("%s process %d (instance %s)\n",
		       signo == SIGKILL ? "killing" : "ending", (int)pid,
		       o->instance);
		syscall(SYS_pidfd_send_signal, fd, signo, NULL, 0);
		t[(*n)++] = (struct tracked){pid, fd};
		added++;
	}
	if (d)
		closedir(d);
	return added;
}

/* Wait until every process in t[] has ended or the deadline has passed;
 * returns how many still run. */
static int wait_ended(struct tracked *t, int n, double deadline)
{
	static struct pollfd p[MAX_TRACKED];
	static int idx[MAX_TRACKED];

	for (;;) {
		double rest = deadline - now();
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
		if (now() >= deadline) {
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
	const struct timespec settle = {0, SCAN_SETTLE_NS};
	double deadline = now() + o->grace;
	int n = 0, fresh, left = 0, quiet = 0;

	/* A process started just before the owner died can still be in its
	 * exec, its environment not readable yet: a scan that finds nothing
	 * new is trusted once another one, a moment later, agrees. */
	do {
		fresh = signal_new(o, t, &n, SIGTERM);
		quiet = fresh ? 0 : quiet + 1;
		left = wait_ended(t, n, deadline);
		if (!left && quiet < 2)
			nanosleep(&settle, NULL);
	} while (!left && quiet < 2 && now() < deadline);
	for (int round = 0; round < KILL_ROUNDS && (left || fresh); round++) {
		for (int i = 0; i < n; i++) {
			if (t[i].fd < 0)
				continue;
			if (!round)
				printf("killing process %d (instance %s)\n",
				       (int)t[i].pid, o->instance);
			syscall(SYS_pidfd_send_signal, t[i].fd, SIGKILL, NULL,
				0);
		}
		fresh = signal_new(o, t, &n, SIGKILL);
		left = wait_ended(t, n, now() + KILL_WAIT_S);
	}
	for (int i = 0; i < n; i++)
		if (t[i].fd >= 0)
			close(t[i].fd);
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
static int watch_owner(struct opts *o)
{
	bool owner_is_parent = getppid() == o->when_gone;
	int fd = pidfd_open_pid(o->when_gone);
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
		o->gone_at = ticks_since_boot();
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
	return remove_segments(o) < 0 ? 1 : 0;
}

static int usage(FILE *f, int code)
{
	fprintf(f,
		"Usage: dragon-cleanup [--dry-run] [--instance ID]\n"
		"       dragon-cleanup --when-gone PID --instance ID "
		"[--grace SECONDS] [--log PATH]\n"
		"End this user's Dragon runtime processes and remove this "
		"user's Dragon\nsegments (/dev/shm/dragon.<user>.*).\n\n"
		"  -n, --dry-run       list what would be done, do nothing\n"
		"  -i, --instance ID   only the runtime instance ID\n"
		"  -w, --when-gone PID watch in the background: once process "
		"PID has\n"
		"                      ended without stopping runtime ID, "
		"clean up ID\n"
		"  -g, --grace SECONDS between SIGTERM and SIGKILL with "
		"--when-gone\n"
		"                      (default 5)\n"
		"  -l, --log PATH      with --when-gone: remove PATH too if "
		"PID left it empty\n"
		"  -h, --help          show this help\n"
		"  -V, --version       show the version\n");
	return code;
}

int main(int argc, char **argv)
{
	static const struct option longs[] = {
		{"dry-run", no_argument, 0, 'n'},
		{"instance", required_argument, 0, 'i'},
		{"when-gone", required_argument, 0, 'w'},
		{"grace", required_argument, 0, 'g'},
		{"log", required_argument, 0, 'l'},
		{"help", no_argument, 0, 'h'},
		{"version", no_argument, 0, 'V'},
		{0, 0, 0, 0}};
	struct opts o = {.grace = 5.0};
	char *end;
	long pid;
	int c, segs;

	while ((c = getopt_long(argc, argv, "ni:w:g:l:hV", longs, NULL)) !=
	       -1) {
		switch (c) {
		case 'n':
			o.dry_run = 1;
			break;
		case 'i':
			if (!*optarg || strchr(optarg, '/') ||
			    strchr(optarg, '.'))
				return usage(stderr, 2);
			o.instance = optarg;
			break;
		case 'w':
			pid = strtol(optarg, &end, 10);
			if (*end || pid <= 0 || pid > 0x7fffffff)
				return usage(stderr, 2);
			o.when_gone = (pid_t)pid;
			break;
		case 'g':
			o.grace = strtod(optarg, &end);
			if (*end || !(o.grace >= 0 && o.grace <= 3600))
				return usage(stderr, 2);
			break;
		case 'l':
			if (!*optarg)
				return usage(stderr, 2);
			o.log = optarg;
			break;
		case 'h':
			return usage(stdout, 0);
		case 'V':
			printf("dragon-cleanup %s\n", PACKAGE_VERSION);
			return 0;
		default:
			return usage(stderr, 2);
		}
	}
	if (optind < argc || (o.when_gone && (!o.instance || o.dry_run)) ||
	    (o.log && !o.when_gone))
		return usage(stderr, 2);
	if (o.when_gone)
		return watch_owner(&o);
	end_processes(&o);
	/* Give the killed processes a moment to let go of their segments
	 * before they are removed (names go at once either way). */
	if (!o.dry_run)
		usleep(100000);
	segs = remove_segments(&o);
	return segs < 0 ? 1 : 0;
}
