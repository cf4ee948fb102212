"""Private pages that live in the image file between checkpoints (the third paper's faster C/R:
shadow paging at page granularity, the file as the pages' home).

With the images in a file on the storage window (imagefile.py), a page of the file is guest
memory a process can map. So:

1. after a checkpoint commits, the private pages it just copied into the file are mapped from
   there instead of RAM (`remap`: read-only, the RAM frames freed), as a restart maps an
   image's pages back (state.map_image_page: one piece for both);
2. a write to such a page does not copy it into RAM: `write_fault` takes a fresh page of the
   image store (referenced by no committed image: ImageStore.live), copies the 4 KiB there once
   and the process maps it writable; its stores go to the window through the cache model;
3. the next checkpoint does not copy it: the scan (native/ckptscan.c) lists it as itself,
   write-protected again, and `flush` writes its lines back in place (clflush of each line
   through the cache model) before the commit's fence and slot: shadow paging, the committed
   image never changes under a process. Pages of older images that no image lists any more are
   freed by the store's reference counts, live pages no image lists by the commit.

A power cut at any point leaves the newest committed image as it was: the pages being written
are fresh pages outside it. What stays in RAM (copied at each checkpoint as into the SCM range):
shared anonymous memory (its writes must reach every sharer; System V shm and device mappings
are not checkpointed at all), pages mapped executable (Unicorn caches translated code by guest
page and does not see the kernel's host-side writes: a page of the file reused for other data
would keep stale code), frames something besides the group's page tables holds, and pages when
the image file is full (a write fault falls back to a copy into RAM). Pages of storage lent as
memory (swap.py) are RAM frames to the kernel: they move into the image file like any other.
"""
from __future__ import annotations

import zlib
from array import array
from typing import TYPE_CHECKING, Any

from guestkernel.checkpoint.store import PAGE, ImageStore
from guestkernel.scm import LINE, ScmMedium

if TYPE_CHECKING:
    from guestkernel.checkpoint.state import PageTracker
    from guestkernel.kernel import Kernel


class LivePages:
    """The image file's pages as the home of the group's private pages (see the module
    docstring). `flush_in_place` False is a debug switch: a checkpoint lists the pages written in
    place without writing their lines back, which a crash campaign must catch."""

    def __init__(self, k: "Kernel", store: ImageStore, medium: ScmMedium, tracker: "PageTracker",
                 flush_in_place: bool = True) -> None:
        assert k.dax is not None and medium.gpfns is not None
        self.k = k
        self.store = store
        self.medium = medium
        self.tracker = tracker
        self.flush_in_place = flush_in_place
        self.base, self.n = k.dax.window_gpfn, k.dax.window_pages
        tracker.image_window(self.base, self.n)
        # window page -> image page (every page of the file: its blocks never move)
        self.pg_of = array("I", [0xFFFFFFFF]) * self.n
        for pg, gpfn in enumerate(medium.gpfns):
            self.pg_of[gpfn - self.base] = pg
        self.flushed: list[tuple[int, int, int]] = []  # (window page, image page, crc) of this checkpoint
        self.lines = 0   # lines written back in place
        self.copies = 0  # write faults that copied a page into a fresh page of the file
        self.candidates: dict[int, list[tuple[Any, int, Any]]] = {}
        self.fresh: dict[int, tuple[int, int]] = {}
        k.frames.shadow_write = self.write_fault

    def is_image_page(self, gpfn: int) -> bool:
        t = self.tracker
        assert t.img_pg is not None
        return 0 <= gpfn - self.base < self.n and t.img_pg[gpfn - self.base] != 0xFFFFFFFF

    # -- step 2: a write to a page of the file ------------------------------------------------
    def write_fault(self, old: int) -> int | None:
        """A private page mapped from the file (`old`, write-protected) is written: its copy in
        a fresh page of the file (the new guest page), or None to copy it into RAM (not an
        image's page, or the file is full)."""
        if not self.is_image_page(old):
            return None
        try:
            pg = self.store.alloc(1, live=True)
        except MemoryError:
            return None
        new = self.medium.gpfns[pg]  # type: ignore[index]
        self.k.frames.copy(new, old)  # the copy a COW makes (charged alike), into the window
        self.tracker.note_live(new, pg)
        self.copies += 1
        return new

    # -- step 3: at a checkpoint ------------------------------------------------------------
    def flush(self, gpfn: int) -> tuple[int, int]:
        """A page written in place since the last checkpoint: its lines written back (before the
        commit's fence); returns (image page, crc)."""
        pg = self.pg_of[gpfn - self.base]
        data = self.k.frames.page(gpfn)
        if self.flush_in_place:
            self.medium.flush(pg * PAGE, PAGE)
            self.lines += PAGE // LINE
        crc = zlib.crc32(data)
        self.flushed.append((gpfn, pg, crc))
        return pg, crc

    def copied(self, candidates: dict[int, list[tuple[Any, int, Any]]], fresh: dict[int, tuple[int, int]]) -> None:
        """The scan's private RAM frames it copied into the image (`candidates`: frame ->
        (mm, gva, its scan record) of every mapping of it; `fresh`: frame -> (image page,
        crc)), to be mapped from the file once the image commits."""
        self.candidates, self.fresh = candidates, fresh

    def committed(self) -> tuple[int, int]:
        """The image commits: the pages flushed in place are image pages now (a write copies
        them again), and the frames it copied leave RAM (`remap`). Returns (pages flushed in
        place, frames freed)."""
        for gpfn, pg, crc in self.flushed:
            self.tracker.note_mapped(gpfn, pg, crc, self.base, self.n)
        n = len(self.flushed)
        self.flushed = []
        freed = self.remap(self.candidates, self.fresh)
        self.candidates, self.fresh = {}, {}
        return n, freed

    def abandoned(self) -> None:
        """The checkpoint failed: the pages stay written in place (still not in any image) and
        the frames in RAM."""
        self.flushed = []
        self.candidates, self.fresh = {}, {}

    # -- step 1: after a commit ---------------------------------------------------------------
    def remap(self, candidates: dict[int, list[tuple[Any, int, Any]]], fresh: dict[int, tuple[int, int]]) -> int:
        """The private RAM frames the committed image just copied mapped from their image
        pages instead, read-only, and freed; returns the frames freed. A frame something else
        holds too (more references than the mappings found) stays."""
        from guestkernel.checkpoint.state import map_image_page

        frames = self.k.frames
        freed = 0
        for pfn, maps in candidates.items():
            if frames.refs[pfn] != len(maps):
                continue
            pg, crc = fresh[pfn]
            gpfn = self.medium.gpfns[pg]  # type: ignore[index]
            for mm, gva, rec in maps:
                map_image_page(self.k, mm, gva, gpfn, pg, crc, self.tracker, executable=False)
                mm.page_stale(gva)  # one page's TLB entries go (INVLPG), not the whole TLB
                rec.pfn, rec.gen, rec.pg, rec.crc = gpfn, 0, pg, crc
                frames.put(pfn)
            freed += 1
        return freed

