"""Loop devices (Linux's drivers/block/loop.c): /dev/loopN, a block device whose blocks are the
bytes of a file, and /dev/loop-control, which hands out free ones; with the ioctls util-linux's
losetup and e2fsprogs use.

A bound loop device holds the open file it was given (LOOP_SET_FD / LOOP_CONFIGURE take a
reference, as Linux keeps the struct file), so the file lives on while it is bound. Its reads and
writes go through that file, i.e. through the page cache of the file system holding it: a file
system mounted on a loop device has its own page cache over the device, and the backing file's
blocks are cached again below it, as in Linux without direct I/O. A device's I/O costs no block
time of its own: the backing file system's cache charges a block read when it misses.

Devices 0-7 exist from boot (CONFIG_BLK_DEV_LOOP_MIN_COUNT = 8); LOOP_CTL_GET_FREE makes the
next one (the lowest free number) when all are bound, LOOP_CTL_ADD makes a given one, and its node
appears in /dev (devtmpfs) and /sys; LOOP_CTL_REMOVE deletes an unbound device nobody has open.
"""
from __future__ import annotations

import stat as S
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from guestkernel.errors import (EBADF, EBUSY, EEXIST, EINVAL, ENODEV, ENOTTY, ENXIO, SyscallError)
from guestkernel.vfs.devices import LOOP_MAJOR, SECTOR, BlockDevFile, DevNode, block_ioctl, describe_block
from guestkernel.vfs.file import InodeFile, OpenFile, Stat
from hw.blockdev import BlockDeviceStats

if TYPE_CHECKING:
    from guestkernel.kernel import Kernel
    from guestkernel.pseudofs.sysfs import SysFS
    from guestkernel.process import Process
    from guestkernel.vfs.core import VFS

MISC_MAJOR, LOOP_CTRL_MINOR = 10, 237
MIN_COUNT = 8
MAX_LOOPS = 256  # minors 0-255 (Linux allows 2**20; emu's device numbers keep 8 bits of minor)

# linux/loop.h
LOOP_SET_FD, LOOP_CLR_FD, LOOP_SET_STATUS, LOOP_GET_STATUS = 0x4C00, 0x4C01, 0x4C02, 0x4C03
LOOP_SET_STATUS64, LOOP_GET_STATUS64, LOOP_CHANGE_FD, LOOP_SET_CAPACITY = 0x4C04, 0x4C05, 0x4C06, 0x4C07
LOOP_SET_DIRECT_IO, LOOP_SET_BLOCK_SIZE, LOOP_CONFIGURE = 0x4C08, 0x4C09, 0x4C0A
LOOP_CTL_ADD, LOOP_CTL_REMOVE, LOOP_CTL_GET_FREE = 0x4C80, 0x4C81, 0x4C82
LO_FLAGS_READ_ONLY, LO_FLAGS_AUTOCLEAR, LO_FLAGS_PARTSCAN = 1, 4, 8
LO_NAME_SIZE = 64
# struct loop_info64: device, inode, rdevice, offset, sizelimit (u64); number, encrypt_type,
# encrypt_key_size, flags (u32); file_name, crypt_name (64 bytes), encrypt_key (32), init (2 x u64)
INFO64 = struct.Struct("<QQQQQIIII64s64s32s2Q")
CONFIG = struct.Struct("<II")  # struct loop_config: fd, block_size, then loop_info64, 8 x u64
CONFIG_SIZE = CONFIG.size + INFO64.size + 64



