"""Page frames: the buddy allocator plus reference counts and zeroing.

A frame may be shared (copy-on-write after fork, page-cache pages); it goes back to the buddy
allocator when its last reference is dropped. Frames are zeroed when handed out so no data leaks
between processes and runs are deterministic.
"""
from __future__ import annotations

from array import array
from typing import Callable

from guestkernel.buddy import BuddyAllocator
from hw.physmem import PAGE_SIZE, PhysicalMemory

ZERO_PAGE = bytes(PAGE_SIZE)


class Frames:
    def __init__(self, physmem: PhysicalMemory, reserved_bytes: int = 0) -> None:
        dram = physmem.dram_ranges()[0]
        self.physmem = physmem
        self.ram = dram.view  # zero-copy view of the first DRAM range
        self.base_gpa = dram.spec.base_gpa
        first = (dram.spec.base_gpa + reserved_bytes) // PAGE_SIZE
        n = dram.spec.size_bytes // PAGE_SIZE - reserved_bytes // PAGE_SIZE
        self.buddy = BuddyAllocator(first, n)
        self.refs = array("I", bytes(4 * (first + n)))
        self.allocated = 0
        # Frames that were ever mapped executable. Unicorn caches translated code by physical
        # address and does not see the kernel's host-side writes, so reusing such a frame for
        # other contents must drop the translation cache first.
        self.code = bytearray(first + n)
        self.on_code_reuse: Callable[[], None] = lambda: None
        self.code_reuses = 0

    def alloc(self, zero: bool = True) -> int:
        pfn = self.buddy.alloc(0)
        self.refs[pfn] = 1
        if self.code[pfn]:
            self.code_reuses += 1
            self.code[pfn] = 0
            self.on_code_reuse()
        self.allocated += 1
        if zero:
            off = pfn * PAGE_SIZE - self.base_gpa
            self.ram[off : off + PAGE_SIZE] = ZERO_PAGE
        return pfn

    def alloc_block(self, order: int) -> int:
        """2**order contiguous zeroed frames (kernel buffers such as pipe rings)."""
        pfn = self.buddy.alloc(order)
        n = 1 << order
        for f in range(pfn, pfn + n):
            self.refs[f] = 1
            if self.code[f]:
                self.code[f] = 0
                self.code_reuses += 1
                self.on_code_reuse()
        self.allocated += n
        off = pfn * PAGE_SIZE - self.base_gpa
        self.ram[off : off + n * PAGE_SIZE] = bytes(n * PAGE_SIZE)
        return pfn

    def free_block(self, pfn: int, order: int) -> None:
        n = 1 << order
        for f in range(pfn, pfn + n):
            self.refs[f] = 0
        self.buddy.free(pfn, order)
        self.allocated -= n

    def block_view(self, pfn: int, order: int) -> memoryview:
        off = pfn * PAGE_SIZE - self.base_gpa
        return self.ram[off : off + (PAGE_SIZE << order)]

    def get(self, pfn: int) -> None:
        self.refs[pfn] += 1

    def put(self, pfn: int) -> None:
        n = self.refs[pfn] - 1
        self.refs[pfn] = n
        if n == 0:
            self.buddy.free(pfn, 0)
            self.allocated -= 1

    def view(self, pfn: int) -> memoryview:
        off = pfn * PAGE_SIZE - self.base_gpa
        return self.ram[off : off + PAGE_SIZE]

    def copy(self, dst_pfn: int, src_pfn: int) -> None:
        self.view(dst_pfn)[:] = self.view(src_pfn)
