#!/bin/sh
# The longer run (make check-cluster8): eight nodes, a job on all of them,
# /dev/shm private on each; dragon over all eight (a process on each
# node, a channel from the last node to the first, a backend killed), and
# nothing left after stop.
. "${srcdir:?}/lib.sh"
need_cluster
dragon_programs mn_prog

E=$(state_dir eight-nodes.e)
W=$E.work
trap '"$VC" -d "$E" stop >/dev/null 2>&1; rm -rf "$W"' EXIT
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
# ---- dragon over the eight nodes
export SLURM_CONF=$E/slurm.conf
rm -rf "$W"
mkdir -p "$W"
D=$E
NODES=$(seq -f 'node%g' -s ' ' 8)
mark=e8$$
env MN_MARK=$mark timeout 300 salloc -Q -N8 "$DRAGON" -t 60 "$PROG" hosts >"$W/out" 2>"$W/err" </dev/null
rc=$?
out=$(grep '^node[0-9]$' "$W/out" | sort -V | tr '\n' ' ')
check "dragon on 8 nodes: a process started on each node runs there ($out)" \
	'[ "$out" = "node1 node2 node3 node4 node5 node6 node7 node8 " ]'
check "... dragon exits 0 and says so (rc $rc)" '[ $rc = 0 ] && grep -qx "+++ head proc exited, code 0" "$W/out"'
[ $rc = 0 ] || cat "$W/out" "$W/err"
check "... nothing is left on any node" leftovers
env MN_MARK=$mark timeout 300 salloc -Q -N8 "$DRAGON" -t 60 "$PROG" chan >"$W/out" 2>"$W/err" </dev/null
rc=$?
check "dragon on 8 nodes: a message from node8 to a channel on node1 arrives (rc $rc)" \
	"[ $rc = 0 ] && grep -qx 'head got: ping from node8 (node id 8)' '$W/out'"
[ $rc = 0 ] || cat "$W/out" "$W/err"
check "... nothing is left on any node" leftovers

env MN_MARK=$mark DRAGON_NODE_TIMEOUT=3 timeout 300 salloc -Q -N8 "$DRAGON" -t 60 "$PROG" sleep \
	>"$W/out" 2>"$W/err" </dev/null &
sp=$!
wait_ready "$W/out" $sp "$W/err"
be=$(grep -lzx "MN_MARK=$mark" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 | while read -r p; do
	case $(cat /proc/$p/comm 2>/dev/null) in *dragon-backe*) ;; *) continue ;; esac
	tr '\0' '\n' </proc/$p/environ | grep -qx SLURMD_NODENAME=node5 && echo $p
done | head -n1)
check "dragon on 8 nodes: the backend of node5 is found (pid $be)" '[ -n "$be" ]'
t0=$(date +%s)
[ -z "$be" ] || kill -KILL "$be"
wait $sp
rc=$?
t=$(($(date +%s) - t0))
check "... killed, it ends the run with an error that names it (rc $rc, ${t}s)" \
	'[ $rc != 0 ] && [ $rc != 124 ] && grep -q "node 4 (node5) was lost" "$W/err"'
[ $rc != 0 ] && [ $rc != 124 ] || cat "$W/out" "$W/err"
i=0
while ! leftovers >/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
check "... nothing is left on any node (the lost one included)" leftovers

s=$(cat "$E/slot") # (lib.sh's leftovers uses s of its own)
pids=$(cluster_pids "$E")
"$VC" -d "$E" stop >/dev/null
check_gone "$E" "$s" "$pids" "after stop of the 8-node cluster"
rm -f "$E.log"
finish
