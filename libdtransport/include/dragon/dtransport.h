/* libdtransport — the transport agent that carries channel operations between
 * nodes.
 *
 * Public interface.  Functions return 0 or a non-negative count on success
 * and a negative error code on failure: a negative errno, or one of the
 * DTRANS_E* codes below; dtrans_strerror() turns either into text.
 */
#ifndef DRAGON_DTRANSPORT_H
#define DRAGON_DTRANSPORT_H

#include <dragon/dchan.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DTRANS_EXPORT __attribute__((visibility("default")))

#define DTRANS_VERSION_MAJOR 0
#define DTRANS_VERSION_MINOR 1
#define DTRANS_VERSION_PATCH 0
/* One integer, comparable: (major << 16) | (minor << 8) | patch. */
#define DTRANS_VERSION_NUMBER                                                  \
	((DTRANS_VERSION_MAJOR << 16) | (DTRANS_VERSION_MINOR << 8) |          \
	 DTRANS_VERSION_PATCH)

/* Library error codes are negative and start past the errno range. */
#define DTRANS_ERRBASE 1200

/* The version of the library actually loaded, as DTRANS_VERSION_NUMBER; it may
 * be newer than the header a program was compiled with. */
DTRANS_EXPORT unsigned dtrans_version(void);

/* Text for an error code returned by this library or a layer below it (a
 * negative errno, or a library code).  Never NULL; static storage. */
DTRANS_EXPORT const char *dtrans_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif
