"""Registers the 'dragon' start method in every interpreter the suite
starts, including the scripts some tests run as separate programs
(mp_fork_bomb.py, for one) that would otherwise not know it.  The driver
puts this directory on PYTHONPATH only when it runs the suite with
'dragon'; an installation does the same with a .pth file or its own
sitecustomize."""
import os

if os.environ.get("DRAGON_MP_SUITE_METHOD") == "dragon":
    import dragon  # noqa: F401
