"""Where checkpoint images live: the SCM range (the first paper) against a file on storage as
memory (the third paper), per checkpoint: copy volume, pages flushed in place, lines flushed,
fences, virtual and wall cost, and the channel the images' writes go to.

    .venv/bin/python bench/bench_ckpt_where.py [--workloads grep,tar-cf,gzip] [--out FILE.json]
                                               [--plot FILE.png | --no-plot]

Six configurations per workload, run one after the other in this process at level persist
(checkpoint at every syscall, tcp = 0, the costliest setting):

    block/off        block storage, no checkpoints          (the baseline of block/scm)
    block/scm        block storage, images in the SCM range  (the first paper's design)
    memory/off       storage as memory (DAX), no checkpoints (the baseline of the three below)
    memory/scm       DAX storage, images in the SCM range
    memory/file-ram  DAX storage, images in /var/ckpt on the storage window (checkpoint.into=file:),
                     private pages in RAM, copied into the file (checkpoint.live_in_file=false)
    memory/file      the same, private pages living in the file: copied once, then mapped from it;
                     a write goes to a fresh page of the file, flushed in place at the next checkpoint

Per checkpoint: pages and bytes copied into the images, pages flushed in place, SCM lines flushed
(those in place included) and fences (the kernel's own counters), virtual time charged to
checkpoints, the run's peak RAM (frames allocated); wall = (wall with checkpoints -
wall without) / checkpoints; the bytes written on the images' channel (pmem0's for the SCM
range, the storage window's for the file) beyond those of the run without checkpoints. Then each
run with checkpoints is cut at half its instructions and restarted: the pages the restart copied
into RAM and those it mapped back in place (images in a file), and whether the output equals the
uninterrupted run's. Overhead: virtual time over the same storage mode
without checkpoints. What the table shows: memory/file-ram copies what the SCM range copies
(the difference is where the bytes go); memory/file copies a page only the first time a
checkpoint sees it and flushes the pages written since in place (64 lines each, no copy; the copy
into a fresh page of the file happens at the first write after a checkpoint, in the fault, as
a copy-on-write). The line flushes are charged as before (20 ns a line), so the virtual cost per
checkpoint drops less than the copy volume.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from emu.reproduce.ckpt_placement import compare, plot, print_table  # noqa: E402
from emu.workloads import WORKLOADS, workload  # noqa: E402
from images.build import default_image  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workloads", default="grep,tar-cf,gzip", help=f"names from {sorted(WORKLOADS)}")
    ap.add_argument("--out", default=str(BENCH / "results" / "ckpt-where.json"))
    ap.add_argument("--plot", help="PNG (default: next to the JSON)")
    ap.add_argument("--no-plot", action="store_true")
    a = ap.parse_args()
    image = default_image()
    with tempfile.TemporaryDirectory(prefix="emu-bench-where-") as tmp:
        result = compare(image, {name: workload(name) for name in a.workloads.split(",")}, Path(tmp))
    print_table(result)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"JSON: {out}")
    if not a.no_plot:
        png = Path(a.plot) if a.plot else out.with_suffix(".png")
        plot(result, png)
        print(f"figure: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
