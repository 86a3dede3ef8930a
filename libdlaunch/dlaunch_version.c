/* The version of libdlaunch. */
#include "config.h"
#include "dlaunch_private.h"

DLAUNCH_EXPORT unsigned dlaunch_version(void)
{
	return DLAUNCH_VERSION_NUMBER;
}
