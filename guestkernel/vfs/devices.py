"""Devices: the /dev directory the kernel lays over the image (null, zero, full, random, urandom,
tty, console, the pmem regions, and stdin/stdout/stderr as aliases of descriptors 0-2), the open
files of those nodes, and the console files a process is booted with."""
from __future__ import annotations

import stat as S
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from guestkernel.errors import EBADF, EFAULT, EINVAL, ENOSPC, ENOTTY, EOPNOTSUPP, EPERM, SyscallError
from guestkernel.vfs.file import OpenFile, Stat, counted_dir_seek

if TYPE_CHECKING:
    from guestkernel.process import Process
    from guestkernel.pseudofs.sysfs import SysFS
    from guestkernel.vfs.core import VFS
    from guestkernel.vfs.lookup import Node


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
LOOP_MAJOR = 7    # loop devices (vfs/loop.py)
VIRTBLK_MAJOR = 254  # the machine's extra disks, vdb onwards (vfs/disks.py), as virtio-blk's
BLOCK_MAJORS = (PMEM_MAJOR, LOOP_MAJOR, VIRTBLK_MAJOR)
SECTOR = 512
# linux/fs.h block-device ioctls
BLKROGET, BLKGETSIZE, BLKFLSBUF, BLKSSZGET = 0x125E, 0x1260, 0x1261, 0x1268
BLKDISCARD, BLKIOMIN, BLKIOOPT, BLKALIGNOFF, BLKPBSZGET, BLKDISCARDZEROES = 0x1277, 0x1278, 0x1279, 0x127A, 0x127B, 0x127C
BLKGETSIZE64 = 0x80081272
BLKGETZONESZ = 0x80041284


def describe_block(sysfs: "SysFS", node: DevNode, size: Callable[[], int], read_only: Callable[[], bool],
                   present: Callable[[], bool] | None = None) -> str:
    """A block device's /sys/block/NAME and /sys/dev/block/MAJ:MIN as Linux shows them (what
    losetup, mount and mke2fs read); returns the directory below /sys. `present`: while it is
    there (a removed loop device goes)."""
    from guestkernel.pseudofs.sysfs import Link

    at = f"block/{node.name}"
    sysfs.add(f"dev/block/{node.major}:{node.minor}", Link(f"../../{at}".encode()), when=present)
    sysfs.add(at, None, when=present)
    sysfs.add(f"{at}/dev", f"{node.major}:{node.minor}\n".encode())
    sysfs.add(f"{at}/size", lambda: b"%d\n" % (size() // SECTOR))
    sysfs.add(f"{at}/ro", lambda: b"%d\n" % read_only())
    sysfs.add(f"{at}/removable", b"0\n")
    sysfs.add(f"{at}/alignment_offset", b"0\n")
    for name, value in (("logical_block_size", SECTOR), ("physical_block_size", SECTOR),
                        ("minimum_io_size", SECTOR), ("optimal_io_size", 0), ("dax", 0), ("rotational", 0)):
        sysfs.add(f"{at}/queue/{name}", b"%d\n" % value)
    return at


@dataclass(frozen=True)
class PmemRegion:
    """A persistent range of the memory map, offered to the guest as /dev/<name>."""

    name: str
    base_gpa: int
    size: int


DEV_DIR = "devdir"  # the node of /dev itself


def alias_fd(node: Node) -> int | None:
    """The descriptor that /dev/stdin, /dev/stdout or /dev/stderr (node "fd:NAME") names; None for
    any other node (DEV_DIR is a str too)."""
    if isinstance(node, str) and node.startswith("fd:"):
        return FD_ALIASES[node[3:]]
    return None


class BlockDevFile(OpenFile):
    """An open block device (pmem, loop): each device's pread/pwrite at byte offsets; read and
    write at the file's offset, lseek's SEEK_END at the device's size."""

    positional = True

    def size(self) -> int:
        raise NotImplementedError

    def write_span(self, data: bytes, offset: int, read_only: bool) -> int:
        """How many of `data`'s bytes a write at `offset` may put on the device (blkdev_write_iter's
        checks): EBADF not open for writing, EPERM read-only, ENOSPC wholly past the end."""
        if not self.writable:
            raise SyscallError(EBADF)
        if read_only:
            raise SyscallError(EPERM)
        n = max(0, min(len(data), self.size() - offset))
        if n == 0 and data:
            raise SyscallError(ENOSPC)  # past the end of a block device
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
        base = {0: 0, 1: self.offset, 2: self.size()}.get(whence)
        if base is None or base + offset < 0:
            raise SyscallError(EINVAL)
        self.offset = base + offset
        return self.offset


class PmemFile(BlockDevFile):
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

    def size(self) -> int:
        return self.region.size

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


def block_ioctl(p: "Process", size: int, read_only: bool, req: int, arg: int) -> int:
    """The generic block-device ioctls (block/ioctl.c) a tool asks of any disk."""
    out = p.mm.copy_out
    if arg == 0 and req not in (BLKFLSBUF,):
        raise SyscallError(EFAULT)
    if req == BLKGETSIZE64:
        out(arg, struct.pack("<Q", size))
    elif req == BLKGETSIZE:
        out(arg, struct.pack("<Q", size // SECTOR))
    elif req in (BLKSSZGET, BLKPBSZGET, BLKIOMIN):
        out(arg, struct.pack("<i", SECTOR))
    elif req in (BLKIOOPT, BLKALIGNOFF, BLKDISCARDZEROES):
        out(arg, struct.pack("<i", 0))
    elif req == BLKROGET:
        out(arg, struct.pack("<i", int(read_only)))
    elif req == BLKGETZONESZ:
        out(arg, struct.pack("<I", 0))
    elif req == BLKFLSBUF:
        return 0
    elif req == BLKDISCARD:
        raise SyscallError(EOPNOTSUPP)  # the backing ext2 cannot punch holes (no fallocate)
    else:
        raise SyscallError(ENOTTY)
    return 0
