/* What the launchers of backends share (see dragon_wlm.h): spawning a
 * process with pipes, starting one that serves every node, dragon-backend's
 * path, the frontend's address and lists of hosts. */
#define _GNU_SOURCE
#include "config.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "dragon_wlm.h"

extern char **environ;

int wlm_spawn(struct wlm_proc *p, const char *file, char *const *argv,
	      char *const *envp, int *in_fd)
{
	int in[2] = {-1, -1}, err[2];
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t sa;
	sigset_t none;
	int rc;

	if (pipe2(err, O_CLOEXEC) < 0)
		return errno;
	if (in_fd && pipe2(in, O_CLOEXEC) < 0) {
		rc = errno;
		close(err[0]);
		close(err[1]);
		return rc;
	}
	posix_spawn_file_actions_init(&fa);
	if (in_fd)
		posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	else
		posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY,
						 0);
	posix_spawn_file_actions_adddup2(&fa, err[1], 2);
	posix_spawnattr_init(&sa);
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&sa, &none);
	/* Its own process group: a Ctrl-C at the terminal reaches dragon,
	 * which tears the nodes down in order, not the launcher's tool. */
	posix_spawnattr_setpgroup(&sa, 0);
	posix_spawnattr_setflags(&sa, POSIX_SPAWN_SETSIGMASK |
					      POSIX_SPAWN_SETPGROUP);
	rc = posix_spawnp(&p->pid, file, &fa, &sa, argv, envp);
	posix_spawnattr_destroy(&sa);
	posix_spawn_file_actions_destroy(&fa);
	close(err[1]);
	if (in_fd)
		close(in[0]);
	if (rc) {
		close(err[0]);
		if (in_fd)
			close(in[1]);
		return rc;
	}
	p->err_fd = err[0];
	fcntl(p->err_fd, F_SETFL, O_NONBLOCK);
	if (in_fd)
		*in_fd = in[1];
	return 0;
}

char **wlm_env(char *const *add)
{
	size_t ne = 0, na = 0;
	char **envp;

	for (char **e = environ; *e; e++)
		ne++;
	while (add && add[na])
		na++;
	envp = calloc(ne + na + 1, sizeof *envp);
	if (!envp)
		return NULL;
	ne = 0;
	for (char **e = environ; *e; e++)
		if (strncmp(*e, "DRAGON_BE_", 10) != 0)
			envp[ne++] = *e;
	for (size_t i = 0; i < na; i++)
		envp[ne++] = add[i];
	return envp;
}

char *wlm_words(const char *var, char **argv, int *k, int max)
{
	const char *v = getenv(var);
	char *copy;

	if (!v || !*v || !(copy = strdup(v)))
		return NULL;
	for (char *sv, *t = strtok_r(copy, " \t\n", &sv); t && *k < max;
	     t = strtok_r(NULL, " \t\n", &sv))
		argv[(*k)++] = t;
	return copy;
}

int wlm_mpiexec_argv(struct wlm_mpiexec *m, char *const *hosts, unsigned n,
		     char **argv, int *k, int max)
{
	size_t len = 1;

	for (unsigned i = 0; i < n; i++)
		len += strlen(hosts[i]) + 1;
	m->opts = NULL;
	if (!(m->hosts = calloc(1, len)))
		return -1;
	for (unsigned i = 0; i < n; i++) {
		if (i)
			strcat(m->hosts, ",");
		strcat(m->hosts, hosts[i]);
	}
	snprintf(m->np, sizeof m->np, "%u", n);
	argv[(*k)++] = "mpiexec";
	argv[(*k)++] = "-n";
	argv[(*k)++] = m->np;
	argv[(*k)++] = "--ppn";
	argv[(*k)++] = "1";
	argv[(*k)++] = "--hosts";
	argv[(*k)++] = m->hosts;
	m->opts = wlm_words("DRAGON_MPIEXEC_OPTS", argv, k, max);
	return 0;
}

void wlm_mpiexec_free(struct wlm_mpiexec *m)
{
	free(m->hosts);
	free(m->opts);
	m->hosts = m->opts = NULL;
}

int wlm_start_single(struct wlm_job *j, const char *file, char *const *argv,
		     const char *fix)
{
	char **envp, *secret;
	int k, rc;

	j->procs = calloc(1, sizeof *j->procs);
	if (!j->procs ||
	    asprintf(&secret, "DRAGON_BE_SECRET=%s", j->secret) < 0)
		return -1;
	j->procs[0].node = -1;
	/* the secret goes with the tool's environment, nowhere else */
	for (k = 0; j->env[k]; k++)
		;
	j->env[k] = secret;
	envp = wlm_env(j->env);
	j->env[k] = NULL;
	rc = envp ? wlm_spawn(&j->procs[0], file, argv, envp, &j->in_fd)
		  : ENOMEM;
	explicit_bzero(secret, strlen(secret));
	free(secret);
	free(envp);
	if (rc) {
		fprintf(stderr,
			"dragon: start-up phase 'launch backends' failed: "
			"cannot run %s: %s (%s)\n",
			file, strerror(rc), fix);
		return -1;
	}
	j->nprocs = 1;
	return 0;
}

