"""Inodes: the inode table (read into one cached Inode object per inode, written through on every
change), creating and destroying inodes, release() of an unlinked inode, and attributes
(stat, chmod, chown, utimes, atime)."""
from __future__ import annotations

import errno
import stat as S
import struct
from dataclasses import dataclass
from typing import Callable

from .. import ext2check
from .fserror import FsError
from .layout import EA_MAGIC, EXT4_EXTENTS_FL, EXT4_INLINE_DATA_FL, ROOT_INO, Inode, makedev


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


class Inodes:
    """Mixed into Ext2: inode table access, inode lifetime and attributes."""

    def _iloc(self, ino: int) -> tuple[int, int]:
        if not 1 <= ino <= self.inodes_count:
            raise FsError(errno.EINVAL, f"ext2: inode {ino} out of range")
        g, idx = divmod(ino - 1, self.ipg)
        blk, off = divmod(idx * self.inode_size, self.block_size)
        return self._groups[g].inode_table + blk, off

    def _iget(self, ino: int) -> Inode:
        ind = self._icache.get(ino)
        if ind is not None:
            self._icache.move_to_end(ino)
            return ind
        blk, off = self._iloc(ino)
        ind = Inode(ino, bytearray(self.cache.get(blk)[off:off + self.inode_size]))
        if ind.flags & (EXT4_EXTENTS_FL | EXT4_INLINE_DATA_FL) and ind.mode:
            raise self.errors.error("ext2_iget", f"inode {ino} uses extents/inline data (not ext2)")
        bad = ext2check.check_inode(ind.mode, ind.size, ind.blocks, self.max_file_size, self.block_size,
                                    self.blocks_count, S.S_ISLNK(ind.mode) and self._is_fast_symlink(ind))
        if bad:
            raise self.errors.error("ext2_iget", f"inode {ino}: {bad}")
        self._icache_add(ind)
        return ind

    def use_objects(self, alloc: Callable[[str], int], free: Callable[[int], None]) -> None:
        """Take the cache entries' kernel objects from now on (the kernel's slab), including
        for the entries cached while mounting."""
        self.obj_alloc, self.obj_free = alloc, free
        for ino in self._icache:
            self._iobj[ino] = alloc("ext2_inode_cache")
        for key, (ino, _obj) in self._dcache.items():
            self._dcache[key] = (ino, alloc("dentry"))

    def _icache_add(self, ind: Inode) -> None:
        if ind.ino not in self._icache:
            self._iobj[ind.ino] = self.obj_alloc("ext2_inode_cache")
        self._icache[ind.ino] = ind
        if len(self._icache) > self.INODE_CACHE_MAX:
            self._icache_drop(next(iter(self._icache)))

    def _icache_drop(self, ino: int) -> None:
        del self._icache[ino]
        self.obj_free(self._iobj.pop(ino))

    def shrink_caches(self, n: int | None) -> int:
        """Drop up to n (None: all) of the least recently used dentries, then inodes no open
        file holds; returns objects freed. Only between file-system operations: a call in
        progress may hold an inode it looked up."""
        freed = 0
        while self._dcache and (n is None or freed < n):
            _key, (_ino, obj) = self._dcache.popitem(last=False)
            self.obj_free(obj)
            freed += 1
        for ino in list(self._icache):
            if n is not None and freed >= n:
                break
            if ino != ROOT_INO and not self.is_open(ino):
                self._icache_drop(ino)
                freed += 1
        return freed

    def _iput(self, ind: Inode) -> None:
        """Write the inode through to its inode-table block."""
        blk, off = self._iloc(ind.ino)
        raw = ind.pack()
        view = self.cache.get(blk)
        view[off:off + self.inode_size] = raw
        self.cache.mark_dirty(blk, 0)

    def _live(self, ino: int) -> Inode:
        ind = self._iget(ino)
        if ind.mode == 0 or (ind.links == 0 and ind.dtime):
            raise FsError(errno.ENOENT, f"ext2: inode {ino} is not in use")
        return ind

    def _new_inode(self, dind: Inode, mode: int, uid: int, gid: int) -> Inode:
        ino = self._alloc_inode(dind.ino, S.S_ISDIR(mode))
        raw = bytearray(self.inode_size)
        t = self.now()
        if self.inode_size >= 160:
            struct.pack_into("<H", raw, 128, 32)  # i_extra_isize, as mke2fs sets it
            struct.pack_into("<I", raw, 144, t & 0xFFFFFFFF)  # i_crtime
        ind = Inode(ino, raw)
        self._gen = (self._gen + 1) & 0xFFFFFFFF
        ind.mode, ind.uid, ind.gid, ind.links = mode, uid & 0xFFFFFFFF, gid & 0xFFFFFFFF, 1
        ind.atime = ind.mtime = ind.ctime = t
        ind.generation = self._gen
        self._icache_add(ind)
        self._iput(ind)
        return ind

    def _destroy(self, ind: Inode) -> None:
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

    def _drop_xattr_block(self, ind: Inode) -> None:
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

    def stat(self, ino: int) -> Stat:
        ind = self._live(ino)
        rdev = 0
        if S.S_IFMT(ind.mode) in (S.S_IFCHR, S.S_IFBLK):
            if ind.block[0]:
                old = ind.block[0]
                rdev = makedev((old >> 8) & 0xFF, old & 0xFF)
            else:
                new = ind.block[1]
                rdev = makedev((new & 0xFFF00) >> 8, (new & 0xFF) | ((new >> 12) & 0xFFF00))
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
