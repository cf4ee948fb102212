"""The cost of page placement itself (vmm/placement), reported, never asserted:

- the EPT dirty scan alone (native/eptscan.c) over 4 GiB of guest RAM (1 Mi frames) with 1 % of
  the pages dirty, median of 20;
- a `gzip -9` of the 2 MiB corpus at model level full on the machine of `emu reproduce
  hybrid-mram` (64 MiB DRAM + 960 MiB MRAM, a hog holding DRAM so that pages do move) with the mq
  policy: the placement's own host time (scans + policy + swaps, `placement.host_ns`) as a share
  of the run's wall time, measured in that one run; beside it the same run with the `none`
  policy (no placement machinery at all), whose wall-time ratio also shows the indirect costs (TLB
  refills, translated code dropped after a swap), noisy on a shared machine.

    .venv/bin/python bench/bench_placement.py [--out bench/results/placement.json]
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hw.console import Console  # noqa: E402
from hw.ept import EPT, EPT_A, EPT_D  # noqa: E402
from emu.report import values_of  # noqa: E402
from hw.physmem import PhysicalMemory, RangeSpec  # noqa: E402


def scan_4gib_ms() -> float:
    ept = EPT(PhysicalMemory([RangeSpec("ram", "dram", 0, 4 << 30)]))
    rng = random.Random(1)
    times = []
    for _ in range(20):
        for g in rng.sample(range(ept.pages), ept.pages // 100):
            ept.bits[g] = EPT_A | EPT_D
        t0 = time.perf_counter()
        ept.scan_dirty(0, ept.pages)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def gzip_full(policy: str) -> dict[str, float]:
    from emu.reproduce.hybrid_mram import MACHINE, PROGRAM_START_NS, PROGRAMS, pools, program_argv
    from images.build import default_image
    from vmm.config import apply_overrides, load_machine
    from vmm.machine import Machine

    cfg = apply_overrides(load_machine(MACHINE), ["model_level=full", f"placement.policy={policy}",
                                                  f"placement.start={PROGRAM_START_NS}ns"])
    with tempfile.TemporaryDirectory() as d:
        disk = Path(d) / "disk.img"
        shutil.copyfile(default_image(recipe="hybrid"), disk)
        m = Machine(disk, cfg, console=Console(out_fd=None, err_fd=None, capture=True))
        t0 = time.perf_counter()
        r = m.run(program_argv(PROGRAMS["gzip"], pools(cfg)[0].size_bytes >> 20))
        wall = time.perf_counter() - t0
        assert r.exit_code == 0, r.exit_code
        v = values_of(m.stats())
    host = v.get("placement.host_ns", 0) / 1e9
    return {"wall_s": wall, "placement_host_s": host, "share_pct": 100 * host / wall,
            "scans": v.get("placement.scans", 0), "swaps": v.get("placement.swaps", 0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "placement.json"))
    args = ap.parse_args()
    res = {"scan_4gib_ms": scan_4gib_ms(), "gzip_full_none": gzip_full("none"), "gzip_full_mq": gzip_full("mq")}
    print(f"EPT dirty scan of 4 GiB of guest RAM (1 % dirty): {res['scan_4gib_ms']:.3f} ms (median of 20)")
    for policy in ("none", "mq"):
        g = res[f"gzip_full_{policy}"]
        print(f"gzip -9, level full, {policy:4}: wall {g['wall_s']:.2f} s, placement {g['placement_host_s']:.3f} s "
              f"= {g['share_pct']:.2f} % ({g['scans']} scans, {g['swaps']} swaps)")
    res["wall_ratio_mq_vs_none"] = res["gzip_full_mq"]["wall_s"] / res["gzip_full_none"]["wall_s"]
    print(f"wall time mq / none: {res['wall_ratio_mq_vs_none']:.3f} (one run each, side by side)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
