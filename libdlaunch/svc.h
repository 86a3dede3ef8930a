/* Private to the services: the runtime side of libdlaunch.
 *
 * Module map, top to bottom; a file calls only the files below it (the
 * handlers are reached through the dispatch table, the I/O loop's events
 * go down to ended.c):
 *
 *   runtime.c      starting a runtime: pools, request endpoint, child
 *                  environment, service threads; freeing it
 *   teardown.c     dlaunch_runtime_stop: end the processes, then free
 *   server.c       the request thread: receive, dispatch, expire waiters
 *
 *   request handlers: decode, call the tables, reply; each registers its
 *   message types with DLAUNCH_SVC_HANDLER
 *   req_client.c   HELLO, BYE: conversations; HOLD: those of this node's
 *                  processes with other nodes' services
 *   req_proc.c     SPAWN, STATUS, SIGNAL              (local services)
 *   req_adopt.c    ADOPT, REAPED, FORWARD             (local services)
 *   req_names.c    NAME_REG/GET/DEL, POOL_GET, CHAN_GET (global services)
 *
 *   local services: processes on this node
 *   spawn.c        starting a process (posix_spawn, its stdio, its watch)
 *   iothread.c     the fd event loop: pidfds, SIGCHLD, output forwarding
 *   ended.c        how processes end: reaping, adopted processes' ends,
 *                  what else goes with a process, answering its waiters
 *
 *   global services: objects of the runtime
 *   registry.c     names, and the pools and channels made for them
 *
 *   tables and the reply path (send no requests, call nothing above)
 *   proctab.c      the process table: every change to a process record;
 *                  sends no messages
 *   rtrec.c        the runtime record in /dev/shm: owner and processes,
 *                  for dragon-cleanup (rtrec.h; calls nothing above)
 *   dispatch.c     the handler table and dispatch of one message
 *   reply.c        the client table and the reply path
 *
 * Threads: the request thread receives service messages and answers them;
 * the I/O thread waits on file descriptors (process pidfds, output pipes,
 * and in the launcher SIGCHLD for adopted orphans) in one epoll loop.  Two
 * threads because a channel is not a file descriptor: requests block in a
 * channel receive, everything fd-based blocks in epoll.  srv->lock guards
 * every table below; no thread blocks on I/O while holding it.
 */
#ifndef DRAGON_DLAUNCH_SVC_H
#define DRAGON_DLAUNCH_SVC_H

#include <signal.h>
#include <time.h>
#include "dlaunch_private.h"
#include "rtrec.h"

/* A STATUS request parked on a running process. */
typedef struct dlaunch__waiter {
	struct dlaunch__waiter *next;
	uint32_t client;
	uint64_t req_id;
	pid_t client_pid;
	bool peek; /* only watching: does not collect the status */
	struct timespec deadline; /* CLOCK_MONOTONIC; tv_sec < 0: none */
} dlaunch__waiter_t;

/* A process record; changed only in proctab.c. */
typedef struct dlaunch__proc {
	struct dlaunch__proc *next;
	pid_t pid;
	int pidfd;
	pid_t spawner; /* pid of the process that asked; 0 once it ended */
	bool ended;
	int wstatus;
	int open_streams; /* forwarded stdout/stderr not yet at EOF */
	bool polled;	  /* no pidfd: the I/O thread checks with waitpid */
	bool retired;	  /* status collected: in the retired FIFO */
	bool adopted;	  /* forked by reaper, not started here */
	bool gone;	  /* adopted: ended, its status not reported yet */
	pid_t reaper;	  /* adopted: its parent; 0 once that ended */
	int recslot;	  /* its slot in the runtime record; -1: none */
	struct dlaunch__proc *rnext; /* retired FIFO, oldest first */
	dlaunch__waiter_t *waiters;
} dlaunch__proc_t;

typedef struct dlaunch__client {
	struct dlaunch__client *next;
	uint32_t id;
	pid_t pid;
	dlaunch__ep_t *ep; /* send side of its reply endpoint */
	char text[DLAUNCH_EP_TEXT_MAX];
	uint64_t node; /* node of its reply endpoint: where pid runs */
	bool remote;   /* on another node: pid is not one of this node's */
} dlaunch__client_t;

/* A conversation a process of this node holds with another node's
 * services (HOLD): when the process ends, those services are told
 * (a BYE for it), so that its record there does not outlive it. */
