"""Where checkpoint images live: the SCM range (the first paper) against a file on storage as
memory (the third paper), per checkpoint: copy volume, lines flushed, fences, virtual and wall
cost, and the channel the images' writes go to.

    .venv/bin/python bench/bench_ckpt_where.py [--workloads grep,tar-cf,gzip] [--out FILE.json]
                                               [--plot FILE.png | --no-plot]

Five configurations per workload, run one after the other in this process at level persist
(checkpoint at every syscall, tcp = 0, the costliest setting):

    block/off     block storage, no checkpoints          (the baseline of block/scm)
    block/scm     block storage, images in the SCM range  (the first paper's design)
    memory/off    storage as memory (DAX), no checkpoints (the baseline of the two below)
    memory/scm    DAX storage, images in the SCM range
    memory/file   DAX storage, images in /var/ckpt on the storage window (checkpoint.into=file:)

Per checkpoint: pages and bytes copied into the images, SCM lines flushed and fences (the
kernel's own counters), virtual time charged to checkpoints; wall = (wall with checkpoints -
wall without) / checkpoints; the bytes written on the images' channel (pmem0's for the SCM
range, the storage window's for the file) beyond those of the run without checkpoints. Then each
run with checkpoints is cut at half its instructions and restarted: the pages the restart copied
into RAM and those it mapped back in place (images in a file), and whether the output equals the
uninterrupted run's. Overhead: virtual time over the same storage mode
without checkpoints. What the table shows honestly: the file design copies the same pages as the
SCM range (anonymous pages are copied into the file, not kept in it), so the difference is
where the bytes go, not how many.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from emu.workloads import WORKLOADS, workload  # noqa: E402
from hw.console import Console  # noqa: E402
from images.build import default_image  # noqa: E402
from vmm.config import apply_overrides, default_machine  # noqa: E402
from vmm.machine import Machine  # noqa: E402
from vmm.stats import machine_stats  # noqa: E402

CONFIGS = {
    "block/off": ["checkpoint.enabled=false"],
    "block/scm": ["checkpoint.enabled=true", "checkpoint.tcp=0"],
    "memory/off": ["storage.mode=memory", "checkpoint.enabled=false"],
    "memory/scm": ["storage.mode=memory", "checkpoint.enabled=true", "checkpoint.tcp=0"],
    "memory/file": ["storage.mode=memory", "checkpoint.enabled=true", "checkpoint.tcp=0",
                    "checkpoint.into=file:/var/ckpt"],
}


def _machine(image: Path, cfg, work: Path, **cut) -> Machine:  # type: ignore[no-untyped-def]
    if not work.exists():
        work.mkdir(parents=True)
        shutil.copyfile(image, work / "disk.img")
    return Machine(work / "disk.img", cfg, console=Console(None, None, capture=True), media_dir=work, **cut)


def restart_at_half(image: Path, argv: list[str], cfg, work: Path, instructions: int, ref_out: bytes) -> dict:  # type: ignore[no-untyped-def]
    """Cut the run at half its instructions, restart: what the restart copied or mapped back."""
    m = _machine(image, cfg, work, power_fail_at=instructions // 2)
    r = m.run(argv)
    before = bytes(m.console.captured[1])
    m2 = _machine(image, cfg, work)
    r2 = m2.run_restart(argv)
    ck = r2.checkpoint
    return {"power_failed": r.power_failed, "identical": before + bytes(m2.console.captured[1]) == ref_out,
            "pages_copied": ck["restart_pages_copied"], "pages_mapped": ck["restart_pages_mapped"],
            "wall_s": r2.wall_s}


def run_one(image: Path, argv: list[str], overrides: list[str], work: Path) -> dict:
    cfg = apply_overrides(default_machine(), ["model_level=persist", *overrides])
    m = _machine(image, cfg, work / "run")
    r = m.run(argv)
    if r.exit_code != 0:
        raise SystemExit(f"bench: {' '.join(argv)} exited {r.exit_code} with {overrides}")
    stats = machine_stats(m)
    channel = {g["name"]: g["channel"] for g in stats["ranges"]}
    where = "storage" if "checkpoint.into=file:/var/ckpt" in overrides else "pmem0"
    ch = channel.get(where)
    by_channel = {str(c): sum(v["value"] for k, v in stats["stats"].items() if k.startswith(f"channel{c}.write_bytes."))
                  for c in set(channel.values())}
    out = {"virtual_ns": r.virtual_ns, "kernel_ns": r.kernel_ns, "wall_s": r.wall_s, "checkpoint": r.checkpoint,
           "images_channel": ch, "images_channel_write_bytes": by_channel.get(str(ch), 0),
           "channel_write_bytes": by_channel}
    if cfg.checkpoint.enabled:
        out["restart"] = restart_at_half(image, argv, cfg, work / "cut", r.instructions, bytes(m.console.captured[1]))
    return out


def per_checkpoint(on: dict, off: dict) -> dict:
    ck = on["checkpoint"]
    n = max(ck.get("checkpoints", 0), 1)
    return {"checkpoints": ck.get("checkpoints", 0),
            "pages_copied": ck["pages_copied"] / n, "bytes_copied": ck["bytes_copied"] / n,
            "lines_flushed": ck["lines_flushed"] / n, "fences": ck["fences"] / n,
            "virtual_us": ck["ns"] / n / 1e3, "wall_us": (on["wall_s"] - off["wall_s"]) / n * 1e6,
            "channel_bytes": (on["images_channel_write_bytes"] - off["channel_write_bytes"][str(on["images_channel"])]) / n,
            "channel": on["images_channel"],
            "virtual_overhead_pct": 100.0 * (on["virtual_ns"] / off["virtual_ns"] - 1),
            "restart": on["restart"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workloads", default="grep,tar-cf,gzip", help=f"names from {sorted(WORKLOADS)}")
    ap.add_argument("--out", default=str(BENCH / "results" / "ckpt-where.json"))
    ap.add_argument("--plot", help="PNG (default: next to the JSON)")
    ap.add_argument("--no-plot", action="store_true")
    a = ap.parse_args()
    image = default_image()
    result: dict = {"workloads": {}}
    with tempfile.TemporaryDirectory(prefix="emu-bench-where-") as tmp:
        for name in a.workloads.split(","):
            runs = {c: run_one(image, workload(name), o, Path(tmp) / name / c.replace("/", "-"))
                    for c, o in CONFIGS.items()}
            result["workloads"][name] = {
                c: per_checkpoint(runs[c], runs[c.split("/")[0] + "/off"]) for c in CONFIGS if not c.endswith("/off")}
            result["workloads"][name]["runs"] = runs
    print_table(result)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"JSON: {out}")
    if not a.no_plot:
        plot(result, Path(a.plot) if a.plot else out.with_suffix(".png"))
    return 0


def print_table(result: dict) -> None:
    from rich.console import Console as RichConsole
    from rich.table import Table

    t = Table(title="checkpoint images: SCM range vs a file on storage as memory (per checkpoint, tcp = 0)")
    for col in ("workload", "design", "ckpts", "pages", "KiB copied", "lines", "fences", "virtual us",
                "wall us", "channel KiB", "virtual +%", "restart copied/mapped"):
        t.add_column(col, justify="right" if col not in ("workload", "design") else "left")
    for name, w in result["workloads"].items():
        for c, r in w.items():
            if c == "runs":
                continue
            t.add_row(name, c, f"{r['checkpoints']:,}", f"{r['pages_copied']:.2f}", f"{r['bytes_copied'] / 1024:.1f}",
                      f"{r['lines_flushed']:.0f}", f"{r['fences']:.1f}", f"{r['virtual_us']:.2f}",
                      f"{r['wall_us']:.0f}", f"ch{r['channel']} {r['channel_bytes'] / 1024:.1f}",
                      f"{r['virtual_overhead_pct']:.1f}",
                      f"{r['restart']['pages_copied']}/{r['restart']['pages_mapped']}"
                      + ("" if r["restart"]["identical"] else " (output differs!)"))
    RichConsole(width=150).print(t)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["workloads"])
    designs = [c for c in CONFIGS if not c.endswith("/off")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "virtual_us", "virtual us per checkpoint"),
                           (axes[1], "bytes_copied", "bytes copied per checkpoint")):
        for i, d in enumerate(designs):
            xs = [j + i * 0.25 for j in range(len(names))]
            ax.bar(xs, [result["workloads"][n][d][key] for n in names], width=0.25, label=d)
        ax.set_xticks([j + 0.25 for j in range(len(names))], names)
        ax.set_ylabel(label)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"figure: {path}")


if __name__ == "__main__":
    sys.exit(main())
