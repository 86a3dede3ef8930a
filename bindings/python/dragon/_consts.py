"""Constants more than one module of the package uses.

The C calls return 0 or a negative errno value; the values they are
compared with are spelled from :mod:`errno` here, once.
"""
import errno

from ._dragon_cffi import lib

#: What a call that found nothing to do right now returns (a non-blocking
#: attempt, or a wait whose time ran out before the deadline's check).
RC_EAGAIN = -errno.EAGAIN
#: What a wait whose time ran out returns.
RC_ETIMEDOUT = -errno.ETIMEDOUT
#: Either of them: not now, try again (or give up at the deadline).
RC_NOT_NOW = (RC_EAGAIN, RC_ETIMEDOUT)
#: A receive into a buffer too small for the message at the head.
RC_EMSGSIZE = -errno.EMSGSIZE
#: Releasing a lock the caller does not hold.
RC_EPERM = -errno.EPERM
#: Releasing a semaphore past its maximum value.
RC_EOVERFLOW = -errno.EOVERFLOW

#: libdchan's "wait without a deadline", in nanoseconds.
FOREVER_NS = lib.DCHAN_FOREVER

#: The longest single wait inside libdchan.  A wait without a deadline
#: (on a channel, a lock, a semaphore, an event, a barrier) goes on in
#: slices of this length, and between two slices the thread is back in
#: Python, where three things are seen: a signal handler runs (^C raises
#: KeyboardInterrupt, as in a stock wait), an object another thread or the
#: runtime's teardown closed makes the call return, and a Connection's
#: peer process that died without a word is noticed (end of file).  Each
#: is late by at most one slice; a slice that ends costs a few
#: microseconds, ten times a second for each waiting thread.
SLICE_NS = 100 * 1000 * 1000
#: SLICE_NS in seconds.
SLICE_S = SLICE_NS / 1e9
