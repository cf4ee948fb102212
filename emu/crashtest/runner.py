"""Running a campaign: the reference run (`prepare`, `make_reference`, its `control`), each
point (`run_cut`, media faults, the restart, the checks: `run_point`), in worker processes
(`run_campaign`); and the phase of each cut, from what `PhaseProbe` notes in the kernel."""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emu.args import check_image
from emu.crashtest.checks import diff_output, diff_trees, fsck, image_tree, state_digest
from emu.crashtest.ext2tree import TreeError
from emu.crashtest.restart import ColdBootRestart, _capture_console, choose_restart, kernel_class
from emu.guard import note_if_bug
from hw.blockdev import copy_image
from vmm.errors import EmuError

PHASES = ("user", "syscall", "write-back", "checkpoint")


# ----------------------------------------------------------------------------------------------
# Phase hooks


class PhaseProbe:
    """Mixin for a kernel class: records where the machine was when the power failed."""

    crash_in_syscall = False
    crash_last_syscall_icount = -1
    crash_shutdown_events: int | None = None
    crash_in_shutdown = False
    crash_in_block_write = False

    def syscall(self) -> None:
        self.crash_in_syscall = True
        # The CPU counts a block when it enters it and `syscall` ends a block, so the count here
        # includes the syscall instruction itself: a cut after exactly this many instructions
        # is a cut on the syscall.
        self.crash_last_syscall_icount = self.crash_machine.cpu.icount  # type: ignore[attr-defined]
        super().syscall()  # type: ignore[misc]
        self.crash_in_syscall = False   # not reached when PowerFailure unwinds the call

    def shutdown(self) -> None:
        cache = getattr(self.crash_machine, "cache", None)  # type: ignore[attr-defined]
        self.crash_shutdown_events = int(cache.stats.events) if cache is not None else None
        self.crash_in_shutdown = True
        super().shutdown()  # type: ignore[misc]
        self.crash_in_shutdown = False


def probed_kernel(spec: str | None, config: Any) -> Any:
    """An instance of the kernel class with PhaseProbe mixed in (same behaviour, more notes)."""
    from vmm.machine import kernel_config

    base = kernel_class(spec)
    cls = type(f"Probed{base.__name__}", (PhaseProbe, base), {})
    try:
        return cls(kernel_config(config))
    except TypeError:
        return cls()


def watch_block_writes(machine: Any) -> None:
    """Wrap the block device's write hook: note a block write while its event is counted (a
    PowerFailure raised there leaves the note set)."""
    k, orig = machine.kernel, machine.blockdev.on_write
    k.crash_machine = machine

    def on_write() -> None:
        k.crash_in_block_write = True
        orig()
        k.crash_in_block_write = False

    machine.blockdev.on_write = on_write


def classify(kind: str, at: int, result: Any, kernel: Any) -> str:
    """The phase of a cut, from what the probed kernel noted."""
    if not result.power_failed:
        return "none"
    # A checkpointing kernel says where it was: "commit" (writing and committing an image) or
    # "write-back" (the image's blocks going to storage in place).
    ck_phase = getattr(kernel, "checkpoint_phase", None)
    if ck_phase == "commit":
        return "checkpoint"
    if ck_phase == "write-back":
        return "write-back"
    if kind == "event":
        if kernel.crash_in_block_write or kernel.crash_in_shutdown:
            return "write-back"
        return "syscall" if kernel.crash_in_syscall else "user"
    return "syscall" if kernel.crash_last_syscall_icount == result.instructions else "user"


# ----------------------------------------------------------------------------------------------
# The campaign


