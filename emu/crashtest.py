"""Crash campaigns: cut the power at many points of one program's run, restart, and check that
nothing visible was lost.

    emu crashtest [--points N] [--seed S] [--events-of-writeback] [--jobs J] [--json FILE]
                  [--dir DIR] [--keep all|failed|none] [--restart auto|cold|machine|MODULE:FUNC]
                  [--image PATH] [--machine FILE] [--set KEY=VALUE] [--level L] [--kernel M:C]
                  -- PROGRAM [ARGS...]

1. Reference: the program runs once to completion on a fresh copy of the starting image (the
   campaign directory, default `emu-runs/crashtest-NNNN`, keeps that copy as `start.img`, the
   resolved machine as `machine.json`, the reference run in `reference/`). Recorded: stdout,
   stderr, exit code, instructions, persistence events (and how many of them came before the
   shutdown write-back), and the final file tree of the image (path, type, mode, size, sha256 of
   the content, symlink target).
2. Cut points: N instruction counts spread over the whole run (even spacing, seeded jitter inside
   each slot: the same seed gives the same points), plus, with --events-of-writeback, every
   persistence event after the last one of the instruction phase (the shutdown write-back: cuts
   land inside the kernel's page-cache write-back).
3. Each point: a fresh state directory (a copy of start.img), a run cut at the point, then a
   RESTART (below), then the checks: console stdout before the cut + stdout after the restart ==
   the reference's byte for byte; the final file tree == the reference's; `e2fsck -fn` clean; and,
   for a resuming restart, the exit code == the reference's.
4. Each point gets a phase: `user` (an instruction cut on a user instruction), `syscall` (the
   cut instruction was a `syscall`, or an event cut landed while the kernel served one),
   `write-back` (an event cut on a block write, or anywhere in the shutdown write-back) and
   `checkpoint` (an event cut while the kernel says it is writing a checkpoint; see below).

The restart plug
----------------
A restart is a callable `restart(state_dir, argv, config) -> (stdout, stderr, exit_code)` that
brings the machine back up from what a power cut left in `state_dir` (disk.img, <range>.media) and
runs it to completion. `choose_restart` asks the kernel class:

- it has `restart_from_state` (a checkpointing kernel): `MachineRestart` builds a Machine on the
  state directory and calls `machine.run_restart(argv)`, which must return a RunResult after the
  kernel resumed the checkpointed processes (and ran them to their end and shut down);
- otherwise `ColdBootRestart`: a cold boot that mounts the file system, runs `/bin/true` and
  shuts down (`emu run --state DIR -- /bin/true`). A machine without checkpointing cannot resume
  anything, so every cut before the program's work is on storage shows up as a failure: that is
  what this tool should report today.

`--restart MODULE:FUNC` plugs in any other callable with that signature. Before the points, the
restart is applied to the finished reference as a control: it must pass every check (a warning
otherwise). Each point's JSON entry carries the commands that reproduce it: `rm -rf DIR`, the cut
(`emu run --machine CAMPAIGN/machine.json --image CAMPAIGN/start.img --state DIR
--power-fail-at N -- PROGRAM...`), and the restart (`emu run --state DIR -- /bin/true` for a cold
boot, else `python -m emu.crashtest restart --state DIR --restart HOW -- PROGRAM...`).

State directories of the points are kept under CAMPAIGN/points (--keep: all, failed, none).

Media faults
------------
`--media-faults K` adds, after each cut and before the restart, K seeded faults to the SCM media
that holds the checkpoint images (emu/mediafaults.py: bit flips in the table, a slot, metadata or
data pages, a torn line, a zeroed page). The oracle: the restart resumes and every check passes
("resumed identical"), or it refuses (`RestartRefusedError`, exit 65) and leaves the state
directory byte for byte as it was ("refused"); anything else is a silent mismatch, a failure.
Without media faults a refusal is a failure too. Each point records its faults, and its
reproducing commands apply them again (`python -m emu.mediafaults MEDIA FAULTS_JSON`).

Phases from the kernel: `PhaseProbe` is mixed into the kernel class (the default
`guestkernel.kernel.Kernel` or --kernel's) and notes the instruction count of every syscall,
whether a syscall is being served and the event count when shutdown begins; the block device's
`on_write` hook is wrapped to note a block write in progress. A checkpointing kernel's
`checkpoint_phase` ("commit" while it writes and commits an image, "write-back" while the image's
blocks go to storage in place) classifies its cuts `checkpoint` and `write-back`; its
`checkpointer.spans` (seq, first event, last event, blocks) let --every-event-of-checkpoint K cut
at every persistence event of K of the reference's checkpoints.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emu.args import check_image, checkpoint_spec, positive_int
from vmm.errors import EXIT_USAGE, EmuError

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


def kernel_class(spec: str | None) -> type:
    """The class `--kernel MODULE:CLASS` names, or the default kernel's."""
    from vmm.machine import DEFAULT_KERNEL, load_spec

    return load_spec(spec or DEFAULT_KERNEL, "kernel", "--kernel wants MODULE:CLASS")


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
# Restart implementations


