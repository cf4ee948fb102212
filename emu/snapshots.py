"""The snapshot commands: `emu run --snapshot-at ...`, `emu resume`, `emu snapshot info`
(the machinery is vmm/snapshot)."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from emu.args import positive_int
from vmm.errors import EmuError
from vmm.snapshot import MODES, SnapshotError, open_snapshot, restore, take


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--snapshot-at", type=positive_int, action="append", default=[], metavar="N",
                   help="snapshot the whole machine after N retired instructions (at the block boundary at or before N;"
                        " the snapshot records the exact count); repeat for a chain")
    p.add_argument("--snapshot-mode", choices=MODES, default="full",
                   help="full: every guest page (Xen); touched: pages used since boot (VirtualBox); incremental: pages"
                        " dirtied since the previous snapshot of the chain (VMware); sonic: the guest drops its caches"
                        " and hands its free pages over first (SonicShot). Default full")
    p.add_argument("--snapshot", metavar="DIR", help="where the snapshot goes (several points: DIR/01, DIR/02, ...)")
    p.add_argument("--snapshot-stop", action="store_true", help="stop the run after the last snapshot")
    p.add_argument("--snapshot-compress", choices=("none", "zstd"), default="none",
                   help="compress the memory file (default none, as the hypervisors the paper compares)")
    p.add_argument("--balloon-target", metavar="SIZE",
                   help="inflate the memory balloon to SIZE (e.g. 256M) from the start: the guest gives that much RAM back")


def balloon_pages(text: str) -> int:
    from vmm.config import parse_size

    try:
        size = parse_size(text, True, "balloon size")
    except Exception as e:  # units' own error type: a malformed size
        raise EmuError(f"--balloon-target: {e}") from None
    if size % 4096:
        raise EmuError(f"--balloon-target: {text} is not a multiple of 4 KiB")
    return size // 4096


def snapshot_dirs(args: argparse.Namespace) -> list[Path]:
    """Where each snapshot of `emu run` goes; checked before the run starts."""
    if not args.snapshot_at:
        if args.snapshot or args.snapshot_stop:
            raise EmuError("--snapshot and --snapshot-stop go with --snapshot-at N")
        return []
    if not args.snapshot:
        raise EmuError("--snapshot-at needs --snapshot DIR (where the snapshot goes)")
    points = args.snapshot_at
    if sorted(set(points)) != points:
        raise EmuError("--snapshot-at points must be given in increasing order, each once")
    base = Path(args.snapshot)
    if base.exists() and (not base.is_dir() or any(base.iterdir())):
        raise EmuError(f"{base} exists and is not an empty directory: a snapshot never overwrites")
    if len(points) == 1:
        return [base]
    return [base / f"{i + 1:02d}" for i in range(len(points))]


def run_with_snapshots(machine: Any, program: list[str], args: argparse.Namespace, dirs: list[Path]) -> Any:
    """Boot, pause at each point, snapshot, go on (or stop after the last with --snapshot-stop).
    Returns the run's result, or None when stopped."""
    ended = machine.boot(program)
    if ended is not None:
        return ended
    parent = None
    for n, where in zip(args.snapshot_at, dirs):
        result = machine.resume_run(until=n)
        if result is not None:
            how = "lost power" if result.power_failed else "ended"
            print(f"emu: the run {how} after {result.instructions:,} instructions, before snapshot point {n:,}: "
                  "no snapshot there", file=sys.stderr)
            result.snapshot_missed = True
            return result
        meta = take(machine, where, args.snapshot_mode, parent if args.snapshot_mode == "incremental" else None,
                    args.snapshot_compress)
        print(f"emu: snapshot ({meta['mode']}) at {meta['instructions']:,} instructions: {where} "
              f"({meta['pages_saved']:,} pages, {_mib(meta['files']['memory.bin']['bytes'])})", file=sys.stderr)
        parent = where
    if args.snapshot_stop:
        return None
    return machine.resume_run()


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def resolve(path: Path) -> Path:
    """A snapshot directory, or the newest of a run's numbered ones (DIR/01, DIR/02...)."""
    if (path / "meta.json").exists() or not path.is_dir():
        return path
    numbered = sorted((p for p in path.iterdir() if p.name.isdigit() and (p / "meta.json").exists()), key=lambda p: int(p.name))
    return numbered[-1] if numbered else path


