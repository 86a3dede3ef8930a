/* libdtransport: the version it reports and its error text. */
#include <dragon/dtransport.h>

#define VT_NAME		  "dtransport"
#define VT_VERSION	  dtrans_version
#define VT_VERSION_NUMBER DTRANS_VERSION_NUMBER
#define VT_STRERROR	  dtrans_strerror
#include "../version-suite.h"
