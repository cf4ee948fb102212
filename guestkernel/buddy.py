"""Buddy page allocator over the machine's DRAM frames.

Every page the kernel hands out (page tables, user pages, page-cache pages, kernel buffers) is a
real guest-physical frame from here. Blocks of 2**order frames; freeing coalesces with the buddy.
Free lists are insertion-ordered dicts used LIFO, so allocation order is deterministic.
The state can be printed the way /proc/buddyinfo prints it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from guestkernel.gfp import Gfp

PAGE_SHIFT = 12
MAX_ORDER = 11  # orders 0..10, as in Linux


class OutOfMemory(Exception):
    pass


def aligned_blocks(a: int, b: int) -> "list[tuple[int, int]]":
    """The frames [a, b) as the largest aligned buddy blocks, in address order: (pfn, order)."""
    out = []
    while a < b:
        order = 0
        while order < MAX_ORDER - 1 and a % (2 << order) == 0 and a + (2 << order) <= b:
            order += 1
        out.append((a, order))
        a += 1 << order
    return out


class BuddyAllocator:
    def __init__(self, base_pfn: int, nframes: int, name: str = "Normal") -> None:
        self.name = name
        self.pgalloc = f"pgalloc_{name.split('.')[0].lower()}"  # its /proc/vmstat counter
        # Watermarks in pages (set by the kernel: guestkernel/reclaim.py) and the frames each
        # allocation kind holds here (indexed by Gfp).
        self.wmark_min = self.wmark_low = self.wmark_high = 0
        self.used_by_kind = [0] * 5
        self.base_pfn = base_pfn
        self.nframes = nframes
        self.prio = 0  # storage lent as memory: its swap priority (the zonelist's order of lent zones)
        self.free_lists: list[dict[int, None]] = [dict() for _ in range(MAX_ORDER)]
        self.free_order: dict[int, int] = {}  # pfn of a free block's head -> its order
        self.free_frames = 0
        pfn, end = base_pfn, base_pfn + nframes
        while pfn < end:
            order = MAX_ORDER - 1
            while order and (pfn & ((1 << order) - 1) or pfn + (1 << order) > end):
                order -= 1
            self._push(pfn, order)
            pfn += 1 << order

    @classmethod
    def of_frames(cls, pfns: list[int], name: str) -> "BuddyAllocator":
        """A zone of scattered frames (a file's blocks): it spans them, and only they are ever
        free, as the largest aligned blocks their runs allow (a block never takes in a frame
        that is not one of them: its buddy is never free)."""
        run = sorted(pfns)
        z = cls(run[0], 0, name)
        z.nframes = run[-1] + 1 - run[0]
        i = 0
        while i < len(run):
            j = i
            while j + 1 < len(run) and run[j + 1] == run[j] + 1:
                j += 1
            for pfn, order in aligned_blocks(run[i], run[j] + 1):
                z._push(pfn, order)
            i = j + 1
        return z

    def _push(self, pfn: int, order: int) -> None:
        self.free_lists[order][pfn] = None
        self.free_order[pfn] = order
        self.free_frames += 1 << order

    def _pop(self, pfn: int, order: int) -> None:
        del self.free_lists[order][pfn]
        del self.free_order[pfn]
        self.free_frames -= 1 << order

    def alloc(self, order: int = 0, gfp: "Gfp | None" = None) -> int:
        """Allocate 2**order contiguous frames; returns the first pfn. (What the block is for
        matters only to a zone grouped by mobility: zones.MobilityBuddy.)"""
        for o in range(order, MAX_ORDER):
            if self.free_lists[o]:
                pfn = next(reversed(self.free_lists[o]))
                self._pop(pfn, o)
                while o > order:  # split, keeping the lower half
                    o -= 1
                    self._push(pfn + (1 << o), o)
                return pfn
        raise OutOfMemory(f"zone {self.name}: no free block of order {order}")

    def free(self, pfn: int, order: int = 0) -> None:
        if pfn in self.free_order:
            raise ValueError(f"double free of pfn {pfn:#x}")
        while order < MAX_ORDER - 1:
            buddy = pfn ^ (1 << order)
            if self.free_order.get(buddy) != order:
                break
            self._pop(buddy, order)
            pfn = min(pfn, buddy)
            order += 1
        self._push(pfn, order)

    def free_by_type(self) -> list[list[int]]:
        """Free blocks per migrate type (Unmovable, Movable, Reclaimable, HighAtomic, Isolate)
        and order. Without grouping by mobility every block is Unmovable, as Linux shows it."""
        return [[len(fl) for fl in self.free_lists]] + [[0] * MAX_ORDER for _ in range(4)]

    def blocks_by_type(self) -> list[int]:
        """Pageblocks (2**9 frames) per migrate type."""
        return [(self.nframes + 511) // 512, 0, 0, 0, 0]

    def buddyinfo(self) -> str:
        """This zone's /proc/buddyinfo line (mm/vmstat.c frag_show_print), without the newline."""
        return f"Node 0, zone {self.name:>8s} " + "".join(f"{len(fl):6d} " for fl in self.free_lists)
