/* Local services: starting a process (ended.c: how processes end).
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

/* posix_spawn reports a failed exec (glibc's vfork-style child shares the
 * error with us), except where the child is a real fork — under valgrind,
 * for one — and a missing program would look started.  Checking first
 * gives the same errors everywhere; the exec still decides. */
static int check_exec(const char *path, const char *cwd)
{
	char full[8192];

	if (path[0] != '/' && cwd) {
		snprintf(full, sizeof full, "%s/%s", cwd, path);
		path = full;
	}
	return access(path, X_OK) < 0 ? errno : 0;
}

/* File actions for fds 0..2.  Forwarded streams get a pipe: the read end
 * goes to rends[i] for the I/O thread, the write end to wends[i], which the
 * caller closes after the spawn. */
static int setup_stdio(posix_spawn_file_actions_t *fa,
		       const dlaunch__spawn_t *sp, int rends[3], int wends[3])
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

/* Put the new process in the table and have the I/O thread watch it and
 * forward its output. */
static int add_proc(dlaunch__server_t *s, pid_t pid, pid_t spawner,
		    int rends[3])
{
	dlaunch__proc_t *p;
	int pidfd, rc;

	/* Not reaped yet (only we reap, under the lock): the pid is ours. */
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0 && errno != ENOSYS)
		return -errno;
	rc = dlaunch__proc_add(s, pid, pidfd, spawner, 0, &p);
	if (rc) {
		if (pidfd >= 0)
			close(pidfd);
		return rc;
	}
	/* Without pidfd_open (old kernels, valgrind) the I/O thread polls. */
	if (pidfd >= 0) {
		rc = dlaunch__io_watch(s, pidfd, pid);
	} else {
		dlaunch__proc_set_polled(s, p);
		rc = dlaunch__io_poll_wake(s);
	}
	for (int i = 1; i < 3; i++) {
		if (rends[i] < 0)
			continue;
		/* The I/O thread reads a copy; the caller closes rends. */
		if (dlaunch__io_forward(s, rends[i], i, pid) == 0)
			dlaunch__proc_stream_opened(p);
	}
	return rc;
}

int dlaunch__spawn(dlaunch__server_t *s, const dlaunch__spawn_t *sp,
		   pid_t spawner)
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
		rc = check_exec(path, sp->cwd);
	/* Until the new process is in a slot of the runtime record, the
	 * record says a spawn is under way (rtrec.h). */
	if (rc == 0) {
		dlaunch__rec_spawning(s->rec, true);
		rc = posix_spawn(&pid, path, &fa, &at, sp->argv, env);
	}
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
	dlaunch__rec_spawning(s->rec, false);
	posix_spawnattr_destroy(&at);
	posix_spawn_file_actions_destroy(&fa);
	free(env);
	return rc;
}
