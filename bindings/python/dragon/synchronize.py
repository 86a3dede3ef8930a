"""Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event and Barrier of
the 'dragon' context, on libdchan's sync objects.

Each object is a libdchan lock, semaphore, event or barrier in the
runtime's default pool (a few channels), so it works the same whether the
processes sharing it run on one node or several.  The API is that of
multiprocessing.synchronize: acquire(block=True, timeout=None), the context
manager protocol, the same __repr__ forms and exceptions.  Condition is
CPython's multiprocessing Condition (a lock and three semaphores) built
from these locks and semaphores.

Unlike stock locks, which pickle only while a process is being started,
these objects pickle anywhere, as their descriptors: as Process arguments,
through any Queue or Pipe, with pickle.dumps.  Any process of the runtime
that unpickles one holds the same object.  Which processes hold an object
is recorded beside it (dragon._holders): a pickled copy counts as held
while its sender lives, and the last holder to let go destroys it.

A blocking acquire() or Event.wait() without a timeout waits in slices, so
that a signal handler (KeyboardInterrupt) runs while it waits.

The C handle of an object is freed (and the process's holding let go of)
only when no thread of the process uses it any more: a thread inside a
call holds a reference to it for the length of the call, so neither the
garbage collector nor the runtime's teardown frees a handle another thread
is blocked in.  When the runtime stops, every object of the process is
closed: a thread waiting on one leaves libdchan at the end of its current
slice (a thread waiting at a barrier is woken by breaking the barrier,
when the runtime stopping is this process's embedded one) and the call
raises ValueError, as do later calls.  At interpreter exit a daemon
thread's wait stays blocked instead (outside libdchan), as in a stock
lock.
"""
import os
import threading
import time

from multiprocessing import process
from multiprocessing import synchronize as _mpsync

from ._consts import FOREVER_NS, RC_EOVERFLOW, RC_EPERM, RC_NOT_NOW, SLICE_NS
from ._dragon_cffi import ffi, lib
from ._errors import chan_error
from ._holders import HolderTable
from . import machine, runtime

__all__ = ["Lock", "RLock", "Semaphore", "BoundedSemaphore", "Condition",
           "Event", "Barrier"]

SEM_VALUE_MAX = lib.DCHAN_SEM_VALUE_MAX


# -- one libdchan object and its holders ------------------------------------

