/* Private to the services (server.c, proc.c, procstat.c, adopt.c,
 * iothread.c, names.c, reply.c, runtime.c, teardown.c).
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

typedef struct svc_waiter {
	struct svc_waiter *next;
	uint32_t client;
	uint64_t req_id;
	pid_t client_pid;
	bool peek; /* only watching: does not collect the status */
	struct timespec deadline; /* CLOCK_MONOTONIC; tv_sec < 0: none */
} svc_waiter_t;

typedef struct svc_proc {
	struct svc_proc *next;
	pid_t pid;
	int pidfd;
	pid_t spawner; /* pid of the process that asked; 0 once it ended */
	bool ended;
	int wstatus;
	int open_streams; /* forwarded stdout/stderr not yet at EOF */
	bool polled;	  /* no pidfd: the I/O thread checks with waitpid */
	bool retired;	  /* status collected: in the retired FIFO */
	bool adopted;	  /* forked by reaper, not started here (adopt.c) */
	bool gone;	  /* adopted: ended, its status not reported yet */
	pid_t reaper;	  /* adopted: its parent; 0 once that ended */
	struct svc_proc *rnext; /* retired FIFO, oldest first */
	svc_waiter_t *waiters;
} svc_proc_t;

typedef struct svc_client {
	struct svc_client *next;
	uint32_t id;
	pid_t pid;
	dlaunch__ep_t *ep; /* send side of its reply endpoint */
	char text[DLAUNCH_EP_TEXT_MAX];
} svc_client_t;

typedef struct svc_name {
	struct svc_name *next;
	char *name;
	int kind;
	size_t len;
	uint8_t *value;
} svc_name_t;

typedef struct svc_pool {
	struct svc_pool *next;
	dmem_pool_t *pool;
} svc_pool_t;

/* Called on the I/O thread when a process has been reaped, and when the
 * last of its forwarded streams reached end of file. */
typedef void (*svc_exit_cb)(void *arg, pid_t pid, int wstatus);

typedef struct dlaunch__server {
	pthread_mutex_t lock;
	pthread_cond_t changed; /* a process ended or a stream closed */
	svc_proc_t *procs;
	svc_proc_t *retired, *retired_tail; /* see procstat.c */
	int nretired;
	int npolled; /* running processes without a pidfd */
	svc_client_t *clients;
	svc_name_t *names;
	svc_pool_t *pools; /* made by POOL_GET, reclaimed and removed with us */
	dmem_pool_t *default_pool;
	dmem_pool_t *inf_pool; /* infrastructure channels */
	dchan_t *chan_anchor;  /* keeps default_pool libdchan's mapping */
	unsigned npools;
	uint32_t next_client;
	char instance[64];
	char **env;	    /* runtime variables every child gets */
	bool stopping;	    /* refuse new spawns */
	bool adopt;	    /* launcher: subreaper, reap orphans on SIGCHLD */
	dlaunch__ep_t *req; /* request endpoint (receive side) */
	pthread_t req_thread, io_thread;
	int epfd, wakefd, sigfd;
	bool io_stop; /* the wake event means: leave the loop */
	int live_streams;
	void *io_list; /* iothread.c entries */
	svc_exit_cb on_exit;
	void *on_exit_arg;
} dlaunch__server_t;

/* reply.c: clients and replies (lock held) */
svc_client_t *dlaunch__client_find(dlaunch__server_t *s, uint32_t id);
/* A new conversation of pid whose reply endpoint is text; NULL when the
 * endpoint cannot be opened (logged) or memory is short. */
svc_client_t *dlaunch__client_add(dlaunch__server_t *s, pid_t pid,
				  const char *text);
/* A conversation ended: its endpoint was destroyed by its owner. */
void dlaunch__client_remove(dlaunch__server_t *s, uint32_t id);
/* Process pid ended: its conversations go, their endpoints destroyed. */
void dlaunch__client_forget_pid(dlaunch__server_t *s, pid_t pid);
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

/* server.c */
int svc_start_threads(dlaunch__server_t *s);

/* names.c (server side) */
void svc_names_request(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
		       dlaunch__msg_t *m);
void svc_names_free(dlaunch__server_t *s);
/* Make the anchor channel of the default pool (see names.c). */
int svc_chan_anchor(dlaunch__server_t *s);

/* proc.c */
typedef struct svc_spawn {
	const char *path;
	char **argv;
	char **base_env; /* NULL: none */
	char **env;	 /* added */
	uint32_t flags;
	const char *cwd;
	int stdio[3];
	const char *stdio_path[3];
} svc_spawn_t;

/* Start a process; lock held.  Returns its pid or a negative code with
 * the reason in dlaunch_errmsg(). */
int svc_spawn(dlaunch__server_t *s, const svc_spawn_t *sp, pid_t spawner);
svc_proc_t *svc_proc_find(dlaunch__server_t *s, pid_t pid);
/* Remove p from the table and free it (lock held). */
void svc_proc_unlink(dlaunch__server_t *s, svc_proc_t *p);

/* procstat.c (lock held) */
/* Record that pid ended with wstatus. */
void svc_proc_reaped(dlaunch__server_t *s, pid_t pid, int wstatus);
void svc_status_request(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
			dlaunch__msg_t *m);
/* Retire p's record if nobody is owed its status any more. */
void svc_proc_settle(dlaunch__server_t *s, svc_proc_t *p);
void svc_retired_drop(dlaunch__server_t *s, svc_proc_t *p);
void svc_retired_clear(dlaunch__server_t *s);
void svc_signal_request(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
			dlaunch__msg_t *m);
/* Answer waiters whose deadline passed; returns ms to the next one or -1. */
int svc_expire_waiters(dlaunch__server_t *s);
/* Processes still running (lock held). */
int svc_nrunning(dlaunch__server_t *s);
/* Signal every running process (lock held). */
void svc_signal_all(dlaunch__server_t *s, int signo);
void svc_procs_free(dlaunch__server_t *s);
/* A forwarded stream of pid reached end of file (lock held). */
void svc_proc_stream_closed(dlaunch__server_t *s, pid_t pid);

/* adopt.c (lock held) */
void svc_adopt_request(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
		       dlaunch__msg_t *m);
void svc_reaped_request(dlaunch__server_t *s, const dlaunch__msg_hdr_t *h,
			dlaunch__msg_t *m);
/* The pidfd of adopted process p became readable. */
void svc_adopted_ended(dlaunch__server_t *s, svc_proc_t *p);
/* Process pid ended: the processes it adopted lose their reaper. */
void svc_adopted_orphan(dlaunch__server_t *s, pid_t pid);
/* Send signo to p (through its pidfd when adopted); 0 or -errno. */
int svc_proc_kill(svc_proc_t *p, int signo);

/* iothread.c */
int svc_io_start(dlaunch__server_t *s);
void svc_io_stop(dlaunch__server_t *s);
/* Forward fd (a pipe's read end, consumed) to out (1 or 2) for pid. */
int svc_io_forward(dlaunch__server_t *s, int fd, int out, pid_t pid);
/* Watch pidfd of a process for its end. */
int svc_io_watch(dlaunch__server_t *s, int pidfd, pid_t pid);
/* No pidfd for p: have the I/O thread check it periodically (lock held). */
int svc_io_poll_proc(dlaunch__server_t *s, svc_proc_t *p);

/* runtime.c */
void dlaunch__runtime_free(struct dlaunch__runtime *r);
dlaunch__server_t *dlaunch__runtime_server(struct dlaunch__runtime *r);

#endif