@dataclass
class Campaign:
    dir: Path
    argv: list[str]
    kernel: str | None
    restart: ColdBootRestart
    keep: str = "failed"
    media_faults: int = 0     # faults added to the checkpoint range's media after each cut
    seed: int = 1
    point_timeout_s: float | None = None  # a fork-method point killed after this (None: from the reference)
    # "all": output, tree, e2fsck (and the exit code of a resuming restart); "fsck": only that the
    # file system is consistent after the restart (a machine that cannot resume, e.g. on DAX storage
    # without checkpoints, keeps what each completed syscall wrote: its tree is a prefix's)
    check: str = "all"
    reference: dict[str, Any] = field(default_factory=dict)
    ref_tree: dict[str, dict[str, Any]] = field(default_factory=dict)
    ref_stdout: bytes = b""
    opaque: frozenset[str] | None = None  # paths whose contents the tree check skips (tree_diff)

    @property
    def start_image(self) -> Path:
        return self.dir / "start.img"

    @property
    def machine_file(self) -> Path:
        return self.dir / "machine.json"

    def config(self) -> Any:
        from vmm.config import load_machine

        return load_machine(self.machine_file)

    def tree_diff(self, image: Path) -> list[str]:
        """A point's file tree against the reference's. The checkpoint image file (checkpoint.into
        = file:...) is the kernel's, like the SCM media: its images differ from run to run, so
        only its presence, type and size are compared."""
        if self.opaque is None:
            ck = self.config().checkpoint
            self.opaque = frozenset([ck.in_file.rstrip("/")] if ck.enabled and ck.in_file else [])
        return diff_trees(self.ref_tree, image_tree(image), self.opaque)


def sparse_copy(src: Path, dst: Path) -> None:
    """Copy a (mostly empty) image, leaving holes for zero blocks."""
    import mmap

    from vmm.machine import write_sparse

    with open(src, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        write_sparse(dst, data)


def run_cut(c: Campaign, state: Path, kind: str | None, at: int | None) -> tuple[Any, Any, bytes, bytes]:
    """Run the program on a fresh copy of the start image in `state`, cut at the point (or not)."""
    from vmm.machine import Machine

    state.mkdir(parents=True, exist_ok=True)
    copy_image(c.start_image, state / "disk.img")
    cfg = c.config()
    shutil.copyfile(c.machine_file, state / "config.json")
    k = probed_kernel(c.kernel, cfg)
    cut = {"power_fail_at": at} if kind == "instruction" else {"power_fail_at_event": at} if kind == "event" else {}
    m = Machine(state / "disk.img", cfg, kernel=k, console=_capture_console(), media_dir=state, host_durable=False,
                **cut)
    watch_block_writes(m)
    r = m.run(c.argv)
    if r.power_failed:
        (state / "report.json").write_text(json.dumps(r.power_report, indent=2) + "\n")
    return r, m, bytes(m.console.captured[1]), bytes(m.console.captured[2])


def emu_command() -> list[str]:
    exe = Path(sys.executable).with_name("emu")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "emu.cli"]


def reproduce(c: Campaign, index: int, kind: str, at: int, faults: list[dict[str, Any]] | None = None,
              media: str = "") -> list[list[str]]:
    d = (c.dir / "repro" / f"p{index:04d}").resolve()
    emu = emu_command()
    cut = ["--power-fail-at", str(at)] if kind == "instruction" else ["--power-fail-at-event", str(at)]
    kern = ["--kernel", c.kernel] if c.kernel else []
    inject = [[sys.executable, "-m", "emu.mediafaults", str(d / f"{media}.media"), json.dumps(faults)]] if faults else []
    return [
        ["rm", "-rf", str(d)],
        [*emu, "run", "--machine", str(c.machine_file.resolve()), "--image", str(c.start_image.resolve()),
         "--state", str(d), *kern, *cut, "--", *c.argv],
        *inject,
        c.restart.command(emu, d, c.argv),
    ]


