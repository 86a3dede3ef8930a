"""The 'dragon' start method: a multiprocessing context beside fork, spawn
and forkserver.

Importing dragon registers it: ``multiprocessing.get_context('dragon')``,
``multiprocessing.set_start_method('dragon')`` and
``multiprocessing.get_all_start_methods()`` know it.  The other contexts are
left as they are, so one program may use several at once.  The default
context (the functions of the multiprocessing module itself) hands its
factories to the 'dragon' context while 'dragon' is the start method.
"""
import multiprocessing
from multiprocessing import context as _mpctx, pool as _mppool, process

__all__ = ["DragonContext", "DragonProcess", "register"]


class DragonProcess(process.BaseProcess):
    """A process started by the Dragon runtime with spawn semantics."""

    _start_method = "dragon"

    def __init__(self, group=None, target=None, name=None, args=(), kwargs={},
                 *, daemon=None, policy=None):
        """As multiprocessing.Process; policy, a dragon.Policy, says where
        the process starts (default: the policy of the ``with`` block
        around this call, or around start())."""
        super().__init__(group, target, name, args, kwargs, daemon=daemon)
        from . import policy as _policy
        if policy is not None and not isinstance(policy, _policy.Policy):
            raise TypeError("Process: policy must be a dragon.Policy, not %s"
                            % type(policy).__name__)
        self._dragon_policy = policy if policy is not None else _policy.active()

    @staticmethod
    def _Popen(process_obj):
        from ._popen import Popen
        return Popen(process_obj)

    @staticmethod
    def _after_fork():
        pass


class DragonContext(_mpctx.BaseContext):
    """multiprocessing's context API on Dragon's runtime, channels and
    pools."""

    _name = "dragon"
    Process = DragonProcess

    def cpu_count(self):
        """The CPUs this job may use: over all its nodes under a runtime
        over several nodes (see dragon.machine), else those of this
        process's affinity mask."""
        from . import machine
        return machine.cpu_count()

    def Pool(self, processes=None, initializer=None, initargs=(),
             maxtasksperchild=None, *, policy=None):
        """A process pool of processes workers (default: cpu_count()),
        placed round-robin over the nodes, or as policy (a dragon.Policy)
        says."""
        from multiprocessing.pool import Pool
        from . import policy as _policy
        if processes is None:
            processes = self.cpu_count()
        if policy is None:
            return Pool(processes, initializer, initargs, maxtasksperchild,
                        context=self.get_context())
        if not isinstance(policy, _policy.Policy):
            raise TypeError("Pool: policy must be a dragon.Policy, not %s"
                            % type(policy).__name__)
        return _PolicyPool(policy, processes, initializer, initargs,
                           maxtasksperchild, context=self.get_context())

    def Manager(self):
        """A started SyncManager.  Its server runs on this node; across
        several nodes it listens on TCP at this host's name (a Unix
        socket, the default, is not reachable from other nodes)."""
        from multiprocessing.managers import SyncManager
        from . import machine
        address = None
        if machine.node_count() > 1:
            import socket
            address = (socket.gethostname(), 0)
        m = SyncManager(address=address, ctx=self.get_context())
        m.start()
        return m

    def Pipe(self, duplex=True):
        """Two Connections over channels (see dragon.connection)."""
        from .connection import Pipe
        return Pipe(duplex)

    def Queue(self, maxsize=0):
        """A queue on a channel."""
        from .queues import Queue
        return Queue(maxsize, ctx=self.get_context())

    def JoinableQueue(self, maxsize=0):
        """A joinable queue on a channel."""
        from .queues import JoinableQueue
        return JoinableQueue(maxsize, ctx=self.get_context())

    def SimpleQueue(self):
        """A simple queue on a channel."""
        from .queues import SimpleQueue
        return SimpleQueue(ctx=self.get_context())

    # -- sync objects on libdchan (dragon.synchronize) --------------------

    def Lock(self):
        """A non-recursive lock on a libdchan lock."""
        from .synchronize import Lock
        return Lock(ctx=self.get_context())

    def RLock(self):
        """A recursive lock on a libdchan lock."""
        from .synchronize import RLock
        return RLock(ctx=self.get_context())

    def Condition(self, lock=None):
        """A condition variable on 'dragon' locks and semaphores."""
        from .synchronize import Condition
        return Condition(lock, ctx=self.get_context())

    def Semaphore(self, value=1):
        """A semaphore on a libdchan semaphore."""
        from .synchronize import Semaphore
        return Semaphore(value, ctx=self.get_context())

    def BoundedSemaphore(self, value=1):
        """A bounded semaphore on a libdchan semaphore."""
        from .synchronize import BoundedSemaphore
        return BoundedSemaphore(value, ctx=self.get_context())

    def Event(self):
        """An event on a libdchan event."""
        from .synchronize import Event
        return Event(ctx=self.get_context())

    def Barrier(self, parties, action=None, timeout=None):
        """A barrier on a libdchan barrier."""
        from .synchronize import Barrier
        return Barrier(parties, action, timeout, ctx=self.get_context())

    def RawValue(self, typecode_or_type, *args):
        """A shared ctypes object in pool memory."""
        from .sharedctypes import RawValue
        return RawValue(typecode_or_type, *args)

    def RawArray(self, typecode_or_type, size_or_initializer):
        """A shared ctypes array in pool memory."""
        from .sharedctypes import RawArray
        return RawArray(typecode_or_type, size_or_initializer)

    def Value(self, typecode_or_type, *args, lock=True):
        """A synchronized shared ctypes object in pool memory."""
        from .sharedctypes import Value
        return Value(typecode_or_type, *args, lock=lock, ctx=self.get_context())

    def Array(self, typecode_or_type, size_or_initializer, *, lock=True):
        """A synchronized shared ctypes array in pool memory."""
        from .sharedctypes import Array
        return Array(typecode_or_type, size_or_initializer, lock=lock,
                     ctx=self.get_context())


