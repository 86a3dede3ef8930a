"""Connection and Queue message paths of the 'dragon' context, with real
processes: every message kind (small and large byte strings, pickles with
and without out-of-band buffers, objects with registered reducers, sync
objects), receivers in several threads at once, a Queue whose channel
fills up, and put() of an object that does not pickle."""
import multiprocessing as mp
import threading

import pytest
from multiprocessing.reduction import ForkingPickler

import dragon  # noqa: F401

ctx = mp.get_context("dragon")


class Registered:
    """Pickled only through a reducer registered with ForkingPickler."""

    def __init__(self, v):
        self.v = v

    def __reduce__(self):
        raise TypeError("pickled without the registered reducer")


def _rebuild_registered(v):
    return Registered(v + 1)


def _reduce_registered(obj):
    return _rebuild_registered, (obj.v,)


ForkingPickler.register(Registered, _reduce_registered)


def _echo_all(conn):
    while True:
        try:
            obj = conn.recv()
        except EOFError:
            return
        if isinstance(obj, Registered):
            obj = ("registered", obj.v)
        conn.send(obj)


def _payloads():
    return [
        None, True, 7, 2.5, "text", b"", b"xy",
        bytes(range(256)) * 300,            # bytes larger than a receive buffer
        bytearray(b"z" * 100),              # small buffer: in band
        bytearray(b"q" * (1 << 20)),        # large buffer: out of band
        (1, [2, 3], {"k": b"v"}),
        [bytearray(40000), b"a" * 70000, "s"],
    ]


def test_every_kind_round_trips():
    a, b = ctx.Pipe()
    p = ctx.Process(target=_echo_all, args=(b,))
    p.start()
    b.close()
    for obj in _payloads():
        a.send(obj)
        assert a.recv() == obj
    a.send(Registered(41))
    assert a.recv() == ("registered", 42)
    # send_bytes and recv interoperate as with stock Connections
    a.send_bytes(ForkingPickler.dumps({"n": 1}))
    assert a.recv() == {"n": 1}
    a.close()
    p.join(30)
    assert p.exitcode == 0


def test_send_bytes_slice_and_non_pickle():
    a, b = ctx.Pipe()
    a.send_bytes(b"0123456789", 2, 3)
    assert b.recv_bytes() == b"234"
    a.send_bytes(b"not a pickle")
    with pytest.raises(Exception):
        b.recv()
    a.send(["still", "in", "order"])
    assert b.recv() == ["still", "in", "order"]


def _bytes_echo(conn, n):
    for _ in range(n):
        conn.send_bytes(conn.recv_bytes())


def test_bytes_sizes_and_maxlength():
    a, b = ctx.Pipe()
    sizes = [0, 1, 200, 65534, 65535, 65536, 1 << 20]
    p = ctx.Process(target=_bytes_echo, args=(b, len(sizes) + 1))
    p.start()
    for n in sizes:
        msg = bytes((i * 7) & 0xFF for i in range(n))
        a.send_bytes(msg)
        assert a.recv_bytes() == msg
    a.send_bytes(memoryview(b"abcdef")[1:4])
    with pytest.raises(OSError):
        a.recv_bytes(maxlength=2)
    p.join(30)
    assert p.exitcode == 0


def _sender(conn, start, n):
    for i in range(start, start + n):
        conn.send(i)
    conn.close()


def test_threads_receiving_on_one_connection():
    r, w = ctx.Pipe(duplex=False)
    n = 4000
    p = ctx.Process(target=_sender, args=(w, 0, n))
    p.start()
    w.close()
    got = [[] for _ in range(4)]

    def take(out):
        while True:
            try:
                out.append(r.recv())
            except EOFError:
                return

    threads = [threading.Thread(target=take, args=(g,)) for g in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    p.join(30)
    assert sorted(x for g in got for x in g) == list(range(n))
    for g in got:  # each thread saw the messages it took in order
        assert g == sorted(g)


def _put_many(q, n):
    for i in range(n):
        q.put((i, b"x" * (i % 300)))
    q.close()
    q.join_thread()


def test_queue_fills_and_keeps_order():
    q = ctx.Queue()
    n = 3 * 4096 + 17  # more than the channel holds: the feeder thread takes over
    p = ctx.Process(target=_put_many, args=(q, n))
    p.start()
    for i in range(n):
        assert q.get(timeout=30) == (i, b"x" * (i % 300))
    p.join(60)  # the child exits once its feeder thread has sent everything
    assert p.exitcode == 0
    assert q.empty()


def test_queue_put_after_overflow_in_one_process():
    q = ctx.Queue()
    n = 4096 + 100
    for i in range(n):
        q.put(i)
    for i in range(n):
        assert q.get(timeout=30) == i
        if i == 10:
            q.put("after")  # goes behind the waiting objects
    assert q.get(timeout=30) == "after"
    q.close()
    q.join_thread()


class _Unpicklable:
    def __reduce__(self):
        raise TypeError("does not pickle")


def test_queue_put_of_unpicklable_reports_and_goes_on():
    seen = []

    class Q(type(ctx.Queue())):
        @staticmethod
        def _on_queue_feeder_error(e, obj):
            seen.append((type(e), type(obj)))

    q = Q(ctx=ctx)
    q.put(_Unpicklable())
    q.put("next")
    assert q.get(timeout=30) == "next"
    assert seen == [(TypeError, _Unpicklable)]
    q.close()
    q.join_thread()


def _lock_user(conn):
    lock = conn.recv()
    with lock:
        conn.send("locked")


def test_sync_object_through_a_pipe():
    a, b = ctx.Pipe()
    lock = ctx.Lock()
    p = ctx.Process(target=_lock_user, args=(b,))
    p.start()
    a.send(lock)
    assert a.recv() == "locked"
    p.join(30)
    assert p.exitcode == 0


def _put_sizes(q, sizes):
    for n in sizes:
        q.put(bytes((i * 3) & 0xFF for i in range(n)))


def test_queue_bytes_around_the_inline_limit():
    sizes = [0, 65534, 65535, 65536, 1 << 20]
    q = ctx.Queue()
    p = ctx.Process(target=_put_sizes, args=(q, sizes))
    p.start()
    for n in sizes:
        assert q.get(timeout=30) == bytes((i * 3) & 0xFF for i in range(n))
    p.join(30)
    assert p.exitcode == 0
