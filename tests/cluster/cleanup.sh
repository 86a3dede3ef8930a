#!/bin/sh
# dragon-cleanup across the nodes of a Slurm allocation, on a 3-node
# vcluster: a runtime killed whole (launcher, backends and their
# watchdogs, so that nothing of it cleans up) leaves processes and
# segments on every node.  dragon-cleanup outside an allocation cleans
# only the node it runs on; inside the allocation it cleans every node.
# A second runtime, live, and another user's segments on the same nodes
# are left alone, and the live runtime still ends normally afterwards.
# The checks are lib.sh's cleanup_across, which pbs.sh and ssh.sh run too.
. "${srcdir:?}/lib.sh"
need_cluster
dragon_programs mn_prog
CLEANUP=$B/dragon-cleanup
[ -x "$CLEANUP" ] || skip "build dragon-cleanup first"
id nobody >/dev/null 2>&1 || skip "no user 'nobody' to own another user's segments"

# The allocation is given back before the cluster stops: the job is
# cancelled while slurmctld still runs, and the holder (timeout, salloc
# and the command salloc runs on this host, in the process group timeout
# leads) is killed and reaped, so that nothing of it outlives the test.
alloc=
at_exit() {
	if [ -n "$alloc" ]; then
		[ -z "${SLURM_JOB_ID:-}" ] || timeout 10 scancel "$SLURM_JOB_ID" 2>/dev/null
		[ ! -s "$D.work/alloc.env.pid" ] || kill "$(cat "$D.work/alloc.env.pid")" 2>/dev/null
		kill -- "-$alloc" 2>/dev/null || kill "$alloc" 2>/dev/null
		wait "$alloc" 2>/dev/null
	fi
	rm -rf "$D.work"
}
start_cluster cleanup 3
W=$D.work
rm -rf "$W"
mkdir -p "$W"
export SLURM_CONF=$D/slurm.conf
mark=cl$$

# An allocation of the 3 nodes held open by salloc in the background; its
# Slurm variables are taken into this shell to run commands inside it.
timeout 300 salloc -Q -N3 sh -c 'echo $$ >"$0.pid"; env | grep "^SLURM_" >"$0.tmp"; mv "$0.tmp" "$0"; exec sleep 280' \
	"$W/alloc.env" </dev/null >/dev/null 2>&1 &
alloc=$!
i=0
while [ ! -s "$W/alloc.env" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
check "an allocation of 3 nodes is granted" '[ -s "$W/alloc.env" ]'
[ -s "$W/alloc.env" ] || exit 1
while IFS= read -r l; do export "$l"; done <"$W/alloc.env"

# A run in the allocation: mn_prog sleep (a sleep on every node).
bg_run() {
	env MN_MARK=$1 timeout 200 "$DRAGON" -t 20 "$PROG" sleep >"$W/$1.out" 2>"$W/$1.err" </dev/null &
}
cleanup_here() {
	"$VC" -d "$D" exec node3 env -u SLURM_JOB_ID -u SLURM_JOBID "$CLEANUP" >"$W/cl.out" 2>&1
}
cleanup_all() { "$CLEANUP" >"$W/cl.out" 2>&1; }
# Slurm ends what is left of a step when its tasks end (here: every
# descendant of slurmstepd); processes that escape it (proctrack/pgid and
# a process in a session of its own, say) are what dragon-cleanup is for.
# Stopping the step's slurmstepd on each node for the kill leaves them so.
launcher_hold() {
	steps=$(for p in $1; do awk '/^PPid:/ { print $2 }' /proc/$p/status; done | tr '\n' ' ')
	check "Slurm: the slurmstepd of runtime A's backends are found ($steps)" '[ $(echo $steps | wc -w) = 3 ]'
	kill -STOP $steps
}
launcher_release() {
	kill -CONT $steps
	sleep 1
}
cleanup_across "Slurm allocation"
finish
