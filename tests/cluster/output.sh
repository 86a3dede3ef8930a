#!/bin/sh
# Output and logs of a runtime over several nodes, on a 3-node vcluster:
# every line of many processes on every node arrives once, whole, on the
# stream it was written to and in each process's order; --label,
# --basic-label and --verbose-label name the node and the pid of each
# line (on one node too); with -l debug every node's log, its start-up
# phases and its teardown, ends up in the log directory, one file per
# node, also that of a node lost mid-run.
. "${srcdir:?}/lib.sh"
need_cluster
dragon_programs mn_prog DRAGON_DEBUG
start_cluster output 3
export SLURM_CONF=$D/slurm.conf
W=$D/work
mkdir -p "$W"
mark=out$$

run() {
	n=$1
	shift
	env MN_MARK=$mark timeout 180 salloc -Q -N"$n" "$DRAGON" -t 20 "$@" \
		>"$W/out" 2>"$W/err" </dev/null
}

# The lines of `mn_prog flood K N` in file $1 that belong there (parity
# $2: 0 stdout, 1 stderr), with labels "[host:pid] " when $3 is 1: prints
# "KEYS BAD WRONG ORDER SHORT BADLABEL" — processes seen, lines not whole,
# lines on the wrong stream, lines out of order, processes with a line
# count other than N, labels that name another host or pid.
flood_stats() {
	awk -v par="$2" -v lab="$3" -v N="$4" '
	{
		line = $0
		if (lab) {
			if (!match(line, /^\[node[0-9]+:[0-9]+\] /)) {
				if (line ~ /flood/) bad++
				next
			}
			pre = substr(line, 2, RLENGTH - 3)
			line = substr(line, RLENGTH + 1)
		}
		if (line !~ /^flood node[0-9]+ [0-9]+ [0-9]+ 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz$/) {
			if (line ~ /flood node/ || line ~ /xyz/) bad++
			next
		}
		split(line, f, " ")
		key = f[2] " " f[3]
		if (f[3] % 2 != par) { wrong++; next }
		if (f[4] != nxt[key] + 0) order++
		nxt[key] = f[4] + 1
		cnt[key]++
		if (lab) {
			split(pre, q, ":")
			if (q[1] != f[2] || ((key in pid) && pid[key] != q[2])) badlab++
			pid[key] = q[2]
		}
	}
	END {
		for (k in cnt) { keys++; if (cnt[k] != N) short++ }
		printf "%d %d %d %d %d %d\n", keys, bad, wrong, order, short, badlab
	}' "$1"
}

# ---- many lines from many processes on every node
run 3 "$PROG" flood 4 5000
rc=$?
o=$(flood_stats "$W/out" 0 0 5000)
e=$(flood_stats "$W/err" 1 0 5000)
check "3 nodes x 4 processes x 5000 lines: dragon exits 0 (rc $rc)" \
	'[ $rc = 0 ] && grep -qx "+++ head proc exited, code 0" "$W/out"'
[ $rc = 0 ] || tail -n 20 "$W/err"
check "stdout: the 6 writers' 5000 lines each arrive once, whole, in order (keys bad wrong order short: $o)" \
	'[ "$o" = "6 0 0 0 0 0" ]'
check "stderr: the 6 writers' 5000 lines each arrive once, whole, in order, on stderr ($e)" \
	'[ "$e" = "6 0 0 0 0 0" ]'
check "... nothing is left on any node" leftovers

run 3 --label "$PROG" flood 2 3000
rc=$?
o=$(flood_stats "$W/out" 0 1 3000)
e=$(flood_stats "$W/err" 1 1 3000)
check "--label, 3 nodes x 2 processes x 3000 lines: every line whole, once, in order, labelled with its node and one pid ($o / $e)" \
	'[ $rc = 0 ] && [ "$o" = "3 0 0 0 0 0" ] && [ "$e" = "3 0 0 0 0 0" ]'

# ---- the labels: node name and pid of the process that wrote the line
run 3 --label "$PROG" pids
rc=$?
n=$(grep -cE '^\[(node[123]):([0-9]+)\] pid \2 on \1$' "$W/out")
check "--label: each node's process's line is prefixed [node:pid] with its own pid ($n of 3)" '[ $rc = 0 ] && [ "$n" = 3 ]'
check "... the head's too, on node1" 'grep -qE "^\[node1:([0-9]+)\] pid \1 on head$" "$W/out"'
n=$(grep -cE '^\[(node[123]):([0-9]+)\] err of \2 on \1$' "$W/err")
check "... and stderr lines, on stderr ($n of 3)" '[ "$n" = 3 ]'
check "... the exit line stays unlabelled" '[ "$(tail -n1 "$W/out")" = "+++ head proc exited, code 0" ]'
[ $rc = 0 ] || cat "$W/out" "$W/err"

