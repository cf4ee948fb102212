"""Page frames: buddy allocators (zones) plus reference counts and zeroing.

Zones are Linux's on x86-64, by guest-physical address: DMA below 16 MiB, DMA32 below 4 GiB,
Normal above; each holds the guest RAM inside its limits (the guest sees RAM, not the host pools
behind it). Allocation tries the highest zone first and falls back downwards (Linux's zonelist),
and a zone hands out its highest free blocks first, so the low DMA zone stays free longest.

The kernel works in guest-physical frame numbers (`pfn` here is a gpfn); the EPT says which
host-physical page backs each, so every access goes through `page(pfn)`. A frame may be shared
(copy-on-write after fork, page-cache pages); it returns to its zone's buddy allocator when its
last reference is dropped. Frames are zeroed when handed out so no data leaks between processes
and runs are deterministic.
"""
from __future__ import annotations

from array import array
from typing import Callable

from guestkernel.buddy import BuddyAllocator, OutOfMemory
from hw.guestmem import GuestMemory
from hw.physmem import PAGE_SIZE

ZERO_PAGE = bytes(PAGE_SIZE)
ZONE_LIMITS = (("DMA", 16 << 20), ("DMA32", 4 << 30), ("Normal", 1 << 62))  # name, end gpa


def linux_zones(ram: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """(zone, first gpfn, frames) of the zones that hold some of the RAM ranges (name, base_gpa,
    size_bytes), in address order; contiguous ranges share a zone."""
    out: list[tuple[str, int, int]] = []
    lo = 0
    for zone, hi in ZONE_LIMITS:
        pieces = sorted((max(base, lo), min(base + size, hi)) for _n, base, size in ram if base < hi and base + size > lo)
        merged: list[list[int]] = []
        for a, b in pieces:
            if merged and merged[-1][1] == a:
                merged[-1][1] = b
            else:
                merged.append([a, b])
        for i, (a, b) in enumerate(merged):
            out.append((zone if len(merged) == 1 else f"{zone}.{i}", a // PAGE_SIZE, (b - a) // PAGE_SIZE))
        lo = hi
    return out


class Frames:
    def __init__(self, memory: GuestMemory, ram: list[tuple[str, int, int]]) -> None:
        """`ram`: the guest RAM ranges as (name, base_gpa, size_bytes)."""
        self.memory = memory
        self.zones = [BuddyAllocator(first, n, name) for name, first, n in linux_zones(ram)]
        self.zonelist = list(reversed(self.zones))  # highest zone first
        self.refs = array("I", [0]) * memory.pages
        # Bumped each time a frame is handed out: a checkpoint tells a reused frame from the
        # one it saved before (same pfn, other contents).
        self.gen = array("I", [0]) * memory.pages
        self.allocated = 0
        # Frames that were ever mapped executable. Unicorn caches translated code by physical
        # address and does not see the kernel's host-side writes, so reusing such a frame for
        # other contents must drop the translation cache first.
        self.code = bytearray(memory.pages)
        self.on_code_reuse: Callable[[], None] = lambda: None
        self.code_reuses = 0

    @property
    def total_frames(self) -> int:
        return sum(z.nframes for z in self.zones)

    @property
    def free_frames(self) -> int:
        return sum(z.free_frames for z in self.zones)

    def _zone_alloc(self, order: int) -> int:
        for z in self.zonelist:
            if z.free_frames >= 1 << order:
                try:
                    return z.alloc(order)
                except OutOfMemory:
                    continue
        raise OutOfMemory(f"no free block of order {order} in any zone")

    def _zone_of(self, pfn: int) -> BuddyAllocator:
        for z in self.zones:
            if z.base_pfn <= pfn < z.base_pfn + z.nframes:
                return z
        raise ValueError(f"pfn {pfn:#x} belongs to no zone")

    def _taken(self, pfn: int) -> None:
        self.refs[pfn] = 1
        self.gen[pfn] = (self.gen[pfn] + 1) & 0xFFFFFFFF
        if self.code[pfn]:
            self.code_reuses += 1
            self.code[pfn] = 0
            self.on_code_reuse()

    def alloc(self, zero: bool = True) -> int:
        pfn = self._zone_alloc(0)
        self._taken(pfn)
        self.allocated += 1
        if zero:
            self.page(pfn)[:] = ZERO_PAGE
            self.kernel_access(pfn << 12, PAGE_SIZE, True)
        return pfn

    def alloc_block(self, order: int) -> int:
        """2**order contiguous zeroed frames (kernel buffers such as pipe rings)."""
        pfn = self._zone_alloc(order)
        for f in range(pfn, pfn + (1 << order)):
            self._taken(f)
            self.page(f)[:] = ZERO_PAGE
        self.allocated += 1 << order
        return pfn

    def free_block(self, pfn: int, order: int) -> None:
        for f in range(pfn, pfn + (1 << order)):
            self.refs[f] = 0
        self._zone_of(pfn).free(pfn, order)
        self.allocated -= 1 << order

    def get(self, pfn: int) -> None:
        self.refs[pfn] += 1

    def put(self, pfn: int) -> None:
        n = self.refs[pfn] - 1
        self.refs[pfn] = n
        if n == 0:
            self._zone_of(pfn).free(pfn, 0)
            self.allocated -= 1

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
