"""The EPT: guest-physical to host-physical page mapping, with accessed and dirty bits.

The kernel hands out guest-physical frames (`gpfn`); the EPT says which host-physical frame
(`hpfn`, a page of one of the host memory's pools, on some channel) backs each. At power-on each
guest range (`Backing`: gpa window -> a run of its pool) maps onto its pool's pages in order, or
in a seeded random order within the pool (`shuffle_seed`), which proves that nothing above the
hardware assumes gpa == hpa. The native TLB fill and the kernel's own accesses set the A/D bits; the host side can
scan and clear them (later accesses set them again) and, while the guest is paused, swap two
pages' backing (data and mapping), which is how a hypervisor migrates a page between DRAM and SCM.
"""
from __future__ import annotations

import random
from array import array
from dataclasses import dataclass
from typing import Callable


from hw.physmem import PAGE_SIZE, PhysicalMemory

EPT_A = 1
EPT_D = 2
INVALID = 0xFFFFFFFF


@dataclass(frozen=True)
class Backing:
    """A guest-physical window backed by a run of one pool: [base_gpa, +size) -> the pool's
    pages from pool_offset_bytes on."""

    base_gpa: int
    size_bytes: int
    pool: str
    pool_offset_bytes: int = 0


class EPT:
    def __init__(self, physmem: PhysicalMemory, backings: list[Backing] | None = None,
                 shuffle_seed: int | None = None, in_order: frozenset[str] = frozenset()) -> None:
        """`in_order`: pools never shuffled (a mapped file whose page k must stay page k)."""
        self.physmem = physmem
        if backings is None:  # every pool at its own address (tests of the models alone)
            backings = [Backing(r.spec.base_hpa, r.spec.size_bytes, r.spec.name) for r in physmem.ranges]
        self.pages = max(b.base_gpa + b.size_bytes for b in backings) // PAGE_SIZE
        self.map = array("I", [INVALID]) * self.pages
        # pool -> its first hpfn and size in pages, and (shuffled pools) its hpfns in the order
        # guest pages take them; a pool in order fills its windows in C (hw/native/eptscan.c:
        # 150 Ki pages took 7 ms from a Python range, a tenth of emu's start-up then).
        pools: dict[str, tuple[int, int]] = {}
        order: dict[str, array] = {}
        for r in physmem.ranges:
            first = r.spec.base_hpa // PAGE_SIZE
            pools[r.spec.name] = (first, r.spec.size_bytes // PAGE_SIZE)
            if shuffle_seed is not None and r.spec.name not in in_order:
                hpfns = list(range(first, first + r.spec.size_bytes // PAGE_SIZE))
                random.Random(f"ept:{shuffle_seed}:{r.spec.name}").shuffle(hpfns)
                order[r.spec.name] = array("I", hpfns)
        for b in backings:
            if b.base_gpa % PAGE_SIZE or b.size_bytes % PAGE_SIZE or b.pool_offset_bytes % PAGE_SIZE:
                raise ValueError(f"guest window of pool {b.pool!r} is not page aligned")
            pool_first, pool_pages = pools[b.pool]
            first, n = b.pool_offset_bytes // PAGE_SIZE, b.size_bytes // PAGE_SIZE
            if first + n > pool_pages:
                raise ValueError(f"guest window of {b.size_bytes} bytes runs past the end of pool {b.pool!r}")
            at = b.base_gpa // PAGE_SIZE
            if b.pool in order:
                self.map[at : at + n] = order[b.pool][first : first + n]
            elif n:
                from hw.native import load

                ffi, lib = load()
                lib.emu_fill_seq(ffi.from_buffer("uint32_t[]", self.map) + at, n, pool_first + first)
        self.bits = bytearray(self.pages)
        # Pages the kernel reached by their contents (GuestMemory.page). The kernel runs on the
        # host here, so its stores set no A/D bit the hardware would: the host logs every page
        # it hands the kernel, as a hypervisor logs device DMA (QEMU's dirty bitmap). Snapshots
        # (vmm/snapshot) read it with the bits; page placement never does.
        self.log = bytearray(self.pages)
        self._scan_out = self._scan_na = self._scan_bits = None  # native scan buffers (scan_dirty)
        self.swaps = 0
        self.on_change: Callable[[], None] = lambda: None     # a mapping or bit changed: flush TLBs
        self.on_data_move: Callable[[], None] = lambda: None  # page contents moved: drop translated code

    def save_state(self) -> dict:
        """The mapping and the accessed/dirty bits of every guest page."""
        return {"map": self.map.tobytes(), "bits": bytes(self.bits), "log": bytes(self.log), "swaps": self.swaps}

    def load_state(self, state: dict) -> None:
        if len(state["bits"]) != self.pages:
            raise ValueError(f"saved EPT of {len(state['bits'])} pages, this one has {self.pages}")
        self.map[:] = array("I", state["map"])   # in place: the CPU's C walk reads these arrays
        self.bits[:] = state["bits"]
        self.log[:] = state["log"]
        self.swaps = state["swaps"]
        self.on_change()
        self.on_data_move()

    def hpfn(self, gpfn: int) -> int:
        return self.map[gpfn]

    def hpa(self, gpa: int) -> int:
        return (self.map[gpa >> 12] << 12) | (gpa & (PAGE_SIZE - 1))

    def scan(self, first_gpfn: int, count: int, clear: bool = True) -> tuple[list[int], list[int]]:
        """(accessed gpfns, dirty gpfns) in [first, first+count); clear the bits if asked. One
        pass in C (native/eptscan.c): a hypervisor scans the whole guest RAM every epoch."""
        dirty, accessed, _ = self.scan_dirty(first_gpfn, count, clear, want_accessed=True)
        return accessed, dirty

    def scan_dirty(self, first_gpfn: int, count: int, clear: bool = True,
                   want_accessed: bool = False) -> tuple[list[int], list[int], int]:
        """(dirty gpfns, accessed gpfns if `want_accessed` else [], number accessed)."""
        from hw import native

        ffi, lib = native.load()
        count = max(0, min(count, self.pages - first_gpfn))
        if count == 0:
            return [], [], 0
        if self._scan_out is None:  # reused: a hypervisor scans every epoch
            self._scan_out = ffi.new("uint32_t[]", self.pages)
            self._scan_na = ffi.new("uint64_t *")
            self._scan_bits = ffi.from_buffer("uint8_t[]", self.bits)
        dirty, na = self._scan_out, self._scan_na
        accessed = ffi.new("uint32_t[]", count) if want_accessed else ffi.NULL
        nd = lib.emu_ept_scan(self._scan_bits, first_gpfn, count, dirty, accessed, na, int(clear))
        if clear and na[0]:
            self.on_change()  # cached translations would skip setting the bits again
        return (ffi.unpack(dirty, nd), ffi.unpack(accessed, na[0]) if want_accessed else [], na[0])

    def swap(self, gpfn_a: int, gpfn_b: int) -> None:
        """Exchange the host frames backing two guest pages, moving the data with them, so the
        guest sees the same contents at the same guest-physical addresses."""
        self.swap_many([(gpfn_a, gpfn_b)])

    def swap_many(self, pairs: list[tuple[int, int]]) -> None:
        """Swap each pair (see swap) with the guest paused; translations are dropped once."""
        if not pairs:
            return
        m, view = self.map, self.physmem.page_view
        for a, b in pairs:
            ha, hb = m[a], m[b]
            va, vb = view(ha), view(hb)
            tmp = bytes(va)
            va[:] = vb
            vb[:] = tmp
            m[a], m[b] = hb, ha
            self.log[a] = self.log[b] = 1
        self.swaps += len(pairs)
        self.on_change()
        self.on_data_move()

    def remap(self, gpfn: int, hpfn: int, copy: bool = True) -> None:
        """Back a guest page with another (unused) host frame, copying its data."""
        old = self.map[gpfn]
        if copy:
            self.physmem.page_view(hpfn)[:] = self.physmem.page_view(old)
        self.map[gpfn] = hpfn
        self.log[gpfn] = 1
        self.on_change()
        self.on_data_move()
