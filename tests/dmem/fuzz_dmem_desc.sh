#!/bin/sh
# Bounded libFuzzer run over descriptor parsing and attach.  Builds the
# target from the library sources with clang (-fsanitize=fuzzer,address,
# undefined) and runs it for a fixed time; skipped only without clang.
set -e
srcdir=${srcdir:-$(dirname "$0")}
top_srcdir=${top_srcdir:-$srcdir/../..}
cc=${CLANG:-}
[ -n "$cc" ] || cc=$(command -v clang || command -v clang-14 || true)
if [ -z "$cc" ]; then
	echo "SKIP: clang not found; the libFuzzer target needs clang" >&2
	exit 77
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/dmem-fuzz.XXXXXX")
instance=fuzz$$
cleanup() {
	rm -rf "$work"
	for f in /dev/shm/dragon.*."$instance".*; do
		[ -e "$f" ] && rm -f "$f"
	done
	return 0
}
trap cleanup EXIT INT TERM
if ! "$cc" -g -O1 -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined -D_GNU_SOURCE -pthread \
	-I"$top_srcdir/libdmem/include" -I"$top_srcdir/libdmem" \
	"$srcdir/fuzz_dmem_desc.c" "$top_srcdir"/libdmem/*.c \
	-o "$work/fuzz" 2>"$work/cc.log"; then
	if grep -q "fuzzer" "$work/cc.log" && ! grep -q "error:" "$work/cc.log"; then
		cat "$work/cc.log" >&2
	fi
	if grep -qi "libclang_rt.fuzzer\|cannot find.*fuzzer" "$work/cc.log"; then
		echo "SKIP: $cc has no libFuzzer runtime (libclang-rt-dev)" >&2
		exit 77
	fi
	cat "$work/cc.log" >&2
	exit 1
fi
mkdir "$work/corpus"
printf 'dmem-alloc:1:1:2:4096:100:1' >"$work/corpus/a"
printf 'dmem-pool:1:1:2:1048576:dragon.u.i.n' >"$work/corpus/p"
secs=20
case "${DRAGON_TEST_SCALE:-1}" in 0.*) secs=5 ;; esac
DRAGON_INSTANCE=$instance ASAN_OPTIONS=detect_leaks=1 \
	"$work/fuzz" -max_total_time=$secs -max_len=512 -print_final_stats=1 \
	"$work/corpus" 2>"$work/fuzz.log" || {
	tail -50 "$work/fuzz.log" >&2
	exit 1
}
grep -E "stat::number_of_executed_units|Done" "$work/fuzz.log" >&2 || true
