"""The embedded runtime: started on first use, removed at exit."""
import os
import subprocess
import sys

import dragon  # noqa: F401
from dragon import runtime


def _run(code, tmp_path=None):
    env = runtime.clean_env()
    if tmp_path is None:
        argv = [sys.executable, "-c", code]
    else:  # a main module the children can import
        prog = tmp_path / "prog.py"
        prog.write_text(code)
        argv = [sys.executable, str(prog)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)


def test_embedded_runtime_starts_on_first_use_and_leaves_nothing():
    out = _run(
        "import os, dragon, multiprocessing as mp\n"
        "from dragon import runtime\n"
        "assert not runtime.is_running()\n"
        "q = mp.get_context('dragon').Queue(); q.put(1)\n"
        "rt = runtime.current()\n"
        "assert rt.embedded and os.path.exists('/dev/shm/' + rt.pool.name)\n"
        "print(rt.pool.name)\n")
    assert out.returncode == 0, out.stderr
    name = out.stdout.strip()
    assert name.startswith("dragon.") and not os.path.exists("/dev/shm/" + name)


def test_children_attach_to_the_parents_runtime(tmp_path):
    out = _run(
        "import dragon, multiprocessing as mp\n"
        "from dragon import runtime\n"
        "def f(q):\n"
        "    rt = runtime.current(start=False)\n"
        "    q.put((rt.embedded, rt.pool.name))\n"
        "if __name__ == '__main__':\n"
        "    ctx = mp.get_context('dragon'); q = ctx.Queue()\n"
        "    p = ctx.Process(target=f, args=(q,)); p.start()\n"
        "    emb, name = q.get(); p.join()\n"
        "    assert not emb and name == runtime.current().pool.name\n"
        "    print('ok')\n", tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_small_default_segment_size_gives_a_clear_error():
    env = runtime.clean_env()
    env["DRAGON_DEFAULT_SEG_SZ"] = str(1 << 20)
    out = subprocess.run([sys.executable, "-c",
                          "import dragon, multiprocessing as mp\n"
                          "a, b = mp.get_context('dragon').Pipe()\n"
                          "a.send_bytes(b'x' * (4 << 20))\n"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 1
    assert "PoolFullError" in out.stderr and "DRAGON_DEFAULT_SEG_SZ" in out.stderr


def test_exit_while_threads_wait_in_channel_calls(run_python):
    # The embedded runtime unmaps its pool as it stops at exit: threads
    # still blocked in receives must have left libdchan by then.  The
    # handler registered before the runtime starts runs after its
    # teardown and keeps the process alive while the threads wake.
    run_python('''
import atexit, multiprocessing as mp, threading, time
import dragon
from dragon.channels import Channel
atexit.register(time.sleep, 0.6)
ctx = mp.get_context("dragon")

def quietly(fn, *args):
    try:
        fn(*args)
    except Exception:
        pass

pipes = [ctx.Pipe() for _ in range(4)]
q = ctx.Queue()
ch = Channel.create()
waits = [(pipes[0][0].recv,), (pipes[1][0].recv_bytes,), (pipes[2][0].poll, None),
         (q.get,), (ch.recv,)]
for w in waits:
    threading.Thread(target=quietly, args=w, daemon=True).start()
pipes[3][0].fileno()
time.sleep(0.1)
''')
