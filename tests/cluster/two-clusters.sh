#!/bin/sh
# A 2-node and a 3-node cluster at once, as two checkouts' test runs would
# make them: each runs jobs on its own nodes (srun, salloc, sbatch), each
# node has its own hostname and /dev/shm and reaches the others over TCP,
# and stopping one leaves the other running and nothing of itself behind.
. "${srcdir:?}/lib.sh"
need_cluster

A=$(state_dir two-clusters.a)
B=$(state_dir two-clusters.b)
trap '"$VC" -d "$A" stop >/dev/null 2>&1; "$VC" -d "$B" stop >/dev/null 2>&1' EXIT
"$VC" -d "$A" start 2 >"$A.log" 2>&1 &
pa=$!
"$VC" -d "$B" start 3 >"$B.log" 2>&1 || {
	cat "$B.log"
	bad "a 3-node cluster starts"
}
wait $pa || {
	cat "$A.log"
	bad "a 2-node cluster starts"
}
[ $fails -eq 0 ] || exit 1
sa=$(cat "$A/slot") sb=$(cat "$B/slot")
check "the two clusters have their own slots ($sa, $sb)" '[ "$sa" != "$sb" ]'

sorted() { sort | tr '\n' ' '; }
out=$(on "$A" srun -N2 hostname | sorted)
check "srun -N2 hostname on the 2-node cluster gives its nodes ($out)" '[ "$out" = "node1 node2 " ]'
out=$(on "$B" srun -N3 hostname | sorted)
check "srun -N3 hostname on the 3-node cluster gives its nodes ($out)" '[ "$out" = "node1 node2 node3 " ]'
out=$("$VC" -d "$A" exec node2 hostname)
check "vcluster exec runs on the node ($out)" '[ "$out" = node2 ]'

# /dev/shm: a file made there by a job on node1 stays on node1.
probe=/dev/shm/vcluster-probe.$$
on "$A" srun -N1 -w node1 sh -c "echo node1 > $probe"
check "a file made in node1's /dev/shm is there for node1" '"$VC" -d "$A" exec node1 test -e $probe'
check "... and not on node2" '! on "$A" srun -N1 -w node2 test -e $probe 2>/dev/null'
check "... nor on the machine" '[ ! -e $probe ]'
check "... nor on node1 of the other cluster" '! "$VC" -d "$B" exec node1 test -e $probe'

# TCP from node2 to node1, by node1's name, as a launcher's backends would
# connect.  Task 0 (node1) listens; task 1 (node2) retries until it is up.
cat >"$A/tcp.py" <<'EOF'
import os, socket, sys, time
me = socket.gethostname()
if os.environ["SLURM_PROCID"] == "0":
    s = socket.create_server(("", 7471))
    s.settimeout(20)
    c, _ = s.accept()
    print(me, "got", c.recv(64).decode())
else:
    end = time.monotonic() + 20
    while True:
        try:
            c = socket.create_connection(("node1", 7471), timeout=5)
            break
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)
    c.sendall(me.encode())
EOF
out=$(on "$A" srun -N2 -n2 /usr/bin/python3 "$A/tcp.py" 2>&1)
check "TCP from node2 reaches node1 ($out)" '[ "$out" = "node1 got node2" ]'

out=$(on "$A" salloc -N2 sh -c 'echo $SLURM_JOB_NUM_NODES; srun hostname | sort' 2>/dev/null | tr '\n' ' ')
check "salloc -N2 gets both nodes and srun runs inside it ($out)" '[ "$out" = "2 node1 node2 " ]'
on "$B" sbatch -Q --wait -N3 -o "$B/job.out" --wrap 'srun hostname'
out=$(sorted <"$B/job.out")
check "sbatch -N3 runs its script's srun on every node ($out)" '[ "$out" = "node1 node2 node3 " ]'

# Stop A: B goes on; nothing of A is left.
pids=$(cluster_pids "$A")
"$VC" -d "$A" stop >/dev/null
check_gone "$A" "$sa" "$pids" "after stop of the 2-node cluster"
out=$(on "$B" srun -N3 hostname | sorted)
check "the 3-node cluster still runs jobs ($out)" '[ "$out" = "node1 node2 node3 " ]'
pids=$(cluster_pids "$B")
"$VC" -d "$B" stop >/dev/null
check_gone "$B" "$sb" "$pids" "after stop of the 3-node cluster"
rm -f "$A.log" "$B.log"
finish