typedef struct dlaunch__held {
	struct dlaunch__held *next;
	pid_t pid;
	uint32_t client; /* its id there */
	char svc[DLAUNCH_EP_TEXT_MAX];
} dlaunch__held_t;

typedef struct dlaunch__name {
	struct dlaunch__name *next;
	char *name;
	int kind;
	size_t len;
	uint8_t *value;
} dlaunch__name_t;

/* A pool made by POOL_GET. */
typedef struct dlaunch__rpool {
	struct dlaunch__rpool *next;
	dmem_pool_t *pool;
} dlaunch__rpool_t;

typedef struct dlaunch__server {
	pthread_mutex_t lock;
	pthread_cond_t changed; /* a process ended or a stream closed */
	char instance[64];
	bool stopping;	     /* refuse new spawns */
	dlaunch__rec_t *rec; /* the runtime record (rtrec.h); NULL: none */
	/* process table (proctab.c) */
	dlaunch__proc_t *procs;
	dlaunch__proc_t *retired, *retired_tail;
	int nretired;
	int npolled; /* running processes without a pidfd */
	/* clients (reply.c) */
	dlaunch__client_t *clients;
	uint32_t next_client;
	dlaunch__held_t *held; /* this node's clients of other nodes */
	dlaunch__held_t *byes; /* ... whose process ended: their goodbyes
				  are sent outside the lock */
	/* registry (registry.c) */
	dlaunch__name_t *names;
	dlaunch__rpool_t *pools; /* made by POOL_GET, removed with us */
	unsigned npools;
	dmem_pool_t *default_pool;
	dmem_pool_t *inf_pool; /* infrastructure channels */
	dchan_t *chan_anchor;  /* keeps default_pool libdchan's mapping */
	/* local services */
	char **env; /* runtime variables every child gets */
	bool adopt; /* launcher: subreaper, reap orphans on SIGCHLD */
	dlaunch_output_fn *output; /* forwarded output's receiver, or NULL */
	void *output_arg;
	/* threads (server.c, iothread.c) */
	dlaunch__ep_t *req; /* request endpoint (receive side) */
	pthread_t req_thread, io_thread;
	int epfd, wakefd, sigfd;
	bool io_stop;  /* the wake event means: leave the loop */
	bool io_drain; /* the wake event means: drain and close streams */
	int live_streams;
	void *io_list; /* iothread.c entries */
} dlaunch__server_t;

/* ---- reply.c: clients and replies (lock held) ---------------------------- */

dlaunch__client_t *dlaunch__client_find(dlaunch__server_t *s, uint32_t id);
/* A new conversation of pid whose reply endpoint is text; NULL when the
 * endpoint cannot be opened (logged) or memory is short. */
dlaunch__client_t *dlaunch__client_add(dlaunch__server_t *s, pid_t pid,
				       const char *text);
/* A conversation ended: its endpoint was destroyed by its owner. */
void dlaunch__client_remove(dlaunch__server_t *s, uint32_t id);
/* Process pid of this node ended: its conversations go, their endpoints
 * destroyed (a client of another node with the same pid is not it). */
void dlaunch__client_forget_pid(dlaunch__server_t *s, pid_t pid);
/* Process pid of this node holds conversation `client` with the services
 * at svc (another node's): say goodbye there for it when it ends. */
int dlaunch__client_hold(dlaunch__server_t *s, pid_t pid, const char *svc,
			 uint32_t client);
/* ... it closed that conversation itself: forget it. */
void dlaunch__client_unhold(dlaunch__server_t *s, pid_t pid, const char *svc,
			    uint32_t client);
/* Process pid ended: the goodbyes for its conversations elsewhere are
 * queued (s->byes); dlaunch__client_send_byes sends them. */
void dlaunch__client_release_held(dlaunch__server_t *s, pid_t pid);
/* Send the queued goodbyes.  Called WITHOUT the lock: a goodbye to a node
 * that is gone waits until the transport gives up on it, and the
 * services' other work must not wait with it. */
void dlaunch__client_send_byes(dlaunch__server_t *s);
void dlaunch__clients_free(dlaunch__server_t *s);

/* Send m (consumed) to client as the reply to req_id. */
void dlaunch__svc_reply(dlaunch__server_t *s, uint32_t client, uint64_t req_id,
			dlaunch__msg_t *m);
