"""The hybrid DRAM/STT-MRAM paper (../shared/seeds/003_*): page migration by the hypervisor so
that write-hot guest pages live in a small DRAM pool.

Two experiments, each workload run with every policy (none, lru, mq, oracle; the oracle replays
the trace recorded by the `none` run) at model level full, so every write reaches the channel
counters:

- `stress`, the paper's Fig. 5/6: Debian's real stress rewrites a 32 MiB region while another
  stress process holds 56 MiB it touched once (DRAM holds cold data, as on a machine that has
  been running); guest RAM 1 GiB = 64 MiB DRAM + 960 MiB MRAM (machines/hybrid-mram-1g.toml);
  migration is switched on a quarter into the hot phase. The paper: nearly all writes reach DRAM
  once the hot pages have moved.
- real programs standing in for SPEC CPU2006 (gzip, bzip2, xz, sort over the 2 MiB corpus) on
  the paper's 1:39 ratio scaled to 4 MiB DRAM + 156 MiB MRAM (machines/hybrid-mram.toml). The
  paper: MRAM writes over SPEC fell from 1,789,717 MB to 293,381 MB (-83.6 %).

Time is scaled 100x (scan every 10 ms of virtual time instead of 1 s, migrate every 50 ms instead
of 5 s; up to 1000 pairs per migration as in the paper). Write bytes are everything that reached
a channel: demand traffic (cache write-backs, counted per channel) plus the migration copies.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from hw.console import Console
from hw.stats import Epochs
from vmm.config import MachineConfig, apply_overrides, load_machine
from vmm.machine import Machine
from vmm.stats import registry_for

ROOT = Path(__file__).resolve().parents[2]
MACHINES = ROOT / "machines"
POLICIES = ("none", "lru", "mq", "oracle")
HOG_MIB, HOT_MIB = 56, 32
PAPER = {"spec_mram_write_mb": {"none": 1_789_717, "mq": 293_381}, "spec_mram_change_pct": -83.6,
         "stress": "nearly all writes in DRAM after the migration"}
PROGRAMS = {
    "gzip": ["/bin/gzip", "-9", "-c", "/data/corpus.txt"],
    "bzip2": ["/bin/bzip2", "-9", "-c", "/data/corpus.txt"],
    "xz": ["/bin/xz", "-6", "-c", "/data/corpus.txt"],
    "sort": ["/bin/sort", "/data/corpus.txt"],
}


def stress_argv(hot_s: int) -> list[str]:
    """The hog touches its 56 MiB and sleeps; a second later the hot stress rewrites 32 MiB."""
    return ["/bin/sh", "-c",
            f"stress --vm 1 --vm-bytes {HOG_MIB}M --vm-hang 0 --timeout {hot_s + 2}s >/dev/null & "
            f"sleep 1; stress --vm 1 --vm-bytes {HOT_MIB}M --vm-keep --timeout {hot_s}s; wait; echo done"]


def channels(cfg: MachineConfig) -> tuple[int, int]:
    """(DRAM channel, MRAM channel) of a two-pool hybrid machine."""
    kinds = {r.kind: r.channel for r in cfg.pools if r.name in cfg.ram_pools}
    return kinds["dram"], kinds["scm"]


def run_one(image: Path, cfg: MachineConfig, argv: list[str], tmp: Path) -> dict[str, Any]:
    """One run: the counters at the end and a row per scan (virtual time, channel writes, swaps)."""
    disk = tmp / "disk.img"
    shutil.copyfile(image, disk)
    console = Console(out_fd=None, err_fd=None, capture=True)
    m = Machine(disk, cfg, console=console)
    dram_ch, mram_ch = channels(cfg)
    reg = registry_for(m)
    names = ["sim.virtual_ns", "placement.swaps"] + [f"channel{c}.write_bytes.{w}" for c in (dram_ch, mram_ch)
                                                      for w in ("user", "kernel")]
    series = Epochs(reg, names)
    m.epochs.add(series.sample, every_ns=cfg.placement.scan_interval_ns)  # after the placement's scan
    t0 = time.perf_counter()
    r = m.run(argv)
    wall = time.perf_counter() - t0
    v = reg.snapshot()
    if r.exit_code != 0:
        raise RuntimeError(f"{argv} exited {r.exit_code}: {bytes(console.captured[2])[-300:]!r}")

    def chan(c: int) -> int:
        return int(v.get(f"channel{c}.write_bytes.user", 0) + v.get(f"channel{c}.write_bytes.kernel", 0))

    mig_dram = int(v.get("placement.migration_write_bytes.dram", 0))
    mig_mram = int(v.get("placement.migration_write_bytes.slow", 0))
    rows = [(row[1], row[2], row[3] + row[4], row[5] + row[6]) for row in series.rows]
    return {
        "dram_write_bytes": chan(dram_ch) + mig_dram, "mram_write_bytes": chan(mram_ch) + mig_mram,
        "demand_dram_write_bytes": chan(dram_ch), "demand_mram_write_bytes": chan(mram_ch),
        "migration_bytes": mig_dram + mig_mram, "swaps": int(v.get("placement.swaps", 0)),
        "swaps_requested": int(v.get("placement.swaps_requested", 0)),
        "pingpong": int(v.get("placement.pingpong", 0)), "pause_ns": int(v.get("placement.pause_ns", 0)),
        "placement_host_s": v.get("placement.host_ns", 0) / 1e9, "instructions": r.instructions,
        "virtual_ns": r.virtual_ns, "wall_s": round(wall, 3),
        "stdout_bytes": len(console.captured[1]), "_stdout": bytes(console.captured[1]),
        "_series": rows,  # (virtual ns, swaps, DRAM write bytes, MRAM write bytes), cumulative
    }


def policy_runs(image: Path, machine: Path, argv: list[str], say: Callable[[str], None], label: str,
                extra: list[str] = ()) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="emu-hybrid-") as tmp:
        trace = Path(tmp) / "dirty.trace"
        for policy in POLICIES:
            sets = ["model_level=full", f"placement.policy={policy}", *extra]
            sets.append(f"placement.record={trace}" if policy == "none" else
                        f"placement.trace={trace}" if policy == "oracle" else "placement.record=")
            cfg = apply_overrides(load_machine(machine), sets)
            d = Path(tmp) / policy
            d.mkdir()
            res = run_one(image, cfg, argv, d)
            say(f"  {label:6} {policy:6} MRAM {res['mram_write_bytes'] / 1e6:9.2f} MB  DRAM "
                f"{res['dram_write_bytes'] / 1e6:9.2f} MB  swaps {res['swaps']:6}  {res['wall_s']:.1f} s")
            out[policy] = res
    same = {p: r["_stdout"] == out["none"]["_stdout"] for p, r in out.items()}
    if not all(same.values()):
        raise RuntimeError(f"{label}: output differs between policies: {same}")
    return out


def last_quarter_dram_share(rows: list[tuple[int, int, int, int]], t_from: int, t_to: int) -> float:
    """Share of the demand writes between two virtual times that reached DRAM."""
    def at(t: int) -> tuple[int, int]:
        best = (0, 0)
        for ns, _s, d, m in rows:
            if ns <= t:
                best = (d, m)
        return best

    d0, m0 = at(t_from)
    d1, m1 = at(t_to)
    total = (d1 - d0) + (m1 - m0)
    return (d1 - d0) / total if total else 0.0


def run(quick: bool, out: Path, say: Callable[[str], None]) -> dict[str, Any]:
    from images.build import default_image

    image = default_image(recipe="hybrid")
    hot_s = 1 if quick else 4
    say(f"hybrid DRAM/STT-MRAM page migration (time scaled 100x: scan 10 ms, migrate 50 ms; {'quick' if quick else 'full'} run)")
    # stress: migration switched on a quarter into the hot phase (which starts after 1 s)
    hot_start_ns = 1_000_000_000
    start_ns = hot_start_ns + hot_s * 1_000_000_000 // 4
    say(f"stress: {HOT_MIB} MiB hot for {hot_s} s beside a {HOG_MIB} MiB cold hog, on 64 MiB DRAM + 960 MiB MRAM")
    stress = policy_runs(image, MACHINES / "hybrid-mram-1g.toml", stress_argv(hot_s), say, "stress",
                         [f"placement.start={start_ns}ns"])
    end_ns = hot_start_ns + hot_s * 1_000_000_000
    q_from = end_ns - (end_ns - start_ns) // 4
    for p, r in stress.items():
        r["dram_share_last_quarter"] = round(last_quarter_dram_share(r["_series"], q_from, end_ns), 4)
    programs = ["gzip"] if quick else list(PROGRAMS)
    say(f"programs ({', '.join(programs)}) on 4 MiB DRAM + 156 MiB MRAM")
    results: dict[str, Any] = {"stress": stress}
    for name in programs:
        results[name] = policy_runs(image, MACHINES / "hybrid-mram.toml", PROGRAMS[name], say, name)
    figures(results, start_ns, out)
    table = summary(results, programs, say)
    for w in results.values():
        for r in w.values():
            r.pop("_stdout", None)
            r["series"] = r.pop("_series")
    return {"experiment": "hybrid-mram", "quick": quick, "paper": PAPER, "summary": table,
            "scaling": "time 100x (scan 10 ms, migrate 50 ms), stress on 64 MiB DRAM + 960 MiB MRAM, "
                       "programs on 4 MiB DRAM + 156 MiB MRAM (the paper: 100 MB + 3.9 GB)",
            "workloads": results}


def summary(results: dict[str, Any], programs: list[str], say: Callable[[str], None]) -> dict[str, Any]:
    from rich.console import Console as RichConsole
    from rich.table import Table

    t = Table(title="MRAM write bytes (demand + migration copies), MB")
    t.add_column("workload")
    for p in POLICIES:
        t.add_column(p, justify="right")
    t.add_column("mq vs none", justify="right")
    t.add_column("paper (SPEC, mq vs none)", justify="right")
    tot = {p: sum(results[w][p]["mram_write_bytes"] for w in programs) for p in POLICIES}
    for w in ["stress", *programs]:
        r = results[w]
        change = 100 * (r["mq"]["mram_write_bytes"] / r["none"]["mram_write_bytes"] - 1) if r["none"]["mram_write_bytes"] else 0.0
        t.add_row(w, *(f"{r[p]['mram_write_bytes'] / 1e6:.2f}" for p in POLICIES), f"{change:+.1f} %", "")
    prog_change = 100 * (tot["mq"] / tot["none"] - 1) if tot["none"] else 0.0
    t.add_row("programs", *(f"{tot[p] / 1e6:.2f}" for p in POLICIES), f"{prog_change:+.1f} %",
              f"1,789,717 -> 293,381 ({PAPER['spec_mram_change_pct']:+.1f} %)")
    share = {p: results["stress"][p]["dram_share_last_quarter"] for p in POLICIES}
    t2 = Table(title="stress: share of writes reaching DRAM in the last quarter of the hot phase")
    for p in POLICIES:
        t2.add_column(p, justify="right")
    t2.add_column("paper")
    t2.add_row(*(f"{100 * share[p]:.1f} %" for p in POLICIES), "nearly all (mq)")
    rc = RichConsole(width=140)
    with rc.capture() as cap:
        rc.print(t)
        rc.print(t2)
    say(cap.get().rstrip())
    mq_beats_lru = tot["mq"] < tot["lru"]
    say(f"MQ {'beats' if mq_beats_lru else 'does not beat'} LRU on the programs here "
        f"(MRAM {tot['mq'] / 1e6:.2f} MB vs {tot['lru'] / 1e6:.2f} MB); the paper claims it does.")
    return {"programs_mram_write_bytes": tot, "programs_mq_change_pct": round(prog_change, 2),
            "stress_dram_share_last_quarter": share, "mq_beats_lru": mq_beats_lru}


def figures(results: dict[str, Any], start_ns: int, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Fig. 5/6: write rates per scan epoch under mq (none dashed), swaps per epoch
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for policy, style in (("mq", "-"), ("none", "--")):
        rows = results["stress"][policy]["_series"]
        ts, dram, mram = [], [], []
        for (t0, _s0, d0, m0), (t1, _s1, d1, m1) in zip(rows, rows[1:]):
            dt = (t1 - t0) / 1e9 or 1
            ts.append(t1 / 1e9)
            dram.append((d1 - d0) / 1e6 / dt)
            mram.append((m1 - m0) / 1e6 / dt)
        ax.plot(ts, dram, style, color="tab:blue", label=f"DRAM ({policy})")
        ax.plot(ts, mram, style, color="tab:red", label=f"MRAM ({policy})")
        if policy == "mq":
            ax2.bar(ts, [b[1] - a[1] for a, b in zip(rows, rows[1:])], width=0.008, color="tab:green")
    for a in (ax, ax2):
        a.axvline(start_ns / 1e9, color="gray", linestyle=":")
    ax.set_ylabel("demand writes (MB/s)")
    ax.legend(fontsize=8)
    ax.set_title("stress, 32 MiB hot: writes per channel (migration on at the dotted line)")
    ax2.set_ylabel("pages swapped (mq)")
    ax2.set_xlabel("virtual time (s)")
    fig.tight_layout()
    fig.savefig(out / "stress_timeseries.png", dpi=120)
    plt.close(fig)
    # bars: MRAM write bytes per workload and policy, relative to none
    names = list(results)
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(POLICIES)
    for i, p in enumerate(POLICIES):
        vals = [results[w][p]["mram_write_bytes"] / max(1, results[w]["none"]["mram_write_bytes"]) for w in names]
        ax.bar([x + i * width for x in range(len(names))], vals, width, label=p)
    ax.set_xticks([x + width * (len(POLICIES) - 1) / 2 for x in range(len(names))], names)
    ax.set_ylabel("MRAM write bytes / none")
    ax.set_title("MRAM writes (demand + migration copies) by policy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "mram_writes.png", dpi=120)
    plt.close(fig)
