/* dragon-backend: one node of a runtime over several nodes.
 *
 * The dragon launcher starts one backend per node (srun, one task per
 * node; PALS's mpiexec, one rank per node; or ssh, see dragon_wlm.h).  A
 * backend connects back to the launcher (the frontend), and on its node runs
 * the local services (an embedded runtime: the default pool, process start,
 * output forwarding, reaping) and the transport agent with the node's gateway
 * channel.  The backend of node 0, the primary node, also runs the global
 * services (its runtime's registry) and the head process.  It answers the
 * frontend's start-up phases one by one (dragon_ctl.h) and ends everything on
 * its node when told to, when the frontend goes away, or on SIGTERM/SIGINT. Its
 * own death is covered by a dragon-cleanup --when-gone watchdog, as the
 * launcher's is.
 *
 * What it needs comes in the environment (see dragon-backend(1)); the
 * runtime's secret is read from DRAGON_BE_SECRET and removed from the
 * environment before anything is started, or (started by ssh) read as
 * the first line of stdin.  It is never sent: the backend and the
 * frontend prove to each other that they hold it (handshake()).
 */
#define _GNU_SOURCE
#include "config.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/signalfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <dragon/dlaunch.h>
#include "dragon_ctl.h"
#include "fdio.h"
#include "launcher.h"

#define TEARDOWN_NS (5ull * 1000000000ull)
#define EP_TEXT_MAX 1024 /* a services endpoint, text form */

/* How long a backend told DRAGON_TEST_STALL_PHASE=teardown waits before
 * its teardown. */
#define TEST_STALL_TEARDOWN_S 16

static struct be {
	unsigned node, nnodes;
	const char *instance;
	double timeout;
	double node_timeout; /* silence from the frontend that ends the node */
	int log_level;
	char secret[DTRANS_SECRET_MAX + 1];
	int fd; /* to the frontend */
	struct ctl_conn conn;
	char host[256], ip[INET6_ADDRSTRLEN], agent_addr[300];
	const char *netprefix; /* --network-prefix, or NULL */
	bool no_match;	       /* netprefix matches no interface here */
	char ifaces[4096];     /* "name address, ..." of this node */
	char nonce[CTL_NONCE_HEX + 1], node_text[16], pid_text[16];
	dmem_pool_t *gw_pool;
	dchan_t *gw;
	dtrans_agent_t *agent;
	dlaunch_t *rt;
	char ls[EP_TEXT_MAX];
	pid_t head;
	pthread_t waiter;
	bool waiting;
	int head_pipe[2];
	const char *stall; /* DRAGON_TEST_STALL_PHASE on this node */
	int log[2];	   /* the node's log: every line written to log[1] */
	pthread_t logger;  /* goes to the frontend (CTL_LOG) */
	bool logging, log_stderr;
	char lost_path[DMEM_SEGNAME_MAX + 16]; /* the lost-node notice, or "" */
} be = {.fd = -1, .head_pipe = {-1, -1}, .log = {-1, -1}};

/* The main loop, the runtime's I/O thread (output) and the logger all
 * send on the connection to the frontend: one frame at a time. */
static pthread_mutex_t send_lock = PTHREAD_MUTEX_INITIALIZER;

static int be_send(int type, const char *const *f, int n)
{
	int rc = -ENOTCONN;

	pthread_mutex_lock(&send_lock);
	if (be.fd >= 0)
		rc = ctl_send(be.fd, type, f, n);
	pthread_mutex_unlock(&send_lock);
	return rc;
}

static int be_send_data(int type, const char *const *f, const char *data,
			size_t len)
{
	int rc = -ENOTCONN;

	pthread_mutex_lock(&send_lock);
	if (be.fd >= 0)
		rc = ctl_send_data(be.fd, type, f, data, len);
	pthread_mutex_unlock(&send_lock);
	return rc;
}

/* One line of the node's log: to the log pipe (and so to the frontend's
 * log directory), or to stderr before there is one. */
static void log_line(const char *line, size_t n)
{
	write_all(be.log[1] >= 0 ? be.log[1] : 2, line, n);
}

static void vlog(bool to_stderr, const char *fmt, va_list ap)
{
	char msg[1800], line[2048];
	struct timespec ts;
	int n;

	vsnprintf(msg, sizeof msg, fmt, ap);
	if (to_stderr)
		dprintf(2, "dragon-backend: node %u (%s): %s\n", be.node,
			be.host, msg);
	if (to_stderr && be.log[1] < 0)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	n = snprintf(line, sizeof line,
		     "%ld.%03ld dragon-backend: node %u (%s): %s\n",
		     (long)ts.tv_sec, ts.tv_nsec / 1000000, be.node, be.host,
		     msg);
	if (n > (int)sizeof line - 1) {
		n = (int)sizeof line - 1;
		line[n - 1] = '\n';
	}
	log_line(line, (size_t)n);
}

/* A message for the user: on stderr (srun passes it on) and in the log. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(true, fmt, ap);
	va_end(ap);
}

/* A step of the node's start-up or teardown, with its time (-l debug). */
static void debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void debug(const char *fmt, ...)
{
	va_list ap;

	if (be.log_level < DLAUNCH_LOG_DEBUG)
		return;
	va_start(ap, fmt);
	vlog(false, fmt, ap);
	va_end(ap);
}

/* ---- the node's log and output, to the frontend ---------------------------
 */

