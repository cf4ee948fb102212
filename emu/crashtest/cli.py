"""`emu crashtest`: its options (`add_arguments`, called by emu/cli.py) and the command
(`main`): prepare the campaign, run its points with a progress bar, write the JSON, print the
report."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from emu.args import checkpoint_spec, positive_float, positive_int
from emu.crashtest.points import points_for, selected_checkpoints
from emu.crashtest.report import report_table, summarize
from emu.crashtest.runner import METHODS, prepare, run_campaign
from vmm.errors import EXIT_USAGE, EmuError


def main(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    con = Console(stderr=True)
    client = None
    try:
        if args.point_timeout is not None and args.method != "fork":
            raise EmuError("--point-timeout bounds the fork method's points: --method rerun does not go with it")
        if args.cluster:  # before the reference: an unreachable or mismatched cluster is a usage error
            from emu.crashtest.cluster import check_workers, connect

            if args.method != "fork":
                raise EmuError("--cluster runs the fork method on its workers: --method rerun does not go with it")

            client = connect(args.cluster)
            try:
                check_workers(client)
            except EmuError:
                client.close()
                raise
        c, _ = prepare(args)
        jobs = points_for(c, args.points, args.seed, args.events_of_writeback, args.every_event_of_checkpoint,
                          args.event_stride, args.event_points)
    except EmuError as e:
        if client is not None:
            client.close()
        print(f"emu: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    rf = c.reference
    con.print(f"crashtest: campaign in [bold]{c.dir}[/]; reference: exit {rf['exit_code']}, "
              f"{rf['instructions']:,} instructions, {rf['events']} persistence events "
              f"({rf['events'] - rf['events_before_shutdown']} in the shutdown write-back), "
              f"{rf['stdout_bytes']} bytes of stdout, {rf['files']} paths; restart: {c.restart.name}; {len(jobs):,} points",
              highlight=False)
    if rf["control"]:
        con.print(f"[yellow]crashtest: warning: restarting the finished reference fails the checks ({rf['control']}): "
                  "failures below may come from the restart itself[/]", highlight=False)
    workers = args.jobs or os.cpu_count() or 1
    with Progress(TextColumn("crash points"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[failed]} failed"),
                  TimeElapsedColumn(), console=con, transient=False) as prog:
        task = prog.add_task("points", total=len(jobs), failed=0)
        nfail, ndone = [0], [0]
        t0 = time.monotonic()
        step = max(1, len(jobs) // 20)  # not a terminal (a log, CI): a line every 5 %

        def tick(p: dict[str, Any]) -> None:
            nfail[0] += not p["passed"]
            ndone[0] += 1
            prog.update(task, advance=1, failed=nfail[0])
            if not con.is_terminal and (ndone[0] % step == 0 or ndone[0] == len(jobs)):
                con.print(f"crashtest: {ndone[0]}/{len(jobs)} points, {nfail[0]} failed, "
                          f"{time.monotonic() - t0:.0f} s", highlight=False)

        if client is not None:
            from emu.crashtest.cluster import run_on_cluster

            try:
                points, retries = run_on_cluster(c, jobs, client, args.jobs or 1, tick)
            except EmuError as e:
                print(f"emu: error: {e}", file=sys.stderr)
                return 1
        else:
            points, retries = run_campaign(c, jobs, workers, tick, args.method), {}
    summary = summarize(points)
    summary.update(retries)
    doc = {"campaign": str(c.dir), "program": c.argv, "machine": str(c.machine_file), "image": str(c.start_image),
           "kernel": c.kernel, "restart": c.restart.name, "seed": args.seed, "points_requested": args.points,
           "events_of_writeback": args.events_of_writeback, "media_faults": args.media_faults, "check": args.check,
           "event_stride": args.event_stride, "event_points": args.event_points, "method": args.method, "cluster": args.cluster,
           "every_event_of_checkpoint": [ck["seq"] for ck in selected_checkpoints(c, args.every_event_of_checkpoint)],
           "reference": rf, "summary": summary, "points": points}
    out = Path(args.json) if args.json else c.dir / "crashtest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    for r in report_table(summary, points):
        con.print(r)
    o = summary["outcomes"]
    if retries:
        con.print(f"crashtest: on {retries['workers']} cluster workers in {retries['batches']} batches; "
                  f"{retries['retried_batches']} batches ({retries['retried_points']} points) rerun after a worker died",
                  highlight=False)
    con.print(f"crashtest: {summary['passed']}/{summary['tried']} points passed ({o['identical']} resumed identical, "
              f"{o['refused']} refused); {o['mismatch']} mismatches; JSON in {out}", highlight=False)
    return 0 if summary["failed"] == 0 else 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--points", type=positive_int, default=20, metavar="N", help="instruction cut points spread over the run (default 20)")
    p.add_argument("--seed", type=int, default=1, metavar="S", help="seed of the cut points' jitter (default 1; the guest's seed: --set seed=N)")
    p.add_argument("--event-points", type=int, default=0, metavar="N",
                   help="also cut at N persistence events spread over the run before its shutdown (seeded)")
    p.add_argument("--events-of-writeback", action="store_true", help="also cut at every persistence event of the shutdown write-back")
    p.add_argument("--every-event-of-checkpoint", type=int, default=0, metavar="K",
                   help="also cut at every persistence event of K checkpoints of the reference (commit and write-back)")
    p.add_argument("--event-stride", type=positive_int, default=1, metavar="S",
                   help="with --every-event-of-checkpoint: every S-th event of the page copies, all of the commit's "
                        "last lines and of the write-back (default 1: every event)")
    p.add_argument("--checkpoint", metavar="tcp=DURATION[,into=WHERE]|off", type=checkpoint_spec,
                   help="checkpointing, as emu run --checkpoint (restart then resumes from it)")
    p.add_argument("--media-faults", type=int, default=0, metavar="K",
                   help="after each cut, K seeded faults on the SCM media holding the checkpoints (bit flips in the table, "
                        "slots, metadata, data pages; torn lines; zeroed pages): the restart must resume identically or refuse")
    p.add_argument("--method", choices=METHODS, default="fork",
                   help="fork: one run forks a copy of emu at each point, which cuts, restarts and checks (default); "
                        "rerun: each point runs the program from boot to its cut")
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="run the points on a Dask cluster (tcp://HOST:PORT of its scheduler; start one with "
                        "`dask scheduler` and `dask worker ADDRESS`); --jobs is then the copies each task forks at once")
    p.add_argument("--point-timeout", type=positive_float, default=None, metavar="SECONDS",
                   help="fork method: a point still running after this is killed and reported as failed "
                        "(default: 120 s + 20x the reference run's wall time)")
    p.add_argument("--check", choices=("all", "fsck"), default="all",
                   help="what a point must pass: all (output, file tree, e2fsck; default) or fsck (only a "
                        "consistent file system after the restart: for machines that cannot resume, such as "
                        "storage.mode=memory without checkpoints, whose tree is what the cut left)")
    p.add_argument("--jobs", type=positive_int, default=None, metavar="J", help="points run in parallel (default: the CPU count)")
    p.add_argument("--json", metavar="FILE", help="write every point as JSON (default: CAMPAIGN/crashtest.json)")
    p.add_argument("--dir", metavar="DIR", help="campaign directory (default: a fresh emu-runs/crashtest-NNNN)")
    p.add_argument("--keep", choices=("all", "failed", "none"), default="failed", help="state directories to keep (default: failed points')")
    p.add_argument("--restart", default="auto", metavar="HOW",
                   help="auto (ask the kernel), cold (boot and run /bin/true), machine (Machine.run_restart) or MODULE:FUNC")
    p.add_argument("--image", metavar="PATH", help="starting image (copied; default: the default image)")
    p.add_argument("--machine", metavar="FILE", help="machine file (TOML or a resolved JSON)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a machine setting")
    p.add_argument("--level", choices=("fast", "persist", "full"), help="model level (event cuts need persist or full)")
    p.add_argument("--kernel", metavar="MODULE:CLASS", help="kernel implementation (its restart_from_state selects the restart)")
    p.add_argument("program", nargs=argparse.REMAINDER, help="-- PROGRAM [ARGS...]")
