"""Names: mkdir, mknod, unlink/rmdir, rename/renameat2, link, symlink and readlink, with Linux's
checks in Linux's order (fs/namei.c) before the ext2 driver is asked."""
from __future__ import annotations

import stat as S
from typing import TYPE_CHECKING

from guestkernel.errors import EEXIST, EINVAL, EISDIR, ENOENT, ENOTDIR, ENOTEMPTY, EPERM, EXDEV, SyscallError
from guestkernel.syscalls import syscall
from guestkernel.syscalls.args import AT_FDCWD, AT_REMOVEDIR, AT_SYMLINK_FOLLOW, dir_node, fs_call, path_arg, s64
from guestkernel.vfs import alias_fd

if TYPE_CHECKING:
    from guestkernel.kernel import Kernel
    from guestkernel.process import Process


def do_mkdir(k: "Kernel", p: "Process", dirfd: int, path: bytes, mode: int) -> int:
    parent, name = k.vfs.resolve_parent(path, dir_node(k, p, dirfd), keep_slash=True)
    if name in (b".", b".."):
        raise SyscallError(EEXIST)
    if not isinstance(parent, int):
        raise SyscallError(EPERM)
    k.on_dir_change(p)
    mode &= 0o1777 & ~p.umask  # mkdir(2) never sets set-user-ID; set-group-ID comes from the parent
    mode |= k.fs.stat(parent).mode & S.S_ISGID
    fs_call(k.fs.mkdir, parent, name, S.S_IFDIR | mode, 0, 0)
    return 0


@syscall("mkdir")
def sys_mkdir(k, p, path, mode, *_):  # type: ignore[no-untyped-def]
    return do_mkdir(k, p, AT_FDCWD, path_arg(k, p, path), mode)


@syscall("mkdirat")
def sys_mkdirat(k, p, dirfd, path, mode, *_):  # type: ignore[no-untyped-def]
    return do_mkdir(k, p, dirfd, path_arg(k, p, path), mode)


@syscall("mknod", "mknodat")
def sys_mknod(k, p, *args):  # type: ignore[no-untyped-def]
    raise SyscallError(EPERM)


def do_unlink(k: "Kernel", p: "Process", dirfd: int, path: bytes, flags: int) -> int:
    parent, name = k.vfs.resolve_parent(path, dir_node(k, p, dirfd), keep_slash=True)
    if not isinstance(parent, int):
        raise SyscallError(EPERM)
    if flags & AT_REMOVEDIR:
        if name == b".":
            raise SyscallError(EINVAL)
        if name == b"..":
            raise SyscallError(ENOTEMPTY)
        k.on_dir_change(p)
        fs_call(k.fs.rmdir, parent, name)
        return 0
    if name in (b".", b".."):
        raise SyscallError(EISDIR)
    if path.endswith(b"/"):  # the name itself (a symlink is not followed) must be a directory
        raise SyscallError(EISDIR if k.vfs.is_dir(k.vfs.lookup(parent, name)) else ENOTDIR)
    if k.vfs.kernel_files:
        k.vfs.check_removable(k.vfs.lookup(parent, name))
    k.on_dir_change(p)
    ino = fs_call(k.fs.unlink, parent, name)
    k.vfs.maybe_release(ino)
    return 0


@syscall("unlink")
def sys_unlink(k, p, path, *_):  # type: ignore[no-untyped-def]
    return do_unlink(k, p, AT_FDCWD, path_arg(k, p, path), 0)


@syscall("rmdir")
def sys_rmdir(k, p, path, *_):  # type: ignore[no-untyped-def]
    return do_unlink(k, p, AT_FDCWD, path_arg(k, p, path), AT_REMOVEDIR)


@syscall("unlinkat")
def sys_unlinkat(k, p, dirfd, path, flags, *_):  # type: ignore[no-untyped-def]
    return do_unlink(k, p, dirfd, path_arg(k, p, path), flags)


RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT = 1, 2, 4


