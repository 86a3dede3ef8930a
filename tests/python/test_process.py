"""Processes of the 'dragon' start method: started by the runtime (through
the zygote, or as fresh interpreters), with spawn semantics, real pids,
real sentinels and Python's exit-code convention."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import dragon  # noqa: F401
import multiprocessing as mp
from multiprocessing.connection import wait
from dragon import _popen, _zygote, runtime

ctx = mp.get_context("dragon")


def _write(path, text):
    # Whole or not at all: a reader may be waiting for the file to appear.
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


def _report_pid(path):
    _write(path, "%d %d" % (os.getpid(), os.getppid()))


def _sleep_forever():
    import time
    while True:
        time.sleep(1)


def _kill_self(signo):
    os.kill(os.getpid(), signo)


def _raise():
    raise ValueError("expected in the test")


def test_pid_is_the_real_os_pid(tmp_path):
    out = tmp_path / "pid"
    p = ctx.Process(target=_report_pid, args=(str(out),))
    p.start()
    p.join()
    assert p.exitcode == 0
    pid, ppid = map(int, out.read_text().split())
    assert pid == p.pid
    assert pid != os.getpid()


@pytest.mark.parametrize("target,args,code", [
    (sys.exit, (3,), 3),
    (sys.exit, (0,), 0),
    (_raise, (), 1),
    (_kill_self, (signal.SIGKILL,), -signal.SIGKILL),
    (_kill_self, (signal.SIGUSR1,), -signal.SIGUSR1),
    (sys.exit, (263,), 7),           # the low 8 bits, as the OS keeps them
    (sys.exit, ("a message",), 1),
    (os._exit, (5,), 5),             # no report: read from the zombie
])
def test_exitcode_convention(target, args, code):
    p = ctx.Process(target=target, args=args)
    p.start()
    p.join()
    assert p.exitcode == code


_held = []


def _lock_and_return(path, conn):
    import fcntl
    f = open(path, "w")
    fcntl.lockf(f, fcntl.LOCK_EX)
    _held.append(f)  # still open when the process ends
    _held.append(conn)  # never closed: the process's end closes it


def test_after_join_the_childs_descriptors_are_closed(tmp_path):
    # join may return before the kernel has finished with the child's
    # memory, never before what the child held is let go: a lock it held
    # is free at once, the Connection end it kept open is at end-of-file.
    import fcntl
    path = str(tmp_path / "lock")
    for _ in range(20):
        r, w = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_lock_and_return, args=(path, w))
        p.start()
        w.close()
        p.join()
        assert p.exitcode == 0
        with open(path, "w") as f:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.lockf(f, fcntl.LOCK_UN)
        assert r.poll(0)
        with pytest.raises(EOFError):
            r.recv()
        r.close()


def _close_everything_then_sleep(seconds):
    # Programs that daemonize, or run code that closes what it inherited,
    # close the pipe the child reports its end on: the end is then told by
    # the pidfd alone.
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    time.sleep(seconds)


def test_a_child_that_closes_its_descriptors():
    p = ctx.Process(target=_close_everything_then_sleep, args=(1.5,))
    p.start()
    time.sleep(0.3)  # it has closed them
    t = time.monotonic()
    assert p.is_alive()
    p.join(0.1)
    assert p.exitcode is None
    assert wait([p.sentinel], 0.1) == []
    assert time.monotonic() - t < 1.0, "is_alive() or join(timeout) waited for the end"
    p.join(30)
    assert p.exitcode == 0


def _fork_then(path, how):
    pid = os.fork()
    if pid == 0:  # the grandchild keeps every descriptor the child had
        try:
            time.sleep(60)
        finally:
            os._exit(0)
    _write(path, str(pid))
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    sys.exit(4)


@pytest.mark.parametrize("how,code", [("exit", 4), ("kill", -signal.SIGKILL)])
def test_a_grandchild_holding_the_childs_descriptors(tmp_path, how, code):
    out = tmp_path / "grandchild"
    p = ctx.Process(target=_fork_then, args=(str(out), how))
    p.start()
    try:
        t = time.monotonic()
        p.join(30)
        assert p.exitcode == code
        assert time.monotonic() - t < 30
    finally:
        _wait_for(str(out))
        os.kill(int(out.read_text()), signal.SIGKILL)


def test_terminate_and_kill():
    for method, code in (("terminate", -signal.SIGTERM), ("kill", -signal.SIGKILL)):
        p = ctx.Process(target=_sleep_forever)
        p.start()
        assert p.is_alive()
        assert p.exitcode is None
        getattr(p, method)()
        p.join()
        assert p.exitcode == code
        assert not p.is_alive()
        p.close()


def test_sentinel_is_a_real_descriptor():
    p = ctx.Process(target=_sleep_forever)
    p.start()
    os.fstat(p.sentinel)
    assert wait([p.sentinel], timeout=0.05) == []
    p.terminate()
    assert wait([p.sentinel], timeout=60) == [p.sentinel]
    p.join()
    assert p.exitcode == -signal.SIGTERM


def test_join_timeout_and_many_children():
    ps = [ctx.Process(target=sys.exit, args=(i,)) for i in range(8)]
    for p in ps:
        p.start()
    for i, p in enumerate(ps):
        p.join(60)
        assert p.exitcode == i
    p = ctx.Process(target=_sleep_forever)
    p.start()
    p.join(0.05)
    assert p.exitcode is None
    p.kill()
    p.join()


def _check_spawn_state(path, marker, var):
    import random
    _write(path, repr({
        "name": __name__,
        "cwd": os.getcwd(),
        "marker_in_path": marker in sys.path,
        "env": os.environ.get(var),
        "random": random.random(),
        "threads": __import__("threading").active_count(),
        "fds": sorted("%s:%s" % (fd, os.readlink("/proc/self/fd/" + fd))
                      for fd in os.listdir("/proc/self/fd")
                      if os.path.exists("/proc/self/fd/" + fd)),
        "sigint": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
        "sigterm": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
    }))


def test_child_gets_the_parents_current_state(tmp_path, monkeypatch):
    # Set after the zygote may already run: the child must see them anyway.
    marker = str(tmp_path / "not-a-real-dir")
    monkeypatch.syspath_prepend(marker)
    monkeypatch.setenv("DRAGON_TEST_VAR", "value-%d" % os.getpid())
    monkeypatch.chdir(tmp_path)
    results = []
    for i in range(2):
        out = tmp_path / ("state%d" % i)
        p = ctx.Process(target=_check_spawn_state,
                        args=(str(out), marker, "DRAGON_TEST_VAR"))
        p.start()
        p.join()
        assert p.exitcode == 0
        results.append(eval(out.read_text()))
    for r in results:
        assert r["name"] == "test_process"
        assert r["cwd"] == str(tmp_path)
        assert r["marker_in_path"]
        assert r["env"] == "value-%d" % os.getpid()
        assert r["threads"] == 1
        assert r["sigint"] and r["sigterm"]
        # stdin (/dev/null), stdout, stderr, the parent's sentinel, the
        # resource tracker's pipe and the pipe on which the child reports
        # its end; nothing of the zygote's.
        assert len(r["fds"]) <= 7, " ".join(r["fds"])
    assert results[0]["random"] != results[1]["random"]


PROG = textwrap.dedent("""
    import os, sys
    import dragon, multiprocessing as mp
    from dragon import runtime, _zygote

    GUARDED = "imported"

    def child(q):
        rt = runtime.current(start=False)
        q.put((__name__, GUARDED, rt.embedded, rt.instance,
               os.path.exists("/proc/%d" % os.getppid())))
        print("child output", flush=True)

    if __name__ == "__main__":
        GUARDED = "main"
        mp.set_start_method("dragon")
        q = mp.Queue()
        p = mp.Process(target=child, args=(q,))
        p.start()
        name, guarded, emb, inst, _ = q.get()
        p.join()
        rt = runtime.current()
        z = _zygote.zygote()
        print("zygote", z.pid if z else 0)
        print(name, guarded, emb, inst == rt.instance, p.exitcode, rt.embedded)
""")


def _run_prog(tmp_path, env_extra=None, launcher=False, code=None,
              name="prog.py"):
    """Run code (default: PROG) as the program tmp_path/name, in a clean
    environment with tmp_path as the working directory."""
    prog = tmp_path / name
    prog.write_text(PROG if code is None else code)
    env = runtime.clean_env()
    env.update(env_extra or {})
    argv = [sys.executable, str(prog)]
    if launcher:
        argv = [_launcher(), str(prog)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120,
                          env=env, cwd=str(tmp_path))


def _launcher():
    top = os.environ.get("top_builddir",
                         os.path.join(os.path.dirname(__file__), "..", "..", "build"))
    return os.path.join(top, "libdlaunch", "dragon")


def _gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1][0] == "Z"
    except (FileNotFoundError, ProcessLookupError):  # reaped while read
        return True


@pytest.mark.parametrize("zygote", ["1", "0"])
def test_embedded_runtime_program(tmp_path, zygote):
    out = _run_prog(tmp_path, {_zygote.ZYGOTE_ENV: zygote})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "child output" in lines
    zpid = int(lines[-2].split()[1])
    assert (zpid != 0) == (zygote == "1")
    assert lines[-1] == "__mp_main__ imported False True 0 True"
    if zpid:
        assert _gone(zpid)


def test_under_the_launcher(tmp_path):
    if not os.access(_launcher(), os.X_OK):
        pytest.skip("no launcher in this build")
    out = _run_prog(tmp_path, launcher=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "child output" in lines
    assert "__mp_main__ imported False True 0 False" in lines
    assert lines[-1] == "+++ head proc exited, code 0"


class FreshProcess(ctx.Process):
    """Started as a fresh interpreter by the runtime, not by the zygote."""

    @staticmethod
    def _Popen(process_obj):
        return _popen.SpawnPopen(process_obj)


def test_fallback_path_in_process():
    p = FreshProcess(target=sys.exit, args=(5,))
    p.start()
    assert p._popen.__class__ is _popen.SpawnPopen
    os.fstat(p.sentinel)
    p.join()
    assert p.exitcode == 5
    q = FreshProcess(target=_sleep_forever)
    q.start()
    q.terminate()
    q.join()
    assert q.exitcode == -signal.SIGTERM


def _grandchild(path):
    from multiprocessing import parent_process
    _write(path + ".ready", "")
    parent_process().join(60)
    _write(path, "parent alive" if parent_process().is_alive() else "parent gone")


def _start_grandchild_and_sleep(path):
    ctx.Process(target=_grandchild, args=(path,)).start()
    _sleep_forever()


def _wait_for(path):
    import time
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_child_outlives_its_killed_parent(tmp_path):
    # As with spawn: killing a process does not take its children along.
    out = str(tmp_path / "grandchild")
    p = ctx.Process(target=_start_grandchild_and_sleep, args=(out,))
    p.start()
    _wait_for(out + ".ready")
    p.kill()
    p.join()
    _wait_for(out)
    with open(out) as f:
        assert f.read() == "parent gone"


# ---- the runtime's process table and the zygote ---------------------------

SEC = 1000000000


def _need_zygote():
    if _zygote.zygote() is None:
        pytest.skip("no zygote here (DRAGON_ZYGOTE=0 or no pidfd_open)")


def test_the_runtime_knows_the_zygotes_children():
    import errno
    from dragon._dragon_cffi import ffi, lib
    _need_zygote()
    rt = runtime.current()
    st = ffi.new("dlaunch_status_t *")
    p = ctx.Process(target=_sleep_forever)
    p.start()
    assert isinstance(p._popen, _popen.ZygotePopen)
    assert lib.dlaunch_wait(rt.handle, p.pid, 0, st) == -errno.EAGAIN
    # Signalled by the runtime, seen by the parent.
    assert lib.dlaunch_signal(rt.handle, p.pid, signal.SIGTERM) == 0
    p.join(60)
    assert p.exitcode == -signal.SIGTERM
    # The zygote reports the status it reaped to the runtime.
    assert lib.dlaunch_wait(rt.handle, p.pid, 30 * SEC, st) == 0
    assert lib.dlaunch_status_code(st) == -signal.SIGTERM
    q = ctx.Process(target=sys.exit, args=(3,))
    q.start()
    q.join()
    assert q.exitcode == 3
    assert lib.dlaunch_wait(rt.handle, q.pid, 30 * SEC, st) == 0
    assert lib.dlaunch_status_code(st) == 3


LEAVER = textwrap.dedent("""
    import os, time
    import dragon, multiprocessing as mp
    from dragon import runtime
    from dragon._dragon_cffi import ffi, lib

    def forever():
        while True:
            time.sleep(1)

    if __name__ == "__main__":
        mp.set_start_method("dragon")
        p = mp.Process(target=forever)
        p.start()
        rt = runtime.current()
        st = ffi.new("dlaunch_status_t *")
        print("child", p.pid, lib.dlaunch_wait(rt.handle, p.pid, 0, st), flush=True)
        os._exit(0)  # without joining: the runtime's teardown ends it
