"""Lifetimes of the sync objects' C handles: threads blocked in Lock,
RLock, Semaphore, Event, Barrier and Condition waits while the runtime
tears down at exit (embedded, and under the launcher), while the object's
last other reference goes and the garbage collector runs, and in a child
that exits while holding and waiting.  The racy cases run in a separate
interpreter, so that a crash is a failed test and not a dead pytest."""
import os
import subprocess
import sys

import pytest

from dragon import runtime

TOP_SRC = os.environ.get("top_srcdir", os.path.join(os.path.dirname(__file__), "..", ".."))
TOP_BUILD = os.environ.get("top_builddir", os.path.join(TOP_SRC, "build"))
LAUNCHER = os.path.join(TOP_BUILD, "libdlaunch", "dragon")

# Daemon threads block in every kind of wait, holding the only reference
# to their object, when the main program ends.  The check registered
# before dragon is imported runs after the runtime's teardown: within a
# bound, every thread must have left libdchan (no frame of the package's
# sync code on top) and stay blocked, as in a stock lock, without
# returning or raising; the process must stay healthy for longer than
# the timed waits last (a wait still inside libdchan would wake into
# memory the embedded runtime unmapped) and print no traceback.  Under
# the launcher the runtime stays, and a long barrier wait is left alone
# (it is not cut into slices): breaking it would break the barrier for
# the other processes.
WAITERS_AT_EXIT = r'''
import atexit, multiprocessing as mp, os, sys, threading, time

ATTACHED = "DRAGON_INSTANCE" in os.environ
results, threads = {}, {}


def inside(t):
    f = sys._current_frames().get(t.ident)
    return f is not None and f.f_code.co_filename == sys.modules["dragon.synchronize"].__file__


def check():
    deadline = time.monotonic() + 15
    exempt = ("barrier", "barrier_action") if ATTACHED else ()
    while time.monotonic() < deadline:
        busy = [n for n, t in threads.items() if n not in exempt and inside(t)]
        if not busy:
            break
        time.sleep(0.05)
    time.sleep(2.5)
    bad = {n: "still in libdchan" for n in busy}
    bad.update((n, "not blocked") for n, t in threads.items() if not t.is_alive())
    bad.update((n, r) for n, r in results.items())
    print("RESULT", bad or "ok", flush=True)
    if bad:
        os._exit(3)


atexit.register(check)

import dragon  # noqa: E402
ctx = mp.get_context("dragon")


def run(name, fn, *args):
    try:
        fn(*args)
        results[name] = "returned"
    except BaseException as e:
        results[name] = "%s: %s" % (type(e).__name__, e)


def in_condition(c, *args):
    with c:
        c.wait(*args)


def start(name, fn, *args):
    t = threading.Thread(target=run, args=(name, fn) + args, daemon=True)
    threads[name] = t
    t.start()


held = ctx.Lock()
held.acquire()
start("lock", held.acquire)
rheld = ctx.RLock()
rheld.acquire()
start("rlock", rheld.acquire)
start("sem", ctx.Semaphore(0).acquire)
bs = ctx.BoundedSemaphore(1)
bs.acquire()
start("bsem_timed", bs.acquire, True, 60)
start("event", ctx.Event().wait)
start("event_timed", ctx.Event().wait, 60)
start("barrier", ctx.Barrier(2).wait)
start("barrier_timed", ctx.Barrier(2).wait, 2)
start("barrier_action", ctx.Barrier(2, action=print).wait, 60)
start("cond", in_condition, ctx.Condition())
start("cond_timed", in_condition, ctx.Condition(ctx.Lock()), 60)
time.sleep(0.5)
print("main ends", flush=True)
'''


