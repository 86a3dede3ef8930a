"""Shared-memory pools and their allocations (libdmem).

A :class:`Pool` is a POSIX shared-memory segment that any process on the
node can map.  :meth:`Pool.alloc` hands out blocks of it as
:class:`Allocation` objects whose :attr:`~Allocation.view` is a writable
memoryview of the shared bytes.  Pools and allocations pickle as their
descriptors, so passing one to another process (a Process argument, a
message on a Queue) attaches the same memory there::

    from dragon.mem import Pool
    with Pool.create("scratch", 1 << 20) as pool:
        a = pool.alloc(100)
        a.view[:5] = b"hello"
        ...
        a.free()

Every process using a pool holds its own mapping; the creator removes the
segment with :meth:`Pool.destroy`, the others let go of their mapping with
:meth:`Pool.detach`.

A process cannot map a pool of another node.  An Allocation passed to a
process of another node becomes a :class:`RemoteAllocation` there, whose
:meth:`~RemoteAllocation.read`, :meth:`~RemoteAllocation.write`, items
and slices copy bytes through the transport agents (one round trip each);
a Pool passed there raises an error saying so.
"""
import os

from ._dragon_cffi import ffi, lib
from ._errors import check, make_error, PoolFullError, DragonError  # noqa: F401

__all__ = ["Pool", "Allocation", "RemoteAllocation", "attach_allocation",
           "PoolFullError", "DragonError", "node_id"]


def node_id():
    """The 64-bit id of this host (DRAGON_NODE_ID overrides it)."""
    return int(lib.dmem_node_id())


def _unmapper(pid):
    """The destructor of a pool handle: unmap it, in the process that
    mapped it only (a forked child's copy of the handle is the parent's:
    its allocator cache must not be given back twice)."""
    def unmap(handle):
        if os.getpid() == pid:
            lib.dmem_pool_detach(handle)
    return unmap


def owned_handle(handle):
    """handle (a dmem_pool_t * this process mapped) as a cdata that unmaps
    the pool when the last reference to it is gone.  Every object that
    reaches pool memory (an Allocation and its views, a channel handle
    made in the pool, a thread inside a call) holds that reference, so the
    mapping outlives all of them however they are closed or collected."""
    return ffi.gc(handle, _unmapper(os.getpid()))


def _pin(ptr, keep):
    """ptr as a cdata that keeps keep alive as long as it (and every
    buffer made from it) lives."""
    return ffi.gc(ptr, lambda _p, _keep=keep: None)


def _deadline(timeout):
    if timeout is None:
        return ffi.NULL
    ts = ffi.new("struct timespec *")
    check(lib.dmem_deadline_after(max(0, int(timeout * 1e9)), ts))
    return ts


