#!/bin/sh
# The start-up handshake of dragon across nodes, on a 3-node vcluster:
# backends and frontend prove to each other that they hold the runtime's
# secret without sending it (a backend with another secret is refused, a
# frontend without it too, and the traffic of a run does not hold it); a
# backend of another Dragon version fails the connect phase naming both
# versions; --network-prefix picks each node's address, and one that some
# node lacks fails the network phase listing every node's interfaces; a
# port a firewall drops on one node fails the connect phase naming the
# port and --port.  Nothing is left on any node after each.
. "${srcdir:?}/lib.sh"
need_cluster
dragon_programs mn_prog DRAGON_BACKEND_PROGRAM
PEER="/usr/bin/python3 $srcdir/ctl_peer.py"
command -v nft >/dev/null 2>&1 || skip "nft is not installed; 'make deps' installs nftables"
start_cluster multinode-startup 3
export SLURM_CONF=$D/slurm.conf
slot=$(cat "$D/slot")
# the login node's address, as vcluster wrote it (a slot past 255 moves
# the second octet)
login=$(sed -n 's/^\([0-9.]*\) login$/\1/p' "$D/hosts")
W=$D/work
mkdir -p "$W"
mark=ms$$
version=$("$DRAGON" --version | awk '{ print $2 }')

settle() {
	i=0
	while ! leftovers >/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
}

# A backend program for node2 only: $1 is what node2 runs before (or
# instead of) the real backend.
wrap() {
	cat >"$W/backend" <<EOF2
#!/bin/sh
if [ "\$(hostname)" = node2 ]; then
$1
fi
exec "$B/dragon-backend" "\$@"
EOF2
	chmod +x "$W/backend"
}

# dragon inside an allocation of $1 nodes; output in $W/out, $W/err.
run() {
	n=$1
	shift
	env MN_MARK=$mark timeout 120 salloc -Q -N"$n" "$DRAGON" "$@" \
		>"$W/out" 2>"$W/err" </dev/null
}

# ---- a backend with another secret is refused; the run goes on without it
wrap "	$PEER backend wrong-secret $version >'$W/peer' 2>&1"
DRAGON_BACKEND_PROGRAM=$W/backend run 3 -t 20 "$PROG" hosts
rc=$?
check "a backend with a wrong secret: the run goes on with the right one (rc $rc)" \
	'[ $rc = 0 ] && [ "$(grep -c "hostname exited 0" "$W/out")" = 3 ]'
check "... the frontend refuses it, saying so and naming the node" \
	"grep -q 'refused a connection from .* that says it is node 1 (node2): it failed to prove that it holds this runtime.s secret' '$W/err'"
check "... the frontend's own proof checks out with the secret (Python's HMAC-SHA256)" \
	'grep -qx "ctl_peer: frontend proof valid" "$W/peer"'
check "... and the refused peer's connection is closed" \
	'grep -qx "ctl_peer: connection closed by the frontend" "$W/peer"'
[ $rc = 0 ] || cat "$W/err" "$W/peer"
settle
check "... nothing is left on any node" leftovers