/* Output of this node's processes (the runtime's I/O thread): whole
 * lines, tagged with the process, over the control connection.  Without
 * one (the frontend went away) it goes to this backend's own stdout and
 * stderr, which the launcher (srun) may still pass on. */
static void on_output(void *arg, pid_t pid, int fd, const char *data,
		      size_t len)
{
	char p[16], f[4];
	const char *fields[] = {p, f};

	(void)arg;
	snprintf(p, sizeof p, "%d", (int)pid);
	snprintf(f, sizeof f, "%d", fd);
	while (len) {
		size_t k = len < CTL_OUTPUT_MAX ? len : CTL_OUTPUT_MAX;

		/* a piece ends at a line's end when one is in it */
		if (k < len)
			while (k > 1 && data[k - 1] != '\n')
				k--;
		if (k <= 1)
			k = len < CTL_OUTPUT_MAX ? len : CTL_OUTPUT_MAX;
		if (be_send_data(CTL_OUTPUT, fields, data, k))
			write_all(fd, data, k);
		data += k;
		len -= k;
	}
}

/* The logger thread: lines written to the log pipe go to the frontend,
 * whole lines per frame, until the pipe's write end is closed. */
static void *logger(void *arg)
{
	size_t cap = 1u << 16, len = 0;
	char *buf = malloc(cap);

	(void)arg;
	for (; buf;) {
		ssize_t r = read(be.log[0], buf + len, cap - len);
		size_t n;

		if (r < 0 && errno == EINTR)
			continue;
		if (r > 0)
			len += (size_t)r;
		n = len;
		if (r > 0 && len < cap)
			while (n && buf[n - 1] != '\n')
				n--;
		if (n && (be.log_stderr || be_send_data(CTL_LOG, NULL, buf, n)))
			write_all(2, buf, n);
		memmove(buf, buf + n, len - n);
		len -= n;
		if (r <= 0)
			break;
	}
	free(buf);
	return NULL;
}

static int log_open(void)
{
	if (pipe2(be.log, O_CLOEXEC) < 0) {
		be.log[0] = be.log[1] = -1;
		return -errno;
	}
	/* Room for the start-up's lines before the logger runs. */
	fcntl(be.log[1], F_SETPIPE_SZ, 1 << 20);
	return 0;
}

/* Forward the log from now on (after the hello: the frontend knows the
 * node). */
static void log_start(void)
{
	if (be.log[0] >= 0 && !be.logging)
		be.logging =
			pthread_create(&be.logger, NULL, logger, NULL) == 0;
}

/* Everything logged so far has gone; later lines go to stderr.  The
 * write end becomes /dev/null so that a late write of a thread that still
 * holds the descriptor number cannot reach another file. */
static void log_finish(void)
{
	int null = open("/dev/null", O_WRONLY | O_CLOEXEC), w = be.log[1];

	if (w < 0)
		return;
	be.log[1] = -1;
	if (null >= 0) {
		dup3(null, w, O_CLOEXEC);
		close(null);
	} else {
		close(w);
	}
	if (!be.logging) {
		/* no hello went out: what start-up logged goes to stderr */
		be.log_stderr = true;
		log_start();
	}
	if (be.logging)
		pthread_join(be.logger, NULL);
	be.logging = false;
	close(be.log[0]);
	be.log[0] = -1;
}

