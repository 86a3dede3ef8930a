#!/bin/sh
# Three agents on three network stacks: node 0's in this namespace on a
# bridge, nodes 1 and 2 each in a namespace of its own with a veth into
# the bridge, for every backend.  Needs root and ip(8); skipped, saying
# why, otherwise.
. "$(dirname "$0")/netns-lib.sh"
br=dtf3br$$
net=10.$((150 + $$ % 50)).$(($$ / 50 % 250))
cleanup() {
	for i in 1 2; do
		ip link del "dtf3h$i$$" 2> /dev/null
		ip netns del "dtf3n$i-$$" 2> /dev/null
	done
	ip link del "$br" 2> /dev/null
}
trap cleanup EXIT
trap 'exit 1' INT TERM
ip link add "$br" type bridge &&
	ip addr add "$net.1/24" dev "$br" &&
	ip link set "$br" up || {
	echo "FAIL: cannot make bridge $br"
	exit 1
}
for i in 1 2; do
	ns=dtf3n$i-$$
	netns_veth "$ns" "dtf3h$i$$" "dtf3p$i$$" "$net.$((i + 1))/24" &&
		ip link set "dtf3h$i$$" master "$br" &&
		ip link set "dtf3h$i$$" up || {
		echo "FAIL: cannot make namespace $ns and its veth pair"
		exit 1
	}
done
export DRAGON_TEST_HOST0="$net.1" DRAGON_TEST_HOST1="$net.2" \
	DRAGON_TEST_HOST2="$net.3"
export DRAGON_TEST_NETNS1="/run/netns/dtf3n1-$$" \
	DRAGON_TEST_NETNS2="/run/netns/dtf3n2-$$"
fails=0
for b in tcp ofi ucx; do
	echo "== test_dtransport_three on $b: nodes at $net.1 (bridge $br)," \
		"$net.2 and $net.3 in namespaces of their own"
	DRAGON_TEST_BACKEND=$b ./test_dtransport_three
	[ $? -eq 0 ] || fails=$((fails + 1))
done
exit $((fails > 0))
