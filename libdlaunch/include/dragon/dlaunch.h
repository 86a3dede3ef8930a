/* libdlaunch — the Dragon runtime: launcher, local and global services.
 *
 * Public interface.  Functions return 0 or a non-negative count on success
 * and a negative error code on failure: a negative errno, or one of the
 * DLAUNCH_E* codes below; dlaunch_strerror() turns either into text and
 * dlaunch_errmsg() gives this thread's detail message for its last failure.
 *
 * A process started by the runtime (the head process of `dragon PROG`, and
 * everything started through dlaunch_spawn) finds the runtime through its
 * environment (see "Environment" below).  It calls dlaunch_attach() once and
 * then uses the handle for everything else.  A program that runs outside any
 * runtime may start one of its own with dlaunch_runtime_start() (the
 * "embedded" runtime Python uses when it was not started by `dragon`).
 *
 * Conventions (see dlaunch(3) pages):
 *  - Output arguments come last and are written only on success.
 *  - Timeouts are relative, in nanoseconds: 0 tries once, DLAUNCH_FOREVER
 *    waits without limit.
 *  - Processes are named by their OS pid: the pid dlaunch_spawn returns is
 *    the real one, usable with kill(2), /proc and pidfd_open(2).
 *  - A dlaunch_t is process-local and may be used by several threads at
 *    once.  It must not be used in a child after fork(2); attach again.
 *  - Closing a handle (dlaunch_detach, dlaunch_runtime_stop) while other
 *    threads are inside calls on it is safe: those calls return
 *    -DLAUNCH_E_CLOSED at once and the handle is freed after they left.
 *    A call that starts after the close returned uses freed memory.
 */
#ifndef DRAGON_DLAUNCH_H
#define DRAGON_DLAUNCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <dragon/dtransport.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DLAUNCH_EXPORT __attribute__((visibility("default")))

#define DLAUNCH_VERSION_MAJOR 0
#define DLAUNCH_VERSION_MINOR 1
#define DLAUNCH_VERSION_PATCH 0
/* One integer, comparable: (major << 16) | (minor << 8) | patch. */
#define DLAUNCH_VERSION_NUMBER                                                 \
	((DLAUNCH_VERSION_MAJOR << 16) | (DLAUNCH_VERSION_MINOR << 8) |        \
	 DLAUNCH_VERSION_PATCH)

/* Library error codes are negative and start past the errno range. */
#define DLAUNCH_ERRBASE 1300
enum dlaunch_error {
	DLAUNCH_E_NORUNTIME = DLAUNCH_ERRBASE + 1, /* no runtime in the env */
	DLAUNCH_E_ENV = DLAUNCH_ERRBASE + 2,	   /* malformed DRAGON_* var */
	DLAUNCH_E_PROTO = DLAUNCH_ERRBASE + 3,	   /* bad service message */
	DLAUNCH_E_VERSION = DLAUNCH_ERRBASE + 4,   /* service speaks another
						      message version */
	DLAUNCH_E_SERVICES = DLAUNCH_ERRBASE + 5,  /* services not answering */
	DLAUNCH_E_NOPROC = DLAUNCH_ERRBASE + 6,	   /* pid not known to the
						      runtime */
	DLAUNCH_E_SPAWN = DLAUNCH_ERRBASE + 7,	   /* program could not be
						      started (errmsg says why) */
	DLAUNCH_E_NONAME = DLAUNCH_ERRBASE + 8,	   /* name not registered */
	DLAUNCH_E_KIND = DLAUNCH_ERRBASE + 9,	   /* name holds another kind
						      of object */
	DLAUNCH_E_CLOSED = DLAUNCH_ERRBASE + 10	   /* runtime shutting down */
};

/* Timeout meaning "wait as long as it takes". */
#define DLAUNCH_FOREVER UINT64_MAX

