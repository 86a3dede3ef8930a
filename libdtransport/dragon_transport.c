/*
 * dragon-transport: run one transport agent from the command line, for
 * tests and for people debugging a cluster.  See dragon-transport(1).
 */
#include "config.h"
#include <dragon/dtransport.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECRET_ENV "DRAGON_TRANSPORT_SECRET"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: dragon-transport --node I --nodes N --listen "
		"HOST:PORT\n"
		"         [--peer J=HOST:PORT]... [--backend "
		"tcp|ofi|ucx|auto]\n"
		"         [--peer-timeout SECONDS] [--gateway CHANNEL]\n"
		"         [--secret-file PATH]\n"
		"The secret comes from --secret-file (a file of mode 0600) or "
		"$%s,\nnever from the command line.\n",
		SECRET_ENV);
}

/* Read the secret from a file only its owner can read. */
static int read_secret(const char *path, char *buf, size_t cap, size_t *len)
{
	struct stat st;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		fprintf(stderr, "dragon-transport: %s: %s\n", path,
			strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || (st.st_mode & 077) || st.st_uid != getuid()) {
		fprintf(stderr,
			"dragon-transport: %s must be yours and mode 0600 "
			"(chmod 600 %s)\n",
			path, path);
		close(fd);
		return -1;
	}
	n = read(fd, buf, cap);
	close(fd);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	if (n <= 0) {
		fprintf(stderr, "dragon-transport: %s is empty\n", path);
		return -1;
	}
	*len = (size_t)n;
	return 0;
}

struct opts {
	long node, nodes;
	const char *listen, *backend, *gateway, *secret_file;
	double peer_timeout;
	char **peers;
};

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{"node", 1, 0, 'n'},	{"nodes", 1, 0, 'N'},
		{"listen", 1, 0, 'l'},	{"peer", 1, 0, 'p'},
		{"backend", 1, 0, 'b'}, {"peer-timeout", 1, 0, 't'},
		{"gateway", 1, 0, 'g'}, {"secret-file", 1, 0, 's'},
		{"help", 0, 0, 'h'},	{0, 0, 0, 0}};
	char *end;
	int c;

	o->node = o->nodes = -1;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'n':
			o->node = strtol(optarg, &end, 10);
			if (*end || o->node < 0)
				o->node = -2;
			break;
		case 'N':
			o->nodes = strtol(optarg, &end, 10);
			if (*end || o->nodes < 1 || o->nodes > DTRANS_NODES_MAX)
				o->nodes = -2;
			break;
		case 'l':
			o->listen = optarg;
			break;
		case 'p': {
			long j = strtol(optarg, &end, 10);

			if (*end != '=' || j < 0 || o->nodes < 1 ||
			    j >= o->nodes) {
				fprintf(stderr,
					"dragon-transport: --peer %s: want "
					"J=HOST:PORT with J < --nodes (give "
					"--nodes first)\n",
					optarg);
				return 2;
			}
			o->peers[j] = end + 1;
			break;
		}
		case 'b':
			o->backend = optarg;
			break;
		case 't':
			o->peer_timeout = strtod(optarg, &end);
			if (*end || o->peer_timeout <= 0)
				o->peer_timeout = -1;
			break;
		case 'g':
			o->gateway = optarg;
			break;
		case 's':
			o->secret_file = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return 2;
		}
	}
	if (o->node < 0 || o->nodes < 1 || o->node >= o->nodes || !o->listen ||
	    o->peer_timeout < 0 || optind != argc) {
		usage(stderr);
		return 2;
	}
	return 0;
}

