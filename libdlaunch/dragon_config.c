/* dragon-config: record where the ofi and ucx runtime libraries are,
 * whether the TCP transport is chosen on purpose, and whether a fast
 * backend that does not load may leave the agent on TCP
 * (libdtransport's dtrans_backend.c reads the file).
 *
 * The file is KEY=VALUE lines.  Every change takes an exclusive lock on a
 * lock file beside it, reads the file, writes a new one to a temporary file
 * and renames it over the old: readers see the old or the new file, and two
 * writers at once both land, one after the other.
 */
#define _GNU_SOURCE
#include "config.h"
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

enum { K_OFI, K_UCX, K_TCP, K_FALLBACK, NKEYS };
static const char *const keys[NKEYS] = {"ofi-runtime-lib", "ucx-runtime-lib",
					"tcp-runtime", "tcp-fallback"};
static const char *const libs[2] = {"libfabric.so", "libucp.so"};
/* what the transport agent opens from the system's search path */
static const char *const sonames[2] = {"libfabric.so.1", "libucp.so.0"};

/* True/False keys; the others hold a library directory or "system". */
static int is_bool(int k)
{
	return k == K_TCP || k == K_FALLBACK;
}

struct conf {
	char *val[NKEYS];
};

static int usage(FILE *f, int code)
{
	fprintf(f,
		"Usage: dragon-config add [--ofi-runtime-lib=DIR] "
		"[--ucx-runtime-lib=DIR]\n"
		"                         [--tcp-runtime=True|False] "
		"[--tcp-fallback=True|False]\n"
		"       dragon-config list\n"
		"       dragon-config remove KEY...   (ofi-runtime-lib, "
		"ucx-runtime-lib, tcp-runtime, tcp-fallback)\n"
		"       dragon-config clean\n"
		"       dragon-config --help\n\n"
		"DIR must hold libfabric.so* (ofi) or libucp.so* (ucx); "
		"'system' means the\n"
		"system's library search path.  --tcp-fallback=True: a "
		"backend whose library\n"
		"does not load leaves the transport agent on TCP instead of "
		"failing.\n"
		"The file is $DRAGON_CONFIG, else "
		"$XDG_CONFIG_HOME/dragon/dragon.conf,\n"
		"else ~/.config/dragon/dragon.conf.  See dragon-config(1).\n");
	return code;
}

static int config_path(char *buf, size_t len, int make_dir)
{
	const char *p = getenv("DRAGON_CONFIG"), *x = getenv("XDG_CONFIG_HOME");
	const char *home = getenv("HOME");
	char dir[PATH_MAX - 64];

	if (p && *p) {
		snprintf(buf, len, "%s", p);
		return 0;
	}
	if (x && *x)
		snprintf(dir, sizeof dir, "%s/dragon", x);
	else if (home && *home)
		snprintf(dir, sizeof dir, "%s/.config/dragon", home);
	else
		return -1;
	if (make_dir) {
		char parent[PATH_MAX];
		snprintf(parent, sizeof parent, "%s", dir);
		*strrchr(parent, '/') = '\0';
		mkdir(parent, 0700);
		mkdir(dir, 0700);
	}
	snprintf(buf, len, "%s/dragon.conf", dir);
	return 0;
}

static int key_index(const char *k, size_t n)
{
	for (int i = 0; i < NKEYS; i++)
		if (strlen(keys[i]) == n && !strncmp(keys[i], k, n))
			return i;
	return -1;
}

/* Read the file; a missing one is empty.  Anything else that is not
 * ours to understand is refused: listing nothing, or rewriting the file
 * without the lines we skipped, would hide or lose the user's settings. */
