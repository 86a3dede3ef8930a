"""Queue, JoinableQueue and SimpleQueue over channels.

A queue is one channel in the runtime's default pool.  put() sends the
object straight into the channel: a byte string as it is (a kind byte of
its own, K_RAW), anything else pickled (large buffers out of band, as for
Connections).  When an unbounded queue's channel is full the objects wait
in this process and a feeder thread moves them on, many per C call, so
put() never blocks, as with stock queues; once nothing of this process
waits any more, put() sends directly again.  Every call into the channel,
the inline ones included, counts its thread in the Connection's busy list
while it is inside, so that the last close of the channel in this process
(the Connection's, or the runtime's at exit) waits for it instead of
destroying the channel under it.  Queues pickle as the
channel's descriptor: they pass to children as Process arguments and
through other queues and pipes.

On another node than its channel, an unbounded queue's puts are
buffered (libdchan's DCHAN_SEND_BUFFERED_WAIT): a put returns once it is
in this node's gateway, many are in flight at once, each waits at the
channel's node for room as long as it takes, and they arrive in the
order they were made.  A put that failed there (the node was lost, the
channel destroyed) is raised by a later put, by close() or
join_thread(), or reported at the process's exit, which waits for the
puts in flight as a stock queue's exit waits for its feeder thread.

SimpleQueue is a pair of Connections on one channel, with Connection
messages only: multiprocessing.Pool reads and writes them directly.
"""
import collections
import itertools
import threading
from threading import get_ident as _get_ident
from pickle import dumps as _dumps_plain, loads as _loads
from queue import Empty, Full

from multiprocessing import util

from . import channels, connection, machine, runtime
from ._consts import (FOREVER_NS as _FOREVER, RC_EAGAIN as _EAGAIN,
                      RC_ETIMEDOUT as _ETIMEDOUT,
                      RC_NOSPACE as _NOSPACE, SLICE_NS as _SLICE_NS)
from ._dragon_cffi import ffi, lib
from ._framing import (K_BYTES, K_RAW, HDR_BYTES as _HDR_BYTES, HDR_RAW as _HDR_RAW,
                       K_BYTES_CHAR as _K_BYTES_CHAR, K_RAW_CHAR as _K_RAW_CHAR,
                       PLAIN as _PLAIN, RECV_BUF as _RECV_BUF, dumps as _dumps,
                       new_rstate as _new_rstate, recv_result as _recv_other)
from ._errors import PoolFullError

__all__ = ["Queue", "JoinableQueue", "SimpleQueue"]

#: Channel capacity of a queue without maxsize.
QUEUE_CAPACITY = 4096
#: Objects the feeder thread sends in one C call, at most.
_BATCH = 512

_msg_send = lib.dragon_msg_send
_msg_send_many = lib.dragon_msg_send_many
_msg_recv = lib.dragon_msg_recv
#: Results of a send that found no room now (to wait for, or leave to the
#: feeder thread).
_NOT_NOW = (_EAGAIN, _ETIMEDOUT, _NOSPACE)


def _encode(obj):
    """The Queue message for obj: its bytes (kind byte first) when it fits
    a receive buffer, else (out-of-band buffers, pickle) for
    Connection._send_obj."""
    if type(obj) is bytes and len(obj) < _RECV_BUF:
        return _HDR_RAW + obj
    buffers, data = _dumps(obj)
    if not buffers and len(data) < _RECV_BUF:
        return _HDR_BYTES + data
    return buffers, data


def _queue_shared(capacity):
    rt = runtime.current()
    ch = channels.Channel.create(rt.pool, capacity=capacity)
    return connection.Shared.new([ch], rt.pool.alloc(connection.SHARED_BYTES))


def _queue_endpoint(capacity):
    c = connection.Connection(_queue_shared(capacity), 0, True, True)
    c._peer_always = True
    return c


class SimpleQueue:
    """multiprocessing.SimpleQueue on a channel.  _reader and _writer are
    Connections on it (multiprocessing.Pool uses them directly)."""

    def __init__(self, *, ctx=None):
        shared = _queue_shared(QUEUE_CAPACITY)
        self._reader = connection.Connection(shared, 0, True, False)
        self._writer = connection.Connection(shared, 1, False, True)
        self._reader._peer_always = self._writer._peer_always = True
        ctx = ctx or _dragon_context()
        self._rlock = ctx.Lock()
        self._closed = False

    def _check(self):
        if self._closed:
            raise ValueError("Queue %r is closed" % self)

    def put(self, obj):
        self._writer.send(obj)

    def get(self):
        return self._reader.recv()

    def empty(self):
        return not self._reader.poll(0)

    def close(self):
        self._reader.close()
        self._writer.close()

    def __getstate__(self):
        return {"_reader": self._reader, "_writer": self._writer,
                "_rlock": self._rlock, "_closed": False}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._reader._peer_always = self._writer._peer_always = True

    def __class_getitem__(cls, item):
        import types
        return types.GenericAlias(cls, item)


