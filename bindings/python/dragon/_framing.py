"""The messages on a Pipe's or a Queue's channel.

Every message starts with one kind byte:

* ``K_BYTES``: a byte string (what send_bytes() sends), or a pickle that
  has no out-of-band buffers (what send() sends for ordinary objects);
* ``K_OOB``: a pickle whose large buffers (pickle protocol 5, out of
  band) travel in their own pool allocations, received without a copy;
* ``K_RAW``: on a Queue's channel only, a byte string put as it is (no
  pickle); only Queue.get reads a Queue's channel;
* ``K_HOLD``, ``K_RELEASE``: on a Pipe whose ends crossed nodes only,
  a holder of the sender's end names itself (its pid as other nodes name
  it, :func:`control`) when it takes the end and when it lets go, for
  the receivers that cannot see its node's holder record; receivers
  take them and never return them;
* ``K_HANDED``: as ``K_HOLD``, sent by the parent of the process it
  names, which was just given the end as a Process argument (the
  receivers hear of the child before the parent may let go);
* ``K_CLOSE``: the end-of-file notice that wakes the peer, the one
  message without a kind byte: a zero-length message.  Every other
  message is longer, so a receive of at most zero bytes takes a notice at
  the head of the channel and nothing else.

Messages up to ``RECV_BUF`` bytes are received through a reusable buffer
(:func:`new_rstate`).  :mod:`dragon.connection` and :mod:`dragon.queues`
both send and receive them; this module holds what they share: the kinds,
the pickling (:func:`dumps`) and the reading of a receive's result
(:func:`recv_result`).
"""
import copyreg
import io
import pickle
import struct
from pickle import dumps as _dumps_plain

from multiprocessing.reduction import ForkingPickler

from ._dragon_cffi import ffi

K_BYTES, K_OOB, K_CLOSE, K_HOLD, K_RELEASE, K_HANDED = 0, 1, 2, 3, 4, 5
#: The kinds of the holder messages.
K_CONTROL = (K_HOLD, K_RELEASE, K_HANDED)
K_RAW = 16
#: The kind bytes as byte strings: the head of a message, and what
#: indexing a receive buffer (a char[]) gives.
HDR_BYTES, HDR_RAW = bytes((K_BYTES,)), bytes((K_RAW,))
K_BYTES_CHAR, K_RAW_CHAR = HDR_BYTES, HDR_RAW
#: The end-of-file notice (kind K_CLOSE).
NOTICE = b""
#: Buffers at least this large leave the pickle and travel in their own
#: pool allocation.
OOB_THRESHOLD = 32 * 1024
#: Messages up to this size are received through a reusable buffer.
RECV_BUF = 64 * 1024
#: Objects of these exact types pickle without any reducer: pickle.dumps
#: serves them directly.
PLAIN = frozenset((bytes, str, int, float, bool, type(None)))


class _ReducerTable(dict):
    """The reducers of multiprocessing's ForkingPickler, looked up as a
    pickler's dispatch_table: the pickler consults it only for objects
    that are not of a builtin type, and every lookup sees the current
    registrations (ForkingPickler.register, copyreg.pickle)."""

    __slots__ = ()

    def __missing__(self, cls):
        r = ForkingPickler._extra_reducers.get(cls)
        if r is None:
            return copyreg.dispatch_table[cls]
        return r


class _Pickler(pickle.Pickler):
    """ForkingPickler's reductions without copying its dispatch table for
    every message."""

    dispatch_table = _ReducerTable()


def plain(obj):
    """True when plain pickle.dumps(obj, 5) writes what the reducers and
    the out-of-band rule would: obj is of a PLAIN type, a bytearray
    smaller than OOB_THRESHOLD, or a short tuple or list of PLAIN
    objects (what a Pipe or a Queue carries most often)."""
    t = type(obj)
    if t in PLAIN:
        return True
    if t is bytearray:
        return len(obj) < OOB_THRESHOLD
    if (t is tuple or t is list) and len(obj) <= 8:
        for x in obj:
            if type(x) not in PLAIN:
                return False
        return True
    return False


def dumps(obj):
    """(out-of-band buffers, pickle bytes) of obj: buffers at least
    OOB_THRESHOLD bytes large leave the pickle (protocol 5)."""
    if plain(obj):
        return None, _dumps_plain(obj, 5)
    buffers = []

    def keep_large(pb):
        if pb.raw().nbytes < OOB_THRESHOLD:
            return True
        buffers.append(pb)
        return False

    f = io.BytesIO()
    _Pickler(f, 5, buffer_callback=keep_large).dump(obj)
    return buffers, f.getvalue()


def new_rstate():
    """A receive buffer: (char[], its ffi.buffer, whose slices are bytes)."""
    buf = ffi.new("char[]", RECV_BUF)
    return buf, ffi.buffer(buf)


def recv_result(n, st):
    """What a receive into receive buffer st that returned n means when
    it did not take a K_BYTES message the caller handled itself:
    (kind, bytes of the rest) of the message it took (n: its length), or
    the error code (n < 0)."""
    if n < 0:
        return n
    if n == 0:
        return K_CLOSE, b""
    buf, fb = st
    return buf[0][0], fb[1:n]


def control(kind, gpid):
    """A holder message of kind K_HOLD, K_RELEASE or K_HANDED for
    process gpid."""
    return struct.pack("<Bq", kind, gpid)


def control_pid(view):
    """The process a holder message names (view: the message after its
    kind byte)."""
    return struct.unpack_from("<q", view, 0)[0]
