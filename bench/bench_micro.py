"""Micro-benchmarks of two hot parts, reported (never asserted): the cache model's cost per
access (cm_access from C: distinct-line hits, the MRU-line shortcut, misses that evict) and the
ext2 driver reading a 2 MiB file through a host block cache.

    .venv/bin/python bench/bench_micro.py [--out bench/results/micro.json]

Prints a table and writes JSON; medians of 5 runs.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from guestkernel.blockcache import FileBlockCache
from guestkernel.ext2 import Ext2
from hw.cachemodel import CacheModel

RUNS = 5


def cache_model_ns() -> dict[str, float]:
    m = CacheModel()
    m.add_range("dram0", "dram", 0, 256 << 20, 0)  # no buffers needed for dram
    out: dict[str, list[float]] = {"hit": [], "same_line": [], "miss": []}
    for _ in range(RUNS):
        m.reset()
        out["hit"].append(m.bench(2_000_000, 0, 64, 1 << 20))      # 16 Ki lines, all cached
        out["same_line"].append(m.bench(2_000_000, 0, 8, 64))      # the MRU-line shortcut
        m.reset()
        out["miss"].append(m.bench(1_000_000, 0, 64, 256 << 20))   # every access misses and evicts
    return {k: statistics.median(v) for k, v in out.items()}


def ext2_read_s() -> float:
    with tempfile.TemporaryDirectory() as d:
        stg = Path(d) / "stg"
        stg.mkdir()
        payload = random.Random(1).randbytes(2 << 20)
        (stg / "big").write_bytes(payload)
        img = Path(d) / "img"
        env = dict(os.environ, PATH=os.environ.get("PATH", "") + ":/usr/sbin:/sbin", E2FSPROGS_FAKE_TIME="1700000000")
        subprocess.run(["mke2fs", "-q", "-F", "-t", "ext2", "-b", "1024", "-d", str(stg), str(img), "8M"],
                       check=True, env=env, capture_output=True)
        times = []
        for _ in range(RUNS):
            cache = FileBlockCache(img)
            fs = Ext2(cache, lambda: 1700000100)
            ino = fs.lookup(2, b"big")
            t0 = time.perf_counter()
            data = fs.read(ino, 0, len(payload))
            times.append(time.perf_counter() - t0)
            assert data == payload
            cache.close()
        return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "micro.json"))
    args = ap.parse_args()
    result = {"cache_model_ns_per_access": cache_model_ns(), "ext2_read_2mib_s": ext2_read_s()}
    ns = result["cache_model_ns_per_access"]
    print(f"{'measure':<34}{'median':>12}")
    for k, v in ns.items():
        print(f"{'cm_access ' + k:<34}{v:>9.1f} ns")
    print(f"{'ext2 read of 2 MiB (1 KiB blocks)':<34}{result['ext2_read_2mib_s'] * 1e3:>9.1f} ms")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
