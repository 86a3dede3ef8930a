"""Shared fixtures: the tests import the dragon package from the build tree
(PYTHONPATH is set by run-pytest.sh) and must leave /dev/shm as they found it."""
import os

import pytest


def _dragon_segments():
    try:
        return {n for n in os.listdir("/dev/shm") if n.startswith("dragon.")}
    except FileNotFoundError:
        return set()


@pytest.fixture(autouse=True)
def no_leftover_segments():
    before = _dragon_segments()
    yield
    left = _dragon_segments() - before
    assert not left, "test left segments in /dev/shm: %s" % sorted(left)
