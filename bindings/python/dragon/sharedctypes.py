"""RawValue, RawArray, Value and Array in the runtime's default pool.

The ctypes objects are laid over pool allocations, so any process of the
runtime maps the same bytes.  RawValue and RawArray pickle (while spawning
a process, as in stock multiprocessing) as the allocation's descriptor.
Value and Array wrap them with CPython's own synchronized wrappers around
a 'dragon' RLock (or the lock given), subclassed so that they pickle
anywhere (through any Queue or Pipe too) as the allocation's descriptor and
the lock's.  The allocation lives as long as the process that made the
object keeps it: keep it until its receivers have unpickled it.
"""
import ctypes

from multiprocessing import sharedctypes as _sc, util

from . import runtime

__all__ = ["RawValue", "RawArray", "Value", "Array"]


class PoolBuffer:
    """Shared bytes for a ctypes object: an allocation in the default pool.

    Plays the part of multiprocessing.heap.BufferWrapper for
    sharedctypes.rebuild_ctype().  The process that made it frees it when
    it is garbage collected (the other processes only map it)."""

    def __init__(self, size):
        rt = runtime.current()
        self._alloc = rt.pool.alloc(max(1, size), 16)
        self._size = size
        util.Finalize(self, _free, (self._alloc, rt), exitpriority=-50)

    def create_memoryview(self):
        return self._alloc.view[:self._size]

    def __reduce__(self):
        return (_rebuild_buffer, (self._alloc, self._size))


def _free(alloc, rt):
    if rt.alive:
        alloc.free()


class _AttachedBuffer(PoolBuffer):
    def __init__(self, alloc, size):
        self._alloc = alloc
        self._size = size


def _rebuild_buffer(alloc, size):
    return _AttachedBuffer(alloc, size)


def _new_value(type_):
    return _sc.rebuild_ctype(type_, PoolBuffer(ctypes.sizeof(type_)), None)


def RawValue(typecode_or_type, *args):
    """A ctypes object in pool memory, initialized with args."""
    type_ = _sc.typecode_to_type.get(typecode_or_type, typecode_or_type)
    obj = _new_value(type_)
    ctypes.memset(ctypes.addressof(obj), 0, ctypes.sizeof(obj))
    obj.__init__(*args)
    return obj


def RawArray(typecode_or_type, size_or_initializer):
    """A ctypes array in pool memory: of that many zeroes, or of the items
    of the sequence given."""
    type_ = _sc.typecode_to_type.get(typecode_or_type, typecode_or_type)
    if isinstance(size_or_initializer, int):
        obj = _new_value(type_ * size_or_initializer)
        ctypes.memset(ctypes.addressof(obj), 0, ctypes.sizeof(obj))
        return obj
    obj = _new_value(type_ * len(size_or_initializer))
    obj.__init__(*size_or_initializer)
    return obj


_synchronized_classes = {}


def _synchronized(obj, lock, ctx):
    """multiprocessing.sharedctypes.synchronized(obj, lock), as an instance
    of a subclass of the stock wrapper whose reduction works anywhere."""
    wrapper = _sc.synchronized(obj, lock, ctx=ctx)
    stock = type(wrapper)
    cls = _synchronized_classes.get(stock)
    if cls is None:
        cls = type(stock.__name__, (stock,),
                   {"__reduce__": _reduce_synchronized, "__slots__": ()})
        _synchronized_classes[stock] = cls
    wrapper.__class__ = cls
    return wrapper


def _reduce_synchronized(self):
    obj = self._obj
    if isinstance(obj, ctypes.Array):
        args = (obj._type_, obj._wrapper, obj._length_)
    else:
        args = (type(obj), obj._wrapper, None)
    return (_rebuild_synchronized, args + (self._lock,))


def _rebuild_synchronized(type_, wrapper, length, lock):
    from .context import register
    return _synchronized(_sc.rebuild_ctype(type_, wrapper, length), lock, register())


def _wrap(obj, lock, ctx):
    if lock is False:
        return obj
    if lock in (True, None):
        lock = ctx.RLock()
    if not hasattr(lock, "acquire"):
        raise AttributeError("%r has no method 'acquire'" % lock)
    return _synchronized(obj, lock, ctx)


def Value(typecode_or_type, *args, lock=True, ctx=None):
    """RawValue guarded by lock (True: a new RLock of ctx)."""
    return _wrap(RawValue(typecode_or_type, *args), lock, ctx)


def Array(typecode_or_type, size_or_initializer, *, lock=True, ctx=None):
    """RawArray guarded by lock (True: a new RLock of ctx)."""
    return _wrap(RawArray(typecode_or_type, size_or_initializer), lock, ctx)
