"""The mount table: ext2 file systems mounted on block devices (the root device, loop devices),
and the one file-system face the VFS calls, which sends each call to the mount a node is on.

A node of a mounted file system is its inode number with the mount's id above bit 32
(`node = mid << 32 | ino`); the root file system is mount 0, so its nodes are plain inode numbers
and everything that only ever sees the root file system is unchanged. Calls that name two
directories (rename, link) across mounts fail with EXDEV, writes to a read-only mount with EROFS,
as Linux's VFS does. Crossing mount points (a covered directory leads to the mounted root, `..`
of a mounted root to the covered directory's parent) is the VFS's work (vfs/lookup.py), with
`covered` and `point_of` from here.

Each mount has its own page cache over its device and its own inode cache (the Ext2 instance's
slab objects); the kernel reclaims, syncs and drops every mount's cache (Kernel.caches()).
"""
from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from guestkernel.ext2.fserror import FsError

if TYPE_CHECKING:
    from guestkernel.ext2 import Ext2
    from guestkernel.pagecache import PageCache

MID_SHIFT = 32
INO_MASK = (1 << MID_SHIFT) - 1
MS_RDONLY = 1
ROOT_DEVICE = b"/dev/root"  # the machine's disk, as /proc/mounts names a root= device
ROOT_RDEV = 0x801           # its st_dev (8:1), as stat has always reported for the root


@dataclass
class Mount:
    mid: int
    fs: "Ext2"
    cache: "PageCache"
    source: bytes          # the device as mount(2) named it (/dev/loop3; /dev/vda for the root)
    target: bytes          # where it is mounted, as an absolute path
    rdev: int              # the device number its files report as st_dev
    flags: int = 0         # MS_RDONLY ...
    point: int | None = None   # the covered directory's node (None for the root file system)
    device: Any = None     # what the page cache reads: the machine's disk, or a LoopDevice
    buffers: list[tuple[int, int]] = field(default_factory=list)  # (gpfn, order) per-mount buffers

    @property
    def root(self) -> int:
        return self.mid << MID_SHIFT | self.fs.root_ino

    @property
    def read_only(self) -> bool:
        return bool(self.flags & MS_RDONLY)


def mid_of(node: int) -> int:
    return node >> MID_SHIFT


