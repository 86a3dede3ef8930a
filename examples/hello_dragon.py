"""A first program to run under the Dragon runtime: dragon examples/hello_dragon.py

It only uses the standard library: it shows the runtime's environment and
that output is forwarded line by line.
"""
import os
import sys

print("hello from the head process, pid", os.getpid())
print("runtime instance:", os.environ.get("DRAGON_INSTANCE", "(none: not under dragon)"))
print("default pool:", os.environ.get("DRAGON_DEFAULT_PD", "(none)").split(":")[-1])
sys.exit(0)
