#!/bin/sh
# dragon without a workload manager: --hostlist / --hostfile, one
# `ssh HOST dragon-backend` per host, on a 3-node vcluster whose nodes each
# run an sshd this test starts (its own config, host key, client key and
# known_hosts in a temporary directory, given to dragon's ssh with
# DRAGON_SSH_OPTS=-F: nothing of the machine's ssh setup is used or
# changed).  dragon runs on the machine, the cluster's login node.
# Checked: processes, a channel and a name across the hosts, the head's
# stdin and exit code, the secret on no command line, SIGTERM, a backend
# killed with SIGKILL, a host ssh cannot reach (named, with ssh's words),
# a missing or empty host file, one host, --hostlist inside a job; and
# after each run no process and no /dev/shm entry on any node.
. "${srcdir:?}/lib.sh"
need_cluster
for c in /usr/sbin/sshd ssh ssh-keygen; do
	command -v $c >/dev/null 2>&1 ||
		skip "$c is not installed; 'make deps' installs openssh-server and openssh-client"
done
dragon_programs mn_prog PBS_NODEFILE PBS_JOBID DRAGON_SSH_OPTS
sshd_pids=
at_exit() { [ -z "$sshd_pids" ] || kill $sshd_pids 2>/dev/null; }
start_cluster ssh 3
W=$D/work
T=$D/ssh
mkdir -p "$W" "$T"
mark=ssh$$
net=$(sed -n 's/^\([0-9.]*\)\.1 login$/\1/p' "$D/hosts")

# ---- sshd on every node, keys and configs of this test only
ssh-keygen -q -t ed25519 -N '' -f "$T/host_key" || bad "a host key is made"
ssh-keygen -q -t ed25519 -N '' -f "$T/id" || bad "a client key is made"
cp "$T/id.pub" "$T/authorized_keys"
cat >"$T/sshd_config" <<EOF
Port 22
HostKey $T/host_key
AuthorizedKeysFile $T/authorized_keys
PidFile none
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
AcceptEnv MN_MARK
PrintMotd no
# the sessions' shell reads no startup file of the machine's user
SetEnv HOME=$T/home
EOF
mkdir -p "$T/home"
echo "$net.* $(cut -d' ' -f1,2 "$T/host_key.pub")" >"$T/known_hosts"
{
	for i in 1 2 3; do printf 'Host node%s\n  HostName %s.%s\n' $i "$net" $((10 + i)); done
	# node3's address, where nothing listens on port 2222
	printf 'Host deadnode\n  HostName %s.13\n  Port 2222\n' "$net"
	cat <<EOF
Host *
  User root
  IdentityFile $T/id
  IdentitiesOnly yes
  UserKnownHostsFile $T/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  SetEnv MN_MARK=$mark
  LogLevel ERROR
EOF
} >"$T/config"
# sshd's privilege separation directory (Debian's package makes it at boot)
[ -d /run/sshd ] || install -d -m 0755 /run/sshd
for i in 1 2 3; do
	"$VC" -d "$D" exec node$i /usr/sbin/sshd -D -f "$T/sshd_config" -E "$T/sshd-node$i.log" &
	sshd_pids="$sshd_pids $!"