def add_media_faults(c: Campaign, index: int, state: Path, m: Any) -> tuple[list[dict[str, Any]], str]:
    """After the cut: c.media_faults faults on the media of the range holding the checkpoints,
    seeded by the campaign's seed and the point (see emu/mediafaults.py)."""
    import mmap
    import random

    from emu.mediafaults import inject

    window = next(g for g in m.guest_map if g.kind == "checkpoint")
    pool = next(r for r in m.physmem.ranges if r.spec.name == window.pool)
    first_hpfn = pool.spec.base_hpa >> 12
    page_map = [m.ept.hpfn((window.base_gpa >> 12) + i) - first_hpfn for i in range(window.size_bytes >> 12)]
    with open(state / f"{window.pool}.media", "r+b") as f, mmap.mmap(f.fileno(), 0) as media:
        faults = inject(media, pool.buffer, c.media_faults, random.Random(f"{c.seed}:{index}"), page_map=page_map)
    return faults, window.pool


def new_point(c: Campaign, index: int, kind: str, at: int) -> tuple[dict[str, Any], Path]:
    """A point's record before its cut, and its state directory."""
    state = c.dir / "points" / f"p{index:04d}-{kind[0]}{at}"
    p: dict[str, Any] = {"index": index, "cut": {"kind": kind, "at": at}, "phase": "none", "passed": False,
                         "outcome": "mismatch", "reasons": [], "state_dir": str(state.resolve()),
                         "reproduce": [shlex.join(cmd) for cmd in reproduce(c, index, kind, at)]}
    return p, state


def run_point(c: Campaign, index: int, kind: str, at: int) -> dict[str, Any]:
    """One point from boot (the rerun method): cut, (media faults,) restart, check."""
    p, state = new_point(c, index, kind, at)
    return finish_point(c, p, state, lambda: run_cut(c, state, kind, at)[:3])


def finish_point(c: Campaign, p: dict[str, Any], state: Path, cut: Callable[[], tuple[Any, Any, bytes]]) -> dict[str, Any]:
    """A point from its cut on: `cut()` gives the run cut at the point (its result, its machine
    and the stdout shown before the cut) with what survived in `state`; then media faults, the
    restart and the checks. Never raises for what the machine does.

    Outcomes: "identical" (every check passed), "refused" (the restart refused to resume and
    changed nothing: a pass only when media faults were added), "mismatch" (a failure)."""
    from vmm.errors import RestartRefusedError

    index, kind, at = p["index"], p["cut"]["kind"], p["cut"]["at"]
    reasons: list[str] = p["reasons"]
    pre_out = b""
    try:
        r, m, pre_out = cut()
        p.update(phase=classify(kind, at, r, m.kernel), power_failed=r.power_failed, instructions=r.instructions,
                 event=r.power_report.get("fail_at_event") or r.power_report.get("events"),
                 stdout_before_cut=len(pre_out))
        if not r.power_failed:
            reasons.append("the power was never cut (the run ended first)")
        elif c.media_faults:
            faults, media = add_media_faults(c, index, state, m)
            p["faults"] = faults
            p["reproduce"] = [shlex.join(cmd) for cmd in reproduce(c, index, kind, at, faults, media)]
    except Exception as e:  # noqa: BLE001  (a kernel panic and the like: a finding, not a crash of the tool)
        note_if_bug(f"crashtest point {index}: cut run", e)
        reasons.append(f"cut run: {type(e).__name__}: {e}")
    post_out = b""
    # A refused restart must change nothing: known only by comparing (a cold boot never refuses).
    # On intact media a refusal fails the point anyway: the digest (a fifth of a point's work on
    # a 60 MiB image) is taken only when media faults can make refusing right.
    before = state_digest(state) if c.media_faults and state.is_dir() and c.restart.resumes else ""
    try:
        post_out, _, code = c.restart(state, c.argv, c.config())
        p.update(stdout_after_restart=len(post_out), restart_exit_code=code)
        if c.restart.resumes and code != c.reference["exit_code"]:
            reasons.append(f"exit code {code} instead of {c.reference['exit_code']}")
    except RestartRefusedError as e:
        p["refused"] = str(e)
        if not c.media_faults:
            reasons.append(f"restart refused on intact media: {e}")
        if before and state_digest(state) != before:
            reasons.append("a refused restart changed the state directory")
        return _close_point(c, p, state, "refused" if not reasons else "mismatch")
    except Exception as e:  # noqa: BLE001  (a restart that cannot mount what the cut left is a finding)
        note_if_bug(f"crashtest point {index}: restart", e)
        reasons.append(f"restart: {type(e).__name__}: {e}")
    checks = {}
    if c.check == "all":
        why = diff_output(c.ref_stdout, pre_out + post_out)
        checks["stdout"] = why is None
        if why:
            reasons.append(why)
        try:
            diffs = c.tree_diff(state / "disk.img")
            checks["tree"] = not diffs
            if diffs:
                reasons.append(f"tree: {diffs[0]}" + (f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else ""))
        except TreeError as e:  # (without the image's path: a point's reasons name no directory)
            checks["tree"] = False
            reasons.append(f"tree: {e.why}")
    why = fsck(state / "disk.img")
    checks["fsck"] = why is None
    if why:
        reasons.append(why)
    p["checks"] = checks
    return _close_point(c, p, state, "identical" if not reasons else "mismatch")


