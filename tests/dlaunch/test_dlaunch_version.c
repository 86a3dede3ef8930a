/* libdlaunch: the version it reports and its error text. */
#include <dragon/dlaunch.h>

#define VT_NAME		  "dlaunch"
#define VT_VERSION	  dlaunch_version
#define VT_VERSION_NUMBER DLAUNCH_VERSION_NUMBER
#define VT_STRERROR	  dlaunch_strerror
#include "../version-suite.h"
