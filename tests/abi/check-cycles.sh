#!/bin/sh
# The source files of one library call downward only: no two files of a
# library call each other, directly or around a circle.  A cycle means two
# objects share one home, or a handler calls back up into its dispatcher;
# either way the files cannot be read, tested or replaced one at a time.
#
# How: for each library's convenience archive (all of its code), an edge
# A -> B for every symbol A.o leaves undefined that B.o defines; tsort
# reports the loops of that graph.  Each loop is printed with the symbols
# that close it.
set -u
fail=0
for lib in dmem dchan dtransport dlaunch; do
	ar="$top_builddir/lib$lib/.libs/lib$lib-core.a"
	if [ ! -f "$ar" ]; then
		echo "FAIL: $ar is missing (build the tree first)"
		fail=1
		continue
	fi
	# "member.o symbol" lines: defined (D) and undefined (U).
	syms=$(nm -A "$ar" 2>/dev/null | awk -F: '{
		n = split($NF, f, " ")
		if (n == 2 && f[1] == "U") print "U", $(NF-1), f[2]
		else if (n == 3 && f[2] ~ /^[TDBRVW]$/) print "D", $(NF-1), f[3]
	}')
	edges=$(printf '%s\n' "$syms" | awk '
		$1 == "D" { def[$3] = $2 }
		$1 == "U" { use[++n] = $2 " " $3 }
		END {
			for (i = 1; i <= n; i++) {
				split(use[i], u, " ")
				if ((u[2] in def) && def[u[2]] != u[1])
					print u[1], def[u[2]], u[2]
			}
		}')
	# Every object is a node, so a lone file still sorts.
	loops=$( (printf '%s\n' "$edges" | awk 'NF == 3 { print $1, $2 }'
		printf '%s\n' "$syms" | awk '{ print $2, $2 }') |
		tsort 2>&1 >/dev/null | sed -n 's/^tsort: //p' |
		grep -v 'input contains a loop' | sort -u)
	if [ -n "$loops" ]; then
		fail=1
		echo "FAIL: lib$lib: files that call each other in a cycle:"
		for f in $loops; do
			printf '%s\n' "$edges" | awk -v f="$f" -v set=" $(echo $loops) " \
				'$1 == f && index(set, " " $2 " ") { print "    " $1 " -> " $2 "  (" $3 ")" }'
		done
	else
		echo "ok: lib$lib: no call cycles between its files"
	fi
done
exit $fail
