#!/usr/bin/python3
"""multiprocessing with the 'dragon' start method against stock 'fork' and
'spawn', measured in the same run.

Prints one JSON row per measurement for bench/run: Pipe round trip (2 B to
1 MiB, send_bytes/recv_bytes), Queue throughput (8 B and 1 MiB items),
Process start+join, and Pool.map over 100,000 tiny tasks.  Time units are
lower-is-better, msg/s higher-is-better; ratio is dragon / baseline.

    bench/mp_bench.py [--quick] [--repeat N] [CASE...]

CASE selects measurements by name: pipe, pipe2 (the 2 B round trip only),
pipe1m, queue, queue8, queue1m, start, pool.  --repeat N measures each
selected case N times (each time against its own fork and spawn runs).
"""
import json
import multiprocessing as mp
import os
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


def _echo(conn, n):
    for _ in range(n):
        conn.send_bytes(conn.recv_bytes())


def pipe_rtt(ctx, size, iters):
    a, b = ctx.Pipe()
    p = ctx.Process(target=_echo, args=(b, iters + 10))
    p.start()
    msg = bytes(size)
    for _ in range(10):
        a.send_bytes(msg)
        a.recv_bytes()
    t = time.perf_counter()
    for _ in range(iters):
        a.send_bytes(msg)
        a.recv_bytes()
    dt = time.perf_counter() - t
    p.join()
    return dt / iters * 1e6


def _producer(q, size, n):
    item = bytes(size)
    for _ in range(n):
        q.put(item)


def queue_rate(ctx, size, n):
    q = ctx.Queue()
    p = ctx.Process(target=_producer, args=(q, size, n + 1))
    p.start()
    q.get()
    t = time.perf_counter()
    for _ in range(n):
        q.get()
    dt = time.perf_counter() - t
    p.join()
    return n / dt


def _nothing():
    pass


def start_join(ctx, n):
    p = ctx.Process(target=_nothing)  # warm-up (embedded runtime, imports)
    p.start()
    p.join()
    t = time.perf_counter()
    for _ in range(n):
        p = ctx.Process(target=_nothing)
        p.start()
        p.join()
    return (time.perf_counter() - t) / n * 1e3


def _tiny(x):
    return x


def pool_map(ctx, ntasks):
    with ctx.Pool(2) as pool:
        pool.map(_tiny, range(100))
        t = time.perf_counter()
        pool.map(_tiny, range(ntasks))
        return time.perf_counter() - t


def rows(bench, size, unit, values):
    for base in ("fork", "spawn"):
        print(json.dumps({
            "bench": bench, "case": "dragon vs %s" % base, "size": size,
            "unit": unit, "value": round(values["dragon"], 3), "baseline": base,
            "baseline_value": round(values[base], 3),
            "ratio": round(values["dragon"] / values[base], 3)}), flush=True)


def measure(fn, *args):
    return {m: fn(mp.get_context(m), *args) for m in METHODS}


#: case name -> the measurements it selects
CASES = {
    "pipe": {"pipe2", "pipe64", "pipe1k", "pipe64k", "pipe1m"},
    "queue": {"queue8", "queue1m"},
}


def main(argv):
    quick = "--quick" in argv
    scale = 10 if quick else 1
    repeat = 1
    names = set()
    args = [a for a in argv if a != "--quick"]
    while args:
        a = args.pop(0)
        if a == "--repeat":
            repeat = int(args.pop(0))
        elif a.startswith("--repeat="):
            repeat = int(a.split("=", 1)[1])
        elif a in CASES:
            names |= CASES[a]
        elif a in ("pipe2", "pipe64", "pipe1k", "pipe64k", "pipe1m",
                   "queue8", "queue1m", "start", "pool"):
            names.add(a)
        else:
            print("unknown case %r" % a, file=sys.stderr)
            return 2

    def want(name):
        return not names or name in names

    for _ in range(repeat):
        for name, size in (("pipe2", 2), ("pipe64", 64), ("pipe1k", 1024),
                           ("pipe64k", 65536), ("pipe1m", 1 << 20)):
            if want(name):
                iters = max(20, (2000 if size <= 1024 else 200 if size <= 65536 else 50) // scale)
                rows("mp_pipe_rtt", size, "us", measure(pipe_rtt, size, iters))
        if want("queue8"):
            rows("mp_queue_rate", 8, "msg/s", measure(queue_rate, 8, 20000 // scale))
        if want("queue1m"):
            rows("mp_queue_rate", 1 << 20, "msg/s", measure(queue_rate, 1 << 20, 200 // scale))
        if want("start"):
            rows("mp_process_start_join", 0, "ms", measure(start_join, 20 // scale or 2))
        if want("pool"):
            rows("mp_pool_map_100k", 100000, "s", measure(pool_map, 100000 // scale))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
