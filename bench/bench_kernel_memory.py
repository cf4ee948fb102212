"""What the kernel's memory management costs: grep, gzip and tar with this tree's kernel beside the
same runs with an earlier commit's (default: the last one before the slab allocator, reclaim and
/proc), measured side by side in one run, alternating, median of --repeat. Reported, never
asserted; the issue asks for no more than 10 % slower.

Each run is a fresh copy of the default image booted in a child process that imports one tree
(the other tree is a `git worktree` in a temporary directory); the time is Machine.run's wall
time, without the imports and the image copy. Also printed: the guest's instruction count and
virtual time (the same program, so any change there is kernel work: reclaim, slab objects).

    .venv/bin/python bench/bench_kernel_memory.py [--before REF] [--repeat 3] [--out bench/results/kernel_memory.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEFORE = "159f984"  # main before issue 9's kernel memory work

WORKLOADS = {
    "grep": "grep -c memory /data/corpus.txt",
    "gzip": "gzip -9 -c /data/corpus.txt | wc -c",
    "tar": "tar cf - -C /data tree | wc -c",
}

CHILD = r"""
import json, shutil, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from hw.console import Console
from images.build import default_image
from vmm.machine import Machine
with tempfile.TemporaryDirectory() as td:
    image = Path(td) / "disk.img"
    shutil.copyfile(default_image(), image)
    m = Machine(image, console=Console(None, None, capture=True))
    t0 = time.perf_counter()
    r = m.run(["/bin/sh", "-c", sys.argv[2]])
    wall = time.perf_counter() - t0
    print(json.dumps({"wall_s": wall, "exit": r.exit_code, "instructions": r.instructions,
                      "virtual_ns": m.clock.uptime_ns()}))
"""


def run(tree: Path, cmd: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(tree), cmd], capture_output=True, text=True, cwd=tree)
    if out.returncode:
        raise SystemExit(f"bench child failed in {tree}: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", default=BEFORE, help="the commit to compare with")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "kernel_memory.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as td:
        old = Path(td) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), args.before],
                       check=True, capture_output=True)
        try:
            rows = {}
            for name, cmd in WORKLOADS.items():
                runs: dict[str, list[dict]] = {"before": [], "after": []}
                run(old, cmd), run(ROOT, cmd)  # warm: images built, native code compiled
                for _ in range(args.repeat):
                    runs["before"].append(run(old, cmd))
                    runs["after"].append(run(ROOT, cmd))
                row = {side: {"wall_s": statistics.median(r["wall_s"] for r in rs),
                              "instructions": rs[0]["instructions"], "virtual_ns": rs[0]["virtual_ns"]}
                       for side, rs in runs.items()}
                row["wall_ratio"] = row["after"]["wall_s"] / row["before"]["wall_s"]
                rows[name] = row
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], capture_output=True)
    print(f"kernel memory management: this tree vs {args.before}, median of {args.repeat}, side by side")
    print(f"{'workload':<8} {'before s':>9} {'after s':>9} {'ratio':>7} {'insns before':>14} {'insns after':>14} "
          f"{'virt ms before':>15} {'virt ms after':>14}")
    for name, row in rows.items():
        b, a = row["before"], row["after"]
        print(f"{name:<8} {b['wall_s']:9.3f} {a['wall_s']:9.3f} {row['wall_ratio']:7.3f} {b['instructions']:14d} "
              f"{a['instructions']:14d} {b['virtual_ns'] / 1e6:15.2f} {a['virtual_ns'] / 1e6:14.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"before": args.before, "repeat": args.repeat, "workloads": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
