"""SIGINT and the 'dragon' start method.

CPython's suite sends SIGINT to the test process in two tests
(WithProcessesTestCondition.test_wait_result: a child interrupts its
parent's Condition.wait; test_shared_memory_SharedMemoryServer_ignores_sigint:
the process interrupts itself) and expects KeyboardInterrupt.  Both failed
whenever the suite's driver was started in the background by a
non-interactive shell (``cmd &``), which starts it with SIGINT ignored:
its workers inherited that through exec, and CPython installs its
KeyboardInterrupt handler only over a default disposition.  They failed so
with 'spawn' as well.  The driver's workers now take the default handling
back; these tests check that, and that SIGINT interrupts a process blocked
in a 'dragon' wait, and what a 'dragon' child's SIGINT disposition is."""
import os
import subprocess
import sys
import textwrap

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "mp_suite", "run_suite.py")

# sh runs a command followed by '&' with SIGINT and SIGQUIT ignored (POSIX:
# an asynchronous list without job control).
IN_BACKGROUND = ["sh", "-c", '"$@" & wait $!', "sh"]

SIGINT_TESTS = [
    "WithProcessesTestCondition.test_wait_result",
    "WithProcessesTestSharedMemory."
    "test_shared_memory_SharedMemoryServer_ignores_sigint",
]


def _has_cpython_suite():
    return subprocess.run([sys.executable, "-c", "import test._test_multiprocessing"],
                          stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def test_background_shell_ignores_sigint():
    # The premise of test_suite_driver_in_background: without it that test
    # would check nothing.
    out = subprocess.run(IN_BACKGROUND + [
        sys.executable, "-c",
        "import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"],
        stdout=subprocess.PIPE, text=True, check=True).stdout
    assert out.strip() == "True"


@pytest.mark.skipif(not _has_cpython_suite(),
                    reason="test._test_multiprocessing is missing "
                           "(libpython3.11-testsuite)")
@pytest.mark.parametrize("method", ["dragon", "spawn"])
def test_suite_driver_in_background(tmp_path, method):
    out = tmp_path / "results.jsonl"
    pattern = "^(%s)$" % "|".join(t.replace(".", r"\.") for t in SIGINT_TESTS)
    p = subprocess.run(IN_BACKGROUND + [
        sys.executable, DRIVER, "--method", method, "--out", str(out),
        "-j", "2", "--test-timeout", "150", "--filter", pattern],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=600)
    assert p.returncode == 0, p.stdout
    import json
    with open(out) as f:
        results = {r["id"]: r for r in map(json.loads, f)}
    assert sorted(results) == sorted(SIGINT_TESTS), p.stdout
    for name, r in results.items():
        assert r["outcome"] == "pass", "%s: %s\n%s" % (name, r["outcome"], r["reason"])


# A child interrupts its parent while the parent waits in a 'dragon'
# object.  The parent tells the child (with an Event set just before it
# waits) when to send the signal; the wait's own timeout is long enough that
# only a missed SIGINT ends it.
_INTERRUPT_PROGRAM = textwrap.dedent("""
    import os, signal, sys, time
    import multiprocessing as mp
    import dragon

    # This interpreter may have been started with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def interrupt(ready, pid):
        ready.wait(300)
        time.sleep(0.5)
        os.kill(pid, signal.SIGINT)

    if __name__ == "__main__":
        ctx = mp.get_context("dragon")
        what = sys.argv[1]
        ready = ctx.Event()
        p = ctx.Process(target=interrupt, args=(ready, os.getpid()))
        p.start()
        try:
            if what == "condition":
                c = ctx.Condition()
                with c:
                    ready.set()
                    r = c.wait(300)
            elif what == "queue":
                q = ctx.Queue()
                ready.set()
                r = q.get(timeout=300)
            elif what == "connection":
                a, b = ctx.Pipe()
                ready.set()
                r = a.poll(300) and a.recv()
            elif what == "lock":
                lock = ctx.Lock()
                lock.acquire()
                ready.set()
                r = lock.acquire(timeout=300)
        except KeyboardInterrupt:
            print("KeyboardInterrupt")
        else:
            print("returned %r" % (r,))
        p.join()
        print("child exit code", p.exitcode)
""")


@pytest.mark.parametrize("what", ["condition", "queue", "connection", "lock"])
def test_sigint_interrupts_parent_wait(run_python, what):
    out = _run(run_python, _INTERRUPT_PROGRAM, what)
    assert "KeyboardInterrupt" in out, out
    assert "child exit code 0" in out, out


def _run(run_python, script, *args):
    # run_python runs a program without arguments: pass them through argv.
    return run_python("import sys; sys.argv[1:] = %r\n" % (list(args),) + script,
                      timeout=400)


# The SIGINT disposition a child starts with, under both start methods.
_DISPOSITION_PROGRAM = textwrap.dedent("""
    import signal, sys
    import multiprocessing as mp
    import dragon

    def report(q):
        q.put(repr(signal.getsignal(signal.SIGINT)))

    if __name__ == "__main__":
        method, parent = sys.argv[1], sys.argv[2]
        signal.signal(signal.SIGINT, signal.SIG_IGN if parent == "ignored"
                      else signal.default_int_handler)
        ctx = mp.get_context(method)
        q = ctx.Queue()
        p = ctx.Process(target=report, args=(q,))
        p.start()
        print("child:", q.get(timeout=300))
        p.join()
""")


@pytest.mark.parametrize("zygote", ["1", "0"])
def test_child_sigint_default(run_python, monkeypatch, zygote):
    monkeypatch.setenv("DRAGON_ZYGOTE", zygote)
    for method in ("spawn", "dragon"):
        out = _run(run_python, _DISPOSITION_PROGRAM, method, "default")
        assert "child: <built-in function default_int_handler>" in out, (method, out)


@pytest.mark.parametrize("zygote", ["1", "0"])
def test_child_inherits_ignored_sigint(run_python, monkeypatch, zygote):
    monkeypatch.setenv("DRAGON_ZYGOTE", zygote)
    out = _run(run_python, _DISPOSITION_PROGRAM, "spawn", "ignored")
    assert "child: <Handlers.SIG_IGN: 1>" in out, out
    out = _run(run_python, _DISPOSITION_PROGRAM, "dragon", "ignored")
    assert "child: <Handlers.SIG_IGN: 1>" in out, out
