"""Starting a 'dragon' process: spawn semantics, through the runtime.

The parent pickles the preparation data and the Process object as the
spawn start method does.  Two ways to start the child, both through the
runtime:

* the fast path: the bytes go to a spare child that this process's zygote
  (see :mod:`dragon._zygote`, a warm interpreter the runtime started with
  ``dlaunch_spawn``) forked ahead and handed over; the child prepares
  itself as a spawned one would.  The parent has the real pid and a pidfd
  of the child (the sentinel); at join it reads the exit status of the
  zombie from /proc and has the zygote reap it.  The runtime has adopted
  the child (``dlaunch_proc_adopt``), so it knows it as it knows its own;
* the plain path, when no zygote can be had (no pidfd_open, the zygote
  failed to start or is gone, or ``DRAGON_ZYGOTE=0``): the bytes go into an
  allocation of the runtime's default pool and ``dlaunch_spawn`` starts a
  fresh interpreter whose command line names it.  The sentinel comes from
  ``dlaunch_proc_fd``, the status from ``dlaunch_wait`` and
  ``dlaunch_status_code``, signals go through ``dlaunch_signal``.

Either way ``pid`` is the OS pid, ``sentinel`` a real descriptor that
becomes readable when the child ends (what
multiprocessing.connection.wait() selects on), and ``exitcode`` follows
Python's convention (the negative signal number for a killed process).
Under the launcher, either way, the child's stdout and stderr are pipes
of its own, which the runtime forwards whole lines at a time (see
dragon(1)); in an embedded runtime they are the parent's.

Under a runtime over several nodes, the child goes where its placement
policy says (see :mod:`dragon.policy`; round-robin by default).  On the
caller's node it starts as above; on another node (:class:`RemotePopen`)
the caller's starter on that node has its zygote there fork it (see
:mod:`dragon._rstart`), or, when there can be no starter, the services of
that node start a fresh interpreter, with the start data inline on its
command line (the caller cannot reach that node's pool).  Its ``pid`` is
encoded above every OS pid (see :mod:`dragon.machine`), its sentinel is
the read end of a pipe that the caller closes when the starter (or
``dlaunch_wait``) reports the end, and signals go through
``dlaunch_signal`` to that node.

This module holds only the Popen classes: the zygote's protocol, both
ends, is :mod:`dragon._zygote`; a fresh interpreter's command line,
environment and stdio are :mod:`dragon._spawn`.
"""
import errno
import io
import os
import select
import signal
import threading
import time

from multiprocessing import reduction, spawn, util
from multiprocessing.context import set_spawning_popen

from . import _holders, _rstart, _spawn, _zygote, machine, policy, runtime
from ._consts import SLICE_S
from ._dragon_cffi import ffi, lib
from ._errors import NodeLostError


def _payload(popen, process_obj, extra=None):
    prep_data = spawn.get_preparation_data(process_obj._name)
    prep_data["dragon_parent_pid"] = os.getpid()
    prep_data["dragon_ignored_signals"] = _spawn.ignored_signals()
    if extra:
        prep_data.update(extra)
    fp = io.BytesIO()
    set_spawning_popen(popen)
    try:
        # Connection ends among the arguments go to this child: if it dies
        # before it takes them, they must not stay in flight for ever.
        with _holders.capture_pending() as popen._in_flight:
            reduction.dump(prep_data, fp)
            reduction.dump(process_obj, fp)
    finally:
        set_spawning_popen(None)
    return fp.getvalue()


def _select(fds, timeout, what):
    """The fds of fds that are readable, waiting up to timeout seconds
    (None: as long as it takes) in slices of SLICE_S: once the runtime
    has lost a node, a wait that goes on raises NodeLostError (what: the
    operation, for its message)."""
    if timeout is not None and timeout <= SLICE_S:
        return select.select(fds, [], [], max(0.0, timeout))[0]
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = SLICE_S if deadline is None else max(0.0, min(SLICE_S, deadline - time.monotonic()))
        ready = select.select(fds, [], [], left)[0]
        if ready or (deadline is not None and time.monotonic() >= deadline):
            return ready
        machine.check_lost(what)


