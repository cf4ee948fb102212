"""ext2 file-system driver for the emu guest kernel.

Reads and writes ext2 images (revision 0 and 1, block sizes 1 KiB .. 64 KiB) through a
`BlockCache`.  Supported on-disk features: filetype, sparse_super, large_file, ext_attr
(xattr blocks are left alone, except that their reference count is dropped when an inode
is freed), resize_inode (reserved inodes are never touched), dir_index (hashed
directories are read linearly; modifying one clears EXT2_INDEX_FL so it stays valid).
Images with any other INCOMPAT feature, or RO_COMPAT features whose metadata we would
have to maintain (checksums, huge_file, quota, ...), are refused.

Design notes:
  * Block and inode bitmaps, inode tables, indirect blocks and directory blocks are
    always accessed through the cache with the get/modify/mark_dirty/drop discipline:
    no view is kept across another `cache.get`.
  * Group descriptors and superblock counters live in memory and are written into the
    cache by `sync()`; the counts are kept exact at all times.
  * Inodes are cached as `_Inode` objects and written through on every change, so there
    is exactly one live object per inode (avoids lost updates inside an operation).
  * The driver never frees a file's inode from `unlink` or from `rename` over it: both
    return the inode whose link they dropped, and the kernel calls `release()` once the
    inode has no links and no open files (an open file outlives its last name, as on Linux).
  * Errors are FsError(errno), a SyscallError: the syscall that met it fails with that errno.
    Corrupt metadata is refused at mount (EINVAL) or reported once in the kernel log and
    surfaces as EIO, never as another Python exception (the checks: ext2check.py).
"""

from __future__ import annotations

import errno
import re
import stat as S
import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterator

from . import ext2check
from .blockcache import BlockCache
from .errors import SyscallError

__all__ = ["FsError", "Stat", "Ext2", "probe_block_size"]

EXT2_MAGIC = 0xEF53
ROOT_INO = 2
NAME_MAX = 255
LINK_MAX = 32000  # ext2's EXT2_LINK_MAX
N_DIRECT = 12

INCOMPAT_FILETYPE = 0x0002
INCOMPAT_NAMES = {
    0x0001: "compression", 0x0002: "filetype", 0x0004: "needs_recovery",
    0x0008: "journal_dev", 0x0010: "meta_bg", 0x0040: "extents", 0x0080: "64bit",
    0x0100: "mmp", 0x0200: "flex_bg", 0x0400: "ea_inode", 0x1000: "dirdata",
    0x2000: "metadata_csum_seed", 0x4000: "large_dir", 0x8000: "inline_data",
    0x10000: "encrypt", 0x20000: "casefold",
}
RO_SPARSE_SUPER = 0x0001
RO_LARGE_FILE = 0x0002
RO_SUPPORTED = RO_SPARSE_SUPER | RO_LARGE_FILE | 0x0004 | 0x0020 | 0x0040  # + btree_dir, dir_nlink, extra_isize
RO_NAMES = {
    0x0001: "sparse_super", 0x0002: "large_file", 0x0004: "btree_dir", 0x0008: "huge_file",
    0x0010: "uninit_bg", 0x0020: "dir_nlink", 0x0040: "extra_isize", 0x0100: "quota",
    0x0200: "bigalloc", 0x0400: "metadata_csum", 0x1000: "readonly", 0x2000: "project",
    0x8000: "verity", 0x10000: "orphan_present",
}

EXT2_INDEX_FL = 0x00001000
EXT4_EXTENTS_FL = 0x00080000
EXT4_INLINE_DATA_FL = 0x10000000
EA_MAGIC = 0xEA020000

# Directory-entry file types and their DT_* equivalents.
_FT_BY_FMT = {S.S_IFREG: 1, S.S_IFDIR: 2, S.S_IFCHR: 3, S.S_IFBLK: 4, S.S_IFIFO: 5, S.S_IFSOCK: 6, S.S_IFLNK: 7}
_DT_BY_FT = {0: 0, 1: 8, 2: 4, 3: 2, 4: 6, 5: 1, 6: 12, 7: 10}

_SB_COUNTS = struct.Struct("<11I")
_GD = struct.Struct("<IIIHHH")
_DIRENT = struct.Struct("<IHBB")
_NOT_FF = re.compile(rb"[^\xff]")


class FsError(SyscallError):
    """File-system error carrying an errno value (the syscall's, when it reaches one)."""

    def __init__(self, err: int, msg: str = "") -> None:
        super().__init__(err, msg)
        self.msg = msg

    def __str__(self) -> str:
        name = errno.errorcode.get(self.errno, str(self.errno))
        return f"[{name}] {self.msg}" if self.msg else name


@dataclass(slots=True)
class Stat:
    ino: int
    mode: int
    nlink: int
    uid: int
    gid: int
    size: int
    atime: int
    mtime: int
    ctime: int
    blocks: int  # 512-byte units, including indirect and xattr blocks
    rdev: int
    blksize: int


def _feature_names(bits: int, names: dict[int, str]) -> str:
    out = []
    for bit in range(32):
        if bits & (1 << bit):
            out.append(names.get(1 << bit, f"0x{1 << bit:x}"))
    return ",".join(out)


def _parse_super(raw: bytes | memoryview) -> dict[str, int]:
    """Validate a 1024-byte superblock; return the fields the driver needs."""
    if len(raw) < 1024:
        raise FsError(errno.EINVAL, "ext2: device too small for a superblock")
    (inodes, blocks, r_blocks, free_blocks, free_inodes, first_data, log_bs, _log_fs,
     bpg, _fpg, ipg) = _SB_COUNTS.unpack_from(raw, 0)
    magic = int.from_bytes(raw[56:58], "little")
    if magic != EXT2_MAGIC:
        raise FsError(errno.EINVAL, f"ext2: bad superblock magic 0x{magic:04x} (not an ext2 file system)")
    if log_bs > 6:
        raise FsError(errno.EINVAL, f"ext2: unsupported block size 2^{10 + log_bs} (max 65536)")
    bs = 1024 << log_bs
    rev = int.from_bytes(raw[76:80], "little")
    if rev == 0:
        first_ino, inode_size, compat, incompat, ro = 11, 128, 0, 0, 0
    elif rev == 1:
        first_ino = int.from_bytes(raw[84:88], "little")
        inode_size = int.from_bytes(raw[88:90], "little")
        compat, incompat, ro = struct.unpack_from("<III", raw, 92)
    else:
        raise FsError(errno.EINVAL, f"ext2: unsupported revision level {rev}")
    if incompat & ~INCOMPAT_FILETYPE:
        raise FsError(errno.EINVAL, "ext2: unsupported incompat features: "
                      + _feature_names(incompat & ~INCOMPAT_FILETYPE, INCOMPAT_NAMES))
    if ro & ~RO_SUPPORTED:
        raise FsError(errno.EINVAL, "ext2: unsupported ro_compat features: "
                      + _feature_names(ro & ~RO_SUPPORTED, RO_NAMES))
    if inode_size < 128 or inode_size > bs or inode_size & (inode_size - 1):
        raise FsError(errno.EINVAL, f"ext2: bad inode size {inode_size}")
    if not (8 <= bpg <= 8 * bs) or not (1 <= ipg <= 8 * bs):
        raise FsError(errno.EINVAL, f"ext2: bad group geometry ({bpg} blocks, {ipg} inodes per group)")
    if first_data != (1 if bs == 1024 else 0) or blocks <= first_data:
        raise FsError(errno.EINVAL, f"ext2: bad first data block {first_data} / block count {blocks}")
    groups = (blocks - first_data + bpg - 1) // bpg
    if groups * ipg != inodes:
        raise FsError(errno.EINVAL, f"ext2: inode count {inodes} != {groups} groups * {ipg}")
    if not (ROOT_INO < first_ino <= inodes) or free_blocks > blocks or free_inodes > inodes:
        raise FsError(errno.EINVAL, "ext2: inconsistent superblock counts")
    return dict(inodes=inodes, blocks=blocks, r_blocks=r_blocks, free_blocks=free_blocks,
                free_inodes=free_inodes, first_data=first_data, block_size=bs, bpg=bpg, ipg=ipg,
                rev=rev, first_ino=first_ino, inode_size=inode_size, compat=compat,
                incompat=incompat, ro=ro, groups=groups)


