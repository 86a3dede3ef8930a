#!/bin/sh
# dragon across the nodes of a Slurm allocation, on a 3-node vcluster:
# processes started on each node, a channel and a name used across nodes,
# output forwarded from other nodes, the head's exit code, and teardown
# that leaves no process and no /dev/shm entry on any node — after a normal
# end, SIGTERM and SIGINT to dragon, a backend killed with SIGKILL or one
# that stops answering (SIGSTOP), a backend that
# fails to start and a start-up phase that runs past its deadline.
# Outside an allocation dragon runs on this machine as before.
. "${srcdir:?}/lib.sh"
need_cluster
dragon_programs mn_prog
start_cluster multinode 3
export SLURM_CONF=$D/slurm.conf
W=$D/work
mkdir -p "$W"
# Every process of a run carries the mark (srun passes the environment on),
# so the checks find this test's processes and nobody else's.
mark=mn$$

# dragon inside an allocation of $1 nodes; output in $W/out, $W/err.
run() {
	n=$1
	shift
	env MN_MARK=$mark timeout 120 salloc -Q -N"$n" "$DRAGON" -t 20 "$@" \
		>"$W/out" 2>"$W/err" </dev/null
}

# ---- the C API across nodes
run 3 "$PROG" hosts
rc=$?
out=$(grep '^node[0-9]$' "$W/out" | sort | tr '\n' ' ')
check "a process started on each of 3 nodes runs there ($out)" '[ "$out" = "node1 node2 node3 " ]'
check "... and its exit code comes back ($(grep -c 'exited 0' "$W/out") of 3)" \
	'[ "$(grep -c "hostname exited 0" "$W/out")" = 3 ]'
check "... dragon exits 0 and says so (rc $rc)" '[ $rc = 0 ] && grep -qx "+++ head proc exited, code 0" "$W/out"'
[ $rc = 0 ] || cat "$W/err"
check "... nothing is left on any node" leftovers

for n in 2 3; do
	run $n "$PROG" chan
	rc=$?
	check "$n nodes: a message sent from node$n to a channel made on node1, found by name, arrives" \
		"grep -qx 'head got: ping from node$n (node id $n)' '$W/out'"
	check "$n nodes: node$n receives from that node1 channel (output forwarded from node$n)" \
		"grep -qx 'peer on node$n got: pong' '$W/out'"
	check "$n nodes: a name registered on node$n is found on node1" \
		"grep -qx 'name mn-peer-host = node$n' '$W/out'"
	check "$n nodes: node$n's process's exit code comes back" "grep -qx 'peer exited 7' '$W/out'"
	[ $rc = 0 ] || cat "$W/out" "$W/err"
	check "$n nodes: nothing is left on any node" leftovers
done

# ---- output of a process on another node
run 3 "$PROG" lines
check "200 lines of a process on node3 arrive whole and in order" \
	'[ "$(grep "^remote line [0-9]* of node3$" "$W/out" | cut -d" " -f3 | tr "\n" " ")" = "$(seq 0 199 | tr "\n" " ")" ]'
check "... and its exit code comes back" 'grep -qx "remote sh exited 5" "$W/out"'
check "... nothing is left on any node" leftovers

# ---- the head: on the first node, its exit code, its output, its stdin
env MN_MARK=$mark timeout 60 salloc -Q -N2 "$DRAGON" -t 20 sh -c \
	'hostname; read l; echo "read $l"; i=0; while [ $i -lt 200 ]; do echo "line $i of $(hostname)"; i=$((i+1)); done; exit 3' \
	>"$W/out" 2>"$W/err" <<EOF2
from-stdin
EOF2
rc=$?
check "the head runs on the first node of the allocation" '[ "$(head -n1 "$W/out")" = node1 ]'
check "its stdin is dragon's" 'grep -qx "read from-stdin" "$W/out"'
check "its 200 lines arrive whole and in order" \
	'[ "$(grep "^line [0-9]* of node1$" "$W/out" | cut -d" " -f2 | tr "\n" " ")" = "$(seq 0 199 | tr "\n" " ")" ]'
