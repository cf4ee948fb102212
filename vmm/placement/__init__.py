"""Host-side placement of guest RAM between DRAM and a slower pool (the hybrid DRAM/STT-MRAM
paper): an epoch listener that scans the EPT dirty bits every `placement.scan_interval`, feeds
them to a policy (one per module: `none`, `lru`, `mq`, `oracle`) and, every
`placement.migrate_interval` from `placement.start` on, swaps the pairs it picks with the guest
paused.

A swap writes back and drops the two pages' cache lines (the hypervisor's clflush: counted as
demand traffic), then copies each page into the other's frame: 4 KiB read and 4 KiB written on
each pool, counted apart as migration traffic (`placement.migration_*_bytes.*`; the channel
counters hold demand traffic only). The pause is charged to the virtual clock (`Clock.pause`):
`pause` per scan and per migration, plus `swap` per pair.
"""
from __future__ import annotations

import time
from typing import Any

from hw.physmem import PAGE_SIZE
from hw.stats import Stat, StatsRegistry
from vmm.config import PlacementConfig
from vmm.placement.lru import LRU
from vmm.placement.mq import MQ
from vmm.placement.oracle import Oracle
from vmm.placement.policy import Policy, RamPages
from vmm.placement.trace import TraceWriter, read_trace

POLICIES: dict[str, type[Policy]] = {"none": Policy, "lru": LRU, "mq": MQ, "oracle": Oracle}

STATS = [
    Stat("placement.scans", "scans", "scans of the EPT dirty bits of guest RAM"),
    Stat("placement.pages_scanned", "pages", "guest RAM pages whose EPT bits were read"),
    Stat("placement.pages_written", "pages", "pages found dirty, summed over scans"),
    Stat("placement.pages_written_in_dram", "pages", "of those, pages DRAM backed (write hits)"),
    Stat("placement.migrations", "migrations", "times the policy was asked for pairs"),
    Stat("placement.swaps", "pairs", "page pairs swapped between the slow pool and DRAM"),
    Stat("placement.swaps_requested", "pairs", "pairs the policy wanted, before the max_pairs cap"),
    Stat("placement.pingpong", "pages", "pages moved again within two migrations of their last move"),
    Stat("placement.migration_read_bytes.dram", "bytes", "page copies: bytes read from DRAM"),
    Stat("placement.migration_write_bytes.dram", "bytes", "page copies: bytes written to DRAM"),
    Stat("placement.migration_read_bytes.slow", "bytes", "page copies: bytes read from the slow pool"),
    Stat("placement.migration_write_bytes.slow", "bytes", "page copies: bytes written to the slow pool"),
    Stat("placement.pause_ns", "ns", "virtual time the guest was paused for scans and swaps"),
    Stat("placement.host_ns", "ns", "host time spent scanning, deciding and swapping", host=True),
]


def ram_pages(machine: Any) -> RamPages:
    """Guest RAM and which of its pages DRAM backs now (read from the EPT)."""
    ram = [g for g in machine.guest_map if g.kind == "ram"]
    first = min(g.base_gpa for g in ram) // PAGE_SIZE
    end = max(g.end_gpa for g in ram) // PAGE_SIZE
    dram = [(r.spec.base_hpa // PAGE_SIZE, (r.spec.base_hpa + r.spec.size_bytes) // PAGE_SIZE)
            for r in machine.physmem.ranges if r.spec.kind == "dram"]
    in_dram = bytearray(machine.ept.pages)
    in_dram[first:end] = bytes(any(a <= h < b for a, b in dram) for h in machine.ept.map[first:end])
    return RamPages(range(first, end), in_dram)


class Placement:
    def __init__(self, machine: Any, cfg: PlacementConfig) -> None:
        self.machine = machine
        self.cfg = cfg
        self.ram = ram_pages(machine)
        self.policy = POLICIES[cfg.policy](cfg, self.ram)
        self.scan = 0
        self.moved_at: dict[int, int] = {}  # gpfn -> scan of its last move
        self.v = {s.name: 0 for s in STATS}
        self.copied: dict[str, int] = {}  # pool -> bytes each way (a copy reads and writes a page on both pools)
        self.recorder: TraceWriter | None = None
        if cfg.record:
            self.recorder = TraceWriter(cfg.record, {
                "machine": machine.config.name, "scan_interval_ns": cfg.scan_interval_ns,
                "ram_gpfns": [self.ram.gpfns.start, self.ram.gpfns.stop]})
        if cfg.policy == "oracle":
            header, _ = read_trace(cfg.trace)
            if header.get("ram_gpfns") != [self.ram.gpfns.start, self.ram.gpfns.stop] or \
                    header.get("scan_interval_ns") != cfg.scan_interval_ns:
                from vmm.errors import EmuError

                raise EmuError(f"{cfg.trace}: the trace was recorded on another guest RAM or scan interval")
        machine.epochs.add(self.on_scan, every_ns=cfg.scan_interval_ns)

    def register_stats(self, reg: StatsRegistry) -> None:
        reg.register(lambda: dict(self.v), STATS)

    def on_scan(self, icount: int) -> None:
        t0 = time.perf_counter_ns()
        m, cfg, v = self.machine, self.cfg, self.v
        ram = self.ram
        dirty, _, _ = m.ept.scan_dirty(ram.gpfns.start, len(ram.gpfns), clear=True)
        if self.recorder is not None:
            self.recorder.write(icount, dirty)
        in_dram = ram.in_dram
        v["placement.scans"] += 1
        v["placement.pages_scanned"] += len(ram.gpfns)
        v["placement.pages_written"] += len(dirty)
        v["placement.pages_written_in_dram"] += sum(in_dram[g] for g in dirty)
        self.policy.observe(self.scan, dirty)
        pause = cfg.pause_ns
        if (self.scan + 1) % cfg.scans_per_migration == 0 and m.clock.uptime_ns() >= cfg.start_ns:
            pairs = self.policy.pick(self.scan, cfg.max_pairs)
            v["placement.migrations"] += 1
            v["placement.swaps_requested"] += max(self.policy.wanted, len(pairs))
            if pairs:
                self._swap(pairs)
                pause += cfg.pause_ns + cfg.swap_ns * len(pairs)
        m.clock.pause(pause)
        v["placement.pause_ns"] += pause
        self.scan += 1
        v["placement.host_ns"] += time.perf_counter_ns() - t0

    def _swap(self, pairs: list[tuple[int, int]]) -> None:
        m, v = self.machine, self.v
        cache = m.cache
        if cache is not None:  # the hypervisor flushes both pages before copying them
            for pair in pairs:
                for g in pair:
                    cache.clflush_range(m.ept.map[g] * PAGE_SIZE, PAGE_SIZE, True)
        for pair in pairs:
            for g in pair:
                pool = m.config.range_of(m.ept.map[g] * PAGE_SIZE).name
                self.copied[pool] = self.copied.get(pool, 0) + PAGE_SIZE
        m.ept.swap_many(pairs)
        self.ram.swapped(pairs)
        n = len(pairs) * PAGE_SIZE
        for side in ("dram", "slow"):
            v[f"placement.migration_read_bytes.{side}"] += n
            v[f"placement.migration_write_bytes.{side}"] += n
        v["placement.swaps"] += len(pairs)
        window = 2 * self.cfg.scans_per_migration
        for pair in pairs:
            for g in pair:
                before = self.moved_at.get(g)
                if before is not None and self.scan - before <= window:
                    v["placement.pingpong"] += 1
                self.moved_at[g] = self.scan

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None