/* The version of the library actually loaded, as DLAUNCH_VERSION_NUMBER; it may
 * be newer than the header a program was compiled with. */
DLAUNCH_EXPORT unsigned dlaunch_version(void);

/* Text for an error code returned by this library or a layer below it (a
 * negative errno, or a library code).  Never NULL; static storage. */
DLAUNCH_EXPORT const char *dlaunch_strerror(int err);

/* Detail message for the most recent failing libdlaunch call in this thread
 * (which process, which name, what to do).  Never NULL ("" if none); valid
 * until the next failing libdlaunch call in this thread. */
DLAUNCH_EXPORT const char *dlaunch_errmsg(void);

/* ---- environment ---------------------------------------------------------
 * Variables the runtime sets in every process it starts (the names are part
 * of the ABI; values are text):
 */
#define DLAUNCH_ENV_INSTANCE "DRAGON_INSTANCE" /* runtime instance id */
#define DLAUNCH_ENV_NODE_ID  "DRAGON_NODE_ID"  /* node id (dmem_node_id) */
#define DLAUNCH_ENV_DEFAULT_POOL                                               \
	"DRAGON_DEFAULT_PD" /* default pool, text                              \
			       descriptor */
#define DLAUNCH_ENV_SERVICES                                                   \
	"DRAGON_LS_CHANNEL"			    /* services' request       \
						       endpoint, text form */
#define DLAUNCH_ENV_MSG_VERSION "DRAGON_LS_VERSION" /* message version */
#define DLAUNCH_ENV_INFRA_POOL                                                 \
	"DRAGON_INF_PD" /* infrastructure pool, text                           \
			     descriptor */
/* In a runtime over several nodes only (absent on one node): */
#define DLAUNCH_ENV_GLOBAL                                                     \
	"DRAGON_GS_CHANNEL" /* global services' request endpoint (the          \
			       primary node's services), text form */
#define DLAUNCH_ENV_NNODES "DRAGON_NNODES" /* nodes in the runtime */

/* 1 if this process's environment names a runtime (dlaunch_attach may
 * succeed), 0 if not. */
DLAUNCH_EXPORT int dlaunch_in_runtime(void);

/* ---- the runtime handle -------------------------------------------------- */

/* Opaque: this process's connection to the runtime's services. */
typedef struct dlaunch dlaunch_t;

/*
 * Connect to the runtime named by the environment (DRAGON_INSTANCE and the
 * other variables above).  attr is reserved (pass NULL).  *rt_out is owned
 * by the caller; release it with dlaunch_detach.
 * -DLAUNCH_E_NORUNTIME if the environment names no runtime,
 * -DLAUNCH_E_ENV if it is malformed, -DLAUNCH_E_SERVICES if the services do
 * not answer, -DLAUNCH_E_VERSION on a message version mismatch.
 */
DLAUNCH_EXPORT int dlaunch_attach(const void *attr, dlaunch_t **rt_out);

/* Disconnect and free the handle.  Processes started through it keep
 * running.  Calls of other threads blocked on rt return -DLAUNCH_E_CLOSED
 * and have left before it is freed.  The handle of dlaunch_runtime_start
 * is stopped as by dlaunch_runtime_stop(rt, 10 s).  Consumes rt;
 * -DLAUNCH_E_CLOSED if another thread is already closing it. */
DLAUNCH_EXPORT int dlaunch_detach(dlaunch_t *rt);

/* Bits of dlaunch_runtime_attr_t.field_mask. */
#define DLAUNCH_RT_ATTR_POOL_SIZE (1u << 0)
#define DLAUNCH_RT_ATTR_INSTANCE  (1u << 1)
#define DLAUNCH_RT_ATTR_LOG_LEVEL (1u << 2)
#define DLAUNCH_RT_ATTR_FLAGS	  (1u << 3)
#define DLAUNCH_RT_ATTR_LOG_FD	  (1u << 4)
#define DLAUNCH_RT_ATTR_TIMEOUT	  (1u << 5)
#define DLAUNCH_RT_ATTR_ENV	  (1u << 6)
#define DLAUNCH_RT_ATTR_OUTPUT	  (1u << 7)

