/* Local services: starting processes, the process table, waiting and
 * signalling.
 *
 * Processes are started with posix_spawn (vfork-like: the cost of a start
 * does not grow with the launcher's size, and exec failures come back as an
 * error code).  The child's signal mask and dispositions are reset because
 * the services run with every signal blocked.  The whole start happens under
 * the server lock, so the I/O thread cannot reap a process before it is in
 * the table.
 */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include "svc.h"

svc_proc_t *svc_proc_find(dlaunch__server_t *s, pid_t pid)
{
	for (svc_proc_t *p = s->procs; p; p = p->next)
		if (p->pid == pid)
			return p;
	return NULL;
}

static size_t name_len(const char *kv)
{
	const char *eq = strchr(kv, '=');

	return eq ? (size_t)(eq - kv) : strlen(kv);
}

static bool env_has(char **v, const char *kv)
{
	size_t n = name_len(kv);

	for (; v && *v; v++)
		if (name_len(*v) == n && strncmp(*v, kv, n) == 0)
			return true;
	return false;
}

/* base, then added, then the runtime's own variables; later ones win.
 * The strings are borrowed; the array is malloc'd. */
static char **build_env(char **base, char **added, char **rt)
{
	size_t n = 1;
	char **out, **v;
	size_t k = 0;

	for (v = base; v && *v; v++)
		n++;
	for (v = added; v && *v; v++)
		n++;
	for (v = rt; v && *v; v++)
		n++;
	out = calloc(n, sizeof *out);
	if (!out)
		return NULL;
	for (v = base; v && *v; v++)
		if (!env_has(added, *v) && !env_has(rt, *v))
			out[k++] = *v;
	for (v = added; v && *v; v++)
		if (strchr(*v, '=') && !env_has(rt, *v))
			out[k++] = *v;
	for (v = rt; v && *v; v++)
		out[k++] = *v;
	return out;
}

/* execvp's search, but in the child's PATH rather than ours. */
static const char *search_path(const char *file, char **env, char *buf,
			       size_t len)
{
	const char *path = "/usr/local/bin:/usr/bin:/bin";

	if (strchr(file, '/'))
		return file;
	for (char **v = env; v && *v; v++)
		if (strncmp(*v, "PATH=", 5) == 0)
			path = *v + 5;
	while (*path) {
		size_t d = strcspn(path, ":");
		snprintf(buf, len, "%.*s/%s", (int)d, d ? path : ".", file);
		if (access(buf, X_OK) == 0)
			return buf;
		path += d + (path[d] == ':');
	}
	return file;
}

/* File actions for fds 0..2.  Forwarded streams get a pipe: the read end
 * goes to rends[i] for the I/O thread, the write end to wends[i], which the
 * caller closes after the spawn. */
static int setup_stdio(posix_spawn_file_actions_t *fa, const svc_spawn_t *sp,
		       int rends[3], int wends[3])
{
	static const int defaults[3] = {DLAUNCH_STDIO_DEVNULL,
					DLAUNCH_STDIO_FORWARD,
					DLAUNCH_STDIO_FORWARD};
	static const int fl[3] = {O_RDONLY, O_WRONLY | O_CREAT | O_APPEND,
				  O_WRONLY | O_CREAT | O_APPEND};
	int p[2];

	for (int i = 0; i < 3; i++) {
		int mode = sp->stdio[i] ? sp->stdio[i] : defaults[i];
		if (mode == DLAUNCH_STDIO_FORWARD && i == 0)
			mode = DLAUNCH_STDIO_DEVNULL;
		switch (mode) {
		case DLAUNCH_STDIO_FORWARD:
			if (pipe2(p, O_CLOEXEC) < 0)
				return -errno;
			rends[i] = p[0];
			wends[i] = p[1];
			posix_spawn_file_actions_adddup2(fa, p[1], i);
			break;
		case DLAUNCH_STDIO_DEVNULL:
			posix_spawn_file_actions_addopen(
				fa, i, "/dev/null", i ? O_WRONLY : O_RDONLY, 0);
			break;
		case DLAUNCH_STDIO_INHERIT:
			break;
		case DLAUNCH_STDIO_FILE:
			posix_spawn_file_actions_addopen(
				fa, i, sp->stdio_path[i], fl[i], 0600);
			break;
		case DLAUNCH_STDIO_STDOUT:
			posix_spawn_file_actions_adddup2(fa, 1, 2);
			break;
		default:
			return -EINVAL;
		}
	}
	return 0;
}

