"""The kernel's memory: buddy allocator invariants, and no frame leaks after a run that forks,
pipes, execs and exits many processes."""
from __future__ import annotations

import shutil

from hypothesis import given, settings, strategies as st

from vmm.machine import Machine
from guestkernel.buddy import MAX_ORDER, BuddyAllocator, OutOfMemory
from hw.console import Console


def test_buddy_splits_and_coalesces():
    b = BuddyAllocator(0, 1024)
    assert b.free_frames == 1024
    a = b.alloc(0)
    c = b.alloc(3)
    assert b.free_frames == 1024 - 1 - 8
    b.free(a, 0)
    b.free(c, 3)
    assert b.free_frames == 1024
    assert [len(fl) for fl in b.free_lists][-1] == 1  # one order-10 block again
    assert b.buddyinfo().startswith("Node 0, zone   Normal")


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(st.tuples(st.booleans(), st.integers(0, 4)), max_size=200))
def test_buddy_random_alloc_free(ops):
    b = BuddyAllocator(16, 1000)  # an odd, unaligned range
    held: list[tuple[int, int]] = []
    for alloc, order in ops:
        if alloc or not held:
            try:
                pfn = b.alloc(order)
            except OutOfMemory:
                continue
            assert pfn % (1 << order) == 0 and 16 <= pfn and pfn + (1 << order) <= 1016
            assert all(pfn + (1 << order) <= q or q + (1 << o) <= pfn for q, o in held)  # no overlap
            held.append((pfn, order))
        else:
            pfn, o = held.pop(len(held) // 2)
            b.free(pfn, o)
    for pfn, o in held:
        b.free(pfn, o)
    assert b.free_frames == 1000


def test_no_frame_leaks_after_processes_exit(base_image, tmp_path):
    image = tmp_path / "disk.img"
    shutil.copyfile(base_image, image)
    m = Machine(image, console=Console(None, None, capture=True))
    r = m.run(["/bin/sh", "-c", "cat /data/corpus.txt | grep memory | wc -l; tar czf /tmp/x.tgz -C /data tree; ls / | head -2"])
    assert r.exit_code == 0
    k = m.kernel
    assert not k.procs
    # What is left: the cached blocks of the page cache and the shared sentinel page.
    assert k.frames.allocated == len(k.pagecache.pages) + 1
    assert MAX_ORDER == 11