/* dlaunch_runtime_attr_t.flags */
/* Set the variables of "Environment" in this process too, so that children
 * this process forks itself (and dlaunch_attach here) find the runtime. */
#define DLAUNCH_RT_F_SETENV (1u << 0)
/* For launchers: make this process the subreaper of everything the runtime
 * starts (PR_SET_CHILD_SUBREAPER), reap adopted orphans and end them at
 * stop.  The caller must block SIGCHLD in every thread before the call. */
#define DLAUNCH_RT_F_ADOPT  (1u << 1)

/* Log levels (DRAGON_DEBUG=1 means DLAUNCH_LOG_DEBUG). */
enum dlaunch_log_level {
	DLAUNCH_LOG_ERROR = 0,
	DLAUNCH_LOG_WARNING = 1,
	DLAUNCH_LOG_INFO = 2,
	DLAUNCH_LOG_DEBUG = 3
};

/* Where forwarded output goes instead of the runtime's own stdout and
 * stderr (DLAUNCH_RT_ATTR_OUTPUT): called on the runtime's I/O thread with
 * output of the process pid for its fd (1 stdout, 2 stderr), len > 0
 * bytes of whole lines (only a line longer than 1 MiB comes in pieces).
 * data is borrowed for the call.  The next output waits for the call to
 * return, which gives the callee backpressure; it must not call the
 * runtime back. */
typedef void dlaunch_output_fn(void *arg, pid_t pid, int fd, const char *data,
			       size_t len);

typedef struct dlaunch_runtime_attr {
	uint64_t field_mask;  /* DLAUNCH_RT_ATTR_* for the fields set */
	uint64_t pool_size;   /* default pool bytes; default
				 $DRAGON_DEFAULT_SEG_SZ, else 4 GiB sparse */
	const char *instance; /* instance id [A-Za-z0-9_-], at most
				 DMEM_INSTANCE_MAX (48) chars;
				 default: generated.  Borrowed. */
	int32_t log_level;    /* enum dlaunch_log_level */
	uint32_t flags;	      /* DLAUNCH_RT_F_* */
	int32_t log_fd;	      /* where the services log (default: stderr);
				 stays the caller's */
	uint32_t reserved0;
	uint64_t startup_timeout_ns; /* deadline of each start-up phase
					(default pool, infrastructure pool,
					infrastructure channels, services);
					default 30 s */
	char *const *env;	   /* NULL-terminated "NAME=value" strings every
				      process the runtime starts gets, over what
				      its starter passes (a multi-node backend
				      gives its node's gateway channel here).
				      Copied. */
	dlaunch_output_fn *output; /* forwarded output's receiver;
				      default: write it to fd 1 and 2 */
	void *output_arg;	   /* output's first argument */
	uint64_t reserved[1];	   /* zero */
} dlaunch_runtime_attr_t;

/*
 * Start a single-node runtime inside this process: create the default pool
 * and the infrastructure channels, and run the local and global services
 * on background threads.  *rt_out is connected to it as by dlaunch_attach.
 * Processes it starts get the runtime's environment.  Stop it with
 * dlaunch_runtime_stop, which ends every process it started and removes
 * every segment it made.  attr may be NULL.  A phase that fails or runs
 * past its deadline stops the start-up; dlaunch_errmsg() names the phase
 * ("start-up phase 'services' ...") and the result is its error, or
 * -ETIMEDOUT.
 */
DLAUNCH_EXPORT int dlaunch_runtime_start(const dlaunch_runtime_attr_t *attr,
					 dlaunch_t **rt_out);

