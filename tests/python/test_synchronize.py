"""The 'dragon' context's sync objects, shared with real child processes."""
import multiprocessing as mp
import pickle
import threading

import pytest

import dragon  # noqa: F401

ctx = mp.get_context("dragon")


def _hold_then_signal(lock, ready, go):
    with lock:
        ready.set()
        go.wait(30)


def _count(sem, lock, value, n):
    for _ in range(n):
        with lock:
            value.value += 1
    sem.release()


def _barrier_party(barrier, q):
    q.put(barrier.wait(30))


def _notify_later(cond, flag):
    with cond:
        flag.value = 1
        cond.notify_all()


class _Bump:
    """A barrier action that pickles: counts its calls in a shared Value."""

    def __init__(self, value):
        self.value = value

    def __call__(self):
        self.value.value += 1


def _run(target, *args):
    p = ctx.Process(target=target, args=args)
    p.start()
    return p


def test_lock_excludes_a_child_and_release_errors():
    lock, ready, go = ctx.Lock(), ctx.Event(), ctx.Event()
    p = _run(_hold_then_signal, lock, ready, go)
    assert ready.wait(30)
    assert lock.acquire(False) is False
    assert lock.acquire(timeout=0.05) is False
    assert repr(lock) == "<Lock(owner=SomeOtherProcess)>"
    go.set()
    assert lock.acquire(timeout=30)
    assert repr(lock) == "<Lock(owner=MainProcess)>"
    lock.release()
    with pytest.raises(ValueError):
        lock.release()
    p.join(30)
    assert p.exitcode == 0


def test_rlock_recursion_and_owner():
    r = ctx.RLock()
    with r:
        with r:
            assert repr(r) == "<RLock(MainProcess, 2)>"
    assert repr(r) == "<RLock(None, 0)>"
    r.acquire()
    errors = []

    def other():
        try:
            r.release()
        except AssertionError as e:
            errors.append(e)
    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(errors) == 1
    r.release()


def test_semaphores_values_and_children():
    sem = ctx.Semaphore(0)
    lock = ctx.Lock()
    value = ctx.Value("i", 0, lock=False)
    procs = [_run(_count, sem, lock, value, 200) for _ in range(3)]
    for _ in procs:
        assert sem.acquire(timeout=30)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert value.value == 600
    assert sem.get_value() == 0
    assert repr(sem) == "<Semaphore(value=0)>"
    bs = ctx.BoundedSemaphore(2)
    assert bs.acquire() and bs.get_value() == 1
    bs.release()
    with pytest.raises(ValueError):
        bs.release()
    assert repr(bs) == "<BoundedSemaphore(value=2, maxvalue=2)>"


def test_condition_wait_for_a_child():
    cond = ctx.Condition()
    flag = ctx.Value("i", 0)
    with cond:
        p = _run(_notify_later, cond, flag)
        assert cond.wait_for(lambda: flag.value == 1, timeout=30)
    p.join(30)
    assert p.exitcode == 0
    with cond:
        assert cond.wait(0.01) is False


def test_event_and_barrier_with_action():
    ev = ctx.Event()
    assert not ev.is_set() and ev.wait(0.01) is False
    ev.set()
    assert ev.wait() is True and "set>" in repr(ev)
    ev.clear()
    assert repr(ev).endswith("unset>")

    hits = ctx.Value("i", 0)
    b = ctx.Barrier(3, action=_Bump(hits), timeout=30)
    q = ctx.Queue()
    procs = [_run(_barrier_party, b, q) for _ in range(2)]
    me = b.wait()
    got = sorted([me, q.get(timeout=30), q.get(timeout=30)])
    assert got == [0, 1, 2]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert hits.value == 1
    assert b.n_waiting == 0 and not b.broken
    b.abort()
    assert b.broken
    with pytest.raises(threading.BrokenBarrierError):
        b.wait()
    b.reset()
    assert not b.broken


def test_barrier_timeout_breaks_it():
    b = ctx.Barrier(2)
    with pytest.raises(threading.BrokenBarrierError):
        b.wait(0.05)
    assert b.broken


def _all_synchronized():
    lock = ctx.Lock()
    return {
        "Value": ctx.Value("i", 7),
        "Array": ctx.Array("d", [1.5, 2.5]),
        "ArrayChar": ctx.Array("c", b"ab"),
        "ValueOwnLock": ctx.Value("q", 9, lock=lock),
        "Lock": lock,
        "RLock": ctx.RLock(),
        "Semaphore": ctx.Semaphore(2),
        "BoundedSemaphore": ctx.BoundedSemaphore(3),
        "Condition": ctx.Condition(),
        "Event": ctx.Event(),
        "Barrier": ctx.Barrier(2),
    }


