"""The ext2 on-disk format: superblock fields and feature bits, group descriptors, the inode
struct, directory records and device numbers, as the driver reads and writes them."""
from __future__ import annotations

import errno
import stat as S
import struct
from typing import Callable

from .fserror import FsError

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
FT_BY_FMT = {S.S_IFREG: 1, S.S_IFDIR: 2, S.S_IFCHR: 3, S.S_IFBLK: 4, S.S_IFIFO: 5, S.S_IFSOCK: 6, S.S_IFLNK: 7}
DT_BY_FT = {0: 0, 1: 8, 2: 4, 3: 2, 4: 6, 5: 1, 6: 12, 7: 10}

_SB_COUNTS = struct.Struct("<11I")
_GD = struct.Struct("<IIIHHH")
DIRENT = struct.Struct("<IHBB")


def _feature_names(bits: int, names: dict[int, str]) -> str:
    out = []
    for bit in range(32):
        if bits & (1 << bit):
            out.append(names.get(1 << bit, f"0x{1 << bit:x}"))
    return ",".join(out)


def parse_super(raw: bytes | memoryview) -> dict[str, int]:
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
    return parse_super(read_at(1024, 1024))["block_size"]


def rec_size(name_len: int) -> int:
    return (8 + name_len + 3) & ~3


def makedev(major: int, minor: int) -> int:  # glibc encoding
    return ((major & 0xFFF) << 8) | ((major & ~0xFFF) << 32) | (minor & 0xFF) | ((minor & ~0xFF) << 12)


def major(dev: int) -> int:
    return ((dev >> 8) & 0xFFF) | ((dev >> 32) & ~0xFFF)


def minor(dev: int) -> int:
    return (dev & 0xFF) | ((dev >> 12) & ~0xFF)


class Inode:
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


class Group:
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


def has_super(g: int, sparse: bool) -> bool:
    """Does group g hold a copy of the superblock and descriptors (sparse_super: 0, 1 and
    powers of 3, 5 and 7)?"""
    if g <= 1 or not sparse:
        return True
    for base in (3, 5, 7):
        n = base
        while n < g:
            n *= base
        if n == g:
            return True
    return False
