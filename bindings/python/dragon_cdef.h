/* What the cffi extension exposes to Python, in the subset of C that cffi
 * parses (no macros, no inline functions).  It must agree with the public
 * headers: the extension is compiled against them, so a mismatch is a
 * compile error, not a silent ABI break. */

typedef int... pid_t;
struct timespec { long tv_sec; long tv_nsec; ...; };

/* ---- libdmem ------------------------------------------------------------ */

unsigned dmem_version(void);
const char *dmem_strerror(int err);
const char *dmem_errmsg(void);
uint64_t dmem_node_id(void);

#define DMEM_ERRBASE 1000
#define DMEM_INSTANCE_MAX 48
#define DMEM_SEGNAME_MAX 192
#define DMEM_POOL_DESC_TEXT_MAX 288
#define DMEM_ALLOC_DESC_TEXT_MAX 160
#define DMEM_POOL_ATTR_INSTANCE 1
#define DMEM_POOL_ATTR_FLAGS 2
#define DMEM_POOL_F_REPLACE 1
#define DMEM_OWNER_NONE 0

enum dmem_error {
	DMEM_E_NOSPACE, DMEM_E_TOOBIG, DMEM_E_BADMAGIC, DMEM_E_VERSION,
	DMEM_E_CORRUPT, DMEM_E_STALE, DMEM_E_FOREIGN, DMEM_E_SHMSMALL,
	DMEM_E_ENV
};

typedef struct dmem_pool_desc {
	uint32_t magic;
	uint16_t version;
	uint16_t reserved0;
	uint64_t node_id;
	uint64_t pool_uid;
	uint64_t size;
	char segname[192];
	uint64_t check;
} dmem_pool_desc_t;

typedef struct dmem_alloc_desc {
	uint32_t magic;
	uint16_t version;
	uint16_t reserved0;
	uint64_t node_id;
	uint64_t pool_uid;
	uint64_t offset;
	uint64_t size;
	uint64_t generation;
	uint64_t check;
} dmem_alloc_desc_t;

int dmem_pool_desc_serialize(const dmem_pool_desc_t *desc, void *buf, size_t len);
int dmem_pool_desc_deserialize(const void *buf, size_t len, dmem_pool_desc_t *desc_out);
int dmem_pool_desc_to_text(const dmem_pool_desc_t *desc, char *buf, size_t len);
int dmem_pool_desc_from_text(const char *text, dmem_pool_desc_t *desc_out);
int dmem_alloc_desc_serialize(const dmem_alloc_desc_t *desc, void *buf, size_t len);
int dmem_alloc_desc_deserialize(const void *buf, size_t len, dmem_alloc_desc_t *desc_out);
int dmem_alloc_desc_to_text(const dmem_alloc_desc_t *desc, char *buf, size_t len);
int dmem_alloc_desc_from_text(const char *text, dmem_alloc_desc_t *desc_out);

typedef struct dmem_pool dmem_pool_t;

typedef struct dmem_pool_attr {
	uint64_t field_mask;
	const char *instance;
	uint32_t flags;
	uint32_t reserved0;
	uint64_t reserved[6];
} dmem_pool_attr_t;

int dmem_pool_create(const char *name, size_t size, const dmem_pool_attr_t *attr,
		     dmem_pool_t **pool_out);
int dmem_pool_destroy(dmem_pool_t *pool);
int dmem_pool_attach(const dmem_pool_desc_t *desc, dmem_pool_t **pool_out);
int dmem_pool_detach(dmem_pool_t *pool);
int dmem_pool_desc_get(const dmem_pool_t *pool, dmem_pool_desc_t *desc_out);

typedef struct dmem_pool_stats {
	uint64_t size;
	uint64_t heap_size;
	uint64_t free_bytes;
	uint64_t largest_free;
	uint64_t live_allocs;
	uint64_t free_blocks;
	uint64_t recoveries;
	uint64_t cached;
	uint64_t reserved[8];
} dmem_pool_stats_t;

int dmem_pool_stats(dmem_pool_t *pool, dmem_pool_stats_t *stats_out);
int dmem_pool_check(dmem_pool_t *pool);
void *dmem_pool_base(const dmem_pool_t *pool);
size_t dmem_pool_size(const dmem_pool_t *pool);
uint64_t dmem_pool_offset(const dmem_pool_t *pool, const void *ptr);
void *dmem_pool_ptr(const dmem_pool_t *pool, uint64_t offset);
int dmem_pool_reclaim(dmem_pool_t *pool, pid_t pid, size_t *nfreed_out);