check "its exit code is dragon's (rc $rc)" '[ $rc = 3 ] && [ "$(tail -n1 "$W/out")" = "+++ head proc exited, code 3" ]'
check "nothing is left on any node" leftovers

# ---- SIGTERM and SIGINT (Ctrl-C) to dragon
for sig in TERM:15 INT:2; do
	want=$((128 + ${sig#*:}))
	sig=${sig%:*}
	env MN_MARK=$mark timeout 120 salloc -Q -N3 sh -c 'echo $$ >'"$W/sh.pid"'; exec "$0" -t 20 "$@"' \
		"$DRAGON" "$PROG" sleep >"$W/out" 2>"$W/err" </dev/null &
	sp=$!
	i=0
	while ! grep -q ready "$W/out" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
	check "3 nodes: sleeps started on every node" 'grep -q ready "$W/out"'
	n=$(grep -lzx "MN_MARK=$mark" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 |
		while read -r p; do [ "$(cat /proc/$p/comm 2>/dev/null)" = sleep ] && echo $p; done | wc -l)
	check "... three of them ($n)" '[ "$n" = 3 ]'
	s=$(backend_secrets $mark)
	check "... the backends' /proc/PID/environ shows no secret ($s)" '[ "$s" = "0 0 0 " ]'
	kill -$sig "$(cat "$W/sh.pid")"
	wait $sp
	rc=$?
	check "SIG$sig to dragon: the head gets it and dragon exits with its code (rc $rc)" '[ $rc = $want ]'
	check "... and says how the head ended" 'grep -q "^+++ head proc exited, code $want (killed by signal" "$W/out"'
	[ $rc = $want ] || cat "$W/out" "$W/err"
	check "... nothing is left on any node" leftovers
done

# ---- SIGKILL to dragon: the backends see the launcher go and end their nodes
env MN_MARK=$mark timeout 120 salloc -Q -N3 sh -c 'echo $$ >'"$W/sh.pid"'; exec "$0" -t 20 "$@"' \
	"$DRAGON" "$PROG" sleep >"$W/out" 2>"$W/err" </dev/null &
sp=$!
i=0
while ! grep -q ready "$W/out" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
check "SIGKILL: sleeps started on every node" 'grep -q ready "$W/out"'
kill -KILL "$(cat "$W/sh.pid")"
wait $sp
i=0
while ! leftovers >/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
check "SIGKILL to dragon: nothing is left on any node (after $((i / 10)) s)" leftovers

# ---- a backend killed with SIGKILL, and one that stops answering (SIGSTOP)
for how in KILL STOP; do
	env MN_MARK=$mark DRAGON_NODE_TIMEOUT=3 timeout 120 salloc -Q -N3 "$DRAGON" -t 20 "$PROG" sleep \
		>"$W/out" 2>"$W/err" </dev/null &
	sp=$!
	i=0
	while ! grep -q ready "$W/out" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
	be=$(grep -lzx "MN_MARK=$mark" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 | while read -r p; do
		case $(cat /proc/$p/comm 2>/dev/null) in *dragon-backe*) ;; *) continue ;; esac
		tr '\0' '\n' </proc/$p/environ | grep -qx SLURMD_NODENAME=node2 && echo $p
	done | head -n1)
	check "$how: the backend of node2 is found (pid $be)" '[ -n "$be" ]'
	t0=$(date +%s)
	[ -z "$be" ] || kill -$how "$be"
	wait $sp
	rc=$?
	t=$(($(date +%s) - t0))
	check "$how: a lost backend ends the run with an error (rc $rc, ${t}s)" '[ $rc != 0 ] && [ $rc != 124 ]'
	check "... that names the lost node" 'grep -q "node 1 (node2) was lost" "$W/err"'
	[ $rc != 0 ] && [ $rc != 124 ] || cat "$W/out" "$W/err"
	i=0
	while ! leftovers >/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	check "... nothing is left on any node (the lost one included)" leftovers
done

# ---- a backend that cannot start on one node
cat >"$W/backend" <<EOF2
#!/bin/sh
[ "\$(hostname)" != node2 ] || { echo "backend-wrapper: no backend on node2" >&2; exit 42; }
exec "$B/dragon-backend" "\$@"
EOF2
chmod +x "$W/backend"
env DRAGON_BACKEND_PROGRAM="$W/backend" MN_MARK=$mark timeout 120 salloc -Q -N3 "$DRAGON" -t 20 true \
	>"$W/out" 2>"$W/err" </dev/null
rc=$?
check "a backend that fails to start fails the run (rc $rc)" '[ $rc = 1 ]'
check "... naming the phase and the node" "grep -q \"start-up phase 'launch backends' failed on node 1 (node2)\" '$W/err'"
check "... with what the node said" 'grep -q "backend-wrapper: no backend on node2" "$W/err"'
[ $rc = 1 ] || cat "$W/err"
check "... nothing is left on any node" leftovers

# ---- a phase past its deadline
t0=$(date +%s)
env DRAGON_TEST_STALL_PHASE="transport agents reachable" DRAGON_TEST_STALL_NODE=2 MN_MARK=$mark \
	timeout 120 salloc -Q -N3 "$DRAGON" -t 3 true >"$W/out" 2>"$W/err" </dev/null
rc=$?
t=$(($(date +%s) - t0))
check "a phase that does not end fails the run (rc $rc, ${t}s)" '[ $rc = 1 ]'
check "... naming the phase, the deadline and the node that did not report" \
	"grep -q \"start-up phase 'transport agents reachable' failed: timed out after 3 s; no answer from node 2 (node3)\" '$W/err'"
[ $rc = 1 ] || cat "$W/err"
check "... nothing is left on any node" leftovers

# ---- a port that is taken
python3 -c 'import socket,sys,time; s=socket.create_server(("", 0)); print(s.getsockname()[1], flush=True); time.sleep(60)' >"$W/port" &
lp=$!
i=0
while [ ! -s "$W/port" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
port=$(cat "$W/port")
env MN_MARK=$mark timeout 60 salloc -Q -N2 "$DRAGON" --port "$port" true >"$W/out" 2>"$W/err" </dev/null
rc=$?
kill $lp
check "--port $port, taken: an error naming the port and --port (rc $rc)" \
	'[ $rc = 1 ] && grep -q "cannot listen on port $port.*--port" "$W/err"'
check "... nothing is left on any node" leftovers

# ---- options
env MN_MARK=$mark timeout 60 salloc -Q -N3 "$DRAGON" -N 2 "$PROG" hosts >"$W/out" 2>"$W/err" </dev/null
check "-N 2 in a 3-node allocation uses 2 nodes" 'grep -qx "nodes 2" "$W/out"'
out=$(env MN_MARK=$mark timeout 60 salloc -Q -N2 "$DRAGON" -s sh -c 'hostname; echo "n=${DRAGON_NNODES:-}"' 2>&1 </dev/null | head -n2 | tr '\n' ' ')
check "-s keeps the run on the node where dragon runs ($out)" '[ "$out" = "$(hostname) n= " ]'
out=$(env MN_MARK=$mark timeout 60 salloc -Q -N2 "$DRAGON" -N 3 true 2>&1 </dev/null)
check "-N more than the allocation has is an error ($out)" 'echo "$out" | grep -q "has 2 nodes"'

# ---- outside an allocation: as before
out=$(env MN_MARK=$mark "$DRAGON" sh -c 'hostname; echo "n=${DRAGON_NNODES:-}"' 2>&1 </dev/null | tr '\n' ' ')
check "outside an allocation dragon runs here, on one node ($out)" \
	'[ "$out" = "$(hostname) n= +++ head proc exited, code 0 " ]'
out=$("$DRAGON" -w slurm true 2>&1)
rc=$?
check "-w slurm outside an allocation is an error (rc $rc)" '[ $rc = 2 ] && echo "$out" | grep -q "not inside a Slurm allocation"'
check "nothing is left on any node at the end" leftovers
finish
