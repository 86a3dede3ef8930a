#!/bin/sh
# A run killed half-way leaves a cluster behind; vcluster stop, given its
# state directory, removes all of it: a start killed while it brings up
# the nodes, and a test run killed with its jobs running, inside a mount
# namespace of its own that is gone since (make check runs in one).
. "${srcdir:?}/lib.sh"
need_cluster

C=$(state_dir killed-run.c)
D=$(state_dir killed-run.d)
trap '"$VC" -d "$C" stop >/dev/null 2>&1; "$VC" -d "$D" stop >/dev/null 2>&1' EXIT

# Wait up to 20 s for a command to succeed.
wait_for() {
	t=0
	until eval "$1"; do
		[ $t -lt 200 ] || return 1
		sleep 0.1
		t=$((t + 1))
	done
}

# 1. start killed with SIGKILL once its controller runs, nodes coming up.
"$VC" -d "$C" start 3 >"$C.log" 2>&1 &
pc=$!
check "a start brings up its controller" 'wait_for "[ -s $C/run/slurmctld.pid ]"'
kill -KILL $pc
wait $pc 2>/dev/null
sc=$(cat "$C/slot")
out=$("$VC" -d "$C" start 2 2>&1)
check "a start on the state of a killed run refuses, saying what to do ($out)" \
	'echo "$out" | grep -q "stop it first"'
pids=$(cluster_pids "$C")
"$VC" -d "$C" stop >/dev/null
check_gone "$C" "$sc" "$pids" "a start killed half-way, then stop"
out=$("$VC" -d "$C" stop)
check "a second stop finds nothing to do ($out)" '[ "$out" = "vcluster: no cluster in $C" ]'

# 2. a run killed with a job running, in a mount namespace that ends with
# it: the names in /run/netns were mounts there only.
setsid unshare -m sh -c '
	"$1" -d "$2" start 2 >"$2.log" 2>&1 || exit 1
	SLURM_CONF=$2/slurm.conf srun -N2 sleep 300 &
	sleep 300' sh "$VC" "$D" &
pd=$!
check "a run in its own mount namespace starts a job" \
	'wait_for "SLURM_CONF=$D/slurm.conf squeue -h -t running 2>/dev/null | grep -q ."'
sd=$(cat "$D/slot")
steps=$(pgrep -f '^slurmstepd: \[' | while read -r p; do
	grep -qzxF "SLURM_CONF=$D/slurm.conf" /proc/"$p"/environ 2>/dev/null && echo "$p"
done | tr '\n' ' ')
tasks=
for p in $(pgrep -x sleep); do
	[ "$(readlink /proc/"$p"/ns/net)" = "$(readlink /proc/"$(cat "$D/run/slurmd-node1.pid")"/ns/net)" ] &&
		tasks="$tasks $p"
done
check "the job's task runs on node1" '[ -n "$tasks" ]'
kill -KILL -$pd
wait $pd 2>/dev/null
pids="$(cluster_pids "$D") $steps $tasks"
"$VC" -d "$D" stop >/dev/null
check_gone "$D" "$sd" "$pids" "a run killed with its mount namespace, then stop"
check "no name of it is left in /run/netns" '! ls /run/netns 2>/dev/null | grep -q "^vc$sd-"'
rm -f "$C.log" "$D.log"
finish
