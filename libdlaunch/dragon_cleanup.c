/* dragon-cleanup: end this user's leftover Dragon runtimes and remove
 * their segments, and nothing else.
 *
 * What is Dragon's is decided by what Dragon wrote, never by a name or an
 * environment variable a stranger could carry by accident:
 *
 * - a segment is a regular file in /dev/shm owned by this uid and named
 *   dragon.<user>.<instance>.<name>, the naming every Dragon segment has,
 *   which dmem_segname_match() recognises;
 * - a runtime is an instance with segments, and its record
 *   (dragon.<user>.<instance>.procs, rtrec.h) names its owner (the
 *   launcher, or the program the runtime is embedded in) and the processes
 *   it started or adopted, each with its start time, so that a pid the
 *   kernel gave to someone else since is never taken for one of them;
 * - a runtime's processes are those of its record, and their descendants
 *   that still carry the runtime's DRAGON_INSTANCE (a program a child ran
 *   with subprocess, say).
 *
 * A runtime whose owner runs is live and left alone, with a message that
 * says how to end it: --force ends every live runtime too, --instance ID
 * ends runtime ID whatever its state and touches nothing else.  A runtime
 * is ended whole: its owner first, then its processes, then its segments.
 * A runtime whose owner is gone is a leftover, ended without asking.
 * Segments without a record (a program that uses libdmem pools without a
 * runtime, or a runtime of an older version) are left while a process has
 * one of them mapped, removed otherwise.
 *
 * Inside a Slurm allocation it cleans every node of the allocation, each
 * by these rules, through one srun step (cleanup_slurm.c); in a PBS job
 * every node of PBS_NODEFILE through PALS's mpiexec, and with --hostfile
 * or --hostlist every host over ssh (cleanup_hosts.c); --this-node keeps
 * it to the node where it runs.
 *
 * --when-gone PID makes it the watchdog of one runtime (cleanup_watch.c).
 */
#define _GNU_SOURCE
#include "config.h"
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <dragon/dmem.h>
#include "cleanup.h"
#include "rtrec.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

/* How long killed processes get to be gone before their segments are
 * removed (a process still mapping a segment keeps its memory). */
#define KILL_WAIT_S 5.0
/* Rounds of ending a runtime's processes: a process can start one more
 * (the zygote forks its next spare) while the others are being killed. */
#define END_ROUNDS  5

/* "<node>: " before each line of a cleanup that runs on every node of an
 * allocation (--label); empty otherwise. */
static char label[300];

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;

	fputs(label, stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
}

/* ---- shared with cleanup_watch.c ----------------------------------- */

void cleanup_proc_instance(pid_t pid, char *out, size_t len)
{
	char path[64], buf[65536];
	ssize_t n;
	int fd;

	out[0] = '\0';
	snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	for (ssize_t i = 0; i < n; i += (ssize_t)strlen(buf + i) + 1) {
		if (strncmp(buf + i, "DRAGON_INSTANCE=", 16) == 0) {
			snprintf(out, len, "%s", buf + i + 16);
			return;
		}
	}
}

