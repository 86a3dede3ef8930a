/* dragon across the nodes of an allocation: the frontend.
 *
 * The launcher (where `dragon` runs: a login node or the batch script's
 * node) listens on a TCP port, starts one dragon-backend per node with a
 * single `srun --overlap` step (one task per node, no --nodelist) and
 * takes the backends through the start-up phases, each with the -t
 * deadline:
 *
 *   launch backends                  srun runs, no backend failed to start
 *   backends connect to the frontend every backend said hello (secret,
 *                                    version, its agent's address)
 *   network configuration exchanged  every backend has the agents'
 *                                    addresses, its agent and services up
 *   transport agents reachable       every node reached the global
 *                                    services on node 0 through the agents
 *   head started                     node 0 started the head process
 *
 * Node 0 (the first node of the step) is the primary: its backend runs
 * the global services and the head.  The head's stdin is the launcher's
 * (relayed to srun, which gives it to task 0 only); output of every
 * process on every node is forwarded line by line by its backend and by
 * srun.  When the head exits, or on SIGINT/SIGTERM, or when a node is lost
 * (its backend's connection closes or it stops answering), every backend
 * is told to end everything on its node; the launcher waits for them and
 * for srun, and ends srun if it has to.
 */
#define _GNU_SOURCE
#include "config.h"
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "dragon_ctl.h"
#include "launcher.h"

extern char **environ;

#define TAIL_LINES    12
#define STOP_WAIT_S   15 /* backends end their nodes' processes (5 s) */
#define SIGNAL_WAIT_S 5	 /* the head's time after SIGINT/SIGTERM */

enum { ST_NONE, ST_HELLO, ST_CONFIG, ST_READY, ST_HEAD };

struct node {
	int fd;
	struct ctl_conn conn;
	int state;
	bool bye, lost, failed;
	char host[256], agent[300], ls[1024];
	char errphase[64], err[2048];
	struct timespec seen;
};

static struct fe {
	unsigned n;
	struct node *nodes;
	char **names; /* host names of the step's nodes, by index */
	int lfd, sfd;
	pid_t srun;
	int srun_status;
	bool srun_done;
	int err_fd, in_fd;
	char tail[TAIL_LINES][512];
	int ntail;
	char line[512];
	size_t linelen;
	int failed_task; /* from srun's "task K: ..." error, or -1 */
	char failed_line[512];
	/* Connections that have not said hello: one per backend at most,
	 * and room for a few strangers, whatever the node count. */
	struct ctl_conn *pending;
	int npending, maxpending;
	struct pollfd *pfds; /* pump(): 4 + maxpending + n */
	int *who;
	char secret[65];
	double timeout, node_timeout;
	bool head_exited;
	int exited, code, signo;
	int nsig, lastsig;
	bool stopping;
	int debug;
} fe;

