"""Which processes hold an object open, recorded in pool memory.

A Connection end is open in every process that created it or unpickled it,
and its peer sees end-of-file only when no live process holds it any
more, as with a pipe's file descriptors.  The record is a table of 32-bit
slots in a pool allocation: a positive value is the pid of a holder, a
negative one marks a copy in flight (pickled by process -value and not yet
unpickled), which counts as held while that process lives.  Slot 0 is a
flag: set when the table overflowed, after which the object never reports
end-of-file.

A holder on another node cannot write the record: its slot holds the pid
by which this node names it (above every OS pid, see dragon.machine),
written for it here (a Connection handed to a child started there, or a
holder message from it, see dragon.connection), and it counts as held
while that node's services say it runs.
"""
import contextlib
import os
import threading

from ._dragon_cffi import ffi, lib
from . import machine

SLOTS = 31

# Copies in flight to a known receiver (a child's Process arguments):
# (address of the table, slot) -> the receiver's pid.  A receiver that
# dies before it unpickles its copy would otherwise leave the copy in
# flight for as long as this process lives (see HolderTable.held).
_receivers = {}
_capture = threading.local()

# This process's entries, (address of the table, slot) -> table, so that
# all of them can be dropped at once when the process has finished (see
# release_all).  Entries of another process (a forked copy inherits the
# dict) are left alone: every change compares with the writer's pid.
_entries = {}


def _alive(pid):
    """False once pid has exited (a zombie counts as exited).  When /proc
    cannot be read for another reason (no descriptor left, say) the
    process counts as alive: a peer must never see end-of-file early.
    A process of another node is asked about there."""
    if pid >= machine.PID_SPAN:
        return machine.remote_alive(pid)
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        return True
    state = stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3]
    return state not in (b"Z", b"X", b"x")


class HolderTable:
    """One object's table: SLOTS + 1 int32 words at ptr (in pool memory)."""

    WORDS = SLOTS + 1

    def __init__(self, ptr, owner=None):
        """ptr: the table's first word; owner: what keeps that memory
        mapped (an Allocation), held as long as the table."""
        self._w = ffi.cast("int32_t *", ptr)
        self._owner = owner

    def clear(self):
        for i in range(self.WORDS):
            self._w[i] = 0

    def _key(self, slot):
        return (int(ffi.cast("uintptr_t", self._w)), slot)

    def _put(self, value, expect=0):
        for i in range(1, self.WORDS):
            if lib.dragon_glue_cas32(self._w + i, expect, value) == expect:
                _entries[self._key(i)] = self
                return i
        if expect == 0:
            self._w[0] = 1  # overflow: never report end-of-file
        return 0

    def register(self):
        """Record this process as a holder; returns the slot (0: overflow).
        A slot that names this process already, written for it by a
        receiver of a holder message its parent sent (see
        dragon.connection), becomes its own."""
        me = os.getpid()
        for i in range(1, self.WORDS):
            if lib.dragon_glue_load32(self._w + i) == me and self._key(i) not in _entries:
                _entries[self._key(i)] = self
                return i
        return self._put(me)

    def register_pending(self):
        """Record a copy in flight from this process; returns the slot."""
        slot = self._put(-os.getpid())
        taken = getattr(_capture, "items", None)
        if taken is not None and slot:
            taken.append(self._key(slot))
        return slot

    def claim(self, slot, sender):
        """Turn the in-flight slot written by sender into this process's
        holding (or take a new slot if it was claimed already)."""
        me = os.getpid()
        if 0 < slot < self.WORDS and lib.dragon_glue_cas32(self._w + slot, -sender, me) == -sender:
            _entries[self._key(slot)] = self
            return slot
        return self.register()

    def release(self, slot):
        me = os.getpid()
        if 0 < slot < self.WORDS:
            lib.dragon_glue_cas32(self._w + slot, me, 0)
            _entries.pop(self._key(slot), None)

    def overflowed(self):
        return lib.dragon_glue_load32(self._w) != 0

    def values(self):
        """The holders recorded now: pids, and -pid for copies in flight."""
        vals = (lib.dragon_glue_load32(self._w + i) for i in range(1, self.WORDS))
        return [v for v in vals if v]

    def add_remote(self, pid):
        """Record process pid of another node (as this node names it) as
        a holder, unless it is recorded already."""
        if pid in self.values():
            return
        for i in range(1, self.WORDS):
            if lib.dragon_glue_cas32(self._w + i, 0, pid) == 0:
                return
        self._w[0] = 1  # overflow: never report end-of-file

    def drop_remote(self, pid):
        """Process pid of another node let go."""
        for i in range(1, self.WORDS):
            lib.dragon_glue_cas32(self._w + i, pid, 0)

    def held(self, besides=0):
        """True while some live process holds the object (not counting
        slot besides, when given)."""
        if lib.dragon_glue_load32(self._w) != 0:
            return True
        for i in range(1, self.WORDS):
            if i == besides:
                continue
            v = lib.dragon_glue_load32(self._w + i)
            if v and _alive(abs(v)):
                if v == -os.getpid() and self._lost(i, v):
                    continue
                return True
        return False

    def record_end(self):
        """The RecordEnd of a record whose claim and busy words follow
        this table (a sync object's record: one table, then the words)."""
        return RecordEnd(self._w + self.WORDS, self._owner)

    def _lost(self, slot, v):
        """Our copy in flight in slot went to a receiver that died
        without taking it: clear it, and say so."""
        key = self._key(slot)
        pid = _receivers.get(key)
        if pid is None or _alive(pid):
            return False
        if lib.dragon_glue_cas32(self._w + slot, v, 0) == v:
            _entries.pop(key, None)
        _receivers.pop(key, None)
        return True


