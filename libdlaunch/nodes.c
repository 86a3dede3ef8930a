/* The local services of other nodes, for a runtime over several nodes.
 *
 * Each node's backend registers its services' request endpoint with the
 * global services under DLAUNCH_NODE_SERVICES_FMT.  A handle that starts
 * a process on another node looks that up once, keeps a sub-handle on
 * those services (its requests and replies travel through the transport
 * agents).  A process there is named by a pid that says its node
 * (DLAUNCH_PID_SPAN), so dlaunch_wait, dlaunch_signal and dlaunch_proc_fd
 * on it go there too, whoever calls them.
 */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dlaunch_private.h"

static int lookup_node(dlaunch_t *rt, uint32_t node, dlaunch_t **h_out)
{
	char name[64], text[DLAUNCH_EP_TEXT_MAX];
	size_t len;
	int rc;

	snprintf(name, sizeof name, DLAUNCH_NODE_SERVICES_FMT, node);
	rc = dlaunch_name_lookup(rt, name, DLAUNCH_KIND_BYTES, text,
				 sizeof text - 1, &len);
	if (rc)
		return dlaunch__fail(rc,
				     "node %u's services are not registered "
				     "(%s): is its backend running?",
				     node, dlaunch_strerror(rc));
	text[len] = '\0';
	rc = dlaunch__connect_sub(rt, text, h_out);
	if (rc)
		return dlaunch__fail(rc,
				     "cannot reach node %u's services through "
				     "the transport agents: %s",
				     node, dlaunch_strerror(rc));
	return 0;
}

int dlaunch__on_node(dlaunch_t *rt, uint32_t node, dlaunch_t **h_out)
{
	dlaunch_t *h;
	int rc = 0;

	if (node >= rt->nnodes)
		return dlaunch__fail(-EINVAL,
				     "node index %u: the runtime has %u "
				     "node%s (0 .. %u)",
				     node, rt->nnodes,
				     rt->nnodes > 1 ? "s" : "", rt->nnodes - 1);
	if (rt->nnodes == 1 || node + 1 == rt->node) {
		*h_out = rt;
		return 0;
	}
	pthread_mutex_lock(&rt->sub_lock);
	if (!rt->nodes)
		rt->nodes = calloc(rt->nnodes, sizeof *rt->nodes);
	h = rt->nodes ? rt->nodes[node] : NULL;
	pthread_mutex_unlock(&rt->sub_lock);
	if (!rt->nodes)
		return -ENOMEM;
	if (!h) {
		/* Looked up without the lock (a call of its own); a racing
		 * thread's handle wins and ours goes. */
		rc = lookup_node(rt, node, &h);
		if (rc)
			return rc;
		pthread_mutex_lock(&rt->sub_lock);
		if (rt->nodes[node]) {
			dlaunch_t *mine = h;

			h = rt->nodes[node];
			pthread_mutex_unlock(&rt->sub_lock);
			dlaunch__disconnect(mine);
		} else {
			rt->nodes[node] = h;
			pthread_mutex_unlock(&rt->sub_lock);
		}
	}
	*h_out = h;
	return 0;
}

/* A pid names a node and an OS pid there (DLAUNCH_PID_SPAN): a process
 * of another node and one of this node with the same OS pid are never
 * taken for each other, and any process may name a process of any node
 * (a child its parent on another node), not only the one that started
 * it. */
int dlaunch__pid_handle(dlaunch_t *rt, pid_t pid, dlaunch_t **h_out,
			pid_t *os_pid_out)
{
	uint32_t node;
	int rc;

	if (pid < DLAUNCH_PID_SPAN) {
		*h_out = rt;
		*os_pid_out = pid;
		return 0;
	}
	node = (uint32_t)(pid / DLAUNCH_PID_SPAN) - 1;
	if (node >= rt->nnodes)
		return dlaunch__fail(-DLAUNCH_E_NOPROC,
				     "pid %ld names a process of node %u, but "
				     "the runtime has %u node%s",
				     (long)pid, node, rt->nnodes,
				     rt->nnodes > 1 ? "s" : "");
	rc = dlaunch__on_node(rt, node, h_out);
	if (rc == 0)
		*os_pid_out = pid % DLAUNCH_PID_SPAN;
	return rc;
}