static int conf_read(const char *path, struct conf *c)
{
	FILE *f = fopen(path, "re");
	char line[PATH_MAX + 64];
	int n = 0;

	if (!f) {
		if (errno == ENOENT)
			return 0;
		fprintf(stderr,
			"dragon-config: cannot read %s: %s: fix its "
			"permissions, or remove it with 'dragon-config "
			"clean'\n",
			path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof line, f)) {
		size_t len = strlen(line);
		char *eq = strchr(line, '=');
		int k = -1;

		n++;
		if (len && line[len - 1] == '\n')
			line[--len] = '\0';
		else if (!feof(f))
			eq = NULL; /* longer than any line we write */
		if (len == 0 || line[0] == '#')
			continue;
		if (eq)
			k = key_index(line, (size_t)(eq - line));
		if (k < 0 ||
		    (is_bool(k) && strcmp(eq + 1, "True") &&
		     strcmp(eq + 1, "False")) ||
		    (!is_bool(k) && eq[1] != '/' && strcmp(eq + 1, "system"))) {
			fprintf(stderr,
				"dragon-config: %s, line %d: not a "
				"setting dragon-config writes (ofi-runtime-"
				"lib=/dir|system, ucx-runtime-lib=/dir|system, "
				"tcp-runtime=True|False or "
				"tcp-fallback=True|False): fix the line, or "
				"remove the file with 'dragon-config clean'\n",
				path, n);
			fclose(f);
			return -1;
		}
		free(c->val[k]);
		c->val[k] = strdup(eq + 1);
	}
	if (ferror(f)) {
		fprintf(stderr, "dragon-config: cannot read %s: %s\n", path,
			strerror(errno));
		fclose(f);
		return -1;
	}
	fclose(f);
	return 0;
}

static int conf_write(const char *path, const struct conf *c)
{
	char tmp[PATH_MAX + 16];
	FILE *f;
	int fd;

	snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
	fd = mkstemp(tmp);
	if (fd < 0 || !(f = fdopen(fd, "w"))) {
		fprintf(stderr, "dragon-config: cannot write %s: %s\n", path,
			strerror(errno));
		return 1;
	}
	fprintf(f, "# Dragon runtime configuration; written by dragon-config"
		   ".\n");
	for (int i = 0; i < NKEYS; i++)
		if (c->val[i])
			fprintf(f, "%s=%s\n", keys[i], c->val[i]);
	fflush(f);
	fsync(fd);
	if (ferror(f) | fclose(f) || rename(tmp, path) < 0) {
		fprintf(stderr, "dragon-config: cannot write %s: %s\n", path,
			strerror(errno));
		unlink(tmp);
		return 1;
	}
	return 0;
}

/* A library directory must exist and hold the library (any version). */
static int check_dir(int k, const char *dir)
{
	struct stat st;
	struct dirent *de;
	DIR *d;
	int found = 0;

	if (strpbrk(dir, "\n\r")) {
		fprintf(stderr,
			"dragon-config: --%s: the path contains a line "
			"break, which the config file cannot hold: give the "
			"directory's path on one line\n",
			keys[k]);
		return -1;
	}
	if (!*dir || dir[0] != '/' || stat(dir, &st) < 0 ||
	    !S_ISDIR(st.st_mode)) {
		fprintf(stderr,
			"dragon-config: --%s=%s: not an absolute path of a "
			"directory\n",
			keys[k], dir);
		return -1;
	}
	d = opendir(dir);
	while (d && (de = readdir(d)))
		found |= !strncmp(de->d_name, libs[k], strlen(libs[k]));
	if (d)
		closedir(d);
	if (!found)
		fprintf(stderr,
			"dragon-config: --%s=%s: no %s* in that "
			"directory\n",
			keys[k], dir, libs[k]);
	return found ? 0 : -1;
}

/* "system": the library must load from the system's search path. */
static int check_system(int k)
{
	void *h = dlopen(sonames[k], RTLD_LAZY | RTLD_LOCAL);

	if (!h) {
		const char *e = dlerror();

		fprintf(stderr,
			"dragon-config: --%s=system: %s does not load from "
			"the system's library path: %s; install it, or give "
			"the directory that holds it\n",
			keys[k], sonames[k], e ? e : "unknown error");
		return -1;
	}
	dlclose(h);
	return 0;
}

static int check_value(int k, const char *v, char **norm)
{
	if (is_bool(k)) {
		if (strcasecmp(v, "true") && strcasecmp(v, "false")) {
			fprintf(stderr,
				"dragon-config: --%s=%s: use "
				"True or False\n",
				keys[k], v);
			return -1;
		}
		*norm = strdup(strcasecmp(v, "true") ? "False" : "True");
		return 0;
	}
	if (strcmp(v, "system") == 0 ? check_system(k) : check_dir(k, v))
		return -1;
	*norm = strdup(v);
	return 0;
}

