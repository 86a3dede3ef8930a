"""Where 'dragon' processes run: placement policies.

A :class:`Policy` says on which node a process starts and which CPUs it
may use.  Its fields follow DragonHPC's Policy:

* ``placement``: ``Policy.Placement.ANYWHERE`` (the default: spread by
  ``distribution``), ``LOCAL`` (the caller's node), ``HOST_NAME`` (the node
  called ``host_name``) or ``HOST_ID`` (the node of index ``host_id``).
  Giving ``host_name`` or ``host_id`` alone implies the placement;
* ``distribution``, for ANYWHERE: ``Policy.Distribution.ROUNDROBIN`` (the
  default: each start goes to the next node) or ``BLOCK`` (a node gets as
  many processes as it has CPUs before the next one gets any);
* ``cpu_affinity``: the CPUs (numbers, as ``os.sched_setaffinity`` takes
  them) the process is bound to on its node.

A policy is given to a Process (``ctx.Process(target=f, policy=p)``) or a
Pool (``ctx.Pool(4, policy=p)``: every worker), or used as a context
manager: every 'dragon' process started in the block, in this thread,
that was not given a policy of its own, follows it::

    with dragon.Policy(host_name="node2"):
        p = multiprocessing.Process(target=work)
        p.start()

Without a policy, processes are placed round-robin over the nodes,
starting with the node after the caller's; a Manager's server, and the
children of a process that listens on a loopback address (127.0.0.1,
::1, localhost: each node has its own, see :func:`listens_on_loopback`),
start on the caller's node.
"""
import enum
import ipaddress
import itertools
import os
import sys
import threading
import weakref

from . import machine as _machine

__all__ = ["Policy", "active", "place", "listens_on_loopback", "note_local_server"]

_local = threading.local()
_lock = threading.Lock()
_turn = None      # (pid, counter) of round-robin starts in this process
_block = None     # (pid, [node index, starts there]) of block starts
#: The Manager servers this process started on a loopback address (their
#: Process objects; start() drops a process's arguments).
_loopback_servers = weakref.WeakSet()


class Policy:
    """Where a process starts, and on which CPUs (see the module's
    documentation)."""

    class Placement(enum.IntEnum):
        LOCAL = -5
        ANYWHERE = -4
        HOST_NAME = -3
        HOST_ID = -2
        DEFAULT = -1

    class Distribution(enum.IntEnum):
        ROUNDROBIN = 1
        BLOCK = 2
        DEFAULT = 3

    def __init__(self, placement=None, host_name="", host_id=-1,
                 distribution=None, cpu_affinity=()):
        if placement is None:
            placement = (self.Placement.HOST_NAME if host_name else
                         self.Placement.HOST_ID if host_id is not None and host_id >= 0
                         else self.Placement.DEFAULT)
        try:
            self.placement = self.Placement(placement)
        except ValueError:
            raise ValueError("Policy: placement %r is not one of %s"
                             % (placement, ", ".join(m.name for m in self.Placement))) from None
        if self.placement == self.Placement.HOST_NAME and not host_name:
            raise ValueError("Policy: placement HOST_NAME needs host_name")
        if self.placement == self.Placement.HOST_ID and (
                not isinstance(host_id, int) or host_id < 0):
            raise ValueError("Policy: placement HOST_ID needs host_id, a node "
                             "index >= 0 (see dragon.nodes())")
        self.host_name = host_name or ""
        self.host_id = -1 if host_id is None else host_id
        if distribution is None:
            distribution = self.Distribution.DEFAULT
        try:
            self.distribution = self.Distribution(distribution)
        except ValueError:
            raise ValueError("Policy: distribution %r is not one of %s"
                             % (distribution, ", ".join(m.name for m in self.Distribution))) from None
        try:
            cpus = [int(c) for c in cpu_affinity]
        except (TypeError, ValueError):
            raise ValueError("Policy: cpu_affinity must be a list of CPU numbers, "
                             "not %r" % (cpu_affinity,)) from None
        if any(c < 0 for c in cpus):
            raise ValueError("Policy: cpu_affinity %r has a negative CPU number" % cpus)
        self.cpu_affinity = cpus

    def __repr__(self):
        fields = ["placement=%s" % self.placement.name]
        if self.host_name:
            fields.append("host_name=%r" % self.host_name)
        if self.host_id >= 0:
            fields.append("host_id=%d" % self.host_id)
        fields.append("distribution=%s" % self.distribution.name)
        if self.cpu_affinity:
            fields.append("cpu_affinity=%r" % self.cpu_affinity)
        return "Policy(%s)" % ", ".join(fields)

    def __eq__(self, other):
        if not isinstance(other, Policy):
            return NotImplemented
        return (self.placement, self.host_name, self.host_id, self.distribution,
                self.cpu_affinity) == (other.placement, other.host_name, other.host_id,
                                       other.distribution, other.cpu_affinity)

    __hash__ = None

    def __enter__(self):
        stack = getattr(_local, "stack", None)
        if stack is None:
            stack = _local.stack = []
        stack.append(self)
        return self

    def __exit__(self, *exc):
        _local.stack.pop()
        return False


