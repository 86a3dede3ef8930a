/* Version and error text of libdtransport. */
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
