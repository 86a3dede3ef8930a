"""Compile the dragon package's cffi extension (API mode).

Run by the build with the configured interpreter:

    python build_cffi.py --srcdir DIR --outdir DIR -I INC... -L LIBDIR... [--rpath DIR...]

The declarations cffi sees are in dragon_cdef.h beside this file; the
extension is compiled against the project's own public headers and linked
to its shared libraries.  The result, dragon/_dragon_cffi*.so, lands in
OUTDIR/dragon/.
"""
import argparse
import os
import sys

import cffi

HEADERS = ("dmem", "dchan", "dtransport", "dlaunch")
LIBS = ("dlaunch", "dtransport", "dchan", "dmem")

# Atomic access to words in shared memory for the package's own shared
# records (which processes hold a Connection end open).
GLUE = r"""
static int32_t dragon_glue_cas32(int32_t *addr, int32_t expected, int32_t desired)
{
	__atomic_compare_exchange_n(addr, &expected, desired, 0,
				    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
	return expected;
}
static int32_t dragon_glue_load32(int32_t *addr)
{
	return __atomic_load_n(addr, __ATOMIC_SEQ_CST);
}
static int32_t dragon_glue_add32(int32_t *addr, int32_t delta)
{
	return __atomic_add_fetch(addr, delta, __ATOMIC_SEQ_CST);
}

/* ---- Connection and Queue messages (connection.py, queues.py) ----------
 * One call per small message: the kind byte and the payload go out as one
 * channel message, assembled on the stack.  len + 1 must not exceed
 * DRAGON_MSG_MAX (larger messages take connection.py's pool-allocation
 * path). */
#include <string.h>
#define DRAGON_MSG_MAX (64 * 1024)
static int dragon_msg_send(dchan_t *ch, int kind, const char *data, size_t len,
			   uint64_t timeout_ns)
{
	char buf[DRAGON_MSG_MAX];

	if (len >= DRAGON_MSG_MAX)
		return -90; /* -EMSGSIZE */
	buf[0] = (char)kind;
	memcpy(buf + 1, data, len);
	return dchan_send(ch, buf, len + 1, timeout_ns);
}

/* A message too large for dragon_msg_send: the kind byte and data copied
 * once into a pool allocation that is handed to the channel (the path of
 * connection.py builds it with three calls and a second copy).  Nothing
 * is sent, and nothing is left allocated, when it fails: the caller then
 * takes that path, which waits for room. */
static int dragon_msg_send_alloc(dchan_t *ch, int kind, const char *data,
				 size_t len, uint64_t timeout_ns)
{
	dmem_pool_t *pool = dchan_pool(ch);
	void *p;
	int rc;

	if (!pool)
		return -22; /* -EINVAL */
	rc = dmem_alloc(pool, len + 1, 0, &p);
	if (rc < 0)
		return rc;
	((char *)p)[0] = (char)kind;
	memcpy((char *)p + 1, data, len);
	rc = dchan_send_zc(ch, p, len + 1, timeout_ns);
	if (rc < 0)
		dmem_free(pool, p);
	return rc;
}

/* A message of head, data and tail for a channel of another node (whose
 * dchan_send copies it into the gateway's pool): assembled here, once,
 * outside the GIL, instead of by two copies in Python. */
#include <stdlib.h>
static int dragon_msg_send3(dchan_t *ch, const char *head, size_t hlen,
			    const char *data, size_t len, const char *tail,
			    size_t tlen, uint64_t timeout_ns)
{
	size_t n = hlen + len + tlen;
	char *buf = malloc(n ? n : 1);
	int rc;

	if (!buf)
		return -12; /* -ENOMEM */
	memcpy(buf, head, hlen);
	memcpy(buf + hlen, data, len);
	memcpy(buf + hlen + len, tail, tlen);
	rc = dchan_send(ch, buf, n, timeout_ns);
	free(buf);
	return rc;
}

/* dchan_recv returning the message's length (kind byte included) or a
 * negative error: one call and no output argument to read back. */
static int64_t dragon_msg_recv(dchan_t *ch, char *buf, size_t cap, uint64_t timeout_ns)
{
	size_t n;
	int rc = dchan_recv(ch, buf, cap, timeout_ns, &n);

	return rc < 0 ? rc : (int64_t)n;
}

/* The Queue feeder thread's batch: count messages, packed back to back in
 * data (the i-th is lens[i] bytes), sent in order with one C call (one
 * release of the GIL), each waiting up to timeout_ns for room.  Returns
 * how many were sent, or the error of the first when none was. */
static int64_t dragon_msg_send_many(dchan_t *ch, const char *data,
				    const uint32_t *lens, size_t count,
				    uint64_t timeout_ns)
{
	size_t i;

	for (i = 0; i < count; i++) {
		int rc = dchan_send(ch, data, lens[i], timeout_ns);

		if (rc < 0)
			return i ? (int64_t)i : rc;
		data += lens[i];
	}
	return (int64_t)count;
}

/* ---- the zygote's spare (_zygote.py) ------------------------------------
 * Right after the fork, in the spare: die with the zygote (SIGKILL when
 * it goes), then close every descriptor but 0, 1, 2, keep_a and keep_b
 * (the zygote's sockets, pipes, pidfds, epoll and runtime handle).  One
 * call instead of a Python statement per descriptor: each page the spare
 * writes after the fork is a copy.  Returns -1 when the zygote is already
 * gone (the death signal would never come). */
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <signal.h>
#include <unistd.h>
static void dragon_close_from(int lo, int hi)
{
	if (lo > hi)
		return;
#ifdef SYS_close_range
	if (syscall(SYS_close_range, (unsigned)lo, (unsigned)hi, 0) == 0)
		return;
#endif
	for (long fd = lo, max = sysconf(_SC_OPEN_MAX); fd <= hi && fd < max; fd++)
		close((int)fd);
}
static int dragon_spare_detach(int zygote_pid, int keep_a, int keep_b)
{
	int lo = keep_a < keep_b ? keep_a : keep_b;
	int hi = keep_a < keep_b ? keep_b : keep_a;

	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0 ||
	    getppid() != zygote_pid)
		return -1;
	dragon_close_from(3, lo - 1);
	dragon_close_from(lo + 1, hi - 1);
	dragon_close_from(hi + 1, 0x7fffffff);
	return 0;
}

/* The CPU the caller runs on, or -1. */
#include <sched.h>
static int dragon_getcpu(void)
{
	return sched_getcpu();
}

/* In a spare that has taken a request from a parent that runs on CPU cpu:
 * move off that CPU, keeping the affinity it had.  Woken by the parent's
 * message, the spare usually starts on the parent's CPU, where the two
 * share one CPU, each waiting for the other to be scheduled, until the
 * scheduler moves one of them.  Taking that CPU out of the mask for a
 * moment moves it now; the mask is restored at once and stays the one a
 * spawned child would have.  Returns 1 when it moved, 0 when there was
 * nothing to do (cpu not allowed, or the only one), -1 on an error (the
 * mask is then restored as far as the kernel lets it). */
static int dragon_move_off_cpu(int cpu)
{
	cpu_set_t all, other;

	if (cpu < 0 || cpu >= CPU_SETSIZE ||
	    sched_getaffinity(0, sizeof all, &all) != 0)
		return -1;
	if (!CPU_ISSET(cpu, &all) || CPU_COUNT(&all) < 2)
		return 0;
	other = all;
	CPU_CLR(cpu, &other);
	if (sched_setaffinity(0, sizeof other, &other) != 0)
		return -1;
	return sched_setaffinity(0, sizeof all, &all) == 0 ? 1 : -1;
}
"""


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--srcdir", required=True)
    ap.add_argument("--outdir", required=True)
    ap.add_argument("-I", dest="incs", action="append", default=[])
    ap.add_argument("-L", dest="libdirs", action="append", default=[])
    ap.add_argument("--rpath", action="append", default=[])
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)

    ffi = cffi.FFI()
    with open(os.path.join(args.srcdir, "dragon_cdef.h")) as f:
        ffi.cdef(f.read())
    source = "".join("#include <dragon/%s.h>\n" % h for h in HEADERS) + GLUE
    ffi.set_source(
        "dragon._dragon_cffi",
        source,
        include_dirs=args.incs,
        library_dirs=args.libdirs,
        libraries=list(LIBS),
        extra_compile_args=["-O2", "-Wno-unused-parameter"],
        extra_link_args=["-Wl,-rpath," + r for r in args.rpath],
    )
    os.makedirs(args.outdir, exist_ok=True)
    ffi.compile(tmpdir=args.outdir, verbose=args.verbose)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
