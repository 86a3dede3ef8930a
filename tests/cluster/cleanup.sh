#!/bin/sh
# dragon-cleanup across the nodes of a Slurm allocation, on a 3-node
# vcluster: a runtime killed whole (launcher, backends and their
# watchdogs, so that nothing of it cleans up) leaves processes and
# segments on every node.  dragon-cleanup outside an allocation cleans
# only the node it runs on; inside the allocation it cleans every node.
# A second runtime, live, and another user's segments on the same nodes
# are left alone, and the live runtime still ends normally afterwards.
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
markA=cla$$
markB=clb$$

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

# The running processes carrying MN_MARK=$1 (and comm $2, if given).
marked() {
	grep -lzx "MN_MARK=$1" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 |
		while read -r p; do
			running "$p" || continue
			[ -z "${2:-}" ] || case $(cat /proc/$p/comm 2>/dev/null) in $2) ;; *) continue ;; esac
			echo "$p"
		done | tr '\n' ' '
}
# The segments of instance $2 on node $1.
segs() { "$VC" -d "$D" exec "$1" sh -c "ls /dev/shm | grep -c '^dragon\.[^.]*\.$2\.' || true"; }
# A run of mn_prog sleep (a sleep on every node) with mark $1, output in $W/$1.out.
start_run() {
	env MN_MARK=$1 timeout 200 "$DRAGON" -t 20 "$PROG" sleep >"$W/$1.out" 2>"$W/$1.err" </dev/null &
	i=0
	while ! grep -q ready "$W/$1.out" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
}
instance_of() {
	for p in $(marked "$1" sleep); do
		tr '\0' '\n' </proc/$p/environ | sed -n 's/^DRAGON_INSTANCE=//p'
	done | sort -u | head -n1
}

# ---- runtime A, killed whole: nothing of it cleans up
start_run $markA
check "runtime A: sleeps started on every node" 'grep -q ready "$W/$markA.out"'
instA=$(instance_of $markA)
sleepsA=$(marked $markA sleep)
check "runtime A: three sleeps ($sleepsA), instance '$instA'" '[ $(echo $sleepsA | wc -w) = 3 ] && [ -n "$instA" ]'
# Watchdogs first (dragon-cleanup --when-gone PID --instance ID, with an
# environment of their own), then the launcher and the backends.
dogs=$(grep -lzx -- "$instA" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3 |
	while read -r p; do [ "$(cat /proc/$p/comm 2>/dev/null)" = dragon-cleanup ] && echo $p; done | tr '\n' ' ')
check "runtime A: its watchdogs are found ($dogs)" '[ $(echo $dogs | wc -w) -ge 3 ]'
# Slurm ends what is left of a step when its tasks end (here: every
# descendant of slurmstepd); processes that escape it (proctrack/pgid and
# a process in a session of its own, say) are what dragon-cleanup is for.
# Stopping the step's slurmstepd on each node for the kill leaves them so.
bes=$(marked $markA '*dragon-backe*')
steps=$(for p in $bes; do awk '/^PPid:/ { print $2 }' /proc/$p/status; done | tr '\n' ' ')
check "runtime A: the slurmstepd of its backends are found ($steps)" '[ $(echo $steps | wc -w) = 3 ]'
# The launcher and the backends are stopped first: a backend that saw the
# launcher die before its own SIGKILL would end its node's processes.
owners="$(marked $markA 'dragon') $(marked $markA 'lt-dragon') $bes"
kill -STOP $steps $owners
kill -KILL $dogs 2>/dev/null
kill -KILL $owners 2>/dev/null
sleep 2
kill -CONT $steps
sleep 1
check "runtime A: its sleeps outlive it on every node ($(marked $markA sleep))" \
	'[ "$(marked $markA sleep)" = "$sleepsA" ]'
left=
for n in $NODES; do [ "$(segs $n "$instA")" -gt 0 ] || left="$left $n"; done
check "runtime A: its segments are left on every node (none on:$left)" '[ -z "$left" ]'

