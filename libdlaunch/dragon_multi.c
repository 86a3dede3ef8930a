/* dragon across several nodes: the frontend.
 *
 * The launcher (where `dragon` runs: a login node or the batch script's
 * node) listens on a TCP port, starts one dragon-backend per node with
 * the workload manager's launcher (dragon_wlm.h: a single `srun
 * --overlap` step, PALS's mpiexec, or one ssh per host) and takes the
 * backends through the start-up phases, each with the -t deadline:
 *
 *   launch backends                  the launcher runs, no backend failed
 *                                    to start
 *   backends connect to the frontend every backend said hello, and it
 *                                    and the launcher proved to each
 *                                    other that they hold the secret
 *                                    (dragon_ctl.h); same version
 *   network configuration exchanged  every backend reported its
 *                                    interfaces and the address chosen
 *                                    (--network-prefix), then has node
 *                                    0's agent's address, its agent and
 *                                    services up (other agents'
 *                                    addresses are asked for when first
 *                                    needed: CTL_WHERE)
 *   transport agents reachable       every node reached the global
 *                                    services on node 0 through the agents
 *   head started                     node 0 started the head process
 *
 * Node 0 (the first node) is the primary: its backend runs the global
 * services and the head.  The head's stdin is dragon's (relayed to node
 * 0's backend through the launcher's tool).  Output of every process on
 * every node comes over its backend's control connection, whole lines
 * tagged with the process (CTL_OUTPUT), and is written here, labelled as
 * --label asks; each node's log comes the same way (CTL_LOG) into a file
 * of its own beside the launcher's log (dragon(1), "Logs").  When the
 * head exits, or on SIGINT/SIGTERM, or when a node is lost (its
 * backend's connection closes or it stops answering: the other nodes
 * are told (CTL_LOST) and the head gets DRAGON_NODE_TIMEOUT to end),
 * every backend is told to end everything on its node; dragon waits for them
 * and for the tool's processes, and ends those if it has to.
 */
#define _GNU_SOURCE
#include "config.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
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
#include "dragon_wlm.h"

#define TAIL_LINES    12
/* A backend's teardown: its processes get 5 s (a lost node's requests
 * fail at once: the stop names it): the surviving backends get this long
 * to end their nodes and send their last lines and goodbye. */
#define STOP_WAIT_S   40
#define SIGNAL_WAIT_S 5 /* the head's time after SIGINT/SIGTERM */

enum { ST_NONE, ST_HELLO, ST_NET, ST_CONFIG, ST_READY, ST_HEAD };

struct node {
	int fd;
	struct ctl_conn conn;
	int state;
	bool bye, lost, failed;
	char host[256], agent[300], ls[1024];
	char addr[64], ifaces[4096]; /* from its CTL_NET */
	char errphase[64], err[2048];
	struct timespec seen;
	int log_fd; /* this node's log file here, once it logged */
};

/* A connection that has not proved yet that it is one of our backends. */
struct pend {
	struct ctl_conn c;
	bool challenged;
	long node;
	char peer[INET6_ADDRSTRLEN + 32];
	char *hello[6]; /* the hello's fields, for the proofs */
	char nonce[CTL_NONCE_HEX + 1];
	struct ctl_msg hm; /* the hello, owning hello[] */
};

static struct fe {
	unsigned n;
	struct node *nodes;
	char **names; /* host names of the nodes, by index, or NULL */
	unsigned nnames;
	const struct wlm *wlm;
	struct wlm_job job; /* the launcher's processes */
	int lfd, sfd;
	int in_fd;
	char tail[TAIL_LINES][512];
	int ntail;
	int failed_task; /* a node the launcher says failed, or -1 */
	char failed_line[512];
	/* Connections that have not proved yet who they are: one per
	 * backend at most, and room for a few strangers, whatever the node
	 * count. */
	struct pend *pending;
	int npending, maxpending;
	struct pollfd *pfds; /* pump(): 4 + maxpending + n */
	int *who;
	int port;
	const char *netprefix;
	char secret[65];
	double timeout, node_timeout;
	struct timespec pinged; /* the last ping to the nodes */
	bool head_exited;
	int exited, code, signo;
	int nsig, lastsig;
	bool stopping;
	int debug;
	int label;
	struct dragon_opts *o;
} fe;

static void dbg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void dbg(const char *fmt, ...)
{
	struct timespec ts;
	va_list ap;

	if (!fe.debug)
		return;
	char msg[2048];

	clock_gettime(CLOCK_REALTIME, &ts);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	/* the launcher's log (dragon_open_log), else stderr */
	dprintf(fe.o && fe.o->log_fd >= 0 ? fe.o->log_fd : 2,
		"%ld.%03ld dragon: %s\n", (long)ts.tv_sec, ts.tv_nsec / 1000000,
		msg);
}

/* ---- the nodes ----------------------------------------------------------- */

