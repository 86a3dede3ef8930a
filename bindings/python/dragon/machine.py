"""The nodes of the runtime, and the pids of processes on them.

Under a runtime over several nodes (``dragon prog.py`` inside a Slurm
allocation) :func:`nodes` lists the job's nodes, in the runtime's order:
index 0 is the primary node, where the head process runs.  Each node's
``dragon-backend`` records its host name and its CPUs with the global
services (the name ``dragon.node.<index>.info``); everywhere else (one
node, an embedded runtime) the list has this machine alone.

The CPUs of a node are those processes started there may use: the
backend's affinity mask (which they inherit), no more than the workload
manager granted the job on that node (``SLURM_CPUS_ON_NODE``).
:func:`cpu_count` adds them up over the nodes.

Pids.  A process on the caller's node is named by its OS pid, as always.
A process on another node is named by an *encoded* pid, above every pid
the kernel can hand out (``PID_SPAN``, the kernel's largest possible
``pid_max``, 2**22)::

    pid = PID_SPAN * (node_index + 1) + os_pid

so it can never name a local process: ``os.kill`` on it fails with
ProcessLookupError (past 510 nodes the number no longer fits a C pid_t
and os.kill raises OverflowError), never hitting an unrelated process.
:func:`pid_node` and :func:`os_pid` take an encoded pid apart.
"""
import collections
import os
import socket
import time

from ._dragon_cffi import ffi, lib
from ._errors import NodeLostError

__all__ = ["Node", "nodes", "node_count", "this_node", "cpu_count",
           "PID_SPAN", "encode_pid", "pid_node", "os_pid", "LostNode",
           "lost_node"]

# libdlaunch names a process of another node the same way
# (DLAUNCH_PID_ON): its calls take these pids as they are.

#: The kernel's largest possible pid_max (PID_MAX_LIMIT on 64-bit Linux):
#: no OS pid reaches it.
PID_SPAN = 1 << 22

#: The name under which each node's backend records its host and CPUs.
INFO_NAME = "dragon.node.%d.info"

Node = collections.namedtuple("Node", "index host cpus")
Node.__doc__ = """A node of the runtime: its index (0 .. node_count() - 1,
0 the primary node), host name, and the CPUs the job may use there."""

_nodes = None  # (pid that looked them up, the list)


def _usable_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _rt():
    """This process's runtime; None when it has none yet and none is
    named in the environment (nothing here starts an embedded one)."""
    from . import runtime
    return runtime.current(start=False)


def node_count():
    """How many nodes this process's runtime spans (1 on one node)."""
    rt = _rt()
    return 1 if rt is None else int(lib.dlaunch_node_count(rt.handle))


def this_node():
    """The index of the node this process runs on."""
    rt = _rt()
    # On one node dlaunch_node is the machine's node id, not an index.
    if rt is None or lib.dlaunch_node_count(rt.handle) <= 1:
        return 0
    return int(lib.dlaunch_node(rt.handle)) - 1


def _lookup(rt, index):
    buf = ffi.new("char[]", 512)
    n = ffi.new("size_t *")
    rc = lib.dlaunch_name_lookup(rt.handle, (INFO_NAME % index).encode(),
                                 lib.DLAUNCH_KIND_BYTES, buf, len(buf) - 1, n)
    if rc < 0:
        from .runtime import dlaunch_error
        raise dlaunch_error(rc, "the description of node %d (%s)"
                            % (index, INFO_NAME % index))
    fields = dict(f.split("=", 1) for f in
                  ffi.string(buf, n[0]).decode().split() if "=" in f)
    return Node(index, fields.get("host", ""), int(fields.get("cpus", "1")))


def nodes():
    """The nodes of the job, as a list of :class:`Node` (index, host,
    cpus), ordered by index."""
    global _nodes
    if _nodes is not None and _nodes[0] == os.getpid():
        return list(_nodes[1])
    rt = _rt()
    count = 1 if rt is None else int(lib.dlaunch_node_count(rt.handle))
    if count <= 1:
        found = [Node(0, socket.gethostname(), _usable_cpus())]
    else:
        found = [_lookup(rt, i) for i in range(count)]
    _nodes = (os.getpid(), found)
    return list(found)


