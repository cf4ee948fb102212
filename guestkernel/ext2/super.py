"""The mounted file system (Linux's fs/ext2/super.c): Ext2 checks the superblock and the group
descriptors at mount, keeps the descriptors and free counts in memory, and writes them back with
store_meta()/sync(); statfs. The operations come from one mixin per part of the driver."""
from __future__ import annotations

import errno
import stat as S
import struct
from collections import OrderedDict
from typing import Callable

from .. import ext2check
from ..blockcache import BlockCache
from .alloc import Allocation
from .blockmap import BlockMap
from .dir import Directories
from .file import FileData
from .fserror import FsError
from .inode import Inodes
from .layout import INCOMPAT_FILETYPE, N_DIRECT, NAME_MAX, ROOT_INO, RO_SPARSE_SUPER, Group, Inode, has_super, parse_super
from .namei import Namei


class Ext2(Namei, Directories, FileData, BlockMap, Inodes, Allocation):
    """An ext2 file system on a BlockCache, mounted: the driver's one entry point."""

    root_ino = ROOT_INO
    GD_SIZE = 32
    INODE_CACHE_MAX = 4096
    DENTRY_CACHE_MAX = 16384

    def __init__(self, cache: BlockCache, now: Callable[[], int], log: Callable[[str], None] | None = None) -> None:
        self.cache = cache
        self.now = now
        self.errors = ext2check.ErrorLog()  # corruption found after mount, once per line
        if log is not None:
            self.errors.sink = log
        bs = cache.block_size
        if bs < 1024 or bs & (bs - 1):
            raise FsError(errno.EINVAL, f"ext2: cache block size {bs} is invalid")
        sb_blk, self._sb_off = divmod(1024, bs)
        self._sb_blk = sb_blk
        sb = parse_super(bytes(cache.get(sb_blk)[self._sb_off:self._sb_off + 1024]))
        if sb["block_size"] != bs:
            raise FsError(errno.EINVAL, f"ext2: block size {sb['block_size']} != cache block size {bs}")
        ext2check.check_geometry(sb, getattr(cache, "nblocks", None))
        self.block_size = bs
        self.inode_size: int = sb["inode_size"]
        self.inodes_count: int = sb["inodes"]
        self.blocks_count: int = sb["blocks"]
        self.r_blocks: int = sb["r_blocks"]
        self.first_data: int = sb["first_data"]
        self.bpg: int = sb["bpg"]
        self.ipg: int = sb["ipg"]
        self.first_ino: int = sb["first_ino"]
        self.rev: int = sb["rev"]
        self.ro_compat: int = sb["ro"]
        self.has_filetype = bool(sb["incompat"] & INCOMPAT_FILETYPE)
        self.ngroups: int = sb["groups"]
        self._ptrs = bs // 4  # block pointers per indirect block
        self._b512 = bs // 512  # i_blocks units per block
        self._zero = bytes(bs)
        # dir ino -> (n, need): its first n blocks have no room for a record of `need` bytes
        # (so adding 8192 names to one directory is not quadratic); dropped on any removal.
        self._dir_full: dict[int, tuple[int, int]] = {}
        self._ind_fmt = struct.Struct(f"<{self._ptrs}I")
        self._itable_blocks = (self.ipg * self.inode_size + bs - 1) // bs
        # Max file size: addressable blocks, also bounded by 32-bit i_blocks.
        a = self._ptrs
        addressable = N_DIRECT + a + a * a + a * a * a
        limit = 0xFFFFFFFF // self._b512
        self.max_file_size = min(addressable, limit - self._meta_blocks(limit)) * bs
        if self.rev == 0:
            self.max_file_size = min(self.max_file_size, 2**31 - 1)
        # Group descriptors (kept in memory, flushed by sync()).
        gd_first = self.first_data + 1
        per_blk = bs // self.GD_SIZE
        self._gd_blocks = [gd_first + i for i in range((self.ngroups + per_blk - 1) // per_blk)]
        self._groups: list[Group] = []
        for g in range(self.ngroups):
            blk = self._gd_blocks[g // per_blk]
            off = (g % per_blk) * self.GD_SIZE
            raw = bytearray(cache.get(blk)[off:off + self.GD_SIZE])
            grp = Group(g, raw)
            first = self._group_start(g)
            bad = ext2check.check_descriptor(g, grp, first, first + self._group_nblocks(g) - 1, self._itable_blocks)
            if bad:
                raise FsError(errno.EINVAL, f"ext2: group descriptors corrupted: {bad}")
            if grp.free_blocks > self._group_nblocks(g) or grp.free_inodes > self.ipg or grp.used_dirs > self.ipg:
                self.errors.error("ext2_check_descriptors", f"group {g}: free counts out of range")
                grp.free_blocks = min(grp.free_blocks, self._group_nblocks(g))
                grp.free_inodes = min(grp.free_inodes, self.ipg)
                grp.used_dirs = min(grp.used_dirs, self.ipg)
            self._groups.append(grp)
        self.system_zone = self._system_zone()
        self._bitmaps_ok: set[int] = set()  # groups whose block bitmap passed the check
        self.free_blocks = sum(g.free_blocks for g in self._groups)
        self.free_inodes = sum(g.free_inodes for g in self._groups)
        self._meta_dirty = (self.free_blocks != sb["free_blocks"] or self.free_inodes != sb["free_inodes"])
        # The inode cache (write-through: an entry is never dirty) and the dentry cache of
        # positive lookups, (directory, name) -> inode, both in LRU order and shrinkable. Each
        # entry pins a kernel object (the kernel's slab: ext2_inode_cache, dentry); host-side
        # tools leave the object hooks as they are.
        self._icache: OrderedDict[int, Inode] = OrderedDict()
        self._iobj: dict[int, int] = {}
        self._dcache: OrderedDict[tuple[int, bytes], tuple[int, int]] = OrderedDict()
        self.obj_alloc: Callable[[str], int] = lambda cache: 0
        self.obj_free: Callable[[int], None] = lambda obj: None
        self._gen = 0
        # Asked by rmdir() and rename() for a directory they remove: if it returns True the
        # directory is still open and is left, empty and without links, for the kernel to
        # release() when it is closed (as an unlinked open file).
        self.is_open: Callable[[int], bool] = lambda ino: False
        try:
            root = self._iget(ROOT_INO)
        except FsError as e:
            raise FsError(errno.EINVAL, f"ext2: corrupt root inode: {e.msg}") from None
        if not S.S_ISDIR(root.mode) or not root.size or not root.blocks:
            raise FsError(errno.EINVAL, "ext2: corrupt root inode, run e2fsck")

    def _system_zone(self) -> ext2check.SystemZone:
        """Superblocks, descriptors (and the reserved ones), bitmaps and inode tables."""
        sparse = bool(self.ro_compat & RO_SPARSE_SUPER)
        view = self.cache.get(self._sb_blk)
        reserved_gdt = int.from_bytes(view[self._sb_off + 206:self._sb_off + 208], "little") if self.rev else 0
        del view
        ranges = [(0, self.first_data + 1)]
        for g, grp in enumerate(self._groups):
            start = self._group_start(g)
            if has_super(g, sparse):
                ranges.append((start, start + 1 + len(self._gd_blocks) + reserved_gdt))
            ranges += [(grp.block_bitmap, grp.block_bitmap + 1), (grp.inode_bitmap, grp.inode_bitmap + 1),
                       (grp.inode_table, grp.inode_table + self._itable_blocks)]
        return ext2check.SystemZone(ranges)

    def _overhead(self) -> int:
        """Blocks used by metadata (superblocks, descriptors, bitmaps, inode tables)."""
        sparse = bool(self.ro_compat & RO_SPARSE_SUPER)
        view = self.cache.get(self._sb_blk)
        reserved_gdt = int.from_bytes(view[self._sb_off + 206:self._sb_off + 208], "little") if self.rev else 0
        del view
        total = self.first_data
        for g in range(self.ngroups):
            if has_super(g, sparse):
                total += 1 + len(self._gd_blocks) + reserved_gdt
            total += 2 + self._itable_blocks
        return total

    def statfs(self) -> dict[str, int]:
        return {
            "f_bsize": self.block_size,
            "f_frsize": self.block_size,
            "f_blocks": self.blocks_count - self._overhead(),
            "f_bfree": self.free_blocks,
            "f_bavail": max(0, self.free_blocks - self.r_blocks),
            "f_files": self.inodes_count,
            "f_ffree": self.free_inodes,
            "f_namelen": NAME_MAX,
        }

    def sync(self) -> None:
        self.store_meta()
        self.cache.sync()

    def put_super(self) -> None:
        """Unmount: everything written back, every cached dentry and inode (the root's too)
        given back to the kernel's slab."""
        self.sync()
        while self._dcache:
            _key, (_ino, obj) = self._dcache.popitem(last=False)
            self.obj_free(obj)
        for ino in list(self._icache):
            self._icache_drop(ino)

    def store_meta(self) -> None:
        """Write the in-memory group descriptors and superblock counters into their (cached,
        now dirty) blocks."""
        if self._meta_dirty:
            per_blk = self.block_size // self.GD_SIZE
            for i, blk in enumerate(self._gd_blocks):
                view = self.cache.get(blk)
                for grp in self._groups[i * per_blk:(i + 1) * per_blk]:
                    off = (grp.index % per_blk) * self.GD_SIZE
                    view[off:off + self.GD_SIZE] = grp.pack()
                self.cache.mark_dirty(blk, 0)
                del view
            view = self.cache.get(self._sb_blk)
            o = self._sb_off
            struct.pack_into("<II", view, o + 12, self.free_blocks, self.free_inodes)
            if self.rev:
                struct.pack_into("<I", view, o + 100, self.ro_compat)
            self.cache.mark_dirty(self._sb_blk, 0)
            del view
            self._meta_dirty = False
