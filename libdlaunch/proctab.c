/* The process table: one record per process the runtime started or
 * adopted, and every change made to a record.  Nothing here sends a
 * message; callers answer whoever is owed an answer (ended.c, the
 * handlers).  Everything runs with the server lock held.
 *
 * Records are kept after the process that started one has collected the
 * status, so that a second wait, or a wait from another process that only
 * knows the pid (a Process.join elsewhere), still gets the status.  Such
 * "retired" records form a FIFO bounded by DLAUNCH_STATUS_KEEP: the oldest
 * goes first.  A record whose status its living spawner has not collected
 * is never dropped (like a zombie, it is the spawner's to collect), and a
 * record is replaced when the OS gives its pid to a new process of ours.
 *
 * Every running process is also in the runtime record (rtrec.h), which
 * tells dragon-cleanup which processes are the runtime's: a slot is
 * written when a record is made and cleared when the process ends.
 */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "svc.h"

#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

dlaunch__proc_t *dlaunch__proc_find(dlaunch__server_t *s, pid_t pid)
{
	for (dlaunch__proc_t *p = s->procs; p; p = p->next)
		if (p->pid == pid)
			return p;
	return NULL;
}

/* ---- the retired FIFO ---------------------------------------------------- */

/* Nobody is owed this status any more: the spawner collected it (or ended)
 * and no forwarded stream still refers to the process. */
static bool settled(const dlaunch__proc_t *p)
{
	return p->ended && p->spawner == 0 && p->open_streams == 0;
}

/* Put p at the end of the retired FIFO if it just settled. */
static void retire(dlaunch__server_t *s, dlaunch__proc_t *p)
{
	if (p->retired || !settled(p))
		return;
	p->retired = true;
	p->rnext = NULL;
	if (s->retired_tail)
		s->retired_tail->rnext = p;
	else
		s->retired = p;
	s->retired_tail = p;
	s->nretired++;
}

static void retired_drop(dlaunch__server_t *s, dlaunch__proc_t *p)
{
	dlaunch__proc_t *prev = NULL;

	if (!p->retired)
		return;
	for (dlaunch__proc_t *q = s->retired; q; prev = q, q = q->rnext) {
		if (q != p)
			continue;
		if (prev)
			prev->rnext = q->rnext;
		else
			s->retired = q->rnext;
		if (s->retired_tail == q)
			s->retired_tail = prev;
		break;
	}
	s->nretired--;
	p->retired = false;
}

/* Forget the oldest retired records beyond the bound. */
void dlaunch__proc_trim(dlaunch__server_t *s)
{
	while (s->nretired > DLAUNCH_STATUS_KEEP) {
		dlaunch__proc_t *p = s->retired;
		s->retired = p->rnext;
		if (!s->retired)
			s->retired_tail = NULL;
		s->nretired--;
		p->retired = false;
		dlaunch__proc_unlink(s, p);
	}
}

static void settle(dlaunch__server_t *s, dlaunch__proc_t *p)
{
	retire(s, p);
	dlaunch__proc_trim(s);
}

/* ---- records ------------------------------------------------------------- */

int dlaunch__proc_add(dlaunch__server_t *s, pid_t pid, int pidfd, pid_t spawner,
		      pid_t reaper, dlaunch__proc_t **p_out)
{
	dlaunch__proc_t *p = calloc(1, sizeof *p);
	dlaunch__proc_t *old = dlaunch__proc_find(s, pid);

	if (!p)
		return -ENOMEM;
	/* The OS reused the pid of a process whose status we kept. */
	if (old)
		dlaunch__proc_unlink(s, old);
	p->pid = pid;
	p->pidfd = pidfd;
	p->spawner = spawner;
	p->reaper = reaper;
	p->adopted = reaper != 0;
	p->recslot = s->rec ? dlaunch__rec_add(s->rec, pid) : -1;
	if (p->recslot < 0 && s->rec)
		dlaunch__log(DLAUNCH_LOG_WARNING,
			     "process %d is not in the runtime record (%s): "
			     "dragon-cleanup will not know it",
			     (int)pid, strerror(-p->recslot));
	p->next = s->procs;
	s->procs = p;
	*p_out = p;
	return 0;
}

