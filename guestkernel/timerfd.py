"""timerfd: timers read through a descriptor (timerfd_create/settime/gettime, read, select).

A TimerFile counts expirations in virtual time. Arming it registers a kernel timer
(`Kernel.add_timer`); each expiry adds one (or the intervals that passed) to the count and wakes
the file's wait queue, where readers and select/pselect6 callers wait. read(2) returns the count
as a u64 and resets it; with no expiry yet it blocks, or fails with EAGAIN under O_NONBLOCK.
"""
from __future__ import annotations

import stat as S
import struct
from typing import TYPE_CHECKING

from guestkernel.errors import EAGAIN, EINVAL, Block, SyscallError
from guestkernel.vfs import O_NONBLOCK, O_RDWR, POLLIN, POLLRDNORM, OpenFile, Stat, WaitQueue

if TYPE_CHECKING:
    from guestkernel.kernel import Kernel

CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME = 0, 1, 7
CLOCK_REALTIME_ALARM, CLOCK_BOOTTIME_ALARM = 8, 9
TFD_TIMER_ABSTIME = 1
TFD_TIMER_CANCEL_ON_SET = 2
CLOCKS = (CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_REALTIME_ALARM, CLOCK_BOOTTIME_ALARM)


def pack_timespec(ns: int) -> bytes:
    return struct.pack("<qq", ns // 10**9, ns % 10**9)


def unpack_timespec(raw: bytes) -> int:
    sec, nsec = struct.unpack("<qq", raw)
    if sec < 0 or not 0 <= nsec < 10**9:
        raise SyscallError(EINVAL)
    return sec * 10**9 + nsec


class TimerFile(OpenFile):
    kind = "timerfd"

    def __init__(self, k: "Kernel", clock: int, flags: int) -> None:
        super().__init__(O_RDWR | (flags & O_NONBLOCK))
        self.k = k
        self.clock = clock
        self.ticks = 0
        self.deadline = 0    # uptime ns of the next expiry; 0: disarmed
        self.interval = 0
        self.generation = 0  # a re-arm makes earlier kernel timers stale
        self.waitq = WaitQueue("timerfd")

    def _clock_now(self) -> int:
        clk = self.k.clock
        return clk.now_ns() if self.clock in (CLOCK_REALTIME, CLOCK_REALTIME_ALARM) else clk.uptime_ns()

    def settime(self, flags: int, value: int, interval: int) -> tuple[int, int]:
        old = self.gettime()
        self.generation += 1
        self.ticks = 0
        self.interval = interval
        if value == 0:
            self.deadline = 0
            return old
        up = self.k.clock.uptime_ns()
        self.deadline = up + (value - self._clock_now() if flags & TFD_TIMER_ABSTIME else value)
        self._arm()
        return old

    def gettime(self) -> tuple[int, int]:
        """(time to the next expiry, interval) in ns."""
        if not self.deadline:
            return 0, self.interval
        return max(1, self.deadline - self.k.clock.uptime_ns()), self.interval

    def resume(self, ticks: int, left: int, interval: int) -> None:
        """As a checkpoint recorded it: expirations not read, ns to the next (0: disarmed), the
        interval."""
        self.ticks, self.interval = ticks, interval
        if left:
            self.deadline = self.k.clock.uptime_ns() + left
            self._arm()

    def _arm(self) -> None:
        gen = self.generation
        self.k.add_timer(self.deadline, lambda: self._expire(gen))

    def _expire(self, gen: int) -> None:
        if gen != self.generation or not self.deadline:
            return
        now = self.k.clock.uptime_ns()
        if self.interval:
            missed = (now - self.deadline) // self.interval
            self.ticks += 1 + missed
            self.deadline += (1 + missed) * self.interval
            self._arm()
        else:
            self.ticks += 1
            self.deadline = 0
        self.waitq.wake()

    def ready(self) -> bool:
        return self.ticks > 0

    pollable = True

    def poll_mask(self) -> int:
        return POLLIN | POLLRDNORM if self.ticks else 0

    def poll_queue(self) -> WaitQueue:
        return self.waitq

    def read(self, n: int) -> bytes:
        if n < 8:
            raise SyscallError(EINVAL)
        if not self.ticks:
            if self.flags & O_NONBLOCK:
                raise SyscallError(EAGAIN)
            raise Block(self.waitq)
        ticks, self.ticks = self.ticks, 0
        return struct.pack("<Q", ticks)

    def write(self, data: bytes) -> int:
        raise SyscallError(EINVAL)

    def close(self) -> None:
        self.generation += 1  # its pending kernel timer does nothing, and is not re-armed
        self.deadline = 0

    def stat(self) -> Stat:
        return Stat(ino=1, mode=S.S_IFREG | 0o600, dev=0xE)  # anon_inode
