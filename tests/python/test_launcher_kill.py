"""Killing the launcher cleans up: `kill -9` of `dragon` at a random moment
of its run leaves none of its processes, segments or empty logs behind a
few seconds later (its watchdog, dragon-cleanup --when-gone, does it), and
a start-up failure's log holds the error it points to."""
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from dragon import runtime

TOP = os.environ.get("top_builddir",
                     os.path.join(os.path.dirname(__file__), "..", "..", "build"))
LAUNCHER = os.path.join(TOP, "libdlaunch", "dragon")
TRIALS = 32
#: Every trial's leftovers must be gone this long after the kill.
SETTLE = 10.0

PROG = """
import multiprocessing as mp
import os
import sys
import time

import dragon


def work(q, n):
    for i in range(n):
        q.put(b"x" * 1000)
    time.sleep(60)


if __name__ == "__main__":
    mp.set_start_method("dragon")
    q = mp.Queue()
    procs = [mp.Process(target=work, args=(q, 50)) for _ in range(2)]
    for p in procs:
        p.start()
    for _ in range(100):
        q.get()
    # The launcher is this process's parent: the test counts the trials
    # killed once everything ran.
    open("ready-%d" % os.getppid(), "w").close()
    time.sleep(60)
"""


def _user():
    import pwd
    name = pwd.getpwuid(os.geteuid()).pw_name
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def _instance_procs(prefix):
    """Pids of this user's processes whose environment names an instance
    starting with prefix."""
    found = []
    key = b"DRAGON_INSTANCE=" + prefix.encode()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % d, "rb") as f:
                env = f.read()
            with open("/proc/%s/stat" % d) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(v.startswith(key) for v in env.split(b"\0")):
            found.append(int(d))
    return found


def _leftovers(pid, logdir):
    prefix = "rt%dx" % pid
    segs = [n for n in os.listdir("/dev/shm")
            if n.startswith("dragon.%s.%s" % (_user(), prefix))]
    procs = _instance_procs(prefix)
    logs = [n for n in os.listdir(logdir) if n == "dragon-%d.log" % pid
            and os.path.getsize(os.path.join(logdir, n)) == 0]
    return segs, procs, logs


def _trial(tmp_path, k, results):
    logdir = tmp_path / "logs"
    env = runtime.clean_env()
    env["DRAGON_LOG_DIR"] = str(logdir)
    p = subprocess.Popen([LAUNCHER, str(tmp_path / "prog.py")], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         cwd=str(tmp_path))
    time.sleep(random.uniform(0.0, 4.0))
    p.send_signal(signal.SIGKILL)
    p.wait()
    deadline = time.monotonic() + SETTLE
    left = _leftovers(p.pid, str(logdir))
    while any(left) and time.monotonic() < deadline:
        time.sleep(0.2)
        left = _leftovers(p.pid, str(logdir))
    results[k] = (p.pid, left, p.returncode)


@pytest.mark.skipif(not os.access(LAUNCHER, os.X_OK), reason="no launcher in this build")
def test_killed_launcher_leaves_nothing(tmp_path):
    (tmp_path / "prog.py").write_text(PROG)
    (tmp_path / "logs").mkdir()
    results = {}
    # A few at a time: bounded time, and kills land in every phase.
    for start in range(0, TRIALS, 4):
        threads = [threading.Thread(target=_trial, args=(tmp_path, k, results))
                   for k in range(start, min(start + 4, TRIALS))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    bad = {pid: left for pid, left, _ in results.values() if any(left)}
    assert len(results) == TRIALS
    # Every run was still going when it was killed (its head sleeps).
    assert [rc for _, _, rc in results.values()] == [-signal.SIGKILL] * TRIALS
    assert not bad, "left %.0f s after kill -9 (segments, processes, empty logs): %s" % (
        SETTLE, bad)


@pytest.mark.skipif(not os.access(LAUNCHER, os.X_OK), reason="no launcher in this build")
def test_failed_start_log_holds_the_error(tmp_path):
    env = runtime.clean_env()
    env["DRAGON_LOG_DIR"] = str(tmp_path)
    out = subprocess.run([LAUNCHER, str(tmp_path / "no-such-program")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 127, out.stderr
    m = re.search(r"\(log: (.*)\)", out.stderr)
    assert m, out.stderr
    with open(m.group(1)) as f:
        log = f.read()
    first = out.stderr.splitlines()[0]
    assert first in log.splitlines(), (first, log)
    # Nothing else in the directory: no empty log of this run.
    assert os.listdir(str(tmp_path)) == [os.path.basename(m.group(1))]
