"""The warm start path on another node: a starter there.

On its own node a process starts its 'dragon' children through its zygote
(:mod:`dragon._zygote`), a warm interpreter that forks them.  The zygote's
protocol needs one machine (descriptors passed over a Unix socket,
pidfds), so for each other node it starts children on, a process has a
*starter* there: a Python process that the runtime starts on that node
(``dlaunch_spawn``, a fresh interpreter, once), which has a zygote of its
own on that node and starts each child through it.  A start on another
node then costs what a start through the zygote costs, plus one round
trip between the nodes; without a starter it costs a fresh interpreter
on that node.  Nothing of this exists until a process starts a child on
another node (a program that never does pays nothing), and a starter ends
when the process that uses it does.

The caller and its starter talk over a 'dragon' Pipe, which crosses nodes
through the transport agents.  Messages are tuples:

* caller to starter, first: ``("prime", main_path, modules, zygote)``,
  what the starter's zygote is primed with (the caller's main module,
  compiled there once, and the standard-library modules the caller has
  imported; see :mod:`dragon._zygote`), and (name, OS pid) of that
  zygote, which the caller started on the starter's node at the same time
  as the starter (None: the starter starts it); then ``("start", token, payload, environ)``:
  payload is exactly what a child started as a fresh interpreter would
  have been given (the preparation data and the pickled Process object),
  environ the caller's environment for a child on another node (None when
  it is the one sent last);
* starter to caller: ``("ready",)`` or ``("unusable", text)`` once, when
  its zygote has started or could not be; ``("started", token, pid)``
  (pid: the OS pid on the starter's node) or ``("failed", token, text)``
  (nothing was started) for each start; ``("exit", pid, code)`` once the
  child has ended (code in Process.exitcode's convention) and its zygote
  has been asked to reap it.

The child is exactly a child of the zygote on its own node (same
preparation, same exit, output forwarded by its node's services, adopted
by its node's runtime so that ``dlaunch_wait``, ``dlaunch_signal`` and
``dlaunch_proc_fd`` work on its pid), with what a child on another node
has: its environment is the caller's without what describes the caller's
node (:func:`dragon._spawn.remote_environ`) and with the runtime variables
of its own node; it has no share of anyone's resource tracker; its parent
is the caller, on the caller's node.  The caller names it as every process
of another node (:func:`dragon.machine.encode_pid`).

When a starter is lost (its node's runtime ended it, or it died), the
children it started are waited for through their node's services
(``dlaunch_wait``), as children started without a starter are, and the
next starts on that node go without one.  A start whose request reached a
starter that was lost before it answered raises, rather than start the
process a second time.
"""
import io
import os
import select
import signal
import sys
import threading

from multiprocessing import reduction, spawn, util
from multiprocessing.context import set_spawning_popen

from . import _holders, _spawn, _zygote, machine, runtime

#: The code a starter runs (``python -c STARTER_CODE PIECES...``).
STARTER_CODE = "from dragon._rstart import main; main()"

#: The variables a child gets from its own node's runtime, not from the
#: caller's environment (runtime.RUNTIME_ENV and what a node's backend
#: adds to them).
NODE_RUNTIME_ENV = runtime.RUNTIME_ENV + ("DRAGON_GW_CHANNEL", "DRAGON_NNODES",
                                          "DRAGON_GS_CHANNEL")


class StarterError(RuntimeError):
    """The start was not made (no starter, or it refused): nothing runs,
    and the caller may start the process another way."""


class _Crossing:
    # What the Pipe end pickled for a starter sees as the spawning Popen:
    # it goes to another node (see dragon.connection).
    crosses_nodes = True


# ---- the caller's end ----------------------------------------------------


