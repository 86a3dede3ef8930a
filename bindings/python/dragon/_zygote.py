"""A warm interpreter that forks the 'dragon' start method's children.

Starting a fresh interpreter costs tens of milliseconds, most of it
importing.  A process that starts 'dragon' children therefore has the
runtime start one helper, the zygote, the first time it needs one: a
Python process started by ``dlaunch_spawn`` like any other, which imports
multiprocessing and dragon and then forks children on demand.

The zygote keeps one child forked ahead, the spare, and hands it to the
parent: its pid, a pidfd of it and one end of a socket pair on which the
spare waits, and the write ends of the spare's own output pipes (the
runtime forwards what comes out of them line by line, so that lines of
two processes never mix).  To start a process the parent writes to the
spare what spawn would have put on a fresh interpreter's stdin (the
preparation data and the pickled Process object), its environment, and
its stdout, stderr and resource-tracker descriptors.  The spare closes
its end of a pipe it shares with the zygote as soon as it has the
request, which tells the
zygote to fork the next one.  A start therefore waits for neither an
interpreter, nor a fork, nor the zygote, and sends one message.  The spare takes the descriptors
as 1, 2 and the tracker's, takes the parent's environment (as it is at the
request), and from there does exactly what a spawned child does
(``spawn.prepare``: sys.path, sys.argv, cwd, the parent's main module
imported as ``__mp_main__``; then the Process object is unpickled and run).
User code sees a fresh interpreter: the zygote has run nothing of the
user's, maps no pool of the user's (only the infrastructure pool behind its
own libdlaunch handle, which children never use), and is single-threaded
when it forks; the
spare closes the zygote's descriptors, resets its signal handlers (signals
stay blocked across the fork until then; SIGINT is ignored while it waits,
as in the zygote; once it runs it ignores the signals its parent ignores,
as exec would have kept them, and SIGINT otherwise has the default
handler), and
``random`` reseeds itself at fork; the zygote's objects are frozen out of
the children's garbage collections, so that children do not copy those
pages.  At the end the child runs what a normal interpreter exit runs
(non-daemon threads are joined, atexit handlers run, streams are flushed)
and leaves with ``os._exit``.

Processes, pids and statuses:

* the child's pid is the real OS pid, and the parent's sentinel is a pidfd
  of it, opened by the zygote before the child could be reaped, so it
  names exactly this process;
* the runtime has every child in its process table like the processes it
  started itself: the zygote has it adopt each one (``dlaunch_proc_adopt``)
  and reports the status when it reaps it (``dlaunch_proc_reaped``), so
  ``dlaunch_wait`` and ``dlaunch_signal`` work on the pid, the runtime
  reclaims its pool allocations, and a runtime that stops ends it;
* the zygote is the child's OS parent and reaps it only when the parent
  asks (until then an ended child is a zombie whose pid stays valid, as a
  spawned child's does before join).  The parent reads the exit status of
  the zombie from /proc (checking through the pidfd that it is still
  unreaped) and asks for the reap without waiting; where /proc does not
  show it, the zygote reports the status with the reap.  Signals go
  through the pidfd (``pidfd_send_signal``), never a bare pid;
* children outlive their parent as spawned ones do: when the parent
  closes the connection (at its exit, or by dying) the zygote reaps what
  has ended and exits after the last child; a child dies with the zygote
  (``PR_SET_PDEATHSIG``), and when the runtime stops it sends the zygote
  SIGTERM, on which the zygote ends its children as the runtime ends its
  own processes (SIGTERM, a grace period, SIGKILL).

The connection is a Unix stream socket in the abstract namespace, named
with a random token; the parent listens, passes the name on the zygote's
command line, and accepts only the zygote's pid (SO_PEERCRED).  Messages
are a 4-byte length, a 1-byte descriptor count and a pickle:

* zygote to parent: ``("spare", pid)`` with the pidfd, the socket and
  the write ends of the spare's own stdout and stderr pipes, whose read
  ends the runtime forwards line by line (``dlaunch_proc_forward``; no
  pipes when it cannot, and the child writes to its parent's);
  ``("exit", pid, code)``; ``("error", text)`` when no spare could be made;
* parent to zygote, first: ``("prime", main_path, modules, environ,
  watched)``:
  the path of the parent's main module (compiled here once, see
  :func:`dragon._child.compile_main`), the standard-library modules the
  parent has imported (imported here once: each child would import most
  of them again when it imports the main module), the parent's
  environment, which the zygote takes (the spares inherit it), and
  whether the parent's embedded runtime has a watchdog (then the zygote
  leaves a killed parent's segments to it);
* parent to zygote: ``("want",)`` (make a spare: the zygote makes one by
  itself for each spare that got a request or died, _REFILL_DELAY later
  so that the fork does not take CPU from the child just started),
  ``("hurry",)`` (the parent waits for that spare: fork it now, and fork
  the next ones at once for a while), ``("reap", pid, quiet)`` (reap pid
  once it has ended; report its status unless quiet);
* parent to spare: ``("run", environ, payload, has_tracker, cpu)`` with
  stdout, stderr (the spare's pipes, else the parent's own), the write
  end of the parent's "done" pipe and the tracker's descriptor; environ
  is None when it is the one the parent primed the zygote with; cpu is
  the one the parent runs on, which the child leaves at once (see
  dragon_move_off_cpu in build_cffi.py).  The child's last act is to
  close every other
  descriptor and write its exit code (one byte) to the done pipe: the
  parent's join has the code while the kernel is still releasing the
  child's memory (a millisecond for an interpreter this size), and the
  zombie is read only for a child that ended otherwise.

This module holds the whole protocol: the wire (:func:`send_msg`,
:class:`Reader`), the parent's end (:class:`Zygote`, and :func:`zygote`,
this process's one), and the zygote process itself (:func:`main`).
:mod:`dragon._popen` only asks it for a child; :mod:`dragon._spawn` starts
the interpreter the zygote runs in.
"""
import os
import pickle
import select
import signal
import socket
import struct
import sys
import threading
import time