int dmem_alloc(dmem_pool_t *pool, size_t size, size_t align, void **ptr_out);
int dmem_alloc_timed(dmem_pool_t *pool, size_t size, size_t align,
		     const struct timespec *deadline, void **ptr_out);
int dmem_free(dmem_pool_t *pool, void *ptr);
int dmem_alloc_free(dmem_pool_t *pool, const dmem_alloc_desc_t *desc);
int dmem_alloc_desc_get(dmem_pool_t *pool, const void *ptr, dmem_alloc_desc_t *desc_out);
int dmem_alloc_attach(dmem_pool_t *pool, const dmem_alloc_desc_t *desc, void **ptr_out);
int dmem_alloc_chown(dmem_pool_t *pool, void *ptr, pid_t new_owner);
int dmem_alloc_owner(dmem_pool_t *pool, const void *ptr, pid_t *owner_out);

int dmem_deadline_after(uint64_t timeout_ns, struct timespec *deadline_out);
int dmem_futex_wait(uint32_t *addr, uint32_t expected, const struct timespec *deadline);
int dmem_futex_wake(uint32_t *addr, int n);
int dmem_segname_format(const char *user, const char *instance,
			const char *name, char *buf, size_t len);
int dmem_segname_match(const char *segname, const char *user,
		       const char *instance);

/* ---- libdchan ----------------------------------------------------------- */

unsigned dchan_version(void);
const char *dchan_strerror(int err);
const char *dchan_errmsg(void);

#define DCHAN_ERRBASE 1100
enum dchan_error {
	DCHAN_E_BADDESC, DCHAN_E_VERSION, DCHAN_E_DESTROYED, DCHAN_E_NOGATEWAY,
	DCHAN_E_BADREQ, DCHAN_E_BROKEN, DCHAN_E_REMOTE, DCHAN_E_NODELOST
};
#define DCHAN_FOREVER 0xffffffffffffffffULL
#define DCHAN_DESC_TEXT_MAX 384
#define DCHAN_ATTR_CAPACITY 1
#define DCHAN_ATTR_SLOT_SIZE 2
#define DCHAN_CAPACITY_DEFAULT 128
#define DCHAN_CAPACITY_MAX 16777216
#define DCHAN_SLOT_SIZE_DEFAULT 224
#define DCHAN_SLOT_SIZE_MAX 1048576
#define DCHAN_POLLIN 1
#define DCHAN_POLLOUT 2

typedef struct dchan_desc {
	uint32_t magic;
	uint16_t version;
	uint16_t reserved0;
	uint64_t node_id;
	uint64_t chan_uid;
	uint64_t offset;
	dmem_pool_desc_t pool;
	uint64_t check;
} dchan_desc_t;

int dchan_desc_serialize(const dchan_desc_t *desc, void *buf, size_t len);
int dchan_desc_deserialize(const void *buf, size_t len, dchan_desc_t *desc_out);
int dchan_desc_to_text(const dchan_desc_t *desc, char *buf, size_t len);
int dchan_desc_from_text(const char *text, dchan_desc_t *desc_out);

typedef struct dchan dchan_t;

typedef struct dchan_attr {
	uint64_t field_mask;
	uint32_t capacity;
	uint32_t slot_size;
	uint64_t reserved[6];
} dchan_attr_t;

int dchan_create(dmem_pool_t *pool, const dchan_attr_t *attr, dchan_t **ch_out);
int dchan_destroy(dchan_t *ch);
int dchan_attach(const dchan_desc_t *desc, dchan_t **ch_out);
int dchan_detach(dchan_t *ch);
int dchan_desc_get(const dchan_t *ch, dchan_desc_t *desc_out);
dmem_pool_t *dchan_pool(const dchan_t *ch);
int dchan_send(dchan_t *ch, const void *buf, size_t len, uint64_t timeout_ns);
int dchan_send_zc(dchan_t *ch, void *ptr, size_t len, uint64_t timeout_ns);
#define DCHAN_SEND_SYNC 0
#define DCHAN_SEND_BUFFERED 1
#define DCHAN_SEND_BUFFERED_WAIT 2
int dchan_send_mode_set(dchan_t *ch, unsigned mode);
int dchan_gw_flush(uint64_t timeout_ns);
int dchan_recv(dchan_t *ch, void *buf, size_t cap, uint64_t timeout_ns, size_t *len_out);

