#!/bin/sh
# Builds the libFuzzer target of the services' message codec with clang
# (libdlaunch/msg.c compiled in, instrumented) and runs it for a bounded
# time.  Skips, saying why, when clang or its libFuzzer runtime is missing.
set -eu
: "${top_srcdir:?}" "${top_builddir:?}"
CLANG=${CLANG:-}
[ -n "$CLANG" ] || CLANG=$(command -v clang || command -v clang-14 || true)
if [ -z "$CLANG" ]; then
	echo "SKIP: clang not found; libFuzzer targets not run (make deps installs it)"
	exit 77
fi
scale=${DRAGON_TEST_SCALE:-1}
secs=$(awk -v s="$scale" 'BEGIN { t = int(10 * s); print (t < 2 ? 2 : t) }')
work=$(mktemp -d "${TMPDIR:-/tmp}/dlaunch-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

t=msg
# shellcheck disable=SC2086
if ! "$CLANG" -g -O1 -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined -D_GNU_SOURCE -pthread \
	-I"$top_builddir" -I"$top_srcdir/libdlaunch/include" \
	-I"$top_srcdir/libdlaunch" -I"$top_srcdir/libdtransport/include" \
	-I"$top_srcdir/libdchan/include" -I"$top_srcdir/libdmem/include" \
	-o "$work/fuzz_$t" "$top_srcdir/tests/dlaunch/fuzz/fuzz_$t.c" \
	"$top_srcdir/libdlaunch/msg.c" >"$work/build_$t.log" 2>&1; then
	if grep -qi "libclang_rt.fuzzer\|cannot find.*fuzzer" "$work/build_$t.log"; then
		echo "SKIP: $CLANG has no libFuzzer runtime (libclang-rt-dev)"
		exit 77
	fi
	cat "$work/build_$t.log"
	echo "FAIL: building fuzz_$t"
	exit 1
fi
# Seeds, little-endian: the header (magic "DLM1", version 1, type, req_id,
# status, client), then fields in the order req_id's plan reads them.
mkdir -p "$work/corpus_$t"
hdr() { printf "DLM1\\001\\000$1\\000$2\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000"; }
# HELLO: an i64 pid and a string (plan 0, 2: req_id 8)
{ hdr '\001' '\010'; printf '\071\060\000\000\000\000\000\000\004\000\000\000ep1\000'; } >"$work/corpus_$t/hello"
# a vector of two strings, then bytes (plan 3, 1: req_id 7)
{ hdr '\003' '\007'; printf '\002\000\000\000\002\000\000\000a\000\003\000\000\000bc\000\002\000\000\000\377\001'; } >"$work/corpus_$t/strv"
echo "fuzz_$t: running ${secs}s"
if ! (cd "$work" && ASAN_OPTIONS=detect_leaks=1 "./fuzz_$t" \
	-max_total_time="$secs" -max_len=4096 -timeout=10 \
	"corpus_$t" >"fuzz_$t.log" 2>&1); then
	tail -40 "$work/fuzz_$t.log"
	echo "FAIL: fuzz_$t found a problem"
	exit 1
fi
grep -E '^Done|#[0-9]+.*DONE' "$work/fuzz_$t.log" | tail -1 || true
echo "PASS: fuzz_$t ran clean"
