"""Descriptors: open/openat/creat, close, dup/dup2/dup3, pipe/pipe2, and umask (what open and
mkdir take away from a mode)."""
from __future__ import annotations

import stat as S
import struct
from typing import TYPE_CHECKING

from guestkernel.errors import EBADF, EEXIST, EINVAL, EISDIR, ELOOP, ENOENT, ENOTDIR, EPERM, SyscallError
from guestkernel.syscalls import syscall
from guestkernel.syscalls.args import AT_FDCWD, dir_node, fs_call, path_arg, s32
from guestkernel.vfs import (MAX_SYMLINKS, O_CLOEXEC, O_CREAT, O_DIRECTORY, O_EXCL, O_LARGEFILE, O_NOCTTY, O_NOFOLLOW,
                             O_NONBLOCK, O_PATH, O_TRUNC, Pipe, PipeEnd, alias_fd)

if TYPE_CHECKING:
    from guestkernel.kernel import Kernel
    from guestkernel.process import Process


def do_open(k: "Kernel", p: "Process", dirfd: int, path: bytes, flags: int, mode: int) -> int:
    if flags & O_CREAT and flags & O_DIRECTORY:
        raise SyscallError(EINVAL)  # Linux >= 6.4: it once made regular files
    base = dir_node(k, p, dirfd)
    vfs = k.vfs
    cloexec = bool(flags & O_CLOEXEC)
    if flags & O_CREAT:
        parent, name = vfs.resolve_parent(path, base, keep_slash=True)
        if path.endswith(b"/"):
            raise SyscallError(EISDIR)  # asks to create a directory
        node = None
        for depth in range(MAX_SYMLINKS + 1):
            try:
                node = vfs.lookup(parent, name) if name not in (b".", b"") else parent
            except SyscallError as e:
                if e.errno != ENOENT:
                    raise
                node = None
                break
            if flags & O_EXCL:
                raise SyscallError(EEXIST)
            if not (isinstance(node, int) and S.S_ISLNK(k.fs.stat(node).mode)):
                break
            if flags & O_NOFOLLOW or depth == MAX_SYMLINKS:
                raise SyscallError(ELOOP)
            # Follow the link; a dangling one makes the file it names (as Linux does).
            target = fs_call(k.fs.readlink, node)
            vfs.relatime(node, k.fs.stat(node))
            parent, name = vfs.resolve_parent(target, parent, keep_slash=True)
            if target.endswith(b"/"):
                raise SyscallError(EISDIR)
        if node is None:
            if not isinstance(parent, int):
                raise SyscallError(EPERM)
            node = fs_call(k.fs.create, parent, name, S.S_IFREG | (mode & 0o7777 & ~p.umask), 0, 0)
            flags &= ~O_TRUNC
        if isinstance(node, int) and S.S_ISDIR(k.fs.stat(node).mode):
            raise SyscallError(EISDIR)
    else:
        node = vfs.resolve(path, base, follow=not flags & O_NOFOLLOW)
        if flags & O_NOFOLLOW and isinstance(node, int) and S.S_ISLNK(k.fs.stat(node).mode) and not flags & O_PATH:
            raise SyscallError(ENOTDIR if flags & O_DIRECTORY else ELOOP)  # (Linux checks O_DIRECTORY first)
    fd = alias_fd(node)
    if fd is not None:  # /dev/stdin, /dev/stdout, /dev/stderr: dup of that descriptor
        f = p.fds.get(fd)
        f.refs += 1
        return p.fds.install(f, cloexec=cloexec)
    f = fs_call(vfs.open_node, node, flags, path)
    # What F_GETFL shows: open-time flags are gone, and 64-bit opens are always large-file.
    f.flags = (f.flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC)) | O_LARGEFILE
    return p.fds.install(f, cloexec=cloexec)


@syscall("open")
def sys_open(k, p, path, flags, mode, *_):  # type: ignore[no-untyped-def]
    return do_open(k, p, AT_FDCWD, path_arg(k, p, path), s32(flags), mode)


@syscall("openat")
def sys_openat(k, p, dirfd, path, flags, mode, *_):  # type: ignore[no-untyped-def]
    return do_open(k, p, dirfd, path_arg(k, p, path), s32(flags), mode)


@syscall("creat")
def sys_creat(k, p, path, mode, *_):  # type: ignore[no-untyped-def]
    return do_open(k, p, AT_FDCWD, path_arg(k, p, path), 0o1 | O_CREAT | O_TRUNC, mode)


@syscall("close")
def sys_close(k, p, fd, *_):  # type: ignore[no-untyped-def]
    k.close_fd(p, s32(fd))
    return 0


@syscall("close_range")
def sys_close_range(k, p, first, last, flags, *_):  # type: ignore[no-untyped-def]
    for fd in sorted(p.fds.fds):
        if first <= fd <= last:
            if flags & 4:  # CLOSE_RANGE_CLOEXEC
                p.fds.cloexec.add(fd)
            else:
                k.close_fd(p, fd)
    return 0


@syscall("dup")
def sys_dup(k, p, fd, *_):  # type: ignore[no-untyped-def]
    f = p.fds.get(s32(fd))
    f.refs += 1
    return p.fds.install(f)


def do_dup3(k: "Kernel", p: "Process", old: int, new: int, flags: int) -> int:
    old, new = s32(old), s32(new)
    f = p.fds.get(old)
    if new < 0 or new >= 1024:
        raise SyscallError(EBADF)
    if old == new:
        return new
    if new in p.fds.fds:
        k.close_fd(p, new)
    f.refs += 1
    return p.fds.install(f, new, cloexec=bool(flags & O_CLOEXEC))


@syscall("dup2")
def sys_dup2(k, p, old, new, *_):  # type: ignore[no-untyped-def]
    if s32(old) == s32(new):
        p.fds.get(s32(old))
        return s32(new)
    return do_dup3(k, p, old, new, 0)


@syscall("dup3")
def sys_dup3(k, p, old, new, flags, *_):  # type: ignore[no-untyped-def]
    if s32(old) == s32(new) or flags & ~O_CLOEXEC:
        raise SyscallError(EINVAL)
    return do_dup3(k, p, old, new, flags)


def do_pipe(k: "Kernel", p: "Process", fds_ptr: int, flags: int) -> int:
    pipe = Pipe("pipe", k.frames, next(k.pipe_serials), k.slab)
    r = PipeEnd(pipe, False, flags & O_NONBLOCK)
    w = PipeEnd(pipe, True, flags & O_NONBLOCK)
    cloexec = bool(flags & O_CLOEXEC)
    rfd = p.fds.install(r, cloexec=cloexec)
    wfd = p.fds.install(w, cloexec=cloexec)
    try:
        p.mm.copy_out(fds_ptr, struct.pack("<ii", rfd, wfd))
    except SyscallError:
        k.close_fd(p, rfd)
        k.close_fd(p, wfd)
        raise
    return 0


@syscall("pipe")
def sys_pipe(k, p, fds_ptr, *_):  # type: ignore[no-untyped-def]
    return do_pipe(k, p, fds_ptr, 0)


@syscall("pipe2")
def sys_pipe2(k, p, fds_ptr, flags, *_):  # type: ignore[no-untyped-def]
    return do_pipe(k, p, fds_ptr, flags)


@syscall("umask")
def sys_umask(k, p, mask, *_):  # type: ignore[no-untyped-def]
    old = p.umask
    p.umask = mask & 0o777
    return old