/* Lock, read, change, write back. */
static int update(struct conf *add, const int *del, int clean)
{
	char path[PATH_MAX], lock[PATH_MAX + 8];
	struct conf c = {0};
	int fd, rc;

	if (config_path(path, sizeof path, 1)) {
		fprintf(stderr, "dragon-config: set HOME or DRAGON_CONFIG\n");
		return 1;
	}
	snprintf(lock, sizeof lock, "%s.lock", path);
	fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || flock(fd, LOCK_EX) < 0) {
		fprintf(stderr, "dragon-config: cannot lock %s: %s\n", lock,
			strerror(errno));
		return 1;
	}
	if (clean) {
		rc = unlink(path) < 0 && errno != ENOENT;
	} else {
		if (conf_read(path, &c)) {
			close(fd);
			return 1;
		}
		for (int i = 0; i < NKEYS; i++) {
			if (add && add->val[i]) {
				free(c.val[i]);
				c.val[i] = strdup(add->val[i]);
			}
			if (del && del[i]) {
				free(c.val[i]);
				c.val[i] = NULL;
			}
		}
		rc = conf_write(path, &c);
	}
	for (int i = 0; i < NKEYS; i++)
		free(c.val[i]);
	close(fd);
	return rc;
}

static int cmd_add(int argc, char **argv)
{
	static const struct option longs[] = {
		{"ofi-runtime-lib", required_argument, 0, K_OFI},
		{"ucx-runtime-lib", required_argument, 0, K_UCX},
		{"tcp-runtime", required_argument, 0, K_TCP},
		{"tcp-fallback", required_argument, 0, K_FALLBACK},
		{"help", no_argument, 0, 'h'},
		{0, 0, 0, 0}};
	struct conf a = {0};
	int c, n = 0, rc = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
		if (c == 'h')
			return usage(stdout, 0);
		if (c < 0 || c >= NKEYS)
			return usage(stderr, 2);
		free(a.val[c]);
		a.val[c] = NULL;
		if (check_value(c, optarg, &a.val[c]))
			rc = 2;
		n++;
	}
	if (optind < argc || n == 0)
		rc = rc ? rc : usage(stderr, 2);
	if (rc == 0)
		rc = update(&a, NULL, 0);
	for (int i = 0; i < NKEYS; i++)
		free(a.val[i]);
	return rc;
}

static int cmd_remove(int argc, char **argv)
{
	int del[NKEYS] = {0};

	if (argc < 2)
		return usage(stderr, 2);
	for (int i = 1; i < argc; i++) {
		const char *k = argv[i] + strspn(argv[i], "-");
		int idx = key_index(k, strcspn(k, "="));
		if (idx < 0) {
			fprintf(stderr, "dragon-config: unknown key '%s'\n",
				argv[i]);
			return 2;
		}
		del[idx] = 1;
	}
	return update(NULL, del, 0);
}

static int cmd_list(void)
{
	char path[PATH_MAX];
	struct conf c = {0};

	if (config_path(path, sizeof path, 0))
		return 1;
	if (conf_read(path, &c)) {
		for (int i = 0; i < NKEYS; i++)
			free(c.val[i]);
		return 1;
	}
	printf("# %s\n", path);
	for (int i = 0; i < NKEYS; i++) {
		if (c.val[i])
			printf("%s=%s\n", keys[i], c.val[i]);
		free(c.val[i]);
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : NULL;

	if (!cmd)
		return usage(stderr, 2);
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") ||
	    !strcmp(cmd, "help"))
		return usage(stdout, 0);
	if (!strcmp(cmd, "--version")) {
		printf("dragon-config %s\n", PACKAGE_VERSION);
		return 0;
	}
	if (!strcmp(cmd, "add"))
		return cmd_add(argc - 1, argv + 1);
	/* "dragon-config --tcp-runtime=True" is short for add. */
	if (!strncmp(cmd, "--", 2))
		return cmd_add(argc, argv);
	if (!strcmp(cmd, "remove"))
		return cmd_remove(argc - 1, argv + 1);
	if (!strcmp(cmd, "list") && argc == 2)
		return cmd_list();
	if (!strcmp(cmd, "clean") && argc == 2)
		return update(NULL, NULL, 1);
	fprintf(stderr, "dragon-config: unknown command '%s'\n", cmd);
	return usage(stderr, 2);
}