def _capture_console() -> Any:
    from hw.console import Console

    return Console(None, None, capture=True)


def machine_on_state(state_dir: Path, config: Any, kernel: str | None = None) -> Any:
    """A Machine over what a state directory holds (its disk.img and SCM media), nothing cut."""
    from vmm.machine import Machine, load_kernel

    state_dir = Path(state_dir)
    k = load_kernel(kernel, config) if kernel else None
    return Machine(state_dir / "disk.img", config, kernel=k, console=_capture_console(), media_dir=state_dir)


@dataclass
class ColdBootRestart:
    """No checkpointing: boot cold, mount, run /bin/true, shut down. Nothing is resumed."""

    kernel: str | None = None
    name: str = "cold-boot"
    resumes: bool = False

    def __call__(self, state_dir: Path, argv: list[str], config: Any) -> tuple[bytes, bytes, int]:
        m = machine_on_state(state_dir, config, self.kernel)
        r = m.run(["/bin/true"])
        return bytes(m.console.captured[1]), bytes(m.console.captured[2]), r.exit_code

    def command(self, emu: list[str], state_dir: Path, argv: list[str]) -> list[str]:
        return [*emu, "run", "--state", str(state_dir), *self._kernel_opt(), "--", "/bin/true"]

    def _kernel_opt(self) -> list[str]:
        return ["--kernel", self.kernel] if self.kernel else []


@dataclass
class MachineRestart(ColdBootRestart):
    """A checkpointing kernel: the machine resumes the checkpointed processes."""

    name: str = "machine"
    resumes: bool = True

    def __call__(self, state_dir: Path, argv: list[str], config: Any) -> tuple[bytes, bytes, int]:
        m = machine_on_state(state_dir, config, self.kernel)
        run_restart = getattr(m, "run_restart", None)
        if run_restart is None:
            raise EmuError("the kernel has restart_from_state but Machine has no run_restart(argv)")
        r = run_restart(argv)
        return bytes(m.console.captured[1]), bytes(m.console.captured[2]), r.exit_code

    def command(self, emu: list[str], state_dir: Path, argv: list[str]) -> list[str]:
        return [*emu, "restart", str(state_dir), *self._kernel_opt()]


@dataclass
class PluggedRestart(ColdBootRestart):
    """`--restart MODULE:FUNC`: any callable restart(state_dir, argv, config)."""

    spec: str = ""
    name: str = "plugged"
    resumes: bool = True

    def __call__(self, state_dir: Path, argv: list[str], config: Any) -> tuple[bytes, bytes, int]:
        from vmm.machine import load_spec

        out, err, code = load_spec(self.spec, "restart", "--restart wants MODULE:FUNC")(state_dir, argv, config)
        return bytes(out), bytes(err), int(code)

    def command(self, emu: list[str], state_dir: Path, argv: list[str]) -> list[str]:
        return restart_command(state_dir, argv, self.spec, self.kernel)


def restart_command(state_dir: Path, argv: list[str], how: str, kernel: str | None) -> list[str]:
    """The command line of a restart: `python -m emu.crashtest restart ...` (see restart_main)."""
    return [sys.executable, "-m", "emu.crashtest", "restart", "--state", str(state_dir), "--restart", how,
            *(["--kernel", kernel] if kernel else []), "--", *argv]