""")


def test_a_child_left_running_is_ended_by_the_runtime(tmp_path):
    import errno
    if not os.access(_launcher(), os.X_OK):
        pytest.skip("no launcher in this build")
    prog = tmp_path / "leaver.py"
    prog.write_text(LEAVER)
    out = subprocess.run([_launcher(), str(prog)], capture_output=True,
                         text=True, timeout=120, env=runtime.clean_env(),
                         cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    words = [l.split() for l in out.stdout.splitlines() if l.startswith("child ")]
    assert words, out.stdout
    pid, known = int(words[0][1]), int(words[0][2])
    # Running and in the runtime's table (forked by the zygote, or spawned
    # with DRAGON_ZYGOTE=0), and gone after the launcher.
    assert known == -errno.EAGAIN, out.stdout
    assert _gone(pid)


def _zombie_children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            kids = [int(k) for k in f.read().split()]
    except OSError:
        return []
    zombies = []
    for k in kids:
        try:
            with open("/proc/%d/stat" % k) as f:
                if f.read().rpartition(") ")[2][:1] == "Z":
                    zombies.append(k)
        except OSError:  # reaped meanwhile
            pass
    return zombies


def test_zygote_under_stress():
    import threading
    import time
    _need_zygote()
    zpid = _zygote.zygote().pid
    procs, lock = [], threading.Lock()

    def starter(n):
        for _ in range(n):
            p = ctx.Process(target=_sleep_forever)
            p.start()
            with lock:
                procs.append(p)
    threads = [threading.Thread(target=starter, args=(8,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({p.pid for p in procs}) == 32
    for p in procs:  # all at once
        p.kill()
    for p in procs:
        p.join(60)
        assert p.exitcode == -signal.SIGKILL
    for i in range(100):
        p = ctx.Process(target=sys.exit, args=(i % 7,))
        p.start()
        p.join()
        assert p.exitcode == i % 7
    # Still the same zygote, and it reaped every child that was joined.
    assert _zygote.zygote().pid == zpid
    deadline = time.monotonic() + 30
    while _zombie_children(zpid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _zombie_children(zpid)


def _affinity(q):
    q.put(sorted(os.sched_getaffinity(0)))


def test_a_zygote_child_keeps_the_affinity_it_would_have():
    # It moves off the parent's CPU once, and keeps the CPUs it may use.
    from dragon._dragon_cffi import lib
    _need_zygote()
    q = ctx.Queue()
    p = ctx.Process(target=_affinity, args=(q,))
    p.start()
    assert q.get(timeout=60) == sorted(os.sched_getaffinity(0))
    p.join()
    # Here, in this process: the same call.
    before = os.sched_getaffinity(0)
    cpu = lib.dragon_getcpu()
    assert cpu in before
    assert lib.dragon_move_off_cpu(cpu) == (1 if len(before) > 1 else 0)
    assert os.sched_getaffinity(0) == before
    assert lib.dragon_move_off_cpu(max(before) + 1) == 0  # not allowed here
    assert lib.dragon_move_off_cpu(-1) == -1


def test_the_zygote_forks_the_next_spare_by_itself():
    # After a start the zygote holds the next fork back for a moment, and
    # then makes it without being asked: a start some time later finds it
    # waiting, and one right after asks for it and gets it.
    import time
    _need_zygote()
    z = _zygote.zygote()
    p = ctx.Process(target=sys.exit, args=(0,))
    p.start()
    p.join()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with z.lock:
            z._recv_until(lambda m: False, block=False)
            if z.spares:
                break
        time.sleep(0.01)
    with z.lock:
        assert len(z.spares) == 1 and z.pending == 0
    for code in (1, 2, 3):  # one after the other: hurried
        p = ctx.Process(target=sys.exit, args=(code,))
        p.start()
        p.join()
        assert p.exitcode == code


ZYGOTE_KILLED = textwrap.dedent("""
    import os, select, signal, sys
    import dragon, multiprocessing as mp

    if __name__ == "__main__":
        from dragon import _zygote
        ctx = mp.get_context("dragon")
        p = ctx.Process(target=sys.exit, args=(4,))
        p.start()
        p.join()
        z = _zygote.zygote()
        zfd = os.pidfd_open(z.pid)
        os.kill(z.pid, signal.SIGKILL)
        select.select([zfd], [], [], 60)  # gone, with the spare it forked
        q = ctx.Process(target=sys.exit, args=(5,))
        q.start()
        q.join()
        r = ctx.Process(target=sys.exit, args=(6,))
        r.start()
        r.join()
        print(p.exitcode, type(p._popen).__name__, q.exitcode,
              type(q._popen).__name__, r.exitcode, type(r._popen).__name__)