def _dragon_context():
    import multiprocessing
    return multiprocessing.get_context("dragon")


class Queue:
    """multiprocessing.Queue on a channel."""

    def __init__(self, maxsize=0, *, ctx=None):
        self._maxsize = maxsize if maxsize > 0 else 0
        cap = min(maxsize, channels.lib.DCHAN_CAPACITY_MAX) if maxsize > 0 else QUEUE_CAPACITY
        self._conn = _queue_endpoint(cap)
        self._after_unpickle()

    def _after_unpickle(self):
        self._reader = self._writer = self._conn
        self._closed = False
        # The threads inside calls on the channel (Connection._busy); the
        # hot paths take the Connection's handle (None once it is closed).
        # put() of an unbounded queue takes its inline path while _direct
        # is set (not closed).
        self._busy = self._conn._busy
        self._direct = not self._maxsize
        # Puts to a channel of another node are buffered (see above).
        wh = self._conn._wh
        self._buffered = (self._direct and wh is not None
                          and lib.dchan_pool(wh) == ffi.NULL)
        if self._buffered:
            connection.buffer_sends(wh)
        self._bufs = []
        self._pending = collections.deque()
        self._notify = threading.Condition(threading.Lock())
        self._feeder_idle = False
        self._thread = None
        self._joincancelled = False
        self._ignore_epipe = False

    def __getstate__(self):
        return {"_maxsize": self._maxsize, "_conn": self._conn}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._conn._peer_always = True
        self._after_unpickle()

    def _check_closed(self):
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")

    # -- put ---------------------------------------------------------------

    def put(self, obj, block=True, timeout=None):
        if self._direct and not self._pending:
            # The common case inline: a small byte string goes as it is,
            # another small object of a plain builtin type as its pickle.
            t = type(obj)
            if t is bytes:
                if len(obj) < _RECV_BUF and self._send_inline(K_RAW, obj):
                    return
            elif t in _PLAIN:
                data = _dumps_plain(obj, 5)
                if len(data) < _RECV_BUF and self._send_inline(K_BYTES, data):
                    return
        self._put(obj, block, timeout)

    def _send_inline(self, kind, data):
        """Try once to send a small message; True when it went, False
        when there was no room now (or the queue is closed: _put says so).
        An error (of an earlier buffered put, say) is raised."""
        busy = self._busy
        me = _get_ident()
        busy.append(me)
        try:
            h = self._conn._wh
            if h is None:
                return False
            rc = _msg_send(h, kind, data, len(data), 0)
        finally:
            busy.remove(me)
        if rc == 0:
            return True
        if rc in _NOT_NOW:
            return False
        raise self._conn._send_error(rc)

    def _put(self, obj, block, timeout):
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        if self._maxsize:
            t = None if block and timeout is None else (max(0.0, timeout or 0.0) if block else 0.0)
            if not self._conn._send_within(obj, t, self._on_queue_feeder_error):
                raise Full
            return
        # Straight into the channel unless objects wait for the feeder
        # thread (which takes them off _pending only once they are sent,
        # so an empty _pending means this thread's earlier puts are all
        # in the channel).
        if not self._pending:
            sent = self._put_now(obj, block)
            if sent is True:
                return
            if sent is not False:
                obj = _Encoded(sent)
        elif type(obj) is not bytes or len(obj) < _RECV_BUF:
            # Pickled now, once, as a direct put would: a Connection
            # closed after its put still travels (the feeder pickling it
            # later would fail), and is counted in flight only once.
            try:
                obj = _Encoded(_encode(obj))
            except Exception as e:
                self._on_queue_feeder_error(e, obj)
                return
        self._pending.append(obj)
        if self._thread is None:
            with self._notify:
                if self._thread is None:
                    self._start_thread()
        if self._feeder_idle:
            with self._notify:
                self._notify.notify()

    def _put_now(self, obj, block=True):
        """Send obj if the channel and the pool have room now; True when
        it was sent (or did not pickle, which went to
        _on_queue_feeder_error).  Otherwise False, or the message obj was
        encoded to: the feeder sends that, never a second pickle (a
        Connection pickled twice would count as in flight for ever, and
        its peer would never see end-of-file).  A full pool leaves a
        blocking put to the feeder thread, which waits for room;
        put(block=False) raises PoolFullError at once."""
        conn = self._conn
        msg = False
        try:
            if type(obj) is bytes and len(obj) >= _RECV_BUF:
                return conn._send_large_bytes(obj, 0.0)
            try:
                msg = _encode(obj)
            except Exception as e:
                self._on_queue_feeder_error(e, obj)
                return True
            if type(msg) is tuple:
                return conn._send_obj(msg[0], msg[1], 0.0) or msg
            busy = self._busy
            me = _get_ident()
            busy.append(me)
            try:
                rc = lib.dchan_send(conn._whandle(), msg, len(msg), 0)
            finally:
                busy.remove(me)
            if rc == 0:
                return True
            if rc != _EAGAIN:
                raise conn._send_error(rc)
            return msg
        except PoolFullError as e:
            if block and e.code == _NOSPACE:
                return msg
            raise

    def put_nowait(self, obj):
        return self.put(obj, False)

    def _start_thread(self):
        self._thread = threading.Thread(target=self._feed, daemon=True,
                                        name="QueueFeederThread")
        self._thread.start()
        if not self._joincancelled:
            self._jointhread = util.Finalize(self._thread, Queue._finalize_join,
                                             [self._thread], exitpriority=-5)
        self._close_fin = util.Finalize(self, Queue._finalize_close,
                                        [self._pending, self._notify], exitpriority=10)

    @staticmethod
    def _finalize_join(thread):
        if thread.is_alive():
            thread.join()

    @staticmethod
    def _finalize_close(pending, notify):
        with notify:
            pending.append(_CLOSE)
            notify.notify()

    def _feed(self):
        """The feeder thread: sends what put() left in _pending, in order,
        waiting for room as long as it takes.  Small objects go in
        batches, one C call each, and leave _pending once they are in the
        channel.  put() pickled them already (_Encoded), so that each is
        pickled once, however many batches it waits for."""
        pending, notify = self._pending, self._notify
        while True:
            if not pending:
                with notify:
                    self._feeder_idle = True
                    while not pending:
                        notify.wait()
                    self._feeder_idle = False
            # (list() of the islice runs in C, so no other thread appends
            # to pending while it is iterated)
            msgs = []
            for obj in list(itertools.islice(pending, _BATCH)):
                if obj is _CLOSE:
                    break
                if type(obj) is _Encoded:
                    msg = obj.msg
                elif type(obj) is bytes and len(obj) >= _RECV_BUF:
                    msg = None
                else:
                    try:
                        msg = _encode(obj)
                    except Exception as e:
                        msg = e
                if type(msg) is not bytes:
                    break
                msgs.append(msg)
            try:
                if msgs:
                    sent = self._send_batch(msgs)
                else:
                    obj = pending[0]
                    if obj is _CLOSE:
                        pending.popleft()
                        if self._buffered:  # this thread's puts arrived
                            try:
                                connection.flush_sends(_FOREVER)
                            except Exception as e:
                                self._on_queue_feeder_error(e, None)
                        return
                    if isinstance(msg, Exception):
                        self._on_queue_feeder_error(msg, obj)
                    elif type(msg) is tuple:
                        self._conn._send_obj(msg[0], msg[1], None)
                    else:
                        self._conn._send_large_bytes(obj, None)
                    sent = 1
            except Exception as e:
                # The channel was closed in this process (the runtime's
                # teardown at exit, say) or destroyed by another: what is
                # left cannot go, and that is only news when unexpected.
                if not (self._ignore_epipe or self._conn._wh is None
                        or util.is_exiting()):
                    self._on_queue_feeder_error(e, pending[0])
                return
            for _ in range(sent):
                pending.popleft()

    def _send_batch(self, msgs):
        """Send the encoded messages msgs in order, waiting for room;
        returns how many went (at least one)."""
        lens = ffi.new("uint32_t[]", [len(m) for m in msgs])
        data = b"".join(msgs)
        conn, busy, me = self._conn, self._busy, _get_ident()
        while True:
            # Counted in for each slice and out between them, with the
            # handle taken afresh: a close in this process meanwhile
            # (OSError here) destroys the channel only once this thread
            # is out.
            busy.append(me)
            try:
                n = _msg_send_many(conn._whandle(), data, lens, len(msgs), _SLICE_NS)
            finally:
                busy.remove(me)
            if n > 0:
                return n
            if n not in _NOT_NOW:
                raise conn._send_error(n)
            machine.check_lost("putting on a Queue")

    @staticmethod
    def _on_queue_feeder_error(e, obj):
        """Called when obj cannot be sent (it does not pickle, say): prints
        the traceback.  Subclasses may override it."""
        import traceback
        traceback.print_exc()

    # -- get ---------------------------------------------------------------

    def get(self, block=True, timeout=None):
        if block and timeout is None and not self._closed:
            bufs = self._bufs
            try:
                st = bufs.pop()
            except IndexError:
                st = _new_rstate()
            buf = st[0]
            busy = self._busy
            me = _get_ident()
            busy.append(me)
            try:
                h = self._conn._rh
                if h is None:
                    bufs.append(st)
                    self._conn._rhandle()  # raises: closed
                n = _msg_recv(h, buf, _RECV_BUF, _SLICE_NS)
            finally:
                busy.remove(me)
            if n > 0:
                k = buf[0]
                if k == _K_RAW_CHAR:
                    data = st[1][1:n]
                    bufs.append(st)
                    if self._conn._watch is not None:
                        self._conn._consumed()
                    return data
                if k == _K_BYTES_CHAR:
                    data = st[1][1:n]
                    bufs.append(st)
                    if self._conn._watch is not None:
                        self._conn._consumed()
                    return _loads(data)
            rc = _recv_other(n, st)
            bufs.append(st)
            return self._load(self._conn._recv_msg(None, rc))
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        if not block:
            timeout = 0.0
        elif timeout is None:
            return self._load(self._conn._recv_msg(None))
        res = self._conn._recv_msg(int(max(0.0, timeout) * 1e9))
        if res is None:
            raise Empty
        return self._load(res)

    def _load(self, msg):
        if msg[0] == K_RAW:
            return bytes(msg[1])
        return self._conn._load(msg)

    def get_nowait(self):
        return self.get(False)

    def qsize(self):
        return len(self._conn._rch) + len(self._pending)

    def empty(self):
        return not self._pending and not self._conn.poll(0)

    def full(self):
        return bool(self._maxsize) and len(self._conn._rch) >= self._maxsize

    # -- closing -----------------------------------------------------------

    def close(self):
        self._closed = True
        self._direct = False
        fin = getattr(self, "_close_fin", None)
        if fin is not None:
            fin()
        if self._buffered:
            connection.flush_sends(0)  # an error already known, without waiting

    def join_thread(self):
        assert self._closed, "Queue {0!r} not closed".format(self)
        if self._thread is not None and not self._joincancelled:
            self._thread.join()
        if self._buffered and not self._joincancelled:
            connection.flush_sends(_FOREVER)

    def cancel_join_thread(self):
        self._joincancelled = True
        if self._buffered:
            connection.exit_without_waiting()
        jt = getattr(self, "_jointhread", None)
        if jt is not None:
            jt.cancel()

    def __class_getitem__(cls, item):
        import types
        return types.GenericAlias(cls, item)


_CLOSE = object()


class _Encoded:
    """An object put() encoded but could not send: the feeder sends the
    message as it is."""
    __slots__ = ("msg",)

    def __init__(self, msg):
        self.msg = msg


class JoinableQueue(Queue):
    """multiprocessing.JoinableQueue on a channel, with task accounting in
    the context's Semaphore and Condition."""

    def __init__(self, maxsize=0, *, ctx):
        super().__init__(maxsize, ctx=ctx)
        self._unfinished_tasks = ctx.Semaphore(0)
        self._cond = ctx.Condition()

    def __getstate__(self):
        return Queue.__getstate__(self) | {"_cond": self._cond,
                                           "_unfinished_tasks": self._unfinished_tasks}

    def put(self, obj, block=True, timeout=None):
        self._check_closed()
        with self._cond:
            super().put(obj, block, timeout)
            self._unfinished_tasks.release()

    def task_done(self):
        with self._cond:
            if not self._unfinished_tasks.acquire(False):
                raise ValueError('task_done() called too many times')
            if self._unfinished_tasks._semlock._is_zero():
                self._cond.notify_all()

    def join(self):
        with self._cond:
            if not self._unfinished_tasks._semlock._is_zero():
                self._cond.wait()

