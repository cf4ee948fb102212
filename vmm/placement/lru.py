"""LRU, the paper's comparison policy: DRAM caches the most recently written pages. At each
migration every slow page written since the previous one (most recent first) is swapped with the
least recently written DRAM page (never-written pages first), as long as that page was written
longer ago than the candidate."""
from __future__ import annotations

from array import array

from vmm.config import PlacementConfig
from vmm.placement.policy import Policy, RamPages


class LRU(Policy):
    name = "lru"

    def __init__(self, cfg: PlacementConfig, ram: RamPages) -> None:
        super().__init__(cfg, ram)
        self.last = array("q", [-1]) * len(ram.in_dram)  # scan of the last detected write
        self.since = 0                                    # the scan of the previous migration

    def observe(self, scan: int, dirty: list[int]) -> None:
        last = self.last
        for g in dirty:
            last[g] = scan

    def pick(self, scan: int, max_pairs: int) -> list[tuple[int, int]]:
        last, in_dram = self.last, self.ram.in_dram
        hot = sorted((g for g in self.ram.gpfns if not in_dram[g] and last[g] >= self.since),
                     key=lambda g: (-last[g], g))
        cold = sorted((g for g in self.ram.gpfns if in_dram[g]), key=lambda g: (last[g], g))
        self.since = scan + 1
        pairs = [(h, c) for h, c in zip(hot, cold) if last[c] < last[h]]
        self.wanted = len(pairs)
        return pairs[:max_pairs]