""")


def test_a_lost_zygote_falls_back_to_fresh_interpreters(tmp_path):
    _need_zygote()
    out = _run_prog(tmp_path, code=ZYGOTE_KILLED, name="zkill.py")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["4", "ZygotePopen", "5", "SpawnPopen",
                                  "6", "SpawnPopen"]


MAIN_EDITED = textwrap.dedent("""
    import dragon, multiprocessing as mp
    VALUE = "first"

    def report(q):
        q.put((__name__, VALUE))

    if __name__ == "__main__":
        ctx = mp.get_context("dragon")
        q = ctx.Queue()
        for edit in (False, True):
            if edit:  # the zygote compiled the first version
                src = open(__file__).read()
                with open(__file__, "w") as f:
                    f.write(src.replace('VALUE = "first"', 'VALUE = "second"  # longer'))
            p = ctx.Process(target=report, args=(q,))
            p.start()
            print(*q.get())
            p.join()
""")


def test_children_import_the_main_module_as_it_is_now(tmp_path):
    # The zygote compiles the main module once; a child must not use that
    # code once the file has changed.
    out = _run_prog(tmp_path, code=MAIN_EDITED, name="edited.py")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["__mp_main__ first", "__mp_main__ second"]


_KILLED_OWNER = """
import os, sys, time, dragon, multiprocessing as mp
from dragon import _zygote
if __name__ == "__main__":
    ctx = mp.get_context("dragon")
    p = ctx.Process(target=time.sleep, args=(300,))
    p.start()
    print(os.environ["DRAGON_INSTANCE"], p.pid, _zygote.zygote().pid, flush=True)
    time.sleep(300)
