"""The cost of page placement itself (vmm/placement), reported, never asserted:

- the EPT dirty scan alone (native/eptscan.c) over 4 GiB of guest RAM (1 Mi frames) with 1 % of
  the pages dirty, median of 20;
- a `gzip -9` of the 2 MiB corpus at model level full on machines/hybrid-mram.toml with the mq
  policy: the placement's own host time (scans + policy + swaps, `placement.host_ns`) as a share
  of the run's wall time, measured in that one run.

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


def gzip_full_mq() -> dict[str, float]:
    from images.build import default_image
    from vmm.config import apply_overrides, load_machine
    from vmm.machine import Machine

    cfg = apply_overrides(load_machine(ROOT / "machines" / "hybrid-mram.toml"),
                          ["model_level=full", "placement.policy=mq"])
    with tempfile.TemporaryDirectory() as d:
        disk = Path(d) / "disk.img"
        shutil.copyfile(default_image(), disk)
        m = Machine(disk, cfg, console=Console(out_fd=None, err_fd=None, capture=True))
        t0 = time.perf_counter()
        m.run(["/bin/gzip", "-9", "-c", "/data/corpus.txt"])
        wall = time.perf_counter() - t0
        v = {k: x["value"] for k, x in m.stats()["stats"].items()}
    host = v["placement.host_ns"] / 1e9
    return {"wall_s": wall, "placement_host_s": host, "share_pct": 100 * host / wall,
            "scans": v["placement.scans"], "swaps": v["placement.swaps"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "placement.json"))
    args = ap.parse_args()
    res = {"scan_4gib_ms": scan_4gib_ms(), "gzip_full_mq": gzip_full_mq()}
    g = res["gzip_full_mq"]
    print(f"EPT dirty scan of 4 GiB of guest RAM (1 % dirty): {res['scan_4gib_ms']:.3f} ms (median of 20)")
    print(f"gzip -9, level full, mq: wall {g['wall_s']:.2f} s, placement {g['placement_host_s']:.3f} s "
          f"= {g['share_pct']:.2f} % ({g['scans']} scans, {g['swaps']} swaps)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
