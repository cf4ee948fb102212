"""Controlling an open descriptor: fcntl (descriptor flags, status flags, POSIX and OFD record
locks), flock, and ioctl (the console is no terminal)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from guestkernel import locks
from guestkernel.errors import EBADF, EINVAL, ENOTTY, SyscallError
from guestkernel.syscalls import syscall
from guestkernel.syscalls.args import s32
from guestkernel.vfs import O_APPEND, O_CLOEXEC, O_NONBLOCK, O_PATH, InodeFile, OpenFile, PipeEnd

if TYPE_CHECKING:
    from guestkernel.kernel import Kernel
    from guestkernel.process import Process

F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_GETLK, F_SETLK, F_SETLKW = 0, 1, 2, 3, 4, 5, 6, 7
F_DUPFD_CLOEXEC = 1030
F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38
FD_CLOEXEC = 1
SETFL_MASK = O_APPEND | O_NONBLOCK | 0o20000 | 0o40000 | 0o1000000  # + FASYNC, O_DIRECT, O_NOATIME


@syscall("fcntl")
def sys_fcntl(k, p, fd, cmd, arg, *_):  # type: ignore[no-untyped-def]
    fd = s32(fd)
    f = p.fds.get(fd)
    if cmd in (F_DUPFD, F_DUPFD_CLOEXEC):
        f.refs += 1
        return p.fds.install(f, cloexec=cmd == F_DUPFD_CLOEXEC, start=arg)
    if cmd == F_GETFD:
        return FD_CLOEXEC if fd in p.fds.cloexec else 0
    if cmd == F_SETFD:
        if arg & FD_CLOEXEC:
            p.fds.cloexec.add(fd)
        else:
            p.fds.cloexec.discard(fd)
        return 0
    if cmd == F_GETFL:
        return f.flags & ~O_CLOEXEC
    if cmd == F_SETFL:
        f.flags = (f.flags & ~SETFL_MASK) | (arg & SETFL_MASK)
        return 0
    if cmd in (F_GETLK, F_SETLK, F_SETLKW, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW):
        return record_lock(k, p, f, cmd, arg)
    if cmd in (1031, 1032):  # F_SETPIPE_SZ / F_GETPIPE_SZ
        return 65536
    raise SyscallError(EINVAL)


def record_lock(k: "Kernel", p: "Process", f: OpenFile, cmd: int, arg: int) -> int:
    """fcntl's POSIX (F_GETLK, F_SETLK, F_SETLKW) and OFD (F_OFD_*) record locks."""
    ofd = cmd in (F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW)
    if f.flags & O_PATH:
        raise SyscallError(EBADF)
    raw = p.mm.copy_in(arg, 32)
    size = f.stat().size if isinstance(f, InodeFile) else 0
    want, lpid, ltype = locks.parse_flock(raw, f, size)
    if ofd and lpid != 0:
        raise SyscallError(EINVAL)
    want.owner, want.pid = (f, -1) if ofd else (locks.tgid(p), locks.tgid(p))
    if cmd in (F_GETLK, F_OFD_GETLK):
        if ltype == locks.F_UNLCK:
            raise SyscallError(EINVAL)
        p.mm.copy_out(arg, locks.pack_flock(raw, k.locks.test(f, want)))
        return 0
    return k.locks.set(p, f, want, wait=cmd in (F_SETLKW, F_OFD_SETLKW), ofd=ofd)


@syscall("flock")
def sys_flock(k, p, fd, op, *_):  # type: ignore[no-untyped-def]
    """flock(2) in Linux's order: a LOCK_MAND request is ignored, a bad operation is EINVAL
    before the descriptor is looked at, an O_PATH descriptor can only unlock."""
    op = s32(op)
    if op & locks.LOCK_MAND:
        return 0
    if op & ~locks.LOCK_NB not in (locks.LOCK_SH, locks.LOCK_EX, locks.LOCK_UN):
        raise SyscallError(EINVAL)
    f = p.fds.get(s32(fd))
    if op & ~locks.LOCK_NB != locks.LOCK_UN and f.flags & O_PATH:
        raise SyscallError(EBADF)
    return k.locks.flock(p, f, op)


TCGETS, TIOCGWINSZ, TIOCGPGRP, TIOCSPGRP, FIONREAD = 0x5401, 0x5413, 0x540F, 0x5410, 0x541B


@syscall("ioctl")
def sys_ioctl(k, p, fd, req, arg, *_):  # type: ignore[no-untyped-def]
    f = p.fds.get(s32(fd))
    req &= 0xFFFFFFFF
    if req == FIONREAD and isinstance(f, PipeEnd):
        p.mm.copy_out(arg, f.pipe.count.to_bytes(4, "little"))
        return 0
    dev_ioctl = getattr(f, "ioctl", None)  # a device's own (loop devices, loop-control)
    if dev_ioctl is not None:
        return dev_ioctl(k, p, req, arg)
    # The console is not a terminal: programs see what they would see with output redirected.
    raise SyscallError(ENOTTY)
