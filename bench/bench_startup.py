"""Start-up of `emu run -- /bin/true`: whole-process wall time, as a user sees it.

    .venv/bin/python bench/bench_startup.py [--runs 10] [--tree DIR ...] [--out FILE.json]

Each run is a fresh `python -c "from emu.cli import main; ..." run -- /bin/true` in the tree's
directory with the tree first on PYTHONPATH (so `--tree /work/main --tree .` compares two
checkouts side by side with the same interpreter; default: this tree). Runs alternate between
the trees so that host noise hits all alike; the table shows medians and the spread. The first
run of a tree may build its native library and image cache: one unmeasured run each comes
first. Reported, never asserted.
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

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 0.2  # issue 15


def run_once(tree: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(tree))
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", "import sys; from emu.cli import main; sys.exit(main())",
                        "run", "--", "/bin/true"], cwd=tree, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, check=False)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"bench_startup: emu in {tree} failed: {p.stderr.decode(errors='replace').strip()[-300:]}")
    return wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--tree", action="append", type=Path, help="a checkout to measure (repeatable; default: this one)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "startup.json"))
    args = ap.parse_args()
    trees = [t.resolve() for t in (args.tree or [ROOT])]
    for t in trees:
        run_once(t)  # warm: native library, image cache, site scans
    samples: dict[str, list[float]] = {str(t): [] for t in trees}
    for _ in range(args.runs):
        for t in trees:
            samples[str(t)].append(run_once(t))
    print(f"{'tree':<40}{'median s':>10}{'min s':>8}{'max s':>8}  target < {TARGET_S} s")
    rows = {}
    for t, xs in samples.items():
        rows[t] = {"median_s": statistics.median(xs), "min_s": min(xs), "max_s": max(xs), "samples_s": xs}
        print(f"{t:<40}{rows[t]['median_s']:>10.3f}{min(xs):>8.3f}{max(xs):>8.3f}  "
              f"{'met' if rows[t]['median_s'] < TARGET_S else 'NOT met'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "startup", "command": "emu run -- /bin/true", "runs": args.runs,
                               "target_s": TARGET_S, "trees": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
