"""select, pselect6, poll and ppoll: readiness of pipes, timerfds, eventfds, epoll sets and
always-ready files (each file's poll_mask and poll_queue),
waiting on all of them at once, with a timeout in virtual time.

A waiting call parks on a wait queue of its own, registered as a poller of every watched
object's queue (a pipe's, a timerfd's): whichever is woken wakes the call, which then looks
again. A timeout is a kernel timer (`Kernel.add_timer`). The signal masks of pselect6 and ppoll
are not applied while waiting (a signal still interrupts the wait)."""
from __future__ import annotations

import struct

from guestkernel.errors import EBADF, EINVAL, Block, SyscallError
from guestkernel.syscalls import syscall
from guestkernel.syscalls.args import s32
from guestkernel.syscalls.signal import use_temporary_mask
from guestkernel.timerfd import unpack_timespec
from guestkernel.vfs import (POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT, POLLPRI, POLLRDNORM, POLLWRNORM, OpenFile,
                             WaitQueue)

FD_SETSIZE = 1024


# Linux's select sets: which poll bits make a descriptor ready for reading, writing, exceptions
POLLIN_SET = POLLRDNORM | POLLIN | POLLHUP | POLLERR
POLLOUT_SET = POLLWRNORM | POLLOUT | POLLERR
POLLEX_SET = POLLPRI


def readiness(f: OpenFile) -> tuple[bool, bool, bool]:
    """(readable, writable, exceptional) without blocking, from the file's poll mask."""
    m = f.poll_mask()
    return bool(m & POLLIN_SET), bool(m & POLLOUT_SET), bool(m & POLLEX_SET)


