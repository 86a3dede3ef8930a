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


def _detail(code, what):
    parts = [what] if what else []
    msg = ffi.string(lib.dmem_errmsg()).decode(errors="replace")
    if msg:
        parts.append(msg)
    else:
        parts.append(strerror(code))
    return ": ".join(parts)


def make_error(code, what="", detail=None):
    """The exception for a failing call (code < 0).  what says which
    operation failed; detail, when given, replaces the library's message."""
    text = detail if detail is not None else _detail(code, what)
    if code in (-errno.ETIMEDOUT, -errno.EAGAIN):
        return TimeoutError(errno.ETIMEDOUT, text)
    if code in _MEMORY_CODES:
        if SEG_SZ_ENV not in text:
            text += ("; the default pool's size is set by %s (bytes)" % SEG_SZ_ENV)
        return PoolFullError(code, text)
    return DragonError(code, text)


def check(code, what=""):
    """Raise the exception for code if it is negative; return it otherwise."""
    if code < 0:
        raise make_error(code, what)
    return code
