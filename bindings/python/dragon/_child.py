"""The child's side of the 'dragon' start method.

:func:`run_payload` is what a spawned child does with the bytes spawn
would have written to its stdin (preparation data, then the Process
object): it is shared by children forked from the zygote and children
started as fresh interpreters (:func:`main`, the fallback path).
"""
import io
import os
import sys

#: (path, identity, code object) of the parent's main module, compiled by
#: the zygote before it forked this process (see compile_main); None
#: elsewhere.
main_code = None


def _identity(path):
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def compile_main(path):
    """Compile the parent's main module once, in the zygote, so that each
    child imports it as ``__mp_main__`` without compiling it again (runpy
    compiles a script on every run_path).  Nothing is executed here.  A
    file that is not plain source, or whose compilation warns or fails, is
    left to runpy, so that each child behaves exactly as a spawned one."""
    global main_code
    import warnings
    from importlib.util import MAGIC_NUMBER
    try:
        ident = _identity(path)
        with io.open_code(path) as f:
            source = f.read()
        if source[:len(MAGIC_NUMBER)] == MAGIC_NUMBER:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            code = compile(source, path, "exec", dont_inherit=True)
    except (OSError, SyntaxError, ValueError, Warning):
        return
    # runpy asks the path hooks whether the script is an archive (the zip
    # importer opens and reads it), and nothing remembers a plain file:
    # the answer is remembered here (sys.path_importer_cache, which runpy
    # consults first) for the children.
    import pkgutil
    if pkgutil.get_importer(path) is not None:
        return
    sys.path_importer_cache[path] = None
    main_code = (path, ident, code)


def _prepare(preparation_data):
    """spawn.prepare, with the main module's code object from the zygote
    when the file has not changed since it was compiled."""
    from multiprocessing import spawn
    cached, path = main_code, preparation_data.get("init_main_from_path")
    if cached is not None and path == cached[0]:
        try:
            same = _identity(path) == cached[1]
        except OSError:
            same = False
        if not same:  # runpy looks at the file afresh
            sys.path_importer_cache.pop(path, None)
            cached = None
    else:
        cached = None
    if cached is None:
        spawn.prepare(preparation_data)
        return
    import runpy
    compile_file = runpy._get_code_from_file

    def get_code(*args):
        fname = args[-1]
        return (cached[2], fname) if fname == path else compile_file(*args)
    runpy._get_code_from_file = get_code
    try:
        spawn.prepare(preparation_data)
    finally:
        runpy._get_code_from_file = compile_file


def run_payload(payload, tracker_fd, done_fd=-1):
    """Prepare this interpreter as spawn does and run the process; returns
    the exit code (0 to 255, as the OS reports it).  The interpreter's
    exit is finished here (threads joined, atexit handlers run, streams
    flushed), so the caller may leave with os._exit.  done_fd, when given,
    is where the code is reported once that is done (see
    :func:`_report_done`)."""
    from multiprocessing import process, reduction, spawn
    if tracker_fd >= 0:
        from multiprocessing import resource_tracker
        resource_tracker._resource_tracker._fd = tracker_fd
    data = io.BytesIO(payload)
    process.current_process()._inheriting = True
    try:
        preparation_data = reduction.pickle.load(data)
        take_signals(preparation_data.get("dragon_ignored_signals", ()))
        _take_affinity(preparation_data.get("dragon_cpu_affinity"))
        parent_sentinel = _parent_sentinel(preparation_data)
        _prepare(preparation_data)
        self = reduction.pickle.load(data)
    finally:
        del process.current_process()._inheriting
    parent_node = preparation_data.get("dragon_parent_node")
    if parent_node is not None:
        from . import machine
        self._parent_pid = machine.encode_pid(parent_node, self._parent_pid)
    me = os.getpid()
    code = self._bootstrap(parent_sentinel)
    _finish_interpreter()
    code = _exit_status(code)
    # A process the target forked (os.fork) that returned here too is not
    # the one the parent waits for.
    if done_fd >= 0 and os.getpid() == me:
        _report_done(done_fd, code)
    return code


def take_signals(ignored):
    """Ignore the signals the parent ignored when it started this process
    (see :func:`dragon._spawn.ignored_signals`), as a spawned child does,
    which inherits them through exec; SIGINT, when the parent did not
    ignore it, raises KeyboardInterrupt as in a fresh interpreter.  The
    other signals are at a fresh interpreter's dispositions already."""
    import signal
    ignored = set(ignored)
    for sig in ignored:
        try:
            signal.signal(sig, signal.SIG_IGN)
        except (OSError, ValueError):
            pass  # not a signal this interpreter can set
    if signal.SIGINT not in ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _exit_status(code):
    # What os._exit(code) leaves in the wait status: the low 8 bits.
    try:
        return int(code) & 0xff
    except (TypeError, ValueError, OverflowError):
        return 1


