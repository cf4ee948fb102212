"""Changing an inode's attributes: chmod, chown, and the times (utimensat, utimes, futimesat,
utime)."""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from guestkernel.syscalls import syscall
from guestkernel.syscalls.args import (AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, fd_ino, fs_call, node_for,
                                       path_arg, s32)

if TYPE_CHECKING:
    from guestkernel.kernel import Kernel
    from guestkernel.process import Process


@syscall("chmod")
def sys_chmod(k, p, path, mode, *_):  # type: ignore[no-untyped-def]
    fs_call(k.fs.chmod, node_for(k, p, AT_FDCWD, path_arg(k, p, path), True), mode & 0o7777)
    return 0


@syscall("fchmod")
def sys_fchmod(k, p, fd, mode, *_):  # type: ignore[no-untyped-def]
    fs_call(k.fs.chmod, fd_ino(p, fd), mode & 0o7777)
    return 0


@syscall("fchmodat", "fchmodat2")
def sys_fchmodat(k, p, dirfd, path, mode, flags=0, *_):  # type: ignore[no-untyped-def]
    fs_call(k.fs.chmod, node_for(k, p, dirfd, path_arg(k, p, path), not flags & AT_SYMLINK_NOFOLLOW), mode & 0o7777)
    return 0


def do_chown(k: "Kernel", ino: int, uid: int, gid: int) -> int:
    st = k.fs.stat(ino)
    uid = st.uid if s32(uid) == -1 else uid & 0xFFFFFFFF
    gid = st.gid if s32(gid) == -1 else gid & 0xFFFFFFFF
    fs_call(k.fs.chown, ino, uid, gid)
    return 0


@syscall("chown")
def sys_chown(k, p, path, uid, gid, *_):  # type: ignore[no-untyped-def]
    return do_chown(k, node_for(k, p, AT_FDCWD, path_arg(k, p, path), True), uid, gid)


@syscall("lchown")
def sys_lchown(k, p, path, uid, gid, *_):  # type: ignore[no-untyped-def]
    return do_chown(k, node_for(k, p, AT_FDCWD, path_arg(k, p, path), False), uid, gid)


@syscall("fchown")
def sys_fchown(k, p, fd, uid, gid, *_):  # type: ignore[no-untyped-def]
    return do_chown(k, fd_ino(p, fd), uid, gid)


@syscall("fchownat")
def sys_fchownat(k, p, dirfd, path, uid, gid, flags, *_):  # type: ignore[no-untyped-def]
    ino = node_for(k, p, dirfd, path_arg(k, p, path), not flags & AT_SYMLINK_NOFOLLOW, bool(flags & AT_EMPTY_PATH))
    return do_chown(k, ino, uid, gid)


UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


@syscall("utimensat")
def sys_utimensat(k, p, dirfd, path, times, flags, *_):  # type: ignore[no-untyped-def]
    if times and struct.unpack("<qqqq", p.mm.copy_in(times, 32))[1::2] == (UTIME_OMIT, UTIME_OMIT):
        return 0  # nothing to do: Linux does not even look the path up
    if path:
        ino = node_for(k, p, dirfd, path_arg(k, p, path), not flags & AT_SYMLINK_NOFOLLOW)
    else:
        ino = fd_ino(p, dirfd)
    now = k.clock.now_s()
    if times:
        raw = p.mm.copy_in(times, 32)
        a_s, a_ns, m_s, m_ns = struct.unpack("<qqqq", raw)
        atime = None if a_ns == UTIME_OMIT else now if a_ns == UTIME_NOW else a_s
        mtime = None if m_ns == UTIME_OMIT else now if m_ns == UTIME_NOW else m_s
    else:
        atime = mtime = now
    fs_call(k.fs.utimes, ino, atime, mtime)
    return 0


def do_utimes(k: "Kernel", p: "Process", dirfd: int, path: int, times: int) -> int:
    ino = node_for(k, p, dirfd, path_arg(k, p, path), True)
    if times:
        a_s, _a_us, m_s, _m_us = struct.unpack("<qqqq", p.mm.copy_in(times, 32))
    else:
        a_s = m_s = k.clock.now_s()
    fs_call(k.fs.utimes, ino, a_s, m_s)
    return 0


@syscall("utimes")
def sys_utimes(k, p, path, times, *_):  # type: ignore[no-untyped-def]
    return do_utimes(k, p, AT_FDCWD, path, times)


@syscall("futimesat")
def sys_futimesat(k, p, dirfd, path, times, *_):  # type: ignore[no-untyped-def]
    return do_utimes(k, p, dirfd, path, times)


@syscall("utime")
def sys_utime(k, p, path, times, *_):  # type: ignore[no-untyped-def]
    ino = node_for(k, p, AT_FDCWD, path_arg(k, p, path), True)
    if times:
        a, m = struct.unpack("<qq", p.mm.copy_in(times, 16))
    else:
        a = m = k.clock.now_s()
    fs_call(k.fs.utimes, ino, a, m)
    return 0
