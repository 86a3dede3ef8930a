"""Starting a 'dragon' process: spawn semantics, the OS pid, a pidfd sentinel.

The parent pickles the preparation data and the Process object (as the
spawn start method does) into an allocation of the runtime's default pool
and starts a fresh interpreter whose command line names that allocation.
The child attaches the pool through the environment, reads and frees the
allocation, imports the parent's main module as __mp_main__ and runs the
process.  No file descriptor needs to be inherited, so any launcher that
can start a program with an argv and an environment can start a child.

The sentinel is a pidfd of the child: a real file descriptor that becomes
readable when the child exits, which is what
multiprocessing.connection.wait() selects on.
"""
import io
import os
import sys

from multiprocessing import popen_fork, reduction, spawn, util
from multiprocessing.context import set_spawning_popen

from . import runtime

CHILD_FLAG = "--dragon-child"
_CHILD_CODE = "from dragon._child import main; main()"


def _command_line(alloc_text, tracker_fd):
    exe = spawn.get_executable()
    return exe, [exe] + util._args_from_interpreter_flags() + [
        "-c", _CHILD_CODE, CHILD_FLAG, alloc_text, str(os.getpid()),
        str(tracker_fd)]


class Popen(popen_fork.Popen):
    """The Popen of DragonProcess (see multiprocessing.popen_fork.Popen for
    the contract: pid, sentinel, poll, wait, terminate, kill, close)."""

    method = "dragon"

    @staticmethod
    def DupFd(fd):
        # Objects holding a file descriptor (sockets, stock Connections)
        # reach the child through multiprocessing's resource sharer, which
        # needs no inheritance.
        from multiprocessing import resource_sharer
        return resource_sharer.DupFd(fd)

    def _launch(self, process_obj):
        rt = runtime.current()
        prep_data = spawn.get_preparation_data(process_obj._name)
        fp = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(prep_data, fp)
            reduction.dump(process_obj, fp)
        finally:
            set_spawning_popen(None)
        data = fp.getbuffer()
        alloc = rt.pool.alloc(len(data))
        try:
            alloc.view[:] = data
            # Children share this process's resource tracker (as spawn's
            # do) when it can be handed down.
            from multiprocessing import resource_tracker
            try:
                tracker_fd = resource_tracker.getfd()
                actions = [(os.POSIX_SPAWN_DUP2, tracker_fd, tracker_fd)]
            except Exception:
                tracker_fd, actions = -1, []
            exe, argv = _command_line(_alloc_text(alloc), tracker_fd)
            self.pid = os.posix_spawn(exe, argv, os.environ, file_actions=actions)
        except BaseException:
            alloc.free()
            raise
        self.sentinel = os.pidfd_open(self.pid)
        self.finalizer = util.Finalize(self, util.close_fds, (self.sentinel,))


def _alloc_text(alloc):
    from ._dragon_cffi import ffi, lib
    d = ffi.from_buffer("dmem_alloc_desc_t *", alloc.descriptor)
    buf = ffi.new("char[]", lib.DMEM_ALLOC_DESC_TEXT_MAX)
    n = lib.dmem_alloc_desc_to_text(d, buf, len(buf))
    if n < 0:
        raise OSError("cannot format allocation descriptor")
    return ffi.string(buf).decode()


def _alloc_from_text(pool, text):
    from ._dragon_cffi import ffi, lib
    from ._errors import check
    d = ffi.new("dmem_alloc_desc_t *")
    check(lib.dmem_alloc_desc_from_text(text.encode(), d), "child start data")
    return pool.attach_alloc(bytes(ffi.buffer(d)))


def is_dragon_child(argv=None):
    argv = sys.argv if argv is None else argv
    return len(argv) >= 2 and argv[1] == CHILD_FLAG
