/* Starting and stopping a runtime: the default pool, the services'
 * endpoint, the environment children get, the service threads, and the
 * teardown that leaves nothing behind.
 *
 * The `dragon` launcher and an embedded runtime (Python without a launcher)
 * are the same code: the launcher adds DLAUNCH_RT_F_ADOPT so that it also
 * reaps and ends the grandchildren its processes leave behind.
 */
#define _GNU_SOURCE
#include "config.h"
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include "svc.h"

/* The infrastructure pool holds service messages and reply channels:
 * 64 MiB at most, a quarter of what /dev/shm has free on a small one, and
 * never less than 8 MiB.  The default pool, when neither the caller nor
 * DRAGON_DEFAULT_SEG_SZ sizes it: 4 GiB, or three quarters of the free
 * space when that is less.  Both are sparse and committed as used. */
#define INFRA_POOL_MAX	 (64ull << 20)
#define INFRA_POOL_MIN	 (8ull << 20)
#define DEFAULT_POOL_MAX (4ull << 30)

/* Deadline of each start-up phase unless the caller sets one. */
#define STARTUP_TIMEOUT_NS (30ull * 1000000000ull)

struct dlaunch__runtime {
	dlaunch__server_t srv;
	uint64_t phase_ns;	/* deadline of each start-up phase */
	struct timespec phase0; /* when the current phase began */
	char ep_text[DLAUNCH_EP_TEXT_MAX];
	char **envbuf; /* NULL-terminated; nenv entries */
	size_t nenv;
	dmem_pool_t *inf_pool;
	dchan_t *inf_anchor; /* libdchan's own mapping of inf_pool */
};

static int add_env(struct dlaunch__runtime *r, int i, const char *name,
		   const char *value, uint32_t flags)
{
	if (asprintf(&r->envbuf[i], "%s=%s", name, value) < 0) {
		r->envbuf[i] = NULL;
		return -ENOMEM;
	}
	if (flags & DLAUNCH_RT_F_SETENV)
		setenv(name, value, 1);
	return 0;
}

/* The runtime's variables, then the caller's extra ones (attr->env). */
static int make_env(struct dlaunch__runtime *r, uint32_t flags,
		    char *const *extra)
{
	dlaunch__server_t *s = &r->srv;
	char pd[DMEM_POOL_DESC_TEXT_MAX], node[32], ver[16];
	dmem_pool_desc_t d;
	size_t n = 0;
	int rc;

	while (extra && extra[n])
		n++;
	r->nenv = 6 + n;
	r->envbuf = calloc(r->nenv + 1, sizeof *r->envbuf);
	if (!r->envbuf)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		char *v, *eq;

		if (!strchr(extra[i], '='))
			return dlaunch__fail(-EINVAL,
					     "runtime attr env entry '%s' "
					     "is not NAME=value",
					     extra[i]);
		if (!(v = r->envbuf[6 + i] = strdup(extra[i])))
			return -ENOMEM;
		eq = strchr(v, '=');
		if (flags & DLAUNCH_RT_F_SETENV) {
			*eq = '\0';
			setenv(v, eq + 1, 1);
			*eq = '=';
		}
	}

	dmem_pool_desc_get(s->default_pool, &d);
	rc = dmem_pool_desc_to_text(&d, pd, sizeof pd);
	if (rc < 0)
		return rc;
	snprintf(node, sizeof node, "0x%llx", (unsigned long long)d.node_id);
	snprintf(ver, sizeof ver, "%d", DLAUNCH_MSG_VERSION);
	if ((rc = add_env(r, 0, DLAUNCH_ENV_INSTANCE, s->instance, flags)) ||
	    (rc = add_env(r, 1, DLAUNCH_ENV_NODE_ID, node, flags)) ||
	    (rc = add_env(r, 2, DLAUNCH_ENV_DEFAULT_POOL, pd, flags)) ||
	    (rc = add_env(r, 3, DLAUNCH_ENV_SERVICES, r->ep_text, flags)) ||
	    (rc = add_env(r, 4, DLAUNCH_ENV_MSG_VERSION, ver, flags)))
		return rc;
	dmem_pool_desc_get(r->inf_pool, &d);
	rc = dmem_pool_desc_to_text(&d, pd, sizeof pd);
	if (rc < 0 || (rc = add_env(r, 5, DLAUNCH_ENV_INFRA_POOL, pd, flags)))
		return rc;
	s->env = r->envbuf;
	return 0;
}

