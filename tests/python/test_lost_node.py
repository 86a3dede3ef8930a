"""A node lost while a Python program runs on a 2-node test cluster.

The program's head process, on node1, waits in several threads (a
Queue's get, the get of a Queue made on node2, a Connection's recv from a
child on node2 and a poll, a Lock
the node2 child holds, an Event, the join of a process on node1), and a
process on node1 reads a RawValue in node2's memory; node2 is then lost,
by SIGKILL of its backend and the program's processes there, or by
cutting its network.
Every wait must raise dragon.NodeLostError naming node2, the node2
child's exitcode must be non-zero, and the head must see the error (its
traceback on the terminal) before the launcher's teardown, which ends the
run non-zero and leaves nothing on either node.  Needs root and Slurm;
skipped, with the reason, otherwise."""
import os
import re
import select
import subprocess
import textwrap
import time

import pytest

from test_multinode import BUILDDIR, DRAGON, _leftovers, _vcluster

#: DRAGON_NODE_TIMEOUT of the runs: how long a silent node takes to be
#: declared lost, and how long the head then gets before the teardown.
NODE_TIMEOUT = 5


@pytest.fixture(scope="module")
def cluster():
    yield from _vcluster("lostnode")


PROG = """
import multiprocessing as mp, socket, sys, threading, time
import dragon
from dragon import Policy

def grandchild(v, ready, go):
    # On node1, reading memory of node2 (where its parent made it).
    print("value of node2: %d" % v.value, flush=True)
    ready.set()
    try:
        go.wait()
    except dragon.NodeLostError:
        pass
    try:
        v.value
        print("value of node2 after the loss: read", flush=True)
    except dragon.NodeLostError as e:
        print("value of node2 after the loss: NodeLostError node=%s: %s" % (e.node, e), flush=True)

def child(lock, ready_w, go):
    lock.acquire()                 # held when node2 is lost
    ctx = mp.get_context("dragon")
    v = ctx.RawValue("i", 7)       # in node2's pool
    ready = ctx.Event()
    g = ctx.Process(target=grandchild, args=(v, ready, go), policy=Policy(host_name="node1"))
    g.start()
    ready.wait()
    ready_w.send(("child on %s" % socket.gethostname(), ctx.Queue()))
    time.sleep(600)

def local():
    time.sleep(600)

def blocked(name, fn, results):
    try:
        fn()
        results[name] = "returned"
    except dragon.NodeLostError as e:
        results[name] = "NodeLostError node=%s host=%s: %s" % (e.node, e.host, e)
    except BaseException as e:
        results[name] = "other %r" % (e,)

if __name__ == "__main__":
    mp.set_start_method("dragon")
    ctx = mp.get_context("dragon")
    lock, ev, go, q = ctx.Lock(), ctx.Event(), ctx.Event(), ctx.Queue()
    ready_r, ready_w = ctx.Pipe(duplex=False)
    a, b = ctx.Pipe()
    p = ctx.Process(target=child, args=(lock, ready_w, go), policy=Policy(host_name="node2"))
    p.start()
    ready_w.close()
    near = ctx.Process(target=local, daemon=True, policy=Policy(host_name="node1"))
    near.start()
    hello, far = ready_r.recv()    # far: a Queue of node2's
    print(hello, flush=True)
    results = {}
    waits = {"Queue.get": q.get, "Queue.get (node2's)": far.get,
             "Connection.recv": ready_r.recv,
             "Connection.poll": lambda: a.poll(None), "Lock.acquire": lock.acquire,
             "Event.wait": ev.wait, "Process.join (node1)": near.join}
    ts = [threading.Thread(target=blocked, args=(n, f, results)) for n, f in waits.items()]
    for t in ts:
        t.start()
    time.sleep(1)
    print("ready", flush=True)
    for t in ts:
        t.join(120)
    for n in sorted(waits):
        print("wait %s: %s" % (n, results.get(n, "still blocked")), flush=True)
    print("exitcode of the node2 child: %r" % p.exitcode, flush=True)
    p.join()
    print("join of the node2 child: %r" % p.exitcode, flush=True)
    print("lost_node: %r" % (dragon.lost_node(),), flush=True)
    time.sleep(1)                  # the grandchild's lines
    ev.wait()                      # uncaught: its traceback ends the head
    print("not reached", flush=True)
"""


