"""signalfd: a process's pending signals read through a descriptor (Linux's fs/signalfd.c).

A SignalFile watches a set of signals of the process that reads it (Linux's signalfd_dequeue
takes from `current`: a child that inherits the descriptor reads its own signals, not its
parent's): read(2) takes the lowest pending ones of the set (each a 128-byte struct
signalfd_siginfo) and blocks, or fails with EAGAIN, while none is pending; poll sees POLLIN while
one is. Programs block the signals first
(sigprocmask) so that they stay pending instead of being delivered. Each record carries what the
signal was sent with (guestkernel/siginfo.py: sender, code, child status, value).
"""
from __future__ import annotations

import stat as S
from typing import TYPE_CHECKING

from guestkernel.errors import EAGAIN, EINVAL, Block, SyscallError
from guestkernel.siginfo import SIGINFO_SIZE, pending, take_lowest
from guestkernel.vfs import O_NONBLOCK, O_RDONLY, POLLIN, POLLRDNORM, OpenFile, Stat, WaitQueue

if TYPE_CHECKING:
    from guestkernel.kernel import Kernel
    from guestkernel.process import Process

UNBLOCKABLE = (1 << 8) | (1 << 18)  # SIGKILL, SIGSTOP: never read through a signalfd


def signal_waitq(p: "Process") -> WaitQueue:
    """The queue woken when a signal becomes pending for p (Kernel.send_signal)."""
    if p.sigwaitq is None:
        p.sigwaitq = WaitQueue("signalfd")
    return p.sigwaitq


class SignalFile(OpenFile):
    kind = "signalfd"
    pollable = True

    def __init__(self, k: "Kernel", mask: int, flags: int) -> None:
        super().__init__(O_RDONLY | (flags & O_NONBLOCK))
        self.k = k
        self.mask = mask & ~UNBLOCKABLE

    def read(self, n: int) -> bytes:
        if n < SIGINFO_SIZE:
            raise SyscallError(EINVAL)
        p = self.k.current
        assert p is not None  # (a read is a syscall: some process is at work)
        out = []
        while len(out) < n // SIGINFO_SIZE:
            ready = pending(p) & self.mask
            if not ready:
                break
            out.append(take_lowest(p, ready)[1].pack_signalfd())
        if out:
            return b"".join(out)
        if self.flags & O_NONBLOCK:
            raise SyscallError(EAGAIN)
        raise Block(signal_waitq(p))

    # (the process polling or waiting; none when the kernel closes the file of a process that
    # is not at work: its epoll registrations then have no queue to leave)
    def poll_mask(self) -> int:
        p = self.k.current
        return POLLIN | POLLRDNORM if p is not None and pending(p) & self.mask else 0

    def poll_queue(self) -> WaitQueue | None:
        p = self.k.current
        return signal_waitq(p) if p is not None else None

    def stat(self) -> Stat:
        return Stat(ino=1, mode=S.S_IFREG | 0o600, dev=0xE)  # anon_inode
