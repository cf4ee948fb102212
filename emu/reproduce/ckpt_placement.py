"""Where checkpoint images live: the SCM range (the first paper) against a file on storage as
memory (the third paper), per checkpoint: copy volume, pages and lines flushed in place, lines
flushed, fences, virtual and wall cost, the channel the images' writes go to, and what a restart
copies or maps back. The file twice: with the private pages in RAM, copied at every checkpoint
as into the SCM range (memory/file-ram, checkpoint.live_in_file = false), and living in the file
(memory/file: a checkpoint copies a page once, then flushes the pages written in place,
guestkernel/checkpoint/live.py). Used by `emu reproduce storage-as-memory` and
bench/bench_ckpt_where.py (whose docstring says how).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from hw.console import Console
from vmm.config import apply_overrides, default_machine
from vmm.machine import Machine
from vmm.stats import machine_stats

CONFIGS = {
    "block/off": ["checkpoint.enabled=false"],
    "block/scm": ["checkpoint.enabled=true", "checkpoint.tcp=0"],
    "memory/off": ["storage.mode=memory", "checkpoint.enabled=false"],
    "memory/scm": ["storage.mode=memory", "checkpoint.enabled=true", "checkpoint.tcp=0"],
    "memory/file-ram": ["storage.mode=memory", "checkpoint.enabled=true", "checkpoint.tcp=0",
                        "checkpoint.into=file:/var/ckpt", "checkpoint.live_in_file=false"],
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
           "peak_frames": m.kernel.frames.peak,
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
            "pages_in_place": ck.get("pages_in_place", 0) / n, "lines_in_place": ck.get("lines_in_place", 0) / n,
            "pages_remapped": ck.get("pages_remapped", 0), "live_copies": ck.get("live_copies", 0),
            "peak_ram_kib": on["peak_frames"] * 4,
            "lines_flushed": ck["lines_flushed"] / n, "fences": ck["fences"] / n,
            "virtual_us": ck["ns"] / n / 1e3, "wall_us": (on["wall_s"] - off["wall_s"]) / n * 1e6,
            "channel_bytes": (on["images_channel_write_bytes"] - off["channel_write_bytes"][str(on["images_channel"])]) / n,
            "channel": on["images_channel"],
            "virtual_overhead_pct": 100.0 * (on["virtual_ns"] / off["virtual_ns"] - 1),
            "restart": on["restart"]}



def compare(image: Path, workloads: dict[str, list[str]], tmp: Path) -> dict:
    """Every configuration on each workload (name -> argv), per checkpoint against the same
    storage mode without checkpoints; the runs themselves under "runs"."""
    result: dict = {"workloads": {}}
    for name, argv in workloads.items():
        runs = {c: run_one(image, argv, o, tmp / name / c.replace("/", "-")) for c, o in CONFIGS.items()}
        result["workloads"][name] = {
            c: per_checkpoint(runs[c], runs[c.split("/")[0] + "/off"]) for c in CONFIGS if not c.endswith("/off")}
        result["workloads"][name]["runs"] = runs
    return result


def print_table(result: dict, say: Callable[[str], None] = print) -> None:
    from rich.console import Console as RichConsole
    from rich.table import Table

    t = Table(title="checkpoint images: SCM range vs a file on storage as memory (per checkpoint, tcp = 0; "
                    "file-ram: private pages in RAM, file: living in the file)")
    for col in ("workload", "design", "ckpts", "pages", "KiB copied", "in place", "lines", "fences", "virtual us",
                "wall us", "channel KiB", "virtual +%", "peak RAM KiB", "restart copied/mapped"):
        t.add_column(col, justify="right" if col not in ("workload", "design") else "left")
    for name, w in result["workloads"].items():
        for c, r in w.items():
            if c == "runs":
                continue
            t.add_row(name, c, f"{r['checkpoints']:,}", f"{r['pages_copied']:.2f}", f"{r['bytes_copied'] / 1024:.1f}",
                      f"{r['pages_in_place']:.2f}", f"{r['lines_flushed']:.0f}", f"{r['fences']:.1f}",
                      f"{r['virtual_us']:.2f}", f"{r['wall_us']:.0f}", f"ch{r['channel']} {r['channel_bytes'] / 1024:.1f}",
                      f"{r['virtual_overhead_pct']:.1f}", f"{r['peak_ram_kib']:,}",
                      f"{r['restart']['pages_copied']}/{r['restart']['pages_mapped']}"
                      + ("" if r["restart"]["identical"] else " (output differs!)"))
    rc = RichConsole(width=180)
    with rc.capture() as cap:
        rc.print(t)
    say(cap.get().rstrip())


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["workloads"])
    designs = [c for c in CONFIGS if not c.endswith("/off")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "virtual_us", "virtual us per checkpoint"),
                           (axes[1], "bytes_copied", "bytes copied per checkpoint")):
        w = 0.8 / len(designs)
        for i, d in enumerate(designs):
            xs = [j + i * w for j in range(len(names))]
            ax.bar(xs, [result["workloads"][n][d][key] for n in names], width=w, label=d)
        ax.set_xticks([j + 0.4 - w / 2 for j in range(len(names))], names)
        ax.set_ylabel(label)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