typedef struct dchan_msg {
	void *data;
	size_t len;
	dmem_pool_t *pool;
} dchan_msg_t;

int dchan_recv_zc(dchan_t *ch, uint64_t timeout_ns, dchan_msg_t *msg_out);
int dchan_msg_release(dchan_msg_t *msg);
int dchan_peek(dchan_t *ch, void *buf, size_t cap, uint64_t timeout_ns, size_t *len_out);
int dchan_poll(dchan_t *ch, unsigned events, uint64_t timeout_ns, unsigned *revents_out);

typedef struct dchan_pollitem {
	dchan_t *ch;
	unsigned events;
	unsigned revents;
} dchan_pollitem_t;

int dchan_poll_many(dchan_pollitem_t *items, size_t n, uint64_t timeout_ns);

typedef struct dchan_stats {
	uint64_t count;
	uint64_t capacity;
	uint64_t slot_size;
	uint64_t blocked_senders;
	uint64_t blocked_receivers;
	uint64_t sent;
	uint64_t received;
	uint64_t recovered;
	uint64_t reserved[8];
} dchan_stats_t;

int dchan_stats(dchan_t *ch, dchan_stats_t *stats_out);
int64_t dchan_count(dchan_t *ch);
int64_t dchan_capacity(dchan_t *ch);

/* ---- libdchan sync objects (dragon.synchronize) ---------------------- */

typedef struct dchan_lock dchan_lock_t;
#define DCHAN_LOCK_RECURSIVE ...
int dchan_lock_create(dmem_pool_t *pool, unsigned flags, dchan_lock_t **lock_out);
int dchan_lock_attach(const dchan_desc_t *desc, dchan_lock_t **lock_out);
int dchan_lock_desc_get(const dchan_lock_t *lock, dchan_desc_t *desc_out);
int dchan_lock_acquire(dchan_lock_t *lock, uint64_t timeout_ns);
int dchan_lock_release(dchan_lock_t *lock);
int dchan_lock_is_mine(const dchan_lock_t *lock, unsigned *depth_out);
int dchan_lock_detach(dchan_lock_t *lock);
int dchan_lock_destroy(dchan_lock_t *lock);

typedef struct dchan_sem dchan_sem_t;
#define DCHAN_SEM_VALUE_MAX ...
int dchan_sem_create(dmem_pool_t *pool, unsigned value, unsigned max, dchan_sem_t **sem_out);
int dchan_sem_attach(const dchan_desc_t *desc, dchan_sem_t **sem_out);
int dchan_sem_desc_get(const dchan_sem_t *sem, dchan_desc_t *desc_out);
int dchan_sem_acquire(dchan_sem_t *sem, uint64_t timeout_ns);
int dchan_sem_release(dchan_sem_t *sem);
int dchan_sem_value(dchan_sem_t *sem);
int dchan_sem_detach(dchan_sem_t *sem);
int dchan_sem_destroy(dchan_sem_t *sem);

typedef struct dchan_event dchan_event_t;
int dchan_event_create(dmem_pool_t *pool, dchan_event_t **ev_out);
int dchan_event_attach(const dchan_desc_t *desc, dchan_event_t **ev_out);
int dchan_event_desc_get(const dchan_event_t *ev, dchan_desc_t *desc_out);
int dchan_event_set(dchan_event_t *ev);
int dchan_event_clear(dchan_event_t *ev);
int dchan_event_is_set(dchan_event_t *ev);
int dchan_event_wait(dchan_event_t *ev, uint64_t timeout_ns);
int dchan_event_detach(dchan_event_t *ev);
int dchan_event_destroy(dchan_event_t *ev);