def probe_block_size(read_at: Callable[[int, int], bytes]) -> int:
    """Return the block size of the ext2 file system on a raw device, or raise FsError."""
    return _parse_super(read_at(1024, 1024))["block_size"]


def _rec_size(name_len: int) -> int:
    return (8 + name_len + 3) & ~3


def _makedev(major: int, minor: int) -> int:  # glibc encoding
    return ((major & 0xFFF) << 8) | ((major & ~0xFFF) << 32) | (minor & 0xFF) | ((minor & ~0xFF) << 12)


def _major(dev: int) -> int:
    return ((dev >> 8) & 0xFFF) | ((dev >> 32) & ~0xFFF)


def _minor(dev: int) -> int:
    return (dev & 0xFF) | ((dev >> 12) & ~0xFF)


class _Inode:
    """In-memory copy of an on-disk inode (raw keeps fields we do not interpret)."""

    __slots__ = ("ino", "raw", "mode", "uid", "gid", "size", "atime", "ctime", "mtime",
                 "dtime", "links", "blocks", "flags", "block", "generation", "file_acl")
    _HEAD = struct.Struct("<HHIIIIIHHII")
    _BLOCK = struct.Struct("<15I")
    _TAIL = struct.Struct("<III")

    def __init__(self, ino: int, raw: bytearray) -> None:
        self.ino = ino
        self.raw = raw
        (self.mode, uid_lo, size_lo, self.atime, self.ctime, self.mtime, self.dtime, gid_lo,
         self.links, self.blocks, self.flags) = self._HEAD.unpack_from(raw, 0)
        self.block = list(self._BLOCK.unpack_from(raw, 40))
        self.generation, self.file_acl, size_hi = self._TAIL.unpack_from(raw, 100)
        uid_hi, gid_hi = struct.unpack_from("<HH", raw, 120)
        self.uid = uid_lo | (uid_hi << 16)
        self.gid = gid_lo | (gid_hi << 16)
        self.size = size_lo | (size_hi << 32)

    def pack(self) -> bytearray:
        raw = self.raw
        m32 = 0xFFFFFFFF
        self._HEAD.pack_into(raw, 0, self.mode, self.uid & 0xFFFF, self.size & m32, self.atime & m32,
                             self.ctime & m32, self.mtime & m32, self.dtime & m32, self.gid & 0xFFFF,
                             self.links, self.blocks, self.flags)
        self._BLOCK.pack_into(raw, 40, *self.block)
        self._TAIL.pack_into(raw, 100, self.generation, self.file_acl, self.size >> 32)
        struct.pack_into("<HH", raw, 120, (self.uid >> 16) & 0xFFFF, (self.gid >> 16) & 0xFFFF)
        return raw

    @property
    def fmt(self) -> int:
        return S.S_IFMT(self.mode)


class _Group:
    __slots__ = ("index", "block_bitmap", "inode_bitmap", "inode_table", "free_blocks",
                 "free_inodes", "used_dirs", "raw")

    def __init__(self, index: int, raw: bytearray) -> None:
        self.index = index
        self.raw = raw
        (self.block_bitmap, self.inode_bitmap, self.inode_table, self.free_blocks,
         self.free_inodes, self.used_dirs) = _GD.unpack_from(raw, 0)

    def pack(self) -> bytearray:
        _GD.pack_into(self.raw, 0, self.block_bitmap, self.inode_bitmap, self.inode_table,
                      self.free_blocks, self.free_inodes, self.used_dirs)
        return self.raw


def _find_zero(bm: bytes, start: int, limit: int) -> int:
    """First clear bit in [start, limit) of a little-endian bitmap, or -1."""
    i = start
    while i < limit:
        byte_i = i >> 3
        free = (~bm[byte_i] & 0xFF) >> (i & 7)
        if free:
            bit = i + (free & -free).bit_length() - 1
            return bit if bit < limit else -1
        m = _NOT_FF.search(bm, byte_i + 1, (limit + 7) >> 3)
        if m is None:
            return -1
        i = m.start() << 3
    return -1