static void send_err(const char *phase, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void send_err(const char *phase, const char *fmt, ...)
{
	char msg[2048];
	const char *f[2] = {phase, msg};
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	debug("phase '%s' failed: %s", phase, msg);
	if (be.fd >= 0)
		be_send(CTL_ERR, f, 2);
}

static bool stalled(const char *phase)
{
	if (be.stall && strcmp(be.stall, phase) == 0) {
		debug("stalling in phase '%s' (DRAGON_TEST_STALL_PHASE)",
		      phase);
		return true;
	}
	return false;
}

/* The first of the variables names that is set, as a number. */
static int env_uint(const char *const *names, unsigned *out)
{
	const char *v = NULL;
	char *end;
	long n;

	for (; *names && !v; names++)
		v = getenv(*names);
	if (!v || !*v)
		return -1;
	n = strtol(v, &end, 10);
	if (*end || n < 0 || n >= DTRANS_NODES_MAX)
		return -1;
	*out = (unsigned)n;
	return 0;
}

static int need(const char *what)
{
	fprintf(stderr,
		"dragon-backend: %s is not set: dragon-backend is started by "
		"dragon on each node of a multi-node runtime, not by hand (see "
		"dragon(1))\n",
		what);
	return 2;
}

/* The secret as the first line of stdin (ssh: never on a command line);
 * read a byte at a time, so that what follows stays for the head. */
static const char *secret_stdin(void)
{
	static char buf[DTRANS_SECRET_MAX + 2];
	size_t n = 0;

	while (n < sizeof buf - 1 && read(0, buf + n, 1) == 1 && buf[n] != '\n')
		n++;
	buf[n] = '\0';
	return buf;
}

/* The frontend's address in SSH_CONNECTION ("client port server port"):
 * where this node's ssh session came from. */
static const char *ssh_client(void)
{
	static char buf[INET6_ADDRSTRLEN];
	const char *c = getenv("SSH_CONNECTION");
	size_t n = c ? strcspn(c, " ") : 0;

	if (!n || n >= sizeof buf)
		return NULL;
	memcpy(buf, c, n);
	buf[n] = '\0';
	return buf;
}

static int read_env(const char **fe_host, const char **fe_port)
{
	static const char *const node_vars[] = {"DRAGON_BE_NODE",
						"SLURM_NODEID", "PALS_NODEID",
						"PMI_RANK", NULL};
	static const char *const nnodes_vars[] = {"DRAGON_BE_NNODES",
						  "SLURM_NNODES", NULL};
	const char *ss = getenv("DRAGON_BE_SECRET_STDIN");
	const char *s = ss && strcmp(ss, "1") == 0 ? secret_stdin()
						   : getenv("DRAGON_BE_SECRET");
	const char *t = getenv("DRAGON_BE_TIMEOUT");
	const char *nt = getenv("DRAGON_BE_NODE_TIMEOUT");
	const char *l = getenv("DRAGON_BE_LOG_LEVEL");
	const char *sn = getenv("DRAGON_TEST_STALL_NODE");

	gethostname(be.host, sizeof be.host - 1);
	if (env_uint(node_vars, &be.node))
		return need("DRAGON_BE_NODE (or SLURM_NODEID, PALS_NODEID, "
			    "PMI_RANK)");
	if (env_uint(nnodes_vars, &be.nnodes) || be.nnodes < 1 ||
	    be.node >= be.nnodes)
		return need("DRAGON_BE_NNODES (or SLURM_NNODES)");
	if (!(be.instance = getenv("DRAGON_BE_INSTANCE")))
		return need("DRAGON_BE_INSTANCE");
	*fe_host = getenv("DRAGON_BE_FRONTEND");
	if (!*fe_host || !**fe_host)
		*fe_host = getenv("SLURM_LAUNCH_NODE_IPADDR");
	if (!*fe_host)
		*fe_host = ssh_client();
	if (!*fe_host)
		return need("DRAGON_BE_FRONTEND (or SLURM_LAUNCH_NODE_IPADDR, "
			    "SSH_CONNECTION)");
	if (!(*fe_port = getenv("DRAGON_BE_PORT")))
		return need("DRAGON_BE_PORT");
	if (!s || strlen(s) < DTRANS_SECRET_MIN ||
	    strlen(s) > DTRANS_SECRET_MAX)
		return need(ss ? "the secret on stdin" : "DRAGON_BE_SECRET");
	strcpy(be.secret, s);
	/* Wiped where it was read: from the environment, in the block the
	 * kernel shows as /proc/PID/environ for as long as the backend
	 * runs (unsetenv alone drops only the pointer).  Nothing this
	 * backend starts inherits the secret. */
	explicit_bzero((char *)s, strlen(s));
	unsetenv("DRAGON_BE_SECRET");
	be.timeout = t ? atof(t) : 30;
	if (be.timeout <= 0)
		be.timeout = 30;
	/* 0 (a frontend that does not ping): only a closed connection
	 * ends the node. */
	be.node_timeout = nt ? atof(nt) : 0;
	be.log_level = l ? atoi(l) : DLAUNCH_LOG_WARNING;
	be.netprefix = getenv("DRAGON_BE_NETPREFIX");
	if (be.netprefix && !*be.netprefix)
		be.netprefix = NULL;
	if (sn && (unsigned)atoi(sn) == be.node)
		be.stall = getenv("DRAGON_TEST_STALL_PHASE");
	return 0;
}

static double elapsed(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) +
	       (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Wait up to ms for fd's events; false if a signal to end came first. */
static bool wait_fd(int fd, short events, int sfd, int ms, int *revents)
{
	struct pollfd p[2] = {{.fd = fd, .events = events},
			      {.fd = sfd, .events = POLLIN}};
	struct signalfd_siginfo si;

	*revents = 0;
	if (poll(p, 2, ms) < 0)
		return errno == EINTR;
	if (p[1].revents) {
		while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si)
			if (si.ssi_signo != SIGCHLD) {
				debug("signal %d during start-up",
				      (int)si.ssi_signo);
				return false;
			}
	}
	*revents = p[0].revents;
	return true;
}

/* One connection attempt, bounded by the time left: 0, or an errno. */
static int try_connect(const struct addrinfo *ai, int sfd, double left,
		       int *out)
{
	struct sockaddr_storage ss = {0};
	socklen_t sl = sizeof ss;
	int fd, err = 0, ev;

	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
		    0);
	if (fd < 0)
		return errno;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)
		err = errno;
	if (err == EINPROGRESS) {
		if (!wait_fd(fd, POLLOUT, sfd, (int)(left * 1000) + 1, &ev)) {
			close(fd);
			return EINTR;
		}
		err = ETIMEDOUT;
		if (ev)
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &err,
				   &(socklen_t){sizeof err});
	}
	if (err) {
		close(fd);
		return err;
	}
	*out = fd;
	if (!be.ip[0] && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		getnameinfo((struct sockaddr *)&ss, sl, be.ip, sizeof be.ip,
			    NULL, 0, NI_NUMERICHOST);
	return 0;
}

/* Connect to the frontend, retrying until the deadline (it listens
 * before srun starts us, but a busy node may be slow to route).  A port a
 * firewall drops never answers: the attempt is bounded by the deadline,
 * and a signal (srun ending the step) ends it. */
