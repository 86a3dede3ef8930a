/* Local services: the I/O thread, one epoll loop over every process's
 * pidfd and every forwarded output pipe (and, in the launcher, SIGCHLD for
 * orphans it adopted as subreaper).  It reaps; what a process's end means
 * is ended.c's.
 *
 * Output is forwarded line by line: a read may end mid-line, so the tail
 * waits in the stream's buffer until its newline (or end of file) arrives,
 * and each batch of whole lines goes out in one write.  Only this thread
 * writes forwarded output, so lines of different processes never mix.  A
 * line longer than LINE_MAX_BUF is passed on in pieces rather than held
 * without bound.
 *
 * A stream is forwarded until its end of file, however long the process
 * it belongs to runs: a grandchild that inherited the pipe is forwarded
 * too.  Only a stopping runtime stops earlier (dlaunch__io_drain): once
 * its processes have ended, the pipes hold all they wrote.
 */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>
#include "fdio.h"
#include "svc.h"

#define LINE_MAX_BUF (1u << 20)
#define READ_CHUNK   65536
/* Without pidfd_open, how often running processes are checked (ms). */
#define POLL_MS	     10

enum { IO_WAKE, IO_PIDFD, IO_STREAM, IO_SIGCHLD };

typedef struct io_ent {
	struct io_ent *prev, *next; /* every entry, for the final cleanup */
	int type;
	int fd;
	pid_t pid;
	int out;		   /* IO_STREAM: 1 or 2 */
	dlaunch_output_fn *output; /* IO_STREAM: the runtime's, or NULL */
	void *output_arg;
	char *buf;
	size_t len, cap;
} io_ent_t;

/* Entries are listed so that dlaunch__io_stop can free those left. */
static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;

static void list_link(dlaunch__server_t *s, io_ent_t *e, bool in)
{
	io_ent_t **head = (io_ent_t **)&s->io_list;

	pthread_mutex_lock(&list_lock);
	if (in) {
		e->next = *head;
		if (*head)
			(*head)->prev = e;
		*head = e;
	} else {
		if (e->prev)
			e->prev->next = e->next;
		else
			*head = e->next;
		if (e->next)
			e->next->prev = e->prev;
	}
	pthread_mutex_unlock(&list_lock);
}

static int add(dlaunch__server_t *s, int type, int fd, pid_t pid, int out)
{
	io_ent_t *e = calloc(1, sizeof *e);
	struct epoll_event ev = {.events = EPOLLIN};

	if (!e)
		return -ENOMEM;
	e->type = type;
	e->fd = fd;
	e->pid = pid;
	e->out = out;
	if (type == IO_STREAM) {
		e->output = s->output;
		e->output_arg = s->output_arg;
	}
	ev.data.ptr = e;
	list_link(s, e, true);
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int rc = -errno;
		list_link(s, e, false);
		free(e);
		return rc;
	}
	return 0;
}

int dlaunch__io_watch(dlaunch__server_t *s, int pidfd, pid_t pid)
{
	/* A copy of its own: the table may close its pidfd first (when the
	 * process was reaped through SIGCHLD) and the event must still come. */
	int fd = fcntl(pidfd, F_DUPFD_CLOEXEC, 0), rc;

	if (fd < 0)
		return -errno;
	rc = add(s, IO_PIDFD, fd, pid, 0);
	if (rc)
		close(fd);
	return rc;
}

int dlaunch__io_forward(dlaunch__server_t *s, int fd, int out, pid_t pid)
{
	int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 0), rc;

	if (nfd < 0)
		return -errno;
	fcntl(nfd, F_SETFL, O_NONBLOCK);
	rc = add(s, IO_STREAM, nfd, pid, out);
	if (rc)
		close(nfd);
	else
		s->live_streams++;
	return rc;
}

static void ent_close(dlaunch__server_t *s, io_ent_t *e)
{
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, e->fd, NULL);
	list_link(s, e, false);
	if (e->type != IO_WAKE && e->type != IO_SIGCHLD)
		close(e->fd);
	free(e->buf);
	free(e);
}

/* Pass on every whole line in the buffer (all of it at end of file or
 * when it is full), keep the rest.  At end of file a last line without
 * its newline gets one, so that what the launcher prints next (the
 * "+++ head proc exited" line) always starts a line of its own; it goes
 * with the line, so that a receiver of the runtime's output sees whole
 * lines only. */
