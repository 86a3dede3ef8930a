"""Dragon: a distributed runtime for processes, memory and messages.

``import dragon`` makes the Dragon machinery available to Python and
registers the 'dragon' multiprocessing start method::

    import dragon
    import multiprocessing as mp

    if __name__ == "__main__":
        mp.set_start_method("dragon")
        with mp.Pool(4) as pool:
            print(pool.map(abs, range(-4, 4)))

The package is a thin layer over the C libraries libdmem, libdchan,
libdtransport and libdlaunch, reached through a cffi extension compiled
against their public headers.  Below the context there is a small direct
API: :mod:`dragon.mem` (pools and allocations) and :mod:`dragon.channels`
(channels).

Across the nodes of a job (``dragon prog.py`` in a Slurm allocation),
:func:`nodes` lists the nodes, processes go round-robin over them, and a
:class:`Policy` places them otherwise (see :mod:`dragon.policy` and
:mod:`dragon.machine` for the pids of processes on other nodes).
"""
from ._dragon_cffi import ffi as _ffi, lib as _lib
from ._errors import DragonError, NodeLostError, PoolFullError, strerror
from . import context as _context
from .machine import (Node, LostNode, lost_node, nodes, node_count, this_node,
                      pid_node, os_pid)
from .policy import Policy


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

_context.register()


def _import_mp_submodules():
    """Programs written for Dragon name multiprocessing.queues.Queue and
    the like right after ``import dragon``: make the submodules a 'dragon'
    program touches attributes of multiprocessing."""
    import importlib
    for name in ("queues", "connection", "synchronize", "pool", "managers",
                 "sharedctypes"):
        try:
            importlib.import_module("multiprocessing." + name)
        except ImportError:  # synchronize without sem_open: as stock
            pass


_import_mp_submodules()

__all__ = ["DragonError", "NodeLostError", "PoolFullError", "strerror",
           "__version__", "library_versions", "Policy", "Node", "nodes",
           "node_count", "this_node", "pid_node", "os_pid", "LostNode",
           "lost_node"]
