#!/bin/sh
# dragon in a PBS job whose backends PALS's mpiexec starts, on a 3-node
# vcluster: dragon runs on the job's first node (as a PBS job script does)
# with PBS_NODEFILE set, and a stand-in mpiexec (pals-mpiexec: PALS is not
# in Debian) starts one rank per node in the nodes' namespaces.  Checked:
# the nodes are the distinct lines of PBS_NODEFILE in order, each backend
# learns its index from PALS's variables (a channel and a name across
# nodes), the head's stdin and exit code, SIGTERM, a rank that fails on
# one node (named), mpiexec missing from PATH, a missing or empty node
# file, -N and -w pbs; and after each run no process and no /dev/shm
# entry on any node.
. "${srcdir:?}/lib.sh"
need_cluster
dragon_programs mn_prog PBS_NODEFILE PBS_JOBID
start_cluster pbs 3
W=$D/work
mkdir -p "$W/bin" "$W/nobin"
ln -s "$srcdir/pals-mpiexec" "$W/bin/mpiexec"
# PBS lists a node once per slot it gives the job.
printf 'node1\nnode1\nnode2\nnode2\nnode3\nnode3\n' >"$W/nodefile"
mark=pbs$$

# dragon on node1 in a PBS job; output in $W/out, $W/err.
run() {
	"$VC" -d "$D" exec node1 env PATH="$W/bin:$PATH" PBS_NODEFILE="$W/nodefile" \
		PBS_JOBID=17.pbs MN_MARK=$mark PALS_STANDIN_VC="$VC" PALS_STANDIN_DIR="$D" \
		PALS_STANDIN_ARGS="$W/args" timeout 120 "$DRAGON" -t 20 "$@" >"$W/out" 2>"$W/err"
}

# ---- the C API across the nodes of PBS_NODEFILE
run "$PROG" hosts </dev/null
rc=$?
out=$(grep '^node[0-9]$' "$W/out" | sort | tr '\n' ' ')
check "a process started on each of 3 nodes runs there ($out)" '[ "$out" = "node1 node2 node3 " ]'
check "... dragon exits 0 and says so (rc $rc)" '[ $rc = 0 ] && grep -qx "+++ head proc exited, code 0" "$W/out"'
[ $rc = 0 ] || cat "$W/out" "$W/err"
check "mpiexec starts one rank per distinct node, in order ($(cat "$W/args" 2>/dev/null))" \
	'grep -q "^-n 3 --ppn 1 --hosts node1,node2,node3 .*dragon-backend$" "$W/args"'
check "... nothing is left on any node" leftovers

run "$PROG" chan </dev/null
rc=$?
check "a message from node3 to a channel made on node1 arrives (node index from PALS_NODEID)" \
	"grep -qx 'head got: ping from node3 (node id 3)' '$W/out'"
check "a name registered on node3 is found on node1" "grep -qx 'name mn-peer-host = node3' '$W/out'"
[ $rc = 0 ] || cat "$W/out" "$W/err"
check "... nothing is left on any node" leftovers

# ---- the head: its stdin through mpiexec, its exit code
run sh -c 'hostname; read l; echo "read $l"; exit 3' <<EOF2
from-stdin
EOF2
rc=$?
check "the head runs on the first node and reads dragon's stdin" \
	'[ "$(head -n2 "$W/out" | tr "\n" " ")" = "node1 read from-stdin " ]'
check "its exit code is dragon's (rc $rc)" '[ $rc = 3 ]'
check "... nothing is left on any node" leftovers

# ---- SIGTERM to dragon
DRAGON_MPIEXEC_OPTS="--cpu-bind none" run "$PROG" sleep </dev/null &
sp=$!
i=0
while ! grep -q ready "$W/out" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
check "DRAGON_MPIEXEC_OPTS reach mpiexec ($(cat "$W/args" 2>/dev/null))" \
	'grep -q "^-n 3 --ppn 1 --hosts node1,node2,node3 --cpu-bind none " "$W/args"'
fp=$(grep -lzx "MN_MARK=$mark" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 |
	while read -r p; do [ "$(cat /proc/$p/comm 2>/dev/null)" = dragon ] && echo $p; done | head -n1)
check "sleeps started on every node" 'grep -q ready "$W/out" && [ -n "$fp" ]'
s=$(backend_secrets $mark)
check "the backends' /proc/PID/environ shows no secret ($s)" '[ "$s" = "0 0 0 " ]'
[ -z "$fp" ] || kill -TERM "$fp"
wait $sp
rc=$?
check "SIGTERM to dragon: the head gets it and dragon exits with its code (rc $rc)" '[ $rc = 143 ]'
[ $rc = 143 ] || cat "$W/out" "$W/err"
check "... nothing is left on any node" leftovers