/* A reply with status only. */
void dlaunch__svc_reply_status(dlaunch__server_t *s, uint32_t client,
			       uint64_t req_id, int status);
/* A reply with status code and a detail message; returns code. */
int dlaunch__svc_reply_err(dlaunch__server_t *s, uint32_t client,
			   uint64_t req_id, int code, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/* The answer to a STATUS request: the wait(2) status word. */
void dlaunch__svc_reply_wstatus(dlaunch__server_t *s, uint32_t client,
				uint64_t req_id, int wstatus);

/* ---- dispatch.c ---------------------------------------------------------- */

typedef void (*dlaunch__svc_handler_fn)(dlaunch__server_t *s,
					const dlaunch__msg_hdr_t *h,
					dlaunch__msg_t *m);
#define DLAUNCH_MSG_TYPES 64 /* request types are below */

/* Make fn the handler of requests of type (at load time). */
void dlaunch__svc_handler_add(uint16_t type, dlaunch__svc_handler_fn fn);

/* Register fn for type (a DLAUNCH_MSG_* name) when the library is loaded,
 * from the file that defines fn: the dispatcher names no handler. */
#define DLAUNCH_SVC_HANDLER(type, fn)                                          \
	static void __attribute__((constructor)) register_##type(void)         \
	{                                                                      \
		dlaunch__svc_handler_add(type, fn);                            \
	}

/* Open and handle one message (lock held); false on STOP. */
bool dlaunch__svc_dispatch(dlaunch__server_t *s, const uint8_t *buf,
			   size_t len);

/* ---- proctab.c: the process table (lock held) ---------------------------- */

dlaunch__proc_t *dlaunch__proc_find(dlaunch__server_t *s, pid_t pid);
/* A new record for running process pid (a kept record of an older process
 * with that pid is dropped).  pidfd < 0: none. */
int dlaunch__proc_add(dlaunch__server_t *s, pid_t pid, int pidfd, pid_t spawner,
		      pid_t reaper, dlaunch__proc_t **p_out);
/* Remove p from the table and free it. */
void dlaunch__proc_unlink(dlaunch__server_t *s, dlaunch__proc_t *p);
void dlaunch__procs_free(dlaunch__server_t *s);
/* p has no pidfd: the I/O thread checks it with waitpid. */
void dlaunch__proc_set_polled(dlaunch__server_t *s, dlaunch__proc_t *p);
/* One more forwarded stream of p is open. */
void dlaunch__proc_stream_opened(dlaunch__proc_t *p);
/* A forwarded stream of pid reached end of file. */
void dlaunch__proc_stream_closed(dlaunch__server_t *s, pid_t pid);
/* Record that p ended with wstatus: its waiters are taken off it and
 * returned for the caller to answer (and free); the spawner's own wait
 * among them collects the status. */
dlaunch__waiter_t *dlaunch__proc_end(dlaunch__server_t *s, dlaunch__proc_t *p,
				     int wstatus);
/* Client client_pid collected p's status (peek: only looked). */
void dlaunch__proc_collected(dlaunch__server_t *s, dlaunch__proc_t *p,
			     pid_t client_pid, bool peek);
/* Park a STATUS request on p until it ends or the timeout. */
int dlaunch__proc_park(dlaunch__proc_t *p, const dlaunch__waiter_t *w,
		       uint64_t timeout_ns);
/* Take off the first waiter whose deadline passed, with its process in
 * *p_out; NULL when none.  *next_ms_out: ms to the next deadline or -1. */
dlaunch__waiter_t *dlaunch__proc_expired(dlaunch__server_t *s,
					 dlaunch__proc_t **p_out,
					 int *next_ms_out);
/* Process pid ended: the processes it started lose their spawner. */
void dlaunch__proc_spawner_gone(dlaunch__server_t *s, pid_t pid);
/* Adopted processes of reaper pid lose their reaper; returns the first of
 * them that has already ended (its status must be found) or NULL. */
dlaunch__proc_t *dlaunch__proc_reaper_gone(dlaunch__server_t *s, pid_t pid);
/* Adopted p ended; its status has not been reported yet. */
void dlaunch__proc_set_gone(dlaunch__proc_t *p);
/* Adopted p ended and nobody will collect its status. */
void dlaunch__proc_release(dlaunch__proc_t *p);
/* Trim the kept statuses to DLAUNCH_STATUS_KEEP. */
void dlaunch__proc_trim(dlaunch__server_t *s);
/* Processes still running. */
int dlaunch__proc_nrunning(dlaunch__server_t *s);
/* Send signo to p (through its pidfd when adopted); 0 or -errno. */
int dlaunch__proc_kill(dlaunch__proc_t *p, int signo);
/* Signal every running process. */
void dlaunch__proc_signal_all(dlaunch__server_t *s, int signo);

/* ---- registry.c (lock held) ---------------------------------------------- */

dlaunch__name_t *dlaunch__name_find(dlaunch__server_t *s, const char *name);
int dlaunch__name_insert(dlaunch__server_t *s, const char *name, int kind,
			 const void *v, size_t len);
void dlaunch__name_remove(dlaunch__server_t *s, dlaunch__name_t *n);
/* A pool or channel made for name (its descriptor registered under it). */
int dlaunch__registry_make_pool(dlaunch__server_t *s, const char *name,
				uint64_t size, dlaunch__name_t **n_out);
int dlaunch__registry_make_channel(dlaunch__server_t *s, const char *name,
				   uint64_t capacity, uint64_t slot_size,
				   dlaunch__name_t **n_out);
/* Make the anchor channel of the default pool (see registry.c). */
int dlaunch__registry_anchor(dlaunch__server_t *s);
/* The runtime's pools give back what process pid still held. */
void dlaunch__registry_reclaim(dlaunch__server_t *s, pid_t pid, size_t *nfreed);
void dlaunch__registry_free(dlaunch__server_t *s);

/* ---- ended.c (lock held) ------------------------------------------------- */

/* Process pid was reaped with wstatus. */
void dlaunch__svc_reaped(dlaunch__server_t *s, pid_t pid, int wstatus);
/* The pidfd of adopted process p became readable. */
void dlaunch__svc_adopted_ended(dlaunch__server_t *s, dlaunch__proc_t *p);
/* Adopted p ended and its reaper reported wstatus, or is gone (finish
 * with the status the kernel still has). */
void dlaunch__svc_adopted_finish(dlaunch__server_t *s, dlaunch__proc_t *p,
				 int wstatus);
/* Answer the waiters whose deadline passed; returns ms to the next one,
 * or -1. */
int dlaunch__svc_expire_waiters(dlaunch__server_t *s);
/* Fields 3 (state), 4 (ppid) and 52 (exit_code, the wait status) of
 * /proc/<pid>/stat; exit_code is -1 where the kernel does not show it. */
int dlaunch__proc_stat(pid_t pid, char *state, pid_t *ppid, int *exit_code);

/* ---- iothread.c ---------------------------------------------------------- */

int dlaunch__io_start(dlaunch__server_t *s);
void dlaunch__io_stop(dlaunch__server_t *s);
/* Forward fd (a pipe's read end; a copy is kept) to out (1 or 2) for pid. */
int dlaunch__io_forward(dlaunch__server_t *s, int fd, int out, pid_t pid);
/* Watch pidfd of a process for its end. */
int dlaunch__io_watch(dlaunch__server_t *s, int pidfd, pid_t pid);
/* Have the loop pass on what the forwarded pipes hold and close them all,
 * whoever still holds their write ends (teardown, once the processes
 * ended). */
int dlaunch__io_drain(dlaunch__server_t *s);
/* Wake the loop so that it checks the polled processes on a timer. */
int dlaunch__io_poll_wake(dlaunch__server_t *s);

/* ---- spawn.c (lock held) ------------------------------------------------- */

typedef struct dlaunch__spawn {
	const char *path;
	char **argv;
	char **base_env; /* NULL: none */
	char **env;	 /* added */
	uint32_t flags;
	const char *cwd;
	int stdio[3];
	const char *stdio_path[3];
} dlaunch__spawn_t;

/* Start a process.  Returns its pid or a negative code with the reason in
 * dlaunch_errmsg(). */
int dlaunch__spawn(dlaunch__server_t *s, const dlaunch__spawn_t *sp,
		   pid_t spawner);

/* ---- server.c ------------------------------------------------------------ */

int dlaunch__svc_start_threads(dlaunch__server_t *s);

/* ---- runtime.c ----------------------------------------------------------- */

void dlaunch__runtime_free(struct dlaunch__runtime *r);
dlaunch__server_t *dlaunch__runtime_server(struct dlaunch__runtime *r);

#endif
