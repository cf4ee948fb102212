"""Zone policies (guestkernel/zones.py): the split zones' table and Linux's grouping by mobility."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guestkernel.buddy import MAX_ORDER, OutOfMemory
from guestkernel.gfp import Gfp
from guestkernel.zones import (MOVABLE, PAGEBLOCK_ORDER, RECLAIMABLE, UNMOVABLE, MobilityBuddy, build,
                               split_zones)

MiB = 1 << 20


def test_split_zones_and_their_one_way_fallback():
    zones, lists = build("split", [("a", 0, 32 * MiB), ("b", 32 * MiB, 32 * MiB)], 16 * MiB)
    assert [(z.name, z.base_pfn, z.nframes) for z in zones] == [("Normal", 0, 4096), ("Movable", 4096, 12288)]
    names = {g: [z.name for z in zl] for g, zl in lists.items()}
    assert names[Gfp.KERNEL] == names[Gfp.RECLAIMABLE] == ["Normal"]  # never into Movable
    assert names[Gfp.USER] == names[Gfp.PAGECACHE] == names[Gfp.BUFFER] == ["Movable", "Normal"]


def test_split_zones_refuse_a_bad_size_or_holes():
    with pytest.raises(ValueError, match="fragmenting_zone"):
        split_zones([("a", 0, 8 * MiB)], 8 * MiB)
    with pytest.raises(ValueError, match="contiguous"):
        split_zones([("a", 0, 8 * MiB), ("b", 16 * MiB, 8 * MiB)], 4 * MiB)


def _check(z: MobilityBuddy) -> None:
    """Every free block is in exactly one typed list, the one of its pageblock's type, and the
    typed lists hold the same blocks as the per-order lists."""
    typed = {(p, o) for per in z.typed for o, lst in enumerate(per) for p in lst}
    plain = {(p, o) for o, lst in enumerate(z.free_lists) for p in lst}
    assert typed == plain
    for t, per in enumerate(z.typed):
        for lst in per:
            for p in lst:
                assert z._type_at(p) == t
    assert sum(1 << o for _p, o in plain) == z.free_frames


def test_an_unmovable_request_steals_a_whole_pageblock():
    z = MobilityBuddy(0, 4096)  # 8 pageblocks, all Movable at boot
    assert z.blocks_by_type()[:3] == [0, 8, 0]
    p = z.alloc(0, Gfp.KERNEL)
    # The largest fallback block (order 10 = two pageblocks) became Unmovable, and the page came
    # from it; the movable allocations that follow do not touch it.
    assert z.blocks_by_type()[UNMOVABLE] == 2 and z._type_at(p) == UNMOVABLE
    q = z.alloc(0, Gfp.USER)
    assert z._type_at(q) == MOVABLE
    r = z.alloc(0, Gfp.RECLAIMABLE)
    assert z._type_at(r) == RECLAIMABLE
    _check(z)
    for pfn in (p, q, r):
        z.free(pfn, 0)
    _check(z)
    assert z.free_frames == 4096


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 4), st.sampled_from(list(Gfp))), max_size=120))
def test_mobility_buddy_keeps_its_lists_consistent(ops):
    z = MobilityBuddy(512, 3000)  # unaligned start and end: partial pageblocks
    held: list[tuple[int, int]] = []
    for alloc, order, gfp in ops:
        if alloc or not held:
            try:
                pfn = z.alloc(order, gfp)
            except OutOfMemory:
                continue
            assert all(pfn + (1 << order) <= q or q + (1 << o) <= pfn for q, o in held)
            held.append((pfn, order))
        else:
            z.free(*held.pop(len(held) // 2))
        _check(z)
    for pfn, o in held:
        z.free(pfn, o)
    _check(z)
    assert z.free_frames == 3000
    assert MAX_ORDER == 11 and PAGEBLOCK_ORDER == 9
