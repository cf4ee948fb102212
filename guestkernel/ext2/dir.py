"""Directories: the blocks of records (inode, rec_len, name_len, file type, name), iterated,
searched, added to (in the first block with room, else in a new block), removed (merged into the
previous record) and repointed; dir_stream/readdir list them with their byte positions."""
from __future__ import annotations

import errno
import stat as S
import struct
from typing import Iterator

from .. import ext2check
from .fserror import FsError
from .layout import DIRENT, DT_BY_FT, EXT2_INDEX_FL, FT_BY_FMT, Inode, rec_size


class Directories:
    """Mixed into Ext2: directory records and the listing of a directory."""

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

    def _dir_blocks(self, dind: Inode, start: int = 0) -> Iterator[tuple[int, int, bytes]]:
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
        off, bs, unpack = 0, len(buf), DIRENT.unpack_from
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

    def _dir(self, ino: int) -> Inode:
        dind = self._live(ino)
        if not S.S_ISDIR(dind.mode):
            raise FsError(errno.ENOTDIR, f"ext2: inode {ino} is not a directory")
        return dind

    def _find(self, dind: Inode, name: bytes) -> tuple[int, int] | None:
        """(ino, file_type) of name in directory, or None."""
        for _fb, _p, buf in self._dir_blocks(dind):
            if name not in buf:  # cheap pre-filter: most blocks don't contain the name
                continue
            for _off, ino, _rl, ft, nm in self._entries(buf, dind.ino):
                if ino and nm == name:
                    return ino, ft
        return None

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
            return [(o, nm, i, DT_BY_FT.get(ft, 0)) for o, nm, i, ft in out]
        return [(o, nm, i, DT_BY_FT[FT_BY_FMT.get(S.S_IFMT(self._iget(i).mode), 0)]) for o, nm, i, _ in out]

    def _dir_touch(self, dind: Inode, times: bool = True) -> None:
        # Entries are added/removed linearly, so a hash index would go stale: drop it. `times`:
        # the directory's mtime and ctime change too (not for a moved directory's '..').
        dind.flags &= ~EXT2_INDEX_FL
        if times:
            dind.mtime = dind.ctime = self.now()

    def _ftype(self, mode: int) -> int:
        return FT_BY_FMT.get(S.S_IFMT(mode), 0) if self.has_filetype else 0

    def _put_entry(self, view: memoryview, off: int, ino: int, rec_len: int, name: bytes, ft: int) -> None:
        nl = len(name)
        if not self.has_filetype:
            ft, nl = nl >> 8, nl & 0xFF
        DIRENT.pack_into(view, off, ino, self._encode_rec_len(rec_len), nl, ft)
        view[off + 8:off + 8 + len(name)] = name

    def _add_entry(self, dind: Inode, name: bytes, ino: int, ft: int) -> None:
        self._dentry_changed(dind.ino, name)
        need = rec_size(len(name))
        full, full_need = self._dir_full.get(dind.ino, (0, 0))
        for fb, p, buf in self._dir_blocks(dind, full if need >= full_need else 0):
            for off, eino, rl, _ft, nm in self._entries(buf, dind.ino):
                used = rec_size(len(nm)) if eino else 0
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
            p, new = self._bmap_alloc(dind, fb, self._goal_for(dind, fb))
        except FsError:
            self._iput(dind)
            raise
        self._dir_full[dind.ino] = (fb, need)
        view = self.cache.get(p, new)
        view[:] = self._zero
        self._put_entry(view, 0, ino, bs, name, ft)
        self.cache.mark_dirty(p, dind.ino)
        del view
        dind.size += bs
        self._dir_touch(dind)
        self._iput(dind)

    def _remove_entry(self, dind: Inode, name: bytes) -> tuple[int, int]:
        self._dentry_changed(dind.ino, name)
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

    def _set_entry(self, dind: Inode, name: bytes, ino: int, ft: int, touch: bool = True) -> None:
        """Point an existing entry at another inode. `touch`: the directory's mtime and ctime
        change (not for a moved directory's '..': Linux's ext2_set_link(..., update_times=false))."""
        self._dentry_changed(dind.ino, name)
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
                    self._dir_touch(dind, times=touch)
                    self._iput(dind)
                    return
        raise FsError(errno.ENOENT, f"ext2: {name!r} not found")

    def _is_empty_dir(self, dind: Inode) -> bool:
        for _fb, _p, buf in self._dir_blocks(dind):
            for _off, eino, _rl, _ft, nm in self._entries(buf, dind.ino):
                if eino and nm not in (b".", b".."):
                    return False
        return True
