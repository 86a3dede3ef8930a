/* The dragon launcher's option parsing, logs and messages (not installed). */
#ifndef DRAGON_LAUNCHER_H
#define DRAGON_LAUNCHER_H

#include <stddef.h>
#include <dragon/dlaunch.h>

#ifndef DRAGON_PYTHON
#define DRAGON_PYTHON "/usr/bin/python3"
#endif

/* What --label, --basic-label and --verbose-label put before each line
 * of forwarded output (dragon_output.c has the formats). */
enum dragon_label {
	DRAGON_LABEL_NONE = 0,
	DRAGON_LABEL_NODE,   /* --label:         "[node2:1234] " */
	DRAGON_LABEL_BASIC,  /* --basic-label:   "[stdout: node 1 PID 1234] " */
	DRAGON_LABEL_VERBOSE /* --verbose-label: "[stdout: PID 1234 @ node2] "
			      */
};

struct dragon_opts {
	int log_level;	       /* enum dlaunch_log_level */
	double timeout;	       /* seconds per start-up phase */
	int port;	       /* multi-node: port of the backends */
	const char *netprefix; /* multi-node: interface/address prefix */
	int single_node;
	int nodes;	      /* -N: nodes to use (0: every node) */
	const char *wlm;      /* -w: slurm, pbs or ssh (NULL: detect) */
	const char *hostfile; /* --hostfile: hosts for ssh */
	const char *hostlist; /* --hostlist: hosts for ssh, a,b,c */
	int label;	      /* enum dragon_label */
	int argc;	      /* PROG and its arguments */
	char **argv;
	int log_fd;
	char log_path[4096];
	char log_dir[4000];
};

/* Parse argv; returns -1 to go on, or an exit status (0 after --help or
 * --version, 2 on a usage error). */
int dragon_parse_opts(int argc, char **argv, struct dragon_opts *o);
/* This host's interfaces: list gets "name address" of each address, ", "
 * between them; pick the first address whose interface name or text
 * starts with prefix (of family if it has one, else IPv4 before IPv6;
 * never a link-local IPv6 address).  0, -ENOENT if none matches (or prefix
 * is NULL), or -errno. */
int dragon_net_scan(const char *prefix, int family, char *pick, size_t plen,
		    char *list, size_t llen);
/* One node: -1 if prefix matches an interface of this host, else 1 after
 * printing the interfaces it has. */
int dragon_check_netprefix(const char *prefix);
/* Print "dragon: <phase> failed: <why>" with the log's place; returns 1. */
int dragon_fail(const char *phase, const char *why);
/* Open the log file (see dragon(1)); returns its fd or -1 (stderr). */
int dragon_open_log(struct dragon_opts *o);
void dragon_close_log(struct dragon_opts *o);

/* Write len bytes of whole lines of output of process pid on node (index
 * node, host name host) to fd (1 or 2), each line with the label that mode
 * asks for, in one write (dragon_output.c).  A piece of a line longer
 * than a frame is continued without a new label.  Returns how long the
 * write waited for fd, in seconds. */
double dragon_output_write(int mode, int fd, unsigned node, const char *host,
			   pid_t pid, const char *data, size_t len);

/* Start-up watchdog (dragon_watchdog.c): while a phase is armed and its
 * deadline passes, report it, kill the launcher's children, remove the
 * instance's segments and exit with 1. */
int dragon_watchdog_start(const char *instance);
void dragon_watchdog_arm(const char *phase, double secs);
void dragon_watchdog_disarm(void);

/* Start `dragon-cleanup --when-gone` on this launcher (dragon_watchdog.c):
 * if it dies without stopping runtime instance, its processes are ended,
 * its segments removed, and log_path removed if it is empty.  Returns 0
 * (also when DRAGON_CLEANUP_PROGRAM is empty: no watchdog wanted) or a
 * negative errno (-ENOENT: no dragon-cleanup beside the launcher). */
int dragon_guard_start(const char *instance, const char *log_path, int debug);
/* The same in two halves, so that the watchdog's start overlaps other
 * work: spawn its starter (*pid_out 0: no dragon-cleanup, no watchdog),
 * then wait for it, before the runtime makes this process a subreaper. */
int dragon_guard_spawn(const char *instance, const char *log_path, int debug,
		       pid_t *pid_out);
int dragon_guard_wait(pid_t pid);
/* The path of the log dragon_open_log() opens (the directory is made). */
int dragon_log_path(struct dragon_opts *o);

/* Multi-node (dragon_multi.c).  Where the run goes: 0 (this node,
 * without backends: no allocation or hosts, or -s), the node count of
 * the Slurm allocation, the PBS job or the hosts (or -N, 1 included) for
 * backends on its nodes, or -1 after
 * printing why the options cannot be met. */
int dragon_multi_nodes(const struct dragon_opts *o);
/* Run o's program over n nodes: start the backends, take them through
 * the start-up phases, run the head on node 0 and tear every node down.
 * Returns dragon's exit status. */
int dragon_multi_run(struct dragon_opts *o, unsigned n, int sfd,
		     const char *instance);

#endif
