"""Channels: message queues in pool memory (libdchan).

A :class:`Channel` is a bounded multi-producer, multi-consumer queue of
messages living in a pool.  Any process that has its descriptor (pickling a
Channel passes it) can send and receive::

    from dragon.channels import Channel
    ch = Channel.create()                 # in the runtime's default pool
    ch.send(b"hello")
    assert ch.recv() == b"hello"

Messages are bytes of any size: small ones travel inline in the channel's
slots, large ones in pool allocations.  :meth:`Channel.send_alloc` hands
over an allocation the sender has filled (no copy), and
:meth:`Channel.recv_view` returns the received message as a memoryview of
pool memory (no copy; the memory is freed when the view is released).

Timeouts are in seconds: None waits as long as it takes, 0 tries once.
An operation that does not complete in time raises TimeoutError.

A handle is freed only when no thread of the process is inside a call on
it: :meth:`Channel.detach` and :meth:`Channel.destroy` let go of this
object's reference, and libdchan's handle is detached when the last
reference (a thread blocked in recv holds one for the length of the call)
is gone.
"""
import os
import threading
import time

from ._consts import FOREVER_NS, RC_EMSGSIZE, RC_NOT_NOW, SLICE_NS
from ._dragon_cffi import ffi, lib
from ._errors import chan_error, check, ChannelDestroyedError  # noqa: F401
from . import machine, mem, runtime

__all__ = ["Channel", "poll", "POLLIN", "POLLOUT", "ChannelDestroyedError"]

POLLIN = lib.DCHAN_POLLIN
POLLOUT = lib.DCHAN_POLLOUT
_DESC_SIZE = ffi.sizeof("dchan_desc_t")


def timeout_ns(timeout):
    """Seconds (None: forever) to libdchan's nanoseconds."""
    if timeout is None:
        return FOREVER_NS
    if timeout <= 0:
        return 0
    return min(int(timeout * 1e9), FOREVER_NS - 1)


#: Serializes taking a handle out of a Channel (detach, destroy).
_closing = threading.Lock()


def _detacher(pid, keep):
    """The destructor of a channel handle: dchan_detach in the process that
    made it (a forked child's copy belongs to the parent).  keep (the
    mapping of a pool libdchan borrowed for the channel) lives as long."""
    def detach(handle, _keep=keep):
        if os.getpid() == pid:
            lib.dchan_detach(handle)
    return detach


def owned_handle(handle, keep=None):
    """handle (a dchan_t *) as a cdata that detaches it when the last
    reference to it is gone."""
    return ffi.gc(handle, _detacher(os.getpid(), keep))


def _sliced(chan, op, timeout):
    """op(handle, wait_ns) repeated in slices of at most SLICE_NS until it
    returns anything but a timeout or timeout (seconds; None: forever) has
    passed; returns its last result.  Each slice takes chan's handle
    afresh (ValueError once the channel was closed)."""
    total = timeout_ns(timeout)
    if total <= SLICE_NS:
        return op(chan.handle, total)
    deadline = None if timeout is None else time.monotonic_ns() + total
    while True:
        if deadline is None:
            wait = SLICE_NS
        else:
            wait = max(0, min(SLICE_NS, deadline - time.monotonic_ns()))
        rc = op(chan.handle, wait)
        if rc not in RC_NOT_NOW or (deadline is not None and time.monotonic_ns() >= deadline):
            return rc
        machine.check_lost("waiting on a channel")


def view_of_msg(msg, start=0, keep=None):
    """A memoryview of a zero-copy message's bytes[start:] that frees the
    allocation once no view of it is left (the cffi buffer keeps the
    garbage-collected pointer alive).  keep: the channel handle whose pool
    mapping the message is in, kept alive as long."""
    data = ffi.cast("char *", msg.data) + start
    owner = ffi.gc(data, lambda _p, msg=msg, _keep=keep: lib.dchan_msg_release(msg))
    return memoryview(ffi.buffer(owner, msg.len - start))


