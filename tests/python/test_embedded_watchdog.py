"""The watchdog of an embedded runtime (dragon-cleanup --when-gone, started
by runtime.py before the runtime): a program that runs the runtime itself
and is killed leaves no segment and no process of its runtime, whether or
not it started processes and whether they came from the zygote or are
fresh interpreters; a program that stops its runtime normally is not
waited for and nothing that merely inherited the runtime's variables is
touched.

Every program here is a real interpreter with its own embedded runtime;
only its instance's segments (dragon.<user>.p<pid>.*) and processes are
looked at, so other programs on the machine do not matter."""
import os
import pwd
import signal
import subprocess
import sys
import time

import pytest

from dragon import runtime

SIGNALS = [signal.SIGTERM, signal.SIGKILL]

# The body of every program: the runtime's objects, and what it reports on
# its first line (its instance, then the pids that must not outlive it).
_PRELUDE = """
import os, signal, subprocess, sys, time
import dragon, multiprocessing as mp
ctx = mp.get_context("dragon")
"""

QUEUE_ONLY = _PRELUDE + """
q, lock = ctx.Queue(), ctx.Lock()
q.put("x"); assert q.get(timeout=60) == "x"
with lock:
    pass
r, w = ctx.Pipe()
w.send(1); assert r.recv() == 1
print(os.environ["DRAGON_INSTANCE"], flush=True)
time.sleep(300)
"""

WITH_CHILD = _PRELUDE + """
if __name__ == "__main__":
    q = ctx.Queue()
    p = ctx.Process(target=time.sleep, args=(300,))
    p.start()
    print(os.environ["DRAGON_INSTANCE"], p.pid, flush=True)
    time.sleep(300)
"""

# A child that ignores SIGTERM: the watchdog kills it after the grace the
# owner gave (runtime.STOP_GRACE when the runtime started).
STUBBORN_CHILD = _PRELUDE + """
from dragon import runtime
runtime.STOP_GRACE = 0.5

def stubborn(q):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    q.put(os.getpid())
    time.sleep(300)

if __name__ == "__main__":
    q = ctx.Queue()
    p = ctx.Process(target=stubborn, args=(q,))
    p.start()
    assert q.get(timeout=60) == p.pid
    print(os.environ["DRAGON_INSTANCE"], p.pid, flush=True)
    time.sleep(300)
"""

# The owner has a child of its own (os.fork) that outlives it: the watchdog
# watches the owner, not whoever shares its descriptors.
WITH_FORKED_CHILD = _PRELUDE + """
q = ctx.Queue()
child = os.fork()
if child == 0:
    time.sleep(300)
    os._exit(0)
print(os.environ["DRAGON_INSTANCE"], flush=True)
print(child, flush=True)
if sys.argv[1] == "exit":
    os._exit(0)
time.sleep(300)
"""

# A normal exit: the runtime is stopped at exit.  A program it started by
# other means (subprocess) inherited the runtime's variables but is not
# the runtime's: it must survive.  The watchdog is not the owner's child.
NORMAL_EXIT = _PRELUDE + """
q, lock = ctx.Queue(), ctx.Lock()
q.put(1); q.get(timeout=60)
try:
    os.waitpid(-1, os.WNOHANG)
    children = "children"
except ChildProcessError:
    children = "no-children"
other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         start_new_session=True)
print(os.environ["DRAGON_INSTANCE"], children, other.pid, flush=True)
sys.stdin.readline()
"""


def _prefix(instance):
    return "dragon.%s.%s." % (pwd.getpwuid(os.getuid()).pw_name, instance)


def _segments(instance):
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith(_prefix(instance)))