class _Handle:
    """This process's handle of one libdchan sync object (kind: 'lock',
    'sem', 'event' or 'barrier'), with the record of the processes that
    hold it: a HolderTable, a word that the process destroying the
    object claims and a count of processes letting go, in a small
    allocation beside it, freed after the object (see _holders.RecordEnd).

    p is the C handle as a cffi object whose destructor lets go of the
    object (_releaser) when the last reference is gone; every call passes
    p, so a thread inside one keeps it alive.  The runtime's teardown sets
    p to NULL (calls then fail with EINVAL, reported as a closed object)
    without freeing anything: the runtime removes its memory itself."""

    __slots__ = ("kind", "p", "desc", "alloc", "table", "slot", "waiters",
                 "_embedded", "__weakref__")

    WORDS = HolderTable.WORDS + 2  # the table, a claim and a busy word

    def __init__(self, kind, p, alloc, slot, rt, remote=False):
        self.kind = kind
        self.alloc = alloc
        self.table = HolderTable(alloc.ptr, alloc)
        self.slot = slot
        #: Idents of this process's threads inside a barrier wait.
        self.waiters = set()
        self._embedded = rt.embedded
        d = ffi.new("dchan_desc_t *")
        rc = _fn(kind, "desc_get")(p, d)
        if rc < 0:
            _fn(kind, "detach")(p)
            raise chan_error(rc, "descriptor of a %s" % kind)
        self.desc = bytes(ffi.buffer(d))
        self.p = ffi.gc(p, _releaser(kind, self.table, slot, rt, remote))
        rt.track(self)

    @classmethod
    def create(cls, kind, *args):
        rt = runtime.current()
        out = ffi.new("dchan_%s_t **" % kind)
        rc = _fn(kind, "create")(rt.pool.handle, *args, out)
        if rc < 0:
            raise chan_error(rc, "creating a %s in pool %s" % (kind, rt.pool.name))
        try:
            alloc = rt.pool.alloc(cls.WORDS * 4)
        except BaseException:
            _fn(kind, "destroy")(out[0])
            raise
        w = ffi.cast("int32_t *", alloc.ptr)
        for i in range(cls.WORDS):
            w[i] = 0
        table = HolderTable(alloc.ptr)
        return cls(kind, out[0], alloc, table.register(), rt)

    def closed_error(self):
        return ValueError("%s is closed: this process's Dragon runtime stopped"
                          % _KIND_NAMES[self.kind])

    def _runtime_closing(self):
        p, self.p = self.p, ffi.NULL
        if self.kind == "barrier" and self.waiters and self._embedded and p != ffi.NULL:
            # A barrier wait is not cut into slices (one that returned
            # early would break the barrier): wake this process's waiters
            # before the embedded runtime unmaps the memory they wait in.
            # Its other parties are processes of this runtime, which ends.
            lib.dchan_barrier_abort(p)

    def __reduce__(self):
        slot = self.table.register_pending()
        return (_Handle._rebuild,
                (self.kind, self.desc, self.alloc.descriptor, slot, os.getpid()))

    @classmethod
    def _rebuild(cls, kind, desc, alloc_desc, slot, sender):
        rt = runtime.current()
        d = ffi.new("dchan_desc_t *")
        ffi.memmove(d, desc, len(desc))
        out = ffi.new("dchan_%s_t **" % kind)
        rc = _fn(kind, "attach")(d, out)
        if rc < 0:
            raise chan_error(rc, "attaching a %s" % kind)
        if d.node_id != lib.dmem_node_id():
            # An object of another node: its operations go through the
            # transport, its holder record (pool memory there) is out of
            # reach.  This handle holds nothing in it and never destroys
            # the object, which its own node does.
            alloc = _PrivateRecord(cls.WORDS * 4, alloc_desc)
            return cls(kind, out[0], alloc, alloc.register(), rt, remote=True)
        try:
            alloc = rt.pool.attach_alloc(alloc_desc)
        except BaseException:
            _fn(kind, "detach")(out[0])
            raise
        slot = HolderTable(alloc.ptr).claim(slot, sender)
        return cls(kind, out[0], alloc, slot, rt)


class _PrivateRecord:
    """A holder record in this process's own memory, for a sync object of
    another node (see _Handle._rebuild)."""

    def __init__(self, size, descriptor):
        self._mem = ffi.new("char[]", size)
        self.ptr = self._mem
        # The real record's, for passing the object on (to any node).
        self.descriptor = descriptor

    def register(self):
        return HolderTable(self.ptr, self).register()

    def free(self):
        pass


_KIND_NAMES = {"lock": "lock", "sem": "semaphore", "event": "event",
               "barrier": "barrier"}


def _releaser(kind, table, slot, rt, remote=False):
    """The destructor of a sync object's C handle, run when the last
    reference to it is gone: give up this process's holding, then destroy
    the object if no process holds it any more, else detach.  Only in the
    process that made the handle, and only while the runtime is up (its
    teardown frees the runtime's memory itself; a handle used after that
    would reach unmapped memory).  table keeps the holder record's
    allocation, and so the pool mapping, alive as long."""
    pid = os.getpid()
    record = table.record_end()

    def let_go(p):
        if os.getpid() != pid or not rt.alive:
            return
        record.enter()
        try:
            table.release(slot)
            # Exactly one of the processes that find no holder left
            # destroys it.
            if not remote and not table.held() and record.claim_it():
                _fn(kind, "destroy")(p)
            else:
                _fn(kind, "detach")(p)
        finally:
            # The last process done with the record after the destruction
            # frees it.
            record.leave()
    return let_go


def _fn(kind, verb):
    return getattr(lib, "dchan_%s_%s" % (kind, verb))


def _error(h, rc, what):
    """The exception for a failed call on h: ValueError once the runtime's
    teardown closed it, else the library's error."""
    if h.p == ffi.NULL:
        return h.closed_error()
    return chan_error(rc, what)


def _wait_error(h, rc, what):
    """_error for a wait.  A daemon thread whose object the teardown at
    interpreter exit closed stays blocked instead, outside libdchan, as it
    would in a stock lock: no traceback at exit for it."""
    if (h.p == ffi.NULL and threading.current_thread().daemon
            and not threading.main_thread().is_alive()):
        threading.Event().wait()
    return _error(h, rc, what)


