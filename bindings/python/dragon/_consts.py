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

#: The longest single wait inside libdchan on a channel: longer ones go on
#: in slices, so that a thread waiting on a channel another thread closed
#: (or that the runtime's teardown closed) leaves the library within this
#: bound.
SLICE_NS = 200 * 1000 * 1000
