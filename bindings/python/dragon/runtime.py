"""The Dragon runtime as seen from one Python process.

A process finds its runtime in the environment: the launcher (``dragon
prog.py``) and every process the runtime starts carry the runtime's
variables (``DRAGON_INSTANCE``, ``DRAGON_DEFAULT_PD``, ``DRAGON_LS_CHANNEL``,
...; see dlaunch(7)), and :func:`current` connects to it with
``dlaunch_attach``.  With no runtime around, the first use starts an
embedded single-node runtime inside this process (``dlaunch_runtime_start``:
the default pool, the infrastructure channels and the local and global
services on background threads).  Its variables are published in this
process's environment, so children started by any means find it.  It is
stopped when the interpreter exits, after multiprocessing has joined the
children: the runtime ends whatever it started that still runs and removes
every segment it made, so nothing is left in /dev/shm.

An embedded runtime lives in this process's threads: if the process is
killed, nothing of it runs to stop the runtime.  So before it starts, a
watchdog is started (``dragon-cleanup --when-gone PID --instance ID``, a
small C program; see :func:`_start_watchdog`): when this process is gone
and the runtime was not stopped, it ends the runtime's processes and
removes its segments.

The package's default pool is the runtime's default pool
(``dlaunch_default_pool``).
"""
import os
import signal
import sys
import threading
import time
import weakref

from . import mem
from ._dragon_cffi import ffi, lib
from ._errors import DragonError

#: Environment variable naming the runtime's default pool (text descriptor).
POOL_ENV = "DRAGON_DEFAULT_PD"

#: The variables through which a runtime is found (dlaunch.h, "Environment").
RUNTIME_ENV = ("DRAGON_INSTANCE", "DRAGON_NODE_ID", "DRAGON_DEFAULT_PD",
               "DRAGON_LS_CHANNEL", "DRAGON_LS_VERSION", "DRAGON_INF_PD")

#: How long the processes of an embedded runtime get to end after SIGTERM
#: when the runtime stops, before they are killed (seconds).
STOP_GRACE = 5.0

#: How long an embedded runtime's stop waits for this process's threads to
#: leave the channel calls they are in (seconds).  Every wait of the
#: package's objects is cut into slices (``_consts.SLICE_NS``, 0.1 s) after
#: which a closed object is noticed, so this is reached only by a thread
#: that never comes back; the margin is for a loaded machine, where a
#: thread may wait long for a CPU (and the GIL) after its slice.
QUIESCE_TIMEOUT = 5.0

#: The package's modules whose code calls into libdchan.
_CHANNEL_USERS = frozenset(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), m + ".py")
    for m in ("channels", "connection", "queues", "synchronize", "sharedctypes",
              "_holders"))

#: Path of the dragon-cleanup program that watches an embedded runtime
#: (default: found beside the libdlaunch this process loaded, see
#: :func:`_cleanup_program`); empty: no watchdog.
CLEANUP_ENV = "DRAGON_CLEANUP_PROGRAM"

_lock = threading.Lock()
_current = None
# Set as the program's exit handlers stop the runtime: only daemon threads
# run then, and one still blocked on a channel stays blocked, as CPython's
# do (park_if_exiting), rather than fail on its closed handle.
_exiting = False
_stop_hooks = []
_watchdog_for = None  # the pid whose runtime has a watchdog


def dlaunch_error(code, what):
    """The exception for a failing libdlaunch call."""
    detail = ffi.string(lib.dlaunch_errmsg()).decode(errors="replace")
    text = "%s: %s" % (what, detail or ffi.string(lib.dlaunch_strerror(code)).decode())
    if code == -lib.DLAUNCH_E_NOPROC:
        return ProcessLookupError(text)
    return DragonError(code, text)


def dlaunch_check(code, what):
    if code < 0:
        raise dlaunch_error(code, what)
    return code


def clean_env(env=None):
    """A copy of env (default os.environ) without the runtime's variables:
    a program started with it runs outside this runtime."""
    env = os.environ if env is None else env
    return {k: v for k, v in env.items() if k not in RUNTIME_ENV}


def at_stop(fn):
    """Have fn() called when this process's runtime is about to go away
    (before the pool is unmapped), e.g. to stop helper processes."""
    _stop_hooks.append(fn)


