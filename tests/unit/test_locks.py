"""Record-lock bookkeeping (guestkernel/locks.py) without a machine: ranges split and merge per
owner as Linux's posix_lock_inode does, conflicts need different owners and a write lock, and
closing any descriptor drops the process's POSIX locks but not another description's OFD lock."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from guestkernel.errors import Block, SyscallError
from guestkernel.locks import F_RDLCK, F_UNLCK, F_WRLCK, OFFSET_MAX, FileLock, Locks
from guestkernel.vfs import O_RDWR, OpenFile


def proc(pid: int):
    return SimpleNamespace(pid=pid, leader=None, state="runnable")


def ranges(locks: Locks, f: OpenFile):
    return [(lk.owner if isinstance(lk.owner, int) else "ofd", lk.type, lk.start, lk.end)
            for lk in locks.files[("file", id(f))].posix]


def lock(locks, p, f, type_, start, end, wait=False):
    return locks.set(p, f, FileLock(p.pid, p.pid, type_, start, end), wait=wait, ofd=False)


def test_split_and_merge():
    locks, f, p = Locks(), OpenFile(O_RDWR), proc(10)
    lock(locks, p, f, F_WRLCK, 0, 9)
    lock(locks, p, f, F_UNLCK, 4, 5)
    assert ranges(locks, f) == [(10, F_WRLCK, 0, 3), (10, F_WRLCK, 6, 9)]
    lock(locks, p, f, F_WRLCK, 10, 19)          # adjacent: merges with 6-9
    assert ranges(locks, f) == [(10, F_WRLCK, 0, 3), (10, F_WRLCK, 6, 19)]
    lock(locks, p, f, F_RDLCK, 2, 7)            # a read lock cuts into both write locks
    assert ranges(locks, f) == [(10, F_WRLCK, 0, 1), (10, F_RDLCK, 2, 7), (10, F_WRLCK, 8, 19)]
    lock(locks, p, f, F_UNLCK, 0, OFFSET_MAX)
    assert ("file", id(f)) not in locks.files   # nothing left: the file's entry is gone


def test_conflicts_and_release_on_close():
    locks, f = Locks(), OpenFile(O_RDWR)
    a, b = proc(1), proc(2)
    lock(locks, a, f, F_RDLCK, 0, 99)
    lock(locks, b, f, F_RDLCK, 50, 150)         # readers share
    with pytest.raises(SyscallError) as e:
        lock(locks, b, f, F_WRLCK, 0, 0)
    assert e.value.errno == 11                  # EAGAIN
    with pytest.raises(Block):
        lock(locks, b, f, F_WRLCK, 0, 0, wait=True)
    ofd = FileLock(f, -1, F_WRLCK, 200, 300)
    locks.set(a, f, ofd, wait=False, ofd=True)
    locks.on_close(a, f, last=False)            # a's POSIX locks go, the description's OFD lock stays
    assert ranges(locks, f) == [(2, F_RDLCK, 50, 150), ("ofd", F_WRLCK, 200, 300)]
    locks.on_close(b, f, last=True)
    assert ("file", id(f)) not in locks.files
