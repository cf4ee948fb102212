"""Validation of what the ext2 driver reads: a corrupt image must fail the syscall, not emu.

The checks follow Linux's fs/ext2 where it has them (ext2_fill_super and
ext2_check_descriptors at mount, ext2_check_page for directory records, ext2_valid_block_bitmap
and the "system zone" tests in balloc.c, ext2_get_inode/ext2_iget for inodes) and add a few
where our driver would otherwise act on nonsense (a block pointer outside the file system or
into its metadata, a symlink longer than its storage, a free count that does not fit).

A problem found at mount is an FsError(EINVAL) and the mount fails; after mount the driver
reports each distinct problem once, as Linux's ext2_error does, with a line

    EXT2-fs error (device vda): FUNCTION: MESSAGE

in the kernel log (`ErrorLog`), and fails the operation with FsError(EIO).

    block 0 (1 KiB blocks: the boot block)
    per group:  [superblock, descriptors, reserved descriptors]  (group 0, 1, powers of 3, 5, 7)
                block bitmap, inode bitmap, inode table           (anywhere inside the group)
                data blocks                                       (everything else)

`SystemZone` is the set of metadata blocks: data may never be written into them, freed from
them, or allocated in them.
"""
from __future__ import annotations

import bisect
import errno
import stat as S
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .ext2.layout import Group

__all__ = ["ErrorLog", "SystemZone", "check_geometry", "check_descriptor", "check_dirent",
           "check_inode", "VALID_FMTS"]

# Every file type an inode may have (0: a free inode).
VALID_FMTS = frozenset({0, S.S_IFREG, S.S_IFDIR, S.S_IFLNK, S.S_IFCHR, S.S_IFBLK, S.S_IFIFO, S.S_IFSOCK})
FAST_SYMLINK_MAX = 60  # bytes of i_block


class ErrorLog:
    """Reports corruption once per distinct line (Linux prints every ext2_error; a fuzzer or a
    `find` over a bad directory would flood the log) and builds the error to raise."""

    def __init__(self, device: str = "vda") -> None:
        self.device = device
        self.sink: Callable[[str], None] = lambda line: None  # the kernel log
        self.reported: set[str] = set()

    def error(self, func: str, msg: str, err: int = errno.EIO) -> Exception:
        from .ext2 import FsError

        line = f"EXT2-fs error (device {self.device}): {func}: {msg}"
        if line not in self.reported:
            self.reported.add(line)
            self.sink(line)
        return FsError(err, f"ext2: {func}: {msg}")


class SystemZone:
    """Sorted, disjoint ranges [start, end) of metadata blocks."""

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        merged: list[list[int]] = []
        for start, end in sorted(r for r in ranges if r[1] > r[0]):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        self.starts = [s for s, _ in merged]
        self.ends = [e for _, e in merged]

    def __contains__(self, blk: int) -> bool:
        i = bisect.bisect_right(self.starts, blk) - 1
        return i >= 0 and blk < self.ends[i]

    def __len__(self) -> int:
        return sum(e - s for s, e in zip(self.starts, self.ends))


def check_geometry(sb: dict[str, int], device_blocks: int | None) -> None:
    """What ext2_fill_super refuses beyond the basic superblock fields (see ext2.layout.parse_super)."""
    from .ext2 import FsError

    bs = sb["block_size"]
    if device_blocks is not None and sb["blocks"] > device_blocks:
        raise FsError(errno.EINVAL, f"ext2: bad geometry: block count {sb['blocks']} exceeds size of "
                      f"device ({device_blocks} blocks)")
    if sb["ipg"] < bs // sb["inode_size"]:
        raise FsError(errno.EINVAL, f"ext2: bad inodes per group {sb['ipg']}")
    if sb["r_blocks"] > sb["blocks"]:
        raise FsError(errno.EINVAL, f"ext2: reserved block count {sb['r_blocks']} > block count")
    gd_blocks = -(-sb["groups"] * 32 // bs)
    if sb["first_data"] + 1 + gd_blocks >= sb["blocks"]:
        raise FsError(errno.EINVAL, f"ext2: {sb['groups']} group descriptors do not fit in the file system")


def check_descriptor(g: int, grp: "Group", first: int, last: int, itable_blocks: int) -> str | None:
    """ext2_check_descriptors: the bitmaps and the inode table lie inside their group
    [first, last]. Returns the problem, or None."""
    if not first <= grp.block_bitmap <= last:
        return f"Block bitmap for group {g} not in group (block {grp.block_bitmap})!"
    if not first <= grp.inode_bitmap <= last:
        return f"Inode bitmap for group {g} not in group (block {grp.inode_bitmap})!"
    if not (first <= grp.inode_table and grp.inode_table + itable_blocks - 1 <= last):
        return f"Inode table for group {g} not in group (block {grp.inode_table})!"
    return None


def check_dirent(off: int, rec_len: int, name_len: int, ino: int, size: int, inodes_count: int) -> str | None:
    """ext2_check_page, for one record at `off` of a directory block of `size` bytes."""
    if rec_len < 12:
        return "rec_len is smaller than minimal"
    if rec_len & 3:
        return "unaligned directory entry"
    if rec_len < (8 + name_len + 3) & ~3:
        return "rec_len is too small for name_len"
    if off + rec_len > size:
        return "directory entry across blocks"
    if ino > inodes_count:
        return "inode out of bounds"
    return None


def check_inode(mode: int, size: int, blocks_512: int, max_size: int, block_size: int, fs_blocks: int,
                fast_symlink: bool) -> str | None:
    """ext2_iget's view of an inode record, plus the bounds our block map relies on. Returns
    the problem, or None. (A link count of 0 means a deleted inode, as in ext2_iget: see
    Ext2._live and Ext2.lookup.)"""
    fmt = S.S_IFMT(mode)
    if fmt not in VALID_FMTS:
        return f"bad file type {mode:#o}"
    if fmt == 0:
        return None  # a free inode: nothing else matters
    if blocks_512 > fs_blocks * (block_size // 512):
        return f"i_blocks {blocks_512} larger than the file system"
    if fmt in (S.S_IFREG, S.S_IFDIR) and size > max_size:
        return f"i_size {size} beyond the maximum file size"
    if fmt == S.S_IFDIR and size % block_size:
        return f"directory size {size} is not a multiple of the block size"
    if fmt == S.S_IFLNK:
        limit = FAST_SYMLINK_MAX if fast_symlink else block_size
        if size >= limit:
            return f"symlink length {size} too long for a {'fast' if fast_symlink else 'slow'} symlink"
    return None
