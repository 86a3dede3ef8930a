"""Python across nodes: 'dragon' processes on a 2-node test cluster.

A Slurm cluster whose nodes are namespaces on this machine
(tests/cluster/vcluster) is started once for the module; each test runs a
small program with ``dragon`` inside an allocation, and the program prints
what it saw (host names from socket.gethostname(), exit codes, pids).
Needs root and Slurm; skipped, with the reason, otherwise."""
import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.environ.get("top_srcdir", os.path.join(HERE, "..", ".."))
BUILDDIR = os.environ.get("top_builddir", os.path.join(SRCDIR, "build"))
VCLUSTER = os.path.join(SRCDIR, "tests", "cluster", "vcluster")
DRAGON = os.path.join(BUILDDIR, "libdlaunch", "dragon")


def _why_no_cluster():
    if os.geteuid() != 0:
        return ("the cluster tests need root (network namespaces, a bridge, "
                "Slurm's daemons); run make check as root")
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    for c in ("slurmctld", "slurmd", "salloc", "munged"):
        if shutil.which(c, path=path) is None:
            return "%s is not installed; 'make deps' installs Slurm and munge" % c
    if subprocess.run(["unshare", "--net", "--uts", "--mount", "true"],
                      stderr=subprocess.DEVNULL).returncode != 0:
        return "no namespaces can be made here (unshare --net --uts --mount fails)"
    if not os.access(DRAGON, os.X_OK):
        return "build dragon first (%s)" % DRAGON
    return None