class MountTable:
    """The mounted file systems by id, the covered directories, and the ext2 calls by node."""

    def __init__(self, root: Mount) -> None:
        self.rootfs = root.fs
        self.mounts: dict[int, Mount] = {0: root}
        self.covered: dict[int, int] = {}  # covered directory node -> root node of what is on it
        self.next_mid = 1
        self.root_ino = root.fs.root_ino

    # --- the table --------------------------------------------------------------------------------
    def of(self, node: int) -> Mount:
        return self.mounts[node >> MID_SHIFT]

    def add(self, m: Mount) -> None:
        assert m.point is not None
        self.mounts[m.mid] = m
        self.covered[m.point] = m.root

    def remove(self, m: Mount) -> None:
        del self.mounts[m.mid]
        if m.point is not None:
            del self.covered[m.point]

    def new_id(self) -> int:
        mid = self.next_mid
        self.next_mid += 1
        return mid

    def in_order(self) -> list[Mount]:
        return [self.mounts[k] for k in sorted(self.mounts)]

    def caches(self) -> list["PageCache"]:
        return [m.cache for m in self.in_order()]

    def is_mount_root(self, node: int) -> bool:
        return node >> MID_SHIFT != 0 and node & INO_MASK == self.root_ino

    # --- ext2 by node ---------------------------------------------------------------------------
    def _at(self, node: int) -> tuple["Ext2", int]:
        if node <= INO_MASK:
            return self.rootfs, node
        return self.mounts[node >> MID_SHIFT].fs, node & INO_MASK

    def _writable(self, node: int) -> tuple["Ext2", int]:
        if node > INO_MASK and self.mounts[node >> MID_SHIFT].read_only:
            raise FsError(errno.EROFS, "read-only file system")
        return self._at(node)

    def _pair(self, a: int, b: int) -> tuple["Ext2", int, int]:
        if a >> MID_SHIFT != b >> MID_SHIFT:
            raise FsError(errno.EXDEV, "cross-device link")
        fs, ia = self._writable(a)
        return fs, ia, b & INO_MASK

    def stat(self, node: int):  # type: ignore[no-untyped-def]
        fs, ino = self._at(node)
        return fs.stat(ino)

    def read(self, node: int, offset: int, n: int) -> bytes:
        fs, ino = self._at(node)
        return fs.read(ino, offset, n)

    def write(self, node: int, offset: int, data: bytes | bytearray | memoryview) -> int:
        fs, ino = self._writable(node)
        return fs.write(ino, offset, data)

    def truncate(self, node: int, size: int) -> None:
        fs, ino = self._writable(node)
        fs.truncate(ino, size)

    def lookup(self, dir_node: int, name: bytes) -> int:
        fs, ino = self._at(dir_node)
        return (dir_node & ~INO_MASK) | fs.lookup(ino, name)

    def readlink(self, node: int) -> bytes:
        fs, ino = self._at(node)
        return fs.readlink(ino)

    def readdir(self, node: int) -> list[tuple[bytes, int, int]]:
        fs, ino = self._at(node)
        return fs.readdir(ino)

    def dir_stream(self, node: int, pos: int = 0) -> list[tuple[int, bytes, int, int]]:
        fs, ino = self._at(node)
        return fs.dir_stream(ino, pos)

    def seek_data(self, node: int, offset: int, data: bool) -> int:
        fs, ino = self._at(node)
        return fs.seek_data(ino, offset, data)

    def bmap(self, node: int, file_block: int) -> int:
        fs, ino = self._at(node)
        return fs.bmap(ino, file_block)

    def map_block(self, node: int, file_block: int) -> int:
        fs, ino = self._at(node)
        return fs.map_block(ino, file_block)

    def touch_atime(self, node: int) -> None:
        if node > INO_MASK and self.mounts[node >> MID_SHIFT].read_only:
            return
        fs, ino = self._at(node)
        fs.touch_atime(ino)

    def utimes(self, node: int, atime: int | None, mtime: int | None) -> None:
        fs, ino = self._writable(node)
        fs.utimes(ino, atime, mtime)

    def chmod(self, node: int, mode: int) -> None:
        fs, ino = self._writable(node)
        fs.chmod(ino, mode)

    def chown(self, node: int, uid: int, gid: int) -> None:
        fs, ino = self._writable(node)
        fs.chown(ino, uid, gid)

    def release(self, node: int) -> None:
        fs, ino = self._at(node)
        fs.release(ino)

    def create(self, dir_node: int, name: bytes, mode: int, uid: int, gid: int) -> int:
        fs, ino = self._writable(dir_node)
        return (dir_node & ~INO_MASK) | fs.create(ino, name, mode, uid, gid)

    def mkdir(self, dir_node: int, name: bytes, mode: int, uid: int, gid: int) -> int:
        fs, ino = self._writable(dir_node)
        return (dir_node & ~INO_MASK) | fs.mkdir(ino, name, mode, uid, gid)

    def symlink(self, dir_node: int, name: bytes, target: bytes, uid: int, gid: int) -> int:
        fs, ino = self._writable(dir_node)
        return (dir_node & ~INO_MASK) | fs.symlink(ino, name, target, uid, gid)

    def mknod(self, dir_node: int, *args: Any) -> int:
        fs, ino = self._writable(dir_node)
        return (dir_node & ~INO_MASK) | fs.mknod(ino, *args)

    def _not_covered(self, dir_node: int, name: bytes) -> None:
        """A mount point (or a mounted root) cannot be removed or renamed: EBUSY."""
        if self.covered and name not in (b".", b".."):
            try:
                child = self.lookup(dir_node, name)
            except FsError:
                return
            if child in self.covered:
                raise FsError(errno.EBUSY, "mount point busy")

    def unlink(self, dir_node: int, name: bytes) -> int:
        fs, ino = self._writable(dir_node)
        return (dir_node & ~INO_MASK) | fs.unlink(ino, name)

    def rmdir(self, dir_node: int, name: bytes) -> None:
        self._not_covered(dir_node, name)
        fs, ino = self._writable(dir_node)
        fs.rmdir(ino, name)

    def link(self, dir_node: int, name: bytes, node: int) -> None:
        fs, d, ino = self._pair(dir_node, node)
        fs.link(d, name, ino)

    def rename(self, old_dir: int, old_name: bytes, new_dir: int, new_name: bytes) -> int:
        fs, a, b = self._pair(old_dir, new_dir)
        self._not_covered(old_dir, old_name)
        self._not_covered(new_dir, new_name)
        victim = fs.rename(a, old_name, b, new_name)
        return (old_dir & ~INO_MASK) | victim if victim else 0

    def exchange(self, old_dir: int, old_name: bytes, new_dir: int, new_name: bytes) -> None:
        fs, a, b = self._pair(old_dir, new_dir)
        self._not_covered(old_dir, old_name)
        self._not_covered(new_dir, new_name)
        fs.exchange(a, old_name, b, new_name)

    def statfs(self, node: int = 0) -> dict[str, int]:
        return self._at(node)[0].statfs()

    def sync(self) -> None:
        """Every mount's dirty blocks to its device, mounted file systems first (their devices'
        writes land in the root file system's cache), the root last."""
        for m in reversed(self.in_order()):
            m.fs.sync()