static int connect_frontend(const char *host, const char *port, int sfd)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
	struct timespec t0;
	int rc, fd = -1, ev;

	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc) {
		say("cannot resolve the frontend's address %s: %s", host,
		    gai_strerror(rc));
		return -1;
	}
	if (dragon_net_scan(be.netprefix, ai->ai_family, be.ip, sizeof be.ip,
			    be.ifaces, sizeof be.ifaces) < 0)
		be.ip[0] = '\0';
	be.no_match = be.netprefix && !be.ip[0];
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		double left = be.timeout - elapsed(&t0);

		rc = try_connect(ai, sfd, left > 0 ? left : 0, &fd);
		if (rc == 0 || rc == EINTR)
			break;
		if (elapsed(&t0) >= be.timeout) {
			say("start-up phase 'backends connect to the "
			    "frontend': "
			    "cannot connect to the frontend at %s port %s "
			    "within %g s: %s (is a firewall blocking port %s? "
			    "dragon --port chooses the port)",
			    host, port, be.timeout, strerror(rc), port);
			break;
		}
		if (!wait_fd(-1, 0, sfd, 100, &ev))
			break;
	}
	freeaddrinfo(ai);
	if (fd < 0)
		return -1;
	be.fd = fd;
	be.conn.fd = fd;
	return 0;
}

/* Prove to the frontend that this backend holds the runtime's secret,
 * after checking the frontend's proof of the same: the secret itself
 * never crosses the wire (dragon_ctl.h). */
static int handshake(int sfd)
{
	const char *hf[] = {CTL_VERSION, be.node_text, be.host,
			    be.nonce,	 be.pid_text,  PACKAGE_VERSION};
	char want[CTL_PROOF_HEX + 1], mine[CTL_PROOF_HEX + 1];
	const char *pf[8], *af[1] = {mine};
	struct ctl_msg m = {0};
	struct timespec t0;
	int r = 0, ev;

	snprintf(be.node_text, sizeof be.node_text, "%u", be.node);
	snprintf(be.pid_text, sizeof be.pid_text, "%d", (int)getpid());
	if (ctl_nonce(be.nonce) || ctl_send(be.fd, CTL_HELLO, hf, 6))
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while ((r = ctl_next(&be.conn, &m)) == 0) {
		double left = be.timeout - elapsed(&t0);

		if (left <= 0 ||
		    !wait_fd(be.fd, POLLIN, sfd, (int)(left * 1000) + 1, &ev)) {
			if (left <= 0)
				say("start-up phase 'backends connect to the "
				    "frontend': no answer to this node's hello "
				    "within %g s",
				    be.timeout);
			return -1;
		}
		if (ev && ctl_fill(&be.conn) < 0) {
			say("the frontend closed the connection during the "
			    "handshake");
			return -1;
		}
	}
	if (r < 0 || m.type != CTL_CHALLENGE ||
	    strlen(ctl_field(&m, 0)) != CTL_NONCE_HEX) {
		say("the program at the frontend's port does not speak "
		    "dragon's control link %s: refusing it",
		    CTL_VERSION);
		if (r > 0)
			ctl_msg_free(&m);
		return -1;
	}
	memcpy(pf, hf, sizeof hf);
	pf[6] = ctl_field(&m, 0);
	if (ctl_proof(be.secret, "frontend", pf, 7, want) ||
	    !ctl_proof_ok(ctl_field(&m, 1), want) ||
	    ctl_proof(be.secret, "backend", pf, 7, mine)) {
		say("the program at the frontend's port failed to prove that "
		    "it holds this runtime's secret: refusing it (is another "
		    "program listening on dragon's port?)");
		ctl_msg_free(&m);
		return -1;
	}
	ctl_msg_free(&m);
	return ctl_send(be.fd, CTL_AUTH, af, 1);
}

/* The agent must reach a node whose address it has not got (its
 * thread): ask the frontend, which answers with CTL_PEER (on_peer). */
static void ask_peer(void *arg, uint32_t node)
{
	char n[16];
	const char *f[] = {n};

	(void)arg;
	snprintf(n, sizeof n, "%u", node);
	debug("asking the frontend for the address of node %u's agent", node);
	be_send(CTL_WHERE, f, 1);
}

/* This node's gateway channel and transport agent (listening, not yet
 * running: node 0's address comes with the configuration, the others'
 * when first needed). */