class _Base:
    """The contract of multiprocessing's Popen objects (see
    multiprocessing.popen_fork.Popen): pid, sentinel, returncode, poll,
    wait, terminate, kill, close."""

    method = "dragon"

    def __init__(self, process_obj):
        util._flush_std_streams()
        self.returncode = None
        self.finalizer = None
        self._launch(process_obj)

    @staticmethod
    def DupFd(fd):
        # Objects holding a file descriptor (sockets, stock Connections)
        # reach the child through multiprocessing's resource sharer, which
        # needs no inheritance.
        from multiprocessing import resource_sharer
        return resource_sharer.DupFd(fd)

    def duplicate_for_child(self, fd):
        return fd

    def _ended_fds(self):
        return [self.sentinel]

    def _ended(self, timeout):
        return bool(_select(self._ended_fds(), timeout,
                            "waiting for process %d" % self.pid))

    def poll(self, flag=os.WNOHANG):
        if self.returncode is None:
            if flag & os.WNOHANG and not self._ended(0):
                return None
            self.returncode = self._status()
        return self.returncode

    def wait(self, timeout=None):
        if self.returncode is None:
            if not self._ended(timeout):
                return None
            return self.poll(0)
        return self.returncode

    def terminate(self):
        self._send_signal(signal.SIGTERM)

    def kill(self):
        self._send_signal(signal.SIGKILL)

    def close(self):
        if self.finalizer is not None:
            self.finalizer()


class ZygotePopen(_Base):
    """A child forked by this process's zygote."""

    def __init__(self, process_obj, extra=None):
        self._extra = extra
        super().__init__(process_obj)

    def _launch(self, process_obj):
        z = _zygote.zygote()
        payload = _payload(self, process_obj, self._extra)
        done_r, done_w = os.pipe()
        try:
            self.pid, self.sentinel = z.start(payload, done_w)
            _holders.expect_receiver(self._in_flight, self.pid)
            _holders.receiver_started(self._in_flight, self.pid)
        except BaseException:
            os.close(done_r)
            raise
        finally:
            os.close(done_w)
        os.set_blocking(done_r, False)
        # The child's report on the done pipe: its exit code once read;
        # _done_open turns false at end of file without one (the child
        # ended otherwise, or closed the pipe itself), after which only the
        # pidfd tells the end.
        self._done = done_r
        self._done_open = True
        self._code = None
        self._report_lock = threading.Lock()
        self._zygote = z
        self._status_lock = threading.Lock()
        self.finalizer = util.Finalize(self, util.close_fds, (self.sentinel, done_r))

    def _ended_fds(self):
        return [self.sentinel, self._done] if self._done_open else [self.sentinel]

    def _take_report(self):
        """Read what the done pipe has (it was readable): True once the
        exit code is here."""
        with self._report_lock:
            if self._code is None and self._done_open:
                try:
                    data = os.read(self._done, 1)
                except BlockingIOError:  # another thread took it
                    data = None
                except OSError:
                    data = b""
                if data:
                    self._code = data[0]
                elif data is not None:
                    self._done_open = False
            return self._code is not None

    def _ended(self, timeout):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._code is None:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = _select(self._ended_fds(), left, "waiting for process %d" % self.pid)
            if self.sentinel in ready:
                return True
            if ready:
                if self._take_report():
                    return True
                continue
            return False
        return True

    def wait(self, timeout=None):
        if self.returncode is None:
            if not self._ended(timeout):
                return None
            return self.poll(0)
        return self.returncode

    def _status(self):
        # One reap per child, whichever thread joins first.
        with self._status_lock:
            if self.returncode is None:
                self._ended(None)
                self.returncode = self._zygote.status(self.pid, self.sentinel,
                                                      self._code)
            return self.returncode

    def _send_signal(self, sig):
        if self.returncode is None:
            try:
                signal.pidfd_send_signal(self.sentinel, sig)
            except ProcessLookupError:
                pass


