"""Pools under pressure: a full pool makes a waiting send wait (up to its
timeout) and a non-waiting one fail at once; a /dev/shm that cannot back
every pool gives errors, never a SIGBUS.

Tests that need a small /dev/shm run their programs in a mount namespace
of their own (unshare -m, a tmpfs on /dev/shm): root only, skipped with
the reason otherwise."""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from dragon import runtime


def _env(**extra):
    env = runtime.clean_env()
    env.update(extra)
    return env


def _run(code, tmp_path, name="prog.py", timeout=300, **env):
    script = tmp_path / name
    script.write_text(textwrap.dedent(code))
    p = subprocess.run([sys.executable, str(script)], env=_env(**env),
                       cwd=str(tmp_path), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace")


# A producer child puts N items of 1 MiB through the kind of queue named by
# argv[1] into an 8 MiB pool while the parent drains them slowly: the pool
# is full again and again, and every put must wait for room.
_PRODUCER = '''
import sys, time, multiprocessing as mp
import dragon

N = 20
KIND = sys.argv[1]

def item(i):
    return bytes([i]) * (1 << 20)

def produce(q):
    for i in range(N):
        if KIND == "pipe":
            q.send(item(i))
        elif KIND == "bounded":
            q.put(item(i), True, 60)
        else:
            q.put(item(i))
    if KIND == "joinable":
        q.join()

if __name__ == "__main__":
    ctx = mp.get_context("dragon")
    if KIND == "pipe":
        r, w = ctx.Pipe(duplex=False)
        p = ctx.Process(target=produce, args=(w,))
        get = r.recv
    else:
        q = {"queue": ctx.Queue, "bounded": lambda: ctx.Queue(4),
             "simple": ctx.SimpleQueue,
             "joinable": ctx.JoinableQueue}[KIND]()
        p = ctx.Process(target=produce, args=(q,))
        get = q.get
    p.start()
    for i in range(N):
        time.sleep(0.05)
        got = get()
        assert got == item(i), (i, len(got), got[:1])
        if KIND == "joinable":
            q.task_done()
    p.join(120)
    assert p.exitcode == 0, p.exitcode
    print("delivered", N)
'''


@pytest.mark.parametrize("kind", ["queue", "bounded", "simple", "joinable", "pipe"])
def test_blocking_sends_wait_for_pool_space(tmp_path, kind):
    (tmp_path / "producer.py").write_text(_PRODUCER)
    p = subprocess.run([sys.executable, str(tmp_path / "producer.py"), kind],
                       env=_env(DRAGON_DEFAULT_SEG_SZ="8388608"),
                       cwd=str(tmp_path), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=300)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0 and "delivered 20" in out, out[-4000:]


def test_nonblocking_and_timed_puts_on_a_full_pool(tmp_path):
    rc, out = _run('''
        import time, multiprocessing as mp
        import dragon
        from queue import Full
        ctx = mp.get_context("dragon")
        q = ctx.Queue(100)
        item = b"x" * (1 << 20)
        n = 0
        while True:   # nobody reads: fill the pool
            try:
                q.put(item, False)
            except dragon.PoolFullError as e:
                assert "pool" in str(e), e
                break
            n += 1
        assert 0 < n < 100, n
        # block=False: at once; a timed put: the pool error at its deadline
        for block, timeout in ((False, None), (True, 0.3)):
            try:
                q.put(item, block, timeout)
            except Full:
                raise AssertionError("Full from a queue with room")
            except dragon.PoolFullError:
                pass
            else:
                raise AssertionError("put into a full pool succeeded")
        # Pipe: a send that may wait raises nothing once a reader drains.
        r, w = ctx.Pipe(duplex=False)
        import threading
        t = threading.Thread(target=lambda: [q.get() for _ in range(3)])
        t.start()
        q.put(item, True, 60)
        t.join(60)
        assert not t.is_alive()
        print("ok")
    ''', tmp_path, DRAGON_DEFAULT_SEG_SZ="8388608")
    assert rc == 0 and "ok" in out, out[-4000:]


def _in_small_shm(mib, script, tmp_path, timeout=600):
    """Run `sh -c script` in a mount namespace whose /dev/shm is a tmpfs of
    mib MiB; skip when that cannot be had here."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("a private small /dev/shm needs root and unshare(1)")
    probe = subprocess.run(["unshare", "-m", "sh", "-c",
                            "mount -t tmpfs -o size=1m tmpfs /dev/shm"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip("no mount namespace here: %s" % probe.stderr.decode().strip())
    full = "mount -t tmpfs -o size=%dm tmpfs /dev/shm && %s" % (mib, script)
    p = subprocess.run(["unshare", "-m", "sh", "-c", full], env=_env(),
                       cwd=str(tmp_path), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace")


# Puts 70 items of 1 MiB through a Queue from a child; prints how many
# arrived intact, or the error a put raised.
_SEVENTY = '''
import sys, multiprocessing as mp
import dragon

def produce(q, tag):
    for i in range(70):
        q.put((tag, i, bytes([i]) * (1 << 20)))

if __name__ == "__main__":
    tag = sys.argv[1]
    ctx = mp.get_context("dragon")
    q = ctx.Queue()
    p = ctx.Process(target=produce, args=(q, tag))
    p.start()
    got = 0
    for i in range(70):
        t, j, b = q.get(timeout=240)
        assert (t, j) == (tag, i) and b == bytes([i]) * (1 << 20), (t, j)
        got += 1
    p.join(240)
    print(tag, "got", got, "exitcode", p.exitcode)
    assert p.exitcode == 0, p.exitcode
'''


def test_two_programs_on_a_128_MiB_shm(tmp_path):
    (tmp_path / "seventy.py").write_text(_SEVENTY)
    py = sys.executable
    rc, out = _in_small_shm(
        128, "%s seventy.py A > a.out 2>&1 & %s seventy.py B > b.out 2>&1; "
             "rb=$?; wait $!; ra=$?; cat a.out b.out; "
             "echo codes $ra $rb" % (py, py), tmp_path)
    assert "codes 0 0" in out, out[-6000:]
    assert "A got 70 exitcode 0" in out and "B got 70 exitcode 0" in out, out[-6000:]


def test_shm_filled_after_start_gives_errors_not_signals(tmp_path):
    # Another tenant takes every free byte of /dev/shm once the runtime
    # is up: each send then either succeeds or raises PoolFullError naming
    # /dev/shm; nothing dies of a signal and nothing is lost unreported.
    (tmp_path / "filled.py").write_text(textwrap.dedent('''
        import os, multiprocessing as mp
        import dragon

        def produce(q, out, go):
            go.wait()
            sent = failed = 0
            for i in range(60):
                try:
                    q.put((i, bytes([i]) * (1 << 20)), False)
                    sent += 1
                except dragon.PoolFullError as e:
                    assert "/dev/shm" in str(e), e
                    failed += 1
            out.put((sent, failed))

        if __name__ == "__main__":
            ctx = mp.get_context("dragon")
            q, out, go = ctx.Queue(100), ctx.Queue(), ctx.Event()
            p = ctx.Process(target=produce, args=(q, out, go))
            p.start()        # the runtime, its pools and the child are up
            with open("/dev/shm/filler", "wb") as f:
                try:
                    while True:
                        f.write(b"\\0" * (1 << 20))
                        f.flush()
                except OSError:
                    pass
            go.set()
            sent, failed = out.get(timeout=240)
            got = [q.get(timeout=60) for _ in range(sent)]
            assert all(b == bytes([i]) * (1 << 20) for i, b in got)
            p.join(120)
            os.unlink("/dev/shm/filler")
            print("sent", sent, "failed", failed, "exitcode", p.exitcode)
            assert p.exitcode == 0 and failed > 0, p.exitcode
    '''))
    rc, out = _in_small_shm(256, "%s filled.py" % sys.executable, tmp_path)
    assert rc == 0 and "exitcode 0" in out, out[-6000:]


_TOP_SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_TOP_BUILD = os.environ.get("top_builddir", os.path.join(_TOP_SRC, "build"))

_SMALL_PROG = '''
import multiprocessing as mp
import dragon

def echo(q, r):
    for _ in range(50):
        r.put(q.get())

if __name__ == "__main__":
    ctx = mp.get_context("dragon")
    q, r = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=echo, args=(q, r))
    p.start()
    for i in range(50):
        q.put(bytes([i]) * (256 << 10))
        assert r.get(timeout=60) == bytes([i]) * (256 << 10)
    p.join(60)
    assert p.exitcode == 0
    print("small shm ok")
'''


def test_runtime_starts_on_a_64_MiB_shm(tmp_path):
    # Docker's default /dev/shm: the launcher and the embedded runtime size
    # their pools from it, and a part of CPython's suite runs there.
    (tmp_path / "small.py").write_text(_SMALL_PROG)
    launcher = os.path.join(_TOP_BUILD, "libdlaunch", "dragon")
    suite = os.path.join(_TOP_SRC, "tests", "python", "mp_suite", "run_suite.py")
    script = ("%s small.py && %s %s small.py && " % (sys.executable, launcher, sys.executable))
    if os.path.exists(suite):
        script += ("%s %s --method dragon --out %s -j 1 --test-timeout 60 "
                   "--filter '^WithProcessesTest(Queue|Connection|Event|Lock)\\.' "
                   "&& %s %s --compare %s %s --expected %s --min-ratio 0 "
                   "&& echo suite ran"
                   % (sys.executable, suite, tmp_path / "r.jsonl",
                      sys.executable, suite,
                      os.path.join(os.path.dirname(suite), "baseline-spawn.jsonl"),
                      tmp_path / "r.jsonl",
                      os.path.join(os.path.dirname(suite), "expected.txt")))
    rc, out = _in_small_shm(64, script, tmp_path)
    assert rc == 0, out[-6000:]
    assert out.count("small shm ok") == 2, out[-6000:]
    if os.path.exists(suite):
        assert "suite ran" in out, out[-6000:]
