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


def test_pickling_only_while_spawning_or_through_dragon_queues():
    lock = ctx.Lock()
    with pytest.raises(RuntimeError):
        pickle.dumps(lock)
    q = ctx.SimpleQueue()
    q.put(lock)
    other = q.get()
    assert other.acquire(False)
    assert not lock.acquire(False)
    other.release()
    q.close()


def test_value_with_lock_uses_a_dragon_rlock():
    from dragon.synchronize import RLock
    v = ctx.Value("d", 1.5)
    assert isinstance(v.get_lock(), RLock)
    a = ctx.Array("i", 4)
    with a.get_lock():
        a[0] = 3
    assert a[:] == [3, 0, 0, 0]
