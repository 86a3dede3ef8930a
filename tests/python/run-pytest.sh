#!/bin/sh
# Runs the Python tests against the build tree with the configured Python.
set -u
if [ -n "$SANITIZER" ]; then
	# The interpreter itself is not built with the sanitizer runtime, so a
	# sanitized extension cannot load into it; the C suites cover this build.
	echo "SKIP: Python tests do not run in a $SANITIZER build"
	exit 77
fi
"$PYTHON" -c 'import pytest' 2>/dev/null || {
	echo "FAIL: pytest is missing for $PYTHON: run make deps (python3-pytest)"; exit 1; }
export PYTHONPATH="$top_builddir/bindings/python${PYTHONPATH:+:$PYTHONPATH}"
cd "$top_srcdir/tests/python" || exit 1
exec "$PYTHON" -m pytest -ra -p no:cacheprovider "$@" .
