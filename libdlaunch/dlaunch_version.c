/* Version and error text of libdlaunch. */
#include "config.h"
#include "dlaunch_private.h"

DLAUNCH_EXPORT unsigned dlaunch_version(void)
{
	return DLAUNCH_VERSION_NUMBER;
}

DLAUNCH_EXPORT const char *dlaunch_strerror(int err)
{
	/* No codes of this library's own yet: everything belongs below. */
	return dtrans_strerror(err);
}