static void dbg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void dbg(const char *fmt, ...)
{
	struct timespec ts;
	va_list ap;

	if (!fe.debug)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	fprintf(stderr, "%ld.%03ld dragon: ", (long)ts.tv_sec,
		ts.tv_nsec / 1000000);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* ---- the allocation ------------------------------------------------------ */

/* Expand a Slurm node list ("node[1-3,5],login2") into names. */
static char **expand_nodelist(const char *list, unsigned *count)
{
	char **v = NULL;
	unsigned n = 0, cap = 0;
	const char *p = list;

	while (p && *p) {
		const char *e = p, *lb = NULL, *rb = NULL;
		int depth = 0;

		for (; *e && (depth || *e != ','); e++) {
			if (*e == '[' && !lb)
				lb = e;
			if (*e == ']' && !rb)
				rb = e;
			depth += *e == '[' ? 1 : *e == ']' ? -1 : 0;
		}
		if (lb && rb && rb > lb) {
			char ranges[512];
			size_t rl = (size_t)(rb - lb - 1);

			if (rl >= sizeof ranges)
				rl = sizeof ranges - 1;
			memcpy(ranges, lb + 1, rl);
			ranges[rl] = '\0';
			for (char *sv, *r = strtok_r(ranges, ",", &sv); r;
			     r = strtok_r(NULL, ",", &sv)) {
				char *dash = strchr(r, '-');
				long a = strtol(r, NULL, 10);
				long b = dash ? strtol(dash + 1, NULL, 10) : a;
				int w = dash ? (int)(dash - r) : (int)strlen(r);

				for (long k = a; k <= b && n < 65536; k++) {
					if (n == cap) {
						cap = cap ? cap * 2 : 16;
						v = realloc(v, cap * sizeof *v);
					}
					if (asprintf(&v[n], "%.*s%0*ld%.*s",
						     (int)(lb - p), p, w, k,
						     (int)(e - rb - 1),
						     rb + 1) < 0)
						v[n] = NULL;
					n++;
				}
			}
		} else if (e > p) {
			if (n == cap) {
				cap = cap ? cap * 2 : 16;
				v = realloc(v, cap * sizeof *v);
			}
			v[n++] = strndup(p, (size_t)(e - p));
		}
		p = *e ? e + 1 : e;
	}
	*count = n;
	return v;
}

static const char *node_name(unsigned i)
{
	if (fe.nodes && fe.nodes[i].host[0])
		return fe.nodes[i].host;
	if (fe.names && fe.names[i])
		return fe.names[i];
	return "?";
}

int dragon_multi_nodes(const struct dragon_opts *o)
{
	const char *job = getenv("SLURM_JOB_ID");
	const char *nn = getenv("SLURM_JOB_NUM_NODES");
	long avail;

	if (!nn)
		nn = getenv("SLURM_NNODES");
	if (o->wlm && strcmp(o->wlm, "slurm") != 0) {
		fprintf(stderr,
			"dragon: -w %s: this dragon starts backends with "
			"Slurm only (-w slurm); run with -s for one node\n",
			o->wlm);
		return -1;
	}
	if (o->single_node) {
		if (o->nodes > 1) {
			fprintf(stderr,
				"dragon: -s and -N %d contradict each "
				"other: give one of them\n",
				o->nodes);
			return -1;
		}
		return 0;
	}
	if (!job || !*job) {
		if (o->wlm || o->nodes > 1) {
			fprintf(stderr,
				"dragon: %s: not inside a Slurm allocation "
				"(SLURM_JOB_ID is not set): run dragon inside "
				"salloc or an sbatch script\n",
				o->wlm ? "-w slurm" : "-N");
			return -1;
		}
		return 0;
	}
	avail = nn ? strtol(nn, NULL, 10) : 1;
	if (avail < 1)
		avail = 1;
	if (o->nodes > avail) {
		fprintf(stderr,
			"dragon: -N %d: the allocation (job %s) has %ld "
			"node%s\n",
			o->nodes, job, avail, avail > 1 ? "s" : "");
		return -1;
	}
	return o->nodes ? o->nodes : (int)avail;
}

/* ---- srun ---------------------------------------------------------------- */

/* dragon-backend: $DRAGON_BACKEND_PROGRAM, else beside this program (or
 * above it, from the build tree's .libs). */
static int backend_program(char *out, size_t len)
{
	const char *env = getenv("DRAGON_BACKEND_PROGRAM");
	char dir[4000], *slash;
	ssize_t k;

	if (env && *env) {
		snprintf(out, len, "%s", env);
		return 0;
	}
	k = readlink("/proc/self/exe", dir, sizeof dir - 1);
	if (k <= 0)
		return -1;
	dir[k] = '\0';
	if (!(slash = strrchr(dir, '/')))
		return -1;
	*slash = '\0';
	/* In the build tree the launcher runs from .libs, where the
	 * backend's binary lacks the library path its wrapper above sets. */
	slash = strrchr(dir, '/');
	if (slash && strcmp(slash, "/.libs") == 0)
		*slash = '\0';
	snprintf(out, len, "%s/dragon-backend", dir);
	return access(out, X_OK) == 0 ? 0 : -1;
}

static int start_srun(const struct dragon_opts *o, const char *inst, int port)
{
	char prog[4096], nodes[32], tasks[32], *opts = NULL;
	char *argv[96], **envp;
	char *add[8];
	int k = 0, na = 0, ne = 0, in[2], err[2], rc;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t sa;
	sigset_t none;

	if (backend_program(prog, sizeof prog)) {
		fprintf(stderr, "dragon: start-up phase 'launch backends' "
				"failed: dragon-backend is not beside dragon; "
				"set DRAGON_BACKEND_PROGRAM to its path\n");
		return -1;
	}
	snprintf(nodes, sizeof nodes, "--nodes=%u", fe.n);
	snprintf(tasks, sizeof tasks, "--ntasks=%u", fe.n);
	argv[k++] = "srun";
	argv[k++] = "--overlap";
	argv[k++] = nodes;
	argv[k++] = tasks;
	argv[k++] = "--ntasks-per-node=1";
	argv[k++] = "--input=0";
	argv[k++] = "--job-name=dragon-backend";
	if (getenv("DRAGON_SRUN_OPTS")) {
		opts = strdup(getenv("DRAGON_SRUN_OPTS"));
		for (char *sv, *t = strtok_r(opts, " \t\n", &sv); t && k < 90;
		     t = strtok_r(NULL, " \t\n", &sv))
			argv[k++] = t;
	}
	argv[k++] = prog;
	argv[k] = NULL;
	if (asprintf(&add[na++], "DRAGON_BE_PORT=%d", port) < 0 ||
	    asprintf(&add[na++], "DRAGON_BE_INSTANCE=%s", inst) < 0 ||
	    asprintf(&add[na++], "DRAGON_BE_SECRET=%s", fe.secret) < 0 ||
	    asprintf(&add[na++], "DRAGON_BE_NNODES=%u", fe.n) < 0 ||
	    asprintf(&add[na++], "DRAGON_BE_TIMEOUT=%g", o->timeout) < 0 ||
	    asprintf(&add[na++], "DRAGON_BE_LOG_LEVEL=%d", o->log_level) < 0)
		return -1;
	for (char **e = environ; *e; e++)
		ne++;
	envp = calloc((size_t)(ne + na + 1), sizeof *envp);
	ne = 0;
	for (char **e = environ; *e; e++)
		if (strncmp(*e, "DRAGON_BE_", 10) != 0)
			envp[ne++] = *e;
	for (int i = 0; i < na; i++)
		envp[ne++] = add[i];
	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)
		return -1;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, err[1], 2);
	posix_spawnattr_init(&sa);
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&sa, &none);
	/* Its own process group: a Ctrl-C at the terminal reaches dragon,
	 * which tears the nodes down in order, not srun. */
	posix_spawnattr_setpgroup(&sa, 0);
	posix_spawnattr_setflags(&sa, POSIX_SPAWN_SETSIGMASK |
					      POSIX_SPAWN_SETPGROUP);
	rc = posix_spawnp(&fe.srun, "srun", &fa, &sa, argv, envp);
	posix_spawnattr_destroy(&sa);
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]);
	close(err[1]);
	for (int i = 0; i < na; i++) {
		/* the secret goes with srun's environment, nowhere else */
		explicit_bzero(add[i], strlen(add[i]));
		free(add[i]);
	}
	free(envp);
	free(opts);
	if (rc) {
		fprintf(stderr,
			"dragon: start-up phase 'launch backends' failed: "
			"cannot run srun: %s (is Slurm's srun on PATH?)\n",
			strerror(rc));
		close(in[1]);
		close(err[0]);
		return -1;
	}
	fe.in_fd = in[1];
	fe.err_fd = err[0];
	fcntl(fe.err_fd, F_SETFL, O_NONBLOCK);
	dbg("srun started (pid %d), backend %s", (int)fe.srun, prog);
	return 0;
}

