/* Private declarations of libdlaunch; not installed.
 *
 * Module map, top to bottom; a file calls only the files below it (no two
 * files call each other, tests/abi/check-cycles.sh checks it):
 *
 *   the runtime (services; their own map is in svc.h)
 *   runtime.c teardown.c server.c req_*.c spawn.c iothread.c ended.c
 *   registry.c proctab.c rtrec.c dispatch.c reply.c
 *
 *   client calls, each a request to the services
 *   api.c          the handle: dlaunch_attach/detach, instance, node
 *   procfd.c       dlaunch_proc_fd; sentinels without pidfd_open
 *   proc_calls.c   dlaunch_spawn, wait, signal, proc_adopt, proc_reaped
 *   nodes.c        the services of other nodes; pids started there
 *   name_calls.c   dlaunch_name_*, dlaunch_pool_get, dlaunch_channel_get
 *                  (always the global services)
 *   client.c       connecting, conversations, the request/reply
 *                  transaction; the global services' handle
 *
 *   below both
 *   link.c         endpoints that carry messages (infrastructure channels)
 *   msg.c          the services' versioned binary message format
 *   error.c        error names, the thread-local detail message
 *   log.c          the log
 *   dlaunch_version.c  the version
 */
#ifndef DRAGON_DLAUNCH_PRIVATE_H
#define DRAGON_DLAUNCH_PRIVATE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <dragon/dlaunch.h>

/* ---- errors (error.c) ---------------------------------------------------- */

