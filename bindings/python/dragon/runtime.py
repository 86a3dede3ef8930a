"""The Dragon runtime as seen from one Python process.

A process finds its runtime in the environment: the launcher (``dragon
prog.py``) and every process started through the 'dragon' start method
carry the text descriptor of the runtime's default pool in
``DRAGON_DEFAULT_PD``.  With no runtime around, the first use starts an
embedded single-node runtime in this process: it creates the default pool
(``DRAGON_DEFAULT_SEG_SZ`` bytes, sparse), publishes it in the environment
for the processes started from here, and removes it when the interpreter
exits (after multiprocessing has joined the children), so nothing is left
in /dev/shm.
"""
import os
import threading
import weakref

from . import mem

#: Environment variable naming the runtime's default pool (text descriptor).
POOL_ENV = "DRAGON_DEFAULT_PD"

_lock = threading.Lock()
_current = None


class Runtime:
    """The runtime this process uses: its default pool, and whether this
    process started it (embedded) or joined one from the environment."""

    def __init__(self, pool, embedded):
        self.pool = pool
        self.embedded = embedded
        self.creator_pid = os.getpid()
        self.alive = True
        self._objects = weakref.WeakSet()
        self._text = None

    def shutdown(self):
        """Tear the runtime down.  In the process that started an embedded
        runtime the default pool is removed; elsewhere it is only
        unmapped.  Dragon objects of this process become unusable."""
        global _current
        with _lock:
            if not self.alive:
                return
            self.alive = False
            if _current is self:
                _current = None
            if not (self.embedded and os.getpid() == self.creator_pid):
                # The mapping goes with the process; keeping it until then
                # lets late finalizers of this process touch it safely.
                return
            for obj in list(self._objects):
                try:
                    obj._runtime_closing()
                except Exception:
                    pass
            if os.environ.get(POOL_ENV) == self._text:
                del os.environ[POOL_ENV]
            self.pool.destroy()

    def track(self, obj):
        """Have obj._runtime_closing() called before the pool goes away."""
        self._objects.add(obj)

    def __repr__(self):
        return "<dragon.runtime.Runtime %s pool=%s>" % (
            "embedded" if self.embedded else "attached", self.pool.name)


def current(start=True):
    """The runtime of this process; attaches to the one named in the
    environment, or (start=True) starts an embedded one.  None when there
    is none and start is False."""
    global _current
    rt = _current
    if rt is not None and rt.alive and rt.creator_pid == os.getpid():
        return rt
    with _lock:
        rt = _current
        if rt is not None and rt.alive and rt.creator_pid == os.getpid():
            return rt
        if rt is not None and rt.creator_pid != os.getpid():
            # A forked child shares the mapping but not the ownership.
            rt = Runtime(rt.pool, embedded=False)
            rt.pool._owner = False
            _current = rt
            return rt
        text = os.environ.get(POOL_ENV)
        if text:
            rt = Runtime(mem.Pool.attach(text), embedded=False)
        elif start:
            rt = _start_embedded()
        else:
            return None
        _current = rt
    _register_teardown(rt)
    return rt


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


def _start_embedded():
    # The name carries this pid: a segment of that name is a leftover of a
    # dead process that had the same pid.
    pool = mem.Pool.create("default", _embedded_pool_size(), replace=True)
    rt = Runtime(pool, embedded=True)
    rt._text = pool.text_descriptor
    os.environ[POOL_ENV] = rt._text
    return rt


def _register_teardown(rt):
    # The runtime must outlive multiprocessing's exit handler (which joins
    # the children and runs the finalizers): atexit runs the handlers
    # registered last first, so register ours and then that one again.
    import atexit
    from multiprocessing import util
    atexit.register(rt.shutdown)
    atexit.unregister(util._exit_function)
    atexit.register(util._exit_function)


def is_running():
    """True when this process has a runtime (embedded or attached)."""
    rt = _current
    return rt is not None and rt.alive
