/* dragon-backend: one node of a runtime over several nodes.
 *
 * The dragon launcher starts one backend per node (srun, one task per
 * node).  A backend connects back to the launcher (the frontend), and on
 * its node runs the local services (an embedded runtime: the default
 * pool, process start, output forwarding, reaping) and the transport
 * agent with the node's gateway channel.  The backend of node 0, the
 * primary node, also runs the global services (its runtime's registry)
 * and the head process.  It answers the frontend's start-up phases one by
 * one (dragon_ctl.h) and ends everything on its node when told to, when
 * the frontend goes away, or on SIGTERM/SIGINT.  Its own death is covered
 * by a dragon-cleanup --when-gone watchdog, as the launcher's is.
 *
 * What it needs comes in the environment (see dragon-backend(1)); the
 * runtime's secret is read from DRAGON_BE_SECRET and removed from the
 * environment before anything is started.
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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <dragon/dlaunch.h>
#include "dragon_ctl.h"
#include "launcher.h"

#define TEARDOWN_NS (5ull * 1000000000ull)
#define EP_TEXT_MAX 1024 /* a services endpoint, text form */

static struct be {
	unsigned node, nnodes;
	const char *instance;
	double timeout;
	int log_level;
	char secret[DTRANS_SECRET_MAX + 1];
	int fd; /* to the frontend */
	struct ctl_conn conn;
	char host[256], ip[INET6_ADDRSTRLEN], agent_addr[300];
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
} be = {.fd = -1, .head_pipe = {-1, -1}};

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "dragon-backend: node %u (%s): ", be.node, be.host);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void debug(const char *fmt, ...)
{
	struct timespec ts;
	va_list ap;

	if (be.log_level < DLAUNCH_LOG_DEBUG)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	fprintf(stderr,
		"%ld.%03ld dragon-backend: node %u (%s): ", (long)ts.tv_sec,
		ts.tv_nsec / 1000000, be.node, be.host);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
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
		ctl_send(be.fd, CTL_ERR, f, 2);
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

static int env_uint(const char *a, const char *b, unsigned *out)
{
	const char *v = getenv(a);
	char *end;
	long n;

	if (!v && b)
		v = getenv(b);
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

static int read_env(const char **fe_host, const char **fe_port)
{
	const char *s = getenv("DRAGON_BE_SECRET");
	const char *t = getenv("DRAGON_BE_TIMEOUT");
	const char *l = getenv("DRAGON_BE_LOG_LEVEL");
	const char *sn = getenv("DRAGON_TEST_STALL_NODE");

	gethostname(be.host, sizeof be.host - 1);
	if (env_uint("DRAGON_BE_NODE", "SLURM_NODEID", &be.node))
		return need("DRAGON_BE_NODE (or SLURM_NODEID)");
	if (env_uint("DRAGON_BE_NNODES", "SLURM_NNODES", &be.nnodes) ||
	    be.nnodes < 2 || be.node >= be.nnodes)
		return need("DRAGON_BE_NNODES (or SLURM_NNODES)");
	if (!(be.instance = getenv("DRAGON_BE_INSTANCE")))
		return need("DRAGON_BE_INSTANCE");
	*fe_host = getenv("DRAGON_BE_FRONTEND");
	if (!*fe_host || !**fe_host)
		*fe_host = getenv("SLURM_LAUNCH_NODE_IPADDR");
	if (!*fe_host)
		return need("DRAGON_BE_FRONTEND (or SLURM_LAUNCH_NODE_IPADDR)");
	if (!(*fe_port = getenv("DRAGON_BE_PORT")))
		return need("DRAGON_BE_PORT");
	if (!s || strlen(s) < DTRANS_SECRET_MIN ||
	    strlen(s) > DTRANS_SECRET_MAX)
		return need("DRAGON_BE_SECRET");
	strcpy(be.secret, s);
	/* Nothing this backend starts inherits the secret. */
	unsetenv("DRAGON_BE_SECRET");
	be.timeout = t ? atof(t) : 30;
	if (be.timeout <= 0)
		be.timeout = 30;
	be.log_level = l ? atoi(l) : DLAUNCH_LOG_WARNING;
	if (sn && (unsigned)atoi(sn) == be.node)
		be.stall = getenv("DRAGON_TEST_STALL_PHASE");
	return 0;
}

/* Connect to the frontend, retrying until the deadline (it listens
 * before srun starts us, but a busy node may be slow to route). */
static int connect_frontend(const char *host, const char *port)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
	struct timespec t0, now;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	int rc, fd = -1;

	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc) {
		say("cannot resolve the frontend's address %s: %s", host,
		    gai_strerror(rc));
		return -1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		rc = errno;
		if (fd >= 0)
			close(fd);
		fd = -1;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - t0.tv_sec >= be.timeout) {
			say("cannot connect to the frontend at %s:%s: %s "
			    "(is a firewall blocking the port? dragon --port "
			    "chooses it)",
			    host, port, strerror(rc));
			break;
		}
		usleep(100000);
	}
	freeaddrinfo(ai);
	if (fd < 0)
		return -1;
	/* The agent listens on the address this node reaches the frontend
	 * from: an interface every node can route to. */
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	if (ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr,
			  be.ip, sizeof be.ip);
	else
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr,
			  be.ip, sizeof be.ip);
	be.fd = fd;
	be.conn.fd = fd;
	return 0;
}

