"""Placement policies without a machine (vmm/placement): MQ's queues, demotion, victims and
picks as the paper describes them, LRU's order, the oracle's replay of a trace, the trace
format, the native EPT scan against a Python reference, and the configuration's checks."""
from __future__ import annotations

import random
from dataclasses import replace

import pytest

from vmm.config import ConfigError, PlacementConfig, apply_overrides, default_machine, load_machine
from vmm.errors import EmuError
from vmm.placement.lru import LRU
from vmm.placement.mq import MQ
from vmm.placement.oracle import Oracle
from vmm.placement.policy import RamPages
from vmm.placement.trace import TraceWriter, read_trace

# 16 guest pages: 0..11 slow (MRAM), 12..15 DRAM
SLOW, DRAM = list(range(12)), list(range(12, 16))
CFG = PlacementConfig(policy="mq", scan_interval_ns=1, migrate_interval_ns=1, lifetime_ns=3, queues=4)


def ram() -> RamPages:
    return RamPages(range(16), bytearray(1 if g in DRAM else 0 for g in range(16)))


def test_mq_queue_is_log2_of_the_writes_seen():
    mq = MQ(CFG, ram())
    assert list(mq.queues[0]) == DRAM  # at the start Q0 holds the DRAM pages
    for scan, n in enumerate((1, 2, 3, 4, 8, 100)):
        mq.observe(scan, [3])
    assert mq.count[3] == 6 and mq.where[3] == 2  # floor(log2 6)
    for scan in range(6, 6 + 100):
        mq.observe(scan, [5])
    assert mq.where[5] == 3  # capped at the top queue


def test_mq_heads_move_down_and_unwritten_dram_pages_become_victims():
    mq = MQ(CFG, ram())
    mq.observe(0, [])
    mq.observe(1, [12, 4])              # DRAM page 12 written once (Q0), 13..15 never; slow page 4 ...
    mq.observe(2, [4])                  # ... twice: Q1, expiring after scan 2 + 3
    assert list(mq.victim) == [] and mq.where[4] == 1
    mq.observe(3, [])                   # lifetime 3 scans: 13..15 (expire 3) leave Q0 for Q_victim
    assert list(mq.victim) == [13, 14, 15]
    mq.observe(4, [])
    assert 12 not in mq.where and list(mq.victim) == [13, 14, 15, 12]
    mq.observe(5, [])                   # page 4 moves down to Q0's head, its expiry restarted ...
    assert mq.where.get(4) == 0 and next(iter(mq.queues[0])) == 4
    mq.observe(7, [])
    assert mq.where.get(4) == 0
    mq.observe(8, [])                   # ... and, still unwritten and not in DRAM, is forgotten
    assert 4 not in mq.where and 4 not in mq.count and 4 not in mq.victim


def test_mq_picks_top_queues_tail_first_against_victim_heads():
    mq = MQ(CFG, ram())
    mq.observe(0, [1, 2, 3])            # count 1: Q0
    mq.observe(1, [2, 3])               # count 2: Q1, 3 the most recent tail
    mq.observe(2, [3])                  # count 3: Q1 still
    mq.observe(3, [1, 2, 3])            # 1: Q1 (2), 2: Q1 (3), 3: Q2 (4)
    assert list(mq.victim) == [12, 13, 14, 15]
    pairs = mq.pick(3, max_pairs=2)
    assert pairs == [(3, 12), (2, 13)] and mq.wanted == 3  # capped at 2 of 3
    assert list(mq.victim) == [14, 15]


def test_lru_brings_recently_written_slow_pages_in_for_the_least_recent_dram_pages():
    r = ram()
    lru = LRU(replace(CFG, policy="lru"), r)
    lru.observe(0, [12, 13])
    lru.observe(1, [5])
    lru.observe(2, [7, 13])
    pairs = lru.pick(2, max_pairs=10)
    # slow pages by recency (7 then 5) against DRAM pages never written (14, 15) first
    assert pairs == [(7, 14), (5, 15)]
    r.swapped(pairs)
    lru.observe(3, [5])
    assert lru.pick(3, 10) == []  # nothing slow was written since the last pick


def test_oracle_places_the_pages_the_trace_says_will_be_written(tmp_path):
    path = tmp_path / "t"
    w = TraceWriter(path, {"machine": "x"})
    for dirty in ([1], [2, 3], [3, 12], [3]):
        w.write(100, dirty)
    w.close()
    header, scans = read_trace(path)
    assert header["machine"] == "x" and scans == [[1], [2, 3], [3, 12], [3]]
    cfg = replace(CFG, policy="oracle", trace=str(path), migrate_interval_ns=2)
    o = Oracle(cfg, ram())
    # after scan 0 the next two scans write 3 twice, 2 and 12 once: 3 and 2 in, for never-written DRAM pages
    assert o.pick(0, 10) == [(3, 13), (2, 14)]


def test_a_corrupt_trace_is_one_line(tmp_path):
    p = tmp_path / "t"
    p.write_bytes(b"not a trace\n")
    with pytest.raises(EmuError, match="is not a placement trace"):
        read_trace(p)
    w = TraceWriter(p, {})
    w.write(1, [1, 2, 3])
    w.close()
    p.write_bytes(p.read_bytes()[:-2])
    with pytest.raises(EmuError, match="truncated"):
        read_trace(p)


def test_native_ept_scan_matches_a_python_reference():
    from hw.ept import EPT, EPT_A, EPT_D
    from hw.physmem import PhysicalMemory, RangeSpec

    ept = EPT(PhysicalMemory([RangeSpec("d", "dram", 0, 4 << 20)]))
    rng = random.Random(7)
    for _ in range(20):
        bits = bytes(rng.choice((0, 0, 0, EPT_A, EPT_A | EPT_D, EPT_D)) for _ in range(ept.pages))
        ept.bits[:] = bits
        first, count = rng.randrange(ept.pages), rng.randrange(ept.pages + 10)
        want_d = [g for g in range(first, min(first + count, ept.pages)) if bits[g] & EPT_D]
        want_a = [g for g in range(first, min(first + count, ept.pages)) if bits[g] & EPT_A]
        accessed, dirty = ept.scan(first, count)
        assert (accessed, dirty) == (want_a, want_d)
        assert all(ept.bits[g] == 0 for g in range(first, min(first + count, ept.pages)))
        assert all(ept.bits[g] == bits[g] for g in range(first))


def test_placement_configuration_is_checked(tmp_path):
    from pathlib import Path

    hybrid = load_machine(Path(__file__).parents[2] / "machines" / "hybrid-mram.toml")
    assert apply_overrides(hybrid, ["placement.policy=mq"]).placement.policy == "mq"
    with pytest.raises(ConfigError, match="placement.policy: unknown placement policy 'mqq'.*did you mean 'mq'"):
        apply_overrides(hybrid, ["placement.policy=mqq"])
    with pytest.raises(ConfigError, match="guest RAM must come from both kinds of pool"):
        apply_overrides(default_machine(), ["placement.policy=lru"])
    with pytest.raises(ConfigError, match="placement.trace: the oracle replays a trace"):
        apply_overrides(hybrid, ["placement.policy=oracle"])
    with pytest.raises(ConfigError, match="multiple of placement.scan_interval"):
        apply_overrides(hybrid, ["placement.migrate_interval=15ms"])
