"""A Pipe writer SIGKILLed at a random point of a 10 MiB send: its reader
gets whole messages and then end-of-file, never silence.

DRAGON_STRESS_TRIALS sets the number of trials (200 by default;
`make check-stress` in tests/python runs 3000)."""
import os
import random
import signal
import threading
import time

import multiprocessing as mp

import pytest

import dragon  # noqa: F401

ctx = mp.get_context("dragon")
BIG = 10 << 20
DATA = b"\x5a" * BIG
#: Seconds a reader may see neither a message nor end-of-file.
SILENCE = 30
#: Trials at a time.
PARALLEL = 8


def _writer(w, ready):
    ready.set()
    for _ in range(3):
        w.send_bytes(DATA)
    threading.Event().wait()  # until killed


def _trial(rng):
    r, w = ctx.Pipe(duplex=False)
    ready = ctx.Event()
    p = ctx.Process(target=_writer, args=(w, ready))
    p.start()
    w.close()
    assert ready.wait(60), "writer never started"
    killer = threading.Timer(rng.uniform(0, 0.4), os.kill, (p.pid, signal.SIGKILL))
    killer.start()
    got = 0
    try:
        while True:
            assert r.poll(SILENCE), ("neither a message nor end-of-file %d s "
                                     "after the writer was killed (%d received)"
                                     % (SILENCE, got))
            try:
                msg = r.recv_bytes()
            except EOFError:
                break
            assert msg == DATA, "message %d damaged: %d bytes" % (got, len(msg))
            got += 1
    finally:
        killer.join()
        p.join(60)
        r.close()
    assert p.exitcode in (0, -signal.SIGKILL), p.exitcode
    return got


def test_writers_killed_in_large_sends():
    # Trials run PARALLEL at a time, each in a thread of its own: a start
    # and an end-of-file take most of a second, the send a few ms.
    trials = int(os.environ.get("DRAGON_STRESS_TRIALS", "200"))
    seed = int(os.environ.get("DRAGON_STRESS_SEED", "0")) or random.randrange(1 << 30)
    counts = [0, 0, 0, 0]
    failures = []

    def run(i):
        try:
            counts[_trial(random.Random(seed + i))] += 1
        except BaseException as e:
            failures.append("trial %d (DRAGON_STRESS_SEED=%d): %s" % (i, seed, e))

    for first in range(0, trials, PARALLEL):
        ts = [threading.Thread(target=run, args=(i,), daemon=True)
              for i in range(first, min(trials, first + PARALLEL))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(SILENCE + 180)
        assert not any(t.is_alive() for t in ts), "a trial did not end: %s" % failures
        assert not failures, failures
    # Kills land before, between and after the sends.
    print("messages received per trial (0..3):", counts)


def _send_once(w):
    w.send_bytes(DATA)


def test_writer_killed_before_it_took_its_end():
    # Killed while it starts, before it unpickled its end of the Pipe: the
    # end this process pickled for it must not stay in flight for ever.
    rng = random.Random()
    for i in range(12):
        r, w = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_send_once, args=(w,))
        p.start()
        w.close()
        time.sleep(rng.uniform(0, 0.05) if i % 2 else 0)
        os.kill(p.pid, signal.SIGKILL)
        p.join(60)
        assert r.poll(SILENCE), "no end-of-file %d s after the writer died" % SILENCE
        try:
            assert r.recv_bytes() == DATA
            with pytest.raises(EOFError):
                r.recv_bytes()
        except EOFError:
            pass
        r.close()
