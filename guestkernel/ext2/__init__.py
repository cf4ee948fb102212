"""ext2 file-system driver for the emu guest kernel.

Reads and writes ext2 images (revision 0 and 1, block sizes 1 KiB .. 64 KiB) through a
`BlockCache`.  Supported on-disk features: filetype, sparse_super, large_file, ext_attr
(xattr blocks are left alone, except that their reference count is dropped when an inode
is freed), resize_inode (reserved inodes are never touched), dir_index (hashed
directories are read linearly; modifying one clears EXT2_INDEX_FL so it stays valid).
Images with any other INCOMPAT feature, or RO_COMPAT features whose metadata we would
have to maintain (checksums, huge_file, quota, ...), are refused.

`Ext2` (super.py) is the one entry point; its operations come from one module each:

    layout.py    the on-disk format: superblock, group descriptors, inode struct, constants
    alloc.py     block and inode bitmaps, free counts
    blockmap.py  logical -> physical blocks of an inode (direct and indirect), truncation
    inode.py     the inode table and inode cache, inode lifetime, attributes
    file.py      file data: read, write, truncate
    dir.py       directory records: iterate, find, add, remove; dir_stream, readdir
    namei.py     lookup, create, mkdir, link, unlink, rmdir, rename, symlink
    super.py     mount checks, group descriptors in memory, statfs, sync
    fserror.py   FsError

Design notes:
  * Block and inode bitmaps, inode tables, indirect blocks and directory blocks are
    always accessed through the cache with the get/modify/mark_dirty/drop discipline:
    no view is kept across another `cache.get`.
  * Group descriptors and superblock counters live in memory and are written into the
    cache by `sync()`; the counts are kept exact at all times.
  * Inodes are cached as `Inode` objects and written through on every change, so there
    is exactly one live object per inode (avoids lost updates inside an operation).
  * The driver never frees a file's inode from `unlink` or from `rename` over it: both
    return the inode whose link they dropped, and the kernel calls `release()` once the
    inode has no links and no open files (an open file outlives its last name, as on Linux).
  * Errors are FsError(errno), a SyscallError: the syscall that met it fails with that errno.
    Corrupt metadata is refused at mount (EINVAL) or reported once in the kernel log and
    surfaces as EIO, never as another Python exception (the checks: ext2check.py).
"""

from __future__ import annotations

from .fserror import FsError
from .inode import Stat
from .layout import EXT2_INDEX_FL, ROOT_INO, probe_block_size
from .super import Ext2

__all__ = ["FsError", "Stat", "Ext2", "probe_block_size", "ROOT_INO", "EXT2_INDEX_FL"]