# ---- runtime B, live; another user's segments on every node
start_run $markB
check "runtime B: sleeps started on every node" 'grep -q ready "$W/$markB.out"'
instB=$(instance_of $markB)
sleepsB=$(marked $markB sleep)
segsB=$(for n in $NODES; do segs $n "$instB"; done | tr '\n' ' ')
check "runtime B: three sleeps, segments on every node ($segsB)" \
	'[ $(echo $sleepsB | wc -w) = 3 ] && ! echo " $segsB" | grep -q " 0 "'
for n in $NODES; do
	"$VC" -d "$D" exec $n sh -c 'for s in dragon.nobody.other1.pool dragon.root.other2.pool; do
		echo x >/dev/shm/$s; chown nobody /dev/shm/$s; done'
done

others() { "$VC" -d "$D" exec "$1" sh -c 'ls /dev/shm | grep -c "^dragon\.[a-z]*\.other[12]\.pool$" || true'; }

# ---- outside an allocation: this node only
"$VC" -d "$D" exec node3 env -u SLURM_JOB_ID -u SLURM_JOBID "$CLEANUP" >"$W/out3" 2>&1
rc=$?
check "outside an allocation, on node3: dragon-cleanup exits 0 (rc $rc)" '[ $rc = 0 ]'
[ $rc = 0 ] || cat "$W/out3"
check "... node3 has no segment of runtime A left ($(segs node3 "$instA"))" '[ "$(segs node3 "$instA")" = 0 ]'
check "... node1 and node2 still have theirs" '[ "$(segs node1 "$instA")" != 0 ] && [ "$(segs node2 "$instA")" != 0 ]'
check "... one of A's sleeps ended, two run on ($(marked $markA sleep))" '[ $(marked $markA sleep | wc -w) = 2 ]'

# ---- inside the allocation: every node
"$CLEANUP" >"$W/out" 2>&1
rc=$?
check "inside the allocation: dragon-cleanup exits 0 (rc $rc)" '[ $rc = 0 ]'
[ $rc = 0 ] || cat "$W/out"
left=
for n in $NODES; do [ "$(segs $n "$instA")" = 0 ] || left="$left $n"; done
check "... no segment of runtime A is left on any node (left on:$left)" '[ -z "$left" ]'
check "... no process of runtime A is left ($(marked $markA))" '[ -z "$(marked $markA)" ]'
check "... its lines name the nodes it cleaned" \
	'grep -q "^node1: runtime $instA: its owner" "$W/out" && grep -q "^node2: runtime $instA: its owner" "$W/out" &&
	! grep -q "^node3: runtime $instA" "$W/out"'
check "... and say the live runtime B is left alone on every node" \
	'[ "$(grep -c "^node[123]: runtime $instB is live" "$W/out")" = 3 ]'
check "... runtime B's processes all run on ($(marked $markB sleep))" '[ "$(marked $markB sleep)" = "$sleepsB" ]'
nowB=$(for n in $NODES; do segs $n "$instB"; done | tr '\n' ' ')
check "... runtime B's segments are all there ($nowB)" '[ "$nowB" = "$segsB" ]'
o=$(for n in $NODES; do others $n; done | tr '\n' ' ')
check "... another user's segments are all there ($o)" '[ "$o" = "2 2 2 " ]'
[ "$o" = "2 2 2 " ] || cat "$W/out"

# ---- runtime B still ends normally, and leaves nothing
kill -TERM $(marked $markB 'dragon') $(marked $markB 'lt-dragon') 2>/dev/null
i=0
while [ -n "$(marked $markB)" ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
check "runtime B ends on SIGTERM and leaves no process" '[ -z "$(marked $markB)" ]'
check "... with the code of its head (SIGTERM)" 'grep -q "^+++ head proc exited, code 143" "$W/$markB.out"'
left=
for n in $NODES; do [ "$(segs $n "$instB")" = 0 ] || left="$left $n"; done
check "... and no segment (left on:$left)" '[ -z "$left" ]'
for n in $NODES; do "$VC" -d "$D" exec $n sh -c 'rm -f /dev/shm/dragon.*.other[12].pool'; done
finish