static void flush_lines(io_ent_t *e, bool eof)
{
	size_t n = e->len;

	if (!eof && e->len < LINE_MAX_BUF) {
		while (n && e->buf[n - 1] != '\n')
			n--;
	}
	if (!n)
		return;
	if (eof && e->buf[n - 1] != '\n' && n < e->cap)
		e->buf[n++] = '\n';
	if (e->output)
		e->output(e->output_arg, e->pid, e->out, e->buf, n);
	else
		write_all(e->out, e->buf, n);
	if (n > e->len) /* the added newline */
		n = e->len;
	memmove(e->buf, e->buf + n, e->len - n);
	e->len -= n;
}

enum { READ_MORE, READ_EMPTY, READ_EOF };

/* READ_EOF at end of file (the rest passed on), READ_EMPTY when the pipe
 * has nothing more for now, READ_MORE when it may: reads are bounded so
 * that one busy stream cannot hold up the others. */
static int stream_read(io_ent_t *e)
{
	for (int rounds = 0; rounds < 16; rounds++) {
		ssize_t r;
		if (e->cap - e->len < READ_CHUNK) {
			size_t cap = e->cap ? e->cap * 2 : 2 * READ_CHUNK;
			char *b = realloc(e->buf, cap);
			if (!b)
				return READ_EOF;
			e->buf = b;
			e->cap = cap;
		}
		r = read(e->fd, e->buf + e->len, e->cap - e->len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN)
			return READ_EMPTY;
		if (r <= 0) {
			flush_lines(e, true);
			return READ_EOF;
		}
		e->len += (size_t)r;
		flush_lines(e, false);
	}
	return READ_MORE;
}

/* A stream is done with: its process record learns it. */
static void stream_end(dlaunch__server_t *s, io_ent_t *e)
{
	pid_t pid = e->pid;

	ent_close(s, e);
	pthread_mutex_lock(&s->lock);
	s->live_streams--;
	pthread_cond_broadcast(&s->changed);
	dlaunch__proc_stream_closed(s, pid);
	pthread_mutex_unlock(&s->lock);
}

/* The runtime stops and its processes have ended, so everything they
 * wrote is in the pipes: pass it on and close every stream, also those
 * whose write end something else still holds (an orphaned grandchild of
 * an embedded runtime), whose end nobody waits for. */
static void drain_streams(dlaunch__server_t *s)
{
	io_ent_t *e, *next;

	pthread_mutex_lock(&list_lock);
	e = s->io_list;
	pthread_mutex_unlock(&list_lock);
	/* Entries are added at the head and freed only by this thread: the
	 * rest of the list stays as it is while we walk it. */
	for (; e; e = next) {
		next = e->next;
		if (e->type != IO_STREAM)
			continue;
		while (stream_read(e) == READ_MORE)
			;
		flush_lines(e, true);
		stream_end(s, e);
	}
}

static void reap_one(dlaunch__server_t *s, pid_t pid)
{
	int st;
	pid_t r;

	do
		r = waitpid(pid, &st, WNOHANG);
	while (r < 0 && errno == EINTR);
	if (r > 0) {
		dlaunch__svc_reaped(s, r, st);
	}
}

/* Orphans reparented to the launcher, and any child whose pidfd event
 * has not been seen yet: reap them all (under the lock, so a process
 * being started is already in the table). */
static void reap_all(dlaunch__server_t *s)
{
	struct signalfd_siginfo si;
	int st;
	pid_t r;

	while (read(s->sigfd, &si, sizeof si) > 0)
		;
	while ((r = waitpid(-1, &st, WNOHANG)) > 0) {
		if (!dlaunch__proc_find(s, r))
			dlaunch__log(DLAUNCH_LOG_DEBUG, "reaped orphan pid %d",
				     (int)r);
		dlaunch__svc_reaped(s, r, st);
	}
}