@dataclass
class LoopDevice:
    """/dev/loopN: unbound, or bound to an open file (from byte `offset`, at most `sizelimit`)."""

    number: int
    file: InodeFile | None = None
    offset: int = 0
    sizelimit: int = 0
    flags: int = 0
    name: bytes = b""     # lo_file_name: the path losetup gave
    backing: bytes = b""  # the backing file's absolute path when it was bound (sysfs backing_file)
    holders: int = 0      # mounts on it: LOOP_CLR_FD then only asks for autoclear
    opens: int = 0        # open files of /dev/loopN (LOOP_CTL_REMOVE refuses an open device)
    removed: bool = False  # deleted by LOOP_CTL_REMOVE: gone from /dev and /sys

    def __post_init__(self) -> None:
        self.stats = BlockDeviceStats()
        self.on_write = lambda: None  # (the BlockDevice face the page cache uses)

    @property
    def node(self) -> DevNode:
        return DevNode(f"loop{self.number}", LOOP_MAJOR, self.number)

    @property
    def rdev(self) -> int:
        return self.node.rdev

    @property
    def size_bytes(self) -> int:
        if self.file is None:
            return 0
        size = max(0, self.file.vfs.fs.stat(self.file.ino).size - self.offset)
        if self.sizelimit:
            size = min(size, self.sizelimit)
        return size // SECTOR * SECTOR

    @property
    def read_only(self) -> bool:
        return bool(self.flags & LO_FLAGS_READ_ONLY)

    def read_at(self, offset: int, n: int) -> bytes:
        if self.file is None:
            raise OSError(f"loop{self.number} is not bound")
        n = max(0, min(n, self.size_bytes - offset))
        data = self.file.pread(n, self.offset + offset)
        self.stats.reads += 1
        self.stats.bytes_read += len(data)
        return data.ljust(n, b"\0")  # a hole at the end of a file reads as zeros

    def write_at(self, offset: int, data: bytes | memoryview) -> None:
        if self.file is None or self.read_only:
            raise OSError(f"loop{self.number}: write to an unbound or read-only device")
        if offset + len(data) > self.size_bytes:
            raise OSError(f"write beyond the end of loop{self.number}")
        self.file.pwrite(bytes(data), self.offset + offset)
        self.stats.writes += 1
        self.stats.bytes_written += len(data)

    def info64(self) -> bytes:
        f = self.file
        assert f is not None
        st = f.stat()
        return INFO64.pack(st.dev, st.ino, 0, self.offset, self.sizelimit, self.number, 0, 0, self.flags,
                           self.name[:LO_NAME_SIZE - 1], b"", b"", 0, 0)


