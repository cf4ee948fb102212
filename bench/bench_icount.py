"""Instruction counting in Unicorn's translated code vs the block hook, side by side.

    .venv/bin/python bench/bench_icount.py [--reps N] [--only TEXT] [--out PATH]

Runs the foundation workloads at level fast through bench/emu_runner.py (one child process per
run: Machine construction + boot + run + shutdown timed) in three set-ups, interleaved with a
rotating order:

  stock    the venv's unicorn wheel, instructions counted by emu's C block hook (EMU_UNICORN=stock)
  hook     the patched libunicorn (hw/native/ucpatch.py) with the block hook (EMU_UNICORN=hook):
           what building Unicorn ourselves (x86 only, this compiler) changes by itself
  patched  the patched libunicorn counting in the translated code (the default when it is built)

Prints median and min wall per set-up, the ratio to stock, and whether the instruction counts
and the output are identical in every run (they must be). JSON to bench/results/icount.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from bench_foundation import WORKLOADS  # noqa: E402
from hw.native import ucpatch  # noqa: E402
from images.build import default_image  # noqa: E402

MODES = ("stock", "hook", "patched")


def run_one(image: str, mode: str, argv: list[str], lib: str | None) -> dict:
    env = dict(os.environ, EMU_UNICORN=mode, PYTHONPATH=str(ROOT))  # this tree's emu (not the venv's install)
    env.pop("LIBUNICORN_PATH", None)
    if mode != "stock" and lib:
        env["LIBUNICORN_PATH"] = lib
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, str(BENCH / "emu_runner.py"), image, "--", *argv], env=env,
                       capture_output=True, text=True, cwd=ROOT)
    total = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{mode} {argv}: exit {p.returncode}: {p.stderr[-2000:]}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    return {"wall_s": r["wall_s"], "process_s": total, "instructions": r["instructions"],
            "stdout_sha256": r["stdout_sha256"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--only", action="append", default=[], help="workloads whose name contains TEXT")
    ap.add_argument("--lib", help="directory of the patched libunicorn.so.2 (default: the set-up's build)")
    ap.add_argument("--out", default=str(BENCH / "results" / "icount.json"))
    args = ap.parse_args()
    lib = args.lib or str(ucpatch.build_dir())
    if not (Path(lib) / ucpatch.LIBRARY).is_file():
        print(f"no patched libunicorn in {lib}: run scripts/setup.sh (or ucpatch.main(['build']))", file=sys.stderr)
        return 1
    image = str(default_image())
    workloads = [w for w in WORKLOADS if not args.only or any(o in w[0] for o in args.only)]
    samples: dict[str, dict[str, list[dict]]] = {name: {m: [] for m in MODES} for name, _ in workloads}
    for rep in range(args.reps):
        for wi, (name, argv) in enumerate(workloads):
            for k in range(len(MODES)):
                mode = MODES[(rep + wi + k) % len(MODES)]
                samples[name][mode].append(run_one(image, mode, argv, lib))
            print(f"[{time.strftime('%H:%M:%S')}] rep {rep + 1}/{args.reps} {name}", file=sys.stderr, flush=True)

    rows = []
    print(f"\n{'workload':<20} {'set-up':<8} {'median s':>9} {'min s':>7} {'/stock':>7} {'process s':>10} "
          f"{'instructions':>14} {'same count+output':>18}")
    for name, _ in workloads:
        ref = samples[name]["stock"][0]
        base = statistics.median(s["wall_s"] for s in samples[name]["stock"])
        for mode in MODES:
            ss = samples[name][mode]
            med = statistics.median(s["wall_s"] for s in ss)
            same = all(s["instructions"] == ref["instructions"] and s["stdout_sha256"] == ref["stdout_sha256"] for s in ss)
            row = {"workload": name, "mode": mode, "median_wall_s": med, "min_wall_s": min(s["wall_s"] for s in ss),
                   "ratio_to_stock": med / base, "median_process_s": statistics.median(s["process_s"] for s in ss),
                   "instructions": ss[0]["instructions"], "identical": same, "samples": ss}
            rows.append(row)
            print(f"{name:<20} {mode:<8} {med:9.3f} {row['min_wall_s']:7.3f} {row['ratio_to_stock']:7.2f} "
                  f"{row['median_process_s']:10.3f} {row['instructions']:14,} {'yes' if same else 'NO':>18}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "reps": args.reps, "lib": lib,
                               "cpus": os.cpu_count(), "rows": rows}, indent=1))
    print(f"\nJSON: {out}")
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