/* Record a detail message for this thread and return code. */
int dlaunch__fail(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ---- log (log.c) --------------------------------------------------------- */

extern int dlaunch__log_level;
void dlaunch__log(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Send log lines to fd (the launcher's log file); -1: stderr. */
void dlaunch__log_set_fd(int fd);

/* ---- messages (msg.c) ---------------------------------------------------- */

#define DLAUNCH_MSG_MAGIC   0x314d4c44u /* "DLM1" */
#define DLAUNCH_MSG_VERSION 1
/* A spawn request carries argv and the environment: room for what the
 * kernel accepts for execve (ARG_MAX is a quarter of the stack limit, 2 MiB
 * by default, and the environment may travel twice: inherited and added).
 * Buffers grow to what a message needs; only receive buffers are this big,
 * and their untouched pages cost nothing. */
#define DLAUNCH_MSG_MAX	    (16u << 20)

enum dlaunch__msg_type {
	DLAUNCH_MSG_HELLO = 1,	   /* client pid, reply endpoint */
	DLAUNCH_MSG_BYE = 2,	   /* client pid */
	DLAUNCH_MSG_SPAWN = 3,	   /* path, argv, env, cwd, stdio */
	DLAUNCH_MSG_STATUS = 4,	   /* pid, block until ended? */
	DLAUNCH_MSG_SIGNAL = 5,	   /* pid, signo */
	DLAUNCH_MSG_NAME_REG = 6,  /* name, kind, value */
	DLAUNCH_MSG_NAME_GET = 7,  /* name, kind */
	DLAUNCH_MSG_NAME_DEL = 8,  /* name */
	DLAUNCH_MSG_CHAN_GET = 9,  /* name, capacity, slot size */
	DLAUNCH_MSG_POOL_GET = 10, /* name, size */
	DLAUNCH_MSG_STOP = 11,	   /* services: leave the loop */
	DLAUNCH_MSG_ADOPT = 12,	   /* pid forked by the client, 0, flags */
	DLAUNCH_MSG_REAPED = 13,   /* pid, wait status, flags */
	DLAUNCH_MSG_FORWARD = 14,  /* pid, stdout fd, stderr fd (caller's) */
	DLAUNCH_MSG_HOLD = 15,	   /* pid, other services, client id, release */
	DLAUNCH_MSG_REPLY = 64	   /* status, type-specific fields */
};

/* A message being built or read: a fixed header then fields in an order
 * each type defines.  Readers are bounds-checked and sticky on error. */
typedef struct dlaunch__msg {
	uint8_t *buf;
	size_t len, cap, pos;
	int err;
} dlaunch__msg_t;

typedef struct dlaunch__msg_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint64_t req_id;
	int32_t status;	 /* replies: 0 / non-negative result or -code */
	uint32_t client; /* conversation id from HELLO (0 in HELLO) */
} dlaunch__msg_hdr_t;

int dlaunch__msg_init(dlaunch__msg_t *m, uint16_t type, uint64_t req_id,
		      int32_t status);
void dlaunch__msg_free(dlaunch__msg_t *m);
void dlaunch__msg_put_u64(dlaunch__msg_t *m, uint64_t v);
void dlaunch__msg_put_i64(dlaunch__msg_t *m, int64_t v);
void dlaunch__msg_put_bytes(dlaunch__msg_t *m, const void *p, size_t n);
void dlaunch__msg_put_str(dlaunch__msg_t *m, const char *s); /* NULL ok */
/* A NULL-terminated string vector (NULL vec: count 0 and a "null" mark). */
void dlaunch__msg_put_strv(dlaunch__msg_t *m, char *const *v);

/* Read the header of len bytes at buf (borrowed for the reads after). */
int dlaunch__msg_open(dlaunch__msg_t *m, const void *buf, size_t len,
		      dlaunch__msg_hdr_t *hdr_out);
uint64_t dlaunch__msg_get_u64(dlaunch__msg_t *m);
int64_t dlaunch__msg_get_i64(dlaunch__msg_t *m);
/* Pointer into the message and length; NULL on error. */
const void *dlaunch__msg_get_bytes(dlaunch__msg_t *m, size_t *n_out);
/* NUL-terminated strings inside the message; NULL for a NULL string. */
const char *dlaunch__msg_get_str(dlaunch__msg_t *m);
/* A freshly malloc'd NULL-terminated vector pointing into the message;
 * *null_out tells a NULL vector from an empty one. */
char **dlaunch__msg_get_strv(dlaunch__msg_t *m, bool *null_out);

/* ---- endpoints (link.c) ---------------------------------------------------
 * An endpoint receives messages; anyone holding its text form can send to
 * it.  Endpoints are infrastructure channels in the infrastructure pool. */

typedef struct dlaunch__ep dlaunch__ep_t;
#define DLAUNCH_EP_TEXT_MAX 512

/* A new receiving endpoint (channel created in the infrastructure pool). */
int dlaunch__ep_create(dmem_pool_t *pool, unsigned capacity,
		       dlaunch__ep_t **ep_out);
dmem_pool_t *dlaunch__ep_pool(const dlaunch__ep_t *ep);
/* A sending handle to the endpoint named by text. */
int dlaunch__ep_open(const char *text, dlaunch__ep_t **ep_out);
int dlaunch__ep_text(const dlaunch__ep_t *ep, char *buf, size_t len);
int dlaunch__ep_send(dlaunch__ep_t *ep, const void *buf, size_t len,
		     uint64_t timeout_ns);
/* -EAGAIN / -ETIMEDOUT when nothing arrived. */
int dlaunch__ep_recv(dlaunch__ep_t *ep, void *buf, size_t cap,
		     uint64_t timeout_ns, size_t *len_out);
/* Release a handle; an endpoint made by dlaunch__ep_create is destroyed. */
void dlaunch__ep_close(dlaunch__ep_t *ep);
/* Destroy the endpoint named by text (a dead client's reply endpoint). */
void dlaunch__ep_destroy_text(const char *text);
/* Make libdchan map pool itself (see link.c) and hold it through
 * *anchor_out, a small channel of that pool: dchan_detach it when done. */
int dlaunch__pool_lend(dmem_pool_t *pool, dchan_t **anchor_out);
/* Bind the link layer to the infrastructure pool (text descriptor from
 * the environment, or the pool the runtime made); once per process. */
int dlaunch__link_init(const char *pool_text);
void dlaunch__link_fini(void);

/* ---- client (client.c) --------------------------------------------------- */

/* One request/reply conversation: a reply endpoint known to the services
 * under a client id.  A handle keeps a free list of them so that threads
 * never wait for each other's (possibly long) calls. */
typedef struct dlaunch__conv {
	struct dlaunch__conv *next;	/* free list */
	struct dlaunch__conv *all_next; /* every conversation of the handle */
	dlaunch__ep_t *reply;
	uint32_t client_id;
	bool busy;  /* a call is using it */
	bool woken; /* dlaunch__close sent it the wake message */
	uint64_t next_req;
	uint8_t *rbuf; /* DLAUNCH_MSG_MAX bytes */
} dlaunch__conv_t;

/* Handle lifetime: every call that uses the handle's conversations or
 * endpoints counts itself in `inflight` (dlaunch__enter / dlaunch__leave).
 * dlaunch__close sets `closing` (new calls then fail at once), wakes the
 * calls blocked on a reply and waits until none is left; only then are the
 * conversations and the handle freed. */
struct dlaunch {
	pthread_mutex_t lock; /* guards the fields down to `idle` */
	dlaunch__conv_t *free_convs;
	dlaunch__conv_t *all_convs;
	unsigned inflight;
	bool closing;
	pthread_cond_t idle; /* inflight dropped to 0 while closing */
	dlaunch__ep_t *svc;  /* services' request endpoint (send side) */
	pthread_mutex_t svc_lock;
	char instance[64];
	uint64_t node;
	dmem_pool_desc_t default_pool;
	struct dlaunch__runtime *owned; /* set by dlaunch_runtime_start */
	/* A runtime over several nodes (client.c, nodes.c): handles on the
	 * services of other nodes, made when first needed; they say no
	 * goodbye when freed (the node may be gone by then). */
	unsigned nnodes;		   /* 1 on one node */
	char gs_text[DLAUNCH_EP_TEXT_MAX]; /* global services, "" if ours */
	dmem_pool_t *reply_pool;	   /* sub-handle: where its reply
					      channels go (the parent's) */
	bool sub;			   /* a sub-handle */
	struct dlaunch *parent;		   /* sub-handle: the handle on this
					      node's services it came from */
	pthread_mutex_t sub_lock;	   /* guards the fields below */
	struct dlaunch *global;		   /* on the primary's services */
	struct dlaunch **nodes;		   /* [nnodes], by node index */
};

/* Count a call in; -DLAUNCH_E_CLOSED (with a detail message naming fn)
 * once the handle is being closed. */
int dlaunch__enter(dlaunch_t *rt, const char *fn);
void dlaunch__leave(dlaunch_t *rt);
/* Refuse new calls, wake the blocked ones (they return -DLAUNCH_E_CLOSED)
 * and wait for every call to leave.  -DLAUNCH_E_CLOSED if another thread
 * is already closing rt (which it will free: rt must not be used after). */
int dlaunch__close(dlaunch_t *rt, const char *fn);

/* Send m (consumed) and wait up to timeout_ns for its reply, which is
 * opened into *reply (valid until dlaunch__call_done).  Returns the reply
 * status (>= 0) or a negative code.  *conv_out must be given back with
 * dlaunch__call_done whatever the result: the call counts as in flight
 * (dlaunch__enter) until then. */
int dlaunch__call(dlaunch_t *rt, dlaunch__msg_t *m, uint64_t timeout_ns,
		  dlaunch__msg_t *reply, dlaunch__conv_t **conv_out);
void dlaunch__call_done(dlaunch_t *rt, dlaunch__conv_t *conv);
/* Send m (consumed) and return without waiting: the services handle it
 * in order with every other request and send no reply. */
int dlaunch__notify(dlaunch_t *rt, dlaunch__msg_t *m);
/* Connect to the services at svc_text (a handle without instance data),
 * waiting up to timeout_ns for their first answer (0: the default). */
int dlaunch__connect(const char *svc_text, uint64_t timeout_ns,
		     dlaunch_t **rt_out);
void dlaunch__disconnect(dlaunch_t *rt);
/* Read the multi-node variables (DLAUNCH_ENV_GLOBAL, DLAUNCH_ENV_NNODES)
 * of this process's environment into rt. */
void dlaunch__multi_env(dlaunch_t *rt);
/* The handle on the global services: rt itself on the primary node or on
 * one node, else a sub-handle on the primary's services (made on first
 * use, through the transport agents). */
int dlaunch__global(dlaunch_t *rt, dlaunch_t **g_out);
/* A sub-handle of rt on the services at svc_text (another node's). */
int dlaunch__connect_sub(dlaunch_t *rt, const char *svc_text,
			 dlaunch_t **sub_out);

/* nodes.c: the handle on node's local services (rt for this node); the
 * services that know the process pid names (see DLAUNCH_PID_SPAN: an OS
 * pid of this node, or a node and an OS pid there), and its OS pid. */
int dlaunch__on_node(dlaunch_t *rt, uint32_t node, dlaunch_t **h_out);
int dlaunch__pid_handle(dlaunch_t *rt, pid_t pid, dlaunch_t **h_out,
			pid_t *os_pid_out);
/* The registry name under which a node's local services are found. */
#define DLAUNCH_NODE_SERVICES_FMT "dragon.node.%u.services"

/* proc_calls.c: ask for pid's status (wait(2) word in *wstatus_out); peek
 * leaves it for the spawner to collect. */
int dlaunch__status_call(dlaunch_t *rt, pid_t pid, uint64_t timeout_ns,
			 bool peek, int *wstatus_out);

/* procfd.c: without pidfd_open (or for a process on another node, whose
 * services h, a sub-handle of rt, are), a pipe whose read end becomes
 * readable when pid ends (a thread waits for it); returns the fd or
 * -code.  h is rt for a process of this node. */
int dlaunch__exit_fd(dlaunch_t *rt, dlaunch_t *h, pid_t pid);
/* Wait up to timeout_ns for the threads of dlaunch__exit_fd to finish. */
void dlaunch__exit_fd_drain(uint64_t timeout_ns);

/* ---- services (svc.h) ---------------------------------------------------- */

struct dlaunch__server;
struct dlaunch__runtime;

#endif