class LoopDriver:
    """The loop devices of one kernel."""

    def __init__(self, vfs: "VFS") -> None:
        self.vfs = vfs
        self.devices: dict[int, LoopDevice] = {}  # by minor number (a removed one leaves a gap)
        vfs.devices["loop-control"] = DevNode("loop-control", MISC_MAJOR, LOOP_CTRL_MINOR)
        for _ in range(MIN_COUNT):
            self.add()

    def add(self, number: int | None = None) -> LoopDevice:
        """Device `number`, or the lowest number not in use (Linux's idr_alloc)."""
        if number is None:
            number = next(i for i in range(len(self.devices) + 1) if i not in self.devices)
        dev = LoopDevice(number)
        self.devices[number] = dev
        self.vfs.devices[dev.node.name] = dev.node
        sysfs = self.vfs.pseudo.get("sys")
        if sysfs is not None:
            self.describe(sysfs, dev)  # type: ignore[arg-type]
        return dev

    @staticmethod
    def describe(sysfs: "SysFS", dev: LoopDevice) -> None:
        """The device in /sys as Linux shows it (what losetup -a and mke2fs read)."""
        at = describe_block(sysfs, dev.node, lambda: dev.size_bytes, lambda: dev.read_only,
                            present=lambda: not dev.removed)
        bound = lambda: dev.file is not None  # noqa: E731
        sysfs.add(f"{at}/loop", None, when=bound)
        sysfs.add(f"{at}/loop/backing_file", lambda: dev.backing + b"\n")
        sysfs.add(f"{at}/loop/offset", lambda: b"%d\n" % dev.offset)
        sysfs.add(f"{at}/loop/sizelimit", lambda: b"%d\n" % dev.sizelimit)
        sysfs.add(f"{at}/loop/autoclear", lambda: b"%d\n" % bool(dev.flags & LO_FLAGS_AUTOCLEAR))
        sysfs.add(f"{at}/loop/partscan", lambda: b"%d\n" % bool(dev.flags & LO_FLAGS_PARTSCAN))
        sysfs.add(f"{at}/loop/dio", b"0\n")

    def get_free(self) -> int:
        for number in sorted(self.devices):
            if self.devices[number].file is None:
                return number
        if len(self.devices) >= MAX_LOOPS:
            raise SyscallError(ENXIO)
        return self.add().number

    def remove(self, number: int) -> None:
        """LOOP_CTL_REMOVE (loop_control_remove): an unbound device that no one has open."""
        if number < 0:
            raise SyscallError(EINVAL)
        dev = self.devices.get(number)
        if dev is None:
            raise SyscallError(ENODEV)
        if dev.file is not None or dev.opens or dev.holders:
            raise SyscallError(EBUSY)
        dev.removed = True
        del self.devices[number]
        del self.vfs.devices[dev.node.name]

    # --- binding ----------------------------------------------------------------------------------
    def bind(self, p: "Process", dev: LoopDevice, f: OpenFile, info: bytes | None, writable_open: bool) -> None:
        if dev.file is not None:
            raise SyscallError(EBUSY)
        if not isinstance(f, InodeFile) or not S.S_ISREG(f.stat().mode):
            raise SyscallError(EINVAL)
        f.refs += 1
        dev.file, dev.offset, dev.sizelimit, dev.flags, dev.name = f, 0, 0, 0, f.path[:LO_NAME_SIZE - 1]
        dev.backing = f.path if f.path.startswith(b"/") else self.vfs.node_path(p.cwd).rstrip(b"/") + b"/" + f.path
        if not f.writable or not writable_open:
            dev.flags |= LO_FLAGS_READ_ONLY
        if info is not None:
            self.set_status(dev, info)

    def set_status(self, dev: LoopDevice, info: bytes) -> None:
        (_d, _i, _r, offset, sizelimit, _n, enc, _ks, flags, name, _c, _k, _a, _b) = INFO64.unpack(info)
        if enc:
            raise SyscallError(EINVAL)  # no cryptoloop, as Linux since 4.x
        dev.offset, dev.sizelimit = offset, sizelimit
        # Settable: autoclear, partscan (no partitions here), direct I/O; read-only stays.
        dev.flags = (dev.flags & LO_FLAGS_READ_ONLY) | (flags & (LO_FLAGS_AUTOCLEAR | LO_FLAGS_PARTSCAN))
        dev.name = name.split(b"\0", 1)[0]

    def clear(self, k: "Kernel", dev: LoopDevice) -> None:
        if dev.file is None:
            raise SyscallError(ENXIO)
        if dev.holders:  # mounted: cleared when the last holder goes (Linux's lazy autoclear)
            dev.flags |= LO_FLAGS_AUTOCLEAR
            return
        self.release(k, dev)

    def release(self, k: "Kernel", dev: LoopDevice) -> None:
        f, dev.file = dev.file, None
        dev.offset = dev.sizelimit = dev.flags = 0
        dev.name = dev.backing = b""
        if f is not None:
            k.drop_file(f)

    def unheld(self, k: "Kernel", dev: LoopDevice) -> None:
        """A mount on the device went away."""
        dev.holders -= 1
        if not dev.holders and dev.flags & LO_FLAGS_AUTOCLEAR and dev.file is not None:
            self.release(k, dev)


