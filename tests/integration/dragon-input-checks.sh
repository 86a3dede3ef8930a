#!/bin/sh
# Input the launcher and dragon-config must refuse with a clear message,
# or accept as far as the kernel does: an empty program name or network
# prefix, a newline in a config path, an unreadable or garbage config
# file, and an argv plus environment larger than 128 KiB.
set -u
B=${top_builddir:?}/libdlaunch
T=$(mktemp -d /tmp/dragon-in.XXXXXX)
export DRAGON_LOG_DIR=$T/log DRAGON_CONFIG=$T/dragon.conf
fails=0
trap 'chmod -R u+rw "$T"; rm -rf "$T"' EXIT

ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fails=$((fails + 1)); }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

# --- dragon: empty arguments are usage errors -------------------------------
"$B/dragon" '' 2> "$T/err"; rc=$?
check "dragon '': usage error" '[ $rc -eq 2 ] && grep -q "program name is empty" "$T/err"'
"$B/dragon" --network-prefix '' true 2> "$T/err"; rc=$?
check "--network-prefix '': refused" '[ $rc -eq 2 ] && grep -q "network-prefix is empty" "$T/err"'

# --- dragon: argv and environment beyond 128 KiB, as the kernel allows -----
big=$(head -c 100000 /dev/zero | tr '\0' x)
out=$(BIG1=$big BIG2=$big "$B/dragon" sh -c 'echo "${#BIG1} ${#BIG2} ${#1}"' sh "$big" 2> "$T/err"); rc=$?
check "argv + environment of 300 KB reach the head" '[ $rc -eq 0 ] && echo "$out" | grep -q "^100000 100000 100000$"'
[ $rc -eq 0 ] || cat "$T/err"

# --- dragon-config: what the file cannot hold, and files it cannot read ----
C=$B/dragon-config
mkdir -p "$T/lib/a
tcp-runtime=True"
touch "$T/lib/a
tcp-runtime=True/libfabric.so"
$C add --ofi-runtime-lib="$T/lib/a
tcp-runtime=True" 2> "$T/err"; rc=$?
check "config: newline in a path refused" '[ $rc -ne 0 ] && grep -q "line break" "$T/err" && ! grep -q tcp-runtime "$DRAGON_CONFIG" 2>/dev/null'
printf 'tcp-runtime=True\n\001\002garbage\n' > "$DRAGON_CONFIG"
$C list > "$T/out" 2> "$T/err"; rc=$?
check "config: garbage file refused by list" '[ $rc -ne 0 ] && grep -q "line 2" "$T/err" && grep -q "dragon-config clean" "$T/err"'
$C add --tcp-runtime=False 2> "$T/err"; rc=$?
check "config: garbage file not rewritten by add" '[ $rc -ne 0 ] && grep -q garbage "$DRAGON_CONFIG"'
printf 'tcp-runtime=Maybe\n' > "$DRAGON_CONFIG"
$C list > /dev/null 2> "$T/err"; rc=$?
check "config: bad value in the file refused" '[ $rc -ne 0 ] && grep -q "line 1" "$T/err"'
$C add --tcp-fallback=Maybe 2> "$T/err"; rc=$?
check "config: --tcp-fallback takes True or False" '[ $rc -ne 0 ] && grep -q "tcp-fallback=Maybe: use True or False" "$T/err"'
printf 'ucx-runtime-lib=usr/lib\n' > "$DRAGON_CONFIG"
$C list > /dev/null 2> "$T/err"; rc=$?
check "config: a relative library directory in the file refused" '[ $rc -ne 0 ] && grep -q "line 1" "$T/err"'
rm -f "$DRAGON_CONFIG"
if ldconfig -p | grep -q 'libfabric\.so\.1 '; then
	$C add --ofi-runtime-lib=system --tcp-fallback=true 2> "$T/err"; rc=$?
	check "config: ofi from the system's library path, fallback on" '[ $rc -eq 0 ] && $C list | grep -qx "ofi-runtime-lib=system" && $C list | grep -qx "tcp-fallback=True"'
	$C clean
else
	echo "skip: libfabric.so.1 is not on the system's library path"
fi
printf '# comment\n\ntcp-runtime=True\n' > "$DRAGON_CONFIG"
check "config: comments and blank lines are fine" '$C list | grep -qx "tcp-runtime=True"'
if [ "$(id -u)" -ne 0 ]; then
	chmod 000 "$DRAGON_CONFIG"
	$C list > /dev/null 2> "$T/err"; rc=$?
	check "config: unreadable file refused" '[ $rc -ne 0 ] && grep -q "cannot read" "$T/err"'
	chmod 600 "$DRAGON_CONFIG"
else
	# root reads any file: a directory in its place cannot be read
	rm -f "$DRAGON_CONFIG"; mkdir "$DRAGON_CONFIG"
	$C list > /dev/null 2> "$T/err"; rc=$?
	check "config: unreadable file refused" '[ $rc -ne 0 ] && grep -q "cannot read" "$T/err"'
	rmdir "$DRAGON_CONFIG"
fi
$C clean

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
