"""Persistent windows as the kernel writes them: stores into a guest-physical range of SCM (or of
the storage window), clflush of the lines written and mfence, each through the machine's cache
model and charged to the clock (one piece for the checkpoint store and the DAX file system)."""
from __future__ import annotations

import zlib
from typing import Any, Callable, Iterator, Sequence

from hw.clock import SCM_FENCE_NS, SCM_LINE_NS
from hw.physmem import PAGE_SIZE

PAGE = PAGE_SIZE
LINE = 64


class ScmMedium:
    """The kernel's stores into a persistent window (the checkpoint range, the storage window of
    memory mode), a guest-physical range: bytes go into its
    pages and the machine's guest memory learns of them (the cache model, when there is one);
    `flush`/`fence` are clflush/mfence through it (each line written back and each fence is a
    persistence event, where the power may fail). Without a model (level fast) the pages are the
    media itself: every store is durable at once.

    `page_view(i)` gives page i of the window, which starts at `base_gpa` of `memory`
    (hw.guestmem.GuestMemory), or, with `gpfns`, is the guest page gpfns[i] (the pages of a file
    on the storage window, in file order); `ScmMedium.over(buffer)` serves a plain buffer (tools
    and tests)."""

    def __init__(self, page_view: Callable[[int], memoryview], npages: int, memory: Any = None,
                 base_gpa: int = 0, clock: Any = None, gpfns: Sequence[int] | None = None,
                 label: str = "SCM range") -> None:
        self.page_view = page_view
        self.label = label  # what it is, for messages (the SCM range, a checkpoint file)
        self.size = npages * PAGE
        self.memory = memory
        self.base_gpa = base_gpa
        self.gpfns = gpfns
        self.clock = clock
        self.lines_flushed = 0
        self.fences = 0

    @classmethod
    def over(cls, view: memoryview | bytearray, clock: Any = None) -> "ScmMedium":
        mv = memoryview(view)
        return cls(lambda i: mv[i * PAGE : (i + 1) * PAGE], len(mv) // PAGE, clock=clock)

    def _pieces(self, off: int, n: int) -> Iterator[tuple[int, int, int]]:
        """(page, offset in page, length) of [off, off+n), page by page."""
        while n > 0:
            pg, at = divmod(off, PAGE)
            k = min(n, PAGE - at)
            yield pg, at, k
            off += k
            n -= k

    def read(self, off: int, n: int) -> bytes:
        return b"".join(bytes(self.page_view(pg)[at : at + k]) for pg, at, k in self._pieces(off, n))

    @classmethod
    def window(cls, k: Any, base_gpa: int, size_bytes: int) -> "ScmMedium":
        """A contiguous guest-physical window (the SCM range, the storage window), page by page
        through the kernel's frames, its memory and clock."""
        first = base_gpa // PAGE
        return cls(lambda i: k.frames.page(first + i), size_bytes // PAGE, k.memory, base_gpa, k.clock)

    def gpa(self, pg: int, at: int = 0) -> int:
        """The guest-physical address of byte `at` of page `pg`."""
        return (self.gpfns[pg] * PAGE if self.gpfns is not None else self.base_gpa + pg * PAGE) + at

    def note_access(self, off: int, n: int, write: bool) -> None:
        """The kernel read or wrote [off, off+n) through page views itself: the cache model
        learns of it (a store it is told of later could not be evicted before)."""
        if self.memory is not None:
            for pg, at, k in self._pieces(off, n):
                self.memory.access(self.gpa(pg, at), k, write)

    def write(self, off: int, data: bytes | memoryview) -> None:
        mv = memoryview(data)
        done = 0
        for pg, at, k in self._pieces(off, len(mv)):
            self.page_view(pg)[at : at + k] = mv[done : done + k]
            if self.memory is not None:
                self.memory.access(self.gpa(pg, at), k, True)
            done += k

    def flush(self, off: int, n: int) -> None:
        lines = (off + n + LINE - 1) // LINE - off // LINE
        self.lines_flushed += lines
        if self.clock is not None:
            self.clock.charge(lines * SCM_LINE_NS)
        if self.memory is None:
            return
        if self.gpfns is None:
            self.memory.flush(self.base_gpa + off, n)
        else:
            for pg, at, k in self._pieces(off, n):
                self.memory.flush(self.gpa(pg, at), k)

    def fence(self) -> None:
        self.fences += 1
        if self.clock is not None:
            self.clock.charge(SCM_FENCE_NS)
        if self.memory is not None:
            self.memory.fence()

    def persist_frames(self, pgs: list[int], gpfns: list[int], page_of: Callable[[int], memoryview]) -> list[int]:
        """Guest frame gpfns[i] (its bytes: page_of(gpfn)) into page pgs[i], each written and
        flushed as `persist` would; returns the crc32 of each. The guest memory copies them in
        one step."""
        crcs: list[int] = []
        if self.memory is None:
            for pg, gpfn in zip(pgs, gpfns):
                data = page_of(gpfn)
                self.persist(pg * PAGE, data)
                crcs.append(zlib.crc32(data))
            return crcs
        try:
            self.memory.store_frames(gpfns, [self.gpa(pg) >> 12 for pg in pgs], crcs)
        finally:  # (charged as `persist` charges: each page stored, the one the power cut included)
            lines = len(crcs) * (PAGE // LINE)
            self.lines_flushed += lines
            if self.clock is not None:
                self.clock.charge(lines * SCM_LINE_NS)
        return crcs

    def persist(self, off: int, data: bytes | memoryview) -> None:
        n = len(data)
        pg, at = divmod(off, PAGE)
        if at + n > PAGE or n == 0:
            self.write(off, data)
            self.flush(off, n)
            return
        # Within one page (a table line, most metadata): write and flush as above, in one step.
        lines = (off + n + LINE - 1) // LINE - off // LINE
        self.lines_flushed += lines
        if self.clock is not None:
            self.clock.charge(lines * SCM_LINE_NS)
        if self.memory is None:
            self.page_view(pg)[at : at + n] = data
        else:
            self.memory.store_bytes(self.gpa(pg, at), data)