/* Start-up phases are timed one by one: each starts its clock here and
 * checks it in phase_late when it is done.  A phase that blocks in one
 * call (creating a pool) cannot be interrupted, but one that ran past its
 * deadline still fails with its name; the services' first answer is
 * waited for only until the deadline. */
static void phase_start(struct dlaunch__runtime *r)
{
	clock_gettime(CLOCK_MONOTONIC, &r->phase0);
}

static uint64_t phase_left(const struct dlaunch__runtime *r)
{
	struct timespec now;
	int64_t used;

	clock_gettime(CLOCK_MONOTONIC, &now);
	used = (int64_t)(now.tv_sec - r->phase0.tv_sec) * 1000000000 +
	       (now.tv_nsec - r->phase0.tv_nsec);
	return used >= (int64_t)r->phase_ns ? 0 : r->phase_ns - (uint64_t)used;
}

static int phase_late(const struct dlaunch__runtime *r, const char *phase)
{
	if (phase_left(r) > 0)
		return 0;
	return dlaunch__fail(-ETIMEDOUT,
			     "start-up phase '%s' timed out: it took longer "
			     "than its deadline of %.3f s",
			     phase, (double)r->phase_ns / 1e9);
}

/* Bytes free in /dev/shm; UINT64_MAX when it cannot tell. */
static uint64_t shm_free(void)
{
	struct statvfs sv;

	if (statvfs("/dev/shm", &sv) != 0)
		return UINT64_MAX;
	return (uint64_t)sv.f_bavail * sv.f_frsize;
}

static uint64_t default_pool_size(uint64_t asked)
{
	uint64_t room = shm_free() / 4 * 3 & ~((1ull << 20) - 1);

	if (asked || getenv("DRAGON_DEFAULT_SEG_SZ") || room == 0)
		return asked; /* 0: libdmem reads the variable or refuses */
	return room < DEFAULT_POOL_MAX ? room : DEFAULT_POOL_MAX;
}

static uint64_t infra_pool_size(void)
{
	uint64_t room = shm_free() / 4 & ~((1ull << 20) - 1);

	if (room > INFRA_POOL_MAX)
		return INFRA_POOL_MAX;
	return room > INFRA_POOL_MIN ? room : INFRA_POOL_MIN;
}

/* A pool the runtime makes does not fit /dev/shm: which, how big, what
 * to change. */
static int pool_fail(int rc, const char *phase, const char *pool, uint64_t size)
{
	if (rc != -DMEM_E_SHMSMALL || size == 0)
		return dlaunch__fail(rc, "start-up phase '%s': %s", phase,
				     dmem_errmsg());
	return dlaunch__fail(
		rc,
		"start-up phase '%s': the runtime's %s pool needs %llu bytes "
		"and /dev/shm has %llu bytes free: %s",
		phase, pool, (unsigned long long)size,
		(unsigned long long)shm_free(),
		strcmp(pool, "default") == 0
			? "set DRAGON_DEFAULT_SEG_SZ to at most the free "
			  "space, "
			  "or enlarge /dev/shm (docker run --shm-size=...)"
			: "the infrastructure pool needs at least 8 MiB: free "
			  "space in /dev/shm (a smaller DRAGON_DEFAULT_SEG_SZ "
			  "leaves more), or enlarge it (docker run "
			  "--shm-size=...)");
}

static int check_instance(const char *inst)
{
	size_t n = strlen(inst);

	if (n == 0 || n > DMEM_INSTANCE_MAX ||
	    strspn(inst, "abcdefghijklmnopqrstuvwxyz"
			 "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
			 "0123456789_-") != n)
		return dlaunch__fail(-EINVAL,
				     "instance id '%s': use 1..%d of "
				     "[A-Za-z0-9_-]",
				     inst, DMEM_INSTANCE_MAX);
	return 0;
}

/* The runtime record (rtrec.h), made before any segment and removed after
 * the last, so that dragon-cleanup knows every segment of the instance as
 * a runtime's, and whether its owner (this process) still runs.  Without
 * one (a /dev/shm too full even for this), the runtime still runs; only
 * dragon-cleanup will not tell it from a leftover unless it is in use. */