static int make_agent(void)
{
	dmem_pool_attr_t pa = {.field_mask = DMEM_POOL_ATTR_INSTANCE,
			       .instance = be.instance};
	dchan_attr_t ca = {.field_mask = DCHAN_ATTR_CAPACITY, .capacity = 1024};
	dtrans_attr_t a = {0};
	char text[DCHAN_DESC_TEXT_MAX], listen[300];
	dchan_desc_t d;
	int rc;

	rc = dmem_pool_create("gateway", 32u << 20, &pa, &be.gw_pool);
	if (rc == 0)
		rc = dchan_create(be.gw_pool, &ca, &be.gw);
	if (rc == 0 && (rc = dchan_desc_get(be.gw, &d)) == 0)
		rc = dchan_desc_to_text(&d, text, sizeof text) < 0 ? -EINVAL
								   : 0;
	if (rc) {
		send_err("network configuration", "gateway channel: %s",
			 dchan_errmsg());
		return rc;
	}
	setenv(DCHAN_GW_ENV, text, 1);
	dchan_gw_register(be.gw);
	snprintf(listen, sizeof listen,
		 strchr(be.ip, ':') ? "[%s]:%s" : "%s:%s", be.ip,
		 getenv("DRAGON_BE_AGENT_PORT") ?: "0");
	a.node = be.node;
	a.nnodes = be.nnodes;
	a.listen_addr = listen;
	a.secret = be.secret;
	a.secret_len = strlen(be.secret);
	a.gateway = be.gw;
	a.field_mask = DTRANS_ATTR_LOG_FD | DTRANS_ATTR_NOTICE_FD |
		       DTRANS_ATTR_RESOLVE;
	a.resolve = ask_peer;
	/* At every log level: a link dropped, a failed handshake, a link
	 * back are what explains a node found unreachable, and the agent
	 * reports each once (an idle link closed by a stopping peer not at
	 * all).  The backend notice, as before, with -l debug only. */
	a.log_fd = be.log[1] >= 0 ? be.log[1] : 2;
	a.notice_fd = be.log_level >= DLAUNCH_LOG_DEBUG ? a.log_fd : -1;
	/* A node the frontend takes for lost after DRAGON_NODE_TIMEOUT is
	 * one the agents give up on after as long: the operations on it
	 * that the surviving nodes' teardown still makes (a lost client's
	 * goodbye) fail then, not after the agent's own default. */
	if (getenv("DRAGON_BE_PEER_TIMEOUT")) {
		a.field_mask |= DTRANS_ATTR_PEER_TIMEOUT;
		a.peer_timeout_ns =
			(uint64_t)(atof(getenv("DRAGON_BE_PEER_TIMEOUT")) *
				   1e9);
	} else if (be.node_timeout > 0) {
		a.field_mask |= DTRANS_ATTR_PEER_TIMEOUT;
		a.peer_timeout_ns = (uint64_t)(be.node_timeout * 1e9);
	}
	rc = dtrans_agent_create(&a, &be.agent);
	if (rc == 0 && dtrans_agent_address(be.agent, be.agent_addr,
					    sizeof be.agent_addr) < 0)
		rc = -ENOSPC;
	if (rc)
		send_err("network configuration",
			 "transport agent on %s: %s (%s)", listen,
			 dtrans_strerror(rc), dtrans_errmsg());
	else
		debug("gateway channel made, transport agent listening at %s",
		      be.agent_addr);
	return rc;
}

/* The node's runtime: default pool, local services (and on node 0 the
 * global ones).  Its processes get the gateway, the node count and, off
 * the primary, the global services' endpoint. */
static int start_runtime(const char *gs)
{
	dlaunch_runtime_attr_t ra = {0};
	char nn[16], *env[4] = {NULL}, gw[DCHAN_DESC_TEXT_MAX + 32],
		     gse[EP_TEXT_MAX + 32], nne[48];
	const char *v;
	int k = 0, rc;

	snprintf(nn, sizeof nn, "%u", be.nnodes);
	setenv(DLAUNCH_ENV_NNODES, nn, 1);
	snprintf(nne, sizeof nne, "%s=%s", DLAUNCH_ENV_NNODES, nn);
	env[k++] = nne;
	snprintf(gw, sizeof gw, "%s=%s", DCHAN_GW_ENV, getenv(DCHAN_GW_ENV));
	env[k++] = gw;
	if (gs && *gs) {
		setenv(DLAUNCH_ENV_GLOBAL, gs, 1);
		snprintf(gse, sizeof gse, "%s=%s", DLAUNCH_ENV_GLOBAL, gs);
		env[k++] = gse;
	}
	ra.field_mask = DLAUNCH_RT_ATTR_FLAGS | DLAUNCH_RT_ATTR_LOG_LEVEL |
			DLAUNCH_RT_ATTR_INSTANCE | DLAUNCH_RT_ATTR_TIMEOUT |
			DLAUNCH_RT_ATTR_ENV | DLAUNCH_RT_ATTR_OUTPUT;
	/* Output of the node's processes, and the services' log, go to
	 * the frontend over the control connection. */
	ra.output = on_output;
	if (be.log[1] >= 0) {
		ra.field_mask |= DLAUNCH_RT_ATTR_LOG_FD;
		ra.log_fd = be.log[1];
	}
	debug("starting the runtime (default pool, local services%s)",
	      be.node == 0 ? ", global services" : "");
	ra.flags = DLAUNCH_RT_F_ADOPT | DLAUNCH_RT_F_SETENV;
	ra.log_level = be.log_level;
	ra.instance = be.instance;
	ra.startup_timeout_ns = (uint64_t)(be.timeout * 1e9);
	ra.env = env;
	rc = dlaunch_runtime_start(&ra, &be.rt);
	if (rc) {
		send_err("network configuration", "local services: %s",
			 dlaunch_errmsg());
		return rc;
	}
	v = getenv(DLAUNCH_ENV_SERVICES);
	snprintf(be.ls, sizeof be.ls, "%s", v ? v : "");
	debug("runtime %s up, services %s", be.instance, be.ls);
	return 0;
}

/* The network configuration: the address chosen for this node ("" when
 * --network-prefix matches nothing here), its agent, the services (on
 * node 0) and every interface the node has, for the frontend's report. */