typedef struct dchan_barrier dchan_barrier_t;
#define DCHAN_BARRIER_PARTIES_MAX ...
int dchan_barrier_create(dmem_pool_t *pool, unsigned parties, dchan_barrier_t **bar_out);
int dchan_barrier_attach(const dchan_desc_t *desc, dchan_barrier_t **bar_out);
int dchan_barrier_desc_get(const dchan_barrier_t *bar, dchan_desc_t *desc_out);
int dchan_barrier_wait(dchan_barrier_t *bar, uint64_t timeout_ns);
int dchan_barrier_abort(dchan_barrier_t *bar);
int dchan_barrier_reset(dchan_barrier_t *bar);
int dchan_barrier_n_waiting(dchan_barrier_t *bar);
int dchan_barrier_is_broken(dchan_barrier_t *bar);
int dchan_barrier_parties(const dchan_barrier_t *bar);
int dchan_barrier_detach(dchan_barrier_t *bar);
int dchan_barrier_destroy(dchan_barrier_t *bar);
int dchan_mem_read(const dmem_pool_desc_t *pool, const dmem_alloc_desc_t *alloc,
		   uint64_t offset, void *buf, size_t len, uint64_t timeout_ns);
int dchan_mem_write(const dmem_pool_desc_t *pool, const dmem_alloc_desc_t *alloc,
		    uint64_t offset, const void *buf, size_t len,
		    uint64_t timeout_ns);

/* ---- glue (build_cffi.py) ----------------------------------------------- */

int32_t dragon_glue_cas32(int32_t *addr, int32_t expected, int32_t desired);
int32_t dragon_glue_load32(int32_t *addr);
/* Atomic add; returns the new value. */
int32_t dragon_glue_add32(int32_t *addr, int32_t delta);
/* In a zygote's new spare: PR_SET_PDEATHSIG and close all descriptors
 * but 0-2, keep_a and keep_b; -1 when the zygote is gone. */
int dragon_spare_detach(int zygote_pid, int keep_a, int keep_b);
/* sched_getcpu(): the caller's CPU, or -1. */
int dragon_getcpu(void);
/* In a spare: move off CPU cpu, keeping the affinity mask; 1 moved, 0
 * nothing to do, -1 error. */
int dragon_move_off_cpu(int cpu);
/* Connection and Queue messages: the kind byte and data as one message
 * (len < 64 KiB). */
int dragon_msg_send(dchan_t *ch, int kind, const char *data, size_t len,
		    uint64_t timeout_ns);
/* The same for any length: copied once into a pool allocation handed to
 * the channel; on failure nothing is sent or left allocated. */
int dragon_msg_send_alloc(dchan_t *ch, int kind, const char *data, size_t len,
			  uint64_t timeout_ns);
/* head, data and tail as one message (a channel of another node). */
int dragon_msg_send3(dchan_t *ch, const char *head, size_t hlen,
		     const char *data, size_t len, const char *tail,
		     size_t tlen, uint64_t timeout_ns);
/* dchan_recv: the message's length, or a negative error. */
int64_t dragon_msg_recv(dchan_t *ch, char *buf, size_t cap, uint64_t timeout_ns);
/* Queue feeder: count messages packed back to back in data (lens[i]
 * bytes each), sent in order; how many went, or the first one's error. */
int64_t dragon_msg_send_many(dchan_t *ch, const char *data, const uint32_t *lens,
			     size_t count, uint64_t timeout_ns);

/* ---- libdtransport ------------------------------------------------------ */

unsigned dtrans_version(void);
const char *dtrans_strerror(int err);

/* ---- libdlaunch --------------------------------------------------------- */

unsigned dlaunch_version(void);
const char *dlaunch_strerror(int err);

/* ---- libdlaunch: the runtime, processes (runtime, _spawn, _popen, _zygote) */

#define DLAUNCH_ERRBASE 1300
enum dlaunch_error {
	DLAUNCH_E_NORUNTIME, DLAUNCH_E_ENV, DLAUNCH_E_PROTO, DLAUNCH_E_VERSION,
	DLAUNCH_E_SERVICES, DLAUNCH_E_NOPROC, DLAUNCH_E_SPAWN, DLAUNCH_E_NONAME,
	DLAUNCH_E_KIND, DLAUNCH_E_CLOSED
};
#define DLAUNCH_FOREVER 0xffffffffffffffffULL
const char *dlaunch_errmsg(void);
int dlaunch_in_runtime(void);

typedef struct dlaunch dlaunch_t;
int dlaunch_attach(const void *attr, dlaunch_t **rt_out);
int dlaunch_detach(dlaunch_t *rt);