static int make_record(dlaunch__server_t *s)
{
	int rc = dlaunch__rec_create(s->instance, s->adopt, &s->rec);

	if (rc == -EEXIST)
		return dlaunch__fail(
			-EEXIST,
			"start-up phase 'default pool': runtime instance %s "
			"exists already (its record dragon.<user>.%s.%s is in "
			"/dev/shm): choose another instance id, or end that "
			"runtime with `dragon-cleanup --instance %s`",
			s->instance, s->instance, DLAUNCH_REC_NAME,
			s->instance);
	if (rc)
		dlaunch__log(DLAUNCH_LOG_WARNING,
			     "runtime %s has no record in /dev/shm (%s): "
			     "dragon-cleanup will not know its processes",
			     s->instance, strerror(-rc));
	return 0;
}

static int setup(struct dlaunch__runtime *r, const dlaunch_runtime_attr_t *a)
{
	dlaunch__server_t *s = &r->srv;
	uint64_t mask = a ? a->field_mask : 0;
	uint32_t flags = (mask & DLAUNCH_RT_ATTR_FLAGS) ? a->flags : 0;
	uint64_t size = (mask & DLAUNCH_RT_ATTR_POOL_SIZE) ? a->pool_size : 0;
	dmem_pool_attr_t pa = {.field_mask = DMEM_POOL_ATTR_INSTANCE};
	struct timespec ts;
	int rc;

	if (mask & DLAUNCH_RT_ATTR_INSTANCE) {
		rc = check_instance(a->instance);
		if (rc)
			return rc;
		strcpy(s->instance, a->instance);
	} else {
		clock_gettime(CLOCK_REALTIME, &ts);
		snprintf(s->instance, sizeof s->instance, "rt%dx%04lx",
			 (int)getpid(), (unsigned long)(ts.tv_nsec & 0xffff));
	}
	if (mask & DLAUNCH_RT_ATTR_LOG_LEVEL)
		dlaunch__log_level = a->log_level;
	if (mask & DLAUNCH_RT_ATTR_LOG_FD)
		dlaunch__log_set_fd(a->log_fd);
	s->adopt = flags & DLAUNCH_RT_F_ADOPT;
	if (mask & DLAUNCH_RT_ATTR_OUTPUT) {
		s->output = a->output;
		s->output_arg = a->output_arg;
	}
	r->phase_ns = (mask & DLAUNCH_RT_ATTR_TIMEOUT) && a->startup_timeout_ns
			      ? a->startup_timeout_ns
			      : STARTUP_TIMEOUT_NS;
	pa.instance = s->instance;
	phase_start(r);
	rc = make_record(s);
	if (rc)
		return rc;
	size = default_pool_size(size);
	rc = dmem_pool_create("default", (size_t)size, &pa, &s->default_pool);
	if (rc)
		return pool_fail(rc, "default pool", "default", size);
	rc = dlaunch__registry_anchor(s);
	if (rc)
		return dlaunch__fail(rc,
				     "start-up phase 'default pool': "
				     "first channel: %s",
				     dchan_errmsg());
	if ((rc = phase_late(r, "default pool")))
		return rc;
	/* Infrastructure channels live in a pool of their own, so a full
	 * default pool cannot starve the services. */
	phase_start(r);
	size = infra_pool_size();
	rc = dmem_pool_create("infra", (size_t)size, &pa, &r->inf_pool);
	if (rc)
		return pool_fail(rc, "infrastructure pool", "infrastructure",
				 size);
	s->inf_pool = r->inf_pool;
	/* Reply channels of handles in this process live there too, some
	 * possibly beyond dlaunch_runtime_stop (a handle from dlaunch_attach,
	 * a process-end watcher): they use libdchan's mapping, not ours. */
	rc = dlaunch__pool_lend(r->inf_pool, &r->inf_anchor);
	if (rc)
		return dlaunch__fail(rc,
				     "start-up phase 'infrastructure "
				     "pool': first channel: %s",
				     dchan_errmsg());
	if ((rc = phase_late(r, "infrastructure pool")))
		return rc;
	phase_start(r);
	rc = dlaunch__ep_create(r->inf_pool, 1024, &s->req);
	if (rc == 0)
		rc = dlaunch__ep_text(s->req, r->ep_text, sizeof r->ep_text);
	if (rc < 0)
		return dlaunch__fail(rc,
				     "start-up phase 'infrastructure "
				     "channels': %s",
				     dlaunch_strerror(rc));
	rc = make_env(r, flags, (mask & DLAUNCH_RT_ATTR_ENV) ? a->env : NULL);
	if (rc)
		return rc;
	if ((rc = phase_late(r, "infrastructure channels")))
		return rc;
	if (s->adopt && prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
		return dlaunch__fail(-errno, "PR_SET_CHILD_SUBREAPER failed");
	phase_start(r);
	rc = dlaunch__svc_start_threads(s);
	if (rc)
		return dlaunch__fail(rc, "start-up phase 'services': %s",
				     dlaunch_strerror(rc));
	return 0;
}

static void release(struct dlaunch__runtime *r)
{
	dlaunch__server_t *s = &r->srv;

	dlaunch__procs_free(s);
	dlaunch__clients_free(s);
	dlaunch__registry_free(s);
	if (s->default_pool)
		dmem_pool_destroy(s->default_pool);
	dlaunch__ep_close(s->req);
	if (r->inf_anchor)
		dchan_detach(r->inf_anchor);
	if (r->inf_pool)
		dmem_pool_destroy(r->inf_pool);
	dlaunch__rec_remove(s->rec);
	s->rec = NULL;
	for (size_t i = 0; r->envbuf && i < r->nenv; i++)
		free(r->envbuf[i]);
	free(r->envbuf);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->changed);
	free(r);
}

