"""Pipe and Connection over channels.

A Pipe is two channels (one when not duplex) in the runtime's default pool
plus a small record of which processes hold each end open.  Connection
objects pickle as descriptors, so they pass to children as Process
arguments and through Queues and Pipes, and keep the semantics of
multiprocessing.connection.Connection: recv() raises EOFError once the
other end is closed in every process (or its processes died) and no
message is left; fileno() is a real file descriptor that
multiprocessing.connection.wait() can select on.

Every message starts with one kind byte: a byte string (what send_bytes()
sends, and send() for ordinary objects), a pickle whose large buffers
(pickle protocol 5, out of band) travel in their own pool allocations and
are received without a copy, or a close notice that wakes the peer (the
layout, shared with queues: :mod:`dragon._framing`).

A Pipe end whose channel is on another node sends buffered (libdchan's
DCHAN_SEND_BUFFERED_WAIT): a send returns once it is in this node's
gateway, and its messages arrive in the order they were sent, the
end-of-file and holder notices after them.  A send that failed there
(the Pipe was destroyed, the node was lost) is raised by a later send,
and the exit of the process waits for its sends in flight
(:func:`buffer_sends`).
"""
import functools
import io
import os
import pickle
from pickle import dumps as _dumps_plain, loads as _loads
import struct
import threading
import time
import weakref

from multiprocessing import connection as _mpconn, util
from multiprocessing.context import get_spawning_popen
from multiprocessing.reduction import ForkingPickler

from ._consts import (FOREVER_NS as _FOREVER, RC_EAGAIN as _EAGAIN,
                      RC_ETIMEDOUT as _ETIMEDOUT,
                      RC_EMSGSIZE as _EMSGSIZE, RC_NOSPACE as _NOSPACE,
                      SLICE_NS as _SLICE_NS,
                      SLICE_S as _SLICE_S)
from ._dragon_cffi import ffi, lib
from ._errors import chan_error
from ._framing import (K_BYTES, K_OOB, K_CLOSE, K_HOLD, K_RELEASE, K_HANDED, K_CONTROL,
                       HDR_BYTES as _HDR_BYTES, control as _control_msg,
                       control_pid as _control_pid,
                       K_BYTES_CHAR as _K_BYTES_CHAR, NOTICE as _NOTICE,
                       RECV_BUF as _RECV_BUF, plain as _plain, dumps as _dumps,
                       new_rstate as _new_rstate, recv_result as _recv_other)
from ._holders import HolderTable, KnownHolders, RecordEnd
from . import _holders, channels, machine, runtime

__all__ = ["Connection", "Pipe"]

#: Pipe channels hold this many messages before a sender waits.
PIPE_CAPACITY = 1024
_TABLE_BYTES = HolderTable.WORDS * 4
#: The holder tables of both ends, the word the destroying process claims,
#: the busy word (see RecordEnd) and the word set once an end was passed
#: to a process on another node (see Shared.crossed).
SHARED_BYTES = 2 * _TABLE_BYTES + 12
_ADESC = ffi.sizeof("dmem_alloc_desc_t")
#: The length of a holder message (see dragon._framing.control).
_CONTROL_LEN = len(_control_msg(K_HOLD, 0))


_msg_send = lib.dragon_msg_send
_msg_send_alloc = lib.dragon_msg_send_alloc
_msg_send3 = lib.dragon_msg_send3
_msg_recv = lib.dragon_msg_recv
_unpack = ffi.unpack
_get_ident = threading.get_ident


def flush_sends(timeout_ns):
    """Wait up to timeout_ns for this thread's buffered sends (see
    :func:`buffer_sends`) to be carried out at their nodes; raise the
    first error among them not raised yet."""
    rc = lib.dchan_gw_flush(timeout_ns)
    if rc < 0 and rc != _ETIMEDOUT:
        raise chan_error(rc, "a send to a channel of another node")


_exit_flush = []
#: Set by exit_without_waiting: the exit reports the errors already
#: known and does not wait.
_exit_wait = [True]


def exit_without_waiting():
    """The exit of this process does not wait for its buffered sends
    (Queue.cancel_join_thread): those in flight still go, but their
    failures are not reported."""
    _exit_wait[0] = False


def _flush_at_exit():
    try:
        flush_sends(_FOREVER if _exit_wait[0] else 0)
    except Exception:
        import traceback
        traceback.print_exc()


def buffer_sends(wh):
    """Make the sends through wh, the handle of a channel of another
    node, buffered.  The process's exit then waits for the buffered sends
    of its exiting thread, as a stock queue's exit waits for its feeder
    thread; an error among them is printed, as the feeder's are."""
    rc = lib.dchan_send_mode_set(wh, lib.DCHAN_SEND_BUFFERED_WAIT)
    if rc < 0:
        raise chan_error(rc, "buffering the sends to a channel of another node")
    if not _exit_flush:
        _exit_flush.append(util.Finalize(None, _flush_at_exit, exitpriority=-5))


def _in_call(fn):
    """fn calls into the Pipe's channels: while it runs, its thread counts
    as inside them (Shared.busy), so that the last close in this process
    does not destroy them under it.  The hot paths do the same inline."""
    @functools.wraps(fn)
    def call(self, *args, **kwds):
        busy = self._busy
        me = _get_ident()
        busy.append(me)
        try:
            return fn(self, *args, **kwds)
        finally:
            busy.remove(me)
    return call


