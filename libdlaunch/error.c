/* Errors of libdlaunch: the names of its codes and the per-thread detail
 * message.
 *
 * Codes are returned, never left in errno.  The detail message exists
 * because a code alone cannot say which program failed to start or which
 * name was missing; it is thread-local so concurrent callers never see
 * each other's text.
 */
#define _GNU_SOURCE
#include "config.h"
#include <stdarg.h>
#include <stdio.h>
#include "dlaunch_private.h"

static _Thread_local char errbuf[512];

int dlaunch__fail(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof errbuf, fmt, ap);
	va_end(ap);
	return code;
}

DLAUNCH_EXPORT const char *dlaunch_errmsg(void)
{
	return errbuf;
}

static const char *const lib_names[] = {
	[DLAUNCH_E_NORUNTIME - DLAUNCH_ERRBASE] =
		"no Dragon runtime in the environment (start the program "
		"with dragon)",
	[DLAUNCH_E_ENV - DLAUNCH_ERRBASE] =
		"malformed Dragon runtime environment variable",
	[DLAUNCH_E_PROTO - DLAUNCH_ERRBASE] =
		"malformed runtime service message",
	[DLAUNCH_E_VERSION - DLAUNCH_ERRBASE] =
		"runtime services speak another message version",
	[DLAUNCH_E_SERVICES - DLAUNCH_ERRBASE] =
		"runtime services are not answering",
	[DLAUNCH_E_NOPROC - DLAUNCH_ERRBASE] =
		"process not known to the runtime",
	[DLAUNCH_E_SPAWN - DLAUNCH_ERRBASE] = "program could not be started",
	[DLAUNCH_E_NONAME - DLAUNCH_ERRBASE] = "name not registered",
	[DLAUNCH_E_KIND - DLAUNCH_ERRBASE] =
		"name registered for another kind of object",
	[DLAUNCH_E_CLOSED - DLAUNCH_ERRBASE] = "runtime is shutting down",
};

DLAUNCH_EXPORT const char *dlaunch_strerror(int err)
{
	int n = -err - DLAUNCH_ERRBASE;

	if (n > 0 && n < (int)(sizeof lib_names / sizeof lib_names[0]) &&
	    lib_names[n])
		return lib_names[n];
	/* errno values and the codes of the layers below. */
	return dtrans_strerror(err);
}
