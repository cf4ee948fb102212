"""Errors the kernel returns to the guest (Linux errno values) and the signals it raises."""
from __future__ import annotations

import errno as _errno
from typing import Callable

EPERM = _errno.EPERM
ENOENT = _errno.ENOENT
ESRCH = _errno.ESRCH
EINTR = _errno.EINTR
EIO = _errno.EIO
ENXIO = _errno.ENXIO
E2BIG = _errno.E2BIG
ENOEXEC = _errno.ENOEXEC
EBADF = _errno.EBADF
ECHILD = _errno.ECHILD
EAGAIN = _errno.EAGAIN
ENOMEM = _errno.ENOMEM
EACCES = _errno.EACCES
EFAULT = _errno.EFAULT
EBUSY = _errno.EBUSY
ENOTBLK = _errno.ENOTBLK
EEXIST = _errno.EEXIST
EXDEV = _errno.EXDEV
ENODEV = _errno.ENODEV
ENOTDIR = _errno.ENOTDIR
EISDIR = _errno.EISDIR
EINVAL = _errno.EINVAL
ENFILE = _errno.ENFILE
EMFILE = _errno.EMFILE
ENOTTY = _errno.ENOTTY
ETXTBSY = _errno.ETXTBSY
EFBIG = _errno.EFBIG
ENOSPC = _errno.ENOSPC
ESPIPE = _errno.ESPIPE
EROFS = _errno.EROFS
EMLINK = _errno.EMLINK
EPIPE = _errno.EPIPE
ERANGE = _errno.ERANGE
ENAMETOOLONG = _errno.ENAMETOOLONG
ENOSYS = _errno.ENOSYS
ENOTEMPTY = _errno.ENOTEMPTY
ELOOP = _errno.ELOOP
ENOTSUP = _errno.EOPNOTSUPP
EOPNOTSUPP = _errno.EOPNOTSUPP
EDEADLK = _errno.EDEADLK
EIDRM = _errno.EIDRM
ETIMEDOUT = _errno.ETIMEDOUT
ENOTSOCK = _errno.ENOTSOCK
EDESTADDRREQ = _errno.EDESTADDRREQ
EMSGSIZE = _errno.EMSGSIZE
EPROTOTYPE = _errno.EPROTOTYPE
ENOPROTOOPT = _errno.ENOPROTOOPT
EPROTONOSUPPORT = _errno.EPROTONOSUPPORT
ESOCKTNOSUPPORT = _errno.ESOCKTNOSUPPORT
EAFNOSUPPORT = _errno.EAFNOSUPPORT
EADDRINUSE = _errno.EADDRINUSE
ECONNRESET = _errno.ECONNRESET
EISCONN = _errno.EISCONN
ENOTCONN = _errno.ENOTCONN
ECONNREFUSED = _errno.ECONNREFUSED
EADDRNOTAVAIL = _errno.EADDRNOTAVAIL
ENETUNREACH = _errno.ENETUNREACH


class SyscallError(Exception):
    """Raised by kernel code to fail the current syscall with -errno."""

    def __init__(self, errno: int, msg: str = "") -> None:
        super().__init__(msg or _errno.errorcode.get(errno, str(errno)))
        self.errno = errno


class Block(Exception):
    """Raised by a syscall that must wait: the kernel parks the call and retries it when `waitq`
    is woken. `retry`, if given, is what to call then instead of the whole syscall again (a call
    that already did part of its work continues where it stopped)."""

    def __init__(self, waitq: object, retry: "Callable[[], int] | None" = None, done: int = 0, takes: int = 0,
                 deadline: int | None = None, interrupted: "Callable[[], None] | None" = None) -> None:
        super().__init__("block")
        self.waitq = waitq
        self.retry = retry
        self.done = done  # bytes already transferred by the blocked call (a checkpoint needs it)
        self.takes = takes  # signals the call itself takes when they come (sigtimedwait): they wake, not interrupt
        self.deadline = deadline  # uptime ns when a sleep ends (a checkpoint keeps the time left)
        self.interrupted = interrupted  # what the call does when a signal ends it with EINTR (nanosleep's rem)