/* This node's gateway channel and transport agent (listening, not yet
 * running: the peers come with the configuration). */
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
	a.field_mask = DTRANS_ATTR_LOG_FD;
	a.log_fd = be.log_level >= DLAUNCH_LOG_DEBUG ? 2 : -1;
	if (getenv("DRAGON_BE_PEER_TIMEOUT")) {
		a.field_mask |= DTRANS_ATTR_PEER_TIMEOUT;
		a.peer_timeout_ns =
			(uint64_t)(atof(getenv("DRAGON_BE_PEER_TIMEOUT")) *
				   1e9);
	}
	rc = dtrans_agent_create(&a, &be.agent);
	if (rc == 0 && dtrans_agent_address(be.agent, be.agent_addr,
					    sizeof be.agent_addr) < 0)
		rc = -ENOSPC;
	if (rc)
		send_err("network configuration",
			 "transport agent on %s: %s (%s)", listen,
			 dtrans_strerror(rc), dtrans_errmsg());
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
			DLAUNCH_RT_ATTR_ENV;
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

static int hello(void)
{
	char node[16], pid[16];
	const char *f[] = {CTL_VERSION,	  node,	 be.host, be.secret,
			   be.agent_addr, be.ls, pid,	  PACKAGE_VERSION};

	snprintf(node, sizeof node, "%u", be.node);
	snprintf(pid, sizeof pid, "%d", (int)getpid());
	return ctl_send(be.fd, CTL_HELLO, f, 8);
}

static void on_config(const struct ctl_msg *m)
{
	int rc;

	if ((unsigned)m->n != be.nnodes + 1) {
		send_err("network configuration",
			 "the frontend sent %d agent addresses for %u nodes",
			 m->n - 1, be.nnodes);
		return;
	}
	for (unsigned i = 0; i < be.nnodes; i++)
		if (i != be.node)
			dtrans_agent_peer_set(be.agent, i, m->f[1 + i]);
	rc = dtrans_agent_start(be.agent);
	if (rc) {
		send_err("network configuration", "transport agent: %s (%s)",
			 dtrans_strerror(rc), dtrans_errmsg());
		return;
	}
	if (be.node != 0 && start_runtime(m->f[0]))
		return;
	if (!stalled("network configuration"))
		ctl_send(be.fd, CTL_CONFIG_OK, NULL, 0);
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
	if (!stalled("transport agents reachable"))
		ctl_send(be.fd, CTL_READY, NULL, 0);
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
	ctl_send(be.fd, CTL_HEAD_OK, f, 1);
}

/* End everything on this node: processes, segments, the agent. */
static void teardown(void)
{
	if (be.rt) {
		dlaunch_runtime_stop(be.rt, TEARDOWN_NS);
		be.rt = NULL;
	}
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

/* One message from the frontend; returns false to leave. */
static bool on_msg(const struct ctl_msg *m)
{
	switch (m->type) {
	case CTL_CONFIG:
		on_config(m);
		return true;
	case CTL_CHECK:
		on_check();
		return true;
	case CTL_HEAD:
		on_head(m);
		return true;
	case CTL_SIGNAL:
		if (be.rt && be.head)
			dlaunch_signal(be.rt, be.head, atoi(ctl_field(m, 0)));
		return true;
	case CTL_STOP:
		return false;
	default:
		return true;
	}
}

static int loop(int sfd)
{
	struct timespec last = {0}, now;

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
			ctl_send(be.fd, CTL_PING, NULL, 0);
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
				snprintf(e, sizeof e, "%d", b[0]);
				snprintf(c, sizeof c, "%d",
					 (unsigned char)b[1]);
				snprintf(s, sizeof s, "%d", b[2]);
				ctl_send(be.fd, CTL_EXIT, f, 3);
			}
			close(be.head_pipe[0]);
			be.head_pipe[0] = -1;
		}
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
	int rc, sfd;

	if ((rc = read_env(&host, &port)))
		return rc;
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
	if (connect_frontend(host, port))
		return 1;
	debug("connected to the frontend at %s:%s from %s", host, port, be.ip);
	if (stalled("backends connect")) {
		pause();
		return 1;
	}
	rc = dragon_guard_start(be.instance, NULL,
				be.log_level >= DLAUNCH_LOG_DEBUG);
	if (rc)
		say("warning: no watchdog (dragon-cleanup --when-gone): %s",
		    strerror(-rc));
	if (make_agent() || (be.node == 0 && start_runtime(NULL)) || hello()) {
		teardown();
		return 1;
	}
	rc = loop(sfd);
	teardown();
	if (be.fd >= 0)
		ctl_send(be.fd, CTL_BYE, NULL, 0);
	return rc;
}
