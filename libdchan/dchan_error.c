/*
 * Errors of libdchan: the names of its codes, the per-thread detail
 * message, and the version (one small function, kept with them as in
 * libdmem's error.c).
 */
#include "config.h"
#include "dchan_private.h"

#include <stdio.h>
#include <string.h>

static __thread char errbuf[512];

DCHAN_EXPORT unsigned dchan_version(void)
{
	return DCHAN_VERSION_NUMBER;
}

static const char *const errtext[] = {
	[1] = "corrupt channel descriptor",
	[2] = "channel layout or message format version not understood",
	[3] = "channel was destroyed",
	[4] = "channel is on another node and no gateway channel is registered",
	[5] = "malformed gateway request or completion",
	[6] = "barrier is broken",
	[7] = "operation is not available on a remote channel",
	[8] = "the node holding the channel is unreachable (its transport "
	      "agent is gone or does not answer)",
};

DCHAN_EXPORT const char *dchan_strerror(int err)
{
	int n = -err - DCHAN_ERRBASE;

	if (n > 0 && n < (int)(sizeof errtext / sizeof *errtext))
		return errtext[n];
	return dmem_strerror(err);
}

DCHAN_EXPORT const char *dchan_errmsg(void)
{
	return errbuf;
}

/* Record the detail of a failure and pass its code through, so that a
 * caller can write `return dchan__fail(-EINVAL, "...", ...)`. */
int dchan__fail(int err, const char *fmt, ...)
{
	va_list ap;
	int n;

	n = snprintf(errbuf, sizeof errbuf, "%s: ", dchan_strerror(err));
	if (n < 0 || (size_t)n >= sizeof errbuf)
		return err;
	va_start(ap, fmt);
	vsnprintf(errbuf + n, sizeof errbuf - (size_t)n, fmt, ap);
	va_end(ap);
	return err;
}

/* A libdmem call failed: keep its own detail, say what we were doing. */
int dchan__fail_dmem(int err, const char *what)
{
	return dchan__fail(err, "%s: %s", what, dmem_errmsg());
}
