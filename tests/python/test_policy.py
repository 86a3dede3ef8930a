"""dragon.nodes(), cpu_count() and dragon.Policy on one node (the
multi-node behaviour is test_multinode.py's, on the test cluster)."""
import multiprocessing as mp
import os
import socket

import pytest

import dragon
from dragon import Policy


def _where(q):
    q.put((socket.gethostname(), sorted(os.sched_getaffinity(0))))


def test_one_node_is_this_machine():
    assert dragon.nodes() == [dragon.Node(0, socket.gethostname(),
                                          len(os.sched_getaffinity(0)))]
    assert dragon.node_count() == 1 and dragon.this_node() == 0


def test_cpu_count_is_the_affinity_mask():
    ctx = mp.get_context("dragon")
    assert ctx.cpu_count() == len(os.sched_getaffinity(0))


def test_pool_sizes_from_cpu_count():
    ctx = mp.get_context("dragon")
    with ctx.Pool() as pool:
        assert len(pool._pool) == ctx.cpu_count()
        assert pool.map(abs, [-1, -2]) == [1, 2]


def test_placement_by_name_and_affinity_here():
    ctx = mp.get_context("dragon")
    q = ctx.Queue()
    cpu = min(os.sched_getaffinity(0))
    p = ctx.Process(target=_where, args=(q,),
                    policy=Policy(host_name=socket.gethostname(), cpu_affinity=[cpu]))
    p.start()
    assert q.get(timeout=60) == (socket.gethostname(), [cpu])
    p.join(60)
    assert p.exitcode == 0
    assert p.pid < dragon.machine.PID_SPAN
    assert dragon.pid_node(p.pid) == 0 and dragon.os_pid(p.pid) == p.pid


def test_policy_of_a_with_block_and_of_a_pool():
    ctx = mp.get_context("dragon")
    q = ctx.Queue()
    with Policy(host_id=0, cpu_affinity=[min(os.sched_getaffinity(0))]) as pol:
        assert dragon.policy.active() is pol
        p = ctx.Process(target=_where, args=(q,))
    assert dragon.policy.active() is None
    p.start()
    assert q.get(timeout=60)[1] == pol.cpu_affinity
    p.join(60)
    with ctx.Pool(1, policy=Policy(cpu_affinity=pol.cpu_affinity)) as pool:
        assert pool.apply(os.sched_getaffinity, (0,)) == set(pol.cpu_affinity)


def test_a_cpu_the_node_lacks_ends_the_child_with_a_message(capfd):
    ctx = mp.get_context("dragon")
    p = ctx.Process(target=abs, args=(1,), policy=Policy(cpu_affinity=[4095]))
    p.start()
    p.join(60)
    assert p.exitcode == 1
    assert "cannot bind process" in capfd.readouterr().err


def test_bad_policies_say_what_is_wrong():
    with pytest.raises(ValueError, match="no node of the job is called 'nosuch'"):
        dragon.policy.place(Policy(host_name="nosuch"))
    with pytest.raises(ValueError, match="host_id 3: the job has 1 node"):
        dragon.policy.place(Policy(host_id=3))
    with pytest.raises(ValueError, match="placement 'x' is not one of"):
        Policy(placement="x")
    with pytest.raises(ValueError, match="needs host_name"):
        Policy(placement=Policy.Placement.HOST_NAME)
    with pytest.raises(ValueError, match="cpu_affinity must be a list"):
        Policy(cpu_affinity=["a"])
    with pytest.raises(TypeError, match="policy must be a dragon.Policy"):
        mp.get_context("dragon").Process(target=abs, policy="node1")
    with pytest.raises(TypeError, match="policy must be a dragon.Policy"):
        mp.get_context("dragon").Pool(1, policy=3)


def test_pid_encoding_rule():
    m = dragon.machine
    assert m.encode_pid(0, 1234) == 1234  # this node
    assert m.encode_pid(1, 1234) == (1 << 22) * 2 + 1234
    assert m.pid_node((1 << 22) * 2 + 1234) == 1
    assert m.os_pid((1 << 22) * 2 + 1234) == 1234
    with open("/proc/sys/kernel/pid_max") as f:
        assert int(f.read()) <= m.PID_SPAN
    with pytest.raises(ProcessLookupError):
        os.kill(m.encode_pid(1, os.getpid()), 0)


def test_listening_on_loopback_is_seen_and_left_alone():
    # What keeps a process's children on its node across several nodes
    # (test_multinode.py shows the placement itself).
    from dragon import policy
    from multiprocessing.connection import Listener
    assert not policy.listens_on_loopback()
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(0.1)
    try:
        for host, family in (("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)):
            try:
                s = socket.create_server((host, 0), family=family)
            except OSError:
                continue  # no IPv6 here
            s.settimeout(None)
            assert policy.listens_on_loopback(), host
            assert s.getblocking(), "the probe must not change the socket's mode"
            s.close()
            assert not policy.listens_on_loopback(), host
        l = Listener(family="AF_INET")
        assert policy.listens_on_loopback()
        l.close()
        s = socket.create_server(("0.0.0.0", 0))  # every interface: reachable
        assert not policy.listens_on_loopback()
        s.close()
    finally:
        socket.setdefaulttimeout(old)
    assert policy._loopback_host("localhost") and policy._loopback_host("127.0.0.2")
    assert not policy._loopback_host(socket.gethostname() + ".invalid")