def _run(argv, tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(WAITERS_AT_EXIT)
    argv = argv + [str(script)]
    p = subprocess.run(argv, env=runtime.clean_env(), cwd=str(tmp_path),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=180)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0, "exit status %d:\n%s" % (p.returncode, out[-6000:])
    assert "RESULT ok" in out and "Traceback" not in out, out[-6000:]


def test_exit_while_threads_wait_on_sync_objects_embedded(tmp_path):
    _run([sys.executable], tmp_path)


def test_exit_while_threads_wait_on_sync_objects_under_the_launcher(tmp_path):
    if not os.access(LAUNCHER, os.X_OK):
        pytest.skip("no launcher at %s" % LAUNCHER)
    _run([LAUNCHER, sys.executable], tmp_path)


def test_shutdown_wakes_every_waiter(run_python):
    # An explicit stop of the embedded runtime while threads wait: each
    # wait ends with ValueError soon (a barrier's is broken to wake it),
    # later calls too, and nothing touches the unmapped pool afterwards.
    out = run_python(r'''
import multiprocessing as mp, threading, time
from dragon import runtime
ctx = mp.get_context("dragon")
results = {}

def run(name, fn, *args):
    try:
        fn(*args)
        results[name] = "returned"
    except BaseException as e:
        results[name] = type(e).__name__

lock, ev, b, sem = ctx.Lock(), ctx.Event(), ctx.Barrier(3), ctx.Semaphore(0)
lock.acquire()
ts = [threading.Thread(target=run, args=a) for a in [
    ("lock", lock.acquire), ("event", ev.wait), ("barrier", b.wait),
    ("barrier2", b.wait, 30), ("sem", sem.acquire, True, 30)]]
for t in ts:
    t.start()
time.sleep(0.5)
runtime.current().shutdown()
for t in ts:
    t.join(10)
assert not any(t.is_alive() for t in ts), results
assert set(results.values()) == {"ValueError"}, results
for name, call in [("release", lock.release), ("set", ev.set), ("value", sem.get_value),
                   ("n_waiting", lambda: b.n_waiting), ("wait", lambda: b.wait(1))]:
    try:
        call()
    except ValueError as e:
        assert "closed" in str(e), e
    else:
        raise AssertionError(name + " worked on a closed object")
time.sleep(0.5)
print("ok")
''')
    assert out.strip().endswith("ok")


def test_collected_while_other_threads_wait(run_python):
    # The creating thread lets go of each object while another thread
    # still waits on it, with the garbage collector running all the time:
    # the handle is freed by whichever thread drops the last reference,
    # never under one still inside a call.
    run_python(r'''
import gc, multiprocessing as mp, threading, time
import dragon
ctx = mp.get_context("dragon")
errors, stop = [], threading.Event()

def collector():
    while not stop.is_set():
        gc.collect()
        time.sleep(0.001)

def wait_on(kind, obj, flag):
    try:
        if kind == "event":
            ok = obj.wait(20)
        elif kind == "lock":
            ok = obj.acquire(timeout=20)
            obj.release()
        elif kind == "sem":
            ok = obj.acquire(timeout=20)
        elif kind == "barrier":
            ok = obj.wait(20) in (0, 1)
        else:
            with obj:
                ok = obj.wait_for(lambda: flag, 20)
        if not ok:
            errors.append(kind + " timed out")
    except Exception as e:
        errors.append("%s: %r" % (kind, e))

def one_round(kind):
    flag = []
    if kind == "event":
        obj = ctx.Event()
    elif kind == "lock":
        obj = ctx.Lock()
        obj.acquire()
    elif kind == "sem":
        obj = ctx.Semaphore(0)
    elif kind == "barrier":
        obj = ctx.Barrier(2)
    else:
        obj = ctx.Condition()
    t = threading.Thread(target=wait_on, args=(kind, obj, flag))
    t.start()
    time.sleep(0.01)
    if kind == "event":
        obj.set()
    elif kind in ("lock", "sem"):
        obj.release()
    elif kind == "barrier":
        obj.wait(20)
    else:
        with obj:
            flag.append(1)
            obj.notify()
    del obj
    gc.collect()
    return t

from dragon import runtime
pool = runtime.current().pool
before = pool.stats()["live_allocs"]
threading.Thread(target=collector, daemon=True).start()
ROUNDS = 30
for i in range(ROUNDS):
    ts = [one_round(k) for k in ("event", "lock", "sem", "barrier", "cond")]
    for t in ts:
        t.join(30)
        assert not t.is_alive()
stop.set()
assert not errors, errors
gc.collect()
# Each round made 8 libdchan objects (a Condition is a lock and three
# semaphores); one left alive holds at least two allocations (its
# channel and its holder record), a destroyed one at most the record.
grown = pool.stats()["live_allocs"] - before
assert grown <= 12 * ROUNDS, "%d allocations left: objects were not destroyed" % grown
''')


def test_child_exits_holding_and_waiting(run_python):
    # A child holds one lock and has daemon threads blocked on the others
    # when it ends: it exits cleanly, and the parent goes on using every
    # object (the dead child's waits took nothing).
    run_python(r'''
import multiprocessing as mp, threading, time
import dragon
ctx = mp.get_context("dragon")

def child(held, contended, ev, sem, cond, bar, ready):
    held.acquire()
    def cwait():
        with cond:
            cond.wait()
    for fn in (contended.acquire, ev.wait, sem.acquire, cwait,
               lambda: bar.wait(30)):
        threading.Thread(target=fn, daemon=True).start()
    time.sleep(0.5)
    ready.set()

if __name__ == "__main__":
    held, contended, ev, sem = ctx.Lock(), ctx.Lock(), ctx.Event(), ctx.Semaphore(0)
    cond, bar, ready = ctx.Condition(), ctx.Barrier(3), ctx.Event()
    contended.acquire()
    p = ctx.Process(target=child, args=(held, contended, ev, sem, cond, bar, ready))
    p.start()
    p.join(60)
    assert p.exitcode == 0, p.exitcode
    assert ready.is_set()
    assert not held.acquire(False)
    held.release()
    assert held.acquire(timeout=5)
    contended.release()
    assert contended.acquire(timeout=5)
    ev.set()
    assert ev.wait(5)
    sem.release()
    assert sem.acquire(timeout=5)
    with cond:
        assert cond.wait(0.01) is False
    print("ok")
''')


def _use_and_report(lock, event, sem, conn):
    with lock:
        pass
    sem.acquire()
    sem.release()
    event.set()
    conn.send(os.getpid())


def test_records_of_dropped_objects_are_freed():
    # Each Pipe, queue and sync object has a record of its holders in a
    # small pool allocation beside it; once the object is destroyed the
    # record goes too, also when other processes held the object.
    import multiprocessing as mp
    import dragon  # noqa: F401
    ctx = mp.get_context("dragon")
    pool = runtime.current().pool

    def live():
        return pool.stats()["live_allocs"]

    def churn(n):
        for _ in range(n):
            objs = [ctx.Lock(), ctx.RLock(), ctx.Semaphore(2), ctx.Event(),
                    ctx.Pipe(), ctx.Pipe(duplex=False), ctx.SimpleQueue()]
            del objs

    churn(20)  # caches warm
    before = live()
    churn(300)
    assert live() - before < 20, (before, live())
    before = live()
    for _ in range(10):
        lock, event, sem = ctx.Lock(), ctx.Event(), ctx.BoundedSemaphore(1)
        r, w = ctx.Pipe()
        p = ctx.Process(target=_use_and_report, args=(lock, event, sem, w))
        p.start()
        assert r.recv() == p.pid
        p.join()
        assert p.exitcode == 0 and event.is_set()
        del lock, event, sem, r, w, p
    assert live() - before < 20, (before, live())
