/* The services' handler table and the dispatch of one message.
 *
 * Handlers register their message types themselves (DLAUNCH_SVC_HANDLER
 * in the file that defines them, run when the library is loaded), so the
 * dispatcher names none of them and a new service is a new file.  STOP is
 * the request loop's own: it ends the loop.
 *
 * The shared library holds every handler (libtool links the whole
 * convenience library into it).  A program that links libdlaunch-core.la
 * itself and runs the services must pull in the req_*.o files too: a
 * request without a handler is answered "unknown request type".
 */
#define _GNU_SOURCE
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include "svc.h"

static dlaunch__svc_handler_fn handlers[DLAUNCH_MSG_TYPES];

void dlaunch__svc_handler_add(uint16_t type, dlaunch__svc_handler_fn fn)
{
	/* A clash is a mistake in the library itself: fail loudly. */
	if (type >= DLAUNCH_MSG_TYPES || type == DLAUNCH_MSG_STOP ||
	    handlers[type]) {
		fprintf(stderr,
			"libdlaunch: message type %u registered twice or out "
			"of range\n",
			type);
		abort();
	}
	handlers[type] = fn;
}

bool dlaunch__svc_dispatch(dlaunch__server_t *s, const uint8_t *buf, size_t len)
{
	dlaunch__msg_hdr_t h;
	dlaunch__msg_t m;
	int rc = dlaunch__msg_open(&m, buf, len, &h);

	if (rc) {
		dlaunch__log(DLAUNCH_LOG_WARNING,
			     "dropped a malformed service message (%zu bytes)",
			     len);
		return true;
	}
	if (h.type == DLAUNCH_MSG_STOP)
		return false;
	if (h.type < DLAUNCH_MSG_TYPES && handlers[h.type])
		handlers[h.type](s, &h, &m);
	else
		dlaunch__svc_reply_err(s, h.client, h.req_id, -DLAUNCH_E_PROTO,
				       "unknown request type %u", h.type);
	return true;
}