/* A line srun (or a backend, or a process) wrote to stderr: kept for the
 * report of a failed start-up; srun's "task K" errors name the node. */
static void on_err_line(const char *l)
{
	const char *t = strstr(l, ": task ");

	snprintf(fe.tail[fe.ntail % TAIL_LINES], sizeof fe.tail[0], "%s", l);
	fe.ntail++;
	if (strncmp(l, "srun: error: ", 13) == 0 && t && fe.failed_task < 0 &&
	    isdigit((unsigned char)t[7])) {
		fe.failed_task = atoi(t + 7);
		snprintf(fe.failed_line, sizeof fe.failed_line, "%s", l);
	}
}

static void read_err(void)
{
	char buf[8192];
	ssize_t r = read(fe.err_fd, buf, sizeof buf);

	if (r <= 0) {
		if (r == 0 || errno != EAGAIN) {
			close(fe.err_fd);
			fe.err_fd = -1;
		}
		return;
	}
	if (write(2, buf, (size_t)r) < 0) {
		/* stderr gone: keep reading so srun never blocks */
	}
	for (ssize_t i = 0; i < r; i++) {
		if (buf[i] == '\n' || fe.linelen == sizeof fe.line - 1) {
			fe.line[fe.linelen] = '\0';
			on_err_line(fe.line);
			fe.linelen = 0;
		} else {
			fe.line[fe.linelen++] = buf[i];
		}
	}
}