class Runtime:
    """The runtime this process uses: its libdlaunch handle, its default
    pool, and whether this process started it (embedded) or joined one
    from the environment."""

    def __init__(self, handle, pool, embedded):
        self.handle = handle
        self.pool = pool
        self.embedded = embedded
        self.creator_pid = os.getpid()
        self.alive = True
        self._objects = weakref.WeakSet()

    @property
    def instance(self):
        """The runtime's instance id."""
        return ffi.string(lib.dlaunch_instance(self.handle)).decode()

    def shutdown(self):
        """Leave the runtime.  In the process that started an embedded
        runtime this stops it (its processes end, its segments are
        removed); elsewhere the connection is closed.  Dragon objects of
        this process become unusable."""
        global _current
        with _lock:
            if not self.alive:
                return
            self.alive = False
            if _current is self:
                _current = None
            if os.getpid() != self.creator_pid:
                return  # a forked copy: the handle is the parent's
            for fn in list(_stop_hooks):
                try:
                    fn()
                except Exception:
                    pass
            for obj in list(self._objects):
                try:
                    obj._runtime_closing()
                except Exception:
                    pass
            if self.embedded:
                # The runtime unmaps the default pool as it stops, and
                # libdchan reaches this process's channels in it through
                # the runtime's mapping: no thread may be inside a call.
                _quiesce(QUIESCE_TIMEOUT)
                self.pool.detach()
                for k in RUNTIME_ENV:
                    os.environ.pop(k, None)
                handle, self.handle = self.handle, None
                dlaunch_check(lib.dlaunch_runtime_stop(handle, int(STOP_GRACE * 1e9)),
                              "stopping the embedded runtime")
            else:
                # The handle is detached when the last thread inside a call
                # on it (a join waiting in dlaunch_wait, say) has returned;
                # the pool stays mapped while anything uses it.
                self.handle = None

    def track(self, obj):
        """Have obj._runtime_closing() called before the pool goes away."""
        self._objects.add(obj)

    def __repr__(self):
        return "<dragon.runtime.Runtime %s pool=%s>" % (
            "embedded" if self.embedded else "attached", self.pool.name)


def _in_channel_call(frame):
    return frame.f_code.co_filename in _CHANNEL_USERS


def _quiesce(timeout):
    """Wait up to timeout seconds until no other thread of this process is
    in the package's channel code (where a thread blocked in libdchan
    is).  Their objects are closed by then: each such thread leaves at the
    end of its current wait slice."""
    me = threading.get_ident()
    deadline = time.monotonic() + timeout
    while True:
        busy = [t for t, f in sys._current_frames().items()
                if t != me and _in_channel_call(f)]
        if not busy or time.monotonic() >= deadline:
            return not busy
        time.sleep(0.005)


def current(start=True):
    """The runtime of this process; attaches to the one named in the
    environment, or (start=True) starts an embedded one.  None when there
    is none and start is False."""
    rt = _current
    if rt is not None and rt.alive and rt.creator_pid == os.getpid():
        return rt
    with _lock:
        rt = _current
        if rt is not None and rt.alive and rt.creator_pid == os.getpid():
            return rt
        pool = None
        if rt is not None and rt.creator_pid != os.getpid():
            # A forked child shares the mapping but not the handle, which
            # must not be used after fork: attach again.
            pool = rt.pool
            pool._owner = False
        if lib.dlaunch_in_runtime():
            rt = _attach(pool)
        elif start:
            rt = _start_embedded()
        else:
            return None
        _register_teardown(rt)
        return rt


def _attach(pool=None):
    global _current
    out = ffi.new("dlaunch_t **")
    dlaunch_check(lib.dlaunch_attach(ffi.NULL, out),
                  "attaching to the runtime named in the environment")
    handle = out[0]
    try:
        if pool is None:
            pool = mem.Pool.attach(_default_pool_desc(handle))
    except BaseException:
        lib.dlaunch_detach(handle)
        raise
    _current = Runtime(_client_handle(handle), pool, embedded=False)
    return _current


def _client_handle(handle):
    """An attached dlaunch_t * as a cdata that detaches it when the last
    reference (the Runtime's, or a thread's inside a call) is gone, in the
    process that attached only."""
    pid = os.getpid()

    def detach(h):
        if os.getpid() == pid:
            lib.dlaunch_detach(h)
    return ffi.gc(handle, detach)


def _default_pool_desc(handle):
    d = ffi.new("dmem_pool_desc_t *")
    dlaunch_check(lib.dlaunch_default_pool(handle, d), "the runtime's default pool")
    return bytes(ffi.buffer(d))


