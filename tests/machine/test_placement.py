"""Page placement under a running guest (vmm/placement): swaps between the MRAM and DRAM pools
never change what the guest computes (outputs byte-identical to native, with the EPT shuffled),
runs are deterministic, the oracle replays a recorded trace, and the counters add up."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hw.console import Console
from tests.conftest import e2fsck_clean, run_native
from vmm.config import apply_overrides, load_machine
from vmm.machine import Machine

MACHINES = Path(__file__).parents[2] / "machines"
# compress and decompress part of the corpus through a pipe: two processes, page cache, anonymous
# memory and pipe buffers all move between the pools while they run
PIPELINE = "head -c 400000 data/corpus.txt | gzip -6 | gzip -dc | md5sum; tar cf - -C data tree | md5sum"
# aggressive placement: scan every 0.5 ms, migrate at every scan, short lifetime
AGGRESSIVE = ["model_level=fast", "placement.scan_interval=500us", "placement.migrate_interval=500us",
              "placement.lifetime=1ms", "placement.max_pairs=64"]


def run(image: Path, tmp: Path, sets: list[str], name: str) -> tuple[bytes, dict, Machine]:
    disk = tmp / f"{name}.img"
    shutil.copyfile(image, disk)
    cfg = apply_overrides(load_machine(MACHINES / "hybrid-mram.toml"), sets)
    con = Console(out_fd=None, err_fd=None, capture=True)
    m = Machine(disk, cfg, console=con)
    r = m.run(["/bin/sh", "-c", PIPELINE.replace("data/", "/data/")])
    assert r.exit_code == 0, bytes(con.captured[2])
    e2fsck_clean(disk)
    return bytes(con.captured[1]), m.stats()["stats"], m


@pytest.mark.parametrize("policy", ["lru", "mq"])
def test_swaps_under_a_running_pipeline_keep_its_output(base_image, native_root, tmp_path, policy):
    native = run_native(["/bin/sh", "-c", PIPELINE], native_root).stdout
    out, stats, m = run(base_image, tmp_path, AGGRESSIVE + ["ept.initial=shuffled", f"placement.policy={policy}"], policy)
    v = {k: x["value"] for k, x in stats.items()}
    assert out == native
    assert v["placement.swaps"] > 50 and v["ept.swaps"] == v["placement.swaps"]
    assert v["placement.migration_write_bytes.dram"] == v["placement.migration_write_bytes.slow"] == 4096 * v["placement.swaps"]
    assert v["placement.pages_written"] >= v["placement.pages_written_in_dram"] > 0
    assert v["placement.pause_ns"] >= v["placement.scans"] * 20_000 + v["placement.swaps"] * 2_000
    # the pages the policy moved are where the EPT says they are
    ram = m.placement.ram
    dram = [r for r in m.physmem.ranges if r.spec.kind == "dram"][0].spec
    for g in ram.gpfns:
        h = m.ept.map[g] << 12
        assert ram.in_dram[g] == (dram.base_hpa <= h < dram.base_hpa + dram.size_bytes)


def test_placement_runs_are_deterministic(base_image, tmp_path):
    sets = AGGRESSIVE + ["placement.policy=mq"]
    a = run(base_image, tmp_path, sets, "a")
    b = run(base_image, tmp_path, sets, "b")
    assert a[0] == b[0]
    assert a[1] == b[1]  # every deterministic counter (host time is in the host section)
    assert list(a[2].ept.map) == list(b[2].ept.map)


def test_the_oracle_replays_the_trace_of_a_recorded_run(base_image, native_root, tmp_path):
    trace = tmp_path / "dirty.trace"
    out_none, s_none, _ = run(base_image, tmp_path, AGGRESSIVE + ["placement.policy=none", f"placement.record={trace}"], "n")
    assert trace.stat().st_size > 0
    assert s_none["placement.swaps"]["value"] == 0 and s_none["placement.scans"]["value"] > 10
    out_oracle, s_oracle, _ = run(base_image, tmp_path, AGGRESSIVE + ["placement.policy=oracle", f"placement.trace={trace}"], "o")
    assert out_oracle == out_none
    assert s_oracle["placement.swaps"]["value"] > 0


def test_the_energy_estimate_adds_up_the_traffic_of_each_pool(base_image, tmp_path):
    """vmm/energy.py: per pool, bits read and written (demand traffic on its channel plus the
    placement's page copies) times the machine file's per-bit energies, plus background power
    over the virtual time; `--stats` groups them."""
    sets = [s for s in AGGRESSIVE if not s.startswith("model_level")] + ["model_level=full", "placement.policy=mq"]
    _out, stats, m = run(base_image, tmp_path, sets, "energy")
    v = {k: x["value"] for k, x in stats.items()}
    assert v["placement.swaps"] > 0
    ns = v["sim.virtual_ns"]
    for pool in m.config.pools:
        ch, copied = pool.channel, 4096 * v["placement.swaps"]
        rd = v[f"channel{ch}.read_bytes.user"] + v[f"channel{ch}.read_bytes.kernel"] + copied
        wr = v[f"channel{ch}.write_bytes.user"] + v[f"channel{ch}.write_bytes.kernel"] + copied
        assert v[f"energy.{pool.name}.read_uj"] == pytest.approx(rd * 8 * pool.read_pj_per_bit / 1e6, abs=1e-3)
        assert v[f"energy.{pool.name}.write_uj"] == pytest.approx(wr * 8 * pool.write_pj_per_bit / 1e6, abs=1e-3)
        static = pool.static_mw_per_gib * pool.size_bytes / 2**30 * ns / 1e6
        assert v[f"energy.{pool.name}.static_uj"] == pytest.approx(static, abs=1e-3)
    assert v["energy.mram.write_uj"] > 0 and v["energy.dram.static_uj"] > 0 and v["energy.mram.static_uj"] == 0
    parts = [x for k, x in v.items() if k.startswith("energy.") and k != "energy.total_uj"]
    assert v["energy.total_uj"] == pytest.approx(sum(parts), abs=1e-2)


@pytest.mark.slow
def test_reproduce_hybrid_mram_quick_holds_what_the_paper_claims(tmp_path):
    """`emu reproduce hybrid-mram --quick` (about 15 minutes): with mq nearly all of stress's
    last-quarter writes land in DRAM and under 10 % with none; mq cuts the programs' MRAM write
    bytes (copies included) by half or more; every policy gives the same output (checked inside)."""
    from emu.reproduce import reproduce

    result = reproduce("hybrid-mram", True, tmp_path, say=lambda line: None)
    assert all(result["summary"]["checks"].values()), result["summary"]
    assert (tmp_path / "result.json").exists() and (tmp_path / "stress_timeseries.png").exists()
    for workload in result["workloads"].values():
        for r in workload.values():
            assert r["migration_bytes"] == 2 * 4096 * r["swaps"]  # a page copied each way per swap
            assert r["mram_write_bytes"] >= r["demand_mram_write_bytes"]
