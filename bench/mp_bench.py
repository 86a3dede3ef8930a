#!/usr/bin/python3
"""multiprocessing with the 'dragon' start method against stock 'fork' and
'spawn', measured in the same run.

Prints one JSON row per measurement for bench/run: Pipe round trip (2 B to
1 MiB, send_bytes/recv_bytes), the first figure examples/p2p_lat.py prints
(the 2 B round trip of objects over a Pipe, timed from the child's first
message: 1000 and 100 iterations after one warm-up trip), Queue
throughput (8 B and 1 MiB items), Process start+join, and Pool.map over
100,000 tiny tasks.  Time units are lower-is-better, msg/s
higher-is-better; ratio is dragon / baseline.  The rows of the cases with
one child also carry the child's page faults (minor and major, from
/proc/PID/stat once it has ended, before it is joined): faults and
baseline_faults, per child (per start for start+join).

    bench/mp_bench.py [--quick] [--rounds N] [--repeat N] [CASE...]

How a case is measured: one untimed warm-up run per start method, then
rounds in which each start method runs once, the order rotating from
round to round so that none always runs first (or last) on a machine
whose load changes.  A row's value and baseline_value are the medians of
the rounds; stderr gets every round's figures and, for the cases the
project has targets for, the target, the ratio of the medians and in how
many rounds the paired ratio (same round) met it, then a summary.

CASE selects measurements by name: pipe, pipe2 (the 2 B round trip only),
pipe64, pipe1k, pipe64k, pipe1m, first (both p2p_lat figures), first1000,
first100, queue, queue8, queue1m, start, pool.
--rounds N sets the rounds of every case (default: 5, 11 for pool; 3 with
--quick); --repeat N measures the selected cases N times over, each time
with rows of its own.
"""
import json
import multiprocessing as mp
import multiprocessing.connection  # noqa: F401  (mp.connection.wait)
import os
import statistics
import sys
import time

# Run from the build's bench/ directory (make bench), use the build tree's
# package, also in the children.
_build = os.path.abspath(os.path.join(os.getcwd(), "..", "bindings", "python"))
if os.path.isdir(os.path.join(_build, "dragon")):
    sys.path.insert(0, _build)
    os.environ["PYTHONPATH"] = _build + os.pathsep + os.environ.get("PYTHONPATH", "")
import dragon  # noqa: F401,E402

METHODS = ("dragon", "fork", "spawn")

#: (bench, size) -> (baseline, "min" or "max", bound, what): the ratio
#: dragon / baseline of the medians must be at least (min) or at most
#: (max) bound.
TARGETS = {
    ("mp_queue_rate", 8): ("fork", "min", 3.0,
                           "Queue throughput, 8 B items: at least 3x fork's"),
    ("mp_queue_rate", 1 << 20): ("fork", "min", 4.0,
                                 "Queue throughput, 1 MiB items: at least 4x fork's"),
    ("mp_pool_map_100k", 100000): ("fork", "max", 1.0,
                                   "Pool.map, 100,000 tiny tasks: no slower than fork"),
    ("mp_pipe_rtt", 1 << 20): ("fork", "max", 0.25,
                               "Pipe round trip, 1 MiB: at most 0.25x fork's"),
    # Absolute bounds (base None): dragon's own median, in the row's unit.
    ("mp_pipe_rtt", 2): (None, "max", 8.0,
                         "Pipe round trip, 2 B: at most 8 us"),
    ("mp_process_start_join", 0): (None, "max", 5.0,
                                   "Process start+join: at most 5 ms"),
    ("mp_p2p_lat_first", 2): (None, "max", 5.0,
                              "p2p_lat, 2 B, 1000 iterations from the start: at most 5 us"),
    ("mp_p2p_lat_first100", 2): (None, "max", 10.0,
                                 "p2p_lat, 2 B, 100 iterations from the start: at most 10 us"),
}


