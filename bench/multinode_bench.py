#!/usr/bin/env python3
"""multiprocessing with the 'dragon' start method across two nodes, against
plain Python sockets between the same two nodes, in the same run.

The nodes are those of the project's test cluster (tests/cluster/vcluster:
namespaces on this machine, each with its own network and /dev/shm), so
it needs root, namespaces and Slurm; it says which is missing and exits
77 (a skip) otherwise.  It starts a 2-node cluster and runs itself with
`salloc -N2 -c2 dragon multinode_bench.py --inner`: the head on node1
measures, its partner process is placed on node2 (Policy(host_id=1)).
Rows (time units lower-is-better, msg/s higher-is-better; ratio is
value / baseline_value):

  mn_pipe_rtt            Pipe send_bytes/recv_bytes round trip, 8 B to
                         1 MiB, against a TCP socket ping-pong (us)
  mn_queue_rate          Queue items a consumer on node1 gets from a
                         producer on node2, 8 B and 1 MiB, against the
                         same socket streaming length-prefixed items (msg/s)
  mn_pool_map_10k        Pool.map of 10,000 tasks of 1 ms CPU each over both
                         nodes against the same on node1 alone (s); the
                         test nodes share this machine's CPUs, so the
                         scaling shows the runtime's overhead, not a
                         speed-up a real cluster would give
  mn_process_start_join  Process start+join of an empty target on node2
                         against the same on node1 (ms)

    bench/multinode_bench.py [CASE...]    (pipe, queue, start, pool; all by default)

Each case runs its two sides alternately, rounds times, the order
rotating; a row is the medians, every round's figures and the targets
go to stderr.  DRAGON_BENCH_SCALE scales the rounds and iterations
(default 1); DRAGON_VCLUSTER_SLOTS chooses the cluster's slots, as for
vcluster.
"""
import json
import multiprocessing as mp
import os
import socket
import statistics
import struct
import subprocess
import sys
import time

import startup_bench  # its test-cluster checks (same directory)

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
VCLUSTER = os.path.join(SRC, "tests", "cluster", "vcluster")

#: (bench, size) -> ("min" or "max", bound, what) on the ratio of the
#: medians, as the issue states them.
TARGETS = {
    ("mn_pipe_rtt", 8): ("max", 2.0,
                         "cross-node Pipe round trip, 8 B: at most 2x a socket's"),
    ("mn_queue_rate", 1 << 20): ("min", 1.0,
                                 "cross-node Queue throughput, 1 MiB: at least 1x a socket's"),
}


def skip(why):
    startup_bench.skip(why, "multinode_bench")


def need_cluster():
    startup_bench.need_cluster("multinode_bench",
                               ("slurmctld", "slurmd", "salloc", "munged"))


def scale():
    return float(os.environ.get("DRAGON_BENCH_SCALE", "1") or 1)


# ---------------------------------------------------------------- outer