def _vcluster(name, nodes=2):
    """A test cluster of `nodes` nodes in the build tree's
    tests/python/<name>.vc for a module's tests (yields its directory),
    skipped with the reason where none can run.  In the build tree:
    munged wants every directory above its socket searchable, which
    pytest's temporary directories are not; a run killed earlier is
    cleaned up first."""
    why = _why_no_cluster()
    if why:
        pytest.skip(why)
    d = os.path.join(BUILDDIR, "tests", "python", name + ".vc")
    env = dict(os.environ, PATH=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    subprocess.run([VCLUSTER, "-d", d, "stop"], env=env, timeout=180,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = subprocess.run([VCLUSTER, "-d", d, "start", str(nodes)], env=env, timeout=180,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert r.returncode == 0, "a %d-node cluster starts:\n%s" % (nodes, r.stdout)
        yield d
    finally:
        subprocess.run([VCLUSTER, "-d", d, "stop"], env=env, timeout=180,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def cluster():
    yield from _vcluster("multinode")


def _leftovers(cluster, mark):
    """What a run left: processes carrying its mark (dragon passes the
    environment on to every process of every node), and dragon segments
    in each node's /dev/shm."""
    procs = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % pid, "rb") as f:
                env = f.read().split(b"\0")
            with open("/proc/%s/stat" % pid, "rb") as f:
                zombie = f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
        except OSError:
            continue
        if mark.encode() in env and not zombie:
            procs.append(int(pid))
    shm = {}
    for node in ("node1", "node2"):
        r = subprocess.run([VCLUSTER, "-d", cluster, "exec", node, "ls", "/dev/shm"],
                           stdout=subprocess.PIPE, text=True, timeout=60)
        left = [n for n in r.stdout.split() if n.startswith("dragon.")]
        if left:
            shm[node] = left
    return procs, shm


@pytest.fixture
def run(cluster, tmp_path):
    """run(code, *salloc_args): the program code under dragon in a 2-node
    allocation; returns (exit code, stdout, stderr).  With argv=[...]
    instead of code, that program and its arguments.  Checks that the
    run left no process and no segment on any node."""
    def go(code, *salloc_args, argv=None):
        if argv is None:
            prog = tmp_path / "prog.py"
            prog.write_text(textwrap.dedent(code))
            argv = [str(prog)]
        mark = "PY_MULTINODE_MARK=%d.%s" % (os.getpid(), tmp_path.name)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SLURM_", "DRAGON_"))}
        env.update(SLURM_CONF=os.path.join(cluster, "slurm.conf"),
                   PATH=os.environ.get("PATH", "") + ":/usr/sbin:/sbin",
                   PYTHONPATH=os.path.join(BUILDDIR, "bindings", "python"))
        env.update([mark.split("=", 1)])
        r = subprocess.run(["salloc", "-Q", "-N2"] + list(salloc_args)
                           + [DRAGON, "-t", "30"] + list(argv),
                           env=env, cwd=str(tmp_path), timeout=240,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        while True:
            procs, shm = _leftovers(cluster, mark)
            if (not procs and not shm) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert not procs and not shm, "left behind: processes %s, segments %s" % (procs, shm)
        return r.returncode, r.stdout, r.stderr
    return go


def _lines(out, prefix):
    return sorted(l[len(prefix):].strip() for l in out.splitlines() if l.startswith(prefix))


HEAD = """
import multiprocessing as mp, os, signal, socket, sys, time
import dragon
from dragon import Policy

def host(tag):
    print("%s on %s" % (tag, socket.gethostname()), flush=True)
"""


def test_round_robin_over_the_nodes_and_nodes_listed(run):
    rc, out, err = run(HEAD + """
if __name__ == "__main__":
    mp.set_start_method("dragon")
    print("nodes:", [(n.index, n.host) for n in dragon.nodes()], flush=True)
    ps = [mp.Process(target=host, args=("child%d" % i,)) for i in range(4)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    print("codes:", [p.exitcode for p in ps], flush=True)
""")
    assert rc == 0, out + err
    assert "nodes: [(0, 'node1'), (1, 'node2')]" in out
    # Round-robin, starting with the node after the head's (node1).
    assert _lines(out, "child") == ["0 on node2", "1 on node1", "2 on node2", "3 on node1"]
    assert "codes: [0, 0, 0, 0]" in out


def test_remote_process_behaves_as_a_local_one(run):
    rc, out, err = run(HEAD + """
from multiprocessing.connection import wait

def code(n):
    sys.exit(n)

def killed():
    os.kill(os.getpid(), signal.SIGKILL)

def boom():
    raise RuntimeError("boom on " + socket.gethostname())

def sleeper(ready):
    print("parent pid seen:", mp.parent_process().pid, flush=True)
    ready.set()
    time.sleep(60)

if __name__ == "__main__":
    mp.set_start_method("dragon")
    ctx = mp.get_context("dragon")
    there = Policy(host_name="node2")
    def start(f, *args):
        p = ctx.Process(target=f, args=args, policy=there)
        p.start()
        return p
    p = start(code, 7); p.join(); print("exitcode:", p.exitcode, flush=True)
    p = start(killed); p.join(); print("killed:", p.exitcode, flush=True)
    p = start(boom); p.join(); print("raised:", p.exitcode, flush=True)
    ready = mp.Event()
    p = start(sleeper, ready)
    ready.wait(60)
    print("alive:", p.is_alive(), p in mp.active_children(), flush=True)
    p.join(0.5)
    print("after join(0.5):", p.exitcode, flush=True)
    print("wait short:", wait([p.sentinel], 0.3), flush=True)
    p.terminate()
    print("wait:", wait([p.sentinel], 30) == [p.sentinel], flush=True)
    p.join(); print("terminated:", p.exitcode, p.is_alive(), flush=True)
    p.close()
    q = start(sleeper, mp.Event())
    time.sleep(0.5); q.kill(); q.join(30); print("killed by kill():", q.exitcode, flush=True)
    print("head pid:", os.getpid(), flush=True)
    print("children left:", mp.active_children(), flush=True)
""")
    assert rc == 0, out + err
    assert "exitcode: 7" in out
    assert "killed: -9" in out
    assert "raised: 1" in out
    both = out + err
    assert "RuntimeError: boom on node2" in both and "Traceback" in both
    assert "alive: True True" in out
    assert "after join(0.5): None" in out
    assert "wait short: []" in out
    assert "wait: True" in out
    assert "terminated: -15 False" in out
    assert "killed by kill(): -9" in out
    assert "children left: []" in out
    head = int(_lines(out, "head pid:")[0])
    seen = {int(x) for x in _lines(out, "parent pid seen:")}
    # The child on node2 names its parent on node1 by an encoded pid.
    assert seen == {(1 << 22) * 1 + head}


def test_remote_pid_never_names_a_local_process(run):
    rc, out, err = run(HEAD + """
def me(ready):
    print("child os pid:", os.getpid(), flush=True)
    ready.set()
    time.sleep(30)

if __name__ == "__main__":
    mp.set_start_method("dragon")
    ready = mp.Event()
    p = mp.get_context("dragon").Process(target=me, args=(ready,), policy=Policy(host_id=1))
    p.start()
    ready.wait(60)
    print("pid:", p.pid, dragon.pid_node(p.pid), dragon.os_pid(p.pid), flush=True)
    try:
        os.kill(p.pid, 0)
        print("os.kill: reached a process", flush=True)
    except ProcessLookupError:
        print("os.kill: ProcessLookupError", flush=True)
    p.terminate(); p.join()
""")
    assert rc == 0, out + err
    pid, node, ospid = (int(x) for x in _lines(out, "pid:")[0].split())
    assert pid >= 1 << 22 and node == 1
    assert ospid == pid - (1 << 22) * 2
    assert int(_lines(out, "child os pid:")[0]) == ospid
    assert "os.kill: ProcessLookupError" in out


def test_cpu_count_is_what_the_job_has_on_every_node(run):
    prog = HEAD + """
if __name__ == "__main__":
    mp.set_start_method("dragon")
    print("cpus:", [n.cpus for n in dragon.nodes()], mp.cpu_count(), flush=True)
    print("affinity here:", len(os.sched_getaffinity(0)), flush=True)
"""
    rc, out, err = run(prog)
    assert rc == 0, out + err
    assert "cpus: [1, 1] 2" in out  # salloc's default: one CPU on each node
    rc, out, err = run(prog, "-c", "2")
    assert rc == 0, out + err
    assert "cpus: [2, 2] 4" in out


def test_placement_policies(run):
    rc, out, err = run(HEAD + """
def aff(tag):
    print("%s on %s cpus %s" % (tag, socket.gethostname(), sorted(os.sched_getaffinity(0))), flush=True)

if __name__ == "__main__":
    mp.set_start_method("dragon")
    ctx = mp.get_context("dragon")
    def go(tag, policy=None, f=host):
        p = ctx.Process(target=f, args=(tag,), policy=policy)
        p.start(); p.join()
        return p.exitcode
    go("byname", Policy(host_name="node1"))
    go("byid", Policy(host_id=1))
    go("local", Policy(placement=Policy.Placement.LOCAL))
    with Policy(host_name="node2"):
        p = mp.Process(target=host, args=("with-block",)); p.start(); p.join()
    block = Policy(distribution=Policy.Distribution.BLOCK)
    ps = [ctx.Process(target=host, args=("block%d" % i,), policy=block) for i in range(4)]
    for p in ps: p.start()
    for p in ps: p.join()
    go("aff", Policy(host_id=1, cpu_affinity=[1]), aff)
    for bad in (dict(host_name="nosuch"), dict(host_id=5)):
        try:
            go("bad", Policy(**bad))
        except ValueError as e:
            print("bad:", e, flush=True)
    try:
        Policy(placement="somewhere")
    except ValueError as e:
        print("bad:", e, flush=True)
""", "-c", "2")
    assert rc == 0, out + err
    assert "byname on node1" in out
    assert "byid on node2" in out
    assert "local on node1" in out
    assert "with-block on node2" in out
    # Block: a node gets as many as it has CPUs (2) before the next.
    assert _lines(out, "block") == ["0 on node1", "1 on node1", "2 on node2", "3 on node2"]
    assert "aff on node2 cpus [1]" in out
    assert "bad: Policy: no node of the job is called 'nosuch' (its nodes: node1, node2)" in out
    assert "bad: Policy: host_id 5: the job has 2 nodes (0 .. 1)" in out
    assert "bad: Policy: placement 'somewhere' is not one of" in out


def test_pipe_queue_and_locks_between_nodes(run):
    rc, out, err = run(HEAD + """
def child(q, conn, rconn, lock, ev):
    q.put(("hello", socket.gethostname()))
    print("child got:", conn.recv(), flush=True)
    print("child got big:", len(conn.recv()), flush=True)
    ba = conn.recv()
    print("child got buffer:", type(ba).__name__, len(ba), flush=True)
    conn.send(bytearray(b"y" * 300000))
    conn.send_bytes(b"z" * 200000)
    q.put(b"q" * 500000)
    print("child poll:", conn.poll(20), flush=True)
    buf = bytearray(16)
    print("child recv_bytes_into:", conn.recv_bytes_into(buf), bytes(buf[:4]), flush=True)
    print("child one-way:", rconn.recv(), flush=True)
    with lock:
        print("child holds the lock on", socket.gethostname(), flush=True)
    ev.set()

if __name__ == "__main__":
    mp.set_start_method("dragon")
    from multiprocessing.connection import wait
    q = mp.Queue()
    a, b = mp.Pipe()
    r, w = mp.Pipe(duplex=False)
    lock, ev = mp.Lock(), mp.Event()
    lock.acquire()
    p = mp.get_context("dragon").Process(target=child, args=(q, b, r, lock, ev),
                                         policy=Policy(host_name="node2"))
    p.start()
    a.send("to the child")
    a.send(b"x" * 1000000)
    a.send(bytearray(b"x" * 400000))
    print("parent got:", q.get(timeout=30), flush=True)
    print("parent waits:", wait([a], 30) == [a], flush=True)
    print("parent got buffer:", len(a.recv()), flush=True)
    print("parent got bytes:", len(a.recv_bytes()), flush=True)
    print("parent got from queue:", len(q.get(timeout=30)), flush=True)
    a.send_bytes(b"last")
    w.send("one way")
    time.sleep(0.5)
    print("event before release:", ev.is_set(), flush=True)
    lock.release()
    print("event:", ev.wait(30), flush=True)
    p.join(30)
    print("exit:", p.exitcode, flush=True)
""")
    assert rc == 0, out + err
    for line in ("parent got: ('hello', 'node2')", "child got: to the child",
                 "child got big: 1000000", "child got buffer: bytearray 400000",
                 "parent waits: True", "parent got buffer: 300000",
                 "parent got bytes: 200000", "parent got from queue: 500000",
                 "child poll: True", "child recv_bytes_into: 4 b'last'",
                 "child one-way: one way", "event before release: False",
                 "child holds the lock on node2", "event: True", "exit: 0"):
        assert line in out, line + "\n" + out + err


def test_value_and_array_between_nodes(run):
    # The memory stays in the parent's pool on node1; processes on node2
    # reach it through the transport, those on node1 map it.
    rc, out, err = run(HEAD + """
def bump(v, n):
    for _ in range(n):
        with v.get_lock():
            v.value += 1

def arrays(a, s, ra, rv, q):
    print("child:", socket.gethostname(), type(a.get_obj()).__name__, flush=True)
    q.put((a[:], a[1], a[-1], len(a), a[2:5], a[::3], list(a), s.value, ra[:], rv.value))
    with a.get_lock():
        a[0] = 100
        a[2:4] = [7, 8]
        a[-1] += 1
        a[5::4] = [-5, -9]
    s.value = b"from node2"
    ra[1] = 2.5
    rv.value = 42
    try:
        a[10]
    except IndexError as e:
        q.put("IndexError: %s" % e)

if __name__ == "__main__":
    mp.set_start_method("dragon")
    ctx = mp.get_context("dragon")
    v = mp.Value("i", 0)
    ps = [mp.Process(target=bump, args=(v, 100)) for _ in range(4)]
    for p in ps:
        p.start()
    bump(v, 100)
    for p in ps:
        p.join(120)
    print("codes:", [p.exitcode for p in ps], flush=True)
    print("value:", v.value, flush=True)
    a = mp.Array("i", range(10))
    s = mp.Array("c", 16)
    s.value = b"hello"
    ra, rv = mp.RawArray("d", [0.5, 1.0, 1.5]), mp.RawValue("q", 7)
    q = mp.Queue()
    p = ctx.Process(target=arrays, args=(a, s, ra, rv, q), policy=Policy(host_id=1))
    p.start()
    print("child saw:", q.get(timeout=60), flush=True)
    print("child got:", q.get(timeout=60), flush=True)
    p.join(60)
    print("exit:", p.exitcode, flush=True)
    print("after:", a[:], s.value, ra[:], rv.value, flush=True)
""")
    assert rc == 0, out + err
    assert "codes: [0, 0, 0, 0]" in out, out + err
    assert "value: 500" in out, out + err
    for line in ("child: node2 _RemoteArray",
                 "child saw: ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 1, 9, 10, [2, 3, 4], "
                 "[0, 3, 6, 9], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], b'hello', [0.5, 1.0, 1.5], 7)",
                 "child got: IndexError: invalid index", "exit: 0",
                 "after: [100, 1, 7, 8, 4, -5, 6, 7, 8, -9] b'from node2' [0.5, 2.5, 1.5] 42"):
        assert line in out, line + "\n" + out + err


def test_pool_and_manager_over_the_nodes(run):
    rc, out, err = run(HEAD + """
def sq(x):
    time.sleep(0.05)
    return x * x, socket.gethostname()

def mark(d):
    d[socket.gethostname()] = os.getpid()

def init(b):
    global barrier
    barrier = b

def meet(x):
    # Every task waits for the three others: each of the four workers
    # takes one, on whichever node it runs.
    barrier.wait(120)
    return x * x, socket.gethostname()

if __name__ == "__main__":
    mp.set_start_method("dragon")
    with mp.Manager() as m:
        d = m.dict()
        ps = [mp.Process(target=mark, args=(d,)) for i in range(2)]
        for p in ps: p.start()
        for p in ps: p.join()
        print("manager:", sorted(d.keys()), [p.exitcode for p in ps], flush=True)
    with mp.Pool(initializer=init, initargs=(mp.Barrier(4),)) as pool:
        print("workers:", len(pool._pool), flush=True)
        res = pool.map(meet, range(4), chunksize=1)
        print("results:", sum(r[0] for r in res), sorted(r[1] for r in res), flush=True)
    with mp.Pool(2, policy=Policy(host_id=1)) as pool:
        print("node2 pool:", sorted(set(r[1] for r in pool.map(sq, range(6)))), flush=True)
""", "-c", "2")
    assert rc == 0, out + err
    assert "manager: ['node1', 'node2'] [0, 0]" in out
    assert "workers: 4" in out  # cpu_count(): 2 CPUs on each of 2 nodes
    assert "results: 14 ['node1', 'node1', 'node2', 'node2']" in out
    assert "node2 pool: ['node2']" in out
    assert "Traceback" not in out + err


def test_more_sync_objects_between_nodes(run):
    rc, out, err = run(HEAD + """
def child(rl, bar, jq, cond, box):
    with rl:
        with rl:
            print("child: rlock twice", flush=True)
    print("child: barrier", bar.wait(30) in (0, 1), flush=True)
    item = jq.get(timeout=30)
    print("child: joinable item", item, flush=True)
    jq.task_done()
    with cond:
        box.put("ready")
        print("child: notified", cond.wait(30), flush=True)

if __name__ == "__main__":
    mp.set_start_method("dragon")
    rl, bar, jq, cond, box = mp.RLock(), mp.Barrier(2), mp.JoinableQueue(), mp.Condition(), mp.Queue()
    p = mp.get_context("dragon").Process(target=child, args=(rl, bar, jq, cond, box),
                                         policy=Policy(host_id=1))
    p.start()
    print("parent: barrier", bar.wait(30) in (0, 1), flush=True)
    jq.put("job")
    jq.join()
    print("parent: joined the queue", flush=True)
    print("parent:", box.get(timeout=30), flush=True)
    with cond:
        cond.notify()
    p.join(30)
    print("exit:", p.exitcode, flush=True)
""")
    assert rc == 0, out + err
    for line in ("child: rlock twice", "child: barrier True", "parent: barrier True",
                 "child: joinable item job", "parent: joined the queue",
                 "parent: ready", "child: notified True", "exit: 0"):
        assert line in out, line + "\n" + out + err


def test_a_child_on_another_node_starts_children_and_passes_objects_on(run):
    rc, out, err = run(HEAD + """
def grand(q, lock):
    with lock:
        q.put(("grand", socket.gethostname(), mp.parent_process().pid))

def child(q, lock):
    q.put(("child", socket.gethostname(), os.getpid()))
    p = mp.Process(target=grand, args=(q, lock))
    p.start()
    p.join()
    q.put(("grand seen by child", dragon.pid_node(p.pid), p.exitcode))

if __name__ == "__main__":
    mp.set_start_method("dragon")
    q, lock = mp.Queue(), mp.Lock()
    p = mp.Process(target=child, args=(q, lock))
    p.start()
    for i in range(3):
        print(q.get(timeout=60), flush=True)
    p.join(60)
    print("child:", p.exitcode, dragon.pid_node(p.pid), flush=True)
    print("child pid:", p.pid, flush=True)
""")
    assert rc == 0, out + err
    child_pid = int(_lines(out, "child pid:")[0])
    ospid = child_pid - (1 << 22) * 2
    assert "('child', 'node2', %d)" % ospid in out
    # The grandchild, on node1, names its parent on node2 by its encoded pid.
    assert "('grand', 'node1', %d)" % child_pid in out
    assert "('grand seen by child', 0, 0)" in out
    assert "child: 0 1" in out


@pytest.mark.parametrize("extra", [[], ["--queues"]])
def test_p2p_lat_example_over_two_nodes(run, extra):
    """examples/p2p_lat.py, unchanged, under dragon on 2 nodes: its echo
    goes to the other node and the table comes out."""
    prog = os.path.join(SRCDIR, "examples", "p2p_lat.py")
    rc, out, err = run(None, argv=[prog, "--dragon", "--iterations", "50",
                                   "--lg_max_message_size", "10"] + extra)
    assert rc == 0, out + err
    assert "p2p_lat: measuring on node1, echo on node2" in err, out + err
    lines = out.splitlines()
    head = lines.index("Msglen [B]   Lat [usec]")
    table = [l.split() for l in lines[head + 1:head + 11]]
    assert [int(r[0]) for r in table] == [2 ** k for k in range(1, 11)], out
    assert all(float(r[1]) > 0 for r in table), out


def test_pipe_end_of_file_between_nodes(run):
    # Each end's holder on the other node lets go in a different way: an
    # explicit close while it runs, its exit, SIGKILL; the peer's poll
    # turns true, wait() returns it, and recv raises EOFError.
    rc, out, err = run(HEAD + """
from multiprocessing.connection import wait

def closer(b, ev):
    b.send("from " + socket.gethostname())
    b.close()
    ev.wait(60)          # still running while the peer looks

def leaver(b):
    b.send("bye")

def sleeper(b, ready):
    ready.set()
    time.sleep(60)

def reader(c, q):
    print("reader on", socket.gethostname(), flush=True)
    q.put(("first", c.recv()))
    q.put(("poll", c.poll(30)))
    try:
        c.recv()
        q.put(("recv", "a message"))
    except EOFError:
        q.put(("recv", "EOFError"))

def waiter(c, q):
    q.put(("poll while it runs", c.poll(0.5)))
    q.put(("poll", c.poll(30)))
    try:
        c.recv()
        q.put(("recv", "a message"))
    except EOFError:
        q.put(("recv", "EOFError"))

def eof(tag, a):
    got = a.poll(30)
    print(tag, "poll:", got, flush=True)
    if not got:
        return
    try:
        a.recv()
        print(tag, "recv: a message", flush=True)
    except EOFError:
        print(tag, "recv: EOFError", flush=True)

if __name__ == "__main__":
    mp.set_start_method("dragon")
    ctx = mp.get_context("dragon")
    there = Policy(host_name="node2")
    here = Policy(host_name="node1")

    a, b = mp.Pipe()
    ev = mp.Event()
    p = ctx.Process(target=closer, args=(b, ev), policy=there); p.start(); b.close()
    print("closer sent:", a.recv(), flush=True)
    print("closer wait:", wait([a], 30) == [a], flush=True)
    eof("closer", a)
    print("closer alive meanwhile:", p.is_alive(), flush=True)
    ev.set(); p.join(30)

    a, b = mp.Pipe()
    p = ctx.Process(target=leaver, args=(b,), policy=there); p.start(); b.close()
    print("leaver sent:", a.recv(), flush=True)
    eof("leaver", a)
    p.join(30)

    r, w = mp.Pipe(duplex=False)
    ready = mp.Event()
    p = ctx.Process(target=sleeper, args=(w, ready), policy=there); p.start(); w.close()
    ready.wait(60)
    print("sleeper poll while it runs:", r.poll(0.5), flush=True)
    p.kill(); p.join(30)
    eof("killed", r)

    # The other way: the reader is on node2, the writer's holders here.
    a, b = mp.Pipe()
    q = mp.Queue()
    p = ctx.Process(target=reader, args=(b, q), policy=there); p.start(); b.close()
    a.send("one")
    print("reader:", q.get(timeout=60), flush=True)
    a.close()
    print("reader:", q.get(timeout=60), flush=True)
    print("reader:", q.get(timeout=60), flush=True)
    p.join(30)

    # A holder on node1 other than the Pipe's creator is killed.
    a, b = mp.Pipe()
    ready = mp.Event()
    k = ctx.Process(target=sleeper, args=(a, ready), policy=here); k.start(); a.close()
    ready.wait(60)
    p = ctx.Process(target=waiter, args=(b, q), policy=there); p.start(); b.close()
    print("killed-writer:", q.get(timeout=60), flush=True)
    k.kill(); k.join(30)
    print("killed-writer:", q.get(timeout=60), flush=True)
    print("killed-writer:", q.get(timeout=60), flush=True)
    p.join(30)
    print("codes:", p.exitcode, flush=True)
""")
    assert rc == 0, out + err
    assert "codes: 0" in out
    for line in ("closer sent: from node2", "closer wait: True", "closer poll: True",
                 "closer recv: EOFError", "closer alive meanwhile: True",
                 "leaver sent: bye", "leaver poll: True", "leaver recv: EOFError",
                 "sleeper poll while it runs: False", "killed poll: True",
                 "killed recv: EOFError",
                 "reader: ('first', 'one')", "reader: ('poll', True)",
                 "reader: ('recv', 'EOFError')",
                 "killed-writer: ('poll while it runs', False)",
                 "killed-writer: ('poll', True)", "killed-writer: ('recv', 'EOFError')"):
        assert line in out, line + "\n" + out + err


def test_parent_sentinel_of_a_parent_on_another_node(run):
    rc, out, err = run(HEAD + """
from multiprocessing.connection import wait

def child(q, ready):
    pp = mp.parent_process()
    s = pp.sentinel
    q.put(("sentinel is an fd", isinstance(s, int) and os.fstat(s) is not None))
    q.put(("wait while the parent runs", wait([s], 0.5)))
    q.put(("parent alive", pp.is_alive()))
    ready.set()
    q.put(("wait once the parent ended", wait([s], 30) == [s]))
    q.put(("parent alive", pp.is_alive()))

def parent(q):
    ready = mp.Event()
    c = mp.get_context("dragon").Process(target=child, args=(q, ready),
                                         policy=Policy(host_name="node2"))
    c.start()
    ready.wait(60)
    time.sleep(0.5)
    os._exit(0)          # leaves the child running

if __name__ == "__main__":
    mp.set_start_method("dragon")
    q = mp.Queue()
    p = mp.get_context("dragon").Process(target=parent, args=(q,),
                                         policy=Policy(host_name="node1"))
    p.start()
    for i in range(3):
        print("child:", q.get(timeout=60), flush=True)
    # The zygote started the parent: the runtime learns of its end when
    # it is reaped, at this join.
    p.join(30)
    print("parent:", p.exitcode, flush=True)
    for i in range(2):
        print("child:", q.get(timeout=60), flush=True)
""")
    assert rc == 0, out + err
    for line in ("child: ('sentinel is an fd', True)",
                 "child: ('wait while the parent runs', [])",
                 "child: ('parent alive', True)",
                 "child: ('wait once the parent ended', True)",
                 "child: ('parent alive', False)", "parent: 0"):
        assert line in out, line + "\n" + out + err


def test_buffered_queue_puts_between_nodes(run):
    """Puts to a Queue of another node do not wait for that node: many
    more than the channel and the window hold go in order, the exit of
    the producer waits for those in flight, and a put that failed at the
    Queue's node is raised by a later put, naming the node."""
    rc, out, err = run(HEAD + """
def produce(q, n):
    for i in range(n):
        q.put(i)
    q.put(b"x" * 300000)

def owner(q, gone):
    q2 = mp.Queue()
    q.put(q2)
    print("owner got:", q2.get(timeout=30), flush=True)
    q2._conn._wch.destroy()  # the channel goes, as with its node's runtime
    gone.set()

if __name__ == "__main__":
    mp.set_start_method("dragon")
    ctx = mp.get_context("dragon")
    there = Policy(host_name="node2")
    q = ctx.Queue()
    n = 6000  # past the channel's 4096 and the 128 puts in flight
    p = ctx.Process(target=produce, args=(q, n), policy=there)
    p.start()
    time.sleep(1)  # the channel fills
    got = [q.get(timeout=30) for _ in range(n)]
    print("in order:", got == list(range(n)), flush=True)
    print("big:", len(q.get(timeout=30)), flush=True)
    p.join(30)
    # Its exit waited for the puts in flight: all are here after join.
    p = ctx.Process(target=produce, args=(q, 100), policy=there)
    p.start()
    p.join(30)
    print("producer exit:", p.exitcode, flush=True)
    got = [q.get_nowait() for _ in range(100)]
    print("all there after join:", got == list(range(100)),
          len(q.get_nowait()), flush=True)

    gone = ctx.Event()
    p = ctx.Process(target=owner, args=(q, gone), policy=there)
    p.start()
    q2 = q.get(timeout=30)
    q2.put("first")
    gone.wait(30)
    p.join(30)
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            q2.put("more")
            time.sleep(0.01)
        print("no error", flush=True)
    except Exception as e:
        print("later put raised %s: %s" % (type(e).__name__, e), flush=True)
""")
    assert rc == 0, out + err
    for line in ("in order: True", "big: 300000", "producer exit: 0",
                 "all there after join: True 300000", "owner got: first"):
        assert line in out, line + "\n" + out + err
    raised = [l for l in out.splitlines() if l.startswith("later put raised")]
    assert raised, out + err
    assert "earlier buffered send" in raised[0] and "node 2" in raised[0], raised[0]


def test_a_child_on_another_node_is_forked_warm_and_behaves_as_others(run, tmp_path):
    # Children on node2 come from the caller's starter there, whose zygote
    # forks them (their OS parent runs dragon._zygote), and see what a
    # spawned child sees: the parent's sys.path, cwd and environment at
    # the start, the main module imported as __mp_main__, their own
    # node's runtime, the parent as parent_process(); exit codes, signals,
    # output and sentinels are as for any child.
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "farmod.py").write_text(textwrap.dedent("""
        import os, socket, sys
        import multiprocessing as mp

        def parent_cmd():
            with open("/proc/%d/cmdline" % os.getppid(), "rb") as f:
                return f.read().replace(b"\\0", b" ").decode()

        def report(tag, head, head_node_id):
            main = sys.modules["__mp_main__"]
            pp = mp.parent_process()
            print("%s host=%s warm=%s setting=%s cwd=%s main=%s parent=%s,%s "
                  "own_runtime=%s" % (
                      tag, socket.gethostname(), "dragon._zygote" in parent_cmd(),
                      os.environ.get("MY_SETTING"), os.path.basename(os.getcwd()),
                      getattr(main, "MAIN_MARK", None), pp.pid == head, pp.is_alive(),
                      os.environ["DRAGON_NODE_ID"] != head_node_id), flush=True)
            sys.stderr.write("%s says hello on stderr\\n" % tag)
        """))
    (tmp_path / "work").mkdir()
    rc, out, err = run(HEAD + """
from multiprocessing.connection import wait
MAIN_MARK = "imported"

def code(n):
    sys.exit(n)

def killed():
    os.kill(os.getpid(), signal.SIGKILL)

def boom():
    raise RuntimeError("boom on " + socket.gethostname())

def sleeper():
    time.sleep(60)

if __name__ == "__main__":
    mp.set_start_method("dragon")
    ctx = mp.get_context("dragon")
    there = Policy(host_name="node2")
    def start(f, *args):
        p = ctx.Process(target=f, args=args, policy=there)
        p.start()
        return p
    sys.path.append(os.path.abspath("extra"))
    os.chdir("work")
    import farmod
    head, node_id = dragon.machine.global_pid(), os.environ["DRAGON_NODE_ID"]
    for i in range(3):
        os.environ["MY_SETTING"] = "value%d" % i
        p = start(farmod.report, "child%d" % i, head, node_id)
        print("sentinel ready:", wait([p.sentinel], 60) == [p.sentinel], flush=True)
        p.join(); print("exit%d: %s" % (i, p.exitcode), flush=True)
    p = start(code, 7); p.join(); print("exitcode:", p.exitcode, flush=True)
    p = start(killed); p.join(); print("killed:", p.exitcode, flush=True)
    p = start(boom); p.join(); print("raised:", p.exitcode, flush=True)
    p = start(sleeper)
    time.sleep(0.5)
    print("alive:", p.is_alive(), dragon.pid_node(p.pid), flush=True)
    p.terminate(); p.join(30); print("terminated:", p.exitcode, flush=True)
    p = start(sleeper)
    p.kill(); p.join(30); print("kill():", p.exitcode, flush=True)
""")
    assert rc == 0, out + err
    for i in range(3):
        assert ("child%d host=node2 warm=True setting=value%d cwd=work main=imported "
                "parent=True,True own_runtime=True" % (i, i)) in out, out + err
        assert "child%d says hello on stderr" % i in out + err, out + err
        assert "exit%d: 0" % i in out, out + err
    assert out.count("sentinel ready: True") == 3, out + err
    for line in ("exitcode: 7", "killed: -9", "raised: 1", "alive: True 1",
                 "terminated: -15", "kill(): -9"):
        assert line in out, line + "\n" + out + err
    assert "RuntimeError: boom on node2" in out + err, out + err


def test_an_allocation_passed_to_another_node(run):
    # A dragon.mem Allocation of node1's pool, passed to a child on node2,
    # is read and written there through the transport; what would need it
    # mapped there raises an error that names node1.
    rc, out, err = run(HEAD + """
from dragon.mem import RemoteAllocation, DragonError

def child(a, q):
    q.put((socket.gethostname(), type(a).__name__, len(a) >= 32, a.read(0, 5), a[0], a[2:5]))
    a.write(5, b" from node2")
    a[0] = ord("H")
    for what in ("view", "free"):
        try:
            x = getattr(a, what)
            x() if what == "free" else x
        except DragonError as e:
            q.put("%s: %s" % (what, e))

if __name__ == "__main__":
    mp.set_start_method("dragon")
    ctx = mp.get_context("dragon")
    from dragon import runtime
    rt = runtime.current()
    a = rt.pool.alloc(32)
    a.view[:] = bytes(32)
    a.view[:5] = b"hello"
    q = ctx.Queue()
    p = ctx.Process(target=child, args=(a, q), policy=Policy(host_name="node2"))
    p.start()
    for _ in range(3):
        print("got:", q.get(timeout=60), flush=True)
    p.join(60)
    print("exit:", p.exitcode, flush=True)
    print("after:", bytes(a.view[:16]), flush=True)
    a.free()
""")
    assert rc == 0, out + err
    assert "got: ('node2', 'RemoteAllocation', True, b'hello', 104, b'llo')" in out, out + err
    assert "after: b'Hello from node2'" in out, out + err
    for what in ("view", "free"):
        line = [l for l in out.splitlines() if l.startswith("got: %s: " % what)]
        assert line and "node 0 (node1)" in line[0] and "read()" in line[0], out + err
    assert "exit: 0" in out, out + err


def test_children_of_a_loopback_listener_stay_on_its_node(run):
    # Each node has a loopback of its own: a child on the other node would
    # get "connection refused" from a listener on 127.0.0.1 here.
    rc, out, err = run(HEAD + """
from multiprocessing.connection import Client, Listener
from multiprocessing.managers import SyncManager

def talk(addr, q):
    try:
        socket.create_connection(addr, timeout=30).close()
        q.put((socket.gethostname(), "connected"))
    except OSError as e:
        q.put((socket.gethostname(), type(e).__name__))

def client(addr, q):
    try:
        c = Client(addr)
        c.send(socket.gethostname())
        c.close()
        q.put((socket.gethostname(), "connected"))
    except OSError as e:
        q.put((socket.gethostname(), type(e).__name__))

def use(d):
    d[socket.gethostname()] = os.getpid()

def twice(f, addr, q):
    ps = [mp.Process(target=f, args=(addr, q)) for i in range(2)]
    for p in ps: p.start()
    res = sorted(q.get(timeout=60) for p in ps)
    for p in ps: p.join(60)
    return res

if __name__ == "__main__":
    mp.set_start_method("dragon")
    q = mp.Queue()
    srv = socket.create_server(("localhost", 0))
    srv.settimeout(60)
    res = twice(talk, srv.getsockname(), q)
    srv.close()
    print("socket server:", res, flush=True)
    l = Listener(family="AF_INET")
    host = l.address[0]
    res = twice(client, l.address, q)
    for r in res:
        if r[1] == "connected":
            l.accept().close()
    l.close()
    print("listener:", host, res, flush=True)
    m = SyncManager(address=("127.0.0.1", 0))
    m.start()
    d = m.dict()
    ps = [mp.Process(target=use, args=(d,)) for i in range(2)]
    for p in ps: p.start()
    for p in ps: p.join(60)
    print("manager:", sorted(d.keys()), [p.exitcode for p in ps], flush=True)
    m.shutdown()
    # Listening on the node's name: reachable from every node, the
    # children go round-robin.
    srv = socket.create_server((socket.gethostname(), 0))
    srv.settimeout(60)
    res = twice(talk, srv.getsockname(), q)
    srv.close()
    print("host server:", res, flush=True)
""")
    assert rc == 0, out + err
    assert "socket server: [('node1', 'connected'), ('node1', 'connected')]" in out, out + err
    assert "listener: 127.0.0.1 [('node1', 'connected'), ('node1', 'connected')]" in out, out + err
    assert "manager: ['node1'] [0, 0]" in out, out + err
    assert "host server: [('node1', 'connected'), ('node2', 'connected')]" in out, out + err


def test_pipe_end_passed_on_and_closed_at_once_is_no_end_of_file(run):
    # Each process hands its end to a child on the other node and lets go
    # at once: the reader must not see end-of-file before the child took
    # the end (it used to, when the child's own holder message came after
    # its parent's release).
    rc, out, err = run(HEAD + """
def chain(n, w):
    if n > 1:
        p = mp.Process(target=chain, args=(n - 1, w))
        p.start()
        w.close()
        p.join(120)
        sys.exit(p.exitcode)
    w.send("last")
    w.close()

if __name__ == "__main__":
    mp.set_start_method("dragon")
    for rounds in range(3):
        r, w = mp.Pipe(False)
        p = mp.Process(target=chain, args=(5, w))
        p.start()
        w.close()
        try:
            print("got:", r.recv(), flush=True)
        except EOFError:
            print("got: end-of-file", flush=True)
        try:
            r.recv()
        except EOFError:
            print("then: end-of-file", flush=True)
        p.join(120)
        print("exit:", p.exitcode, flush=True)
""")
    assert rc == 0, out + err
    assert _lines(out, "got:") == ["last"] * 3, out + err
    assert _lines(out, "then:") == ["end-of-file"] * 3, out + err
    assert _lines(out, "exit:") == ["0"] * 3, out + err
