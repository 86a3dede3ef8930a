/* Local services: how processes end and who learns it.
 *
 * A process is reaped by the I/O thread (its pidfd became readable, or,
 * without pidfd_open, a periodic check found it gone; in the launcher also
 * SIGCHLD).  Waiters parked on it are answered then; later waits are
 * answered from the record.
 *
 * Records are kept after the process that started it has collected the
 * status, so that a second wait, or a wait from another process that only
 * knows the pid (a Process.join elsewhere), still gets the status.  Such
 * "retired" records form a FIFO bounded by DLAUNCH_STATUS_KEEP: the oldest
 * goes first.  A record whose status its living spawner has not collected
 * is never dropped (like a zombie, it is the spawner's to collect), and a
 * record is replaced when the OS gives its pid to a new process of ours.
 */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "svc.h"

static void answer(dlaunch__server_t *s, svc_proc_t *p, svc_waiter_t *w)
{
	dlaunch__svc_reply_wstatus(s, w->client, w->req_id, p->wstatus);
}

/* Nobody is owed this status any more: the spawner collected it (or ended)
 * and no forwarded stream still refers to the process. */
static bool settled(const svc_proc_t *p)
{
	return p->ended && p->spawner == 0 && p->open_streams == 0;
}

/* Put p at the end of the retired FIFO if it just settled. */
static void retire(dlaunch__server_t *s, svc_proc_t *p)
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

/* Forget the oldest retired records beyond the bound. */
static void trim(dlaunch__server_t *s)
{
	while (s->nretired > DLAUNCH_STATUS_KEEP) {
		svc_proc_t *p = s->retired;
		s->retired = p->rnext;
		if (!s->retired)
			s->retired_tail = NULL;
		s->nretired--;
		p->retired = false;
		svc_proc_unlink(s, p);
	}
}

void svc_proc_settle(dlaunch__server_t *s, svc_proc_t *p)
{
	retire(s, p);
	trim(s);
}

void svc_retired_drop(dlaunch__server_t *s, svc_proc_t *p)
{
	svc_proc_t *prev = NULL;

	if (!p->retired)
		return;
	for (svc_proc_t *q = s->retired; q; prev = q, q = q->rnext) {
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

void svc_retired_clear(dlaunch__server_t *s)
{
	for (svc_proc_t *p = s->procs; p; p = p->next)
		p->retired = false;
	s->retired = s->retired_tail = NULL;
	s->nretired = 0;
}

/* The pools give back what pid still held, its conversations go, and the
 * processes it started lose their spawner. */
static void forget_spawner(dlaunch__server_t *s, pid_t pid, size_t *nfreed)
{
	if (s->default_pool)
		dmem_pool_reclaim(s->default_pool, pid, nfreed);
	if (s->inf_pool)
		dmem_pool_reclaim(s->inf_pool, pid, NULL);
	for (svc_pool_t *sp = s->pools; sp; sp = sp->next)
		dmem_pool_reclaim(sp->pool, pid, NULL);
	dlaunch__client_forget_pid(s, pid);
	svc_adopted_orphan(s, pid);
	for (svc_proc_t *q = s->procs; q; q = q->next) {
		if (q->spawner == pid) {
			q->spawner = 0;
			retire(s, q);
		}
	}
}

void svc_proc_reaped(dlaunch__server_t *s, pid_t pid, int wstatus)
{
	svc_proc_t *p = svc_proc_find(s, pid);
	size_t nfreed = 0;

	if (p && p->ended)
		p = NULL; /* an older record of a reused pid */
	forget_spawner(s, pid, &nfreed);
	if (p) {
		if (p->polled)
			__atomic_sub_fetch(&s->npolled, 1, __ATOMIC_RELAXED);
		p->polled = false;
		p->ended = true;
		/* A kept record holds no descriptor. */
		if (p->pidfd >= 0)
			close(p->pidfd);
		p->pidfd = -1;
		p->wstatus = wstatus;
		dlaunch__log(DLAUNCH_LOG_DEBUG,
			     "pid %d ended, status 0x%x, %zu allocations "
			     "reclaimed",
			     (int)pid, wstatus, nfreed);
		while (p->waiters) {
			svc_waiter_t *w = p->waiters;
			p->waiters = w->next;
			answer(s, p, w);
			if (!w->peek && w->client_pid == p->spawner)
				p->spawner = 0;
			free(w);
		}
		retire(s, p);
	}
	pthread_cond_broadcast(&s->changed);
	trim(s);
}

static svc_waiter_t *park(svc_proc_t *p, const svc_waiter_t *now,
			  uint64_t timeout)
{
	svc_waiter_t *w = calloc(1, sizeof *w);

	if (!w)
		return NULL;
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
	return w;
}

void svc_status_request(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
			dlaunch__msg_t *m)
{
	pid_t pid = (pid_t)dlaunch__msg_get_i64(m);
	uint64_t timeout = dlaunch__msg_get_u64(m);
	bool peek = dlaunch__msg_get_u64(m) != 0;
	svc_client_t *c = dlaunch__client_find(s, h->client);
	svc_proc_t *p = svc_proc_find(s, pid);
	svc_waiter_t wnow = {.client = h->client, .req_id = h->req_id};

	if (m->err || !c)
		return;
	wnow.client_pid = c->pid;
	wnow.peek = peek;
	if (!p) {
		dlaunch__svc_reply_err(
			s, h->client, h->req_id, -DLAUNCH_E_NOPROC,
			"pid %d was not started by runtime %s, or ended "
			"so long ago that its status is no longer kept "
			"(the last %d collected are)",
			(int)pid, s->instance, DLAUNCH_STATUS_KEEP);
	} else if (p->ended) {
		answer(s, p, &wnow);
		if (c->pid == p->spawner && !peek)
			p->spawner = 0;
		svc_proc_settle(s, p);
	} else if (timeout == 0) {
		dlaunch__svc_reply_err(s, h->client, h->req_id, -EAGAIN,
				       "pid %d is still running", (int)pid);
	} else if (!park(p, &wnow, timeout)) {
		dlaunch__svc_reply_err(s, h->client, h->req_id, -ENOMEM,
				       "out of memory");
	}
}

static int64_t ms_until(const struct timespec *d, const struct timespec *now)
{
	return (int64_t)(d->tv_sec - now->tv_sec) * 1000 +
	       (d->tv_nsec - now->tv_nsec) / 1000000;
}

int svc_expire_waiters(dlaunch__server_t *s)
{
	struct timespec now;
	int64_t next = -1, left;

	clock_gettime(CLOCK_MONOTONIC, &now);
	for (svc_proc_t *p = s->procs; p; p = p->next) {
		for (svc_waiter_t **pp = &p->waiters; *pp;) {
			svc_waiter_t *w = *pp;
			left = w->deadline.tv_sec < 0
				       ? -1
				       : ms_until(&w->deadline, &now);
			if (w->deadline.tv_sec >= 0 && left <= 0) {
				*pp = w->next;
				dlaunch__svc_reply_err(
					s, w->client, w->req_id, -ETIMEDOUT,
					"pid %d still running at the "
					"deadline",
					(int)p->pid);
				free(w);
				continue;
			}
			if (left >= 0 && (next < 0 || left < next))
				next = left;
			pp = &w->next;
		}
	}
	return next < 0 ? -1 : (int)(next + 1);
}
