"""Turning the libraries' negative error codes into Python exceptions."""
import errno

from ._dragon_cffi import ffi, lib

SEG_SZ_ENV = "DRAGON_DEFAULT_SEG_SZ"


class DragonError(OSError):
    """A Dragon library call failed.  ``code`` is the library's (negative)
    error code; ``errno`` is set when the code is a plain errno value."""

    def __init__(self, code, message):
        err = -code if 0 < -code < lib.DMEM_ERRBASE else None
        if err is None:
            super().__init__(message)
        else:
            super().__init__(err, message)
        self.code = code

    def __str__(self):
        return self.args[-1]


class PoolFullError(DragonError, MemoryError):
    """A pool cannot hold what was asked for.  The message names the pool,
    the sizes involved, and DRAGON_DEFAULT_SEG_SZ (the default pool size)."""


_MEMORY_CODES = {-lib.DMEM_E_NOSPACE, -lib.DMEM_E_TOOBIG, -lib.DMEM_E_SHMSMALL,
                 -errno.ENOMEM}


def strerror(code):
    return ffi.string(lib.dlaunch_strerror(int(code))).decode()


def _detail(code, what, layer):
    parts = [what] if what else []
    errmsg = lib.dchan_errmsg if layer == "dchan" else lib.dmem_errmsg
    msg = ffi.string(errmsg()).decode(errors="replace")
    if msg:
        parts.append(msg)
    else:
        parts.append(strerror(code))
    return ": ".join(parts)


def make_error(code, what="", detail=None, layer="dmem"):
    """The exception for a failing call (code < 0).  what says which
    operation failed; detail, when given, replaces the library's message;
    layer names the library whose detail message applies."""
    text = detail if detail is not None else _detail(code, what, layer)
    if code in (-errno.ETIMEDOUT, -errno.EAGAIN):
        return TimeoutError(errno.ETIMEDOUT, text)
    if code in _MEMORY_CODES:
        if SEG_SZ_ENV not in text:
            text += ("; the default pool's size is set by %s (bytes)" % SEG_SZ_ENV)
        return PoolFullError(code, text)
    return DragonError(code, text)


def check(code, what="", layer="dmem"):
    """Raise the exception for code if it is negative; return it otherwise."""
    if code < 0:
        raise make_error(code, what, layer=layer)
    return code


class ChannelDestroyedError(DragonError):
    """The channel was destroyed (by its creator or at runtime shutdown)."""


class NodeLostError(DragonError, ConnectionError):
    """The runtime lost a node (its backend was killed, the node or its
    network failed): raised by a wait of a multiprocessing object of the
    'dragon' context (a Queue's get, a Connection's recv or poll, a lock's
    acquire, an event's wait, a Process's join, ...) once the node is
    lost, and by an operation on an object that lived on that node.  The
    message names the node; ``node`` is its index and ``host`` its host
    name (None when only the transport reported it).  The runtime ends
    every process soon after (see dragon(7), "Python across nodes")."""

    __module__ = "dragon"  # as its tracebacks and pickles name it

    def __init__(self, message, node=None, host=None):
        super().__init__(-lib.DCHAN_E_NODELOST, message)
        self.node = node
        self.host = host


def chan_error(code, what):
    """The exception for a failing libdchan call."""
    if code == -lib.DCHAN_E_NODELOST:
        from .machine import lost_error, wait_lost
        # The transport may see the node go a moment before the launcher's
        # notice comes, which names it as the runtime does.
        if wait_lost(2.0) is not None:
            return lost_error(what)
        return NodeLostError(_detail(code, what, "dchan"))
    if code == -lib.DCHAN_E_DESTROYED:
        return ChannelDestroyedError(code, "%s: channel was destroyed" % what)
    return make_error(code, what, layer="dchan")