static void relay_stdin(void)
{
	char buf[65536];
	ssize_t r = read(0, buf, sizeof buf);

	if (r <= 0 || write(fe.in_fd, buf, (size_t)r) != r) {
		close(fe.in_fd);
		fe.in_fd = -1;
	}
}

/* ---- backends ------------------------------------------------------------ */

static void on_hello(struct ctl_conn *c, const struct ctl_msg *m)
{
	const char *ver = ctl_field(m, 0), *sec = ctl_field(m, 3);
	char *end;
	long i = strtol(ctl_field(m, 1), &end, 10);
	struct node *nd;

	if (strlen(sec) != strlen(fe.secret) || strcmp(sec, fe.secret) != 0 ||
	    *end || i < 0 || i >= (long)fe.n || fe.nodes[i].fd >= 0) {
		fprintf(stderr,
			"dragon: dropped a connection that is not one of this "
			"runtime's backends (wrong secret or node)\n");
		close(c->fd);
		free(c->buf);
		return;
	}
	nd = &fe.nodes[i];
	*nd = (struct node){.fd = c->fd, .conn = *c, .state = ST_HELLO};
	snprintf(nd->host, sizeof nd->host, "%s", ctl_field(m, 2));
	snprintf(nd->agent, sizeof nd->agent, "%s", ctl_field(m, 4));
	snprintf(nd->ls, sizeof nd->ls, "%s", ctl_field(m, 5));
	clock_gettime(CLOCK_MONOTONIC, &nd->seen);
	if (strcmp(ver, CTL_VERSION) != 0 ||
	    strcmp(ctl_field(m, 7), PACKAGE_VERSION) != 0) {
		nd->failed = true;
		snprintf(nd->errphase, sizeof nd->errphase,
			 "backends connect to the frontend");
		snprintf(nd->err, sizeof nd->err,
			 "its backend is Dragon %s (control link %s), this "
			 "dragon is %s (control link %s): install the same "
			 "Dragon on every node",
			 ctl_field(m, 7), ver, PACKAGE_VERSION, CTL_VERSION);
	}
	dbg("node %ld (%s) connected, agent %s", i, nd->host, nd->agent);
}

static void on_node_msg(struct node *nd, const struct ctl_msg *m)
{
	clock_gettime(CLOCK_MONOTONIC, &nd->seen);
	switch (m->type) {
	case CTL_CONFIG_OK:
		nd->state = ST_CONFIG;
		break;
	case CTL_READY:
		nd->state = ST_READY;
		break;
	case CTL_HEAD_OK:
		nd->state = ST_HEAD;
		break;
	case CTL_EXIT:
		fe.head_exited = true;
		fe.exited = atoi(ctl_field(m, 0));
		fe.code = atoi(ctl_field(m, 1));
		fe.signo = atoi(ctl_field(m, 2));
		break;
	case CTL_ERR:
		nd->failed = true;
		snprintf(nd->errphase, sizeof nd->errphase, "%s",
			 ctl_field(m, 0));
		snprintf(nd->err, sizeof nd->err, "%s", ctl_field(m, 1));
		break;
	case CTL_BYE:
		nd->bye = true;
		break;
	default:
		break;
	}
}

static void node_readable(unsigned i)
{
	struct node *nd = &fe.nodes[i];
	struct ctl_msg m;
	int r;

	if (ctl_fill(&nd->conn) < 0) {
		close(nd->fd);
		nd->fd = -1;
		if (!nd->bye && !fe.stopping) {
			nd->lost = true;
			dbg("node %u (%s): connection closed", i, nd->host);
		}
		return;
	}
	while ((r = ctl_next(&nd->conn, &m)) > 0) {
		on_node_msg(nd, &m);
		ctl_msg_free(&m);
	}
	if (r < 0) {
		close(nd->fd);
		nd->fd = -1;
		nd->lost = !fe.stopping;
	}
}