# ---- a rank that cannot start on one node
PALS_STANDIN_FAIL=node2 run true </dev/null
rc=$?
check "a rank that fails to start fails the run (rc $rc)" '[ $rc = 1 ]'
check "... naming the phase and the node" "grep -q \"start-up phase 'launch backends' failed on node 1 (node2)\" '$W/err'"
check "... with what mpiexec said" 'grep -q "node2: rank 1 exited with code 42" "$W/err"'
[ $rc = 1 ] || cat "$W/err"
check "... nothing is left on any node" leftovers

# ---- no mpiexec
"$VC" -d "$D" exec node1 env PATH="$W/nobin:/usr/bin:/bin" PBS_NODEFILE="$W/nodefile" MN_MARK=$mark \
	timeout 60 "$DRAGON" true >"$W/out" 2>"$W/err" </dev/null
rc=$?
check "mpiexec not on PATH: an error that says so (rc $rc: $(head -n1 "$W/err"))" \
	'[ $rc = 1 ] && grep -q "cannot run mpiexec: No such file or directory (is PALS.s mpiexec on PATH" "$W/err"'
check "... nothing is left on any node" leftovers

# ---- node files and options
run -N 2 "$PROG" hosts </dev/null
check "-N 2 uses the first 2 nodes of the job ($(grep '^nodes' "$W/out"))" \
	'grep -qx "nodes 2" "$W/out" && grep -q "^-n 2 --ppn 1 --hosts node1,node2 " "$W/args"'
: >"$W/empty"
out=$(env PBS_NODEFILE="$W/empty" "$DRAGON" true 2>&1)
rc=$?
check "an empty PBS_NODEFILE is an error (rc $rc: $out)" '[ $rc = 2 ] && echo "$out" | grep -q "names no node"'
out=$(env PBS_NODEFILE="$W/missing" "$DRAGON" true 2>&1)
rc=$?
check "a missing PBS_NODEFILE is an error (rc $rc: $out)" \
	'[ $rc = 2 ] && echo "$out" | grep -q "cannot read PBS_NODEFILE $W/missing: No such file"'
out=$("$DRAGON" -w pbs true 2>&1)
rc=$?
check "-w pbs outside a PBS job is an error (rc $rc)" '[ $rc = 2 ] && echo "$out" | grep -q "not inside a PBS job"'
out=$(env PBS_NODEFILE="$W/nodefile" "$DRAGON" -N 4 true 2>&1)
check "-N more than the job has is an error ($out)" 'echo "$out" | grep -q "the PBS job has 3 nodes"'

# ---- dragon-cleanup in the PBS job: every node of it, through mpiexec
CLEANUP=$B/dragon-cleanup
if id nobody >/dev/null 2>&1; then
	bg_run() {
		"$VC" -d "$D" exec node1 env PATH="$W/bin:$PATH" PBS_NODEFILE="$W/nodefile" \
			PBS_JOBID=17.pbs MN_MARK=$1 PALS_STANDIN_VC="$VC" PALS_STANDIN_DIR="$D" \
			timeout 200 "$DRAGON" -t 20 "$PROG" sleep >"$W/$1.out" 2>"$W/$1.err" </dev/null &
	}
	cleanup_here() { "$VC" -d "$D" exec node3 env -u PBS_NODEFILE "$CLEANUP" >"$W/cl.out" 2>&1; }
	cleanup_all() {
		"$VC" -d "$D" exec node1 env PATH="$W/bin:$PATH" PBS_NODEFILE="$W/nodefile" \
			PBS_JOBID=17.pbs PALS_STANDIN_VC="$VC" PALS_STANDIN_DIR="$D" \
			PALS_STANDIN_ARGS="$W/args" timeout 60 "$CLEANUP" >"$W/cl.out" 2>&1
	}
	cleanup_across "PBS job"
	check "PBS job: dragon-cleanup runs one mpiexec rank per node ($(cat "$W/args"))" \
		'grep -q "^-n 3 --ppn 1 --hosts node1,node2,node3 .*dragon-cleanup --this-node --label$" "$W/args"'
	"$VC" -d "$D" exec node1 env PATH="$W/nobin:/usr/bin:/bin" PBS_NODEFILE="$W/nodefile" \
		"$CLEANUP" >"$W/cl.out" 2>&1
	rc=$?
	check "PBS job without mpiexec: dragon-cleanup says so (rc $rc: $(head -n1 "$W/cl.out"))" \
		'[ $rc = 1 ] && grep -q "cannot run mpiexec: No such file or directory; put PALS.s mpiexec on PATH" "$W/cl.out"'
else
	echo "SKIP: dragon-cleanup in the PBS job: no user 'nobody' to own another user's segments"
fi
check "nothing is left on any node at the end" leftovers
finish
