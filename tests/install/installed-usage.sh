#!/bin/sh
# Installs the build into a scratch DESTDIR and uses it the way a user
# would: headers and libraries found through pkg-config, the Python package
# imported from where it was installed, man pages found by man.
set -eu
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dragon-installed.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
dest=$tmp/root

$MAKE -s -C "$top_builddir" install DESTDIR="$dest" >"$tmp/install.log" 2>&1 ||
	{ cat "$tmp/install.log"; echo "FAIL: make install DESTDIR=$dest"; exit 1; }

export PKG_CONFIG_SYSROOT_DIR="$dest"
export PKG_CONFIG_PATH="$dest$libdir/pkgconfig"
export PKG_CONFIG_LIBDIR="$dest$libdir/pkgconfig"
for m in dragon dragon-dmem dragon-dchan dragon-dtransport dragon-dlaunch; do
	pkg-config --exists "$m" || { echo "FAIL: pkg-config does not find $m"; exit 1; }
done
libs=$(pkg-config --libs dragon)
for l in -ldlaunch -ldtransport -ldchan -ldmem; do
	case " $libs " in *" $l "*) ;; *) echo "FAIL: pkg-config --libs dragon lacks $l: $libs"; exit 1;; esac
done
echo "pkg-config --libs dragon: $libs"

# Compile exactly as a user would; no -I or -L into the source tree.  (A
# sanitizer build's libraries need the sanitizer runtime in the program too.)
CC="$CC ${SAN_FLAGS:-}"
$CC -o "$tmp/app" "$srcdir/installed_app.c" $(pkg-config --cflags --libs dragon)
out=$(LD_LIBRARY_PATH="$dest$libdir" "$tmp/app")
echo "$out"
echo "$out" | grep -q '^libdlaunch ' || { echo "FAIL: app output"; exit 1; }

# A program that needs only channels links -ldchan alone.
cat >"$tmp/chan.c" <<'EOC'
#include <dragon/dchan.h>
int main(void) { return dchan_version() == DCHAN_VERSION_NUMBER ? 0 : 1; }
EOC
$CC -o "$tmp/chan" "$tmp/chan.c" $(pkg-config --cflags --libs dragon-dchan)
LD_LIBRARY_PATH="$dest$libdir" "$tmp/chan"

# The channel examples build with -ldchan alone, as their READMEs say, and
# run against the installed libraries.
for ex in dchan_pingpong dchan_prodcons; do
	$CC -o "$tmp/$ex" "$top_srcdir/examples/c/$ex.c" \
		$(pkg-config --cflags --libs dragon-dchan) ||
		{ echo "FAIL: examples/c/$ex.c with dragon-dchan"; exit 1; }
done
(cd "$tmp" && DRAGON_INSTANCE="inst$$" LD_LIBRARY_PATH="$dest$libdir" \
	./dchan_pingpong 1000 && DRAGON_INSTANCE="inst$$" \
	LD_LIBRARY_PATH="$dest$libdir" ./dchan_prodcons >/dev/null) ||
	{ echo "FAIL: the channel examples do not run"; exit 1; }
echo "ok: channel examples build with dragon-dchan and run"

# Every example under examples/c builds against the installed tree.
for ex in "$top_srcdir"/examples/c/*.c; do
	[ -f "$ex" ] || continue
	$CC -o "$tmp/ex" "$ex" $(pkg-config --cflags --libs dragon) ||
		{ echo "FAIL: $ex does not build against the installed tree"; exit 1; }
	echo "ok: ${ex#$top_srcdir/} builds against the installed tree"
done

# The Python package imports from where it was installed.
if [ -z "$SANITIZER" ]; then
	v=$(cd "$tmp" && PYTHONPATH="$dest$pythondir" LD_LIBRARY_PATH="$dest$libdir" \
		"$PYTHON" -c 'import dragon; print(dragon.__version__)')
	[ "$v" = "$(pkg-config --modversion dragon)" ] ||
		{ echo "FAIL: installed dragon.__version__ is '$v'"; exit 1; }
	echo "ok: import dragon from $pythondir: $v"
	# The start-method hook is installed beside the package: a site
	# directory holding it knows 'dragon' before anything imports dragon.
	for f in dragon-start-method.pth _dragon_start_method.py; do
		[ -f "$dest$pythondir/$f" ] || { echo "FAIL: $pythondir/$f not installed"; exit 1; }
	done
	m=$(cd "$tmp" && LD_LIBRARY_PATH="$dest$libdir" "$PYTHON" -c '
import site, sys
site.addsitedir(sys.argv[1])
import multiprocessing as mp
assert "dragon" not in sys.modules
print(mp.get_context("dragon").get_start_method(), "dragon" in sys.modules)' "$dest$pythondir")
	[ "$m" = "dragon True" ] ||
		{ echo "FAIL: the installed .pth hook does not resolve 'dragon': '$m'"; exit 1; }
	echo "ok: dragon-start-method.pth installed and resolves 'dragon'"
fi

# The man pages are where man looks.
[ -f "$dest$mandir/man7/dragon.7" ] || { echo "FAIL: dragon.7 not installed"; exit 1; }
MANPATH="$dest$mandir" man -w dragon >/dev/null 2>&1 ||
	{ echo "FAIL: man does not find dragon(7) under $dest$mandir"; exit 1; }
echo "ok: man pages installed under $mandir"
