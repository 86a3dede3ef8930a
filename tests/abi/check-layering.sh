#!/bin/sh
# A library's sources include only their own headers and the public headers
# of the layers below; nothing includes a layer above or another library's
# private headers.
set -u
fail=0
order="dmem dchan dtransport dlaunch"
rank() { i=0; for l in $order; do [ "$l" = "$1" ] && { echo $i; return; }; i=$((i + 1)); done; echo 99; }

for lib in $order; do
	r=$(rank $lib)
	for f in $(find "$top_srcdir/lib$lib" -name '*.[ch]'); do
		for inc in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*<dragon\/\([a-z]*\)\.h>.*/\1/p' "$f"); do
			ri=$(rank $inc)
			if [ "$ri" -gt "$r" ]; then
				echo "FAIL: ${f#$top_srcdir/} (lib$lib) includes <dragon/$inc.h>, a layer above"
				fail=1
			fi
		done
		if grep -Eq '#[[:space:]]*include[[:space:]]*"(\.\./|lib)' "$f"; then
			echo "FAIL: ${f#$top_srcdir/} includes a file from another directory"
			fail=1
		fi
	done
done
[ $fail = 0 ] && echo "ok: includes follow the layers ($order)"
exit $fail
