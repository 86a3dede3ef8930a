#!/bin/sh
# A node whose network is cut while a run goes on, on a 3-node vcluster:
# node2's link to the bridge goes down while `sleep` runs on every node.
# dragon must notice within DRAGON_NODE_TIMEOUT, say which node was lost
# and why, end the processes and remove the segments of node1 and node3,
# and exit non-zero (never hang); node2's backend, cut off from dragon,
# must notice that too and end its own node's processes and segments,
# checked on node2 while its link is still down.
. "${srcdir:?}/lib.sh"
need_cluster
dragon_programs mn_prog
start_cluster sever 3
export SLURM_CONF=$D/slurm.conf
W=$D/work
mkdir -p "$W"
mark=sv$$
veth=vc$(cat "$D/slot")n2
at_exit() { ip link set "$veth" up 2>/dev/null || true; }

# The processes of this test's runs on node $1 (every node's processes
# are in this machine's process table; a node is its network namespace).
procs_on() {
	ns=vc$(cat "$D/slot")-$1
	grep -lzx "MN_MARK=$mark" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 |
		while read -r p; do
			running "$p" && [ "$(ip netns identify "$p" 2>/dev/null)" = "$ns" ] && echo "$p"
		done | tr '\n' ' '
}
shm_on() { "$VC" -d "$D" exec "$1" sh -c 'ls /dev/shm | grep "^dragon\." || true' | tr '\n' ' '; }
clean_on() { [ -z "$(procs_on "$1")" ] && [ -z "$(shm_on "$1")" ]; }

nt=3
env MN_MARK=$mark DRAGON_NODE_TIMEOUT=$nt timeout 120 salloc -Q -N3 "$DRAGON" -t 20 "$PROG" sleep \
	>"$W/out" 2>"$W/err" </dev/null &
sp=$!
i=0
while ! grep -q ready "$W/out" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
check "sleeps started on every node" 'grep -q ready "$W/out"'
check "... node2 has processes of the run and segments ($(procs_on node2)| $(shm_on node2))" \
	'[ -n "$(procs_on node2)" ] && [ -n "$(shm_on node2)" ]'

# ---- the cut: node2's veth goes down
t0=$(date +%s)
ip link set "$veth" down
check "node2's link ($veth) is down" '! ip link show "$veth" | grep -q "state UP"'
wait $sp
rc=$?
t=$(($(date +%s) - t0))
check "a node cut off ends the run with an error (rc $rc, ${t}s after the cut)" \
	'[ $rc != 0 ] && [ $rc != 124 ]'
check "... that names the lost node and why" \
	'grep -q "node 1 (node2) was lost: its backend stopped answering" "$W/err"'
[ $rc != 0 ] && [ $rc != 124 ] || cat "$W/out" "$W/err"
for n in node1 node3; do
	check "... nothing of the run is left on $n when dragon has exited" \
		"clean_on $n || { echo \"left on $n: [\$(procs_on $n)] [\$(shm_on $n)]\"; false; }"
done

# ---- node2, still cut off: its backend ends its node by itself
i=0
while ! clean_on node2 && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
t=$(($(date +%s) - t0))
check "node2's backend, cut off from dragon, ends its processes and removes its segments (${t}s after the cut)" \
	'clean_on node2 || { echo "left on node2: [$(procs_on node2)] [$(shm_on node2)]"; false; }'
left=$(procs_on node2)
[ -z "$left" ] || ps -o pid,args -p "$(echo $left | tr ' ' ,)"
ip link set "$veth" up
check "nothing of the run is left on any node" leftovers
finish