class Pool:
    """This process's mapping of a shared-memory pool.

    Make one with :meth:`create` or :meth:`attach`; the constructor is not
    for direct use.

    The mapping lives as long as something uses it: :meth:`detach` (and
    :meth:`destroy`, which also removes the segment's name at once) closes
    this object, and the pool is unmapped when its allocations, their
    views and every channel made in it are gone too.
    """

    __slots__ = ("_pool", "_owner", "_desc", "_keep", "__weakref__")

    def __init__(self, handle, owner, borrowed_from=None):
        """handle: a dmem_pool_t * mapped by this process, which this object
        then owns; or, with borrowed_from (whatever keeps that mapping
        alive, e.g. a channel handle), one that libdchan mapped."""
        if borrowed_from is None:
            handle = owned_handle(handle)
            self._keep = handle
        else:
            self._keep = borrowed_from
        self._pool = handle
        self._owner = owner
        d = ffi.new("dmem_pool_desc_t *")
        check(lib.dmem_pool_desc_get(handle, d), "reading the pool descriptor")
        self._desc = bytes(ffi.buffer(d))

    @classmethod
    def create(cls, name, size=0, *, instance=None, replace=False):
        """Create a pool /dev/shm/dragon.<user>.<instance>.<name> of size
        bytes (0: $DRAGON_DEFAULT_SEG_SZ, default 4 GiB, sparse).  This
        process owns it: :meth:`destroy` removes it."""
        attr = ffi.new("dmem_pool_attr_t *")
        keep = None
        if instance is not None:
            keep = ffi.new("char[]", instance.encode())
            attr.field_mask |= lib.DMEM_POOL_ATTR_INSTANCE
            attr.instance = keep
        if replace:
            attr.field_mask |= lib.DMEM_POOL_ATTR_FLAGS
            attr.flags = lib.DMEM_POOL_F_REPLACE
        out = ffi.new("dmem_pool_t **")
        check(lib.dmem_pool_create(name.encode(), int(size), attr, out),
              "creating pool %r" % name)
        del keep
        return cls(out[0], True)

    @classmethod
    def attach(cls, descriptor):
        """Map the pool named by descriptor (bytes from :attr:`descriptor`
        or the text form from :attr:`text_descriptor`)."""
        d = ffi.new("dmem_pool_desc_t *")
        if isinstance(descriptor, str):
            check(lib.dmem_pool_desc_from_text(descriptor.encode(), d),
                  "parsing pool descriptor %r" % descriptor)
        else:
            b = bytes(descriptor)
            check(lib.dmem_pool_desc_deserialize(b, len(b), d), "reading pool descriptor")
        out = ffi.new("dmem_pool_t **")
        check(lib.dmem_pool_attach(d, out), "attaching pool")
        return cls(out[0], False)

    # -- identity ---------------------------------------------------------

    @property
    def descriptor(self):
        """The pool's descriptor as bytes (for :meth:`attach`)."""
        return self._desc

    @property
    def text_descriptor(self):
        """The descriptor's text form, for environment variables."""
        d = ffi.from_buffer("dmem_pool_desc_t *", self._desc)
        buf = ffi.new("char[]", lib.DMEM_POOL_DESC_TEXT_MAX)
        check(lib.dmem_pool_desc_to_text(d, buf, len(buf)))
        return ffi.string(buf).decode()

    @property
    def name(self):
        """The segment's name in /dev/shm."""
        return ffi.string(ffi.from_buffer("dmem_pool_desc_t *", self._desc).segname).decode()

    @property
    def size(self):
        """Size of the segment in bytes."""
        return ffi.from_buffer("dmem_pool_desc_t *", self._desc).size

    @property
    def is_owner(self):
        """True in the process that created the pool."""
        return self._owner

    @property
    def handle(self):
        """The dmem_pool_t * (cffi pointer) for calls into the C libraries."""
        self._check_open()
        return self._pool

    def _check_open(self):
        if self._pool is None:
            raise ValueError("pool is closed")

    def stats(self):
        """A dict of the allocator's accounting: size, heap_size,
        free_bytes, largest_free, live_allocs, free_blocks, recoveries,
        cached."""
        s = ffi.new("dmem_pool_stats_t *")
        check(lib.dmem_pool_stats(self.handle, s), "pool stats")
        return {k: getattr(s, k) for k in ("size", "heap_size", "free_bytes",
                                           "largest_free", "live_allocs",
                                           "free_blocks", "recoveries", "cached")}

    def check(self):
        """Verify every heap invariant; raises DragonError on corruption."""
        check(lib.dmem_pool_check(self.handle), "pool check")

    def reclaim(self, pid):
        """Free every allocation owned by the (exited) process pid; returns
        how many were freed."""
        n = ffi.new("size_t *")
        check(lib.dmem_pool_reclaim(self.handle, pid, n), "reclaim")
        return n[0]

    # -- allocations ------------------------------------------------------

    def alloc(self, size, align=0, timeout=0):
        """Allocate size bytes (aligned to align, 0 meaning 16).

        timeout: 0 fails at once when the pool is full (PoolFullError);
        a number of seconds waits that long for space (then TimeoutError);
        None waits until space is freed.  A request that can never fit
        raises PoolFullError at once."""
        out = ffi.new("void **")
        if timeout == 0:
            rc = lib.dmem_alloc(self.handle, size, align, out)
        else:
            rc = lib.dmem_alloc_timed(self.handle, size, align, _deadline(timeout), out)
        if rc < 0:
            raise make_error(rc, "allocating %d bytes from pool %s" % (size, self.name))
        return Allocation(self, out[0], size)

    def attach_alloc(self, descriptor):
        """The allocation named by descriptor (from
        :attr:`Allocation.descriptor`), in this pool."""
        d = ffi.new("dmem_alloc_desc_t *")
        b = bytes(descriptor)
        check(lib.dmem_alloc_desc_deserialize(b, len(b), d), "reading allocation descriptor")
        out = ffi.new("void **")
        check(lib.dmem_alloc_attach(self.handle, d, out), "attaching allocation")
        return Allocation(self, out[0], d.size)

    # -- lifetime ---------------------------------------------------------

    def detach(self):
        """Close this handle; the segment stays.  The pool is unmapped once
        nothing of this process uses it any more."""
        self._pool = None

    def destroy(self):
        """Remove the segment's name and close this handle (mappings stay
        valid until they are let go of, here and in other processes)."""
        if self._pool is not None:
            self._pool = None
            import _posixshmem
            try:
                _posixshmem.shm_unlink("/" + self.name)
            except OSError as e:
                raise DragonError(-e.errno, "cannot remove segment %s: %s; "
                                  "dragon-cleanup --instance removes leftovers"
                                  % (self.name, e.strerror)) from None

    def close(self):
        """destroy() in the creating process, detach() elsewhere."""
        if self._owner:
            self.destroy()
        else:
            self.detach()

    @property
    def closed(self):
        return self._pool is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __reduce__(self):
        return (_attach_pool, (self._desc,))

    def __repr__(self):
        return "<dragon.mem.Pool %s size=%d%s>" % (
            self.name, self.size, " closed" if self._pool is None else "")