def _close_point(c: Campaign, p: dict[str, Any], state: Path, outcome: str) -> dict[str, Any]:
    reasons = p["reasons"]
    p["outcome"] = outcome
    p["passed"] = not reasons
    p["reason"] = reasons[0] if reasons else None
    if c.keep == "none" or (c.keep == "failed" and p["passed"]):
        shutil.rmtree(state, ignore_errors=True)
        p["state_dir"] = None
    return p


_WORKER: Campaign | None = None


def _init_worker(c: Campaign) -> None:
    global _WORKER
    _WORKER = c


def _work(job: tuple[int, str, int]) -> dict[str, Any]:
    assert _WORKER is not None
    return run_point(_WORKER, *job)


METHODS = ("fork", "rerun")


def run_campaign(c: Campaign, jobs: list[tuple[int, str, int]], workers: int,
                 progress: Callable[[dict[str, Any]], None] | None = None, method: str = "fork") -> list[dict[str, Any]]:
    """Every point: by the fork server (one run forks at each point: forkserver.py) or by
    re-running each point from boot in `workers` processes ("rerun")."""
    if method == "fork":
        from emu.crashtest.forkserver import ForkServer

        return ForkServer(c, jobs, workers, progress).run()
    results: list[dict[str, Any]] = []
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            results.append(run_point(c, *job))
            if progress:
                progress(results[-1])
    else:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(min(workers, len(jobs)), _init_worker, (c,)) as pool:
            for p in pool.imap_unordered(_work, jobs):
                results.append(p)
                if progress:
                    progress(p)
    return sorted(results, key=lambda p: p["index"])


def new_campaign_dir() -> Path:
    base = Path("emu-runs")
    base.mkdir(exist_ok=True)
    nums = [int(p.name.split("-")[1]) for p in base.glob("crashtest-*") if p.name.split("-")[1].isdigit()]
    return base / f"crashtest-{1 + max(nums, default=0):04d}"