class _PrivateRecord:
    """The shared record of a Pipe seen from another node, whose pool this
    process cannot map: memory of this process's own, so that its holder
    tables record nothing anyone else sees (see Shared.attach)."""

    def __init__(self, descriptor):
        self._mem = ffi.new("char[]", SHARED_BYTES)
        self.ptr = self._mem
        # The real record's, for passing the end on (to any node).
        self.descriptor = descriptor

    def free(self):
        pass


class Shared:
    """What both ends of one Pipe share: the channels and the holder
    tables, with the logic that destroys them when the last holder of the
    last end lets go.

    An end unpickled on another node than the Pipe's (a Process argument
    of a child placed there) reaches the channels through the transport
    (libdchan's gateway) but not the record, which is pool memory of the
    Pipe's node: such an end (``remote``) has a record of its own and
    never destroys the channels; it sees end-of-file through the holders
    of its peer it was given with it and the holder messages it received
    since (see Connection).  Messages to or from it carry their
    buffers in band: the record's crossed word, set when an end was
    pickled for a process on another node, tells the senders of the
    Pipe's node to stop sending buffers as allocations of their pool."""

    def __init__(self, chans, alloc, remote=False):
        self.remote = remote
        self.chans = chans          # [to end 0, to end 1] (or one channel)
        self.alloc = alloc          # holder tables of end 0 and end 1
        self.tables = [HolderTable(alloc.ptr, alloc),
                       HolderTable(ffi.cast("char *", alloc.ptr) + _TABLE_BYTES, alloc)]
        self.users = 0              # Connections of this process using it
        # The threads of this process inside a call on the channels (their
        # idents; list.append and list.remove are atomic): the channels
        # are destroyed only once they have left (see quiesce).
        self.busy = []
        self.lock = threading.Lock()
        self.claim = ffi.cast("int32_t *", alloc.ptr) + 2 * HolderTable.WORDS
        self.record = RecordEnd(self.claim, alloc)
        self.crossed_word = self.claim + 2

    @classmethod
    def create(cls, duplex):
        rt = runtime.current()
        n = 2 if duplex else 1
        chans = [channels.Channel.create(rt.pool, capacity=PIPE_CAPACITY) for _ in range(n)]
        return cls.new(chans, rt.pool.alloc(SHARED_BYTES))

    @classmethod
    def new(cls, chans, alloc):
        self = cls(chans, alloc)
        for t in self.tables:
            t.clear()
        self.claim[0] = self.claim[1] = self.claim[2] = 0
        return self

    def crossed(self):
        """True once an end went to another node (or this is such an
        end): buffers then travel in band."""
        return self.remote or lib.dragon_glue_load32(self.crossed_word) != 0

    def mark_crossed(self):
        self.crossed_word[0] = 1

    def descriptor(self):
        return (tuple(c.descriptor for c in self.chans), self.alloc.descriptor)

    @classmethod
    def attach(cls, desc):
        chan_descs, alloc_desc = desc
        chans = [channels.Channel.attach(d) for d in chan_descs]
        if lib.dchan_pool(chans[0].handle) == ffi.NULL:
            return cls(chans, _PrivateRecord(alloc_desc), remote=True)
        alloc = chans[0].pool.attach_alloc(alloc_desc)
        return cls(chans, alloc)

    def add_user(self):
        with self.lock:
            self.users += 1

    def end_closed(self):
        """Called after a holder let go (counted in the record's busy word
        before it did): if nobody holds either end any more, free
        everything."""
        try:
            with self.lock:
                self.users -= 1
                if self.users > 0:
                    return
            if self.remote:  # the Pipe's node destroys it
                for c in self.chans:
                    c.detach()
                return
            # Two processes letting go of the last ends at once both find
            # no holder: only the one that claims the record destroys.
            if (self.tables[0].held() or self.tables[1].held()
                    or not self.record.claim_it()):
                for c in self.chans:
                    c.detach()
                return
            self.quiesce()
            for c in self.chans:
                c.destroy()
        finally:
            # The last process done with the record after the destruction
            # frees it.
            self.record.leave()

    def quiesce(self):
        """Before the destruction: wake the other threads of this process
        that are inside a call on the channels, and wait until they have
        left.  Every Connection of this Pipe in this process is closed by
        now, so a thread that leaves finds its handle gone (OSError) and
        no thread comes in.  A receiver is woken by a notice; a sender or
        a poller returns within a wait slice (SLICE_NS)."""
        me = _get_ident()
        if all(t == me for t in list(self.busy)):
            return
        for c in self.chans:
            try:
                _send_notice(c.handle)
            except Exception:
                pass
        while not all(t == me for t in list(self.busy)):
            time.sleep(0.001)


