# Sourced by the cluster tests: skipping where no cluster can run, the
# checks' reporting, a test's programs and cluster, and what "nothing of a
# cluster is left" means.
set -u
VC=${srcdir:?}/vcluster
fails=0
ok() { echo "ok: $1"; }
bad() {
	echo "FAIL: $1"
	fails=$((fails + 1))
}
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
skip() {
	echo "SKIP: $*"
	exit 77
}
finish() {
	[ $fails -eq 0 ] || echo "$fails check(s) failed"
	[ $fails -eq 0 ]
}

# A cluster needs root, namespaces and Slurm; without them the tests say
# which is missing instead of failing (CI runs them as root).
need_cluster() {
	[ "$(id -u)" = 0 ] ||
		skip "the cluster tests need root (network namespaces, a bridge, Slurm's daemons); run make check as root"
	unshare --net --uts --mount true 2>/dev/null ||
		skip "no namespaces can be made here (unshare --net --uts --mount fails): the cluster's nodes are namespaces"
	PATH=$PATH:/usr/sbin:/sbin
	for c in slurmctld slurmd srun salloc sbatch munged; do
		command -v $c >/dev/null 2>&1 ||
			skip "$c is not installed; 'make deps' installs Slurm and munge"
	done
}

# A state directory per cluster, in the build tree, so that two builds'
# runs never share one; a run killed earlier is cleaned up first.
state_dir() {
	d=$(pwd)/$1
	"$VC" -d "$d" stop >/dev/null 2>&1 || true
	echo "$d"
}

# Slurm commands of a cluster, bounded so that a broken cluster fails the
# test instead of hanging it.
on() {
	d=$1
	shift
	SLURM_CONF=$d/slurm.conf timeout 30 "$@"
}

# The pids of the daemons of the cluster in $1 and of everything started
# with its run id; taken before stop, to check after it.
cluster_pids() {
	id=$(cat "$1/id")
	{
		cat "$1"/run/*.pid 2>/dev/null
		grep -lzxF "DRAGON_VCLUSTER_RUN=$id" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3
	} | sort -un | tr '\n' ' '
}

# Alive and not a zombie (PID 1 here may reap orphans late).
running() {
	st=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' /proc/"$1"/status 2>/dev/null)
	[ -n "$st" ] && [ "$st" != Z ]
}

# Nothing of the cluster of slot $2 (state directory $1, processes $3) is
# left: no namespace, no link, no process, no state directory.
check_gone() {
	d=$1 s=$2 pids=$3 what=$4
	left=
	for p in $pids; do running "$p" && left="$left $p"; done
	check "$what: no process of the cluster is left" '[ -z "$left" ]'
	[ -z "$left" ] || ps -o pid,args -p "$(echo $left | tr ' ' ,)"
	ns=$(ip netns list 2>/dev/null | awk -v p="vc$s-" 'index($1, p) == 1 { print $1 }')
	check "$what: no namespace vc$s-* is left" '[ -z "$ns" ]'
	links=$(ip -o link show 2>/dev/null | awk -F': ' '{ print $2 }' | cut -d@ -f1 |
		grep -E "^vc$s(c|n[0-9]+)?\$" || true)
	check "$what: no bridge or veth vc$s* is left" '[ -z "$links" ]'
	check "$what: the state directory is removed" '[ ! -e "$d" ]'
}

# No process carrying MN_MARK=$1 and no dragon segment in /dev/shm of the
# nodes $3... of the cluster in $2 (multinode.sh, pbs.sh, ssh.sh).
no_leftovers() {
	m=$1 d=$2
	shift 2
	procs=$(grep -lzx "MN_MARK=$m" /proc/[0-9]*/environ 2>/dev/null |
		cut -d/ -f3 | while read -r p; do running "$p" && echo "$p"; done | tr '\n' ' ')
	shm=
	for n in "$@"; do
		s=$("$VC" -d "$d" exec $n sh -c 'ls /dev/shm | grep "^dragon\." || true' | tr '\n' ' ')
		[ -z "$s" ] || shm="$shm $n: $s"
	done
	[ -z "$procs" ] && [ -z "$shm" ] && return 0
	echo "left: processes [$procs] segments [$shm]"
	[ -z "$procs" ] || ps -o pid,args -p "$(echo $procs | tr ' ' ,)"
	return 1
}

# dragon, its directory B and the test program PROG ($1, of tests/cluster),
# or skip when they are not built; the variables of a caller's job that
# would reach the runs are unset, with the others named after $1.  (make
# check runs in a mount namespace of its own where /dev/shm may be private;
# dragon-cleanup must be found beside dragon.)
dragon_programs() {
	B=${top_builddir:?}/libdlaunch
	DRAGON=$B/dragon
	PROG=${top_builddir}/tests/cluster/$1
	[ -x "$DRAGON" ] && [ -x "$PROG" ] || skip "build dragon and $1 first"
	shift
	unset DRAGON_CLEANUP_PROGRAM SLURM_JOB_ID SLURM_JOB_NODELIST SLURM_NODELIST \
		SLURM_JOB_NUM_NODES SLURM_NNODES "$@"
}

# A cluster of $2 nodes (node1... in NODES) in the state directory D
# ($1.vc), stopped when the test exits, after at_exit (a test's own
# cleanup: it defines at_exit after sourcing this file).
at_exit() { :; }
start_cluster() {
	D=$(state_dir "$1.vc")
	NODES=$(seq -f 'node%g' -s ' ' "$2")
	trap 'at_exit; "$VC" -d "$D" stop >/dev/null 2>&1' EXIT
	"$VC" -d "$D" start "$2" >"$D.log" 2>&1 || {
		cat "$D.log"
		bad "a $2-node cluster starts"
		exit 1
	}
}

# Nothing of this test's runs (MN_MARK=$mark) is left on the nodes.
leftovers() { no_leftovers "$mark" "$D" $NODES; }
