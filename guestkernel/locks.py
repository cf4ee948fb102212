"""File locks with Linux's semantics: flock(2), POSIX record locks and open-file-description
(OFD) locks (fcntl F_SETLK/F_SETLKW/F_GETLK and F_OFD_*; lockf(3) is built on them by glibc).

Each locked file has one `InodeLocks`: a list of record locks (POSIX and OFD together, as in
Linux's i_flctx->flc_posix), a list of flock locks and a wait queue. Owners decide conflicts:

    lock kind   owner                          released when
    POSIX       the process (thread group)     any descriptor of the file is closed by that
                                               process, or it exits; not inherited by fork
    OFD         the open file description      the description's last descriptor is closed
    flock       the open file description      same; one lock per description, converted in
                                               place (not atomically, as Linux does)

Two locks conflict when they belong to different owners, overlap, and one is a write
(exclusive) lock. A request that conflicts fails with EAGAIN, or with the F_SETLKW / blocking
flock forms parks the caller on the file's wait queue (`Block`); every unlock wakes the queue
and the waiters retry. A POSIX F_SETLKW that would wait for a process that (transitively) waits
for the caller fails with EDEADLK, as Linux's posix_locks_deadlock finds it; flock and OFD
waits are not checked (Linux does not either).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from guestkernel.errors import EAGAIN, EBADF, EDEADLK, EINVAL, Block, SyscallError
from guestkernel.vfs import InodeFile, OpenFile, PipeEnd, WaitQueue

if TYPE_CHECKING:
    from guestkernel.process import Process

F_RDLCK, F_WRLCK, F_UNLCK = 0, 1, 2
OFFSET_MAX = (1 << 63) - 1
LOCK_SH, LOCK_EX, LOCK_NB, LOCK_UN, LOCK_MAND = 1, 2, 4, 8, 32
MAX_DEADLOCK_DEPTH = 10  # Linux's MAX_DEADLK_ITERATIONS


@dataclass
class FileLock:
    owner: Any          # pid (POSIX) or the OpenFile (OFD, flock)
    pid: int            # what F_GETLK reports: the owner's pid, -1 for OFD locks
    type: int           # F_RDLCK or F_WRLCK
    start: int = 0
    end: int = OFFSET_MAX  # inclusive

    def conflicts(self, other: "FileLock") -> bool:
        return (self.owner != other.owner and self.start <= other.end and other.start <= self.end
                and F_WRLCK in (self.type, other.type))


@dataclass
class InodeLocks:
    posix: list[FileLock] = field(default_factory=list)
    flock: list[FileLock] = field(default_factory=list)
    waitq: WaitQueue = field(default_factory=lambda: WaitQueue("filelock"))


def lock_key(f: OpenFile) -> object:
    """What a lock is taken on: the file's inode."""
    if isinstance(f, InodeFile):
        return ("ino", f.ino)
    if isinstance(f, PipeEnd):
        return ("pipe", f.pipe.serial)
    node = getattr(f, "node", None)
    return ("node", node) if node is not None else ("file", id(f))


