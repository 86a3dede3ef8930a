# Sourced by netns.sh and netns3.sh: skipping, saying why, where no
# network namespace can be made, and a namespace joined to this one by a
# veth pair.
set -u
if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP: making a network namespace needs root"
	exit 77
fi
if ! command -v ip > /dev/null; then
	echo "SKIP: ip(8) not found (Debian package: iproute2)"
	exit 77
fi

# Namespace $1 with the veth end $3 at address $4 (and its loopback) up;
# the other end, $2, stays here, down, for the caller to place.
netns_veth() {
	ip netns add "$1" &&
		ip link add "$2" type veth peer name "$3" &&
		ip link set "$3" netns "$1" &&
		ip -n "$1" addr add "$4" dev "$3" &&
		ip -n "$1" link set "$3" up &&
		ip -n "$1" link set lo up
}
