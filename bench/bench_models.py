"""Model-level benchmark: emu at model levels fast / persist / full, and qiling, on one image.

    .venv/bin/python bench/bench_models.py [--quick] [--out bench/results/models.json]

For each workload (the foundation benchmark's three, on the default image's 2 MiB corpus, or a
512 KiB corpus with --quick) emu is run at each model level and qiling on the same binary and
input, N times interleaved (rotating order), and the median wall time is reported:

  fast     no cache model: exact instruction count only
  persist  cache model for persistent (SCM) ranges only (SCM is MMIO; DRAM pays nothing)
  full     every guest memory access goes through the C memory hook into the cache model (the
           patched libunicorn's direct callback, hw/native/unicorn/memcb.patch)
  hookonly level full's callback with a model that does nothing: the dispatch bound
  full-hooklist, hookonly-hooklist (gzip only): the same through Unicorn's hook list
           (EMU_UNICORN=memhook), i.e. before memcb.patch, side by side
  qiling   bench/qiling_runner.py under bench/.venv-qiling (as in bench_foundation.py)

Plus a small SCM workload, `/bin/pmemlog append N` (a persistent log on /dev/pmem0 written with
clwb + sfence), at every level, reporting clwb / sfence counts and SCM channel write bytes.

emu runs use bench/emu_runner.py --level L (timed: Machine construction + boot + run +
shutdown, the image copy is not timed); runner/setup helpers come from bench_foundation.py.

Targets (reported, not enforced): full >= 25 M modelled memory accesses per second of wall
time or full <= 5 x fast's wall (issue 15); persist wall <= 1.5 x fast wall on workloads that do
not touch SCM.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from bench_foundation import (  # noqa: E402  (also puts the repo root on sys.path)
    WORKLOADS, _emu_unicorn_version, ensure_qiling_venv, log, match, qiling_versions,
    rootfs_for, run_emu, run_qiling)
from images.build import default_image  # noqa: E402
from hw.cachemodel import LEVELS as MODEL_LEVELS  # noqa: E402

LEVELS = list(MODEL_LEVELS)
SCM_CHANNEL = 2                      # default_machine(): pmem0's memory channel
FULL_TARGET_MAPS = 25.0              # M accesses/s at level full,
FULL_TARGET_RATIO = 5.0              # or full wall <= this x fast wall
HOOKLIST = ["full-hooklist", "hookonly-hooklist"]  # Unicorn's hook list instead of the direct callback
PERSIST_TARGET_RATIO = 1.5           # persist wall / fast wall, programs not touching SCM


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _ch_bytes(ch: dict | None, what: str) -> int | None:
    if not ch:
        return None
    return ch.get(f"{what}.user", 0) + ch.get(f"{what}.kernel", 0)


def summarize(name: str, argv: list[str], runners: list[str], s: dict[str, list[dict]],
              scm: bool) -> dict:
    row: dict = {"workload": name, "argv": argv, "touches_scm": scm, "levels": {}}
    ref = next((x for x in s.get("fast", []) if "error" not in x), None)
    fast_med = _median([x["wall_s"] for x in s.get("fast", []) if "error" not in x])
    ql_med = _median([x["wall_s"] for x in s.get("qiling", []) if "error" not in x])
    for r in runners:
        ok = [x for x in s[r] if "error" not in x]
        med = _median([x["wall_s"] for x in ok])
        last = ok[-1] if ok else {}
        d: dict = {
            "median_s": med, "samples_s": [x["wall_s"] for x in ok],
            "median_run_s": _median([x["run_wall_s"] for x in ok if "run_wall_s" in x]),
            "error": next((x["error"] for x in s[r] if "error" in x), None),
            "exit_code": last.get("exit_code"), "stdout_bytes": last.get("stdout_bytes"),
            "stdout_sha256": last.get("stdout_sha256"),
            "over_fast": med / fast_med if med and fast_med else None,
            "over_qiling": med / ql_med if med and ql_med else None,
            "output_match_fast": (match(ref, last) if ref and last and r != "fast"
                                  else ("ref" if r == "fast" and last else "n/a")),
        }
        if r != "qiling":
            insns = last.get("instructions")
            d["instructions"] = insns
            d["mips"] = insns / med / 1e6 if insns and med else None
            cache = last.get("cache")
            if cache:
                c = cache["counters"]
                # counts are deterministic; flag it if repetitions disagree
                d["accesses_stable"] = len({x["cache"]["counters"]["accesses"] for x in ok}) == 1
                d["accesses"] = c["accesses"]
                d["maccesses_per_s"] = c["accesses"] / med / 1e6 if med else None
                d["maccesses_per_run_s"] = (c["accesses"] / d["median_run_s"] / 1e6
                                            if d["median_run_s"] else None)
                d["counters"] = c
                d["channels"] = cache["channels"]
                scm_ch = cache["channels"].get(str(SCM_CHANNEL))
                d["scm_write_bytes"] = _ch_bytes(scm_ch, "write_bytes")
                d["scm_read_bytes"] = _ch_bytes(scm_ch, "read_bytes")
        row["levels"][r] = d
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="512 KiB corpus, 1 repetition")
    ap.add_argument("--reps", type=int, help="repetitions (default 3, --quick 1)")
    ap.add_argument("--out", default=str(BENCH / "results" / "models.json"))
    ap.add_argument("--timeout", type=float, default=None,
                    help="per-run timeout in seconds (default 900, --quick 300)")
    ap.add_argument("--only", action="append", help="run only workloads containing this text")
    ap.add_argument("--no-qiling", action="store_true")
    ap.add_argument("--pmem-records", type=int, default=2000,
                    help="records for the SCM workload /bin/pmemlog append N (default 2000)")
    args = ap.parse_args()
    reps = args.reps or (1 if args.quick else 3)
    timeout = args.timeout or (300.0 if args.quick else 900.0)
    params = {"corpus_bytes": 1 << 19} if args.quick else None   # None: the default image

    log(f"image (params={params})")
    image = Path(default_image(params=params))
    ql_err = None if args.no_qiling else ensure_qiling_venv()
    rootfs = rootfs_for(image) if ql_err is None and not args.no_qiling else None
    qv = qiling_versions() if rootfs else {}

    scm_name = f"pmemlog append {args.pmem_records}"
    plan = [(n, a, LEVELS + ["qiling"] + (["hookonly"] + HOOKLIST if "gzip" in n else []), False)
            for n, a in WORKLOADS]
    plan.append((scm_name, ["/bin/pmemlog", "append", str(args.pmem_records)], LEVELS, True))
    plan = [p for p in plan if not args.only or any(o in p[0] for o in args.only)]

    samples = {p[0]: {r: [] for r in p[2]} for p in plan}
    dead: set[tuple[str, str]] = set()
    t_start = time.perf_counter()
    for rep in range(reps):
        for wi, (name, argv, runners, _scm) in enumerate(plan):
            k = (rep + wi) % len(runners)
            for r in runners[k:] + runners[:k]:
                if (name, r) in dead:
                    continue
                if r == "qiling":
                    res = ({"error": ql_err or "disabled (--no-qiling)"} if rootfs is None
                           else run_qiling(argv, rootfs, timeout))
                else:
                    res = run_emu(argv, image, timeout, level=r)
                samples[name][r].append(res)
                if "error" in res:
                    dead.add((name, r))
                acc = ((res.get("cache") or {}).get("counters") or {}).get("accesses")
                log(f"rep {rep + 1}/{reps} {name:22s} {r:7s} "
                    + (f"ERROR {res['error'][:100]}" if "error" in res else
                       f"{res['wall_s']:.3f}s" + (f"  {acc / res['wall_s'] / 1e6:.1f} M acc/s"
                                                  if acc else "")))

    rows = [summarize(n, a, rs, samples[n], scm) for n, a, rs, scm in plan]
    checks = []
    for row in rows:
        lv = row["levels"]
        full = lv.get("full", {})
        # under ~1 s of fast wall, fixed costs (construction, boot, shutdown) dominate
        short = (lv.get("fast", {}).get("median_s") or 0) < 1.0
        if full.get("maccesses_per_s") is not None:
            ratio = full.get("over_fast")
            checks.append({"workload": row["workload"], "target": f"full >= {FULL_TARGET_MAPS:g} "
                           f"M accesses/s or <= {FULL_TARGET_RATIO:g} x fast", "value": full["maccesses_per_s"],
                           "pass": full["maccesses_per_s"] >= FULL_TARGET_MAPS
                           or (ratio is not None and ratio <= FULL_TARGET_RATIO),
                           "short_run": short})
            if ratio is not None:
                checks.append({"workload": row["workload"], "target": "full / fast wall", "value": ratio,
                               "pass": None, "short_run": short})
            for full_r, hook_r, what in (("full", "hookonly", "direct callback"),
                                         ("full-hooklist", "hookonly-hooklist", "Unicorn's hook list")):
                hook = lv.get(hook_r, {}).get("median_s")
                if hook and full.get("accesses"):
                    # the same callback with a model that does nothing: the dispatch bound
                    row[f"dispatch_bound_maccesses_per_s{'' if full_r == 'full' else '_hooklist'}"] = \
                        full["accesses"] / hook / 1e6
                    checks.append({"workload": row["workload"], "target": f"dispatch bound, {what} (M "
                                   "accesses/s, no model)", "value": full["accesses"] / hook / 1e6,
                                   "pass": None, "short_run": short})
                if full_r != "full" and lv.get(full_r, {}).get("maccesses_per_s") is not None:
                    checks.append({"workload": row["workload"], "target": f"full through {what} (M "
                                   "accesses/s)", "value": lv[full_r]["maccesses_per_s"], "pass": None,
                                   "short_run": short})
        if not row["touches_scm"] and lv.get("persist", {}).get("over_fast") is not None:
            v = lv["persist"]["over_fast"]
            checks.append({"workload": row["workload"], "target": f"persist <= "
                           f"{PERSIST_TARGET_RATIO:g} x fast", "value": v,
                           "pass": v <= PERSIST_TARGET_RATIO, "short_run": short})
        sha = {lv[r].get("stdout_sha256") for r in LEVELS if r in lv}
        row["outputs_identical_across_levels"] = len(sha) == 1 and None not in sha
        checks.append({"workload": row["workload"], "target": "stdout byte-identical across "
                       "levels", "value": None, "pass": row["outputs_identical_across_levels"]})

    result = {
        "benchmark": "models",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick, "reps": reps, "timeout_s": timeout,
        "corpus_bytes": (params or {}).get("corpus_bytes", 2 << 20),
        "image": str(image), "rootfs": str(rootfs) if rootfs else None,
        "total_bench_s": time.perf_counter() - t_start,
        "host": {"platform": platform.platform(), "machine": platform.machine(),
                 "processor": platform.processor(), "cpus": os.cpu_count(),
                 "python": platform.python_version()},
        "versions": {"emu_unicorn": _emu_unicorn_version(), "qiling": qv.get("qiling"),
                     "qiling_unicorn": qv.get("unicorn"), "qiling_setup_error": ql_err},
        "wall_definition": "emu: Machine construction + boot + run + shutdown (image copy not "
                           "timed); qiling: Qiling() + ql.run(); M acc/s = cache.stats.accesses "
                           "/ median wall (maccesses_per_run_s: / Machine.run wall only)",
        "checks": checks,
        "workloads": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print_tables(result)
    print(f"results: {out}")
    return 0


def print_tables(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    def f(x, fmt="{:.3f}"):
        return "-" if x is None else fmt.format(x)

    mib = result["corpus_bytes"] / (1 << 20)
    t = Table(title=f"emu model levels (corpus {mib:g} MiB, median of {result['reps']})")
    for c in ("workload", "level", "wall s", "/fast", "/qiling", "instructions", "MIPS",
              "accesses modelled", "M acc/s", "output = fast"):
        t.add_column(c, justify="left" if c in ("workload", "level") else "right")
    notes = []
    for row in result["workloads"]:
        if row["touches_scm"]:
            continue
        for i, (r, d) in enumerate(row["levels"].items()):
            if d["error"]:
                notes.append(f"{row['workload']} / {r}: {d['error'][:160]}")
            t.add_row(row["workload"] if i == 0 else "", r,
                      f(d["median_s"]) if d["median_s"] is not None else "ERR",
                      f(d["over_fast"], "{:.2f}x"), f(d["over_qiling"], "{:.2f}x"),
                      f(d.get("instructions"), "{:,}"), f(d.get("mips"), "{:.1f}"),
                      f(d.get("accesses"), "{:,}"),
                      f(d.get("maccesses_per_s"), "{:.1f}") if r.startswith("full") else "",
                      d["output_match_fast"], end_section=(i == len(row["levels"]) - 1))
    c = Console(width=max(150, shutil.get_terminal_size((150, 24)).columns))
    c.print(t)

    scm_rows = [r for r in result["workloads"] if r["touches_scm"]]
    if scm_rows:
        t2 = Table(title="SCM workload (pmem0 on channel %d)" % SCM_CHANNEL)
        for col in ("workload", "level", "wall s", "/fast", "instructions", "accesses modelled",
                    "M acc/s", "clwb", "sfence", "SCM write bytes", "SCM read bytes",
                    "output = fast"):
            t2.add_column(col, justify="left" if col in ("workload", "level") else "right")
        for row in scm_rows:
            for i, (r, d) in enumerate(row["levels"].items()):
                if d["error"]:
                    notes.append(f"{row['workload']} / {r}: {d['error'][:160]}")
                cnt = d.get("counters") or {}
                t2.add_row(row["workload"] if i == 0 else "", r,
                           f(d["median_s"]) if d["median_s"] is not None else "ERR",
                           f(d["over_fast"], "{:.2f}x"), f(d.get("instructions"), "{:,}"),
                           f(d.get("accesses"), "{:,}"),
                           f(d.get("maccesses_per_s"), "{:.1f}") if r == "full" else "",
                           f(cnt.get("clwb"), "{:,}"), f(cnt.get("sfence"), "{:,}"),
                           f(d.get("scm_write_bytes"), "{:,}"),
                           f(d.get("scm_read_bytes"), "{:,}"), d["output_match_fast"])
        c.print(t2)

    v = result["versions"]
    c.print(f"unicorn (emu) {v['emu_unicorn']}, qiling {v['qiling']} (unicorn "
            f"{v['qiling_unicorn']})")
    for ch in result["checks"]:
        val = "" if ch["value"] is None else f" ({ch['value']:.2f})"
        short = " [dim](short run: fixed costs dominate)[/]" if ch.get("short_run") else ""
        verdict = "[cyan]MEASURED[/]" if ch["pass"] is None else ("[green]PASS[/]" if ch["pass"] else "[red]FAIL[/]")
        c.print(f"{verdict} {ch['workload']}: {ch['target']}{val}{short}")
    for n in notes:
        c.print(f"[yellow]note[/]: {n}")


if __name__ == "__main__":
    sys.exit(main())