#define DLAUNCH_RT_ATTR_POOL_SIZE 1
#define DLAUNCH_RT_ATTR_INSTANCE 2
#define DLAUNCH_RT_ATTR_LOG_LEVEL 4
#define DLAUNCH_RT_ATTR_FLAGS 8
#define DLAUNCH_RT_ATTR_LOG_FD 16
#define DLAUNCH_RT_ATTR_TIMEOUT 32
#define DLAUNCH_RT_F_SETENV 1

typedef struct dlaunch_runtime_attr {
	uint64_t field_mask;
	uint64_t pool_size;
	const char *instance;
	int32_t log_level;
	uint32_t flags;
	int32_t log_fd;
	uint32_t reserved0;
	uint64_t startup_timeout_ns;
	char *const *env;
	void (*output)(void *, pid_t, int, const char *, size_t);
	void *output_arg;
	uint64_t reserved[1];
} dlaunch_runtime_attr_t;

int dlaunch_runtime_start(const dlaunch_runtime_attr_t *attr, dlaunch_t **rt_out);
int dlaunch_runtime_stop(dlaunch_t *rt, uint64_t timeout_ns);
const char *dlaunch_instance(const dlaunch_t *rt);
uint64_t dlaunch_node(const dlaunch_t *rt);
unsigned dlaunch_node_count(const dlaunch_t *rt);

enum dlaunch_stdio {
	DLAUNCH_STDIO_DEFAULT, DLAUNCH_STDIO_FORWARD, DLAUNCH_STDIO_DEVNULL,
	DLAUNCH_STDIO_INHERIT, DLAUNCH_STDIO_FILE, DLAUNCH_STDIO_STDOUT
};
#define DLAUNCH_SPAWN_ATTR_ENV 1
#define DLAUNCH_SPAWN_ATTR_CWD 2
#define DLAUNCH_SPAWN_ATTR_STDIO 4
#define DLAUNCH_SPAWN_ATTR_FLAGS 8
#define DLAUNCH_SPAWN_ATTR_NODE 16
#define DLAUNCH_SPAWN_F_ENV_REPLACE 1
#define DLAUNCH_SPAWN_F_SEARCH_PATH 2

typedef struct dlaunch_spawn_attr {
	uint64_t field_mask;
	char *const *env;
	const char *cwd;
	int32_t stdio[3];
	const char *stdio_path[3];
	uint32_t flags;
	uint32_t node;
	uint64_t reserved[6];
} dlaunch_spawn_attr_t;

int dlaunch_spawn(dlaunch_t *rt, const char *path, char *const argv[],
		  const dlaunch_spawn_attr_t *attr, pid_t *pid_out);

typedef struct dlaunch_status {
	int32_t exited;
	int32_t code;
	int32_t signo;
	int32_t core;
	uint64_t reserved[2];
} dlaunch_status_t;

int dlaunch_wait(dlaunch_t *rt, pid_t pid, uint64_t timeout_ns, dlaunch_status_t *status_out);
int dlaunch_status_code(const dlaunch_status_t *status);
int dlaunch_signal(dlaunch_t *rt, pid_t pid, int signo);
int dlaunch_proc_fd(dlaunch_t *rt, pid_t pid, int *fd_out);
#define DLAUNCH_PROC_F_NOWAIT 1
int dlaunch_proc_adopt(dlaunch_t *rt, pid_t pid, uint32_t flags);
int dlaunch_proc_reaped(dlaunch_t *rt, pid_t pid, int wstatus, uint32_t flags);
int dlaunch_proc_forward(dlaunch_t *rt, pid_t pid, int out_fd, int err_fd);
int dlaunch_channel_get(dlaunch_t *rt, const char *name, const dchan_attr_t *attr,
			dchan_desc_t *desc_out);
enum dlaunch_kind {
	DLAUNCH_KIND_ANY, DLAUNCH_KIND_BYTES, DLAUNCH_KIND_CHANNEL, DLAUNCH_KIND_POOL
};
int dlaunch_name_lookup(dlaunch_t *rt, const char *name, int kind, void *buf,
			size_t cap, size_t *len_out);
int dlaunch_default_pool(const dlaunch_t *rt, dmem_pool_desc_t *desc_out);
char *getenv(const char *name);
