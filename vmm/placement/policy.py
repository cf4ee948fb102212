"""What every placement policy is: it sees which guest RAM pages were written in each scan and,
when asked, names the pairs of pages to swap between the slow pool and DRAM.

Policies work in guest-physical frame numbers (`gpfn`): the guest's pages stay where the guest
put them, only their host backing moves. `RamPages.in_dram[gpfn]` says where each page is now
(the placement updates it after each swap).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from vmm.config import PlacementConfig


@dataclass
class RamPages:
    """The guest RAM pages and, for each, whether DRAM backs it now."""

    gpfns: range                 # every page of guest RAM
    in_dram: bytearray           # by gpfn (over the whole EPT), 1 if a DRAM page backs it
    dram_pages: int = field(init=False)

    def __post_init__(self) -> None:
        self.dram_pages = sum(self.in_dram[g] for g in self.gpfns)

    def swapped(self, pairs: list[tuple[int, int]]) -> None:
        for slow, fast in pairs:
            self.in_dram[slow], self.in_dram[fast] = 1, 0


class Policy:
    """The interface (and the `none` policy: it traces but never migrates)."""

    name = "none"

    def __init__(self, cfg: PlacementConfig, ram: RamPages) -> None:
        self.cfg = cfg
        self.ram = ram
        self.lifetime_scans = max(1, cfg.lifetime_ns // cfg.scan_interval_ns)
        self.wanted = 0  # pairs the last pick would have swapped without the max_pairs cap

    def observe(self, scan: int, dirty: list[int]) -> None:
        """The guest RAM pages found dirty by scan number `scan` (0, 1, ...), in gpfn order."""

    def pick(self, scan: int, max_pairs: int) -> list[tuple[int, int]]:
        """Up to `max_pairs` (page in the slow pool, page in DRAM) pairs to swap now."""
        self.wanted = 0
        return []