class Ext2:
    root_ino = ROOT_INO
    GD_SIZE = 32
    INODE_CACHE_MAX = 4096

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
        sb = _parse_super(bytes(cache.get(sb_blk)[self._sb_off:self._sb_off + 1024]))
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
        self._groups: list[_Group] = []
        for g in range(self.ngroups):
            blk = self._gd_blocks[g // per_blk]
            off = (g % per_blk) * self.GD_SIZE
            raw = bytearray(cache.get(blk)[off:off + self.GD_SIZE])
            grp = _Group(g, raw)
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
        self._icache: OrderedDict[int, _Inode] = OrderedDict()
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
            if self._has_super(g, sparse):
                ranges.append((start, start + 1 + len(self._gd_blocks) + reserved_gdt))
            ranges += [(grp.block_bitmap, grp.block_bitmap + 1), (grp.inode_bitmap, grp.inode_bitmap + 1),
                       (grp.inode_table, grp.inode_table + self._itable_blocks)]
        return ext2check.SystemZone(ranges)

    def _data_block(self, blk: int, func: str, ino: int) -> int:
        """blk, if a block pointer of inode ino may be written or freed through; else EIO."""
        if not self.first_data <= blk < self.blocks_count:
            raise self.errors.error(func, f"inode {ino}: block pointer {blk} outside the file system")
        if blk in self.system_zone:
            raise self.errors.error(func, f"inode {ino}: block pointer {blk} into the system zone")
        return blk

    def _meta_blocks(self, nblocks: int) -> int:
        """Indirect blocks needed to map nblocks file blocks without holes."""
        a, r, m = self._ptrs, nblocks - N_DIRECT, 0
        if r > 0:
            m += 1
            r -= a
        if r > 0:
            m += 1 + -(-min(r, a * a) // a)
            r -= a * a
        if r > 0:
            m += 1 + -(-r // (a * a)) + -(-r // a)
        return m

    # ------------------------------------------------------------------ inodes

    def _iloc(self, ino: int) -> tuple[int, int]:
        if not 1 <= ino <= self.inodes_count:
            raise FsError(errno.EINVAL, f"ext2: inode {ino} out of range")
        g, idx = divmod(ino - 1, self.ipg)
        blk, off = divmod(idx * self.inode_size, self.block_size)
        return self._groups[g].inode_table + blk, off

    def _iget(self, ino: int) -> _Inode:
        ind = self._icache.get(ino)
        if ind is not None:
            self._icache.move_to_end(ino)
            return ind
        blk, off = self._iloc(ino)
        ind = _Inode(ino, bytearray(self.cache.get(blk)[off:off + self.inode_size]))
        if ind.flags & (EXT4_EXTENTS_FL | EXT4_INLINE_DATA_FL) and ind.mode:
            raise self.errors.error("ext2_iget", f"inode {ino} uses extents/inline data (not ext2)")
        bad = ext2check.check_inode(ind.mode, ind.size, ind.blocks, self.max_file_size, self.block_size,
                                    self.blocks_count, S.S_ISLNK(ind.mode) and self._is_fast_symlink(ind))
        if bad:
            raise self.errors.error("ext2_iget", f"inode {ino}: {bad}")
        self._icache[ino] = ind
        if len(self._icache) > self.INODE_CACHE_MAX:
            self._icache.popitem(last=False)
        return ind

    def _iput(self, ind: _Inode) -> None:
        """Write the inode through to its inode-table block."""
        blk, off = self._iloc(ind.ino)
        raw = ind.pack()
        view = self.cache.get(blk)
        view[off:off + self.inode_size] = raw
        self.cache.mark_dirty(blk, 0)

    def _live(self, ino: int) -> _Inode:
        ind = self._iget(ino)
        if ind.mode == 0 or (ind.links == 0 and ind.dtime):
            raise FsError(errno.ENOENT, f"ext2: inode {ino} is not in use")
        return ind

    def _has_blockmap(self, ind: _Inode) -> bool:
        fmt = ind.fmt
        if fmt in (S.S_IFREG, S.S_IFDIR):
            return True
        return fmt == S.S_IFLNK and not self._is_fast_symlink(ind)

    def _is_fast_symlink(self, ind: _Inode) -> bool:
        ea = self._b512 if ind.file_acl else 0
        return ind.blocks - ea == 0

    # ------------------------------------------------------------ allocation

    def _group_start(self, g: int) -> int:
        return self.first_data + g * self.bpg

    def _group_nblocks(self, g: int) -> int:
        return min(self.bpg, self.blocks_count - self._group_start(g))

    def _take_bit(self, bm_blk: int, start: int, low: int, limit: int, want_run: bool) -> int:
        """Set and return a clear bit in [low, limit) of a bitmap block, searching from start."""
        view = self.cache.get(bm_blk)
        if low <= start < limit and not (view[start >> 3] >> (start & 7)) & 1:
            bit = start
        else:
            bm = bytes(view[:(limit + 7) >> 3])
            bit = -1
            if want_run:  # a whole free byte: 8 contiguous blocks for the file to grow into
                z = bm.find(b"\x00", (max(start, low) + 7) >> 3)
                if z >= 0 and z * 8 + 8 <= limit:
                    bit = z * 8
            if bit < 0:
                bit = _find_zero(bm, max(start, low), limit)
            if bit < 0:
                bit = _find_zero(bm, low, limit)
            if bit < 0:
                return -1
        view[bit >> 3] |= 1 << (bit & 7)
        self.cache.mark_dirty(bm_blk, 0)
        return bit

    def _alloc_block(self, goal: int) -> int:
        if self.free_blocks <= 0:
            raise FsError(errno.ENOSPC, "ext2: no free blocks")
        if not self.first_data <= goal < self.blocks_count:
            goal = self.first_data
        g0 = (goal - self.first_data) // self.bpg
        for k in range(self.ngroups + 1):
            g = (g0 + k) % self.ngroups
            grp = self._groups[g]
            if grp.free_blocks == 0:
                continue
            start = goal - self._group_start(g) if k == 0 else 0
            self._check_block_bitmap(g)
            while True:
                bit = self._take_bit(grp.block_bitmap, start, 0, self._group_nblocks(g), True)
                if bit < 0 or self._group_start(g) + bit not in self.system_zone:
                    break
                # The bitmap said a metadata block was free: leave it marked in use.
                self.errors.error("ext2_new_blocks", f"Allocating block in system zone - block = {self._group_start(g) + bit}")
            if bit < 0:
                continue  # descriptor count was optimistic; try elsewhere
            grp.free_blocks -= 1
            self.free_blocks -= 1
            self._meta_dirty = True
            return self._group_start(g) + bit
        raise FsError(errno.ENOSPC, "ext2: no free blocks")

    def _check_block_bitmap(self, g: int) -> None:
        """ext2_valid_block_bitmap: the group's own bitmaps and inode table are marked in use
        (checked once: the driver never clears those bits)."""
        if g in self._bitmaps_ok:
            return
        grp = self._groups[g]
        start = self._group_start(g)
        view = self.cache.get(grp.block_bitmap)
        for blk in (grp.block_bitmap, grp.inode_bitmap, *range(grp.inode_table, grp.inode_table + self._itable_blocks)):
            bit = blk - start
            if not view[bit >> 3] >> (bit & 7) & 1:
                raise self.errors.error("ext2_valid_block_bitmap", f"Invalid block bitmap - block_group = {g}, "
                                        f"block = {grp.block_bitmap}")
        self._bitmaps_ok.add(g)

    def _alloc_zeroed(self, goal: int) -> int:
        blk = self._alloc_block(goal)
        view = self.cache.get(blk)
        view[:] = self._zero
        self.cache.mark_dirty(blk, 0)
        return blk

    def _free_blocks(self, blocks: list[int]) -> None:
        if not blocks:
            return
        ok = []
        for b in blocks:  # never clear a bit for a block outside the data zone
            if not self.first_data <= b < self.blocks_count:
                self.errors.error("ext2_free_blocks", f"Freeing blocks not in datazone - block = {b}, count = 1")
            elif b in self.system_zone:
                self.errors.error("ext2_free_blocks", f"Freeing blocks in system zones - Block = {b}, count = 1")
            else:
                ok.append(b)
        blocks = sorted(set(ok))
        i = 0
        while i < len(blocks):
            g = (blocks[i] - self.first_data) // self.bpg
            grp = self._groups[g]
            start = self._group_start(g)
            end = start + self._group_nblocks(g)
            try:
                self._check_block_bitmap(g)
            except FsError:  # logged; the blocks stay allocated (lost, not double-used)
                while i < len(blocks) and blocks[i] < end:
                    i += 1
                continue
            view = self.cache.get(grp.block_bitmap)
            n = 0
            while i < len(blocks) and blocks[i] < end:
                bit = blocks[i] - start
                mask = 1 << (bit & 7)
                if view[bit >> 3] & mask:
                    view[bit >> 3] &= ~mask & 0xFF
                    n += 1
                else:
                    self.errors.error("ext2_free_blocks", f"bit already cleared for block {blocks[i]}")
                i += 1
            self.cache.mark_dirty(grp.block_bitmap, 0)
            del view
            n = min(n, end - start - grp.free_blocks)  # a corrupt count must still fit
            grp.free_blocks += n
            self.free_blocks += n
        self._meta_dirty = True
        for b in blocks:
            self.cache.forget(b)

    def _alloc_inode(self, parent_ino: int, is_dir: bool) -> int:
        if self.free_inodes <= 0:
            raise FsError(errno.ENOSPC, "ext2: no free inodes")
        pg = (parent_ino - 1) // self.ipg
        if is_dir:
            # Spread directories: a group with at least average free inodes and the
            # fewest directories (ties: most free blocks), like ext2's find_group_dir.
            avg = self.free_inodes // self.ngroups
            cands = [g for g in self._groups if g.free_inodes and g.free_inodes >= avg]
            cands.sort(key=lambda g: (g.used_dirs, -g.free_blocks, (g.index - pg) % self.ngroups))
            order = [g.index for g in cands] + [(pg + k) % self.ngroups for k in range(self.ngroups)]
        else:
            pref = [(pg + k) % self.ngroups for k in range(self.ngroups)]
            order = [g for g in pref if self._groups[g].free_blocks] + pref
        for g in order:
            grp = self._groups[g]
            if grp.free_inodes == 0:
                continue
            low = max(0, self.first_ino - 1 - g * self.ipg)
            if low >= self.ipg:
                continue
            while True:
                bit = self._take_bit(grp.inode_bitmap, low, low, self.ipg, False)
                if bit < 0 or not self._inode_in_use(g * self.ipg + bit + 1):
                    break
                # The bitmap said a live inode was free: leave it marked in use.
                self.errors.error("ext2_new_inode", f"inode {g * self.ipg + bit + 1} is in use but free in the bitmap")
            if bit < 0:
                continue
            grp.free_inodes -= 1
            self.free_inodes -= 1
            if is_dir:
                grp.used_dirs += 1
            self._meta_dirty = True
            return g * self.ipg + bit + 1
        raise FsError(errno.ENOSPC, "ext2: no free inodes")

    def _inode_in_use(self, ino: int) -> bool:
        blk, off = self._iloc(ino)
        mode, links, dtime = (int.from_bytes(self.cache.get(blk)[off + a:off + b], "little")
                              for a, b in ((0, 2), (26, 28), (20, 24)))
        return mode != 0 and links > 0 and dtime == 0

    def _free_inode(self, ind: _Inode) -> None:
        self._dir_full.pop(ind.ino, None)
        g, bit = divmod(ind.ino - 1, self.ipg)
        grp = self._groups[g]
        view = self.cache.get(grp.inode_bitmap)
        mask = 1 << (bit & 7)
        was_set = bool(view[bit >> 3] & mask)
        view[bit >> 3] &= ~mask & 0xFF
        self.cache.mark_dirty(grp.inode_bitmap, 0)
        del view
        if not was_set:
            self.errors.error("ext2_free_inode", f"bit already cleared for inode {ind.ino}")
        elif grp.free_inodes < self.ipg:  # a corrupt count must still fit
            grp.free_inodes += 1
            self.free_inodes += 1
            if S.S_ISDIR(ind.mode) and grp.used_dirs:
                grp.used_dirs -= 1
            self._meta_dirty = True

    # ------------------------------------------------------------ block map

    def _path(self, fb: int) -> tuple[int, tuple[int, ...]]:
        """i_block slot and per-level indices for file block fb."""
        a = self._ptrs
        if fb < N_DIRECT:
            return fb, ()
        fb -= N_DIRECT
        if fb < a:
            return 12, (fb,)
        fb -= a
        if fb < a * a:
            return 13, divmod(fb, a)
        fb -= a * a
        if fb < a * a * a:
            hi, lo = divmod(fb, a)
            return 14, (*divmod(hi, a), lo)
        raise FsError(errno.EFBIG, "ext2: file block beyond triple-indirect range")

    def _ptrs_of(self, blk: int) -> tuple[int, ...]:
        if not self.first_data <= blk < self.blocks_count:
            raise self.errors.error("ext2_get_branch", f"indirect block pointer {blk} outside the file system")
        if blk in self.system_zone:
            raise self.errors.error("ext2_get_branch", f"indirect block pointer {blk} into the system zone")
        return self._ind_fmt.unpack(self.cache.get(blk))

    def _map_range(self, ind: _Inode, start: int, count: int) -> list[int]:
        """Physical blocks (0 = hole) for file blocks [start, start+count)."""
        out: list[int] = []
        memo: dict[int, tuple[int, ...]] = {}
        fb, end, a = start, start + count, self._ptrs
        while fb < end:
            slot, idx = self._path(fb)
            if not idx:
                n = min(N_DIRECT, end) - fb
                out.extend(ind.block[fb:fb + n])
                fb += n
                continue
            p = ind.block[slot]
            for i in idx[:-1]:
                if p == 0:
                    break
                t = memo.get(p)
                if t is None:
                    t = memo[p] = self._ptrs_of(p)
                p = t[i]
            last = idx[-1]
            n = min(a - last, end - fb)
            if p == 0:
                out.extend([0] * n)
            else:
                t = memo.get(p)
                if t is None:
                    t = memo[p] = self._ptrs_of(p)
                out.extend(t[last:last + n])
            fb += n
        return out

    def _bmap_alloc(self, ind: _Inode, fb: int, goal: int) -> tuple[int, bool]:
        """Physical block for fb, allocating it (and indirect blocks) if needed.

        Updates ind.block / ind.blocks in memory; the caller writes the inode back."""
        slot, idx = self._path(fb)
        p = ind.block[slot]
        if p:  # never write through a corrupt pointer
            self._data_block(p, "ext2_get_blocks", ind.ino)
        if not idx:
            if p:
                return p, False
            p = self._alloc_block(goal)
            ind.block[slot] = p
            ind.blocks += self._b512
            return p, True
        if self.free_blocks < len(idx) + 1 and self._missing(ind, slot, idx) > self.free_blocks:
            raise FsError(errno.ENOSPC, "ext2: no free blocks")  # before allocating anything
        if p == 0:
            p = self._alloc_zeroed(goal)
            ind.block[slot] = p
            ind.blocks += self._b512
            goal = p + 1  # data follows its new indirect block
        new = False
        for level, i in enumerate(idx):
            view = self.cache.get(p)
            child = int.from_bytes(view[4 * i:4 * i + 4], "little")
            del view
            if child == 0:
                leaf = level == len(idx) - 1
                child = self._alloc_block(goal) if leaf else self._alloc_zeroed(goal)
                view = self.cache.get(p)
                view[4 * i:4 * i + 4] = child.to_bytes(4, "little")
                self.cache.mark_dirty(p, 0)
                del view
                ind.blocks += self._b512
                new = leaf
                goal = child + 1
            else:
                self._data_block(child, "ext2_get_blocks", ind.ino)
            p = child
        return p, new

    def _missing(self, ind: _Inode, slot: int, idx: tuple[int, ...]) -> int:
        p = ind.block[slot]
        if p == 0:
            return len(idx) + 1
        for level, i in enumerate(idx):
            p = self._ptrs_of(p)[i]
            if p == 0:
                return len(idx) - level
        return 0

    def _goal_for(self, ind: _Inode, fb: int) -> int:
        if fb > 0:
            prev = self._map_range(ind, fb - 1, 1)[0]
            if prev:
                return prev + 1
        g = (ind.ino - 1) // self.ipg
        return self._group_start(g)

    def _truncate_blocks(self, ind: _Inode, keep: int) -> None:
        """Free every block (data and indirect) mapping file blocks >= keep."""
        freed: list[int] = []
        for i in range(max(keep, 0), N_DIRECT):
            if ind.block[i]:
                freed.append(ind.block[i])
                ind.block[i] = 0
        a = self._ptrs
        base = N_DIRECT
        seen: set[int] = set()  # indirect blocks visited: a block map is a tree, never a graph
        for level, slot in ((1, 12), (2, 13), (3, 14)):
            span = a ** level
            p = ind.block[slot]
            if p and keep < base + span:
                if self._trunc_tree(p, level, base, keep, freed, seen):
                    ind.block[slot] = 0
            base += span
        ind.blocks -= len(freed) * self._b512
        if ind.blocks < 0:
            ind.blocks = 0
        self._free_blocks(freed)

    def _trunc_tree(self, blk: int, level: int, base: int, keep: int, freed: list[int], seen: set[int]) -> bool:
        """Free the part of an indirect tree mapping file blocks >= keep.

        Returns True if blk itself ended up empty and was freed."""
        self._visit(blk, seen)
        ptrs = list(self._ptrs_of(blk))
        child_span = self._ptrs ** (level - 1)
        changed = False
        for i, c in enumerate(ptrs):
            if not c:
                continue
            cbase = base + i * child_span
            if cbase >= keep:
                if level > 1:
                    self._free_tree(c, level - 1, freed, seen)
                else:
                    freed.append(c)
            elif level > 1 and cbase + child_span > keep:
                if not self._trunc_tree(c, level - 1, cbase, keep, freed, seen):
                    continue
            else:
                continue
            ptrs[i] = 0
            changed = True
        if not any(ptrs):
            freed.append(blk)
            return True
        if changed:
            view = self.cache.get(blk)
            self._ind_fmt.pack_into(view, 0, *ptrs)
            self.cache.mark_dirty(blk, 0)
        return False

    def _visit(self, blk: int, seen: set[int]) -> None:
        if blk in seen:
            raise self.errors.error("ext2_free_branches", f"indirect block {blk} referenced twice")
        seen.add(blk)

    def _free_tree(self, blk: int, level: int, freed: list[int], seen: set[int]) -> None:
        self._visit(blk, seen)
        ptrs = self._ptrs_of(blk)
        for c in ptrs:
            if c:
                if level > 1:
                    self._free_tree(c, level - 1, freed, seen)
                else:
                    freed.append(c)
        freed.append(blk)

    # ------------------------------------------------------------ file data

    def bmap(self, ino: int, file_block: int) -> int:
        ind = self._live(ino)
        if not self._has_blockmap(ind) or file_block < 0:
            return 0
        if file_block >= N_DIRECT + self._ptrs + self._ptrs ** 2 + self._ptrs ** 3:
            return 0
        p = self._map_range(ind, file_block, 1)[0]
        if p and not self.first_data <= p < self.blocks_count:
            raise self.errors.error("ext2_get_block", f"inode {ino}: block pointer {p} outside the file system")
        return p

    def read(self, ino: int, offset: int, n: int) -> bytes:
        ind = self._live(ino)
        if offset < 0 or n < 0:
            raise FsError(errno.EINVAL, "ext2: negative offset or count")
        if not self._has_blockmap(ind):
            raise FsError(errno.EINVAL, f"ext2: inode {ino} has no data blocks")
        return self._read(ind, offset, n)

    def _read(self, ind: _Inode, offset: int, n: int) -> bytes:
        size = ind.size
        if offset >= size or n == 0:
            return b""
        n = min(n, size - offset)
        bs = self.block_size
        fb0, fb1 = offset // bs, (offset + n - 1) // bs
        try:
            phys = self._map_range(ind, fb0, fb1 - fb0 + 1)
        except FsError:  # a bad indirect block: map block by block, up to it
            phys = []
            for fb in range(fb0, fb1 + 1):
                try:
                    phys.append(self._map_range(ind, fb, 1)[0])
                except FsError:
                    phys.append(-1)
                    break
        parts: list[bytes] = []
        get, zero, lo_ok, hi = self.cache.get, self._zero, self.first_data, self.blocks_count
        pos, end = offset, offset + n
        for p in phys:
            boff = pos % bs
            chunk = min(bs - boff, end - pos)
            if p == 0:
                parts.append(zero[:chunk])
            elif lo_ok <= p < hi:
                parts.append(get(p)[boff:boff + chunk].tobytes())
            elif parts:  # a short read up to the bad block, as Linux reads page by page
                break
            elif p == -1:
                self._map_range(ind, fb0, 1)  # raises the error again
            else:
                raise self.errors.error("ext2_get_block", f"inode {ind.ino}: block pointer {p} outside the file system")
            pos += chunk
        return b"".join(parts)

    def write(self, ino: int, offset: int, data: bytes | bytearray | memoryview) -> int:
        ind = self._live(ino)
        if S.S_ISDIR(ind.mode):
            raise FsError(errno.EISDIR, "ext2: write to a directory")
        if not S.S_ISREG(ind.mode):
            raise FsError(errno.EINVAL, f"ext2: inode {ino} is not a regular file")
        if offset < 0:
            raise FsError(errno.EINVAL, "ext2: negative offset")
        mv = memoryview(data).cast("B")
        n = len(mv)
        if n == 0:
            return 0
        if offset >= self.max_file_size:
            raise FsError(errno.EFBIG, "ext2: file too large")
        n = min(n, self.max_file_size - offset)
        return self._write(ind, offset, mv[:n])

    def _write(self, ind: _Inode, offset: int, mv: memoryview) -> int:
        bs, n, cache = self.block_size, len(mv), self.cache
        if offset > ind.size:
            self._zero_tail(ind, min(offset, (ind.size // bs + 1) * bs))
        written = 0
        goal = self._goal_for(ind, offset // bs)
        try:
            while written < n:
                pos = offset + written
                fb, boff = divmod(pos, bs)
                chunk = min(bs - boff, n - written)
                p, new = self._bmap_alloc(ind, fb, goal)
                view = cache.get(p)
                if new and chunk < bs:
                    view[:] = self._zero  # fresh block: never expose stale disk contents
                view[boff:boff + chunk] = mv[written:written + chunk]
                cache.mark_dirty(p, ind.ino)
                del view
                written += chunk
                goal = p + 1
        except FsError as e:
            if e.errno != errno.ENOSPC or written == 0:
                self._iput(ind)  # indirect blocks may have been added
                raise
        end = offset + written
        if end > ind.size:
            ind.size = end
            if end > 2**31 - 1 and not self.ro_compat & RO_LARGE_FILE:
                self.ro_compat |= RO_LARGE_FILE
                self._meta_dirty = True
        ind.mtime = ind.ctime = self.now()
        self._iput(ind)
        return written

    def _zero_tail(self, ind: _Inode, upto: int) -> None:
        """Zero bytes [size, upto) inside the block holding EOF (stale data past EOF)."""
        bs, size = self.block_size, ind.size
        if size % bs == 0 or upto <= size or not self._has_blockmap(ind):
            return
        p = self._map_range(ind, size // bs, 1)[0]
        if p:
            self._data_block(p, "ext2_truncate", ind.ino)  # never write through a corrupt pointer
            view = self.cache.get(p)
            lo, hi = size % bs, min(bs, upto - (size // bs) * bs)
            view[lo:hi] = bytes(hi - lo)
            self.cache.mark_dirty(p, ind.ino)

    def truncate(self, ino: int, size: int) -> None:
        ind = self._live(ino)
        if S.S_ISDIR(ind.mode):
            raise FsError(errno.EISDIR, "ext2: truncate of a directory")
        if not S.S_ISREG(ind.mode):
            raise FsError(errno.EINVAL, f"ext2: inode {ino} is not a regular file")
        if size < 0:
            raise FsError(errno.EINVAL, "ext2: negative size")
        if size > self.max_file_size:
            raise FsError(errno.EFBIG, "ext2: file too large")
        bs = self.block_size
        if size < ind.size:
            self._truncate_blocks(ind, (size + bs - 1) // bs)
            if size % bs:
                old = ind.size
                ind.size = size
                self._zero_tail(ind, min(old, (size // bs + 1) * bs))
        elif size > ind.size:
            self._zero_tail(ind, size)
            if size > 2**31 - 1 and not self.ro_compat & RO_LARGE_FILE:
                self.ro_compat |= RO_LARGE_FILE
                self._meta_dirty = True
        ind.size = size
        ind.mtime = ind.ctime = self.now()
        self._iput(ind)

    # ------------------------------------------------------------ directories

    def _decode_rec_len(self, v: int) -> int:
        if self.block_size < 65536:
            return v
        if v == 65535 or v == 0:
            return 65536
        return (v & 65532) | ((v & 3) << 16)

    def _encode_rec_len(self, n: int) -> int:
        if n < 65536:
            return n
        return 65535 if n == 65536 else (n & 65532) | ((n >> 16) & 3)

    def _dir_blocks(self, dind: _Inode, start: int = 0) -> Iterator[tuple[int, int, bytes]]:
        """(file block, physical block, copy of contents) for each directory block from `start`."""
        nblk = dind.size // self.block_size
        if dind.size % self.block_size or nblk > self.blocks_count:
            raise self.errors.error("ext2_readdir", f"directory {dind.ino} has bad size {dind.size}")
        start = min(start, nblk)
        for fb, p in enumerate(self._map_range(dind, start, nblk - start), start):
            if p:
                self._data_block(p, "ext2_get_page", dind.ino)  # we may write records into it
                yield fb, p, bytes(self.cache.get(p))

    def _entries(self, buf: bytes, dino: int) -> Iterator[tuple[int, int, int, int, bytes]]:
        """(offset, ino, rec_len, file_type, name) of every record in a directory block."""
        off, bs, unpack = 0, len(buf), _DIRENT.unpack_from
        while off <= bs - 8:
            ino, rl, nl, ft = unpack(buf, off)
            rl = self._decode_rec_len(rl)
            if not self.has_filetype:
                nl |= ft << 8
                ft = 0
            if rl < 12 or rl & 3 or off + rl > bs or nl + 8 > rl or ino > self.inodes_count:
                bad = ext2check.check_dirent(off, rl, nl, ino, bs, self.inodes_count)
                raise self.errors.error("ext2_check_page", f"bad entry in directory #{dino}: {bad} - "
                                        f"offset={off}, inode={ino}, rec_len={rl}, name_len={nl}")
            yield off, ino, rl, ft, buf[off + 8:off + 8 + nl]
            off += rl

    def _dir(self, ino: int) -> _Inode:
        dind = self._live(ino)
        if not S.S_ISDIR(dind.mode):
            raise FsError(errno.ENOTDIR, f"ext2: inode {ino} is not a directory")
        return dind

    def _find(self, dind: _Inode, name: bytes) -> tuple[int, int] | None:
        """(ino, file_type) of name in directory, or None."""
        for _fb, _p, buf in self._dir_blocks(dind):
            if name not in buf:  # cheap pre-filter: most blocks don't contain the name
                continue
            for _off, ino, _rl, ft, nm in self._entries(buf, dind.ino):
                if ino and nm == name:
                    return ino, ft
        return None

    def lookup(self, dir_ino: int, name: bytes) -> int:
        dind = self._dir(dir_ino)
        found = self._find(dind, bytes(name))
        if found is None:
            raise FsError(errno.ENOENT, f"ext2: {bytes(name)!r} not found")
        ino = found[0]
        if ino != ROOT_INO and ino < self.first_ino:
            raise self.errors.error("ext2_get_inode", f"bad inode number: {ino}")
        ind = self._iget(ino)
        if ind.mode == 0 or (ind.links == 0 and ind.dtime):
            raise self.errors.error("ext2_lookup", f"deleted inode referenced: {ino}")
        return ino

    def readdir(self, ino: int) -> list[tuple[bytes, int, int]]:
        return [(nm, i, dt) for _off, nm, i, dt in self.dir_stream(ino)]

    def dir_stream(self, ino: int, pos: int = 0) -> list[tuple[int, bytes, int, int]]:
        """(byte offset, name, ino, d_type) of each entry starting at or after `pos`: the offsets
        are the directory's own positions, which getdents reports as d_off and lseek accepts."""
        dind = self._dir(ino)
        bs = self.block_size
        out: list[tuple[int, bytes, int, int]] = []
        for fb, _p, buf in self._dir_blocks(dind, max(pos, 0) // bs):
            for off, eino, _rl, ft, nm in self._entries(buf, ino):
                if eino and fb * bs + off >= pos:
                    out.append((fb * bs + off, nm, eino, ft))
        if self.has_filetype:
            return [(o, nm, i, _DT_BY_FT.get(ft, 0)) for o, nm, i, ft in out]
        return [(o, nm, i, _DT_BY_FT[_FT_BY_FMT.get(S.S_IFMT(self._iget(i).mode), 0)]) for o, nm, i, _ in out]

    def _dir_touch(self, dind: _Inode) -> None:
        # Entries are added/removed linearly, so a hash index would go stale: drop it.
        dind.flags &= ~EXT2_INDEX_FL
        dind.mtime = dind.ctime = self.now()

    def _ftype(self, mode: int) -> int:
        return _FT_BY_FMT.get(S.S_IFMT(mode), 0) if self.has_filetype else 0

    def _put_entry(self, view: memoryview, off: int, ino: int, rec_len: int, name: bytes, ft: int) -> None:
        nl = len(name)
        if not self.has_filetype:
            ft, nl = nl >> 8, nl & 0xFF
        _DIRENT.pack_into(view, off, ino, self._encode_rec_len(rec_len), nl, ft)
        view[off + 8:off + 8 + len(name)] = name

    def _add_entry(self, dind: _Inode, name: bytes, ino: int, ft: int) -> None:
        need = _rec_size(len(name))
        full, full_need = self._dir_full.get(dind.ino, (0, 0))
        for fb, p, buf in self._dir_blocks(dind, full if need >= full_need else 0):
            for off, eino, rl, _ft, nm in self._entries(buf, dind.ino):
                used = _rec_size(len(nm)) if eino else 0
                if rl - used >= need:
                    self._dir_full[dind.ino] = (fb, need)
                    view = self.cache.get(p)
                    if eino:  # split the slack off an existing entry
                        struct.pack_into("<H", view, off + 4, self._encode_rec_len(used))
                        self._put_entry(view, off + used, ino, rl - used, name, ft)
                    else:
                        self._put_entry(view, off, ino, rl, name, ft)
                    self.cache.mark_dirty(p, dind.ino)
                    del view
                    self._dir_touch(dind)
                    self._iput(dind)
                    return
        # No room: append a block.
        bs = self.block_size
        fb = dind.size // bs
        try:
            p, _new = self._bmap_alloc(dind, fb, self._goal_for(dind, fb))
        except FsError:
            self._iput(dind)
            raise
        self._dir_full[dind.ino] = (fb, need)
        view = self.cache.get(p)
        view[:] = self._zero
        self._put_entry(view, 0, ino, bs, name, ft)
        self.cache.mark_dirty(p, dind.ino)
        del view
        dind.size += bs
        self._dir_touch(dind)
        self._iput(dind)

    def _remove_entry(self, dind: _Inode, name: bytes) -> tuple[int, int]:
        self._dir_full.pop(dind.ino, None)
        for _fb, p, buf in self._dir_blocks(dind):
            if name not in buf:
                continue
            prev_off, prev_rl = -1, 0
            for off, eino, rl, ft, nm in self._entries(buf, dind.ino):
                if eino and nm == name:
                    view = self.cache.get(p)
                    if prev_off >= 0:  # merge into the previous record
                        struct.pack_into("<H", view, prev_off + 4, self._encode_rec_len(prev_rl + rl))
                    else:
                        view[off:off + 4] = b"\0\0\0\0"
                    self.cache.mark_dirty(p, dind.ino)
                    del view
                    self._dir_touch(dind)
                    self._iput(dind)
                    return eino, ft
                prev_off, prev_rl = off, rl
        raise FsError(errno.ENOENT, f"ext2: {name!r} not found")

    def _set_entry(self, dind: _Inode, name: bytes, ino: int, ft: int) -> None:
        """Point an existing entry at another inode."""
        for _fb, p, buf in self._dir_blocks(dind):
            if name not in buf:
                continue
            for off, eino, _rl, _ft, nm in self._entries(buf, dind.ino):
                if eino and nm == name:
                    view = self.cache.get(p)
                    struct.pack_into("<I", view, off, ino)
                    if self.has_filetype:
                        view[off + 7] = ft
                    self.cache.mark_dirty(p, dind.ino)
                    del view
                    self._dir_touch(dind)
                    self._iput(dind)
                    return
        raise FsError(errno.ENOENT, f"ext2: {name!r} not found")

    def _is_empty_dir(self, dind: _Inode) -> bool:
        for _fb, _p, buf in self._dir_blocks(dind):
            for _off, eino, _rl, _ft, nm in self._entries(buf, dind.ino):
                if eino and nm not in (b".", b".."):
                    return False
        return True

    # ------------------------------------------------------------ namespace ops

    @staticmethod
    def _check_name(name: bytes) -> bytes:
        name = bytes(name)
        if not name or b"/" in name or b"\0" in name:
            raise FsError(errno.EINVAL, f"ext2: invalid name {name!r}")
        if len(name) > NAME_MAX:
            raise FsError(errno.ENAMETOOLONG, "ext2: name too long")
        return name

    def _prepare_new(self, dir_ino: int, name: bytes) -> tuple[_Inode, bytes]:
        name = self._check_name(name)
        dind = self._dir(dir_ino)
        if dind.links == 0:
            raise FsError(errno.ENOENT, "ext2: directory has been removed")
        if name in (b".", b"..") or self._find(dind, name) is not None:
            raise FsError(errno.EEXIST, f"ext2: {name!r} exists")
        return dind, name

    def _new_inode(self, dind: _Inode, mode: int, uid: int, gid: int) -> _Inode:
        ino = self._alloc_inode(dind.ino, S.S_ISDIR(mode))
        raw = bytearray(self.inode_size)
        t = self.now()
        if self.inode_size >= 160:
            struct.pack_into("<H", raw, 128, 32)  # i_extra_isize, as mke2fs sets it
            struct.pack_into("<I", raw, 144, t & 0xFFFFFFFF)  # i_crtime
        ind = _Inode(ino, raw)
        self._gen = (self._gen + 1) & 0xFFFFFFFF
        ind.mode, ind.uid, ind.gid, ind.links = mode, uid & 0xFFFFFFFF, gid & 0xFFFFFFFF, 1
        ind.atime = ind.mtime = ind.ctime = t
        ind.generation = self._gen
        self._icache[ino] = ind
        self._iput(ind)
        return ind

    def _destroy(self, ind: _Inode) -> None:
        """Free an inode's blocks (data, indirect, xattr) and the inode itself."""
        if self._has_blockmap(ind):
            try:
                self._truncate_blocks(ind, 0)
            except FsError:  # a corrupt block map (logged): its blocks are lost, the inode is freed
                ind.block[:] = [0] * len(ind.block)
        if ind.file_acl:
            self._drop_xattr_block(ind)
        ind.size = 0
        ind.links = 0
        ind.dtime = self.now()
        self._iput(ind)
        self._free_inode(ind)

    def _drop_xattr_block(self, ind: _Inode) -> None:
        blk = ind.file_acl
        ind.file_acl = 0
        ind.blocks = max(0, ind.blocks - self._b512)
        if not self.first_data <= blk < self.blocks_count or blk in self.system_zone:
            self.errors.error("ext2_xattr_delete_inode", f"inode {ind.ino}: bad xattr block {blk}")
            return
        view = self.cache.get(blk)
        magic, refcount = struct.unpack_from("<II", view, 0)
        if magic != EA_MAGIC:
            return  # not ours to interpret; leave it
        if refcount > 1:
            struct.pack_into("<I", view, 4, refcount - 1)
            self.cache.mark_dirty(blk, 0)
            return
        del view
        self._free_blocks([blk])

    def _create_node(self, dir_ino: int, name: bytes, mode: int, uid: int, gid: int,
                     init: Callable[[_Inode], None] | None = None) -> int:
        dind, name = self._prepare_new(dir_ino, name)
        ind = self._new_inode(dind, mode, uid, gid)
        try:
            if init is not None:
                init(ind)
            self._add_entry(dind, name, ind.ino, self._ftype(mode))
        except BaseException:
            self._destroy(ind)
            raise
        return ind.ino

    def create(self, dir_ino: int, name: bytes, mode: int, uid: int, gid: int) -> int:
        fmt = S.S_IFMT(mode) or S.S_IFREG
        if fmt != S.S_IFREG:
            raise FsError(errno.EINVAL, "ext2: create() makes regular files only")
        return self._create_node(dir_ino, name, S.S_IFREG | (mode & 0o7777), uid, gid)

    def mknod(self, dir_ino: int, name: bytes, mode: int, rdev: int, uid: int, gid: int) -> int:
        fmt = S.S_IFMT(mode) or S.S_IFREG
        if fmt not in (S.S_IFREG, S.S_IFIFO, S.S_IFCHR, S.S_IFBLK, S.S_IFSOCK):
            raise FsError(errno.EINVAL, "ext2: mknod: bad file type")

        def init(ind: _Inode) -> None:
            if fmt in (S.S_IFCHR, S.S_IFBLK):
                ma, mi = _major(rdev), _minor(rdev)
                if ma < 256 and mi < 256:
                    ind.block[0] = (ma << 8) | mi
                else:
                    ind.block[1] = (mi & 0xFF) | (ma << 8) | ((mi & ~0xFF) << 12)
                self._iput(ind)

        return self._create_node(dir_ino, name, fmt | (mode & 0o7777), uid, gid, init)

    def mkdir(self, dir_ino: int, name: bytes, mode: int, uid: int, gid: int) -> int:
        dind, name = self._prepare_new(dir_ino, name)
        if dind.links >= LINK_MAX:
            raise FsError(errno.EMLINK, "ext2: too many links to parent directory")
        ind = self._new_inode(dind, S.S_IFDIR | (mode & 0o7777), uid, gid)
        bs = self.block_size
        try:
            p, _ = self._bmap_alloc(ind, 0, self._group_start((ind.ino - 1) // self.ipg))
            view = self.cache.get(p)
            view[:] = self._zero
            self._put_entry(view, 0, ind.ino, 12, b".", self._ftype(S.S_IFDIR))
            self._put_entry(view, 12, dind.ino, bs - 12, b"..", self._ftype(S.S_IFDIR))
            self.cache.mark_dirty(p, ind.ino)
            del view
            ind.size = bs
            ind.links = 2
            self._iput(ind)
            self._add_entry(dind, name, ind.ino, self._ftype(S.S_IFDIR))
        except BaseException:
            ind.links = 0
            self._destroy(ind)
            raise
        dind.links += 1
        self._iput(dind)
        return ind.ino

    def symlink(self, dir_ino: int, name: bytes, target: bytes, uid: int, gid: int) -> int:
        target = bytes(target)
        if not target or b"\0" in target:
            raise FsError(errno.EINVAL if b"\0" in target else errno.ENOENT, "ext2: bad symlink target")
        if len(target) >= self.block_size:
            raise FsError(errno.ENAMETOOLONG, "ext2: symlink target too long")

        def init(ind: _Inode) -> None:
            if len(target) < 60:  # fast symlink: target lives in i_block
                raw = target.ljust(60, b"\0")
                ind.block = list(struct.unpack("<15I", raw))
                ind.size = len(target)
                self._iput(ind)
            else:
                self._write(ind, 0, memoryview(target))

        return self._create_node(dir_ino, name, S.S_IFLNK | 0o777, uid, gid, init)

    def readlink(self, ino: int) -> bytes:
        ind = self._live(ino)
        if not S.S_ISLNK(ind.mode):
            raise FsError(errno.EINVAL, f"ext2: inode {ino} is not a symlink")
        if self._is_fast_symlink(ind):
            return struct.pack("<15I", *ind.block)[:ind.size]
        return self._read(ind, 0, ind.size)

    def link(self, dir_ino: int, name: bytes, ino: int) -> None:
        ind = self._live(ino)
        if S.S_ISDIR(ind.mode):
            raise FsError(errno.EPERM, "ext2: hard link to a directory")
        if ind.links >= LINK_MAX:
            raise FsError(errno.EMLINK, "ext2: too many links")
        if ind.links == 0:
            raise FsError(errno.ENOENT, "ext2: inode has been unlinked")
        dind, name = self._prepare_new(dir_ino, name)
        self._add_entry(dind, name, ino, self._ftype(ind.mode))
        ind.links += 1
        ind.ctime = self.now()
        self._iput(ind)

    def unlink(self, dir_ino: int, name: bytes) -> int:
        name = self._check_name(name)
        dind = self._dir(dir_ino)
        found = self._find(dind, name)
        if found is None:
            raise FsError(errno.ENOENT, f"ext2: {name!r} not found")
        ind = self._iget(found[0])
        if S.S_ISDIR(ind.mode):
            raise FsError(errno.EISDIR, f"ext2: {name!r} is a directory")
        self._remove_entry(dind, name)
        if ind.links > 0:
            ind.links -= 1
        ind.ctime = self.now()
        self._iput(ind)
        return ind.ino

    def release(self, ino: int) -> None:
        ind = self._iget(ino)
        if ind.links != 0 or ind.mode == 0 or ino < self.first_ino:
            return
        g, bit = divmod(ino - 1, self.ipg)
        view = self.cache.get(self._groups[g].inode_bitmap)
        in_use = bool(view[bit >> 3] & (1 << (bit & 7)))
        del view
        if in_use:
            self._destroy(ind)

    def rmdir(self, dir_ino: int, name: bytes) -> None:
        name = self._check_name(name)
        if name == b".":
            raise FsError(errno.EINVAL, "ext2: rmdir of '.'")
        if name == b"..":
            raise FsError(errno.ENOTEMPTY, "ext2: rmdir of '..'")
        dind = self._dir(dir_ino)
        found = self._find(dind, name)
        if found is None:
            raise FsError(errno.ENOENT, f"ext2: {name!r} not found")
        ind = self._iget(found[0])
        if not S.S_ISDIR(ind.mode):
            raise FsError(errno.ENOTDIR, f"ext2: {name!r} is not a directory")
        if not self._is_empty_dir(ind):
            raise FsError(errno.ENOTEMPTY, f"ext2: {name!r} is not empty")
        self._remove_entry(dind, name)
        dind.links = max(dind.links - 1, 0)
        self._iput(dind)
        self._drop_dir(ind, rmdir=True)

    def _drop_dir(self, ind: _Inode, rmdir: bool) -> None:
        """A directory lost its name: free it, or, while it is open, leave it dead (no links:
        nothing can be created in it) until release(). rmdir also shows it empty (size 0), as
        Linux's ext2/ext4 do; a directory renamed over keeps its size."""
        ind.links = 0
        if self.is_open(ind.ino):
            if rmdir:
                ind.size = 0
            ind.ctime = self.now()
            self._iput(ind)
        else:
            self._destroy(ind)

    def rename(self, old_dir: int, old_name: bytes, new_dir: int, new_name: bytes) -> int:
        """Move old_name to new_name, replacing a file or an empty directory there.

        Returns the inode of a replaced file whose link count it dropped (the caller releases
        it when it has no links and is not open), else 0. A replaced directory is freed here."""
        old_name, new_name = self._check_name(old_name), self._check_name(new_name)
        for nm in (old_name, new_name):
            if nm in (b".", b".."):
                raise FsError(errno.EINVAL, "ext2: cannot rename '.' or '..'")
        odir, ndir = self._dir(old_dir), self._dir(new_dir)
        found = self._find(odir, old_name)
        if found is None:
            raise FsError(errno.ENOENT, f"ext2: {old_name!r} not found")
        src = self._iget(found[0])
        is_dir = S.S_ISDIR(src.mode)
        if is_dir and src.ino == new_dir:
            raise FsError(errno.EINVAL, "ext2: cannot move a directory into itself")
        if is_dir and old_dir != new_dir and self._is_ancestor(src.ino, new_dir):
            raise FsError(errno.EINVAL, "ext2: cannot move a directory into its own subtree")
        if is_dir and old_dir != new_dir and self._find(src, b"..") is None:  # before changing anything
            raise self.errors.error("ext2_rename", f"directory {src.ino} has no '..' entry")
        tfound = self._find(ndir, new_name)
        ft = self._ftype(src.mode)
        replaced = 0
        if tfound is not None:
            tgt = self._iget(tfound[0])
            if tgt.ino == src.ino:
                return 0  # both names are links to the same inode: POSIX says do nothing
            if is_dir:
                if not S.S_ISDIR(tgt.mode):
                    raise FsError(errno.ENOTDIR, f"ext2: {new_name!r} is not a directory")
                if not self._is_empty_dir(tgt):
                    raise FsError(errno.ENOTEMPTY, f"ext2: {new_name!r} is not empty")
            elif S.S_ISDIR(tgt.mode):
                raise FsError(errno.EISDIR, f"ext2: {new_name!r} is a directory")
            self._set_entry(ndir, new_name, src.ino, ft)
            if S.S_ISDIR(tgt.mode):
                ndir.links = max(ndir.links - 1, 0)  # the victim's '..' is gone
                self._iput(ndir)
                self._drop_dir(tgt, rmdir=False)
            else:
                tgt.links = max(tgt.links - 1, 0)
                tgt.ctime = self.now()
                self._iput(tgt)
                replaced = tgt.ino
        else:
            if is_dir and old_dir != new_dir and ndir.links >= LINK_MAX:
                raise FsError(errno.EMLINK, "ext2: too many links to target directory")
            self._add_entry(ndir, new_name, src.ino, ft)  # ENOSPC here leaves everything intact
        self._remove_entry(odir, old_name)
        if is_dir and old_dir != new_dir:
            self._set_entry(src, b"..", new_dir, self._ftype(S.S_IFDIR))
            odir.links = max(odir.links - 1, 0)
            ndir.links += 1
            self._iput(odir)
            self._iput(ndir)
        src.ctime = self.now()
        self._iput(src)
        return replaced

    def exchange(self, old_dir: int, old_name: bytes, new_dir: int, new_name: bytes) -> None:
        """Swap two names atomically (renameat2 RENAME_EXCHANGE): each entry points at the other's
        inode; a directory moved to another parent gets its '..' repointed, and when only one of
        the two is a directory the parents' link counts follow it (as ext4_cross_rename)."""
        old_name, new_name = self._check_name(old_name), self._check_name(new_name)
        for nm in (old_name, new_name):
            if nm in (b".", b".."):
                raise FsError(errno.EINVAL, "ext2: cannot exchange '.' or '..'")
        odir, ndir = self._dir(old_dir), self._dir(new_dir)
        ofound, nfound = self._find(odir, old_name), self._find(ndir, new_name)
        if ofound is None or nfound is None:
            raise FsError(errno.ENOENT, "ext2: exchange needs both names")
        a, b = self._iget(ofound[0]), self._iget(nfound[0])
        if a.ino == b.ino:
            return
        a_dir, b_dir = S.S_ISDIR(a.mode), S.S_ISDIR(b.mode)
        if old_dir != new_dir:
            if a_dir and self._is_ancestor(a.ino, new_dir) or b_dir and self._is_ancestor(b.ino, old_dir):
                raise FsError(errno.EINVAL, "ext2: cannot move a directory into its own subtree")
        self._set_entry(odir, old_name, b.ino, self._ftype(b.mode))
        self._set_entry(ndir, new_name, a.ino, self._ftype(a.mode))
        if old_dir != new_dir:
            if a_dir:
                self._set_entry(a, b"..", new_dir, self._ftype(S.S_IFDIR))
            if b_dir:
                self._set_entry(b, b"..", old_dir, self._ftype(S.S_IFDIR))
            if a_dir != b_dir:
                moved_to, left = (ndir, odir) if a_dir else (odir, ndir)
                moved_to.links += 1
                left.links = max(left.links - 1, 0)
                self._iput(odir)
                self._iput(ndir)
        t = self.now()
        for ind in (a, b):
            ind.ctime = t
            self._iput(ind)

    def _is_ancestor(self, anc: int, ino: int) -> bool:
        """Is directory anc on the '..' chain from directory ino up to the root?"""
        seen: set[int] = set()
        while ino != ROOT_INO and ino not in seen:
            if ino == anc:
                return True
            seen.add(ino)
            found = self._find(self._dir(ino), b"..")
            if found is None:
                return False
            ino = found[0]
        return ino == anc

    # ------------------------------------------------------------ attributes

    def stat(self, ino: int) -> Stat:
        ind = self._live(ino)
        rdev = 0
        if S.S_IFMT(ind.mode) in (S.S_IFCHR, S.S_IFBLK):
            if ind.block[0]:
                old = ind.block[0]
                rdev = _makedev((old >> 8) & 0xFF, old & 0xFF)
            else:
                new = ind.block[1]
                rdev = _makedev((new & 0xFFF00) >> 8, (new & 0xFF) | ((new >> 12) & 0xFFF00))
        return Stat(ino=ino, mode=ind.mode, nlink=ind.links, uid=ind.uid, gid=ind.gid,
                    size=ind.size, atime=ind.atime, mtime=ind.mtime, ctime=ind.ctime,
                    blocks=ind.blocks, rdev=rdev, blksize=self.block_size)

    def chmod(self, ino: int, mode: int) -> None:
        ind = self._live(ino)
        ind.mode = S.S_IFMT(ind.mode) | (mode & 0o7777)
        ind.ctime = self.now()
        self._iput(ind)

    def chown(self, ino: int, uid: int, gid: int) -> None:
        ind = self._live(ino)
        if uid != -1:
            ind.uid = uid & 0xFFFFFFFF
        if gid != -1:
            ind.gid = gid & 0xFFFFFFFF
        ind.ctime = self.now()
        self._iput(ind)

    def utimes(self, ino: int, atime: int | None, mtime: int | None) -> None:
        ind = self._live(ino)
        if atime is not None:
            ind.atime = atime
        if mtime is not None:
            ind.mtime = mtime
        ind.ctime = self.now()
        self._iput(ind)

    def touch_atime(self, ino: int) -> None:
        ind = self._live(ino)
        t = self.now()
        if ind.atime != t:  # (no inode write for a second access within the same second)
            ind.atime = t
            self._iput(ind)

    def seek_data(self, ino: int, offset: int, data: bool) -> int:
        """lseek's SEEK_DATA (data=True) or SEEK_HOLE from offset: unmapped blocks are holes, the
        end of the file is a hole; -1 when offset is at or past the end (ENXIO)."""
        ind = self._live(ino)
        if offset < 0 or offset >= ind.size:
            return -1
        bs, chunk = self.block_size, 1024
        fb, last = offset // bs, (ind.size - 1) // bs
        while fb <= last:
            n = min(chunk, last - fb + 1)
            for i, p in enumerate(self._map_range(ind, fb, n)):
                if bool(p) == data:
                    return max(offset, (fb + i) * bs) if data or (fb + i) * bs < ind.size else ind.size
            fb += n
        return -1 if data else ind.size

    # ------------------------------------------------------------ whole fs

    def _overhead(self) -> int:
        """Blocks used by metadata (superblocks, descriptors, bitmaps, inode tables)."""
        sparse = bool(self.ro_compat & RO_SPARSE_SUPER)
        view = self.cache.get(self._sb_blk)
        reserved_gdt = int.from_bytes(view[self._sb_off + 206:self._sb_off + 208], "little") if self.rev else 0
        del view
        total = self.first_data
        for g in range(self.ngroups):
            if self._has_super(g, sparse):
                total += 1 + len(self._gd_blocks) + reserved_gdt
            total += 2 + self._itable_blocks
        return total

    @staticmethod
    def _has_super(g: int, sparse: bool) -> bool:
        if g <= 1 or not sparse:
            return True
        for base in (3, 5, 7):
            n = base
            while n < g:
                n *= base
            if n == g:
                return True
        return False

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
