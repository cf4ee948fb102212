"""Per-process x86-64 page tables (4 levels, 4 KiB pages) kept in real guest-physical frames.

The native TLB-fill callback walks exactly these tables, as the hardware MMU would, and sets the
accessed/dirty bits in them. Software bit 9 marks a copy-on-write page.

    gva bits  47..39   38..30   29..21   20..12   11..0
              PML4     PDPT     PD       PT       offset
"""
from __future__ import annotations

import struct
from typing import Iterator

from guestkernel.frames import Frames

PTE_P = 1 << 0
PTE_W = 1 << 1
PTE_U = 1 << 2
PTE_A = 1 << 5
PTE_D = 1 << 6
PTE_COW = 1 << 9
PTE_NX = 1 << 63
PTE_ADDR = 0x000FFFFFFFFFF000

_Q = struct.Struct("<Q")


class AddressSpace:
    def __init__(self, frames: Frames) -> None:
        self.frames = frames
        self.root_pfn = frames.alloc()
        self.table_frames = [self.root_pfn]

    @property
    def cr3(self) -> int:
        return self.root_pfn << 12

    def _entry_gpa(self, gva: int, create: bool) -> int:
        """gpa of the leaf PTE slot for gva, or -1 when a table is missing and create is False."""
        table = self.root_pfn << 12
        page = self.frames.page
        for shift in (39, 30, 21):
            idx = ((gva >> shift) & 511) * 8
            e = _Q.unpack_from(page(table >> 12), idx)[0]
            if not e & PTE_P:
                if not create:
                    return -1
                pfn = self.frames.alloc()
                self.table_frames.append(pfn)
                e = (pfn << 12) | PTE_P | PTE_W | PTE_U
                _Q.pack_into(page(table >> 12), idx, e)
            table = e & PTE_ADDR
        return table + ((gva >> 12) & 511) * 8

    def get(self, gva: int) -> int:
        slot = self._entry_gpa(gva, False)
        return 0 if slot < 0 else _Q.unpack_from(self.frames.page(slot >> 12), slot & 0xFFF)[0]

    def set(self, gva: int, pte: int) -> None:
        slot = self._entry_gpa(gva, True)
        self.write_slot(slot, pte)

    def map(self, gva: int, pfn: int, writable: bool, executable: bool, cow: bool = False) -> None:
        pte = (pfn << 12) | PTE_P | PTE_U
        if writable:
            pte |= PTE_W
        if cow:
            pte |= PTE_COW
        if not executable:
            pte |= PTE_NX
        self.set(gva, pte)

    def leaves(self, start: int, end: int) -> Iterator[tuple[int, int, int]]:
        """Yield (gva, slot_gpa, pte) for every present leaf in [start, end)."""
        unpack = _Q.unpack_from
        page = self.frames.page

        def rec(table: int, level_shift: int, lo: int) -> Iterator[tuple[int, int, int]]:
            span = 1 << level_shift
            tview = page(table >> 12)
            first = max(0, (start - lo) >> level_shift) if start > lo else 0
            for i in range(first, 512):
                va = lo + i * span
                if va >= end:
                    return
                if va + span <= start:
                    continue
                slot = table + i * 8
                e = unpack(tview, i * 8)[0]
                if not e & PTE_P:
                    continue
                if level_shift == 12:
                    yield va, slot, e
                else:
                    yield from rec(e & PTE_ADDR, level_shift - 9, va)

        # User half only: VMAs never reach the canonical high half.
        yield from rec(self.root_pfn << 12, 39, 0)

    def write_slot(self, slot: int, pte: int) -> None:
        _Q.pack_into(self.frames.page(slot >> 12), slot & 0xFFF, pte)

    def destroy(self) -> None:
        """Free the table frames (the caller has already released the leaf frames)."""
        for pfn in self.table_frames:
            self.frames.put(pfn)
        self.table_frames = []