from multiprocessing import spawn, util

from . import _spawn, runtime
from ._dragon_cffi import ffi, lib

#: Set to 0 to start every child as a fresh interpreter.
ZYGOTE_ENV = "DRAGON_ZYGOTE"

#: How long the zygote may take to start and connect (seconds).
ZYGOTE_START_TIMEOUT = 60.0

_HDR = struct.Struct("<IB")
_MAXFDS = 8
_ZYGOTE_CODE = "from dragon._zygote import main; main()"
# Signals whose disposition differs between the zygote and a fresh child.
_CHILD_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
# After SIGTERM, how long the children get before SIGKILL (seconds).
_END_GRACE = 2.0
# How long after a spare took its request the zygote forks the next one
# (seconds), unless the parent asks for it sooner ("hurry"): the fork and
# the new spare's first steps take a few milliseconds of CPU, which the
# child just started would otherwise lose in its first messages.
_REFILL_DELAY = 0.05
# After a "hurry" (starts that follow each other closely), how long the
# zygote forks each next spare at once (seconds).
_EAGER_TIME = 5.0


def send_msg(sock, obj, fds=()):
    """Send obj (pickled) with descriptors fds on a blocking socket."""
    data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    buf = _HDR.pack(len(data), len(fds)) + data
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("%di" % len(fds), *fds))] if fds else []
    n = sock.sendmsg([buf], anc)
    if n < len(buf):
        sock.sendall(memoryview(buf)[n:])


class Reader:
    """Reassembles messages and their descriptors from a stream socket.
    Descriptors received are close-on-exec."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.fds = []

    def fill(self, flags=0):
        """One recvmsg; False at end of stream."""
        data, anc, _flags, _addr = self.sock.recvmsg(
            1 << 16, socket.CMSG_SPACE(_MAXFDS * 4), flags)
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                n = len(payload) // 4
                fds = struct.unpack("%di" % n, payload[:n * 4])
                for fd in fds:
                    os.set_inheritable(fd, False)
                self.fds.extend(fds)
        self.buf += data
        return bool(data)

    def next(self):
        """The next complete (obj, fds), or None."""
        if len(self.buf) < _HDR.size:
            return None
        length, nfds = _HDR.unpack_from(self.buf)
        if len(self.buf) < _HDR.size + length or len(self.fds) < nfds:
            return None
        obj = pickle.loads(bytes(self.buf[_HDR.size:_HDR.size + length]))
        del self.buf[:_HDR.size + length]
        fds, self.fds = self.fds[:nfds], self.fds[nfds:]
        return obj, fds

    def close(self):
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def zombie_status(pid, pidfd):
    """The exit code (Process.exitcode convention) of child pid, read from
    /proc while it is a zombie; None when it cannot be read there (no
    /proc, the process runs, or it was reaped).  pidfd proves that the pid
    still names the same, unreaped process after the read."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return None
    # Fields after the command name: state is field 3, exit_code field 52.
    rest = data[data.rfind(b")") + 2:].split()
    if len(rest) < 50 or rest[0] != b"Z":
        return None
    try:
        status = int(rest[49])
        signal.pidfd_send_signal(pidfd, 0)  # fails once reaped
        return os.waitstatus_to_exitcode(status)
    except (OSError, ValueError):
        return None