class Starter:
    """This process's starter on node ``node``."""

    def __init__(self, rt, node):
        from . import connection
        self.node = node
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.replies = {}    # token -> ("started", pid) or ("failed", text)
        self.watchers = {}   # pid -> (on_exit, on_lost)
        self.codes = {}      # pid -> exit code that came before its watcher
        self.lost = None     # why the starter is gone, once it is
        self.unusable = None
        self.next_token = 0
        self.last_env = None
        self.conn, theirs = connection.Pipe()
        try:
            fp = io.BytesIO()
            set_spawning_popen(_Crossing())
            try:
                with _holders.capture_pending() as in_flight:
                    reduction.dump(theirs, fp)
            finally:
                set_spawning_popen(None)
            argv = _spawn.interpreter_argv(STARTER_CODE,
                                           *_spawn.inline_pieces(fp.getvalue()))
            env = _spawn.remote_environ()
            self.pid = _spawn.spawn_interpreter(rt, argv, env, node=node)
            _holders.hand_over(in_flight, self.pid)
        except BaseException:
            self.conn.close()
            raise
        finally:
            theirs.close()
        # The starter's zygote starts beside it rather than after it: the
        # first start waits for one interpreter's start-up, not two.
        name = _zygote.zygote_name()
        try:
            zygote = (name, machine.os_pid(_zygote.spawn_zygote(rt, name, env, node)))
        except (OSError, RuntimeError) as e:
            util.info("dragon: the starter on node %d starts its zygote: %s", node, e)
            zygote = None
        main_path = spawn.get_preparation_data("starter").get("init_main_from_path")
        self.conn.send(("prime", main_path, _zygote.stdlib_modules(), zygote))
        threading.Thread(target=self._read, daemon=True,
                         name="dragon-starter-%d" % node).start()

    def _read(self):
        while True:
            try:
                msg = self.conn.recv()
            except Exception as e:
                self._lose("the starter (pid %d) on node %d is gone (%s)"
                           % (self.pid, self.node, e or type(e).__name__))
                return
            call = None
            with self.lock:
                kind = msg[0]
                if kind == "exit":
                    w = self.watchers.pop(msg[1], None)
                    if w is None:
                        self.codes[msg[1]] = msg[2]
                    else:
                        call = (w[0], msg[2])
                elif kind in ("started", "failed"):
                    self.replies[msg[1]] = (kind, msg[2])
                    self.cond.notify_all()
                elif kind == "unusable":
                    self.unusable = msg[1]
                    util.info("dragon: no starter on node %d, starting children "
                              "there as fresh interpreters: %s", self.node, msg[1])
            if call:
                call[0](call[1])

    def _lose(self, why):
        with self.lock:
            if self.lost is None:
                self.lost = why
            self.cond.notify_all()
            watchers, self.watchers = self.watchers, {}
        for on_exit, on_lost in watchers.values():
            on_lost()

    def start(self, payload, env):
        """Start payload on the starter's node; its OS pid there.
        StarterError when nothing was started."""
        with self.lock:
            if self.lost or self.unusable:
                raise StarterError(self.lost or self.unusable)
            token = self.next_token
            self.next_token += 1
            try:
                self.conn.send(("start", token, payload,
                                None if env == self.last_env else env))
            except (OSError, ValueError) as e:
                raise StarterError("the starter on node %d cannot be reached: %s"
                                   % (self.node, e))
            self.last_env = env
            while token not in self.replies and self.lost is None:
                self.cond.wait()
            reply = self.replies.pop(token, None)
        if reply is None:
            raise OSError("starting a process on node %d: %s before it said "
                          "whether it started the process" % (self.node, self.lost))
        if reply[0] == "failed":
            raise StarterError(reply[1])
        return reply[1]

    def watch(self, pid, on_exit, on_lost):
        """Call on_exit(code) when child pid (OS pid on the starter's
        node) has ended, or on_lost() if the starter is lost first."""
        with self.lock:
            if pid in self.codes:
                code = self.codes.pop(pid)
            elif self.lost is None:
                self.watchers[pid] = (on_exit, on_lost)
                return
            else:
                code = None
        if code is None:
            on_lost()
        else:
            on_exit(code)

    def close(self):
        """End the connection: the starter then exits (its children go on
        as children of its zygote)."""
        try:
            self.conn.close()
        except OSError:
            pass


_lock = threading.Lock()
_starters = {}       # node -> Starter, or False (none can be had there)
_starters_pid = None  # the process _starters belongs to


def starter(node):
    """This process's starter on node, started on first use; None when
    children there must be started as fresh interpreters."""
    global _starters, _starters_pid
    with _lock:
        if _starters_pid != os.getpid():  # never used, or a forked copy
            _starters, _starters_pid = {}, os.getpid()
            runtime.at_stop(_stop_starters)
        s = _starters.get(node)
        if s is None:
            s = _starters[node] = _start_starter(node)
        elif s and (s.lost or s.unusable):
            s.close()
            s = _starters[node] = False
        return s or None


def _start_starter(node):
    if os.environ.get(_zygote.ZYGOTE_ENV, "1") == "0":
        return False
    try:
        return Starter(runtime.current(), node)
    except (OSError, ValueError, RuntimeError) as e:
        util.info("dragon: no starter on node %d, starting children there as "
                  "fresh interpreters: %s", node, e)
        return False


def _stop_starters():
    global _starters
    with _lock:
        mine = _starters_pid == os.getpid()
        starters, _starters = _starters, {}
    if mine:
        for s in starters.values():
            if s:
                s.close()


def _forget_after_fork():
    # A forked copy of this process must not share the starters' Pipes.
    global _starters
    _starters = {}


os.register_at_fork(after_in_child=_forget_after_fork)


def start(node, payload):
    """Start payload on node through this process's starter there:
    (starter, OS pid there).  StarterError when it cannot be started so."""
    s = starter(node)
    if s is None:
        raise StarterError("no starter on node %d" % node)
    return s, s.start(payload, _spawn.remote_environ())


