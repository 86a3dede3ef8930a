#!/bin/sh
# A subset of CPython's own multiprocessing suite with the 'dragon' start
# method, small enough for make check: connections, queues, pipes, shared
# values, locks, semaphores, conditions, events and barriers.  `make check-mp-suite` (in tests/python) runs all of it.
set -u
if [ -n "$SANITIZER" ]; then
	echo "SKIP: Python tests do not run in a $SANITIZER build"
	exit 77
fi
"$PYTHON" -c 'import test._test_multiprocessing' 2>/dev/null || {
	echo "SKIP: test._test_multiprocessing is missing (libpython3.11-testsuite)"; exit 77; }
export PYTHONPATH="$top_builddir/bindings/python${PYTHONPATH:+:$PYTHONPATH}"
suite="$top_srcdir/tests/python/mp_suite"
out="${TMPDIR:-/tmp}/mp-suite-subset.$$.jsonl"
trap 'rm -rf "$out" "$out.logs"' EXIT
"$PYTHON" "$suite/run_suite.py" --method dragon --out "$out" -j 2 --test-timeout 60 \
	--filter '^WithProcessesTest(Queue|Connection|Poll|Event|Value|Array|Listener|Lock|Semaphore|Condition|Barrier)\.' || exit 1
"$PYTHON" "$suite/run_suite.py" --compare "$suite/baseline-spawn.jsonl" "$out" \
	--expected "$suite/expected.txt" --min-ratio 0
