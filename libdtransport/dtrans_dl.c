/*
 * What the backends opened at run time share: finding and opening their
 * library with dlopen, resolving its functions into a table, and the
 * "host:port" addresses every backend speaks.  The libraries are never
 * linked: a machine without them still builds (given the headers) and
 * runs with tcp.
 */
#include "config.h"
#include "dtrans_private.h"

#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

int dtrans__dl_open(const char *backend, const char *dir,
		    const char *const *names, void **handle_out)
{
	char path[4096], first[4096] = "", why[512] = "";
	bool sys = !dir || strcmp(dir, DTRANS__DL_SYSTEM) == 0;

	for (const char *const *n = names; *n; n++) {
		void *h;

		if (sys)
			snprintf(path, sizeof path, "%s", *n);
		else
			snprintf(path, sizeof path, "%s/%s", dir, *n);
		h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
		if (h) {
			*handle_out = h;
			return 0;
		}
		if (!*first) { /* the first name's failure says the most */
			const char *e = dlerror();

			snprintf(first, sizeof first, "%s", path);
			snprintf(why, sizeof why, "%s", e ? e : "unknown");
		}
	}
	return dtrans__fail(-DTRANS_E_BACKEND,
			    "the %s backend cannot load %s%s: %s; fix the "
			    "directory with 'dragon-config add --%s-runtime-"
			    "lib=DIR' (or 'system'), or choose tcp",
			    backend, first, sys ? " (system library path)" : "",
			    why, backend);
}

int dtrans__dl_syms(void *h, const char *backend, const char *const *names,
		    void **table)
{
	for (size_t i = 0; names[i]; i++) {
		dlerror();
		table[i] = dlsym(h, names[i]);
		if (!table[i]) {
			const char *e = dlerror();

			return dtrans__fail(-DTRANS_E_BACKEND,
					    "the %s backend's library has no "
					    "%s: %s; it is too old or not the "
					    "library the backend needs",
					    backend, names[i],
					    e ? e : "symbol is NULL");
		}
	}
	return 0;
}

int dtrans__addr_split(const char *addr, char *host, size_t hlen, char *port,
		       size_t plen)
{
	const char *colon = addr ? strrchr(addr, ':') : NULL;
	size_t hl;

	if (!colon || colon == addr || !colon[1])
		return dtrans__fail(-EINVAL, "address '%s' is not host:port",
				    addr ? addr : "(null)");
	hl = (size_t)(colon - addr);
	if (addr[0] == '[' && hl >= 2 && addr[hl - 1] == ']') {
		addr++;
		hl -= 2;
	}
	if (hl >= hlen || strlen(colon + 1) >= plen)
		return dtrans__fail(-EINVAL, "address '%s' is too long", addr);
	memcpy(host, addr, hl);
	host[hl] = 0;
	snprintf(port, plen, "%s", colon + 1);
	return 0;
}

int dtrans__addr_format(const struct sockaddr *sa, unsigned sl, char *buf,
			size_t len)
{
	char host[NI_MAXHOST], port[NI_MAXSERV];
	int n;

	if (getnameinfo(sa, sl, host, sizeof host, port, sizeof port,
			NI_NUMERICHOST | NI_NUMERICSERV))
		return -EINVAL;
	n = snprintf(buf, len, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s",
		     host, port);
	return n < 0 || (size_t)n >= len ? -ENOSPC : n;
}

int dtrans__addr_resolve(const char *addr, bool passive, struct addrinfo **out)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = passive ? AI_PASSIVE : 0};
	char host[256], port[32];
	int rc = dtrans__addr_split(addr, host, sizeof host, port, sizeof port);

	if (rc < 0)
		return rc;
	rc = getaddrinfo(host, port, &hints, out);
	if (rc)
		return dtrans__fail(-EHOSTUNREACH, "cannot resolve '%s': %s",
				    addr, gai_strerror(rc));
	return 0;
}
