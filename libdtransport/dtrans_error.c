/* Errors of libdtransport: the names of its codes, and the version (one
 * small function, kept with them as in libdmem's error.c). */
#include "config.h"
#include "dtrans_private.h"

DTRANS_EXPORT unsigned dtrans_version(void)
{
	return DTRANS_VERSION_NUMBER;
}

DTRANS_EXPORT const char *dtrans_strerror(int err)
{
	/* No codes of this library's own yet: everything belongs below. */
	return dchan_strerror(err);
}