class _InFlight(list):
    """The keys of the copies in flight to one receiver, and the calls to
    make with its pid once it runs (see on_receiver)."""

    def __init__(self):
        super().__init__()
        self.notices = []


@contextlib.contextmanager
def capture_pending():
    """Collect the copies in flight this thread makes meanwhile (the
    keys of their slots), for :func:`expect_receiver`."""
    outer = getattr(_capture, "items", None)
    _capture.items = items = _InFlight()
    try:
        yield items
    finally:
        _capture.items = outer
        if outer is not None:
            outer.extend(items)
            outer.notices.extend(items.notices)


def on_receiver(fn):
    """Call fn(gpid) once the receiver of the copies captured now runs,
    gpid its pid as other nodes name it (see receiver_started)."""
    items = getattr(_capture, "items", None)
    if items is not None:
        items.notices.append(fn)


def receiver_started(items, pid):
    """The receiver of items (from capture_pending) runs as process pid
    (as this process names it)."""
    notices = getattr(items, "notices", ())
    if notices:
        gpid = pid if pid >= machine.PID_SPAN else machine.global_pid(pid)
        for fn in notices:
            fn(gpid)


def expect_receiver(items, pid):
    """The copies items (from capture_pending) go to process pid: once pid
    has ended, those it never took count as held no more."""
    for key in items:
        _receivers[key] = pid
    if len(_receivers) > 4096:  # forget receivers long gone
        for key, p in list(_receivers.items()):
            if not _alive(p):
                del _receivers[key]


def hand_over(items, pid):
    """The copies items (from capture_pending) went to process pid of
    another node (as this node names it), which cannot record itself:
    it holds them from now on, in the tables that count holders of other
    nodes (Connections', see HolderTable.remote_holders)."""
    me = os.getpid()
    for key in items:
        table = _entries.get(key)
        if table is None or not getattr(table, "remote_holders", False):
            continue
        if lib.dragon_glue_cas32(table._w + key[1], -me, pid) == -me:
            _entries.pop(key, None)


class KnownHolders:
    """The holders of a Pipe's end as a process on another node knows
    them, when it cannot read their record: the pids (as other nodes name
    them) it was given with its own end and learnt from holder messages
    since.  Quacks like HolderTable.held."""

    def __init__(self, gpids):
        self.gpids = set(gpids)

    def add(self, gpid):
        self.gpids.add(gpid)

    def drop(self, gpid):
        self.gpids.discard(gpid)

    def held(self, besides=0):
        for g in list(self.gpids):
            if _alive(machine.local_name(g)):
                return True
            self.gpids.discard(g)  # ended: it never holds again
        return False


def release_all():
    """Drop every holding and copy in flight of this process, as its exit
    would: the last act of a process that has finished and is about to
    report its end (see dragon._child), so that its peers see end-of-file
    as soon as its parent's join returns."""
    me = os.getpid()
    # Once this process's last slot in a record is clear, another process
    # may destroy the object and free the record (see RecordEnd): find
    # every slot first, while all are held, then clear each once.  A
    # record stays held as long as one of them is left.
    mine = []
    for (_, slot), table in list(_entries.items()):
        w = table._w + slot
        v = lib.dragon_glue_load32(w)
        if v in (me, -me):
            mine.append((w, v))
    for w, v in mine:
        lib.dragon_glue_cas32(w, v, 0)
    _entries.clear()


class RecordEnd:
    """Freeing a shared record (holder tables, a claim word and a busy
    word, in one pool allocation) once its object is destroyed.

    The process that destroys the object cannot free the record at once:
    another process may have let go at the same moment and still be
    reading the tables or trying the claim.  So every process letting go
    counts itself in the busy word first (while it still holds its slot,
    so that nobody can destroy under it) and out when it is done; whoever
    counts out last after the claim was taken frees the record.  Nobody
    can count in after that: counting in needs a holding, and the object
    was destroyed because no live process held it."""

    __slots__ = ("claim", "busy", "alloc")

    def __init__(self, claim, alloc):
        self.claim = claim          # int32_t *: 1 once the object is destroyed
        self.busy = claim + 1       # int32_t *: processes letting go
        self.alloc = alloc

    def enter(self):
        lib.dragon_glue_add32(self.busy, 1)

    def claim_it(self):
        """True for the one process that may destroy the object."""
        return lib.dragon_glue_cas32(self.claim, 0, 1) == 0

    def leave(self):
        if (lib.dragon_glue_add32(self.busy, -1) == 0
                and lib.dragon_glue_load32(self.claim) == 1):
            try:
                self.alloc.free()
            except Exception:  # the pool is going away with the runtime
                pass
