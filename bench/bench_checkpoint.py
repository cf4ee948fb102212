"""Checkpoint benchmark: transparent checkpointing into SCM vs no checkpointing (the first paper's Fig. 8).

    .venv/bin/python bench/bench_checkpoint.py [--workloads grep,tar-cf,gzip] [--repeats 3]
                                               [--disk flat|hdd]
                                               [--out FILE.json] [--plot FILE.png | --no-plot]

Every run is `emu run --level persist --set storage.disk=DISK --checkpoint off|tcp=NS
--summary-json F -- PROGRAM...` in a child process, with the command lines of the named workloads
(emu.workloads.workload(name)). DISK is the disk's timing model (hw/disktiming.py): flat (the
default machine's, storage.block_io = 10 us a block) or hdd (a 7200 rpm disk: seek, rotation,
transfer).

For each workload the run with checkpointing off comes first; its virtual time V sets the tcp
values. The paper used tcp = 1, 2, 4, 8 s on runs of roughly 20 s; here tcp_i = V * i / 20 for
i in 1, 2, 4, 8 (rounded to whole ns), plus tcp = 0 (a checkpoint at every syscall) as an extra
row. The configurations run interleaved (off, tcp1, tcp2, tcp4, tcp8, tcp0, then the next
workload, then the next repetition) so that host noise hits all alike; tables show medians.

Times: *virtual* = the summary's virtual_ns (retired instructions at cpu_hz plus kernel work
charged by the cost model of hw/clock.py, deterministic); *kernel* = kernel_ns (the charged
part); *wall* = the summary's wall_s (Machine.run; emu's ~1.5 s of start-up per invocation is not
in it), of which checkpoint_wall_s is spent inside checkpoints: the wall time a checkpoint adds
is shown as that part and the rest (the syscalls and code after it running slower, and noise).
Targets (reported, not enforced), at the longest tcp: virtual-time overhead <= 4 %,
wall-time overhead <= 10 %.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

# bench_foundation also puts the repo root on sys.path: import it before emu
from bench_foundation import _emu_unicorn_version

from hw import clock as emu_clock
from hw.clock import (
    BLOCK_IO_NS,
    CKPT_NS,
    CKPT_SCAN_NS,
    COPY_NS_PER_KIB,
    SCM_FENCE_NS,
    SCM_LINE_NS,
)
from emu.reproduce.checkpoint import PAPER_RUN_S, TCP_STEPS, tcp_values  # the tcp rule, shared with emu reproduce
from emu.workloads import WORKLOADS, workload
from hw.disktiming import KINDS as DISKS

DEFAULT_WORKLOADS = ["grep", "tar-cf", "gzip"]
LEVEL = "persist"
CONFIGS = ["off"] + [f"tcp{i}" for i in TCP_STEPS] + ["tcp0"]   # run and table order
LONGEST = f"tcp{max(TCP_STEPS)}"
VIRTUAL_TARGET_PCT = 4.0             # virtual-time overhead at the longest tcp
WALL_TARGET_PCT = 10.0               # wall-time overhead at the longest tcp


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.exit(f"{self.prog}: error: {message}")   # one line, exit status 1


def emu_command() -> list[str]:
    """The `emu` console script of this interpreter's environment."""
    exe = Path(sys.executable).parent / "emu"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("emu")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from emu.cli import main; sys.exit(main())"]


def _this_tree_env() -> dict[str, str]:
    """The environment of a run: the code of the tree this bench is in comes first (the venv's
    `emu` may be an editable install of another checkout)."""
    old = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=str(BENCH.parent) + (os.pathsep + old if old else ""))