def outer(cases):
    """Start a 2-node test cluster and run the measurements in it."""
    need_cluster()
    top = os.path.dirname(os.path.abspath(os.getcwd()))  # run from build/bench
    dragon = os.path.join(top, "libdlaunch", "dragon")
    pkg = os.path.join(top, "bindings", "python")
    if not os.access(dragon, os.X_OK) or not os.path.isdir(os.path.join(pkg, "dragon")):
        skip("no dragon or Python package under %s: build first" % top)
    state = os.path.join(os.getcwd(), "multinode.vc")
    vc = [VCLUSTER, "-d", state]
    subprocess.call(vc + ["stop"], stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
    start = subprocess.run(vc + ["start", "2"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    if start.returncode != 0:
        raise SystemExit("multinode_bench: the 2-node test cluster did not "
                         "start:\n%s" % start.stdout)
    try:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SLURM_", "DRAGON_"))
               or k == "DRAGON_BENCH_SCALE"}
        env.update(SLURM_CONF=os.path.join(state, "slurm.conf"),
                   PYTHONPATH=pkg + os.pathsep + env.get("PYTHONPATH", ""))
        # Rows come on stdout, through the launcher; the rest is stderr.
        r = subprocess.run(["salloc", "-Q", "-N2", "-c2", dragon, "-t", "60",
                            os.path.abspath(__file__), "--inner"] + sorted(cases),
                           env=env, stdin=subprocess.DEVNULL, timeout=3600)
        if r.returncode != 0:
            raise SystemExit("multinode_bench: the run on 2 nodes failed "
                             "(status %d)" % r.returncode)
    finally:
        subprocess.call(vc + ["stop"], stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)


# ---------------------------------------------------- partners on node2


def _recv_exact(sock, buf):
    view = memoryview(buf)
    while view:
        n = sock.recv_into(view)
        if not n:
            raise EOFError("socket closed")
        view = view[n:]


def _listen(q):
    """A TCP listener on this node's name; its address goes to q."""
    srv = socket.create_server(("", 0))
    q.put((socket.gethostname(), srv.getsockname()[1]))
    conn, _ = srv.accept()
    srv.close()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def sock_echo(q, size, n):
    conn = _listen(q)
    buf = bytearray(size)
    for _ in range(n):
        _recv_exact(conn, buf)
        conn.sendall(buf)
    conn.close()


def pipe_echo(conn, n):
    for _ in range(n):
        conn.send_bytes(conn.recv_bytes())


def sock_stream(q, size, n):
    conn = _listen(q)
    item = bytes(size)
    head = struct.pack("!I", size)
    for _ in range(n):
        conn.sendall(head + item if size < 65536 else head)
        if size >= 65536:
            conn.sendall(item)
    conn.close()


def queue_produce(q, size, n):
    item = bytes(size)
    for _ in range(n):
        q.put(item)


def nothing():
    pass


def cpu_ms(x):
    """1 ms of CPU time, however long the wall clock takes."""
    end = time.process_time() + 0.001
    while time.process_time() < end:
        pass
    return x


# ------------------------------------------------------- the head, node1


class Head:
    def __init__(self):
        import dragon
        from dragon import Policy
        self.ctx = mp.get_context("dragon")
        self.there = Policy(host_id=1)
        self.here = Policy(placement=Policy.Placement.LOCAL)
        self.node1 = Policy(host_id=0)
        self.nodes = dragon.nodes()
        self.verdicts = []

    def start(self, target, *args, policy=None):
        p = self.ctx.Process(target=target, args=args,
                             policy=policy or self.there)
        p.start()
        return p

    def connect(self, q):
        host, port = q.get(timeout=120)
        s = socket.create_connection((host, port), timeout=120)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def pipe_rtt(self, size, iters):
        warm = max(10, iters // 10)
        a, b = self.ctx.Pipe()
        p = self.start(pipe_echo, b, iters + warm)
        msg = bytes(size)
        for _ in range(warm):
            a.send_bytes(msg)
            a.recv_bytes()
        t = time.perf_counter()
        for _ in range(iters):
            a.send_bytes(msg)
            a.recv_bytes()
        dt = time.perf_counter() - t
        p.join()
        a.close()
        b.close()
        return dt / iters * 1e6

    def sock_rtt(self, size, iters):
        warm = max(10, iters // 10)
        q = self.ctx.Queue()
        p = self.start(sock_echo, q, size, iters + warm)
        s = self.connect(q)
        msg, buf = bytes(size), bytearray(size)
        for _ in range(warm):
            s.sendall(msg)
            _recv_exact(s, buf)
        t = time.perf_counter()
        for _ in range(iters):
            s.sendall(msg)
            _recv_exact(s, buf)
        dt = time.perf_counter() - t
        s.close()
        p.join()
        return dt / iters * 1e6

    def queue_rate(self, size, n):
        q = self.ctx.Queue()
        p = self.start(queue_produce, q, size, n + 1)
        q.get(timeout=120)
        t = time.perf_counter()
        for _ in range(n):
            q.get()
        dt = time.perf_counter() - t
        p.join()
        return n / dt

    def sock_rate(self, size, n):
        q = self.ctx.Queue()
        p = self.start(sock_stream, q, size, n + 1)
        s = self.connect(q)
        f = s.makefile("rb")

        def get():
            (k,) = struct.unpack("!I", f.read(4))
            return f.read(k)

        get()
        t = time.perf_counter()
        for _ in range(n):
            get()
        dt = time.perf_counter() - t
        f.close()
        s.close()
        p.join()
        return n / dt

    def start_join(self, policy, n):
        t = time.perf_counter()
        for _ in range(n):
            self.start(nothing, policy=policy).join()
        return (time.perf_counter() - t) / n * 1e3

    def pool_map(self, nodes, ntasks):
        if nodes == 1:
            workers = self.nodes[0].cpus
            pool = self.ctx.Pool(workers, policy=self.node1)
        else:
            workers = mp.cpu_count()
            pool = self.ctx.Pool(workers)
        with pool:
            pool.map(cpu_ms, range(workers * 4), chunksize=1)  # workers up
            t = time.perf_counter()
            pool.map(cpu_ms, range(ntasks))
            dt = time.perf_counter() - t
        pool.join()
        return dt, workers

    def compare(self, bench, size, unit, ours, base, rounds, case, baseline):
        """ours() and base() alternately, rounds times each (after one
        untimed run of each), then the row of their medians."""
        ours()
        base()
        vo, vb = [], []
        for r in range(rounds):
            pair = [(ours, vo), (base, vb)]
            for fn, vals in (pair if r % 2 == 0 else pair[::-1]):
                vals.append(fn())
        self.row(bench, size, unit, vo, vb, case, baseline)

    def row(self, bench, size, unit, vo, vb, case, baseline, **extra):
        mo, mb = statistics.median(vo), statistics.median(vb)
        row = {"bench": bench, "case": case, "size": size, "unit": unit,
               "value": round(mo, 6), "baseline": baseline,
               "baseline_value": round(mb, 6), "ratio": round(mo / mb, 4)}
        row.update(extra)
        print(json.dumps(row), flush=True)
        print("%s size %d (%s): %s %.4g [%s]; %s %.4g [%s]" % (
            bench, size, unit, case, mo, " ".join("%.4g" % x for x in vo),
            baseline, mb, " ".join("%.4g" % x for x in vb)),
            file=sys.stderr, flush=True)
        target = TARGETS.get((bench, size))
        if target:
            kind, bound, what = target
            ratio = mo / mb
            met = ratio >= bound if kind == "min" else ratio <= bound
            self.verdicts.append((what, ratio, met))


CASES = ("pipe", "queue", "start", "pool")


def pool_rows(h, k):
    ntasks = max(100, int(10000 * k))
    one, two, workers = [], [], {}
    for r in range(max(1, int(k))):
        for nodes in ((1, 2) if r % 2 == 0 else (2, 1)):
            dt, workers[nodes] = h.pool_map(nodes, ntasks)
            (one if nodes == 1 else two).append(dt)
    h.row("mn_pool_map_10k", ntasks, "s", two, one,
          "Pool(%d) over 2 nodes" % workers[2], "Pool(%d) on node1" % workers[1],
          size_unit="tasks")
    print("multinode_bench: Pool.map scaling, 1 node / 2 nodes: %.3f "
          "(the test nodes share this machine's %d CPUs)" % (
              statistics.median(one) / statistics.median(two), os.cpu_count()),
          file=sys.stderr, flush=True)


def inner(cases):
    import dragon  # noqa: F401  (registers the start method)
    mp.set_start_method("dragon")
    h = Head()
    k = scale()
    rounds = max(1, int(3 * k))
    print("multinode_bench: nodes %s; head on %s" % (
        [(n.index, n.host, n.cpus) for n in h.nodes], socket.gethostname()),
        file=sys.stderr, flush=True)
    for size, iters in ((8, 2000), (1024, 2000), (65536, 200), (1 << 20, 30)):
        if "pipe" not in cases:
            break
        n = max(5, int(iters * k))
        h.compare("mn_pipe_rtt", size, "us",
                  lambda: h.pipe_rtt(size, n), lambda: h.sock_rtt(size, n),
                  rounds, "Pipe node1<->node2", "TCP socket ping-pong")
    for size, items in ((8, 5000), (1 << 20, 100)):
        if "queue" not in cases:
            break
        n = max(5, int(items * k))
        h.compare("mn_queue_rate", size, "msg/s",
                  lambda: h.queue_rate(size, n), lambda: h.sock_rate(size, n),
                  rounds, "Queue node2->node1", "TCP socket stream")
    n = max(2, int(10 * k))
    if "start" in cases:
        h.compare("mn_process_start_join", 0, "ms",
                  lambda: h.start_join(h.there, n), lambda: h.start_join(h.here, n),
                  rounds, "start+join on node2", "start+join on node1")
    if "pool" in cases:
        pool_rows(h, k)
    if h.verdicts:
        print("targets (ratio of medians dragon / socket):", file=sys.stderr)
        for what, ratio, met in h.verdicts:
            print("  %-8s %-60s %.3f" % ("MET" if met else "NOT MET", what, ratio),
                  file=sys.stderr, flush=True)


def cases_of(args):
    bad = [a for a in args if a not in CASES]
    if bad:
        raise SystemExit("multinode_bench: unknown case %s (cases: %s)" %
                         (", ".join(bad), " ".join(CASES)))
    return set(args or CASES)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--inner"]:
        inner(cases_of(sys.argv[2:]))
    else:
        outer(cases_of(sys.argv[1:]))
