"""Time syscalls, all answered from the virtual clock (deterministic guest time), and timerfd."""
from __future__ import annotations

import struct

from guestkernel.errors import EINVAL, Block, SyscallError
from guestkernel.syscalls import syscall
from guestkernel.syscalls.args import file_of_kind, s32
from guestkernel.vfs import WaitQueue
from guestkernel.timerfd import (CLOCKS, TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET, TimerFile, pack_timespec,
                                 unpack_timespec)

CLOCK_REALTIME, CLOCK_MONOTONIC = 0, 1


def clock_ns(k, clk: int) -> int:  # type: ignore[no-untyped-def]
    if clk in (0, 5, 8, 11):  # REALTIME, REALTIME_COARSE, REALTIME_ALARM, TAI
        return k.clock.now_ns()
    if clk in (1, 4, 6, 7, 9):  # MONOTONIC, _RAW, _COARSE, BOOTTIME, BOOTTIME_ALARM
        return k.clock.uptime_ns()
    if clk in (2, 3):  # PROCESS/THREAD_CPUTIME
        return k.clock.user_ns()
    if clk < 0:  # CPU-clock ids of other processes
        return k.clock.user_ns()
    raise SyscallError(EINVAL)


@syscall("clock_gettime")
def sys_clock_gettime(k, p, clk, ts, *_):  # type: ignore[no-untyped-def]
    ns = clock_ns(k, clk if clk < (1 << 31) else clk - (1 << 32))
    p.mm.copy_out(ts, struct.pack("<qq", ns // 10**9, ns % 10**9))
    return 0


@syscall("clock_getres")
def sys_clock_getres(k, p, clk, ts, *_):  # type: ignore[no-untyped-def]
    if ts:
        p.mm.copy_out(ts, struct.pack("<qq", 0, 1))
    return 0


@syscall("gettimeofday")
def sys_gettimeofday(k, p, tv, tz, *_):  # type: ignore[no-untyped-def]
    ns = k.clock.now_ns()
    if tv:
        p.mm.copy_out(tv, struct.pack("<qq", ns // 10**9, (ns // 1000) % 10**6))
    if tz:
        p.mm.copy_out(tz, bytes(8))
    return 0


@syscall("time")
def sys_time(k, p, ptr, *_):  # type: ignore[no-untyped-def]
    t = k.clock.now_s()
    if ptr:
        p.mm.copy_out(ptr, struct.pack("<q", t))
    return t


def sleep(k, p, req: int, rem: int) -> int:  # type: ignore[no-untyped-def]
    return sleep_until(k, p, k.clock.uptime_ns() + unpack_timespec(p.mm.copy_in(req, 16)), rem)


def sleep_until(k, p, deadline_ns: int, rem: int = 0) -> int:  # type: ignore[no-untyped-def]
    """Park the caller until the machine's uptime reaches deadline_ns: other processes run
    meanwhile, and when none can, the clock jumps there (sleeping costs no wall time). A
    signal that ends the sleep (EINTR) leaves the time left in `rem`, if not NULL (a relative
    sleep's: nanosleep, clock_nanosleep without TIMER_ABSTIME)."""
    if k.clock.uptime_ns() >= deadline_ns:
        return 0
    q = WaitQueue("sleep")
    k.add_timer(deadline_ns, q.wake)

    def left() -> None:
        if rem:
            try:
                p.mm.copy_out(rem, pack_timespec(max(0, deadline_ns - k.clock.uptime_ns())))
            except SyscallError:  # (Linux's EFAULT there does not change the EINTR)
                pass

    def retry() -> int:
        if k.clock.uptime_ns() >= deadline_ns:
            return 0
        raise Block(q, retry=retry, deadline=deadline_ns, interrupted=left)

    raise Block(q, retry=retry, deadline=deadline_ns, interrupted=left)


@syscall("nanosleep")
def sys_nanosleep(k, p, req, rem, *_):  # type: ignore[no-untyped-def]
    return sleep(k, p, req, rem)


@syscall("clock_nanosleep")
def sys_clock_nanosleep(k, p, clk, flags, req, rem, *_):  # type: ignore[no-untyped-def]
    if flags & 1:  # TIMER_ABSTIME
        sec, nsec = struct.unpack("<qq", p.mm.copy_in(req, 16))
        return sleep_until(k, p, k.clock.uptime_ns() + sec * 10**9 + nsec - clock_ns(k, clk))
    return sleep(k, p, req, rem)


# --- timerfd (guestkernel/timerfd.py) ---------------------------------------------------------

TFD_CLOEXEC, TFD_NONBLOCK = 0o2000000, 0o4000


@syscall("timerfd_create")
def sys_timerfd_create(k, p, clk, flags, *_):  # type: ignore[no-untyped-def]
    clk, flags = s32(clk), s32(flags)
    if clk not in CLOCKS or flags & ~(TFD_CLOEXEC | TFD_NONBLOCK):
        raise SyscallError(EINVAL)
    return p.fds.install(TimerFile(k, clk, flags), cloexec=bool(flags & TFD_CLOEXEC))


def timer_file(p, fd):  # type: ignore[no-untyped-def]
    return file_of_kind(p, fd, TimerFile)


@syscall("timerfd_settime")
def sys_timerfd_settime(k, p, fd, flags, new, old, *_):  # type: ignore[no-untyped-def]
    f = timer_file(p, fd)
    if s32(flags) & ~(TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET):
        raise SyscallError(EINVAL)
    raw = p.mm.copy_in(new, 32)
    interval, value = unpack_timespec(raw[:16]), unpack_timespec(raw[16:])
    was_value, was_interval = f.settime(s32(flags), value, interval)
    if old:
        p.mm.copy_out(old, pack_timespec(was_interval) + pack_timespec(was_value))
    return 0


@syscall("timerfd_gettime")
def sys_timerfd_gettime(k, p, fd, cur, *_):  # type: ignore[no-untyped-def]
    value, interval = timer_file(p, fd).gettime()
    p.mm.copy_out(cur, pack_timespec(interval) + pack_timespec(value))
    return 0