"""


@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_embedded_runtime_leaves_nothing(tmp_path, signo):
    # The process that runs the runtime dies without stopping it: the
    # zygote ends the runtime's children and removes its segments.
    _need_zygote()
    import pwd
    prog = tmp_path / "owner.py"
    prog.write_text(_KILLED_OWNER)
    env = runtime.clean_env()
    proc = subprocess.Popen([sys.executable, str(prog)], stdout=subprocess.PIPE,
                            text=True, env=env)
    try:
        instance, child, zygote = proc.stdout.readline().split()
        prefix = "dragon.%s.%s." % (pwd.getpwuid(os.getuid()).pw_name, instance)
        assert any(n.startswith(prefix) for n in os.listdir("/dev/shm"))
        proc.send_signal(signo)
        assert proc.wait(30) == -signo
        deadline = time.monotonic() + 30
        left = None
        while time.monotonic() < deadline:
            left = ([n for n in os.listdir("/dev/shm") if n.startswith(prefix)],
                    [p for p in (int(child), int(zygote))
                     if os.path.exists("/proc/%d" % p)
                     and open("/proc/%d/stat" % p).read().split()[2] != "Z"])
            if left == ([], []):
                break
            time.sleep(0.05)
        assert left == ([], []), "left behind (segments, processes): %r" % (left,)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