def run_one(argv: list[str], spec: str, timeout: float, workdir: Path, disk: str = "flat") -> dict:
    """One `emu run` on the disk model `disk`; returns its summary JSON (plus host_wall_s) or
    {"error": ...}."""
    summary = workdir / "summary.json"
    summary.unlink(missing_ok=True)
    cmd = emu_command() + ["run", "--level", LEVEL, "--set", f"storage.disk={disk}", "--checkpoint", spec,
                           "--summary-json", str(summary), "--", *argv]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                           timeout=timeout, cwd=str(workdir), check=False, env=_this_tree_env())
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f}s", "cmd": cmd}
    host_wall = time.perf_counter() - t0
    err_tail = p.stderr.decode(errors="replace").strip().splitlines()[-3:]
    if p.returncode not in (0, None) and not summary.exists():
        return {"error": f"emu exit {p.returncode}: " + " | ".join(err_tail), "cmd": cmd,
                "host_wall_s": host_wall}
    try:
        d = json.loads(summary.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return {"error": f"no summary JSON ({e}); emu exit {p.returncode}: " + " | ".join(err_tail),
                "cmd": cmd, "host_wall_s": host_wall}
    d["cmd"] = cmd
    d["host_wall_s"] = host_wall   # includes emu's start-up; not used for the wall columns
    d["emu_exit_status"] = p.returncode
    d["stderr_tail"] = " | ".join(err_tail)
    return d


# --------------------------------------------------------------------------- summary

def cost_breakdown(ck: dict, disk: str = "flat") -> dict:
    """The checkpoint time (ck["ns"]) rebuilt from the counters and the cost constants: per
    checkpoint CKPT_NS; CKPT_SCAN_NS per page scanned; COPY_NS_PER_KIB per KiB copied (process
    pages and logged blocks), half that for a page flushed in place (read once for its crc);
    BLOCK_IO_NS per block written in place (logged, or fresh before the commit) and per block of
    the two generation notes around a write-back of logged blocks (the flat disk); SCM_LINE_NS per line
    flushed (lines_flushed: the copied pages' lines, metadata and slot lines); SCM_FENCE_NS per
    fence. `residual` is what the counters do not explain. On the hdd disk a block's write
    time depends on where the arm and the platter are: block_writeback_ns is then the rest of
    checkpoint.ns (the disk's time, its two generation notes included) and residual is 0."""
    b = {
        "decision_meta_ns": ck["checkpoints"] * CKPT_NS,
        "scan_ns": ck["pages_scanned"] * CKPT_SCAN_NS,
        "copy_ns": ck["bytes_copied"] * COPY_NS_PER_KIB // 1024 + ck.get("pages_in_place", 0) * 2 * COPY_NS_PER_KIB,
        "block_writeback_ns": (ck["blocks_logged"] + ck.get("blocks_in_place", 0) + ck.get("generation_notes", 0))
        * BLOCK_IO_NS,
        "line_flush_ns": ck["lines_flushed"] * SCM_LINE_NS,
        "fence_ns": ck["fences"] * SCM_FENCE_NS,
    }
    if disk != "flat":
        b["block_writeback_ns"] = ck["ns"] - sum(v for k, v in b.items() if k != "block_writeback_ns")
    b["residual_ns"] = ck["ns"] - sum(b.values())
    return b


def summarize(name: str, argv: list[str], tcps: dict[str, int], samples: dict[str, list[dict]],
              disk: str = "flat") -> dict:
    def med(xs: list[float]) -> float | None:
        return statistics.median(xs) if xs else None

    row: dict = {"workload": name, "argv": argv, "tcp_ns": tcps, "configs": {}}
    base: dict = {}
    for c in CONFIGS:
        runs = samples[c]
        ok = [x for x in runs if "error" not in x]
        d: dict = {
            "tcp_ns": tcps.get(c), "tcp_ms": tcps[c] / 1e6 if c in tcps else None,
            "checkpoint_spec": "off" if c == "off" else (f"tcp={tcps[c]}" if c in tcps else None),
            "runs_ok": len(ok), "errors": [x["error"] for x in runs if "error" in x],
            "median_virtual_ns": med([x["virtual_ns"] for x in ok]),
            "median_kernel_ns": med([x["kernel_ns"] for x in ok]),
            "median_wall_s": med([x["wall_s"] for x in ok]),
            "samples_wall_s": [x["wall_s"] for x in ok],
            # of the wall time, the host's time inside checkpoints (capture, commit, write-back)
            "median_checkpoint_wall_s": med([x.get("checkpoint_wall_s", 0.0) for x in ok]),
            "samples_virtual_ns": [x["virtual_ns"] for x in ok],
            "instructions": ok[0]["instructions"] if ok else None,
            "exit_codes": sorted({x["exit_code"] for x in ok}),
            # virtual time and the counters are deterministic: flag it if repetitions disagree
            "deterministic": (len({(x["virtual_ns"], x["kernel_ns"], x["instructions"],
                                    json.dumps(x.get("checkpoint") or {}, sort_keys=True))
                                   for x in ok}) <= 1),
        }
        ck = dict(ok[0].get("checkpoint") or {}) if ok else {}
        d["checkpoint"] = ck
        if ck and ck.get("checkpoints"):
            n = ck["checkpoints"]
            d["per_checkpoint"] = {"pages_copied": ck["pages_copied"] / n,
                                   "kib_copied": ck["bytes_copied"] / 1024 / n,
                                   "blocks_logged": ck["blocks_logged"] / n,
                                   "pages_scanned": ck["pages_scanned"] / n,
                                   "ns": ck["ns"] / n}
            # checkpoints = forced + clean + tcp + the last one taken when the group ends
            d["checkpoint_final"] = n - ck["forced"] - ck["clean"] - ck["tcp"]
            d["checkpoint_cost_breakdown"] = cost_breakdown(ck, disk)
        if c == "off":
            base = d
        elif ck.get("checkpoints") and d["median_wall_s"] is not None and base.get("median_wall_s"):
            # the wall time a checkpoint adds: spent inside it, and spent elsewhere (the syscalls
            # and code after it running slower, the run-to-run noise)
            n, inside = ck["checkpoints"], d["median_checkpoint_wall_s"]
            d["wall_us_per_checkpoint"] = {"inside": inside / n * 1e6,
                                           "elsewhere": (d["median_wall_s"] - base["median_wall_s"] - inside) / n * 1e6}
        for key, out in (("median_virtual_ns", "virtual_over_off"),
                         ("median_kernel_ns", "kernel_over_off"),
                         ("median_wall_s", "wall_over_off")):
            d[out] = (d[key] / base[key] if d[key] is not None and base.get(key) else None)
        if ck and base.get("median_virtual_ns"):
            d["checkpoint_ns_over_off_virtual"] = ck["ns"] / base["median_virtual_ns"]
        d["instructions_equal_off"] = (d["instructions"] == base.get("instructions")
                                       if d["instructions"] is not None else None)
        row["configs"][c] = d

    lg = row["configs"][LONGEST]
    v = lg["virtual_over_off"]
    w = lg["wall_over_off"]
    offw = row["configs"]["off"]["samples_wall_s"]
    row["verdict"] = {
        "config": LONGEST, "tcp_ns": tcps.get(LONGEST),
        "virtual_overhead_pct": (v - 1) * 100 if v is not None else None,
        "virtual_target_pct": VIRTUAL_TARGET_PCT,
        "virtual_met": (v - 1) * 100 <= VIRTUAL_TARGET_PCT if v is not None else None,
        "wall_overhead_pct": (w - 1) * 100 if w is not None else None,
        "wall_target_pct": WALL_TARGET_PCT,
        "wall_met": (w - 1) * 100 <= WALL_TARGET_PCT if w is not None else None,
        "checkpoints": {k: lg["checkpoint"].get(k) for k in ("checkpoints", "forced", "clean", "tcp")},
        # spread of the baseline's wall time across repetitions: the noise floor of wall_met
        "off_wall_spread_pct": ((max(offw) - min(offw)) / statistics.median(offw) * 100
                                if len(offw) > 1 else None),
    }
    sp = row["verdict"]["off_wall_spread_pct"]
    # one repeat, or a baseline that varies more than the target: the wall verdict says little
    row["verdict"]["wall_conclusive"] = sp is not None and sp <= WALL_TARGET_PCT
    return row


def cost_model_note() -> dict:
    doc = emu_clock.__doc__ or ""
    names = ("CKPT_NS", "CKPT_SCAN_NS", "SCM_LINE_NS", "SCM_FENCE_NS", "COPY_NS_PER_KIB",
             "BLOCK_IO_NS")
    lines = [ln.strip() for ln in doc.splitlines()
             if ln.startswith("    ") and ("checkpoint" in ln or "SCM" in ln or "block" in ln)]
    return {
        "source": "hw/clock.py (module docstring and constants)",
        "clock": "virtual_ns = retired instructions at cpu_hz (1 instruction per cycle) + "
                 "kernel_ns; kernel_ns is kernel work charged in ns by the cost model",
        "checkpoint_cost_lines": lines,
        "constants_ns": {n: getattr(emu_clock, n) for n in names},
        "note": ("Checkpoint time is kernel time: per checkpoint CKPT_NS (decision + metadata), "
                 "CKPT_SCAN_NS per resident page whose dirty bit is read, COPY_NS_PER_KIB * 4 per "
                 "page copied to SCM (process pages and logged file blocks) plus SCM_LINE_NS for "
                 "each of its 64 line flushes, SCM_LINE_NS per metadata/slot line flushed at "
                 "commit, SCM_FENCE_NS per fence, and BLOCK_IO_NS per dirty block written back in "
                 "place after the commit. With checkpointing on, the kernel writes storage only "
                 "inside checkpoints, so the baseline's write-back at shutdown (BLOCK_IO_NS per "
                 "dirty block, part of the 'off' kernel time) becomes checkpoint write-back (the "
                 "last checkpoint, taken when the group ends). The per-config "
                 "checkpoint_cost_breakdown rebuilds checkpoint.ns from the counters. On the hdd "
                 "disk (--disk hdd) a block's time is the disk model's (hw/disktiming.py: seek, "
                 "rotation, transfer), not BLOCK_IO_NS: the breakdown's block write-back is the rest."),
        "clock_docstring": doc,
    }


# --------------------------------------------------------------------------- main

def parse_args() -> argparse.Namespace:
    ap = _Parser(prog="bench_checkpoint.py", description=__doc__.split("\n")[0])
    ap.add_argument("--workloads", default=",".join(DEFAULT_WORKLOADS),
                    help=f"comma-separated workload names (default {','.join(DEFAULT_WORKLOADS)}; "
                         f"have: {', '.join(WORKLOADS)})")
    ap.add_argument("--repeats", type=int, default=3, help="repetitions (default 3; medians)")
    ap.add_argument("--disk", default="flat", choices=DISKS,
                    help="the disk's timing model, --set storage.disk=DISK (default flat: the default "
                         "machine's 10 us a block; hdd: a 7200 rpm disk, hw/disktiming.py)")
    ap.add_argument("--out", help="JSON results (default bench/results/checkpoint-<time>.json)")
    ap.add_argument("--plot", help="bar chart PNG (default: next to the JSON, if matplotlib is "
                                   "installed)")
    ap.add_argument("--no-plot", action="store_true", help="do not draw the bar chart")
    ap.add_argument("--timeout", type=float, default=1800.0,
                    help="per-run limit in seconds (default 1800)")
    args = ap.parse_args()
    names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    if not names:
        ap.error("--workloads: no workload named")
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown:
        ap.error(f"--workloads: unknown workload {', '.join(map(repr, unknown))} "
                 f"(have: {', '.join(WORKLOADS)})")
    if len(set(names)) != len(names):
        ap.error("--workloads: a workload is named twice")
    if args.repeats < 1:
        ap.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.timeout <= 0:
        ap.error(f"--timeout must be positive, got {args.timeout:g}")
    if args.plot and args.no_plot:
        ap.error("--plot and --no-plot exclude each other")
    args.names = names
    return args


def main() -> int:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    args = parse_args()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else BENCH / "results" / f"checkpoint-{args.disk}-{stamp}.json"
    names = args.names
    argvs = {w: workload(w) for w in names}
    samples: dict[str, dict[str, list[dict]]] = {w: {c: [] for c in CONFIGS} for w in names}
    tcps: dict[str, dict[str, int]] = {}
    runs: list[dict] = []
    dead: set[str] = set()   # workloads whose baseline failed: no tcp values
    err = Console(stderr=True, width=max(120, shutil.get_terminal_size((120, 24)).columns))
    total = args.repeats * len(names) * len(CONFIGS)
    t_start = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="emu-bench-ckpt-") as td, Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=err) as progress:
        task = progress.add_task("checkpoint runs", total=total)
        for rep in range(args.repeats):
            for name in names:
                for c in CONFIGS:
                    if name in dead:
                        progress.advance(task)
                        continue
                    if c == "off":
                        spec, tcp_ns = "off", None
                    else:
                        tcp_ns = tcps[name][c]
                        spec = f"tcp={tcp_ns}"
                    label = "off" if c == "off" else f"{c} ({tcp_ns / 1e6:.3f} ms)"
                    progress.update(task, description=f"rep {rep + 1}/{args.repeats} {name} {label}")
                    res = run_one(argvs[name], spec, args.timeout, Path(td), args.disk)
                    samples[name][c].append(res)
                    runs.append({"workload": name, "config": c, "rep": rep + 1,
                                 "tcp_ns": tcp_ns, **res})
                    if "error" in res:
                        progress.console.print(f"[red]error[/] rep {rep + 1} {name} {c}: "
                                               f"{res['error'][:160]}")
                        if c == "off" and name not in tcps:
                            dead.add(name)
                    else:
                        ck = res.get("checkpoint") or {}
                        progress.console.print(
                            f"rep {rep + 1}/{args.repeats} {name:8s} {label:22s} virtual "
                            f"{res['virtual_ns'] / 1e6:10.3f} ms  kernel {res['kernel_ns'] / 1e6:9.3f} ms"
                            f"  wall {res['wall_s']:7.3f} s"
                            + (f"  {ck['checkpoints']} checkpoints" if ck else ""),
                            highlight=False)
                        if c == "off" and name not in tcps:
                            tcps[name] = tcp_values(res["virtual_ns"], quick=False)
                    progress.advance(task)

    rows = [summarize(w, argvs[w], tcps.get(w, {}), samples[w], args.disk) for w in names]
    result = {
        "benchmark": "checkpoint",
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": [sys.executable, *sys.argv],
        "repeats": args.repeats, "level": LEVEL, "disk": args.disk, "workloads_run": names,
        "configs": CONFIGS,
        "tcp_rule": (f"tcp_i = V * i / {PAPER_RUN_S} ns (V = virtual_ns of the first 'off' run, "
                     f"rounded to whole ns) for i in {TCP_STEPS}, as the paper's tcp = 1, 2, 4, 8 s "
                     f"on ~{PAPER_RUN_S} s runs; tcp0 = a checkpoint at every syscall"),
        "targets": {"at": LONGEST, "virtual_overhead_pct": VIRTUAL_TARGET_PCT,
                    "wall_overhead_pct": WALL_TARGET_PCT, "enforced": False},
        "time_definitions": {
            "virtual": "summary virtual_ns (deterministic)",
            "kernel": "summary kernel_ns (the part of virtual_ns charged to kernel work)",
            "wall": "summary wall_s (Machine.run); emu's start-up per invocation (~1.5 s, image "
                    "staleness check) is not in it; host_wall_s per run includes it",
            "checkpoint_wall": "summary checkpoint_wall_s: of wall, the host's time inside checkpoints "
                               "(capture, commit, write-back); wall_us_per_checkpoint: (wall - off's wall) "
                               "per checkpoint, inside them and elsewhere",
        },
        "cost_model": cost_model_note(),
        "total_bench_s": time.perf_counter() - t_start,
        "host": {"platform": platform.platform(), "machine": platform.machine(),
                 "processor": platform.processor(), "cpus": os.cpu_count(),
                 "python": platform.python_version()},
        "versions": {"emu_unicorn": _emu_unicorn_version()},
        "results": rows,
        "runs": runs,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print_tables(result)
    print(f"results: {out}")
    if not args.no_plot:
        plot(result, Path(args.plot) if args.plot else out.with_suffix(".png"),
             explicit=bool(args.plot))
    return 0 if not any(d["errors"] for r in rows for d in r["configs"].values()) else 1


# --------------------------------------------------------------------------- output

def print_tables(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    def f(x, fmt="{:.3f}"):
        return "-" if x is None else fmt.format(x)

    c = Console(width=max(170, shutil.get_terminal_size((170, 24)).columns))
    notes = []
    for row in result["results"]:
        off = row["configs"]["off"]
        title = (f"{row['workload']}: checkpointing into SCM, level {result['level']}, disk "
                 f"{result.get('disk', 'flat')}, median of {result['repeats']}")
        if off["median_virtual_ns"] is not None:
            title += (f"\noff: virtual {off['median_virtual_ns'] / 1e6:.3f} ms (kernel "
                      f"{off['median_kernel_ns'] / 1e6:.3f} ms), "
                      f"{off['instructions']:,} instructions; tcp_i = V*i/{PAPER_RUN_S}")
        t = Table(title=title)
        t.caption = ("virt: virtual time, kern: its kernel part, wall: Machine.run wall s; "
                     "/off: median / off's median; per ckpt: process pages copied, KiB copied "
                     "to SCM (pages + blocks), file blocks logged, the wall time each adds: spent "
                     "inside it + elsewhere (us)")
        for col in ("config", "tcp ms", "virt/off", "kern/off", "wall s", "wall/off", "ckpts",
                    "forced/clean/tcp", "pages/ckpt", "KiB/ckpt", "blocks/ckpt", "wall us/ckpt"):
            t.add_column(col, justify="left" if col == "config" else "right", no_wrap=True)
        for name, d in row["configs"].items():
            ck = d["checkpoint"]
            pc = d.get("per_checkpoint") or {}
            tcp = ("-" if name == "off" else
                   "0 (every)" if name == "tcp0" else f(d["tcp_ms"]))
            t.add_row(name, tcp, f(d["virtual_over_off"], "{:.3f}"),
                      f(d["kernel_over_off"], "{:.3f}"),
                      f(d["median_wall_s"]) if d["median_wall_s"] is not None else "ERR",
                      f(d["wall_over_off"], "{:.2f}"),
                      f(ck.get("checkpoints"), "{:,}") if ck else "-",
                      f"{ck['forced']:,}/{ck['clean']:,}/{ck['tcp']:,}" if ck else "-",
                      f(pc.get("pages_copied"), "{:.1f}"), f(pc.get("kib_copied"), "{:.1f}"),
                      f(pc.get("blocks_logged"), "{:.2f}"),
                      "{inside:.0f} + {elsewhere:.0f}".format(**d["wall_us_per_checkpoint"])
                      if "wall_us_per_checkpoint" in d else "-")
            for e in d["errors"]:
                notes.append(f"{row['workload']} / {name}: {e[:200]}")
            if d["runs_ok"] and not d["deterministic"]:
                notes.append(f"{row['workload']} / {name}: virtual time or counters differ "
                             "across repetitions")
            if d["instructions_equal_off"] is False:
                notes.append(f"{row['workload']} / {name}: {d['instructions']:,} instructions, "
                             f"off had {off['instructions']:,}")
            if any(x != 0 for x in d["exit_codes"]):
                notes.append(f"{row['workload']} / {name}: guest exit code(s) {d['exit_codes']}")
            br = d.get("checkpoint_cost_breakdown")
            if br and br["residual_ns"] != 0:
                notes.append(f"{row['workload']} / {name}: checkpoint.ns is "
                             f"{br['residual_ns']:,} ns more than the cost model explains")
        c.print(t)
    c.print("checkpoints = forced + clean + tcp + 1 (the last one, taken when the program ends); "
            "per-checkpoint columns divide by all of them")
    for row in result["results"]:
        v = row["verdict"]
        if v["virtual_overhead_pct"] is None:
            c.print(f"[red]NO DATA[/] {row['workload']}: no {v['config']} result")
            continue

        def said(met: bool) -> str:
            return "[green]met[/]" if met else "[red]NOT met[/]"

        ck = v["checkpoints"]
        sp = v["off_wall_spread_pct"]
        spread = ("; 1 repeat: wall noise unknown, wall verdict inconclusive" if sp is None else
                  f"; off wall varies {sp:.1f}% across repeats"
                  + ("" if sp <= v["wall_target_pct"] else
                     f" (more than the {v['wall_target_pct']:g}% target: wall verdict inconclusive)"))
        c.print(f"{row['workload']} at {v['config']} (tcp {v['tcp_ns'] / 1e6:.3f} ms): virtual-time "
                f"overhead {v['virtual_overhead_pct']:+.2f}% (target <= {v['virtual_target_pct']:g}%: "
                f"{said(v['virtual_met'])}), wall-time overhead {v['wall_overhead_pct']:+.1f}% "
                f"(target <= {v['wall_target_pct']:g}%: {said(v['wall_met'])}){spread}; "
                f"{ck.get('checkpoints')} checkpoints ({ck.get('forced')} forced, {ck.get('clean')} "
                f"clean, {ck.get('tcp')} tcp)",
                highlight=False)
    for n in notes:
        c.print(f"[yellow]note[/]: {n}", highlight=False)


def plot(result: dict, path: Path, explicit: bool) -> None:
    """Fig. 8 style: per workload, total and kernel virtual time normalised to off, per config."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        print("no plot: matplotlib is not installed" + (f" (wanted {path})" if explicit else ""))
        return
    rows = [r for r in result["results"] if r["configs"]["off"]["median_virtual_ns"]]
    if not rows:
        print("no plot: no results")
        return
    configs = result["configs"]
    fig, axes = plt.subplots(1, len(rows), figsize=(max(6.0, 4.6 * len(rows)), 4.0), squeeze=False)
    width = 0.38
    for ax, row in zip(axes[0], rows):
        xs = range(len(configs))
        tot = [row["configs"][c]["virtual_over_off"] or 0 for c in configs]
        ker = [row["configs"][c]["kernel_over_off"] or 0 for c in configs]
        bars = ax.bar([x - width / 2 for x in xs], tot, width, label="total (virtual)")
        ax.bar([x + width / 2 for x in xs], ker, width, label="kernel (virtual)")
        ax.bar_label(bars, fmt="%.3g", fontsize=6)
        labels = []
        for c in configs:
            d = row["configs"][c]
            labels.append("off" if c == "off" else "tcp 0" if c == "tcp0"
                          else f"{c[3:]}V/{PAPER_RUN_S}\n{d['tcp_ms']:.3g} ms")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(labels, fontsize=7)
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_yscale("log")
        fmt = FuncFormatter(lambda y, _pos: f"{y:g}")
        ax.yaxis.set_major_formatter(fmt)
        ax.yaxis.set_minor_formatter(fmt)
        ax.tick_params(axis="y", which="both", labelsize=7)
        ax.set_title(row["workload"])
        ax.set_ylabel("normalised to off")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"checkpointing into SCM: virtual time / off (median of {result['repeats']})",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"plot: {path}")


if __name__ == "__main__":
    sys.exit(main())
