/*
 * Which backend an agent uses.
 *
 * A program may name one ("tcp", "ofi", "ucx").  Otherwise the choice is
 * the user's, recorded by dragon-config in its file: ofi when
 * ofi-runtime-lib is set, else ucx when ucx-runtime-lib is, else tcp --
 * with a notice, once per process, unless tcp-runtime=True says TCP is
 * meant.  A fast backend is opened from the directory recorded for it
 * (the value "system": the default library search path; nothing
 * recorded and the backend named by the program: the same).  A library
 * that does not load is an error, and TCP takes over only when the user
 * asked for that with tcp-fallback=True.
 *
 * The file is parsed here rather than shared with dragon-config, which
 * sits in a library above this one; its format (KEY=VALUE lines, '#'
 * comments) is documented in dragon-config(1).
 */
#include "config.h"
#include "dtrans_private.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { C_OFI, C_UCX, C_TCP, C_FALLBACK, C_N };
static const char *const ckeys[C_N] = {"ofi-runtime-lib", "ucx-runtime-lib",
				       "tcp-runtime", "tcp-fallback"};

struct dtrans__conf {
	char val[C_N][PATH_MAX];
};

static const char notice[] =
	"Dragon was unable to find a high-speed network backend "
	"configuration.\n"
	"Record where libfabric or UCX is installed with 'dragon-config add "
	"--ofi-runtime-lib=DIR' or '--ucx-runtime-lib=DIR' (see "
	"dragon-config(1)),\n"
	"or silence this notice with 'dragon-config add --tcp-runtime=True'. "
	"In the meantime,\n"
	"we will use the lower performing TCP transport agent for backend "
	"network communication.\n";

static int notice_said;

/* The config file's path, as dragon-config finds it. */
static int conf_path(char *buf, size_t len)
{
	const char *p = getenv("DRAGON_CONFIG"), *x = getenv("XDG_CONFIG_HOME");
	const char *home = getenv("HOME");
	int n;

	if (p && *p)
		n = snprintf(buf, len, "%s", p);
	else if (x && *x)
		n = snprintf(buf, len, "%s/dragon/dragon.conf", x);
	else if (home && *home)
		n = snprintf(buf, len, "%s/.config/dragon/dragon.conf", home);
	else
		return -1;
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* Read what dragon-config recorded; a missing file records nothing.
 * Lines it would not write are ignored here (dragon-config refuses
 * them and says how to fix them). */
static void conf_read(struct dtrans__conf *c)
{
	char path[PATH_MAX], line[PATH_MAX + 64];
	FILE *f;

	memset(c, 0, sizeof *c);
	if (conf_path(path, sizeof path) < 0 || !(f = fopen(path, "re")))
		return;
	while (fgets(line, sizeof line, f)) {
		char *eq = strchr(line, '=');
		size_t len = strlen(line);

		if (len && line[len - 1] == '\n')
			line[--len] = 0;
		if (!eq || line[0] == '#')
			continue;
		for (int k = 0; k < C_N; k++)
			if ((size_t)(eq - line) == strlen(ckeys[k]) &&
			    !strncmp(line, ckeys[k], strlen(ckeys[k])))
				snprintf(c->val[k], sizeof c->val[k], "%s",
					 eq + 1);
	}
	fclose(f);
}

static void say(int fd, const char *s)
{
	if (fd >= 0 && write(fd, s, strlen(s)) < 0) {
		/* nowhere to say it */
	}
}

static const struct dtrans__backend_ops *fast(const char *name, const char *dir,
					      const struct dtrans__conf *c,
					      int log_fd)
{
	const struct dtrans__backend_ops *ops = NULL;
	char msg[1024];
	int rc;

	rc = strcmp(name, "ofi") == 0 ? dtrans__ofi_load(dir, &ops)
				      : dtrans__ucx_load(dir, &ops);
	if (rc == 0)
		return ops;
	if (strcmp(c->val[C_FALLBACK], "True") != 0)
		return NULL;
	snprintf(msg, sizeof msg,
		 "dragon-transport: %s; using tcp instead (tcp-fallback=True)"
		 "\n",
		 dtrans_errmsg());
	say(log_fd, msg);
	return &dtrans__tcp_ops;
}

const struct dtrans__backend_ops *dtrans__backend_find(const char *name,
						       int log_fd)
{
	struct dtrans__conf *c;
	const struct dtrans__backend_ops *ops = NULL;
	bool dflt = !name || strcmp(name, "auto") == 0;

	if (name && strcmp(name, "tcp") == 0)
		return &dtrans__tcp_ops;
	if (!dflt && strcmp(name, "ofi") && strcmp(name, "ucx")) {
		dtrans__fail(-DTRANS_E_BACKEND,
			     "unknown transport backend \"%s\"; known: tcp, "
			     "ofi, ucx (or auto: what dragon-config recorded)",
			     name);
		return NULL;
	}
	c = malloc(sizeof *c);
	if (!c) {
		dtrans__fail(-ENOMEM, "no memory to read the configuration");
		return NULL;
	}
	conf_read(c);
	if (!dflt) {
		int k = strcmp(name, "ofi") == 0 ? C_OFI : C_UCX;

		ops = fast(name, c->val[k][0] ? c->val[k] : NULL, c, log_fd);
	} else if (c->val[C_OFI][0])
		ops = fast("ofi", c->val[C_OFI], c, log_fd);
	else if (c->val[C_UCX][0])
		ops = fast("ucx", c->val[C_UCX], c, log_fd);
	else {
		if (strcmp(c->val[C_TCP], "True") != 0 &&
		    !__atomic_exchange_n(&notice_said, 1, __ATOMIC_RELAXED))
			say(log_fd, notice);
		ops = &dtrans__tcp_ops;
	}
	free(c);
	return ops;
}
