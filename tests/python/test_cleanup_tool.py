"""dragon-cleanup recognises only the segment names libdmem creates,
dragon.<user>.<instance>.<name> with both parts non-empty tokens of
[A-Za-z0-9_-]; anything else in /dev/shm is not Dragon's, whatever it
starts with.  (Only --dry-run here: other programs' runtimes may be
running on this machine.)"""
import os
import pwd
import re
import subprocess

import pytest

TOP = os.environ.get("top_builddir",
                     os.path.join(os.path.dirname(__file__), "..", "..", "build"))
CLEANUP = os.path.join(TOP, "libdlaunch", "dragon-cleanup")


def _user():
    return re.sub(r"[^A-Za-z0-9_-]", "_", pwd.getpwuid(os.geteuid()).pw_name)


@pytest.mark.skipif(not os.access(CLEANUP, os.X_OK), reason="no dragon-cleanup in this build")
def test_only_names_the_project_creates():
    u, me = _user(), os.getpid()
    # These instance names never reach a live runtime's segments: the
    # pid makes them this test's.
    valid = ["dragon.%s.ctest%d.x" % (u, me), "dragon.%s.ctest%d.default" % (u, me)]
    foreign = ["dragon.%s.ctest%d" % (u, me), "dragon.%s..ctest%d" % (u, me),
               "dragon.%s.ctest%d." % (u, me), "dragon.%s.ctest%d.a.b" % (u, me),
               "dragon.%s.ctest%d.a b" % (u, me), "dragon.%s.ctest%d.%s" % (u, me, "n" * 65),
               "dragon.%sx.ctest%d.y" % (u, me)]
    made = []
    try:
        for name in valid + foreign:
            with open("/dev/shm/" + name, "w"):
                made.append(name)
        out = subprocess.run([CLEANUP, "--dry-run"], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        listed = {line.split("/dev/shm/", 1)[1] for line in out.stdout.splitlines()
                  if line.startswith("would remove /dev/shm/")}
        assert set(valid) <= listed
        assert not listed & set(foreign), sorted(listed & set(foreign))
        out = subprocess.run([CLEANUP, "--instance", "ctest%d" % me], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        left = sorted(n for n in os.listdir("/dev/shm") if "ctest%d" % me in n)
        assert left == sorted(foreign)
    finally:
        for name in made:
            try:
                os.unlink("/dev/shm/" + name)
            except FileNotFoundError:
                pass