def cmd_resume(args: argparse.Namespace) -> int:
    from emu.cli import report
    from vmm.config import machine_config

    snap = open_snapshot(resolve(Path(args.dir)))
    expect = None  # the snapshot's own machine, unless the user names one (then they must agree)
    if args.machine or args.set or args.level:
        expect = machine_config(args.machine, list(args.set) + ([f"model_level={args.level}"] if args.level else []))
    scratch = None
    state = Path(args.state) if args.state else None
    if state is not None:
        if state.exists() and (not state.is_dir() or any(state.iterdir())):
            raise EmuError(f"{state} exists and is not empty: emu resume writes a fresh state directory")
        state.mkdir(parents=True, exist_ok=True)
        where = state
    else:
        where = scratch = Path(tempfile.mkdtemp(prefix="emu-resume-"))
    try:
        try:
            machine, timing = restore(snap, where / "disk.img", expect, media_dir=where if state is not None else None)
        except BaseException:
            if state is not None and not any(state.iterdir()):
                state.rmdir()
            raise
        print(f"emu: resumed {snap.meta['mode']} snapshot {snap.path} at {snap.meta['instructions']:,} instructions "
              f"(restored in {timing['restore_s']:.3f} s)", file=sys.stderr)
        if state is not None:
            from vmm.config import save_resolved

            save_resolved(machine.config, state / "config.json")
        result = machine.resume_run()
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    report(args, machine, result, state)
    from vmm.errors import EXIT_POWER_FAILED

    return EXIT_POWER_FAILED if result.power_failed else result.exit_code


def cmd_snapshot_info(args: argparse.Namespace) -> int:
    from vmm.snapshot import files

    snap = open_snapshot(resolve(Path(args.dir)))
    bad: list[str] = []
    for link in snap.chain:
        for name, expect in link.meta["files"].items():
            try:
                files.check_file(link.path / name, expect)
            except files.CorruptFile as e:
                bad.append(f"{link.path.name}/{e}")
    m = snap.meta
    size = sum(f["bytes"] for f in m["files"].values())
    info = {"path": str(snap.path), "mode": m["mode"], "instructions": m["instructions"], "virtual_ns": m["virtual_ns"],
            "model_level": m["model_level"], "compression": m["compression"], "chain": [str(s.path) for s in snap.chain],
            "ram_pages": m["ram_pages"], "pages_saved": m["pages_saved"], "saved_by_kind": m["saved_by_kind"],
            "left_out_by_kind": m["left_out_by_kind"], "guest": m["guest"],
            "bytes": {name: f["bytes"] for name, f in m["files"].items()}, "total_bytes": size,
            "disk_copy": m.get("disk_copy"), "timing": m.get("timing", {}),
            "checksums": "ok" if not bad else "FAILED: " + "; ".join(bad)}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"snapshot   {info['path']}  ({m['mode']}, {m['compression']}, level {m['model_level']})")
        print(f"taken at   {m['instructions']:,} instructions, {m['virtual_ns'] / 1e9:.6f} s virtual")
        if len(snap.chain) > 1:
            print(f"chain      {' <- '.join(s.path.name for s in snap.chain)}")
        print(f"RAM        {m['ram_pages']:,} pages; saved {m['pages_saved']:,} pages")
        print("saved      " + ", ".join(f"{k} {v:,}" for k, v in m["saved_by_kind"].items()))
        if m["left_out_by_kind"]:
            print("left out   " + ", ".join(f"{k} {v:,}" for k, v in m["left_out_by_kind"].items()))
        if m["guest"]:
            print("guest      " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in m["guest"].items()))
        print("files      " + ", ".join(f"{name} {_mib(b)}" for name, b in info["bytes"].items()) + f" (disk: {info['disk_copy']})")
        print(f"checksums  {info['checksums']}")
    if bad:
        raise SnapshotError(f"{snap.path}: damaged: {'; '.join(bad)}")
    return 0