class Connection(_mpconn._ConnectionBase):
    """One end of a Pipe (see multiprocessing.connection.Connection).

    Lifetime: the channel handles this object uses are freed only when no
    thread is inside a call on them (see dragon.channels), so close() (or
    the garbage collector) may run while another thread is still blocked
    in recv() on the same Connection: that thread gets an error or
    end-of-file, never freed memory.  Nor is the channel destroyed under
    it when that close was the last holding of the Pipe: the destruction
    waits until every thread of the process has left its calls on the
    channels (Shared.quiesce).  The readiness descriptor's helper
    thread holds the handles, not this object, which stays collectable;
    once it is collected, the helper keeps the end held until it has left
    the channel, so that nobody destroys the channel under its calls.

    Across nodes.  A holder on another node than the Pipe's cannot write
    the holder record, nor read it.  Once an end of a Pipe went to another
    node (Shared.crossed), every process that takes an end it may write
    on names itself to the receivers of the other end with a holder
    message (K_HOLD), and again when it lets go (K_RELEASE); the receivers
    take these and never return them.  A receiver on the Pipe's node
    records a holder of another node in the record (its liveness is then
    asked of that node's services, see dragon._holders); a receiver on
    another node keeps the holders of its peer it was given with its end
    (the pickle carries them) and those it learnt since (KnownHolders).
    A child on another node that got an end as a Process argument is
    recorded as its holder by its parent (Popen, _holders.hand_over)."""

    #: True for a queue's endpoint, which never sees end-of-file.
    _peer_always = False

    def __init__(self, shared, end, readable, writable, slot=None,
                 peers=None, pipe=False):
        self._shared = shared
        self._end = end
        self._readable = readable
        self._writable = writable
        if len(shared.chans) == 2:  # channel i carries the messages for end i
            self._rch, self._wch = shared.chans[end], shared.chans[1 - end]
        else:
            self._rch = shared.chans[0] if readable else None
            self._wch = shared.chans[0] if writable else None
        # The handles of the hot paths; None once closed (or when this end
        # does not read, or write).
        self._rh = self._rch.handle if readable else None
        self._wh = self._wch.handle if writable else None
        if pipe and self._wh is not None and lib.dchan_pool(self._wh) == ffi.NULL:
            buffer_sends(self._wh)
        self._mine = shared.tables[end]
        self._busy = shared.busy
        self._peer = shared.tables[1 - end]
        if shared.remote:
            if peers is None:  # holders not known: never end-of-file
                self._peer_always = True
            else:
                self._peer = KnownHolders(peers)
        # A Pipe's end (not a queue's): it takes part in holder messages.
        self._pipe = pipe
        self._control = functools.partial(_apply_control, self._peer)
        # Messages taken while looking for holder messages, for the next
        # receive (see _take_control).
        self._stash = []
        if pipe:
            _pipe_ends.add(self)
        self._slot = self._mine.register() if slot is None else slot
        shared.add_user()
        # Receive buffers: a receiving thread takes one (list.pop is
        # atomic) and puts it back, so two threads never share one.  The
        # list starts with two placeholders (None: make a buffer), so that
        # it never empties and pop/append do not resize it.
        self._bufs = [None, None]
        self._watch = None
        # The readiness helper, for the finalizer to stop.
        self._wbox = [None]
        self._handle = id(self)
        self._pid = os.getpid()
        self._fin = util.Finalize(self, Connection._finalize,
                                  (shared, self._mine, self._slot, self._wch,
                                   self._pid, self._wbox, pipe),
                                  exitpriority=None)
        runtime.current().track(self)

    # -- lifetime ----------------------------------------------------------

    @staticmethod
    def _finalize(shared, mine, slot, wch, pid, wbox, pipe=False):
        w, wbox[0] = wbox[0], None
        if w is not None:
            # Collected while the readiness helper may be inside a call on
            # the channel: this end stays held until the helper has left
            # it, or the last holder could destroy the channel (and its
            # memory go to another allocation) under that call.  The
            # helper lets go when it ends; the collector never waits.
            w.stop(wait=False, then=lambda: Connection._let_go(
                shared, mine, slot, wch, pid, pipe))
            return
        Connection._let_go(shared, mine, slot, wch, pid, pipe)

    @staticmethod
    def _let_go(shared, mine, slot, wch, pid, pipe=False):
        """Release this process's holding of the end (slot of table mine):
        the end-of-file notice when it was the last holder, then the
        destruction of the Pipe when nobody holds either end."""
        if os.getpid() != pid or runtime.active() is None:
            return
        if pipe and wch is not None and shared.crossed():
            _announce(wch.handle, K_RELEASE)
        # The notice goes out while this process still holds its end, so
        # that the peer cannot destroy the channel under it.
        if wch is not None and not mine.held(besides=slot):
            try:  # wake a peer blocked in recv so it sees end-of-file
                _send_notice(wch.handle)
            except Exception:
                pass
        shared.record.enter()
        mine.release(slot)
        shared.end_closed()

    def _runtime_closing(self):
        self._rh = self._wh = None
        self._stop_watch()
        self._fin.cancel()
        self._handle = None

    def _close(self):
        self._rh = self._wh = None
        self._stop_watch()
        self._fin()

    def __del__(self):
        pass  # the Finalize above does the work, also at exit

    def _rhandle(self):
        """The receive channel's handle, or the error of a closed or
        write-only Connection."""
        rh = self._rh
        if rh is None:
            runtime.park_if_exiting()
            self._check_closed()
            self._check_readable()
            raise OSError("handle is closed")
        return rh

    def _whandle(self):
        wh = self._wh
        if wh is None:
            runtime.park_if_exiting()
            self._check_closed()
            self._check_writable()
            raise OSError("handle is closed")
        return wh

    # -- pickling ----------------------------------------------------------

    def __reduce__(self):
        self._check_closed()
        crossing = getattr(get_spawning_popen(), "crosses_nodes", False)
        if crossing:
            self._shared.mark_crossed()
        peers = None
        if self._pipe and (crossing or self._shared.remote):
            # The Popen records the child as the holder (hand_over).
            self._mine.remote_holders = True
            peers = self._peer_holders()
        slot = self._mine.register_pending()
        if self._pipe and self._writable and self._shared.crossed():
            # The receivers of the other end hear of the child from this
            # process, before this process may let go: the child's own
            # holder message could come after that, and they would see
            # end-of-file meanwhile.
            wh = self._wh
            _holders.on_receiver(lambda gpid: _announce(wh, K_HANDED, gpid))
        return (_rebuild_connection,
                (self._shared.descriptor(), self._end, self._readable,
                 self._writable, slot, os.getpid(), peers, self._pipe))

    def _peer_holders(self):
        """The holders of the other end, as other nodes name them (see
        machine.global_pid); None when they are not known."""
        peer = self._peer
        if isinstance(peer, KnownHolders):
            return sorted(peer.gpids)
        if self._shared.remote or peer.overflowed():
            return None
        out = []
        for v in peer.values():
            pid = abs(v)
            out.append(pid if pid >= machine.PID_SPAN else machine.global_pid(pid))
        return out

    # -- sending -----------------------------------------------------------

    @_in_call
    def _send_raw(self, head, payload, timeout=None, tail=b""):
        """Send head (kind byte and header) + payload + tail as one
        message, waiting up to timeout seconds (None: as long as it takes)
        for room.  Returns False when the time ran out."""
        n = len(head) + payload.nbytes + len(tail)
        ch = self._whandle()
        if n <= _RECV_BUF:
            data = head + payload.tobytes() + tail
            rc = lib.dchan_send(ch, data, n, 0)
            if rc == 0:
                return True
            return self._send_blocking(lambda t: lib.dchan_send(ch, data, n, t), timeout, rc)
        pool = lib.dchan_pool(ch)
        if pool == ffi.NULL:
            # A channel of another node: assembled in C, and copied into
            # the gateway, through the transport.
            pl, hn, tn = ffi.from_buffer(payload), len(head), len(tail)

            def op(t):
                return _msg_send3(ch, head, hn, pl, payload.nbytes, tail, tn, t)
            rc = op(0)
            if rc == 0:
                return True
            return self._send_blocking(op, timeout, rc)
        deadline = None if timeout is None else time.monotonic() + timeout
        p = ffi.cast("char *", self._pool_alloc(
            pool, n, deadline, "sending a message of %d bytes" % n))
        ffi.memmove(p, head, len(head))
        ffi.memmove(p + len(head), payload, payload.nbytes)
        if tail:
            ffi.memmove(p + len(head) + payload.nbytes, tail, len(tail))
        try:
            rc = lib.dchan_send_zc(ch, p, n, 0)
            if rc == 0:
                return True
            if rc != _EAGAIN:
                raise self._send_error(rc)
            sent = self._send_blocking(lambda t: lib.dchan_send_zc(ch, p, n, t), timeout)
        except BaseException:
            lib.dmem_free(pool, p)
            raise
        if not sent:
            lib.dmem_free(pool, p)
        return sent

    def _pool_alloc(self, pool, n, deadline, what):
        """n bytes of pool memory for a message.  A full pool is waited
        on, as a full channel is, until deadline (time.monotonic(); None:
        as long as it takes), in slices so that a closed peer is noticed;
        PoolFullError at the deadline, or at once for a deadline already
        past (a send that must not block)."""
        out = ffi.new("void **")
        rc = lib.dmem_alloc(pool, n, 0, out)
        if rc == -lib.DMEM_E_NOSPACE:
            dl = ffi.new("struct timespec *")
            while True:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                machine.check_lost("sending on a Connection")
                if not self._peer_always and not self._peer.held():
                    raise BrokenPipeError(32, "Broken pipe: the other end is closed")
                wait = _SLICE_NS if left is None else int(min(0.2, left) * 1e9)
                lib.dmem_deadline_after(wait, dl)
                rc = lib.dmem_alloc_timed(pool, n, 0, dl, out)
                if rc != _ETIMEDOUT:
                    break
            if rc == _ETIMEDOUT:
                rc = -lib.DMEM_E_NOSPACE  # the pool stayed full
        if rc < 0:
            from ._errors import make_error
            raise make_error(rc, what)
        return out[0]

    def _send_blocking(self, op, timeout, rc=_EAGAIN):
        """Retry op(timeout_ns) after its first attempt failed with rc:
        True once it sent, False when timeout passed with the channel full,
        PoolFullError when it passed with the pool full."""
        if rc not in (_EAGAIN, _ETIMEDOUT, _NOSPACE):
            raise self._send_error(rc)
        last = rc
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._wh is None:  # closed by another thread meanwhile
                self._whandle()
            machine.check_lost("sending on a Connection")
            if not self._peer_always and not self._peer.held():
                raise BrokenPipeError(32, "Broken pipe: the other end is closed")
            if deadline is None:
                wait = _SLICE_NS
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    if last == _NOSPACE:
                        raise self._send_error(last)
                    return False
                wait = int(min(_SLICE_S, left) * 1e9)
            rc = op(wait)
            if rc == 0:
                return True
            if rc not in (_EAGAIN, _ETIMEDOUT, _NOSPACE):
                raise self._send_error(rc)
            last = rc

    def _send_error(self, rc):
        if rc == -lib.DCHAN_E_DESTROYED:
            return BrokenPipeError(32, "Broken pipe: the pipe was destroyed")
        return chan_error(rc, "sending on a Connection")

    def _send_bytes(self, m):
        self._send_raw(_HDR_BYTES, m)

    @_in_call
    def _send_small(self, data, timeout=None):
        """Send bytes data (shorter than _RECV_BUF) as a K_BYTES message;
        False when timeout passed without room."""
        ch = self._whandle()
        n = len(data)
        rc = _msg_send(ch, K_BYTES, data, n, 0)
        if rc == 0:
            return True
        return self._send_small_wait(ch, data, n, rc, timeout)

    def _send_small_wait(self, ch, data, n, rc, timeout):
        return self._send_blocking(
            lambda t: lib.dragon_msg_send(ch, K_BYTES, data, n, t), timeout, rc)

    def send_bytes(self, buf, offset=0, size=None):
        """Send the bytes of a bytes-like object (or buf[offset:offset+size])."""
        busy = self._busy
        me = _get_ident()
        busy.append(me)
        try:
            wh = self._wh
            if type(buf) is bytes and wh is not None and not offset and size is None:
                n = len(buf)
                if n < _RECV_BUF:
                    rc = _msg_send(wh, K_BYTES, buf, n, 0)
                    if rc:
                        self._send_small_wait(wh, buf, n, rc, None)
                    return
                # One C call and one copy when there is room; else the path
                # below, which waits for it.
                if _msg_send_alloc(wh, K_BYTES, buf, n, 0) == 0:
                    return
            self._whandle()
            super().send_bytes(buf, offset, size)
        finally:
            busy.remove(me)

    def _send_large_bytes(self, obj, timeout):
        """Send the pickle of a bytes object of at least _RECV_BUF bytes,
        written straight into the message's pool allocation: the pickle of
        a byte string is a short opcode header, the bytes and STOP."""
        n = len(obj)
        if n < 1 << 32:
            head = b"\x00\x80\x05B" + struct.pack("<I", n)        # BINBYTES
        else:
            head = b"\x00\x80\x05\x8e" + struct.pack("<Q", n)    # BINBYTES8
        return self._send_raw(head, memoryview(obj), timeout, b".")

    def send(self, obj):
        """Send a picklable object.  Large buffers (bytearray, numpy
        arrays, pickle.PickleBuffer) go out of band in pool memory."""
        if self._wh is None:
            self._whandle()
        if type(obj) is bytes and len(obj) >= _RECV_BUF:
            self._send_large_bytes(obj, None)
            return
        if _plain(obj):
            data = _dumps_plain(obj, 5)
            if len(data) < _RECV_BUF:
                self._send_plain(data)
                return
            buffers = None
        else:
            buffers, data = _dumps(obj)
        if not buffers and len(data) < _RECV_BUF:
            self._send_small(data)
        else:
            self._send_obj(buffers, data, None)

    def _send_plain(self, data):
        busy = self._busy
        me = _get_ident()
        busy.append(me)
        try:
            wh = self._wh
            if wh is None:
                wh = self._whandle()
            rc = _msg_send(wh, K_BYTES, data, len(data), 0)
            if rc:
                self._send_small_wait(wh, data, len(data), rc, None)
        finally:
            busy.remove(me)

    def _send_within(self, obj, timeout, on_error):
        """Queue put: send obj within timeout seconds (None: no limit);
        False if there was no room in time.  A pickling error goes to
        on_error(exc, obj) instead of being raised."""
        if type(obj) is bytes and len(obj) >= _RECV_BUF:
            return self._send_large_bytes(obj, timeout)
        try:
            buffers, data = _dumps(obj)
        except Exception as e:
            on_error(e, obj)
            return True
        if not buffers and len(data) < _RECV_BUF:
            return self._send_small(data, timeout)
        return self._send_obj(buffers, data, timeout)

    @_in_call
    def _send_obj(self, buffers, data, timeout):
        if buffers and self._shared.crossed():
            # The receiver may be on another node: buffers in band.
            data = ForkingPickler.dumps(pickle.loads(data, buffers=buffers), 5)
            buffers = None
        data = memoryview(data)
        if not buffers:
            return self._send_raw(_HDR_BYTES, data, timeout)
        ch = self._whandle()
        pool = lib.dchan_pool(ch)
        head = bytearray(b"\x01" + struct.pack("<I", len(buffers)))
        allocs = []
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            for pb in buffers:
                raw = pb.raw()
                p = self._pool_alloc(pool, max(1, raw.nbytes), deadline,
                                     "sending a buffer of %d bytes" % raw.nbytes)
                allocs.append(p)
                ffi.memmove(p, raw, raw.nbytes)
                d = ffi.new("dmem_alloc_desc_t *")
                lib.dmem_alloc_desc_get(pool, p, d)
                lib.dmem_alloc_chown(pool, p, 0)
                head += struct.pack("<Q?", raw.nbytes, raw.readonly) + bytes(ffi.buffer(d))
            if timeout is not None:
                timeout = max(0.0, deadline - time.monotonic())
            sent = self._send_raw(bytes(head), data, timeout)
        except BaseException:
            sent = False
            raise
        finally:
            if not sent:
                for p in allocs:
                    lib.dmem_free(pool, p)
        return sent

    # -- receiving ---------------------------------------------------------

    def _recv_first(self):
        """The first receive of recv_bytes() and recv(): (bytes, None) when
        it took a plain message, else (None, rc) for _recv_msg to go on
        from."""
        if self._stash:
            return None, self._stash.pop(0)
        bufs = self._bufs
        try:
            st = bufs.pop() or _new_rstate()
        except IndexError:
            st = _new_rstate()
        buf = st[0]
        busy = self._busy
        me = _get_ident()
        busy.append(me)
        try:
            rh = self._rh
            if rh is None:
                bufs.append(st)
                rh = self._rhandle()
            n = _msg_recv(rh, buf, _RECV_BUF, _SLICE_NS)
        finally:
            busy.remove(me)
        if n > 0 and buf[0] == _K_BYTES_CHAR:
            data = st[1][1:n]
            bufs.append(st)
            if self._watch is not None:
                self._consumed()
            return data, None
        rc = _recv_other(n, st)
        bufs.append(st)
        return None, rc

    def recv_bytes(self, maxlength=None):
        """Receive one message's bytes."""
        if maxlength is not None and maxlength < 0:
            if self._rh is None:
                self._rhandle()  # a closed Connection says so first
            raise ValueError("negative maxlength")
        data, rc = self._recv_first()
        if rc == _EMSGSIZE:
            data, rc = self._recv_large()
        if data is not None:
            if maxlength is not None and len(data) > maxlength:
                self._bad_message_length()
            return data
        data = self._recv_bytes(maxlength, rc)
        if data is None:
            self._bad_message_length()
        return data.getvalue()

    @_in_call
    def _recv_large(self):
        """After a receive found a message too large for the receive
        buffer: take it without a copy; (its bytes, None) for a K_BYTES
        message, copied once into the bytes object and freed at once,
        else (None, what _recv_msg goes on from)."""
        ch = self._rhandle()
        if self._shared.remote:
            view = _recv_sized(ch)
            if view is None:
                return None, None  # taken by another receiver: wait again
            if view[0] == K_BYTES:
                self._consumed()
                return bytes(view[1:]), None
            return None, (view[0], view[1:])
        msg = ffi.new("dchan_msg_t *")
        if lib.dchan_recv_zc(ch, 0, msg) < 0:
            return None, None  # taken by another receiver: wait again
        p = ffi.cast("char *", msg.data)
        if p[0] == _K_BYTES_CHAR:
            try:
                data = _unpack(p + 1, msg.len - 1)
            finally:
                lib.dchan_msg_release(msg)
            self._consumed()
            return data, None
        view = channels.view_of_msg(msg, 0, ch)
        return None, (view[0], view[1:])

    @_in_call
    def _recv_msg(self, timeout_ns=None, rc=None):
        """The next message as (kind, bytes-like of the rest), or None when
        timeout_ns passed; raises EOFError at end-of-file.  rc: the result
        of an attempt the caller made: an error code, or (kind, bytes) of
        the message it took."""
        ch = self._rhandle()
        deadline = None if timeout_ns is None else time.monotonic_ns() + timeout_ns
        while True:
            if rc is not None:
                pass  # a first attempt was made by the caller
            elif self._stash:
                rc = self._stash.pop(0)
            elif deadline is None:
                rc = self._recv_copy(ch, _SLICE_NS)
            else:
                rc = self._recv_copy(ch, max(0, min(_SLICE_NS, deadline - time.monotonic_ns())))
            if type(rc) is tuple:
                kind, view = rc
            elif rc == _EMSGSIZE and self._shared.remote:
                view = _recv_sized(ch)
                rc = None
                if view is None:  # taken by another receiver meanwhile
                    continue
                kind = view[0]
                view = view[1:]
            elif rc == _EMSGSIZE:
                msg = ffi.new("dchan_msg_t *")
                rc = lib.dchan_recv_zc(ch, 0, msg)
                if rc < 0:  # taken by another receiver meanwhile
                    rc = None
                    continue
                view = channels.view_of_msg(msg, 0, ch)
                kind = view[0]
                view = view[1:]
            elif rc in (_EAGAIN, _ETIMEDOUT):
                rc = None
                if deadline is not None and time.monotonic_ns() >= deadline:
                    if not self._peer_always and not self._peer.held() and lib.dchan_count(ch) <= 0:
                        self._consumed()
                        raise EOFError
                    return None
                machine.check_lost("receiving on a Connection")
                if not self._peer_always and not self._peer.held() and lib.dchan_count(ch) <= 0:
                    self._consumed()
                    raise EOFError
                if self._rh is None:  # closed by another thread meanwhile
                    self._rhandle()
                continue
            elif rc == -lib.DCHAN_E_DESTROYED:
                raise EOFError
            else:
                raise chan_error(rc, "receiving on a Connection")
            rc = None
            self._consumed()
            if kind == K_CLOSE:
                if self._rh is None:  # closed by another thread meanwhile
                    self._rhandle()
                continue
            if kind in K_CONTROL:
                self._control(kind, view)
                continue
            return kind, view

    def _recv_copy(self, ch, wait):
        """dchan_recv into a receive buffer: (kind, bytes of the rest) of
        an inline message, or the error code."""
        bufs = self._bufs
        try:
            st = bufs.pop() or _new_rstate()
        except IndexError:
            st = _new_rstate()
        try:
            return _recv_other(_msg_recv(ch, st[0], _RECV_BUF, wait), st)
        finally:
            bufs.append(st)

    def _recv_bytes(self, maxsize=None, rc=None):
        kind, view = self._recv_msg(None, rc)
        if kind == K_OOB:
            view = memoryview(ForkingPickler.dumps(self._load_oob(view)))
        if maxsize is not None and view.nbytes > maxsize:
            return None
        b = io.BytesIO(view)
        b.seek(0, 2)
        return b

    def recv(self):
        """Receive a picklable object."""
        data, rc = self._recv_first()
        if data is not None:
            return _loads(data)
        return self._load(self._recv_msg(None, rc))

    def _load(self, msg):
        kind, view = msg
        if kind == K_OOB:
            return self._load_oob(view)
        return pickle.loads(view)

    def _load_oob(self, view):
        (nbuf,) = struct.unpack_from("<I", view, 0)
        pos = 4
        ch = self._rhandle()
        pool = lib.dchan_pool(ch)
        bufs = []
        for _ in range(nbuf):
            size, readonly = struct.unpack_from("<Q?", view, pos)
            pos += 9
            d = ffi.new("dmem_alloc_desc_t *")
            ffi.memmove(d, view[pos:pos + _ADESC], _ADESC)
            pos += _ADESC
            out = ffi.new("void **")
            rc = lib.dmem_alloc_attach(pool, d, out)
            if rc < 0:
                raise chan_error(rc, "receiving an out-of-band buffer")
            # The buffer keeps the channel handle, and so the pool's
            # mapping, alive as long as it lives.
            owner = ffi.gc(ffi.cast("char *", out[0]),
                           lambda p, pool=pool, _ch=ch: lib.dmem_free(pool, p))
            mv = memoryview(ffi.buffer(owner, size))
            bufs.append(mv.toreadonly() if readonly else mv)
        return pickle.loads(view[pos:], buffers=bufs)

    @_in_call
    def _poll(self, timeout):
        ready = _poll_ready(self._rhandle(), self._peer, self._peer_always,
                            timeout, self._consumed, lambda: self._rh is None,
                            self._control, self._stash)
        if ready is None:  # closed by another thread meanwhile
            self._rhandle()
        return ready

    # -- readiness descriptor ---------------------------------------------

    def fileno(self):
        """A file descriptor that is readable while a message (or
        end-of-file) is waiting: what multiprocessing.connection.wait()
        selects on.  Made on first use; a helper thread keeps it current."""
        self._check_closed()
        if self._rch is None:
            raise OSError("connection is write-only")
        w = self._watch
        if w is None:
            w = _ReadyFd(self._rhandle(), self._peer, self._peer_always,
                         self._control, self._stash)
            self._watch = self._wbox[0] = w
        else:
            # wait() asks for the descriptor each time it is called: bring
            # it up to date now rather than when the helper thread wakes.
            w.refresh()
        return w.fd

    def _consumed(self):
        w = self._watch
        if w is not None:
            w.consumed()

    def _stop_watch(self):
        w, self._watch = self._watch, None
        self._wbox[0] = None
        if w is not None:
            w.stop()


