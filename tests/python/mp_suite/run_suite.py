#!/usr/bin/python3
"""Run CPython's own multiprocessing test suite with a given start method.

The suite is test._test_multiprocessing, unmodified (Debian's
libpython3.11-testsuite ships it).  This module installs its test classes
with ``install_tests_in_module_dict(globals(), METHOD)`` and runs each class
in its own process group, with a bound on every test:

  * inside the worker, faulthandler.dump_traceback_later() ends the worker
    (printing every thread's stack) when a single test runs longer than
    --test-timeout seconds;
  * the driver kills the worker's whole process group when it stays silent
    longer than that plus a margin, so nothing can hang the run.

A test that was running when its worker died is recorded as "hang" or
"crash", and the worker is restarted with the tests of the class it did not
reach.  Every outcome goes to a JSON-lines file (--out).  A worker handles
SIGINT with KeyboardInterrupt, as the suite expects, even when the driver
was started with SIGINT ignored (in the background by a non-interactive
shell, say).

    run_suite.py --method dragon --out dragon.jsonl [-j 2] [--filter RE]
    run_suite.py --compare spawn.jsonl dragon.jsonl --expected expected.txt

--compare prints the outcomes of both runs (the first's counted over the
tests the second ran), the share of tests passing with the first run that
pass with the second, and checks that every such test that does not pass
is listed in the expected-results file with a reason (with --multinode,
the file's [multinode] lines count too).

Run as the head process of a multi-node runtime (``dragon run_suite.py
...`` in an allocation), every worker joins that runtime, so the suite's
processes are placed round-robin over its nodes
(tests/python/run-mp-suite-multinode.sh).
"""
import argparse
import concurrent.futures
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import unittest

METHOD_ENV = "DRAGON_MP_SUITE_METHOD"
PASSED = ("pass", "xfail")

_method = os.environ.get(METHOD_ENV)
if _method:
    if _method == "dragon":
        import dragon  # noqa: F401  (registers the start method)
    import test._test_multiprocessing as _tmp
    _tmp.install_tests_in_module_dict(globals(), _method)


