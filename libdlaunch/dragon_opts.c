/* Options, logs and --network-prefix validation of the dragon launcher.
 *
 * On one node --network-prefix is checked at once, so that a typo is an
 * immediate error that lists what the machine has.  Over several nodes
 * each backend checks it on its own node (dragon_net_scan) in the phase
 * 'network configuration exchanged': the launcher's host (a login node)
 * need not have the network the nodes use.
 */
#define _GNU_SOURCE
#include "config.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "launcher.h"

static char log_place[4096] = "stderr";
static int log_fd = -1;

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: dragon [OPTIONS] PROG [ARGS...]\n"
		"Run PROG as the head process of a Dragon runtime (.py files "
		"run with\n%s; anything else is executed).\n\n"
		"  -h, --help                 show this help and exit\n"
		"  -V, --version              show the version and exit\n"
		"  -s, --single-node          run on this node only (the "
		"default outside\n"
		"                             a Slurm or PBS job, without "
		"hosts)\n"
		"  -N, --nodes K              use K nodes of the job or hosts "
		"(default: all)\n"
		"  -w, --wlm slurm|pbs|ssh    start backends with srun, PALS's "
		"mpiexec or ssh\n"
		"                             (default: Slurm, PBS, hosts, in "
		"that order)\n"
		"      --hostfile FILE        run on the hosts FILE lists, one "
		"a line (ssh)\n"
		"      --hostlist H1,H2,...   run on these hosts (ssh)\n"
		"  -l, --log-level LEVEL      error, warning, info or debug "
		"(DRAGON_DEBUG=1: debug)\n"
		"  -t, --timeout SECONDS      deadline of each start-up phase "
		"(default 30)\n"
		"      --port PORT            port the launcher listens on "
		"for the backends\n"
		"      --network-prefix P     interface name or address prefix "
		"for multi-node\n"
		"      --label                prefix each line of output with "
		"[NODE:PID]\n"
		"      --basic-label          ... with [stdout: node N PID P] "
		"(or stderr)\n"
		"      --verbose-label        ... with [stdout: PID P @ NODE] "
		"(or stderr)\n"
		"      --no-label             no prefix (the default)\n\n"
		"Logs go to $DRAGON_LOG_DIR, else $XDG_RUNTIME_DIR/dragon, "
		"else /tmp/dragon-$USER.\nSee dragon(1).\n",
		DRAGON_PYTHON);
}

static int parse_level(const char *s)
{
	static const char *const names[] = {"error", "warning", "info",
					    "debug"};

	for (int i = 0; i < 4; i++)
		if (strcasecmp(s, names[i]) == 0 ||
		    (s[0] == '0' + i && s[1] == '\0'))
			return i;
	return -1;
}

/* Does an interface's name, or its address in text, start with prefix? */
static bool if_matches(const char *name, const char *addr, const char *prefix)
{
	size_t k = strlen(prefix);

	return strncmp(name, prefix, k) == 0 || strncmp(addr, prefix, k) == 0;
}

int dragon_net_scan(const char *prefix, int family, char *pick, size_t plen,
		    char *list, size_t llen)
{
	struct ifaddrs *ifs, *i;
	char addr[INET6_ADDRSTRLEN];
	size_t used = 0;
	int best = 0; /* 3 the family asked for, 2 IPv4, 1 IPv6 */

	if (list && llen)
		list[0] = '\0';
	if (getifaddrs(&ifs) < 0)
		return -errno;
	for (i = ifs; i; i = i->ifa_next) {
		int fam = i->ifa_addr ? i->ifa_addr->sa_family : -1, score;
		const void *a;

		if (fam != AF_INET && fam != AF_INET6)
			continue;
		a = fam == AF_INET
			    ? (const void *)&((struct sockaddr_in *)i->ifa_addr)
				      ->sin_addr
			    : (const void *)&(
				      (struct sockaddr_in6 *)i->ifa_addr)
				      ->sin6_addr;
		inet_ntop(fam, a, addr, sizeof addr);
		if (list && used < llen) {
			int w = snprintf(list + used, llen - used, "%s%s %s",
					 used ? ", " : "", i->ifa_name, addr);
			used += w > 0 ? (size_t)w : 0;
		}
		/* A link-local IPv6 address needs its scope to be reached:
		 * never a node's address. */
		if (!prefix || !if_matches(i->ifa_name, addr, prefix) ||
		    (fam == AF_INET6 &&
		     IN6_IS_ADDR_LINKLOCAL((const struct in6_addr *)a)))
			continue;
		score = fam == family ? 3 : fam == AF_INET ? 2 : 1;
		if (score > best) {
			best = score;
			snprintf(pick, plen, "%s", addr);
		}
	}
	freeifaddrs(ifs);
	if (list && used >= llen && llen > 4)
		strcpy(list + llen - 4, "...");
	return best ? 0 : -ENOENT;
}