def _wait(op, h, block, timeout):
    """Run op(handle, timeout_ns) as acquire(block, timeout) would: True
    when it succeeded, False when the time ran out."""
    if not block:
        rc = op(h.p, 0)
    elif timeout is None:
        rc = op(h.p, SLICE_NS)
        while rc in RC_NOT_NOW:
            machine.check_lost("waiting on the %s" % _KIND_NAMES[h.kind])
            rc = op(h.p, SLICE_NS)
    else:
        deadline = time.monotonic() + max(0.0, timeout)
        rc = op(h.p, min(SLICE_NS, int(max(0.0, timeout) * 1e9)))
        while rc in RC_NOT_NOW:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            machine.check_lost("waiting on the %s" % _KIND_NAMES[h.kind])
            rc = op(h.p, min(SLICE_NS, int(left * 1e9)))
    if rc == 0:
        return True
    if rc in RC_NOT_NOW:
        return False
    what = "waiting on %s" % _KIND_NAMES[h.kind]
    raise _wait_error(h, rc, what) if block else _error(h, rc, what)


def _owner_name():
    name = process.current_process().name
    if threading.current_thread().name != "MainThread":
        name += "|" + threading.current_thread().name
    return name


class _SyncObject:
    """What every sync object shares: its handles, pickling, and the
    methods multiprocessing's own code reaches through ``_semlock``."""

    def _state(self):
        return ()

    def __reduce__(self):
        return (_rebuild, (type(self), self._handles(), self._state()))

    def _handles(self):
        return (self._h,)

    def _setup(self, handles, state):
        self._h = handles[0]

    @property
    def _semlock(self):
        return self

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *args):
        return self.release()


def _rebuild(cls, handles, state):
    obj = cls.__new__(cls)
    obj._setup(handles, state)
    return obj


# -- locks -------------------------------------------------------------------

class Lock(_SyncObject):
    """A non-recursive lock (multiprocessing.Lock): any thread or process
    may release it."""

    _flags = 0

    def __init__(self, *, ctx=None):
        self._setup((_Handle.create("lock", self._flags),), ())

    def _setup(self, handles, state):
        self._h = handles[0]
        self._holder = None  # ident of the thread of this process holding it

    def acquire(self, block=True, timeout=None):
        if _wait(lib.dchan_lock_acquire, self._h, block, timeout):
            self._holder = threading.get_ident()
            return True
        return False

    def release(self):
        rc = lib.dchan_lock_release(self._h.p)
        if rc < 0:
            if rc == RC_EPERM:
                raise ValueError("semaphore or lock released too many times")
            raise _error(self._h, rc, "releasing a lock")
        self._holder = None

    def _is_mine(self):
        return self._holder == threading.get_ident()

    def _count(self):
        return 1 if self._is_mine() else 0

    def _get_value(self):
        """1 if the lock is free now, 0 if some thread or process holds it."""
        if self._holder is not None:
            return 0
        if lib.dchan_lock_acquire(self._h.p, 0) == 0:
            lib.dchan_lock_release(self._h.p)
            return 1
        return 0

    def _is_zero(self):
        return self._get_value() == 0

    def __repr__(self):
        try:
            if self._is_mine():
                name = _owner_name()
            elif self._get_value() == 1:
                name = "None"
            elif self._holder is not None:
                name = "SomeOtherThread"
            else:
                name = "SomeOtherProcess"
        except Exception:
            name = "unknown"
        return "<%s(owner=%s)>" % (type(self).__name__, name)


