"""A warm interpreter that forks the 'dragon' start method's children.

Starting a fresh interpreter costs tens of milliseconds, most of it
importing.  A process that starts 'dragon' children therefore has the
runtime start one helper, the zygote, the first time it needs one: a
Python process started by ``dlaunch_spawn`` like any other, which imports
multiprocessing and dragon and then waits for requests.  To start a child
the parent sends what spawn would have put on a fresh interpreter's stdin
(the preparation data and the pickled Process object), its environment,
and its stdout, stderr and resource-tracker descriptors.  The zygote keeps
one child forked ahead (the spare), which has already dropped the zygote's
state and waits on a socket pair; a request goes to the spare, the reply
carries its pid, and only then is the next spare forked, so a start costs
neither an interpreter nor a fork.  The child takes the descriptors as 1,
2 and the tracker's, takes the parent's environment (as it is at the
request), and from there does exactly what a spawned child
does (``spawn.prepare``: sys.path, sys.argv, cwd, the parent's main module
imported as ``__mp_main__``; then the Process object is unpickled and run).
User code sees a fresh interpreter: the zygote has run nothing of the
user's, holds no runtime handle or pool mapping, and is single-threaded;
the child closes the zygote's descriptors, resets its signal handlers
(signals stay blocked across the fork until then), and ``random`` reseeds
itself at fork; the zygote's objects are frozen out of the children's
garbage collections, so that children do not copy those pages.  At the end the child runs what a
normal interpreter exit runs (non-daemon threads are joined, atexit
handlers run, streams are flushed) and leaves with ``os._exit``.

Processes, pids and statuses:

* the child's pid is the real OS pid, sent back with a pidfd of the child
  (SCM_RIGHTS) opened before the child can be reaped, so the parent's
  sentinel is a real descriptor that names exactly this process;
* the zygote is the child's OS parent: it watches each child's pidfd and
  reaps the child when the parent asks for its status (until then the
  ended child is a zombie whose pid stays valid, as a spawned child's does
  before join), then reports the status over the same socket;
  signals go through the pidfd (``pidfd_send_signal``), never a bare pid;
* children outlive their parent as spawned ones do: when the parent
  closes the connection (at its exit, or by dying) the zygote goes on
  reaping and exits after the last child; a child dies with the zygote
  (``PR_SET_PDEATHSIG``), and when the runtime stops it sends the zygote
  SIGTERM, on which the zygote ends its children as the runtime ends its
  own processes (SIGTERM, a grace period, SIGKILL).

The connection is a Unix stream socket in the abstract namespace, named
with a random token; the parent listens, passes the name on the zygote's
command line, and accepts only the zygote's pid (SO_PEERCRED).  Messages
are a 4-byte length, a 1-byte descriptor count and a pickle.
"""
import os
import pickle
import selectors
import signal
import socket
import struct
import sys

_HDR = struct.Struct("<IB")
_MAXFDS = 8
_ZYGOTE_CODE = "from dragon._zygote import main; main()"
# Signals whose disposition differs between the zygote and a fresh child.
_CHILD_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}


def send_msg(sock, obj, fds=()):
    """Send obj (pickled) with descriptors fds on a blocking socket."""
    data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    buf = _HDR.pack(len(data), len(fds)) + data
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("%di" % len(fds), *fds))] if fds else []
    n = sock.sendmsg([buf], anc)
    if n < len(buf):
        sock.sendall(memoryview(buf)[n:])


