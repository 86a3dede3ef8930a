/* Errors of libdtransport: the names of its codes and the per-thread detail
 * message; and the version (one small function, kept with them as in
 * libdmem's error.c). */
#include "config.h"
#include "dtrans_private.h"

#include <stdarg.h>
#include <stdio.h>

static __thread char errbuf[512];

DTRANS_EXPORT unsigned dtrans_version(void)
{
	return DTRANS_VERSION_NUMBER;
}

static const char *const errtext[] = {
	[1] = "transport backend unknown, not built, or its library does not "
	      "load",
	[2] = "peer failed the handshake (not the same runtime's secret)",
	[3] = "malformed transport frame",
	[4] = "node index or node count does not match",
};

DTRANS_EXPORT const char *dtrans_strerror(int err)
{
	int n = -err - DTRANS_ERRBASE;

	if (n > 0 && n < (int)(sizeof errtext / sizeof *errtext))
		return errtext[n];
	return dchan_strerror(err);
}

DTRANS_EXPORT const char *dtrans_errmsg(void)
{
	return errbuf;
}

int dtrans__fail(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof errbuf, fmt, ap);
	va_end(ap);
	return err;
}
