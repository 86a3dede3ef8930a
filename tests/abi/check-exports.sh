#!/bin/sh
# Each shared library exports only its own prefix, carries SONAME
# lib<name>.so.<major>, and links only to the Dragon layers below it.
set -u
fail=0
err() { echo "FAIL: $*"; fail=1; }

check_lib() { # dir name prefix allowed-deps
	so=$top_builddir/$1/.libs/$2.so
	[ -e "$so" ] || { err "$so not built"; return; }
	bad=$(nm -D --defined-only "$so" | awk '$2 != "A" {print $3}' | grep -v "^$3_" || true)
	[ -z "$bad" ] || err "$2 exports symbols outside $3_*: $(echo $bad | tr '\n' ' ')"
	n=$(nm -D --defined-only "$so" | awk '$2 != "A"' | grep -c "^.* $3_" || true)
	[ "$n" -gt 0 ] || err "$2 exports nothing"
	soname=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
	echo "$soname" | grep -Eq "^$2\.so\.[0-9]+$" || err "$2 has SONAME '$soname'"
	for dep in $(readelf -d "$so" | sed -n 's/.*(NEEDED).*\[\(libd[a-z]*\)\.so.*/\1/p'); do
		case " $4 " in *" $dep "*) ;; *) err "$2 links to $dep, which is not a layer below it";; esac
	done
	echo "ok: $2 ($soname, $n symbols)"
}

check_lib libdmem libdmem dmem ""
check_lib libdchan libdchan dchan "libdmem"
check_lib libdtransport libdtransport dtrans "libdchan libdmem"
check_lib libdlaunch libdlaunch dlaunch "libdtransport libdchan libdmem"
exit $fail