class _PolicyPool(_mppool.Pool):
    """A Pool whose workers, those it starts later included, follow a
    placement policy."""

    def __init__(self, policy, *args, **kwds):
        def Process(ctx, *a, **k):
            w = ctx.Process(*a, **k)
            w._dragon_policy = policy
            return w
        self.Process = Process
        super().__init__(*args, **kwds)


# Factories the default context forwards to the 'dragon' context while it
# is the start method (every other method keeps stock behaviour).
_FORWARDED = ("Pipe", "Lock", "RLock", "Condition", "Semaphore",
              "BoundedSemaphore", "Event", "Barrier", "Queue",
              "JoinableQueue", "SimpleQueue", "Pool", "RawValue", "RawArray",
              "Value", "Array", "Manager", "cpu_count")


def _forwarder(name):
    base = getattr(_mpctx.BaseContext, name)

    def method(self, *args, **kwds):
        ctx = self.get_context()
        if isinstance(ctx, DragonContext):
            return getattr(ctx, name)(*args, **kwds)
        return base(self, *args, **kwds)
    method.__name__ = method.__qualname__ = name
    method.__doc__ = base.__doc__
    return method


def register():
    """Make 'dragon' a start method of this interpreter (idempotent)."""
    if "dragon" in _mpctx._concrete_contexts:
        return _mpctx._concrete_contexts["dragon"]
    ctx = DragonContext()
    _mpctx._concrete_contexts["dragon"] = ctx
    default = _mpctx._default_context
    stock = type(default)

    def get_all_start_methods(self):
        methods = stock.get_all_start_methods(self)
        return methods + ["dragon"] if "dragon" not in methods else methods

    attrs = {name: _forwarder(name) for name in _FORWARDED}
    attrs["get_all_start_methods"] = get_all_start_methods
    attrs["__doc__"] = stock.__doc__
    default.__class__ = type("DefaultContext", (stock,), attrs)
    # The module-level functions of multiprocessing are bound methods of
    # the default context: bind them again to see the methods above.
    for name in list(_FORWARDED) + ["get_all_start_methods"]:
        if getattr(multiprocessing, name, None) is not None:
            setattr(multiprocessing, name, getattr(default, name))
    return ctx