def _recv_sized(ch):
    """The message at the head of ch, a channel of another node, larger
    than a receive buffer (there is no zero-copy receive through the
    transport): its size from dchan_peek, then a receive into a buffer of
    that size.  None when another receiver took it first."""
    n = ffi.new("size_t *")
    one = ffi.new("char[1]")
    while True:
        rc = lib.dchan_peek(ch, one, 0, 0, n)
        if rc in (_EAGAIN, _ETIMEDOUT):
            return None
        if rc < 0 and rc != _EMSGSIZE:
            raise chan_error(rc, "receiving on a Connection")
        buf = ffi.new("char[]", max(1, n[0]))
        rc = lib.dchan_recv(ch, buf, n[0], 0, n)
        if rc == 0:
            return memoryview(ffi.buffer(buf, n[0]))
        if rc in (_EAGAIN, _ETIMEDOUT):
            return None
        if rc != _EMSGSIZE:  # another, larger message took its place
            raise chan_error(rc, "receiving on a Connection")


def _take_control(ch, control, stash, consumed):
    """Take the holder message at the head of channel handle ch and hand
    it to control(kind, rest).  Other processes may receive from the
    channel too: when another message took its place, a short one taken
    instead goes to stash (the Connection's next receive takes it first),
    and a longer one stays."""
    buf = ffi.new("char[]", _CONTROL_LEN)
    n = ffi.new("size_t *")
    if lib.dchan_recv(ch, buf, _CONTROL_LEN, 0, n) != 0:
        return
    consumed()
    data = ffi.buffer(buf, n[0])[:]
    if not data:
        return  # an end-of-file notice
    if len(data) == _CONTROL_LEN and data[0] in K_CONTROL:
        control(data[0], memoryview(data)[1:])
    else:
        stash.append((data[0], data[1:]))


