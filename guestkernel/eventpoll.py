"""eventfd and epoll: a counter read and written through a descriptor, and sets of descriptors
waited on together (Linux's fs/eventfd.c and fs/eventpoll.c, in virtual time).

An EventFile holds a 64-bit counter: write(2) adds (blocking, or EAGAIN, before it would reach
2^64-1), read(2) takes all of it (or 1 with EFD_SEMAPHORE; blocking, or EAGAIN, at 0); poll sees
POLLIN while it is above 0 and POLLOUT while a write of 1 fits.

An EpollFile is an interest list: (descriptor, open file) -> (events, data), in the order added.
epoll_wait reports, in that order, the registered files whose poll mask meets their events
(EPOLLERR and EPOLLHUP always), up to maxevents, parking on every file's wait queue in between
(as select does). EPOLLONESHOT disables an entry once reported; EPOLLET reports an entry only when
its readiness rose since it was last reported (the edge of its poll mask). A registration goes
with its open file description: once that is closed everywhere, it is dropped (it does not keep
the file open).
"""
from __future__ import annotations

import stat as S
import struct

from guestkernel.errors import EAGAIN, EEXIST, EINVAL, ELOOP, ENOENT, EPERM, Block, SyscallError
from guestkernel.vfs import (O_NONBLOCK, O_RDWR, POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM, OpenFile,
                             Stat, WaitQueue)

EFD_SEMAPHORE = 1
MAX_COUNT = 0xFFFFFFFFFFFFFFFE

EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD = 1, 2, 3
EPOLLEXCLUSIVE, EPOLLWAKEUP, EPOLLONESHOT, EPOLLET = 1 << 28, 1 << 29, 1 << 30, 1 << 31
FLAGS = EPOLLONESHOT | EPOLLET | EPOLLEXCLUSIVE | EPOLLWAKEUP  # entry flags, not events
EVENT = struct.Struct("<IQ")  # struct epoll_event is packed on x86-64: 12 bytes


class EventFile(OpenFile):
    kind = "eventfd"
    pollable = True

    def __init__(self, count: int, flags: int) -> None:
        super().__init__(O_RDWR | (flags & O_NONBLOCK))
        self.count = count
        self.semaphore = bool(flags & EFD_SEMAPHORE)
        self.waitq = WaitQueue("eventfd")

    def read(self, n: int) -> bytes:
        if n < 8:
            raise SyscallError(EINVAL)
        if not self.count:
            if self.flags & O_NONBLOCK:
                raise SyscallError(EAGAIN)
            raise Block(self.waitq)
        value = 1 if self.semaphore else self.count
        self.count -= value
        self.waitq.wake()
        return struct.pack("<Q", value)

    def write(self, data: bytes) -> int:
        if len(data) < 8:
            raise SyscallError(EINVAL)
        (value,) = struct.unpack_from("<Q", data)
        if value == 0xFFFFFFFFFFFFFFFF:
            raise SyscallError(EINVAL)
        if self.count + value > MAX_COUNT:
            if self.flags & O_NONBLOCK:
                raise SyscallError(EAGAIN)
            raise Block(self.waitq)
        self.count += value
        self.waitq.wake()  # (a write of 0 too, as Linux)
        return 8

    def poll_mask(self) -> int:
        return (POLLIN | POLLRDNORM if self.count else 0) | (POLLOUT | POLLWRNORM if self.count < MAX_COUNT else 0)

    def poll_queue(self) -> WaitQueue:
        return self.waitq

    def stat(self) -> Stat:
        return Stat(ino=1, mode=S.S_IFREG | 0o600, dev=0xE)  # anon_inode


class Interest:
    __slots__ = ("fd", "file", "events", "data", "last")

    def __init__(self, fd: int, file: OpenFile, events: int, data: int) -> None:
        self.fd, self.file, self.events, self.data = fd, file, events, data
        self.last = -1  # the file queue's wake-ups when last reported (EPOLLET)

    @property
    def disabled(self) -> bool:
        """A one-shot entry already reported keeps only its flags, until EPOLL_CTL_MOD."""
        return not self.events & ~FLAGS

    def mask(self) -> int:
        """What of the file's readiness this entry reports (EPOLLERR and EPOLLHUP always)."""
        return self.file.poll_mask() & (self.events & 0xFFFF | POLLERR | POLLHUP)

    @property
    def reported(self) -> bool:
        """Was the file's last wake-up reported already (an edge-triggered entry waits for the
        next)?"""
        return self.last == _wakeups(self.file)


