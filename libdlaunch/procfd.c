/* Process-end descriptors: dlaunch_proc_fd, a descriptor that becomes
 * readable when a process of the runtime ends — its pidfd, or where
 * pidfd_open(2) is missing (kernels before 5.3, and valgrind, which does
 * not know the call) a sentinel pipe.
 *
 * dlaunch_proc_fd must give a real descriptor that becomes readable when
 * the process ends, whoever started it.  Without a pidfd the caller gets
 * the read end of a pipe; a thread of this library waits for the process
 * through the services on a connection of its own (so it does not depend
 * on the caller's handle living on), then writes one byte and closes the
 * write end.  The descriptor then reads as ready (POLLIN, and POLLHUP),
 * exactly what a sentinel needs.  A runtime stopping in this process waits
 * for these threads, which end as soon as its processes do.
 *
 * A process on another node (started with DLAUNCH_SPAWN_ATTR_NODE) has
 * no pidfd here: it always gets the pipe, its thread waiting through
 * that node's services.
 */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "dlaunch_private.h"

struct exit_watch {
	char svc[DLAUNCH_EP_TEXT_MAX];
	char remote[DLAUNCH_EP_TEXT_MAX]; /* another node's services, or "" */
	pid_t pid;
	int wfd;
};

static pthread_mutex_t watch_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t watch_done = PTHREAD_COND_INITIALIZER;
static int watch_live;

static void *watch(void *arg)
{
	struct exit_watch *w = arg;
	dlaunch_t *rt;
	int raw;

	/* Whatever the outcome (ended, or the services are gone), the
	 * descriptor must become ready: nothing more will happen.  A process
	 * on another node is asked about there, through a sub-handle whose
	 * replies come to this node's services' pool. */
	if (dlaunch__connect(w->svc, 0, &rt) == 0) {
		dlaunch_t *h = rt;

		if (!w->remote[0] ||
		    dlaunch__connect_sub(rt, w->remote, &h) == 0) {
			dlaunch__status_call(h, w->pid, DLAUNCH_FOREVER, true,
					     &raw);
			if (h != rt)
				dlaunch__disconnect(h);
		}
		dlaunch__disconnect(rt);
	}
	if (write(w->wfd, "", 1) < 0) {
		/* the reader closed its end: nobody is waiting */
	}
	close(w->wfd);
	free(w);
	pthread_mutex_lock(&watch_lock);
	watch_live--;
	pthread_cond_broadcast(&watch_done);
	pthread_mutex_unlock(&watch_lock);
	return NULL;
}

int dlaunch__exit_fd(dlaunch_t *rt, dlaunch_t *h, pid_t pid)
{
	struct exit_watch *w = calloc(1, sizeof *w);
	pthread_attr_t at;
	pthread_t t;
	int p[2], rc;

	if (!w)
		return -ENOMEM;
	rc = dlaunch__ep_text(rt->svc, w->svc, sizeof w->svc);
	if (rc >= 0 && h != rt)
		rc = dlaunch__ep_text(h->svc, w->remote, sizeof w->remote);
	if (rc >= 0 && pipe2(p, O_CLOEXEC) < 0)
		rc = -errno;
	if (rc < 0) {
		free(w);
		return rc;
	}
	w->pid = pid;
	w->wfd = p[1];
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_mutex_lock(&watch_lock);
	rc = -pthread_create(&t, &at, watch, w);
	watch_live += rc == 0;
	pthread_mutex_unlock(&watch_lock);
	pthread_attr_destroy(&at);
	if (rc) {
		close(p[0]);
		close(p[1]);
		free(w);
		return rc;
	}
	return p[0];
}

void dlaunch__exit_fd_drain(uint64_t timeout_ns)
{
	struct timespec d;

	clock_gettime(CLOCK_REALTIME, &d);
	d.tv_sec += (time_t)(timeout_ns / 1000000000u);
	pthread_mutex_lock(&watch_lock);
	while (watch_live > 0 &&
	       pthread_cond_timedwait(&watch_done, &watch_lock, &d) == 0)
		;
	pthread_mutex_unlock(&watch_lock);
}

/* A descriptor that is readable at once, for a process already gone. */
static int ready_fd(void)
{
	int fd = eventfd(1, EFD_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

static int proc_fd(dlaunch_t *rt, pid_t pid, int *fd_out);

DLAUNCH_EXPORT int dlaunch_proc_fd(dlaunch_t *rt, pid_t pid, int *fd_out)
{
	int rc;

	if (!rt || !fd_out || pid <= 0)
		return dlaunch__fail(-EINVAL, "dlaunch_proc_fd: bad argument");
	/* The process-end watcher reads the handle's endpoint. */
	rc = dlaunch__enter(rt, "dlaunch_proc_fd");
	if (rc)
		return rc;
	rc = proc_fd(rt, pid, fd_out);
	dlaunch__leave(rt);
	return rc;
}

static int proc_fd(dlaunch_t *rt, pid_t pid, int *fd_out)
{
	dlaunch_t *h;
	int fd, rc, raw;

	rc = dlaunch__pid_handle(rt, pid, &h, &pid);
	if (rc < 0)
		return rc;
	/* Asking first makes sure pid is ours and has not been reaped
	 * (a reaped pid could be reused by another process). */
	rc = dlaunch__status_call(h, pid, 0, true, &raw);
	if (rc == 0)
		fd = ready_fd();
	else if (rc != -EAGAIN)
		return rc;
	else if (h != rt)
		/* On another node: no pidfd can name it here. */
		fd = dlaunch__exit_fd(rt, h, pid);
	else if ((fd = (int)syscall(SYS_pidfd_open, pid, 0)) < 0)
		fd = errno == ESRCH    ? ready_fd()
		     : errno == ENOSYS ? dlaunch__exit_fd(rt, rt, pid)
				       : -errno;
	if (fd < 0)
		return dlaunch__fail(fd, "no descriptor for pid %d: %s",
				     (int)pid, dlaunch_strerror(fd));
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	*fd_out = fd;
	return 0;
}