# ---- a frontend without the secret is refused by the backend
$PEER frontend >"$W/fe" 2>&1 &
fp=$!
i=0
while [ ! -s "$W/fe" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
"$VC" -d "$D" exec node2 env MN_MARK=$mark DRAGON_BE_NODE=1 DRAGON_BE_NNODES=3 \
	DRAGON_BE_INSTANCE="ms$$x" DRAGON_BE_FRONTEND="$login" DRAGON_BE_PORT="$(head -n1 "$W/fe")" \
	DRAGON_BE_SECRET=0123456789abcdef0123456789abcdef DRAGON_BE_TIMEOUT=20 \
	timeout 60 "$B/dragon-backend" >"$W/out" 2>"$W/err"
rc=$?
wait $fp
check "a frontend that does not hold the secret: the backend refuses it (rc $rc)" \
	"[ $rc = 1 ] && grep -q 'failed to prove that it holds this runtime.s secret: refusing it' '$W/err'"
check "... without giving a proof of its own" 'grep -qx "ctl_peer: backend closed without a proof" "$W/fe"'
[ $rc = 1 ] || cat "$W/err" "$W/fe"
settle
check "... nothing is left on the node" leftovers

# ---- the secret does not cross the wire: node2's control link, recorded
wrap "	$PEER relay auto \"\$SLURM_LAUNCH_NODE_IPADDR\" \"\$DRAGON_BE_PORT\" '$W/wire' >'$W/relay' 2>&1 &
	i=0
	while [ ! -s '$W/relay' ] && [ \$i -lt 100 ]; do sleep 0.1; i=\$((i + 1)); done
	printf %s \"\$DRAGON_BE_SECRET\" >'$W/secret'
	read -r DRAGON_BE_FRONTEND DRAGON_BE_PORT <'$W/relay'
	export DRAGON_BE_FRONTEND DRAGON_BE_PORT"
DRAGON_BACKEND_PROGRAM=$W/backend run 3 -t 20 "$PROG" hosts
rc=$?
check "a run whose node2 speaks through a recording relay works (rc $rc)" \
	'[ $rc = 0 ] && [ "$(grep -c "hostname exited 0" "$W/out")" = 3 ]'
[ $rc = 0 ] || cat "$W/err" "$W/relay"
check "... the recording holds node2's hello and the proofs ($(wc -c <"$W/wire" 2>/dev/null) bytes)" \
	'grep -q node2 "$W/wire" && [ "$(wc -c <"$W/secret")" -ge 16 ]'
check "... but not the runtime's secret" '! grep -qF "$(cat "$W/secret")" "$W/wire"'
# The configuration node2 gets names node 0's agent only: the others'
# addresses are asked for when needed, and node2 needs none here.
n1=$(awk '$2 == "node1" { print $1 }' "$D/hosts")
n3=$(awk '$2 == "node3" { print $1 }' "$D/hosts")
check "... node2 was sent node1's agent's address ($n1) but not node3's ($n3)" \
	'[ -n "$n3" ] && grep -qaF "$n1:" "$W/wire" && ! grep -qaF "$n3:" "$W/wire"'
settle
check "... nothing is left on any node" leftovers

# ---- a backend of another Dragon version
wrap "	exec $PEER backend version 0.0.0-other >'$W/peer' 2>&1"
DRAGON_BACKEND_PROGRAM=$W/backend run 3 -t 20 true
rc=$?
check "a backend of another Dragon version fails the start-up (rc $rc)" '[ $rc = 1 ]'
check "... at the connect phase, naming the node and both versions" \
	"grep -q \"start-up phase 'backends connect to the frontend' failed on node 1 (node2): its backend is Dragon 0.0.0-other (control link 3), this dragon is Dragon $version (control link 3)\" '$W/err'"
[ $rc = 1 ] || cat "$W/err" "$W/peer"
settle
check "... nothing is left on any node" leftovers

# ---- --network-prefix: node2 alone has an interface ib0 (10.99.0.2)
# (a veth pair inside the namespace: the dummy module may be missing)
ip -n "vc$slot-node2" link add ib0 type veth peer name ib0p &&
	ip -n "vc$slot-node2" addr add 10.99.0.2/32 dev ib0 &&
	ip -n "vc$slot-node2" link set ib0 up
run 3 -t 20 --network-prefix ib true
rc=$?
check "--network-prefix ib, which node1 and node3 lack, fails the run (rc $rc)" '[ $rc = 1 ]'
check "... in the network phase, naming those nodes" \
	"grep -q \"start-up phase 'network configuration exchanged' failed: --network-prefix 'ib' matches no interface on node 0 (node1), node 2 (node3)\$\" '$W/err'"
net=${login%.1}.
check "... listing every node's interfaces" \
	"grep -q 'node 0 (node1): lo 127.0.0.1, .*eth0 ${net}11' '$W/err' &&
	 grep -q 'node 1 (node2): lo 127.0.0.1, .*ib0 10.99.0.2' '$W/err' &&
	 grep -q 'node 2 (node3): lo 127.0.0.1, .*eth0 ${net}13' '$W/err'" || cat "$W/err"
settle
check "... nothing is left on any node" leftovers
# with -l debug the launcher logs to a file of its own (dragon(1), FILES)
rm -rf "$W/logs"
mkdir -p "$W/logs"
export DRAGON_LOG_DIR=$W/logs
run 3 -t 20 -l debug --network-prefix "$net" "$PROG" hosts
rc=$?
unset DRAGON_LOG_DIR
felog=$(ls "$W"/logs/dragon-*.log 2>/dev/null | grep -v '\.node' | head -n1)
check "--network-prefix $net, which every node has, works (rc $rc)" \
	'[ $rc = 0 ] && [ "$(grep -c "hostname exited 0" "$W/out")" = 3 ]'
check "... each node's agent listens on its address there" \
	"grep -q 'node node2: address ${net}12, agent ${net}12:' '$felog' &&
	 grep -q 'node node3: address ${net}13, agent ${net}13:' '$felog'"
[ $rc = 0 ] || cat "$W/err"
run 3 -t 20 --network-prefix eth "$PROG" hosts
rc=$?
check "--network-prefix eth (an interface name) works (rc $rc)" \
	'[ $rc = 0 ] && [ "$(grep -c "hostname exited 0" "$W/out")" = 3 ]'
settle
check "... nothing is left on any node" leftovers

# ---- a port a firewall drops on node2 (not taken: nothing answers)
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')
nsenter --net="/run/netns/vc$slot-node2" nft -f - <<EOF2
table inet ath$$ {
	chain out {
		type filter hook output priority 0;
		tcp dport $port drop
	}
}
EOF2
t0=$(date +%s)
run 3 -t 5 --port "$port" true
rc=$?
t=$(($(date +%s) - t0))
check "a port dropped on node2 fails the start-up (rc $rc, ${t}s with -t 5)" '[ $rc = 1 ]'
check "... in the connect phase, naming the node" \
	"grep -q \"start-up phase 'backends connect to the frontend' failed: timed out after 5 s; no answer from node 1 (node2)\$\" '$W/err'"
check "... and the port, and suggesting --port" \
	"grep -q 'reached port $port of this host' '$W/err' && grep -q -- '--port PORT' '$W/err'"
[ $rc = 1 ] || cat "$W/err"
settle
check "... nothing is left on any node" leftovers
nsenter --net="/run/netns/vc$slot-node2" nft delete table inet ath$$
finish