def read_set(p, ptr: int, nfds: int) -> set[int]:  # type: ignore[no-untyped-def]
    if not ptr:
        return set()
    bits = int.from_bytes(p.mm.copy_in(ptr, (nfds + 63) // 64 * 8), "little")
    return {fd for fd in range(nfds) if bits >> fd & 1}


def write_set(p, ptr: int, nfds: int, fds: set[int]) -> None:  # type: ignore[no-untyped-def]
    if ptr:
        p.mm.copy_out(ptr, sum(1 << fd for fd in fds).to_bytes((nfds + 63) // 64 * 8, "little"))


def wait_ready(k, p, files, check, timeout_ns: int | None) -> int:  # type: ignore[no-untyped-def]
    """Return check(timed_out) once it gives a result (not None), parking the caller on a
    queue of its own, registered as a poller of every watched file's queue, in between; a
    timeout (None: none, 0: do not wait) is a kernel timer."""
    own = WaitQueue("select")
    state = {"timed_out": timeout_ns == 0}
    watched = [q for q in (f.poll_queue() for f in files) if q is not None]
    deadline = k.clock.uptime_ns() + timeout_ns if timeout_ns else None
    if deadline is not None:
        def expire() -> None:
            state["timed_out"] = True
            own.wake()
        k.add_timer(deadline, expire)

    def attempt() -> int:
        result = check(state["timed_out"])
        if result is not None:
            for q in watched:
                if own in q.pollers:
                    q.pollers.remove(own)
            return result
        for q in watched:
            if own not in q.pollers:
                q.pollers.append(own)
        raise Block(own, retry=attempt, deadline=deadline)  # (a checkpoint keeps the time left)

    return attempt()


def do_select(k, p, nfds: int, rptr: int, wptr: int, eptr: int, timeout_ns: int | None) -> int:  # type: ignore[no-untyped-def]
    if nfds < 0 or nfds > FD_SETSIZE:
        raise SyscallError(EINVAL)
    sets = [read_set(p, ptr, nfds) for ptr in (rptr, wptr, eptr)]
    files = {}
    for fd in set().union(*sets):
        f = p.fds.fds.get(fd)
        if f is None:
            raise SyscallError(EBADF)
        files[fd] = f

    def check(timed_out: bool) -> int | None:
        ready: list[set[int]] = [set(), set(), set()]
        for i, fds in enumerate(sets):
            ready[i] = {fd for fd in fds if readiness(files[fd])[i]}
        n = sum(len(r) for r in ready)
        if not n and not timed_out:
            return None
        for ptr, r in zip((rptr, wptr, eptr), ready):
            write_set(p, ptr, nfds, r)
        return n

    return wait_ready(k, p, files.values(), check, timeout_ns)


def do_poll(k, p, fds_ptr: int, nfds: int, timeout_ns: int | None) -> int:  # type: ignore[no-untyped-def]
    if nfds < 0 or nfds > 1024:
        raise SyscallError(EINVAL)
    raw = bytearray(p.mm.copy_in(fds_ptr, 8 * nfds))
    entries = [struct.unpack_from("<ihh", raw, 8 * i) for i in range(nfds)]
    files = [p.fds.fds.get(fd) if fd >= 0 else None for fd, _, _ in entries]

    def check(timed_out: bool) -> int | None:
        ready = 0
        for i, ((fd, events, _), f) in enumerate(zip(entries, files)):
            if fd < 0:
                rev = 0
            elif f is None:
                rev = POLLNVAL
            else:
                rev = f.poll_mask() & ((events & 0xFFFF) | POLLERR | POLLHUP)
            struct.pack_into("<ihh", raw, 8 * i, fd, events, rev)
            ready += bool(rev)
        if not ready and not timed_out:
            return None
        p.mm.copy_out(fds_ptr, bytes(raw))
        return ready

    return wait_ready(k, p, [f for f in files if f is not None], check, timeout_ns)


@syscall("poll")
def sys_poll(k, p, fds, nfds, timeout, *_):  # type: ignore[no-untyped-def]
    ms = s32(timeout)
    return do_poll(k, p, fds, s32(nfds), None if ms < 0 else ms * 10**6)


@syscall("ppoll")
def sys_ppoll(k, p, fds, nfds, tsp, sigmask, sigsetsize, *_):  # type: ignore[no-untyped-def]
    timeout = None
    if tsp:
        timeout = unpack_timespec(p.mm.copy_in(tsp, 16))
    if sigmask:
        if sigsetsize != 8:
            raise SyscallError(EINVAL)
        use_temporary_mask(p, sigmask)
    if not tsp:
        return do_poll(k, p, fds, s32(nfds), None)
    return _leaving_time_left(k, p, tsp, timeout, 1, lambda ns: do_poll(k, p, fds, s32(nfds), ns))


@syscall("select")
def sys_select(k, p, nfds, rptr, wptr, eptr, tvp, *_):  # type: ignore[no-untyped-def]
    if not tvp:
        return do_select(k, p, s32(nfds), rptr, wptr, eptr, None)
    sec, usec = struct.unpack("<qq", p.mm.copy_in(tvp, 16))
    if sec < 0 or not 0 <= usec < 10**6:
        raise SyscallError(EINVAL)
    return _leaving_time_left(k, p, tvp, sec * 10**9 + usec * 1000, 1000,
                              lambda ns: do_select(k, p, s32(nfds), rptr, wptr, eptr, ns))


def _leaving_time_left(k, p, ptr: int, timeout: int, unit: int, wait) -> int:  # type: ignore[no-untyped-def]
    """wait(timeout), then the time not waited written back at ptr (a timeval, unit 1000, or a
    timespec, unit 1), as Linux's select and pselect6 do when they return and when a signal ends
    them, ppoll too (glibc's select reads it back; its pselect and ppoll hide the update)."""
    deadline = k.clock.uptime_ns() + timeout

    def left() -> None:
        ns = max(0, deadline - k.clock.uptime_ns())
        try:
            p.mm.copy_out(ptr, struct.pack("<qq", ns // 10**9, ns % 10**9 // unit))
        except SyscallError:
            pass

    return _then(lambda: wait(timeout), left, deadline)


def _then(call, left, deadline: int) -> int:  # type: ignore[no-untyped-def]
    """call(), then left(); a parked call does left() when it returns or a signal ends it."""
    try:
        result = call()
    except Block as b:
        again = b.retry or call
        raise Block(b.waitq, retry=lambda: _then(again, left, deadline), deadline=deadline, interrupted=left) from None
    left()
    return result


@syscall("pselect6")
def sys_pselect6(k, p, nfds, rptr, wptr, eptr, tsp, sigmask, *_):  # type: ignore[no-untyped-def]
    timeout = None
    if tsp:
        timeout = unpack_timespec(p.mm.copy_in(tsp, 16))
    if sigmask:  # {const sigset_t *ss; size_t ss_len}
        ss, ss_len = struct.unpack("<QQ", p.mm.copy_in(sigmask, 16))
        if ss:
            if ss_len != 8:
                raise SyscallError(EINVAL)
            use_temporary_mask(p, ss)
    if not tsp:
        return do_select(k, p, s32(nfds), rptr, wptr, eptr, None)
    return _leaving_time_left(k, p, tsp, timeout, 1, lambda ns: do_select(k, p, s32(nfds), rptr, wptr, eptr, ns))
