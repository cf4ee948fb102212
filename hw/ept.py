"""The EPT: guest-physical to host-physical page mapping, with accessed and dirty bits.

The kernel hands out guest-physical frames (`gpfn`); the EPT says which host-physical frame
(`hpfn`, a page of one of the memory map's ranges, on some channel) backs each. It starts as the
identity. The native TLB fill and the kernel's own accesses set the A/D bits; the host side can
scan and clear them (later accesses set them again) and, while the guest is paused, swap two
pages' backing (data and mapping), which is how a hypervisor migrates a page between DRAM and SCM.
"""
from __future__ import annotations

from array import array
from typing import Callable

from hw.physmem import PAGE_SIZE, PhysicalMemory

EPT_A = 1
EPT_D = 2
INVALID = 0xFFFFFFFF


class EPT:
    def __init__(self, physmem: PhysicalMemory) -> None:
        self.physmem = physmem
        self.pages = max(r.end_hpa for r in physmem.ranges) // PAGE_SIZE
        self.map = array("I", [INVALID]) * self.pages
        for r in physmem.ranges:
            first = r.spec.base_hpa // PAGE_SIZE
            for gpfn in range(first, first + r.spec.size_bytes // PAGE_SIZE):
                self.map[gpfn] = gpfn
        self.bits = bytearray(self.pages)
        self.swaps = 0
        self.on_change: Callable[[], None] = lambda: None     # a mapping or bit changed: flush TLBs
        self.on_data_move: Callable[[], None] = lambda: None  # page contents moved: drop translated code

    def hpfn(self, gpfn: int) -> int:
        return self.map[gpfn]

    def hpa(self, gpa: int) -> int:
        return (self.map[gpa >> 12] << 12) | (gpa & (PAGE_SIZE - 1))

    def scan(self, first_gpfn: int, count: int, clear: bool = True) -> tuple[list[int], list[int]]:
        """(accessed gpfns, dirty gpfns) in [first, first+count); clear the bits if asked."""
        accessed, dirty = [], []
        bits = self.bits
        for gpfn in range(first_gpfn, min(first_gpfn + count, self.pages)):
            b = bits[gpfn]
            if b:
                if b & EPT_A:
                    accessed.append(gpfn)
                if b & EPT_D:
                    dirty.append(gpfn)
                if clear:
                    bits[gpfn] = 0
        if clear and (accessed or dirty):
            self.on_change()  # cached translations would skip setting the bits again
        return accessed, dirty

    def swap(self, gpfn_a: int, gpfn_b: int) -> None:
        """Exchange the host frames backing two guest pages, moving the data with them, so the
        guest sees the same contents at the same guest-physical addresses."""
        ha, hb = self.map[gpfn_a], self.map[gpfn_b]
        va, vb = self.physmem.page_view(ha), self.physmem.page_view(hb)
        tmp = bytes(va)
        va[:] = vb
        vb[:] = tmp
        self.map[gpfn_a], self.map[gpfn_b] = hb, ha
        self.swaps += 1
        self.on_change()
        self.on_data_move()

    def remap(self, gpfn: int, hpfn: int, copy: bool = True) -> None:
        """Back a guest page with another (unused) host frame, copying its data."""
        old = self.map[gpfn]
        if copy:
            self.physmem.page_view(hpfn)[:] = self.physmem.page_view(old)
        self.map[gpfn] = hpfn
        self.on_change()
        self.on_data_move()
