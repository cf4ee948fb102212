"""Allocation: block and inode bitmaps, one per group, and the free counts of the group
descriptors and the superblock (kept exact in memory, written by Ext2.store_meta()).

Blocks are taken near a goal (the block after the previous one of the file), a whole free byte
(8 blocks) when the search moves on; inodes for directories are spread over the groups, those of
files stay with their parent. A bitmap that contradicts the metadata (a system-zone block or a
live inode shown free) is reported and the bit left set."""
from __future__ import annotations

import errno
import re
import stat as S

from .fserror import FsError
from .layout import Inode

_NOT_FF = re.compile(rb"[^\xff]")


def find_zero(bm: bytes, start: int, limit: int) -> int:
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


class Allocation:
    """Mixed into Ext2: the group geometry, block and inode allocation and freeing."""

    # Blocks free on storage as a checkpoint committed it (None: not tracked): those allocated
    # since, minus those freed again; `freed_blocks`, blocks in use then and freed since (taken
    # again they are not free there). A checkpoint writes a dirty fresh block in place before
    # its commit instead of logging it (checkpoint/checkpointer.py).
    fresh_blocks: set[int] | None = None
    freed_blocks: set[int]  # (set by track_fresh, read only while fresh_blocks is a set)

    def track_fresh(self) -> None:
        """Storage is what a checkpoint just committed: note the blocks free in it from now on."""
        self.fresh_blocks = set()
        self.freed_blocks = set()

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
                bit = find_zero(bm, max(start, low), limit)
            if bit < 0:
                bit = find_zero(bm, low, limit)
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
            blk = self._group_start(g) + bit
            if self.fresh_blocks is not None and blk not in self.freed_blocks:
                self.fresh_blocks.add(blk)
            return blk
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
        view = self.cache.get(blk, new=True)
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
        if self.fresh_blocks is not None:
            for b in blocks:
                if b in self.fresh_blocks:
                    self.fresh_blocks.discard(b)
                else:
                    self.freed_blocks.add(b)
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

    def _free_inode(self, ind: Inode) -> None:
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