def _same_object(name, a, b):
    """a and b (a's copy) are one object: a change through b shows in a."""
    if name.startswith("Value"):
        b.value += 1
        if a.value != b.value:
            return False
        with b.get_lock():
            return not _other_thread_can_take(a.get_lock())
    if name == "Array":
        b[1] = 4.0
        return a[:] == [1.5, 4.0]
    if name == "ArrayChar":
        b.value = b"xy"
        return a.value == b"xy"
    if name in ("Lock", "RLock"):
        ok = b.acquire(False) and not _other_thread_can_take(a)
        b.release()
        return ok
    if name.endswith("Semaphore"):
        b.acquire()
        return a.get_value() == b.get_value() and a.get_value() in (1, 2)
    if name == "Condition":
        with b:
            return not _other_thread_can_take(a)
    if name == "Event":
        b.set()
        return a.is_set()
    if name == "Barrier":
        b.abort()
        return a.broken
    raise AssertionError(name)


def _other_thread_can_take(lock):
    got = []
    t = threading.Thread(target=lambda: got.append(lock.acquire(False)))
    t.start()
    t.join()
    if got[0]:
        lock.release()
    return got[0]


@pytest.mark.parametrize("name", [
    "Value", "Array", "ArrayChar", "ValueOwnLock", "Lock", "RLock", "Semaphore",
    "BoundedSemaphore", "Condition", "Event", "Barrier"])
def test_synchronized_objects_pickle_anywhere(name):
    obj = _all_synchronized()[name]
    copy = pickle.loads(pickle.dumps(obj))
    assert type(copy) is type(obj)
    assert _same_object(name, obj, copy)


def _receive_and_change(conn_or_queue, reply):
    got = conn_or_queue.recv() if hasattr(conn_or_queue, "recv") else conn_or_queue.get()
    value, array, lock, event, cond, barrier = got
    with value.get_lock():
        value.value += 10
    array[0] = -1.0
    ok = lock.acquire(False)
    if ok:
        lock.release()
    event.set()
    with cond:
        cond.notify_all()
    reply.put((ok, barrier.parties, type(value).__name__))


@pytest.mark.parametrize("through", ["Queue", "SimpleQueue", "JoinableQueue", "Pipe"])
def test_synchronized_objects_through_queues_and_pipes(through):
    objs = (ctx.Value("i", 1), ctx.Array("d", 2), ctx.Lock(), ctx.Event(),
            ctx.Condition(), ctx.Barrier(3))
    reply = ctx.Queue()
    if through == "Pipe":
        chan, far = ctx.Pipe()
        send = chan.send
    else:
        chan = far = getattr(ctx, through)()
        send = chan.put
    p = ctx.Process(target=_receive_and_change, args=(far, reply))
    p.start()
    send(objs)
    assert reply.get(timeout=60) == (True, 3, "Synchronized")
    p.join(60)
    assert p.exitcode == 0
    value, array, lock, event, _, _ = objs
    assert value.value == 11 and array[0] == -1.0
    assert event.is_set()


def test_other_contexts_unchanged():
    spawn = mp.get_context("spawn")
    for obj in (spawn.Value("i", 1), spawn.Array("i", 2), spawn.Lock(), spawn.Event()):
        with pytest.raises(RuntimeError, match="inheritance"):
            pickle.dumps(obj)


def test_multiprocessing_submodules_after_import_dragon(run_python):
    out = run_python(
        "import dragon\n"
        "import multiprocessing\n"
        "print(multiprocessing.queues.Queue.__name__,\n"
        "      multiprocessing.connection.Connection.__name__,\n"
        "      multiprocessing.synchronize.Lock.__name__,\n"
        "      multiprocessing.pool.Pool.__name__,\n"
        "      multiprocessing.managers.BaseManager.__name__,\n"
        "      multiprocessing.sharedctypes.Value.__name__)\n")
    assert out.split() == ["Queue", "Connection", "Lock", "Pool", "BaseManager", "Value"]


def test_value_with_lock_uses_a_dragon_rlock():
    from dragon.synchronize import RLock
    v = ctx.Value("d", 1.5)
    assert isinstance(v.get_lock(), RLock)
    a = ctx.Array("i", 4)
    with a.get_lock():
        a[0] = 3
    assert a[:] == [3, 0, 0, 0]