def restart_main(argv: list[str] | None = None) -> int:
    """`python -m emu.crashtest restart --state DIR [--restart HOW] [--kernel M:C] -- PROGRAM...`:
    one restart from a state directory, its output on stdout/stderr, its exit code as ours."""
    from vmm.config import load_machine

    ap = argparse.ArgumentParser(prog="python -m emu.crashtest")
    ap.add_argument("what", choices=("restart",))
    ap.add_argument("--state", required=True)
    ap.add_argument("--restart", default="auto")
    ap.add_argument("--kernel")
    ap.add_argument("program", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    prog = a.program[1:] if a.program[:1] == ["--"] else a.program
    try:
        state = Path(a.state)
        cfg = load_machine(state / "config.json")
        out, err, code = choose_restart(a.kernel, a.restart, cfg)(state, prog, cfg)
    except EmuError as e:
        print(f"emu: error: {e}", file=sys.stderr)
        return getattr(e, "exit_status", EXIT_USAGE)
    sys.stdout.buffer.write(out)
    sys.stderr.buffer.write(err)
    return code


def choose_restart(kernel: str | None, how: str = "auto", config: Any = None) -> ColdBootRestart:
    """auto: a machine with checkpointing on whose kernel class has restart_from_state resumes
    (MachineRestart); anything else boots cold (ColdBootRestart)."""
    if how == "cold":
        return ColdBootRestart(kernel)
    if how == "machine":
        return MachineRestart(kernel)
    if how != "auto":
        from vmm.machine import load_spec

        func = load_spec(how, "restart", "--restart wants auto, cold, machine or MODULE:FUNC")
        if not callable(func):
            raise EmuError(f"cannot load restart {how!r}: {how.partition(':')[2]} is not callable")
        return PluggedRestart(kernel, name=how, spec=how)
    checkpointing = config is None or config.checkpoint.enabled
    if checkpointing and callable(getattr(kernel_class(kernel), "restart_from_state", None)):
        return MachineRestart(kernel)
    return ColdBootRestart(kernel)


# ----------------------------------------------------------------------------------------------
# File trees and their comparison


def host_tree(root: Path) -> dict[str, dict[str, Any]]:
    """Every path under `root` (as '/a/b'), with type, permission bits, size, sha256 of a file's
    content and a symlink's target. Directory sizes are not compared (0)."""
    tree: dict[str, dict[str, Any]] = {}
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = os.lstat(p)
            rel = "/" + p.relative_to(root).as_posix()
            e: dict[str, Any] = {"mode": stat.S_IMODE(st.st_mode), "size": 0}
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(p)
                e.update(type="symlink", target=target, size=len(os.fsencode(target)))
            elif stat.S_ISDIR(st.st_mode):
                e["type"] = "dir"
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                e.update(type="file", size=st.st_size, sha256=h.hexdigest())
            else:
                e.update(type="other", rdev=st.st_rdev)
            tree[rel] = e
    return tree


def image_tree(image: Path) -> dict[str, dict[str, Any]]:
    """The file tree of an ext2 image (extracted with debugfs into a scratch directory)."""
    from images.build import ImageError, extract

    with tempfile.TemporaryDirectory(prefix="emu-crashtest-tree-") as td:
        try:
            root = extract(Path(image), "/", Path(td) / "root")
        except (ImageError, OSError, subprocess.SubprocessError) as e:
            raise EmuError(f"cannot read the file tree of {image}: {e}") from None
        return host_tree(root)


def diff_trees(ref: dict[str, dict[str, Any]], got: dict[str, dict[str, Any]]) -> list[str]:
    """The differences, one line each, in path order (the first is the first differing path)."""
    out: list[str] = []
    for path in sorted(set(ref) | set(got)):
        a, b = ref.get(path), got.get(path)
        if b is None:
            out.append(f"{path}: missing ({a['type']})")  # type: ignore[index]
        elif a is None:
            out.append(f"{path}: unexpected {b['type']}")
        elif a["type"] != b["type"]:
            out.append(f"{path}: {b['type']} instead of {a['type']}")
        elif a["mode"] != b["mode"]:
            out.append(f"{path}: mode {b['mode']:04o} instead of {a['mode']:04o}")
        elif a.get("target") != b.get("target"):
            out.append(f"{path}: symlink to {b.get('target')!r} instead of {a.get('target')!r}")
        elif a["size"] != b["size"]:
            out.append(f"{path}: {b['size']} bytes instead of {a['size']}")
        elif a.get("sha256") != b.get("sha256"):
            out.append(f"{path}: content differs")
        elif a.get("rdev") != b.get("rdev"):
            out.append(f"{path}: device differs")
    return out


def diff_output(ref: bytes, got: bytes) -> str | None:
    """None if equal, else a one-line description."""
    if ref == got:
        return None
    i = next((i for i, (x, y) in enumerate(zip(ref, got)) if x != y), min(len(ref), len(got)))
    return f"stdout: {len(got)} bytes instead of {len(ref)}, first difference at byte {i}"


def fsck(image: Path) -> str | None:
    """None if `e2fsck -fn` is clean, else a one-line description."""
    try:
        r = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"e2fsck: {e}"
    if r.returncode == 0:
        return None
    lines = [ln.strip() for ln in (r.stdout + r.stderr).splitlines()
             if ln.strip() and not ln.startswith(("e2fsck ", "Pass ", "Warning!"))]
    return f"e2fsck -fn: exit {r.returncode}" + (f": {lines[0]}" if lines else "")


def sparse_copy(src: Path, dst: Path) -> None:
    """Copy a (mostly empty) image, leaving holes for zero blocks."""
    chunk = 1 << 16
    zero = bytes(chunk)
    with open(src, "rb") as f, open(dst, "wb") as g:
        size = os.fstat(f.fileno()).st_size
        while True:
            b = f.read(chunk)
            if not b:
                break
            if b == zero[: len(b)]:
                g.seek(len(b), os.SEEK_CUR)
            else:
                g.write(b)
        g.truncate(size)


# ----------------------------------------------------------------------------------------------
# Cut points


def instruction_points(total: int, n: int, seed: int) -> list[int]:
    """n cut points over instructions 1..total: one per equal slot, at a seeded random place in
    it (deterministic for a seed), distinct and sorted."""
    if total <= 0 or n <= 0:
        return []
    rng = random.Random(seed)
    n = min(n, total)
    pts = []
    for i in range(n):
        lo = 1 + i * total // n
        hi = (i + 1) * total // n
        pts.append(rng.randint(lo, max(lo, hi)))
    return sorted(set(pts))


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
    reference: dict[str, Any] = field(default_factory=dict)
    ref_tree: dict[str, dict[str, Any]] = field(default_factory=dict)
    ref_stdout: bytes = b""

    @property
    def start_image(self) -> Path:
        return self.dir / "start.img"

    @property
    def machine_file(self) -> Path:
        return self.dir / "machine.json"

    def config(self) -> Any:
        from vmm.config import load_machine

        return load_machine(self.machine_file)


def run_cut(c: Campaign, state: Path, kind: str | None, at: int | None) -> tuple[Any, Any, bytes, bytes]:
    """Run the program on a fresh copy of the start image in `state`, cut at the point (or not)."""
    from vmm.machine import Machine

    state.mkdir(parents=True, exist_ok=True)
    sparse_copy(c.start_image, state / "disk.img")
    cfg = c.config()
    shutil.copyfile(c.machine_file, state / "config.json")
    k = probed_kernel(c.kernel, cfg)
    cut = {"power_fail_at": at} if kind == "instruction" else {"power_fail_at_event": at} if kind == "event" else {}
    m = Machine(state / "disk.img", cfg, kernel=k, console=_capture_console(), media_dir=state, **cut)
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


def state_digest(state: Path) -> str:
    """One hash of every file in a state directory (a refused restart must change none)."""
    h = hashlib.sha256()
    for f in sorted(state.iterdir()):
        if f.is_file():
            h.update(f.name.encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def run_point(c: Campaign, index: int, kind: str, at: int) -> dict[str, Any]:
    """One point: cut, (media faults,) restart, check. Never raises for what the machine does.

    Outcomes: "identical" (every check passed), "refused" (the restart refused to resume and
    changed nothing: a pass only when media faults were added), "mismatch" (a failure)."""
    from vmm.errors import RestartRefusedError

    state = c.dir / "points" / f"p{index:04d}-{kind[0]}{at}"
    p: dict[str, Any] = {"index": index, "cut": {"kind": kind, "at": at}, "phase": "none", "passed": False,
                         "outcome": "mismatch", "reasons": [], "state_dir": str(state.resolve()),
                         "reproduce": [shlex.join(cmd) for cmd in reproduce(c, index, kind, at)]}
    reasons: list[str] = p["reasons"]
    pre_out = b""
    try:
        r, m, pre_out, _ = run_cut(c, state, kind, at)
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
        reasons.append(f"cut run: {type(e).__name__}: {e}")
    post_out = b""
    before = state_digest(state) if state.is_dir() else ""
    try:
        post_out, _, code = c.restart(state, c.argv, c.config())
        p.update(stdout_after_restart=len(post_out), restart_exit_code=code)
        if c.restart.resumes and code != c.reference["exit_code"]:
            reasons.append(f"exit code {code} instead of {c.reference['exit_code']}")
    except RestartRefusedError as e:
        p["refused"] = str(e)
        if not c.media_faults:
            reasons.append(f"restart refused on intact media: {e}")
        if state_digest(state) != before:
            reasons.append("a refused restart changed the state directory")
        return _finish_point(c, p, state, "refused" if not reasons else "mismatch")
    except Exception as e:  # noqa: BLE001  (a restart that cannot mount what the cut left is a finding)
        reasons.append(f"restart: {type(e).__name__}: {e}")
    checks = {}
    why = diff_output(c.ref_stdout, pre_out + post_out)
    checks["stdout"] = why is None
    if why:
        reasons.append(why)
    try:
        diffs = diff_trees(c.ref_tree, image_tree(state / "disk.img"))
        checks["tree"] = not diffs
        if diffs:
            reasons.append(f"tree: {diffs[0]}" + (f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else ""))
    except EmuError as e:
        checks["tree"] = False
        reasons.append(f"tree: {e}")
    why = fsck(state / "disk.img")
    checks["fsck"] = why is None
    if why:
        reasons.append(why)
    p["checks"] = checks
    return _finish_point(c, p, state, "identical" if not reasons else "mismatch")


def _finish_point(c: Campaign, p: dict[str, Any], state: Path, outcome: str) -> dict[str, Any]:
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
    if (args.events_of_writeback or args.every_event_of_checkpoint) and cfg.model_level == "fast":
        raise EmuError("cutting at persistence events (--events-of-writeback, --every-event-of-checkpoint) needs a cache model: use --level persist or full")
    if args.every_event_of_checkpoint and not cfg.checkpoint.enabled:
        raise EmuError("--every-event-of-checkpoint needs checkpointing on (--checkpoint tcp=...)")
    if args.media_faults and not cfg.checkpoint.enabled:
        raise EmuError("--media-faults damages the checkpoint images: it needs checkpointing on (--checkpoint tcp=...)")
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
                                       seed=args.seed), base, cfg)
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
    c.reference = {"exit_code": r.exit_code, "instructions": r.instructions, "events": events,
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
        why = diff_output(c.ref_stdout, c.ref_stdout + out)
        diffs = diff_trees(c.ref_tree, image_tree(state / "disk.img"))
        why = why or (f"tree: {diffs[0]}" if diffs else None) or fsck(state / "disk.img")
    except Exception as e:  # noqa: BLE001  (reported as a warning)
        why = f"{type(e).__name__}: {e}"
    if why is None:
        shutil.rmtree(state, ignore_errors=True)
    return why


def selected_checkpoints(c: Campaign, k: int) -> list[dict[str, Any]]:
    """The k checkpoints whose every event is a cut point. Preferred: checkpoints that also write
    blocks back (their cuts cover the commit and the write-back); among those no more than twice
    the size of the smallest, the ones writing the most blocks; then the smallest of the rest."""
    cks = [ck for ck in c.reference.get("checkpoints", []) if ck["last_event"] >= ck["first_event"]]
    size = lambda ck: ck["last_event"] - ck["first_event"] + 1  # noqa: E731
    with_blocks = [ck for ck in cks if ck["blocks"]]
    smallest = min((size(ck) for ck in with_blocks), default=0)
    preferred = sorted((ck for ck in with_blocks if size(ck) <= 2 * smallest),
                       key=lambda ck: (-ck["blocks"], size(ck), ck["seq"]))
    rest = sorted((ck for ck in cks if ck not in preferred), key=lambda ck: (size(ck), ck["seq"]))
    return sorted((preferred + rest)[:k], key=lambda ck: ck["seq"])


def points_for(c: Campaign, n: int, seed: int, writeback: bool, checkpoints: int = 0,
               stride: int = 1) -> list[tuple[int, str, int]]:
    """Instruction points, then persistence events. `stride` thins a checkpoint's page copies
    (every stride-th event) but keeps its last events whole: the slot lines that commit it, the
    generation notes and every block written back."""
    ref = c.reference
    jobs = [("instruction", at) for at in instruction_points(ref["instructions"], n, seed)]
    events: set[int] = set()
    if writeback:
        events.update(range(ref["events_before_shutdown"] + 1, ref["events"] + 1))
    for ck in selected_checkpoints(c, checkpoints):
        first, last = ck["first_event"], ck["last_event"]
        tail = last - (ck["blocks"] + 8)
        events.update(e for e in range(first, last + 1) if e > tail or (e - first) % stride == 0)
    jobs += [("event", e) for e in sorted(events)]
    return [(i + 1, kind, at) for i, (kind, at) in enumerate(jobs)]


def run_campaign(c: Campaign, jobs: list[tuple[int, str, int]], workers: int,
                 progress: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
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


OUTCOMES = ("identical", "refused", "mismatch")


def summarize(points: list[dict[str, Any]]) -> dict[str, Any]:
    def row() -> dict[str, int]:
        return {"tried": 0, "passed": 0, "failed": 0, **{o: 0 for o in OUTCOMES}}

    by: dict[str, dict[str, int]] = {ph: row() for ph in PHASES}
    for p in points:
        r = by.setdefault(p["phase"], row())
        r["tried"] += 1
        r["passed" if p["passed"] else "failed"] += 1
        r[p.get("outcome", "mismatch")] += 1
    passed = sum(p["passed"] for p in points)
    outcomes = {o: sum(p.get("outcome") == o for p in points) for o in OUTCOMES}
    return {"tried": len(points), "passed": passed, "failed": len(points) - passed, "outcomes": outcomes, "by_phase": by}


def report_table(summary: dict[str, Any], points: list[dict[str, Any]]) -> list[Any]:
    from rich.table import Table

    t = Table(title="crash campaign", title_justify="left")
    for col, just in (("phase", "left"), ("tried", "right"), ("passed", "right"), ("failed", "right"),
                      ("resumed identical", "right"), ("refused", "right"), ("mismatch", "right")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for ph, row in summary["by_phase"].items():
        t.add_row(ph, str(row["tried"]), str(row["passed"]), f"[red]{row['failed']}[/]" if row["failed"] else "0",
                  str(row["identical"]), str(row["refused"]), f"[red]{row['mismatch']}[/]" if row["mismatch"] else "0")
    t.add_section()
    o = summary["outcomes"]
    t.add_row("[bold]all", f"[bold]{summary['tried']}", f"[bold]{summary['passed']}",
              f"[bold red]{summary['failed']}" if summary["failed"] else "[bold]0",
              f"[bold]{o['identical']}", f"[bold]{o['refused']}",
              f"[bold red]{o['mismatch']}" if o["mismatch"] else "[bold]0")
    out: list[Any] = [t]
    failed = [p for p in points if not p["passed"]]
    if failed:
        f = Table(title="failed points (first reason)", title_justify="left")
        for col in ("#", "cut", "phase", "reason"):
            f.add_column(col)
        shown = failed[:20]
        for p in shown:
            cut = p["cut"]
            f.add_row(str(p["index"]), f"{'insn' if cut['kind'] == 'instruction' else 'event'} {cut['at']:,}",
                      p["phase"], p["reason"] or "")
        if len(failed) > len(shown):
            f.caption = f"... and {len(failed) - len(shown)} more (see the JSON)"
        out.append(f)
    return out


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
    try:
        c, _ = prepare(args)
        jobs = points_for(c, args.points, args.seed, args.events_of_writeback, args.every_event_of_checkpoint,
                          args.event_stride)
    except EmuError as e:
        print(f"emu: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    rf = c.reference
    con.print(f"crashtest: campaign in [bold]{c.dir}[/]; reference: exit {rf['exit_code']}, "
              f"{rf['instructions']:,} instructions, {rf['events']} persistence events "
              f"({rf['events'] - rf['events_before_shutdown']} in the shutdown write-back), "
              f"{rf['stdout_bytes']} bytes of stdout, {rf['files']} paths; restart: {c.restart.name}", highlight=False)
    if rf["control"]:
        con.print(f"[yellow]crashtest: warning: restarting the finished reference fails the checks ({rf['control']}): "
                  "failures below may come from the restart itself[/]", highlight=False)
    workers = args.jobs or os.cpu_count() or 1
    with Progress(TextColumn("crash points"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[failed]} failed"),
                  TimeElapsedColumn(), console=con, transient=False) as prog:
        task = prog.add_task("points", total=len(jobs), failed=0)
        nfail = [0]

        def tick(p: dict[str, Any]) -> None:
            nfail[0] += not p["passed"]
            prog.update(task, advance=1, failed=nfail[0])

        points = run_campaign(c, jobs, workers, tick)
    summary = summarize(points)
    doc = {"campaign": str(c.dir), "program": c.argv, "machine": str(c.machine_file), "image": str(c.start_image),
           "kernel": c.kernel, "restart": c.restart.name, "seed": args.seed, "points_requested": args.points,
           "events_of_writeback": args.events_of_writeback, "media_faults": args.media_faults,
           "event_stride": args.event_stride,
           "every_event_of_checkpoint": [ck["seq"] for ck in selected_checkpoints(c, args.every_event_of_checkpoint)],
           "reference": rf, "summary": summary, "points": points}
    out = Path(args.json) if args.json else c.dir / "crashtest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    for r in report_table(summary, points):
        con.print(r)
    o = summary["outcomes"]
    con.print(f"crashtest: {summary['passed']}/{summary['tried']} points passed ({o['identical']} resumed identical, "
              f"{o['refused']} refused); {o['mismatch']} mismatches; JSON in {out}", highlight=False)
    return 0 if summary["failed"] == 0 else 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--points", type=positive_int, default=20, metavar="N", help="instruction cut points spread over the run (default 20)")
    p.add_argument("--seed", type=int, default=1, metavar="S", help="seed of the cut points' jitter (default 1; the guest's seed: --set seed=N)")
    p.add_argument("--events-of-writeback", action="store_true", help="also cut at every persistence event of the shutdown write-back")
    p.add_argument("--every-event-of-checkpoint", type=int, default=0, metavar="K",
                   help="also cut at every persistence event of K checkpoints of the reference (commit and write-back)")
    p.add_argument("--event-stride", type=positive_int, default=1, metavar="S",
                   help="with --every-event-of-checkpoint: every S-th event of the page copies, all of the commit's "
                        "last lines and of the write-back (default 1: every event)")
    p.add_argument("--checkpoint", metavar="tcp=DURATION|off", type=checkpoint_spec,
                   help="checkpointing into SCM, as emu run --checkpoint (restart then resumes from it)")
    p.add_argument("--media-faults", type=int, default=0, metavar="K",
                   help="after each cut, K seeded faults on the SCM media holding the checkpoints (bit flips in the table, "
                        "slots, metadata, data pages; torn lines; zeroed pages): the restart must resume identically or refuse")
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


if __name__ == "__main__":
    sys.exit(restart_main())
