"""dragon-cleanup ends only what is Dragon's, and never half a live program.

Each test runs in namespaces of its own (a pid namespace, and a mount
namespace with a private tmpfs on /dev/shm), so that a plain
`dragon-cleanup` there sees only the test's processes and segments, never
other programs on this machine; when the test's driver (pid 1 there) ends,
the kernel ends whatever it left.  Needs root (unshare); skipped otherwise.

The driver starts real programs: embedded runtimes (a Python program
using a 'dragon' Queue and a child Process) and `dragon` launchers, runs
dragon-cleanup, and reports what survived as JSON on its last line."""
import json
import os
import shutil
import subprocess
import sys

import pytest

TOP = os.environ.get("top_builddir",
                     os.path.join(os.path.dirname(__file__), "..", "..", "build"))
CLEANUP = os.path.abspath(os.path.join(TOP, "libdlaunch", "dragon-cleanup"))
LAUNCHER = os.path.abspath(os.path.join(TOP, "libdlaunch", "dragon"))
PKG = os.path.abspath(os.path.join(TOP, "bindings", "python"))
PY = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


def _can_unshare():
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    r = subprocess.run(["unshare", "--mount", "--pid", "--fork", "--mount-proc",
                        "sh", "-c", "mount -t tmpfs tmpfs /dev/shm"],
                       capture_output=True, timeout=60)
    return r.returncode == 0


pytestmark = [
    pytest.mark.skipif(not os.access(CLEANUP, os.X_OK), reason="no dragon-cleanup in this build"),
    pytest.mark.skipif(not _can_unshare(),
                       reason="needs root and unshare(1) for private pid and /dev/shm namespaces"),
]

# A program with an embedded runtime: a worker Process answers on a Queue.
# Prints "ready INSTANCE WORKER_PID"; then, for every line on stdin, sends
# a number through the worker and prints the answer (or the error).
PROGRAM = r"""
import os, queue, sys, time
import multiprocessing as mp
import dragon

def work(q, r):
    while True:
        r.put(q.get() * 2)

if __name__ == "__main__":
    ctx = mp.get_context("dragon")
    q, r = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=work, args=(q, r), daemon=True)
    p.start()
    q.put(1)
    assert r.get(timeout=60) == 2
    print("ready", os.environ["DRAGON_INSTANCE"], p.pid, flush=True)
    n = 0
    for line in sys.stdin:
        n += 1
        try:
            q.put(n)
            print("answer", r.get(timeout=20), flush=True)
        except (queue.Empty, OSError, EOFError) as e:
            print("broken", type(e).__name__, flush=True)
"""

# The head of a `dragon` run: starts a child through the runtime, reports.
LAUNCHED = r"""
import os, sys, time
import multiprocessing as mp
import dragon

if __name__ == "__main__":
    mp.set_start_method("dragon")
    p = mp.Process(target=time.sleep, args=(300,), daemon=True)
    p.start()
    print("ready", os.environ["DRAGON_INSTANCE"], p.pid, os.getpid(), flush=True)
    time.sleep(300)
"""

DRIVER = r"""
import json, os, shutil, signal, subprocess, sys, time

CLEANUP, LAUNCHER, TMP = sys.argv[1], sys.argv[2], sys.argv[3]
PY = sys.executable
PROGRAM = os.path.join(TMP, "prog.py")
LAUNCHED = os.path.join(TMP, "launched.py")
procs = []

def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False

def embedded(env=None):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.Popen([PY, PROGRAM], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, env=e, cwd=TMP)
    procs.append(p)
    words = p.stdout.readline().split()
    assert words and words[0] == "ready", words
    return {"head": p.pid, "inst": words[1], "child": int(words[2]), "p": p}

def launched(env=None):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.Popen([LAUNCHER, LAUNCHED], stdout=subprocess.PIPE, text=True, cwd=TMP,
                         stdin=subprocess.DEVNULL, env=e)
    procs.append(p)
    words = p.stdout.readline().split()
    assert words and words[0] == "ready", words
    return {"launcher": p.pid, "inst": words[1], "child": int(words[2]),
            "head": int(words[3]), "p": p}

def ping(rt):
    p = rt["p"]
    try:
        p.stdin.write("x\n")
        p.stdin.flush()
    except OSError:
        return "dead"
    return p.stdout.readline().strip() or "dead"

def cleanup(*args):
    r = subprocess.run([CLEANUP] + list(args), capture_output=True, text=True, timeout=120)
    return {"rc": r.returncode, "out": r.stdout, "err": r.stderr}

def segs(inst=None):
    return sorted(n for n in os.listdir("/dev/shm")
                  if inst is None or n.split(".")[2:3] == [inst])

def stranger(name, env=None):
    os.makedirs(os.path.join(TMP, "bin"), exist_ok=True)
    exe = os.path.join(TMP, "bin", name)
    if not os.path.exists(exe):
        shutil.copy(shutil.which("sleep"), exe)
    e = {"PATH": os.environ.get("PATH", "")}
    e.update(env or {})
    p = subprocess.Popen([exe, "300"], env=e)
    procs.append(p)
    return p.pid

def settle(pids, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end and any(alive(p) for p in pids):
        time.sleep(0.05)

# No watchdog, and children that are fresh interpreters (a zygote cleans
# up after a killed parent that has no watchdog): a killed owner leaves
# everything behind.
UNGUARDED = {"DRAGON_CLEANUP_PROGRAM": "", "DRAGON_ZYGOTE": "0"}
result = {}
exec(open(os.path.join(TMP, "scenario.py")).read())
for p in procs:
    if p.poll() is None:
        p.kill()
print(json.dumps(result))
"""