void dlaunch__proc_unlink(dlaunch__server_t *s, dlaunch__proc_t *p)
{
	retired_drop(s, p);
	dlaunch__rec_clear(s->rec, p->recslot);
	if (p->polled)
		__atomic_sub_fetch(&s->npolled, 1, __ATOMIC_RELAXED);
	for (dlaunch__proc_t **pp = &s->procs; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	while (p->waiters) {
		dlaunch__waiter_t *w = p->waiters;
		p->waiters = w->next;
		free(w);
	}
	if (p->pidfd >= 0)
		close(p->pidfd);
	free(p);
}

void dlaunch__procs_free(dlaunch__server_t *s)
{
	for (dlaunch__proc_t *p = s->procs; p; p = p->next)
		p->retired = false;
	s->retired = s->retired_tail = NULL;
	s->nretired = 0;
	while (s->procs)
		dlaunch__proc_unlink(s, s->procs);
}

void dlaunch__proc_set_polled(dlaunch__server_t *s, dlaunch__proc_t *p)
{
	p->polled = true;
	__atomic_add_fetch(&s->npolled, 1, __ATOMIC_RELAXED);
}

void dlaunch__proc_stream_opened(dlaunch__proc_t *p)
{
	p->open_streams++;
}

void dlaunch__proc_stream_closed(dlaunch__server_t *s, pid_t pid)
{
	dlaunch__proc_t *p = dlaunch__proc_find(s, pid);

	if (!p)
		return;
	p->open_streams--;
	settle(s, p);
}

dlaunch__waiter_t *dlaunch__proc_end(dlaunch__server_t *s, dlaunch__proc_t *p,
				     int wstatus)
{
	dlaunch__waiter_t *waiters = p->waiters;

	if (p->polled)
		__atomic_sub_fetch(&s->npolled, 1, __ATOMIC_RELAXED);
	p->polled = false;
	p->ended = true;
	dlaunch__rec_clear(s->rec, p->recslot);
	p->recslot = -1;
	/* A kept record holds no descriptor. */
	if (p->pidfd >= 0)
		close(p->pidfd);
	p->pidfd = -1;
	p->wstatus = wstatus;
	p->waiters = NULL;
	for (dlaunch__waiter_t *w = waiters; w; w = w->next)
		if (!w->peek && w->client_pid == p->spawner)
			p->spawner = 0;
	retire(s, p);
	return waiters;
}

void dlaunch__proc_collected(dlaunch__server_t *s, dlaunch__proc_t *p,
			     pid_t client_pid, bool peek)
{
	if (client_pid == p->spawner && !peek)
		p->spawner = 0;
	settle(s, p);
}

void dlaunch__proc_spawner_gone(dlaunch__server_t *s, pid_t pid)
{
	for (dlaunch__proc_t *q = s->procs; q; q = q->next) {
		if (q->spawner == pid) {
			q->spawner = 0;
			retire(s, q);
		}
	}
}

dlaunch__proc_t *dlaunch__proc_reaper_gone(dlaunch__server_t *s, pid_t pid)
{
	for (dlaunch__proc_t *p = s->procs; p; p = p->next) {
		if (!p->adopted || p->ended || p->reaper != pid)
			continue;
		p->reaper = 0;
		if (p->gone)
			return p;
	}
	return NULL;
}

void dlaunch__proc_set_gone(dlaunch__proc_t *p)
{
	p->gone = true;
}

void dlaunch__proc_release(dlaunch__proc_t *p)
{
	p->spawner = 0;
	p->reaper = 0;
	p->gone = false;
}

/* ---- waiters ------------------------------------------------------------- */

int dlaunch__proc_park(dlaunch__proc_t *p, const dlaunch__waiter_t *now,
		       uint64_t timeout)
{
	dlaunch__waiter_t *w = calloc(1, sizeof *w);

	if (!w)
		return -ENOMEM;
	*w = *now;
	w->deadline.tv_sec = -1;
	if (timeout != DLAUNCH_FOREVER) {
		clock_gettime(CLOCK_MONOTONIC, &w->deadline);
		w->deadline.tv_sec += (time_t)(timeout / 1000000000u);
		w->deadline.tv_nsec += (long)(timeout % 1000000000u);
		if (w->deadline.tv_nsec >= 1000000000) {
			w->deadline.tv_sec++;
			w->deadline.tv_nsec -= 1000000000;
		}
	}
	w->next = p->waiters;
	p->waiters = w;
	return 0;
}

static int64_t ms_until(const struct timespec *d, const struct timespec *now)
{
	return (int64_t)(d->tv_sec - now->tv_sec) * 1000 +
	       (d->tv_nsec - now->tv_nsec) / 1000000;
}

dlaunch__waiter_t *dlaunch__proc_expired(dlaunch__server_t *s,
					 dlaunch__proc_t **p_out,
					 int *next_ms_out)
{
	struct timespec now;
	int64_t next = -1, left;

	clock_gettime(CLOCK_MONOTONIC, &now);
	for (dlaunch__proc_t *p = s->procs; p; p = p->next) {
		for (dlaunch__waiter_t **pp = &p->waiters; *pp;
		     pp = &(*pp)->next) {
			dlaunch__waiter_t *w = *pp;
			if (w->deadline.tv_sec < 0)
				continue;
			left = ms_until(&w->deadline, &now);
			if (left <= 0) {
				*pp = w->next;
				*p_out = p;
				return w;
			}
			if (next < 0 || left < next)
				next = left;
		}
	}
	*next_ms_out = next < 0 ? -1 : (int)(next + 1);
	return NULL;
}

/* ---- queries and signals ------------------------------------------------- */

int dlaunch__proc_nrunning(dlaunch__server_t *s)
{
	int n = 0;

	for (dlaunch__proc_t *p = s->procs; p; p = p->next)
		n += !p->ended && !p->gone;
	return n;
}

int dlaunch__proc_kill(dlaunch__proc_t *p, int signo)
{
	if (!p->adopted)
		return kill(p->pid, signo) < 0 ? -errno : 0;
	if (p->gone || p->pidfd < 0)
		return 0;
	return syscall(SYS_pidfd_send_signal, p->pidfd, signo, NULL, 0) < 0
		       ? -errno
		       : 0;
}

void dlaunch__proc_signal_all(dlaunch__server_t *s, int signo)
{
	for (dlaunch__proc_t *p = s->procs; p; p = p->next)
		if (!p->ended)
			dlaunch__proc_kill(p, signo);
}
