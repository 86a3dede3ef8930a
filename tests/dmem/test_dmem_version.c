/* libdmem: the version it reports and its error text. */
#include <dragon/dmem.h>

#define VT_NAME		  "dmem"
#define VT_VERSION	  dmem_version
#define VT_VERSION_NUMBER DMEM_VERSION_NUMBER
#define VT_STRERROR	  dmem_strerror
#include "../version-suite.h"