def run_scenario(tmp_path, scenario, timeout=300):
    (tmp_path / "prog.py").write_text(PROGRAM)
    (tmp_path / "launched.py").write_text(LAUNCHED)
    (tmp_path / "driver.py").write_text(DRIVER)
    (tmp_path / "scenario.py").write_text(scenario)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRAGON_")}
    env["PYTHONPATH"] = PKG
    env["DRAGON_LOG_DIR"] = str(tmp_path / "log")
    cmd = ("mount -t tmpfs tmpfs /dev/shm && exec %s %s %s %s %s"
           % (PY, tmp_path / "driver.py", CLEANUP, LAUNCHER, tmp_path))
    r = subprocess.run(["unshare", "--mount", "--pid", "--fork", "--mount-proc",
                        "sh", "-c", cmd], capture_output=True, text=True, env=env,
                       timeout=timeout)
    assert r.returncode == 0, "driver failed (%d):\n%s\n%s" % (
        r.returncode, r.stdout[-4000:], r.stderr[-4000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_strangers_survive(tmp_path):
    """A process named dragon and processes whose environment names a
    runtime, even a live one's instance, are not the runtime's."""
    res = run_scenario(tmp_path, r"""
rt = embedded()
dead = embedded(UNGUARDED)
os.kill(dead["head"], signal.SIGKILL); dead["p"].wait()
named = stranger("dragon")
env1 = stranger("sleeper", {"DRAGON_INSTANCE": "p1"})
env2 = stranger("sleeper", {"DRAGON_INSTANCE": rt["inst"]})
env3 = stranger("sleeper", {"DRAGON_INSTANCE": dead["inst"]})
result["plain"] = cleanup()
result["named"] = cleanup("--instance", rt["inst"])
time.sleep(0.5)
result["survivors"] = [alive(p) for p in (named, env1, env2, env3)]
result["ended"] = [alive(p) for p in (rt["head"], rt["child"], dead["child"])]
""")
    assert res["plain"]["rc"] == 0, res["plain"]
    assert res["named"]["rc"] == 0, res["named"]
    assert res["survivors"] == [True] * 4, res
    assert res["ended"] == [False] * 3, res


def test_live_runtime_left_alone(tmp_path):
    """A plain cleanup leaves a live embedded runtime and a live `dragon`
    run whole: segments, head and children; the program's Queue still
    works afterwards."""
    res = run_scenario(tmp_path, r"""
rt = embedded()
ln = launched()
before = segs()
result["ping0"] = ping(rt)
result["cleanup"] = cleanup()
result["dry"] = cleanup("--dry-run")
result["same_segments"] = segs() == before
result["alive"] = [alive(p) for p in (rt["head"], rt["child"], ln["launcher"], ln["head"],
                                      ln["child"])]
result["ping1"] = ping(rt)
result["ping2"] = ping(rt)
result["insts"] = [rt["inst"], ln["inst"]]
""")
    assert res["ping0"] == "answer 2"
    assert res["cleanup"]["rc"] == 0, res["cleanup"]
    for inst in res["insts"]:
        assert "runtime %s is live" % inst in res["cleanup"]["out"], res["cleanup"]
        assert "--instance %s" % inst in res["cleanup"]["out"]
    assert "removing" not in res["cleanup"]["out"] and "kill" not in res["cleanup"]["out"]
    assert "would" not in res["dry"]["out"], res["dry"]
    assert res["same_segments"], res
    assert res["alive"] == [True] * 5, res
    assert (res["ping1"], res["ping2"]) == ("answer 4", "answer 6"), res


def test_instance_ends_that_runtime_whole(tmp_path):
    """--instance ends the runtime it names, head included, and removes
    its segments; another live runtime keeps running and working."""
    res = run_scenario(tmp_path, r"""
a = embedded()
b = embedded()
ln = launched()
result["cleanup"] = cleanup("--instance", a["inst"])
settle([a["head"], a["child"]])
result["a"] = [alive(a["head"]), alive(a["child"]), segs(a["inst"])]
result["b"] = [alive(b["head"]), alive(b["child"]), len(segs(b["inst"])) > 0, ping(b)]
result["ln"] = [alive(ln["launcher"]), alive(ln["head"]), alive(ln["child"])]
result["cleanup2"] = cleanup("--instance", ln["inst"])
settle([ln["launcher"], ln["head"], ln["child"]])
result["ln2"] = [alive(ln["launcher"]), alive(ln["head"]), alive(ln["child"]), segs(ln["inst"])]
result["b2"] = [alive(b["head"]), ping(b)]
result["a_inst"] = a["inst"]
""")
    assert res["cleanup"]["rc"] == 0, res["cleanup"]
    assert "ending runtime %s" % res["a_inst"] in res["cleanup"]["out"], res["cleanup"]
    assert res["a"] == [False, False, []], res
    assert res["b"] == [True, True, True, "answer 2"], res
    assert res["ln"] == [True, True, True], res
    assert res["cleanup2"]["rc"] == 0, res["cleanup2"]
    assert res["ln2"] == [False, False, False, []], res
    assert res["b2"] == [True, "answer 4"], res


def test_force_ends_every_runtime(tmp_path):
    res = run_scenario(tmp_path, r"""
a = embedded()
b = embedded()
ln = launched()
other = stranger("dragon", {"DRAGON_INSTANCE": a["inst"]})
result["cleanup"] = cleanup("--force")
pids = [a["head"], a["child"], b["head"], b["child"], ln["launcher"], ln["head"], ln["child"]]
settle(pids)
result["alive"] = [alive(p) for p in pids]
result["segs"] = segs()
result["stranger"] = alive(other)
""")
    assert res["cleanup"]["rc"] == 0, res["cleanup"]
    assert res["alive"] == [False] * 7, res
    assert res["segs"] == [], res
    assert res["stranger"], res


def test_killed_runtime_cleaned_without_flags(tmp_path):
    """A runtime whose owner was SIGKILLed (and had no watchdog) leaves its
    processes and segments; a plain cleanup ends and removes them, and
    leaves a live runtime beside it alone."""
    res = run_scenario(tmp_path, r"""
live = embedded()
dead = embedded(UNGUARDED)
ln = launched({"DRAGON_CLEANUP_PROGRAM": ""})
os.kill(dead["head"], signal.SIGKILL)
os.kill(ln["launcher"], signal.SIGKILL)
dead["p"].wait()
ln["p"].wait()
time.sleep(0.5)
lpids = [ln["head"], ln["child"]]
result["left"] = [alive(dead["child"]), len(segs(dead["inst"]))] + [alive(p) for p in lpids] + [
    len(segs(ln["inst"]))]
result["cleanup"] = cleanup()
settle([dead["child"]] + lpids)
result["after"] = [alive(dead["child"]), segs(dead["inst"])] + [alive(p) for p in lpids] + [
    segs(ln["inst"])]
# Zygotes (and the processes they forked) name their parent's pid.
zyg = [open("/proc/%s/cmdline" % d).read().split("\0")[-2] for d in os.listdir("/proc")
       if d.isdigit() and alive(int(d))
       and "dragon._zygote" in open("/proc/%s/cmdline" % d).read()]
result["zygotes"] = sorted(set(z.split("-")[2] for z in zyg))
result["ps"] = subprocess.run(["ps", "axfo", "pid,ppid,stat,args"], capture_output=True, text=True).stdout
result["live"] = [alive(live["head"]), alive(live["child"]), ping(live)]
result["dead_inst"] = dead["inst"]
result["live_head"] = live["head"]
""")
    assert res["left"] == [True, res["left"][1], True, True, res["left"][4]], res
    assert res["left"][1] >= 2 and res["left"][4] >= 2, res
    assert res["cleanup"]["rc"] == 0, res["cleanup"]
    assert "runtime %s: its owner" % res["dead_inst"] in res["cleanup"]["out"], res["cleanup"]
    assert res["after"] == [False, [], False, False, []], res
    assert res["zygotes"] == [str(res["live_head"])], res["ps"] + res["cleanup"]["out"]
    assert res["live"] == [True, True, "answer 2"], res


def test_segments_without_a_record(tmp_path):
    """Pools a program made with libdmem alone (no runtime, so no record)
    are left while the program maps them; an unmapped leftover of that
    kind is removed; --instance removes the mapped ones too."""
    res = run_scenario(tmp_path, r"""
code = ("import sys, time\nfrom dragon import mem\n"
        "p = mem.Pool.create('solo', 1 << 20, instance='solo%d' % __import__('os').getpid())\n"
        "print(p.name, flush=True)\ntime.sleep(300)\n")
prog = subprocess.Popen([PY, "-c", code], stdout=subprocess.PIPE, text=True)
procs.append(prog)
name = prog.stdout.readline().strip()
inst = name.split(".")[2]
me = name.split(".")[1]
open("/dev/shm/dragon.%s.orphan.seg" % me, "w").close()
result["plain"] = cleanup()
result["after"] = segs()
result["named"] = cleanup("--instance", inst)
result["after2"] = segs()
result["alive"] = alive(prog.pid)
result["name"] = name
result["inst"] = inst
""")
    assert res["plain"]["rc"] == 0, res["plain"]
    assert "segments of %s (no runtime record) are in use" % res["inst"] in res["plain"]["out"], res
    assert res["after"] == [res["name"]], res
    assert res["named"]["rc"] == 0, res["named"]
    assert res["after2"] == [], res
    assert res["alive"], res  # a program's own pool: removed, the program not touched
