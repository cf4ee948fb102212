"""The energy model's parameters and arithmetic (vmm/energy.py), and the table, checks and figures
of `emu reproduce hybrid-mram` on results made up here (the runs themselves are the slow suite's)."""
from __future__ import annotations

from pathlib import Path

import pytest

from emu.reproduce import hybrid_mram
from vmm.config import ConfigError, apply_overrides, load_machine
from vmm.energy import energy_uj

HYBRID = Path(__file__).parents[2] / "machines" / "hybrid-mram-1g.toml"


def test_energy_parameters_are_checked():
    cfg = load_machine(HYBRID)
    dram, mram = hybrid_mram.pools(cfg)
    assert (dram.write_pj_per_bit, mram.write_pj_per_bit) == (0.39, 39.0)  # the paper: MRAM writes 100x
    assert apply_overrides(cfg, ["pool.mram.write_pj_per_bit=20"]).pool("mram").write_pj_per_bit == 20.0
    with pytest.raises(ConfigError, match="write_pj_per_bit.*must be a finite number >= 0"):
        apply_overrides(cfg, ["pool.mram.write_pj_per_bit=-1"])
    with pytest.raises(ConfigError, match="expected a number"):
        apply_overrides(cfg, ["pool.mram.read_pj_per_bit=lots"])
    with pytest.raises(ConfigError, match="pool 'dram' has energy parameters but shares channel 2 with pool 'mram'"):
        apply_overrides(cfg, ["pool.mram.channel=2"])


def test_energy_is_bits_times_energy_plus_background_power():
    dram = hybrid_mram.pools(load_machine(HYBRID))[0]
    e = energy_uj(read_bytes=1_000_000, write_bytes=2_000_000, virtual_ns=1_000_000_000, pool=dram)
    assert e["read"] == pytest.approx(8e6 * 1.17e-6)
    assert e["write"] == pytest.approx(16e6 * 0.39e-6)
    assert e["static"] == pytest.approx(100e-3 * (64 / 1024) * 1.0 * 1e6)  # 6.25 mW for 1 s


def _policy(mram: int, dram: int, share: float) -> dict:
    rows = [(t * 10_000_000, t, int(dram * t / 100), int(mram * t / 100)) for t in range(101)]
    return {"mram_write_bytes": mram, "dram_write_bytes": dram, "migration_bytes": 0, "swaps": 0,
            "energy_uj": {"dram": 1.0, "mram": mram / 1e6, "total": 1.0 + mram / 1e6},
            "dram_share_last_quarter": share, "_stdout": b"x", "_series": rows}


