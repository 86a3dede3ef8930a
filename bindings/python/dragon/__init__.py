"""Dragon: a distributed runtime for processes, memory and messages.

``import dragon`` makes the Dragon machinery available to Python.  The
package is a thin layer over the C libraries libdmem, libdchan,
libdtransport and libdlaunch, reached through a cffi extension compiled
against their public headers.
"""
from ._dragon_cffi import ffi as _ffi, lib as _lib


def _version_string(number):
    return "%d.%d.%d" % (number >> 16, (number >> 8) & 0xFF, number & 0xFF)


#: The version of the Dragon libraries this package is running on.
__version__ = _version_string(_lib.dlaunch_version())

#: Versions of each library actually loaded.
library_versions = {
    "libdmem": _version_string(_lib.dmem_version()),
    "libdchan": _version_string(_lib.dchan_version()),
    "libdtransport": _version_string(_lib.dtrans_version()),
    "libdlaunch": _version_string(_lib.dlaunch_version()),
}


def strerror(code):
    """Text of a negative error code returned by any Dragon library."""
    return _ffi.string(_lib.dlaunch_strerror(int(code))).decode()
