"""What the syscalls share: reading their raw arguments (signed ints, paths, a directory
descriptor or AT_FDCWD, the ext2 inode a path or descriptor names, a pid) and calling the ext2
driver so that its errors become the syscall's errno."""
from __future__ import annotations

import stat as S
from typing import TYPE_CHECKING, Any

from guestkernel.errors import EINVAL, ENOTDIR, EPERM, ESRCH, SyscallError
from guestkernel.vfs.pseudo import PseudoDirFile
from guestkernel.vfs import DEV_DIR, DevDirFile, InodeFile

if TYPE_CHECKING:
    from guestkernel.kernel import Kernel
    from guestkernel.process import Process

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_REMOVEDIR = 0x200
AT_SYMLINK_FOLLOW = 0x400
AT_EMPTY_PATH = 0x1000


def s32(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x & 0x80000000 else x


def s64(x: int) -> int:
    x &= 0xFFFFFFFFFFFFFFFF
    return x - (1 << 64) if x & (1 << 63) else x


def path_arg(k: "Kernel", p: "Process", ptr: int) -> bytes:
    return p.mm.read_cstr(ptr, 4096)


def dir_node(k: "Kernel", p: "Process", dirfd: int) -> object:
    dirfd = s32(dirfd)
    if dirfd == AT_FDCWD:
        return p.cwd
    f = p.fds.get(dirfd)
    if isinstance(f, DevDirFile):
        return DEV_DIR
    if isinstance(f, PseudoDirFile):
        return f.node
    if not isinstance(f, InodeFile):
        raise SyscallError(ENOTDIR)
    if not S.S_ISDIR(k.fs.stat(f.ino).mode):
        raise SyscallError(ENOTDIR)
    return f.ino


def fs_call(fn, *args):  # type: ignore[no-untyped-def]
    """Call the ext2 driver, turning its FsError into the syscall's errno."""
    try:
        return fn(*args)
    except SyscallError:
        raise
    except Exception as e:
        err = getattr(e, "errno", None)
        if isinstance(err, int):
            raise SyscallError(err, str(e)) from None
        raise


def node_for(k: "Kernel", p: "Process", dirfd: int, path: bytes, follow: bool, empty_ok: bool = False) -> int:
    if not path and empty_ok:
        f = p.fds.get(s32(dirfd))
        if not isinstance(f, InodeFile):
            raise SyscallError(EPERM)
        return f.ino
    node = k.vfs.resolve(path, dir_node(k, p, dirfd), follow=follow)
    if not isinstance(node, int):
        raise SyscallError(EPERM)
    return node


def fd_ino(p: "Process", fd: int) -> int:
    f = p.fds.get(s32(fd))
    if not isinstance(f, InodeFile):
        raise SyscallError(EPERM)
    return f.ino


def process_arg(k: "Kernel", p: "Process", pid: int) -> "Process":
    """The process a pid argument names (0: the caller), or ESRCH."""
    q = p if pid == 0 else k.procs.get(pid)
    if q is None:
        raise SyscallError(ESRCH)
    return q


def file_of_kind(p: "Process", fd: int, cls: type) -> Any:
    """The open file of descriptor fd, which must be a `cls` (a timerfd, an epoll set): EBADF,
    else EINVAL, as Linux's fdget checks."""
    f = p.fds.get(s32(fd))
    if not isinstance(f, cls):
        raise SyscallError(EINVAL)
    return f
