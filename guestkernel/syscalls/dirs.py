"""Directories as a process sees them: getdents64 (listing an open directory), getcwd, chdir and
fchdir."""
from __future__ import annotations

import stat as S
import struct
from guestkernel.errors import EINVAL, ENOENT, ENOTDIR, ERANGE, SyscallError
from guestkernel.syscalls import syscall
from guestkernel.syscalls.args import dir_node, path_arg, s32
from guestkernel.vfs.pseudo import PseudoDirFile
from guestkernel.vfs import DevDirFile, InodeFile


@syscall("getdents64")
def sys_getdents64(k, p, fd, buf, count, *_):  # type: ignore[no-untyped-def]
    f = p.fds.get(s32(fd))
    if not isinstance(f, (InodeFile, DevDirFile, PseudoDirFile)):
        raise SyscallError(ENOTDIR)
    if isinstance(f, InodeFile) and not S.S_ISDIR(k.fs.stat(f.ino).mode):
        raise SyscallError(ENOTDIR)
    if isinstance(f, InodeFile) and k.fs.stat(f.ino).nlink == 0:
        raise SyscallError(ENOENT)  # a removed directory, still open
    if isinstance(f, InodeFile):
        k.vfs.relatime(f.ino, k.fs.stat(f.ino))  # every call, as Linux's iterate_dir
    ents, end = k.vfs.readdir(f, f.offset)
    out = bytearray()
    for i, (_pos, name, ino, dtype) in enumerate(ents):
        reclen = (19 + len(name) + 1 + 7) & ~7
        if len(out) + reclen > count:
            if not out:
                raise SyscallError(EINVAL)  # not even one entry fits
            end = ents[i][0]
            break
        d_off = ents[i + 1][0] if i + 1 < len(ents) else end  # where the next call starts
        out += struct.pack("<QqHB", ino, d_off, reclen, dtype) + name + b"\0" * (reclen - 19 - len(name))
    p.mm.copy_out(buf, bytes(out))
    f.offset = end
    return len(out)


@syscall("getcwd")
def sys_getcwd(k, p, buf, size, *_):  # type: ignore[no-untyped-def]
    path = k.vfs.node_path(p.cwd) + b"\0"
    if len(path) > size:
        raise SyscallError(ERANGE)
    p.mm.copy_out(buf, path)
    return len(path)


@syscall("chdir")
def sys_chdir(k, p, path, *_):  # type: ignore[no-untyped-def]
    node = k.vfs.resolve(path_arg(k, p, path), p.cwd)
    if not k.vfs.is_dir(node):
        raise SyscallError(ENOTDIR)
    p.cwd = node
    return 0


@syscall("fchdir")
def sys_fchdir(k, p, fd, *_):  # type: ignore[no-untyped-def]
    p.cwd = dir_node(k, p, fd)
    return 0