static const char *node_name(unsigned i)
{
	if (fe.nodes && fe.nodes[i].host[0])
		return fe.nodes[i].host;
	if (fe.names && fe.names[i])
		return fe.names[i];
	return "?";
}

/* Detection order: Slurm, then PBS (their environments), then the
 * hosts given with --hostfile or --hostlist (ssh). */
static const struct wlm *const wlms[] = {&dragon_wlm_slurm, &dragon_wlm_pbs,
					 &dragon_wlm_ssh};

static const struct wlm *choose(const struct dragon_opts *o)
{
	bool hosts = o->hostfile || o->hostlist;

	for (size_t i = 0; i < sizeof wlms / sizeof wlms[0]; i++)
		if (o->wlm ? strcmp(o->wlm, wlms[i]->name) == 0
			   : wlms[i]->detect(o)) {
			if (hosts && wlms[i] != &dragon_wlm_ssh) {
				fprintf(stderr,
					"dragon: %s inside a %s job: add -w "
					"ssh to start the backends with ssh "
					"on those hosts, or leave it out to "
					"use the job's nodes\n",
					o->hostfile ? "--hostfile"
						    : "--hostlist",
					wlms[i] == &dragon_wlm_pbs ? "PBS"
								   : "Slurm");
				return NULL;
			}
			return wlms[i];
		}
	return &dragon_wlm_ssh; /* not reached: -w is checked */
}

int dragon_multi_nodes(const struct dragon_opts *o)
{
	unsigned n = 0;

	if (o->single_node) {
		if (o->nodes > 1 || o->wlm || o->hostfile || o->hostlist) {
			fprintf(stderr,
				"dragon: -s and %s contradict each other: "
				"give one of them\n",
				o->nodes > 1  ? "-N"
				: o->wlm      ? "-w"
				: o->hostfile ? "--hostfile"
					      : "--hostlist");
			return -1;
		}
		return 0;
	}
	if (!o->wlm && !o->hostfile && !o->hostlist &&
	    !dragon_wlm_slurm.detect(o) && !dragon_wlm_pbs.detect(o)) {
		if (o->nodes > 1) {
			fprintf(stderr,
				"dragon: -N %d: no nodes to run on: not inside "
				"a Slurm allocation (SLURM_JOB_ID) or a PBS "
				"job (PBS_NODEFILE), and no --hostfile or "
				"--hostlist given\n",
				o->nodes);
			return -1;
		}
		return 0;
	}
	if (!(fe.wlm = choose(o)) || fe.wlm->nodes(o, &fe.names, &n))
		return -1;
	fe.nnames = n;
	dbg("workload manager %s: %u node%s", fe.wlm->name, n,
	    n == 1 ? "" : "s");
	return (int)n;
}

/* ---- the launcher's processes -------------------------------------------- */

/* A line the launcher's tool (or a backend, or a process) wrote to
 * stderr: kept for the report of a failed start-up; the tool's own
 * errors may name the node that failed. */
static void on_err_line(struct wlm_proc *p, const char *l)
{
	int k;

	snprintf(fe.tail[fe.ntail % TAIL_LINES], sizeof fe.tail[0], "%s", l);
	fe.ntail++;
	snprintf(p->last, sizeof p->last, "%s", l);
	if (p->node < 0 && fe.failed_task < 0 &&
	    (k = fe.wlm->failed_node(l)) >= 0) {
		fe.failed_task = k;
		snprintf(fe.failed_line, sizeof fe.failed_line, "%s", l);
	}
}

static void read_err(struct wlm_proc *p)
{
	char buf[8192];
	ssize_t r = read(p->err_fd, buf, sizeof buf);

	if (r <= 0) {
		if (r == 0 || errno != EAGAIN) {
			close(p->err_fd);
			p->err_fd = -1;
		}
		return;
	}
	if (write(2, buf, (size_t)r) < 0) {
		/* stderr gone: keep reading so the tool never blocks */
	}
	for (ssize_t i = 0; i < r; i++) {
		if (buf[i] == '\n' || p->linelen == sizeof p->line - 1) {
			p->line[p->linelen] = '\0';
			on_err_line(p, p->line);
			p->linelen = 0;
		} else {
			p->line[p->linelen++] = buf[i];
		}
	}
}

/* Every process the launcher started has ended. */
static bool launcher_done(void)
{
	for (unsigned k = 0; k < fe.job.nprocs; k++)
		if (!fe.job.procs[k].done)
			return false;
	return true;
}

static bool any_err_fd(void)
{
	for (unsigned k = 0; k < fe.job.nprocs; k++)
		if (fe.job.procs[k].err_fd >= 0)
			return true;
	return false;
}