def _running(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _instance_processes(instance):
    """Running processes whose environment names the instance."""
    found = []
    key = b"DRAGON_INSTANCE=" + instance.encode()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % d, "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if key in env and _running(int(d)):
            found.append(int(d))
    return found


def _watchdogs(owner):
    """Running watchdogs of process owner."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if (len(argv) > 2 and argv[0].endswith(b"dragon-cleanup")
                and argv[1] == b"--when-gone" and argv[2] == str(owner).encode()
                and _running(int(d))):
            found.append(int(d))
    return found


def _start(tmp_path, code, *args, env=None):
    prog = tmp_path / "owner.py"
    prog.write_text(code)
    env = dict(runtime.clean_env(), **(env or {}))
    return subprocess.Popen([sys.executable, str(prog), *args], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)


def _settled(check, timeout=30):
    """check()'s result once it is empty, or its last result after timeout
    seconds (the watchdog works after its owner is gone)."""
    deadline = time.monotonic() + timeout
    while True:
        left = check()
        if not any(left) or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def _kill_and_check(proc, signo, instance, pids):
    assert _segments(instance), "the runtime has no segment to leave"
    assert _watchdogs(proc.pid), "no watchdog watches %d" % proc.pid
    proc.send_signal(signo)
    assert proc.wait(60) == -signo
    left = _settled(lambda: (_segments(instance),
                             [p for p in pids if _running(p)],
                             _instance_processes(instance),
                             _watchdogs(proc.pid)))
    assert not any(left), (
        "left behind (segments, processes, processes of the instance, "
        "watchdog): %r" % (left,))


def _cleanup(proc, *pids):
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass


@pytest.mark.parametrize("signo", SIGNALS, ids=["SIGTERM", "SIGKILL"])
def test_a_killed_owner_without_processes_leaves_nothing(tmp_path, signo):
    # Queues, locks and pipes only: no zygote was started, so nothing but
    # the watchdog knows the owner died.
    proc = _start(tmp_path, QUEUE_ONLY)
    try:
        instance = proc.stdout.readline().strip()
        assert instance == "p%d" % proc.pid
        _kill_and_check(proc, signo, instance, [])
    finally:
        _cleanup(proc)


@pytest.mark.parametrize("signo", SIGNALS, ids=["SIGTERM", "SIGKILL"])
def test_a_killed_owner_with_fresh_interpreter_children_leaves_nothing(
        tmp_path, signo):
    # DRAGON_ZYGOTE=0: the child is a fresh interpreter the runtime
    # started; no zygote watches the owner.
    proc = _start(tmp_path, WITH_CHILD, env={"DRAGON_ZYGOTE": "0"})
    child = None
    try:
        instance, child = proc.stdout.readline().split()
        child = int(child)
        assert _running(child)
        # Its environment shows once its exec is through.
        assert not _settled(lambda: [] if child in _instance_processes(instance)
                            else [child])
        _kill_and_check(proc, signo, instance, [child])
    finally:
        _cleanup(proc, *([child] if child else []))


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(tmp_path):
    proc = _start(tmp_path, STUBBORN_CHILD, env={"DRAGON_ZYGOTE": "0"})
    child = None
    try:
        instance, child = proc.stdout.readline().split()
        child = int(child)
        _kill_and_check(proc, signal.SIGKILL, instance, [child])
    finally:
        _cleanup(proc, *([child] if child else []))


def test_a_process_that_started_after_the_owner_was_gone_is_left_alone(tmp_path):
    # An instance is named after its owner's pid, which a new process can
    # have once the owner is gone, and that process's runtime the same
    # name: its processes are not the dead runtime's.  One started while
    # the watchdog waits out the grace of a child that ignores SIGTERM
    # must survive the watchdog's SIGKILL round.
    proc = _start(tmp_path, STUBBORN_CHILD, env={"DRAGON_ZYGOTE": "0"})
    child = newcomer = None
    try:
        instance, child = proc.stdout.readline().split()
        child = int(child)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(60) == -signal.SIGKILL
        time.sleep(0.1)  # the watchdog has sent SIGTERM and waits
        assert _running(child)
        newcomer = subprocess.Popen(
            ["sleep", "60"], env=dict(os.environ, DRAGON_INSTANCE=instance))
        assert not _settled(lambda: [] if newcomer.pid in _instance_processes(instance)
                            else [newcomer.pid])
        left = _settled(lambda: (_segments(instance), _running(child),
                                 _watchdogs(proc.pid)))
        assert not any(left), left
        assert newcomer.poll() is None, "the watchdog ended a newcomer"
    finally:
        if newcomer is not None:
            newcomer.kill()
            newcomer.wait()
        _cleanup(proc, *([child] if child else []))


@pytest.mark.parametrize("signo", SIGNALS, ids=["SIGTERM", "SIGKILL"])
def test_a_killed_owner_with_zygote_children_leaves_nothing(tmp_path, signo):
    # The zygote watches its owner too; the watchdog finds the zygote and
    # its children by their environment all the same.
    proc = _start(tmp_path, WITH_CHILD)
    child = None
    try:
        instance, child = proc.stdout.readline().split()
        child = int(child)
        assert child in _instance_processes(instance)
        _kill_and_check(proc, signo, instance, [child])
    finally:
        _cleanup(proc, *([child] if child else []))


def test_a_killed_owner_is_cleaned_up_while_its_forked_child_lives(tmp_path):
    proc = _start(tmp_path, WITH_FORKED_CHILD, "wait")
    forked = None
    try:
        instance = proc.stdout.readline().strip()
        forked = int(proc.stdout.readline())
        _kill_and_check(proc, signal.SIGKILL, instance, [])
        # Not the instance's: it was forked by the owner, not started by
        # the runtime, and the watchdog leaves it alone.
        assert _running(forked)
    finally:
        _cleanup(proc, *([forked] if forked else []))


def test_the_watchdog_leaves_with_its_owner_not_with_its_forked_child(tmp_path):
    # The owner leaves with os._exit (no teardown) while its forked child
    # still runs: the watchdog cleans up at once and leaves.
    proc = _start(tmp_path, WITH_FORKED_CHILD, "exit")
    forked = None
    try:
        instance = proc.stdout.readline().strip()
        forked = int(proc.stdout.readline())
        assert proc.wait(60) == 0
        left = _settled(lambda: (_segments(instance), _watchdogs(proc.pid)))
        assert not any(left), "left behind (segments, watchdog): %r" % (left,)
        assert _running(forked)
    finally:
        _cleanup(proc, *([forked] if forked else []))


def test_a_normal_exit_leaves_nothing_and_touches_nothing_else(tmp_path):
    proc = _start(tmp_path, NORMAL_EXIT)
    other = None
    try:
        instance, children, other = proc.stdout.readline().split()
        other = int(other)
        # The watchdog is nobody's child and holds none of the owner's
        # standard streams: a reader of its output sees the end of it when
        # the owner exits, and a wait for any child in it finds none.
        assert children == "no-children"
        dogs = _watchdogs(proc.pid)
        assert len(dogs) == 1
        pipes = {os.readlink("/proc/%d/fd/%d" % (proc.pid, fd)) for fd in (0, 1)}
        held = {os.readlink("/proc/%d/fd/%s" % (dogs[0], fd))
                for fd in os.listdir("/proc/%d/fd" % dogs[0])}
        assert not pipes & held, "the watchdog holds %r" % (pipes & held)
        out, _ = proc.communicate("\n", timeout=60)
        assert proc.returncode == 0
        assert out == ""
        left = _settled(lambda: (_segments(instance), _watchdogs(proc.pid)))
        assert not any(left), "left behind (segments, watchdog): %r" % (left,)
        # Inherited the runtime's variables, but the runtime was stopped:
        # not the watchdog's to end.
        assert other in _instance_processes(instance)
    finally:
        _cleanup(proc, *([other] if other else []))


def test_the_watchdog_program_needs_an_instance():
    prog = runtime._cleanup_program()
    assert prog and os.access(prog, os.X_OK)
    out = subprocess.run([prog, "--when-gone", str(os.getpid())],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "--when-gone" in out.stderr


def test_a_watchdog_whose_owner_is_already_gone_cleans_up_at_once(tmp_path):
    # By hand: dragon-cleanup --when-gone for a process that has ended
    # cleans up its instance straight away.
    proc = _start(tmp_path, QUEUE_ONLY, env={"DRAGON_CLEANUP_PROGRAM": ""})
    try:
        instance = proc.stdout.readline().strip()
        assert not _watchdogs(proc.pid)
        proc.kill()
        proc.wait(60)
        assert _segments(instance)
        out = subprocess.run([runtime._cleanup_program(), "--when-gone",
                              str(proc.pid), "--instance", instance],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert _settled(lambda: _segments(instance)) == []
    finally:
        _cleanup(proc)