class LoopControlFile(OpenFile):
    """/dev/loop-control."""

    kind = "dev"

    def __init__(self, vfs: "VFS", node: DevNode, flags: int) -> None:
        super().__init__(flags)
        self.vfs = vfs
        self.node = node

    def stat(self) -> Stat:
        return self.vfs.stat_node(self.node)

    def ioctl(self, k: "Kernel", p: "Process", req: int, arg: int) -> int:
        loops = self.vfs.loops
        if req == LOOP_CTL_GET_FREE:
            return loops.get_free()
        if req == LOOP_CTL_ADD:
            if arg >= MAX_LOOPS:
                raise SyscallError(EINVAL)
            if arg in loops.devices:
                raise SyscallError(EEXIST)
            return loops.add(arg).number
        if req == LOOP_CTL_REMOVE:
            idx = arg & 0xFFFFFFFF  # loop_control_remove(int idx)
            loops.remove(idx - (1 << 32) if idx >= 1 << 31 else idx)
            return 0
        raise SyscallError(ENOTTY)


class LoopFile(BlockDevFile):
    """An open /dev/loopN: the device's bytes (read, write, seek) and its ioctls."""

    kind = "dev"

    def __init__(self, vfs: "VFS", dev: LoopDevice, flags: int) -> None:
        super().__init__(flags)
        self.vfs = vfs
        self.dev = dev
        self.offset = 0
        dev.opens += 1

    def stat(self) -> Stat:
        return self.vfs.stat_node(self.dev.node)

    def pread(self, n: int, offset: int) -> bytes:
        if not self.readable:
            raise SyscallError(EBADF)
        if self.dev.file is None:
            return b""  # an unbound loop device has no blocks
        return self.dev.read_at(offset, n) if offset < self.dev.size_bytes else b""

    def pwrite(self, data: bytes, offset: int) -> int:
        dev = self.dev
        if self.writable and dev.file is None:
            raise SyscallError(ENXIO)
        n = self.write_span(data, offset, dev.read_only)
        dev.write_at(offset, data[:n])
        return n

    def size(self) -> int:
        return self.dev.size_bytes

    def ioctl(self, k: "Kernel", p: "Process", req: int, arg: int) -> int:
        dev, loops = self.dev, self.vfs.loops
        out = p.mm.copy_out
        if req in (LOOP_SET_FD, LOOP_CONFIGURE):
            if req == LOOP_CONFIGURE:
                raw = p.mm.copy_in(arg, CONFIG_SIZE)
                fd, block_size = CONFIG.unpack_from(raw)
                if block_size not in (0, 512, 1024, 2048, 4096):
                    raise SyscallError(EINVAL)
                info: bytes | None = raw[CONFIG.size:CONFIG.size + INFO64.size]
            else:
                fd, info = arg, None
            loops.bind(p, dev, p.fds.get(fd), info, self.writable)
            return 0
        if req == LOOP_CLR_FD:
            loops.clear(k, dev)
            return 0
        if req in (LOOP_GET_STATUS64, LOOP_SET_STATUS64, LOOP_SET_CAPACITY, LOOP_SET_DIRECT_IO,
                   LOOP_SET_BLOCK_SIZE, LOOP_CHANGE_FD) and dev.file is None:
            raise SyscallError(ENXIO)
        if req == LOOP_GET_STATUS64:
            out(arg, dev.info64())
            return 0
        if req == LOOP_SET_STATUS64:
            loops.set_status(dev, p.mm.copy_in(arg, INFO64.size))
            return 0
        if req in (LOOP_SET_CAPACITY, LOOP_SET_BLOCK_SIZE):
            return 0  # the size follows the file at every request; blocks are 512 bytes here
        if req == LOOP_SET_DIRECT_IO:
            raise SyscallError(EINVAL)  # no direct I/O through the backing file system
        if req in (LOOP_GET_STATUS, LOOP_SET_STATUS, LOOP_CHANGE_FD):
            raise SyscallError(EINVAL)  # the old 32-bit struct: util-linux uses the 64-bit one
        return block_ioctl(p, dev.size_bytes, dev.read_only, req, arg)

    def close(self) -> None:
        self.dev.opens -= 1
