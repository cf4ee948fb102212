"""The physical memory map: RAM ranges (DRAM, SCM) on channels, each backed by a host buffer.

Every range is an anonymous host mapping handed to Unicorn with `mem_map_ptr`, so the CPU, the
native hot path and the Python kernel all touch the same bytes. Addresses here are host-physical
(`hpa`: what the memory channels see); the EPT (hw/ept.py) maps the kernel's guest-physical
frames onto them. `view(hpa, n)` gives a zero-copy window.

Default map (issue 3 adds persistent ranges on their own channels)::

    gpa 0x0000_0000 +-------------------------+
                    |  dram0  (channel 0)     |  frames for page tables, user pages,
                    |                         |  page cache, kernel buffers (buddy)
    gpa  size       +-------------------------+
"""
from __future__ import annotations

import mmap
from dataclasses import dataclass

PAGE_SIZE = 4096


@dataclass(frozen=True)
class RangeSpec:
    """One range of the physical memory map."""

    name: str
    kind: str  # "dram" (volatile) or "scm" (persistent)
    base_hpa: int
    size_bytes: int
    channel: int = 0


class MemoryRange:
    def __init__(self, spec: RangeSpec, buffer: mmap.mmap | None = None) -> None:
        if spec.base_hpa % PAGE_SIZE or spec.size_bytes % PAGE_SIZE or spec.size_bytes <= 0:
            raise ValueError(f"memory range {spec.name!r} must be page aligned and non-empty")
        self.spec = spec
        # Anonymous memory, or a given buffer (a file mapping: SCM whose every store is durable)
        # Private anonymous memory: an os.fork() of emu (a crash campaign's fork server) gives
        # the copy its own guest RAM (a shared mapping would let the copy write the original's).
        self.buffer = buffer if buffer is not None else mmap.mmap(-1, spec.size_bytes, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.shared = buffer is not None  # a file's mapping may be shared (see release)
        self.view = memoryview(self.buffer)

    @property
    def end_hpa(self) -> int:
        return self.spec.base_hpa + self.spec.size_bytes


class PhysicalMemory:
    """The set of RAM ranges, and fast access to them by guest-physical address."""

    def __init__(self, specs: list[RangeSpec], buffers: dict[str, mmap.mmap] | None = None) -> None:
        ordered = sorted(specs, key=lambda s: s.base_hpa)
        for a, b in zip(ordered, ordered[1:]):
            if a.base_hpa + a.size_bytes > b.base_hpa:
                raise ValueError(f"memory ranges {a.name!r} and {b.name!r} overlap")
        buffers = buffers or {}
        self.ranges = [MemoryRange(s, buffers.get(s.name)) for s in ordered]
        # (first hpfn, end hpfn, range) of each: the one table both lookups read (page_view runs
        # for every page the kernel reaches; a range's bounds as hpa, a property, cost it 2 % of a run)
        self._pages = tuple((r.spec.base_hpa >> 12, r.end_hpa >> 12, r) for r in self.ranges)

    def range_of(self, hpa: int) -> MemoryRange:
        hpfn = hpa >> 12  # (ranges are page aligned)
        for first, end, r in self._pages:
            if first <= hpfn < end:
                return r
        raise ValueError(f"hpa {hpa:#x} is outside every memory range")

    def view(self, hpa: int, n: int) -> memoryview:
        r = self.range_of(hpa)
        off = hpa - r.spec.base_hpa
        if off + n > r.spec.size_bytes:
            raise ValueError(f"hpa range {hpa:#x}+{n:#x} crosses the end of {r.spec.name}")
        return r.view[off : off + n]

    def page_view(self, hpfn: int) -> memoryview:
        """The 4 KiB host-physical page hpfn."""
        for first, end, r in self._pages:  # (range_of's loop inline: no call on this path)
            if first <= hpfn < end:
                off = (hpfn - first) << 12
                return r.view[off : off + PAGE_SIZE]
        raise ValueError(f"hpa {hpfn << 12:#x} is outside every memory range")

    def release(self, hpfn: int, count: int) -> None:
        """Give the host memory behind host pages [hpfn, hpfn+count) back to the host OS (a
        balloon's pages): the process's RSS drops; the pages read as zeros afterwards. On a shared
        mapping (a media file) MADV_DONTNEED would only unmap: MADV_REMOVE frees the backing;
        private memory (anonymous RAM, a private file view) falls back to DONTNEED, which drops
        its pages. The pages may span ranges that adjoin."""
        while count > 0:
            r = self.range_of(hpfn << 12)
            off = (hpfn << 12) - r.spec.base_hpa
            n = min(count * PAGE_SIZE, r.spec.size_bytes - off)
            if r.shared:
                try:
                    r.buffer.madvise(mmap.MADV_REMOVE, off, n)
                except OSError:
                    r.shared = False  # a private view of a file: not asked again
            if not r.shared:
                r.buffer.madvise(mmap.MADV_DONTNEED, off, n)
            hpfn, count = hpfn + n // PAGE_SIZE, count - n // PAGE_SIZE

    def read(self, hpa: int, n: int) -> bytes:
        return bytes(self.view(hpa, n))

    def write(self, hpa: int, data: bytes | memoryview) -> None:
        self.view(hpa, len(data))[:] = data

    def save_state(self) -> dict[str, bytes]:
        """The contents of every pool (as the CPU sees them: SCM media are the machine's)."""
        return {r.spec.name: bytes(r.view) for r in self.ranges}

    def load_state(self, state: dict[str, bytes]) -> None:
        for r in self.ranges:
            if len(state[r.spec.name]) != r.spec.size_bytes:
                raise ValueError(f"saved pool {r.spec.name} has {len(state[r.spec.name])} bytes, this one {r.spec.size_bytes}")
            r.view[:] = state[r.spec.name]

    def dram_ranges(self) -> list[MemoryRange]:
        return [r for r in self.ranges if r.spec.kind == "dram"]

    def scm_ranges(self) -> list[MemoryRange]:
        return [r for r in self.ranges if r.spec.kind == "scm"]