/*
 * Stop a runtime started by dlaunch_runtime_start: send SIGTERM to the
 * processes it started that still run, wait up to timeout_ns for them
 * (DLAUNCH_FOREVER: no limit), SIGKILL the rest, reap them, stop the
 * services and remove the pool segments.  Consumes rt.  Calls of other
 * threads on rt return -DLAUNCH_E_CLOSED at once (a dlaunch_wait does not
 * wait for its process to be ended) and have left before rt is freed.
 * Channel handles of the default pool this process still has keep working
 * until dchan_detach (libdchan keeps its own mapping of the pool).
 */
DLAUNCH_EXPORT int dlaunch_runtime_stop(dlaunch_t *rt, uint64_t timeout_ns);

/* The instance id of the runtime (static for the handle's life), and the
 * node id of this process's node. */
DLAUNCH_EXPORT const char *dlaunch_instance(const dlaunch_t *rt);
DLAUNCH_EXPORT uint64_t dlaunch_node(const dlaunch_t *rt);

/* How many nodes the runtime spans (1 on one node).  Node indexes run
 * from 0 to the count - 1; this process's node has the index
 * dlaunch_node(rt) - 1 and the primary node (global services, the head
 * process) index 0. */
DLAUNCH_EXPORT unsigned dlaunch_node_count(const dlaunch_t *rt);

/* ---- processes ---------------------------------------------------------- */

/*
 * Pids of processes on other nodes.  A process of the caller's node is
 * named by its OS pid; a process of node index n (another node) by
 * DLAUNCH_PID_ON(n, its OS pid there), a number above every pid a kernel
 * can hand out (DLAUNCH_PID_SPAN is the largest possible pid_max), so
 * that it is never taken for a process of this node with the same OS pid
 * (kill(2) on it fails with ESRCH).  dlaunch_wait, dlaunch_signal and
 * dlaunch_proc_fd take either.  DLAUNCH_PID_NODE and DLAUNCH_PID_OS take one
 * apart (for a pid of this node, DLAUNCH_PID_NODE gives -1).
 */
#define DLAUNCH_PID_SPAN (1 << 22)
#define DLAUNCH_PID_ON(node, pid)                                              \
	((pid_t)(DLAUNCH_PID_SPAN * ((node) + 1) + (pid)))
#define DLAUNCH_PID_NODE(pid) ((int)((pid) / DLAUNCH_PID_SPAN) - 1)
#define DLAUNCH_PID_OS(pid)   ((pid_t)((pid) % DLAUNCH_PID_SPAN))

/* What a started process's stdin, stdout or stderr is connected to. */
enum dlaunch_stdio {
	DLAUNCH_STDIO_DEFAULT = 0, /* stdin: /dev/null; stdout, stderr:
				      FORWARD */
	DLAUNCH_STDIO_FORWARD = 1, /* to the launcher's own stdout/stderr,
				      line by line (lines of different processes
				      never mix) */
	DLAUNCH_STDIO_DEVNULL = 2, /* /dev/null */
	DLAUNCH_STDIO_INHERIT = 3, /* the services' own descriptor (the
				      launcher's terminal), unbuffered */
	DLAUNCH_STDIO_FILE = 4,	   /* the file at stdio_path[i] (opened by the
				      services; stdout/stderr append, created
				      mode 0600) */
	DLAUNCH_STDIO_STDOUT = 5   /* stderr only: same as stdout */
};

/* Bits of dlaunch_spawn_attr_t.field_mask. */
#define DLAUNCH_SPAWN_ATTR_ENV	 (1u << 0)
#define DLAUNCH_SPAWN_ATTR_CWD	 (1u << 1)
#define DLAUNCH_SPAWN_ATTR_STDIO (1u << 2)
#define DLAUNCH_SPAWN_ATTR_FLAGS (1u << 3)
#define DLAUNCH_SPAWN_ATTR_NODE	 (1u << 4)

