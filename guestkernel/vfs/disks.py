"""The machine's extra disks (`[[disk]]` entries, `emu run --disk PATH`): /dev/vdb, /dev/vdc, ...,
block devices over the host's image files (hw/blockdev.py), named and numbered as Linux names
virtio-blk disks (major 254, 16 minors per disk; vda would be the first, the root here is
/dev/root). mount(2) takes them as it takes a bound loop device (syscalls/mount.py): the mounted
file system has its own page cache over the device, whose reads and write-back the disk's own
timing model times (hw/disktiming.py: storage.disk), and each write that reaches the disk is a
persistence event, as the root disk's. Opened directly (mke2fs, e2fsck, dd), a disk reads and
writes at byte offsets, each read or write one request for the 4 KiB blocks it spans; a disk
attached read-only refuses writes with EPERM (blkdev_write_iter) and mounts read-only."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from guestkernel.errors import EBADF, SyscallError
from guestkernel.vfs.devices import VIRTBLK_MAJOR, BlockDevFile, DevNode, block_ioctl, describe_block
from guestkernel.vfs.file import Stat

if TYPE_CHECKING:
    from guestkernel.kernel import Kernel
    from guestkernel.process import Process
    from guestkernel.vfs.core import VFS
    from hw.blockdev import BlockDevice
    from hw.clock import Clock

MAX_DISKS = 15          # vdb .. vdp: minors up to 240 in emu's 8-bit minor
BLOCK = 4096            # the unit a direct access is charged in


@dataclass
class Disk:
    """One extra disk: the machine's BlockDevice, as the kernel holds it."""

    number: int                     # 0: vdb
    blockdev: "BlockDevice"
    read_only: bool
    holders: int = 0                # mounts on it

    @property
    def node(self) -> DevNode:
        return DevNode("vd" + chr(ord("b") + self.number), VIRTBLK_MAJOR, 16 * (self.number + 1))

    @property
    def rdev(self) -> int:
        return self.node.rdev

    @property
    def size_bytes(self) -> int:
        return self.blockdev.size_bytes

    def read_at(self, offset: int, n: int) -> bytes:
        return self.blockdev.read_at(offset, n)


class DiskDriver:
    """The extra disks of one kernel, in /dev and /sys."""

    def __init__(self, vfs: "VFS", disks: "list[tuple[BlockDevice, bool]]", clock: "Clock | None") -> None:
        if len(disks) > MAX_DISKS:
            raise ValueError(f"at most {MAX_DISKS} extra disks (vdb .. vdp), not {len(disks)}")
        self.vfs = vfs
        self.clock = clock  # charged the time of direct I/O
        self.disks = {16 * (i + 1): Disk(i, dev, ro) for i, (dev, ro) in enumerate(disks)}
        sysfs = vfs.pseudo.get("sys")
        for d in self.disks.values():
            vfs.devices[d.node.name] = d.node
            if sysfs is not None:
                describe_block(sysfs, d.node, lambda d=d: d.size_bytes, lambda d=d: d.read_only)  # type: ignore[misc, arg-type]

    def unheld(self, disk: Disk) -> None:
        disk.holders -= 1


class DiskFile(BlockDevFile):
    """An open /dev/vdX: the disk's bytes at offsets, and the generic block ioctls."""

    kind = "dev"

    def __init__(self, vfs: "VFS", disk: Disk, flags: int) -> None:
        super().__init__(flags)
        self.vfs = vfs
        self.disk = disk
        self.offset = 0

    def _charge(self, offset: int, n: int, write: bool) -> None:
        """One request of the blocks [offset, offset + n) spans, timed by the disk's model."""
        clock = self.vfs.disks.clock
        if n and clock is not None:
            first = offset // BLOCK
            count = (offset + n - 1) // BLOCK - first + 1
            clock.charge(self.disk.blockdev.timing.request(first, count, BLOCK, write, clock.uptime_ns()))

    def stat(self) -> Stat:
        return self.vfs.stat_node(self.disk.node)

    def pread(self, n: int, offset: int) -> bytes:
        if not self.readable:
            raise SyscallError(EBADF)
        n = max(0, min(n, self.disk.size_bytes - offset))
        self._charge(offset, n, False)
        return self.disk.blockdev.read_at(offset, n) if n else b""

    def pwrite(self, data: bytes, offset: int) -> int:
        n = self.write_span(data, offset, self.disk.read_only)
        self._charge(offset, n, True)
        self.disk.blockdev.write_at(offset, bytes(data[:n]))
        return n

    def size(self) -> int:
        return self.disk.size_bytes

    def ioctl(self, k: "Kernel", p: "Process", req: int, arg: int) -> int:
        return block_ioctl(p, self.disk.size_bytes, self.disk.read_only, req, arg)