def _wakeups(f: OpenFile) -> int:
    q = f.poll_queue()
    return q.wakeups if q is not None else 0


class EpollFile(OpenFile):
    kind = "epoll"
    pollable = True

    def __init__(self, flags: int) -> None:
        super().__init__(O_RDWR)
        self.interest: dict[tuple[int, int], Interest] = {}  # (fd, id(file)) -> entry, in order added
        self.waitq = WaitQueue("epoll")  # woken with any registered file's queue

    def ctl(self, op: int, fd: int, f: OpenFile, events: int, data: int) -> None:
        key = (fd, id(f))
        if f is self:
            raise SyscallError(EINVAL)
        if not f.pollable:
            raise SyscallError(EPERM)  # regular files and directories have no poll operation
        if isinstance(f, EpollFile) and (f.contains(self) or op == EPOLL_CTL_ADD and self.contains(f)):
            raise SyscallError(ELOOP)
        if op == EPOLL_CTL_ADD:
            if key in self.interest:
                raise SyscallError(EEXIST)
            self.interest[key] = Interest(fd, f, events, data)
            self._watch(f, True)
        elif op == EPOLL_CTL_DEL:
            it = self.interest.pop(key, None)
            if it is None:
                raise SyscallError(ENOENT)
            self._watch(it.file, False)
        elif op == EPOLL_CTL_MOD:
            it = self.interest.get(key)
            if it is None:
                raise SyscallError(ENOENT)
            if it.events & EPOLLEXCLUSIVE or events & EPOLLEXCLUSIVE:
                raise SyscallError(EINVAL)
            it.events, it.data, it.last = events, data, -1
        else:
            raise SyscallError(EINVAL)

    def readd(self, fd: int, f: OpenFile, events: int, data: int, reported: bool) -> None:
        """An entry as a checkpoint recorded it (`reported`: see Interest.reported)."""
        it = self.interest[(fd, id(f))] = Interest(fd, f, events, data)
        it.last = _wakeups(f) if reported else -1
        self._watch(f, True)

    def contains(self, other: "EpollFile") -> bool:
        return any(it.file is other or isinstance(it.file, EpollFile) and it.file.contains(other)
                   for it in self.interest.values())

    def prune(self) -> None:
        """Drop the registrations of files closed everywhere (Linux's eventpoll_release: a
        registration does not keep its file open)."""
        for key, it in list(self.interest.items()):
            if it.file.refs <= 0:
                del self.interest[key]
                self._watch(it.file, False)

    def _watch(self, f: OpenFile, on: bool) -> None:
        """The set's own queue follows its files' (a select, poll or outer epoll on the set)."""
        q = f.poll_queue()
        if q is None:
            return
        if on:
            q.pollers.append(self.waitq)
        elif self.waitq in q.pollers:
            q.pollers.remove(self.waitq)

    def ready(self, maxevents: int) -> list[tuple[int, int]]:
        """(events, data) of up to maxevents ready entries, in the order they were added; marks
        one-shot entries disabled and edge-triggered ones reported."""
        out = []
        for it in self.interest.values():
            if len(out) >= maxevents:
                break
            if it.disabled:
                continue
            mask = it.mask()
            if it.events & EPOLLET:  # reported once per wake-up of the file's queue
                seen = _wakeups(it.file)
                if seen == it.last:
                    continue
                if mask:
                    it.last = seen
            if mask:
                out.append((mask, it.data))
                if it.events & EPOLLONESHOT:
                    it.events &= FLAGS
        return out

    def files(self) -> list[OpenFile]:
        return [it.file for it in self.interest.values()]

    def poll_mask(self) -> int:
        any_ready = any(it.mask() for it in self.interest.values() if not it.disabled)
        return POLLIN | POLLRDNORM if any_ready else 0

    def poll_queue(self) -> WaitQueue:
        return self.waitq

    def close(self) -> None:
        for it in self.interest.values():
            self._watch(it.file, False)
        self.interest.clear()

    def stat(self) -> Stat:
        return Stat(ino=1, mode=S.S_IFREG | 0o600, dev=0xE)  # anon_inode