_attached = {}


def _attach_pool(desc):
    """Unpickling a Pool: one mapping per process and pool."""
    import weakref
    ref = _attached.get(desc)
    pool = ref() if ref is not None else None
    if pool is None or pool.closed:
        from . import runtime
        rt = runtime.current(start=False)
        if rt is not None and rt.pool.descriptor == desc:
            return rt.pool
        d = ffi.from_buffer("dmem_pool_desc_t *", desc)
        if d.node_id != lib.dmem_node_id():
            # Shared memory of another node (a Value, an Array, an
            # Allocation passed to a process placed there).
            raise DragonError(-lib.DMEM_E_FOREIGN,
                              "pool %s lives on another node (node id %#x, this one "
                              "is %#x): a process cannot map another node's pool; "
                              "an Allocation (and a Value or Array) passed here is "
                              "copied to and from through the transport, a Pool is "
                              "not: allocate on its own node, or place the process "
                              "there (dragon.Policy)"
                              % (ffi.string(d.segname).decode(errors="replace"),
                                 d.node_id, lib.dmem_node_id()))
        pool = Pool.attach(desc)
        _attached[desc] = weakref.ref(pool)
    return pool


class Allocation:
    """A block of pool memory.  :attr:`view` is a writable memoryview of its
    bytes.  The block lives until :meth:`free` is called (by this or any
    other process holding it); pickling passes its descriptor."""

    __slots__ = ("pool", "_ptr", "size", "_view", "__weakref__")

    def __init__(self, pool, ptr, size):
        self.pool = pool
        self._ptr = ptr
        self.size = size
        # The view keeps the mapping alive, also once this object is gone.
        self._view = memoryview(ffi.buffer(_pin(ptr, pool._keep), size))

    @property
    def view(self):
        """Writable memoryview of the allocation's bytes."""
        if self._view is None:
            raise ValueError("allocation was freed")
        return self._view

    @property
    def address(self):
        """Where the block is mapped in this process (an int)."""
        return int(ffi.cast("uintptr_t", self._ptr))

    @property
    def ptr(self):
        """The block as a cffi void * (for calls into the C libraries)."""
        return self._ptr

    @property
    def offset(self):
        """Offset of the block from the pool's base."""
        return lib.dmem_pool_offset(self.pool.handle, self._ptr)

    @property
    def descriptor(self):
        """The allocation's descriptor as bytes (for Pool.attach_alloc)."""
        d = ffi.new("dmem_alloc_desc_t *")
        check(lib.dmem_alloc_desc_get(self.pool.handle, self._ptr, d), "allocation descriptor")
        return bytes(ffi.buffer(d))

    def free(self):
        """Return the block to its pool."""
        if self._view is not None:
            v, self._view = self._view, None
            try:
                v.release()
            except BufferError:
                pass
            check(lib.dmem_free(self.pool.handle, self._ptr), "freeing allocation")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.free()

    def __len__(self):
        return self.size

    def __reduce__(self):
        # Unpickled on another node, it is a RemoteAllocation.
        return (attach_allocation, (self.pool.descriptor, self.descriptor))

    def __repr__(self):
        return "<dragon.mem.Allocation %d bytes at offset %d of %s>" % (
            self.size, self.offset, self.pool.name)



# How long a copy of another node's memory waits for that node's answer
# (a lost node is reported sooner, by the transport).
_REMOTE_WAIT_NS = 120 * 10**9


