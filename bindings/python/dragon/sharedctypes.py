"""RawValue, RawArray, Value and Array in the runtime's default pool.

The ctypes objects are laid over pool allocations, so any process of the
runtime maps the same bytes.  RawValue and RawArray pickle (while spawning
a process, as in stock multiprocessing) as the allocation's descriptor.
Value and Array wrap them with CPython's own synchronized wrappers around
a 'dragon' RLock (or the lock given), subclassed so that they pickle
anywhere (through any Queue or Pipe too) as the allocation's descriptor and
the lock's.  The allocation lives as long as the process that made the
object keeps it: keep it until its receivers have unpickled it.

A process on another node cannot map the pool.  Unpickling there (the
node is compared once, then) gives a proxy in place of the ctypes
object: its .value, items and slices copy bytes to and from the owner
node's pool through the transport agents (mem.RemoteAllocation), and the
synchronized wrappers, get_lock() and get_obj() work around it as around
a ctypes object.  Items of a remote array of structures are copies, and
what needs an address (ctypes.addressof, memoryview) works on the owner
node only.
"""
import ctypes

from multiprocessing import context, reduction, sharedctypes as _sc, util

from . import mem, runtime

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
        alloc = self._alloc
        return (_rebuild_buffer, (alloc.pool.descriptor, alloc.descriptor, self._size))


def _free(alloc, rt):
    if rt.alive:
        alloc.free()


class _AttachedBuffer(PoolBuffer):
    def __init__(self, alloc, size):
        self._alloc = alloc
        self._size = size


class _RemoteBuffer(PoolBuffer):
    """The bytes of an object of another node's pool (a RemoteAllocation)."""

    def __init__(self, alloc, size):
        self._alloc = alloc
        self._size = size

    def create_memoryview(self):
        raise ValueError("the shared memory lives on node %d: a process of "
                         "another node reaches it by copies only"
                         % (self._alloc.node_id - 1))

    def read(self, offset, n):
        return self._alloc.read(offset, n)

    def write(self, offset, data):
        self._alloc.write(offset, data)

    def __reduce__(self):
        alloc = self._alloc
        return (_rebuild_buffer, (alloc.pool_descriptor, alloc.descriptor, self._size))


def _rebuild_buffer(pool_desc, alloc_desc, size):
    # The one check of where the memory is: a local object stays a plain
    # ctypes object over the mapping, as fast as in the creating process.
    alloc = mem.attach_allocation(pool_desc, alloc_desc)
    if isinstance(alloc, mem.RemoteAllocation):
        return _RemoteBuffer(alloc, size)
    return _AttachedBuffer(alloc, size)


def _reduce_ctype(obj):
    wrapper = getattr(obj, "_wrapper", None)
    if not isinstance(wrapper, PoolBuffer):
        return _sc.reduce_ctype(obj)
    context.assert_spawning(obj)
    if isinstance(obj, ctypes.Array):
        return (_rebuild_ctype, (obj._type_, wrapper, obj._length_))
    return (_rebuild_ctype, (type(obj), wrapper, None))


def _rebuild_ctype(type_, wrapper, length):
    """A ctypes object over wrapper's bytes, or its proxy when they are on
    another node."""
    if isinstance(wrapper, _RemoteBuffer):
        if length is not None:
            return _RemoteArray(type_, wrapper, length)
        return _RemoteObject(type_, wrapper, None)
    obj = _sc.rebuild_ctype(type_, wrapper, length)
    reduction.ForkingPickler.register(type(obj), _reduce_ctype)
    return obj