done
export DRAGON_SSH_OPTS="-F $T/config"
i=0
until ssh $DRAGON_SSH_OPTS -o BatchMode=yes node3 true 2>/dev/null || [ $i -ge 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
check "ssh reaches the nodes' sshd" 'ssh $DRAGON_SSH_OPTS -o BatchMode=yes node2 hostname | grep -qx node2'

# dragon on the login node; output in $W/out, $W/err.
run() {
	env MN_MARK=$mark timeout 120 "$DRAGON" -t 20 "$@" >"$W/out" 2>"$W/err"
}

# ---- the C API across the hosts of --hostlist
run --hostlist node1,node2,node3 "$PROG" hosts </dev/null
rc=$?
out=$(grep '^node[0-9]$' "$W/out" | sort | tr '\n' ' ')
check "a process started on each of 3 hosts runs there ($out)" '[ "$out" = "node1 node2 node3 " ]'
check "... dragon exits 0 and says so (rc $rc)" '[ $rc = 0 ] && grep -qx "+++ head proc exited, code 0" "$W/out"'
[ $rc = 0 ] || cat "$W/out" "$W/err"
check "... nothing is left on any node" leftovers

printf '# the hosts\nnode1 slots=2\n\nnode2\nnode1\nnode3\n' >"$W/hostfile"
run --hostfile "$W/hostfile" "$PROG" chan </dev/null
rc=$?
check "--hostfile (comments, blanks, repeats): a message from node3 to a channel on node1 arrives" \
	"grep -qx 'head got: ping from node3 (node id 3)' '$W/out'"
check "... a name registered on node3 is found on node1" "grep -qx 'name mn-peer-host = node3' '$W/out'"
[ $rc = 0 ] || cat "$W/out" "$W/err"
check "... nothing is left on any node" leftovers

# ---- the head: its stdin through ssh (after the secret), its exit code
run --hostlist node1,node2 sh -c 'hostname; read l; echo "read $l"; exit 3' <<EOF2
from-stdin
EOF2
rc=$?
check "the head runs on the first host and reads dragon's stdin" \
	'[ "$(head -n2 "$W/out" | tr "\n" " ")" = "node1 read from-stdin " ]'
check "its exit code is dragon's (rc $rc)" '[ $rc = 3 ]'
check "... nothing is left on any node" leftovers

# ---- the secret on no command line; SIGTERM
run --hostlist node1,node2,node3 "$PROG" sleep </dev/null &
sp=$!
wait_ready "$W/out" $sp "$W/err"
fp=$(grep -lzx "MN_MARK=$mark" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 |
	while read -r p; do [ "$(cat /proc/$p/comm 2>/dev/null)" = dragon ] && echo $p; done | head -n1)
check "sleeps started on every host" 'grep -q ready "$W/out" && [ -n "$fp" ]'
# every ssh dragon runs, and every process of the run on the nodes
cmds=$({
	[ -z "$fp" ] || pgrep -P "$fp"
	grep -lzx "MN_MARK=$mark" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3
} | sort -u | while read -r p; do tr '\0' ' ' </proc/$p/cmdline 2>/dev/null; echo; done)
check "dragon's ssh commands carry the backend's settings ($(echo "$cmds" | grep -c '^ssh ') ssh)" \
	'[ "$(echo "$cmds" | grep -c "^ssh .* node[123] exec env .*DRAGON_BE_NODE=.*dragon-backend")" = 3 ]'
check "... and no secret: no command line holds 64 hex digits or DRAGON_BE_SECRET=" \
	'! echo "$cmds" | grep -Eq "[0-9a-f]{64}|DRAGON_BE_SECRET="'
[ -z "$fp" ] || kill -TERM "$fp"
wait $sp
rc=$?
check "SIGTERM to dragon: the head gets it and dragon exits with its code (rc $rc)" '[ $rc = 143 ]'
[ $rc = 143 ] || cat "$W/out" "$W/err"
check "... nothing is left on any node" leftovers

# ---- a backend killed with SIGKILL
env DRAGON_NODE_TIMEOUT=3 MN_MARK=$mark timeout 120 "$DRAGON" -t 20 --hostlist node1,node2,node3 \
	"$PROG" sleep >"$W/out" 2>"$W/err" </dev/null &
sp=$!
wait_ready "$W/out" $sp "$W/err"
be=$(grep -lzx "MN_MARK=$mark" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 | while read -r p; do
	case $(cat /proc/$p/comm 2>/dev/null) in *dragon-backe*) ;; *) continue ;; esac
	tr '\0' '\n' </proc/$p/environ | grep -qx DRAGON_BE_NODE=1 && echo $p
done | head -n1)
check "the backend of node2 is found (pid $be)" '[ -n "$be" ]'
[ -z "$be" ] || kill -KILL "$be"
wait $sp
rc=$?
check "a lost backend ends the run with an error (rc $rc)" '[ $rc != 0 ] && [ $rc != 124 ]'
check "... that names the lost node" 'grep -q "node 1 (node2) was lost" "$W/err"'
[ $rc != 0 ] && [ $rc != 124 ] || cat "$W/out" "$W/err"
i=0
while ! leftovers >/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
check "... nothing is left on any node (the lost one included)" leftovers