def _report_done(done_fd, code):
    """Everything the process does is done: give up its holdings of
    Connections and sync objects and close every descriptor (so that what
    the parent sees after join, pipes and Connections at end of file,
    locks released, is what it would see after the exit), then write the
    exit code to the parent."""
    try:
        from .connection import announce_exit
        announce_exit()
    except Exception:
        pass
    try:
        from ._holders import release_all
        release_all()
    except Exception:
        pass
    try:
        os.closerange(0, done_fd)
        os.closerange(done_fd + 1, os.sysconf("SC_OPEN_MAX"))
        os.write(done_fd, bytes([code]))
    except OSError:
        pass  # the parent reads the status from the zombie instead


def _remote_parent_sentinel(node, os_pid):
    """The sentinel of a parent on another node, whose OS pid means nothing
    here: a pipe whose write end a thread closes once the runtime's
    descriptor for the parent (dlaunch_proc_fd, asking the parent's node)
    is ready.  The thread makes the call, so that the start does not wait
    for that node; when the runtime cannot name the parent the pipe stays
    open (the runtime ends this process when its job ends).  The runtime
    knows of the parent's end once it is reaped: at once for a process it
    started, when its own parent joins it for one the zygote started."""
    import select
    import threading
    from . import machine, runtime
    from ._dragon_cffi import ffi, lib
    global _remote_parent_w
    r, _remote_parent_w = os.pipe()
    rt = runtime.current(start=False)
    if rt is None:
        return r
    pid = machine.encode_pid(node, os_pid)
    w = _remote_parent_w

    def watch():
        fd = ffi.new("int *")
        try:
            if lib.dlaunch_proc_fd(rt.handle, pid, fd) < 0:
                return
        except Exception:
            return
        try:
            select.select([fd[0]], [], [])
        finally:
            os.close(fd[0])
        os.close(w)

    threading.Thread(target=watch, daemon=True, name="dragon-parent-watch").start()
    return r


def _take_affinity(cpus):
    """Bind this process to the CPUs of its placement policy."""
    if not cpus:
        return
    try:
        os.sched_setaffinity(0, cpus)
    except (OSError, ValueError) as e:
        import socket
        sys.stderr.write("dragon: cannot bind process %d on %s to CPUs %s "
                         "(Policy.cpu_affinity): %s; this node's CPUs are %s\n"
                         % (os.getpid(), socket.gethostname(), cpus, e,
                            sorted(os.sched_getaffinity(0))))
        sys.stderr.flush()
        os._exit(1)


#: The write end of a remote parent's sentinel (see _parent_sentinel).
_remote_parent_w = None


def _parent_sentinel(prep):
    node = prep.get("dragon_parent_node")
    if node is not None:
        return _remote_parent_sentinel(node, prep["dragon_parent_pid"])
    try:
        return os.pidfd_open(prep["dragon_parent_pid"])
    except (OSError, KeyError):  # the parent is already gone
        r, w = os.pipe()
        os.close(w)
        return r


def _finish_interpreter():
    # What Py_Finalize does before tearing the interpreter down and that a
    # program can observe: non-daemon threads are waited for, then the
    # atexit handlers run (weakref.finalize, the runtime's teardown, the
    # user's own), then the standard streams are flushed.
    import atexit
    import threading
    try:
        threading._shutdown()
    except Exception:
        pass
    atexit._run_exitfuncs()
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except Exception:
            pass


def main():
    """Entry point of a fresh interpreter started by the runtime:
    ``python -c ... --dragon-child ALLOC_TEXT``, the payload an allocation
    of the runtime's default pool, freed once read; or, on another node
    than the parent's, ``python -c ... --dragon-remote-child PIECES...``,
    the payload inline (see :func:`dragon._spawn.inline_pieces`)."""
    # As spawn's children: only the standard descriptors are inherited.
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    from . import _spawn, runtime
    rt = runtime.current(start=False)
    if rt is None:
        sys.stderr.write("dragon: child started without a runtime "
                         "(%s is not set)\n" % runtime.POOL_ENV)
        sys.exit(1)
    if sys.argv[1] == _spawn.REMOTE_FLAG:
        payload = _spawn.inline_data(sys.argv[2:])
    else:
        alloc = _spawn.alloc_from_text(rt.pool, sys.argv[2])
        payload = bytes(alloc.view)
        alloc.free()
    code = run_payload(payload, -1)
    os._exit(code)