static void pending_readable(int k)
{
	struct ctl_conn c;
	struct ctl_msg m;
	int r = ctl_fill(&fe.pending[k]);

	if (r >= 0 && (r = ctl_next(&fe.pending[k], &m)) == 0)
		return;
	c = fe.pending[k];
	fe.pending[k] = fe.pending[--fe.npending];
	if (r > 0 && m.type == CTL_HELLO) {
		on_hello(&c, &m);
	} else {
		close(c.fd);
		free(c.buf);
	}
	if (r > 0)
		ctl_msg_free(&m);
}

static void on_signals(void)
{
	struct signalfd_siginfo si;

	while (read(fe.sfd, &si, sizeof si) == (ssize_t)sizeof si) {
		if (si.ssi_signo == SIGCHLD) {
			int st;

			if (!fe.srun_done &&
			    waitpid(fe.srun, &st, WNOHANG) == fe.srun) {
				fe.srun_done = true;
				fe.srun_status = st;
				dbg("srun ended (status 0x%x)", st);
			}
			continue;
		}
		fe.nsig++;
		fe.lastsig = (int)si.ssi_signo;
	}
}

/* Wait up to ms for something to happen and handle it. */
static void pump(int ms)
{
	struct pollfd *p = fe.pfds;
	int *who = fe.who;
	int np = 0;

	p[np] = (struct pollfd){.fd = fe.sfd, .events = POLLIN};
	who[np++] = -1;
	if (fe.lfd >= 0) {
		p[np] = (struct pollfd){.fd = fe.lfd, .events = POLLIN};
		who[np++] = -2;
	}
	if (fe.err_fd >= 0) {
		p[np] = (struct pollfd){.fd = fe.err_fd, .events = POLLIN};
		who[np++] = -3;
	}
	if (fe.in_fd >= 0) {
		p[np] = (struct pollfd){.fd = 0, .events = POLLIN};
		who[np++] = -4;
	}
	for (int k = 0; k < fe.npending; k++) {
		p[np] = (struct pollfd){.fd = fe.pending[k].fd,
					.events = POLLIN};
		who[np++] = -100 - k;
	}
	for (unsigned i = 0; i < fe.n; i++)
		if (fe.nodes[i].fd >= 0) {
			p[np] = (struct pollfd){.fd = fe.nodes[i].fd,
						.events = POLLIN};
			who[np++] = (int)i;
		}
	if (poll(p, (nfds_t)np, ms) <= 0)
		return;
	for (int k = np - 1; k >= 0; k--) {
		if (!p[k].revents)
			continue;
		if (who[k] >= 0)
			node_readable((unsigned)who[k]);
		else if (who[k] == -1)
			on_signals();
		else if (who[k] == -3)
			read_err();
		else if (who[k] == -4)
			relay_stdin();
		else if (who[k] <= -100)
			pending_readable(-100 - who[k]);
		else if (who[k] == -2) {
			int fd = accept4(fe.lfd, NULL, NULL,
					 SOCK_CLOEXEC | SOCK_NONBLOCK);

			if (fd >= 0 && fe.npending < fe.maxpending)
				fe.pending[fe.npending++] =
					(struct ctl_conn){.fd = fd};
			else if (fd >= 0)
				close(fd);
		}
	}
}

