"""Which guest pages a snapshot saves, by mode, from the EPT's accessed/dirty bits and log.

    full         every mapped guest page (Xen: every P2M entry, so size = RAM), device windows too
    touched      every page accessed since boot (VirtualBox)
    incremental  the first of a chain: every page; then the pages dirtied since the previous
                 snapshot (VMware)
    sonic        every RAM page still mapped once the guest has dropped its caches and handed its
                 free pages to the host through the balloon (SonicShot); of the device windows
                 (pmem), which the guest cannot hand over, the pages ever touched

The hardware's bits (set by the CPU's walk and fill, hw/native/hotpath.c) miss the kernel's own
stores, which happen on the host here: `EPT.log` holds the pages the kernel reached, 1 since the
last snapshot, 2 before it. A snapshot clears the dirty bits and ages the log, so the next one of
a chain sees what changed since; the accessed bits stay (touched is since boot). One pass of numpy
over a byte per page: a scan of 8 GiB of guest RAM (2 Mi pages) takes milliseconds.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from hw.ept import EPT_A, EPT_D, INVALID
from vmm.snapshot import MODES

_AGE = bytes(2 if b else 0 for b in range(256))          # log: 1 (since the last snapshot) -> 2
_CLEAR_D = bytes(b & ~EPT_D & 0xFF for b in range(256))  # bits: drop the dirty bit


def window_gpfns(machine: Any, kind: str | None = None) -> np.ndarray:
    """Every gpfn of the guest-physical map (RAM and device windows, or those of one kind),
    ascending."""
    parts = [np.arange(g.base_gpa >> 12, (g.base_gpa + g.size_bytes) >> 12, dtype=np.int64)
             for g in sorted(machine.guest_map, key=lambda g: g.base_gpa) if kind is None or g.kind == kind]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def window_mask(machine: Any, kind: str | None = None) -> np.ndarray:
    """A flag per gpfn of the whole guest-physical space: in a window (of that kind)? (Indexing
    it beats np.isin's sort on millions of pages.)"""
    mask = np.zeros(machine.ept.pages, dtype=bool)
    mask[window_gpfns(machine, kind)] = True
    return mask


def select(machine: Any, mode: str, first_of_chain: bool) -> np.ndarray:
    """The gpfns to save (ascending)."""
    ept = machine.ept
    gpfns = window_gpfns(machine)
    mapped = np.frombuffer(ept.map, dtype=np.uint32)[gpfns] != INVALID
    bits = np.frombuffer(ept.bits, dtype=np.uint8)[gpfns]
    log = np.frombuffer(ept.log, dtype=np.uint8)[gpfns]
    touched = ((bits & (EPT_A | EPT_D)) != 0) | (log != 0)
    if mode == "full" or (mode == "incremental" and first_of_chain):
        keep = mapped
    elif mode == "sonic":
        keep = mapped & (window_mask(machine, "ram")[gpfns] | touched)
    elif mode == "touched":
        keep = mapped & touched
    elif mode == "incremental":
        keep = mapped & (((bits & EPT_D) != 0) | (log == 1))
    else:
        raise ValueError(f"unknown snapshot mode {mode!r} (one of {', '.join(MODES)})")
    return gpfns[keep]


def untouched(machine: Any, gpfns: np.ndarray) -> np.ndarray:
    """Which of `gpfns` were never reached since power-on: no accessed or dirty bit, not in the
    kernel's log (a DRAM page of them still holds the zeros it was built with)."""
    ept = machine.ept
    bits = np.frombuffer(ept.bits, dtype=np.uint8)[gpfns]
    log = np.frombuffer(ept.log, dtype=np.uint8)[gpfns]
    return ((bits & (EPT_A | EPT_D)) == 0) & (log == 0)


def mark_saved(machine: Any) -> None:
    """Start the next interval of dirty tracking: clear the dirty bits (the CPU sets them again
    at the next store: its TLB is flushed) and age the kernel's log."""
    ept = machine.ept
    ept.bits[:] = ept.bits.translate(_CLEAR_D)
    ept.log[:] = ept.log.translate(_AGE)
    ept.on_change()


def count_kinds(kinds: bytes | None, gpfns: np.ndarray, ram: np.ndarray, names: tuple[str, ...]) -> dict[str, int]:
    """How many of `gpfns` are of each kind (the kernel's page_kinds; pages outside RAM are
    "device"). `ram`: window_mask(machine, "ram")."""
    out: dict[str, int] = {}
    in_ram = ram[gpfns]
    if (n := int((~in_ram).sum())):
        out["device"] = n
    if kinds is None:
        if (n := int(in_ram.sum())):
            out["ram"] = n
        return out
    k = np.frombuffer(kinds, dtype=np.uint8)[gpfns[in_ram]]
    for i, n in enumerate(np.bincount(k, minlength=len(names))):
        if n:
            out[names[i] if i < len(names) else f"kind{i}"] = int(n)
    return out