class Reader:
    """Reassembles messages and their descriptors from a stream socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.fds = []

    def fill(self):
        """One recvmsg; False at end of stream."""
        data, anc, _flags, _addr = self.sock.recvmsg(
            1 << 16, socket.CMSG_SPACE(_MAXFDS * 4))
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                n = len(payload) // 4
                self.fds.extend(struct.unpack("%di" % n, payload[:n * 4]))
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


# ---- the zygote ----------------------------------------------------------


class _Zygote:
    def __init__(self, sock):
        self.sock = sock
        self.reader = Reader(sock)
        self.out = []            # [bytes, fds] waiting to be sent
        self.children = {}       # pidfd -> pid
        self.sel = selectors.DefaultSelector()
        self.sel.register(sock, selectors.EVENT_READ, None)
        self.parent_gone = False  # the parent closed the connection
        self.terminating = False  # SIGTERM: the runtime is stopping
        self.spare = None  # (pid, pidfd, socket) of the next child
        # A child that has ended stays a zombie, its pid valid (kill(2) on
        # it succeeds, as on a spawned child before join), until the parent
        # asks for its status.
        self.zombies = {}  # pid -> pidfd
        self.wanted = set()  # pids whose status the parent waits for
        # SIGTERM (the runtime stopping) wakes the loop through this pair.
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_w.setblocking(False)
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        signal.set_wakeup_fd(self.wake_w.fileno(), warn_on_full_buffer=False)

    def queue(self, obj, fds=()):
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
        self.sel.modify(self.sock, selectors.EVENT_READ |
                        (selectors.EVENT_WRITE if self.out else 0), None)

    def _lost_parent(self):
        # Children outlive their parent as spawned ones would: keep reaping
        # them, and exit once the last one is gone.
        if self.parent_gone:
            return
        self.parent_gone = True
        for pid, pidfd in list(self.zombies.items()):
            self._reap(pidfd, pid)
        if self.spare is not None:  # it exits on end of stream
            self.spare[2].close()
        for _, fds in self.out:
            for fd in fds:
                os.close(fd)
        self.out = []
        self.sel.unregister(self.sock)

    def run(self):
        while True:
            if self.terminating:
                self._end_children()
                return
            if self.parent_gone and not self.children:
                return
            for key, events in self.sel.select():
                if key.data == "wake":
                    self.wake_r.recv(256)
                elif key.data is None:
                    if events & selectors.EVENT_WRITE:
                        self._flush()
                    if events & selectors.EVENT_READ:
                        self._read()
                else:
                    self._exited(key.fd, key.data)

    def _read(self):
        try:
            more = self.reader.fill()
        except OSError:
            more = False
        while True:
            m = self.reader.next()
            if m is None:
                break
            self._request(*m)
        if not more:
            self._lost_parent()

    def _request(self, msg, fds):
        if msg[0] == "reap":
            pid = msg[1]
            if pid in self.zombies:
                self._reap(self.zombies[pid], pid)
            else:
                self.wanted.add(pid)
            return
        if msg[0] != "start":
            for fd in fds:
                os.close(fd)
            self.queue(("error", "unknown request %r" % (msg[0],)))
            return
        try:
            if self.spare is None:
                self._make_spare()
            pid, pidfd, sock = self.spare
            self.spare = None
            send_msg(sock, msg, fds)
        except OSError as e:
            self.queue(("error", "cannot start the process: %s" % e))
            return
        finally:
            for fd in fds:
                os.close(fd)
        sock.close()
        self.queue(("started", pid), [os.dup(pidfd)])
        # The next child is forked now, off the path of the next start.
        if not self.parent_gone:
            try:
                self._make_spare()
            except OSError:
                pass

    def _make_spare(self):
        """Fork the child that the next request will run: it drops the
        zygote's state and waits on a socket for what to run."""
        mine, its = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
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
            raise
        if pid == 0:
            code = 1
            try:
                mine.close()
                code = self._spare(its)
            finally:
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _CHILD_SIGNALS)
        its.close()
        pidfd = os.pidfd_open(pid)
        self.children[pidfd] = pid
        self.sel.register(pidfd, selectors.EVENT_READ, pid)
        self.spare = (pid, pidfd, mine)

    def _exited(self, pidfd, pid):
        self.sel.unregister(pidfd)
        spare = self.spare is not None and self.spare[0] == pid
        if (spare or pid in self.wanted or self.parent_gone or
                self.terminating):
            self._reap(pidfd, pid)
        else:
            self.zombies[pid] = pidfd

    def _reap(self, pidfd, pid):
        self.wanted.discard(pid)
        self.zombies.pop(pid, None)
        del self.children[pidfd]
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        if self.spare is not None and self.spare[0] == pid:
            self.spare[2].close()  # a spare nobody asked for
            self.spare = None
            return
        self.queue(("exit", pid, os.waitstatus_to_exitcode(status)))

    def _end_children(self):
        # The runtime is stopping: end the children as it ends its own
        # processes (SIGTERM, a grace period, SIGKILL).
        import time
        for pid, pidfd in list(self.zombies.items()):
            self._reap(pidfd, pid)
        for pidfd in list(self.children):
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGTERM)
            except OSError:
                pass
        deadline = time.monotonic() + 2.0
        while self.children and time.monotonic() < deadline:
            for key, _ in self.sel.select(0.05):
                if isinstance(key.data, int):
                    self._exited(key.fd, key.data)
        for pidfd, pid in list(self.children.items()):
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            except OSError:
                pass
            self.sel.unregister(pidfd)
            self._reap(pidfd, pid)

    def _spare(self, sock):
        """In a forked child: drop the zygote, wait for the request, become
        the parent's child as spawn would have made it and run it; returns
        the exit code."""
        zygote_pid = os.getppid()
        _set_pdeathsig(signal.SIGKILL)
        if os.getppid() != zygote_pid:
            return 1
        signal.set_wakeup_fd(-1)
        self.sel.close()
        for pidfd in self.children:
            os.close(pidfd)
        if self.spare is not None:
            self.spare[2].close()
        self.sock.close()
        self.reader.close()
        for _, out_fds in self.out:
            for fd in out_fds:
                os.close(fd)
        self.wake_r.close()
        self.wake_w.close()
        for sig in (signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _CHILD_SIGNALS)
        reader = Reader(sock)
        m = None
        while m is None:
            if not reader.fill():
                return 0  # the zygote is done: never used
            m = reader.next()
        sock.close()
        (_, env, payload, has_tracker, _), fds = m
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        os.close(fds[0])
        os.close(fds[1])
        tracker_fd = fds[2] if has_tracker else -1
        _take_environment(env)
        from . import _child
        return _child.run_payload(payload, tracker_fd)


def _take_environment(env):
    # Usually the parent's environment is the zygote's: change only what
    # differs (each change is a putenv or unsetenv).
    for k in [k for k in os.environ if k not in env]:
        del os.environ[k]
    for k, v in env.items():
        if os.environ.get(k) != v:
            os.environ[k] = v


_prctl = None  # libc's prctl, looked up once in the zygote


def _set_pdeathsig(sig):
    PR_SET_PDEATHSIG = 1
    _prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def _preload():
    # What nearly every child needs, imported once here instead of in
    # each child.  Nothing here starts a thread or opens a descriptor.
    global _prctl
    import ctypes
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
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
    sock.connect(address)
    z = _Zygote(sock)
    # What is loaded now stays out of the children's collections, so that
    # they do not touch (and copy) the pages of the zygote's objects.
    import gc
    gc.collect()
    gc.freeze()
    try:
        z._make_spare()
    except OSError:
        pass  # the first request tries again

    def on_term(signo, frame):
        z.terminating = True
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides
    z.run()
    sys.exit(0)
