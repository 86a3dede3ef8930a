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

# Wait until the run in the background (pid $2) has written "ready" to
# $1, or has ended; 0 when it is ready, else its output and errors ($3)
# are shown.  No bound of its own: the run is
# bounded by its own deadlines (-t) and the timeout it runs under, and on
# a loaded machine its start-up may take longer than a fixed wait would
# allow.
wait_ready() {
	while ! grep -q ready "$1" 2>/dev/null; do
		if ! kill -0 "$2" 2>/dev/null; then
			grep -q ready "$1" 2>/dev/null && return 0
			echo "the run ended before it was ready; its output:"
			cat "$1" "$3" 2>/dev/null
			return 1
		fi
		sleep 0.1
	done
}

# Nothing of this test's runs (MN_MARK=$mark) is left on the nodes.
leftovers() { no_leftovers "$mark" "$D" $NODES; }

# ---- dragon-cleanup across the nodes of a job (pbs.sh, ssh.sh)
# The running processes carrying MN_MARK=$1 (and comm matching $2).
marked() {
	grep -lzx "MN_MARK=$1" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 |
		while read -r p; do
			running "$p" || continue
			[ -z "${2:-}" ] || case $(cat /proc/$p/comm 2>/dev/null) in $2) ;; *) continue ;; esac
			echo "$p"
		done | tr '\n' ' '
}
# The number of segments of instance $2 on node $1.
segs() { "$VC" -d "$D" exec "$1" sh -c "ls /dev/shm | grep -c '^dragon\.[^.]*\.$2\.' || true"; }
# The instance of the run marked $1, from its sleeps' environment.
instance_of() {
	for p in $(marked "$1" sleep); do
		tr '\0' '\n' </proc/$p/environ | sed -n 's/^DRAGON_INSTANCE=//p'
	done | sort -u | head -n1
}
others() { "$VC" -d "$D" exec "$1" sh -c 'ls /dev/shm | grep -c "^dragon\.[a-z]*\.other[12]\.pool$" || true'; }

