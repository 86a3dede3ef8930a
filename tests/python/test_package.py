"""The dragon package imports from the build tree and reports the versions of
the libraries it is running on."""
import os
import re

import dragon


def test_version_is_the_package_version():
    assert dragon.__version__ == os.environ["PACKAGE_VERSION"]


def test_every_library_reports_the_same_version():
    assert set(dragon.library_versions) == {
        "libdmem", "libdchan", "libdtransport", "libdlaunch"}
    for name, version in dragon.library_versions.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), name
        assert version == dragon.__version__, name


def test_extension_is_the_build_trees():
    top = os.path.realpath(os.environ["top_builddir"])
    assert os.path.realpath(dragon._dragon_cffi.__file__).startswith(top)


def test_strerror_of_errno_and_library_codes():
    assert dragon.strerror(-12) == os.strerror(12)
    assert "Unknown" not in dragon.strerror(-1001)
