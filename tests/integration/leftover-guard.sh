#!/bin/sh
# build-aux/leftover-guard, which make check runs the tests under: it blames
# and removes what a run leaves behind (a segment, processes), keeps a
# failing command's exit status, and never blames what other programs on
# the machine do meanwhile.
set -u
G=${top_srcdir:?}/build-aux/leftover-guard
if [ ! -x "$G" ]; then
	echo "SKIP: $G is not in this tree (release tarballs do not carry it)"
	exit 77
fi
T=$(mktemp -d /tmp/dragon-guard.XXXXXX)
fails=0
other=
trap 'rm -rf "$T"; [ -z "$other" ] || kill $other 2>/dev/null' EXIT
user=$(id -un | tr -c 'A-Za-z0-9_\n-' _)

ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fails=$((fails + 1)); }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
# Process $1 has ended (a zombie waits for a reaper that is not ours).
gone() { ! kill -0 "$1" 2>/dev/null || grep -q '^State:[[:space:]]*Z' /proc/"$1"/status 2>/dev/null; }

# The guard as make check runs it, but on its own: this test already runs
# under one, and a guard inside a guarded run only runs the command.
guard() {
	rm -f "$T/test-leftovers.log"
	env -u DRAGON_TEST_RUN DRAGON_LEFTOVER_GRACE=1 "$G" "$T" "$@" 2>"$T/err"
}

guard true; rc=$?
check "a clean run passes and reports nothing" '[ $rc -eq 0 ] && [ ! -s "$T/test-leftovers.log" ]'
guard sh -c 'exit 3'; rc=$?
check "a failing command keeps its status" '[ $rc -eq 3 ]'

# A run that leaves a segment, a detached process and a background child.
seg="dragon.$user.guard$$.seg"
guard sh -c ': > /dev/shm/'"$seg"'; (setsid sleep 300 & echo $! > '"$T"'/pid1); sleep 300 & echo $! > '"$T"'/pid2'
rc=$?
p1=$(cat "$T/pid1"); p2=$(cat "$T/pid2")
check "leftover processes fail the run" '[ $rc -eq 1 ]'
check "both processes are named" 'grep -q "^process $p1 .*sleep 300" "$T/test-leftovers.log" && grep -q "^process $p2 .*sleep 300" "$T/test-leftovers.log"'
check "and killed" 'gone $p1 && gone $p2'
if grep -q "no mount namespace" "$T/err"; then
	# Without a private /dev/shm the segment cannot be blamed, only noted.
	check "the segment is noted, not removed" 'grep -q "note: /dev/shm/$seg" "$T/err" && [ -e "/dev/shm/$seg" ]'
	rm -f "/dev/shm/$seg"
else
	check "the segment is named" 'grep -qx "/dev/shm/$seg left by the tests (removed)" "$T/test-leftovers.log"'
	check "the run's /dev/shm was its own" '[ ! -e "/dev/shm/$seg" ]'
fi

# Another program's process and segment, made while a clean run goes on.
sleep 300 & other=$!
oseg="dragon.$user.other$$.seg"
(sleep 0.3; : > "/dev/shm/$oseg") &
guard sh -c 'sleep 1'; rc=$?
check "another program's segment and process are not blamed" '[ $rc -eq 0 ] && [ ! -s "$T/test-leftovers.log" ]'
check "nor touched" '[ -e "/dev/shm/$oseg" ] && kill -0 $other'
rm -f "/dev/shm/$oseg"

echo "$fails failure(s)"
[ $fails -eq 0 ]