class RLock(Lock):
    """A recursive lock (multiprocessing.RLock): its owner, a thread of one
    process, may acquire it again and must release it as often."""

    _flags = lib.DCHAN_LOCK_RECURSIVE

    def release(self):
        rc = lib.dchan_lock_release(self._h.p)
        if rc < 0:
            if rc == RC_EPERM:
                raise AssertionError("attempt to release recursive lock not owned by thread")
            raise _error(self._h, rc, "releasing a lock")
        if lib.dchan_lock_is_mine(self._h.p, ffi.NULL) != 1:
            self._holder = None

    def _is_mine(self):
        return lib.dchan_lock_is_mine(self._h.p, ffi.NULL) == 1

    def _count(self):
        depth = ffi.new("unsigned *")
        if lib.dchan_lock_is_mine(self._h.p, depth) == 1:
            return depth[0]
        return 0

    def __repr__(self):
        try:
            if self._is_mine():
                name, count = _owner_name(), self._count()
            elif self._get_value() == 1:
                name, count = "None", 0
            elif self._holder is not None:
                name, count = "SomeOtherThread", "nonzero"
            else:
                name, count = "SomeOtherProcess", "nonzero"
        except Exception:
            name, count = "unknown", "unknown"
        return "<%s(%s, %s)>" % (type(self).__name__, name, count)


# -- semaphores --------------------------------------------------------------

class Semaphore(_SyncObject):
    """A counting semaphore (multiprocessing.Semaphore), values up to
    SEM_VALUE_MAX."""

    _bounded = False

    def __init__(self, value=1, *, ctx=None):
        if self._bounded and value > SEM_VALUE_MAX:
            # multiprocessing.Queue bounds an unlimited queue with
            # BoundedSemaphore(2**31 - 1); libdchan counts to SEM_VALUE_MAX.
            value = SEM_VALUE_MAX
        if not 0 <= value <= SEM_VALUE_MAX:
            raise ValueError("semaphore initial value must be between 0 and %d"
                             % SEM_VALUE_MAX)
        maxvalue = value if self._bounded else 0
        if self._bounded and value == 0:
            maxvalue = SEM_VALUE_MAX
        self._setup((_Handle.create("sem", value, maxvalue),), (value,))

    def _setup(self, handles, state):
        self._h = handles[0]
        self._maxvalue = state[0] if self._bounded else SEM_VALUE_MAX

    def _state(self):
        return (self._maxvalue,)

    def acquire(self, block=True, timeout=None):
        return _wait(lib.dchan_sem_acquire, self._h, block, timeout)

    def release(self):
        rc = lib.dchan_sem_release(self._h.p)
        if rc < 0:
            if rc == RC_EOVERFLOW:
                if self._bounded:
                    raise ValueError("semaphore or lock released too many times")
                raise OverflowError("semaphore value would exceed its maximum %d"
                                    % SEM_VALUE_MAX)
            raise _error(self._h, rc, "releasing a semaphore")

    def get_value(self):
        v = lib.dchan_sem_value(self._h.p)
        if v < 0:
            raise _error(self._h, v, "reading a semaphore's value")
        return v

    _get_value = get_value

    def _is_zero(self):
        return self.get_value() == 0

    def _is_mine(self):
        return False

    def _count(self):
        return 0

    def __repr__(self):
        try:
            value = self.get_value()
        except Exception:
            value = "unknown"
        return "<%s(value=%s)>" % (type(self).__name__, value)


class BoundedSemaphore(Semaphore):
    """A semaphore whose value never exceeds its initial value: one
    release() too many raises ValueError.  An initial value above
    SEM_VALUE_MAX is taken as SEM_VALUE_MAX."""

    _bounded = True

    def __repr__(self):
        try:
            value = self.get_value()
        except Exception:
            value = "unknown"
        return "<%s(value=%s, maxvalue=%s)>" % (type(self).__name__, value, self._maxvalue)


# -- condition ---------------------------------------------------------------

class Condition(_mpsync.Condition):
    """multiprocessing.Condition (wait, wait_for, notify, notify_all) made
    of a 'dragon' lock (an RLock unless one is given) and three 'dragon'
    semaphores."""

    def __init__(self, lock=None, *, ctx):
        super().__init__(lock, ctx=ctx)

    def __getstate__(self):
        # Stock Condition allows this only while spawning a process.
        return (self._lock, self._sleeping_count,
                self._woken_count, self._wait_semaphore)


# -- event -------------------------------------------------------------------

