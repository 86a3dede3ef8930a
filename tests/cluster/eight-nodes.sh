#!/bin/sh
# The longer run (make check-cluster8): eight nodes, a job on all of them,
# /dev/shm private on each, and nothing left after stop.
. "${srcdir:?}/lib.sh"
need_cluster

E=$(state_dir eight-nodes.e)
trap '"$VC" -d "$E" stop >/dev/null 2>&1' EXIT
"$VC" -d "$E" start 8 >"$E.log" 2>&1 || {
	cat "$E.log"
	bad "an 8-node cluster starts"
	exit 1
}
s=$(cat "$E/slot")
out=$(on "$E" srun -N8 hostname | sort -V | tr '\n' ' ')
check "srun -N8 hostname gives the eight nodes ($out)" \
	'[ "$out" = "node1 node2 node3 node4 node5 node6 node7 node8 " ]'
probe=/dev/shm/vcluster-probe.$$
out=$(on "$E" srun -N8 sh -c "ls $probe 2>/dev/null; touch $probe" | wc -l)
check "each node's /dev/shm is its own (none saw another's file: $out)" '[ "$out" = 0 ]'
check "... and none is the machine's" '[ ! -e $probe ]'
pids=$(cluster_pids "$E")
"$VC" -d "$E" stop >/dev/null
check_gone "$E" "$s" "$pids" "after stop of the 8-node cluster"
rm -f "$E.log"
finish
