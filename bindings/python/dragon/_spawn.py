"""A fresh interpreter, started through the runtime.

Every 'dragon' child runs in an interpreter that ``dlaunch_spawn``
started: the child itself on the plain path (see
:class:`dragon._popen.SpawnPopen`), or the zygote that forks it (see
:mod:`dragon._zygote`).  This module builds what such an interpreter is
started with: its command line, its environment, its stdio and the
signals it ignores; and the text form, on a fresh child's command line,
of the pool allocation that holds its start data (read back by
:func:`dragon._child.main`).
"""
import _signal
import os
import signal

from multiprocessing import spawn, util

from . import runtime
from ._dragon_cffi import ffi, lib

#: The argument before the allocation text on a fresh child's command line.
CHILD_FLAG = "--dragon-child"
#: The argument before the start data, inline, on the command line of a
#: child started on another node (whose pool the parent cannot reach).
REMOTE_FLAG = "--dragon-remote-child"
#: The largest argument the kernel takes (MAX_ARG_STRLEN is 32 pages),
#: less room to spare; start data inline is cut into pieces of this size.
ARG_PIECE = 128 * 1024 - 1024
#: Inline start data (base64) at most this long in all: the kernel's
#: limit on a command line and environment together is larger but not
#: much (a quarter of the stack limit, often 2 MiB).
INLINE_MAX = 1 << 20
#: Variables of the parent's environment that describe its own node and
#: would be wrong on another one: a child there goes without them.
NODE_ENV = ("SLURMD_NODENAME", "SLURM_NODEID", "SLURM_PROCID", "SLURM_LOCALID",
            "SLURM_GTIDS", "SLURM_TOPOLOGY_ADDR", "SLURM_TOPOLOGY_ADDR_PATTERN",
            "SLURM_CPUS_ON_NODE", "SLURM_CPU_BIND", "SLURM_CPU_BIND_LIST",
            "SLURM_CPU_BIND_TYPE", "SLURM_CPU_BIND_VERBOSE", "SLURM_TASK_PID",
            "HOSTNAME")
#: The code a fresh child runs (``python -c CHILD_CODE CHILD_FLAG TEXT``).
CHILD_CODE = "from dragon._child import main; main()"


def _stdio_attr(rt):
    """Children's stdio.  Under the launcher stdout and stderr are pipes
    of the child's own that the runtime forwards line by line, as the
    zygote's children's are; an embedded runtime forwards nothing (see
    dragon(1)): children write to the program's own descriptors.  stdin
    is /dev/null (multiprocessing closes it anyway)."""
    attr = ffi.new("dlaunch_spawn_attr_t *")
    attr.field_mask = lib.DLAUNCH_SPAWN_ATTR_STDIO
    if runtime.embedded_instance(rt.instance):
        mode = lib.DLAUNCH_STDIO_INHERIT
    else:
        mode = lib.DLAUNCH_STDIO_FORWARD
    attr.stdio = [lib.DLAUNCH_STDIO_DEVNULL, mode, mode]
    return attr


def spawn_interpreter(rt, argv, env=None, node=None):
    """dlaunch_spawn argv[0] with argv; env (a dict) replaces the
    environment when given; node, when given, is the index of the node to
    start it on.  Returns the pid: the OS pid on this node, and on
    another the pid that names it from here (see dragon.machine)."""
    keep = [ffi.new("char[]", os.fsencode(a)) for a in argv]
    c_argv = ffi.new("char *[]", keep + [ffi.NULL])
    attr = _stdio_attr(rt)
    if node is not None:
        attr.field_mask |= lib.DLAUNCH_SPAWN_ATTR_NODE
        attr.node = node
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


def remote_environ():
    """The environment of a child on another node: this one's, without
    what describes this node (the runtime's own variables are set by the
    services of the child's node)."""
    env = environ_copy()
    for k in NODE_ENV:
        env.pop(k, None)
    return env


def inline_pieces(data):
    """Start data as command-line arguments: base64, cut into pieces the
    kernel takes.  ValueError when it is too large to go inline."""
    import base64
    text = base64.b64encode(data).decode()
    if len(text) > INLINE_MAX:
        raise ValueError(
            "dragon: the start data of a process on another node is %d bytes "
            "pickled, more than the %d a command line can carry: pass large "
            "arguments through a Queue or Pipe instead of the Process's "
            "args" % (len(data), INLINE_MAX * 3 // 4))
    return [text[i:i + ARG_PIECE] for i in range(0, len(text), ARG_PIECE)] or [""]


def inline_data(pieces):
    """The start data inline_pieces() cut into pieces."""
    import base64
    return base64.b64decode("".join(pieces))


def interpreter_argv(code, *args):
    """The command line of an interpreter that runs code with args, with
    this interpreter's flags (as spawn's children get them)."""
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


def alloc_text(alloc):
    """The text form of allocation alloc's descriptor, for a command line."""
    d = ffi.from_buffer("dmem_alloc_desc_t *", alloc.descriptor)
    buf = ffi.new("char[]", lib.DMEM_ALLOC_DESC_TEXT_MAX)
    n = lib.dmem_alloc_desc_to_text(d, buf, len(buf))
    if n < 0:
        raise OSError("cannot format allocation descriptor")
    return ffi.string(buf).decode()


def alloc_from_text(pool, text):
    """The allocation of pool that alloc_text() described as text."""
    from ._errors import check
    d = ffi.new("dmem_alloc_desc_t *")
    check(lib.dmem_alloc_desc_from_text(text.encode(), d), "child start data")
    return pool.attach_alloc(bytes(ffi.buffer(d)))
