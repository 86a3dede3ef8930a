#!/bin/sh
# The dragon launcher, dragon-cleanup and dragon-config with real programs:
# exit codes, signals and leftovers, output forwarding, many spawns,
# option errors.  No timing is asserted; every run cleans up after itself.
set -u
B=${top_builddir:?}/libdlaunch
EX=$top_builddir/examples/c/dlaunch_spawn
PY=${PYTHON:-/usr/bin/python3}
T=$(mktemp -d /tmp/dragon-it.XXXXXX)
export DRAGON_LOG_DIR=$T/log DRAGON_CONFIG=$T/dragon.conf
fails=0
trap 'rm -rf "$T"' EXIT

ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fails=$((fails + 1)); }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

# Nothing of instance $1 left: no segment, no process.
clean_of() {
	i=0
	while [ $i -lt 100 ]; do
		left=$("$B/dragon-cleanup" --dry-run --instance "$1")
		[ -z "$left" ] && return 0
		sleep 0.1; i=$((i + 1))
	done
	echo "$left"; return 1
}

wait_file() { i=0; while [ ! -s "$1" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done; }

# --- exit codes and the closing line ---------------------------------------
out=$("$B/dragon" sh -c 'exit 3'); rc=$?
check "exit code 3" '[ $rc -eq 3 ] && echo "$out" | grep -q "^+++ head proc exited, code 3$"'
printf 'import sys\nprint("py head")\nsys.exit(5)\n' > "$T/h.py"
out=$("$B/dragon" "$T/h.py"); rc=$?
check "python head" '[ $rc -eq 5 ] && echo "$out" | grep -q "^py head$"'
out=$("$B/dragon" "$EX" 2 true); rc=$?
check "C head spawning through the runtime" '[ $rc -eq 0 ] && echo "$out" | grep -q "2 of 2"'
out=$("$B/dragon" sh -c 'kill -USR1 $$'); rc=$?
check "head killed by a signal: 128+signo, named" '[ $rc -eq 138 ] && echo "$out" | grep -q "code 138 (killed by signal 10, SIGUSR1)"'
"$B/dragon" /nonexistent/prog 2> "$T/err"; rc=$?
check "missing program: phase named" '[ $rc -eq 127 ] && grep -q "head process" "$T/err"'

# --- start-up phases: a failure or a timeout names the phase -------------
DRAGON_TEST_STALL_PHASE="head process" "$B/dragon" -t 0.5 true 2> "$T/err"; rc=$?
inst=$(sed -n "s/.*(runtime \([A-Za-z0-9_-]*\)).*/\1/p" "$T/err")
check "-t: a phase past its deadline is named" '[ $rc -eq 1 ] && grep -q "start-up phase .head process. failed: timed out after 0.500 s" "$T/err"'
check "-t: nothing left after a start-up timeout" '[ -n "$inst" ] && clean_of "$inst"'
DRAGON_DEFAULT_SEG_SZ=1 "$B/dragon" true 2> "$T/err"; rc=$?
check "start-up failure names the phase" '[ $rc -eq 1 ] && grep -q "start-up phase .default pool." "$T/err"'

# --- options ---------------------------------------------------------------
"$B/dragon" --no-such-option true 2>/dev/null; rc=$?
check "unknown option exits 2" '[ $rc -eq 2 ]'
"$B/dragon" --network-prefix zz-none true 2> "$T/err"; rc=$?
check "--network-prefix lists interfaces" '[ $rc -ne 0 ] && grep -q "lo" "$T/err"'
"$B/dragon" --network-prefix 127. -s -l info -t 10 --port 7575 true; rc=$?
check "valid options" '[ $rc -eq 0 ]'
check "--help and --version" '"$B/dragon" --help | grep -q Usage && "$B/dragon" --version | grep -q dragon'

# --- output forwarding -----------------------------------------------------
out=$("$B/dragon" sh -c 'printf a; sleep 0.1; printf "b\n"; printf tail')
check "partial lines joined, nothing lost" 'echo "$out" | head -1 | grep -qx ab && echo "$out" | grep -qx tail'
check "a last line without newline is ended: +++ starts a line" 'echo "$out" | grep -qx "+++ head proc exited, code 0"'
out=$("$B/dragon" sh -c 'printf "out-no-newline"; printf "err-no-newline" >&2' 2>&1)
check "stdout and stderr tails each end with a newline" 'echo "$out" | grep -qx out-no-newline && echo "$out" | grep -qx err-no-newline && echo "$out" | grep -qx "+++ head proc exited, code 0"'
"$B/dragon" sh -c 'seq 1 300000; seq 1 1000 >&2' > "$T/big" 2> "$T/bigerr"
seq 1 300000 > "$T/want"; echo "+++ head proc exited, code 0" >> "$T/want"
check "large volume forwarded exactly" 'cmp -s "$T/big" "$T/want" && [ $(wc -l < "$T/bigerr") -eq 1000 ]'
writer='i=0; while [ $i -lt 200 ]; do printf "%s-%05d-" $$ $i; head -c 3000 /dev/zero | tr "\0" x; echo; i=$((i+1)); done'
"$B/dragon" "$EX" 2 sh -c "$writer" > "$T/two"
n=$(grep -Ec '^[0-9]+-[0-9]{5}-x{3000}$' "$T/two")
check "two writers: 400 whole lines, none mixed" '[ "$n" -eq 400 ]'

# --- many short-lived processes --------------------------------------------
N=${DRAGON_IT_SPAWNS:-300}
out=$("$B/dragon" "$EX" -s "$N" true); rc=$?
check "$N spawns one after the other" '[ $rc -eq 0 ] && echo "$out" | grep -q "$N of $N"'
out=$("$B/dragon" "$EX" 100 true); rc=$?
check "100 spawns at once" '[ $rc -eq 0 ]'
# The launcher (the head's parent) after a warm-up and after N more
# spawns: no more descriptors, no more segments, memory within 16 MiB.
cat > "$T/leak.sh" <<'EOS'
L=$PPID
fds() { ls /proc/$L/fd | wc -l; }
rss() { awk '/VmRSS/ { print $2 }' /proc/$L/status; }
segs() { ls /dev/shm | grep -c "\.$DRAGON_INSTANCE\."; }
"$1" -s 50 true > /dev/null || exit 1
f0=$(fds); r0=$(rss); s0=$(segs)
"$1" -s "$2" true > /dev/null || exit 1
i=0; while [ "$(fds)" -gt "$f0" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
echo "leak: fds $f0 $(fds) rss $r0 $(rss) segs $s0 $(segs)"
EOS
out=$("$B/dragon" sh "$T/leak.sh" "$EX" "$N"); rc=$?
read f0 f1 r0 r1 s0 s1 <<EOS
$(echo "$out" | sed -n 's/^leak: fds \([0-9]*\) \([0-9]*\) rss \([0-9]*\) \([0-9]*\) segs \([0-9]*\) \([0-9]*\)$/\1 \2 \3 \4 \5 \6/p')
EOS
# AddressSanitizer's quarantine holds freed memory back on purpose, so its
# resident size says nothing about leaks (LeakSanitizer covers those).
rss_slack=16384
case " $SANITIZER " in *" asan "*|*" tsan "*) rss_slack=262144 ;; esac
check "$N spawns: no descriptor, segment or memory growth in the launcher ($(echo "$out" | grep ^leak))" '[ $rc -eq 0 ] && [ -n "$s1" ] && [ $f1 -le $f0 ] && [ $s1 -le $s0 ] && [ $r1 -le $((r0 + rss_slack)) ]'

# --- signals and leftovers -------------------------------------------------
head='echo $DRAGON_INSTANCE > '"$T"'/inst.tmp; mv '"$T"'/inst.tmp '"$T"'/inst; echo $$ > '"$T"'/pid.tmp; mv '"$T"'/pid.tmp '"$T"'/pid; sleep 300 & wait'
# (a) SIGKILL the head
rm -f "$T/inst" "$T/pid"
"$B/dragon" sh -c "$head" > /dev/null & L=$!
wait_file "$T/pid"; kill -KILL "$(cat "$T/pid")"; wait $L; rc=$?
check "(a) head SIGKILLed: 137" '[ $rc -eq 137 ]'
check "(a) nothing left" 'clean_of "$(cat "$T/inst")"'
# (b) SIGTERM the launcher
rm -f "$T/inst" "$T/pid"
"$B/dragon" sh -c "$head" > /dev/null & L=$!
wait_file "$T/pid"; kill -TERM $L; wait $L; rc=$?
check "(b) launcher SIGTERMed: head got it (143)" '[ $rc -eq 143 ]'
check "(b) nothing left" 'clean_of "$(cat "$T/inst")"'
# (c) SIGKILL the launcher: its watchdog ends the head and removes the
# segments within a few seconds (clean_of waits up to 10 s)
rm -f "$T/inst" "$T/pid"
"$B/dragon" sh -c "$head" > /dev/null & L=$!
wait_file "$T/pid"; kill -KILL $L; wait $L
inst=$(cat "$T/inst")
check "(c) launcher SIGKILLed: its watchdog leaves nothing" 'clean_of "$inst"'

# --- dragon-cleanup spares foreign files -----------------------------------
user=$(id -un | tr -c 'A-Za-z0-9_\n-' _)
for f in "foreign-$$" "dragonfly.$user.x" "dragon.other$$.x.y"; do : > "/dev/shm/$f"; done
: > "/dev/shm/dragon.$user.itfake$$.seg"
"$B/dragon-cleanup" --dry-run > "$T/dry"
check "dry run lists this user's segment, not foreign files" 'grep -q "dragon.$user.itfake$$.seg" "$T/dry" && ! grep -q "foreign-$$\|dragonfly\|dragon.other$$" "$T/dry" && [ -e "/dev/shm/dragon.$user.itfake$$.seg" ]'
"$B/dragon-cleanup" --instance "itfake$$" > /dev/null
check "cleanup removes ours, foreign files survive" '[ ! -e "/dev/shm/dragon.$user.itfake$$.seg" ] && [ -e "/dev/shm/foreign-$$" ] && [ -e "/dev/shm/dragonfly.$user.x" ] && [ -e "/dev/shm/dragon.other$$.x.y" ]'
rm -f "/dev/shm/foreign-$$" "/dev/shm/dragonfly.$user.x" "/dev/shm/dragon.other$$.x.y"

# --- dragon-config ---------------------------------------------------------
C=$B/dragon-config
LIBDIR=/usr/lib/x86_64-linux-gnu
if ls $LIBDIR/libfabric.so* > /dev/null 2>&1; then
	$C add --ofi-runtime-lib=$LIBDIR; rc=$?
	check "config: ofi dir accepted" '[ $rc -eq 0 ] && $C list | grep -qx "ofi-runtime-lib=$LIBDIR"'
fi
$C add --ucx-runtime-lib="$T" 2>/dev/null
check "config: dir without libucp refused" '[ $? -ne 0 ]'
$C add --tcp-runtime=maybe 2>/dev/null
check "config: malformed bool refused" '[ $? -eq 2 ]'
$C add --ofi-runtime-lib=relative/dir 2>/dev/null
check "config: relative dir refused" '[ $? -ne 0 ]'
$C bogus 2>/dev/null
check "config: unknown command refused" '[ $? -eq 2 ]'
i=0; while [ $i -lt 20 ]; do
	$C add --tcp-runtime=True & $C add --tcp-runtime=False & i=$((i + 1))
done; wait
check "config: concurrent writers leave a whole file" '[ $($C list | grep -c "^tcp-runtime=\(True\|False\)$") -eq 1 ] && [ $(grep -vc "^#" "$DRAGON_CONFIG") -le 2 ]'
$C remove tcp-runtime
check "config: remove" '! $C list | grep -q tcp-runtime'
$C clean
check "config: clean" '[ ! -e "$DRAGON_CONFIG" ]'

echo "$fails failure(s)"
[ $fails -eq 0 ]
