#!/bin/sh
# Lints every page under man/ with mandoc and groff, and checks that each
# function declared in a public header is named by some page.
set -u
cd "$top_srcdir/man" || exit 1
fail=0
n=0
for page in man[1-8]/*.[1-8]; do
	[ -f "$page" ] || continue
	n=$((n + 1))
	if head -n 1 "$page" | grep -q '^\.so '; then
		target=$(head -n 1 "$page" | cut -d' ' -f2)
		[ -f "$target" ] || { echo "FAIL: $page: .so target $target missing"; fail=1; }
		continue
	fi
	out=$(mandoc -Tlint -W warning "$page" 2>&1)
	[ -z "$out" ] || { echo "FAIL: mandoc -Tlint $page:"; echo "$out"; fail=1; }
	out=$(groff -man -Tutf8 -ww -z "$page" 2>&1)
	[ -z "$out" ] || { echo "FAIL: groff -ww $page:"; echo "$out"; fail=1; }
	for sec in NAME DESCRIPTION; do
		grep -q "^\.SH $sec" "$page" || { echo "FAIL: $page has no $sec section"; fail=1; }
	done
done
missing=""
for h in "$top_srcdir"/lib*/include/dragon/*.h; do
	for fn in $(grep -ohE '\b(dmem|dchan|dtrans|dlaunch)_[a-z0-9_]+\(' "$h" | tr -d '(' | sort -u); do
		grep -E '^[A-Za-z_].*[ *]'"$fn"'\(' "$h" >/dev/null 2>&1 || continue
		[ -f "man3/$fn.3" ] || grep -rqw -- "$fn" man1 man3 man7 2>/dev/null || missing="$missing $fn"
	done
done
[ -z "$missing" ] || { echo "FAIL: public functions without a man page:$missing"; fail=1; }
[ $fail = 0 ] && echo "ok: $n pages lint clean; every public function is documented"
exit $fail
