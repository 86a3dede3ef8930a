"""The example programs run, with and without --dragon, and print the
published table header."""
import os
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.environ.get("top_srcdir", os.path.join(
    os.path.dirname(__file__), "..", "..")), "examples")


@pytest.mark.parametrize("args", [["--dragon"], ["--dragon", "--with_bytes"],
                                  ["--dragon", "--queues"], []])
def test_p2p_lat(args):
    out = subprocess.run([sys.executable, os.path.join(EXAMPLES, "p2p_lat.py"),
                          "--iterations", "20", "--lg_max_message_size", "12"] + args,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "Msglen [B]   Lat [usec]"
    assert [int(l.split()[0]) for l in lines[1:]] == [2 ** k for k in range(1, 13)]


@pytest.mark.parametrize("args", [["--dragon"], ["--dragon", "--queues"]])
def test_p2p_bw(args):
    out = subprocess.run([sys.executable, os.path.join(EXAMPLES, "p2p_bw.py"),
                          "--iterations", "10", "--lg_max_message_size", "16"] + args,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "Msglen [B]   BW [MiB/s]"
    assert len(out.stdout.splitlines()) == 17
