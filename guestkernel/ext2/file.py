"""File data: read, write and truncate a regular file (and read a symlink's target) through the
block map and the block cache. Fresh blocks and the stale tail of the block at EOF are zeroed so
that old disk contents never show."""
from __future__ import annotations

import errno
import stat as S
import struct

from .fserror import FsError
from .layout import RO_LARGE_FILE, Inode


class FileData:
    """Mixed into Ext2: the data of regular files and symlinks."""

    def read(self, ino: int, offset: int, n: int) -> bytes:
        ind = self._live(ino)
        if offset < 0 or n < 0:
            raise FsError(errno.EINVAL, "ext2: negative offset or count")
        if not self._has_blockmap(ind):
            raise FsError(errno.EINVAL, f"ext2: inode {ino} has no data blocks")
        return self._read(ind, offset, n)

    def _read(self, ind: Inode, offset: int, n: int) -> bytes:
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
        get, zero, lo_ok, hi = self.cache.data_read, self._zero, self.first_data, self.blocks_count
        pos, end = offset, offset + n
        for p in phys:
            boff = pos % bs
            chunk = min(bs - boff, end - pos)
            if p == 0:
                parts.append(zero[:chunk])
            elif lo_ok <= p < hi:
                parts.append(get(p, boff, chunk))
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

    def _write(self, ind: Inode, offset: int, mv: memoryview) -> int:
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
                view = cache.data_view(p, new)  # (a new block is written whole below)
                if new and chunk < bs:
                    view[:] = self._zero  # fresh block: never expose stale disk contents
                    lo, hi = 0, bs
                else:
                    lo, hi = boff, boff + chunk
                view[boff:boff + chunk] = mv[written:written + chunk]
                del view
                cache.data_written(p, lo, hi - lo, ind.ino)
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

    def map_block(self, ino: int, fb: int) -> int:
        """The block holding file block fb, allocated (zeroed) where the file has a hole: the
        page a shared writable mapping on DAX storage writes into."""
        ind = self._live(ino)
        p, new = self._bmap_alloc(ind, fb, self._goal_for(ind, fb))
        if new:
            view = self.cache.data_view(p, new=True)
            view[:] = self._zero
            del view
            self.cache.data_written(p, 0, self.block_size, ind.ino)
            ind.mtime = ind.ctime = self.now()
            self._iput(ind)
        return p

    def _zero_tail(self, ind: Inode, upto: int) -> None:
        """Zero bytes [size, upto) inside the block holding EOF (stale data past EOF)."""
        bs, size = self.block_size, ind.size
        if size % bs == 0 or upto <= size or not self._has_blockmap(ind):
            return
        p = self._map_range(ind, size // bs, 1)[0]
        if p:
            self._data_block(p, "ext2_truncate", ind.ino)  # never write through a corrupt pointer
            view = self.cache.data_view(p)
            lo, hi = size % bs, min(bs, upto - (size // bs) * bs)
            view[lo:hi] = bytes(hi - lo)
            del view
            self.cache.data_written(p, lo, hi - lo, ind.ino)

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

    def readlink(self, ino: int) -> bytes:
        ind = self._live(ino)
        if not S.S_ISLNK(ind.mode):
            raise FsError(errno.EINVAL, f"ext2: inode {ino} is not a symlink")
        if self._is_fast_symlink(ind):
            return struct.pack("<15I", *ind.block)[:ind.size]
        return self._read(ind, 0, ind.size)
