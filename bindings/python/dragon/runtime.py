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

The package's default pool is the runtime's default pool
(``dlaunch_default_pool``).
"""
import os
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
#: package's objects is cut into slices of at most 0.2 s after which a
#: closed object is noticed, so this is seldom reached.
QUIESCE_TIMEOUT = 1.0

#: The package's modules whose code calls into libdchan.
_CHANNEL_USERS = frozenset(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), m + ".py")
    for m in ("channels", "connection", "queues", "synchronize", "sharedctypes",
              "_holders"))

_lock = threading.Lock()
_current = None
_stop_hooks = []


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


def _remove_stale_segments(instance):
    # The instance id carries this pid: segments of that instance are
    # leftovers of a dead process that had the same pid.
    import pwd
    try:
        prefix = "dragon.%s.%s." % (pwd.getpwuid(os.getuid()).pw_name, instance)
        names = [n for n in os.listdir("/dev/shm") if n.startswith(prefix)]
    except (KeyError, OSError):
        return
    for n in names:
        try:
            os.unlink("/dev/shm/" + n)
        except OSError:
            pass


def _start_embedded():
    global _current
    instance = "p%d" % os.getpid()
    _remove_stale_segments(instance)
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
    atexit.register(rt.shutdown)
    atexit.unregister(util._exit_function)
    atexit.register(util._exit_function)


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
