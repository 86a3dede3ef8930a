/*
 * What the backends opened at run time share: finding and opening their
 * library with dlopen, and resolving its functions into a table.  The libraries
 * are never linked: a machine without them still builds (given the headers) and
 * runs with tcp.
 */
#include "config.h"
#include "dtrans_private.h"

#include <dlfcn.h>
#include <errno.h>
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
