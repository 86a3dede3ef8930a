/* Client calls on processes: spawn, wait, signal, adopt, forward the
 * output of and report a reaped child.  Each is a request to the services
 * (req_proc.c, req_adopt.c on their side). */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "dlaunch_private.h"

extern char **environ;

static int check_spawn(const char *path, char *const argv[],
		       const dlaunch_spawn_attr_t *a)
{
	if (!path || !*path || !argv || !argv[0])
		return dlaunch__fail(-EINVAL, "dlaunch_spawn: path and argv "
					      "(with argv[0]) are required");
	if (a && (a->field_mask & DLAUNCH_SPAWN_ATTR_STDIO)) {
		for (int i = 0; i < 3; i++) {
			int s = a->stdio[i];
			if (s < 0 || s > DLAUNCH_STDIO_STDOUT ||
			    (s == DLAUNCH_STDIO_STDOUT && i != 2) ||
			    (s == DLAUNCH_STDIO_FILE && !a->stdio_path[i]))
				return dlaunch__fail(
					-EINVAL,
					"dlaunch_spawn: stdio[%d] = %d is not "
					"valid for that descriptor",
					i, s);
		}
	}
	return 0;
}

static void put_spawn(dlaunch__msg_t *m, const char *path, char *const argv[],
		      const dlaunch_spawn_attr_t *a)
{
	uint64_t mask = a ? a->field_mask : 0;
	uint32_t flags = (mask & DLAUNCH_SPAWN_ATTR_FLAGS) ? a->flags : 0;
	char *const *env = (mask & DLAUNCH_SPAWN_ATTR_ENV) ? a->env : NULL;
	char cwd[4096];

	dlaunch__msg_put_str(m, path);
	dlaunch__msg_put_strv(m, argv);
	dlaunch__msg_put_strv(
		m, (flags & DLAUNCH_SPAWN_F_ENV_REPLACE) ? NULL : environ);
	dlaunch__msg_put_strv(m, env);
	dlaunch__msg_put_u64(m, flags);
	if ((mask & DLAUNCH_SPAWN_ATTR_CWD) && a->cwd)
		dlaunch__msg_put_str(m, a->cwd);
	else
		dlaunch__msg_put_str(m, getcwd(cwd, sizeof cwd));
	for (int i = 0; i < 3; i++) {
		int s = (mask & DLAUNCH_SPAWN_ATTR_STDIO) ? a->stdio[i] : 0;
		dlaunch__msg_put_i64(m, s);
		dlaunch__msg_put_str(
			m, s == DLAUNCH_STDIO_FILE ? a->stdio_path[i] : NULL);
	}
}

DLAUNCH_EXPORT int dlaunch_spawn(dlaunch_t *rt, const char *path,
				 char *const argv[],
				 const dlaunch_spawn_attr_t *attr,
				 pid_t *pid_out)
{
	dlaunch__conv_t *c;
	dlaunch__msg_t m, r;
	dlaunch_t *h = rt;
	int rc;

	if (!rt || !pid_out)
		return dlaunch__fail(-EINVAL, "dlaunch_spawn: NULL argument");
	rc = check_spawn(path, argv, attr);
	if (rc)
		return rc;
	if (attr && (attr->field_mask & DLAUNCH_SPAWN_ATTR_NODE) &&
	    (rc = dlaunch__on_node(rt, attr->node, &h)))
		return rc;
	dlaunch__msg_init(&m, DLAUNCH_MSG_SPAWN, 0, 0);
	put_spawn(&m, path, argv, attr);
	if (m.err == -E2BIG)
		m.err = dlaunch__fail(-E2BIG,
				      "dlaunch_spawn: argv and "
				      "environment exceed %u bytes",
				      DLAUNCH_MSG_MAX);
	rc = dlaunch__call(h, &m, 0, &r, &c);
	if (rc >= 0 && h != rt)
		rc = DLAUNCH_PID_ON(attr->node, rc);
	if (rc >= 0) {
		*pid_out = (pid_t)rc;
		rc = 0;
	}
	dlaunch__call_done(h, c);
	return rc;
}

/* Ask for pid's status; peek leaves it for the spawner to collect. */
int dlaunch__status_call(dlaunch_t *rt, pid_t pid, uint64_t timeout_ns,
			 bool peek, int *wstatus_out)
{
	dlaunch__conv_t *c;
	dlaunch__msg_t m, r;
	int64_t raw = 0;
	int rc;

	dlaunch__msg_init(&m, DLAUNCH_MSG_STATUS, 0, 0);
	dlaunch__msg_put_i64(&m, pid);
	dlaunch__msg_put_u64(&m, timeout_ns);
	dlaunch__msg_put_u64(&m, peek);
	rc = dlaunch__call(rt, &m, timeout_ns, &r, &c);
	if (rc >= 0) {
		raw = dlaunch__msg_get_i64(&r);
		rc = r.err;
	}
	dlaunch__call_done(rt, c);
	if (rc == 0)
		*wstatus_out = (int)raw;
	return rc;
}

