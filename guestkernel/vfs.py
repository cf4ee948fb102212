"""Files as the guest sees them: path lookup, open file descriptions, pipes and devices.

Paths resolve inside the guest's root file system only: `..` at the root stays at the root and
absolute symlink targets restart at the guest root, so nothing of the host is reachable. `/dev` is
a small device directory provided by the kernel (null, zero, full, random, urandom, tty, console,
stdin/stdout/stderr), laid over the image; `/sys` likewise is the kernel's read-only sysfs
(guestkernel/sysfs.py).
"""
from __future__ import annotations

import itertools
import random
import stat as S
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from guestkernel.errors import (EACCES, EAGAIN, EBADF, EINVAL, EISDIR, ELOOP, ENAMETOOLONG, ENOENT,
                                ENOTDIR, ENXIO, EPIPE, ESPIPE, SyscallError, Block)

if TYPE_CHECKING:
    from guestkernel.ext2 import Ext2
    from guestkernel.frames import Frames

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
PIPE_CAPACITY = 65536
MAX_SYMLINKS = 40


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


class WaitQueue:
    """Processes blocked on something; waking makes them runnable, and the scheduler then
    retries their parked syscalls."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.waiters: list[Any] = []
        self.pollers: list["WaitQueue"] = []  # select/poll calls watching this queue too

    def wake(self) -> None:
        for p in self.waiters:
            p.state = "runnable"
            p.waiting_on = None
        self.waiters.clear()
        for q in self.pollers:
            q.wake()


# ------------------------------------------------------------------------------------------------
# Nodes: what a path names.


@dataclass(frozen=True)
class DevNode:
    name: str
    major: int
    minor: int

    @property
    def rdev(self) -> int:
        return (self.major << 8) | self.minor


DEVICES = {
    "null": DevNode("null", 1, 3), "zero": DevNode("zero", 1, 5), "full": DevNode("full", 1, 7),
    "random": DevNode("random", 1, 8), "urandom": DevNode("urandom", 1, 9),
    "tty": DevNode("tty", 5, 0), "console": DevNode("console", 5, 1),
}
FD_ALIASES = {"stdin": 0, "stdout": 1, "stderr": 2}
PMEM_MAJOR = 259  # blkext, where Linux's pmem devices live


@dataclass(frozen=True)
class PmemRegion:
    """A persistent range of the memory map, offered to the guest as /dev/<name>."""

    name: str
    base_gpa: int
    size: int
DEV_DIR = "devdir"  # the node of /dev itself
Node = Any  # an ext2 inode number, a DevNode, DEV_DIR, an "fd:" alias or a sysfs.SysNode


def alias_fd(node: Node) -> int | None:
    """The descriptor that /dev/stdin, /dev/stdout or /dev/stderr (node "fd:NAME") names; None for
    any other node (DEV_DIR is a str too)."""
    if isinstance(node, str) and node.startswith("fd:"):
        return FD_ALIASES[node[3:]]
    return None


# ------------------------------------------------------------------------------------------------
# Open file descriptions.


class OpenFile:
    """An open file description (shared by dup'ed descriptors and across fork)."""

    kind = "file"

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

    def is_tty(self) -> bool:
        return False


class InodeFile(OpenFile):
    """A regular file, directory or symlink of the ext2 root file system."""

    kind = "inode"

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
        self.vfs.on_file_write(self.ino)
        try:
            n = self.vfs.fs.write(self.ino, offset, data)
        except Exception as e:  # FsError: ENOSPC, EFBIG, EIO reach the caller as its errno
            raise _fs_error(e) from None
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


class Pipe:
    """A pipe's buffer: a 64 KiB ring in 16 guest frames from the buddy allocator."""

    ORDER = 4
    PAGES = 1 << ORDER
    _serials = itertools.count(1)

    def __init__(self, name: str, frames: "Frames") -> None:
        self.frames = frames
        self.pfn = frames.alloc_block(self.ORDER)
        self.head = 0   # ring offset of the oldest byte
        self.count = 0  # bytes buffered
        self.readers = 0
        self.writers = 0
        self.waitq = WaitQueue(name)
        self.serial = next(Pipe._serials)      # identity for checkpoints (ids get reused)
        self.dirty: set[int] = set(range(self.PAGES))  # ring pages written since the last one

    def _pieces(self, start: int, n: int):  # type: ignore[no-untyped-def]
        """(page view slice, length) covering n ring bytes from ring offset start."""
        while n > 0:
            off = start % PIPE_CAPACITY
            page, in_page = divmod(off, 4096)
            chunk = min(n, 4096 - in_page)
            gpa = ((self.pfn + page) << 12) + in_page
            yield self.frames.page(self.pfn + page)[in_page : in_page + chunk], gpa
            start += chunk
            n -= chunk

    def put(self, data: bytes | memoryview) -> int:
        n = min(len(data), PIPE_CAPACITY - self.count)
        pos = 0
        for view, gpa in self._pieces(self.head + self.count, n):
            view[:] = data[pos : pos + len(view)]
            self.frames.kernel_access(gpa, len(view), True)
            self.dirty.add((gpa >> 12) - self.pfn)
            pos += len(view)
        self.count += n
        return n

    def take(self, n: int) -> bytes:
        n = min(n, self.count)
        out = bytearray()
        for view, gpa in self._pieces(self.head, n):
            out += view
            self.frames.kernel_access(gpa, len(view), False)
        self.head = (self.head + n) % PIPE_CAPACITY
        self.count -= n
        return bytes(out)

    def release_if_unused(self) -> None:
        if self.readers == 0 and self.writers == 0 and self.pfn >= 0:
            self.frames.free_block(self.pfn, self.ORDER)
            self.pfn = -1


class PipeEnd(OpenFile):
    kind = "pipe"

    def __init__(self, pipe: Pipe, write_end: bool, flags: int) -> None:
        super().__init__((O_WRONLY if write_end else O_RDONLY) | (flags & ~O_ACCMODE))
        self.pipe = pipe
        self.write_end = write_end
        if write_end:
            pipe.writers += 1
        else:
            pipe.readers += 1

    def read(self, n: int) -> bytes:
        p = self.pipe
        if self.write_end:
            raise SyscallError(EBADF)
        if not p.count:
            if p.writers == 0 or n == 0:
                return b""
            if self.flags & O_NONBLOCK:
                raise SyscallError(EAGAIN)
            raise Block(p.waitq)
        data = p.take(n)
        p.waitq.wake()
        return data

    def write(self, data: bytes) -> int:
        p = self.pipe
        if not self.write_end:
            raise SyscallError(EBADF)
        if p.readers == 0:
            raise SyscallError(EPIPE)
        room = PIPE_CAPACITY - p.count
        if room <= 0 or (len(data) <= 4096 and room < len(data)):  # PIPE_BUF writes are atomic
            if self.flags & O_NONBLOCK:
                raise SyscallError(EAGAIN)
            raise Block(p.waitq)
        n = p.put(data)
        p.waitq.wake()
        return n

    def stat(self) -> Stat:
        return Stat(ino=self.pipe.pfn & 0xFFFFFF, mode=S.S_IFIFO | 0o600, size=self.pipe.count, dev=0xC)

    def close(self) -> None:
        if self.write_end:
            self.pipe.writers -= 1
        else:
            self.pipe.readers -= 1
        self.pipe.waitq.wake()
        self.pipe.release_if_unused()


class PmemFile(OpenFile):
    """/dev/pmemN: the SCM range itself. read/write go through the kernel's cache-modelled
    accesses; mmap maps its pages straight into the process (DAX)."""

    kind = "pmem"

    def __init__(self, vfs: "VFS", node: DevNode, region: PmemRegion, flags: int) -> None:
        super().__init__(flags)
        self.vfs = vfs
        self.node = node
        self.region = region
        self.device = True  # mappings of it are not refcounted page frames

    def _span(self, offset: int, n: int) -> tuple[int, int]:
        n = max(0, min(n, self.region.size - offset))
        return self.region.base_gpa + offset, n

    def pread(self, n: int, offset: int) -> bytes:
        gpa, n = self._span(offset, n)
        out = bytearray()
        frames = self.vfs.frames
        while n > 0:
            off = gpa & 4095
            chunk = min(n, 4096 - off)
            out += frames.page(gpa >> 12)[off : off + chunk]
            frames.kernel_access(gpa, chunk, False)
            gpa += chunk
            n -= chunk
        return bytes(out)

    def pwrite(self, data: bytes, offset: int) -> int:
        if offset >= self.region.size:
            from guestkernel.errors import ENOSPC

            raise SyscallError(ENOSPC)
        gpa, n = self._span(offset, len(data))
        frames = self.vfs.frames
        pos = 0
        while pos < n:
            off = gpa & 4095
            chunk = min(n - pos, 4096 - off)
            frames.page(gpa >> 12)[off : off + chunk] = data[pos : pos + chunk]
            frames.kernel_access(gpa, chunk, True)
            gpa += chunk
            pos += chunk
        return n

    def read(self, n: int) -> bytes:
        data = self.pread(n, self.offset)
        self.offset += len(data)
        return data

    def write(self, data: bytes) -> int:
        n = self.pwrite(data, self.offset)
        self.offset += n
        return n

    def seek(self, offset: int, whence: int) -> int:
        base = {0: 0, 1: self.offset, 2: self.region.size}.get(whence)
        if base is None or base + offset < 0:
            raise SyscallError(EINVAL)
        self.offset = base + offset
        return self.offset

    def read_at(self, offset: int, n: int) -> bytes:
        return self.pread(n, offset)

    def page_frame(self, offset: int) -> int | None:
        """The SCM page at offset, mapped shared (no reference counting: device memory)."""
        if offset + 4096 > self.region.size:
            return None
        return (self.region.base_gpa + offset) >> 12

    def stat(self) -> Stat:
        st = self.vfs.stat_node(self.node)
        st.mode = S.S_IFBLK | 0o660
        return st


class DevFile(OpenFile):
    kind = "dev"

    def __init__(self, vfs: "VFS", node: DevNode, flags: int) -> None:
        super().__init__(flags)
        self.vfs = vfs
        self.node = node

    def read(self, n: int) -> bytes:
        name = self.node.name
        if name in ("null",):
            return b""
        if name in ("zero", "full"):
            return bytes(n)
        if name in ("random", "urandom"):
            return self.vfs.random_bytes(n)
        return self.vfs.console.read_input(n)

    def write(self, data: bytes) -> int:
        name = self.node.name
        if name == "full":
            from guestkernel.errors import ENOSPC

            raise SyscallError(ENOSPC)
        if name in ("tty", "console"):
            self.vfs.console.write(1, bytes(data))
        return len(data)

    def pread(self, n: int, offset: int) -> bytes:
        return self.read(n)

    def pwrite(self, data: bytes, offset: int) -> int:
        return self.write(data)

    def seek(self, offset: int, whence: int) -> int:
        return 0

    def stat(self) -> Stat:
        return self.vfs.stat_node(self.node)

    def is_tty(self) -> bool:
        return self.node.name in ("tty", "console")


class ConsoleFile(OpenFile):
    """The process's standard streams as the machine boots it: the console."""

    kind = "console"

    def __init__(self, vfs: "VFS", stream: int, flags: int) -> None:
        super().__init__(flags)
        self.vfs = vfs
        self.stream = stream

    def read(self, n: int) -> bytes:
        return self.vfs.console.read_input(n)

    def write(self, data: bytes) -> int:
        self.vfs.console.write(1 if self.stream == 0 else self.stream, bytes(data))
        return len(data)

    def stat(self) -> Stat:
        return Stat(ino=self.stream + 3, mode=S.S_IFCHR | 0o620, rdev=(136 << 8), dev=0x16)


class DevDirFile(OpenFile):
    kind = "devdir"

    def __init__(self, vfs: "VFS", flags: int) -> None:
        super().__init__(flags)
        self.vfs = vfs

    def stat(self) -> Stat:
        return self.vfs.stat_node(DEV_DIR)

    def seek(self, offset: int, whence: int) -> int:
        return counted_dir_seek(self, offset, whence)


def counted_dir_seek(f: OpenFile, offset: int, whence: int) -> int:
    """lseek on a directory whose positions count entries (Linux's dcache_dir_lseek)."""
    new = offset + (f.offset if whence == 1 else 0)
    if whence not in (0, 1) or new < 0:
        raise SyscallError(EINVAL)
    f.offset = new
    return new


# ------------------------------------------------------------------------------------------------


class VFS:
    def __init__(self, fs: "Ext2", console: object, now: Callable[[], int], seed: int,
                 frames: "Frames | None" = None, pmem: list[PmemRegion] | None = None) -> None:
        self.fs = fs
        self.frames = frames
        self.devices = dict(DEVICES)
        self.pmem = {r.name: r for r in pmem or []}
        for i, r in enumerate(pmem or []):
            self.devices[r.name] = DevNode(r.name, PMEM_MAJOR, i)
        self.console = console
        self.now = now
        self.rng = random.Random(seed)
        self.open_count: dict[int, int] = {}
        self.on_file_write: Callable[[int], None] = lambda ino: None
        # After a file's data changed (written, or truncated to a size): mappings follow it.
        self.on_data_change: Callable[[int, int | None], None] = lambda ino, size: None
        # Reads of a file's data or attributes (the checkpoint rules' "access time").
        self.on_file_read: Callable[[int], None] = lambda ino: None

    def random_bytes(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    # --- lookup ---------------------------------------------------------------------------------
    def lookup(self, dir_node: Node, name: bytes) -> Node:
        if dir_node == DEV_DIR:
            if name in (b".",):
                return DEV_DIR
            if name == b"..":
                return self.fs.root_ino
            dev = self.devices.get(name.decode(errors="replace"))
            if dev is None and name.decode(errors="replace") not in FD_ALIASES:
                raise SyscallError(ENOENT)
            return dev if dev is not None else "fd:" + name.decode()
        if isinstance(dir_node, sysfs.SysNode):
            return self.fs.root_ino if dir_node == sysfs.ROOT and name == b".." else sysfs.lookup(dir_node, name)
        if isinstance(dir_node, (DevNode, str)):
            raise SyscallError(ENOTDIR)
        if dir_node == self.fs.root_ino and name == b"dev":
            return DEV_DIR
        if dir_node == self.fs.root_ino and name == b"sys":
            return sysfs.ROOT
        try:
            return self.fs.lookup(dir_node, name)
        except Exception as e:  # FsError carries an errno
            raise _fs_error(e) from None

    def resolve(self, path: bytes, cwd: Node, *, follow: bool = True, _depth: int = 0) -> Node:
        """Resolve a path to a node. Raises ENOENT, ENOTDIR, ELOOP, ENAMETOOLONG."""
        parent, name = self.resolve_parent(path, cwd, _depth=_depth)
        if name in (b"", b".", b".."):
            return parent if name != b".." else self.lookup(parent, b"..")
        node = self.lookup(parent, name)
        if follow and isinstance(node, int) and S.S_ISLNK(self.fs.stat(node).mode):
            if _depth >= MAX_SYMLINKS:
                raise SyscallError(ELOOP)
            target = self.fs.readlink(node)
            self.relatime(node, self.fs.stat(node))  # following a link reads it
            return self.resolve(target, parent, follow=True, _depth=_depth + 1)
        return node

    def resolve_parent(self, path: bytes, cwd: Node, *, _depth: int = 0,
                       keep_slash: bool = False) -> tuple[Node, bytes]:
        """Resolve all but the last component; returns (directory node, last name). A trailing
        slash makes the last component resolve to a directory (returned as (it, ".")), unless
        keep_slash: calls that create or remove the last name (mkdir, rmdir, rename) take it as
        a name and check the slash themselves, as Linux does."""
        if not path:
            raise SyscallError(ENOENT)
        if len(path) >= 4096:
            raise SyscallError(ENAMETOOLONG)
        node: Node = self.fs.root_ino if path.startswith(b"/") else cwd
        parts = [p for p in path.split(b"/") if p]
        if not parts:
            return node, b"."
        trailing_slash = path.endswith(b"/")
        for comp in parts[:-1]:
            if len(comp) > 255:
                raise SyscallError(ENAMETOOLONG)
            node = self._step(node, comp, _depth)
        last = parts[-1]
        if len(last) > 255:
            raise SyscallError(ENAMETOOLONG)
        if trailing_slash and last not in (b".", b"..") and not keep_slash:
            # "dir/" must name a directory: resolve it fully and hand back "."
            node = self._step(node, last, _depth)
            self._require_dir(node)
            return node, b"."
        self._require_dir(node)
        return node, last

    def _step(self, node: Node, comp: bytes, depth: int) -> Node:
        self._require_dir(node)
        if comp == b".":
            return node
        nxt = self.lookup(node, comp)
        if isinstance(nxt, int) and S.S_ISLNK(self.fs.stat(nxt).mode):
            if depth >= MAX_SYMLINKS:
                raise SyscallError(ELOOP)
            self.relatime(nxt, self.fs.stat(nxt))
            nxt = self.resolve(self.fs.readlink(nxt), node, follow=True, _depth=depth + 1)
        return nxt

    def _require_dir(self, node: Node) -> None:
        if node == DEV_DIR or (isinstance(node, sysfs.SysNode) and node.is_dir):
            return
        if not isinstance(node, int) or not S.S_ISDIR(self.fs.stat(node).mode):
            raise SyscallError(ENOTDIR)

    def is_dir(self, node: Node) -> bool:
        return (node == DEV_DIR or (isinstance(node, int) and S.S_ISDIR(self.fs.stat(node).mode))
                or (isinstance(node, sysfs.SysNode) and node.is_dir))

    # --- attributes -----------------------------------------------------------------------------
    def stat_node(self, node: Node) -> Stat:
        if node == DEV_DIR:
            return Stat(ino=1, mode=S.S_IFDIR | 0o755, nlink=2, dev=0x5, atime=0, mtime=0, ctime=0)
        if isinstance(node, DevNode):
            kind = S.S_IFBLK | 0o660 if node.major == PMEM_MAJOR else S.S_IFCHR | 0o666
            return Stat(ino=100 + node.minor + 16 * node.major, mode=kind, rdev=node.rdev, dev=0x5)
        if isinstance(node, str):
            return Stat(ino=3, mode=S.S_IFLNK | 0o777, dev=0x5)
        if isinstance(node, sysfs.SysNode):
            return sysfs.stat(node)
        st = self.fs.stat(node)
        self.on_file_read(node)
        return Stat(ino=st.ino, mode=st.mode, nlink=st.nlink, uid=st.uid, gid=st.gid, size=st.size,
                    atime=st.atime, mtime=st.mtime, ctime=st.ctime, blocks=st.blocks, rdev=st.rdev,
                    blksize=self.fs.block_size)

    def relatime(self, ino: int, st: object) -> None:
        """Linux's default atime rule: update when atime is not newer than mtime/ctime, or is a
        day old."""
        atime = st.atime  # type: ignore[attr-defined]
        if atime <= st.mtime or atime <= st.ctime or self.now() - atime >= 24 * 3600:  # type: ignore[attr-defined]
            self.fs.touch_atime(ino)

    # --- opening --------------------------------------------------------------------------------
    def open_node(self, node: Node, flags: int, path: bytes) -> OpenFile:
        if node == DEV_DIR:
            return DevDirFile(self, flags)
        if isinstance(node, DevNode):
            if node.major == PMEM_MAJOR:
                return PmemFile(self, node, self.pmem[node.name], flags)
            return DevFile(self, node, flags)
        if isinstance(node, str):
            raise SyscallError(ENOENT)  # fd aliases are handled by the caller
        if isinstance(node, sysfs.SysNode):
            return sysfs.open_node(node, flags)
        st = self.fs.stat(node)
        if S.S_ISDIR(st.mode) and ((flags & O_ACCMODE) != O_RDONLY or flags & O_TRUNC):
            raise SyscallError(EISDIR)  # O_TRUNC asks for write access
        if flags & O_DIRECTORY and not S.S_ISDIR(st.mode):
            raise SyscallError(ENOTDIR)
        if S.S_ISFIFO(st.mode) or S.S_ISSOCK(st.mode):
            raise SyscallError(EACCES)
        f = InodeFile(self, node, flags, path)
        if flags & O_TRUNC and S.S_ISREG(st.mode):  # even O_RDONLY or empty (mtime), as Linux
            self.on_file_write(node)
            self.fs.truncate(node, 0)
            self.on_data_change(node, 0)
        return f

    def close_inode(self, ino: int) -> None:
        n = self.open_count.get(ino, 0) - 1
        if n <= 0:
            self.open_count.pop(ino, None)
            try:
                self.maybe_release(ino)
            except SyscallError:  # corrupt metadata (logged by the driver): the inode stays, as
                pass              # Linux's eviction cannot fail either
        else:
            self.open_count[ino] = n

    def maybe_release(self, ino: int) -> None:
        if self.open_count.get(ino, 0) == 0 and self.fs.stat(ino).nlink == 0:
            self.fs.release(ino)

    def readdir(self, f: OpenFile, pos: int) -> tuple[list[tuple[int, bytes, int, int]], int]:
        """The entries of an open directory from position `pos` on, each as (position, name, ino,
        d_type), and the position after the last one. ext2 positions are byte offsets into the
        directory (as Linux's ext2_readdir); /dev and /sys count entries (as dcache_readdir)."""
        if isinstance(f, DevDirFile):
            ents = [(b".", 1, DT_DIR), (b"..", self.fs.root_ino, DT_DIR)]
            ents += [(n.encode(), self.stat_node(d).ino, DT_BLK if d.major == PMEM_MAJOR else DT_CHR)
                     for n, d in self.devices.items()]
            ents += [(n.encode(), 3, DT_LNK) for n in FD_ALIASES]
            return _counted(ents, pos)
        if isinstance(f, sysfs.SysDirFile):
            return _counted(sysfs.readdir(f, self.fs.root_ino), pos)
        assert isinstance(f, InodeFile)
        size = self.fs.stat(f.ino).size
        if pos >= size:
            return [], pos  # at or past the end the position stays (Linux's ext4 driver, which
                            # mounts ext2 on Debian's kernels and is the reference we test against)
        ents = self.fs.dir_stream(f.ino, pos)
        end = size
        if f.ino == self.fs.root_ino:  # the mount points /dev and /sys, when the image lacks them
            for name, ino in ((b"dev", 1), (b"sys", sysfs.stat(sysfs.ROOT).ino)):
                if not any(n == name for _, n, _, _ in self.fs.dir_stream(f.ino)):
                    ents.append((end, name, ino, DT_DIR))
                    end += 1
        return ents, end


def _counted(ents: list[tuple[bytes, int, int]], pos: int) -> tuple[list[tuple[int, bytes, int, int]], int]:
    return [(i, n, ino, dt) for i, (n, ino, dt) in enumerate(ents) if i >= pos], max(pos, len(ents))


def _fs_error(e: Exception) -> SyscallError:
    err = getattr(e, "errno", None)
    if isinstance(err, int):
        return SyscallError(err, str(e))
    raise e


from guestkernel import sysfs  # noqa: E402  (sysfs's files build on OpenFile above)