# A runtime killed whole, a live one and another user's segments on the 3
# nodes; then `cleanup_here` (dragon-cleanup run on node3 as outside a
# job) cleans node3 only, and `cleanup_all` (dragon-cleanup in the job, or
# with the job's hosts) every node, leaving the live runtime and the other
# user's segments alone.  The caller defines bg_run MARK (mn_prog sleep
# in the background, output in $W/MARK.out), cleanup_here and
# cleanup_all (output in $W/cl.out); $1 names the way, for the messages.
# A launcher that would end a killed backend's processes itself (Slurm's
# slurmstepd ends what is left of a step) is held around the kill by
# launcher_hold BACKENDS and launcher_release, which the caller may
# redefine.
launcher_hold() { :; }
launcher_release() { :; }
cleanup_across() {
	how=$1 markA=${mark}A markB=${mark}B
	# (a "ready" of an earlier call's runs is not this one's)
	rm -f "$W/$markA.out" "$W/$markB.out"
	bg_run $markA
	wait_ready "$W/$markA.out" $! "$W/$markA.err"
	instA=$(instance_of $markA)
	sleepsA=$(marked $markA sleep)
	check "$how: runtime A: a sleep on every node ($sleepsA), instance '$instA'" \
		'[ $(echo $sleepsA | wc -w) = 3 ] && [ -n "$instA" ]'
	# Its watchdogs first, then (stopped, so that none sees another go
	# and ends its node) the backends and last the launcher: nothing of
	# it is left to clean up.  The backends must be gone before the
	# launcher dies: where they share its process group (PALS's mpiexec
	# starts them as its children), the launcher's death orphans that
	# group, and the kernel sends SIGHUP and SIGCONT to a group orphaned
	# with stopped members, which a stopped backend would take as an
	# order to end its node.  (The owners are stopped before the
	# watchdogs are listed, so that none starts after the list is taken.)
	front="$(marked $markA 'dragon') $(marked $markA 'lt-dragon')"
	backs=$(marked $markA '*dragon-backe*')
	launcher_hold "$backs"
	kill -STOP $front $backs
	dogs=$(grep -lzx -- "$instA" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3 |
		while read -r p; do case $(cat /proc/$p/comm 2>/dev/null) in *dragon-cleanu*) echo $p ;; esac; done | tr '\n' ' ')
	check "$how: runtime A: its watchdogs are found ($dogs)" '[ $(echo $dogs | wc -w) -ge 3 ]'
	kill -KILL $dogs 2>/dev/null
	kill -KILL $backs 2>/dev/null
	i=0
	while [ $i -lt 100 ]; do
		live=
		for p in $backs; do
			case $(cut -d' ' -f3 /proc/$p/stat 2>/dev/null) in '' | Z) ;; *) live=1 ;; esac
		done
		[ -n "$live" ] || break
		sleep 0.05
		i=$((i + 1))
	done
	kill -KILL $front 2>/dev/null
	sleep 1
	launcher_release
	check "$how: runtime A killed whole: its sleeps outlive it ($(marked $markA sleep))" \
		'[ "$(marked $markA sleep)" = "$sleepsA" ]'
	left=
	for n in $NODES; do [ "$(segs $n "$instA")" -gt 0 ] || left="$left $n"; done
	check "$how: ... and its segments, on every node (none on:$left)" '[ -z "$left" ]'

	bg_run $markB
	wait_ready "$W/$markB.out" $! "$W/$markB.err"
	instB=$(instance_of $markB)
	sleepsB=$(marked $markB sleep)
	segsB=$(for n in $NODES; do segs $n "$instB"; done | tr '\n' ' ')
	check "$how: runtime B, live: three sleeps, segments on every node ($segsB)" \
		'[ $(echo $sleepsB | wc -w) = 3 ] && ! echo " $segsB" | grep -q " 0 "'
	for n in $NODES; do
		"$VC" -d "$D" exec $n sh -c 'for s in dragon.nobody.other1.pool dragon.root.other2.pool; do
			echo x >/dev/shm/$s; chown nobody /dev/shm/$s; done'
	done

	cleanup_here
	rc=$?
	check "$how: dragon-cleanup on node3 outside the job exits 0 (rc $rc)" '[ $rc = 0 ]'
	[ $rc = 0 ] || cat "$W/cl.out"
	check "$how: ... node3 has no segment of runtime A left" '[ "$(segs node3 "$instA")" = 0 ]'
	check "$how: ... node1 and node2 still have theirs" \
		'[ "$(segs node1 "$instA")" != 0 ] && [ "$(segs node2 "$instA")" != 0 ]'
	check "$how: ... one of A's sleeps ended, two run on ($(marked $markA sleep))" \
		'[ $(marked $markA sleep | wc -w) = 2 ]'

	cleanup_all
	rc=$?
	check "$how: dragon-cleanup over the job's nodes exits 0 (rc $rc)" '[ $rc = 0 ]'
	[ $rc = 0 ] || cat "$W/cl.out"
	left=
	for n in $NODES; do [ "$(segs $n "$instA")" = 0 ] || left="$left $n"; done
	check "$how: ... no segment of runtime A is left on any node (left on:$left)" '[ -z "$left" ]'
	check "$how: ... no process of runtime A is left ($(marked $markA))" '[ -z "$(marked $markA)" ]'
	check "$how: ... its lines name the nodes it cleaned, not node3, cleaned before" \
		'grep -q "^node1: runtime $instA: its owner" "$W/cl.out" && grep -q "^node2: runtime $instA: its owner" "$W/cl.out" &&
		! grep -q "^node3: runtime $instA" "$W/cl.out"'
	check "$how: ... and say the live runtime B is left alone on every node" \
		'[ "$(grep -c "^node[123]: runtime $instB is live" "$W/cl.out")" = 3 ]'
	check "$how: ... runtime B's processes all run on" '[ "$(marked $markB sleep)" = "$sleepsB" ]'
	nowB=$(for n in $NODES; do segs $n "$instB"; done | tr '\n' ' ')
	check "$how: ... runtime B's segments are all there ($nowB)" '[ "$nowB" = "$segsB" ]'
	o=$(for n in $NODES; do others $n; done | tr '\n' ' ')
	check "$how: ... another user's segments are all there ($o)" '[ "$o" = "2 2 2 " ]'
	[ "$o" = "2 2 2 " ] || cat "$W/cl.out"

	kill -TERM $(marked $markB 'dragon') $(marked $markB 'lt-dragon') 2>/dev/null
	i=0
	while [ -n "$(marked $markB)" ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
	check "$how: runtime B still ends on SIGTERM and leaves no process" '[ -z "$(marked $markB)" ]'
	check "$how: ... with the code of its head (SIGTERM)" 'grep -q "^+++ head proc exited, code 143" "$W/$markB.out"'
	left=
	for n in $NODES; do [ "$(segs $n "$instB")" = 0 ] || left="$left $n"; done
	check "$how: ... and no segment (left on:$left)" '[ -z "$left" ]'
	for n in $NODES; do "$VC" -d "$D" exec $n sh -c 'rm -f /dev/shm/dragon.*.other[12].pool'; done
}

# For each backend of the run marked $1: how many secrets its
# /proc/PID/environ still shows (a backend wipes the one it was given).
backend_secrets() {
	grep -lzx "MN_MARK=$1" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 | while read -r p; do
		case $(cat /proc/$p/comm 2>/dev/null) in
		*dragon-backe*) tr '\0' '\n' </proc/$p/environ | grep -c '^DRAGON_BE_SECRET=.' ;;
		esac
	done | tr '\n' ' '
}
