"""The hybrid DRAM/STT-MRAM paper (../shared/seeds/003_*): page migration by the hypervisor so
that write-hot guest pages live in a small DRAM pool.

Two experiments on one machine, guest RAM 1 GiB = 64 MiB DRAM + 960 MiB MRAM, MRAM first in
guest-physical order (machines/hybrid-mram-1g.toml), each workload run with every policy (none,
lru, mq, oracle; the oracle replays the trace recorded by the `none` run) at model level full, so
every write reaches the channel counters:

- `stress`, the paper's Fig. 5/6: Debian's real stress rewrites a 32 MiB region while another
  stress process holds as much as DRAM, touched once (DRAM holds cold data, as on a machine that
  has been running); migration is switched on a quarter into the hot phase. The paper: nearly all
  writes reach DRAM once the hot pages have moved.
- real programs standing in for SPEC CPU2006 (gzip, bzip2, sort over the 2 MiB corpus, xz over
  its first MiB; the quick run: bzip2 alone), each beside a hog that holds all of DRAM with data
  it wrote once, so the program starts in MRAM as on a machine whose DRAM is in use; counted
  from the program's start. The paper: MRAM writes over SPEC fell from 1,789,717 MB to 293,381 MB
  (-83.6 %).

Time is scaled 100x (scan every 10 ms of virtual time instead of 1 s, migrate every 50 ms instead
of 5 s; up to 1000 pairs per migration as in the paper). Write bytes are everything that reached
a channel: demand traffic (cache write-backs, counted per channel) plus the migration copies.
The energy is vmm/energy.py's model with the machine file's parameters (stated there).
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from hw.console import Console
from hw.stats import Epochs
from vmm.config import MachineConfig, RangeConfig, apply_overrides, load_machine
from vmm.energy import energy_uj
from vmm.machine import Machine
from vmm.stats import registry_for

ROOT = Path(__file__).resolve().parents[2]
MACHINE = ROOT / "machines" / "hybrid-mram-1g.toml"
POLICIES = ("none", "lru", "mq", "oracle")
HOT_MIB = 32
PROGRAM_START_NS = 1_000_000_000  # the programs start after `sleep 1`, once the hog holds DRAM
PAPER = {"spec_mram_write_mb": {"none": 1_789_717, "mq": 293_381}, "spec_mram_change_pct": -83.6,
         "stress": "nearly all writes in DRAM after the migration"}
PROGRAMS = {
    "gzip": "gzip -9 -c /data/corpus.txt",
    "bzip2": "bzip2 -9 -c /data/corpus.txt",
    "xz": "head -c 1048576 /data/corpus.txt | xz -6 -c",
    "sort": "sort /data/corpus.txt",
}
QUICK_PROGRAMS = {"bzip2": PROGRAMS["bzip2"]}


def stress_argv(hot_s: int, hog_mib: int) -> list[str]:
    """The hog touches as much memory as DRAM holds and sleeps; a second later the hot stress
    rewrites 32 MiB."""
    return ["/bin/sh", "-c",
            f"stress --vm 1 --vm-bytes {hog_mib}M --vm-hang 0 --timeout {hot_s + 2}s >/dev/null & "
            f"sleep 1; stress --vm 1 --vm-bytes {HOT_MIB}M --vm-keep --timeout {hot_s}s; wait; echo done"]


def program_argv(cmd: str, hog_mib: int) -> list[str]:
    """A machine that has been running: a hog the size of DRAM holds it with data it wrote once
    (the kernel hands out the top of RAM, DRAM, first), then the program runs beside it."""
    return ["/bin/sh", "-c",
            f"stress --vm 1 --vm-bytes {hog_mib}M --vm-hang 0 >/dev/null & hog=$!; sleep 1; "
            f"{cmd}; st=$?; kill $hog; wait; exit $st"]


def pools(cfg: MachineConfig) -> tuple[RangeConfig, RangeConfig]:
    """(DRAM pool, MRAM pool) of a two-pool hybrid machine."""
    ram = [cfg.pool(g.pool) for g in cfg.guest_ranges("ram")]
    return next(p for p in ram if p.kind == "dram"), next(p for p in ram if p.kind == "scm")


def run_one(image: Path, cfg: MachineConfig, argv: list[str], tmp: Path, from_ns: int) -> dict[str, Any]:
    """One run; the traffic counted from virtual time `from_ns` to the end, and a row per scan."""
    disk = tmp / "disk.img"
    shutil.copyfile(image, disk)
    console = Console(out_fd=None, err_fd=None, capture=True)
    m = Machine(disk, cfg, console=console)
    dram, mram = pools(cfg)
    reg = registry_for(m)
    names = ["sim.virtual_ns", "placement.swaps"]
    for p, side in ((dram, "dram"), (mram, "slow")):
        names += [f"channel{p.channel}.{f}_bytes.{w}" for f in ("write", "read") for w in ("user", "kernel")]
        names.append(f"placement.migration_write_bytes.{side}")
    series = Epochs(reg, names)
    m.epochs.add(series.sample, every_ns=cfg.placement.scan_interval_ns)  # after the placement's scan
    t0 = time.perf_counter()
    r = m.run(argv)
    wall = time.perf_counter() - t0
    if r.exit_code != 0:
        raise RuntimeError(f"{argv} exited {r.exit_code}: {bytes(console.captured[2])[-300:]!r}")
    series.sample(r.instructions)
    # per row: virtual ns, swaps, then per pool: demand writes, demand reads, copies (each way)
    rows = [(row[1], row[2], row[3] + row[4], row[5] + row[6], row[7], row[8] + row[9], row[10] + row[11], row[12])
            for row in series.rows]
    base = next((row for row in reversed(rows) if row[0] <= from_ns), (0,) * 8)
    end = rows[-1]
    d = [b - a for a, b in zip(base, end)]
    window_ns = d[0]
    v = reg.snapshot()
    energy = {}
    for pool, (w, rd, cp) in ((dram, d[2:5]), (mram, d[5:8])):
        energy[pool.name] = round(sum(energy_uj(rd + cp, w + cp, window_ns, pool).values()), 3)
    energy["total"] = round(energy[dram.name] + energy[mram.name], 3)
    return {
        "dram_write_bytes": d[2] + d[4], "mram_write_bytes": d[5] + d[7],
        "demand_dram_write_bytes": d[2], "demand_mram_write_bytes": d[5],
        "migration_bytes": d[4] + d[7], "swaps": d[1],
        "swaps_requested": int(v.get("placement.swaps_requested", 0)),
        "pingpong": int(v.get("placement.pingpong", 0)), "pause_ns": int(v.get("placement.pause_ns", 0)),
        "placement_host_s": v.get("placement.host_ns", 0) / 1e9, "energy_uj": energy,
        "instructions": r.instructions, "virtual_ns": r.virtual_ns, "measured_from_ns": from_ns,
        "wall_s": round(wall, 3), "stdout_bytes": len(console.captured[1]), "_stdout": bytes(console.captured[1]),
        # per scan (not the final row): (virtual ns, swaps, DRAM, MRAM demand writes), cumulative
        "_series": [row[:3] + row[5:6] for row in rows[:-1]],
    }


def policy_runs(image: Path, argv: list[str], say: Callable[[str], None], label: str, from_ns: int,
                extra: list[str] = ()) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="emu-hybrid-") as tmp:
        trace = Path(tmp) / "dirty.trace"
        for policy in POLICIES:
            sets = ["model_level=full", f"placement.policy={policy}", *extra]
            sets.append(f"placement.record={trace}" if policy == "none" else
                        f"placement.trace={trace}" if policy == "oracle" else "placement.record=")
            cfg = apply_overrides(load_machine(MACHINE), sets)
            d = Path(tmp) / policy
            d.mkdir()
            res = run_one(image, cfg, argv, d, from_ns)
            say(f"  {label:6} {policy:6} MRAM {res['mram_write_bytes'] / 1e6:9.2f} MB  DRAM "
                f"{res['dram_write_bytes'] / 1e6:9.2f} MB  swaps {res['swaps']:6}  "
                f"energy {res['energy_uj']['total'] / 1e3:8.2f} mJ  {res['wall_s']:.1f} s")
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
    cfg = load_machine(MACHINE)
    dram, mram = pools(cfg)
    sizes = f"{dram.size_bytes >> 20} MiB DRAM + {mram.size_bytes >> 20} MiB MRAM"
    hot_s = 1 if quick else 4
    hog_mib = dram.size_bytes >> 20
    say(f"hybrid DRAM/STT-MRAM page migration on {sizes}, model level full "
        f"(time scaled 100x: scan 10 ms, migrate 50 ms; {'quick' if quick else 'full'} run)")
    # stress: migration switched on a quarter into the hot phase (which starts after 1 s)
    hot_start_ns = 1_000_000_000
    start_ns = hot_start_ns + hot_s * 1_000_000_000 // 4
    say(f"stress: {HOT_MIB} MiB hot for {hot_s} s beside a {hog_mib} MiB cold hog; migration from {start_ns / 1e9:g} s")
    stress = policy_runs(image, stress_argv(hot_s, hog_mib), say, "stress", 0, [f"placement.start={start_ns}ns"])
    end_ns = hot_start_ns + hot_s * 1_000_000_000
    q_from = end_ns - (end_ns - start_ns) // 4
    for r in stress.values():
        r["dram_share_last_quarter"] = round(last_quarter_dram_share(r["_series"], q_from, end_ns), 4)
    programs = QUICK_PROGRAMS if quick else PROGRAMS
    say(f"programs ({'; '.join(programs.values())}) beside a {hog_mib} MiB hog holding DRAM; "
        f"counted from {PROGRAM_START_NS / 1e9:g} s, when they start and migration is switched on")
    results: dict[str, Any] = {"stress": stress}
    for name, cmd in programs.items():
        results[name] = policy_runs(image, program_argv(cmd, hog_mib), say, name, PROGRAM_START_NS,
                                    [f"placement.start={PROGRAM_START_NS}ns"])
    figures(results, start_ns, out)
    table = summary(results, list(programs), say)
    for w in results.values():
        for r in w.values():
            r.pop("_stdout", None)
            r["series"] = r.pop("_series")
    return {"experiment": "hybrid-mram", "quick": quick, "paper": PAPER, "summary": table,
            "machine": MACHINE.name, "programs": programs,
            "scaling": f"guest RAM {sizes} (the paper: 100 MB DRAM + 3.9 GB MRAM); time 100x "
                       "(scan every 10 ms, migrate every 50 ms of virtual time; the paper 1 s and 5 s), "
                       "up to 1000 pairs per migration as in the paper; the virtual CPU at 250 MHz",
            "energy_model": {p.name: {"read_pj_per_bit": p.read_pj_per_bit, "write_pj_per_bit": p.write_pj_per_bit,
                                      "static_mw_per_gib": p.static_mw_per_gib} for p in (dram, mram)},
            "workloads": results}


def _change(new: float, old: float) -> float:
    return 100 * (new / old - 1) if old else 0.0


def summary(results: dict[str, Any], programs: list[str], say: Callable[[str], None]) -> dict[str, Any]:
    from rich.console import Console as RichConsole
    from rich.table import Table

    t = Table(title="MRAM write bytes (demand + migration copies), MB")
    t.add_column("workload")
    for p in POLICIES:
        t.add_column(p, justify="right")
    t.add_column("mq vs none", justify="right")
    t.add_column("energy mq vs none", justify="right")
    t.add_column("paper (SPEC, mq vs none)", justify="right")
    tot = {p: sum(results[w][p]["mram_write_bytes"] for w in programs) for p in POLICIES}
    etot = {p: sum(results[w][p]["energy_uj"]["total"] for w in programs) for p in POLICIES}
    for w in ["stress", *programs]:
        r = results[w]
        t.add_row(w, *(f"{r[p]['mram_write_bytes'] / 1e6:.2f}" for p in POLICIES),
                  f"{_change(r['mq']['mram_write_bytes'], r['none']['mram_write_bytes']):+.1f} %",
                  f"{_change(r['mq']['energy_uj']['total'], r['none']['energy_uj']['total']):+.1f} %", "")
    prog_change = _change(tot["mq"], tot["none"])
    t.add_row("programs", *(f"{tot[p] / 1e6:.2f}" for p in POLICIES), f"{prog_change:+.1f} %",
              f"{_change(etot['mq'], etot['none']):+.1f} %",
              f"1,789,717 -> 293,381 ({PAPER['spec_mram_change_pct']:+.1f} %)")
    share = {p: results["stress"][p]["dram_share_last_quarter"] for p in POLICIES}
    t2 = Table(title="stress: share of the writes reaching DRAM in the last quarter of the hot phase")
    for p in POLICIES:
        t2.add_column(p, justify="right")
    t2.add_column("paper")
    t2.add_row(*(f"{100 * share[p]:.1f} %" for p in POLICIES), "nearly all (mq)")
    rc = RichConsole(width=160)
    with rc.capture() as cap:
        rc.print(t)
        rc.print(t2)
    say(cap.get().rstrip())
    mq_beats_lru = tot["mq"] < tot["lru"]
    say(f"MQ {'beats' if mq_beats_lru else 'does not beat'} LRU on the programs here "
        f"(MRAM {tot['mq'] / 1e6:.2f} MB vs {tot['lru'] / 1e6:.2f} MB); the paper claims it does.")
    checks = {
        "stress: mq puts >= 90 % of the last quarter's writes in DRAM": share["mq"] >= 0.9,
        "stress: none puts < 10 % of them in DRAM": share["none"] < 0.1,
        "programs: mq cuts MRAM write bytes by >= 50 % against none": prog_change <= -50,
    }
    for what, ok in checks.items():
        say(f"  {'holds' if ok else 'DOES NOT HOLD'}: {what}")
    return {"programs_mram_write_bytes": tot, "programs_mq_change_pct": round(prog_change, 2),
            "programs_energy_uj": etot, "stress_dram_share_last_quarter": share,
            "mq_beats_lru": mq_beats_lru, "checks": checks}


def figures(results: dict[str, Any], start_ns: int, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Fig. 5/6: write rates per scan epoch with none and with mq, and mq's swaps per migration
    fig, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    for ax, policy in zip(axes, ("none", "mq")):
        rows = results["stress"][policy]["_series"]
        ts, dram, mram = [], [], []
        for (t0, _s0, d0, m0), (t1, _s1, d1, m1) in zip(rows, rows[1:]):
            dt = (t1 - t0) / 1e9 or 1
            ts.append(t1 / 1e9)
            dram.append((d1 - d0) / 1e6 / dt)
            mram.append((m1 - m0) / 1e6 / dt)
        ax.plot(ts, dram, color="tab:blue", drawstyle="steps-pre", label="DRAM")
        ax.plot(ts, mram, color="tab:red", drawstyle="steps-pre", label="MRAM")
        ax.set_ylabel("demand writes (MB/s)")
        ax.set_title(f"stress, {HOT_MIB} MiB hot, policy {policy}" + (": migration on at the dotted line" if policy == "mq" else ""))
        if policy == "mq":
            axes[2].bar(ts, [b[1] - a[1] for a, b in zip(rows, rows[1:])], width=0.008, color="tab:green")
    axes[0].legend(fontsize=8)
    for a in axes:
        a.axvline(start_ns / 1e9, color="gray", linestyle=":")
    axes[2].set_ylabel("pages swapped (mq)")
    axes[2].set_xlabel("virtual time (s)")
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
