"""Entry point of a process started by the 'dragon' start method."""
import io
import os
import sys


def main():
    from . import _popen, runtime
    from multiprocessing import process, reduction, spawn

    alloc_text, parent_pid, tracker_fd = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if tracker_fd >= 0:
        from multiprocessing import resource_tracker
        resource_tracker._resource_tracker._fd = tracker_fd
    rt = runtime.current(start=False)
    if rt is None:
        sys.stderr.write("dragon: child started without a runtime "
                         "(%s is not set)\n" % runtime.POOL_ENV)
        sys.exit(1)
    alloc = _popen._alloc_from_text(rt.pool, alloc_text)
    data = io.BytesIO(bytes(alloc.view))
    alloc.free()
    try:
        parent_sentinel = os.pidfd_open(parent_pid)
    except OSError:  # the parent is already gone: a sentinel that is ready
        parent_sentinel, w = os.pipe()
        os.close(w)
    process.current_process()._inheriting = True
    try:
        preparation_data = reduction.pickle.load(data)
        spawn.prepare(preparation_data)
        self = reduction.pickle.load(data)
    finally:
        del process.current_process()._inheriting
    sys.exit(self._bootstrap(parent_sentinel))
