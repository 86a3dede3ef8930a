/* Version and error text of libdchan. */
#include "config.h"
#include "dchan_private.h"

DCHAN_EXPORT unsigned dchan_version(void)
{
	return DCHAN_VERSION_NUMBER;
}

DCHAN_EXPORT const char *dchan_strerror(int err)
{
	/* No codes of this library's own yet: everything belongs below. */
	return dmem_strerror(err);
}
