"""The 'dragon' start method: registration, processes, and the objects of
the context between real processes."""
import ctypes
import multiprocessing as mp
import os
import queue
import subprocess
import sys
import time
from multiprocessing.connection import wait

import pytest

import dragon  # noqa: F401

ctx = mp.get_context("dragon")


def _put_pid(q):
    q.put(os.getpid())


def _raise():
    raise RuntimeError("boom in child")


def _sleep(t):
    time.sleep(t)


def _echo_conn(c):
    while True:
        try:
            c.send_bytes(c.recv_bytes())
        except EOFError:
            return


def _child_info(q):
    q.put((mp.current_process().name, mp.parent_process().pid,
           mp.get_start_method(), __name__))


def _bump(v, a, lock, n):
    for _ in range(n):
        with lock:
            v.value += 1
    a[0] = 7


def _square(x):
    return x * x


def _jq_worker(q):
    while True:
        item = q.get()
        q.task_done()
        if item is None:
            return


def test_registered_beside_the_others():
    assert "dragon" in mp.get_all_start_methods()
    for m in ("fork", "spawn", "forkserver"):
        assert m in mp.get_all_start_methods()
    assert mp.get_context("dragon").get_start_method() == "dragon"
    assert type(mp.get_context("spawn")).__name__ == "SpawnContext"


def test_pid_is_the_os_pid_and_sentinel_is_waitable():
    q = ctx.Queue()
    p = ctx.Process(target=_put_pid, args=(q,))
    p.start()
    assert q.get(timeout=30) == p.pid
    assert wait([p.sentinel], 30) == [p.sentinel]
    p.join()
    assert p.exitcode == 0 and not p.is_alive()
    p.close()


def test_child_that_raises_prints_traceback_and_exits_1(capfd):
    p = ctx.Process(target=_raise)
    p.start()
    p.join(30)
    assert p.exitcode == 1
    assert "boom in child" in capfd.readouterr().err


def test_join_timeout_terminate_kill():
    p = ctx.Process(target=_sleep, args=(60,), daemon=True)
    p.start()
    p.join(0.05)
    assert p.is_alive() and p.exitcode is None
    p.terminate()
    p.join(30)
    assert p.exitcode == -15
    p = ctx.Process(target=_sleep, args=(60,))
    p.start()
    p.kill()
    p.join(30)
    assert p.exitcode == -9
    assert p not in mp.active_children()


def test_child_sees_spawn_semantics():
    q = ctx.Queue()
    p = ctx.Process(target=_child_info, args=(q,), name="kid")
    p.start()
    name, ppid, method, modname = q.get(timeout=30)
    p.join()
    assert (name, ppid, method) == ("kid", os.getpid(), "dragon")
    assert modname == __name__


def test_pipe_duplex_simplex_eof_and_wait():
    a, b = ctx.Pipe()
    p = ctx.Process(target=_echo_conn, args=(b,))
    p.start()
    b.close()
    for msg in (b"x", b"y" * 100000, b"z" * (3 << 20)):
        a.send_bytes(msg)
        assert a.recv_bytes() == msg
    a.send_bytes(b"w")
    assert wait([a], 30) == [a]
    buf = bytearray(10)
    assert a.recv_bytes_into(buf, 2) == 1 and buf[2:3] == b"w"
    a.close()
    p.join(30)
    assert p.exitcode == 0
    r, w = ctx.Pipe(duplex=False)
    assert r.readable and not r.writable and w.writable and not w.readable
    w.send({"k": [1, 2]})
    assert r.poll(5) and r.recv() == {"k": [1, 2]}
    w.close()
    with pytest.raises(EOFError):
        r.recv()
    with pytest.raises(OSError):
        w.send(1)


def test_large_objects_out_of_band():
    a, b = ctx.Pipe()
    data = bytearray(os.urandom(1 << 20))
    a.send(data)
    got = b.recv()
    assert got == data and isinstance(got, bytearray)
    a.send_bytes(b"raw")
    assert b.recv_bytes() == b"raw"
    a.send([data, b"small"])
    assert b.recv_bytes()  # a pickle, also when out-of-band buffers travel


