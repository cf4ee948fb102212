"""The persistent media of a machine's SCM pools, read and written in a guest device's order.

An SCM pool's media file (`<state>/<pool>.media`) is host-physical: page k of the file is page k
of the pool. A guest range backed by it (a /dev/pmem device, the checkpoint window) reaches its
pages through the EPT, which need not keep them in order (`ept.initial = "shuffled"`). The
machine rebuilds the same EPT at every power-on (it is seeded), so tools that inspect or damage
media offline (tests, media-fault campaigns) ask here which file page holds each device page.
"""
from __future__ import annotations

import os
from pathlib import Path

from hw.physmem import PAGE_SIZE, PhysicalMemory
from vmm.config import GuestRange, MachineConfig, load_machine
from vmm.config.schema import STORAGE_POOL
from vmm.errors import EmuError


def effective(cfg: MachineConfig) -> MachineConfig:
    """The configuration a machine built from `cfg` has: EMU_SET="key=value ..." overrides apply
    to every machine built (test matrices, e.g. the whole suite once more with
    ept.initial=shuffled; see scripts/test.sh)."""
    if os.environ.get("EMU_SET", "").strip():
        from vmm.config import apply_overrides

        return apply_overrides(cfg, os.environ["EMU_SET"].split())
    return cfg


def build_ept(cfg: MachineConfig, physmem: PhysicalMemory):  # type: ignore[no-untyped-def]
    """The EPT a machine of `cfg` starts with (identity or seeded shuffle within each pool)."""
    from hw.ept import EPT, Backing

    return EPT(physmem, [Backing(g.base_gpa, g.size_bytes, g.pool, g.pool_offset_bytes) for g in cfg.guest_map()],
               shuffle_seed=cfg.seed if cfg.ept.initial == "shuffled" else None,
               in_order=frozenset({STORAGE_POOL}))  # the storage window maps the image file in order


def guest_range(cfg: MachineConfig, name: str) -> GuestRange:
    """The guest range called `name`, or the one of that kind (`checkpoint`, `pmem`)."""
    for g in cfg.guest_map():
        if g.name == name:
            return g
    found = [g for g in cfg.guest_map() if g.kind == name]
    if len(found) == 1:
        return found[0]
    raise EmuError(f"machine {cfg.name} has no guest range {name!r}")


def page_map(cfg: MachineConfig, name: str) -> tuple[str, list[int]]:
    """The pool behind guest range `name` and, for each of the range's pages in guest order, the
    page of the pool's media file that holds it."""
    g = guest_range(cfg, name)
    physmem = PhysicalMemory(cfg.range_specs())  # anonymous and untouched: costs no memory
    ept = build_ept(cfg, physmem)
    pool = next(r for r in physmem.ranges if r.spec.name == g.pool)
    first = pool.spec.base_hpa // PAGE_SIZE
    gpfn = g.base_gpa // PAGE_SIZE
    return g.pool, [ept.hpfn(gpfn + i) - first for i in range(g.size_bytes // PAGE_SIZE)]


class DeviceMedia:
    """The media behind one guest range of a state directory's machine, in the range's order."""

    def __init__(self, state: Path, name: str, cfg: MachineConfig | None = None) -> None:
        self.cfg = effective(cfg if cfg is not None else load_machine(state / "config.json"))
        self.pool, self.pages = page_map(self.cfg, name)
        self.path = state / f"{self.pool}.media"

    def read(self) -> bytearray:
        raw = self.path.read_bytes()
        out = bytearray(len(self.pages) * PAGE_SIZE)
        for i, k in enumerate(self.pages):
            out[i * PAGE_SIZE : (i + 1) * PAGE_SIZE] = raw[k * PAGE_SIZE : (k + 1) * PAGE_SIZE]
        return out

    def write(self, data: bytes | bytearray) -> None:
        """Put the range's bytes back where they live in the media file."""
        fd = os.open(self.path, os.O_RDWR)
        try:
            for i, k in enumerate(self.pages):
                os.pwrite(fd, data[i * PAGE_SIZE : (i + 1) * PAGE_SIZE], k * PAGE_SIZE)
        finally:
            os.close(fd)
