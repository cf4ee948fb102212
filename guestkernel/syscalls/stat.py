"""The stat family: stat, lstat, fstat, newfstatat, statx, statfs, fstatfs, and access/faccessat
(which look at the same attributes)."""
from __future__ import annotations

import stat as S
import struct
from typing import TYPE_CHECKING

from guestkernel.errors import ENOENT, SyscallError
from guestkernel.syscalls import syscall
from guestkernel.syscalls.args import AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, dir_node, path_arg, s32
from guestkernel.vfs import Stat, alias_fd

if TYPE_CHECKING:
    from guestkernel.kernel import Kernel
    from guestkernel.process import Process


def pack_stat(st: Stat) -> bytes:
    return struct.pack("<QQQIIIIQqqqqqqqqq24x", st.dev, st.ino, st.nlink, st.mode, st.uid, st.gid, 0, st.rdev,
                       st.size, st.blksize, st.blocks, st.atime, 0, st.mtime, 0, st.ctime, 0)


def pack_statx(st: Stat, mask: int) -> bytes:
    ts = lambda t: struct.pack("<qI4x", t, 0)  # noqa: E731
    head = struct.pack("<IIQIIIH2xQQQQ", 0x7FF, st.blksize, 0, st.nlink, st.uid, st.gid, st.mode, st.ino, st.size,
                       st.blocks, 0)
    times = ts(st.atime) + ts(0) + ts(st.ctime) + ts(st.mtime)
    devs = struct.pack("<IIII", (st.rdev >> 8) & 0xFFF, st.rdev & 0xFF, (st.dev >> 8) & 0xFFF, st.dev & 0xFF)
    return (head + times + devs).ljust(256, b"\0")


def stat_path(k: "Kernel", p: "Process", dirfd: int, path: bytes, follow: bool, empty_ok: bool) -> Stat:
    if not path:
        if not empty_ok:
            raise SyscallError(ENOENT)
        if s32(dirfd) == AT_FDCWD:
            return k.vfs.stat_node(p.cwd)
        return p.fds.get(s32(dirfd)).stat()
    node = k.vfs.resolve(path, dir_node(k, p, dirfd), follow=follow)
    fd = alias_fd(node)
    if fd is not None:  # /dev/stdout etc: the descriptor it names
        return p.fds.get(fd).stat()
    return k.vfs.stat_node(node)


@syscall("stat")
def sys_stat(k, p, path, buf, *_):  # type: ignore[no-untyped-def]
    p.mm.copy_out(buf, pack_stat(stat_path(k, p, AT_FDCWD, path_arg(k, p, path), True, False)))
    return 0


@syscall("lstat")
def sys_lstat(k, p, path, buf, *_):  # type: ignore[no-untyped-def]
    p.mm.copy_out(buf, pack_stat(stat_path(k, p, AT_FDCWD, path_arg(k, p, path), False, False)))
    return 0


@syscall("fstat")
def sys_fstat(k, p, fd, buf, *_):  # type: ignore[no-untyped-def]
    p.mm.copy_out(buf, pack_stat(p.fds.get(s32(fd)).stat()))
    return 0


@syscall("newfstatat")
def sys_newfstatat(k, p, dirfd, path, buf, flags, *_):  # type: ignore[no-untyped-def]
    st = stat_path(k, p, dirfd, path_arg(k, p, path), not flags & AT_SYMLINK_NOFOLLOW, bool(flags & AT_EMPTY_PATH))
    p.mm.copy_out(buf, pack_stat(st))
    return 0


@syscall("statx")
def sys_statx(k, p, dirfd, path, flags, mask, buf, *_):  # type: ignore[no-untyped-def]
    st = stat_path(k, p, dirfd, path_arg(k, p, path), not flags & AT_SYMLINK_NOFOLLOW, bool(flags & AT_EMPTY_PATH))
    p.mm.copy_out(buf, pack_statx(st, mask))
    return 0


def pack_statfs(k: "Kernel", node: object) -> bytes:
    """The statfs of the ext2 mount a node is on (the root's for the kernel's own nodes); a
    mounted file system's f_fsid is its device number, so tools tell the mounts apart."""
    on = node if isinstance(node, int) else k.fs.root_ino
    sf = k.fs.statfs(on)
    m = k.fs.of(on)
    dev = m.rdev if m.mid else 0
    flags = 1 if m.read_only else 0  # ST_RDONLY
    return struct.pack("<qqQQQQQiiqqq32x", 0xEF53, sf["f_bsize"], sf["f_blocks"], sf["f_bfree"], sf["f_bavail"],
                       sf["f_files"], sf["f_ffree"], dev, 0, sf["f_namelen"], sf["f_bsize"], flags)


@syscall("statfs")
def sys_statfs(k, p, path, buf, *_):  # type: ignore[no-untyped-def]
    node = k.vfs.resolve(path_arg(k, p, path), p.cwd)
    p.mm.copy_out(buf, pack_statfs(k, node))
    return 0


@syscall("fstatfs")
def sys_fstatfs(k, p, fd, buf, *_):  # type: ignore[no-untyped-def]
    f = p.fds.get(s32(fd))
    p.mm.copy_out(buf, pack_statfs(k, getattr(f, "ino", None)))
    return 0


def do_access(k: "Kernel", p: "Process", dirfd: int, path: bytes, mode: int, flags: int) -> int:
    st = stat_path(k, p, dirfd, path, not flags & AT_SYMLINK_NOFOLLOW, bool(flags & AT_EMPTY_PATH))
    if mode & 1 and not st.mode & 0o111 and not S.S_ISDIR(st.mode):
        from guestkernel.errors import EACCES

        raise SyscallError(EACCES)  # root may execute only what someone may execute
    return 0


@syscall("access")
def sys_access(k, p, path, mode, *_):  # type: ignore[no-untyped-def]
    return do_access(k, p, AT_FDCWD, path_arg(k, p, path), mode, 0)


@syscall("faccessat", "faccessat2")
def sys_faccessat(k, p, dirfd, path, mode, flags, *_):  # type: ignore[no-untyped-def]
    return do_access(k, p, dirfd, path_arg(k, p, path), mode, flags)