int dragon_check_netprefix(const char *prefix)
{
	char pick[INET6_ADDRSTRLEN], list[4096];
	int rc = dragon_net_scan(prefix, AF_INET, pick, sizeof pick, list,
				 sizeof list);

	if (rc == 0)
		return -1;
	if (rc != -ENOENT) {
		fprintf(stderr, "dragon: getifaddrs: %s\n", strerror(-rc));
		return 1;
	}
	fprintf(stderr,
		"dragon: --network-prefix '%s' matches no network interface "
		"of this host; interfaces found: %s\n",
		prefix, list);
	return 1;
}

static int bad(const char *what, const char *arg)
{
	fprintf(stderr, "dragon: invalid %s '%s'\n", what, arg);
	fprintf(stderr, "Try 'dragon --help'.\n");
	return 2;
}

static int parse_number(const char *s, double lo, double hi, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

int dragon_parse_opts(int argc, char **argv, struct dragon_opts *o)
{
	static const struct option longs[] = {
		{"help", no_argument, 0, 'h'},
		{"version", no_argument, 0, 'V'},
		{"single-node", no_argument, 0, 's'},
		{"log-level", required_argument, 0, 'l'},
		{"timeout", required_argument, 0, 't'},
		{"port", required_argument, 0, 'P'},
		{"network-prefix", required_argument, 0, 'X'},
		{"nodes", required_argument, 0, 'N'},
		{"wlm", required_argument, 0, 'w'},
		{"label", no_argument, 0, 'L'},
		{"basic-label", no_argument, 0, 'B'},
		{"verbose-label", no_argument, 0, 'E'},
		{"no-label", no_argument, 0, 'O'},
		{"hostfile", required_argument, 0, 'F'},
		{"hostlist", required_argument, 0, 'H'},
		{0, 0, 0, 0}};
	const char *dbg = getenv("DRAGON_DEBUG");
	double v;
	int c;

	memset(o, 0, sizeof *o);
	o->log_level = (dbg && *dbg && strcmp(dbg, "0")) ? DLAUNCH_LOG_DEBUG
							 : DLAUNCH_LOG_WARNING;
	o->timeout = 30;
	o->log_fd = -1;
	/* '+': options end at PROG; its own options are its business. */
	while ((c = getopt_long(argc, argv, "+hVsl:t:N:w:", longs, NULL)) !=
	       -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("dragon %s\n", PACKAGE_VERSION);
			return 0;
		case 's':
			o->single_node = 1;
			break;
		case 'L':
			o->label = DRAGON_LABEL_NODE;
			break;
		case 'B':
			o->label = DRAGON_LABEL_BASIC;
			break;
		case 'E':
			o->label = DRAGON_LABEL_VERBOSE;
			break;
		case 'O':
			o->label = DRAGON_LABEL_NONE;
			break;
		case 'l':
			o->log_level = parse_level(optarg);
			if (o->log_level < 0)
				return bad("log level", optarg);
			break;
		case 't':
			if (parse_number(optarg, 0.001, 1e6, &o->timeout))
				return bad("timeout", optarg);
			break;
		case 'P':
			if (parse_number(optarg, 1, 65535, &v) || v != (int)v)
				return bad("port", optarg);
			o->port = (int)v;
			break;
		case 'N':
			if (parse_number(optarg, 1, 4096, &v) || v != (int)v)
				return bad("node count", optarg);
			o->nodes = (int)v;
			break;
		case 'w':
			if (strcmp(optarg, "slurm") != 0 &&
			    strcmp(optarg, "pbs") != 0 &&
			    strcmp(optarg, "ssh") != 0)
				return bad("workload manager (give slurm, pbs "
					   "or ssh)",
					   optarg);
			o->wlm = optarg;
			break;
		case 'F':
		case 'H':
			if (!*optarg ||
			    (c == 'F' ? o->hostlist : o->hostfile)) {
				fprintf(stderr,
					"dragon: %s: give one non-empty "
					"--hostfile or --hostlist\n",
					c == 'F' ? "--hostfile" : "--hostlist");
				fprintf(stderr, "Try 'dragon --help'.\n");
				return 2;
			}
			*(c == 'F' ? &o->hostfile : &o->hostlist) = optarg;
			break;
		case 'X':
			if (!*optarg) {
				fprintf(stderr,
					"dragon: --network-prefix is empty: "
					"give an interface name or address "
					"prefix (e.g. eth0 or 10.1.), or leave "
					"the option out\n");
				fprintf(stderr, "Try 'dragon --help'.\n");
				return 2;
			}
			o->netprefix = optarg;
			break;
		default:
			fprintf(stderr, "Try 'dragon --help'.\n");
			return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "dragon: no program given\n");
		usage(stderr);
		return 2;
	}
	if (!*argv[optind]) {
		fprintf(stderr, "dragon: the program name is empty: give the "
				"program to run, e.g. 'dragon prog.py'\n");
		fprintf(stderr, "Try 'dragon --help'.\n");
		return 2;
	}
	o->argc = argc - optind;
	o->argv = argv + optind;
	return -1;
}

