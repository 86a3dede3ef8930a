/* libdchan: the version it reports and its error text. */
#include <dragon/dchan.h>

#define VT_NAME		  "dchan"
#define VT_VERSION	  dchan_version
#define VT_VERSION_NUMBER DCHAN_VERSION_NUMBER
#define VT_STRERROR	  dchan_strerror
#include "../version-suite.h"
