"""Page frames: buddy allocators (one zone per DRAM range) plus reference counts and zeroing.

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
from hw.ept import EPT
from hw.physmem import PAGE_SIZE, PhysicalMemory

ZERO_PAGE = bytes(PAGE_SIZE)


class Frames:
    def __init__(self, physmem: PhysicalMemory, ept: EPT) -> None:
        self.physmem = physmem
        self.ept = ept
        # Zonelist: allocation tries the DRAM ranges in address order.
        self.zones = [BuddyAllocator(r.spec.base_hpa // PAGE_SIZE, r.spec.size_bytes // PAGE_SIZE, r.spec.name)
                      for r in physmem.dram_ranges()]
        self.refs = array("I", [0]) * ept.pages
        # Bumped each time a frame is handed out: a checkpoint tells a reused frame from the
        # one it saved before (same pfn, other contents).
        self.gen = array("I", [0]) * ept.pages
        self.allocated = 0
        # Frames that were ever mapped executable. Unicorn caches translated code by physical
        # address and does not see the kernel's host-side writes, so reusing such a frame for
        # other contents must drop the translation cache first.
        self.code = bytearray(ept.pages)
        self.on_code_reuse: Callable[[], None] = lambda: None
        self.code_reuses = 0
        # The kernel's own accesses to guest memory are reported here (the cache model).
        self.on_kernel_access: Callable[[int, int, bool], None] | None = None

    @property
    def total_frames(self) -> int:
        return sum(z.nframes for z in self.zones)

    @property
    def free_frames(self) -> int:
        return sum(z.free_frames for z in self.zones)

    def _zone_alloc(self, order: int) -> int:
        for z in self.zones:
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
        return self.physmem.page_view(self.ept.map[pfn])

    view = page

    def copy(self, dst_pfn: int, src_pfn: int) -> None:
        self.page(dst_pfn)[:] = self.page(src_pfn)
        self.kernel_access(src_pfn << 12, PAGE_SIZE, False)
        self.kernel_access(dst_pfn << 12, PAGE_SIZE, True)

    def kernel_access(self, gpa: int, n: int, write: bool) -> None:
        """The kernel read or wrote [gpa, gpa+n) (one page at most): set the EPT bits and tell
        the cache model."""
        gpfn = gpa >> 12
        self.ept.bits[gpfn] |= 3 if write else 1
        if self.on_kernel_access is not None:
            self.on_kernel_access(self.ept.hpa(gpa), n, write)