# ---- a host ssh cannot reach
run --hostlist node1,node2,deadnode true </dev/null
rc=$?
check "a host ssh cannot reach fails the run (rc $rc)" '[ $rc = 1 ]'
check "... naming the phase, the node and ssh's error ($(grep "failed on" "$W/err"))" \
	"grep -q \"start-up phase 'launch backends' failed on node 2 (deadnode): ssh ended (exit code 255) before the backend connected: ssh: connect to host $net.13 port 2222: Connection refused\" '$W/err'"
[ $rc = 1 ] || cat "$W/err"
# The backends still starting on node1 and node2 end with their ssh
# sessions, which dragon ended: shortly after dragon.
i=0
while ! leftovers >/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
check "... nothing is left on any node (after $((i / 10)) s)" leftovers

# ---- host files and options
out=$("$DRAGON" --hostfile "$W/missing" true 2>&1)
rc=$?
check "a missing --hostfile is an error (rc $rc: $out)" \
	'[ $rc = 2 ] && echo "$out" | grep -q "hostfile $W/missing: cannot read it: No such file"'
printf '# nothing\n\n' >"$W/empty"
out=$("$DRAGON" --hostfile "$W/empty" true 2>&1)
rc=$?
check "an empty --hostfile is an error (rc $rc: $out)" '[ $rc = 2 ] && echo "$out" | grep -q "names no host"'
out=$("$DRAGON" --hostlist node1 true 2>&1)
check "one host is an error that says what to do ($out)" 'echo "$out" | grep -q "run dragon on node1 itself"'
out=$("$DRAGON" -w ssh true 2>&1)
check "-w ssh without hosts is an error ($out)" 'echo "$out" | grep -q "no hosts: give --hostfile"'
out=$(env SLURM_JOB_ID=7 "$DRAGON" --hostlist node1,node2 true 2>&1)
check "--hostlist inside a Slurm job without -w ssh is an error ($out)" \
	'echo "$out" | grep -q "inside a Slurm job: add -w ssh"'
env MN_MARK=$mark SLURM_JOB_ID=7 timeout 60 "$DRAGON" -t 20 -w ssh -N 2 --hostlist node1,node2,node3 \
	"$PROG" hosts >"$W/out" 2>"$W/err" </dev/null
check "-w ssh -N 2 inside a Slurm job runs on the first 2 hosts" 'grep -qx "nodes 2" "$W/out"'

# ---- dragon-cleanup with the hosts: every host, over ssh
CLEANUP=$B/dragon-cleanup
if id nobody >/dev/null 2>&1; then
	# (the nodes' processes take their mark from ssh, not from dragon)
	bg_run() {
		env MN_MARK=$1 DRAGON_SSH_OPTS="$DRAGON_SSH_OPTS -o SetEnv=MN_MARK=$1" timeout 200 \
			"$DRAGON" -t 20 --hostlist node1,node2,node3 "$PROG" sleep \
			>"$W/$1.out" 2>"$W/$1.err" </dev/null &
	}
	cleanup_here() { "$VC" -d "$D" exec node3 "$CLEANUP" >"$W/cl.out" 2>&1; }
	cleanup_all() { timeout 60 "$CLEANUP" --hostfile "$W/hostfile" >"$W/cl.out" 2>&1; }
	cleanup_across "--hostfile"
	cleanup_all() { timeout 60 "$CLEANUP" --hostlist node1,node2,node3 >"$W/cl.out" 2>&1; }
	cleanup_across "--hostlist"
else
	echo "SKIP: dragon-cleanup over ssh: no user 'nobody' to own another user's segments"
fi
timeout 60 "$CLEANUP" --hostlist node1,deadnode >"$W/cl.out" 2>&1
rc=$?
check "dragon-cleanup with a host ssh cannot reach fails (rc $rc) and names it" \
	'[ $rc = 1 ] && grep -q "ssh to deadnode failed (exit code 255): deadnode is not cleaned" "$W/cl.out"'
[ $rc = 1 ] || cat "$W/cl.out"
out=$("$CLEANUP" --hostlist node1 --this-node 2>&1)
rc=$?
check "dragon-cleanup --hostlist with --this-node is a usage error (rc $rc)" '[ $rc = 2 ]'
check "nothing is left on any node at the end" leftovers
finish