/* "exit code 255", "signal 9" */
static const char *how_ended(int st, char *buf, size_t len)
{
	snprintf(buf, len, "%s %d", WIFEXITED(st) ? "exit code" : "signal",
		 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	return buf;
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

static void pend_drop(struct pend *p)
{
	close(p->c.fd);
	free(p->c.buf);
	if (p->hm.mem)
		ctl_msg_free(&p->hm);
}

/* A backend that speaks another control link, or is another Dragon: the
 * start-up fails at the connect phase, naming both versions. */
static void version_mismatch(long i, const char *host, const char *ver,
			     const char *pkg)
{
	struct node *nd = &fe.nodes[i];

	nd->failed = true;
	snprintf(nd->host, sizeof nd->host, "%s", host);
	snprintf(nd->errphase, sizeof nd->errphase,
		 "backends connect to the frontend");
	snprintf(nd->err, sizeof nd->err,
		 "its backend is Dragon %s (control link %s), this dragon is "
		 "Dragon %s (control link %s): install the same Dragon on "
		 "every node",
		 *pkg ? pkg : "of unknown version", ver, PACKAGE_VERSION,
		 CTL_VERSION);
}

/* The hello: which node the peer says it is; answered by the frontend's
 * proof and nonce.  false: drop the connection. */
static bool on_hello(struct pend *p, struct ctl_msg *m)
{
	const char *ver = ctl_field(m, 0);
	char *end, proof[CTL_PROOF_HEX + 1];
	const char *f[7], *cf[2] = {p->nonce, proof};
	long i = strtol(ctl_field(m, 1), &end, 10);

	if (m->type != CTL_HELLO || *end || end == ctl_field(m, 1) || i < 0 ||
	    i >= (long)fe.n || fe.nodes[i].fd >= 0) {
		fprintf(stderr,
			"dragon: refused a connection from %s: not a hello of "
			"one of this runtime's backends (no such node, or "
			"node already connected)\n",
			p->peer);
		return false;
	}
	if (strcmp(ver, CTL_VERSION) != 0) {
		/* It cannot take part in this handshake: say what it is. */
		version_mismatch(i, ctl_field(m, 2), ver,
				 m->n > 1 ? m->f[m->n - 1] : "");
		return false;
	}
	if (m->n != 6 || strlen(ctl_field(m, 3)) != CTL_NONCE_HEX) {
		fprintf(stderr,
			"dragon: refused a connection from %s: malformed "
			"hello\n",
			p->peer);
		return false;
	}
	p->hm = *m;
	*m = (struct ctl_msg){0};
	for (int k = 0; k < 6; k++)
		f[k] = p->hello[k] = p->hm.f[k];
	p->node = i;
	if (ctl_nonce(p->nonce))
		return false;
	f[6] = p->nonce;
	if (ctl_proof(fe.secret, "frontend", f, 7, proof) ||
	    ctl_send(p->c.fd, CTL_CHALLENGE, cf, 2))
		return false;
	p->challenged = true;
	return true;
}

/* The backend's proof: a right one makes the connection node i's. */
static bool on_auth(struct pend *p, const struct ctl_msg *m)
{
	char want[CTL_PROOF_HEX + 1];
	const char *f[7];
	long i = p->node;
	struct node *nd;

	for (int k = 0; k < 6; k++)
		f[k] = p->hello[k];
	f[6] = p->nonce;
	if (m->type != CTL_AUTH ||
	    ctl_proof(fe.secret, "backend", f, 7, want) ||
	    !ctl_proof_ok(ctl_field(m, 0), want)) {
		fprintf(stderr,
			"dragon: refused a connection from %s that says it is "
			"node %ld (%s): it failed to prove that it holds this "
			"runtime's secret (a backend of another runtime, or "
			"not a backend); still waiting for node %ld\n",
			p->peer, i, p->hello[2], i);
		return false;
	}
	if (fe.nodes[i].fd >= 0) {
		fprintf(stderr,
			"dragon: refused a second connection for node %ld "
			"from %s\n",
			i, p->peer);
		return false;
	}
	nd = &fe.nodes[i];
	*nd = (struct node){
		.fd = p->c.fd, .conn = p->c, .state = ST_HELLO, .log_fd = -1};
	snprintf(nd->host, sizeof nd->host, "%s", p->hello[2]);
	clock_gettime(CLOCK_MONOTONIC, &nd->seen);
	if (strcmp(p->hello[5], PACKAGE_VERSION) != 0)
		version_mismatch(i, nd->host, p->hello[0], p->hello[5]);
	dbg("node %ld (%s) connected from %s, proved the secret", i, nd->host,
	    p->peer);
	return true;
}

/* The path of node i's log: beside the launcher's, "<log>.node<i>-<host>"
 * with the launcher's ".log" moved to the end. */
static void node_log_path(unsigned i, char *out, size_t len)
{
	const char *lp = fe.o->log_path;
	size_t n = strlen(lp);

	if (n > 4 && strcmp(lp + n - 4, ".log") == 0)
		n -= 4;
	snprintf(out, len, "%.*s.node%u-%s.log", (int)n, lp, i, node_name(i));
	/* a host name is a file name's part here */
	for (char *p = out + n; *p; p++)
		if (*p == '/')
			*p = '_';
}

static void on_node_log(unsigned i, const struct ctl_msg *m)
{
	struct node *nd = &fe.nodes[i];
	char path[4400];

	if (nd->log_fd < 0 && fe.o->log_path[0]) {
		node_log_path(i, path, sizeof path);
		nd->log_fd = open(path,
				  O_WRONLY | O_CREAT | O_TRUNC | O_APPEND |
					  O_CLOEXEC,
				  0600);
		if (nd->log_fd >= 0)
			dbg("node %u (%s) logs to %s", i, node_name(i), path);
	}
	if (nd->log_fd < 0 ||
	    write(nd->log_fd, m->data, m->datalen) != (ssize_t)m->datalen) {
		/* no file: the lines go to stderr rather than nowhere */
		if (write(2, m->data, m->datalen) < 0)
			return;
	}
}

/* Output of a process on node i.  Waiting for our own stdout (a slow
 * reader) is not the node's silence: its time is given back. */
static void on_output(unsigned i, const struct ctl_msg *m)
{
	double waited = dragon_output_write(
		fe.label, atoi(ctl_field(m, 1)), i, node_name(i),
		(pid_t)atoi(ctl_field(m, 0)), m->data, m->datalen);

	if (waited > 0.5)
		for (unsigned k = 0; k < fe.n; k++)
			clock_gettime(CLOCK_MONOTONIC, &fe.nodes[k].seen);
}

/* A node's agent must reach another node: that node's agent address, or
 * "" when there is none (a node lost, or not configured yet). */
static void on_where(struct node *nd, const struct ctl_msg *m)
{
	char *end;
	unsigned long k = strtoul(ctl_field(m, 0), &end, 10);
	const char *f[2] = {ctl_field(m, 0), ""};

	if (*end || k >= fe.n)
		return;
	if (!fe.nodes[k].lost)
		f[1] = fe.nodes[k].agent;
	dbg("node %u asks for node %lu's agent: %s", (unsigned)(nd - fe.nodes),
	    k, *f[1] ? f[1] : "none");
	ctl_send(nd->fd, CTL_PEER, f, 2);
}

static void on_node_msg(struct node *nd, const struct ctl_msg *m)
{
	unsigned i = (unsigned)(nd - fe.nodes);

	clock_gettime(CLOCK_MONOTONIC, &nd->seen);
	switch (m->type) {
	case CTL_OUTPUT:
		on_output(i, m);
		break;
	case CTL_LOG:
		on_node_log(i, m);
		break;
	case CTL_NET:
		nd->state = ST_NET;
		snprintf(nd->addr, sizeof nd->addr, "%s", ctl_field(m, 0));
		snprintf(nd->agent, sizeof nd->agent, "%s", ctl_field(m, 1));
		snprintf(nd->ls, sizeof nd->ls, "%s", ctl_field(m, 2));
		snprintf(nd->ifaces, sizeof nd->ifaces, "%s", ctl_field(m, 3));
		dbg("node %s: address %s, agent %s", nd->host, nd->addr,
		    nd->agent);
		break;
	case CTL_CONFIG_OK:
		nd->state = ST_CONFIG;
		break;
	case CTL_WHERE:
		on_where(nd, m);
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
		dbg("node %u (%s): every process ended, said goodbye", i,
		    node_name(i));
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

/* A connection in its handshake: the hello, then the proof. */
static void pending_readable(int k)
{
	struct pend *p = &fe.pending[k];
	struct ctl_msg m = {0};
	bool keep;
	int r = ctl_fill(&p->c);

	if (r >= 0 && (r = ctl_next(&p->c, &m)) == 0)
		return;
	if (r < 0)
		keep = false;
	else if (!p->challenged)
		keep = on_hello(p, &m);
	else if (on_auth(p, &m)) {
		struct node *nd = &fe.nodes[p->node];
		struct ctl_msg more;

		ctl_msg_free(&p->hm);
		*p = fe.pending[--fe.npending];
		ctl_msg_free(&m);
		/* what the backend sent right after its proof */
		while (ctl_next(&nd->conn, &more) > 0) {
			on_node_msg(nd, &more);
			ctl_msg_free(&more);
		}
		return;
	} else
		keep = false;
	if (m.mem)
		ctl_msg_free(&m);
	if (!keep) {
		pend_drop(p);
		*p = fe.pending[--fe.npending];
	}
}

static void accept_one(void)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	struct pend *p;
	char h[INET6_ADDRSTRLEN], sv[8];
	int fd = accept4(fe.lfd, (struct sockaddr *)&ss, &sl,
			 SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	if (fe.npending >= fe.maxpending) {
		close(fd);
		return;
	}
	p = &fe.pending[fe.npending++];
	*p = (struct pend){.c = {.fd = fd}, .node = -1};
	if (getnameinfo((struct sockaddr *)&ss, sl, h, sizeof h, sv, sizeof sv,
			NI_NUMERICHOST | NI_NUMERICSERV) == 0)
		snprintf(p->peer, sizeof p->peer, "%s port %s", h, sv);
	else
		snprintf(p->peer, sizeof p->peer, "?");
}

static void on_signals(void)
{
	struct signalfd_siginfo si;

	while (read(fe.sfd, &si, sizeof si) == (ssize_t)sizeof si) {
		if (si.ssi_signo == SIGCHLD) {
			for (unsigned k = 0; k < fe.job.nprocs; k++) {
				struct wlm_proc *p = &fe.job.procs[k];
				int st;

				if (!p->done &&
				    waitpid(p->pid, &st, WNOHANG) == p->pid) {
					p->done = true;
					p->status = st;
					dbg("%s (node %d) ended (status 0x%x)",
					    fe.wlm->tool, p->node, st);
				}
			}
			continue;
		}
		fe.nsig++;
		fe.lastsig = (int)si.ssi_signo;
	}
}

/* Wait up to ms for something to happen and handle it. */
/* Every second, a ping to each node: a backend that hears nothing from
 * here for DRAGON_NODE_TIMEOUT ends its node (the network to it was cut,
 * or this host failed), as this side ends the run for a silent node. */
static void ping_nodes(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec == fe.pinged.tv_sec)
		return;
	fe.pinged = now;
	for (unsigned i = 0; i < fe.n; i++)
		if (fe.nodes[i].fd >= 0 && !fe.nodes[i].bye)
			ctl_send(fe.nodes[i].fd, CTL_PING, NULL, 0);
}

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
	for (unsigned k = 0; k < fe.job.nprocs && k < 4096; k++)
		if (fe.job.procs[k].err_fd >= 0) {
			p[np] = (struct pollfd){.fd = fe.job.procs[k].err_fd,
						.events = POLLIN};
			who[np++] = -10000 - (int)k;
		}
	if (fe.in_fd >= 0) {
		p[np] = (struct pollfd){.fd = 0, .events = POLLIN};
		who[np++] = -4;
	}
	for (int k = 0; k < fe.npending; k++) {
		p[np] = (struct pollfd){.fd = fe.pending[k].c.fd,
					.events = POLLIN};
		who[np++] = -100 - k;
	}
	for (unsigned i = 0; i < fe.n; i++)
		if (fe.nodes[i].fd >= 0) {
			p[np] = (struct pollfd){.fd = fe.nodes[i].fd,
						.events = POLLIN};
			who[np++] = (int)i;
		}
	ping_nodes();
	if (poll(p, (nfds_t)np, ms) <= 0)
		return;
	for (int k = np - 1; k >= 0; k--) {
		if (!p[k].revents)
			continue;
		if (who[k] >= 0)
			node_readable((unsigned)who[k]);
		else if (who[k] == -1)
			on_signals();
		else if (who[k] <= -10000)
			read_err(&fe.job.procs[-10000 - who[k]]);
		else if (who[k] == -4)
			relay_stdin();
		else if (who[k] <= -100)
			pending_readable(-100 - who[k]);
		else if (who[k] == -2)
			accept_one();
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
	fprintf(stderr, "  the last lines on %s's stderr were:\n",
		fe.wlm->tool);
	for (int i = first; i < fe.ntail; i++)
		fprintf(stderr, "    %s\n", fe.tail[i % TAIL_LINES]);
}

static const char *phase_hint(const char *phase)
{
	if (strstr(phase, "launch"))
		return fe.wlm->hint;
	if (strstr(phase, "connect"))
		return "check that the nodes can reach this host: open the "
		       "port in the firewall, or choose one the nodes can "
		       "reach with --port PORT; -t gives each phase more time "
		       "if a node is only slow";
	if (strstr(phase, "network"))
		return "check the node's /dev/shm and network interfaces; "
		       "-l debug logs each step";
	if (strstr(phase, "agents"))
		return "check that the nodes can reach each other over TCP (a "
		       "firewall between nodes?); -t gives each phase more "
		       "time";
	return "see the message above; -l debug logs each step";
}

/* What a launcher's process still has to say, once it has ended (up to
 * a second: its children may hold the pipe). */
static void drain(struct wlm_proc *p)
{
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (p->err_fd >= 0 && since(&t0) < 1) {
		struct pollfd pf = {.fd = p->err_fd, .events = POLLIN};

		if (poll(&pf, 1, 100) > 0)
			read_err(p);
	}
}

/* The launcher process of one node (ssh) that ended before its backend
 * connected: its index in the job's processes, or -1. */
static int node_launch_failed(void)
{
	for (unsigned k = 0; k < fe.job.nprocs; k++) {
		const struct wlm_proc *p = &fe.job.procs[k];

		if (p->node >= 0 && p->done && (unsigned)p->node < fe.n &&
		    fe.nodes[p->node].state < ST_HELLO)
			return (int)k;
	}
	return -1;
}

/* Wait until every node reached state (or node 0 only with only0). */
static int phase(const char *name, int state, bool only0)
{
	struct timespec t0;
	const char *why;
	char buf[64];
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
		if ((k = node_launch_failed()) >= 0) {
			struct wlm_proc *p = &fe.job.procs[k];

			drain(p);
			fprintf(stderr,
				"dragon: start-up phase 'launch backends' "
				"failed on node %d (%s): %s ended (%s) before "
				"the backend connected%s%s\n",
				p->node, node_name((unsigned)p->node),
				fe.wlm->tool,
				how_ended(p->status, buf, sizeof buf),
				p->last[0] ? ": " : "", p->last);
			fprintf(stderr, "  what to do: %s\n",
				phase_hint("launch"));
			return -1;
		}
		if (fe.job.nprocs == 1 && fe.job.procs[0].node < 0 &&
		    fe.job.procs[0].done) {
			drain(&fe.job.procs[0]);
			fprintf(stderr,
				"dragon: start-up phase '%s' failed: %s "
				"ended (%s) before every backend was "
				"ready\n",
				strstr(name, "connect") ? "launch backends"
							: name,
				fe.wlm->tool,
				how_ended(fe.job.procs[0].status, buf,
					  sizeof buf));
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
			if (state == ST_HELLO)
				fprintf(stderr,
					"\n  nothing from %s reached port %d "
					"of this host (a firewall blocking the "
					"port?)",
					want - done > 1 ? "these nodes"
							: "that node",
					fe.port);
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

/* The stop names the nodes lost: a survivor's requests to them fail at
 * once (dtrans_agent_peer_down), where each would otherwise wait for the
 * transport's peer timeout in the survivor's teardown. */
static void send_stop(void)
{
	const char **f = calloc(fe.n ? fe.n : 1, sizeof *f);
	char *idx = calloc(fe.n ? fe.n : 1, 12);
	int n = 0;

	for (unsigned i = 0; f && idx && i < fe.n; i++)
		if (fe.nodes[i].lost) {
			snprintf(idx + 12 * n, 12, "%u", i);
			f[n] = idx + 12 * n;
			n++;
		}
	send_all(CTL_STOP, f, f && idx ? n : 0);
	free(f);
	free(idx);
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

/* Signal every process of the launcher that has not ended. */
static void kill_launcher(int sig)
{
	for (unsigned k = 0; k < fe.job.nprocs; k++)
		if (!fe.job.procs[k].done && fe.job.procs[k].pid > 0)
			kill(-fe.job.procs[k].pid, sig);
}

static bool any_lost(void)
{
	for (unsigned i = 0; i < fe.n; i++)
		if (fe.nodes[i].lost)
			return true;
	return false;
}

/* Tell every backend to end its node; wait for them and for the
 * launcher's processes. */
static void stop_all(void)
{
	struct timespec t0, tl;
	bool lost;

	fe.stopping = true;
	dbg("teardown: telling every backend to end its node");
	send_stop();
	/* A backend that has not said hello yet sees its connection close,
	 * and ends its node as it would on a stop. */
	for (int k = 0; k < fe.npending; k++)
		pend_drop(&fe.pending[k]);
	fe.npending = 0;
	if (fe.lfd >= 0) {
		close(fe.lfd);
		fe.lfd = -1;
	}
	if (fe.in_fd >= 0) {
		close(fe.in_fd);
		fe.in_fd = -1;
	}
	/* Every surviving backend's last lines and goodbye, also for a
	 * moment once the launcher has ended: what a backend sent before it
	 * exited is still to be read, and its connection's end follows. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (since(&t0) < STOP_WAIT_S && !live_done()) {
		if (!launcher_done())
			clock_gettime(CLOCK_MONOTONIC, &tl);
		else if (since(&tl) > 2)
			break;
		pump(100);
	}
	for (unsigned i = 0; i < fe.n; i++)
		if (fe.nodes[i].fd >= 0 && !fe.nodes[i].bye &&
		    !fe.nodes[i].lost)
			fprintf(stderr,
				"dragon: node %u (%s) did not end its "
				"processes within %d s; its last log lines "
				"may be missing\n",
				i, node_name(i), STOP_WAIT_S);
	/* Every node that can answer has ended: the launcher follows unless
	 * a lost node's task still hangs (a stopped backend, a cut
	 * network).  With a node lost that is to be expected: the launcher
	 * is ended at once, and given less time to go. */
	lost = any_lost();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!launcher_done() && since(&t0) < (lost ? 0.3 : 2))
		pump(100);
	if (!launcher_done()) {
		if (!lost)
			fprintf(stderr, "dragon: %s did not end; ending it\n",
				fe.wlm->tool);
		kill_launcher(SIGTERM);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		while (!launcher_done() && since(&t0) < (lost ? 1 : 3))
			pump(100);
	}
	if (!launcher_done()) {
		kill_launcher(SIGKILL);
		for (unsigned k = 0; k < fe.job.nprocs; k++)
			if (!fe.job.procs[k].done) {
				waitpid(fe.job.procs[k].pid,
					&fe.job.procs[k].status, 0);
				fe.job.procs[k].done = true;
			}
	}
	/* The tool has passed on everything its tasks wrote. */
	while (any_err_fd())
		for (unsigned k = 0; k < fe.job.nprocs; k++)
			if (fe.job.procs[k].err_fd >= 0)
				drain(&fe.job.procs[k]);
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

#define NET_PHASE "network configuration exchanged"

/* Every node reported its interfaces: each has an address matching
 * --network-prefix, or the phase fails naming the nodes without one and
 * listing what every node has. */
static int check_addresses(void)
{
	unsigned bad = 0;

	for (unsigned i = 0; i < fe.n; i++)
		bad += !fe.nodes[i].addr[0];
	if (!bad)
		return 0;
	fprintf(stderr,
		"dragon: start-up phase '" NET_PHASE "' failed: "
		"--network-prefix '%s' matches no interface on",
		fe.netprefix ? fe.netprefix : "");
	for (unsigned i = 0, k = 0; i < fe.n; i++)
		if (!fe.nodes[i].addr[0])
			fprintf(stderr, "%s node %u (%s)", k++ ? "," : "", i,
				node_name(i));
	fprintf(stderr, "\n  the interfaces of each node:\n");
	for (unsigned i = 0; i < fe.n; i++)
		fprintf(stderr, "    node %u (%s): %s\n", i, node_name(i),
			fe.nodes[i].ifaces);
	fprintf(stderr,
		"  what to do: give --network-prefix the start of an "
		"interface name (e.g. eth0, ib) or of an address (e.g. 10.1.) "
		"that every node has, or leave it out\n");
	return -1;
}

/* Start the backends with the chosen launcher.  What they need comes in
 * their environment; the secret goes as the launcher sees fit, never on
 * a command line. */
static int launch(const struct dragon_opts *o, const char *inst, int port)
{
	/* env: up to 8 variables, then room for the one a launcher adds
	 * (the secret: dragon_wlm.h) and the NULL that ends them */
	char prog[4096], addr[256], *env[11] = {NULL};
	int na = 0, rc = -1;

	if (wlm_backend_program(prog, sizeof prog)) {
		fprintf(stderr, "dragon: start-up phase 'launch backends' "
				"failed: dragon-backend is not beside dragon; "
				"set DRAGON_BACKEND_PROGRAM to its path\n");
		return -1;
	}
	/* Under Slurm the backends find this host in the step's
	 * environment; elsewhere it is found here (dragon_wlm.h), and a
	 * backend started by ssh falls back on ssh's idea of it. */
	wlm_frontend_addr(o, fe.wlm == &dragon_wlm_slurm ? NULL : fe.names,
			  fe.n, addr, sizeof addr);
	if (!addr[0] && fe.wlm == &dragon_wlm_pbs)
		gethostname(addr, sizeof addr - 1);
	dbg("backends connect to %s:%d", addr[0] ? addr : "(their default)",
	    port);
	if (asprintf(&env[na++], "DRAGON_BE_PORT=%d", port) < 0 ||
	    asprintf(&env[na++], "DRAGON_BE_INSTANCE=%s", inst) < 0 ||
	    asprintf(&env[na++], "DRAGON_BE_NNODES=%u", fe.n) < 0 ||
	    asprintf(&env[na++], "DRAGON_BE_TIMEOUT=%g", o->timeout) < 0 ||
	    asprintf(&env[na++], "DRAGON_BE_LOG_LEVEL=%d", o->log_level) < 0 ||
	    asprintf(&env[na++], "DRAGON_BE_NODE_TIMEOUT=%g", fe.node_timeout) <
		    0 ||
	    asprintf(&env[na++], "DRAGON_BE_NETPREFIX=%s",
		     o->netprefix ? o->netprefix : "") < 0 ||
	    (addr[0] &&
	     asprintf(&env[na++], "DRAGON_BE_FRONTEND=%s", addr) < 0))
		goto out;
	fe.job = (struct wlm_job){.n = fe.n,
				  .hosts = fe.names,
				  .prog = prog,
				  .env = env,
				  .secret = fe.secret,
				  .frontend = addr,
				  .timeout = o->timeout,
				  .in_fd = -1};
	rc = fe.wlm->start(&fe.job);
	fe.in_fd = fe.job.in_fd;
	if (rc == 0)
		dbg("%s started, backend %s", fe.wlm->tool, prog);
out:
	for (int i = 0; i < na; i++)
		free(env[i]);
	return rc;
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
	fe.port = port;
	fe.netprefix = o->netprefix;
	dbg("listening on port %d for %u backends", port, fe.n);
	dbg("phase 'launch backends'");
	if (launch(o, inst, port))
		return -1;
	if ((rc = phase("backends connect to the frontend", ST_HELLO, false)))
		return rc;
	close(fe.lfd);
	fe.lfd = -1;
	if ((rc = phase(NET_PHASE, ST_NET, false)) || (rc = check_addresses()))
		return rc;
	f = calloc(fe.n + 1 + (size_t)o->argc + 3, sizeof *f);
	if (!f)
		return -1;
	/* The global services and node 0's agent, the same few bytes for
	 * every node but node 0, whose services answer every node at once
	 * and so get every agent's address: O(N) bytes in all.  Other
	 * addresses are asked for when needed (CTL_WHERE). */
	f[0] = fe.nodes[0].ls;
	for (unsigned i = 0; i < fe.n; i++)
		f[1 + i] = fe.nodes[i].agent;
	ctl_send(fe.nodes[0].fd, CTL_CONFIG, f, (int)fe.n + 1);
	for (unsigned i = 1; i < fe.n; i++)
		ctl_send(fe.nodes[i].fd, CTL_CONFIG, f, 2);
	/* A backend goes on to the next phase by itself (it registers its
	 * services with the global ones as soon as its agent runs): no round
	 * trip through here between the two. */
	if ((rc = phase(NET_PHASE, ST_CONFIG, false)) ||
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

/* Node k is lost: every other node is told (its processes' waits raise
 * an error that names k, see dragon(7)), and the head process gets up to
 * DRAGON_NODE_TIMEOUT to see that error and end (its traceback reaches
 * the terminal) before the teardown ends it.  A lost primary node took
 * the head with it: nothing to wait for.  Returns -1 (the run failed). */
static int lost_grace(int k, const char *why)
{
	struct timespec t0;
	char idx[16];
	const char *f[] = {idx, node_name((unsigned)k), why};
	int sigs = fe.nsig;

	snprintf(idx, sizeof idx, "%d", k);
	for (unsigned i = 0; i < fe.n; i++)
		if (i != (unsigned)k && fe.nodes[i].fd >= 0 &&
		    !fe.nodes[i].lost && !fe.nodes[i].bye)
			ctl_send(fe.nodes[i].fd, CTL_LOST, f, 3);
	if (k == 0)
		return -1;
	dbg("node %d lost: the head gets %g s to end", k, fe.node_timeout);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!fe.head_exited && fe.nsig == sigs && !fe.nodes[0].lost &&
	       fe.nodes[0].fd >= 0 && since(&t0) < fe.node_timeout)
		pump(100);
	return -1;
}

/* The run: until the head exits, a node is lost, the launcher ends or
 * a signal comes. */
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
			return lost_grace(k, why);
		}
		for (unsigned j = 0; j < fe.job.nprocs; j++) {
			struct wlm_proc *p = &fe.job.procs[j];
			char buf[64];

			if (!p->done ||
			    (p->node >= 0 && (unsigned)p->node < fe.n &&
			     fe.nodes[p->node].bye))
				continue;
			drain(p);
			if (p->node < 0 || (unsigned)p->node >= fe.n) {
				fprintf(stderr,
					"dragon: %s ended while the head "
					"process ran; ending the run\n",
					fe.wlm->tool);
				return -1;
			}
			fprintf(stderr,
				"dragon: node %d (%s) was lost: its "
				"%s ended (%s)%s%s; ending the "
				"processes on the other nodes\n",
				p->node, node_name((unsigned)p->node),
				fe.wlm->tool,
				how_ended(p->status, buf, sizeof buf),
				p->last[0] ? ": " : "", p->last);
			snprintf(buf, sizeof buf, "its %s ended", fe.wlm->tool);
			return lost_grace(p->node, buf);
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
	int rc;

	fe.n = n;
	fe.sfd = sfd;
	fe.lfd = fe.in_fd = -1;
	fe.failed_task = -1;
	fe.timeout = o->timeout;
	fe.node_timeout = nt && atof(nt) > 0 ? atof(nt) : 10;
	fe.debug = o->log_level >= DLAUNCH_LOG_DEBUG;
	fe.label = o->label;
	fe.o = o;
	/* The launcher's log, and the nodes' beside it. */
	dragon_open_log(o);
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
		fe.nodes[i].fd = fe.nodes[i].log_fd = -1;
	dbg("runtime %s over %u nodes", instance, n);
	rc = start_up(o, instance);
	if (rc == 0)
		rc = run();
	if (fe.job.nprocs)
		stop_all();
	for (unsigned i = 0; i < n; i++)
		if (fe.nodes[i].log_fd >= 0) {
			char path[4400];

			close(fe.nodes[i].log_fd);
			/* without -l debug a node logs only what matters */
			node_log_path(i, path, sizeof path);
			if (!fe.debug)
				fprintf(stderr,
					"dragon: node %u (%s) logged "
					"messages: see %s\n",
					i, node_name(i), path);
		}
	if (fe.debug)
		fprintf(stderr,
			"dragon: logs of this run: %s (the launcher) and "
			"beside it one per node\n",
			o->log_path);
	dragon_close_log(o);
	fe.o = NULL;
	if (rc == 0) {
		report();
		return fe.exited ? fe.code : 128 + fe.signo;
	}
	if (rc == -2)
		return 128 + fe.lastsig;
	return 1;
}