class RemoteAllocation:
    """A block of a pool of another node, which this process cannot map:
    what an :class:`Allocation` becomes when it is passed to a process of
    another node.  :meth:`read` and :meth:`write`, and items and slices
    (``a[i]``, ``a[i:j]``, ``a[i:j] = data``), copy bytes through the
    transport agents, one round trip each; the memory stays in its
    owner's pool.  What needs the memory mapped here (:attr:`view`,
    :attr:`address`, :attr:`ptr`) and :meth:`free` raise a DragonError
    that names the owner's node: free the block on its own node."""

    __slots__ = ("pool_descriptor", "descriptor", "size", "node_id", "_pd", "_ad")

    def __init__(self, pool_desc, alloc_desc):
        self.pool_descriptor = bytes(pool_desc)
        self.descriptor = bytes(alloc_desc)
        self._pd = ffi.new("dmem_pool_desc_t *")
        self._ad = ffi.new("dmem_alloc_desc_t *")
        ffi.memmove(self._pd, self.pool_descriptor, ffi.sizeof("dmem_pool_desc_t"))
        ffi.memmove(self._ad, self.descriptor, ffi.sizeof("dmem_alloc_desc_t"))
        self.size = int(self._ad.size)
        self.node_id = int(self._pd.node_id)

    def _check_node(self, what):
        """NodeLostError if the runtime lost the memory's node: nothing
        is asked of it then."""
        from .machine import lost_error, lost_node
        lost = lost_node()
        if lost is not None and lost.index == self.node_id - 1:
            raise lost_error("%s: shared memory of node %d" % (what, lost.index), lost)

    def _fail(self, rc, what):
        from ._errors import chan_error, NodeLostError
        from .machine import nodes
        index = self.node_id - 1
        try:
            host = " (%s)" % nodes()[index].host
        except Exception:
            host = ""
        if rc == -lib.DCHAN_E_NODELOST:
            return NodeLostError("%s: shared memory of node %d%s, which is lost or "
                                 "unreachable" % (what, index, host), index, host[2:-1] or None)
        else:
            what = "%s: shared memory of node %d%s" % (what, index, host)
        return chan_error(rc, what)

    def read(self, offset, n):
        """n bytes from offset, as bytes."""
        self._check_node("reading %d bytes at %d" % (n, offset))
        buf = ffi.new("char[]", max(1, n))
        rc = lib.dchan_mem_read(self._pd, self._ad, offset, buf, n, _REMOTE_WAIT_NS)
        if rc < 0:
            raise self._fail(rc, "reading %d bytes at %d" % (n, offset))
        return ffi.buffer(buf, n)[:]

    def write(self, offset, data):
        """Copy data (bytes-like) to offset."""
        data = bytes(data)
        self._check_node("writing %d bytes at %d" % (len(data), offset))
        rc = lib.dchan_mem_write(self._pd, self._ad, offset, data, len(data),
                                 _REMOTE_WAIT_NS)
        if rc < 0:
            raise self._fail(rc, "writing %d bytes at %d" % (len(data), offset))

    def _where(self):
        from .machine import nodes
        index = self.node_id - 1
        try:
            return "node %d (%s)" % (index, nodes()[index].host)
        except Exception:
            return "node %d" % index

    def _not_mapped(self, what):
        return DragonError(-lib.DMEM_E_FOREIGN,
                           "%s: this allocation of %d bytes lives in a pool of %s "
                           "and cannot be mapped on this node; read() and write() "
                           "(or a[i:j]) copy its bytes, and a process of %s can "
                           "map or free it" % (what, self.size, self._where(),
                                               self._where()))

    @property
    def view(self):
        raise self._not_mapped("Allocation.view")

    @property
    def address(self):
        raise self._not_mapped("Allocation.address")

    @property
    def ptr(self):
        raise self._not_mapped("Allocation.ptr")

    def free(self):
        raise self._not_mapped("Allocation.free()")

    def _range(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(self.size)
            if step != 1:
                raise ValueError("a RemoteAllocation takes slices with step 1")
            return start, max(0, stop - start)
        i = key.__index__()
        if i < 0:
            i += self.size
        if not 0 <= i < self.size:
            raise IndexError("index %d out of range of %d bytes" % (key, self.size))
        return i, None

    def __getitem__(self, key):
        start, n = self._range(key)
        if n is None:
            return self.read(start, 1)[0]
        return self.read(start, n)

    def __setitem__(self, key, data):
        start, n = self._range(key)
        if n is None:
            data = bytes([data])
        else:
            data = memoryview(data).cast("B")
            if len(data) != n:
                raise ValueError("%d bytes given for a slice of %d" % (len(data), n))
        self.write(start, data)

    def __len__(self):
        return self.size

    def __reduce__(self):
        return (attach_allocation, (self.pool_descriptor, self.descriptor))

    def __repr__(self):
        return "<dragon.mem.RemoteAllocation %d bytes of node %d>" % (
            self.size, self.node_id - 1)


def attach_allocation(pool_desc, alloc_desc):
    """The allocation named by the descriptors: an :class:`Allocation` when
    its pool is on this node, else a :class:`RemoteAllocation`."""
    d = ffi.from_buffer("dmem_pool_desc_t *", pool_desc)
    if d.node_id != lib.dmem_node_id():
        return RemoteAllocation(pool_desc, alloc_desc)
    return _attach_pool(bytes(pool_desc)).attach_alloc(alloc_desc)
