"""eventfd, eventfd2, signalfd, signalfd4 and the epoll calls (guestkernel/eventpoll.py and
guestkernel/signalfd.py hold the files)."""
from __future__ import annotations

from guestkernel.errors import EFAULT, EINVAL, SyscallError
from guestkernel.eventpoll import (EFD_SEMAPHORE, EPOLL_CTL_DEL, EPOLLEXCLUSIVE, EPOLLONESHOT, EVENT, EpollFile,
                                   EventFile)
from guestkernel.signalfd import UNBLOCKABLE, SignalFile
from guestkernel.syscalls import syscall
from guestkernel.syscalls.args import file_of_kind, s32
from guestkernel.syscalls.select import wait_ready
from guestkernel.syscalls.signal import use_temporary_mask
from guestkernel.timerfd import unpack_timespec
from guestkernel.vfs import O_CLOEXEC, O_NONBLOCK

EP_MAX_EVENTS = 0x7FFFFFFF // EVENT.size


@syscall("eventfd")
def sys_eventfd(k, p, count, *_):  # type: ignore[no-untyped-def]
    return p.fds.install(EventFile(count & 0xFFFFFFFF, 0))


@syscall("eventfd2")
def sys_eventfd2(k, p, count, flags, *_):  # type: ignore[no-untyped-def]
    flags = s32(flags)
    if flags & ~(O_CLOEXEC | O_NONBLOCK | EFD_SEMAPHORE):
        raise SyscallError(EINVAL)
    return p.fds.install(EventFile(count & 0xFFFFFFFF, flags), cloexec=bool(flags & O_CLOEXEC))


@syscall("epoll_create")
def sys_epoll_create(k, p, size, *_):  # type: ignore[no-untyped-def]
    if s32(size) <= 0:
        raise SyscallError(EINVAL)
    return p.fds.install(EpollFile(0))


@syscall("epoll_create1")
def sys_epoll_create1(k, p, flags, *_):  # type: ignore[no-untyped-def]
    flags = s32(flags)
    if flags & ~O_CLOEXEC:
        raise SyscallError(EINVAL)
    return p.fds.install(EpollFile(flags), cloexec=bool(flags & O_CLOEXEC))


@syscall("epoll_ctl")
def sys_epoll_ctl(k, p, epfd, op, fd, event, *_):  # type: ignore[no-untyped-def]
    ep_any = p.fds.get(s32(epfd))  # EBADF first, as Linux
    target = p.fds.get(s32(fd))
    if not isinstance(ep_any, EpollFile):
        raise SyscallError(EINVAL)
    op = s32(op)
    events = data = 0
    if op != EPOLL_CTL_DEL:
        if not event:
            raise SyscallError(EFAULT)
        events, data = EVENT.unpack(p.mm.copy_in(event, EVENT.size))
        if events & EPOLLEXCLUSIVE and (events & EPOLLONESHOT or isinstance(target, EpollFile)):
            raise SyscallError(EINVAL)
    ep_any.prune()
    ep_any.ctl(op, s32(fd), target, events, data)
    return 0


def do_epoll_wait(k, p, epfd, events, maxevents, timeout_ns):  # type: ignore[no-untyped-def]
    ep = file_of_kind(p, epfd, EpollFile)
    maxevents = s32(maxevents)
    if maxevents <= 0 or maxevents > EP_MAX_EVENTS:
        raise SyscallError(EINVAL)
    p.mm.user_pages(events, 1, write=True)  # EFAULT before waiting, as Linux's access_ok
    ep.prune()

    def check(timed_out: bool) -> int | None:
        ep.prune()
        got = ep.ready(maxevents)
        if not got and not timed_out:
            return None
        if got:
            p.mm.copy_out(events, b"".join(EVENT.pack(ev, data) for ev, data in got))
        return len(got)

    return wait_ready(k, p, ep.files() + [ep], check, timeout_ns)


def _ms(timeout: int) -> int | None:
    t = s32(timeout)
    return None if t < 0 else t * 1_000_000


@syscall("epoll_wait")
def sys_epoll_wait(k, p, epfd, events, maxevents, timeout, *_):  # type: ignore[no-untyped-def]
    return do_epoll_wait(k, p, epfd, events, maxevents, _ms(timeout))


def _with_mask(p, sigmask: int, sigsetsize: int) -> None:  # type: ignore[no-untyped-def]
    if sigmask:
        if sigsetsize != 8:
            raise SyscallError(EINVAL)
        use_temporary_mask(p, sigmask)


@syscall("epoll_pwait")
def sys_epoll_pwait(k, p, epfd, events, maxevents, timeout, sigmask, sigsetsize):  # type: ignore[no-untyped-def]
    _with_mask(p, sigmask, sigsetsize)
    return do_epoll_wait(k, p, epfd, events, maxevents, _ms(timeout))


@syscall("epoll_pwait2")
def sys_epoll_pwait2(k, p, epfd, events, maxevents, timeout, sigmask, sigsetsize):  # type: ignore[no-untyped-def]
    ns = unpack_timespec(p.mm.copy_in(timeout, 16)) if timeout else None
    _with_mask(p, sigmask, sigsetsize)
    return do_epoll_wait(k, p, epfd, events, maxevents, ns)


SFD_CLOEXEC, SFD_NONBLOCK = O_CLOEXEC, O_NONBLOCK


def do_signalfd(k, p, fd, mask_ptr, size, flags):  # type: ignore[no-untyped-def]
    if size != 8 or flags & ~(SFD_CLOEXEC | SFD_NONBLOCK):
        raise SyscallError(EINVAL)
    mask = int.from_bytes(p.mm.copy_in(mask_ptr, 8), "little")
    fd = s32(fd)
    if fd != -1:  # a new mask for an existing signalfd
        f = file_of_kind(p, fd, SignalFile)
        f.mask = mask & ~UNBLOCKABLE
        return fd
    return p.fds.install(SignalFile(k, mask, flags), cloexec=bool(flags & SFD_CLOEXEC))


@syscall("signalfd")
def sys_signalfd(k, p, fd, mask, size, *_):  # type: ignore[no-untyped-def]
    return do_signalfd(k, p, fd, mask, size, 0)


@syscall("signalfd4")
def sys_signalfd4(k, p, fd, mask, size, flags, *_):  # type: ignore[no-untyped-def]
    return do_signalfd(k, p, fd, mask, size, s32(flags))
