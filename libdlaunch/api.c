/* The handle: attaching to the runtime a process runs in, detaching, and
 * what the handle knows without asking (instance, node, default pool).
 *
 * The client calls are beside it, each a request to the services:
 * proc_calls.c (processes), procfd.c (process-end descriptors),
 * name_calls.c (the registry).  Arguments are checked there so a bad call
 * fails without a round trip and with a message naming the argument.
 */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "dlaunch_private.h"

DLAUNCH_EXPORT int dlaunch_in_runtime(void)
{
	return getenv(DLAUNCH_ENV_INSTANCE) && getenv(DLAUNCH_ENV_SERVICES);
}

static int env_text(const char *name, const char **out)
{
	const char *v = getenv(name);

	if (!v || !*v)
		return dlaunch__fail(-DLAUNCH_E_NORUNTIME,
				     "%s is not set: this process was not "
				     "started by a Dragon runtime (run it with "
				     "dragon)",
				     name);
	*out = v;
	return 0;
}

DLAUNCH_EXPORT int dlaunch_attach(const void *attr, dlaunch_t **rt_out)
{
	const char *inst = NULL, *svc = NULL, *pd = NULL, *ver;
	dmem_pool_desc_t desc;
	dlaunch_t *rt;
	int rc;

	(void)attr;
	if (!rt_out)
		return dlaunch__fail(-EINVAL, "dlaunch_attach: rt_out is NULL");
	if ((rc = env_text(DLAUNCH_ENV_INSTANCE, &inst)) ||
	    (rc = env_text(DLAUNCH_ENV_SERVICES, &svc)) ||
	    (rc = env_text(DLAUNCH_ENV_DEFAULT_POOL, &pd)))
		return rc;
	ver = getenv(DLAUNCH_ENV_MSG_VERSION);
	if (ver && atoi(ver) != DLAUNCH_MSG_VERSION)
		return dlaunch__fail(-DLAUNCH_E_VERSION,
				     "the runtime speaks message version %s, "
				     "this library %d: use the libdlaunch "
				     "of the dragon that runs this program",
				     ver, DLAUNCH_MSG_VERSION);
	if (strlen(inst) >= sizeof rt->instance ||
	    dmem_pool_desc_from_text(pd, &desc))
		return dlaunch__fail(-DLAUNCH_E_ENV,
				     "%s or %s is malformed ('%s', '%s')",
				     DLAUNCH_ENV_INSTANCE,
				     DLAUNCH_ENV_DEFAULT_POOL, inst, pd);
	rc = dlaunch__link_init(getenv(DLAUNCH_ENV_INFRA_POOL));
	if (rc == 0)
		rc = dlaunch__connect(svc, 0, &rt);
	if (rc)
		return dlaunch__fail(rc,
				     "cannot reach the services of runtime %s "
				     "(%s)",
				     inst, dlaunch_strerror(rc));
	strcpy(rt->instance, inst);
	rt->default_pool = desc;
	rt->node = desc.node_id;
	dlaunch__multi_env(rt);
	*rt_out = rt;
	return 0;
}

DLAUNCH_EXPORT int dlaunch_detach(dlaunch_t *rt)
{
	int rc;

	if (!rt)
		return -EINVAL;
	if (rt->owned)
		return dlaunch_runtime_stop(rt, 10ull * 1000000000ull);
	/* Calls other threads have in flight return -DLAUNCH_E_CLOSED and
	 * leave before the handle is freed. */
	rc = dlaunch__close(rt, "dlaunch_detach");
	if (rc)
		return rc;
	dlaunch__disconnect(rt);
	return 0;
}

DLAUNCH_EXPORT const char *dlaunch_instance(const dlaunch_t *rt)
{
	return rt ? rt->instance : "";
}

DLAUNCH_EXPORT uint64_t dlaunch_node(const dlaunch_t *rt)
{
	return rt ? rt->node : 0;
}

DLAUNCH_EXPORT unsigned dlaunch_node_count(const dlaunch_t *rt)
{
	return rt ? rt->nnodes : 0;
}

DLAUNCH_EXPORT int dlaunch_default_pool(const dlaunch_t *rt,
					dmem_pool_desc_t *desc_out)
{
	if (!rt || !desc_out)
		return -EINVAL;
	*desc_out = rt->default_pool;
	return 0;
}
