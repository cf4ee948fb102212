"""Time syscalls, all answered from the virtual clock (deterministic guest time)."""
from __future__ import annotations

import struct

from guestkernel.errors import EINVAL, SyscallError
from guestkernel.syscalls import syscall

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
    sec, nsec = struct.unpack("<qq", p.mm.copy_in(req, 16))
    if sec < 0 or not 0 <= nsec < 10**9:
        raise SyscallError(EINVAL)
    k.clock.charge(sec * 10**9 + nsec)  # sleeping advances virtual time, costs no wall time
    if rem:
        p.mm.copy_out(rem, bytes(16))
    return 0


@syscall("nanosleep")
def sys_nanosleep(k, p, req, rem, *_):  # type: ignore[no-untyped-def]
    return sleep(k, p, req, rem)


@syscall("clock_nanosleep")
def sys_clock_nanosleep(k, p, clk, flags, req, rem, *_):  # type: ignore[no-untyped-def]
    if flags & 1:  # TIMER_ABSTIME
        sec, nsec = struct.unpack("<qq", p.mm.copy_in(req, 16))
        delta = sec * 10**9 + nsec - clock_ns(k, clk)
        if delta > 0:
            k.clock.charge(delta)
        return 0
    return sleep(k, p, req, rem)
