"""multiprocessing.Pool of the 'dragon' context under stress: every
result a worker sent arrives, whatever the workers do meanwhile.

Each trial makes a Pool (1 to 4 workers, maxtasksperchild None, 1, 2 or
3) and runs one of: map, apply_async with workers that die inside some of
their tasks (os._exit: those tasks' results are lost, as with every start
method, and every other result must arrive), imap of results that travel
inline, in pool blocks and as out-of-band buffers, imap_unordered of tasks
that raise, map_async with a callback, or a terminate() while tasks run.
Trials run a few at a time, each in a thread of its own, so that the
pools' processes compete for the CPUs.  A result that has not arrived
after RESULT_WAIT seconds fails the test with every thread's stack.

DRAGON_POOL_STRESS_TRIALS sets the number of trials (24 by default;
`make check-stress` in tests/python runs 1000), DRAGON_STRESS_SEED the
seed."""
import faulthandler
import os
import random
import sys
import threading
import time

import multiprocessing as mp

import dragon  # noqa: F401

ctx = mp.get_context("dragon")
#: Seconds a result may take before it counts as lost.
RESULT_WAIT = 120
#: Trials at a time.
PARALLEL = 3


def _double(x, die=False):
    if die:
        os._exit(3)
    if x % 5 == 0:
        time.sleep(0.002)
    return 2 * x


def _sized(x):
    # inline, a pickle in a pool block, an out-of-band buffer
    if x % 3 == 0:
        return x
    if x % 3 == 1:
        return b"y" * (5000 + x)
    return bytearray(b"b" * (150000 + x))


def _sized_ok(x, r):
    return r == _sized(x)


def _raise_some(x):
    if x % 4 == 0:
        raise ValueError(x)
    return x


def _get(r, what):
    try:
        return r.get(RESULT_WAIT)
    except mp.TimeoutError:
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        raise AssertionError("%s: no result after %d s" % (what, RESULT_WAIT))


def _trial(rng, kind):
    workers = rng.choice([1, 2, 3, 4])
    pool = ctx.Pool(workers, maxtasksperchild=rng.choice([None, 1, 2, 3]))
    try:
        if kind == 0:
            n = rng.randint(1, 60)
            r = pool.map_async(_double, range(n), chunksize=rng.choice([1, 4]))
            assert _get(r, "map") == [2 * x for x in range(n)]
        elif kind == 1:
            deadly = set(rng.sample(range(30), rng.randint(1, 3)))
            rs = [(x, pool.apply_async(_double, (x, x in deadly))) for x in range(30)]
            for x, r in rs:
                if x not in deadly:
                    assert _get(r, "apply_async %d (workers died in %s)"
                                % (x, sorted(deadly))) == 2 * x
            # The lost tasks stay pending: close() and join() would wait
            # for them for ever, with every start method.
            pool.terminate()
            pool.join()
            return
        elif kind == 2:
            xs = range(rng.randint(1, 30))
            it = pool.imap(_sized, xs)  # chunksize 1: next() takes a timeout
            for x in xs:
                r = it.next(RESULT_WAIT)
                assert _sized_ok(x, r), "imap result %d damaged" % x
        elif kind == 3:
            xs = [1, 2, 3, 5, 6, 7] * 4
            it = pool.imap_unordered(_raise_some, xs + [4])
            got, errors = [], 0
            for _ in range(len(xs) + 1):
                try:
                    got.append(it.next(RESULT_WAIT))
                except ValueError:
                    errors += 1
            assert sorted(got) == sorted(xs) and errors == 1
        elif kind == 4:
            done = threading.Event()
            out = []
            pool.map_async(_sized, range(12),
                           callback=lambda r: (out.append(r), done.set()))
            assert done.wait(RESULT_WAIT), "map_async: no callback"
            assert all(_sized_ok(x, r) for x, r in enumerate(out[0]))
        else:
            for x in range(40):
                pool.apply_async(_double, (x,))
            time.sleep(rng.uniform(0, 0.02))
            procs = list(pool._pool)
            pool.terminate()
            pool.join()
            assert not any(p.is_alive() for p in procs), "terminate left workers"
            return
        pool.close()
        pool.join()
    finally:
        pool.terminate()


def test_pool_results_all_arrive():
    trials = int(os.environ.get("DRAGON_POOL_STRESS_TRIALS", "24"))
    seed = int(os.environ.get("DRAGON_STRESS_SEED", "0")) or random.randrange(1 << 30)
    failures = []

    def run(i):
        try:
            _trial(random.Random(seed + i), i % 6)
        except BaseException as e:
            failures.append("trial %d (DRAGON_STRESS_SEED=%d): %r" % (i, seed, e))

    for first in range(0, trials, PARALLEL):
        ts = [threading.Thread(target=run, args=(i,), daemon=True)
              for i in range(first, min(trials, first + PARALLEL))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(4 * RESULT_WAIT)
        assert not any(t.is_alive() for t in ts), "a trial did not end: %s" % failures
        assert not failures, failures
