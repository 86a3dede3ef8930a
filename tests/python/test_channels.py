"""dragon.channels: send/recv of bytes and buffers, zero copy, poll."""
import multiprocessing as mp

import pytest

from dragon.channels import Channel, poll, POLLIN, POLLOUT


def _echo(inbox, outbox, n):
    for _ in range(n):
        outbox.send(inbox.recv())


def test_send_recv_small_and_large():
    with Channel.create() as ch:
        ch.send(b"hello")
        assert len(ch) == 1
        assert ch.recv() == b"hello"
        big = bytes(range(256)) * 8192
        ch.send(big)
        assert ch.recv() == big


def test_zero_copy_both_ways():
    with Channel.create() as ch:
        a = ch.alloc(4096)
        a.view[:4] = b"zero"
        ch.send_alloc(a, 4)
        v = ch.recv_view()
        assert bytes(v) == b"zero" and not v.readonly
        v.release()


def test_recv_into_and_too_small_buffer():
    with Channel.create() as ch:
        buf = bytearray(8)
        ch.send(b"abc")
        assert ch.recv_into(buf) == 3 and buf[:3] == b"abc"
        ch.send(b"x" * 100)
        with pytest.raises(ValueError):
            ch.recv_into(buf)
        assert ch.peek_size() == 100
        assert ch.recv() == b"x" * 100


def test_timeouts_and_poll():
    with Channel.create(capacity=1) as ch:
        with pytest.raises(TimeoutError):
            ch.recv(timeout=0.01)
        assert ch.poll(POLLIN, 0) == 0
        assert ch.poll(POLLOUT, 0) & POLLOUT
        ch.send(b"1")
        with pytest.raises(TimeoutError):
            ch.send(b"2", timeout=0)
        assert ch.poll(POLLIN, 0) & POLLIN
        with Channel.create() as other:
            assert poll([other, ch], timeout=0.1) == [ch]
            assert poll([other], timeout=0.01) == []


def test_channels_between_processes():
    ctx = mp.get_context("dragon")
    with Channel.create() as a, Channel.create() as b:
        p = ctx.Process(target=_echo, args=(a, b, 3))
        p.start()
        for msg in (b"x", b"y" * 1000, b"z" * 300000):
            a.send(msg)
            assert b.recv(timeout=30) == msg
        p.join(10)
        assert p.exitcode == 0


def test_destroyed_channel_raises():
    ch = Channel.create()
    other = Channel.attach(ch.descriptor)
    ch.destroy()
    with pytest.raises(OSError):
        other.send(b"x")
    other.detach()


def test_detach_and_destroy_while_threads_are_inside_calls(run_python):
    # Threads blocked in recv and poll on a channel whose handle another
    # thread detaches or destroys finish with an error, never a crash.
    run_python('''
import threading, time
from dragon.channels import Channel, ChannelDestroyedError, poll

def wait_in(ch, out):
    try:
        ch.recv(timeout=5)
        out.append("message")
    except ChannelDestroyedError:
        out.append("destroyed")
    except (TimeoutError, ValueError, OSError) as e:
        out.append(type(e).__name__)

def poll_in(ch, out):
    try:
        poll([ch], timeout=0.3)
        out.append("polled")
    except Exception as e:
        out.append(type(e).__name__)

out = []
for i in range(150):
    ch = Channel.create()
    other = Channel.attach(ch.descriptor)
    ts = [threading.Thread(target=wait_in, args=(ch, out)),
          threading.Thread(target=wait_in, args=(other, out)),
          threading.Thread(target=poll_in, args=(other, out))]
    for t in ts:
        t.start()
    time.sleep(0.002)
    other.detach()
    if i % 2:
        ch.destroy()
    else:
        ch.send(b"x")
        ch.send(b"y")
        ch.detach()
    for t in ts:
        t.join()
assert "destroyed" in out and "message" in out, set(out)
''')
