/* The services' request thread.
 *
 * One thread receives every request from the request endpoint and hands it
 * to its handler (dispatch.c) while holding the server lock; nothing a
 * handler does blocks for long (a posix_spawn, a table update, a
 * non-blocking send).  Requests that wait — a dlaunch_wait on a running
 * process — are parked as waiters and answered by the I/O thread when the
 * process is reaped, or here at their deadline.
 */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <stdlib.h>
#include "svc.h"

static void *request_loop(void *arg)
{
	dlaunch__server_t *s = arg;
	uint8_t *buf = malloc(DLAUNCH_MSG_MAX);
	bool run = buf != NULL;
	size_t len;
	int ms = -1, rc;

	while (run) {
		rc = dlaunch__ep_recv(s->req, buf, DLAUNCH_MSG_MAX,
				      ms < 0 ? DLAUNCH_FOREVER
					     : (uint64_t)ms * 1000000u + 1,
				      &len);
		pthread_mutex_lock(&s->lock);
		if (rc == 0)
			run = dlaunch__svc_dispatch(s, buf, len);
		else if (rc != -ETIMEDOUT && rc != -EAGAIN && rc != -EMSGSIZE)
			dlaunch__log(DLAUNCH_LOG_ERROR, "request receive: %s",
				     dlaunch_strerror(rc));
		ms = dlaunch__svc_expire_waiters(s);
		pthread_mutex_unlock(&s->lock);
		/* a process reported ended (an adoptee): its goodbyes */
		dlaunch__client_send_byes(s);
	}
	free(buf);
	return NULL;
}

int dlaunch__svc_start_threads(dlaunch__server_t *s)
{
	int rc = dlaunch__io_start(s);

	if (rc)
		return rc;
	rc = -pthread_create(&s->req_thread, NULL, request_loop, s);
	if (rc)
		dlaunch__io_stop(s);
	return rc;
}
