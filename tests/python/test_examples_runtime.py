"""The p2p examples with the 'dragon' start method under the real launcher
(`dragon prog.py`, the runtime the launcher runs) and as plain Python
programs (an embedded runtime), with short runs."""
import os
import subprocess
import sys

import pytest

from dragon import runtime

TOP_SRC = os.environ.get("top_srcdir", os.path.join(os.path.dirname(__file__), "..", ".."))
TOP_BUILD = os.environ.get("top_builddir", os.path.join(TOP_SRC, "build"))
LAUNCHER = os.path.join(TOP_BUILD, "libdlaunch", "dragon")

CASES = [
    ("p2p_lat.py", ["--iterations", "10", "--lg_max_message_size", "8"],
     "Msglen [B]   Lat [usec]", 8),
    ("p2p_lat.py", ["--iterations", "10", "--lg_max_message_size", "8", "--queues"],
     "Msglen [B]   Lat [usec]", 8),
    ("p2p_bw.py", ["--iterations", "5", "--lg_max_message_size", "12"],
     "Msglen [B]   BW [MiB/s]", 12),
]


def _run(argv):
    # Outside this test session's runtime: each run has its own.
    return subprocess.run(argv, capture_output=True, text=True, timeout=180,
                          env=runtime.clean_env(), cwd=TOP_SRC)


def _check_table(out, header, rows):
    lines = out.splitlines()
    assert lines[0] == header
    assert [int(l.split()[0]) for l in lines[1:rows + 1]] == [2 ** k for k in range(1, rows + 1)]


@pytest.mark.parametrize("prog,args,header,rows", CASES)
def test_under_the_launcher(prog, args, header, rows):
    if not os.access(LAUNCHER, os.X_OK):
        pytest.skip("no launcher at %s" % LAUNCHER)
    out = _run([LAUNCHER, os.path.join("examples", prog), "--dragon"] + args)
    assert out.returncode == 0, out.stderr
    _check_table(out.stdout, header, rows)
    assert out.stdout.splitlines()[-1] == "+++ head proc exited, code 0"


@pytest.mark.parametrize("prog,args,header,rows", CASES)
def test_plain_python(prog, args, header, rows):
    out = _run([sys.executable, os.path.join("examples", prog), "--dragon"] + args)
    assert out.returncode == 0, out.stderr
    _check_table(out.stdout, header, rows)
    assert len(out.stdout.splitlines()) == rows + 1
