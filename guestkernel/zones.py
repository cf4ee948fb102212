"""Zone policies: how guest RAM is divided into zones, and where each kind of allocation goes.

The machine file chooses one (`[kernel.memory] zones = ...`):

    single    Linux's zones by address (DMA < 16 MiB, DMA32 < 4 GiB, Normal), one zonelist for
              every kind, highest zone first: today's Linux without grouping by mobility, the
              split-zone paper's baseline.
    split     the split-zone paper's design, in Linux's own terms (kernelcore=): a fragmenting
              zone for long-lived kernel objects (named Normal, `fragmenting_zone` bytes at the
              bottom of RAM) and a non-fragmenting zone for the page cache, user pages and large
              kernel buffers (named Movable, the rest). The fallback is a table: non-fragmenting
              kinds may fall back to the fragmenting zone, never the reverse (FALLBACK below).
    mobility  Linux's grouping by mobility: Linux's zones, each divided into pageblocks of 2**9
              frames typed Unmovable / Movable / Reclaimable; an allocation takes a free block of
              its own type, else falls back along Linux's fallbacks[] table, stealing the whole
              pageblock when the block is large or the kind is not movable (MobilityBuddy).

Every zone is a BuddyAllocator; `build` returns the zones in address order and the zonelist of
every allocation kind (guestkernel/gfp.py), which the allocator (frames.py) walks in order.
"""
from __future__ import annotations

from guestkernel.buddy import MAX_ORDER, BuddyAllocator, OutOfMemory
from guestkernel.gfp import Gfp
from guestkernel.interface import ZONE_POLICIES
from hw.physmem import PAGE_SIZE

POLICIES = ZONE_POLICIES
ZONE_LIMITS = (("DMA", 16 << 20), ("DMA32", 4 << 30), ("Normal", 1 << 62))  # name, end gpa

# split: the kinds that live in the fragmenting zone (long-lived kernel memory) and may never
# leave it; every other kind prefers the non-fragmenting zone and falls back to the other.
FRAGMENTING_KINDS = (Gfp.KERNEL, Gfp.RECLAIMABLE)
FALLBACK = {"Movable": ("Normal",), "Normal": ()}  # zone -> zones it may fall back to

# mobility: migrate types (mm/page_alloc.c), their names in /proc/pagetypeinfo's order, and
# Linux's fallbacks[] table.
UNMOVABLE, MOVABLE, RECLAIMABLE, HIGHATOMIC, ISOLATE = range(5)
MIGRATE_NAMES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate")
FALLBACKS = {UNMOVABLE: (RECLAIMABLE, MOVABLE), MOVABLE: (RECLAIMABLE, UNMOVABLE),
             RECLAIMABLE: (UNMOVABLE, MOVABLE)}
MIGRATETYPE = {Gfp.KERNEL: UNMOVABLE, Gfp.BUFFER: UNMOVABLE, Gfp.RECLAIMABLE: RECLAIMABLE,
               Gfp.USER: MOVABLE, Gfp.PAGECACHE: MOVABLE}
PAGEBLOCK_ORDER = 9


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


