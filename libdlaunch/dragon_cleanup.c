/* dragon-cleanup: end this user's leftover Dragon runtime processes and
 * remove this user's Dragon segments, and nothing else.
 *
 * A runtime process is one of this uid whose environment names a runtime
 * (DRAGON_INSTANCE, set in everything the runtime starts), or a launcher
 * (command name dragon).  A segment is a regular file in /dev/shm owned by
 * this uid and named dragon.<user>.<instance>.<name> — the naming every
 * Dragon segment has.  --instance narrows both to one runtime.
 */
#define _GNU_SOURCE
#include "config.h"
#include <ctype.h>
#include <stdbool.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHM_DIR "/dev/shm"

struct opts {
	int dry_run;
	const char *instance;
	char user[64];
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
	char prefix[256], path[512];
	struct stat st;
	int n = 0, bad = 0;

	if (!d)
		return 0;
	snprintf(prefix, sizeof prefix, "dragon.%s.%s%s", o->user,
		 o->instance ? o->instance : "", o->instance ? "." : "");
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, prefix, strlen(prefix)))
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

/* The user part of segment names, as libdmem writes it. */
static void user_name(char *buf, size_t len)
{
	struct passwd *pw = getpwuid(geteuid());

	if (pw && pw->pw_name[0])
		snprintf(buf, len, "%s", pw->pw_name);
	else
		snprintf(buf, len, "uid%u", (unsigned)geteuid());
	for (char *c = buf; *c; c++)
		if (!isalnum((unsigned char)*c) && *c != '_' && *c != '-')
			*c = '_';
}

static int usage(FILE *f, int code)
{
	fprintf(f, "Usage: dragon-cleanup [--dry-run] [--instance ID]\n"
		   "End this user's Dragon runtime processes and remove this "
		   "user's Dragon\nsegments (/dev/shm/dragon.<user>.*).\n\n"
		   "  -n, --dry-run       list what would be done, do nothing\n"
		   "  -i, --instance ID   only the runtime instance ID\n"
		   "  -h, --help          show this help\n"
		   "  -V, --version       show the version\n");
	return code;
}

int main(int argc, char **argv)
{
	static const struct option longs[] = {
		{"dry-run", no_argument, 0, 'n'},
		{"instance", required_argument, 0, 'i'},
		{"help", no_argument, 0, 'h'},
		{"version", no_argument, 0, 'V'},
		{0, 0, 0, 0}};
	struct opts o = {0};
	int c, segs;

	while ((c = getopt_long(argc, argv, "ni:hV", longs, NULL)) != -1) {
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
		case 'h':
			return usage(stdout, 0);
		case 'V':
			printf("dragon-cleanup %s\n", PACKAGE_VERSION);
			return 0;
		default:
			return usage(stderr, 2);
		}
	}
	if (optind < argc)
		return usage(stderr, 2);
	user_name(o.user, sizeof o.user);
	end_processes(&o);
	/* Give the killed processes a moment to let go of their segments
	 * before they are removed (names go at once either way). */
	if (!o.dry_run)
		usleep(100000);
	segs = remove_segments(&o);
	return segs < 0 ? 1 : 0;
}