def cpu_count():
    """The CPUs this job may use on all its nodes."""
    return sum(n.cpus for n in nodes())


def encode_pid(node, pid):
    """The pid by which a process of this node names process pid of node
    index node."""
    if node is None or node == this_node():
        return pid
    return PID_SPAN * (node + 1) + pid


def pid_node(pid):
    """The index of the node of the process named pid (as this process
    names it)."""
    return pid // PID_SPAN - 1 if pid >= PID_SPAN else this_node()


def os_pid(pid):
    """The OS pid, on its own node, of the process named pid."""
    return pid % PID_SPAN if pid >= PID_SPAN else pid


def global_pid(pid=None):
    """The pid by which processes of every other node name process pid of
    this node (default: this process)."""
    return PID_SPAN * (this_node() + 1) + (os.getpid() if pid is None else pid)


def local_name(gpid):
    """The pid by which this process names the process that the other
    nodes name gpid (see global_pid)."""
    return os_pid(gpid) if pid_node(gpid) == this_node() else gpid


#: The notice each surviving node's backend writes in its /dev/shm when
#: the runtime lost a node (dmem_segname_format's name): one line,
#: "index<TAB>host<TAB>why".
LOST_NAME = b"nodelost"

LostNode = collections.namedtuple("LostNode", "index host why")
LostNode.__doc__ = """A node the runtime lost: its index, its host name and
why the launcher took it for lost."""

_lost = None       # the LostNode once seen (a lost node stays lost)
_lost_path = None  # where its notice appears, once known


def _notice_path():
    global _lost_path
    if _lost_path is None:
        inst = os.environ.get("DRAGON_INSTANCE")
        if not inst:
            return None
        buf = ffi.new("char[]", lib.DMEM_SEGNAME_MAX)
        if lib.dmem_segname_format(ffi.NULL, inst.encode(), LOST_NAME, buf,
                                   lib.DMEM_SEGNAME_MAX) < 0:
            return None
        _lost_path = "/dev/shm/" + ffi.string(buf).decode()
    return _lost_path


def lost_node():
    """The node this process's runtime lost (a :class:`LostNode`), or None
    while it has lost none.  The waits of the package's objects ask
    between two slices (a file's presence: no message, no lock)."""
    global _lost
    if _lost is None:
        path = _notice_path()
        if path is None:
            return None
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                parts = f.read().rstrip("\n").split("\t", 2)
        except OSError:
            return None
        if len(parts) != 3 or not parts[0].isdigit():
            return None
        _lost = LostNode(int(parts[0]), parts[1], parts[2])
    return _lost


def wait_lost(timeout):
    """lost_node(), waiting up to timeout seconds for the notice (after
    the transport reported a node gone, the launcher's notice follows)."""
    deadline = time.monotonic() + timeout
    lost = lost_node()
    while lost is None and time.monotonic() < deadline:
        time.sleep(0.05)
        lost = lost_node()
    return lost


def lost_error(what, lost=None):
    """The NodeLostError for operation what (a phrase: "receiving on a
    Connection") of a runtime that lost node lost (default: lost_node())."""
    lost = lost or lost_node()
    return NodeLostError(
        "%s: node %d (%s) of the runtime was lost (%s); the runtime is "
        "ending its processes" % (what, lost.index, lost.host, lost.why),
        lost.index, lost.host)


def check_lost(what):
    """Raise lost_error(what) if the runtime lost a node: a wait that
    would go on stops here."""
    lost = lost_node()
    if lost is not None:
        raise lost_error(what, lost)


def remote_alive(pid):
    """Whether process pid of another node (as this node names it) still
    runs, as its node's services know it: False once it has ended; True
    while it runs, and when they cannot say (a process they did not start,
    whose status they forgot, or that they cannot be asked about)."""
    rt = _rt()
    if rt is None or not rt.alive:
        return True
    lost = lost_node()
    if lost is not None and pid_node(pid) == lost.index:
        return False  # its node's services cannot answer any more
    st = ffi.new("dlaunch_status_t *")
    return lib.dlaunch_wait(rt.handle, pid, 0, st) != 0