def _apply_control(peer, kind, view):
    """A holder message reached the receiving end whose peer's holders
    peer records: record what it says."""
    gpid = _control_pid(view)
    if isinstance(peer, KnownHolders):
        (peer.drop if kind == K_RELEASE else peer.add)(gpid)
        return
    pid = machine.local_name(gpid)
    if pid < machine.PID_SPAN:
        # A holder of this node records itself, and lets go itself; its
        # parent's message records it meanwhile (it takes that slot when
        # it records itself, see HolderTable.register).
        if kind == K_HANDED:
            peer.add_remote(pid)
        return
    if kind != K_RELEASE:
        peer.add_remote(pid)
    else:
        peer.drop_remote(pid)


#: The Pipe ends of this process, for announce_exit.
_pipe_ends = weakref.WeakSet()


def announce_exit():
    """This process has finished (see dragon._child): tell the receivers
    on other nodes of the Pipes it holds an end of that it let go, as the
    end of a process does for those of its node (the zygote reaps its
    children only when their parents join them, and until then the
    runtime counts them as running)."""
    for c in list(_pipe_ends):
        wh = c._wh
        if wh is not None and c._shared.crossed():
            _announce(wh, K_RELEASE)


def _announce(ch, kind, gpid=None):
    """Send a holder message naming process gpid (default: this process)
    on channel handle ch (without waiting: a full channel drops it, and
    the end of this process still tells)."""
    if gpid is None:
        gpid = machine.global_pid()
    try:
        lib.dchan_send(ch, _control_msg(kind, gpid), _CONTROL_LEN, 0)
    except Exception:
        pass