class _Recorder(unittest.TextTestResult):
    """Writes one JSON line per event so the driver sees progress even when
    the worker dies in the middle of a test."""

    def __init__(self, stream, descriptions, verbosity, sink, timeout):
        super().__init__(stream, descriptions, verbosity)
        self._sink = sink
        self._timeout = timeout

    def _emit(self, test, outcome, reason=""):
        self._sink.write(json.dumps({"id": _short_id(test.id()),
                                     "outcome": outcome,
                                     "reason": reason[-4000:]}) + "\n")
        self._sink.flush()

    def startTest(self, test):
        self._emit(test, "start")
        import faulthandler
        faulthandler.dump_traceback_later(self._timeout, exit=True)
        super().startTest(test)

    def stopTest(self, test):
        import faulthandler
        faulthandler.cancel_dump_traceback_later()
        super().stopTest(test)

    def addSuccess(self, test):
        super().addSuccess(test)
        self._emit(test, "pass")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._emit(test, "fail", self.failures[-1][1])

    def addError(self, test, err):
        super().addError(test, err)
        if isinstance(test, unittest.TestCase):
            self._emit(test, "error", self.errors[-1][1])
        else:  # class or module fixture
            self._sink.write(json.dumps({"id": str(test), "outcome": "fixture-error",
                                         "reason": self.errors[-1][1][-4000:]}) + "\n")
            self._sink.flush()

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        if isinstance(test, unittest.TestCase):
            self._emit(test, "skip", reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._emit(test, "xfail")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._emit(test, "xpass")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = "fail" if issubclass(err[0], test.failureException) else "error"
            self._emit(test, kind, self._exc_info_to_string(err, test))


def _short_id(test_id):
    return test_id.split(".", 1)[1] if test_id.startswith("__main__.") else test_id


def _take_sigint():
    """Give the worker the SIGINT handling of an interpreter started from a
    shell prompt: KeyboardInterrupt.

    A non-interactive shell starts a background command (``cmd &``, a
    script or a build tool running the driver in the background) with
    SIGINT and SIGQUIT ignored; the workers inherit that through exec, and
    CPython installs its KeyboardInterrupt handler only when SIGINT is at
    its default when it starts.  Tests that send SIGINT to the test process
    (WithProcessesTestCondition.test_wait_result and
    test_shared_memory_SharedMemoryServer_ignores_sigint) then fail with
    every start method, spawn included.  The workers run in sessions of
    their own, so no ^C typed at a terminal reaches them either way."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _worker(args):
    """Run the named tests of this module, reporting into args.results."""
    _take_sigint()
    loader = unittest.TestLoader()
    suite = loader.loadTestsFromNames(args.tests, sys.modules[__name__])
    with open(args.results, "a") as sink:
        runner = unittest.TextTestRunner(
            stream=sys.stderr, verbosity=1,
            resultclass=lambda s, d, v: _Recorder(s, d, v, sink, args.test_timeout))
        runner.run(suite)
    return 0


def _suite_env(method):
    env = dict(os.environ, **{METHOD_ENV: method})
    if method == "dragon":
        here = os.path.dirname(os.path.abspath(__file__))
        env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"]
                                    if env.get("PYTHONPATH") else "")
    return env


def _list_tests(method):
    env = _suite_env(method)
    code = ("import sys, unittest; sys.argv[0] = %r\n"
            "import runpy; g = runpy.run_path(%r, run_name='suite_listing')\n"
            "l = unittest.TestLoader()\n"
            "for n, c in sorted(g.items()):\n"
            "    if isinstance(c, type) and issubclass(c, unittest.TestCase):\n"
            "        for t in l.getTestCaseNames(c): print(n + '.' + t)\n"
            % (__file__, __file__))
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    classes = {}
    for line in out.split():
        cls, name = line.split(".")
        classes.setdefault(cls, []).append(line)
    return classes


def _run_class(method, names, test_timeout, logdir):
    """Run the tests names (of one class) until each has an outcome."""
    outcomes = {}
    remaining = list(names)
    env = _suite_env(method)
    env.setdefault("PYTHONFAULTHANDLER", "1")
    cls = names[0].split(".")[0]
    log = open(os.path.join(logdir, cls + ".log"), "a")
    while remaining:
        fd, results = tempfile.mkstemp(prefix="mpsuite.", suffix=".jsonl")
        os.close(fd)
        cmd = [sys.executable, __file__, "--worker", "--results", results,
               "--test-timeout", str(test_timeout)] + remaining
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log,
                                start_new_session=True)
        last_size, last_change = 0, time.monotonic()
        while proc.poll() is None:
            time.sleep(0.5)
            size = os.path.getsize(results)
            if size != last_size:
                last_size, last_change = size, time.monotonic()
            elif time.monotonic() - last_change > test_timeout + 60:
                break
        _kill_group(proc)
        _remove_segments(proc.pid)
        started = None
        with open(results) as f:
            for line in f:
                rec = json.loads(line)
                if rec["outcome"] == "start":
                    started = rec["id"]
                    continue
                if rec["outcome"] == "fixture-error":
                    for n in remaining:
                        outcomes.setdefault(n, ("error", rec["reason"]))
                    continue
                prev = outcomes.get(rec["id"])
                if prev is None or prev[0] in PASSED:
                    outcomes[rec["id"]] = (rec["outcome"], rec["reason"])
                if rec["id"] == started:
                    started = None
        os.unlink(results)
        if started is not None and started not in outcomes:
            why = "hang" if proc.returncode in (None, 1, -signal.SIGKILL) else "crash"
            outcomes[started] = (why, "worker exit status %s" % proc.returncode)
        left = [n for n in remaining if n not in outcomes]
        if len(left) == len(remaining):  # no progress at all: give up on them
            for n in left:
                outcomes[n] = ("crash", "worker exit status %s" % proc.returncode)
            left = []
        remaining = left
    log.close()
    return outcomes


def _remove_segments(pid):
    """Remove the segments of an embedded runtime whose process was killed
    (they are named dragon.<user>.p<pid>.<name>)."""
    tag = ".p%d." % pid
    try:
        names = os.listdir("/dev/shm")
    except OSError:
        return
    for n in names:
        if n.startswith("dragon.") and tag in n:
            try:
                os.unlink(os.path.join("/dev/shm", n))
            except OSError:
                pass


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _run(args):
    classes = _list_tests(args.method)
    if args.filter:
        rx = re.compile(args.filter)
        classes = {c: [n for n in ns if rx.search(n)] for c, ns in classes.items()}
        classes = {c: ns for c, ns in classes.items() if ns}
    if args.exclude:
        rx = re.compile(args.exclude)
        classes = {c: [n for n in ns if not rx.search(n)] for c, ns in classes.items()}
        classes = {c: ns for c, ns in classes.items() if ns}
    logdir = args.out + ".logs"
    os.makedirs(logdir, exist_ok=True)
    started = time.monotonic()
    counts = {}
    with open(args.out, "w") as out, concurrent.futures.ThreadPoolExecutor(args.jobs) as ex:
        futs = {ex.submit(_run_class, args.method, ns, args.test_timeout, logdir): c
                for c, ns in sorted(classes.items())}
        for fut in concurrent.futures.as_completed(futs):
            for name, (outcome, reason) in sorted(fut.result().items()):
                out.write(json.dumps({"id": name, "outcome": outcome,
                                      "reason": reason}) + "\n")
                counts[outcome] = counts.get(outcome, 0) + 1
            out.flush()
            if args.verbose:
                print("%-60s done" % futs[fut], flush=True)
    total = sum(counts.values())
    print("%s: %d tests in %.0f s: %s" % (
        args.method, total, time.monotonic() - started,
        ", ".join("%s %d" % kv for kv in sorted(counts.items()))))
    bad = sum(v for k, v in counts.items() if k not in PASSED + ("skip",))
    return 1 if bad and args.strict else 0


def _load(path):
    with open(path) as f:
        return {r["id"]: r for r in map(json.loads, f)}


MULTINODE_TAG = "[multinode]"


def load_expected(path, multinode=False):
    """The expected-results file: 'TestClass.test_name  reason...' lines;
    '#' starts a comment.  A line that starts with '[multinode]' holds only
    for a run whose processes are spread over several nodes (multinode
    true); the other lines hold for every run.  Returns {test id: reason}."""
    expected = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line.startswith(MULTINODE_TAG):
                if not multinode:
                    continue
                line = line[len(MULTINODE_TAG):].strip()
            if line:
                name, _, reason = line.partition(" ")
                expected[name] = reason.strip()
    return expected


def _counts(results, names=None):
    counts = {}
    for n, r in results.items():
        if names is None or n in names:
            counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    return ", ".join("%s %d" % kv for kv in sorted(counts.items())) or "none"


def _compare(args):
    base, ours = _load(args.compare[0]), _load(args.compare[1])
    expected = load_expected(args.expected, args.multinode) if args.expected else {}
    good = [n for n, r in base.items() if r["outcome"] in PASSED]
    ran = [n for n in good if n in ours]
    kept = [n for n in ran if ours[n]["outcome"] in PASSED]
    lost = sorted(set(ran) - set(kept))
    unlisted = [n for n in lost if n not in expected]
    skipped_here = [n for n, r in ours.items() if r["outcome"] == "skip"]
    print("%s: %s" % (args.compare[0], _counts(base, set(ours))))
    print("%s: %s" % (args.compare[1], _counts(ours)))
    ratio = len(kept) / len(ran) if ran else 0.0
    print("baseline passes %d; ran %d of them; pass here %d (%.1f%%)"
          % (len(good), len(ran), len(kept), 100 * ratio))
    print("skipped here: %d" % len(skipped_here))
    for n in lost:
        mark = "" if n in expected else "   (NOT in expected file)"
        print("  %-70s %s%s" % (n, ours[n]["outcome"], mark))
    ok = ratio >= args.min_ratio and not (args.expected and unlisted)
    return 0 if ok else 1


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="dragon")
    ap.add_argument("--out")
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--test-timeout", type=float, default=90)
    ap.add_argument("--filter", help="run only tests whose Class.name matches")
    ap.add_argument("--exclude", help="leave out tests whose Class.name matches")
    ap.add_argument("--strict", action="store_true",
                    help="exit 1 if any test fails")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--compare", nargs=2, metavar=("BASE", "OURS"))
    ap.add_argument("--expected")
    ap.add_argument("--min-ratio", type=float, default=0.95)
    ap.add_argument("--multinode", action="store_true",
                    help="OURS ran over several nodes: the expected file's "
                    "[multinode] lines hold too")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--results", help=argparse.SUPPRESS)
    ap.add_argument("tests", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return _worker(args)
    if args.compare:
        return _compare(args)
    if not args.out:
        ap.error("--out is required")
    os.environ[METHOD_ENV] = args.method
    return _run(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
