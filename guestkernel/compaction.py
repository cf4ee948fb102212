"""Compaction: make a free block of a high order by migrating movable pages out of its range
(Linux's mm/compaction.c, reduced to one target block at a time).

Which pages move: page-cache pages and user pages (the kinds Linux calls movable), whose every
reference is known: the page cache's own and the page-table entries that map it (found by a
reverse map built for the pass from every address space); a shared memory object's page (System
V segment, shared anonymous mapping: the object holds its one reference) moves too, the object
repointed with the PTEs. A page that something else holds (a shared futex a process waits on, a
reference the map does not explain) is pinned, and a range holding one is not chosen.

A pass picks, within the zone, the aligned ranges of 2**order frames that need the fewest
migrations and hold nothing pinned nor unmovable (up to BLOCKS_PER_PASS of them: the reverse
map costs a walk of every page table, so one pass serves several allocations, as Linux's pass
over a zone does); isolates their free blocks from the buddy (Linux's free scanner would not
hand them out as destinations either); for each used frame allocates a destination outside
them (above min, no reclaim), copies the contents, repoints the page cache and every PTE, and
finally frees the ranges, which coalesce into the blocks. The TLB is flushed once. Costs on the virtual clock: per page scanned and per page
migrated. Counters: /proc/vmstat's compact_* and pgmigrate_*.

Which zone policies compact: `mobility` (modern Linux); `single` and `split` model kernels
without compaction (the split-zone paper's baseline and design), so a high-order allocation
there finds a block or fails.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from guestkernel.buddy import BuddyAllocator
from guestkernel.gfp import Gfp
from guestkernel.mm import TASK_SIZE
from guestkernel.pagecache import frame_owners
from guestkernel.paging import PTE_ADDR
from guestkernel.process import ZOMBIE

if TYPE_CHECKING:
    from guestkernel.kernel import Kernel
    from guestkernel.pagecache import PageCache

COMPACT_SCAN_NS = 20       # looking at one frame
MIGRATE_NS = 1500          # isolating, copying (4 KiB) and repointing one page
BLOCKS_PER_PASS = 8        # blocks one pass makes (the reverse map is built once per pass)
MOVABLE_KINDS = (Gfp.USER, Gfp.PAGECACHE)
POLICIES_THAT_COMPACT = ("mobility",)


def reverse_map(k: "Kernel") -> dict[int, list[tuple[object, int, int]]]:
    """pfn -> (address space, PTE slot gpa, pte) of every user mapping."""
    out: dict[int, list[tuple[object, int, int]]] = {}
    seen: set[int] = set()
    for p in k.procs.values():
        mm = p.mm
        if mm is None or p.state == ZOMBIE or id(mm) in seen:
            continue
        seen.add(id(mm))
        # One walk of the whole user half (a process that unmapped every other page has
        # thousands of VMAs); device pages and the sentinel are not movable kinds anyway.
        for _gva, slot, pte in mm.aspace.leaves(0, TASK_SIZE):
            out.setdefault((pte & PTE_ADDR) >> 12, []).append((mm.aspace, slot, pte))
    return out


def _pinned(k: "Kernel") -> set[int]:
    """Frames held by something compaction cannot repoint."""
    pinned: set[int] = set()
    futexes = getattr(k, "futexes", None)
    if futexes is not None:
        pinned.update(key[1] >> 12 for key in futexes.waiters if isinstance(key, tuple) and key[0] == "shared")
    return pinned


def compact_zone(k: "Kernel", z: BuddyAllocator, order: int, blocks: int = BLOCKS_PER_PASS) -> bool:
    """One compaction pass in zone z: up to `blocks` free blocks of 2**order frames, from the
    aligned ranges that need the fewest migrations; True if it made at least one."""
    f = k.frames
    ev = f.events
    size = 1 << order
    if z.free_frames - size < z.wmark_min + size:
        return False  # compaction_suitable: too little free memory to be worth it; reclaim first
    ev["compact_stall"] += 1
    cache_of = frame_owners(k.caches())
    rmap = reverse_map(k)
    pinned = _pinned(k)
    shm = getattr(k, "shm", None)  # (made at the first shmget or shared anonymous mmap)
    obj_of = shm.frame_owners(z.base_pfn, z.base_pfn + z.nframes) if shm is not None else {}
    free_in = z.free_order

    def movable(pfn: int) -> bool:
        if f.refs[pfn] == 0 or f.kind[pfn] not in MOVABLE_KINDS or pfn in pinned:
            return False
        # (a shared memory object's frame: the object's one reference, its PTEs take none)
        known = 1 if pfn in obj_of else len(rmap.get(pfn, ())) + (1 if pfn in cache_of else 0)
        return known == f.refs[pfn] and known > 0

    candidates: list[tuple[int, int]] = []  # (migrations needed, range start)
    scanned = 0
    start = -(-z.base_pfn // size) * size
    for lo in range(start, z.base_pfn + z.nframes - size + 1, size):
        moves, pfn, ok = 0, lo, True
        while pfn < lo + size:
            o = free_in.get(pfn)
            if o is not None:
                pfn += 1 << o
                continue
            scanned += 1
            if f.refs[pfn] == 0 or not movable(pfn):  # (refs 0: inside a larger free block)
                ok = False
                break
            moves += 1
            pfn += 1
        if ok:
            candidates.append((moves, lo))
    ev["compact_migrate_scanned"] += scanned
    k.clock.charge(scanned * COMPACT_SCAN_NS)
    chosen = [lo for _moves, lo in sorted(candidates)[:blocks]]
    if not chosen:
        ev["compact_fail"] += 1
        return False
    # Isolate the chosen ranges' free blocks (no destination may land there), then move every
    # used frame out of them, range by range.
    isolated = [(p, o) for p, o in list(free_in.items()) if any(lo <= p < lo + size for lo in chosen)]
    for p, o in isolated:
        z._pop(p, o)
    iso = dict(isolated)
    moved: list[int] = []
    made = 0
    for lo in chosen:
        pfn = lo
        while pfn < lo + size:
            if pfn in iso:
                pfn += 1 << iso[pfn]
                continue
            gfp = Gfp(f.kind[pfn])
            dst = f.alloc_in(z, 0, gfp, "min")  # within the zone, as Linux's free scanner
            if dst is None:  # nowhere to put it
                ev["pgmigrate_fail"] += 1
                break
            f._taken(dst, gfp)
            f.allocated += 1
            migrate(k, pfn, dst, rmap.get(pfn, ()), cache_of.get(pfn))
            if pfn in obj_of:
                obj, i = obj_of[pfn]
                obj.moved(i, dst)
            moved.append(pfn)
            pfn += 1
        if pfn < lo + size:
            break
        made += 1
    ev["pgmigrate_success"] += len(moved)
    ev["compact_isolated"] += len(moved)
    k.clock.charge(len(moved) * MIGRATE_NS)
    if moved:
        k.cpu.tlb_flush()
    # The isolated free blocks and the emptied frames go back to the buddy and coalesce.
    for p, o in isolated:
        z._push(p, o)
    for p in moved:
        z.free(p, 0)
    ev["compact_success" if made else "compact_fail"] += 1
    return made > 0


def migrate(k: "Kernel", src: int, dst: int, maps: list | tuple, cached: "tuple[PageCache, int] | None") -> None:
    """Move one frame's contents and references from src to dst (dst is fresh from the buddy
    with one reference and its kind counted; src leaves the books without entering the buddy)."""
    f = k.frames
    f.page(dst)[:] = f.page(src)
    f.kernel_access(src << 12, 4096, False)
    f.kernel_access(dst << 12, 4096, True)
    f.refs[dst] = f.refs[src]
    f.code[dst] = f.code[src]
    for aspace, slot, pte in maps:
        aspace.write_slot(slot, (pte & ~PTE_ADDR) | (dst << 12))  # type: ignore[attr-defined]
    if cached is not None:  # (the page cache holding it, its block)
        cached[0].moved(cached[1], dst)
    # src: no longer anyone's; the caller returns it to the buddy with the range.
    f.refs[src] = 0
    f.by_kind[f.kind[src]] -= 1
    f._zone_of(src).used_by_kind[f.kind[src]] -= 1
    f.allocated -= 1
    if f.code[src]:
        f.code[src] = 0
        f.on_code_reuse()  # translated code of the old frame must go
