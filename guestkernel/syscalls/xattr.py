"""Extended attributes: the ext2 driver has none (as a file system mounted without user_xattr).
The file must exist; reading or changing an attribute is EOPNOTSUPP, listing finds none."""
from __future__ import annotations

from guestkernel.errors import EOPNOTSUPP, SyscallError
from guestkernel.syscalls import syscall
from guestkernel.syscalls.args import path_arg, s32


def _xattr_target(k, p, path, follow: bool):  # type: ignore[no-untyped-def]
    return k.vfs.resolve(path_arg(k, p, path), p.cwd, follow=follow)


@syscall("getxattr")
def sys_getxattr(k, p, path, *_):  # type: ignore[no-untyped-def]
    _xattr_target(k, p, path, True)
    raise SyscallError(EOPNOTSUPP)


@syscall("lgetxattr")
def sys_lgetxattr(k, p, path, *_):  # type: ignore[no-untyped-def]
    _xattr_target(k, p, path, False)
    raise SyscallError(EOPNOTSUPP)


@syscall("fgetxattr")
def sys_fgetxattr(k, p, fd, *_):  # type: ignore[no-untyped-def]
    p.fds.get(s32(fd))
    raise SyscallError(EOPNOTSUPP)


@syscall("listxattr")
def sys_listxattr(k, p, path, *_):  # type: ignore[no-untyped-def]
    _xattr_target(k, p, path, True)
    return 0


@syscall("llistxattr")
def sys_llistxattr(k, p, path, *_):  # type: ignore[no-untyped-def]
    _xattr_target(k, p, path, False)
    return 0


@syscall("flistxattr")
def sys_flistxattr(k, p, fd, *_):  # type: ignore[no-untyped-def]
    p.fds.get(s32(fd))
    return 0