static int send_net(void)
{
	const char *f[4] = {be.no_match ? "" : be.ip, be.agent_addr, be.ls,
			    be.ifaces};

	if (!be.ifaces[0])
		dragon_net_scan(NULL, AF_UNSPEC, NULL, 0, be.ifaces,
				sizeof be.ifaces);
	return be_send(CTL_NET, f, 4);
}

static void on_check(void);

static void on_config(const struct ctl_msg *m)
{
	int rc;

	/* node 0's agent, or (to node 0) every node's */
	debug("phase 'network configuration': %d agent addresses received",
	      m->n - 1);
	if (m->n != 2 && (unsigned)m->n != be.nnodes + 1) {
		send_err("network configuration",
			 "malformed configuration from the frontend (%d fields "
			 "for %u nodes)",
			 m->n, be.nnodes);
		return;
	}
	for (int i = 0; i < m->n - 1; i++)
		if ((unsigned)i != be.node &&
		    (rc = dtrans_agent_peer_set(be.agent, (uint32_t)i,
						m->f[1 + i])) < 0) {
			send_err("network configuration",
				 "node %d's agent %s: %s", i, m->f[1 + i],
				 dtrans_errmsg());
			return;
		}
	rc = dtrans_agent_start(be.agent);
	if (rc) {
		send_err("network configuration", "transport agent: %s (%s)",
			 dtrans_strerror(rc), dtrans_errmsg());
		return;
	}
	debug("transport agent running");
	if (be.node != 0 && start_runtime(m->f[0]))
		return;
	if (stalled("network configuration"))
		return;
	be_send(CTL_CONFIG_OK, NULL, 0);
	/* The next phase at once, without a round trip to the frontend: the
	 * global services on node 0 run since before its hello, and a
	 * request that reaches node 0's agent before the configuration
	 * does waits in its listen queue. */
	on_check();
}

/* The CPUs processes started on this node may use: those of the
 * backend's affinity mask (which they inherit), no more than the workload
 * manager granted the job here (SLURM_CPUS_ON_NODE). */
static unsigned node_cpus(void)
{
	const char *granted = getenv("SLURM_CPUS_ON_NODE");
	cpu_set_t set;
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	char *end;

	if (sched_getaffinity(0, sizeof set, &set) == 0)
		n = CPU_COUNT(&set);
	if (granted && *granted) {
		long g = strtol(granted, &end, 10);
		if (*end == '\0' && g > 0 && g < n)
			n = g;
	}
	return n > 0 ? (unsigned)n : 1;
}

/* What a program learns of this node (Python's dragon.nodes()): its host
 * name and CPUs, under "dragon.node.<index>.info" as
 * "host=<name> cpus=<n>". */
static int register_info(void)
{
	char name[64], text[320];
	int n;

	snprintf(name, sizeof name, "dragon.node.%u.info", be.node);
	n = snprintf(text, sizeof text, "host=%s cpus=%u", be.host,
		     node_cpus());
	return dlaunch_name_register(be.rt, name, DLAUNCH_KIND_BYTES, text,
				     (size_t)n);
}

/* Register this node's services with the global ones: off the primary,
 * the first request that crosses the agents. */
static void on_check(void)
{
	char name[64];
	int rc;

	debug("phase 'transport agents reachable': registering with the "
	      "global services on node 0");
	snprintf(name, sizeof name, "dragon.node.%u.services", be.node);
	rc = dlaunch_name_register(be.rt, name, DLAUNCH_KIND_BYTES, be.ls,
				   strlen(be.ls));
	if (rc >= 0)
		rc = register_info();
	if (rc < 0) {
		send_err("transport agents reachable",
			 "cannot reach the global services on node 0 "
			 "through the transport agents: %s (%s)",
			 dlaunch_strerror(rc), dlaunch_errmsg());
		return;
	}
	if (!stalled("transport agents reachable")) {
		debug("global services reached through the agents");
		be_send(CTL_READY, NULL, 0);
	}
}

static void *wait_head(void *arg)
{
	dlaunch_status_t st;
	int rc = dlaunch_wait(be.rt, be.head, DLAUNCH_FOREVER, &st);
	char b[3] = {(char)st.exited, (char)st.code, (char)st.signo};

	(void)arg;
	if (rc == 0 && write(be.head_pipe[1], b, 3) < 0)
		return NULL;
	return NULL;
}

static void on_head(const struct ctl_msg *m)
{
	dlaunch_spawn_attr_t a = {
		.field_mask = DLAUNCH_SPAWN_ATTR_STDIO |
			      DLAUNCH_SPAWN_ATTR_FLAGS | DLAUNCH_SPAWN_ATTR_CWD,
		.stdio = {DLAUNCH_STDIO_INHERIT, DLAUNCH_STDIO_FORWARD,
			  DLAUNCH_STDIO_FORWARD},
		.flags = DLAUNCH_SPAWN_F_SEARCH_PATH};
	char pid[16];
	const char *f[] = {pid};
	int rc;

	if (m->n < 3) {
		send_err("head process", "malformed request");
		return;
	}
	a.cwd = m->f[0];
	rc = dlaunch_spawn(be.rt, m->f[1], m->f + 2, &a, &be.head);
	if (rc) {
		send_err("head process", "%s", dlaunch_errmsg());
		return;
	}
	if (pipe2(be.head_pipe, O_CLOEXEC) < 0 ||
	    pthread_create(&be.waiter, NULL, wait_head, NULL)) {
		send_err("head process", "cannot watch it: %s",
			 strerror(errno));
		return;
	}
	be.waiting = true;
	snprintf(pid, sizeof pid, "%d", (int)be.head);
	debug("head process %s started", pid);
	be_send(CTL_HEAD_OK, f, 1);
}