class Channel:
    """This process's handle of a channel.  Make one with :meth:`create`
    or :meth:`attach` (or by unpickling one)."""

    __slots__ = ("_ch", "_owner", "_desc", "_pool", "__weakref__")

    def __init__(self, handle, owner, pool=None):
        """handle: a dchan_t * this object takes over; pool: the
        dragon.mem.Pool it was created with (libdchan borrows its mapping)."""
        handle = owned_handle(handle, None if pool is None else pool._keep)
        self._ch = handle
        self._owner = owner
        self._pool = pool
        d = ffi.new("dchan_desc_t *")
        check(lib.dchan_desc_get(handle, d), "channel descriptor", "dchan")
        self._desc = bytes(ffi.buffer(d))
        rt = runtime.active()
        if rt is not None:
            rt.track(self)

    @classmethod
    def create(cls, pool=None, capacity=None, slot_size=None):
        """Create a channel in pool (a dragon.mem.Pool; default: the
        runtime's default pool) holding capacity messages (default 128),
        each up to slot_size bytes inline (default 224; larger messages
        travel in pool allocations)."""
        if pool is None:
            pool = runtime.current().pool
        attr = ffi.new("dchan_attr_t *")
        if capacity is not None:
            attr.field_mask |= lib.DCHAN_ATTR_CAPACITY
            attr.capacity = capacity
        if slot_size is not None:
            attr.field_mask |= lib.DCHAN_ATTR_SLOT_SIZE
            attr.slot_size = slot_size
        out = ffi.new("dchan_t **")
        rc = lib.dchan_create(pool.handle, attr, out)
        if rc < 0:
            raise chan_error(rc, "creating a channel (capacity %s, slot size %s) in pool %s"
                             % (capacity, slot_size, pool.name))
        return cls(out[0], True, pool)

    @classmethod
    def attach(cls, descriptor):
        """The channel named by descriptor (bytes from :attr:`descriptor`,
        or its text form)."""
        d = ffi.new("dchan_desc_t *")
        if isinstance(descriptor, str):
            check(lib.dchan_desc_from_text(descriptor.encode(), d), "parsing channel descriptor", "dchan")
        else:
            b = bytes(descriptor)
            check(lib.dchan_desc_deserialize(b, len(b), d), "reading channel descriptor", "dchan")
        out = ffi.new("dchan_t **")
        rc = lib.dchan_attach(d, out)
        if rc < 0:
            raise chan_error(rc, "attaching a channel")
        return cls(out[0], False)

    @property
    def descriptor(self):
        """The channel's descriptor (bytes)."""
        return self._desc

    @property
    def text_descriptor(self):
        """The descriptor's text form (for environment variables)."""
        d = ffi.from_buffer("dchan_desc_t *", self._desc)
        buf = ffi.new("char[]", lib.DCHAN_DESC_TEXT_MAX)
        check(lib.dchan_desc_to_text(d, buf, len(buf)), "", "dchan")
        return ffi.string(buf).decode()

    @property
    def handle(self):
        """The dchan_t * (cffi pointer) for calls into the C libraries."""
        if self._ch is None:
            raise ValueError("channel handle is closed")
        return self._ch

    # -- messages ----------------------------------------------------------

    def send(self, data, timeout=None):
        """Send the bytes of data (any bytes-like object; copied)."""
        buf = ffi.from_buffer(data)
        n = len(buf)
        rc = _sliced(self, lambda h, t: lib.dchan_send(h, buf, n, t), timeout)
        if rc < 0:
            raise chan_error(rc, "sending %d bytes" % len(buf))

    def alloc(self, size, timeout=0):
        """An allocation of size bytes from the channel's pool, to fill and
        hand over with :meth:`send_alloc`."""
        pool = self.pool
        return pool.alloc(size, 0, timeout)

    @property
    def pool(self):
        """The channel's pool (a dragon.mem.Pool of this process), as
        mapped where the channel's handle reaches it: allocations to hand
        over with :meth:`send_alloc` must come from this mapping, which is
        not the one given to :meth:`create` when the process maps the pool
        twice (an embedded runtime and this package)."""
        ch = self.handle
        h = lib.dchan_pool(ch)
        if self._pool is None or self._pool._pool != h:
            self._pool = mem.Pool(h, False, borrowed_from=ch)
        return self._pool

    def send_alloc(self, alloc, length=None, timeout=None):
        """Zero-copy send: hand over alloc (from :meth:`alloc`), whose first
        length bytes (default: all) are the message.  On success the
        channel owns the memory and alloc must no longer be used."""
        n = alloc.size if length is None else length
        rc = lib.dchan_send_zc(self.handle, alloc.ptr, n, timeout_ns(timeout))
        if rc < 0:
            raise chan_error(rc, "sending an allocation of %d bytes" % n)
        alloc._view = None

    def recv(self, timeout=None):
        """Receive one message as bytes."""
        return bytes(self.recv_view(timeout))

    def recv_view(self, timeout=None):
        """Receive one message without copying it: a read-write memoryview
        of pool memory, freed when the view (and views made from it) are
        gone."""
        msg = ffi.new("dchan_msg_t *")
        held = []

        def op(h, t):
            held.append(h)
            return lib.dchan_recv_zc(h, t, msg)
        rc = _sliced(self, op, timeout)
        if rc < 0:
            raise chan_error(rc, "receiving")
        return view_of_msg(msg, 0, held[-1])

    def recv_into(self, buffer, timeout=None):
        """Receive one message into buffer (a writable bytes-like object);
        returns its length.  A message larger than the buffer raises
        ValueError and stays in the channel."""
        buf = ffi.from_buffer(buffer, require_writable=True)
        n = ffi.new("size_t *")
        cap = len(buf)
        rc = _sliced(self, lambda h, t: lib.dchan_recv(h, buf, cap, t, n), timeout)
        if rc == RC_EMSGSIZE:
            size = self.peek_size(0)
            raise ValueError("message of %d bytes does not fit a buffer of %d" % (size, len(buf)))
        if rc < 0:
            raise chan_error(rc, "receiving")
        return n[0]

    def peek_size(self, timeout=None):
        """Length of the oldest message, leaving it in the channel."""
        n = ffi.new("size_t *")
        rc = _sliced(self, lambda h, t: lib.dchan_peek(h, ffi.NULL, 0, t, n), timeout)
        if rc < 0:
            raise chan_error(rc, "peeking")
        return n[0]

    def poll(self, events=POLLIN, timeout=0):
        """Wait up to timeout for the channel to be ready for events
        (POLLIN: a message can be received, POLLOUT: one can be sent).
        Returns the ready events (0 if none)."""
        rev = ffi.new("unsigned *")
        rc = _sliced(self, lambda h, t: lib.dchan_poll(h, events, t, rev), timeout)
        if rc in RC_NOT_NOW:
            return 0
        if rc < 0:
            raise chan_error(rc, "polling")
        return rev[0]

    def __len__(self):
        """Messages in the channel now."""
        n = lib.dchan_count(self.handle)
        if n < 0:
            raise chan_error(n, "counting")
        return n

    @property
    def capacity(self):
        """How many messages the channel holds."""
        return lib.dchan_capacity(self.handle)

    def stats(self):
        """A dict: count, capacity, slot_size, blocked_senders,
        blocked_receivers, sent, received, recovered."""
        s = ffi.new("dchan_stats_t *")
        rc = lib.dchan_stats(self.handle, s)
        if rc < 0:
            raise chan_error(rc, "stats")
        return {k: getattr(s, k) for k in ("count", "capacity", "slot_size",
                                           "blocked_senders", "blocked_receivers",
                                           "sent", "received", "recovered")}

    # -- lifetime ----------------------------------------------------------

    def _runtime_closing(self):
        self._take()

    def _take(self):
        with _closing:
            ch, self._ch = self._ch, None
        return ch

    def detach(self):
        """Let go of this process's handle; the channel stays.  Calls other
        threads are making on it finish first (with an error when the
        channel is destroyed meanwhile)."""
        self._take()

    def destroy(self):
        """Destroy the channel (others' operations then fail) and free its
        memory and the messages it holds."""
        ch = self._take()
        if ch is None:
            return
        # Through a handle of its own: a thread of this process may be
        # inside a call on ch, which must stay valid until it returns.
        d = ffi.new("dchan_desc_t *")
        out = ffi.new("dchan_t **")
        if (lib.dchan_desc_get(ch, d) == 0 and lib.dchan_attach(d, out) == 0):
            lib.dchan_destroy(out[0])

    def close(self):
        """destroy() in the creating process, detach() elsewhere."""
        if self._owner:
            self.destroy()
        else:
            self.detach()

    @property
    def closed(self):
        return self._ch is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __reduce__(self):
        return (Channel.attach, (self._desc,))

    def __repr__(self):
        return "<dragon.channels.Channel %s%s>" % (
            self._desc[16:24].hex(), " closed" if self._ch is None else "")


def _pool_desc_bytes(chan_desc):
    d = ffi.from_buffer("dchan_desc_t *", chan_desc)
    return bytes(ffi.buffer(ffi.addressof(d, "pool")))


def poll(channels, events=POLLIN, timeout=None):
    """Wait until at least one of channels is ready for events; returns the
    list of ready channels (empty on timeout)."""
    chans = list(channels)
    if not chans:
        return []
    items = ffi.new("dchan_pollitem_t[]", len(chans))
    held = []

    def op(_h, t):
        held[:] = [c.handle for c in chans]  # kept alive for the call
        for i, h in enumerate(held):
            items[i].ch = h
            items[i].events = events
        return lib.dchan_poll_many(items, len(chans), t)
    rc = _sliced(chans[0], op, timeout)
    if rc in RC_NOT_NOW:
        return []
    if rc < 0:
        raise chan_error(rc, "polling %d channels" % len(chans))
    return [c for i, c in enumerate(chans) if items[i].revents & events]
