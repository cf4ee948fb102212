"""Crash-campaign benchmark: the fork server against re-running every point from boot.

    .venv/bin/python bench/bench_campaigns.py [--workload gzip-1m] [--points 200] [--jobs 2]
                                              [--checkpoint off] [--quick] [--out FILE.json]
                                              [--plot FILE.png | --no-plot]

Both campaigns run side by side in one invocation of this script, one after the other (fork
first), each as `emu crashtest --method M --dir DIR --level persist --checkpoint C --points N
--jobs J --keep none -- PROGRAM...` in a child process, on the same machine and image, with
the same seed: the same cut points. Timed: the whole command (reference run included), wall
clock. Reported: both times, the ratio (rerun / fork), the time per point, and whether the two
campaigns' per-point results are identical (phase, checks, reasons, instruction and event
counts, outcome; everything but the campaign directory in their paths).

Defaults: the issue's measurement (200 instruction cuts of `gzip -9` of 1 MiB with checkpointing
off: each cut restarts by a cold boot). --quick: 40 points. Results: a table on stdout,
bench/results/campaigns.json and campaigns.png (seconds per method).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from emu.workloads import WORKLOADS, workload  # noqa: E402

METHODS = ("fork", "rerun")
IGNORED = ("reproduce", "state_dir")  # paths: they name each campaign's own directory


def emu_command() -> list[str]:
    exe = Path(sys.executable).with_name("emu")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "emu.cli"]


def run_campaign(method: str, args: argparse.Namespace, where: Path) -> dict:
    d = where / method
    cmd = [*emu_command(), "crashtest", "--method", method, "--dir", str(d), "--level", "persist",
           "--checkpoint", args.checkpoint, "--points", str(args.points), "--jobs", str(args.jobs),
           "--seed", str(args.seed), "--keep", "none", "--", *workload(args.workload)]
    if args.checkpoints:
        cmd[cmd.index("--"):cmd.index("--")] = ["--every-event-of-checkpoint", str(args.checkpoints)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    doc = json.loads((d / "crashtest.json").read_text()) if (d / "crashtest.json").exists() else None
    if doc is None:
        raise SystemExit(f"bench: the {method} campaign wrote no JSON (exit {p.returncode}): {p.stderr[-2000:]}")
    return {"method": method, "wall_s": round(wall, 2), "exit_code": p.returncode, "doc": doc}


def comparable(doc: dict) -> list[dict]:
    return [{k: v for k, v in p.items() if k not in IGNORED} for p in doc["points"]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", default="gzip-1m", choices=sorted(WORKLOADS))
    ap.add_argument("--points", type=int, default=200)
    ap.add_argument("--checkpoint", default="off", help="tcp=DURATION or off (default off)")
    ap.add_argument("--checkpoints", type=int, default=0, help="also every event of K checkpoints")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="40 points")
    ap.add_argument("--out", default=str(BENCH / "results" / "campaigns.json"))
    ap.add_argument("--plot", default=None, help="PNG (default: next to --out)")
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.points = min(args.points, 40)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="emu-bench-campaigns-") as tmp:
        runs = {m: run_campaign(m, args, Path(tmp)) for m in METHODS}
    fork, rerun = runs["fork"], runs["rerun"]
    n = len(fork["doc"]["points"])
    identical = comparable(fork["doc"]) == comparable(rerun["doc"])
    ratio = rerun["wall_s"] / fork["wall_s"] if fork["wall_s"] else 0.0
    rows = [{"method": m, "wall_s": r["wall_s"], "s_per_point": round(r["wall_s"] / max(1, n), 3),
             "passed": r["doc"]["summary"]["passed"], "failed": r["doc"]["summary"]["failed"], "exit_code": r["exit_code"]}
            for m, r in runs.items()]
    print(f"crash campaign: {args.workload} ({' '.join(workload(args.workload))}), {n} points "
          f"({args.points} instruction cuts{f' + every event of {args.checkpoints} checkpoints' if args.checkpoints else ''}), "
          f"checkpoint {args.checkpoint}, {args.jobs} jobs; reference {fork['doc']['reference']['instructions']:,} instructions")
    print(f"{'method':<8} {'wall s':>9} {'s/point':>9} {'passed':>7} {'failed':>7}")
    for r in rows:
        print(f"{r['method']:<8} {r['wall_s']:>9.1f} {r['s_per_point']:>9.3f} {r['passed']:>7} {r['failed']:>7}")
    print(f"rerun / fork: {ratio:.2f}x (target >= 5x); per-point results identical: {'yes' if identical else 'NO'}")
    result = {"benchmark": "campaigns", "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()},
              "workload": args.workload, "argv": workload(args.workload), "points": n, "instruction_points": args.points,
              "checkpoint": args.checkpoint, "every_event_of_checkpoints": args.checkpoints, "jobs": args.jobs,
              "seed": args.seed, "rows": rows, "rerun_over_fork": round(ratio, 2), "target_ratio": 5.0,
              "identical_points": identical, "reference": {k: fork["doc"]["reference"][k] for k in ("instructions", "events", "wall_s")}}
    out.write_text(json.dumps(result, indent=2) + "\n")
    if not args.no_plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.bar([r["method"] for r in rows], [r["wall_s"] for r in rows], color=["tab:green", "tab:gray"])
        ax.set_ylabel("campaign wall time (s)")
        ax.set_title(f"{n}-point campaign, {args.workload}: {ratio:.1f}x faster by forking", fontsize=9)
        fig.tight_layout()
        fig.savefig(args.plot or out.with_suffix(".png"), dpi=120)
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