/* End everything on this node: processes, segments, the agent. */
static void teardown(void)
{
	/* a slow node's teardown, for the tests (dragon-backend(1)) */
	if (stalled("teardown"))
		sleep(TEST_STALL_TEARDOWN_S);
	debug("teardown: ending this node's processes");
	if (be.rt) {
		dlaunch_runtime_stop(be.rt, TEARDOWN_NS);
		be.rt = NULL;
		debug("teardown: processes ended, runtime stopped, its "
		      "segments removed");
	}
	if (be.lost_path[0])
		unlink(be.lost_path);
	if (be.waiting)
		pthread_join(be.waiter, NULL);
	if (be.agent)
		dtrans_agent_destroy(be.agent);
	dchan_gw_unregister();
	if (be.gw)
		dchan_destroy(be.gw);
	if (be.gw_pool)
		dmem_pool_destroy(be.gw_pool);
	be.agent = NULL;
	be.gw = NULL;
	be.gw_pool = NULL;
	debug("node torn down");
}

/* Node `node` is lost: this node's requests to it (a process's waits on
 * its objects, the teardown's goodbyes) fail at once instead of each
 * waiting for the transport's peer timeout. */
static void peer_lost(const char *field)
{
	char *end;
	unsigned long node = strtoul(field, &end, 10);

	if (!*field || *end || node >= be.nnodes || node == be.node)
		return;
	debug("node %lu is lost: requests to it fail at once", node);
	if (be.agent && dtrans_agent_peer_down(be.agent, (uint32_t)node) < 0)
		debug("node %lu: %s", node, dtrans_errmsg());
}

/* Another node was lost (CTL_LOST: its index, host and why): the
 * notice /dev/shm/dragon.<user>.<instance>.nodelost, one line
 * "index<TAB>host<TAB>why", tells this node's processes, whose waits
 * look for it between two slices and raise an error that names the node
 * (dragon(7), "Python across nodes").  Written whole under a temporary
 * name, then renamed; removed at teardown. */
static void on_lost(const struct ctl_msg *m)
{
	char name[DMEM_SEGNAME_MAX], tmp[sizeof be.lost_path + 8];
	FILE *f = NULL;
	int fd;

	debug("node %s (%s) was lost: %s", ctl_field(m, 0), ctl_field(m, 1),
	      ctl_field(m, 2));
	if (be.lost_path[0] ||
	    dmem_segname_format(NULL, be.instance, "nodelost", name,
				sizeof name) < 0)
		return;
	snprintf(be.lost_path, sizeof be.lost_path, "/dev/shm/%s", name);
	snprintf(tmp, sizeof tmp, "%s.tmp", be.lost_path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || !(f = fdopen(fd, "w"))) {
		if (fd >= 0)
			close(fd);
		say("cannot write the lost-node notice %s: %s", tmp,
		    strerror(errno));
		be.lost_path[0] = 0;
		return;
	}
	fprintf(f, "%s\t%s\t%s\n", ctl_field(m, 0), ctl_field(m, 1),
		ctl_field(m, 2));
	if (fclose(f) != 0 || rename(tmp, be.lost_path) < 0) {
		say("cannot write the lost-node notice %s: %s", be.lost_path,
		    strerror(errno));
		unlink(tmp);
		be.lost_path[0] = 0;
	}
}

/* The address of another node's agent, which this node's agent asked for
 * (ask_peer): its requests for that node go out at its next dial. */
static void on_peer(const struct ctl_msg *m)
{
	char *end;
	unsigned long node = strtoul(ctl_field(m, 0), &end, 10);
	const char *addr = ctl_field(m, 1);

	if (!be.agent || *end || node >= be.nnodes)
		return;
	if (!*addr) {
		debug("the frontend knows no agent of node %lu", node);
		return;
	}
	debug("node %lu's agent is at %s", node, addr);
	if (dtrans_agent_peer_set(be.agent, (uint32_t)node, addr) < 0)
		debug("node %lu's agent %s: %s", node, addr, dtrans_errmsg());
}

/* The nodes a stop names as lost: this node's requests to them (its
 * teardown's goodbyes, a process's last operations) fail at once instead
 * of each waiting for the transport's peer timeout. */
static void lost_nodes(const struct ctl_msg *m)
{
	for (int i = 0; i < m->n; i++)
		peer_lost(ctl_field(m, i));
}

/* One message from the frontend; returns false to leave. */
static bool on_msg(const struct ctl_msg *m)
{
	switch (m->type) {
	case CTL_CONFIG:
		on_config(m);
		return true;
	case CTL_HEAD:
		on_head(m);
		return true;
	case CTL_PEER:
		on_peer(m);
		return true;
	case CTL_LOST:
		/* the notice first: the errors of the requests that fail now
		 * name the node through it */
		on_lost(m);
		peer_lost(ctl_field(m, 0));
		return true;
	case CTL_SIGNAL:
		if (be.rt && be.head)
			dlaunch_signal(be.rt, be.head, atoi(ctl_field(m, 0)));
		return true;
	case CTL_STOP:
		debug("stop from the frontend");
		lost_nodes(m);
		return false;
	default:
		return true;
	}
}

