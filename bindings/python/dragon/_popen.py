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
Under the launcher the children's output goes where the parent's goes,
which the runtime forwards.
"""
import _signal
import io
import os
import select
import signal
import socket
import sys
import threading
import time

from multiprocessing import reduction, spawn, util
from multiprocessing.context import set_spawning_popen

from . import _holders, runtime
from ._dragon_cffi import ffi, lib

CHILD_FLAG = "--dragon-child"
_CHILD_CODE = "from dragon._child import main; main()"

#: Set to 0 to start every child as a fresh interpreter.
ZYGOTE_ENV = "DRAGON_ZYGOTE"

#: How long the zygote may take to start and connect (seconds).
ZYGOTE_START_TIMEOUT = 60.0


def _stdio_attr(rt):
    """Children's stdio: the parent's own descriptors in an embedded
    runtime (its services run in this process); forwarded by the runtime
    under the launcher.  stdin is /dev/null (multiprocessing closes it
    anyway)."""
    attr = ffi.new("dlaunch_spawn_attr_t *")
    attr.field_mask = lib.DLAUNCH_SPAWN_ATTR_STDIO
    mode = lib.DLAUNCH_STDIO_INHERIT if rt.embedded else lib.DLAUNCH_STDIO_FORWARD
    attr.stdio = [lib.DLAUNCH_STDIO_DEVNULL, mode, mode]
    return attr


def _spawn(rt, argv, env=None):
    """dlaunch_spawn argv[0] with argv; env (a dict) replaces the
    environment when given.  Returns the pid."""
    keep = [ffi.new("char[]", os.fsencode(a)) for a in argv]
    c_argv = ffi.new("char *[]", keep + [ffi.NULL])
    attr = _stdio_attr(rt)
    if env is not None:
        ekeep = [ffi.new("char[]", os.fsencode("%s=%s" % kv)) for kv in env.items()]
        c_env = ffi.new("char *[]", ekeep + [ffi.NULL])
        attr.field_mask |= lib.DLAUNCH_SPAWN_ATTR_ENV | lib.DLAUNCH_SPAWN_ATTR_FLAGS
        attr.env = c_env
        attr.flags = lib.DLAUNCH_SPAWN_F_ENV_REPLACE
    pid = ffi.new("pid_t *")
    runtime.dlaunch_check(lib.dlaunch_spawn(rt.handle, keep[0], c_argv, attr, pid),
                          "starting %s" % os.fsdecode(argv[0]))
    return pid[0]


def environ_copy():
    """A copy of os.environ, consistent even while another thread changes
    it (dict(os.environ) looks each key up after listing them, and fails
    when one went in between)."""
    try:
        env = os.environ
        data, key, value = env._data.copy(), env.decodekey, env.decodevalue
    except AttributeError:
        while True:
            try:
                return dict(os.environ)
            except (KeyError, RuntimeError):
                continue
    return {key(k): value(v) for k, v in data.items()}


def _interpreter_argv(code, *args):
    exe = spawn.get_executable()
    return [exe] + util._args_from_interpreter_flags() + ["-c", code] + list(args)


# Signal numbers whose disposition a child can take, and the C module's
# getsignal (signal.getsignal converts each answer to an enum: 60 of them
# cost more than the rest of a start's preparation).
_SIGNUMS = [int(s) for s in signal.valid_signals()
            if s not in (signal.SIGKILL, signal.SIGSTOP)]
_getsignal = _signal.getsignal
_SIG_IGN = int(signal.SIG_IGN)


def ignored_signals():
    """The signals this process ignores.  exec keeps a disposition of
    SIG_IGN, so a spawned child starts ignoring them too (a parent that
    ignores SIGINT while it starts a Pool, so that ^C reaches only itself,
    relies on it); the child takes the list (see
    :func:`dragon._child.take_signals`)."""
    return [s for s in _SIGNUMS if _getsignal(s) == _SIG_IGN]


def _payload(popen, process_obj):
    prep_data = spawn.get_preparation_data(process_obj._name)
    prep_data["dragon_parent_pid"] = os.getpid()
    prep_data["dragon_ignored_signals"] = ignored_signals()
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
        return bool(select.select(self._ended_fds(), [], [], timeout)[0])

    def poll(self, flag=os.WNOHANG):
        if self.returncode is None:
            if flag & os.WNOHANG and not self._ended(0):
                return None
            self.returncode = self._status()
        return self.returncode

    def wait(self, timeout=None):
        if self.returncode is None:
            if timeout is not None:
                from multiprocessing.connection import wait
                if not wait(self._ended_fds(), timeout):
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

    def _launch(self, process_obj):
        z = zygote()
        payload = _payload(self, process_obj)
        done_r, done_w = os.pipe()
        try:
            self.pid, self.sentinel = z.start(payload, done_w)
            _holders.expect_receiver(self._in_flight, self.pid)
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
            ready = select.select(self._ended_fds(), [], [], left)[0]
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

    def _launch(self, process_obj):
        rt = runtime.current()
        data = _payload(self, process_obj)
        alloc = rt.pool.alloc(len(data))
        try:
            alloc.view[:] = data
            argv = _interpreter_argv(_CHILD_CODE, CHILD_FLAG, _alloc_text(alloc))
            self.pid = _spawn(rt, argv, environ_copy())
            _holders.expect_receiver(self._in_flight, self.pid)
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


def Popen(process_obj):
    """The Popen of DragonProcess: through the zygote when there is one;
    a start the zygote cannot make (it could not fork, or it is gone) is
    made by the runtime as a fresh interpreter."""
    z = zygote()
    if z is not None:
        try:
            return ZygotePopen(process_obj)
        except ZygoteError as e:
            util.info("dragon: starting a fresh interpreter instead: %s", e)
            if z.dead:
                _lost_zygote(z)
    return SpawnPopen(process_obj)


Popen.method = "dragon"


def _alloc_text(alloc):
    d = ffi.from_buffer("dmem_alloc_desc_t *", alloc.descriptor)
    buf = ffi.new("char[]", lib.DMEM_ALLOC_DESC_TEXT_MAX)
    n = lib.dmem_alloc_desc_to_text(d, buf, len(buf))
    if n < 0:
        raise OSError("cannot format allocation descriptor")
    return ffi.string(buf).decode()


def _alloc_from_text(pool, text):
    from ._errors import check
    d = ffi.new("dmem_alloc_desc_t *")
    check(lib.dmem_alloc_desc_from_text(text.encode(), d), "child start data")
    return pool.attach_alloc(bytes(ffi.buffer(d)))


def is_dragon_child(argv=None):
    argv = sys.argv if argv is None else argv
    return len(argv) >= 2 and argv[1] == CHILD_FLAG


# ---- this process's zygote ----------------------------------------------


class ZygoteError(RuntimeError):
    """The zygote could not be started or stopped answering."""


class Zygote:
    """The parent's end of the connection to its zygote (see
    dragon._zygote for the protocol)."""

    def __init__(self, rt):
        from . import _zygote
        self._proto = _zygote
        self.rt = rt
        self.lock = threading.Lock()
        self.statuses = {}
        self.spares = []   # [(pid, pidfd, socket)], oldest first
        self.pending = 1   # spares asked for and not yet received
        self.dead = False
        name = "dragon-zygote-%d-%s" % (os.getpid(), os.urandom(8).hex())
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            lsock.bind("\0" + name)
            lsock.listen(1)
            self.pid = _spawn(rt, _interpreter_argv(_zygote._ZYGOTE_CODE, name),
                              environ_copy())
            self.sock = self._accept(lsock)
        finally:
            lsock.close()
        self.reader = _zygote.Reader(self.sock)
        main_path = spawn.get_preparation_data("zygote").get("init_main_from_path")
        # The zygote takes this environment, and so do the spares it forks:
        # a start sends the environment only when it differs.
        self.base_env = environ_copy()
        # An embedded runtime's watchdog (see runtime._start_watchdog)
        # cleans up after this process if it is killed: the zygote then
        # only ends its children, and leaves the segments to the watchdog,
        # which tells a stopped runtime from a killed one by them.
        watched = runtime._watchdog_for == os.getpid()
        _zygote.send_msg(self.sock, ("prime", main_path, _zygote.stdlib_modules(),
                                     self.base_env, watched))

    def _accept(self, lsock):
        import time
        deadline = time.monotonic() + ZYGOTE_START_TIMEOUT
        while time.monotonic() < deadline:
            lsock.settimeout(0.05)
            try:
                sock, _ = lsock.accept()
            except socket.timeout:
                st = ffi.new("dlaunch_status_t *")
                if lib.dlaunch_wait(self.rt.handle, self.pid, 0, st) == 0:
                    raise ZygoteError("the zygote (pid %d) exited with code %d "
                                      "while starting" % (self.pid, lib.dlaunch_status_code(st)))
                continue
            cred = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            if int.from_bytes(cred[:4], sys.byteorder) == self.pid:
                sock.settimeout(None)
                return sock
            sock.close()
        lib.dlaunch_signal(self.rt.handle, self.pid, signal.SIGKILL)
        raise ZygoteError("the zygote (pid %d) did not connect within %.0f s"
                          % (self.pid, ZYGOTE_START_TIMEOUT))

    def _take(self, msg, fds):
        """File one message from the zygote (lock held)."""
        kind = msg[0]
        if kind == "exit":
            self.statuses[msg[1]] = msg[2]
        elif kind == "spare":
            self.pending -= 1
            self.spares.append((msg[1], fds[0], socket.socket(fileno=fds[1])))
        elif kind == "error":
            self.pending -= 1
            for fd in fds:
                os.close(fd)

    def _recv_until(self, pred, block=True):
        """Read messages (lock held), filing them, until pred(msg) is true
        for one; returns it.  block=False reads only what has arrived and
        returns None."""
        while True:
            m = self.reader.next()
            if m is not None:
                self._take(*m)
                if pred(m[0]):
                    return m[0]
                continue
            if self.dead:
                raise ZygoteError("the zygote (pid %d) is gone" % self.pid)
            try:
                more = self.reader.fill(0 if block else socket.MSG_DONTWAIT)
            except BlockingIOError:
                return None
            except OSError:
                more = False
            if not more:
                self.dead = True
                raise ZygoteError("the zygote (pid %d) is gone" % self.pid)

    def _spare(self):
        """A spare child to run the next process (lock held)."""
        self._recv_until(lambda m: False, block=False)
        while not self.spares:
            if not self.pending:
                self._send(("want",))
                self.pending += 1
            msg = self._recv_until(lambda m: m[0] in ("spare", "error"))
            if msg[0] == "error":
                raise ZygoteError("the zygote could not start the process: %s"
                                  % msg[1])
        return self.spares.pop(0)

    def start(self, payload, done_w):
        """Have a child of the zygote run payload; (pid, pidfd).  The
        child writes its exit code to done_w when it has finished (see
        :meth:`status`)."""
        from multiprocessing import resource_tracker
        try:
            tracker = [resource_tracker.getfd()]
        except Exception:
            tracker = []
        env = environ_copy()
        msg = ("run", None if env == self.base_env else env, payload, bool(tracker))
        with self.lock:
            while True:
                if self.dead:
                    raise ZygoteError("the zygote (pid %d) is gone" % self.pid)
                pid, pidfd, sock = self._spare()
                try:
                    self._proto.send_msg(sock, msg, [1, 2, done_w] + tracker)
                except OSError:
                    # The spare died while it waited: take another (the
                    # zygote makes a new one for it).
                    os.close(pidfd)
                    self.pending += 1
                    self._send(("reap", pid, True))
                    continue
                finally:
                    sock.close()
                # The child runs from here on; the zygote makes the next
                # spare when it sees this one take the request.
                self.pending += 1
                return pid, pidfd

    def _send(self, msg):
        try:
            self._proto.send_msg(self.sock, msg)
        except OSError as e:
            self.dead = True
            raise ZygoteError("the zygote (pid %d) is gone: %s" % (self.pid, e))

    def status(self, pid, pidfd, code=None):
        """The exit code of child pid (pidfd: its sentinel), once it has
        ended.  code: what the child reported as its last act (it has
        closed every other descriptor by then), here before the kernel has
        released its memory; None for a child that ended otherwise (a
        signal, os._exit), whose code is read from its zombie."""
        if code is None:
            select.select([pidfd], [], [])
            code = self._proto.zombie_status(pid, pidfd)
        with self.lock:
            try:
                if code is not None:
                    if not self.dead:
                        self._proto.send_msg(self.sock, ("reap", pid, True))
                    return code
                if pid not in self.statuses:
                    if not self.dead:
                        self._proto.send_msg(self.sock, ("reap", pid, False))
                    self._recv_until(lambda m: m[0] == "exit" and m[1] == pid)
            except (ZygoteError, OSError):
                self.dead = True
                if code is not None:
                    return code
                # Its children die with it (PR_SET_PDEATHSIG).
                return -signal.SIGKILL
            return self.statuses.pop(pid)

    def _close_fds(self):
        for _, pidfd, sock in self.spares:
            os.close(pidfd)
            sock.close()
        self.spares = []
        self.sock.close()
        self.reader.close()

    def close(self):
        """End the connection: the zygote exits once its children have (the
        runtime ends it, and them, when it stops).  Nothing waits for it
        here: a process that leaves its children running must not be held
        up by them."""
        with self.lock:
            self.dead = True
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._close_fds()


_zlock = threading.Lock()
_zygote = None        # Zygote, False (cannot have one), or None (not yet)
_zygote_pid = None    # the process _zygote belongs to


def zygote():
    """This process's zygote, started on first use; None when children
    must be started as fresh interpreters."""
    global _zygote, _zygote_pid
    z = _zygote
    if _zygote_pid == os.getpid() and z is not None:
        return z or None
    with _zlock:
        if _zygote_pid != os.getpid():  # never started, or a forked copy
            _zygote, _zygote_pid = None, os.getpid()
        if _zygote is None:
            _zygote = _start_zygote()
            if _zygote:
                runtime.at_stop(_stop_zygote)
        return _zygote or None


def _start_zygote():
    if os.environ.get(ZYGOTE_ENV, "1") == "0" or not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    rt = runtime.current()
    try:
        return Zygote(rt)
    except (ZygoteError, OSError) as e:
        util.info("dragon: no zygote, starting children as fresh "
                  "interpreters: %s", e)
        return False


def _lost_zygote(z):
    # Children are started as fresh interpreters from now on.
    global _zygote
    with _zlock:
        if _zygote is z:
            _zygote = False
    z.close()


def _stop_zygote():
    global _zygote
    with _zlock:
        z, _zygote = _zygote, None
    if z and _zygote_pid == os.getpid():
        z.close()


def _forget_zygote_after_fork():
    # A forked copy of this process (the 'fork' start method, os.fork)
    # must not keep the zygote connection and the spares open: the zygote
    # would not see this process leave, nor a spare the end of its socket.
    global _zygote
    z, _zygote = _zygote, None
    if z:
        try:
            z._close_fds()
        except OSError:
            pass


os.register_at_fork(after_in_child=_forget_zygote_after_fork)