DLAUNCH_EXPORT int dlaunch_wait(dlaunch_t *rt, pid_t pid, uint64_t timeout_ns,
				dlaunch_status_t *status_out)
{
	dlaunch_status_t st;
	dlaunch_t *h;
	int raw, rc;

	if (!rt || !status_out || pid <= 0)
		return dlaunch__fail(-EINVAL, "dlaunch_wait: bad argument");
	rc = dlaunch__pid_handle(rt, pid, &h, &pid);
	if (rc < 0)
		return rc;
	rc = dlaunch__status_call(h, pid, timeout_ns, false, &raw);
	if (rc < 0)
		return rc;
	/* raw is the wait(2) status word. */
	memset(&st, 0, sizeof st);
	st.exited = WIFEXITED(raw);
	st.code = st.exited ? WEXITSTATUS(raw) : 0;
	st.signo = WIFSIGNALED(raw) ? WTERMSIG(raw) : 0;
	st.core = WIFSIGNALED(raw) ? !!WCOREDUMP(raw) : 0;
	*status_out = st;
	return 0;
}

DLAUNCH_EXPORT int dlaunch_status_code(const dlaunch_status_t *st)
{
	if (!st)
		return -EINVAL;
	return st->exited ? st->code : -st->signo;
}

DLAUNCH_EXPORT int dlaunch_signal(dlaunch_t *rt, pid_t pid, int signo)
{
	dlaunch__conv_t *c;
	dlaunch__msg_t m, r;
	int rc;

	if (!rt || pid <= 0 || signo < 0 || signo >= NSIG)
		return dlaunch__fail(-EINVAL, "dlaunch_signal: bad argument");
	rc = dlaunch__pid_handle(rt, pid, &rt, &pid);
	if (rc < 0)
		return rc;
	dlaunch__msg_init(&m, DLAUNCH_MSG_SIGNAL, 0, 0);
	dlaunch__msg_put_i64(&m, pid);
	dlaunch__msg_put_i64(&m, signo);
	rc = dlaunch__call(rt, &m, 0, &r, &c);
	dlaunch__call_done(rt, c);
	return rc < 0 ? rc : 0;
}

/* ADOPT and REAPED carry a pid, a number and the flags, and return only
 * a code (nothing at all with DLAUNCH_PROC_F_NOWAIT). */
static int proc_call(dlaunch_t *rt, int type, pid_t pid, int64_t arg,
		     uint32_t flags)
{
	dlaunch__conv_t *c;
	dlaunch__msg_t m, r;
	int rc;

	dlaunch__msg_init(&m, type, 0, 0);
	dlaunch__msg_put_i64(&m, pid);
	dlaunch__msg_put_i64(&m, arg);
	dlaunch__msg_put_u64(&m, flags);
	if (flags & DLAUNCH_PROC_F_NOWAIT)
		return dlaunch__notify(rt, &m);
	rc = dlaunch__call(rt, &m, 0, &r, &c);
	dlaunch__call_done(rt, c);
	return rc < 0 ? rc : 0;
}

DLAUNCH_EXPORT int dlaunch_proc_adopt(dlaunch_t *rt, pid_t pid, uint32_t flags)
{
	if (!rt || pid <= 0 || (flags & ~DLAUNCH_PROC_F_NOWAIT))
		return dlaunch__fail(-EINVAL,
				     "dlaunch_proc_adopt: bad argument");
	return proc_call(rt, DLAUNCH_MSG_ADOPT, pid, 0, flags);
}

DLAUNCH_EXPORT int dlaunch_proc_reaped(dlaunch_t *rt, pid_t pid, int wstatus,
				       uint32_t flags)
{
	if (!rt || pid <= 0 || (flags & ~DLAUNCH_PROC_F_NOWAIT))
		return dlaunch__fail(-EINVAL,
				     "dlaunch_proc_reaped: bad argument");
	return proc_call(rt, DLAUNCH_MSG_REAPED, pid, wstatus, flags);
}

DLAUNCH_EXPORT int dlaunch_proc_forward(dlaunch_t *rt, pid_t pid, int out_fd,
					int err_fd)
{
	dlaunch__conv_t *c;
	dlaunch__msg_t m, r;
	int rc;

	if (!rt || pid <= 0 || out_fd < -1 || err_fd < -1)
		return dlaunch__fail(-EINVAL,
				     "dlaunch_proc_forward: bad argument");
	/* The services open the pipes through our descriptors: the call
	 * waits for them, whatever happens, before the caller closes them. */
	dlaunch__msg_init(&m, DLAUNCH_MSG_FORWARD, 0, 0);
	dlaunch__msg_put_i64(&m, pid);
	dlaunch__msg_put_i64(&m, out_fd);
	dlaunch__msg_put_i64(&m, err_fd);
	rc = dlaunch__call(rt, &m, 0, &r, &c);
	dlaunch__call_done(rt, c);
	return rc < 0 ? rc : 0;
}
