"""bench/run: the tables and the JSON lines it writes, with the rows it
makes from two programs' rows of the same run."""
import json
import os
import subprocess
import sys

RUN = os.path.join(os.environ.get("top_srcdir", os.path.join(os.path.dirname(__file__), "..", "..")),
                   "bench", "run")

C_ROWS = [
    {"bench": "dchan", "case": "rtt", "size": 65536, "unit": "us", "value": 9.0,
     "baseline": "pipe", "baseline_value": 20.0, "ratio": 0.45},
    {"bench": "dchan", "case": "rtt", "size": 65536, "unit": "us", "value": 11.0,
     "baseline": "ring-busy", "baseline_value": 8.0, "ratio": 1.375},
    {"bench": "dchan", "case": "rtt", "size": 8, "unit": "us", "value": 1.0,
     "baseline": "pipe", "baseline_value": 5.0, "ratio": 0.2},
]
PY_ROWS = [
    {"bench": "mp_pipe_rtt", "case": "dragon vs fork", "size": 65536, "unit": "us",
     "value": 15.0, "baseline": "fork", "baseline_value": 40.0, "ratio": 0.375,
     "faults": 100, "baseline_faults": 90},
    {"bench": "mp_pipe_rtt", "case": "dragon vs spawn", "size": 65536, "unit": "us",
     "value": 15.0, "baseline": "spawn", "baseline_value": 41.0, "ratio": 0.366,
     "faults": 100, "baseline_faults": 95},
]


def _prog(tmp_path, name, rows):
    p = tmp_path / name
    p.write_text("#!/bin/sh\ncat <<'EOF'\n%s\nEOF\n" % "\n".join(json.dumps(r) for r in rows))
    p.chmod(0o755)
    return str(p)


def _run(tmp_path, *progs):
    out = tmp_path / "rows.jsonl"
    r = subprocess.run([sys.executable, RUN, "--out", str(out)] + list(progs),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout, [json.loads(l) for l in out.read_text().splitlines()]


def test_python_pipe_against_the_c_channel(tmp_path):
    text, rows = _run(tmp_path, _prog(tmp_path, "c", C_ROWS), _prog(tmp_path, "py", PY_ROWS))
    cross = [r for r in rows if r["bench"] == "mp_pipe_vs_dchan"]
    # ours: the Pipe's 64 KiB figure; the baseline: the median of the C
    # program's 64 KiB figures, measured in the same run
    assert cross == [{"bench": "mp_pipe_vs_dchan", "case": "Python Pipe vs C channel",
                      "size": 65536, "unit": "us", "value": 15.0, "baseline": "dchan (C)",
                      "baseline_value": 10.0, "ratio": 1.5}]
    assert "== mp_pipe_vs_dchan ==" in text
    assert len(rows) == len(C_ROWS) + len(PY_ROWS) + 1


def test_no_cross_row_without_both_measurements(tmp_path):
    _, rows = _run(tmp_path, _prog(tmp_path, "py", PY_ROWS))
    assert [r["bench"] for r in rows] == ["mp_pipe_rtt"] * 2