class Event(_SyncObject):
    """multiprocessing.Event on a libdchan event."""

    def __init__(self, *, ctx=None):
        self._setup((_Handle.create("event"),), ())

    def is_set(self):
        rc = lib.dchan_event_is_set(self._h.p)
        if rc < 0:
            raise _error(self._h, rc, "reading an event")
        return rc == 1

    def set(self):
        rc = lib.dchan_event_set(self._h.p)
        if rc < 0:
            raise _error(self._h, rc, "setting an event")

    def clear(self):
        rc = lib.dchan_event_clear(self._h.p)
        if rc < 0:
            raise _error(self._h, rc, "clearing an event")

    def wait(self, timeout=None):
        """True once the flag is set, False if timeout passed first."""
        return _wait(lib.dchan_event_wait, self._h, True, timeout)

    def __repr__(self):
        set_status = "set" if self.is_set() else "unset"
        return f"<{type(self).__qualname__} at {id(self):#x} {set_status}>"


# -- barrier -----------------------------------------------------------------

class Barrier(_SyncObject):
    """threading.Barrier's API (wait, reset, abort, parties, n_waiting,
    broken) on a libdchan barrier; a broken barrier raises
    threading.BrokenBarrierError.

    With an action, the parties meet twice: the last to arrive runs the
    action between the two meetings, so the others leave only after it
    returned; if it raises, the barrier breaks.  A wait without a timeout
    (and no default one) cannot be interrupted by a signal: a barrier
    wait that returned early would break it for everyone."""

    def __init__(self, parties, action=None, timeout=None, *, ctx=None):
        if not 1 <= parties <= lib.DCHAN_BARRIER_PARTIES_MAX:
            raise ValueError("parties must be between 1 and %d"
                             % lib.DCHAN_BARRIER_PARTIES_MAX)
        first = _Handle.create("barrier", parties)
        handles = (first,) if action is None else (first, _Handle.create("barrier", parties))
        self._setup(handles, (action, timeout))

    def _setup(self, handles, state):
        self._hs = handles
        self._h = handles[0]
        self._action, self._timeout = state
        self._parties = lib.dchan_barrier_parties(self._h.p)

    def _handles(self):
        return self._hs

    def _state(self):
        return (self._action, self._timeout)

    def _wait_one(self, h, timeout):
        # The runtime's teardown breaks a barrier this process waits at.
        me = threading.get_ident()
        h.waiters.add(me)
        try:
            rc = lib.dchan_barrier_wait(h.p, timeout)
        finally:
            h.waiters.discard(me)
        if rc >= 0:
            return rc
        if h.p == ffi.NULL:
            raise _wait_error(h, rc, "waiting at a barrier")
        if rc in RC_NOT_NOW:  # the timeout broke the barrier
            self._break_all()
            raise threading.BrokenBarrierError
        if rc == -lib.DCHAN_E_BROKEN:  # aborted, reset, or another's timeout
            raise threading.BrokenBarrierError
        raise _error(h, rc, "waiting at a barrier")

    def wait(self, timeout=None):
        """Wait until all parties have called wait(); returns this party's
        index, 0 .. parties-1."""
        if timeout is None:
            timeout = self._timeout
        if timeout is None:
            tns = FOREVER_NS
        else:
            tns = int(max(0.0, timeout) * 1e9)
        index = self._wait_one(self._h, tns)
        if len(self._hs) == 1:
            return index
        if index == self._parties - 1:
            try:
                self._action()
            except BaseException:
                self._break_all()
                raise
        self._wait_one(self._hs[1], tns)
        return index

    def _break_all(self):
        for h in self._hs:
            lib.dchan_barrier_abort(h.p)

    def reset(self):
        """Back to the empty state; parties waiting now get
        BrokenBarrierError."""
        for h in reversed(self._hs):
            rc = lib.dchan_barrier_reset(h.p)
            if rc < 0:
                raise _error(h, rc, "resetting a barrier")

    def abort(self):
        """Break the barrier: waiting and later callers of wait() get
        BrokenBarrierError until reset()."""
        self._break_all()

    @property
    def parties(self):
        return self._parties

    @property
    def n_waiting(self):
        n = lib.dchan_barrier_n_waiting(self._h.p)
        if n < 0:
            raise _error(self._h, n, "reading a barrier")
        return n

    @property
    def broken(self):
        return any(lib.dchan_barrier_is_broken(h.p) == 1 for h in self._hs)

    def __repr__(self):
        if self.broken:
            return f"<{type(self).__qualname__} at {id(self):#x}: broken>"
        return (f"<{type(self).__qualname__} at {id(self):#x}: waiters="
                f"{self.n_waiting}/{self.parties}>")
