"""What an allocation is for (Linux's GFP flags, reduced to what a zone policy needs to place it).

Every allocation site in the kernel names its kind; the zone policy (single, split, mobility) maps
the kind to a preferred zone and a fallback order, and counts placements by kind and zone.

    KERNEL      long-lived, unmovable kernel memory: page tables, kmalloc, the kernel's own
                structures (Linux: GFP_KERNEL, MIGRATE_UNMOVABLE)
    RECLAIMABLE long-lived kernel objects a shrinker can free: the inode and dentry caches
                (Linux: __GFP_RECLAIMABLE, MIGRATE_RECLAIMABLE)
    USER        anonymous and copy-on-write user pages (GFP_HIGHUSER_MOVABLE, MIGRATE_MOVABLE)
    PAGECACHE   cached file blocks, clean ones reclaimable (movable in Linux)
    BUFFER      large, short-lived kernel buffers: pipe rings, mount-time buffers (unmovable in
                Linux; the split-zone paper puts them in the non-fragmenting zone)
"""
from __future__ import annotations

import enum


class Gfp(enum.IntEnum):
    KERNEL = 0
    RECLAIMABLE = 1
    USER = 2
    PAGECACHE = 3
    BUFFER = 4

    @property
    def label(self) -> str:
        return self.name.lower()