/* Returns false when asked to stop. */
static bool handle(dlaunch__server_t *s, io_ent_t *e)
{
	dlaunch__proc_t *p;
	uint64_t v;

	switch (e->type) {
	case IO_WAKE:
		if (read(e->fd, &v, sizeof v) < 0)
			return true;
		return !__atomic_load_n(&s->io_stop, __ATOMIC_ACQUIRE);
	case IO_PIDFD:
		pthread_mutex_lock(&s->lock);
		/* An adopted process is its reaper's to reap. */
		if ((p = dlaunch__proc_find(s, e->pid)) && p->adopted)
			dlaunch__svc_adopted_ended(s, p);
		else
			reap_one(s, e->pid);
		pthread_mutex_unlock(&s->lock);
		dlaunch__client_send_byes(s);
		ent_close(s, e);
		return true;
	case IO_SIGCHLD:
		pthread_mutex_lock(&s->lock);
		reap_all(s);
		pthread_mutex_unlock(&s->lock);
		dlaunch__client_send_byes(s);
		return true;
	default:
		if (stream_read(e) == READ_EOF)
			stream_end(s, e);
		return true;
	}
}

/* Processes without a pidfd: reap those that ended (lock held).  Each
 * reap may change the table, so the scan starts again after one. */
static void poll_procs(dlaunch__server_t *s)
{
	dlaunch__proc_t *p;
	int st;

again:
	for (p = s->procs; p; p = p->next) {
		if (!p->polled || p->ended)
			continue;
		if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
			dlaunch__svc_reaped(s, p->pid, st);
			goto again;
		}
	}
}

static void *io_loop(void *arg)
{
	dlaunch__server_t *s = arg;
	struct epoll_event evs[64];
	bool run = true;

	while (run) {
		bool polling = __atomic_load_n(&s->npolled, __ATOMIC_RELAXED);
		int n = epoll_wait(s->epfd, evs, 64, polling ? POLL_MS : -1);
		if (n < 0 && errno != EINTR)
			break;
		for (int i = 0; i < n; i++)
			run &= handle(s, evs[i].data.ptr);
		/* After the batch, whose events may name the streams it frees.
		 */
		if (__atomic_exchange_n(&s->io_drain, false, __ATOMIC_ACQ_REL))
			drain_streams(s);
		if (polling) {
			pthread_mutex_lock(&s->lock);
			poll_procs(s);
			pthread_mutex_unlock(&s->lock);
			dlaunch__client_send_byes(s);
		}
	}
	return NULL;
}

int dlaunch__io_poll_wake(dlaunch__server_t *s)
{
	uint64_t one = 1;

	/* The loop starts checking on a timer. */
	return write(s->wakefd, &one, sizeof one) < 0 ? -errno : 0;
}

int dlaunch__io_drain(dlaunch__server_t *s)
{
	uint64_t one = 1;

	__atomic_store_n(&s->io_drain, true, __ATOMIC_RELEASE);
	return write(s->wakefd, &one, sizeof one) < 0 ? -errno : 0;
}

int dlaunch__io_start(dlaunch__server_t *s)
{
	sigset_t chld;
	int rc;

	s->sigfd = -1;
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	s->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->epfd < 0 || s->wakefd < 0)
		return -errno;
	rc = add(s, IO_WAKE, s->wakefd, 0, 0);
	if (rc == 0 && s->adopt) {
		/* SIGCHLD is blocked in every thread of the launcher. */
		sigemptyset(&chld);
		sigaddset(&chld, SIGCHLD);
		s->sigfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
		rc = s->sigfd < 0 ? -errno : add(s, IO_SIGCHLD, s->sigfd, 0, 0);
	}
	if (rc == 0)
		rc = -pthread_create(&s->io_thread, NULL, io_loop, s);
	return rc;
}

/* Stop the loop, then free the entries left (normally only the wake and
 * SIGCHLD ones: by then every process was reaped and every stream read to
 * its end). */
void dlaunch__io_stop(dlaunch__server_t *s)
{
	uint64_t one = 1;

	__atomic_store_n(&s->io_stop, true, __ATOMIC_RELEASE);
	if (write(s->wakefd, &one, sizeof one) == (ssize_t)sizeof one)
		pthread_join(s->io_thread, NULL);
	while (s->io_list) {
		io_ent_t *e = s->io_list;
		if (e->type == IO_STREAM)
			flush_lines(e, true);
		ent_close(s, e);
	}
	if (s->sigfd >= 0)
		close(s->sigfd);
	close(s->wakefd);
	close(s->epfd);
}