/* In the build tree the launcher runs from .libs, where the backend's
 * binary lacks the library path its wrapper above sets. */
int wlm_backend_program(char *out, size_t len)
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
	slash = strrchr(dir, '/');
	if (slash && strcmp(slash, "/.libs") == 0)
		*slash = '\0';
	snprintf(out, len, "%s/dragon-backend", dir);
	return access(out, X_OK) == 0 ? 0 : -1;
}

static const char *addr_text(const struct sockaddr *sa, char *buf, size_t len)
{
	const void *a =
		sa->sa_family == AF_INET
			? (const void *)&((const struct sockaddr_in *)sa)
				  ->sin_addr
			: (const void *)&((const struct sockaddr_in6 *)sa)
				  ->sin6_addr;

	return inet_ntop(sa->sa_family, a, buf, (socklen_t)len);
}

static bool loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)
				      ->sin_addr.s_addr) >>
			24) == 127;
	return IN6_IS_ADDR_LOOPBACK(
		&((const struct sockaddr_in6 *)sa)->sin6_addr);
}

/* The first address of an interface whose name or address starts with
 * prefix (IPv4 first). */
static int prefix_addr(const char *prefix, char *out, size_t len)
{
	struct ifaddrs *ifs;
	char a[INET6_ADDRSTRLEN];
	size_t pl = strlen(prefix);

	if (getifaddrs(&ifs) < 0)
		return -1;
	for (int fam = AF_INET, pass = 0; pass < 2; pass++, fam = AF_INET6)
		for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
			if (!i->ifa_addr || i->ifa_addr->sa_family != fam ||
			    !addr_text(i->ifa_addr, a, sizeof a))
				continue;
			if (strncmp(i->ifa_name, prefix, pl) == 0 ||
			    strncmp(a, prefix, pl) == 0) {
				snprintf(out, len, "%s", a);
				freeifaddrs(ifs);
				return 0;
			}
		}
	freeifaddrs(ifs);
	return -1;
}

/* The source address of this host's route to host (a UDP connect sends
 * nothing). */
static int route_addr(const char *host, char *out, size_t len)
{
	struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *ai, *r;
	struct sockaddr_storage ss;
	int rc = -1;

	if (getaddrinfo(host, "9", &hints, &ai))
		return -1;
	for (r = ai; r && rc; r = r->ai_next) {
		socklen_t sl = sizeof ss;
		int fd = socket(r->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);

		if (fd < 0)
			continue;
		if (connect(fd, r->ai_addr, r->ai_addrlen) == 0 &&
		    getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
		    !loopback((struct sockaddr *)&ss) &&
		    addr_text((struct sockaddr *)&ss, out, len))
			rc = 0;
		close(fd);
	}
	freeaddrinfo(ai);
	return rc;
}

void wlm_frontend_addr(const struct dragon_opts *o, char **hosts, unsigned n,
		       char *out, size_t len)
{
	const char *env = getenv("DRAGON_FRONTEND_ADDR");

	out[0] = '\0';
	if (env && *env) {
		snprintf(out, len, "%s", env);
		return;
	}
	/* The route to a node first: --network-prefix names the nodes'
	 * network, which this host (a login node) need not be on. */
	for (unsigned i = 0; hosts && i < n; i++)
		if (route_addr(hosts[i], out, len) == 0)
			return;
	if (hosts && o->netprefix && prefix_addr(o->netprefix, out, len) == 0)
		return;
	out[0] = '\0';
}

char **wlm_hosts_parse(const char *text, const char *sep, unsigned *count)
{
	char *copy = strdup(text ? text : ""), **v = NULL;
	unsigned n = 0;

	if (!copy)
		return NULL;
	for (char *sv, *t = strtok_r(copy, sep ? sep : "\n", &sv); t;
	     t = strtok_r(NULL, sep ? sep : "\n", &sv)) {
		char *w = t + strspn(t, " \t\r"), **nv;
		size_t wl = strcspn(w, " \t\r");
		bool seen = false;

		if (!wl || *w == '#')
			continue;
		w[wl] = '\0';
		for (unsigned i = 0; i < n && !seen; i++)
			seen = strcmp(v[i], w) == 0;
		if (seen)
			continue;
		if (!(nv = realloc(v, (n + 2) * sizeof *v)))
			break;
		v = nv;
		v[n++] = strdup(w);
		v[n] = NULL;
	}
	free(copy);
	*count = n;
	return v;
}

char *wlm_read_file(const char *path, int *err)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t len = 0;

	if (!f) {
		*err = errno;
		return NULL;
	}
	if (getdelim(&buf, &len, '\0', f) < 0) {
		free(buf);
		buf = strdup("");
	}
	fclose(f);
	*err = buf ? 0 : ENOMEM;
	return buf;
}

void wlm_names_free(char **names, unsigned n)
{
	if (!names)
		return;
	for (unsigned i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

void wlm_names_trim(char **names, unsigned n, unsigned keep)
{
	for (unsigned i = keep; i < n; i++) {
		free(names[i]);
		names[i] = NULL;
	}
}
