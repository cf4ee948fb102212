"""Page frames: buddy allocators (zones) plus reference counts and zeroing.

The zones and each allocation kind's zonelist come from the zone policy (guestkernel/zones.py):
by default Linux's on x86-64, by guest-physical address (DMA below 16 MiB, DMA32 below 4 GiB,
Normal above), each holding the guest RAM inside its limits (the guest sees RAM, not the host
pools behind it), tried highest first; a zone hands out its highest free blocks first, so the low
DMA zone stays free longest.

The kernel works in guest-physical frame numbers (`pfn` here is a gpfn); the EPT says which
host-physical page backs each, so every access goes through `page(pfn)`. A frame may be shared
(copy-on-write after fork, page-cache pages); it returns to its zone's buddy allocator when its
last reference is dropped. Frames are zeroed when handed out so no data leaks between processes
and runs are deterministic.
"""
from __future__ import annotations

from array import array
from collections import Counter
from typing import Callable

from guestkernel import zones
from guestkernel.buddy import BuddyAllocator, OutOfMemory, aligned_blocks
from guestkernel.gfp import Gfp
from hw.guestmem import GuestMemory
from hw.physmem import PAGE_SIZE

ZERO_PAGE = bytes(PAGE_SIZE)
class Frames:
    def __init__(self, memory: GuestMemory, ram: list[tuple[str, int, int]], policy: str = "single",
                 fragmenting_bytes: int = 0) -> None:
        """`ram`: the guest RAM ranges as (name, base_gpa, size_bytes); `policy` and
        `fragmenting_bytes`: the zone policy (zones.py)."""
        self.memory = memory
        self.policy = policy
        # The zones in address order and each kind's zonelist: the zones it may take frames
        # from, preferred first.
        self.zones, self.zonelists = zones.build(policy, ram, fragmenting_bytes)
        # Called when no zone can serve an allocation: direct reclaim, then the OOM killer;
        # True if it freed something worth retrying for. The kernel installs it.
        self.on_pressure: Callable[[int, Gfp], bool] = lambda order, gfp: False
        self.kswapd_wanted = False  # a zone went below its low watermark
        self.refs = array("I", [0]) * memory.pages
        # The frames the allocator manages, one byte per gpfn: RAM's, and the window pages of a
        # file lent as memory (swapon on storage as memory: `lend`). Any other frame is device
        # memory (pmem, the DAX storage window): mapped into page tables but never
        # reference-counted or freed. (The checkpoint scan's mask too: native/ckptscan.c.)
        self.ram = bytearray(memory.pages)
        for _n, base, size in ram:
            self.ram[base // 4096 : (base + size) // 4096] = b"\1" * (size // 4096)
        # Zones of storage lent as memory (guestkernel/swap.py): last in the zonelist of user
        # pages, not counted in MemTotal (they are SwapTotal).
        self.lent: list[BuddyAllocator] = []
        # Bumped each time a frame is handed out: a checkpoint tells a reused frame from the
        # one it saved before (same pfn, other contents).
        self.gen = array("I", [0]) * memory.pages
        self.allocated = 0
        self.peak = 0  # the most frames allocated at once
        # Frames that were ever mapped executable. Unicorn caches translated code by physical
        # address and does not see the kernel's host-side writes, so reusing such a frame for
        # other contents must drop the translation cache first.
        self.code = bytearray(memory.pages)
        self.on_code_reuse: Callable[[], None] = lambda: None
        self.code_reuses = 0
        # What each allocated frame is for (a Gfp), and how many frames each kind holds:
        # /proc/meminfo's breakdown and the zone policies' placement counts.
        self.kind = bytearray(memory.pages)
        self.by_kind = [0] * len(Gfp)
        # Linux's vm events (/proc/vmstat): pgalloc_<zone>, pgfree, drop_pagecache, pgscan_*...
        self.events: Counter[str] = Counter()
        self.placements: Counter[tuple[Gfp, str]] = Counter()  # pages handed out, by kind and zone
        self.fallbacks: Counter[tuple[Gfp, str]] = Counter()   # of those, from a fallback zone
        self.ballooned = 0  # frames the balloon holds: the host has them (guestkernel/balloon.py)
        # A write to a private page mapped from the checkpoint image file: the guest page of its
        # copy in a fresh page of that file, or None to copy it into RAM (checkpoint/live.py).
        self.shadow_write: Callable[[int], int | None] | None = None

    @property
    def total_frames(self) -> int:
        """The frames the kernel manages (MemTotal): its zones less what the balloon gave the
        host, as Linux's adjust_managed_page_count does."""
        return sum(z.nframes for z in self.zones) - self.ballooned

    @property
    def free_frames(self) -> int:
        return sum(z.free_frames for z in self.zones)

    def _zone_alloc(self, order: int, gfp: Gfp) -> int:
        """Linux's allocation path: every zone of the zonelist above its low watermark; then
        kswapd is woken and the zones may go down to min; then direct reclaim, or the OOM
        killer when reclaim frees nothing, until a block is found. When the caller itself is
        the OOM victim (or no one is left to kill) it may use the reserves below min, as
        Linux's ALLOC_OOM lets a dying task finish what it is doing; past them, OutOfMemory."""
        pfn = self._try_alloc(order, gfp, "low")
        if pfn is None:
            self.kswapd_wanted = True
            pfn = self._try_alloc(order, gfp, "min")
        while pfn is None:
            if not self.on_pressure(order, gfp):
                pfn = self._try_alloc(order, gfp, "reserves")
                if pfn is None:
                    raise OutOfMemory(f"no free block of order {order} in any zone")
                break
            pfn = self._try_alloc(order, gfp, "min")
        return pfn

    def _try_alloc(self, order: int, gfp: Gfp, floor: str) -> int | None:
        for i, z in enumerate(self.zonelists[gfp]):
            pfn = self.alloc_in(z, order, gfp, floor, fallback=i > 0)
            if pfn is not None:
                return pfn
        return None

    def alloc_in(self, z: BuddyAllocator, order: int, gfp: Gfp, floor: str, fallback: bool = False) -> int | None:
        """A block from zone z if it stays above the watermark `floor` (low, min or reserves),
        counted; None if not. (Not yet taken: the caller sets its references.)"""
        need = 1 << order
        mark = z.wmark_low if floor == "low" else z.wmark_min if floor == "min" else 0
        if z.free_frames - need < mark:
            return None
        try:
            pfn = z.alloc(order, gfp)
        except OutOfMemory:  # enough pages, but no block that large (fragmentation)
            return None
        self.events[z.pgalloc] += need
        z.used_by_kind[gfp] += need
        self.placements[(gfp, z.name)] += need
        if fallback:  # not the kind's preferred zone: a fallback of the zonelist
            self.fallbacks[(gfp, z.name)] += need
        if z.free_frames < z.wmark_low:
            self.kswapd_wanted = True
        return pfn

    def _zone_of(self, pfn: int) -> BuddyAllocator:
        for z in self.all_zones:
            if z.base_pfn <= pfn < z.base_pfn + z.nframes:
                return z
        raise ValueError(f"pfn {pfn:#x} belongs to no zone")

    @property
    def all_zones(self) -> list[BuddyAllocator]:
        """RAM's zones, then those of storage lent as memory."""
        return self.zones + self.lent if self.lent else self.zones

    def lend(self, gpfns: list[int], name: str, prio: int) -> BuddyAllocator:
        """Storage frames (window pages of a file) become page frames for user pages: a zone
        at the end of Gfp.USER's zonelist (lent zones by priority, highest first), so that they
        serve only when RAM's zones are short (guestkernel/swap.py)."""
        z = BuddyAllocator.of_frames(gpfns, name)
        for pfn in gpfns:
            self.ram[pfn] = 1
        z.prio = prio
        self.lent.append(z)
        self.lend_again(z)
        return z

    def stop_lending(self, z: BuddyAllocator) -> None:
        """No allocation takes frames of lent zone z any more (its pages are moving out)."""
        self.zonelists[Gfp.USER] = [x for x in self.zonelists[Gfp.USER] if x is not z]

    def lend_again(self, z: BuddyAllocator) -> None:
        ram = [x for x in self.zonelists[Gfp.USER] if x not in self.lent]
        lent = [x for x in self.zonelists[Gfp.USER] if x in self.lent and x is not z] + [z]
        self.zonelists[Gfp.USER] = ram + sorted(lent, key=lambda x: -x.prio)

    def unlend(self, z: BuddyAllocator, gpfns: list[int]) -> None:
        """Give a lent zone back: every frame of it must be free (swap.py moved its pages)."""
        if z.free_frames != len(gpfns):
            raise ValueError(f"zone {z.name} still holds {len(gpfns) - z.free_frames} pages")
        self.stop_lending(z)
        for pfn in gpfns:
            self.ram[pfn] = 0
        self.lent.remove(z)

    def try_frame(self, gfp: Gfp) -> int | None:
        """One frame of RAM (not of lent storage) above min, taken; None if none (no reclaim)."""
        for z in self.zonelists[gfp]:
            if z in self.lent:
                continue
            pfn = self.alloc_in(z, 0, gfp, "min")
            if pfn is not None:
                self._taken(pfn, gfp)
                self._count(1)
                return pfn
        return None

    def put_back(self, pfn: int) -> None:
        """A frame whose books a migration already closed (compaction.migrate) goes back to
        its zone's free lists."""
        self._zone_of(pfn).free(pfn, 0)
        self.events["pgfree"] += 1

    def _taken(self, pfn: int, gfp: Gfp) -> None:
        self.refs[pfn] = 1
        self.kind[pfn] = gfp
        self.by_kind[gfp] += 1
        self.gen[pfn] = (self.gen[pfn] + 1) & 0xFFFFFFFF
        if self.code[pfn]:
            self.code_reuses += 1
            self.code[pfn] = 0
            self.on_code_reuse()

    def _count(self, n: int) -> None:
        self.allocated += n
        if self.allocated > self.peak:
            self.peak = self.allocated

    def alloc(self, zero: bool = True, gfp: Gfp = Gfp.KERNEL) -> int:
        pfn = self._zone_alloc(0, gfp)
        self._taken(pfn, gfp)
        self._count(1)
        if zero:
            self.page(pfn)[:] = ZERO_PAGE
            self.kernel_access(pfn << 12, PAGE_SIZE, True)
        return pfn

    def alloc_block(self, order: int, gfp: Gfp = Gfp.BUFFER) -> int:
        """2**order contiguous zeroed frames (kernel buffers such as pipe rings, slabs)."""
        return self._took_block(self._zone_alloc(order, gfp), order, gfp)

    def try_block(self, order: int, gfp: Gfp = Gfp.BUFFER, floor: str = "min") -> int | None:
        """alloc_block if a zone of the kind's zonelist has such a block above the watermark
        `floor` now; None otherwise (no reclaim: the caller decides how hard to try,
        reclaim.py's alloc_costly)."""
        pfn = self._try_alloc(order, gfp, floor)
        return None if pfn is None else self._took_block(pfn, order, gfp)

    def _took_block(self, pfn: int, order: int, gfp: Gfp) -> int:
        for f in range(pfn, pfn + (1 << order)):
            self._taken(f, gfp)
            self.page(f)[:] = ZERO_PAGE
        self._count(1 << order)
        return pfn

    def free_block(self, pfn: int, order: int) -> None:
        """Give back a block from alloc_block or take_block, its books kept by slices."""
        n = 1 << order
        self.refs[pfn : pfn + n] = array("I", [0]) * n
        z = self._zone_of(pfn)
        kinds = self.kind[pfn : pfn + n]
        for gfp in set(kinds):
            c = kinds.count(gfp)
            self.by_kind[gfp] -= c
            z.used_by_kind[gfp] -= c
        z.free(pfn, order)
        self.events["pgfree"] += n
        self.allocated -= n

    def take_block(self, z: BuddyAllocator, order: int, gfp: Gfp, floor: str) -> int | None:
        """A block of zone z held whole and not zeroed (the balloon's pages, which the host
        takes): its frames' books set in one go, as a block, not frame by frame. None if the
        zone cannot give one above `floor`."""
        pfn = self.alloc_in(z, order, gfp, floor)
        if pfn is None:
            return None
        n = 1 << order
        self.refs[pfn : pfn + n] = array("I", [1]) * n
        self.kind[pfn : pfn + n] = bytes([gfp]) * n
        self.by_kind[gfp] += n
        if any(self.code[pfn : pfn + n]):
            self.code_reuses += 1
            self.code[pfn : pfn + n] = bytes(n)
            self.on_code_reuse()
        self._count(n)
        return pfn

    def is_ram(self, pfn: int) -> bool:
        """A frame the allocator manages (RAM, or storage lent as memory), not a device page."""
        return bool(self.ram[pfn])

    def get(self, pfn: int) -> None:
        self.refs[pfn] += 1

    def put(self, pfn: int) -> None:
        n = self.refs[pfn] - 1
        self.refs[pfn] = n
        if n == 0:
            self.by_kind[self.kind[pfn]] -= 1
            z = self._zone_of(pfn)
            z.used_by_kind[self.kind[pfn]] -= 1
            z.free(pfn, 0)
            self.events["pgfree"] += 1
            self.allocated -= 1

    def put_many(self, pfns: list[int]) -> None:
        """put() each frame (each once); those freed go back to the buddy allocators as the
        largest aligned blocks their runs allow. A dropped page cache is mostly runs of frames:
        freeing them as blocks, with the books kept by numpy, takes a few thousand steps, not a
        coalescing walk per page."""
        import numpy as np

        if not pfns:
            return
        at = np.fromiter(pfns, dtype=np.int64, count=len(pfns))
        refs = np.frombuffer(self.refs, dtype=np.uint32)
        refs[at] -= 1
        freed = np.sort(at[refs[at] == 0])
        if not len(freed):
            return
        kinds = np.frombuffer(self.kind, dtype=np.uint8)[freed]
        for k, n in enumerate(np.bincount(kinds, minlength=len(self.by_kind))):
            self.by_kind[k] -= int(n)
        for z in self.all_zones:
            lo, hi = np.searchsorted(freed, [z.base_pfn, z.base_pfn + z.nframes])
            if lo == hi:
                continue
            for k, n in enumerate(np.bincount(kinds[lo:hi], minlength=len(z.used_by_kind))):
                z.used_by_kind[k] -= int(n)
            run = freed[lo:hi]
            cuts = np.flatnonzero(np.diff(run) != 1) + 1
            for first, last in zip(np.concatenate(([0], cuts)), np.concatenate((cuts, [len(run)]))):
                for pfn, order in aligned_blocks(int(run[first]), int(run[last - 1]) + 1):
                    z.free(pfn, order)
        self.events["pgfree"] += len(freed)
        self.allocated -= len(freed)

    def page(self, pfn: int) -> memoryview:
        """The 4 KiB behind guest frame pfn (through the EPT)."""
        return self.memory.page(pfn)

    view = page

    def copy(self, dst_pfn: int, src_pfn: int) -> None:
        self.page(dst_pfn)[:] = self.page(src_pfn)
        self.kernel_access(src_pfn << 12, PAGE_SIZE, False)
        self.kernel_access(dst_pfn << 12, PAGE_SIZE, True)

    def kernel_access(self, gpa: int, n: int, write: bool) -> None:
        """The kernel read or wrote [gpa, gpa+n) (one page at most)."""
        self.memory.access(gpa, n, write)