def _send_notice(ch):
    """Put an end-of-file notice on channel handle ch (without waiting)."""
    return lib.dchan_send(ch, _NOTICE, 0, 0)


def _poll_ready(ch, peer, peer_always, timeout, consumed, closed,
                control=None, stash=()):
    """Wait up to timeout seconds (None: forever) until a message or
    end-of-file is waiting on channel handle ch; True when one is, None
    when closed() turned true meanwhile.  A close notice at the head is
    dropped (consumed() is called then); a holder message at the head is
    taken and handed to control (see _take_control)."""
    deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
    rev = ffi.new("unsigned *")
    peek = ffi.new("char[]", _CONTROL_LEN)
    nout = ffi.new("size_t *")
    while True:
        if stash:
            return True
        if deadline is None:
            wait = _SLICE_NS
        else:
            wait = int(max(0.0, min(_SLICE_S, deadline - time.monotonic())) * 1e9)
        rc = lib.dchan_poll(ch, lib.DCHAN_POLLIN, wait, rev)
        if rc == 0:
            rc = lib.dchan_peek(ch, peek, _CONTROL_LEN, 0, nout)
            if (rc == 0 and nout[0] == _CONTROL_LEN and control is not None
                    and ord(peek[0]) in K_CONTROL):
                _take_control(ch, control, stash, consumed)
                continue
            if rc == _EMSGSIZE or (rc == 0 and nout[0] > 0):
                return True
            if rc == 0:
                # An end-of-file notice: drop it and look again.  Other
                # processes may receive from this channel too: a receive of
                # at most zero bytes takes the notice if it is still at the
                # head, and leaves a message that took its place.
                if lib.dchan_recv(ch, peek, 0, 0, nout) == 0:
                    consumed()
                if closed():
                    return None
            continue
        if rc == -lib.DCHAN_E_DESTROYED:
            return True
        if deadline is None or time.monotonic() < deadline:
            machine.check_lost("polling a Connection")
        if not peer_always and not peer.held() and lib.dchan_count(ch) <= 0:
            return True  # end-of-file is ready: recv() raises EOFError
        if deadline is not None and time.monotonic() >= deadline:
            return False
        if closed():
            return None


