"""Queue of the 'dragon' context with real processes: what put() sends
straight into the channel and what waits for the feeder thread when the
channel is full (byte strings as they are, pickles, out-of-band buffers,
objects that do not pickle) arrives once each and in each producer's
order; put() never blocks an unbounded queue; close(), join_thread() and
cancel_join_thread() keep multiprocessing.Queue's meaning."""
import faulthandler
import multiprocessing as mp
import queue
import threading

import pytest

import dragon  # noqa: F401
from dragon import queues

ctx = mp.get_context("dragon")
CAP = queues.QUEUE_CAPACITY


class _Unpicklable:
    def __reduce__(self):
        raise TypeError("does not pickle")


def _item(i):
    """An object of a kind that depends on i: each of the Queue's message
    paths is taken again and again."""
    k = i % 9
    if k == 0:
        return b"b%d" % i                      # small byte string, as it is
    if k == 1:
        return i                               # small pickle
    if k == 2:
        return ("t", i, [i, str(i)])           # pickle of a container
    if k == 3:
        return bytes([i & 0xFF]) * 65535       # largest inline byte string
    if k == 4:
        return bytes([i & 0xFF]) * 65536       # written into a pool block
    if k == 5:
        return bytearray([i & 0xFF]) * 40000   # out-of-band buffer
    if k == 6:
        return "s%d" % i
    if k == 7:
        return b""
    return {"i": i}


def _put_items(q, start, n, done=None):
    for i in range(start, start + n):
        q.put(_item(i))
    if done is not None:
        done.set()


def test_every_kind_in_order_through_the_feeder():
    # Large items fill the pool, not the channel: the count of small ones
    # alone exceeds the channel, so the feeder thread sends many of each.
    n = 2 * CAP + 50
    q = ctx.Queue()
    p = ctx.Process(target=_put_items, args=(q, 0, n))
    p.start()
    # get() without a timeout takes its own path: a lost item would block
    # it, so a bound ends the whole run with every thread's stack instead.
    faulthandler.dump_traceback_later(600, exit=True)
    try:
        for i in range(n):
            got = q.get() if i % 2 else q.get(timeout=60)
            assert type(got) is type(_item(i)) and got == _item(i), i
    finally:
        faulthandler.cancel_dump_traceback_later()
    p.join(60)
    assert p.exitcode == 0
    assert q.empty()


def _put_then_signal(q, n, done):
    for i in range(n):
        q.put(i)
    done.set()  # every put() returned with nobody reading


def test_put_never_blocks_an_unbounded_queue():
    n = 3 * CAP
    q = ctx.Queue()
    done = ctx.Event()
    p = ctx.Process(target=_put_then_signal, args=(q, n, done))
    p.start()
    assert done.wait(120), "put() blocked on a full channel"
    assert [q.get(timeout=60) for _ in range(n)] == list(range(n))
    p.join(60)  # the feeder thread flushed everything, then the child ended
    assert p.exitcode == 0


def _produce(q, tag, n):
    for i in range(n):
        q.put((tag, i))
    q.put((tag, None))


def _consume(q, out):
    seen = []
    while True:
        tag, i = q.get(timeout=120)
        if tag == "stop":
            break
        if i is not None:
            seen.append((tag, i))
    out.put(seen)


def test_two_producers_two_consumers_each_item_once_in_order():
    n = 2 * CAP
    q = ctx.Queue()
    out = ctx.Queue()
    producers = [ctx.Process(target=_produce, args=(q, t, n)) for t in "ab"]
    consumers = [ctx.Process(target=_consume, args=(q, out)) for _ in range(2)]
    for p in producers + consumers:
        p.start()
    for p in producers:  # they end once their feeder threads sent everything
        p.join(120)
        assert p.exitcode == 0
    q.put(("stop", None))  # behind every item: one for each consumer
    q.put(("stop", None))
    results = [out.get(timeout=120) for _ in consumers]
    for p in consumers:
        p.join(60)
        assert p.exitcode == 0
    for tag in "ab":
        per_consumer = [[i for t, i in r if t == tag] for r in results]
        for mine in per_consumer:  # each saw the producer's items in order
            assert mine == sorted(mine)
        assert sorted(per_consumer[0] + per_consumer[1]) == list(range(n))