/* dlaunch_spawn_attr_t.flags */
/* env replaces the environment instead of being added to the caller's. */
#define DLAUNCH_SPAWN_F_ENV_REPLACE (1u << 0)
/* A path without a slash is searched in the new environment's PATH (like
 * execvp); without this flag it is taken relative to cwd. */
#define DLAUNCH_SPAWN_F_SEARCH_PATH (1u << 1)

typedef struct dlaunch_spawn_attr {
	uint64_t field_mask; /* DLAUNCH_SPAWN_ATTR_* for the fields set */
	char *const *env;    /* NULL-terminated "NAME=value" strings:
				added to (or, F_ENV_REPLACE, replacing)
				the caller's environment.  Borrowed. */
	const char *cwd;     /* working directory; default: the
				caller's.  Borrowed. */
	int32_t stdio[3];    /* enum dlaunch_stdio for fd 0, 1, 2 */
	const char
		*stdio_path[3]; /* paths for DLAUNCH_STDIO_FILE.  Borrowed. */
	uint32_t flags;		/* DLAUNCH_SPAWN_F_* */
	uint32_t node;		/* index of the node to start it on (0 ..
				   dlaunch_node_count - 1); default: this one */
	uint64_t reserved[6];	/* zero */
} dlaunch_spawn_attr_t;

/*
 * Start a process: the services execute path with argv (NULL-terminated;
 * argv[0] is what the program sees as its name).  The runtime's variables
 * (see "Environment") are always set in the new process, so it can attach.
 * The process is a child of the services, not of the caller; wait for it
 * with dlaunch_wait.  When the call returns the exec has succeeded:
 * a program that cannot be executed gives -DLAUNCH_E_SPAWN (or -ENOENT,
 * -EACCES) and no process.  *pid_out receives the OS pid.
 * attr may be NULL (caller's environment and cwd, stdin /dev/null, output
 * forwarded).  All arguments are borrowed.
 * In a runtime over several nodes, DLAUNCH_SPAWN_ATTR_NODE starts the
 * process on node attr->node (its output is forwarded to the launcher's
 * terminal like any other); on another node than the caller's, *pid_out
 * receives the pid that names it from here, DLAUNCH_PID_ON(node, OS pid),
 * which dlaunch_wait, dlaunch_signal and dlaunch_proc_fd take from any
 * process of this node.  -EINVAL for a node index past dlaunch_node_count.
 */
DLAUNCH_EXPORT int dlaunch_spawn(dlaunch_t *rt, const char *path,
				 char *const argv[],
				 const dlaunch_spawn_attr_t *attr,
				 pid_t *pid_out);

/* How many collected statuses the runtime keeps for later waits. */
#define DLAUNCH_STATUS_KEEP 1024

/* How a process ended. */
typedef struct dlaunch_status {
	int32_t exited; /* 1: exit() with code; 0: killed by signo */
	int32_t code;	/* exit code (0..255) when exited */
	int32_t signo;	/* signal number when killed, else 0 */
	int32_t core;	/* 1 if it dumped core */
	uint64_t reserved[2];
} dlaunch_status_t;

/*
 * Wait until process pid (started by this runtime, by any process) has
 * ended, and get how.  timeout_ns 0 checks once (-EAGAIN while it runs),
 * else -ETIMEDOUT.  Any number of processes may wait for the same pid, and
 * wait again: the status stays available after the process that started
 * pid has collected it.  The runtime keeps the statuses of the last
 * DLAUNCH_STATUS_KEEP processes whose status was collected (or whose
 * starter ended) and forgets older ones; a status not yet collected by a
 * starter that still runs is never forgotten.  A forgotten pid, and a pid
 * the runtime never started, give -DLAUNCH_E_NOPROC.  -DLAUNCH_E_CLOSED
 * when another thread closes rt (see dlaunch_runtime_stop).
 */
DLAUNCH_EXPORT int dlaunch_wait(dlaunch_t *rt, pid_t pid, uint64_t timeout_ns,
				dlaunch_status_t *status_out);

