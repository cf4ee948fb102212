"""The block map: which physical block holds each logical block of an inode's data, through
i_block's 12 direct pointers and its single, double and triple indirect trees.

The rest of the driver reaches the blocks of file and directory data only through this
interface (where a DAX path, mapping file blocks straight onto memory, plugs in):

    _map_range(ind, start, count) -> the physical block of each file block in
                                     [start, start+count), 0 for a hole
    _bmap_alloc(ind, fb, goal)    -> (physical block of fb, newly allocated?), allocating it and
                                     any missing indirect block near goal
    _goal_for(ind, fb)            -> where to allocate fb (after the block before it)
    _truncate_blocks(ind, keep)   -> free every block mapping file blocks >= keep
    _data_block(blk, func, ino)   -> blk, if data may be written into it, else EIO
    _has_blockmap(ind)            -> does i_block hold a block map (not a fast symlink's target
                                     or a device number)
    bmap(ino, fb), seek_data(ino, offset, data): the public queries

_bmap_alloc and _truncate_blocks change ind.block and ind.blocks in memory; the caller writes
the inode back. A pointer read from the tree is checked before anything is read, written or
freed through it: outside the file system or into the system zone is EIO (reported once)."""
from __future__ import annotations

import errno
import stat as S

from .fserror import FsError
from .layout import N_DIRECT, Inode


class BlockMap:
    """Mixed into Ext2: logical -> physical block mapping, allocation through it, truncation."""

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

    def _has_blockmap(self, ind: Inode) -> bool:
        fmt = ind.fmt
        if fmt in (S.S_IFREG, S.S_IFDIR):
            return True
        return fmt == S.S_IFLNK and not self._is_fast_symlink(ind)

    def _is_fast_symlink(self, ind: Inode) -> bool:
        ea = self._b512 if ind.file_acl else 0
        return ind.blocks - ea == 0

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

    def _map_range(self, ind: Inode, start: int, count: int) -> list[int]:
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

    def _bmap_alloc(self, ind: Inode, fb: int, goal: int) -> tuple[int, bool]:
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

    def _missing(self, ind: Inode, slot: int, idx: tuple[int, ...]) -> int:
        p = ind.block[slot]
        if p == 0:
            return len(idx) + 1
        for level, i in enumerate(idx):
            p = self._ptrs_of(p)[i]
            if p == 0:
                return len(idx) - level
        return 0

    def _goal_for(self, ind: Inode, fb: int) -> int:
        if fb > 0:
            prev = self._map_range(ind, fb - 1, 1)[0]
            if prev:
                return prev + 1
        g = (ind.ino - 1) // self.ipg
        return self._group_start(g)

    def _truncate_blocks(self, ind: Inode, keep: int) -> None:
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
