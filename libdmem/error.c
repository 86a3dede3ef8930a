/* SPDX-License-Identifier: MIT */
/*
 * error.c - error names, the per-thread detail message, the version.
 *
 * Codes are returned, never left in errno.  The detail message exists
 * because a code alone cannot say which pool was full or what to change;
 * it is thread-local so concurrent callers never see each other's text.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dmem_private.h"

static _Thread_local char errbuf[512];

int dmem__fail(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
	va_end(ap);
	return code;
}

DMEM_EXPORT const char *dmem_errmsg(void)
{
	return errbuf;
}

DMEM_EXPORT unsigned dmem_version(void)
{
	return DMEM_VERSION_NUMBER;
}

static const char *const lib_names[] = {
	[DMEM_E_NOSPACE - DMEM_ERRBASE] = "pool has no free block large enough",
	[DMEM_E_TOOBIG - DMEM_ERRBASE] =
		"request larger than the pool can ever serve",
	[DMEM_E_BADMAGIC - DMEM_ERRBASE] =
		"not a dmem pool or descriptor (bad magic)",
	[DMEM_E_VERSION - DMEM_ERRBASE] = "unsupported dmem layout version",
	[DMEM_E_CORRUPT - DMEM_ERRBASE] = "corrupt descriptor or pool",
	[DMEM_E_STALE - DMEM_ERRBASE] =
		"stale descriptor: the allocation was freed",
	[DMEM_E_FOREIGN - DMEM_ERRBASE] =
		"descriptor belongs to another pool or node",
	[DMEM_E_SHMSMALL - DMEM_ERRBASE] = "/dev/shm too small for the pool",
	[DMEM_E_ENV - DMEM_ERRBASE] = "malformed environment variable",
};

DMEM_EXPORT const char *dmem_strerror(int err)
{
	int n = -err - DMEM_ERRBASE;

	if (err == 0)
		return "success";
	if (n > 0 && n < (int)(sizeof(lib_names) / sizeof(lib_names[0])) &&
	    lib_names[n])
		return lib_names[n];
	if (err < 0 && err > -DMEM_ERRBASE)
		return strerrordesc_np(-err) ? strerrordesc_np(-err)
					     : "unknown error";
	return "unknown error";
}