#: Size of an embedded runtime's default pool when DRAGON_DEFAULT_SEG_SZ is
#: not set (sparse: only what is used takes memory).
EMBEDDED_POOL_MAX = 4 << 30


def _embedded_pool_size():
    """0 (the library reads DRAGON_DEFAULT_SEG_SZ) when the variable is
    set; otherwise 4 GiB, or three quarters of what /dev/shm has free when
    that is less, so that a small /dev/shm still runs programs."""
    if os.environ.get("DRAGON_DEFAULT_SEG_SZ"):
        return 0
    try:
        st = os.statvfs("/dev/shm")
        free = st.f_bavail * st.f_frsize
    except OSError:
        return 0
    return min(EMBEDDED_POOL_MAX, (free * 3 // 4) & ~((1 << 20) - 1)) or 0


def remove_stale_segments(instance):
    # The instance id carries this pid: segments of that instance are
    # leftovers of a dead process that had the same pid.  libdmem alone
    # knows how segment names are spelled.
    inst = instance.encode()
    try:
        names = [n for n in os.listdir("/dev/shm")
                 if lib.dmem_segname_match(n.encode(), ffi.NULL, inst) == 1]
    except OSError:
        return
    for n in names:
        try:
            os.unlink("/dev/shm/" + n)
        except OSError:
            pass


def _cleanup_program():
    """The dragon-cleanup program of this build or installation: the path
    in $DRAGON_CLEANUP_PROGRAM if set (empty: none), else the one beside
    the libdlaunch this process loaded: libdlaunch/dragon-cleanup in the
    build tree (the library is libdlaunch/.libs/libdlaunch.so.N there),
    PREFIX/bin/dragon-cleanup when installed (PREFIX/lib/libdlaunch.so.N,
    or PREFIX/lib/ARCH/...).  None when there is none."""
    prog = os.environ.get(CLEANUP_ENV)
    if prog is not None:
        return prog or None
    libdir = None
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                i = line.find("/")
                if i >= 0 and "/libdlaunch.so" in line:
                    libdir = os.path.dirname(line[i:].rstrip("\n"))
                    break
    except OSError:
        return None
    if libdir is None:
        return None
    if os.path.basename(libdir) == ".libs":
        places = [os.path.dirname(libdir)]
    else:
        up = os.path.dirname(libdir)
        places = [os.path.join(up, "bin"),
                  os.path.join(os.path.dirname(up), "bin")]
    for d in places:
        prog = os.path.join(d, "dragon-cleanup")
        if os.access(prog, os.X_OK):
            return prog
    return None


def _start_watchdog(instance):
    """Start the watchdog of the embedded runtime instance this process is
    about to start: ``dragon-cleanup --when-gone PID --instance ID``.  It
    holds a pidfd of this process (not confused by its forked children),
    detaches (it is not this process's child, so a wait for any child never
    finds it, and has a session of its own, so the terminal's signals
    reach this process only), and once this process is gone does nothing
    if the runtime was stopped, else ends the runtime's processes (SIGTERM,
    STOP_GRACE, SIGKILL) and removes its segments.

    Exec'ing a small C program costs about a millisecond and runs while
    the runtime starts; a Python interpreter would cost tens.  One
    watchdog serves every runtime this process starts (they share the
    instance id).  Returns the pid of the starter to reap once the
    runtime runs (see :func:`_reap_watchdog_starter`), or None."""
    global _watchdog_for
    if _watchdog_for == os.getpid():
        return None
    prog = _cleanup_program()
    if prog is None:
        if os.environ.get("DRAGON_DEBUG"):
            sys.stderr.write("dragon: no dragon-cleanup program found: the "
                             "embedded runtime %s has no watchdog\n" % instance)
        return None
    # No descriptor of this process's stdio: a reader of this process's
    # output sees its end when this process ends, not the watchdog.  With
    # DRAGON_DEBUG, what the watchdog does is reported on stderr.
    quiet = not os.environ.get("DRAGON_DEBUG")
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)]
    if quiet:
        actions += [(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                    (os.POSIX_SPAWN_DUP2, 1, 2)]
    else:
        actions.append((os.POSIX_SPAWN_DUP2, 2, 1))
    try:
        pid = os.posix_spawn(
            prog, [prog, "--when-gone", str(os.getpid()), "--instance", instance,
                   "--grace", repr(STOP_GRACE)],
            clean_env(), file_actions=actions, setsigmask=(),
            setsigdef=(signal.SIGTERM, signal.SIGINT, signal.SIGHUP))
    except OSError as e:
        if not quiet:
            sys.stderr.write("dragon: cannot start the watchdog %s of the "
                             "embedded runtime %s: %s\n" % (prog, instance, e))
        return None
    _watchdog_for = os.getpid()
    return pid


def _reap_watchdog_starter(pid):
    """Reap the watchdog's starter: it exits as soon as the detached
    watchdog runs (usually long before the runtime has started)."""
    global _watchdog_for
    if pid is None:
        return
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:  # reaped by a wait for any child
        return
    if os.waitstatus_to_exitcode(status) != 0:
        _watchdog_for = None
        if os.environ.get("DRAGON_DEBUG"):
            sys.stderr.write("dragon: the watchdog of the embedded runtime "
                             "did not start (status %d)\n" % status)


def has_watchdog():
    """True when this process runs an embedded runtime whose watchdog
    (dragon-cleanup --when-gone) cleans up after it if it is killed."""
    return _watchdog_for == os.getpid()


def embedded_instance(instance):
    """True when instance (an instance id) names an embedded runtime,
    which is named after the process that runs it.  Such a runtime
    forwards no output: its processes write to the program's own stdout
    and stderr directly, as with the stock start methods (the launcher's
    names are "rt<pid>x<hex>", see dragon.c)."""
    return instance[:1] == "p" and instance[1:].isdigit()


def _start_embedded():
    instance = "p%d" % os.getpid()
    remove_stale_segments(instance)
    starter = _start_watchdog(instance)
    try:
        return _start_runtime(instance)
    finally:
        _reap_watchdog_starter(starter)


def _start_runtime(instance):
    global _current
    attr = ffi.new("dlaunch_runtime_attr_t *")
    inst = ffi.new("char[]", instance.encode())
    attr.field_mask = (lib.DLAUNCH_RT_ATTR_INSTANCE | lib.DLAUNCH_RT_ATTR_FLAGS |
                       lib.DLAUNCH_RT_ATTR_POOL_SIZE)
    attr.instance = inst
    attr.flags = lib.DLAUNCH_RT_F_SETENV
    attr.pool_size = _embedded_pool_size()
    out = ffi.new("dlaunch_t **")
    code = lib.dlaunch_runtime_start(attr, out)
    if code < 0:
        from ._errors import make_error
        if code in (-lib.DMEM_E_NOSPACE, -lib.DMEM_E_SHMSMALL):
            raise make_error(code, "starting the embedded runtime")
        raise dlaunch_error(code, "starting the embedded runtime")
    handle = out[0]
    try:
        # The library set the variables in the C environment; os.environ
        # is a copy taken at start-up, so mirror them for os.environ's
        # users (subprocess, multiprocessing's spawn).
        for k in RUNTIME_ENV:
            v = lib.getenv(k.encode())
            if v != ffi.NULL:
                os.environ[k] = ffi.string(v).decode()
        pool = mem.Pool.attach(_default_pool_desc(handle))
    except BaseException:
        lib.dlaunch_runtime_stop(handle, 0)
        raise
    _current = Runtime(handle, pool, embedded=True)
    return _current


def _register_teardown(rt):
    # The runtime must outlive multiprocessing's exit handler (which joins
    # the children and runs the finalizers): atexit runs the handlers
    # registered last first, so register ours and then that one again.
    import atexit
    from multiprocessing import util

    def shutdown_at_exit():
        global _exiting
        _exiting = True
        rt.shutdown()
    atexit.register(shutdown_at_exit)
    atexit.unregister(util._exit_function)
    atexit.register(util._exit_function)


def park_if_exiting():
    """In a thread other than the main one while the program exits (a
    daemon thread: the others were joined), block for good: the thread
    was waiting on an object the exit closed, and CPython leaves such a
    thread waiting, without an error, until the interpreter is gone."""
    if _exiting and threading.current_thread() is not threading.main_thread():
        threading.Event().wait()


def active():
    """This process's runtime if it is connected to one now, else None;
    never attaches or starts one (for finalizers, which may run during
    or after the runtime's teardown at exit)."""
    rt = _current
    if rt is not None and rt.alive and rt.creator_pid == os.getpid():
        return rt
    return None


def is_running():
    """True when this process has a runtime (embedded or attached)."""
    rt = _current
    return rt is not None and rt.alive