def active():
    """The innermost policy of the ``with`` blocks this thread is in, or
    None."""
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else None


def _next_round_robin(count, here):
    global _turn
    import os
    with _lock:
        if _turn is None or _turn[0] != os.getpid():
            _turn = (os.getpid(), itertools.count(1))
        return (here + next(_turn[1])) % count


def _next_block(all_nodes, here):
    global _block
    import os
    with _lock:
        if _block is None or _block[0] != os.getpid():
            _block = (os.getpid(), [here, 0])
        state = _block[1]
        if state[1] >= max(1, all_nodes[state[0]].cpus):
            state[0] = (state[0] + 1) % len(all_nodes)
            state[1] = 0
        state[1] += 1
        return state[0]


def place(policy):
    """The node index a process started now under policy (None: the
    default) goes to."""
    count = _machine.node_count()
    here = _machine.this_node()
    P = Policy.Placement
    placement = P.DEFAULT if policy is None else policy.placement
    if placement == P.LOCAL:
        return here
    if placement == P.HOST_ID:
        if policy.host_id >= count:
            raise ValueError("Policy: host_id %d: the job has %d node%s (0 .. %d)"
                             % (policy.host_id, count, "s" if count > 1 else "", count - 1))
        return policy.host_id
    if placement == P.HOST_NAME:
        all_nodes = _machine.nodes()
        for n in all_nodes:
            if n.host == policy.host_name:
                return n.index
        raise ValueError("Policy: no node of the job is called %r (its nodes: %s)"
                         % (policy.host_name, ", ".join(n.host for n in all_nodes)))
    if count <= 1:
        return here
    if policy is not None and policy.distribution == Policy.Distribution.BLOCK:
        return _next_block(_machine.nodes(), here)
    return _next_round_robin(count, here)


def _loopback_host(host):
    """True for a host name or address of the loopback interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def note_local_server(process_obj, address):
    """process_obj, started on this node, serves at address (a Manager's
    server): when that is a loopback address, this process listens on
    loopback while process_obj runs (see listens_on_loopback)."""
    if isinstance(address, tuple) and address and _loopback_host(address[0]):
        _loopback_servers.add(process_obj)


def listens_on_loopback():
    """True when this process has a socket listening on a loopback
    address (a Listener, a socket server), or runs a Manager's server
    asked to listen on one: only processes of this node can reach it."""
    for p in list(_loopback_servers):
        if p._popen is not None and p._popen.returncode is None:
            return True
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return False
    socks = set()
    for name in fds:
        try:
            link = os.readlink("/proc/self/fd/" + name)
        except OSError:
            continue
        if link.startswith("socket:["):
            socks.add(link[8:-1])
    return bool(socks) and not socks.isdisjoint(_loopback_listeners())


def _loopback_listeners():
    """The inodes of the TCP sockets of this network namespace that listen
    on a loopback address (read from /proc: a socket object made on the
    descriptor would change its blocking mode)."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            with open("/proc/self/net/" + table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A":  # TCP_LISTEN
                continue
            # The address in words of 4 bytes, each in host byte order.
            words = fields[1].rsplit(":", 1)[0]
            try:
                raw = b"".join(int(words[i:i + 8], 16).to_bytes(4, sys.byteorder)
                               for i in range(0, len(words), 8))
                addr = ipaddress.ip_address(raw)
            except ValueError:
                continue
            mapped = getattr(addr, "ipv4_mapped", None)
            if addr.is_loopback or (mapped is not None and mapped.is_loopback):
                inodes.add(fields[9])
    return inodes