class _ReadyFd:
    """An eventfd that mirrors "a message or end-of-file is waiting" on one
    channel, kept current by a thread that sleeps in dchan_poll.  It holds
    the channel handle, not the Connection: a Connection whose descriptor
    was used is collected like any other, and its finalizer stops this."""

    def __init__(self, ch, peer, peer_always, control=None, stash=()):
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._ch = ch
        self._peer = peer
        self._peer_always = peer_always
        self._control = control
        self._stash = stash
        self._ready = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        # What the helper thread runs once it has left the channel for
        # good (see stop), and whether it has.
        self._then = None
        self._done = False
        self.refresh()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="dragon-conn-ready")
        self._thread.start()

    def _set(self, ready):
        with self._lock:
            if ready == self._ready or self.fd < 0:
                return
            if ready:
                os.eventfd_write(self.fd, 1)
            else:
                try:
                    os.eventfd_read(self.fd)
                except BlockingIOError:
                    pass
            self._ready = ready

    def _run(self):
        try:
            while not self._stop:
                try:
                    ready = _poll_ready(self._ch, self._peer, self._peer_always,
                                        0.05, self.consumed, lambda: self._stop,
                                        self._control, self._stash)
                except Exception:
                    ready = True
                if self._stop:
                    break
                self._set(ready)
                if ready:
                    self._wake.wait(0.01)
                    self._wake.clear()
        finally:
            self._close_fd()
            with self._lock:
                self._done = True
                then, self._then = self._then, None
            if then is not None:
                then()

    def _close_fd(self):
        with self._lock:
            fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def refresh(self):
        if lib.dchan_count(self._ch) > 0:
            self._set(True)

    def consumed(self):
        if lib.dchan_count(self._ch) <= 0:
            self._set(False)
        self._wake.set()

    def stop(self, wait=True, then=None):
        """End the helper thread, which closes the descriptor; wait: until
        it has (not from the garbage collector, which must not block).
        then: called once the thread no longer uses the channel, by the
        thread as it ends (here when it has ended already)."""
        if then is not None:
            with self._lock:
                if not self._done:
                    self._then, then = then, None
        self._stop = True
        self._wake.set()
        if then is not None:
            then()
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()


def _rebuild_connection(desc, end, readable, writable, slot, sender,
                        peers=None, pipe=False):
    shared = Shared.attach(desc)
    s = shared.tables[end].claim(slot, sender)
    c = Connection(shared, end, readable, writable, slot=s, peers=peers, pipe=pipe)
    if pipe and writable and shared.crossed():
        _announce(c._wh, K_HOLD)
    return c


def Pipe(duplex=True):
    """A pair of Connections; duplex=False gives (receive-only, send-only)."""
    shared = Shared.create(duplex)
    if duplex:
        return (Connection(shared, 0, True, True, pipe=True),
                Connection(shared, 1, True, True, pipe=True))
    return (Connection(shared, 0, True, False, pipe=True),
            Connection(shared, 1, False, True, pipe=True))
