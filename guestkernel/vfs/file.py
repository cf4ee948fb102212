"""Open file descriptions: the OpenFile base (flags, position, references shared by dup and fork),
the open(2) flags, what stat(2) reports, and InodeFile, an open file of the ext2 root file system."""
from __future__ import annotations

import stat as S
from dataclasses import dataclass
from typing import TYPE_CHECKING

from guestkernel.errors import EBADF, EINVAL, EISDIR, ENXIO, ESPIPE, SyscallError

if TYPE_CHECKING:
    from guestkernel.vfs.waitqueue import WaitQueue
    from guestkernel.vfs.core import VFS

O_ACCMODE = 3
O_RDONLY, O_WRONLY, O_RDWR = 0, 1, 2
O_CREAT = 0o100
O_EXCL = 0o200
O_NOCTTY = 0o400
O_TRUNC = 0o1000
O_APPEND = 0o2000
O_NONBLOCK = 0o4000
O_DIRECTORY = 0o200000
O_NOFOLLOW = 0o400000
O_CLOEXEC = 0o2000000
O_PATH = 0o10000000
O_LARGEFILE = 0o100000
SEEK_DATA, SEEK_HOLE = 3, 4

DT_UNKNOWN, DT_FIFO, DT_CHR, DT_DIR, DT_BLK, DT_REG, DT_LNK, DT_SOCK = 0, 1, 2, 4, 6, 8, 10, 12


@dataclass
class Stat:
    """What stat(2) reports; filled from ext2 or from a kernel object."""

    ino: int
    mode: int
    nlink: int = 1
    uid: int = 0
    gid: int = 0
    size: int = 0
    atime: int = 0
    mtime: int = 0
    ctime: int = 0
    blocks: int = 0
    rdev: int = 0
    blksize: int = 4096
    dev: int = 0x801


# poll(2) event bits (also epoll's, which shares the low ones)
POLLIN, POLLPRI, POLLOUT, POLLERR, POLLHUP, POLLNVAL = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20
POLLRDNORM, POLLWRNORM = 0x40, 0x100


class OpenFile:
    """An open file description (shared by dup'ed descriptors and across fork)."""

    kind = "file"
    obj = 0  # its filp object in the kernel's slab (installed in a descriptor table)
    positional = False  # has a position: read(2) reads at it through pread (files, block devices)

    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.offset = 0
        self.refs = 1

    @property
    def readable(self) -> bool:
        return (self.flags & O_ACCMODE) in (O_RDONLY, O_RDWR)

    @property
    def writable(self) -> bool:
        return (self.flags & O_ACCMODE) in (O_WRONLY, O_RDWR)

    def read(self, n: int) -> bytes:
        raise SyscallError(EINVAL)

    def write(self, data: bytes) -> int:
        raise SyscallError(EINVAL)

    def pread(self, n: int, offset: int) -> bytes:
        raise SyscallError(ESPIPE)

    def pwrite(self, data: bytes, offset: int) -> int:
        raise SyscallError(ESPIPE)

    def seek(self, offset: int, whence: int) -> int:
        raise SyscallError(ESPIPE)

    def stat(self) -> Stat:
        raise NotImplementedError

    def close(self) -> None:
        pass

    # -- readiness (poll, select, epoll) ---------------------------------------------------------
    def poll_mask(self) -> int:
        """What poll(2) reports without waiting (Linux's DEFAULT_POLLMASK for files that never
        block: regular files, devices, the console)."""
        return POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM

    def poll_queue(self) -> "WaitQueue | None":
        """The wait queue woken when the readiness may have changed (None: it never changes)."""
        return None

    pollable = False  # has a poll operation of its own (epoll refuses the others: EPERM)
    writes_whole = False  # a blocking write(2) waits until all of it is taken (pipes, stream sockets)

    def is_tty(self) -> bool:
        return False


class InodeFile(OpenFile):
    """A regular file, directory or symlink of a mounted ext2 file system."""

    kind = "inode"
    positional = True

    def __init__(self, vfs: "VFS", ino: int, flags: int, path: bytes) -> None:
        super().__init__(flags)
        self.vfs = vfs
        self.ino = ino
        self.path = path
        vfs.open_count[ino] = vfs.open_count.get(ino, 0) + 1

    def stat(self) -> Stat:
        return self.vfs.stat_node(self.ino)

    def is_dir(self) -> bool:
        return S.S_ISDIR(self.vfs.fs.stat(self.ino).mode)

    def read_at(self, offset: int, n: int) -> bytes:
        return self.vfs.fs.read(self.ino, offset, n)

    def read(self, n: int) -> bytes:
        data = self.pread(n, self.offset)
        self.offset += len(data)
        return data

    def pread(self, n: int, offset: int) -> bytes:
        if not self.readable:
            raise SyscallError(EBADF)
        st = self.vfs.fs.stat(self.ino)
        if S.S_ISDIR(st.mode):
            raise SyscallError(EISDIR)
        self.vfs.relatime(self.ino, st)  # every read, as Linux's file_accessed
        self.vfs.on_file_read(self.ino)
        return self.vfs.fs.read(self.ino, offset, n)

    def write(self, data: bytes) -> int:
        if self.flags & O_APPEND:
            self.offset = self.vfs.fs.stat(self.ino).size
        n = self.pwrite(data, self.offset)
        self.offset += n
        return n

    def pwrite(self, data: bytes, offset: int) -> int:
        if not self.writable:
            raise SyscallError(EBADF)
        if self.flags & O_APPEND:
            offset = self.vfs.fs.stat(self.ino).size  # Linux appends even for pwrite(2)
        self.vfs.check_writable(self.ino)
        try:
            n = self.vfs.fs.write(self.ino, offset, data)
        except Exception as e:  # FsError: ENOSPC, EFBIG, EIO reach the caller as its errno
            raise fs_error(e) from None
        self.vfs.on_data_change(self.ino, None)
        return n

    def seek(self, offset: int, whence: int) -> int:
        if whence == 0:
            new = offset
        elif whence == 1:
            new = self.offset + offset
        elif whence == 2:
            new = self.vfs.fs.stat(self.ino).size + offset
            self.vfs.on_file_read(self.ino)  # the size was looked at
        elif whence in (SEEK_DATA, SEEK_HOLE):  # directories too: ext2 maps them the same way
            self.vfs.on_file_read(self.ino)
            new = self.vfs.fs.seek_data(self.ino, offset, whence == SEEK_DATA)
            if new < 0:
                raise SyscallError(ENXIO)
        else:
            raise SyscallError(EINVAL)
        if new < 0:
            raise SyscallError(EINVAL)
        self.offset = new
        return new

    def close(self) -> None:
        self.vfs.close_inode(self.ino)


def counted_dir_seek(f: OpenFile, offset: int, whence: int) -> int:
    """lseek on a directory whose positions count entries (Linux's dcache_dir_lseek)."""
    new = offset + (f.offset if whence == 1 else 0)
    if whence not in (0, 1) or new < 0:
        raise SyscallError(EINVAL)
    f.offset = new
    return new


def fs_error(e: Exception) -> SyscallError:
    err = getattr(e, "errno", None)
    if isinstance(err, int):
        return SyscallError(err, str(e))
    raise e

