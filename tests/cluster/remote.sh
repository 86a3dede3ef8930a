#!/bin/sh
# Processes on another node, on a 2-node vcluster: dlaunch_proc_fd on a
# process of node 1 seen from node 0 (mn_remote procfd), and the records
# node 0's services keep of a client on node 1 (a process there that
# started a process on node 0), released when that client ends, killed
# or not (the services' debug log says so).
. "${srcdir:?}/lib.sh"
need_cluster
dragon_programs mn_remote
at_exit() { rm -rf "$D.work"; }
start_cluster remote 2
export SLURM_CONF=$D/slurm.conf
W=$D.work
mkdir -p "$W"
mark=rm$$

run() {
	env MN_MARK=$mark timeout 120 salloc -Q -N2 "$DRAGON" -t 20 "$@" \
		>"$W/out" 2>"$W/err" </dev/null
}

# ---- dlaunch_proc_fd on a process of another node
run "$PROG" procfd
rc=$?
check "dlaunch_proc_fd on a running process of node 1: not ready while it runs" \
	'grep -qx "running: fd ready no" "$W/out"'
check "... ready once it ended" 'grep -qx "ended: fd ready yes" "$W/out"'
check "... and its exit code comes back" 'grep -qx "slow exited 4" "$W/out"'
check "once its status is collected, another wait gets it again" \
	'grep -qx "a second wait: a status" "$W/out"'
check "its pid names its node (1)" 'grep -qx "its pid names node 1" "$W/out"'
check "its OS pid alone names no process of node 0" \
	'grep -qx "its os pid here: no process" "$W/out"'
check "dlaunch_proc_fd on a process of node 1 that already ended: ready at once" \
	'grep -qx "already ended: fd ready yes" "$W/out" && grep -qx "quick exited 6" "$W/out"'
check "... dragon exits 0 (rc $rc)" '[ $rc = 0 ]'
[ $rc = 0 ] || cat "$W/out" "$W/err"
check "... nothing is left on any node" leftovers

# ---- a client on node 1 of node 0's services: its record goes with it
for how in kill exit; do
	# with -l debug each node's log is a file of its own (dragon(1), FILES)
	rm -rf "$W/logs"
	mkdir -p "$W/logs"
	export DRAGON_LOG_DIR=$W/logs
	run -l debug "$PROG" client $how
	rc=$?
	log0=$(ls "$W"/logs/dragon-*.node0-*.log 2>/dev/null | head -n1)
	unset DRAGON_LOG_DIR
	pid=$(sed -n 's/^spawner \([0-9]*\): true on node 0 exited 0$/\1/p' "$W/out")
	check "$how: a process on node 1 started one on node 0 (pid $pid)" '[ -n "$pid" ]'
	check "... node 0's services took it for a client of node 2's pool" \
		'grep -q "debug: client [0-9]*: pid $pid of node 2$" "$log0"'
	want=0
	[ $how = exit ] || want=-9
	check "... it ended ($how)" 'grep -qx "spawner ended $want" "$W/out"'
	check "... and node 0's services released its record" \
		'grep -q "debug: client [0-9]*: pid $pid of node 2 is gone$" "$log0"'
	[ $rc = 0 ] || cat "$W/out" "$W/err"
	check "... nothing is left on any node" leftovers
done
finish