def in_chain(k: "Kernel", anc: int, ino: int) -> bool:
    """Is directory anc on the '..' chain from directory ino (itself included) to the root?"""
    for _ in range(4096):
        if ino == anc:
            return True
        parent = k.fs.lookup(ino, b"..")
        if parent == ino:  # a root: / or a mounted file system's (rename stays within one)
            return False
        ino = parent
    return False


def do_rename(k: "Kernel", p: "Process", olddirfd: int, old: bytes, newdirfd: int, new: bytes, flags: int = 0) -> int:
    """rename/renameat2 with Linux's checks in Linux's order (fs/namei.c do_renameat2, vfs_rename)."""
    if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT) or \
            flags & RENAME_NOREPLACE and flags & RENAME_EXCHANGE:
        raise SyscallError(EINVAL)
    if flags & RENAME_WHITEOUT:
        raise SyscallError(EINVAL)  # no whiteouts on ext2 (no character devices to make them)
    op, on = k.vfs.resolve_parent(old, dir_node(k, p, olddirfd), keep_slash=True)
    np_, nn = k.vfs.resolve_parent(new, dir_node(k, p, newdirfd), keep_slash=True)
    if not isinstance(op, int) or not isinstance(np_, int):
        raise SyscallError(EXDEV)
    from guestkernel.errors import EBUSY

    if on in (b".", b".."):
        raise SyscallError(EBUSY)
    if nn in (b".", b".."):
        raise SyscallError(EEXIST if flags & RENAME_NOREPLACE else EBUSY)
    src = k.vfs.lookup(op, on)
    try:
        tgt = k.vfs.lookup(np_, nn)
    except SyscallError as e:
        if e.errno != ENOENT:
            raise
        tgt = None
    if not isinstance(src, int) or not (tgt is None or isinstance(tgt, int)):
        raise SyscallError(EXDEV)
    src_dir = S.S_ISDIR(k.fs.stat(src).mode)
    tgt_dir = tgt is not None and S.S_ISDIR(k.fs.stat(tgt).mode)
    if flags & RENAME_NOREPLACE and tgt is not None:
        raise SyscallError(EEXIST)
    if flags & RENAME_EXCHANGE:
        if tgt is None:
            raise SyscallError(ENOENT)
        if not tgt_dir and new.endswith(b"/"):
            raise SyscallError(ENOTDIR)
    if not src_dir and (old.endswith(b"/") or not flags & RENAME_EXCHANGE and new.endswith(b"/")):
        raise SyscallError(ENOTDIR)
    if op != np_:
        if src_dir and in_chain(k, src, np_):
            raise SyscallError(EINVAL)  # the source is an ancestor of the target
        if tgt_dir and in_chain(k, tgt, op):  # the target is an ancestor of the source
            raise SyscallError(EINVAL if flags & RENAME_EXCHANGE else ENOTEMPTY)
    if tgt == src:
        return 0
    k.vfs.check_removable(src)
    if tgt is not None:
        k.vfs.check_removable(tgt)
    if tgt is not None and not flags & RENAME_EXCHANGE:
        if src_dir and not tgt_dir:
            raise SyscallError(ENOTDIR)
        if tgt_dir and not src_dir:
            raise SyscallError(EISDIR)
    k.on_dir_change(p)
    if flags & RENAME_EXCHANGE:
        fs_call(k.fs.exchange, op, on, np_, nn)
        return 0
    victim = fs_call(k.fs.rename, op, on, np_, nn)
    if victim:
        k.vfs.maybe_release(victim)  # a replaced file lives on while it is open
    return 0


@syscall("rename")
def sys_rename(k, p, old, new, *_):  # type: ignore[no-untyped-def]
    return do_rename(k, p, AT_FDCWD, path_arg(k, p, old), AT_FDCWD, path_arg(k, p, new))


@syscall("renameat")
def sys_renameat(k, p, od, old, nd, new, *_):  # type: ignore[no-untyped-def]
    return do_rename(k, p, od, path_arg(k, p, old), nd, path_arg(k, p, new))


@syscall("renameat2")
def sys_renameat2(k, p, od, old, nd, new, flags, *_):  # type: ignore[no-untyped-def]
    return do_rename(k, p, od, path_arg(k, p, old), nd, path_arg(k, p, new), flags)


def new_name(k: "Kernel", p: "Process", nd: int, new: bytes) -> tuple[object, bytes]:
    """The parent and name a link or symlink creates (Linux's filename_create): an existing
    name is EEXIST; a trailing slash on a name that does not exist asks for a directory: ENOENT."""
    parent, name = k.vfs.resolve_parent(new, dir_node(k, p, nd), keep_slash=True)
    if name in (b".", b".."):
        raise SyscallError(EEXIST)
    try:
        k.vfs.lookup(parent, name)
    except SyscallError as e:
        if e.errno != ENOENT:
            raise
        if new.endswith(b"/"):
            raise
        return parent, name
    raise SyscallError(EEXIST)


def do_link(k: "Kernel", p: "Process", od: int, old: bytes, nd: int, new: bytes, flags: int) -> int:
    src = k.vfs.resolve(old, dir_node(k, p, od), follow=bool(flags & AT_SYMLINK_FOLLOW))
    parent, name = new_name(k, p, nd, new)
    if not isinstance(src, int) or not isinstance(parent, int):
        raise SyscallError(EXDEV)
    if S.S_ISDIR(k.fs.stat(src).mode):
        raise SyscallError(EPERM)
    k.on_dir_change(p)
    fs_call(k.fs.link, parent, name, src)
    return 0


@syscall("link")
def sys_link(k, p, old, new, *_):  # type: ignore[no-untyped-def]
    return do_link(k, p, AT_FDCWD, path_arg(k, p, old), AT_FDCWD, path_arg(k, p, new), 0)


@syscall("linkat")
def sys_linkat(k, p, od, old, nd, new, flags, *_):  # type: ignore[no-untyped-def]
    return do_link(k, p, od, path_arg(k, p, old), nd, path_arg(k, p, new), flags)


def do_symlink(k: "Kernel", p: "Process", target: bytes, nd: int, new: bytes) -> int:
    parent, name = new_name(k, p, nd, new)
    if not isinstance(parent, int):
        raise SyscallError(EPERM)
    if not target:
        raise SyscallError(ENOENT)
    k.on_dir_change(p)
    fs_call(k.fs.symlink, parent, name, target, 0, 0)
    return 0


@syscall("symlink")
def sys_symlink(k, p, target, new, *_):  # type: ignore[no-untyped-def]
    return do_symlink(k, p, path_arg(k, p, target), AT_FDCWD, path_arg(k, p, new))


@syscall("symlinkat")
def sys_symlinkat(k, p, target, nd, new, *_):  # type: ignore[no-untyped-def]
    return do_symlink(k, p, path_arg(k, p, target), nd, path_arg(k, p, new))


def do_readlink(k: "Kernel", p: "Process", dirfd: int, path: bytes, buf: int, size: int) -> int:
    if s64(size) <= 0:
        raise SyscallError(EINVAL)
    node = k.vfs.resolve(path, dir_node(k, p, dirfd), follow=False)
    fd = alias_fd(node)
    if fd is not None:
        target = b"/proc/self/fd/" + str(fd).encode()
    elif not k.vfs.is_symlink(node):
        raise SyscallError(EINVAL)
    else:
        target = fs_call(k.vfs.follow, node)
    target = target[:size]
    p.mm.copy_out(buf, target)
    return len(target)


@syscall("readlink")
def sys_readlink(k, p, path, buf, size, *_):  # type: ignore[no-untyped-def]
    return do_readlink(k, p, AT_FDCWD, path_arg(k, p, path), buf, size)


@syscall("readlinkat")
def sys_readlinkat(k, p, dirfd, path, buf, size, *_):  # type: ignore[no-untyped-def]
    return do_readlink(k, p, dirfd, path_arg(k, p, path), buf, size)