class SpawnPopen(_Base):
    """A child started as a fresh interpreter by the runtime."""

    def __init__(self, process_obj, extra=None):
        self._extra = extra
        super().__init__(process_obj)

    def _launch(self, process_obj):
        rt = runtime.current()
        data = _payload(self, process_obj, self._extra)
        alloc = rt.pool.alloc(len(data))
        try:
            alloc.view[:] = data
            argv = _spawn.interpreter_argv(_spawn.CHILD_CODE, _spawn.CHILD_FLAG,
                                           _spawn.alloc_text(alloc))
            self.pid = _spawn.spawn_interpreter(rt, argv, _spawn.environ_copy())
            _holders.expect_receiver(self._in_flight, self.pid)
            _holders.receiver_started(self._in_flight, self.pid)
        except BaseException:
            alloc.free()
            raise
        self._rt = rt
        fd = ffi.new("int *")
        runtime.dlaunch_check(lib.dlaunch_proc_fd(rt.handle, self.pid, fd),
                              "sentinel of process %d" % self.pid)
        self.sentinel = fd[0]
        self.finalizer = util.Finalize(self, util.close_fds, (self.sentinel,))

    def _status(self):
        st = ffi.new("dlaunch_status_t *")
        runtime.dlaunch_check(
            lib.dlaunch_wait(self._rt.handle, self.pid, lib.DLAUNCH_FOREVER, st),
            "waiting for process %d" % self.pid)
        return lib.dlaunch_status_code(st)

    def _send_signal(self, sig):
        if self.returncode is None and self._rt.alive:
            runtime.dlaunch_check(lib.dlaunch_signal(self._rt.handle, self.pid, int(sig)),
                                  "signalling process %d" % self.pid)


class RemotePopen(_Base):
    """A child started on another node: by this process's starter there
    (see :mod:`dragon._rstart`), or as a fresh interpreter."""

    #: Connections pickled for this child go to another node (see
    #: dragon.connection.Shared).
    crosses_nodes = True

    #: The exit code reported when the runtime could not say how the child
    #: ended (its node was lost, or the runtime is stopping).
    UNKNOWN_END = 255

    def __init__(self, process_obj, node, extra):
        self._node = node
        self._extra = extra
        super().__init__(process_obj)

    def _launch(self, process_obj):
        rt = runtime.current()
        extra = dict(self._extra or {})
        extra["dragon_parent_node"] = machine.this_node()
        data = _payload(self, process_obj, extra)
        try:
            starter, os_pid = _rstart.start(self._node, data)
        except _rstart.StarterError as e:
            util.info("dragon: starting a fresh interpreter on node %d: %s",
                      self._node, e)
            starter = None
            argv = _spawn.interpreter_argv(_spawn.CHILD_CODE, _spawn.REMOTE_FLAG,
                                           *_spawn.inline_pieces(data))
            # dlaunch_spawn names a process of another node as machine does
            # (DLAUNCH_PID_ON): the runtime's calls take the same number.
            self.pid = _spawn.spawn_interpreter(rt, argv, _spawn.remote_environ(),
                                                node=self._node)
        else:
            self.pid = machine.encode_pid(self._node, os_pid)
        # The child cannot record itself in this node's holder records of
        # the Pipe ends it was given: it holds them from now on.
        _holders.hand_over(self._in_flight, self.pid)
        _holders.receiver_started(self._in_flight, self.pid)
        self._rt = rt
        self._code = None
        r, w = os.pipe()
        self.sentinel = r
        self.finalizer = util.Finalize(self, util.close_fds, (r,))
        if starter is None:
            self._watch_thread(w)
        else:
            # The starter reports the end; if it is lost first, the child's
            # node's services do.
            starter.watch(os_pid, lambda code: self._ended_with(code, w),
                          lambda: self._watch_thread(w))

    def _watch_thread(self, w):
        threading.Thread(target=self._watch, args=(w,), daemon=True,
                         name="dragon-watch-%d" % self.pid).start()

    def _ended_with(self, code, w):
        self._code = code
        os.close(w)

    def _watch(self, w):
        """Wait for the child's end through its node's services; closing
        w makes the sentinel readable."""
        st = ffi.new("dlaunch_status_t *")
        try:
            rc = lib.dlaunch_wait(self._rt.handle, self.pid, lib.DLAUNCH_FOREVER, st)
            if rc == 0:
                self._code = lib.dlaunch_status_code(st)
            else:
                util.info("dragon: how process %d on node %d ended is unknown: %s",
                          self.pid, self._node, runtime.dlaunch_error(rc, "waiting"))
                self._code = self.UNKNOWN_END
        finally:
            os.close(w)

    def _lost(self):
        """Whether the runtime lost the child's node: its end is then
        UNKNOWN_END, without a word from that node's services (which
        cannot answer)."""
        lost = machine.lost_node()
        if lost is None or lost.index != self._node:
            return False
        if self._code is None:
            self._code = self.UNKNOWN_END
        return True

    def _ended(self, timeout):
        if self._lost():
            return True
        try:
            return super()._ended(timeout)
        except NodeLostError:
            if self._lost():
                return True
            raise

    def _status(self):
        self._ended(None)
        return self._code

    def _send_signal(self, sig):
        if self.returncode is None and self._rt.alive and not self._lost():
            rc = lib.dlaunch_signal(self._rt.handle, self.pid, int(sig))
            # -ESRCH: it ended and its zygote reaped it, and its node's
            # services have not had the report yet (ZygotePopen ignores
            # the same end).
            if rc < 0 and rc not in (-lib.DLAUNCH_E_NOPROC, -errno.ESRCH):
                runtime.dlaunch_check(rc, "signalling process %d on node %d"
                                      % (self.pid, self._node))