def test_queue_api():
    q = ctx.Queue(maxsize=2)
    assert q.empty() and not q.full()
    q.put(1)
    q.put(2, timeout=1)
    assert q.full() and q.qsize() == 2
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.01)
    assert q.get() == 1 and q.get_nowait() == 2
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)
    q.close()
    q.join_thread()
    with pytest.raises(ValueError):
        q.put(4)
    u = ctx.Queue()
    for i in range(6000):  # more than the channel holds: the feeder takes over
        u.put(i)
    assert [u.get(timeout=10) for _ in range(6000)] == list(range(6000))
    sq = ctx.SimpleQueue()
    sq.put("s")
    assert not sq.empty() and sq.get() == "s"
    sq.close()


def test_joinable_queue_with_workers():
    q = ctx.JoinableQueue()
    ps = [ctx.Process(target=_jq_worker, args=(q,)) for _ in range(2)]
    for p in ps:
        p.start()
    for i in range(50):
        q.put(i)
    for p in ps:
        q.put(None)
    q.join()
    for p in ps:
        p.join(30)
        assert p.exitcode == 0


def test_value_array_raw_and_locks_across_processes():
    v = ctx.Value("i", 0)
    a = ctx.Array(ctypes.c_double, 3)
    lock = ctx.Lock()
    ps = [ctx.Process(target=_bump, args=(v, a, lock, 200)) for _ in range(2)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(30)
    assert v.value == 400 and a[0] == 7
    rv = ctx.RawValue("d", 1.5)
    ra = ctx.RawArray("b", b"\x01\x02")
    assert rv.value == 1.5 and list(ra) == [1, 2]


def test_sync_objects_of_the_context():
    for make in (ctx.Lock, ctx.RLock, ctx.Semaphore, ctx.BoundedSemaphore):
        o = make()
        assert o.acquire(timeout=1)
        o.release()
    e = ctx.Event()
    assert not e.wait(0.01)
    e.set()
    assert e.is_set() and e.wait(0)
    c = ctx.Condition()
    with c:
        assert not c.wait(0.01)
    b = ctx.Barrier(1)
    assert b.wait(1) == 0


def test_pool_api():
    with ctx.Pool(2, initializer=os.getpid, maxtasksperchild=50) as pool:
        assert pool.map(_square, range(100)) == [x * x for x in range(100)]
        assert sorted(pool.imap_unordered(_square, range(10))) == [x * x for x in range(10)]
        assert list(pool.imap(_square, range(5))) == [0, 1, 4, 9, 16]
        assert pool.starmap(pow, [(2, 3), (3, 2)]) == [8, 9]
        assert pool.apply_async(_square, (7,)).get(30) == 49


def test_manager():
    with ctx.Manager() as m:
        d = m.dict()
        lst = m.list([1])
        d["a"] = 1
        lst.append(2)
        assert dict(d) == {"a": 1} and list(lst) == [1, 2]


def test_misc_functions():
    assert ctx.cpu_count() >= 1
    assert ctx.current_process().name == "MainProcess"
    assert ctx.parent_process() is None
    assert ctx.get_logger().name == "multiprocessing"


def test_set_start_method_in_a_fresh_program(tmp_path):
    prog = tmp_path / "prog.py"
    prog.write_text(
        "import dragon, multiprocessing as mp\n"
        "def f(x):\n    return x + 1\n"
        "if __name__ == '__main__':\n"
        "    mp.set_start_method('dragon')\n"
        "    with mp.Pool(2) as p:\n        print(sum(p.map(f, range(10))))\n"
        "    mp.set_start_method('spawn', force=True)\n"
        "    with mp.Pool(1) as p:\n        print(p.apply(f, (1,)))\n")
    out = subprocess.run([sys.executable, str(prog)], capture_output=True,
                         text=True, timeout=120, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["55", "2"]