static void close_fds(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0) {
			close(fds[i]);
			fds[i] = -1;
		}
}

static int spawn_attr(posix_spawnattr_t *at)
{
	sigset_t none, all;

	sigemptyset(&none);
	sigfillset(&all);
	sigdelset(&all, SIGKILL);
	sigdelset(&all, SIGSTOP);
	posix_spawnattr_init(at);
	posix_spawnattr_setsigmask(at, &none);
	posix_spawnattr_setsigdefault(at, &all);
	return posix_spawnattr_setflags(at, POSIX_SPAWN_SETSIGMASK |
						    POSIX_SPAWN_SETSIGDEF);
}

static int add_proc(dlaunch__server_t *s, pid_t pid, pid_t spawner,
		    int rends[3])
{
	svc_proc_t *p = calloc(1, sizeof *p);
	int rc;

	if (!p)
		return -ENOMEM;
	p->pid = pid;
	p->spawner = spawner;
	/* Not reaped yet (only we reap, under the lock): the pid is ours. */
	p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (p->pidfd < 0) {
		rc = -errno;
		free(p);
		return rc;
	}
	p->next = s->procs;
	s->procs = p;
	rc = svc_io_watch(s, p->pidfd, pid);
	for (int i = 1; i < 3; i++) {
		if (rends[i] < 0)
			continue;
		/* The I/O thread reads a copy; the caller closes rends. */
		if (svc_io_forward(s, rends[i], i, pid) == 0)
			p->open_streams++;
	}
	return rc;
}

int svc_spawn(dlaunch__server_t *s, const svc_spawn_t *sp, pid_t spawner)
{
	int rends[3] = {-1, -1, -1}, wends[3] = {-1, -1, -1};
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	char **env = build_env(sp->base_env, sp->env, s->env);
	char buf[4096];
	const char *path = sp->path;
	pid_t pid;
	int rc;

	if (!env)
		return -ENOMEM;
	posix_spawn_file_actions_init(&fa);
	spawn_attr(&at);
	rc = setup_stdio(&fa, sp, rends, wends);
	if (rc == 0 && sp->cwd)
		rc = posix_spawn_file_actions_addchdir_np(&fa, sp->cwd);
	if (sp->flags & DLAUNCH_SPAWN_F_SEARCH_PATH)
		path = search_path(path, env, buf, sizeof buf);
	if (rc == 0)
		rc = posix_spawn(&pid, path, &fa, &at, sp->argv, env);
	close_fds(wends, 3);
	if (rc) {
		close_fds(rends, 3);
		rc = dlaunch__fail(-rc, "cannot start %s%s%s: %s", path,
				   sp->cwd ? " in " : "",
				   sp->cwd ? sp->cwd : "", strerror(rc));
	} else {
		rc = add_proc(s, pid, spawner, rends);
		close_fds(rends, 3);
		dlaunch__log(DLAUNCH_LOG_DEBUG, "started %s: pid %d", path,
			     (int)pid);
		rc = rc ? rc : (int)pid;
	}
	posix_spawnattr_destroy(&at);
	posix_spawn_file_actions_destroy(&fa);
	free(env);
	return rc;
}