def split_zones(ram: list[tuple[str, int, int]], fragmenting_bytes: int) -> list[tuple[str, int, int]]:
    """Normal: the first `fragmenting_bytes` of RAM (contiguous from its lowest address);
    Movable: the rest, which must be contiguous too."""
    spans = sorted((base, base + size) for _n, base, size in ram)
    lo, hi = spans[0][0], spans[-1][1]
    if any(a != b for (_x, a), (b, _y) in zip(spans, spans[1:])):
        raise ValueError("zones = \"split\" needs the guest RAM ranges to be contiguous")
    if not 0 < fragmenting_bytes < hi - lo or fragmenting_bytes % PAGE_SIZE:
        raise ValueError(f"fragmenting_zone must be a whole number of pages between 0 and the RAM size ({hi - lo} bytes)")
    cut = lo + fragmenting_bytes
    return [("Normal", lo // PAGE_SIZE, fragmenting_bytes // PAGE_SIZE), ("Movable", cut // PAGE_SIZE, (hi - cut) // PAGE_SIZE)]


def build(policy: str, ram: list[tuple[str, int, int]], fragmenting_bytes: int = 0
          ) -> tuple[list[BuddyAllocator], dict[Gfp, list[BuddyAllocator]]]:
    """The zones (address order) and each kind's zonelist (preferred first) for a policy."""
    if policy == "single":
        zones = [BuddyAllocator(first, n, name) for name, first, n in linux_zones(ram)]
        return zones, {g: list(reversed(zones)) for g in Gfp}
    if policy == "mobility":
        zones = [MobilityBuddy(first, n, name) for name, first, n in linux_zones(ram)]
        return zones, {g: list(reversed(zones)) for g in Gfp}
    if policy == "split":
        zones = [BuddyAllocator(first, n, name) for name, first, n in split_zones(ram, fragmenting_bytes)]
        by_name = {z.name: z for z in zones}
        lists = {}
        for g in Gfp:
            home = "Normal" if g in FRAGMENTING_KINDS else "Movable"
            lists[g] = [by_name[home]] + [by_name[z] for z in FALLBACK[home]]
        return zones, lists
    raise ValueError(f"unknown zone policy {policy!r} (one of {', '.join(POLICIES)})")


class MobilityBuddy(BuddyAllocator):
    """A zone grouped by mobility, as Linux's page allocator: pageblocks typed by migrate type
    (all Movable at boot), free lists per type and order beside the per-order lists, Linux's
    fallback order and pageblock stealing (__rmqueue_fallback, steal_suitable_fallback).

    A free block is filed under the type of the pageblock holding its first frame."""

    def __init__(self, base_pfn: int, nframes: int, name: str = "Normal") -> None:
        first_block = base_pfn >> PAGEBLOCK_ORDER
        last_block = (base_pfn + nframes - 1) >> PAGEBLOCK_ORDER
        self.first_block = first_block
        self.block_type = bytearray([MOVABLE]) * (last_block - first_block + 1)
        self.typed: list[list[dict[int, None]]] = [[dict() for _ in range(MAX_ORDER)] for _ in MIGRATE_NAMES]
        self.filed: dict[int, int] = {}  # free block head -> the type it is filed under
        self.steals = 0                  # pageblocks that changed type by a fallback
        self.fallbacks = 0               # allocations served from another type's block
        super().__init__(base_pfn, nframes, name)

    def _type_at(self, pfn: int) -> int:
        return self.block_type[(pfn >> PAGEBLOCK_ORDER) - self.first_block]

    def _push(self, pfn: int, order: int) -> None:
        super()._push(pfn, order)
        t = self._type_at(pfn)
        self.typed[t][order][pfn] = None
        self.filed[pfn] = t

    def _pop(self, pfn: int, order: int) -> None:
        super()._pop(pfn, order)
        del self.typed[self.filed.pop(pfn)][order][pfn]

    def alloc(self, order: int = 0, gfp: Gfp = Gfp.KERNEL) -> int:
        mtype = MIGRATETYPE[gfp]
        pfn = self._smallest(order, mtype)
        if pfn is None:
            pfn = self._fallback(order, mtype)
        if pfn is None:
            raise OutOfMemory(f"zone {self.name}: no free block of order {order}")
        return pfn

    def _smallest(self, order: int, mtype: int) -> int | None:
        """__rmqueue_smallest: the smallest free block of this type, split down to `order`."""
        for o in range(order, MAX_ORDER):
            lst = self.typed[mtype][o]
            if lst:
                return self._take(next(reversed(lst)), o, order)
        return None

    def _take(self, pfn: int, o: int, order: int) -> int:
        self._pop(pfn, o)
        while o > order:  # split, keeping the lower half; the upper half is filed by its block
            o -= 1
            self._push(pfn + (1 << o), o)
        return pfn

    def _fallback(self, order: int, mtype: int) -> int | None:
        """__rmqueue_fallback: the largest free block of a fallback type (largest first, to
        take whole pageblocks and fragment less); steal its pageblock when the block is large
        or the request is not movable, then serve from the own type's lists."""
        for o in range(MAX_ORDER - 1, order - 1, -1):
            for ft in FALLBACKS[mtype]:
                lst = self.typed[ft][o]
                if not lst:
                    continue
                pfn = next(reversed(lst))
                self.fallbacks += 1
                if o >= PAGEBLOCK_ORDER // 2 or mtype != MOVABLE:
                    self._steal(pfn, o, mtype)
                    got = self._smallest(order, mtype)
                    if got is not None:
                        return got
                return self._take(pfn, o, order)
        return None

    def _steal(self, pfn: int, order: int, mtype: int) -> None:
        """steal_suitable_fallback: a block of a pageblock or more takes every pageblock it
        covers; a smaller one moves every free block of its pageblock to the new type's lists
        (move_freepages_block: the next allocations of that type come from the same pageblock,
        which keeps them together) and takes the pageblock itself if at least half of it is
        free (Linux also counts pages in use of a compatible type; emu does not track them per
        pageblock)."""
        if order >= PAGEBLOCK_ORDER:
            blocks = range(pfn >> PAGEBLOCK_ORDER, (pfn + (1 << order) - 1 >> PAGEBLOCK_ORDER) + 1)
        else:
            blocks = range(pfn >> PAGEBLOCK_ORDER, (pfn >> PAGEBLOCK_ORDER) + 1)
        for b in blocks:
            start = b << PAGEBLOCK_ORDER
            free_here = [(p, o) for p, o in self.free_order.items() if start <= p < start + (1 << PAGEBLOCK_ORDER)]
            free_pages = sum(1 << o for _p, o in free_here)
            i = b - self.first_block
            if self.block_type[i] != mtype and (order >= PAGEBLOCK_ORDER or free_pages >= 1 << (PAGEBLOCK_ORDER - 1)):
                self.block_type[i] = mtype
                self.steals += 1
            for p, o in free_here:  # move_freepages_block
                t = self.filed[p]
                del self.typed[t][o][p]
                self.typed[mtype][o][p] = None
                self.filed[p] = mtype

    def free_by_type(self) -> list[list[int]]:
        return [[len(lst) for lst in per_order] for per_order in self.typed]

    def blocks_by_type(self) -> list[int]:
        return [self.block_type.count(t) for t in range(len(MIGRATE_NAMES))]