def _node_bound(process_obj):
    """A process that must run on its parent's node: a Manager's server,
    whose address (a Unix socket by default) the parent connects to."""
    target = getattr(process_obj, "_target", None)
    from multiprocessing import managers
    return getattr(target, "__func__", None) is managers.BaseManager._run_server.__func__


def _placement(process_obj):
    """(node index, extra start data) of a start now: the process's own
    policy, else the one of the ``with`` block around the start.  Without
    either, a process that listens on a loopback address keeps its
    children on its node, where they can connect to it."""
    pol = getattr(process_obj, "_dragon_policy", None) or policy.active()
    if pol is None and _node_bound(process_obj):
        # The address is the server's second argument (BaseManager.start).
        args = getattr(process_obj, "_args", ())
        policy.note_local_server(process_obj, args[1] if len(args) > 1 else None)
        pol = policy.Policy(placement=policy.Policy.Placement.LOCAL)
    elif pol is None and machine.node_count() > 1 and policy.listens_on_loopback():
        pol = policy.Policy(placement=policy.Policy.Placement.LOCAL)
    extra = {"dragon_cpu_affinity": pol.cpu_affinity} if pol and pol.cpu_affinity else None
    return policy.place(pol), extra


def Popen(process_obj):
    """The Popen of DragonProcess: on another node when the placement says
    so; here through the zygote when there is one; a start the zygote
    cannot make (it could not fork, or it is gone) is made by the runtime
    as a fresh interpreter."""
    node, extra = _placement(process_obj)
    if node != machine.this_node():
        return RemotePopen(process_obj, node, extra)
    z = _zygote.zygote()
    if z is not None:
        try:
            return ZygotePopen(process_obj, extra)
        except _zygote.ZygoteError as e:
            util.info("dragon: starting a fresh interpreter instead: %s", e)
            if z.dead:
                _zygote.lost_zygote(z)
    return SpawnPopen(process_obj, extra)


Popen.method = "dragon"
