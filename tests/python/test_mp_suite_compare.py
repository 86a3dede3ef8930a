"""run_suite.py --compare (tests/python/mp_suite): the outcome counts it
prints, and the expected-results file's [multinode] lines, which hold only
for a run over several nodes (--multinode)."""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RUN_SUITE = os.path.join(HERE, "mp_suite", "run_suite.py")


def _jsonl(path, outcomes):
    with open(path, "w") as f:
        for name, outcome in outcomes.items():
            f.write(json.dumps({"id": name, "outcome": outcome, "reason": ""}) + "\n")
    return str(path)


def _compare(tmp_path, *extra):
    base = _jsonl(tmp_path / "spawn.jsonl",
                  {"T.a": "pass", "T.b": "pass", "T.c": "pass", "T.d": "skip"})
    ours = _jsonl(tmp_path / "ours.jsonl",
                  {"T.a": "pass", "T.b": "fail", "T.c": "hang", "T.d": "skip"})
    expected = tmp_path / "expected.txt"
    expected.write_text("# comment\n"
                        "T.b  fails everywhere, for a reason\n"
                        "[multinode] T.c  only across nodes  # with a comment\n")
    return subprocess.run([sys.executable, RUN_SUITE, "--compare", base, ours,
                           "--expected", str(expected), "--min-ratio", "0"] + list(extra),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_multinode_lines_hold_only_with_multinode(tmp_path):
    r = _compare(tmp_path)
    assert r.returncode == 1, r.stdout
    lost = {l.split()[0]: l for l in r.stdout.splitlines() if l.startswith("  T.")}
    assert "NOT in expected file" in lost["T.c"], r.stdout
    assert "NOT in expected file" not in lost["T.b"], r.stdout

    r = _compare(tmp_path, "--multinode")
    assert r.returncode == 0, r.stdout
    assert "NOT in expected file" not in r.stdout, r.stdout


def test_counts_of_both_runs_are_printed(tmp_path):
    r = _compare(tmp_path, "--multinode")
    lines = r.stdout.splitlines()
    assert any(l.endswith("spawn.jsonl: pass 3, skip 1") for l in lines), r.stdout
    assert any(l.endswith("ours.jsonl: fail 1, hang 1, pass 1, skip 1") for l in lines), r.stdout
    assert "baseline passes 3; ran 3 of them; pass here 1 (33.3%)" in lines, r.stdout