# ---- the starter ---------------------------------------------------------


def _child_env(env):
    """The environment of a child: the caller's, with this node's runtime
    variables."""
    env = dict(env)
    for k in NODE_RUNTIME_ENV:
        v = os.environ.get(k)
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


class _Serve:
    def __init__(self, conn):
        self.conn = conn
        self.send_lock = threading.Lock()
        self.z = None
        self.env = None
        self.children = {}  # pid -> [pidfd, done_r or -1, code]
        self.clock = threading.Lock()
        self.wake_r, self.wake_w = os.pipe()

    def send(self, msg):
        with self.send_lock:
            self.conn.send(msg)

    def prime(self):
        msg = self.conn.recv()
        if msg[0] != "prime":
            raise ValueError("the first message to a starter is %r" % (msg[0],))
        rt = runtime.current(start=False)
        try:
            self.z = _zygote.Zygote(rt, prime=(msg[1], msg[2]), spawned=msg[3])
        except (_zygote.ZygoteError, OSError) as e:
            self.send(("unusable", "the zygote on node %d: %s"
                       % (machine.this_node(), e)))
            return
        self.send(("ready",))
        threading.Thread(target=self.watch, daemon=True,
                         name="dragon-starter-watch").start()

    def serve(self):
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                return
            if msg[0] != "start":
                continue
            _, token, payload, env = msg
            if env is not None:
                self.env = _child_env(env)
            try:
                pid = self.start(payload)
            except (_zygote.ZygoteError, OSError) as e:
                self.send(("failed", token, "the zygote on node %d: %s"
                           % (machine.this_node(), e)))
                continue
            self.send(("started", token, pid))

    def start(self, payload):
        if self.z is None or self.z.dead:
            raise _zygote.ZygoteError("it is not running")
        done_r, done_w = os.pipe()
        try:
            pid, pidfd = self.z.start(payload, done_w, self.env, tracker=False)
        except BaseException:
            os.close(done_r)
            raise
        finally:
            os.close(done_w)
        with self.clock:
            self.children[pid] = [pidfd, done_r, None]
        os.write(self.wake_w, b"x")
        return pid

    def watch(self):
        """Report each child's end: its code on its done pipe, else its
        pidfd (see dragon._popen.ZygotePopen).  A starter that can no
        longer report ends, so that the caller waits for its children
        through the runtime instead (see Starter._lose)."""
        try:
            self._watch()
        except BaseException as e:
            sys.stderr.write("dragon: the starter on node %d stops: %r\n"
                             % (machine.this_node(), e))
            sys.stderr.flush()
            os._exit(1)

    def _watch(self):
        while True:
            with self.clock:
                fds = {}
                for pid, c in self.children.items():
                    fds[c[0]] = pid
                    if c[1] >= 0:
                        fds[c[1]] = pid
            ready = select.select([self.wake_r] + list(fds), [], [])[0]
            for fd in ready:
                if fd == self.wake_r:
                    os.read(self.wake_r, 512)
                    continue
                pid = fds[fd]
                with self.clock:
                    c = self.children.get(pid)
                if c is None:
                    continue
                if fd == c[1]:
                    try:
                        data = os.read(fd, 1)
                    except OSError:
                        data = b""
                    if data:
                        c[2] = data[0]
                    os.close(fd)
                    c[1] = -1
                    if not data:
                        continue  # only the pidfd tells the end now
                elif c[1] >= 0 and select.select([c[1]], [], [], 0)[0]:
                    continue  # its report is there: read it first
                self.ended(pid, c)

    def ended(self, pid, c):
        with self.clock:
            self.children.pop(pid, None)
        code = self.z.status(pid, c[0], c[2])
        os.close(c[0])
        if c[1] >= 0:
            os.close(c[1])
        try:
            self.send(("exit", pid, code))
        except (OSError, ValueError):
            pass


def main():
    """Entry point: ``python -c STARTER_CODE PIECES...``, the pieces the
    caller's end of the Pipe, pickled (see dragon._spawn.inline_pieces)."""
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    # ^C reaches every process of the job: the caller decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    rt = runtime.current(start=False)
    if rt is None:
        sys.stderr.write("dragon: starter started without a runtime\n")
        sys.exit(1)
    conn = reduction.ForkingPickler.loads(_spawn.inline_data(sys.argv[1:]))
    s = _Serve(conn)
    try:
        s.prime()
        if s.z is None:  # refuse every start until the caller lets go
            while True:
                msg = conn.recv()
                if msg[0] == "start":
                    s.send(("failed", msg[1], "no zygote on node %d"
                            % machine.this_node()))
        s.serve()
    except (EOFError, OSError):
        pass
    finally:
        if s.z is not None:
            s.z.close()
    sys.exit(0)