int cleanup_pidfd_open(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

int cleanup_pidfd_signal(int fd, int signo)
{
	return (int)syscall(SYS_pidfd_send_signal, fd, signo, NULL, 0);
}

double cleanup_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A regular file of this user in /dev/shm. */
static bool my_file(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
	       st.st_uid == getuid();
}

int cleanup_remove_segments(const struct opts *o, const char *instance)
{
	DIR *d = opendir(SHM_DIR);
	struct dirent *de;
	char path[512];
	int n = 0, bad = 0;

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		if (dmem_segname_match(de->d_name, NULL, instance) != 1)
			continue;
		snprintf(path, sizeof path, SHM_DIR "/%s", de->d_name);
		if (!my_file(path))
			continue;
		say("%s %s\n", o->dry_run ? "would remove" : "removing", path);
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

/* ---- the runtimes in /dev/shm -------------------------------------- */

enum rt_state {
	RT_LIVE,    /* its owner runs */
	RT_STALE,   /* its owner is gone */
	RT_OTHERNS, /* its owner is in another pid namespace: cannot tell */
	RT_INUSE,   /* no record; a process maps one of its segments */
	RT_UNUSED   /* no record; nobody maps its segments */
};

struct rt {
	char inst[DMEM_INSTANCE_MAX + 1];
	enum rt_state state;
	struct rtrec rec;
	pid_t user; /* RT_INUSE: a process that maps a segment */
};

/* The instance part of a segment name dmem_segname_match() accepted. */
static void instance_of(const char *seg, char *out, size_t len)
{
	const char *a = strchr(seg + strlen("dragon."), '.') + 1;
	const char *b = strchr(a, '.');

	snprintf(out, len, "%.*s", (int)(b - a), a);
}

/* The instances of this user's segments (only `only`, when given). */
static struct rt *find_runtimes(const char *only, size_t *n_out)
{
	DIR *d = opendir(SHM_DIR);
	struct rt *rts = NULL;
	struct dirent *de;
	size_t n = 0, cap = 0;
	char path[512], inst[DMEM_INSTANCE_MAX + 1];

	while (d && (de = readdir(d))) {
		size_t i;
		if (dmem_segname_match(de->d_name, NULL, only) != 1)
			continue;
		snprintf(path, sizeof path, SHM_DIR "/%s", de->d_name);
		if (!my_file(path))
			continue;
		instance_of(de->d_name, inst, sizeof inst);
		for (i = 0; i < n && strcmp(rts[i].inst, inst); i++)
			;
		if (i < n)
			continue;
		if (n == cap) {
			size_t c = cap ? 2 * cap : 16;
			struct rt *t = realloc(rts, c * sizeof *t);
			if (!t)
				break;
			rts = t;
			cap = c;
		}
		memset(&rts[n], 0, sizeof rts[n]);
		snprintf(rts[n++].inst, sizeof rts[0].inst, "%s", inst);
	}
	if (d)
		closedir(d);
	*n_out = n;
	return rts;
}

/* A process other than this one that maps a segment of instance;
 * 0 if none. */
static pid_t mapped_by(const char *inst)
{
	char prefix[DMEM_SEGNAME_MAX + 16], path[64], line[4096];
	DIR *d = opendir("/proc");
	struct dirent *de;
	pid_t found = 0;
	size_t plen;

	/* "/dev/shm/dragon.<user>.<inst>." */
	if (dmem_segname_format(NULL, inst, "x", prefix + 9,
				sizeof prefix - 9) < 0) {
		if (d)
			closedir(d);
		return 0;
	}
	memcpy(prefix, SHM_DIR "/", 9);
	plen = strlen(prefix) - 1;
	while (!found && d && (de = readdir(d))) {
		pid_t pid;
		FILE *f;
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		pid = (pid_t)atol(de->d_name);
		if (pid == getpid())
			continue;
		snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
		if (!(f = fopen(path, "re")))
			continue;
		while (fgets(line, sizeof line, f)) {
			char *p = strchr(line, '/');
			if (p && !strncmp(p, prefix, plen)) {
				found = pid;
				break;
			}
		}
		fclose(f);
	}
	if (d)
		closedir(d);
	return found;
}

bool cleanup_rec_load(const char *instance, struct rtrec *rec)
{
	char seg[DMEM_SEGNAME_MAX], path[sizeof SHM_DIR + DMEM_SEGNAME_MAX];
	dlaunch__rec_slot_t *slots;
	dlaunch__rec_hdr_t h;
	size_t n;

	if (dmem_segname_format(NULL, instance, DLAUNCH_REC_NAME, seg,
				sizeof seg) < 0)
		return false;
	snprintf(path, sizeof path, SHM_DIR "/%s", seg);
	if (!my_file(path) || dlaunch__rec_read(path, &h, &slots, &n) < 0)
		return false;
	if (strcmp(h.instance, instance)) {
		free(slots);
		return false;
	}
	free(rec->slots);
	rec->hdr = h;
	rec->slots = slots;
	rec->nslots = n;
	rec->has = true;
	return true;
}

static void judge(struct rt *r)
{
	uint64_t start;

	if (!cleanup_rec_load(r->inst, &r->rec)) {
		r->user = mapped_by(r->inst);
		r->state = r->user ? RT_INUSE : RT_UNUSED;
		return;
	}
	if (r->rec.hdr.pidns != dlaunch__pidns()) {
		r->state = RT_OTHERNS;
		return;
	}
	start = dlaunch__proc_start(r->rec.hdr.owner);
	r->state =
		start && start == r->rec.hdr.owner_start ? RT_LIVE : RT_STALE;
}

static const char *owner_kind(const struct rt *r)
{
	return r->rec.hdr.flags & DLAUNCH_REC_F_LAUNCHER ? "launcher"
							 : "embedded in";
}

/* ---- a runtime's processes ----------------------------------------- */

/* ppid (field 4) and start time (field 22) of pid; false if it is gone
 * (a zombie too: it has ended, only its status waits for its parent). */
static bool stat_of(pid_t pid, pid_t *ppid, uint64_t *start)
{
	char path[64], buf[1024], *p, state;
	unsigned long long st;
	int pp, fd;
	ssize_t n;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return false;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (!p ||
	    sscanf(p + 2,
		   "%c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
		   "%*u %*u %*d %*d %*d %*d %*d %*d %llu",
		   &state, &pp, &st) != 3 ||
	    state == 'Z' || state == 'X')
		return false;
	*ppid = (pid_t)pp;
	*start = st;
	return true;
}

/* Every process of this user but us. */
struct pinfo *cleanup_snapshot(size_t *n_out)
{
	DIR *d = opendir("/proc");
	struct pinfo *ps = NULL;
	struct dirent *de;
	size_t n = 0, cap = 0;
	char path[64];
	struct stat st;

	while (d && (de = readdir(d))) {
		struct pinfo p = {0};
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		p.pid = (pid_t)atol(de->d_name);
		snprintf(path, sizeof path, "/proc/%d", (int)p.pid);
		if (p.pid == getpid() || stat(path, &st) < 0 ||
		    st.st_uid != getuid() || !stat_of(p.pid, &p.ppid, &p.start))
			continue;
		if (n == cap) {
			size_t c = cap ? 2 * cap : 256;
			struct pinfo *t = realloc(ps, c * sizeof *t);
			if (!t)
				break;
			ps = t;
			cap = c;
		}
		ps[n++] = p;
	}
	if (d)
		closedir(d);
	*n_out = n;
	return ps;
}

static bool env_names(pid_t pid, const char *instance)
{
	char inst[128];

	cleanup_proc_instance(pid, inst, sizeof inst);
	return !strcmp(inst, instance);
}

size_t cleanup_mark(const char *instance, const struct rtrec *rec,
		    bool with_owner, uint64_t before, struct pinfo *ps,
		    size_t n)
{
	uint64_t spawning = rec->has ? rec->hdr.spawning : 0;
	size_t count = 0;
	bool more = true;

	for (size_t i = 0; i < n; i++) {
		struct pinfo *p = &ps[i];
		if (p->mark || !p->start || (before && p->start > before))
			continue;
		for (size_t j = 0; j < rec->nslots && !p->mark; j++)
			p->mark = rec->slots[j].pid == p->pid &&
				  rec->slots[j].start == p->start;
		if (with_owner && rec->has && rec->hdr.owner == p->pid &&
		    rec->hdr.owner_start == p->start)
			p->mark = true;
		/* No record to go by (a runtime of an older version); or a
		 * process the record may not show yet. */
		if (!p->mark &&
		    (!rec->has || (spawning && p->start >= spawning)))
			p->mark = env_names(p->pid, instance);
	}
	while (more) {
		more = false;
		for (size_t i = 0; i < n; i++) {
			bool parent = false;
			if (ps[i].mark || !ps[i].start ||
			    (before && ps[i].start > before))
				continue;
			for (size_t j = 0; j < n && !parent; j++)
				parent = ps[j].mark && ps[j].pid == ps[i].ppid;
			if (parent && env_names(ps[i].pid, instance))
				more = ps[i].mark = true;
		}
	}
	for (size_t i = 0; i < n; i++)
		count += ps[i].mark;
	return count;
}

/* Wait until the processes of fds[] have ended or the deadline has
 * passed; closes the fds; returns how many still run. */
static int wait_gone(int *fds, int n, double deadline)
{
	int left = 0;

	for (int i = 0; i < n; i++) {
		struct pollfd p = {.fd = fds[i], .events = POLLIN};
		double rest = deadline - cleanup_now();
		int r = poll(&p, 1, rest > 0 ? (int)(rest * 1e3) + 1 : 0);
		if (r == 0)
			left++;
		close(fds[i]);
	}
	return left;
}

/* SIGKILL process pid if it is still the one that started at start
 * (checked through a pidfd opened first, so a reused pid is never hit);
 * returns the pidfd, or -1. */
static int kill_verified(const struct opts *o, const struct rt *r, pid_t pid,
			 uint64_t start, const char *what)
{
	int fd = cleanup_pidfd_open(pid);

	if (fd < 0)
		return -1;
	if (dlaunch__proc_start(pid) != start) {
		close(fd);
		return -1;
	}
	say("%s %s %d (runtime %s)\n", o->dry_run ? "would kill" : "killing",
	    what, (int)pid, r->inst);
	if (o->dry_run || cleanup_pidfd_signal(fd, SIGKILL) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* End the runtime's processes; owner: it is live, end its owner too.
 * Returns how many processes did not end. */
static int end_processes(const struct opts *o, struct rt *r, bool owner)
{
	int left = 0;

	for (int round = 0; round < END_ROUNDS; round++) {
		size_t n, nmarked;
		struct pinfo *ps = cleanup_snapshot(&n);
		int *fds, nfds = 0;

		nmarked = ps ? cleanup_mark(r->inst, &r->rec,
					    owner && round == 0, 0, ps, n)
			     : 0;
		fds = nmarked ? calloc(nmarked, sizeof *fds) : NULL;
		if (!fds) {
			free(ps);
			break;
		}
		/* The owner first, and gone before the rest is touched: its
		 * services start and adopt the runtime's processes, so once it
		 * is gone nothing is added to the record, and it never sees
		 * the others die under it (a program that runs on with half a
		 * runtime is what ending a runtime whole must avoid). */
		if (owner && round == 0) {
			int fd = kill_verified(o, r, r->rec.hdr.owner,
					       r->rec.hdr.owner_start, "owner");
			if (fd >= 0)
				left += wait_gone(&fd, 1,
						  cleanup_now() + KILL_WAIT_S);
		}
		for (size_t i = 0; i < n; i++) {
			int fd;
			if (!ps[i].mark || (owner && round == 0 &&
					    ps[i].pid == r->rec.hdr.owner))
				continue;
			fd = kill_verified(o, r, ps[i].pid, ps[i].start,
					   "process");
			if (fd >= 0)
				fds[nfds++] = fd;
		}
		free(ps);
		left += wait_gone(fds, nfds, cleanup_now() + KILL_WAIT_S);
		free(fds);
		if (!nfds || o->dry_run)
			break;
		cleanup_rec_load(r->inst, &r->rec);
	}
	return left;
}

/* ---- the cleanup ------------------------------------------------------- */

/* End runtime r whole, or leave it alone; returns 1 if something of it
 * could not be ended or removed. */
static int clean_runtime(const struct opts *o, struct rt *r)
{
	bool asked = o->force || o->instance;
	const char *why = o->instance ? "--instance" : "--force";
	int left = 0;

	judge(r);
	switch (r->state) {
	case RT_LIVE:
		if (!asked) {
			say("runtime %s is live (%s pid %d): left alone; "
			    "use --force or --instance %s to end it\n",
			    r->inst, owner_kind(r), (int)r->rec.hdr.owner,
			    r->inst);
			return 0;
		}
		say("%s runtime %s (%s pid %d, live): %s\n",
		    o->dry_run ? "would end" : "ending", r->inst, owner_kind(r),
		    (int)r->rec.hdr.owner, why);
		left = end_processes(o, r, true);
		break;
	case RT_STALE:
		say("runtime %s: its owner (%s pid %d) is gone: %s its "
		    "processes and segments\n",
		    r->inst, owner_kind(r), (int)r->rec.hdr.owner,
		    o->dry_run ? "would end" : "ending");
		left = end_processes(o, r, false);
		break;
	case RT_OTHERNS:
		if (!asked) {
			say("runtime %s belongs to another pid namespace "
			    "(owner pid %d there): left alone; use --force "
			    "or --instance %s to remove its segments\n",
			    r->inst, (int)r->rec.hdr.owner, r->inst);
			return 0;
		}
		say("runtime %s belongs to another pid namespace: its "
		    "processes are out of reach, %s its segments (%s)\n",
		    r->inst, o->dry_run ? "would remove" : "removing", why);
		break;
	case RT_INUSE:
		if (!asked) {
			say("segments of %s (no runtime record) are in use "
			    "by process %d: left alone; use --force or "
			    "--instance %s to remove them\n",
			    r->inst, (int)r->user, r->inst);
			return 0;
		}
		break;
	case RT_UNUSED:
		break;
	}
	if (left)
		fprintf(stderr,
			"dragon-cleanup: runtime %s: %d processes did not end "
			"within %.0f s after SIGKILL\n",
			r->inst, left, KILL_WAIT_S);
	return cleanup_remove_segments(o, r->inst) < 0 || left ? 1 : 0;
}

static int clean(const struct opts *o)
{
	size_t n;
	struct rt *rts = find_runtimes(o->instance, &n);
	int status = 0;

	if (!n && o->instance && !o->dry_run)
		say("no segment of runtime %s: nothing to do\n", o->instance);
	for (size_t i = 0; i < n; i++) {
		status |= clean_runtime(o, &rts[i]);
		free(rts[i].rec.slots);
	}
	free(rts);
	return status;
}

static int usage(FILE *f, int code)
{
	fprintf(f,
		"Usage: dragon-cleanup [--dry-run] [--force | --instance ID] "
		"[--this-node]\n"
		"       dragon-cleanup [--dry-run] [--force | --instance ID] "
		"--hostfile FILE | --hostlist H1,H2,...\n"
		"       dragon-cleanup --when-gone PID --instance ID "
		"[--grace SECONDS] [--log PATH]\n"
		"End this user's leftover Dragon runtimes: their processes "
		"and their\nsegments (/dev/shm/dragon.<user>.*).  Live "
		"runtimes (whose launcher or\nembedding program runs) are "
		"left alone unless asked.  Inside a Slurm allocation every "
		"node "
		"of it is\ncleaned (one srun --overlap step, options from "
		"DRAGON_SRUN_OPTS), in a PBS job every node of\n"
		"PBS_NODEFILE (PALS's mpiexec, options from "
		"DRAGON_MPIEXEC_OPTS), outside one this\nnode.\n\n"
		"  -n, --dry-run       list what would be done, do nothing\n"
		"  -f, --force         end live runtimes too\n"
		"  -i, --instance ID   only runtime ID, ended even if live\n"
		"  -L, --this-node     only this node, even inside an "
		"allocation\n"
		"  -b, --label         begin each line with this node's name\n"
		"      --hostfile FILE every host of FILE (one a line), over "
		"ssh\n"
		"                      (options from DRAGON_SSH_OPTS)\n"
		"      --hostlist H1,H2,...  every host of the list, over ssh\n"
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
		"  -V, --version       show the version\n\n"
		"Exit status: 0 done (live runtimes left alone included), 1 "
		"a process\nthat did not end or a segment that could not be "
		"removed, 2 usage.\n");
	return code;
}

int main(int argc, char **argv)
{
	static const struct option longs[] = {
		{"dry-run", no_argument, 0, 'n'},
		{"force", no_argument, 0, 'f'},
		{"instance", required_argument, 0, 'i'},
		{"when-gone", required_argument, 0, 'w'},
		{"grace", required_argument, 0, 'g'},
		{"log", required_argument, 0, 'l'},
		{"this-node", no_argument, 0, 'L'},
		{"label", no_argument, 0, 'b'},
		{"hostfile", required_argument, 0, 'F'},
		{"hostlist", required_argument, 0, 'H'},
		{"help", no_argument, 0, 'h'},
		{"version", no_argument, 0, 'V'},
		{0, 0, 0, 0}};
	struct opts o = {.grace = 5.0};
	char *end;
	long pid;
	int c;

	while ((c = getopt_long(argc, argv, "nfi:w:g:l:LbhV", longs, NULL)) !=
	       -1) {
		switch (c) {
		case 'n':
			o.dry_run = 1;
			break;
		case 'f':
			o.force = 1;
			break;
		case 'i':
			if (strlen(optarg) > DMEM_INSTANCE_MAX ||
			    strspn(optarg, "abcdefghijklmnopqrstuvwxyz"
					   "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
					   "0123456789_-") != strlen(optarg) ||
			    !*optarg) {
				fprintf(stderr,
					"dragon-cleanup: instance '%s': an "
					"instance id is 1..%d of "
					"[A-Za-z0-9_-]\n",
					optarg, DMEM_INSTANCE_MAX);
				return 2;
			}
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
		case 'L':
			o.this_node = 1;
			break;
		case 'b':
			o.label = 1;
			break;
		case 'F':
			o.hostfile = optarg;
			break;
		case 'H':
			o.hostlist = optarg;
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
	    (o.log && !o.when_gone) || (o.force && o.when_gone) ||
	    ((o.this_node || o.label) && o.when_gone) ||
	    ((o.hostfile || o.hostlist) &&
	     (o.this_node || o.when_gone || (o.hostfile && o.hostlist))))
		return usage(stderr, 2);
	if (o.when_gone)
		return cleanup_watch_owner(&o);
	if (o.hostfile || o.hostlist)
		return cleanup_hosts(&o);
	if (!o.this_node && cleanup_in_allocation())
		return cleanup_allocation(&o);
	if (!o.this_node && cleanup_in_pbs_job())
		return cleanup_pbs(&o);
	if (o.label) {
		char host[256] = "?";

		gethostname(host, sizeof host - 1);
		snprintf(label, sizeof label, "%s: ", host);
	}
	return clean(&o);
}