def test_the_summary_says_what_holds_and_the_figures_are_written(tmp_path):
    results = {
        "stress": {"none": _policy(900, 100, 0.05), "lru": _policy(200, 800, 0.9),
                   "mq": _policy(100, 900, 0.95), "oracle": _policy(50, 950, 0.97)},
        "bzip2": {"none": _policy(1000, 0, 0.0), "lru": _policy(300, 700, 0.0),
                  "mq": _policy(400, 600, 0.0), "oracle": _policy(200, 800, 0.0)},
    }
    lines: list[str] = []
    table = hybrid_mram.summary(results, ["bzip2"], lines.append)
    text = "\n".join(lines)
    assert table["programs_mq_change_pct"] == -60.0 and table["mq_beats_lru"] is False
    assert "-60.0 %" in text and "1,789,717 -> 293,381 (-83.6 %)" in text and "95.0 %" in text
    assert "MQ does not beat LRU on the programs here" in text
    assert all(table["checks"].values()) and text.count("  holds: ") == 3
    results["stress"]["mq"]["dram_share_last_quarter"] = 0.5
    table = hybrid_mram.summary(results, ["bzip2"], lines.append)
    assert table["checks"]["stress: mq puts >= 90 % of the last quarter's writes in DRAM"] is False
    assert "DOES NOT HOLD: stress: mq puts" in lines[-3]
    hybrid_mram.figures(results, 250_000_000, tmp_path)
    for png in ("stress_timeseries.png", "mram_writes.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sonicshot_summary_checks_the_claims_and_writes_the_figures(tmp_path):
    from emu.reproduce import sonicshot

    def row(ram: int, user: int, full: int, touched: int, sonic: int) -> dict:
        r = {"ram_bytes": ram << 20, "user_mib": user}
        for mode, size, t in (("full", full, 2.0), ("touched", touched, 1.5), ("incremental", touched, 1.0), ("sonic", sonic, 0.3)):
            r[mode] = {"save_s": t, "restore_s": t, "bytes": size << 20}
        r["sonic_vs_full_pct"] = {k: round(100 * (r["sonic"][k] / r["full"][k] - 1), 1) for k in ("save_s", "restore_s", "bytes")}
        return r

    exp1 = [row(256, 200, 256, 250, 210), row(1024, 200, 1024, 700, 220)]
    exp2 = [row(1024, 0, 1024, 600, 20), row(1024, 920, 1024, 1000, 950)]
    said: list[str] = []
    table = sonicshot.summary(exp1, exp2, said.append)
    assert table["checks"] == {"1 GiB: sonic size >= 75 % below full": True, "1 GiB: sonic size >= 50 % below touched": True,
                               "1 GiB: sonic save+restore >= 70 % below full": True,
                               "nearly all RAM used: the gain shrinks (sonic within 30 % of full's size)": True}
    assert "paper (8 GB)" in said[0]
    sonicshot.figures(exp1, exp2, tmp_path)
    assert (tmp_path / "fig3_ram.png").stat().st_size > 1000 and (tmp_path / "fig4_user_memory.png").exists()


def _ckpt_row(label: str, total: list[float], kernel: list[float]) -> dict:
    configs = {"off": {"total_ratio": 1.0, "kernel_ratio": 1.0, "wall_ratio": 1.0, "checkpoints": 0,
                       "same_instructions": True, "same_output": True}}
    for i, (t, k) in zip((1, 2, 4, 8), zip(total, kernel)):
        configs[f"tcp{i}"] = {"total_ratio": t, "kernel_ratio": k, "wall_ratio": 1.0, "checkpoints": 10 // i,
                              "same_instructions": True, "same_output": True}
    return {"workload": label, "configs": configs}


def test_checkpoint_summary_checks_the_claims_and_writes_the_figures(tmp_path):
    from emu.reproduce import checkpoint

    files = [_ckpt_row("grep", [1.01, 1.01, 1.0, 1.0], [1.05, 1.04, 1.02, 1.01]),
             _ckpt_row("tar", [1.02, 1.01, 1.01, 1.0], [1.1, 1.08, 1.05, 1.03]),
             _ckpt_row("gzip", [1.03, 1.02, 1.02, 1.01], [1.19, 1.15, 1.1, 1.05])]
    tree = [_ckpt_row("grep -r", [1.5, 1.5, 1.5, 1.5], [2.0, 2.0, 2.0, 2.0])]
    said: list[str] = []
    table = checkpoint.summary(files, tree, files, said.append)
    checks = table["checks"]
    assert checks["one file: kernel overhead at CP 1 is gzip's > tar's > grep's, as in the paper"] is True
    assert checks["one file, gzip: total time overhead below 4 % at every tcp (worst 3.00 %)"] is True
    assert checks["tree, grep -r: total time overhead below 4 % at every tcp (worst 50.00 %)"] is False
    assert checks["tree, grep -r: kernel time grows as tcp shrinks (CP 1 >= CP 8)"] is True
    assert "paper" in said[0] and "DOES NOT HOLD: tree, grep -r: total" in "\n".join(said)
    assert table["kernel_overhead_pct"]["file"]["gzip"]["tcp1"] == 19.0
    checkpoint.figures(files, tmp_path / "f.png", "one file")
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoint_reproduction_runs_a_workload_at_the_scaled_tcps(base_image, tmp_path):
    """One real row: off, then tcp = V*i/20 for i = 1, 2, 4, 8; the program does the same work."""
    from emu.reproduce import checkpoint

    row = checkpoint.measure(base_image, "grep", "grep-file", True, tmp_path, lambda line: None)
    cs = row["configs"]
    assert list(cs) == ["off", "tcp1", "tcp2", "tcp4", "tcp8"]
    v = cs["off"]["virtual_ns"]
    assert all(abs(row["tcp_ns"][f"tcp{i}"] - v * i / 20) <= 0.5 for i in (1, 2, 4, 8))
    assert cs["off"]["checkpoints"] == 0 and all(cs[c]["checkpoints"] > 0 for c in cs if c != "off")
    assert all(cs[c]["same_instructions"] and cs[c]["same_output"] for c in cs)
    # checkpoints cost virtual time, more of it in the kernel's share
    assert all(1 < cs[c]["total_ratio"] < cs[c]["kernel_ratio"] for c in cs if c != "off")