static double since(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t->tv_sec) +
	       (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

/* A node that is gone or silent; NULL-free index or -1. */
static int lost_node(const char **why)
{
	for (unsigned i = 0; i < fe.n; i++) {
		struct node *nd = &fe.nodes[i];

		if (nd->lost) {
			*why = "its backend's connection closed without a "
			       "goodbye (the backend was killed, or its node "
			       "failed)";
			return (int)i;
		}
		if (nd->fd >= 0 && !nd->bye && nd->state >= ST_HELLO &&
		    since(&nd->seen) > fe.node_timeout) {
			*why = "its backend stopped answering (the node or "
			       "its network failed?)";
			nd->lost = true;
			return (int)i;
		}
	}
	return -1;
}

/* ---- phases -------------------------------------------------------------- */

static void print_tail(void)
{
	int first = fe.ntail > TAIL_LINES ? fe.ntail - TAIL_LINES : 0;

	if (fe.ntail == 0)
		return;
	fprintf(stderr, "  the last lines on srun's stderr were:\n");
	for (int i = first; i < fe.ntail; i++)
		fprintf(stderr, "    %s\n", fe.tail[i % TAIL_LINES]);
}

static const char *phase_hint(const char *phase)
{
	if (strstr(phase, "launch"))
		return "check that dragon-backend runs on that node (srun -N1 "
		       "-w NODE dragon-backend says why if not) and that "
		       "DRAGON_SRUN_OPTS holds what your site's srun needs";
	if (strstr(phase, "connect"))
		return "check that the nodes can reach this host (a firewall? "
		       "--port chooses the port) and that the node is not "
		       "overloaded; -t gives each phase more time";
	if (strstr(phase, "network"))
		return "check the node's /dev/shm and network interfaces; "
		       "-l debug logs each step";
	if (strstr(phase, "agents"))
		return "check that the nodes can reach each other over TCP (a "
		       "firewall between nodes?); -t gives each phase more "
		       "time";
	return "see the message above; -l debug logs each step";
}

/* Wait until every node reached state (or node 0 only with only0). */
static int phase(const char *name, int state, bool only0)
{
	struct timespec t0;
	const char *why;
	int k;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	dbg("phase '%s'", name);
	for (;;) {
		unsigned done = 0, want = only0 ? 1 : fe.n;

		for (unsigned i = 0; i < want; i++)
			done += fe.nodes[i].state >= state &&
				!fe.nodes[i].failed;
		if (done == want) {
			dbg("phase '%s' done in %.3f s", name, since(&t0));
			return 0;
		}
		for (unsigned i = 0; i < fe.n; i++)
			if (fe.nodes[i].failed) {
				fprintf(stderr,
					"dragon: start-up phase '%s' failed on "
					"node %u (%s): %s\n  what to do: %s\n",
					fe.nodes[i].errphase, i, node_name(i),
					fe.nodes[i].err,
					phase_hint(fe.nodes[i].errphase));
				return -1;
			}
		if (fe.failed_task >= 0 && (unsigned)fe.failed_task < fe.n &&
		    fe.nodes[fe.failed_task].state < ST_HELLO) {
			fprintf(stderr,
				"dragon: start-up phase 'launch backends' "
				"failed on node %d (%s): the backend could not "
				"start: %s\n",
				fe.failed_task, node_name(fe.failed_task),
				fe.failed_line);
			print_tail();
			fprintf(stderr, "  what to do: %s\n",
				phase_hint("launch"));
			return -1;
		}
		if ((k = lost_node(&why)) >= 0) {
			fprintf(stderr,
				"dragon: start-up phase '%s' failed: node %d "
				"(%s) was lost: %s\n",
				name, k, node_name((unsigned)k), why);
			print_tail();
			return -1;
		}
		if (fe.srun_done) {
			fprintf(stderr,
				"dragon: start-up phase '%s' failed: srun "
				"ended (%s %d) before every backend was "
				"ready\n",
				strstr(name, "connect") ? "launch backends"
							: name,
				WIFEXITED(fe.srun_status) ? "exit code"
							  : "signal",
				WIFEXITED(fe.srun_status)
					? WEXITSTATUS(fe.srun_status)
					: WTERMSIG(fe.srun_status));
			print_tail();
			fprintf(stderr, "  what to do: %s\n",
				phase_hint("launch"));
			return -1;
		}
		if (fe.nsig) {
			fprintf(stderr,
				"dragon: start-up phase '%s' interrupted by "
				"signal %d\n",
				name, fe.lastsig);
			return -2;
		}
		if (since(&t0) >= fe.timeout) {
			fprintf(stderr,
				"dragon: start-up phase '%s' failed: timed out "
				"after %g s; no answer from",
				name, fe.timeout);
			for (unsigned i = 0; i < want; i++)
				if (fe.nodes[i].state < state)
					fprintf(stderr, " node %u (%s)", i,
						node_name(i));
			fprintf(stderr, "\n  what to do: %s\n",
				phase_hint(name));
			return -1;
		}
		pump(100);
	}
}

static void send_all(int type, const char *const *f, int n)
{
	for (unsigned i = 0; i < fe.n; i++)
		if (fe.nodes[i].fd >= 0)
			ctl_send(fe.nodes[i].fd, type, f, n);
}

/* Every node not lost has said goodbye or closed its connection. */
static bool live_done(void)
{
	for (unsigned i = 0; i < fe.n; i++)
		if (fe.nodes[i].fd >= 0 && !fe.nodes[i].bye &&
		    !fe.nodes[i].lost)
			return false;
	return true;
}

/* Tell every backend to end its node; wait for them and for srun. */
static void stop_all(void)
{
	struct timespec t0;

	fe.stopping = true;
	send_all(CTL_STOP, NULL, 0);
	/* A backend that has not said hello yet sees its connection close,
	 * and ends its node as it would on a stop. */
	for (int k = 0; k < fe.npending; k++) {
		close(fe.pending[k].fd);
		free(fe.pending[k].buf);
	}
	fe.npending = 0;
	if (fe.lfd >= 0) {
		close(fe.lfd);
		fe.lfd = -1;
	}
	if (fe.in_fd >= 0) {
		close(fe.in_fd);
		fe.in_fd = -1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!fe.srun_done && since(&t0) < STOP_WAIT_S && !live_done())
		pump(100);
	/* Every node that can answer has ended: srun follows unless a lost
	 * node's task still hangs (a stopped backend, a cut network). */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!fe.srun_done && since(&t0) < 2)
		pump(100);
	if (!fe.srun_done) {
		fprintf(stderr, "dragon: srun did not end; ending it\n");
		kill(-fe.srun, SIGTERM);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		while (!fe.srun_done && since(&t0) < 3)
			pump(100);
	}
	if (!fe.srun_done) {
		kill(-fe.srun, SIGKILL);
		waitpid(fe.srun, &fe.srun_status, 0);
		fe.srun_done = true;
	}
	/* srun has passed on everything its tasks wrote */
	while (fe.err_fd >= 0)
		read_err();
	dbg("every node torn down");
}

