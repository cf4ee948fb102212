"""The oracle: an offline upper bound the paper lacks (customary in page-placement studies). It
replays a trace recorded from the same machine and program (`placement.record`) and, at each
migration, puts in DRAM the pages that the trace says will be written in the most scans until
the next migration: slow pages in decreasing order of future writes are swapped with DRAM pages
in increasing order, while the slow page will be written more. Runs with pauses shift a few scans
by some instructions; the trace is indexed by scan, so that is the oracle's only imprecision."""
from __future__ import annotations

from collections import Counter

from vmm.config import PlacementConfig
from vmm.placement.policy import Policy, RamPages
from vmm.placement.trace import read_trace


class Oracle(Policy):
    name = "oracle"

    def __init__(self, cfg: PlacementConfig, ram: RamPages) -> None:
        super().__init__(cfg, ram)
        _header, self.scans = read_trace(cfg.trace)

    def pick(self, scan: int, max_pairs: int) -> list[tuple[int, int]]:
        future: Counter[int] = Counter()
        for dirty in self.scans[scan + 1 : scan + 1 + self.cfg.scans_per_migration]:
            future.update(dirty)
        in_dram = self.ram.in_dram
        hot = sorted((g for g in future if not in_dram[g]), key=lambda g: (-future[g], g))
        cold = sorted((g for g in self.ram.gpfns if in_dram[g]), key=lambda g: (future[g], g))
        pairs = [(h, c) for h, c in zip(hot, cold) if future[h] > future[c]]
        self.wanted = len(pairs)
        return pairs[:max_pairs]
