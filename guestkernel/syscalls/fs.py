"""File and directory syscalls: open/read/write/close, the stat family, directories, links,
pipes, descriptors and fcntl, over the VFS."""
from __future__ import annotations

import stat as S
import struct
from typing import TYPE_CHECKING

from hw.clock import COPY_NS_PER_KIB
from guestkernel.errors import Block
from guestkernel.mm import TASK_SIZE
from guestkernel.errors import (EBADF, EEXIST, ELOOP, EOPNOTSUPP, EFAULT, EINVAL, EISDIR, ENOENT, ENOTDIR, ENOTEMPTY, ENOTTY, EPERM,
                                EPIPE, ERANGE, EXDEV, EFBIG, ENODEV, ESPIPE, SyscallError)
from guestkernel.syscalls import syscall
from guestkernel.vfs import (DEV_DIR, MAX_SYMLINKS, O_APPEND, O_CLOEXEC, O_CREAT, O_DIRECTORY, O_EXCL, O_LARGEFILE, O_NOCTTY,
                             O_NOFOLLOW, O_NONBLOCK, O_PATH, O_TRUNC, DevDirFile, alias_fd, InodeFile, OpenFile, Pipe, PipeEnd, Stat)
from guestkernel.sysfs import SysDirFile, SysNode
from guestkernel import locks

if TYPE_CHECKING:
    from guestkernel.kernel import Kernel
    from guestkernel.process import Process

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_REMOVEDIR = 0x200
AT_SYMLINK_FOLLOW = 0x400
AT_EMPTY_PATH = 0x1000
F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_GETLK, F_SETLK, F_SETLKW = 0, 1, 2, 3, 4, 5, 6, 7
F_DUPFD_CLOEXEC = 1030
F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38
FD_CLOEXEC = 1
SETFL_MASK = O_APPEND | O_NONBLOCK | 0o20000 | 0o40000 | 0o1000000  # + FASYNC, O_DIRECT, O_NOATIME
MAX_IO = 0x7FFFF000  # Linux caps one read/write at this many bytes
IO_CHUNK = 1 << 20


def s32(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x & 0x80000000 else x


def s64(x: int) -> int:
    x &= 0xFFFFFFFFFFFFFFFF
    return x - (1 << 64) if x & (1 << 63) else x


# ----------------------------------------------------------------------------------------------
# helpers


def path_arg(k: "Kernel", p: "Process", ptr: int) -> bytes:
    return p.mm.read_cstr(ptr, 4096)


def dir_node(k: "Kernel", p: "Process", dirfd: int) -> object:
    dirfd = s32(dirfd)
    if dirfd == AT_FDCWD:
        return p.cwd
    f = p.fds.get(dirfd)
    if isinstance(f, DevDirFile):
        return DEV_DIR
    if isinstance(f, SysDirFile):
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


def charge_copy(k: "Kernel", n: int) -> None:
    k.clock.charge(n * COPY_NS_PER_KIB // 1024)


# ----------------------------------------------------------------------------------------------
# open / close


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


# ----------------------------------------------------------------------------------------------
# read / write


def access_ok(buf: int, count: int) -> None:
    """Linux's access_ok: the whole buffer must lie in user space."""
    if buf + count > TASK_SIZE or buf + count < buf:
        raise SyscallError(EFAULT)


def read_into(k: "Kernel", p: "Process", f: OpenFile, buf: int, count: int, offset: int | None) -> int:
    if not f.readable:
        raise SyscallError(EBADF)
    count = min(count, MAX_IO)
    access_ok(buf, count)
    seekable = isinstance(f, InodeFile)
    if seekable and f.is_dir():
        raise SyscallError(EISDIR)  # even for 0 bytes
    if count and not seekable:
        p.mm.user_pages(buf, 1, write=True)  # fail before consuming pipe data
    total = 0
    try:
        while total < count:
            want = min(IO_CHUNK, count - total)
            if seekable:
                # Read at the position and advance only once the data reached the user buffer.
                pos = f.offset if offset is None else offset
                data = f.pread(want, pos + total)
            else:
                data = f.read(want)
            if not data:
                break
            p.mm.copy_out(buf + total, data)
            total += len(data)
            if len(data) < want or not seekable:
                break
    except SyscallError:
        if total == 0:
            raise
    if seekable and offset is None:
        f.offset += total
    charge_copy(k, total)
    return total


def write_from(k: "Kernel", p: "Process", f: OpenFile, buf: int, count: int, offset: int | None,
               done: int = 0) -> int:
    """Write count bytes from user memory; `done` of them were written before the caller
    blocked (a blocking pipe write waits for room until everything is written)."""
    if not f.writable:
        raise SyscallError(EBADF)
    count = min(count, MAX_IO)
    access_ok(buf, count)
    blocking_pipe = isinstance(f, PipeEnd) and not f.flags & O_NONBLOCK
    total = done
    try:
        while total < count:
            want = min(IO_CHUNK, count - total)
            data = p.mm.copy_in(buf + total, want)
            n = f.write(data) if offset is None else f.pwrite(data, offset + total)
            total += n
            if n < want and not blocking_pipe:
                break
    except SyscallError as e:
        if e.errno == EPIPE:
            from guestkernel.kernel import SIGPIPE

            k.send_signal(p, SIGPIPE)
        if total == 0:
            raise
    except Block as b:
        if total == 0:
            raise
        charge_copy(k, total - done)
        written = total
        raise Block(b.waitq, retry=lambda: resume_write(k, p, f, buf, count, written), done=written) from None
    charge_copy(k, total - done)
    return total


def resume_write(k: "Kernel", p: "Process", f: OpenFile, buf: int, count: int, done: int) -> int:
    try:
        return write_from(k, p, f, buf, count, None, done)
    except SyscallError:
        return done  # what was written stands (a broken pipe also raised SIGPIPE)


@syscall("read")
def sys_read(k, p, fd, buf, count, *_):  # type: ignore[no-untyped-def]
    return read_into(k, p, p.fds.get(s32(fd)), buf, count, None)


@syscall("write")
def sys_write(k, p, fd, buf, count, *_):  # type: ignore[no-untyped-def]
    return write_from(k, p, p.fds.get(s32(fd)), buf, count, None)


@syscall("pread64")
def sys_pread64(k, p, fd, buf, count, offset, *_):  # type: ignore[no-untyped-def]
    if s64(offset) < 0:
        raise SyscallError(EINVAL)
    return read_into(k, p, p.fds.get(s32(fd)), buf, count, offset)


@syscall("pwrite64")
def sys_pwrite64(k, p, fd, buf, count, offset, *_):  # type: ignore[no-untyped-def]
    if s64(offset) < 0:
        raise SyscallError(EINVAL)
    return write_from(k, p, p.fds.get(s32(fd)), buf, count, offset)


def iovecs(p: "Process", iov: int, iovcnt: int) -> list[tuple[int, int]]:
    if iovcnt > 1024:
        raise SyscallError(EINVAL)
    raw = p.mm.copy_in(iov, 16 * iovcnt)
    return [struct.unpack_from("<QQ", raw, 16 * i) for i in range(iovcnt)]


@syscall("readv")
def sys_readv(k, p, fd, iov, iovcnt, *_):  # type: ignore[no-untyped-def]
    f = p.fds.get(s32(fd))
    total = 0
    for base, length in iovecs(p, iov, iovcnt):
        if not length:
            continue
        n = read_into(k, p, f, base, length, None)
        total += n
        if n < length:
            break
    return total


RWF_SUPPORTED = 0x1F  # HIPRI, DSYNC, SYNC, NOWAIT, APPEND


def positioned_iov(k, p, fd, iov, iovcnt, offset, flags, write: bool) -> int:  # type: ignore[no-untyped-def]
    """preadv/pwritev(2) and their *2 forms (flags not None): the vector at an offset, or with
    offset -1 in the *2 forms at the file position like readv/writev. The RWF_ hints change
    nothing here: every write reaches the page cache at once and no request waits."""
    f = p.fds.get(s32(fd))
    offset = s64(offset)
    if flags is not None:
        if flags & ~RWF_SUPPORTED:
            raise SyscallError(EOPNOTSUPP)
        if offset == -1:
            return (sys_writev if write else sys_readv)(k, p, fd, iov, iovcnt)
    if offset < 0:
        raise SyscallError(EINVAL)
    if not isinstance(f, InodeFile):
        raise SyscallError(ESPIPE)
    io = write_from if write else read_into
    total = 0
    for base, length in iovecs(p, iov, iovcnt):
        if not length:
            continue
        n = io(k, p, f, base, length, offset + total)
        total += n
        if n < length:
            break
    return total


@syscall("preadv")
def sys_preadv(k, p, fd, iov, iovcnt, pos_l, pos_h, *_):  # type: ignore[no-untyped-def]
    return positioned_iov(k, p, fd, iov, iovcnt, pos_l, None, write=False)


@syscall("pwritev")
def sys_pwritev(k, p, fd, iov, iovcnt, pos_l, pos_h, *_):  # type: ignore[no-untyped-def]
    return positioned_iov(k, p, fd, iov, iovcnt, pos_l, None, write=True)


@syscall("preadv2")
def sys_preadv2(k, p, fd, iov, iovcnt, pos_l, pos_h, flags, *_):  # type: ignore[no-untyped-def]
    return positioned_iov(k, p, fd, iov, iovcnt, pos_l, s32(flags), write=False)


@syscall("pwritev2")
def sys_pwritev2(k, p, fd, iov, iovcnt, pos_l, pos_h, flags, *_):  # type: ignore[no-untyped-def]
    return positioned_iov(k, p, fd, iov, iovcnt, pos_l, s32(flags), write=True)


@syscall("writev")
def sys_writev(k, p, fd, iov, iovcnt, *_):  # type: ignore[no-untyped-def]
    f = p.fds.get(s32(fd))
    vecs = iovecs(p, iov, iovcnt)
    if f.kind == "pipe":  # keep a writev to a pipe one atomic write, as small writes are
        data = b"".join(p.mm.copy_in(b, l) for b, l in vecs if l)
        if not data:
            return 0
        try:
            return f.write(data)
        except SyscallError as e:
            if e.errno == EPIPE:
                from guestkernel.kernel import SIGPIPE

                k.send_signal(p, SIGPIPE)
            raise
    total = 0
    for base, length in vecs:
        if not length:
            continue
        n = write_from(k, p, f, base, length, None)
        total += n
        if n < length:
            break
    return total


@syscall("lseek")
def sys_lseek(k, p, fd, offset, whence, *_):  # type: ignore[no-untyped-def]
    return p.fds.get(s32(fd)).seek(s64(offset), whence)


@syscall("sendfile")
def sys_sendfile(k, p, out_fd, in_fd, offset_ptr, count, *_):  # type: ignore[no-untyped-def]
    src, dst = p.fds.get(s32(in_fd)), p.fds.get(s32(out_fd))
    off = int.from_bytes(p.mm.copy_in(offset_ptr, 8), "little") if offset_ptr else None
    data = src.read(min(count, IO_CHUNK)) if off is None else src.pread(min(count, IO_CHUNK), off)
    n = dst.write(data) if data else 0
    if offset_ptr:
        p.mm.copy_out(offset_ptr, (off + n).to_bytes(8, "little"))  # type: ignore[operator]
    return n


# ----------------------------------------------------------------------------------------------
# stat family


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


def pack_statfs(k: "Kernel") -> bytes:
    sf = k.fs.statfs()
    return struct.pack("<qqQQQQQiiqqq32x", 0xEF53, sf["f_bsize"], sf["f_blocks"], sf["f_bfree"], sf["f_bavail"],
                       sf["f_files"], sf["f_ffree"], 0, 0, sf["f_namelen"], sf["f_bsize"], 0)


@syscall("statfs")
def sys_statfs(k, p, path, buf, *_):  # type: ignore[no-untyped-def]
    k.vfs.resolve(path_arg(k, p, path), p.cwd)
    p.mm.copy_out(buf, pack_statfs(k))
    return 0


@syscall("fstatfs")
def sys_fstatfs(k, p, fd, buf, *_):  # type: ignore[no-untyped-def]
    p.fds.get(s32(fd))
    p.mm.copy_out(buf, pack_statfs(k))
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


# ----------------------------------------------------------------------------------------------
# directories


@syscall("getdents64")
def sys_getdents64(k, p, fd, buf, count, *_):  # type: ignore[no-untyped-def]
    f = p.fds.get(s32(fd))
    if not isinstance(f, (InodeFile, DevDirFile, SysDirFile)):
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
    path = cwd_path(k, p.cwd) + b"\0"
    if len(path) > size:
        raise SyscallError(ERANGE)
    p.mm.copy_out(buf, path)
    return len(path)


def cwd_path(k: "Kernel", node: object) -> bytes:
    """Walk '..' up to the root, finding each directory's name in its parent."""
    if node == DEV_DIR:
        return b"/dev"
    if isinstance(node, SysNode):
        return node.guest_path
    parts = []
    fs = k.fs
    cur = node
    for _ in range(256):
        if cur == fs.root_ino:
            break
        parent = fs.lookup(cur, b"..")
        name = next((n for n, ino, _ in fs.readdir(parent) if ino == cur and n not in (b".", b"..")), None)
        if name is None:
            raise SyscallError(ENOENT)
        parts.append(name)
        cur = parent
    return b"/" + b"/".join(reversed(parts))


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
        if ino == k.fs.root_ino:
            return False
        ino = k.fs.lookup(ino, b"..")
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
    elif not isinstance(node, int) or not S.S_ISLNK(k.fs.stat(node).mode):
        raise SyscallError(EINVAL)
    else:
        target = fs_call(k.fs.readlink, node)
        k.vfs.relatime(node, k.fs.stat(node))
    target = target[:size]
    p.mm.copy_out(buf, target)
    return len(target)


@syscall("readlink")
def sys_readlink(k, p, path, buf, size, *_):  # type: ignore[no-untyped-def]
    path_b = path_arg(k, p, path)
    if path_b == b"/proc/self/exe":
        target = p.exe[:size]
        p.mm.copy_out(buf, target)
        return len(target)
    return do_readlink(k, p, AT_FDCWD, path_b, buf, size)


@syscall("readlinkat")
def sys_readlinkat(k, p, dirfd, path, buf, size, *_):  # type: ignore[no-untyped-def]
    return do_readlink(k, p, dirfd, path_arg(k, p, path), buf, size)


# ----------------------------------------------------------------------------------------------
# attributes


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


@syscall("truncate")
def sys_truncate(k, p, path, length, *_):  # type: ignore[no-untyped-def]
    ino = node_for(k, p, AT_FDCWD, path_arg(k, p, path), True)
    if s64(length) < 0:
        raise SyscallError(EINVAL)
    if S.S_ISDIR(k.fs.stat(ino).mode):
        raise SyscallError(EISDIR)
    k.vfs.on_file_write(ino)
    fs_call(k.fs.truncate, ino, length)
    k.vfs.on_data_change(ino, length)
    return 0


@syscall("ftruncate")
def sys_ftruncate(k, p, fd, length, *_):  # type: ignore[no-untyped-def]
    if s64(length) < 0:
        raise SyscallError(EINVAL)  # before the descriptor is looked at
    f = p.fds.get(s32(fd))
    if not isinstance(f, InodeFile) or not f.writable or not S.S_ISREG(k.fs.stat(f.ino).mode):
        raise SyscallError(EINVAL)
    k.vfs.on_file_write(f.ino)
    fs_call(k.fs.truncate, f.ino, length)
    k.vfs.on_data_change(f.ino, length)
    return 0


FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_COLLAPSE_RANGE = 0x01, 0x02, 0x08
FALLOC_FL_ZERO_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_UNSHARE_RANGE = 0x10, 0x20, 0x40
FALLOC_FL_SUPPORTED_MASK = 0x7B
EXT2_MAX_BYTES = (1 << 32) * 4096  # s_maxbytes of a 4 KiB-block ext2, bounded by i_blocks


@syscall("fallocate")
def sys_fallocate(k, p, fd, mode, offset, length, *_):  # type: ignore[no-untyped-def]
    """Linux's vfs_fallocate checks, in its order. ext2 has no fallocate operation, so every
    valid request on one of its files ends in EOPNOTSUPP (glibc's posix_fallocate then falls
    back to writing a byte per block)."""
    f = p.fds.get(s32(fd))
    mode, offset, length = s32(mode), s64(offset), s64(length)
    if offset < 0 or length <= 0:
        raise SyscallError(EINVAL)
    if mode & ~FALLOC_FL_SUPPORTED_MASK:
        raise SyscallError(EOPNOTSUPP)
    if mode & FALLOC_FL_PUNCH_HOLE and (mode & FALLOC_FL_ZERO_RANGE or not mode & FALLOC_FL_KEEP_SIZE):
        raise SyscallError(EOPNOTSUPP)
    for only, allowed in ((FALLOC_FL_COLLAPSE_RANGE, 0), (FALLOC_FL_INSERT_RANGE, 0),
                          (FALLOC_FL_UNSHARE_RANGE, FALLOC_FL_KEEP_SIZE)):
        if mode & only and mode & ~(only | allowed):
            raise SyscallError(EINVAL)
    if not f.writable or f.flags & O_PATH:
        raise SyscallError(EBADF)
    fmt = S.S_IFMT(f.stat().mode)
    if fmt == S.S_IFIFO:
        raise SyscallError(ESPIPE)
    if fmt == S.S_IFDIR:
        raise SyscallError(EISDIR)
    if fmt not in (S.S_IFREG, S.S_IFBLK):
        raise SyscallError(ENODEV)
    if fmt == S.S_IFREG and offset + length > EXT2_MAX_BYTES:
        raise SyscallError(EFBIG)
    raise SyscallError(EOPNOTSUPP)  # neither ext2 nor a pmem device implements fallocate


@syscall("fsync", "fdatasync", "syncfs")
def sys_fsync(k, p, fd, *_):  # type: ignore[no-untyped-def]
    p.fds.get(s32(fd))
    k.sync()
    return 0


@syscall("sync")
def sys_sync(k, p, *_):  # type: ignore[no-untyped-def]
    k.sync()
    return 0


@syscall("umask")
def sys_umask(k, p, mask, *_):  # type: ignore[no-untyped-def]
    old = p.umask
    p.umask = mask & 0o777
    return old


# ----------------------------------------------------------------------------------------------
# descriptors


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
    # The console is not a terminal: programs see what they would see with output redirected.
    raise SyscallError(ENOTTY)


def do_pipe(k: "Kernel", p: "Process", fds_ptr: int, flags: int) -> int:
    pipe = Pipe("pipe", k.frames)
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


@syscall("fadvise64", "readahead")
def sys_fadvise64(k, p, fd, *_):  # type: ignore[no-untyped-def]
    p.fds.get(s32(fd))
    return 0


# Extended attributes: the ext2 driver has none (as a file system mounted without user_xattr).
# The file must exist; reading or changing an attribute is EOPNOTSUPP, listing finds none.
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