run 3 --verbose-label "$PROG" pids
n=$(grep -cE '^\[stdout: PID ([0-9]+) @ (node[123])\] pid \1 on \2$' "$W/out")
m=$(grep -cE '^\[stderr: PID ([0-9]+) @ (node[123])\] err of \1 on \2$' "$W/err")
check "--verbose-label: [stdout: PID P @ node] and [stderr: ...] ($n, $m of 3)" '[ "$n" = 3 ] && [ "$m" = 3 ]'

run 3 --basic-label "$PROG" pids
n=$(grep -E '^\[stdout: node [012] PID ([0-9]+)\] pid \1 on node[123]$' "$W/out" |
	sed 's/^\[stdout: node \([012]\) .* on node\([123]\)$/\1 \2/' | awk '$1 + 1 == $2' | wc -l)
m=$(grep -cE '^\[stderr: node [012] PID ([0-9]+)\] err of \1 on node[123]$' "$W/err")
check "--basic-label: [stdout: node I PID P] with the node's index ($n, $m of 3)" '[ "$n" = 3 ] && [ "$m" = 3 ]'
check "... nothing is left on any node" leftovers

out=$(env MN_MARK=$mark "$DRAGON" --label sh -c 'echo "pid $$"; echo "err $$" >&2' 2>&1 </dev/null)
h=$(hostname)
check "--label on one node: [$h:pid] ($(echo "$out" | head -n1))" \
	'echo "$out" | grep -qE "^\[$h:([0-9]+)\] pid \1$" && echo "$out" | grep -qE "^\[$h:([0-9]+)\] err \1$"'

# ---- -l debug: every node's log in the log directory
L=$W/logs
rm -rf "$L"
env DRAGON_LOG_DIR="$L" MN_MARK=$mark timeout 120 salloc -Q -N3 "$DRAGON" -t 20 -l debug \
	"$PROG" hosts >"$W/out" 2>"$W/err" </dev/null
rc=$?
check "-l debug, 3 nodes: the run succeeds (rc $rc)" '[ $rc = 0 ]'
fe=$(ls "$L"/dragon-*.log 2>/dev/null | grep -v '\.node' | head -n1)
check "the launcher's log is in DRAGON_LOG_DIR ($fe)" '[ -s "$fe" ]'
check "... with its phases and teardown, timed" \
	"grep -qE \"^[0-9]+\\.[0-9]{3} dragon: phase 'head started' done\" '$fe' && grep -q 'every node torn down' '$fe'"
for i in 0 1 2; do
	f=$(ls "$L"/dragon-*.node$i-node$((i + 1)).log 2>/dev/null)
	check "node $i's log is there, one file for it ($f)" '[ -s "$f" ]'
	check "... with its start-up phases, timed" \
		"grep -qE \"^[0-9]+\\.[0-9]{3} dragon-backend: node $i \\(node$((i + 1))\\): phase 'network configuration'\" '$f' &&
		 grep -q 'global services reached through the agents' '$f'"
	check "... and its teardown, to the end" "grep -q 'teardown: processes ended' '$f' && grep -q 'node torn down' '$f'"
done
check "dragon says where the logs are" 'grep -q "logs of this run: $fe" "$W/err"'
check "... nothing is left on any node" leftovers

# ---- a node lost mid-run: its log up to the loss is there, and the
# surviving nodes' logs to their teardown's end, also from a node slow to
# tear down (node 0 waits 16 s first: DRAGON_TEST_STALL_PHASE=teardown)
rm -rf "$L"
env DRAGON_LOG_DIR="$L" DRAGON_NODE_TIMEOUT=3 DRAGON_TEST_STALL_NODE=0 DRAGON_TEST_STALL_PHASE=teardown \
	MN_MARK=$mark timeout 120 salloc -Q -N3 "$DRAGON" -t 20 -l debug \
	"$PROG" sleep >"$W/out" 2>"$W/err" </dev/null &
sp=$!
i=0
while ! grep -q ready "$W/out" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
be=$(grep -lzx "MN_MARK=$mark" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 | while read -r p; do
	case $(cat /proc/$p/comm 2>/dev/null) in *dragon-backe*) ;; *) continue ;; esac
	tr '\0' '\n' </proc/$p/environ | grep -qx SLURMD_NODENAME=node2 && echo $p
done | head -n1)
check "the backend of node2 is found (pid $be)" '[ -n "$be" ]'
[ -z "$be" ] || kill -KILL "$be"
wait $sp
rc=$?
check "killing it ends the run with an error (rc $rc)" '[ $rc != 0 ] && [ $rc != 124 ]'
f=$(ls "$L"/dragon-*.node1-node2.log 2>/dev/null)
check "the lost node's log up to the loss is there ($f)" \
	"[ -s '$f' ] && grep -q 'global services reached through the agents' '$f' && grep -q 'started .*sleep' '$f'"
check "... and the surviving nodes' logs to their teardown" \
	"grep -q 'node torn down' \"\$(ls '$L'/dragon-*.node0-node1.log)\" && grep -q 'node torn down' \"\$(ls '$L'/dragon-*.node2-node3.log)\""
i=0
while ! leftovers >/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
check "... nothing is left on any node" leftovers
finish
