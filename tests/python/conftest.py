"""Shared fixtures: the tests import the dragon package from the build tree
(PYTHONPATH is set by run-pytest.sh) and must leave /dev/shm as they found it.

The pytest process starts the embedded runtime once (its default pool lives
for the session and is removed at exit, which the last fixture checks).
Segments of other programs running at the same time on this machine are
not ours to judge: a test is blamed for a segment that appeared while it
ran, named by the embedded-runtime convention (dragon.<user>.p<pid>.<name>),
whose pid is this process or a process that no longer exists."""
import os
import re

import pytest

_SEG = re.compile(r"^dragon\.[^.]+\.p(\d+)\.")


def _ours(name):
    m = _SEG.match(name)
    if not m:
        return False
    pid = int(m.group(1))
    return pid == os.getpid() or not os.path.exists("/proc/%d" % pid)


def _dragon_segments():
    try:
        return {n for n in os.listdir("/dev/shm") if _SEG.match(n)}
    except FileNotFoundError:
        return set()


@pytest.fixture(scope="session", autouse=True)
def embedded_runtime():
    from dragon import runtime
    rt = runtime.current()
    yield rt
    name = rt.pool.name
    rt.shutdown()
    assert not os.path.exists("/dev/shm/" + name)


@pytest.fixture(autouse=True)
def no_leftover_segments(embedded_runtime):
    # Segments that were there before are not the test's, even when their
    # process (another program's, still running then) has died since.
    before = _dragon_segments()
    yield
    left = {n for n in _dragon_segments() - before if _ours(n)}
    assert not left, "test left segments in /dev/shm: %s" % sorted(left)


@pytest.fixture
def run_python(tmp_path):
    """run_python(code, timeout=180): run code in a new interpreter with its
    own embedded runtime (a crash there is a failed test here, not a dead
    pytest); fails unless it exits with status 0.  Returns its output."""
    import subprocess
    import sys
    from dragon import runtime

    def run(code, timeout=180):
        script = tmp_path / "prog.py"
        script.write_text(code)
        env = runtime.clean_env()
        p = subprocess.run([sys.executable, str(script)], env=env, cwd=str(tmp_path),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout)
        out = p.stdout.decode(errors="replace")
        assert p.returncode == 0, "exit status %d:\n%s" % (p.returncode, out[-6000:])
        return out
    return run
