"""Memory pressure: zone watermarks, kswapd, direct reclaim, drop_caches and the OOM killer.

Watermarks are Linux's (mm/page_alloc.c): min_free_kbytes = sqrt(16 x lowmem kB), clamped to
[128 kB, 256 MiB]; each zone's min is its share of that, low and high add max(min/4, 0.1 % of
the zone) once and twice. The allocator (frames.py) serves from zones above low; below low it
wakes kswapd, which runs at the next scheduling point and frees until every zone is above
high; below min an allocation reclaims directly, and when nothing more can be freed the OOM
killer kills the process with the most memory (SIGKILL, logged as Linux logs it).

What can be freed: clean page-cache pages no process maps, oldest first (dirty ones are written
back first, never dropped; with checkpointing, storage may change only at a checkpoint, so dirty
pages stay), and empty or unused objects of the reclaimable slab caches (the inode and dentry
caches). Reclaim work is charged to the virtual clock: per page scanned, per page freed, and a
block write per page written back (the cost model's constants below).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from guestkernel.compaction import POLICIES_THAT_COMPACT, compact_zone
from guestkernel.gfp import Gfp
from guestkernel.pagecache import frame_owners

if TYPE_CHECKING:
    from guestkernel.buddy import BuddyAllocator
    from guestkernel.kernel import Kernel
    from guestkernel.process import Process

RECLAIM_SCAN_NS = 50      # looking at one LRU page
RECLAIM_FREE_NS = 300     # unmapping and freeing one page
WATERMARK_SCALE = 10      # vm.watermark_scale_factor: 0.1 % of a zone between watermarks
KSWAPD_BATCH = 32         # SWAP_CLUSTER_MAX: pages per reclaim pass
COSTLY_ORDER = 3          # PAGE_ALLOC_COSTLY_ORDER: above it, no OOM kill for a block
DEF_PRIORITY = 12         # reclaim priority: a pass scans (LRU size >> priority) pages
RETRY_NS = 20_000         # one try of a costly allocation's slow path (zonelist walk, resched)


def min_free_kbytes(total_pages: int) -> int:
    return min(262144, max(128, math.isqrt(total_pages * 4 * 16)))


def set_watermarks(zones: list["BuddyAllocator"], min_free_kb: int) -> None:
    total = sum(z.nframes for z in zones)
    pages_min = min_free_kb // 4
    for z in zones:
        zmin = pages_min * z.nframes // total
        step = max(zmin // 4, z.nframes * WATERMARK_SCALE // 10000)
        z.wmark_min, z.wmark_low, z.wmark_high = zmin, zmin + step, zmin + 2 * step


class Reclaim:
    """The kernel's reclaim: installed as the allocator's pressure handler."""

    def __init__(self, k: "Kernel") -> None:
        self.k = k
        self.min_free_kb = min_free_kbytes(k.frames.total_frames)
        set_watermarks(k.frames.zones, self.min_free_kb)
        k.frames.on_pressure = self.direct
        self.busy = False  # reclaim allocates nothing itself, but a shrinker must not recurse

    # --- what can be freed --------------------------------------------------------------------
    def shrink(self, want: int, zones: "list[BuddyAllocator] | None", kind: str) -> int:
        """Free up to `want` pages (page cache first, then the reclaimable slab caches) in
        `zones` (None: anywhere); returns pages freed. `kind` is kswapd or direct."""
        k = self.k
        ev = k.frames.events
        in_zone = None
        if zones is not None:
            spans = [(z.base_pfn, z.base_pfn + z.nframes) for z in zones]

            def in_zone(pfn: int) -> bool:
                return any(a <= pfn < b for a, b in spans)
        scanned = freed = 0
        for pc in k.caches():  # the root's first, then each mounted file system's
            s, got = pc.reclaim(want - freed, in_zone)
            scanned, freed = scanned + s, freed + got
            if freed >= want:
                break
        self._account(kind, scanned, freed)
        ev["pgscan_file"] += scanned
        ev["pgsteal_file"] += freed
        if freed < want:
            # The object caches' shrinkers only run between file-system operations (kswapd at
            # a scheduling point); direct reclaim may come from inside one, so it returns only
            # the slabs that are already empty.
            got = k.slab.reclaim(want - freed) if kind == "kswapd" else k.slab.shrink()
            ev["slabs_scanned"] += got
            k.clock.charge(got * RECLAIM_FREE_NS)
            freed += got
        return freed

    # --- kswapd ---------------------------------------------------------------------------------
    def kswapd(self) -> None:
        """Run at scheduling points when a zone went below low: reclaim until every zone is
        above its high watermark, or nothing more can be freed."""
        f = self.k.frames
        if not f.kswapd_wanted or self.busy:
            return
        f.kswapd_wanted = False
        f.events["pageoutrun"] += 1
        self.busy = True
        try:
            while True:
                short = [z for z in f.zones if z.free_frames < z.wmark_high]
                if not short:
                    break
                want = max(KSWAPD_BATCH, max(z.wmark_high - z.free_frames for z in short))
                if not self.shrink(want, short, "kswapd"):
                    break
        finally:
            self.busy = False

    # --- direct reclaim and the OOM killer ------------------------------------------------------
    def direct(self, order: int, gfp: Gfp) -> bool:
        """An allocation found no zone above min: reclaim in its zones; if nothing could be
        freed, kill a process. True if the allocation should be tried again."""
        if self.busy:
            return False
        f = self.k.frames
        zones = f.zonelists[gfp]
        f.events[f"allocstall_{zones[0].name.split('.')[0].lower()}"] += 1
        self.busy = True
        try:
            if order and self.compact(zones, order):  # a free block by migration first
                return True
            if self.shrink(max(KSWAPD_BATCH, 2 << order), zones, "direct"):
                return True
        finally:
            self.busy = False
        if order > COSTLY_ORDER:
            return False  # a large block that cannot be made is not worth a process (Linux)
        return self.k.oom_kill(order, gfp)

    def alloc_costly(self, order: int, gfp: Gfp) -> int | None:
        """A large block its caller can do without (Linux's __GFP_RETRY_MAYFAIL, what a mount's
        buffers ask for): tried at each reclaim priority from DEF_PRIORITY down to 0, each try
        charged RETRY_NS and preceded by direct reclaim that looks at (page-cache pages >>
        priority) pages in the kind's zones, so that every try works twice as hard as the one
        before: compaction then plain reclaim where the zone policy compacts (mobility, modern
        Linux), lumpy reclaim elsewhere (single, split: the kernels before compaction); None
        after the last (ENOMEM).
        Counted: the tries in /proc/vmstat's allocstall and pgscan/pgsteal_direct."""
        f = self.k.frames
        zones = f.zonelists[gfp]
        for prio in range(DEF_PRIORITY, -1, -1):
            pfn = f.try_block(order, gfp)
            if pfn is not None or self.busy:
                return pfn
            self.k.clock.charge(RETRY_NS)
            f.events[f"allocstall_{zones[0].name.split('.')[0].lower()}"] += 1
            self.busy = True
            try:
                cached = sum(len(pc.pages) for pc in self.k.caches())
                scan = max(KSWAPD_BATCH, cached >> prio)
                if self.k.frames.policy in POLICIES_THAT_COMPACT:
                    if not self.compact(zones, order):
                        self.shrink(scan, zones, "direct")
                elif not any(self.lumpy(z, order, scan) for z in zones):  # the zonelist's order
                    self.shrink(KSWAPD_BATCH, zones, "direct")
            finally:
                self.busy = False
        return f.try_block(order, gfp)

    def lumpy(self, z: "BuddyAllocator", order: int, scan: int) -> bool:
        """Lumpy reclaim (Linux 2.6.23 to 3.4, the kernels without compaction that the single
        and split policies model): take the least recently used page-cache pages of zone z, up
        to `scan` of them, and with each the other pages of its aligned 2**order block; a block whose
        every page is free or a reclaimable page-cache page is freed whole (a pinned or kernel
        page in it spoils it, which is what fragmentation means). A pass stops once it freed
        SWAP_CLUSTER_MAX pages (Linux's nr_to_reclaim); True if it freed a block.
        Charged per page looked at and per page freed, as shrink()."""
        k = self.k
        f = k.frames
        lo, hi = z.base_pfn, z.base_pfn + z.nframes
        owner = frame_owners(k.caches())
        size = 1 << order
        scanned = freed = 0
        tried: set[int] = set()
        made = False
        taken = 0  # LRU pages taken: the priority's budget (the block's other pages ride along)
        for pc in k.caches():
            for blockno, pfn in list(pc.pages.items()):
                if taken >= scan or freed >= KSWAPD_BATCH:  # nr_to_reclaim: SWAP_CLUSTER_MAX
                    break
                if blockno not in pc.pages or not lo <= pfn < hi:
                    continue  # freed with an earlier block, or in another zone
                taken += 1
                scanned += 1
                if not pc.reclaimable(blockno):
                    pc.pages.move_to_end(blockno)  # mapped: back to the active end (Linux
                    continue                       # activates it; this reclaim does not unmap)
                head = pfn & ~(size - 1)
                if head in tried or head < lo or head + size > hi:
                    continue
                tried.add(head)
                victims = []
                for q in range(head, head + size):
                    scanned += 1
                    if f.refs[q] == 0:
                        continue
                    got = owner.get(q)
                    if got is None or got[1] not in got[0].pages or not got[0].reclaimable(got[1]):
                        victims = None
                        break
                    victims.append(got)
                if victims is None:
                    continue
                for vpc, vblock in victims:
                    vpc.evict(vblock)
                freed += len(victims)
                made = True
        self._account("direct", scanned, freed)
        return made

    def _account(self, kind: str, scanned: int, freed: int) -> None:
        """A reclaim pass's cost on the clock (per page scanned, per page freed; the page cache
        charged the blocks it wrote back) and its vm events (kind: kswapd or direct)."""
        k = self.k
        k.clock.charge(scanned * RECLAIM_SCAN_NS + freed * RECLAIM_FREE_NS)
        ev = k.frames.events
        ev[f"pgscan_{kind}"] += scanned
        ev[f"pgsteal_{kind}"] += freed

    def compact(self, zones: "list[BuddyAllocator]", order: int) -> bool:
        """Direct compaction in the allocation's zones, where the zone policy has it."""
        if self.k.frames.policy not in POLICIES_THAT_COMPACT:
            return False
        return any(compact_zone(self.k, z, order) for z in zones)

    def drop_caches(self, mode: int, who: "Process | None") -> None:
        """/proc/sys/vm/drop_caches: 1 the clean page cache, 2 the reclaimable slab objects,
        3 both (dirty pages and objects in use stay), logged as Linux logs it (`who` None: the
        kernel's own request, not logged)."""
        k = self.k
        ev = k.frames.events
        if mode & 1:
            for pc in k.caches():
                pc.drop_clean()
            ev["drop_pagecache"] += 1
        if mode & 2:
            k.slab.reclaim(None)
            ev["drop_slab"] += 1
        if who is not None:
            k.log.append(f"{who.comm.decode(errors='replace')} ({who.pid}): drop_caches: {mode}")


def oom_victim(k: "Kernel") -> "Process | None":
    """Linux's oom_badness without adjustments: the process with the most resident pages and
    page tables (ties: the higher pid, the later started); init is never chosen."""
    best, best_score = None, -1
    seen: set[int] = set()
    for p in sorted(k.procs.values(), key=lambda q: q.pid):
        if p.pid == 1 or p.mm is None or p.state == "zombie" or p.leader is not None or id(p.mm) in seen:
            continue
        seen.add(id(p.mm))
        score = p.mm.resident_pages() + len(p.mm.aspace.table_frames)
        if score >= best_score:
            best, best_score = p, score
    return best
