"""Micro-benchmarks of hot parts, reported (never asserted): the cache model's cost per access
(cm_access from C: distinct-line hits, the MRU-line shortcut, misses that evict), the ext2 driver
reading a 2 MiB file through a host block cache, and the wall time of one checkpoint (an empty
one: no page, block or descriptor changed since the previous; and every checkpoint of a run).

    .venv/bin/python bench/bench_micro.py [--out bench/results/micro.json] [--only checkpoint]

Prints a table and writes JSON; medians of 5 runs (the checkpoint: of 300 checkpoints in a row).
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


CKPT_WORKLOAD = "tar-cf"
CKPT_AT = 300      # the syscall before which the empty checkpoints are taken
CKPT_REPS = 300    # empty checkpoints in a row


def checkpoint_us() -> dict[str, float]:
    """Wall time of one checkpoint at level persist, checkpointing at every syscall (tcp=0), of
    `tar cf` of the tree: at its CKPT_AT-th syscall, CKPT_REPS checkpoints in a row after one
    that takes what changed (so each finds no dirty page, block or descriptor: the cost of a
    checkpoint itself), and every checkpoint the run takes by the rules. Medians, in us."""
    import shutil

    from emu.workloads import workload
    from guestkernel.checkpoint.checkpointer import Checkpointer
    from hw.console import Console
    from images.build import default_image
    from vmm.config import apply_overrides, default_machine
    from vmm.machine import Machine

    empty: list[int] = []
    every: list[int] = []
    copied: list[int] = []
    orig_at, orig_ck = Checkpointer.at_syscall, Checkpointer.checkpoint
    seen = [0]

    def at_syscall(self, p, nr, args):  # type: ignore[no-untyped-def]
        seen[0] += 1
        if seen[0] == CKPT_AT:
            orig_ck(self, nr)
            before = self.stats.pages_copied + self.stats.blocks_logged
            for _ in range(CKPT_REPS):
                t0 = time.perf_counter_ns()
                orig_ck(self, nr)
                empty.append(time.perf_counter_ns() - t0)
            copied.append(self.stats.pages_copied + self.stats.blocks_logged - before)
        return orig_at(self, p, nr, args)

    def checkpoint(self, *a, **kw):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter_ns()
        try:
            return orig_ck(self, *a, **kw)
        finally:
            every.append(time.perf_counter_ns() - t0)

    cfg = apply_overrides(default_machine(), ["model_level=persist", "checkpoint.enabled=true", "checkpoint.tcp=0"])
    Checkpointer.at_syscall, Checkpointer.checkpoint = at_syscall, checkpoint  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as d:
            shutil.copyfile(default_image(), Path(d) / "disk.img")
            m = Machine(Path(d) / "disk.img", cfg, console=Console(None, None, capture=True), media_dir=Path(d))
            r = m.run(workload(CKPT_WORKLOAD))
    finally:
        Checkpointer.at_syscall, Checkpointer.checkpoint = orig_at, orig_ck  # type: ignore[method-assign]
    assert r.exit_code == 0 and empty and copied == [0], (r.exit_code, copied)
    return {"empty_median_us": statistics.median(empty) / 1e3, "empty_min_us": min(empty) / 1e3,
            "run_median_us": statistics.median(every) / 1e3, "run_checkpoints": len(every)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "micro.json"))
    ap.add_argument("--only", choices=["checkpoint"], help="only this measurement")
    args = ap.parse_args()
    result: dict = {}
    if args.only is None:
        result = {"cache_model_ns_per_access": cache_model_ns(), "ext2_read_2mib_s": ext2_read_s()}
    result["checkpoint_us"] = checkpoint_us()
    print(f"{'measure':<34}{'median':>12}")
    for k, v in result.get("cache_model_ns_per_access", {}).items():
        print(f"{'cm_access ' + k:<34}{v:>9.1f} ns")
    if "ext2_read_2mib_s" in result:
        print(f"{'ext2 read of 2 MiB (1 KiB blocks)':<34}{result['ext2_read_2mib_s'] * 1e3:>9.1f} ms")
    ck = result["checkpoint_us"]
    print(f"{'checkpoint, empty':<34}{ck['empty_median_us']:>9.1f} us")
    print(f"{'checkpoint, tar cf at tcp=0':<34}{ck['run_median_us']:>9.1f} us  ({ck['run_checkpoints']} checkpoints)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
