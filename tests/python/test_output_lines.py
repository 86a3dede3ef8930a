"""Output of 'dragon' processes under the launcher: every process writes
to pipes of its own, which the runtime forwards whole lines at a time
(dragon(1)), so lines of processes writing at once never mix.  An
embedded runtime forwards nothing: its processes write to the program's
own stdout and stderr, as the stock start methods' do."""
import os
import re
import subprocess
import sys

import pytest

from dragon import runtime

PROG = r'''
import multiprocessing as mp, os, subprocess, sys, time

def lines(i, go):
    # With PYTHONUNBUFFERED=1 each print is two writes: the text, then
    # the newline.  The four children write at the same time.
    go.wait()
    for k in range(3000):
        print("%d-%05d-%s" % (i, k, "x" * 150))

def lines_err(i, go):
    go.wait()
    for k in range(3000):
        print("%d-%05d-%s" % (i, k, "x" * 150), file=sys.stderr)

def big(i, go):
    # One write each, larger than a pipe's buffer.
    line = b"%d-" % i + b"y" * 100000 + b"\n"
    go.wait()
    for k in range(40):
        os.write(1, line)

def tail(i):
    sys.stdout.write("tail-%d" % i)
    sys.stderr.write("errtail-%d" % i)

def binary(i):
    os.write(1, bytes(range(256)) * 4 + b"\n")

def closes(i):
    print("before-close-%d" % i, flush=True)
    os.close(1)
    os.close(2)

def grandchild(i):
    # A grandchild inherits the pipes and writes after its parent ended.
    subprocess.Popen(["sh", "-c", "sleep 0.3; echo late-%d; touch %s.%d"
                      % (i, sys.argv[2], i)])

def order(i):
    print("child-%d" % i)

def holder(i):
    # A grandchild that keeps the pipes open for far longer than the
    # program runs.
    subprocess.Popen(["sleep", "600"], start_new_session=True)
    print("holder-%d" % i)

if __name__ == "__main__":
    import dragon  # noqa: F401
    mp.set_start_method("dragon")
    f = globals()[sys.argv[1]]
    if f is order:
        for i in range(50):
            p = mp.Process(target=f, args=(i,))
            p.start()
            p.join()
            print("parent-%d" % i)
        sys.exit(0)
    go = mp.Barrier(4)
    args = (go,) if f in (lines, lines_err, big) else ()
    ps = [mp.Process(target=f, args=(i,) + args) for i in range(4)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    if f is grandchild:
        while not all(os.path.exists("%s.%d" % (sys.argv[2], i)) for i in range(4)):
            time.sleep(0.05)
    print("head-done")
'''


def _launcher():
    top = os.environ.get("top_builddir",
                         os.path.join(os.path.dirname(__file__), "..", "..", "build"))
    return os.path.join(top, "libdlaunch", "dragon")


def _run(tmp_path, case, launcher, timeout=120):
    if launcher and not os.access(_launcher(), os.X_OK):
        pytest.skip("no launcher in this build")
    prog = tmp_path / "prog.py"
    prog.write_text(PROG)
    env = runtime.clean_env()
    env["PYTHONUNBUFFERED"] = "1"
    argv = [sys.executable, str(prog), case, str(tmp_path / "mark")]
    if launcher:
        argv[0] = _launcher()
    # Files, not pipes: a grandchild that holds the program's output open
    # must not keep this test waiting for the end of a pipe.
    with open(tmp_path / "out", "wb") as o, open(tmp_path / "err", "wb") as e:
        rc = subprocess.run(argv, stdout=o, stderr=e, timeout=timeout, env=env,
                            cwd=str(tmp_path)).returncode
    out, err = (tmp_path / "out").read_bytes(), (tmp_path / "err").read_bytes()
    assert rc == 0, err.decode(errors="replace")[-3000:]
    return out, err


MODES = [pytest.param(True, id="launcher"), pytest.param(False, id="embedded")]