/* The frontend pings every second: a connection silent for longer than
 * DRAGON_NODE_TIMEOUT is one whose other end is gone without a word (a
 * cut network, a frozen login node), which TCP alone would notice only
 * after many minutes, or never while nothing is sent. */
static bool frontend_silent(const struct timespec *heard)
{
	if (be.node_timeout <= 0 || elapsed(heard) <= be.node_timeout)
		return false;
	say("no word from the frontend (dragon) for %g s "
	    "(DRAGON_NODE_TIMEOUT): "
	    "its node or the network to it failed; ending this node's "
	    "processes",
	    be.node_timeout);
	return true;
}

static int loop(int sfd)
{
	struct timespec last = {0}, now, heard;

	clock_gettime(CLOCK_MONOTONIC, &heard);
	for (;;) {
		struct pollfd p[3] = {
			{.fd = be.fd, .events = POLLIN},
			{.fd = sfd, .events = POLLIN},
			{.fd = be.head_pipe[0], .events = POLLIN}};
		struct ctl_msg m;
		int r;

		if (poll(p, 3, 1000) < 0 && errno != EINTR)
			return 1;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec != last.tv_sec) {
			be_send(CTL_PING, NULL, 0);
			last = now;
		}
		if (p[1].revents) {
			struct signalfd_siginfo si;

			while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si)
				if (si.ssi_signo != SIGCHLD) {
					debug("signal %d: ending this node",
					      (int)si.ssi_signo);
					return 1;
				}
		}
		if (p[2].revents) {
			char b[3], e[8], c[8], s[8];
			const char *f[] = {e, c, s};

			if (read(be.head_pipe[0], b, 3) == 3) {
				debug("head process exited (code %d, signal "
				      "%d)",
				      (unsigned char)b[1], b[2]);
				snprintf(e, sizeof e, "%d", b[0]);
				snprintf(c, sizeof c, "%d",
					 (unsigned char)b[1]);
				snprintf(s, sizeof s, "%d", b[2]);
				be_send(CTL_EXIT, f, 3);
			}
			close(be.head_pipe[0]);
			be.head_pipe[0] = -1;
		}
		if (p[0].revents)
			heard = now;
		else if (frontend_silent(&heard))
			return 1;
		if (p[0].revents) {
			if (ctl_fill(&be.conn) < 0) {
				say("the frontend (dragon) closed the "
				    "connection: ending this node's processes");
				return 1;
			}
			while ((r = ctl_next(&be.conn, &m)) > 0) {
				bool go_on = on_msg(&m);

				ctl_msg_free(&m);
				if (!go_on)
					return 0;
			}
			if (r < 0) {
				say("malformed message from the frontend");
				return 1;
			}
		}
	}
}

int main(void)
{
	const char *host, *port;
	sigset_t set;
	char nid[16];
	pid_t guard = 0;
	int rc, sfd;

	if ((rc = read_env(&host, &port)))
		return rc;
	if (log_open())
		say("warning: no log pipe (%s): the node's log goes to stderr",
		    strerror(errno));
	debug("dragon-backend %s (pid %d) started, %u nodes, instance %s",
	      PACKAGE_VERSION, (int)getpid(), be.nnodes, be.instance);
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	signal(SIGPIPE, SIG_IGN);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	/* libdmem names this node DTRANS_NODE_ID(index). */
	snprintf(nid, sizeof nid, "%u", be.node + 1);
	setenv("DRAGON_NODE_ID", nid, 1);
	/* Started by ssh, the backend ends with its session: without a
	 * terminal, sshd leaves the command running when the connection
	 * goes (dragon gave up on the run, or was killed). */
	if (getenv("DRAGON_BE_SECRET_STDIN") &&
	    (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() == 1)) {
		log_finish();
		return 1;
	}
	/* The watchdog starts while this backend connects and makes its
	 * agent (an exec that would otherwise be on the start-up path). */
	rc = dragon_guard_spawn(be.instance, NULL,
				be.log_level >= DLAUNCH_LOG_DEBUG, &guard);
	if (connect_frontend(host, port, sfd)) {
		if (guard)
			dragon_guard_wait(guard);
		log_finish();
		return 1;
	}
	debug("connected to the frontend at %s:%s; this node's address %s",
	      host, port, be.no_match ? "(none)" : be.ip);
	if (stalled("backends connect")) {
		pause();
		log_finish();
		return 1;
	}
	if (handshake(sfd)) {
		if (guard)
			dragon_guard_wait(guard);
		log_finish();
		return 1;
	}
	if (be.no_match)
		debug("--network-prefix '%s' matches no interface here",
		      be.netprefix);
	rc = be.no_match ? 0 : make_agent();
	if (guard) {
		int g = dragon_guard_wait(guard);

		if (g)
			say("warning: no watchdog (dragon-cleanup "
			    "--when-gone): %s",
			    strerror(-g));
	}
	if (rc || (!be.no_match && be.node == 0 && start_runtime(NULL)) ||
	    send_net()) {
		teardown();
		log_finish();
		return 1;
	}
	log_start();
	debug("phase 'backends connect to the frontend': hello sent");
	rc = loop(sfd);
	teardown();
	/* the whole log, then the goodbye */
	log_finish();
	be_send(CTL_BYE, NULL, 0);
	return rc;
}
