#!/bin/sh
# The agent suites of every backend across two network stacks: node 0's
# agent in this network namespace, node 1's in one of its own, joined by
# a veth pair, so that nothing passes between the agents but the network.
# Needs root and ip(8); skipped, saying why, otherwise.
set -u
if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP: making a network namespace needs root"
	exit 77
fi
if ! command -v ip > /dev/null; then
	echo "SKIP: ip(8) not found (Debian package: iproute2)"
	exit 77
fi
ns=dtrans-$$
a=dtra$$
b=dtrb$$
net=10.$((200 + $$ % 50)).$(($$ / 50 % 250))
cleanup() {
	ip link del "$a" 2> /dev/null
	ip netns del "$ns" 2> /dev/null
}
trap cleanup EXIT
trap 'exit 1' INT TERM
ip netns add "$ns" &&
	ip link add "$a" type veth peer name "$b" &&
	ip link set "$b" netns "$ns" &&
	ip addr add "$net.1/24" dev "$a" &&
	ip link set "$a" up &&
	ip -n "$ns" addr add "$net.2/24" dev "$b" &&
	ip -n "$ns" link set "$b" up &&
	ip -n "$ns" link set lo up || {
	echo "FAIL: cannot make namespace $ns and its veth pair"
	exit 1
}
export DRAGON_TEST_HOST0="$net.1" DRAGON_TEST_HOST1="$net.2"
export DRAGON_TEST_NETNS1="/run/netns/$ns"
fails=0
for t in test_dtransport_agent test_dtransport_agent_ofi \
	test_dtransport_agent_ucx; do
	echo "== $t: node 0 at $net.1, node 1 at $net.2 in $ns"
	./$t
	rc=$?
	case $rc in
	0) ;;
	77) echo "($t skipped)" ;;
	*) fails=$((fails + 1)) ;;
	esac
done
exit $((fails > 0))