static int run(const struct opts *o, const char *secret, size_t slen)
{
	dtrans_attr_t a = {0};
	dtrans_agent_t *ag = NULL;
	dmem_pool_t *pool = NULL;
	dchan_t *gw = NULL;
	char name[64], text[DCHAN_DESC_TEXT_MAX], addr[256];
	dchan_attr_t ca = {.field_mask = DCHAN_ATTR_CAPACITY, .capacity = 1024};
	dchan_desc_t d;
	sigset_t ss;
	int rc, sig;

	/* Blocked before any thread exists (the agent's, and the helper
	 * thread of its watch set inherit the mask): a SIGTERM meant for the
	 * sigwait below must never reach a thread that would die of it. */
	sigemptyset(&ss);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &ss, NULL);
	if (o->gateway) {
		rc = dchan_desc_from_text(o->gateway, &d);
		if (rc == 0)
			rc = dchan_attach(&d, &gw);
	} else {
		snprintf(name, sizeof name, "transport-gw-%ld-%d", o->node,
			 (int)getpid());
		rc = dmem_pool_create(name, 64u << 20, NULL, &pool);
		if (rc == 0)
			rc = dchan_create(pool, &ca, &gw);
	}
	if (rc < 0) {
		fprintf(stderr, "dragon-transport: gateway channel: %s (%s)\n",
			dchan_strerror(rc), dchan_errmsg());
		goto out;
	}
	a.node = (uint32_t)o->node;
	a.nnodes = (uint32_t)o->nodes;
	a.listen_addr = o->listen;
	a.peers = (const char *const *)o->peers;
	a.secret = secret;
	a.secret_len = slen;
	a.gateway = gw;
	if (o->backend) {
		a.field_mask |= DTRANS_ATTR_BACKEND;
		a.backend = o->backend;
	}
	if (o->peer_timeout > 0) {
		a.field_mask |= DTRANS_ATTR_PEER_TIMEOUT;
		a.peer_timeout_ns = (uint64_t)(o->peer_timeout * 1e9);
	}
	/* blocked before the agent makes threads (its watch set has one),
	 * so that every thread leaves the signals to sigwait below */
	sigemptyset(&ss);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &ss, NULL);
	rc = dtrans_agent_create(&a, &ag);
	if (rc < 0) {
		fprintf(stderr, "dragon-transport: %s: %s\n",
			dtrans_strerror(rc), dtrans_errmsg());
		goto out;
	}
	rc = dtrans_agent_start(ag);
	if (rc < 0) {
		fprintf(stderr, "dragon-transport: %s: %s\n",
			dtrans_strerror(rc), dtrans_errmsg());
		goto out;
	}
	dchan_desc_get(gw, &d);
	dchan_desc_to_text(&d, text, sizeof text);
	dtrans_agent_address(ag, addr, sizeof addr);
	printf("listening %s\ngateway %s\n", addr, text);
	fflush(stdout);
	sigwait(&ss, &sig);
	dtrans_agent_stop(ag);
	for (long j = 0; j < o->nodes; j++) {
		dtrans_peer_stats_t st;

		if (j == o->node || dtrans_agent_stats(ag, (uint32_t)j, &st))
			continue;
		printf("node %ld: sent %llu served %llu completions %llu "
		       "bytes out %llu in %llu frames %llu sends %llu "
		       "links %llu errors %llu failed %llu\n",
		       j, (unsigned long long)st.requests_sent,
		       (unsigned long long)st.requests_served,
		       (unsigned long long)st.completions_recv,
		       (unsigned long long)st.bytes_sent,
		       (unsigned long long)st.bytes_recv,
		       (unsigned long long)st.frames_sent,
		       (unsigned long long)st.sends,
		       (unsigned long long)st.connections,
		       (unsigned long long)st.errors,
		       (unsigned long long)st.failed_ops);
	}
	rc = 0;
out:
	dtrans_agent_destroy(ag);
	if (pool) {
		if (gw)
			dchan_destroy(gw);
		dmem_pool_destroy(pool);
	} else if (gw) {
		dchan_detach(gw);
	}
	return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct opts o = {0};
	char secret[DTRANS_SECRET_MAX], idbuf[32];
	const char *env = getenv(SECRET_ENV), *have;
	size_t slen = 0;
	int rc;

	o.peers = calloc(DTRANS_NODES_MAX, sizeof *o.peers);
	if (!o.peers)
		return 1;
	rc = parse(argc, argv, &o);
	if (rc) {
		free(o.peers);
		return rc;
	}
	if (o.secret_file) {
		if (read_secret(o.secret_file, secret, sizeof secret, &slen))
			rc = 1;
	} else if (env && *env) {
		slen = strlen(env);
		if (slen > sizeof secret)
			slen = sizeof secret;
		memcpy(secret, env, slen);
		unsetenv(SECRET_ENV); /* not inherited further */
	} else {
		fprintf(stderr, "dragon-transport: no secret: give "
				"--secret-file or set " SECRET_ENV "\n");
		rc = 1;
	}
	/* libdmem takes this node's id from the environment */
	snprintf(idbuf, sizeof idbuf, "%llu",
		 (unsigned long long)DTRANS_NODE_ID(o.node));
	have = getenv("DRAGON_NODE_ID");
	if (!rc && have && dmem_node_id() != DTRANS_NODE_ID(o.node)) {
		fprintf(stderr,
			"dragon-transport: DRAGON_NODE_ID=%s but --node %ld "
			"needs %s\n",
			have, o.node, idbuf);
		rc = 1;
	}
	if (!rc && !have)
		setenv("DRAGON_NODE_ID", idbuf, 1);
	if (!rc)
		rc = run(&o, secret, slen);
	memset(secret, 0, sizeof secret);
	free(o.peers);
	return rc;
}
