/* libdchan — channels: message queues in pool memory, sync objects.
 *
 * Public interface.  Functions return 0 or a non-negative count on success
 * and a negative error code on failure: a negative errno, or one of the
 * DCHAN_E* codes below; dchan_strerror() turns either into text.
 */
#ifndef DRAGON_DCHAN_H
#define DRAGON_DCHAN_H

#include <dragon/dmem.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DCHAN_EXPORT __attribute__((visibility("default")))

#define DCHAN_VERSION_MAJOR 0
#define DCHAN_VERSION_MINOR 1
#define DCHAN_VERSION_PATCH 0
/* One integer, comparable: (major << 16) | (minor << 8) | patch. */
#define DCHAN_VERSION_NUMBER                                                   \
	((DCHAN_VERSION_MAJOR << 16) | (DCHAN_VERSION_MINOR << 8) |            \
	 DCHAN_VERSION_PATCH)

/* Library error codes are negative and start past the errno range. */
#define DCHAN_ERRBASE 1100

/* The version of the library actually loaded, as DCHAN_VERSION_NUMBER; it may
 * be newer than the header a program was compiled with. */
DCHAN_EXPORT unsigned dchan_version(void);

/* Text for an error code returned by this library or a layer below it (a
 * negative errno, or a library code).  Never NULL; static storage. */
DCHAN_EXPORT const char *dchan_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif
