"""dragon.mem: pools and allocations, shared with a real second process."""
import multiprocessing as mp
import os
import pickle

import pytest

import dragon
from dragon.mem import Pool, PoolFullError


def _child_writes(pool, alloc, data):
    alloc.view[:len(data)] = data


def test_create_alloc_free_and_stats():
    with Pool.create("t-mem-%d" % os.getpid(), 1 << 20) as pool:
        assert pool.size == 1 << 20
        assert os.path.exists("/dev/shm/" + pool.name)
        a = pool.alloc(1000)
        assert len(a.view) == 1000 and not a.view.readonly
        a.view[:5] = b"hello"
        assert bytes(a.view[:5]) == b"hello"
        assert pool.stats()["live_allocs"] >= 1
        pool.check()
        a.free()
        with pytest.raises(ValueError):
            a.view
    assert not os.path.exists("/dev/shm/" + pool.name)


def test_full_pool_names_sizes_and_the_variable():
    with Pool.create("t-full-%d" % os.getpid(), 1 << 20) as pool:
        with pytest.raises(PoolFullError) as e:
            pool.alloc(4 << 20)
        msg = str(e.value)
        assert "DRAGON_DEFAULT_SEG_SZ" in msg
        assert isinstance(e.value, MemoryError)


def test_timed_alloc_on_a_full_pool_times_out():
    with Pool.create("t-wait-%d" % os.getpid(), 1 << 20) as pool:
        big = pool.alloc(pool.stats()["largest_free"])
        with pytest.raises((TimeoutError, PoolFullError)):
            pool.alloc(4096, timeout=0.05)
        big.free()


def test_descriptor_round_trip_in_this_process():
    with Pool.create("t-desc-%d" % os.getpid(), 1 << 20) as pool:
        other = Pool.attach(pool.descriptor)
        a = pool.alloc(64)
        a.view[:3] = b"abc"
        b = other.attach_alloc(a.descriptor)
        assert bytes(b.view[:3]) == b"abc"
        assert Pool.attach(pool.text_descriptor).size == pool.size
        a.free()
        other.detach()


def test_pool_and_allocation_pass_to_a_child():
    ctx = mp.get_context("dragon")
    with Pool.create("t-child-%d" % os.getpid(), 1 << 20) as pool:
        a = pool.alloc(64)
        p = ctx.Process(target=_child_writes, args=(pool, a, b"from child"))
        p.start()
        p.join(10)
        assert p.exitcode == 0
        assert bytes(a.view[:10]) == b"from child"
        a.free()


def test_allocation_pickles_as_descriptor():
    with Pool.create("t-pkl-%d" % os.getpid(), 1 << 20) as pool:
        a = pool.alloc(16)
        a.view[:2] = b"ok"
        b = pickle.loads(pickle.dumps(a))
        assert bytes(b.view[:2]) == b"ok"
        a.free()


def test_errors_are_dragon_errors():
    with pytest.raises(dragon.DragonError):
        Pool.attach(b"\0" * 16)


def test_views_outlive_a_detached_pool(run_python):
    # A view of an allocation keeps its pool mapped: detaching the pool (or
    # letting go of the Allocation) must not leave the view pointing at
    # unmapped memory.
    run_python('''
import gc, os
from dragon.mem import Pool
with Pool.create("t-view-%d" % os.getpid(), 1 << 20) as pool:
    a = pool.alloc(64)
    a.view[:2] = b"ok"
    other = Pool.attach(pool.descriptor)
    b = other.attach_alloc(a.descriptor)
    v = b.view
    other.detach()
    assert other.closed
    del b, other
    gc.collect()
    assert bytes(v[:2]) == b"ok"
    v[2:4] = b"!!"
    assert bytes(a.view[:4]) == b"ok!!"
    a.free()
''')