def prepare(args: argparse.Namespace) -> tuple[Campaign, Any]:
    """Check the options, make the campaign directory, run the reference."""
    from vmm.config import machine_config
    from images.build import ImageError, default_image

    argv = list(args.program)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise EmuError("nothing to run: give a program after --, e.g. emu crashtest -- /bin/sh -c 'echo x > /tmp/f'")
    overrides = list(args.set) + ([f"model_level={args.level}"] if args.level else []) + (args.checkpoint or [])
    cfg = machine_config(args.machine, overrides)
    if (args.events_of_writeback or args.every_event_of_checkpoint or args.event_points) and cfg.model_level == "fast":
        raise EmuError("cutting at persistence events (--event-points, --events-of-writeback, --every-event-of-checkpoint) needs a cache model: use --level persist or full")
    if args.every_event_of_checkpoint and not cfg.checkpoint.enabled:
        raise EmuError("--every-event-of-checkpoint needs checkpointing on (--checkpoint tcp=...)")
    if args.media_faults and not cfg.checkpoint.enabled:
        raise EmuError("--media-faults damages the checkpoint images: it needs checkpointing on (--checkpoint tcp=...)")
    if args.media_faults and cfg.checkpoint.in_file:
        raise EmuError("--media-faults damages the SCM range's media; with the images in a file (checkpoint.into="
                       f"{cfg.checkpoint.into}) it has nothing to damage yet")
    if cfg.disks:
        raise EmuError("crash campaigns on a machine with extra disks ([[disk]]) are not supported yet: every "
                       "point would write the same disk image")
    restart = choose_restart(args.kernel, args.restart, cfg)
    if args.image:
        base = Path(args.image)
        check_image(base)
    else:
        try:
            base = default_image()
        except ImageError as e:
            raise EmuError(str(e)) from None
    d = Path(args.dir) if args.dir else new_campaign_dir()
    if d.exists() and (not d.is_dir() or any(d.iterdir())):
        raise EmuError(f"campaign directory {d} exists and is not empty")
    created = not d.exists()
    d.mkdir(parents=True, exist_ok=True)
    try:
        return make_reference(Campaign(d, argv, args.kernel, restart, keep=args.keep, media_faults=args.media_faults,
                                       seed=args.seed, point_timeout_s=args.point_timeout, check=args.check),
                              base, cfg)
    except BaseException:
        # nothing of a campaign that never started
        for q in [d] if created else list(d.iterdir()):
            shutil.rmtree(q, ignore_errors=True) if q.is_dir() else q.unlink(missing_ok=True)
        raise


def make_reference(c: Campaign, base: Path, cfg: Any) -> tuple[Campaign, Any]:
    from vmm.config import save_resolved

    d, argv = c.dir, c.argv
    sparse_copy(base, c.start_image)
    save_resolved(cfg, c.machine_file)
    r, m, out, err = run_cut(c, d / "reference", None, None)
    if r.exit_code in (126, 127) and r.instructions == 0:
        raise EmuError(err.decode(errors="replace").strip().removeprefix("emu: ") or f"cannot run {argv[0]}")
    k = m.kernel
    events = int(m.cache.stats.events) if m.cache is not None else 0
    before = k.crash_shutdown_events if k.crash_shutdown_events is not None else events
    ck = getattr(k, "checkpointer", None)
    spans = list(ck.spans) if ck is not None else []
    c.ref_stdout = out
    c.ref_tree = image_tree(d / "reference" / "disk.img")
    c.reference = {"exit_code": r.exit_code, "instructions": r.instructions, "events": events, "wall_s": r.wall_s,
                   "events_before_shutdown": before, "stdout": out.decode(errors="backslashreplace"),
                   "stdout_bytes": len(out), "stderr": err.decode(errors="backslashreplace"),
                   "files": len(c.ref_tree), "state_dir": str(d / "reference"),
                   "checkpoints": [{"seq": sp[0], "first_event": sp[1], "last_event": sp[2], "blocks": sp[3]}
                                   for sp in spans]}
    (d / "reference" / "tree.json").write_text(json.dumps(c.ref_tree, indent=1, sort_keys=True) + "\n")
    c.reference["control"] = control(c)
    return c, r


def control(c: Campaign) -> str | None:
    """The restart applied to the finished reference (nothing cut) must pass every check, or the
    checks cannot tell a lost write from what the restart itself changes. None: it passes."""
    state = c.dir / "control"
    shutil.copytree(c.dir / "reference", state)
    try:
        out, _, _ = c.restart(state, c.argv, c.config())
        why = diff_output(c.ref_stdout, c.ref_stdout + out) if c.check == "all" else None
        diffs = c.tree_diff(state / "disk.img") if c.check == "all" else []
        why = why or (f"tree: {diffs[0]}" if diffs else None) or fsck(state / "disk.img")
    except Exception as e:  # noqa: BLE001  (reported as a warning)
        note_if_bug("crashtest control restart", e)
        why = f"{type(e).__name__}: {e}"
    if why is None:
        shutil.rmtree(state, ignore_errors=True)
    return why