/* Exit status in the convention of Python's Process.exitcode: the exit code
 * (>= 0), or -signo for a process killed by a signal. */
DLAUNCH_EXPORT int dlaunch_status_code(const dlaunch_status_t *status);

/*
 * Send signal signo to process pid through the services (which are its
 * parent, so a pid that has ended is never confused with a new process of
 * the same number).  -DLAUNCH_E_NOPROC for a pid the runtime did not
 * start; 0 (nothing sent) for one that has already ended.
 */
DLAUNCH_EXPORT int dlaunch_signal(dlaunch_t *rt, pid_t pid, int signo);

/*
 * A file descriptor that becomes readable (POLLIN) once process pid has
 * ended — for poll/select/epoll and as the sentinel of Python's
 * multiprocessing.connection.wait().  It is a pidfd (pidfd_open(2)); if
 * the process has already ended it is a descriptor that is readable at once.
 * The caller owns *fd_out (close it; close-on-exec is set).  Reading from
 * it is not meant: use dlaunch_wait for the status.
 */
DLAUNCH_EXPORT int dlaunch_proc_fd(dlaunch_t *rt, pid_t pid, int *fd_out);

/*
 * Make the runtime responsible for pid, a process the caller forked itself
 * (for example a zygote that forks interpreters instead of having them
 * started): it enters the runtime's process table as if dlaunch_spawn had
 * started it.  The runtime then signals it (dlaunch_signal, through a pidfd,
 * so a pid reused later is never hit), ends it when the runtime stops,
 * reclaims its pool allocations when it ends, and answers dlaunch_wait and
 * dlaunch_proc_fd for it.  Only its parent can reap it, so the caller keeps
 * that duty: once it has reaped pid it reports the status with
 * dlaunch_proc_reaped.  If the caller ends without reporting, the status is
 * read from the kernel while pid is still a zombie, else recorded as
 * killed by SIGKILL.
 * pid must be a child of the caller that the caller has not reaped:
 * -ECHILD otherwise; -EEXIST if the runtime already knows pid;
 * -DLAUNCH_E_CLOSED while the runtime stops; -ENOSYS without pidfd_open.
 * flags: 0 or DLAUNCH_PROC_F_NOWAIT.
 */
DLAUNCH_EXPORT int dlaunch_proc_adopt(dlaunch_t *rt, pid_t pid, uint32_t flags);

/* Flag of dlaunch_proc_adopt and dlaunch_proc_reaped: send the request and
 * return at once.  The services handle requests in the order they arrive,
 * so any request sent afterwards (a dlaunch_wait from another process, for
 * one) finds it done; a failure goes to the services' log instead of the
 * result (which is 0, or an error sending the request). */
#define DLAUNCH_PROC_F_NOWAIT (1u << 0)

/*
 * Report how adopted process pid ended: wstatus is the status word
 * waitpid(2) gave the caller when it reaped pid.  Waiters on pid are
 * answered with it.  -DLAUNCH_E_NOPROC if pid is not a running process
 * this caller adopted.
 */
DLAUNCH_EXPORT int dlaunch_proc_reaped(dlaunch_t *rt, pid_t pid, int wstatus,
				       uint32_t flags);

/*
 * Have the services forward the output of adopted process pid as they
 * forward that of the processes they start: whole lines at a time to the
 * runtime's standard output (out_fd) and error (err_fd), so that lines of
 * different processes never mix.  out_fd and err_fd are descriptors of the
 * caller's (-1: none), each the read end of a pipe whose write end pid
 * writes to; the services open the pipes for themselves (through
 * /proc/<caller>/fd), so the caller closes its descriptors when the call
 * returns.  A pipe is forwarded until its end of file, whoever holds its
 * write end (a grandchild that inherited it too); when the runtime stops,
 * once its processes have ended, what the pipes hold is forwarded and they
 * are closed without waiting for writers the runtime does not know.
 * pid must be a process the caller adopted (dlaunch_proc_adopt):
 * -DLAUNCH_E_NOPROC otherwise; -EBADF or -EINVAL when a descriptor is not
 * open or not a pipe; -DLAUNCH_E_CLOSED while the runtime stops.
 */