def _faults(pid):
    """Page faults (minor + major) of an ended, not yet reaped, child."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return float("nan")
    return int(fields[7]) + int(fields[9])


def _join(p):
    """Wait for p to end, take its page faults while it is a zombie, then
    join it; returns the faults."""
    mp.connection.wait([p.sentinel])
    n = _faults(p.pid)
    p.join()
    return n


def _echo(conn, n):
    for _ in range(n):
        conn.send_bytes(conn.recv_bytes())


def pipe_rtt(ctx, size, iters):
    """Microseconds per send_bytes/recv_bytes round trip to an echoing
    child."""
    # The warm-up is long enough (a tenth of the run) for the start of the
    # child to be over, whatever the start method does after it (the
    # 'dragon' zygote forks its next spare child then): what is timed is
    # the steady-state round trip.
    warm = max(10, iters // 10)
    a, b = ctx.Pipe()
    p = ctx.Process(target=_echo, args=(b, iters + warm))
    p.start()
    msg = bytes(size)
    for _ in range(warm):
        a.send_bytes(msg)
        a.recv_bytes()
    t = time.perf_counter()
    for _ in range(iters):
        a.send_bytes(msg)
        a.recv_bytes()
    dt = time.perf_counter() - t
    return dt / iters * 1e6, _join(p)


def _echo_obj(conn, n):
    for _ in range(n):
        conn.send(conn.recv())


def p2p_first(ctx, iters):
    """Microseconds per send/recv round trip of a 2-byte bytearray, as
    examples/p2p_lat.py measures it: one warm-up trip after the start,
    then iters timed ones; the child's start is not over then (with
    'dragon', its zygote forks the next spare meanwhile)."""
    a, b = ctx.Pipe()
    p = ctx.Process(target=_echo_obj, args=(b, iters + 1))
    p.start()
    msg = bytearray(2)
    a.send(msg)
    a.recv()
    t = time.perf_counter()
    for _ in range(iters):
        a.send(msg)
        a.recv()
    dt = time.perf_counter() - t
    return dt / iters * 1e6, _join(p)


def _producer(q, size, n):
    item = bytes(size)
    for _ in range(n):
        q.put(item)


def queue_rate(ctx, size, n):
    """Items per second a consumer gets from a Queue that a producer
    process fills as fast as it can (more items than a dragon Queue's
    channel holds, so its overflow path is in the figure)."""
    q = ctx.Queue()
    p = ctx.Process(target=_producer, args=(q, size, n + 1))
    p.start()
    q.get()
    t = time.perf_counter()
    for _ in range(n):
        q.get()
    dt = time.perf_counter() - t
    return n / dt, _join(p)


def _nothing():
    pass


def start_join(ctx, n):
    """Milliseconds per Process start + join of an empty target."""
    p = ctx.Process(target=_nothing)  # warm-up (embedded runtime, imports)
    p.start()
    p.join()
    faults = 0
    t = time.perf_counter()
    for _ in range(n):
        p = ctx.Process(target=_nothing)
        p.start()
        faults += _join(p)
    return (time.perf_counter() - t) / n * 1e3, faults / n


def _tiny(x):
    return x


class PoolMap:
    """Seconds per Pool(2).map(_tiny, range(ntasks)) (default chunksize),
    each start method's pool made once and warmed up (workers started,
    imports done) before the rounds."""

    def __init__(self, ntasks):
        self.ntasks = ntasks
        self.pools = {}

    def __call__(self, ctx):
        pool = self.pools.get(ctx)
        if pool is None:
            pool = self.pools[ctx] = ctx.Pool(2)
            pool.map(_tiny, range(1000), chunksize=10)
        t = time.perf_counter()
        pool.map(_tiny, range(self.ntasks))
        return time.perf_counter() - t

    def close(self):
        for pool in self.pools.values():
            pool.close()
            pool.join()


def measure(fn, rounds):
    """{method: [figure of each round]}, and the same of the page faults
    when fn gives them ((figure, faults)), else None: fn(ctx) once per
    method untimed, then rounds rounds, each running
    every method once, in an order that rotates from round to round."""
    ctxs = {m: mp.get_context(m) for m in METHODS}
    for m in METHODS:
        fn(ctxs[m])
    vals = {m: [] for m in METHODS}
    faults = {m: [] for m in METHODS}
    for r in range(rounds):
        k = r % len(METHODS)
        for m in METHODS[k:] + METHODS[:k]:
            v = fn(ctxs[m])
            if isinstance(v, tuple):
                v, f = v
                faults[m].append(f)
            vals[m].append(v)
    return vals, (faults if faults["dragon"] else None)


def _fmt(v):
    return "%.4g" % v


def rows(bench, size, unit, measured, verdicts):
    """Print the rows of one measurement (medians against fork and spawn,
    with the children's median page faults when measured), the rounds
    and the target's verdict on stderr; verdicts collects (what, met) for
    the summary."""
    vals, faults = measured
    med = {m: statistics.median(v) for m, v in vals.items()}
    fmed = {m: statistics.median(v) for m, v in (faults or {}).items()}
    for base in ("fork", "spawn"):
        row = {
            "bench": bench, "case": "dragon vs %s" % base, "size": size,
            "unit": unit, "value": round(med["dragon"], 6), "baseline": base,
            "baseline_value": round(med[base], 6),
            "ratio": round(med["dragon"] / med[base], 4)}
        if fmed:
            row["faults"] = round(fmed["dragon"], 1)
            row["baseline_faults"] = round(fmed[base], 1)
        print(json.dumps(row), flush=True)
    print("%s size %d (%s, median of %d rounds): %s" % (
        bench, size, unit, len(vals["dragon"]),
        "; ".join("%s %s [%s]%s" % (
            m, _fmt(med[m]), " ".join(_fmt(x) for x in vals[m]),
            " faults %s" % _fmt(fmed[m]) if fmed else "")
            for m in METHODS)), file=sys.stderr, flush=True)
    target = TARGETS.get((bench, size))
    if target is None:
        return
    base, kind, bound, what = target
    if base is None:
        ratio = med["dragon"]
        paired = list(vals["dragon"])
    else:
        ratio = med["dragon"] / med[base]
        paired = [d / b for d, b in zip(vals["dragon"], vals[base])]

    def ok(x):
        return x >= bound if kind == "min" else x <= bound

    met = ok(ratio)
    verdicts.append((what, ratio, met, sum(map(ok, paired)), len(paired)))
    print("  target: %s: %s %.3f: %s (met in %d of %d rounds; "
          "round values %s)" % (what, "median" if base is None else "ratio of medians",
                                ratio, "MET" if met else "NOT MET",
                                sum(map(ok, paired)), len(paired),
                                " ".join("%.2f" % x for x in paired)),
          file=sys.stderr, flush=True)


#: case name -> the measurements it selects
CASES = {
    "pipe": {"pipe2", "pipe64", "pipe1k", "pipe64k", "pipe1m"},
    "queue": {"queue8", "queue1m"},
    "first": {"first1000", "first100"},
}
NAMES = ("pipe2", "pipe64", "pipe1k", "pipe64k", "pipe1m", "first1000",
         "first100", "queue8", "queue1m", "start", "pool")


def main(argv):
    quick = "--quick" in argv
    scale = 10 if quick else 1
    repeat = 1
    rounds = None
    names = set()
    args = [a for a in argv if a != "--quick"]
    while args:
        a = args.pop(0)
        if a in ("--repeat", "--rounds"):
            if not args:
                print("%s needs a number" % a, file=sys.stderr)
                return 2
            a += "=" + args.pop(0)
        if a.startswith("--repeat="):
            repeat = int(a.split("=", 1)[1])
        elif a.startswith("--rounds="):
            rounds = int(a.split("=", 1)[1])
            if rounds < 1:
                print("--rounds must be at least 1", file=sys.stderr)
                return 2
        elif a in CASES:
            names |= CASES[a]
        elif a in NAMES:
            names.add(a)
        else:
            print("unknown case %r (cases: %s)" % (a, ", ".join(sorted(CASES) + list(NAMES))),
                  file=sys.stderr)
            return 2

    def want(name):
        return not names or name in names

    def n_rounds(default):
        if rounds is not None:
            return rounds
        return 3 if quick else default

    verdicts = []
    for _ in range(repeat):
        for name, size in (("pipe2", 2), ("pipe64", 64), ("pipe1k", 1024),
                           ("pipe64k", 65536), ("pipe1m", 1 << 20)):
            if want(name):
                iters = max(20, (10000 if size <= 1024 else 200 if size <= 65536 else 50) // scale)
                rows("mp_pipe_rtt", size, "us",
                     measure(lambda ctx: pipe_rtt(ctx, size, iters), n_rounds(5)), verdicts)
        for name, bench, iters in (("first1000", "mp_p2p_lat_first", 1000),
                                   ("first100", "mp_p2p_lat_first100", 100)):
            if want(name):
                rows(bench, 2, "us",
                     measure(lambda ctx: p2p_first(ctx, iters), n_rounds(5)), verdicts)
        if want("queue8"):
            rows("mp_queue_rate", 8, "msg/s",
                 measure(lambda ctx: queue_rate(ctx, 8, 20000 // scale), n_rounds(5)), verdicts)
        if want("queue1m"):
            rows("mp_queue_rate", 1 << 20, "msg/s",
                 measure(lambda ctx: queue_rate(ctx, 1 << 20, 200 // scale), n_rounds(5)), verdicts)
        if want("start"):
            rows("mp_process_start_join", 0, "ms",
                 measure(lambda ctx: start_join(ctx, 20 // scale or 2), n_rounds(5)), verdicts)
        if want("pool"):
            pm = PoolMap(100000 // scale)
            try:
                rows("mp_pool_map_100k", pm.ntasks, "s", measure(pm, n_rounds(11)), verdicts)
            finally:
                pm.close()
    if verdicts:
        print("targets (ratio of medians dragon / fork, or dragon's median):", file=sys.stderr)
        for what, ratio, met, n_ok, n in verdicts:
            print("  %-8s %-55s %.3f  (met in %d of %d rounds)" % (
                "MET" if met else "NOT MET", what, ratio, n_ok, n), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
