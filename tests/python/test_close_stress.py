"""Closing a Queue, JoinableQueue, SimpleQueue or Pipe while other threads
of the process are blocked on it: every thread returns (an object, an
error or end-of-file) and no channel is destroyed while a thread is
inside a call on it.

Each trial starts a receiver, a sender that overfills the channel (a
Queue's feeder thread takes over; a SimpleQueue's or Pipe's sender
blocks) and, for a Pipe, a poller, then closes after a random delay of
up to a few milliseconds, so that the close meets the threads at every
point of their calls.  The library calls are wrapped to count the
threads inside them; the destruction of a channel checks the count.

DRAGON_CLOSE_STRESS_TRIALS sets the number of trials (400 by default;
`make check-stress` in tests/python runs 4000), DRAGON_STRESS_SEED the
seed."""
import os
import random


def test_close_while_threads_are_blocked(run_python):
    trials = int(os.environ.get("DRAGON_CLOSE_STRESS_TRIALS", "400"))
    seed = int(os.environ.get("DRAGON_STRESS_SEED", "0")) or random.randrange(1 << 30)
    out = run_python(_PROGRAM % (trials, seed), timeout=120 + trials)
    assert "trials: %d" % trials in out, out


_PROGRAM = r'''
import multiprocessing as mp, random, threading, time, faulthandler, sys
import dragon
from dragon import channels, connection, queues
ctx = mp.get_context("dragon")
TRIALS, SEED = %d, %d
inside = []

def counted(fn):
    def call(*args):
        me = threading.get_ident()
        inside.append(me)
        try:
            return fn(*args)
        finally:
            inside.remove(me)
    return call

for mod, names in ((queues, ("_msg_recv", "_msg_send", "_msg_send_many")),
                   (connection, ("_msg_recv", "_msg_send", "_msg_send_alloc"))):
    for n in names:
        setattr(mod, n, counted(getattr(mod, n)))
real_destroy = channels.Channel.destroy
bad = []

def destroy(self):
    if inside:
        bad.append(len(inside))
    real_destroy(self)

channels.Channel.destroy = destroy
ENDS = (OSError, EOFError, ValueError)


def fill(put, n):
    for i in range(n):
        put(i)


def trial(i, rng):
    kind = i %% 4
    if kind < 2:
        q = ctx.Queue() if kind == 0 else ctx.JoinableQueue()
        calls = [q.get, lambda: fill(q.put, queues.QUEUE_CAPACITY + 50)]
        close = [q._reader.close]
    elif kind == 2:
        q = ctx.SimpleQueue()
        calls = [q.get, lambda: fill(q.put, queues.QUEUE_CAPACITY + 50)]
        close = [q.close]
    else:
        a, b = ctx.Pipe()
        calls = [a.recv, lambda: a.poll(60),
                 lambda: fill(b.send, connection.PIPE_CAPACITY + 50)]
        close = [b.close, a.close]
    out = {}

    def run(k, fn):
        try:
            out[k] = fn()
        except ENDS as e:
            out[k] = type(e).__name__

    ts = [threading.Thread(target=run, args=(k, fn), daemon=True)
          for k, fn in enumerate(calls)]
    for t in ts:
        t.start()
    time.sleep(rng.uniform(0, 0.004))
    for c in close:
        c()
    for t in ts:
        t.join(60)
        if t.is_alive():
            faulthandler.dump_traceback(sys.stdout)
            raise AssertionError("trial %%d (kind %%d): a thread did not return "
                                 "after the close: %%s" %% (i, kind, out))
    assert len(out) == len(calls), "trial %%d: a thread failed: %%s" %% (i, out)
    assert not bad, ("trial %%d (kind %%d, DRAGON_STRESS_SEED=%%d): a channel was "
                     "destroyed with %%s threads inside a call on it" %% (i, kind, SEED, bad))


for i in range(TRIALS):
    trial(i, random.Random(SEED + i))
print("trials: %%d" %% TRIALS)
'''