static int listen_port(int port)
{
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6,
				  .sin6_port = htons((uint16_t)port),
				  .sin6_addr = in6addr_any};
	struct sockaddr_in a4 = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_ANY)};
	socklen_t sl = sizeof a6;
	int one = 1, fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (bind(fd, (struct sockaddr *)&a6, sizeof a6) < 0) {
			close(fd);
			fd = -1;
		}
	}
	if (fd < 0) {
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (fd < 0 || bind(fd, (struct sockaddr *)&a4, sizeof a4) < 0) {
			fprintf(stderr,
				"dragon: start-up phase 'launch backends' "
				"failed: cannot listen on port %d: %s (%s)\n",
				port, strerror(errno),
				port ? "choose another with --port, or leave "
				       "--port out for any free port"
				     : "no free port?");
			if (fd >= 0)
				close(fd);
			return -1;
		}
	}
	if (listen(fd, 256) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a6, &sl) < 0) {
		close(fd);
		return -1;
	}
	fe.lfd = fd;
	return ntohs(a6.sin6_port); /* same offset in sockaddr_in */
}

static void report(void)
{
	int code = fe.exited ? fe.code : 128 + fe.signo;

	if (fe.exited)
		printf("+++ head proc exited, code %d\n", code);
	else
		printf("+++ head proc exited, code %d (killed by signal %d, "
		       "SIG%s)\n",
		       code, fe.signo,
		       sigabbrev_np(fe.signo) ? sigabbrev_np(fe.signo) : "?");
	fflush(stdout);
}

static int start_up(const struct dragon_opts *o, const char *inst)
{
	unsigned char raw[32];
	char cwd[4096];
	const char **f;
	int port, rc, k = 0;
	size_t nl = strlen(o->argv[0]);

	if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
		return -1;
	for (int i = 0; i < 32; i++)
		sprintf(fe.secret + 2 * i, "%02x", raw[i]);
	port = listen_port(o->port);
	if (port < 0)
		return -1;
	dbg("listening on port %d for %u backends", port, fe.n);
	dbg("phase 'launch backends'");
	if (start_srun(o, inst, port))
		return -1;
	if ((rc = phase("backends connect to the frontend", ST_HELLO, false)))
		return rc;
	close(fe.lfd);
	fe.lfd = -1;
	f = calloc(fe.n + 1 + (size_t)o->argc + 3, sizeof *f);
	if (!f)
		return -1;
	f[0] = fe.nodes[0].ls;
	for (unsigned i = 0; i < fe.n; i++)
		f[1 + i] = fe.nodes[i].agent;
	send_all(CTL_CONFIG, f, (int)fe.n + 1);
	/* A backend goes on to the next phase by itself (it registers its
	 * services with the global ones as soon as its agent runs): no round
	 * trip through here between the two. */
	if ((rc = phase("network configuration exchanged", ST_CONFIG, false)) ||
	    (rc = phase("transport agents reachable", ST_READY, false))) {
		free(f);
		return rc;
	}
	f[k++] = getcwd(cwd, sizeof cwd) ? cwd : "/";
	if (nl > 3 && strcmp(o->argv[0] + nl - 3, ".py") == 0) {
		f[k++] = DRAGON_PYTHON;
		f[k++] = DRAGON_PYTHON;
	} else {
		f[k++] = o->argv[0];
	}
	for (int i = 0; i < o->argc; i++)
		f[k++] = o->argv[i];
	ctl_send(fe.nodes[0].fd, CTL_HEAD, f, k);
	free(f);
	return phase("head started", ST_HEAD, true);
}

