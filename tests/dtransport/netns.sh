#!/bin/sh
# The agent and buffered-send suites of every backend across two network
# stacks: node 0's agent in this network namespace, node 1's in one of
# its own, joined by a veth pair, so that nothing passes between the
# agents but the network.
# Needs root and ip(8); skipped, saying why, otherwise.
. "$(dirname "$0")/netns-lib.sh"
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
netns_veth "$ns" "$a" "$b" "$net.2/24" &&
	ip addr add "$net.1/24" dev "$a" &&
	ip link set "$a" up || {
	echo "FAIL: cannot make namespace $ns and its veth pair"
	exit 1
}
export DRAGON_TEST_HOST0="$net.1" DRAGON_TEST_HOST1="$net.2"
export DRAGON_TEST_NETNS1="/run/netns/$ns"
fails=0
for t in test_dtransport_agent test_dtransport_agent_ofi \
	test_dtransport_agent_ucx test_dtransport_buffered \
	test_dtransport_buffered_ofi test_dtransport_buffered_ucx; do
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