DLAUNCH_EXPORT int dlaunch_proc_forward(dlaunch_t *rt, pid_t pid, int out_fd,
					int err_fd);

/* ---- named objects (global services) ------------------------------------- */

/* Longest name (bytes, without the NUL) and value of a registry entry. */
#define DLAUNCH_NAME_MAX  255
#define DLAUNCH_VALUE_MAX 4096

/* Kinds of registered objects; the registry stores the kind with the bytes
 * and lookups may ask for a kind (DLAUNCH_KIND_ANY takes every kind). */
enum dlaunch_kind {
	DLAUNCH_KIND_ANY = 0,
	DLAUNCH_KIND_BYTES = 1,	  /* caller-defined bytes */
	DLAUNCH_KIND_CHANNEL = 2, /* a dchan_desc_t (serialized) */
	DLAUNCH_KIND_POOL = 3	  /* a dmem_pool_desc_t (serialized) */
};

/*
 * Register len bytes (<= DLAUNCH_VALUE_MAX) of kind under name (1 ..
 * DLAUNCH_NAME_MAX bytes, any characters but NUL).  If the name is free it
 * gets value and 1 is returned; if it is taken nothing changes and 0 is
 * returned (use dlaunch_name_lookup for what it holds).  The pair is atomic:
 * of many processes registering the same name at once exactly one gets 1.
 */
DLAUNCH_EXPORT int dlaunch_name_register(dlaunch_t *rt, const char *name,
					 int kind, const void *value,
					 size_t len);

/*
 * Copy the value registered under name into buf (cap bytes) and its length
 * into *len_out.  -DLAUNCH_E_NONAME if absent, -DLAUNCH_E_KIND if kind is
 * not DLAUNCH_KIND_ANY and differs, -EMSGSIZE (with *len_out set to the size
 * needed) if cap is too small.
 */
DLAUNCH_EXPORT int dlaunch_name_lookup(dlaunch_t *rt, const char *name,
				       int kind, void *buf, size_t cap,
				       size_t *len_out);

/* Remove name.  Objects it named are not destroyed.  -DLAUNCH_E_NONAME. */
DLAUNCH_EXPORT int dlaunch_name_unregister(dlaunch_t *rt, const char *name);

/*
 * Create-or-look-up a channel by name: if name holds a channel its
 * descriptor is returned; otherwise the services create one in the default
 * pool (attr: capacity and slot size; NULL for the defaults) and register
 * it, atomically.  Returns 1 if this call created it, 0 if it existed.
 * The channel lives until the runtime ends.  attr is a dchan_attr_t.
 */
DLAUNCH_EXPORT int dlaunch_channel_get(dlaunch_t *rt, const char *name,
				       const dchan_attr_t *attr,
				       dchan_desc_t *desc_out);

/*
 * Create-or-look-up a pool by name: the services create a pool of size
 * bytes (0: $DRAGON_DEFAULT_SEG_SZ) named dragon.<user>.<instance>.u<n> on
 * first use and remove it when the runtime ends.  Returns 1 if created, 0
 * if it existed (size is then ignored).
 */
DLAUNCH_EXPORT int dlaunch_pool_get(dlaunch_t *rt, const char *name,
				    uint64_t size, dmem_pool_desc_t *desc_out);

/* The runtime's default pool (attach it with dmem_pool_attach). */
DLAUNCH_EXPORT int dlaunch_default_pool(const dlaunch_t *rt,
					dmem_pool_desc_t *desc_out);

#ifdef __cplusplus
}
#endif
#endif