/* The message goes to the log too: the log it points to holds it. */
int dragon_fail(const char *phase, const char *why)
{
	fprintf(stderr, "dragon: %s failed: %s\n(log: %s)\n", phase, why,
		log_place);
	if (log_fd >= 0)
		dprintf(log_fd, "dragon: %s failed: %s\n", phase, why);
	return 1;
}

/* $DRAGON_LOG_DIR, else $XDG_RUNTIME_DIR/dragon, else /tmp/dragon-<user>:
 * a directory only the user can enter, one file per launcher. */
int dragon_log_path(struct dragon_opts *o)
{
	const char *dir = getenv("DRAGON_LOG_DIR"), *x;
	struct passwd *pw = getpwuid(getuid());
	char d[4000];

	if (dir && *dir)
		snprintf(d, sizeof d, "%s", dir);
	else if ((x = getenv("XDG_RUNTIME_DIR")) && *x)
		snprintf(d, sizeof d, "%s/dragon", x);
	else
		snprintf(d, sizeof d, "/tmp/dragon-%s",
			 pw ? pw->pw_name : "unknown");
	if (mkdir(d, 0700) < 0 && errno != EEXIST)
		return -1;
	snprintf(o->log_path, sizeof o->log_path, "%s/dragon-%d.log", d,
		 (int)getpid());
	return 0;
}

int dragon_open_log(struct dragon_opts *o)
{
	if (!o->log_path[0] && dragon_log_path(o) < 0)
		return -1;
	o->log_fd =
		open(o->log_path,
		     O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_APPEND, 0600);
	if (o->log_fd >= 0)
		snprintf(log_place, sizeof log_place, "%s", o->log_path);
	log_fd = o->log_fd;
	return o->log_fd;
}

/* A run that ended well leaves no log unless something was logged. */
void dragon_close_log(struct dragon_opts *o)
{
	struct stat st;

	if (o->log_fd < 0)
		return;
	if (fstat(o->log_fd, &st) == 0 && st.st_size == 0)
		unlink(o->log_path);
	close(o->log_fd);
	o->log_fd = log_fd = -1;
}