def _node2_victims(cluster, mark):
    """node2's backend and the program's processes on node2."""
    slot = open(os.path.join(cluster, "slot")).read().strip()
    ns = "vc%s-node2" % slot
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % pid, "rb") as f:
                if mark.encode() not in f.read().split(b"\0"):
                    continue
        except OSError:
            continue
        r = subprocess.run(["ip", "netns", "identify", pid], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
        if r.stdout.strip() == ns:
            out.append(int(pid))
    return out


def _lose(cluster, mark, how):
    """Lose node2: SIGKILL of everything of the run there, or its link
    down (returned: what undoes it)."""
    if how == "kill":
        victims = _node2_victims(cluster, mark)
        assert victims, "the run has processes on node2"
        for pid in victims:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        return lambda: None
    slot = open(os.path.join(cluster, "slot")).read().strip()
    veth = "vc%sn2" % slot
    subprocess.run(["ip", "link", "set", veth, "down"], check=True)
    return lambda: subprocess.run(["ip", "link", "set", veth, "up"])


@pytest.mark.parametrize("how", ["kill", "cut"])
def test_waits_raise_a_node_lost_error_when_a_node_is_lost(cluster, tmp_path, how):
    prog = tmp_path / "prog.py"
    prog.write_text(textwrap.dedent(PROG))
    mark = "PY_LOSTNODE_MARK=%d.%s" % (os.getpid(), tmp_path.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "DRAGON_"))}
    env.update(SLURM_CONF=os.path.join(cluster, "slurm.conf"),
               PATH=os.environ.get("PATH", "") + ":/usr/sbin:/sbin",
               PYTHONPATH=os.path.join(BUILDDIR, "bindings", "python"),
               DRAGON_NODE_TIMEOUT=str(NODE_TIMEOUT))
    env.update([mark.split("=", 1)])
    p = subprocess.Popen(["salloc", "-Q", "-N2", DRAGON, "-t", "30", str(prog)],
                         env=env, cwd=str(tmp_path), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    undo = lambda: None
    out = []
    try:
        deadline = time.monotonic() + 120
        while not out or out[-1] != "ready\n":
            assert time.monotonic() < deadline and p.poll() is None, \
                "the program got ready:\n" + "".join(out) + p.stderr.read()
            if select.select([p.stdout], [], [], 1)[0]:
                out.append(p.stdout.readline())
        undo = _lose(cluster, mark, how)
        rest, err = p.communicate(timeout=180)
    finally:
        undo()
        if p.poll() is None:
            p.kill()
            p.wait()
    out = "".join(out) + rest
    diag = "stdout:\n%s\nstderr:\n%s" % (out, err)
    assert "child on node2" in out and "value of node2: 7" in out, diag
    # Every wait raised, naming node2, rather than hanging or being killed.
    waits = re.findall(r"^wait (.*?): (.*)$", out, re.M)
    assert len(waits) == 7, diag
    for name, result in waits:
        assert result.startswith("NodeLostError node=1 host=node2: "), (name, diag)
        assert "node 1 (node2)" in result, (name, diag)
    # The child on the lost node ended with a non-zero code.
    m = re.search(r"^exitcode of the node2 child: (.*)$", out, re.M)
    assert m and m.group(1) not in ("None", "0"), diag
    m = re.search(r"^join of the node2 child: (.*)$", out, re.M)
    assert m and m.group(1) not in ("None", "0"), diag
    assert re.search(r"^value of node2 after the loss: NodeLostError node=1: .*node 1", out, re.M), diag
    assert "lost_node: LostNode(index=1, host='node2'" in out, diag
    # The head's own uncaught error reached the terminal before teardown.
    assert "not reached" not in out, diag
    assert re.search(r"Traceback .*\n(.*\n)*dragon\.NodeLostError: waiting on the event: "
                     r"node 1 \(node2\)", err), diag
    # The launcher still reports the loss and fails the run.
    assert "dragon: node 1 (node2) was lost" in err, diag
    assert p.returncode not in (0, 124), diag
    deadline = time.monotonic() + 30
    while True:
        procs, shm = _leftovers(cluster, mark)
        if (not procs and not shm) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not procs and not shm, "left behind: processes %s, segments %s" % (procs, shm)
