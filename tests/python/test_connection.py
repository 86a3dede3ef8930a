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


def _receive_until_eof(recv, out):
    while True:
        try:
            out.append(recv())
        except EOFError:
            return


def test_threads_receiving_on_one_connection():
    r, w = ctx.Pipe(duplex=False)
    n = 4000
    p = ctx.Process(target=_sender, args=(w, 0, n))
    p.start()
    w.close()
    got = [[] for _ in range(4)]
    threads = [threading.Thread(target=_receive_until_eof, args=(r.recv, g))
               for g in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    p.join(30)
    assert sorted(x for g in got for x in g) == list(range(n))
    for g in got:  # each thread saw the messages it took in order
        assert g == sorted(g)


def _notices_between(w, n, notice):
    # An end-of-file notice before every message, as a writer end closed in
    # some process (while another still holds it) would leave them.
    import time
    from dragon._consts import RC_NOT_NOW
    h = w._whandle()
    for i in range(n):
        rc = notice(h)
        while rc in RC_NOT_NOW:  # full
            time.sleep(0.001)
            rc = notice(h)
        assert rc == 0, rc
        w.send_bytes(b"")  # as short as a message gets
        w.send_bytes(b"%d" % i)
    w.close()


def _send_notice(h):
    from dragon import connection
    return connection._send_notice(h)


def test_pollers_never_take_a_message_for_a_notice():
    # poll() drops an end-of-file notice at the head of the channel; with
    # receivers in other threads (or processes) taking from the same
    # channel, the notice it saw can be gone by the time it drops it: it
    # must then leave the message that took its place.
    r, w = ctx.Pipe(duplex=False)
    n = 3000
    p = ctx.Process(target=_notices_between, args=(w, n, _send_notice))
    p.start()
    w.close()
    got = [[] for _ in range(2)]
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            r.poll(0)

    takers = [threading.Thread(target=_receive_until_eof, args=(r.recv_bytes, g))
              for g in got]
    pollers = [threading.Thread(target=poll) for _ in range(2)]
    for t in takers + pollers:
        t.start()
    for t in takers:
        t.join(60)
    stop.set()
    for t in pollers:
        t.join(60)
    p.join(30)
    assert p.exitcode == 0
    everything = [x for g in got for x in g]
    assert everything.count(b"") == n
    assert sorted(int(x) for x in everything if x) == list(range(n))


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


# -- lifetimes: closing and collecting while other threads use a Connection


def test_close_while_another_thread_receives(run_python):
    run_python('''
import multiprocessing as mp, threading, time
import dragon
ctx = mp.get_context("dragon")

def reader(c, out):
    try:
        while True:
            out.append(c.recv())
    except (EOFError, OSError) as e:
        out.append(type(e).__name__)

out = []
for i in range(150):
    a, b = ctx.Pipe()
    t = threading.Thread(target=reader, args=(a, out))
    t.start()
    b.send(i)
    time.sleep(0.001)
    a.close()
    b.close()
    t.join(30)
    assert not t.is_alive()
assert set(out) - set(range(150)) <= {"EOFError", "OSError"}, set(out)
''')


def test_connection_whose_fileno_was_used_is_collected():
    import gc
    import weakref
    from multiprocessing.connection import wait

    def helpers():
        return sum(t.name == "dragon-conn-ready" for t in threading.enumerate())

    before = helpers()
    a, b = ctx.Pipe()
    b.send("x")
    assert wait([a], 10) == [a]
    assert helpers() == before + 1
    ref = weakref.ref(a)
    del a
    gc.collect()
    assert ref() is None
    for _ in range(500):  # the helper thread ends by itself
        if helpers() == before:
            break
        threading.Event().wait(0.01)
    assert helpers() == before
    b.close()


def test_collect_while_the_readiness_thread_polls(run_python):
    # The finalizer of a collected Connection runs while its helper
    # thread is inside dchan_poll on the same channel.
    run_python('''
import gc, multiprocessing as mp, threading, time
from multiprocessing.connection import wait
import dragon
ctx = mp.get_context("dragon")
for i in range(200):
    a, b = ctx.Pipe()
    a.fileno()
    if i % 3 == 0:
        b.send(i)
        assert wait([a], 10) == [a]
    elif i % 3 == 1:
        del b
    del a
    gc.collect()
deadline = time.monotonic() + 30
while any(t.name == "dragon-conn-ready" for t in threading.enumerate()):
    assert time.monotonic() < deadline, "readiness threads left"
    time.sleep(0.05)
''')


def test_pipe_not_destroyed_under_the_readiness_thread(run_python):
    # A collected Connection's readiness helper may still be inside a call
    # on the channel (a thread descheduled there, held here at a gate):
    # the last holder must not destroy the channel, whose memory would go
    # to the next allocation, until the helper has left it.  Destroying
    # too early corrupted messages of other objects (a Queue's pickled
    # Connection failed its descriptor checksum in the child).
    run_python('''
import gc, multiprocessing as mp, threading
import dragon
from dragon import channels, connection
ctx = mp.get_context("dragon")

real_poll, real_destroy = connection._poll_ready, channels.Channel.destroy
inside = [0]
entered, gate, destroyed = threading.Event(), threading.Event(), threading.Event()
seen = []

def poll_ready(*args):
    inside[0] += 1
    try:
        r = real_poll(*args)
        entered.set()
        assert gate.wait(60), "gate never opened"
        return r
    finally:
        inside[0] -= 1

def destroy(self):
    seen.append(inside[0])
    real_destroy(self)
    destroyed.set()

connection._poll_ready = poll_ready
channels.Channel.destroy = destroy
a, b = ctx.Pipe()
a.fileno()
assert entered.wait(60), "the readiness thread never polled"
del a
gc.collect()
b.close()     # the last holder in this process (unless a's is still held)
gate.set()
assert destroyed.wait(60), "the pipe was never destroyed"
assert seen and not any(seen), "destroyed while its readiness thread polled: %s" % seen
''')

def test_out_of_band_buffer_outlives_its_connection(run_python):
    # In a child the pool is reached through the channels' own mapping:
    # a received buffer must keep it mapped after the Connection is closed.
    run_python('''
import gc, multiprocessing as mp
import dragon

def child(conn):
    buf = conn.recv()
    conn.close()
    del conn
    gc.collect()
    assert bytes(buf[:3]) == b"abc" and len(buf) == 1 << 20
    buf[:3] = b"xyz"

if __name__ == "__main__":
    ctx = mp.get_context("dragon")
    a, b = ctx.Pipe()
    p = ctx.Process(target=child, args=(b,))
    p.start()
    b.close()
    a.send(bytearray(b"abc" + bytes((1 << 20) - 3)))
    p.join(60)
    assert p.exitcode == 0, p.exitcode
''')


def test_pipes_across_processes_and_threads_with_forced_collection(run_python):
    # Pipe ends travel to children through a Queue and are closed there
    # while threads here receive on their other ends and collections run.
    run_python('''
import gc, multiprocessing as mp, threading
import dragon

def pass_along(q_in):
    while True:
        conn = q_in.get()
        if conn is None:
            return
        conn.send(conn.recv() + 1)
        conn.close()
        gc.collect()

def talk(q, n, errors):
    try:
        for i in range(n):
            a, b = ctx.Pipe()
            q.put(b)
            b.close()
            a.send(i)
            assert a.recv() == i + 1
            try:
                a.recv()
                raise AssertionError("no end-of-file")
            except EOFError:
                pass
            if i % 4 == 0:
                a.fileno()
            del a
            gc.collect()
    except BaseException as e:
        errors.append(repr(e))

if __name__ == "__main__":
    ctx = mp.get_context("dragon")
    q = ctx.Queue()
    procs = [ctx.Process(target=pass_along, args=(q,)) for _ in range(2)]
    for p in procs:
        p.start()
    errors = []
    # Daemon threads, checked after their joins: a thread stuck in a
    # receive fails the test instead of holding up the exit for ever.
    ts = [threading.Thread(target=talk, args=(q, 40, errors), daemon=True)
          for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(240)
    stuck = [t.name for t in ts if t.is_alive()]
    for p in procs:
        q.put(None)
    for p in procs:
        p.join(60)
    assert not stuck, "threads still receiving after 240 s: %s" % stuck
    assert not errors, errors
    assert [p.exitcode for p in procs] == [0, 0]
''', timeout=300)


def test_pipe_not_destroyed_under_a_blocked_receiver(run_python):
    # close() in one thread while another thread of the process is inside
    # a receive on the same Connection, the last end held anywhere: the
    # channel must not be destroyed (its memory going to the next
    # allocation) until that thread has left the call, and the thread then
    # gets the OSError of a closed Connection.  The receiving thread is
    # held at a gate on its way into the receive, as a descheduled thread
    # would be.
    run_python('''
import multiprocessing as mp, threading
import dragon
from dragon import channels, connection
ctx = mp.get_context("dragon")

real_recv, real_destroy = connection._msg_recv, channels.Channel.destroy
inside = [0]
entered, gate = threading.Event(), threading.Event()
seen = []

def msg_recv(*args):
    if threading.current_thread().name != "blocked":
        return real_recv(*args)
    inside[0] += 1
    try:
        entered.set()
        assert gate.wait(60), "gate never opened"
        return real_recv(*args)
    finally:
        inside[0] -= 1

def destroy(self):
    seen.append(inside[0])
    real_destroy(self)

connection._msg_recv = msg_recv
channels.Channel.destroy = destroy
a, b = ctx.Pipe()
out = []

def reader():
    try:
        out.append(a.recv())
    except Exception as e:
        out.append(e)

t = threading.Thread(target=reader, name="blocked")
t.start()
assert entered.wait(60), "the reader never received"
b.close()
closer = threading.Thread(target=a.close)
closer.start()
closer.join(0.5)  # a close that does not wait for the reader destroys now
gate.set()
closer.join(60)
t.join(60)
assert not closer.is_alive() and not t.is_alive(), "close or recv hung"
assert seen and not any(seen), \\
    "destroyed while a thread was inside a receive: %s" % seen
assert type(out[0]) is OSError, out
''')


def test_close_wakes_every_kind_of_blocked_call(run_python):
    # The last close of a Pipe waits for this process's threads inside
    # calls on it: a receiver, a poller and a sender blocked on a full
    # channel, all real threads, must each get their error (or
    # end-of-file) and the close must return.
    run_python('''
import multiprocessing as mp, threading, time
import dragon
ctx = mp.get_context("dragon")
for i in range(60):
    a, b = ctx.Pipe()
    out = {}

    def call(name, fn):
        try:
            out[name] = fn()
        except Exception as e:
            out[name] = type(e).__name__

    def fill():
        for k in range(5000):  # more than the channel holds
            a.send(k)

    ts = [threading.Thread(target=call, args=(n, f)) for n, f in
          (("recv", a.recv), ("poll", lambda: a.poll(60)), ("send", fill))]
    for t in ts:
        t.start()
    time.sleep(0.01 * (i % 3))
    b.close()
    closer = threading.Thread(target=a.close)
    closer.start()
    for t in [closer] + ts:
        t.join(60)
        assert not t.is_alive(), "trial %d: a thread did not return: %s" % (i, out)
    assert out["recv"] in ("EOFError", "OSError"), out
    assert out["send"] in ("OSError", "BrokenPipeError"), out
    assert out["poll"] in (True, "OSError"), out
''')