DLAUNCH_EXPORT int dlaunch_runtime_start(const dlaunch_runtime_attr_t *attr,
					 dlaunch_t **rt_out)
{
	struct dlaunch__runtime *r = calloc(1, sizeof *r);
	pthread_condattr_t ca;
	dlaunch_t *rt;
	int rc;

	if (!r || !rt_out) {
		free(r);
		return -EINVAL;
	}
	pthread_mutex_init(&r->srv.lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->srv.changed, &ca);
	pthread_condattr_destroy(&ca);
	r->srv.sigfd = r->srv.epfd = r->srv.wakefd = -1;
	rc = setup(r, attr);
	if (rc) {
		release(r);
		return rc;
	}
	/* The services phase ends with their first answer. */
	rc = dlaunch__connect(r->ep_text, phase_left(r) + 1, &rt);
	if (rc == 0 && (rc = phase_late(r, "services")))
		dlaunch__disconnect(rt);
	else if (rc)
		dlaunch__fail(rc,
			      "start-up phase 'services': they did not "
			      "answer within %.3f s (%s)",
			      (double)r->phase_ns / 1e9, dlaunch_strerror(rc));
	if (rc) {
		r->srv.stopping = true;
		goto stop;
	}
	strcpy(rt->instance, r->srv.instance);
	dmem_pool_desc_get(r->srv.default_pool, &rt->default_pool);
	rt->node = rt->default_pool.node_id;
	dlaunch__multi_env(rt);
	rt->owned = r;
	*rt_out = rt;
	dlaunch__log(DLAUNCH_LOG_INFO, "runtime %s started", r->srv.instance);
	return 0;
stop:
	dlaunch__runtime_free(r);
	return rc;
}

/* Stop both service threads and free everything, removing the segments. */
void dlaunch__runtime_free(struct dlaunch__runtime *r)
{
	dlaunch__ep_t *ep;
	dlaunch__msg_t m;

	dlaunch__msg_init(&m, DLAUNCH_MSG_STOP, 0, 0);
	if (dlaunch__ep_open(r->ep_text, &ep) == 0) {
		dlaunch__ep_send(ep, m.buf, m.len, DLAUNCH_FOREVER);
		dlaunch__ep_close(ep);
	}
	dlaunch__msg_free(&m);
	pthread_join(r->srv.req_thread, NULL);
	dlaunch__io_stop(&r->srv);
	release(r);
}

dlaunch__server_t *dlaunch__runtime_server(struct dlaunch__runtime *r)
{
	return &r->srv;
}
