/* libdlaunch — the Dragon runtime: launcher, local and global services.
 *
 * Public interface.  Functions return 0 or a non-negative count on success
 * and a negative error code on failure: a negative errno, or one of the
 * DLAUNCH_E* codes below; dlaunch_strerror() turns either into text.
 */
#ifndef DRAGON_DLAUNCH_H
#define DRAGON_DLAUNCH_H

#include <dragon/dtransport.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DLAUNCH_EXPORT __attribute__((visibility("default")))

#define DLAUNCH_VERSION_MAJOR 0
#define DLAUNCH_VERSION_MINOR 1
#define DLAUNCH_VERSION_PATCH 0
/* One integer, comparable: (major << 16) | (minor << 8) | patch. */
#define DLAUNCH_VERSION_NUMBER                                                 \
	((DLAUNCH_VERSION_MAJOR << 16) | (DLAUNCH_VERSION_MINOR << 8) |        \
	 DLAUNCH_VERSION_PATCH)

/* Library error codes are negative and start past the errno range. */
#define DLAUNCH_ERRBASE 1300

/* The version of the library actually loaded, as DLAUNCH_VERSION_NUMBER; it may
 * be newer than the header a program was compiled with. */
DLAUNCH_EXPORT unsigned dlaunch_version(void);

/* Text for an error code returned by this library or a layer below it (a
 * negative errno, or a library code).  Never NULL; static storage. */
DLAUNCH_EXPORT const char *dlaunch_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif
