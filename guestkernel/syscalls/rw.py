"""Moving file data: read/write, their positioned and vectored forms, lseek, sendfile; a file's
size and space (truncate, ftruncate, fallocate); fsync/sync and fadvise."""
from __future__ import annotations

import stat as S
import struct
from typing import TYPE_CHECKING, Callable

from hw.clock import COPY_NS_PER_KIB
from guestkernel.errors import (EBADF, EFAULT, EFBIG, EINVAL, EISDIR, ENODEV, EOPNOTSUPP, EPIPE, ESPIPE, Block,
                                SyscallError)
from guestkernel.mm import TASK_SIZE
from guestkernel.syscalls import syscall
from guestkernel.syscalls.args import AT_FDCWD, fs_call, node_for, path_arg, s32, s64
from guestkernel.vfs import O_NONBLOCK, O_PATH, InodeFile, OpenFile

if TYPE_CHECKING:
    from guestkernel.kernel import Kernel
    from guestkernel.process import Process

MAX_IO = 0x7FFFF000  # Linux caps one read/write at this many bytes
IO_CHUNK = 1 << 20


def charge_copy(k: "Kernel", n: int) -> None:
    k.clock.charge(n * COPY_NS_PER_KIB // 1024)


def access_ok(buf: int, count: int) -> None:
    """Linux's access_ok: the whole buffer must lie in user space."""
    if buf + count > TASK_SIZE or buf + count < buf:
        raise SyscallError(EFAULT)


def read_into(k: "Kernel", p: "Process", f: OpenFile, buf: int, count: int, offset: int | None) -> int:
    if not f.readable:
        raise SyscallError(EBADF)
    count = min(count, MAX_IO)
    access_ok(buf, count)
    seekable = f.positional
    if isinstance(f, InodeFile) and f.is_dir():
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
    if isinstance(f, InodeFile):
        k.file_io["read_bytes"] += total
    return total


def write_from(k: "Kernel", p: "Process", f: OpenFile, buf: int, count: int, offset: int | None,
               done: int = 0) -> int:
    """Write count bytes from user memory; `done` of them were written before the caller
    blocked (a blocking pipe write waits for room until everything is written)."""
    if not f.writable:
        raise SyscallError(EBADF)
    count = min(count, MAX_IO)
    access_ok(buf, count)
    return _write_pieces(k, p, f, lambda at, n: p.mm.copy_in(buf + at, n), count, offset, done)


def _write_pieces(k: "Kernel", p: "Process", f: OpenFile, piece: Callable[[int, int], bytes], count: int,
                  offset: int | None, done: int) -> int:
    """The write loop of write(2) and writev(2): bytes [at, at+n) come from piece(at, n)."""
    blocking_pipe = f.writes_whole and not f.flags & O_NONBLOCK  # (pipes, stream sockets)
    total = done
    try:
        while total < count:
            want = min(IO_CHUNK, count - total)
            data = piece(total, want)
            n = f.write(data) if offset is None else f.pwrite(data, offset + total)
            total += n
            if n < want and not blocking_pipe:
                break
    except SyscallError as e:
        sigpipe_on_epipe(k, p, e)
        if total == 0:
            raise
    except Block as b:
        if total == 0:
            raise
        charge_copy(k, total - done)
        written = total
        raise Block(b.waitq, retry=lambda: _or_written(written, lambda: _write_pieces(k, p, f, piece, count, offset,
                                                                                        written)), done=written) from None
    charge_copy(k, total - done)
    if isinstance(f, InodeFile):
        k.file_io["write_bytes"] += total - done
    return total


def sigpipe_on_epipe(k: "Kernel", p: "Process", e: SyscallError) -> None:
    """A write to a pipe without readers (EPIPE) also sends the writer SIGPIPE."""
    if e.errno == EPIPE:
        from guestkernel.kernel import SIGPIPE

        from guestkernel.siginfo import SI_USER, SigInfo

        k.send_signal(p, SIGPIPE, SigInfo(SIGPIPE, SI_USER, (p.leader or p).pid))  # (send_sig: SEND_SIG_NOINFO)


def _or_written(done: int, write: Callable[[], int]) -> int:
    """The rest of a write parked after `done` bytes (woken, or resumed after a restart): a
    failure now returns what was written, which stands (a broken pipe also raised SIGPIPE)."""
    try:
        return write()
    except SyscallError:
        return done


def resume_write(k: "Kernel", p: "Process", f: OpenFile, buf: int, count: int, done: int) -> int:
    return _or_written(done, lambda: write_from(k, p, f, buf, count, None, done))


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


def vector_io(io, k, p, f, vecs: list[tuple[int, int]], offset: int | None) -> int:  # type: ignore[no-untyped-def]
    """readv/writev and the positioned forms: each buffer in turn through io (read_into or
    write_from), at the file position (offset None) or from offset on; a short transfer ends it."""
    total = 0
    for base, length in vecs:
        if not length:
            continue
        n = io(k, p, f, base, length, None if offset is None else offset + total)
        total += n
        if n < length:
            break
    return total


@syscall("readv")
def sys_readv(k, p, fd, iov, iovcnt, *_):  # type: ignore[no-untyped-def]
    f = p.fds.get(s32(fd))
    return vector_io(read_into, k, p, f, iovecs(p, iov, iovcnt), None)


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
    return vector_io(write_from if write else read_into, k, p, f, iovecs(p, iov, iovcnt), offset)


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
def sys_writev(k, p, fd, iov, iovcnt, *_, skip: int = 0):  # type: ignore[no-untyped-def]
    """writev(2). To a pipe or a stream socket the vectors' bytes are one write (atomic when
    small, as a write is; a blocking one waits for room until all of it is written, as Linux's
    pipe_write and unix_stream_sendmsg do). `skip`: the first bytes went before a restart."""
    f = p.fds.get(s32(fd))
    vecs = iovecs(p, iov, iovcnt)
    if f.writes_whole:
        if not f.writable:
            raise SyscallError(EBADF)
        data = b"".join(p.mm.copy_in(b, n) for b, n in vecs if n)[skip:]
        return _write_pieces(k, p, f, lambda at, n: data[at:at + n], len(data), None, 0) if data else 0
    return vector_io(write_from, k, p, f, vecs, None)


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


@syscall("truncate")
def sys_truncate(k, p, path, length, *_):  # type: ignore[no-untyped-def]
    ino = node_for(k, p, AT_FDCWD, path_arg(k, p, path), True)
    if s64(length) < 0:
        raise SyscallError(EINVAL)
    if S.S_ISDIR(k.fs.stat(ino).mode):
        raise SyscallError(EISDIR)
    k.vfs.check_writable(ino)
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
    k.vfs.check_writable(f.ino)
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


@syscall("fadvise64", "readahead")
def sys_fadvise64(k, p, fd, *_):  # type: ignore[no-untyped-def]
    p.fds.get(s32(fd))
    return 0
