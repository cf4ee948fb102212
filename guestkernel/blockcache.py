"""Block cache interface used by the ext2 driver, plus a file-backed implementation.

`BlockCache` is the contract between `guestkernel.ext2.Ext2` and whatever holds the
device's blocks.  The guest kernel supplies its own implementation (blocks live in
guest-physical frames); `FileBlockCache` here is a plain dict-backed cache over an image
file, used by tests and host-side tools.

Contract: a view returned by `get` is only valid until the next `get` (the kernel's cache
may evict and reuse the frame), so callers get, use, `mark_dirty`, and drop it.
`FileBlockCache(max_blocks=N)` enforces that in tests: once more than N blocks are
resident, others are evicted (written back if dirty) and their buffers poisoned, so a
stale view reads garbage and writes through it are lost.
"""

from __future__ import annotations

import errno
import os
from collections import OrderedDict
from typing import BinaryIO, Protocol

__all__ = ["BlockCache", "DataThroughCache", "FileBlockCache"]


class BlockCache(Protocol):
    block_size: int

    def get(self, blockno: int, new: bool = False) -> memoryview:
        """Writable view of exactly block_size bytes of block `blockno`. `new`: the block was
        just allocated and the caller fills it whole, so its old contents need not be read
        (Linux's buffer_new: no read from the device)."""
        ...

    def mark_dirty(self, blockno: int, ino: int = 0) -> None:
        """Block was modified; `ino` is the inode owning the data (0 = metadata)."""
        ...

    def forget(self, blockno: int) -> None:
        """Block was freed: drop it, no write-back needed."""
        ...

    def sync(self) -> None:
        """Write back every dirty block."""
        ...

    # A regular file's data: through get/mark_dirty in a cache; on DAX storage the block itself
    def data_read(self, blockno: int, offset: int, n: int) -> bytes: ...

    def data_view(self, blockno: int, new: bool = False) -> memoryview:
        """Writable view of a data block; the caller then says what it wrote (data_written).
        `new` as for get."""
        ...

    def data_written(self, blockno: int, offset: int, n: int, ino: int) -> None: ...


class DataThroughCache:
    """A regular file's data as any cached block (get, mark_dirty): what a cache that holds
    blocks gives ext2's file data calls (DAX storage reaches the block itself instead)."""

    def data_read(self, blockno: int, offset: int, n: int) -> bytes:
        return self.get(blockno)[offset:offset + n].tobytes()  # type: ignore[attr-defined]

    def data_view(self, blockno: int, new: bool = False) -> memoryview:
        return self.get(blockno, new)  # type: ignore[attr-defined]

    def data_written(self, blockno: int, offset: int, n: int, ino: int) -> None:
        self.mark_dirty(blockno, ino)  # type: ignore[attr-defined]


_POISON = 0xA5


class FileBlockCache(DataThroughCache):
    """Dict-backed BlockCache over an image file (or any seekable binary file object)."""

    def __init__(
        self,
        image: str | os.PathLike[str] | BinaryIO,
        block_size: int | None = None,
        *,
        readonly: bool = False,
        max_blocks: int | None = None,
    ) -> None:
        if isinstance(image, (str, os.PathLike)):
            self._f: BinaryIO = open(image, "rb" if readonly else "r+b")
            self._owns = True
        else:
            self._f = image
            self._owns = False
        self.readonly = readonly
        self._f.seek(0, os.SEEK_END)
        self.device_size = self._f.tell()
        if block_size is None:
            from .ext2 import probe_block_size  # local import: ext2 imports this module

            block_size = probe_block_size(self._read_at)
        self.block_size = block_size
        self.nblocks = self.device_size // block_size
        self.max_blocks = max_blocks
        self._blocks: OrderedDict[int, bytearray] = OrderedDict()
        self._dirty: set[int] = set()
        self.reads = 0
        self.writes = 0

    def _read_at(self, offset: int, n: int) -> bytes:
        self._f.seek(offset)
        return self._f.read(n)

    def get(self, blockno: int, new: bool = False) -> memoryview:  # (a host-side tool: reads anyway)
        buf = self._blocks.get(blockno)
        if buf is None:
            if not 0 <= blockno < self.nblocks:
                from .ext2 import FsError

                raise FsError(errno.EIO, f"block {blockno} outside device ({self.nblocks} blocks)")
            self._f.seek(blockno * self.block_size)
            buf = bytearray(self._f.read(self.block_size))
            self.reads += 1
            self._blocks[blockno] = buf
            if self.max_blocks is not None:
                self._evict(keep=blockno)
        else:
            self._blocks.move_to_end(blockno)
        return memoryview(buf)

    def _evict(self, keep: int) -> None:
        assert self.max_blocks is not None
        while len(self._blocks) > self.max_blocks:
            blockno, buf = next(iter(self._blocks.items()))
            if blockno == keep:  # max_blocks == 0: never evict the block being returned
                break
            if blockno in self._dirty:
                self._write(blockno, buf)
                self._dirty.discard(blockno)
            del self._blocks[blockno]
            buf[:] = bytes([_POISON]) * len(buf)  # stale views now see garbage

    def _write(self, blockno: int, buf: bytearray) -> None:
        if self.readonly:
            raise OSError(errno.EROFS, "FileBlockCache opened read-only")
        self._f.seek(blockno * self.block_size)
        self._f.write(buf)
        self.writes += 1

    def mark_dirty(self, blockno: int, ino: int = 0) -> None:
        if blockno not in self._blocks:
            # Marking a block that is no longer resident means the caller held a view
            # across another get(): a real bug with the kernel's cache.
            raise RuntimeError(f"mark_dirty({blockno}) on a block that is not resident")
        self._dirty.add(blockno)

    def forget(self, blockno: int) -> None:
        self._blocks.pop(blockno, None)
        self._dirty.discard(blockno)

    def sync(self) -> None:
        for blockno in sorted(self._dirty):
            self._write(blockno, self._blocks[blockno])
        self._dirty.clear()
        self._f.flush()

    def drop_clean(self) -> None:
        """Forget every clean block (tests: force re-reads from the image)."""
        for blockno in [b for b in self._blocks if b not in self._dirty]:
            del self._blocks[blockno]

    def close(self) -> None:
        if self._owns:
            self._f.close()

    def __enter__(self) -> FileBlockCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