def _whole(data, pattern, n):
    lines = data.split(b"\n")
    good = sum(1 for ln in lines if re.fullmatch(pattern, ln))
    bad = [ln[:80] for ln in lines if ln and not re.fullmatch(pattern, ln)
           and not ln.startswith((b"+++ ", b"head-done"))]
    assert (good, bad[:5]) == (n, [])


def test_lines_of_four_children_never_mix(tmp_path):
    out, _ = _run(tmp_path, "lines", True)
    _whole(out, rb"[0-3]-\d{5}-x{150}", 12000)


def test_stderr_lines_never_mix(tmp_path):
    _, err = _run(tmp_path, "lines_err", True)
    _whole(err, rb"[0-3]-\d{5}-x{150}", 12000)


def test_writes_larger_than_a_pipe_stay_whole(tmp_path):
    out, _ = _run(tmp_path, "big", True)
    _whole(out, rb"[0-3]-y{100000}", 160)


def test_final_lines_without_newline_are_ended(tmp_path):
    out, err = _run(tmp_path, "tail", True)
    lines = out.decode().split("\n")
    assert sorted(lines[:4]) == ["tail-%d" % i for i in range(4)]
    assert lines[4:] == ["head-done", "+++ head proc exited, code 0", ""]
    assert sorted(err.decode().split("\n")) == [""] + ["errtail-%d" % i for i in range(4)]


@pytest.mark.parametrize("launcher", MODES)
def test_binary_output_passes_unchanged(tmp_path, launcher):
    out, _ = _run(tmp_path, "binary", launcher)
    assert out.count(bytes(range(256)) * 4 + b"\n") == 4


@pytest.mark.parametrize("launcher", MODES)
def test_a_child_that_closes_its_output(tmp_path, launcher):
    out, _ = _run(tmp_path, "closes", launcher)
    lines = out.decode().splitlines()
    assert sorted(ln for ln in lines if ln.startswith("before")) == \
        ["before-close-%d" % i for i in range(4)]
    assert "head-done" in lines


@pytest.mark.parametrize("launcher", MODES)
def test_a_grandchild_writing_after_its_parent_ended(tmp_path, launcher):
    # The pipes stay forwarded while a grandchild holds them.
    out, _ = _run(tmp_path, "grandchild", launcher)
    lines = out.decode().splitlines()
    assert sorted(ln for ln in lines if ln.startswith("late")) == \
        ["late-%d" % i for i in range(4)]


@pytest.mark.parametrize("launcher", MODES)
def test_a_grandchild_holding_the_pipes_holds_up_nothing(tmp_path, launcher):
    # The runtime's stop forwards what the pipes hold and closes them
    # without waiting for a writer it does not end (the launcher ends its
    # orphans; an embedded runtime's live on).  A hang is caught by the
    # timeout, well below the grandchild's 600 s.
    try:
        out, err = _run(tmp_path, "holder", launcher, timeout=60)
        assert sorted(ln for ln in out.decode().splitlines()
                      if ln.startswith("holder")) == ["holder-%d" % i for i in range(4)]
        assert b"cut short" not in err
    finally:
        _kill_sleepers(str(tmp_path))


def _kill_sleepers(cwd):
    # The grandchildren an embedded runtime left behind: this test's own
    # (their working directory is the test's), nobody else's.
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if f.read() != b"sleep\x00600\x00":
                    continue
            if os.readlink("/proc/%s/cwd" % pid) == cwd:
                os.kill(int(pid), 9)
        except OSError:
            pass


def test_embedded_children_write_to_the_programs_own_output(tmp_path):
    # Nothing forwards in an embedded runtime: what a child printed is in
    # the program's stdout when its join returns, before what the program
    # prints next.
    out, _ = _run(tmp_path, "order", False)
    want = []
    for i in range(50):
        want += ["child-%d" % i, "parent-%d" % i]
    assert out.decode().splitlines() == want
