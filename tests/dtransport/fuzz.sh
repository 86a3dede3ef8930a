#!/bin/sh
# Builds the libFuzzer target of the agent's frame decoder and handshake
# with clang (libdmem's, libdchan's and libdtransport's sources compiled
# in, instrumented) and runs it for a bounded time.  Skips, saying why,
# when clang is missing.
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
work=$(mktemp -d "${TMPDIR:-/tmp}/dtrans-fuzz.XXXXXX")
inst="fuzz$$"
trap 'rm -rf "$work"; rm -f /dev/shm/dragon.*."$inst".* 2>/dev/null' EXIT
export DRAGON_INSTANCE="$inst"

flags="-g -O1 -fsanitize=fuzzer-no-link,address,undefined -D_GNU_SOURCE \
	-I$top_builddir -I$top_srcdir/libdmem/include -I$top_srcdir/libdmem \
	-I$top_srcdir/libdchan/include -I$top_srcdir/libdchan \
	-I$top_srcdir/libdtransport/include -I$top_srcdir/libdtransport -pthread"
for f in "$top_srcdir"/libdmem/*.c "$top_srcdir"/libdchan/*.c "$top_srcdir"/libdtransport/dtrans_*.c; do
	o="$work/$(basename "$(dirname "$f")")_$(basename "$f" .c).o"
	echo "$f $o"
done | xargs -P 2 -n 2 sh -c '"$0" '"$flags"' -c "$1" -o "$2" 2>>"'"$work"'/build.log" || exit 255' "$CLANG" ||
	{ cat "$work/build.log"; echo "FAIL: building the libraries for fuzzing"; exit 1; }
objs=$(ls "$work"/*.o)
t=link
# shellcheck disable=SC2086
if ! "$CLANG" $flags -fsanitize=fuzzer -o "$work/fuzz_$t" \
	"$top_srcdir/tests/dtransport/fuzz/fuzz_$t.c" $objs -lcrypto -lrt \
	>"$work/build_$t.log" 2>&1; then
	cat "$work/build_$t.log"
	echo "FAIL: building fuzz_$t"
	exit 1
fi
mkdir -p "$work/corpus_$t"
# inputs that once found a defect start every run
cp "$top_srcdir/tests/dtransport/fuzz/seeds_$t"/* "$work/corpus_$t/" 2>/dev/null || true
echo "fuzz_$t: running ${secs}s"
if ! (cd "$work" && ASAN_OPTIONS=detect_leaks=0 "./fuzz_$t" \
	-max_total_time="$secs" -max_len=4096 -timeout=10 \
	"corpus_$t" >"fuzz_$t.log" 2>&1); then
	tail -40 "$work/fuzz_$t.log"
	echo "FAIL: fuzz_$t found a problem"
	exit 1
fi
grep -E '^Done|#[0-9]+.*DONE' "$work/fuzz_$t.log" | tail -1 || true
echo "PASS: fuzz target ran clean"