# ---- the parent's end ----------------------------------------------------


class ZygoteError(RuntimeError):
    """The zygote could not be started or stopped answering."""


def zygote_name():
    """A fresh name for the socket a zygote connects to."""
    return "dragon-zygote-%d-%s" % (os.getpid(), os.urandom(8).hex())


def spawn_zygote(rt, name, env, node=None):
    """Start a zygote (through the runtime, on node when given) that
    connects to the abstract socket name, where its parent listens (it
    retries until the name is there); its pid."""
    return _spawn.spawn_interpreter(rt, _spawn.interpreter_argv(_ZYGOTE_CODE, name),
                                    env, node=node)


class Zygote:
    """The parent's end of the connection to its zygote (see
    dragon._zygote for the protocol)."""

    def __init__(self, rt, prime=None, spawned=None):
        """prime: (main_path, modules) to prime the zygote with, when they
        are another process's (see dragon._rstart); by default this
        process's main module and standard-library modules.  spawned:
        (name, pid) of a zygote another process already started on this
        node (:func:`spawn_zygote`) to connect to name; by default one is
        started here."""
        self.rt = rt
        self.lock = threading.Lock()
        self.statuses = {}
        self.spares = []   # [(pid, pidfd, socket, stdio)], oldest first
        self.pending = 1   # spares asked for and not yet received
        self.dead = False
        name = spawned[0] if spawned else zygote_name()
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            lsock.bind("\0" + name)
            lsock.listen(1)
            if spawned:
                self.pid = spawned[1]
            else:
                self.pid = spawn_zygote(rt, name, _spawn.environ_copy())
            self.sock = self._accept(lsock)
        finally:
            lsock.close()
        # Whether the zygote still runs, without a message: see _spare.
        try:
            self.pidfd = os.pidfd_open(self.pid)
        except OSError:
            self.sock.close()
            raise
        self.reader = Reader(self.sock)
        if prime is None:
            main_path = spawn.get_preparation_data("zygote").get("init_main_from_path")
            modules = stdlib_modules()
        else:
            main_path, modules = prime
        # The zygote takes this environment, and so do the spares it forks:
        # a start sends the environment only when it differs.
        self.base_env = _spawn.environ_copy()
        # An embedded runtime's watchdog cleans up after this process if it
        # is killed: the zygote then only ends its children, and leaves the
        # segments to the watchdog, which tells a stopped runtime from a
        # killed one by them.
        watched = runtime.has_watchdog()
        send_msg(self.sock, ("prime", main_path, modules, self.base_env, watched))

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
            # fds[2:]: the write ends of the spare's own output pipes,
            # which the runtime forwards (none if it could not).
            self.spares.append((msg[1], fds[0], socket.socket(fileno=fds[1]), fds[2:]))
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
        # A spare the zygote forked just before it died may not have
        # noticed yet, and would take the request and end without running
        # it; the zygote's connection does not say it is gone while that
        # spare still holds the zygote's end.  Its pidfd says so at once.
        if select.select([self.pidfd], [], [], 0)[0]:
            self.dead = True
            raise ZygoteError("the zygote (pid %d) is gone" % self.pid)
        self._recv_until(lambda m: False, block=False)
        hurried = False
        while not self.spares:
            if not self.pending:
                self._send(("want",))
                self.pending += 1
            elif not hurried:
                # the zygote may be holding the next fork back: now
                self._send(("hurry",))
                hurried = True
            msg = self._recv_until(lambda m: m[0] in ("spare", "error"))
            if msg[0] == "error":
                raise ZygoteError("the zygote could not start the process: %s"
                                  % msg[1])
        return self.spares.pop(0)

    def start(self, payload, done_w, env=None, tracker=True):
        """Have a child of the zygote run payload; (pid, pidfd).  The
        child writes its exit code to done_w when it has finished (see
        :meth:`status`).  env: the child's environment (default this
        process's); tracker: whether the child shares this process's
        resource tracker (else it starts its own if it needs one, as a
        fresh interpreter does)."""
        from multiprocessing import resource_tracker
        try:
            tracker = [resource_tracker.getfd()] if tracker else []
        except Exception:
            tracker = []
        if env is None:
            env = _spawn.environ_copy()
        with self.lock:
            while True:
                if self.dead:
                    raise ZygoteError("the zygote (pid %d) is gone" % self.pid)
                pid, pidfd, sock, stdio = self._spare()
                # The CPU this process runs on, which the child leaves.
                msg = ("run", None if env == self.base_env else env, payload,
                       bool(tracker), lib.dragon_getcpu())
                try:
                    send_msg(sock, msg, (stdio or [1, 2]) + [done_w] + tracker)
                except OSError:
                    # The spare died while it waited: take another (the
                    # zygote makes a new one for it).
                    os.close(pidfd)
                    self.pending += 1
                    self._send(("reap", pid, True))
                    continue
                finally:
                    sock.close()
                    for fd in stdio:
                        os.close(fd)
                # The child runs from here on; the zygote makes the next
                # spare when it sees this one take the request.
                self.pending += 1
                return pid, pidfd

    def _send(self, msg):
        try:
            send_msg(self.sock, msg)
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
            code = zombie_status(pid, pidfd)
        with self.lock:
            try:
                if code is not None:
                    if not self.dead:
                        send_msg(self.sock, ("reap", pid, True))
                    return code
                if pid not in self.statuses:
                    if not self.dead:
                        send_msg(self.sock, ("reap", pid, False))
                    self._recv_until(lambda m: m[0] == "exit" and m[1] == pid)
            except (ZygoteError, OSError):
                self.dead = True
                if code is not None:
                    return code
                # Its children die with it (PR_SET_PDEATHSIG).
                return -signal.SIGKILL
            return self.statuses.pop(pid)

    def _close_fds(self):
        for _, pidfd, sock, stdio in self.spares:
            os.close(pidfd)
            sock.close()
            for fd in stdio:
                os.close(fd)
        self.spares = []
        self.sock.close()
        self.reader.close()
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1

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


