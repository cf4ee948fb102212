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
    # What is left: the cached blocks of the page cache, the shared sentinel page and the slabs;
    # in the slabs, only the cached inodes and dentries: no open file, VMA or pipe survives.
    slab = k.slab.totals()["slab_pages"]
    assert k.frames.allocated == len(k.pagecache.pages) + 1 + slab
    live = {name: c.active_objs for name, c in k.slab.caches.items() if c.active_objs}
    assert set(live) <= {"ext2_inode_cache", "dentry"}, live
    assert live["ext2_inode_cache"] == len(k.fs.rootfs._icache) and live["dentry"] == len(k.fs.rootfs._dcache)
    # Dropping the slab caches gives every slab page back but the one of the root inode, which
    # stays pinned as Linux's root dentry does.
    k.reclaim.drop_caches(2, type("P", (), {"comm": b"test", "pid": 0})())
    assert {n: c.active_objs for n, c in k.slab.caches.items() if c.active_objs} == {"ext2_inode_cache": 1}
    assert k.slab.totals()["slab_pages"] == 1 and k.frames.allocated == len(k.pagecache.pages) + 2
    assert MAX_ORDER == 11


def test_split_zones_keep_kernel_objects_and_page_cache_apart(base_image, tmp_path):
    """must-hold 4: with zones = "split", long-lived kernel memory (page tables, slabs of the inode
    and dentry caches) is only ever placed in the fragmenting zone (Normal), and page-cache and
    user pages land there only by the table's fallback, when the non-fragmenting zone (Movable)
    is short; a Movable zone smaller than what sort holds makes that fallback happen (user pages
    cannot be reclaimed without swap)."""
    from guestkernel.gfp import Gfp
    from vmm.config import apply_overrides, load_machine

    image = tmp_path / "disk.img"
    shutil.copyfile(base_image, image)
    cfg = apply_overrides(load_machine(None), ["pool.dram0.size=48MiB", "pool.dram1.size=16MiB",
                                               "kernel.memory.zones=split", "kernel.memory.fragmenting_zone=56MiB"])
    m = Machine(image, cfg, console=Console(None, None, capture=True))
    r = m.run(["/bin/sh", "-c", "for i in 1 2 3 4 5 6; do cat /data/corpus.txt > /tmp/c$i; done; "
                                "tar cf /tmp/t.tar -C /data tree; ls -R /data > /dev/null; sort /tmp/c1 /tmp/c2 | md5sum; "
                                "rm /tmp/c* /tmp/t.tar"])
    assert r.exit_code == 0
    f = m.kernel.frames
    assert [z.name for z in f.zones] == ["Normal", "Movable"]
    placed = {(Gfp(g).name, zone): n for (g, zone), n in f.placements.items()}
    for kind in (Gfp.KERNEL, Gfp.RECLAIMABLE):
        assert f.placements[(kind, "Movable")] == 0, placed
        assert f.placements[(kind, "Normal")] > 0, placed
    for kind in (Gfp.PAGECACHE, Gfp.USER, Gfp.BUFFER):
        assert f.placements[(kind, "Normal")] == f.fallbacks[(kind, "Normal")], placed
    assert f.fallbacks[(Gfp.USER, "Normal")] > 0, placed  # the fallback was exercised
    assert f.placements[(Gfp.PAGECACHE, "Movable")] > 0
