"""Queue, JoinableQueue and SimpleQueue over channels.

A queue is one channel in the runtime's default pool.  put() sends the
pickled object straight into the channel (large buffers out of band, as
for Connections); when an unbounded queue's channel is full the objects
wait in this process and a feeder thread moves them on, so put() never
blocks, as with stock queues; once the channel has room again, put()
sends directly again.  Queues pickle as the channel's descriptor:
they pass to children as Process arguments and through other queues and
pipes.
"""
import collections
import os
import threading
from queue import Empty, Full

from multiprocessing import util

from . import channels, connection, runtime
from ._dragon_cffi import lib
from .connection import K_BYTES, _PLAIN
from pickle import dumps as _dumps_plain

__all__ = ["Queue", "JoinableQueue", "SimpleQueue"]

#: Channel capacity of a queue without maxsize.
QUEUE_CAPACITY = 4096


def _queue_shared(capacity):
    rt = runtime.current()
    ch = channels.Channel.create(rt.pool, capacity=capacity)
    return connection._Shared.new([ch], rt.pool.alloc(connection._SHARED_BYTES))


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
        self._pending = collections.deque()
        self._notify = threading.Condition(threading.Lock())
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
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        if not self._maxsize and not self._pending:
            # The common case inline: a small object of a plain builtin type.
            t = type(obj)
            if t in _PLAIN and ((t is not bytes and t is not str) or len(obj) < 4096):
                data = _dumps_plain(obj, 5)
                if not lib.dragon_msg_send(self._conn._wch.handle, K_BYTES, data, len(data), 0):
                    return
        if self._maxsize:
            t = None if block and timeout is None else (max(0.0, timeout or 0.0) if block else 0.0)
            if not self._conn._send_within(obj, t, self._on_queue_feeder_error):
                raise Full
            return
        # Straight into the channel unless objects wait for the feeder
        # thread (which takes one off _pending only after sending it, so an
        # empty _pending means this thread's earlier puts are all sent).
        if not self._pending and self._put_now(obj):
            return
        with self._notify:
            self._pending.append(obj)
            if self._thread is None:
                self._start_thread()
            self._notify.notify()

    def _put_now(self, obj):
        """Send obj if the channel has room now; True when it was sent (or
        did not pickle, which went to _on_queue_feeder_error)."""
        conn = self._conn
        if type(obj) is bytes and len(obj) >= connection._RECV_BUF:
            return conn._send_large_bytes(obj, 0.0)
        try:
            buffers, data = connection._dumps(obj)
        except Exception as e:
            self._on_queue_feeder_error(e, obj)
            return True
        if buffers or len(data) >= connection._RECV_BUF:
            return conn._send_obj(buffers, data, 0.0)
        rc = connection.lib.dragon_msg_send(conn._wch.handle, connection.K_BYTES, data, len(data), 0)
        if rc == 0:
            return True
        if rc != connection._EAGAIN:
            raise conn._send_error(rc)
        return False

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
        pending, notify = self._pending, self._notify
        while True:
            with notify:
                while not pending:
                    notify.wait()
                obj = pending[0]
            if obj is _CLOSE:
                with notify:
                    pending.popleft()
                return
            try:
                if not self._conn._send_within(obj, None, self._on_queue_feeder_error):
                    continue
            except Exception as e:  # the queue was destroyed under us
                if not self._ignore_epipe:
                    self._on_queue_feeder_error(e, obj)
                return
            with notify:
                pending.popleft()

    @staticmethod
    def _on_queue_feeder_error(e, obj):
        """Called when obj cannot be sent (it does not pickle, say): prints
        the traceback.  Subclasses may override it."""
        import traceback
        traceback.print_exc()

    # -- get ---------------------------------------------------------------

    def get(self, block=True, timeout=None):
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        if block and timeout is None:
            return self._conn.recv()
        if not block:
            timeout = 0.0
        res = self._conn._recv_msg(int(max(0.0, timeout) * 1e9))
        if res is None:
            raise Empty
        return self._conn._load(res)

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
        fin = getattr(self, "_close_fin", None)
        if fin is not None:
            fin()

    def join_thread(self):
        assert self._closed, "Queue {0!r} not closed".format(self)
        if self._thread is not None and not self._joincancelled:
            self._thread.join()

    def cancel_join_thread(self):
        self._joincancelled = True
        jt = getattr(self, "_jointhread", None)
        if jt is not None:
            jt.cancel()

    def __class_getitem__(cls, item):
        import types
        return types.GenericAlias(cls, item)


_CLOSE = object()


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