class Locks:
    def __init__(self) -> None:
        self.files: dict[object, InodeLocks] = {}
        # owner pid -> (the waiting process, the lock it waits for), for deadlock detection
        self.waiting: dict[int, tuple["Process", FileLock]] = {}

    def _of(self, f: OpenFile, create: bool = True) -> InodeLocks | None:
        key = lock_key(f)
        il = self.files.get(key)
        if il is None and create:
            il = self.files[key] = InodeLocks()
        return il

    def _tidy(self, f: OpenFile, il: InodeLocks) -> None:
        if not il.posix and not il.flock and not il.waitq.waiters:
            self.files.pop(lock_key(f), None)

    # --- POSIX and OFD record locks -----------------------------------------------------------
    def test(self, f: OpenFile, want: FileLock) -> FileLock | None:
        """F_GETLK: the first lock that would block `want`, or None."""
        il = self._of(f, create=False)
        if il is None:
            return None
        return next((held for held in il.posix if held.conflicts(want)), None)

    def set(self, p: "Process", f: OpenFile, want: FileLock, wait: bool, ofd: bool) -> int:
        """F_SETLK(W) / F_OFD_SETLK(W) of `want` (type F_UNLCK removes the range)."""
        if want.type == F_RDLCK and not f.readable or want.type == F_WRLCK and not f.writable:
            raise SyscallError(EBADF)
        il = self._of(f)
        assert il is not None
        pid = tgid(p)
        self.waiting.pop(pid, None)
        if want.type != F_UNLCK:
            blocker = next((held for held in il.posix if held.conflicts(want)), None)
            if blocker is not None:
                if not wait:
                    raise SyscallError(EAGAIN)
                if not ofd and self._deadlock(pid, blocker):
                    raise SyscallError(EDEADLK)
                if not ofd:
                    self.waiting[pid] = (p, blocker)
                raise Block(il.waitq)
        self._apply(il, want)
        il.waitq.wake()  # waiters retry: the range may have been unlocked or downgraded
        self._tidy(f, il)
        return 0

    def _deadlock(self, pid: int, blocker: FileLock) -> bool:
        for _ in range(MAX_DEADLOCK_DEPTH):
            if not isinstance(blocker.owner, int):
                return False  # an OFD lock: nobody's pid to follow
            if blocker.owner == pid:
                return True
            nxt = self.waiting.get(blocker.owner)
            if nxt is None or nxt[0].state != "blocked":  # not waiting any more (a signal, exit)
                return False
            blocker = nxt[1]
        return False

    @staticmethod
    def _apply(il: InodeLocks, want: FileLock) -> None:
        """Replace the owner's locks over [start, end] with `want` (none for F_UNLCK), splitting
        the ones it cuts and merging adjacent or overlapping ones of the same type, as Linux's
        posix_lock_inode does."""
        mine = [lk for lk in il.posix if lk.owner == want.owner]
        others = [lk for lk in il.posix if lk.owner != want.owner]
        new = None if want.type == F_UNLCK else FileLock(want.owner, want.pid, want.type, want.start, want.end)
        kept: list[FileLock] = []
        for lk in mine:
            if new is not None and lk.type == new.type and lk.start <= new.end + 1 and new.start <= lk.end + 1:
                new.start, new.end = min(new.start, lk.start), max(new.end, lk.end)
            elif lk.end < want.start or lk.start > want.end:
                kept.append(lk)
            else:
                if lk.start < want.start:
                    kept.append(FileLock(lk.owner, lk.pid, lk.type, lk.start, want.start - 1))
                if lk.end > want.end:
                    kept.append(FileLock(lk.owner, lk.pid, lk.type, want.end + 1, lk.end))
        if new is not None:
            new.end = min(new.end, OFFSET_MAX)
            kept.append(new)
        il.posix = others + sorted(kept, key=lambda lk: lk.start)

    # --- flock ----------------------------------------------------------------------------------
    def flock(self, p: "Process", f: OpenFile, op: int) -> int:
        kind = {LOCK_SH: F_RDLCK, LOCK_EX: F_WRLCK, LOCK_UN: F_UNLCK}[op & ~LOCK_NB]
        il = self._of(f)
        assert il is not None
        mine = next((lk for lk in il.flock if lk.owner is f), None)
        if mine is not None:
            if mine.type == kind:
                return 0
            il.flock.remove(mine)  # a conversion drops the old lock first (and may lose it)
            il.waitq.wake()
        if kind == F_UNLCK:
            self._tidy(f, il)
            return 0
        want = FileLock(f, p.pid, kind)
        if any(held.conflicts(want) for held in il.flock):
            if op & LOCK_NB:
                self._tidy(f, il)
                raise SyscallError(EAGAIN)
            raise Block(il.waitq)
        il.flock.append(want)
        return 0

    # --- release on close -----------------------------------------------------------------------
    def on_close(self, p: "Process", f: OpenFile, last: bool) -> None:
        """A descriptor of `f` was closed by `p` (`last`: the description itself is gone)."""
        if not self.files:
            return
        il = self._of(f, create=False)
        if il is None:
            return
        before = (len(il.posix), len(il.flock))
        il.posix = [lk for lk in il.posix if lk.owner != tgid(p) and not (last and lk.owner is f)]
        if last:
            il.flock = [lk for lk in il.flock if lk.owner is not f]
        if (len(il.posix), len(il.flock)) != before:
            il.waitq.wake()
        self._tidy(f, il)



def tgid(p: "Process") -> int:
    """The owner of a process's POSIX locks: its thread group."""
    return (p.leader or p).pid


def parse_flock(raw: bytes, f: OpenFile, size: int) -> tuple[FileLock, int, int]:
    """struct flock (x86-64: short type, short whence, off_t start, off_t len, pid_t pid) ->
    (lock with owner unset, l_pid, type); EINVAL for a bad type, whence or range."""
    ltype = int.from_bytes(raw[0:2], "little", signed=True)
    whence = int.from_bytes(raw[2:4], "little", signed=True)
    start = int.from_bytes(raw[8:16], "little", signed=True)
    length = int.from_bytes(raw[16:24], "little", signed=True)
    lpid = int.from_bytes(raw[24:28], "little", signed=True)
    if ltype not in (F_RDLCK, F_WRLCK, F_UNLCK):
        raise SyscallError(EINVAL)
    if whence == 0:
        base = 0
    elif whence == 1:
        base = f.offset
    elif whence == 2:
        base = size
    else:
        raise SyscallError(EINVAL)
    start += base
    if length > 0:
        end = start + length - 1
    elif length == 0:
        end = OFFSET_MAX
    else:
        end = start - 1
        start += length
    if start < 0:
        raise SyscallError(EINVAL)
    return FileLock(None, 0, ltype, start, min(end, OFFSET_MAX)), lpid, ltype


def pack_flock(raw: bytes, held: FileLock | None) -> bytes:
    """F_GETLK's answer: the blocking lock, or the request with l_type F_UNLCK."""
    out = bytearray(raw)
    if held is None:
        out[0:2] = F_UNLCK.to_bytes(2, "little")
        return bytes(out)
    length = 0 if held.end == OFFSET_MAX else held.end - held.start + 1
    out[0:2] = held.type.to_bytes(2, "little")
    out[2:4] = (0).to_bytes(2, "little")  # SEEK_SET
    out[8:16] = held.start.to_bytes(8, "little", signed=True)
    out[16:24] = length.to_bytes(8, "little", signed=True)
    out[24:28] = held.pid.to_bytes(4, "little", signed=True)
    return bytes(out)