/* The run: until the head exits, a node is lost, srun ends or signals. */
static int run(void)
{
	struct timespec sig0 = {0};
	int seen = 0, k;
	const char *why;

	for (;;) {
		if (fe.head_exited)
			return 0;
		for (unsigned i = 0; i < fe.n; i++)
			if (fe.nodes[i].failed) {
				fprintf(stderr, "dragon: node %u (%s): %s\n", i,
					node_name(i), fe.nodes[i].err);
				return -1;
			}
		if ((k = lost_node(&why)) >= 0) {
			fprintf(stderr,
				"dragon: node %d (%s) was lost: %s; ending the "
				"processes on the other nodes\n",
				k, node_name((unsigned)k), why);
			return -1;
		}
		if (fe.srun_done) {
			fprintf(stderr,
				"dragon: srun ended while the head process "
				"ran; ending the run\n");
			return -1;
		}
		if (fe.nsig > seen) {
			seen = fe.nsig;
			if (seen > 1)
				return -2;
			/* The head gets the signal, as on one node; its end
			 * ends the run.  A second signal, or the head still
			 * running after SIGNAL_WAIT_S, ends it now. */
			char s[8];
			const char *f[] = {s};

			snprintf(s, sizeof s, "%d", fe.lastsig);
			ctl_send(fe.nodes[0].fd, CTL_SIGNAL, f, 1);
			clock_gettime(CLOCK_MONOTONIC, &sig0);
		}
		if (seen && since(&sig0) > SIGNAL_WAIT_S)
			return -2;
		pump(500);
	}
}

int dragon_multi_run(struct dragon_opts *o, unsigned n, int sfd,
		     const char *instance)
{
	const char *nt = getenv("DRAGON_NODE_TIMEOUT");
	const char *list = getenv("SLURM_JOB_NODELIST");
	unsigned nn = 0;
	int rc;

	fe.n = n;
	fe.sfd = sfd;
	fe.lfd = fe.err_fd = fe.in_fd = -1;
	fe.failed_task = -1;
	fe.timeout = o->timeout;
	fe.node_timeout = nt && atof(nt) > 0 ? atof(nt) : 10;
	fe.debug = o->log_level >= DLAUNCH_LOG_DEBUG;
	fe.nodes = calloc(n, sizeof *fe.nodes);
	fe.maxpending = (int)n + 64;
	fe.pending = calloc((size_t)fe.maxpending, sizeof *fe.pending);
	fe.pfds = calloc(4 + (size_t)fe.maxpending + n, sizeof *fe.pfds);
	fe.who = calloc(4 + (size_t)fe.maxpending + n, sizeof *fe.who);
	if (!fe.nodes || !fe.pending || !fe.pfds || !fe.who) {
		fprintf(stderr, "dragon: out of memory for %u nodes\n", n);
		return 1;
	}
	for (unsigned i = 0; i < n; i++)
		fe.nodes[i].fd = -1;
	fe.names = expand_nodelist(list ? list : getenv("SLURM_NODELIST"), &nn);
	if (nn < n)
		fe.names = NULL;
	dbg("runtime %s over %u nodes", instance, n);
	rc = start_up(o, instance);
	if (rc == 0)
		rc = run();
	if (fe.srun > 0)
		stop_all();
	if (rc == 0) {
		report();
		return fe.exited ? fe.code : 128 + fe.signo;
	}
	if (rc == -2)
		return 128 + fe.lastsig;
	return 1;
}
