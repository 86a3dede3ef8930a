#!/bin/sh
# Every C source and header of the project matches .clang-format: the
# layout is the tool's, so nobody argues about it and diffs stay about
# content.  `clang-format -i FILE` mends a file this check names.
set -u
if ! command -v clang-format >/dev/null 2>&1; then
	echo "SKIP: clang-format is not installed (make deps installs it)"
	exit 77
fi
cd "$top_srcdir" || exit 99
fail=0
n=0
# bindings/python/dragon_cdef.h is read by cffi's parser, not a compiler:
# its layout is cffi's.
for f in $(find libdmem libdchan libdtransport libdlaunch tests bench examples \
	bindings -name '*.[ch]' ! -name dragon_cdef.h ! -path '*cffi-build*' | sort); do
	n=$((n + 1))
	if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
		echo "FAIL: $f does not match .clang-format (run: clang-format -i $f)"
		fail=1
	fi
done
[ $fail = 0 ] && echo "ok: $n C files match .clang-format"
exit $fail