def test_threads_overflowing_one_queue_keep_their_order():
    q = ctx.Queue()
    n = CAP
    threads = [threading.Thread(target=_produce, args=(q, t, n)) for t in "xyz"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seen = {"x": [], "y": [], "z": []}
    ended = 0
    while ended < 3:
        tag, i = q.get(timeout=60)
        if i is None:
            ended += 1
        else:
            seen[tag].append(i)
    for tag in seen:
        assert seen[tag] == list(range(n))
    q.close()
    q.join_thread()


def test_overflow_in_one_process_counts_and_reports_errors():
    seen = []

    class Q(queues.Queue):
        @staticmethod
        def _on_queue_feeder_error(e, obj):
            seen.append((type(e), type(obj)))

    q = Q(ctx=ctx)
    n = CAP + 200
    for i in range(n):
        q.put(i)
        if i in (CAP + 10, CAP + 150):  # these wait for the feeder thread
            q.put(_Unpicklable())
    assert q.qsize() >= n - 10  # the channel's messages and the waiting ones
    assert [q.get(timeout=60) for _ in range(n)] == list(range(n))
    assert seen == [(TypeError, _Unpicklable)] * 2
    assert q.empty()
    q.close()
    q.join_thread()


def test_closed_queue_refuses_put_and_get():
    q = ctx.Queue()
    q.put(b"x")
    with pytest.raises(AssertionError):
        q.join_thread()  # only after close()
    q.close()
    with pytest.raises(ValueError):
        q.put(b"y")
    with pytest.raises(ValueError):
        q.put(1)
    with pytest.raises(ValueError):
        q.get()
    with pytest.raises(ValueError):
        q.get(timeout=0.01)
    q.join_thread()


def _put_and_close(q, n, cancel):
    for i in range(n):
        q.put(i)
    q.close()
    if cancel:
        q.cancel_join_thread()  # exit without waiting for a reader


def test_join_thread_flushes_and_cancel_join_thread_does_not_wait():
    n = 2 * CAP
    q = ctx.Queue()
    p = ctx.Process(target=_put_and_close, args=(q, n, False))
    p.start()
    assert [q.get(timeout=60) for _ in range(n)] == list(range(n))
    p.join(60)
    assert p.exitcode == 0

    q = ctx.Queue()
    p = ctx.Process(target=_put_and_close, args=(q, n, True))
    p.start()
    p.join(120)  # nobody reads: the child ends with objects left unsent
    assert p.exitcode == 0
    got = []
    while True:
        try:
            got.append(q.get(timeout=0.5))
        except queue.Empty:
            break
    assert CAP <= len(got) < n and got == list(range(len(got)))


def test_bounded_queue_blocks_and_reports_full():
    q = ctx.Queue(maxsize=3)
    for i in range(3):
        q.put_nowait(b"%d" % i)
    assert q.full()
    with pytest.raises(queue.Full):
        q.put_nowait(b"3")
    with pytest.raises(queue.Full):
        q.put(b"3", timeout=0.05)
    assert q.get() == b"0"
    q.put(b"3", timeout=10)
    assert [q.get(timeout=10) for _ in range(3)] == [b"1", b"2", b"3"]


def test_joinable_queue_through_the_feeder():
    q = ctx.JoinableQueue()
    n = CAP + 100
    for i in range(n):
        q.put(i)
    p = ctx.Process(target=_drain_joinable, args=(q, n))
    p.start()
    q.join()  # returns once the child called task_done() for each
    p.join(60)
    assert p.exitcode == 0


def _drain_joinable(q, n):
    for i in range(n):
        assert q.get(timeout=60) == i
        q.task_done()


def test_connection_put_while_the_channel_is_full_is_pickled_once():
    # put() pickles the Connection end, finds the channel full and leaves
    # it to the feeder thread: a second pickle would leave the first copy
    # in flight for ever, and the other end would never see end-of-file.
    q = ctx.Queue()
    for i in range(CAP):
        q.put(i)
    a, b = ctx.Pipe()
    q.put(b)
    b.close()
    for i in range(CAP):
        assert q.get(timeout=60) == i
    got = q.get(timeout=60)
    got.send("hello")
    got.close()
    del got
    assert a.recv() == "hello"
    assert a.poll(30), "no end-of-file 30 s after the last holder closed"
    with pytest.raises(EOFError):
        a.recv()
    q.close()


def test_connections_queued_behind_others_are_pickled_at_put():
    # Puts made while earlier objects still wait for the feeder thread are
    # pickled at once too: a Connection end closed right after its put
    # must still travel (a later pickle fails on the closed end and the
    # object is lost), and its other end must see end-of-file.
    q = ctx.Queue()
    for i in range(CAP):
        q.put(i)
    ends = []
    for _ in range(5):
        a, b = ctx.Pipe()
        q.put(b)
        b.close()
        ends.append(a)
    for i in range(CAP):
        assert q.get(timeout=60) == i
    got = [q.get(timeout=30) for _ in ends]
    for c in got:
        c.close()
    for a in ends:
        assert a.poll(30), "no end-of-file 30 s after the last holder closed"
        with pytest.raises(EOFError):
            a.recv()
    q.close()


_GATED_QUEUE = '''
import multiprocessing as mp, threading
import dragon
from dragon import channels, queues
ctx = mp.get_context("dragon")
WHICH, KIND = %r, %r
name = {"get": "_msg_recv", "put": "_msg_send", "feed": "_msg_send_many"}[WHICH]
real, real_destroy = getattr(queues, name), channels.Channel.destroy
inside = [0]
entered, gate = threading.Event(), threading.Event()
seen = []

def gated(*args):
    if threading.current_thread().name not in ("blocked", "QueueFeederThread"):
        return real(*args)
    inside[0] += 1
    try:
        entered.set()
        assert gate.wait(60), "gate never opened"
        return real(*args)
    finally:
        inside[0] -= 1

def destroy(self):
    seen.append(inside[0])
    real_destroy(self)

setattr(queues, name, gated)
channels.Channel.destroy = destroy
q = ctx.JoinableQueue() if KIND == "joinable" else ctx.Queue()
out = []

def call():
    try:
        if WHICH == "get":
            out.append(q.get())
        elif WHICH == "put":
            out.append(q.put(1))
        else:  # more than the channel holds: the feeder thread sends the rest
            for i in range(queues.QUEUE_CAPACITY + 10):
                q.put(i)
            out.append("put")
    except Exception as e:
        out.append(e)

t = threading.Thread(target=call, name="blocked")
t.start()
assert entered.wait(60), "the thread never reached the channel"
closer = threading.Thread(target=q._reader.close)
closer.start()
closer.join(0.5)  # a close that does not wait for the thread destroys now
gate.set()
closer.join(60)
t.join(60)
assert not closer.is_alive() and not t.is_alive(), "close or call hung: %%s" %% out
assert seen and not any(seen), \\
    "destroyed while a thread was inside a call on it: %%s" %% seen
'''


@pytest.mark.parametrize("kind", ["queue", "joinable"])
@pytest.mark.parametrize("which", ["get", "put", "feed"])
def test_queue_not_destroyed_under_a_thread_inside(run_python, which, kind):
    # The last close of a queue's channel in this process (its Connection's
    # close) while another thread is inside one of the queue's own calls
    # on the channel (get's and put's inline paths, the feeder thread's
    # batch): the channel must not be destroyed (its memory going to the
    # next allocation) before that thread has left the call.  The thread
    # is held at a gate on its way in, as a descheduled thread would be.
    run_python(_GATED_QUEUE % (which, kind))


def test_exit_leaves_no_thread_inside_a_queue(run_python):
    # At the exit of the program that started the embedded runtime, the
    # feeder threads of queues nobody reads (cancel_join_thread) and
    # threads blocked in get() must be out of the channels before the
    # runtime unmaps the pool: a thread still inside would touch unmapped
    # memory.  The runtime waits a while for them (made long here, so that
    # a loaded machine cannot make a thread late); a feeder thread that
    # never looked whether its queue was closed used to outlast any wait.
    out = run_python('''
import multiprocessing as mp, os, threading, time
import dragon
from dragon import queues, runtime
ctx = mp.get_context("dragon")
runtime.QUIESCE_TIMEOUT = 30
rt = runtime.current()
real_detach = type(rt.pool).detach

def detach(self):
    # one write: the dying threads' tracebacks must not split the line
    os.write(1, b"inside at unmap: %s\\n" % str(not runtime._quiesce(0)).encode())
    real_detach(self)

type(rt.pool).detach = detach
for q in (ctx.Queue(), ctx.JoinableQueue()):
    for i in range(queues.QUEUE_CAPACITY + 10):
        q.put(i)
    q.close()
    q.cancel_join_thread()
for q in (ctx.Queue(), ctx.SimpleQueue()):
    threading.Thread(target=q.get, daemon=True).start()
time.sleep(0.5)
''')
    assert "inside at unmap: False" in out, out


def test_exit_is_quiet_for_daemon_threads_blocked_in_get(run_python):
    # CPython leaves a daemon thread blocked in get() or recv() at exit
    # where it is, without a word; so must the 'dragon' context, although
    # the runtime closes the thread's channel under it as the program ends.
    out = run_python('''
import multiprocessing as mp, threading, time
import dragon
ctx = mp.get_context("dragon")
q, sq = ctx.Queue(), ctx.SimpleQueue()
r, w = ctx.Pipe(duplex=False)
for target in (q.get, sq.get, r.recv, r.recv_bytes):
    threading.Thread(target=target, daemon=True).start()
time.sleep(0.5)
print("leaving")
''')
    assert out.strip() == "leaving", out
