#!/usr/bin/env python3
"""Start-up cost of a runtime over several nodes: `dragon /bin/true` on 1,
2, 4 and 8 nodes of a Slurm allocation against `srun -N K /bin/true` on
the same nodes, in the same run (interleaved round by round, medians).

The nodes are those of the project's test cluster (tests/cluster/vcluster:
namespaces on this machine), so it needs root, namespaces and Slurm; it
says which is missing and exits 77 (a skip) otherwise.  Rows:

  dragon_startup  "dragon /bin/true"  against "srun -N K /bin/true"
  dragon_startup  "dragon - srun"     against the 0.5 s target

dragon and dragon-backend run as installed programs would (the build
tree's binaries with LD_LIBRARY_PATH), not through libtool's wrapper
scripts.  DRAGON_BENCH_SCALE scales the rounds (default 5); DRAGON_BENCH_NODES
("1 2 4 8") chooses the node counts; DRAGON_VCLUSTER_SLOTS the cluster's
slot, as for vcluster.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
VCLUSTER = os.path.join(SRC, "tests", "cluster", "vcluster")
TARGET_S = 0.5


def skip(why, prog="startup_bench"):
    print("%s: skipped: %s" % (prog, why), file=sys.stderr)
    sys.exit(77)


def need_cluster(prog="startup_bench",
                 tools=("slurmctld", "slurmd", "srun", "salloc", "munged")):
    """What a test cluster needs here, or exit 77 (skipped) with the
    reason; multinode_bench.py uses it too."""
    if os.geteuid() != 0:
        skip("it needs root (the test cluster's nodes are network "
             "namespaces with Slurm daemons); run make bench as root", prog)
    if subprocess.call(["unshare", "--net", "--uts", "--mount", "true"],
                       stderr=subprocess.DEVNULL) != 0:
        skip("no namespaces can be made here (unshare --net --uts "
             "--mount fails)", prog)
    os.environ["PATH"] += ":/usr/sbin:/sbin"
    for c in tools:
        if not shutil.which(c):
            skip(c + " is not installed; 'make deps' installs Slurm and "
                 "munge", prog)


def build_dir():
    """The build tree: this program runs from its bench/ directory."""
    return os.path.dirname(os.path.abspath(os.getcwd()))


def timed(argv, env):
    t0 = time.monotonic()
    p = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=120)
    t = time.monotonic() - t0
    if p.returncode != 0:
        raise SystemExit("startup_bench: %s failed (%d):\n%s%s" %
                         (" ".join(argv), p.returncode, p.stdout, p.stderr))
    return t


def main():
    need_cluster()
    top = build_dir()
    libs = os.path.join(top, "libdlaunch", ".libs")
    dragon = os.path.join(libs, "dragon")
    if not os.access(dragon, os.X_OK):
        skip("no dragon in %s: build first" % libs)
    counts = [int(k) for k in
              os.environ.get("DRAGON_BENCH_NODES", "1 2 4 8").split()]
    scale = float(os.environ.get("DRAGON_BENCH_SCALE", "1") or 1)
    rounds = max(1, int(5 * scale))
    state = os.path.join(os.getcwd(), "startup.vc")
    vc = [VCLUSTER, "-d", state]
    subprocess.call(vc + ["stop"], stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
    start = subprocess.run(vc + ["start", str(max(counts))],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    if start.returncode != 0:
        raise SystemExit("startup_bench: the %d-node test cluster did not "
                         "start:\n%s" % (max(counts), start.stdout))
    alloc = None
    try:
        env = dict(os.environ, SLURM_CONF=os.path.join(state, "slurm.conf"))
        # The programs themselves, as installed, not the build tree's
        # libtool wrappers (shell scripts that run sed and more before
        # the program: some 0.4 s on a loaded machine, for dragon and again
        # for every backend).
        env["LD_LIBRARY_PATH"] = ":".join(
            [os.path.join(top, d, ".libs") for d in
             ("libdlaunch", "libdmem", "libdchan", "libdtransport")] +
            [p for p in [os.environ.get("LD_LIBRARY_PATH")] if p])
        env["DRAGON_BACKEND_PROGRAM"] = os.path.join(libs, "dragon-backend")
        for k in [k for k in env if k.startswith("SLURM_") and
                  k != "SLURM_CONF"]:
            del env[k]
        envfile = os.path.join(state, "alloc.env")
        # An allocation held open; its variables run the commands in it.
        alloc = subprocess.Popen(
            ["salloc", "-Q", "-N%d" % max(counts), "sh", "-c",
             'env | grep "^SLURM_" >"$0.tmp"; mv "$0.tmp" "$0"; '
             'exec sleep 3600', envfile], env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        for _ in range(600):
            if os.path.exists(envfile):
                break
            time.sleep(0.1)
        else:
            raise SystemExit("startup_bench: no allocation within 60 s")
        with open(envfile) as f:
            for line in f:
                k, _, v = line.rstrip("\n").partition("=")
                env[k] = v
        for k in counts:
            ours, base = [], []
            d = [dragon, "-N", str(k), "/bin/true"]
            s = ["srun", "-N", str(k), "--overlap", "/bin/true"]
            timed(d, env)  # warm the page cache and Slurm's
            timed(s, env)
            for r in range(rounds):
                if r % 2:
                    base.append(timed(s, env))
                    ours.append(timed(d, env))
                else:
                    ours.append(timed(d, env))
                    base.append(timed(s, env))
            o, b = statistics.median(ours), statistics.median(base)
            rows = [("dragon /bin/true", o, "srun -N K /bin/true", b),
                    ("dragon - srun", o - b, "target", TARGET_S)]
            for case, v, bl, bv in rows:
                print(json.dumps({
                    "bench": "dragon_startup", "case": case, "size": k,
                    "size_unit": "nodes", "unit": "s", "value": round(v, 4),
                    "baseline": bl, "baseline_value": round(bv, 4),
                    "ratio": round(v / bv, 4) if bv else 0}), flush=True)
    finally:
        if alloc:
            alloc.kill()
            alloc.wait()
        subprocess.call(vc + ["stop"], stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
