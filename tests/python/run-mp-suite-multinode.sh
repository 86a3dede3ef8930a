#!/bin/sh
# CPython's multiprocessing suite, unmodified, with the 'dragon' start
# method on a 2-node test cluster (tests/cluster/vcluster): run_suite.py
# is the head process of a 2-node runtime, so every worker joins it and
# the suite's processes go round-robin over the nodes (the first child of
# a process on the node after its own: most parent/child pairs are on
# different nodes).  The outcomes are compared with this machine's
# 'spawn' results; every test passing there that does not pass here must
# be in mp_suite/expected.txt (its [multinode] lines count too).
#
#   run-mp-suite-multinode.sh          the subset make check runs
#   run-mp-suite-multinode.sh --all    the whole suite, at least 95% of
#                                      spawn's passes must pass
#                                      (make check-mp-suite-multinode)
#
# Needs root (the cluster); skipped, with the reason, otherwise.  Nothing
# may be left behind on any node.
set -u
srcdir=${top_srcdir:?}/tests/cluster
. "$srcdir/lib.sh"
if [ -n "${SANITIZER:-}" ]; then
	skip "Python tests do not run in a $SANITIZER build"
fi
"$PYTHON" -c 'import test._test_multiprocessing' 2>/dev/null ||
	skip "test._test_multiprocessing is missing (libpython3.11-testsuite)"
need_cluster
DRAGON=${top_builddir:?}/libdlaunch/dragon
[ -x "$DRAGON" ] || skip "build dragon first ($DRAGON)"
unset DRAGON_CLEANUP_PROGRAM SLURM_JOB_ID SLURM_JOB_NODELIST SLURM_NODELIST \
	SLURM_JOB_NUM_NODES SLURM_NNODES

suite=$top_srcdir/tests/python/mp_suite
if [ "${1:-}" = --all ]; then
	# the whole suite: about 375 tests; per test 90 s at most
	out=$(pwd)/mp-suite-multinode.jsonl
	select= leave_out= min=0.95 bound=5400 per_test=90 name=mp-suite-multinode-all
else
	# queues, connections, locks, semaphores, conditions, events,
	# barriers and process basics, a Pipe end passed down generations,
	# listeners and Managers on localhost, about 70 tests, less those the
	# expected-results file says do not pass across nodes (several of
	# them wait for the per-test bound): a short run of what must work.
	out=${TMPDIR:-/tmp}/mp-suite-multinode.$$.jsonl
	at_exit() { rm -rf "$out" "$out.logs"; }
	select='^WithProcessesTest(Queue|Connection|Poll|Event|Lock|Semaphore|Condition)\.|^TestSimpleQueue\.|^WithProcessesTestBarrier\.test_(barrier|wait_return|action|abort)$|^WithProcessesTestProcess\.test_(process|terminate|kill|active_children|parent_process|sentinel|close|error_on_stdio_flush)|^TestForkAwareThreadLock\.test_lock$|^TestTimeouts\.test_timeout$|^TestWait\.test_wait_socket$|^WithManagerTestRemoteManager\.test_remote$|^WithProcessesTestManagerRestart\.test_rapid_restart$'
	leave_out=$(cd "$suite" && "$PYTHON" -B -c 'import re, run_suite
print("|".join("^%s$" % re.escape(n) for n in sorted(run_suite.load_expected("expected.txt", True))))') ||
		skip "cannot read $suite/expected.txt"
	min=0 bound=600 per_test=60 name=mp-suite-multinode
fi

start_cluster $name 2
export SLURM_CONF=$D/slurm.conf
mark=mps$$
rm -rf "$out" "$out.logs"
# run_suite.py bounds every test (a hang is recorded as one and the run
# goes on); the outer bound only guards against a runtime that never ends.
env MN_MARK=$mark PYTHONPATH="$top_builddir/bindings/python${PYTHONPATH:+:$PYTHONPATH}" \
	timeout $bound salloc -Q -N2 "$DRAGON" -t 60 "$suite/run_suite.py" \
	--method dragon --out "$out" -j 2 --test-timeout $per_test \
	${select:+--filter "$select"} ${leave_out:+--exclude "$leave_out"} </dev/null
rc=$?
check "the suite ran to its end on 2 nodes (dragon exit status $rc)" '[ $rc = 0 ]'
"$PYTHON" "$suite/run_suite.py" --compare "$suite/baseline-spawn.jsonl" "$out" \
	--expected "$suite/expected.txt" --multinode --min-ratio $min
rc=$?
check "every test passing with spawn passes on 2 nodes or is an expected difference" '[ $rc = 0 ]'
check "nothing is left on any node" leftovers
finish
