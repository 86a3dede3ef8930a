"""The 'dragon' start method is known in every interpreter where the
package is installed, before anything imports dragon (the
dragon-start-method.pth hook): 'spawn' and 'forkserver' children of a
program whose default method is 'dragon', and a ``python -I`` child asked
for 'dragon'.

Each test runs in a virtual environment whose site directory adds the
build tree's bindings/python as a site directory, so that its .pth files
(the hook) are processed as they would be where the package is installed.
PYTHONPATH alone would import the package but skip the hook."""
import os
import subprocess
import sys
import venv

import pytest

import dragon
from dragon import runtime

BUILD = os.path.dirname(os.path.dirname(os.path.abspath(dragon.__file__)))


@pytest.fixture(scope="module")
def site_python(tmp_path_factory):
    """The interpreter of a virtual environment with the build tree's
    package installed through its site directory."""
    if not os.path.exists(os.path.join(BUILD, "dragon-start-method.pth")):
        pytest.fail("no dragon-start-method.pth in %s: the build does not "
                    "install the start-method hook" % BUILD)
    root = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(str(root))
    python = str(root / "bin" / "python")
    site = subprocess.run([python, "-c", "import site; print(site.getsitepackages()[0])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(site, "00-dragon-build.pth"), "w") as f:
        f.write("import site; site.addsitedir(%r)\n" % BUILD)
    return python


def _run(python, tmp_path, code, *flags):
    prog = tmp_path / "prog.py"
    prog.write_text(code)
    env = runtime.clean_env()
    env.pop("PYTHONPATH", None)
    return subprocess.run([python, *flags, str(prog)], capture_output=True, text=True,
                          timeout=120, env=env, cwd=str(tmp_path))


def test_no_dragon_at_start_up(site_python, tmp_path):
    # The hook imports neither dragon nor multiprocessing by itself.
    out = _run(site_python, tmp_path,
               "import sys\n"
               "print(sorted(m for m in sys.modules if m.startswith(('dragon', 'multiprocessing'))))\n"
               "import multiprocessing.context as c\n"
               "print('dragon' in sys.modules, type(c._concrete_contexts).__name__)\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[]", "False _Contexts"]


CONTEXT_CHILD = """
import multiprocessing as mp
import os
import sys

import dragon


def work(q, x):
    q.put((x * x, mp.get_start_method(), "dragon" in sys.modules))


if __name__ == "__main__":
    mp.set_start_method("dragon")
    ctx = mp.get_context(sys.argv[1])
    q = ctx.Queue()
    procs = [ctx.Process(target=work, args=(q, i)) for i in range(3)]
    for p in procs:
        p.start()
    got = sorted(q.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(60)
    print([p.exitcode for p in procs])
    print(got)
"""


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_context_in_a_dragon_default_program(site_python, tmp_path, method):
    prog = tmp_path / "prog.py"
    prog.write_text(CONTEXT_CHILD)
    env = runtime.clean_env()
    env.pop("PYTHONPATH", None)
    out = subprocess.run([site_python, str(prog), method], capture_output=True,
                         text=True, timeout=120, env=env, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "cannot find context" not in out.stderr
    lines = out.stdout.splitlines()
    # The child ran with the parent's default method applied during its
    # preparation (which loaded dragon), then its own, as stock children do.
    assert lines == ["[0, 0, 0]",
                     str([(0, method, True), (1, method, True), (4, method, True)])]


ISOLATED = """
import multiprocessing as mp
import sys



def child(q):
    q.put(sys.flags.isolated)


if __name__ == "__main__":
    assert "dragon" not in sys.modules
    mp.set_start_method("dragon")
    q = mp.Queue()
    p = mp.Process(target=child, args=(q,))
    p.start()
    print(mp.get_start_method(), sys.flags.isolated, q.get(timeout=60))
    p.join(60)
    print(p.exitcode)
"""


def test_isolated_child_asks_for_dragon(site_python, tmp_path):
    # No import of dragon anywhere: the isolated interpreter (no PYTHONPATH,
    # no user site) resolves the method through the installed hook.
    out = _run(site_python, tmp_path, ISOLATED, "-I")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("dragon 1 "), lines
    assert lines[1] == "0", lines


def test_unknown_method_still_an_error(site_python, tmp_path):
    out = _run(site_python, tmp_path,
               "import multiprocessing as mp\n"
               "try:\n"
               "    mp.get_context('nosuch')\n"
               "except ValueError as e:\n"
               "    print(e)\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "cannot find context for 'nosuch'"