class _RemoteCtype:
    """A ctypes object of another node's pool, reached by copies."""

    __slots__ = ("_type", "_wrapper", "_length", "_size")

    def __init__(self, type_, wrapper, length):
        object.__setattr__(self, "_type", type_)
        object.__setattr__(self, "_wrapper", wrapper)
        object.__setattr__(self, "_length", length)
        full = type_ if length is None else type_ * length
        object.__setattr__(self, "_size", ctypes.sizeof(full))

    def _snapshot(self):
        """A local ctypes copy of the whole object."""
        full = self._type if self._length is None else self._type * self._length
        return full.from_buffer_copy(self._wrapper.read(0, self._size))

    def __reduce__(self):
        context.assert_spawning(self)
        return (_rebuild_ctype, (self._type, self._wrapper, self._length))

    def _stock_sync_class(self):
        """The class multiprocessing.sharedctypes.synchronized would pick
        for the ctypes object this stands for."""
        if self._length is None:
            sample = self._type()
        else:
            sample = (self._type * 1)()
        return type(_sc.synchronized(sample, _NoLock()))

    def __repr__(self):
        return "<%s of node %d: %r>" % (
            type(self).__name__, self._wrapper._alloc.node_id - 1, self._snapshot())


class _NoLock:
    def acquire(self, *a):
        return True

    def release(self):
        pass


class _RemoteObject(_RemoteCtype):
    """A simple ctypes value (.value) or a structure (its fields)."""

    __slots__ = ()

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._snapshot(), name)

    def __setattr__(self, name, value):
        if name.startswith("_"):
            raise AttributeError("%s is read-only" % name)
        copy = self._snapshot()
        setattr(copy, name, value)
        self._wrapper.write(0, bytes(copy))


class _RemoteArray(_RemoteCtype):
    """A ctypes array: len, items, slices (and .value/.raw of a char
    array), each access one copy."""

    __slots__ = ()

    def __len__(self):
        return self._length

    def _index(self, i):
        i = i.__index__()
        if i < 0:
            i += self._length
        if not 0 <= i < self._length:
            raise IndexError("invalid index")
        return i

    def _read_items(self, lo, hi):
        isz = ctypes.sizeof(self._type)
        return (self._type * (hi - lo)).from_buffer_copy(
            self._wrapper.read(lo * isz, (hi - lo) * isz))

    def __getitem__(self, i):
        if isinstance(i, slice):
            r = range(*i.indices(self._length))
            if not r:
                return (self._type * 0)()[:]
            lo, hi = min(r), max(r) + 1
            got = self._read_items(lo, hi)
            if r.step == 1:
                return got[:]
            return (self._type * len(r))(*[got[j - lo] for j in r])[:]
        i = self._index(i)
        return self._read_items(i, i + 1)[0]

    def __setitem__(self, i, value):
        isz = ctypes.sizeof(self._type)
        if not isinstance(i, slice):
            i = self._index(i)
            one = (self._type * 1)()
            one[0] = value
            self._wrapper.write(i * isz, bytes(one))
            return
        r = range(*i.indices(self._length))
        if len(value) != len(r):
            raise ValueError("Can only assign sequence of same size")
        if not r:
            return
        items = (self._type * len(r))()
        items[:] = value
        if r.step == 1:
            self._wrapper.write(r.start * isz, bytes(items))
            return
        for k, j in enumerate(r):
            self._wrapper.write(j * isz, bytes(items)[k * isz:(k + 1) * isz])

    def __iter__(self):
        return iter(self._snapshot())

    def __getattr__(self, name):
        if name in ("value", "raw"):
            return getattr(self._snapshot(), name)
        raise AttributeError(name)

    def __setattr__(self, name, value):
        if name not in ("value", "raw"):
            raise AttributeError("%r object has no attribute %r" % (type(self).__name__, name))
        copy = self._snapshot()
        setattr(copy, name, value)
        self._wrapper.write(0, bytes(copy))


def _new_value(type_):
    return _rebuild_ctype(type_, PoolBuffer(ctypes.sizeof(type_)), None)


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
    if isinstance(obj, _RemoteCtype):
        wrapper = obj._stock_sync_class()(obj, lock, ctx)
    else:
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
    if isinstance(obj, _RemoteCtype):
        args = (obj._type, obj._wrapper, obj._length)
    elif isinstance(obj, ctypes.Array):
        args = (obj._type_, obj._wrapper, obj._length_)
    else:
        args = (type(obj), obj._wrapper, None)
    return (_rebuild_synchronized, args + (self._lock,))


def _rebuild_synchronized(type_, wrapper, length, lock):
    from .context import register
    return _synchronized(_rebuild_ctype(type_, wrapper, length), lock, register())


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
