"""The page cache: blocks of the root device cached in guest-physical frames, with dirty tracking.

Implements the `BlockCache` protocol the ext2 driver reads and writes through. Each cached block
lives in one frame from the buddy allocator (block size <= 4 KiB), so cached file data is real
guest memory that later issues can snapshot, drop or migrate. Dirty blocks remember the inode they
belong to (0 for metadata) and are written back in block order on sync, when reclaimed, and
periodically in virtual time.

Each block read from the device or written to it is one request to the device's timing model
(hw/disktiming.py), charged to the clock here (`time_io`): sync, reclaim and the checkpointer
write through the cache and charge no block time of their own (direct I/O to an extra disk,
vfs/disks.py, is the one other kind of request). Its time depends on the block (where the
disk's arm is, the platter's angle), not only on how many there are.

The cache has no size of its own: it grows into free memory and shrinks when the allocator runs
short (guestkernel/reclaim.py takes its oldest unmapped pages). A cap in pages may still be set
(KernelConfig.page_cache_pages), for experiments that want a small cache.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from guestkernel.blockcache import DataThroughCache
from guestkernel.frames import Frames
from guestkernel.gfp import Gfp
from hw.blockdev import BlockDevice

if TYPE_CHECKING:
    from hw.clock import Clock


@dataclass
class PageCacheStats:
    hits: int = 0
    misses: int = 0
    writebacks: int = 0
    new_blocks: int = 0  # blocks just allocated, cached without a read (Linux's buffer_new)
    evictions: int = 0


class PageCache(DataThroughCache):
    def __init__(self, dev: BlockDevice | None, frames: Frames, block_size: int, max_pages: int | None = None,
                 nblocks: int | None = None) -> None:
        """`dev`: the device cached (None for a cache that holds no pages: guestkernel/dax.py,
        which gives `nblocks`)."""
        if block_size > 4096:
            raise ValueError(f"block size {block_size} is larger than a page")
        self.dev = dev
        self.frames = frames
        self.block_size = block_size
        self.max_pages = max_pages
        self.pages: OrderedDict[int, int] = OrderedDict()  # blockno -> pfn, LRU order
        self.dirty: dict[int, int] = {}  # blockno -> owning inode (0 = metadata)
        # 1 for the frames holding cached blocks (a byte per frame: a checkpoint's C pass skips
        # them, their content comes back from the file)
        self.frame_mask = bytearray(len(frames.refs))
        # False while a checkpointing kernel owns write-back: eviction then keeps dirty blocks
        # (storage must change only together with a checkpoint).
        self.may_write_back = True
        self.stats = PageCacheStats()
        # the clock the device's requests are charged to, as its timing model says (time_io;
        # none: a cache whose device is memory, a loop device's file)
        self.clock: "Clock | None" = None
        self.nblocks = dev.size_bytes // block_size if dev is not None else nblocks or 0

    def time_io(self, clock: "Clock") -> None:
        """Charge each block read or written on the device to `clock`, as the device's timing
        model says (asked through the device: a machine snapshot rebinds the device, not a
        model the cache would hold)."""
        self.clock = clock

    def _io(self, blockno: int, write: bool) -> None:
        clock = self.clock
        if clock is not None:
            assert self.dev is not None
            clock.charge(self.dev.timing.request(blockno, 1, self.block_size, write, clock.uptime_ns()))

    def get(self, blockno: int, new: bool = False) -> memoryview:
        pfn = self.pages.get(blockno)
        if pfn is not None:
            self.stats.hits += 1
            self.pages.move_to_end(blockno)
            return self.frames.view(pfn)[: self.block_size]
        if not 0 <= blockno < self.nblocks:
            raise OSError(f"block {blockno} is outside the device")
        if self.max_pages is not None and len(self.pages) >= self.max_pages:
            self.reclaim(len(self.pages) - self.max_pages + 1)  # (grows when nothing can go)
        pfn = self.frames.alloc(zero=False, gfp=Gfp.PAGECACHE)
        view = self.frames.view(pfn)[: self.block_size]
        if new:  # just allocated: the caller fills it whole, nothing is read from the device
            self.stats.new_blocks += 1
        else:
            self.stats.misses += 1
            view[:] = self.dev.read_at(blockno * self.block_size, self.block_size)
            # The device's DMA into the frame: it lands in the last-level cache (Intel's DDIO),
            # which the cache model sees as a kernel write of the block.
            self.frames.kernel_access(pfn << 12, self.block_size, True)
            self._io(blockno, False)
        self.pages[blockno] = pfn
        self.frame_mask[pfn] = 1
        return view

    def pin(self, blockno: int) -> int:
        """The frame caching a block, with a reference for a mapping that will share it."""
        self.get(blockno)
        pfn = self.pages[blockno]
        self.frames.get(pfn)
        return pfn

    def mark_dirty(self, blockno: int, ino: int = 0) -> None:
        if blockno in self.pages:
            self.dirty[blockno] = ino

    def forget(self, blockno: int) -> None:
        pfn = self.pages.pop(blockno, None)
        self.dirty.pop(blockno, None)
        if pfn is not None:
            self.frame_mask[pfn] = 0
            self.frames.put(pfn)

    def _write_back(self, blockno: int) -> None:
        self.write_now(blockno)
        del self.dirty[blockno]

    def write_now(self, blockno: int) -> None:
        """Write a cached block to the device at once, dirty or not (it stays as it was in the
        dirty map: a checkpoint's own note on storage, see checkpoint/generation.py)."""
        pfn = self.pages[blockno]
        self.dev.write_at(blockno * self.block_size, self.frames.view(pfn)[: self.block_size])
        self.stats.writebacks += 1
        self._io(blockno, True)

    def reclaim(self, want: int, in_zone: Callable[[int], bool] | None = None) -> tuple[int, int]:
        """Free up to `want` of the least recently used pages no process maps (in the zones
        `in_zone` accepts); a dirty one is written back first, unless a checkpointing kernel owns
        write-back. Returns (pages scanned, pages freed)."""
        scanned = 0
        victims = []
        for blockno, pfn in self.pages.items():
            if len(victims) >= want:
                break
            if in_zone is not None and not in_zone(pfn):
                continue  # on another zone's LRU (Linux keeps one per zone): not scanned here
            scanned += 1
            if self.reclaimable(blockno):
                victims.append(blockno)
        for blockno in victims:
            self.evict(blockno)
        return scanned, len(victims)

    def evict(self, blockno: int) -> None:
        """Free one cached block's page, written back first if dirty."""
        if blockno in self.dirty:
            self._write_back(blockno)
        pfn = self.pages.pop(blockno)
        self.frame_mask[pfn] = 0
        self.frames.put(pfn)
        self.stats.evictions += 1

    def reclaimable(self, blockno: int) -> bool:
        """Can reclaim free this block's page now (no mapping holds it; dirty only if it may be
        written back)?"""
        return self.frames.refs[self.pages[blockno]] == 1 and (self.may_write_back or blockno not in self.dirty)

    def moved(self, blockno: int, dst_pfn: int) -> None:
        """Compaction copied the block's frame to dst_pfn."""
        self.frame_mask[self.pages[blockno]] = 0
        self.pages[blockno] = dst_pfn
        self.frame_mask[dst_pfn] = 1

    def sync(self) -> None:
        for blockno in sorted(self.dirty):
            self._write_back(blockno)

    def dirty_blocks_of(self, ino: int) -> int:
        return sum(1 for owner in self.dirty.values() if owner == ino)

    def drop_clean(self) -> int:
        """Free every clean cached page (echo 1 > drop_caches); returns pages freed."""
        if not self.dirty:  # after a sync: all of it (drop_caches, a sonic snapshot)
            clean, pfns = list(self.pages), list(self.pages.values())
            self.pages.clear()
            self.frame_mask[:] = bytes(len(self.frame_mask))
        else:
            clean = [b for b in self.pages if b not in self.dirty]
            pfns = [self.pages.pop(b) for b in clean]
            for pfn in pfns:
                self.frame_mask[pfn] = 0
        self.frames.put_many(pfns)
        return len(clean)


def frame_owners(caches: "list[PageCache]") -> dict[int, tuple["PageCache", int]]:
    """gpfn -> (the page cache holding it, its block), over several caches (compaction and lumpy
    reclaim look at frames and need to know which cached block is in each)."""
    return {pfn: (pc, blockno) for pc in caches for blockno, pfn in pc.pages.items()}
