"""Pipes: a 64 KiB ring buffer in guest frames and its two ends (blocking, EPIPE, atomic writes
up to PIPE_BUF)."""
from __future__ import annotations

import stat as S
from typing import TYPE_CHECKING

from guestkernel.errors import EAGAIN, EBADF, EPIPE, Block, SyscallError
from guestkernel.slab import NO_OBJECTS
from guestkernel.vfs.file import (O_ACCMODE, O_NONBLOCK, O_RDONLY, O_WRONLY, POLLERR, POLLHUP, POLLIN, POLLOUT,
                                  POLLRDNORM, POLLWRNORM, OpenFile, Stat)
from guestkernel.vfs.waitqueue import WaitQueue

if TYPE_CHECKING:
    from guestkernel.slab import Objects
    from guestkernel.frames import Frames

PIPE_CAPACITY = 65536


class Pipe:
    """A pipe's buffer: a 64 KiB ring in 16 guest frames from the buddy allocator."""

    ORDER = 4
    PAGES = 1 << ORDER
    def __init__(self, name: str, frames: "Frames", serial: int, objects: "Objects" = NO_OBJECTS) -> None:
        self.frames = frames
        self.objects = objects
        self.pfn = frames.alloc_block(self.ORDER)
        # Linux's pipe_inode_info.bufs: one pipe_buffer per ring slot
        self.buffers = [objects.alloc("pipe_buffer") for _ in range(self.PAGES)]
        self.head = 0   # ring offset of the oldest byte
        self.count = 0  # bytes buffered
        self.readers = 0
        self.writers = 0
        self.waitq = WaitQueue(name)
        self.serial = serial  # identity for checkpoints (ids get reused); the kernel numbers them
        self.dirty: set[int] = set(range(self.PAGES))  # ring pages written since the last one

    def _pieces(self, start: int, n: int):  # type: ignore[no-untyped-def]
        """(page view slice, length) covering n ring bytes from ring offset start."""
        while n > 0:
            off = start % PIPE_CAPACITY
            page, in_page = divmod(off, 4096)
            chunk = min(n, 4096 - in_page)
            gpa = ((self.pfn + page) << 12) + in_page
            yield self.frames.page(self.pfn + page)[in_page : in_page + chunk], gpa
            start += chunk
            n -= chunk

    def put(self, data: bytes | memoryview) -> int:
        n = min(len(data), PIPE_CAPACITY - self.count)
        pos = 0
        for view, gpa in self._pieces(self.head + self.count, n):
            view[:] = data[pos : pos + len(view)]
            self.frames.kernel_access(gpa, len(view), True)
            self.dirty.add((gpa >> 12) - self.pfn)
            pos += len(view)
        self.count += n
        return n

    def take(self, n: int) -> bytes:
        n = min(n, self.count)
        out = bytearray()
        for view, gpa in self._pieces(self.head, n):
            out += view
            self.frames.kernel_access(gpa, len(view), False)
        self.head = (self.head + n) % PIPE_CAPACITY
        self.count -= n
        return bytes(out)

    def release_if_unused(self) -> None:
        if self.readers == 0 and self.writers == 0 and self.pfn >= 0:
            self.frames.free_block(self.pfn, self.ORDER)
            self.pfn = -1
            for obj in self.buffers:
                self.objects.free(obj)
            self.buffers = []


class PipeEnd(OpenFile):
    kind = "pipe"

    def __init__(self, pipe: Pipe, write_end: bool, flags: int) -> None:
        super().__init__((O_WRONLY if write_end else O_RDONLY) | (flags & ~O_ACCMODE))
        self.pipe = pipe
        self.write_end = write_end
        if write_end:
            pipe.writers += 1
        else:
            pipe.readers += 1

    pollable = True
    writes_whole = True

    def poll_mask(self) -> int:
        """Linux's pipe_poll."""
        pipe = self.pipe
        if self.write_end:
            return (POLLOUT | POLLWRNORM if pipe.count < PIPE_CAPACITY else 0) | (POLLERR if pipe.readers == 0 else 0)
        return (POLLIN | POLLRDNORM if pipe.count else 0) | (POLLHUP if pipe.writers == 0 else 0)

    def poll_queue(self) -> WaitQueue:
        return self.pipe.waitq

    def read(self, n: int) -> bytes:
        p = self.pipe
        if self.write_end:
            raise SyscallError(EBADF)
        if not p.count:
            if p.writers == 0 or n == 0:
                return b""
            if self.flags & O_NONBLOCK:
                raise SyscallError(EAGAIN)
            raise Block(p.waitq)
        data = p.take(n)
        p.waitq.wake()
        return data

    def write(self, data: bytes) -> int:
        p = self.pipe
        if not self.write_end:
            raise SyscallError(EBADF)
        if p.readers == 0:
            raise SyscallError(EPIPE)
        room = PIPE_CAPACITY - p.count
        if room <= 0 or (len(data) <= 4096 and room < len(data)):  # PIPE_BUF writes are atomic
            if self.flags & O_NONBLOCK:
                raise SyscallError(EAGAIN)
            raise Block(p.waitq)
        n = p.put(data)
        p.waitq.wake()
        return n

    def stat(self) -> Stat:
        return Stat(ino=self.pipe.pfn & 0xFFFFFF, mode=S.S_IFIFO | 0o600, size=self.pipe.count, dev=0xC)

    def close(self) -> None:
        if self.write_end:
            self.pipe.writers -= 1
        else:
            self.pipe.readers -= 1
        self.pipe.waitq.wake()
        self.pipe.release_if_unused()