static void proc_unlink(dlaunch__server_t *s, svc_proc_t *p)
{
	for (svc_proc_t **pp = &s->procs; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	while (p->waiters) {
		svc_waiter_t *w = p->waiters;
		p->waiters = w->next;
		free(w);
	}
	if (p->pidfd >= 0)
		close(p->pidfd);
	free(p);
}

static void answer(dlaunch__server_t *s, svc_proc_t *p, svc_waiter_t *w)
{
	dlaunch__msg_t m;

	dlaunch__msg_init(&m, DLAUNCH_MSG_REPLY, w->req_id, 0);
	dlaunch__msg_put_i64(&m, p->wstatus);
	svc_reply(s, w->client, w->req_id, &m);
}

/* The record of an ended process goes once the process that started it
 * has collected the status, or has ended itself. */
static bool collectable(const svc_proc_t *p)
{
	return p->ended && p->spawner == 0 && p->open_streams == 0;
}

void svc_proc_reaped(dlaunch__server_t *s, pid_t pid, int wstatus)
{
	svc_proc_t *p = svc_proc_find(s, pid), *q, *next;
	size_t nfreed = 0;

	if (s->default_pool)
		dmem_pool_reclaim(s->default_pool, pid, &nfreed);
	if (s->inf_pool)
		dmem_pool_reclaim(s->inf_pool, pid, NULL);
	for (svc_pool_t *sp = s->pools; sp; sp = sp->next)
		dmem_pool_reclaim(sp->pool, pid, NULL);
	svc_forget_pid(s, pid);
	/* Processes it started lose their spawner. */
	for (q = s->procs; q; q = next) {
		next = q->next;
		if (q->spawner == pid) {
			q->spawner = 0;
			if (collectable(q))
				proc_unlink(s, q);
		}
	}
	if (!p)
		return;
	p->ended = true;
	p->wstatus = wstatus;
	dlaunch__log(DLAUNCH_LOG_DEBUG, "pid %d ended, status 0x%x, %zu "
					"allocations reclaimed",
		     (int)pid, wstatus, nfreed);
	while (p->waiters) {
		svc_waiter_t *w = p->waiters;
		p->waiters = w->next;
		answer(s, p, w);
		if (w->client_pid == p->spawner)
			p->spawner = 0;
		free(w);
	}
	pthread_cond_broadcast(&s->changed);
	if (collectable(p))
		proc_unlink(s, p);
}

void svc_status_request(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
			dlaunch__msg_t *m)
{
	pid_t pid = (pid_t)dlaunch__msg_get_i64(m);
	uint64_t timeout = dlaunch__msg_get_u64(m);
	bool peek = dlaunch__msg_get_u64(m) != 0;
	svc_client_t *c = svc_client_find(s, h->client);
	svc_proc_t *p = svc_proc_find(s, pid);
	svc_waiter_t *w, wnow = {.client = h->client, .req_id = h->req_id};

	if (m->err || !c)
		return;
	if (!p) {
		svc_reply_err(s, h->client, h->req_id, -DLAUNCH_E_NOPROC,
			      "pid %d was not started by runtime %s, or its "
			      "status was already collected",
			      (int)pid, s->instance);
		return;
	}
	if (p->ended) {
		answer(s, p, &wnow);
		if (c->pid == p->spawner && !peek)
			p->spawner = 0;
		if (collectable(p))
			proc_unlink(s, p);
		return;
	}
	if (timeout == 0) {
		svc_reply_err(s, h->client, h->req_id, -EAGAIN,
			      "pid %d is still running", (int)pid);
		return;
	}
	w = calloc(1, sizeof *w);
	if (!w) {
		svc_reply_err(s, h->client, h->req_id, -ENOMEM, "out of memory");
		return;
	}
	*w = wnow;
	w->client_pid = c->pid;
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
				svc_reply_err(s, w->client, w->req_id,
					      -ETIMEDOUT,
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

void svc_signal_request(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
			dlaunch__msg_t *m)
{
	pid_t pid = (pid_t)dlaunch__msg_get_i64(m);
	int signo = (int)dlaunch__msg_get_i64(m);
	svc_proc_t *p = svc_proc_find(s, pid);
	dlaunch__msg_t r;

	if (m->err)
		return;
	if (!p) {
		svc_reply_err(s, h->client, h->req_id, -DLAUNCH_E_NOPROC,
			      "pid %d was not started by runtime %s", (int)pid,
			      s->instance);
		return;
	}
	/* An ended process is a zombie or gone: nothing to send. */
	if (!p->ended && kill(pid, signo) < 0) {
		svc_reply_err(s, h->client, h->req_id, -errno,
			      "kill(%d, %d): %s", (int)pid, signo,
			      strerror(errno));
		return;
	}
	dlaunch__msg_init(&r, DLAUNCH_MSG_REPLY, h->req_id, 0);
	svc_reply(s, h->client, h->req_id, &r);
}

int svc_nrunning(dlaunch__server_t *s)
{
	int n = 0;

	for (svc_proc_t *p = s->procs; p; p = p->next)
		n += !p->ended;
	return n;
}

void svc_signal_all(dlaunch__server_t *s, int signo)
{
	for (svc_proc_t *p = s->procs; p; p = p->next)
		if (!p->ended)
			kill(p->pid, signo);
}

void svc_procs_free(dlaunch__server_t *s)
{
	while (s->procs)
		proc_unlink(s, s->procs);
}

void svc_proc_stream_closed(dlaunch__server_t *s, pid_t pid)
{
	svc_proc_t *p = svc_proc_find(s, pid);

	s->live_streams--;
	pthread_cond_broadcast(&s->changed);
	if (!p)
		return;
	p->open_streams--;
	if (collectable(p))
		proc_unlink(s, p);
}