def lost_zygote(z):
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


# ---- the zygote process -------------------------------------------------


class _Poller:
    """epoll with one tag per descriptor.  The zygote's loop runs after
    every fork, when each page it writes is copied: it should touch as
    little as it can (selectors builds a key object per registration and
    per event)."""

    def __init__(self):
        self.ep = select.epoll()
        self.tags = {}

    def add(self, fd, tag, events=select.EPOLLIN):
        self.ep.register(fd, events)
        self.tags[fd] = tag

    def modify(self, fd, events):
        self.ep.modify(fd, events)

    def remove(self, fd):
        if fd in self.tags:
            del self.tags[fd]
            self.ep.unregister(fd)

    def poll(self, timeout=-1):
        """[(fd, tag, events)] of the ready descriptors."""
        tags = self.tags
        return [(fd, tags[fd], ev) for fd, ev in self.ep.poll(timeout)
                if fd in tags]

    def close(self):
        self.ep.close()


class _Zygote:
    def __init__(self, sock):
        self.sock = sock
        self.reader = Reader(sock)
        self.out = []            # [bytes, fds] waiting to be sent
        self.children = {}       # pidfd -> pid, every child not yet reaped
        self.pidfds = {}         # pid -> pidfd
        self.sel = _Poller()
        self.sel.add(sock.fileno(), None)
        self.sock_events = select.EPOLLIN
        self.parent_gone = False  # the parent closed the connection
        self.terminating = False  # SIGTERM: the runtime is stopping
        # (instance, pidfd) when the parent runs the runtime itself (an
        # embedded one): if the parent dies without stopping it, nobody
        # else will end its processes or remove its segments.
        self.owner = None
        self.owner_died = False
        self.watched = False  # the runtime has a watchdog (see main)
        # A child that has ended stays a zombie, its pid valid (kill(2) on
        # it succeeds, as on a spawned child before join), until the parent
        # asks for the reap.
        self.zombies = {}  # pid -> pidfd
        self.wanted = {}   # pid -> quiet: reap it when it ends
        # SIGTERM (the runtime stopping) wakes the loop through this pair.
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_w.setblocking(False)
        self.sel.add(self.wake_r.fileno(), "wake")
        signal.set_wakeup_fd(self.wake_w.fileno(), warn_on_full_buffer=False)
        self.taken = {}       # read end of a spare's pipe -> its pid
        self.owed = 0         # spares to fork for the parent, held back
        self.refill_at = 0.0  # when to fork them (time.monotonic())
        self.eager_until = 0.0  # until then, fork them at once
        self.pid = os.getpid()
        from ._dragon_cffi import lib
        self.lib = lib
        self.rt = None        # libdlaunch handle: the runtime adopts children
        self.adopted = set()  # pids the runtime adopted
        self.forwarded = False  # the runtime forwards children's output

    def attach(self):
        """Connect to the runtime that started the zygote, which then
        adopts every child (dlaunch_proc_adopt): the runtime signals them,
        waits for them and ends them when it stops, as it does its own."""
        from ._dragon_cffi import ffi, lib
        out = ffi.new("dlaunch_t **")
        if lib.dlaunch_in_runtime() and lib.dlaunch_attach(ffi.NULL, out) == 0:
            self.rt = out[0]
            # An embedded runtime forwards no output (see dragon._spawn).
            self.forwarded = not runtime.embedded_instance(
                ffi.string(lib.dlaunch_instance(self.rt)).decode())

    def detach(self):
        if self.rt is not None:
            rt, self.rt = self.rt, None
            self.lib.dlaunch_detach(rt)

    def queue(self, obj, fds=()):
        """Send obj to the parent (without blocking); fds are closed once
        sent."""
        if self.parent_gone:
            for fd in fds:
                os.close(fd)
            return
        data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
        self.out.append([_HDR.pack(len(data), len(fds)) + data, list(fds)])
        self._flush()

    def _flush(self):
        while self.out:
            buf, fds = self.out[0]
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                    struct.pack("%di" % len(fds), *fds))] if fds else []
            try:
                n = self.sock.sendmsg([buf], anc, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError:
                self._lost_parent()
                return
            for fd in fds:
                os.close(fd)
            self.out[0] = [buf[n:], []]
            if n < len(buf):
                break
            self.out.pop(0)
        events = select.EPOLLIN | (select.EPOLLOUT if self.out else 0)
        if events != self.sock_events:
            self.sock_events = events
            self.sel.modify(self.sock.fileno(), events)

    def _lost_parent(self):
        # Children outlive their parent as spawned ones would: keep reaping
        # them, and exit once the last one is gone.  Unused spares read the
        # end of their socket and exit.
        if self.parent_gone:
            return
        self.parent_gone = True
        for pid, pidfd in list(self.zombies.items()):
            self._reap(pidfd, pid, True)
        for _, fds in self.out:
            for fd in fds:
                os.close(fd)
        self.out = []
        self.sel.remove(self.sock.fileno())

    def run(self):
        while True:
            if self.terminating:
                self._end_children()
                return
            # The owner of an embedded runtime is waited for: its stop
            # ends this process (SIGTERM), its death is seen below.
            if self.parent_gone and not self.children and self.owner is None:
                return
            timeout = -1
            if self.owed:
                timeout = max(0.0, self.refill_at - time.monotonic())
            ready = self.sel.poll(timeout)
            if self.owed and time.monotonic() >= self.refill_at:
                self._refill()
            for fd, tag, events in ready:
                if tag is None:
                    if events & select.EPOLLOUT:
                        self._flush()
                    if events & ~select.EPOLLOUT and not self.parent_gone:
                        self._read()
                elif tag == "taken":
                    self._spare_taken(fd)
                elif fd in self.children:
                    self._exited(fd, tag)
                elif tag == "wake":
                    self.wake_r.recv(256)
                elif tag == "owner":
                    self.sel.remove(fd)
                    self.owner_died = True
                    self.terminating = True  # ends the children

    def _read(self):
        try:
            more = self.reader.fill()
        except OSError:
            more = False
        while True:
            m = self.reader.next()
            if m is None:
                break
            msg, fds = m
            for fd in fds:  # no request carries descriptors
                os.close(fd)
            self._request(msg)
        if not more:
            self._lost_parent()

    def _request(self, msg):
        kind = msg[0]
        if kind == "want":
            self._make_spare()
        elif kind == "hurry":
            self.eager_until = time.monotonic() + _EAGER_TIME
            self._refill()
        elif kind == "reap":
            pid, quiet = msg[1], msg[2]
            if pid in self.zombies:
                self._reap(self.zombies[pid], pid, quiet)
            elif pid in self.pidfds:
                self.wanted[pid] = quiet
            # else: reaped already (the runtime stopping): nothing to do
        else:
            self.queue(("error", "unknown request %r" % (kind,)))

    def _make_spare(self):
        """Fork the child that the parent's next start will run, and hand
        it to the parent."""
        try:
            pid, pidfd, mine = self._fork_spare()
        except OSError as e:
            self.queue(("error", "cannot fork a child: %s" % e))
            return
        self.queue(("spare", pid), [os.dup(pidfd), mine.detach()] + self._output_pipes(pid))

    def _output_pipes(self, pid):
        """The write ends of pipes for the stdout and stderr of child pid,
        whose read ends the runtime forwards line by line (as it forwards
        those of the processes it starts); [] when it cannot, and the
        child writes to its parent's."""
        if pid not in self.adopted or not self.forwarded:
            return []
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            rc = self.lib.dlaunch_proc_forward(self.rt, pid, out_r, err_r)
        finally:
            os.close(out_r)
            os.close(err_r)
        if rc != 0:
            os.close(out_w)
            os.close(err_w)
            return []
        return [out_w, err_w]

    def _spare_taken(self, fd):
        # The spare closed its end: it has a request (or died unused).
        # Either way the parent needs the next one.
        self.sel.remove(fd)
        os.close(fd)
        del self.taken[fd]
        if self.parent_gone or self.terminating:
            return
        now = time.monotonic()
        if not self.owed:
            self.refill_at = now + _REFILL_DELAY
        self.owed += 1
        if now < self.eager_until:
            self._refill()

    def _refill(self):
        # Fork the spares held back (see _REFILL_DELAY).
        while self.owed and not self.parent_gone and not self.terminating:
            self.owed -= 1
            self._make_spare()
        self.owed = 0

    def _fork_spare(self):
        # A process that forks must have no other thread: one could hold a
        # lock (malloc's, environ's, the import lock) that the child would
        # find taken forever.
        nthreads = len(os.listdir("/proc/self/task"))
        if nthreads != 1:
            raise OSError("the zygote has %d threads: forking it is not "
                          "safe" % nthreads)
        mine, its = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        taken_r, taken_w = os.pipe()
        # The child must take a signal as a fresh interpreter would from
        # its first instruction: signals wait, blocked, until it has reset
        # the zygote's handlers.
        signal.pthread_sigmask(signal.SIG_BLOCK, _CHILD_SIGNALS)
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _CHILD_SIGNALS)
            mine.close()
            its.close()
            os.close(taken_r)
            os.close(taken_w)
            raise
        if pid == 0:
            code = 1
            try:
                mine.close()
                os.close(taken_r)
                code = self._spare(its, taken_w)
            finally:
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _CHILD_SIGNALS)
        its.close()
        os.close(taken_w)
        self.taken[taken_r] = pid
        self.sel.add(taken_r, "taken")
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            # Not reaped, so the pid is still this child: end it.
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            mine.close()
            raise
        self.children[pidfd] = pid
        self.pidfds[pid] = pidfd
        self.sel.add(pidfd, pid)
        # Without a round trip: the runtime handles it before any request
        # sent later (a dlaunch_wait on the pid, say).
        if self.rt is not None and self.lib.dlaunch_proc_adopt(
                self.rt, pid, self.lib.DLAUNCH_PROC_F_NOWAIT) == 0:
            self.adopted.add(pid)
        return pid, pidfd, mine

    def _exited(self, pidfd, pid):
        self.sel.remove(pidfd)
        if pid in self.wanted or self.parent_gone or self.terminating:
            self._reap(pidfd, pid, self.wanted.get(pid, True))
        else:
            self.zombies[pid] = pidfd

    def _reap(self, pidfd, pid, quiet):
        self.wanted.pop(pid, None)
        self.zombies.pop(pid, None)
        self.sel.remove(pidfd)  # when still running (SIGKILL sent)
        del self.children[pidfd]
        del self.pidfds[pid]
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        if pid in self.adopted:
            self.adopted.discard(pid)
            # While the runtime stops it learns the end from its pidfd.
            if not self.terminating:
                self.lib.dlaunch_proc_reaped(self.rt, pid, status,
                                             self.lib.DLAUNCH_PROC_F_NOWAIT)
        if not quiet:
            self.queue(("exit", pid, os.waitstatus_to_exitcode(status)))

    def _end_children(self):
        # The runtime is stopping: end the children as it ends its own
        # processes (SIGTERM, a grace period, SIGKILL).
        import time
        for pid, pidfd in list(self.zombies.items()):
            self._reap(pidfd, pid, False)
        for pidfd in list(self.children):
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGTERM)
            except OSError:
                pass
        deadline = time.monotonic() + _END_GRACE
        while self.children and time.monotonic() < deadline:
            for fd, tag, _ in self.sel.poll(0.05):
                if fd in self.children:
                    self._exited(fd, tag)
        for pidfd, pid in list(self.children.items()):
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            except OSError:
                pass
            self._reap(pidfd, pid, False)

    def _spare(self, sock, taken_w):
        """In a forked child: drop the zygote, wait for the request, become
        the parent's child as spawn would have made it and run it; returns
        the exit code."""
        signal.set_wakeup_fd(-1)
        # Every descriptor of the zygote's (its sockets, pipes, pidfds,
        # epoll, the runtime handle's) is closed in one call; the Python
        # objects that held them stay unused in the frames below this one,
        # which the process never returns to (it leaves with os._exit).
        if self.lib.dragon_spare_detach(self.pid, sock.fileno(), taken_w) != 0:
            return 1
        self.rt = None  # the zygote's: never used (nor detached) here
        for sig in (signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        # While it waits the spare is nobody's process yet: a ^C meant for
        # the parent's terminal is for the parent to decide on.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _CHILD_SIGNALS)
        # What the child imports first, looked up now: the pages those
        # lookups write (reference counts, the module dictionaries) are
        # copied while the spare waits rather than once it runs (about 40
        # of the 270 faults a child took between its request and its end).
        import atexit, io, runpy, threading  # noqa: F401
        from multiprocessing import process, reduction, resource_tracker, spawn, util  # noqa: F401
        from . import _child  # noqa: F401
        # The request's first steps, rehearsed: pickling and unpickling a
        # message like it (an environment and a payload) grows the malloc
        # heap and copies the pages pickle writes now, while the spare
        # waits (about 70 of the 330 faults a child took from its request
        # to its end).
        pickle.loads(pickle.dumps(("run", dict(os.environ), bytes(4096), True, 0),
                                  pickle.HIGHEST_PROTOCOL))
        reader = Reader(sock)
        m = None
        while m is None:
            try:
                if not reader.fill():
                    return 0  # never used: the parent or zygote is done
            except OSError:
                return 0
            m = reader.next()
        # SIGINT stays ignored until the child knows whether its parent
        # ignores it (_child.take_signals).
        os.close(taken_w)  # the zygote forks the next spare
        sock.close()
        (_, env, payload, has_tracker, cpu), fds = m
        self.lib.dragon_move_off_cpu(cpu)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        os.close(fds[0])
        os.close(fds[1])
        done_fd = fds[2]
        tracker_fd = fds[3] if has_tracker else -1
        if tracker_fd >= 0:
            os.set_inheritable(tracker_fd, True)
        if env is not None:
            _take_environment(env)
        from . import _child
        return _child.run_payload(payload, tracker_fd, done_fd)


def _take_environment(env):
    # Usually the parent's environment is the zygote's: change only what
    # differs (each change is a putenv or unsetenv; the process has one
    # thread here, so nothing reads environ while it changes).
    for k in [k for k in os.environ if k not in env]:
        del os.environ[k]
    for k, v in env.items():
        if os.environ.get(k) != v:
            os.environ[k] = v


# Standard-library modules never imported in the zygote: their import does
# something visible (prints, opens a browser), or takes the terminal.
_NOT_PRELOADED = {"this", "antigravity", "readline", "rlcompleter", "tkinter",
                  "_tkinter", "turtle", "turtledemo", "idlelib", "test",
                  "__main__", "__mp_main__"}


def stdlib_modules():
    """Names of the standard library's modules this process has imported
    (the parent sends them to its zygote)."""
    root = os.path.dirname(os.__file__) + os.sep
    names = []
    for name, mod in list(sys.modules.items()):
        f = getattr(mod, "__file__", None)
        if (isinstance(f, str) and f.startswith(root) and
                "-packages" + os.sep not in f and
                name.partition(".")[0] not in _NOT_PRELOADED):
            names.append(name)
    return names


def _prime(z):
    # The first message: what the parent's children will need.  Only
    # standard-library modules are imported, and the main module is only
    # compiled: nothing of the user's runs in the zygote.
    m = None
    while m is None:
        if not z.reader.fill():
            return
        m = z.reader.next()
    msg, fds = m
    for fd in fds:
        os.close(fd)
    if msg[0] != "prime":
        z._request(msg)
        return
    _, main_path, modules, env, z.watched = msg
    for name in modules:
        if name.partition(".")[0] in _NOT_PRELOADED:
            continue
        try:
            __import__(name)
        except Exception:
            pass
    if main_path:
        from . import _child
        _child.compile_main(main_path)
    return env


def _preload():
    # What nearly every child needs, imported once here instead of in
    # each child.  Nothing here starts a thread or opens a descriptor.
    import pkgutil  # noqa: F401  (runpy, for the main module)
    import runpy  # noqa: F401
    import multiprocessing.connection  # noqa: F401
    import multiprocessing.queues  # noqa: F401
    import multiprocessing.synchronize  # noqa: F401
    import multiprocessing.resource_tracker  # noqa: F401
    import multiprocessing.spawn  # noqa: F401
    import multiprocessing.util  # noqa: F401
    import dragon  # noqa: F401
    from dragon import _child  # noqa: F401
    for name in ("connection", "queues", "synchronize"):
        try:  # a speed-up only: a child imports what it needs anyway
            __import__("dragon." + name)
        except Exception:
            pass


def main():
    """Entry point: ``python -c <_ZYGOTE_CODE> ADDRESS``."""
    address = "\0" + sys.argv[1]
    # Descriptors the parent had without close-on-exec came along; the
    # children must not inherit them from here.
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    _preload()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # A parent on another node (dragon._rstart) starts this zygote and the
    # process that listens at the same time: the name may not be there yet.
    deadline = time.monotonic() + ZYGOTE_START_TIMEOUT
    while True:
        try:
            sock.connect(address)
            break
        except (ConnectionRefusedError, FileNotFoundError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)
    z = _Zygote(sock)
    env = _prime(z)
    z.attach()
    if env is not None:  # after attach: the runtime is found in ours
        _take_environment(env)
    instance, parent = os.environ.get("DRAGON_INSTANCE"), os.getppid()
    if instance == "p%d" % parent:  # runtime.py names embedded ones so
        try:
            z.owner = (instance, os.pidfd_open(parent))
            z.sel.add(z.owner[1], "owner")
        except OSError:
            z.owner = None
    # What is loaded now stays out of the children's collections, so that
    # they do not touch (and copy) the pages of the zygote's objects.
    import gc
    gc.collect()
    gc.freeze()
    z._make_spare()

    def on_term(signo, frame):
        z.terminating = True
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides
    z.run()
    if z.owner_died:
        # The parent was killed (or left with os._exit) while it ran the
        # runtime: its children are ended; remove what it left in /dev/shm,
        # unless the runtime's watchdog does (it must find the segments to
        # know that the runtime was not stopped).
        if not z.watched:
            runtime.remove_stale_segments(z.owner[0])
    elif not z.terminating:  # a stopping runtime may no longer read
        z.detach()
    sys.exit(0)
