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

The modules: `points.py` (where to cut), `runner.py` (the campaign: reference, points, phases,
workers), `restart.py` (the restarts and `python -m emu.crashtest restart`), `checks.py` (trees,
output, e2fsck, state digests), `report.py` (summary and tables), `cli.py` (`emu crashtest`).
Their names are all reachable from here (`from emu import crashtest as ct; ct.run_point`).
"""
from __future__ import annotations

from emu.crashtest.checks import diff_output, diff_trees, fsck, host_tree, image_tree, state_digest
from emu.crashtest.cli import add_arguments, main
from emu.crashtest.points import instruction_points, points_for, selected_checkpoints
from emu.crashtest.report import OUTCOMES, report_table, summarize
from emu.crashtest.restart import (
    ColdBootRestart, MachineRestart, PluggedRestart, _capture_console, choose_restart, kernel_class, machine_on_state,
    restart_command, restart_main,
)
from emu.crashtest.runner import (
    PHASES, Campaign, PhaseProbe, add_media_faults, classify, control, emu_command, make_reference, new_campaign_dir,
    prepare, probed_kernel, reproduce, run_campaign, run_cut, run_point, sparse_copy, watch_block_writes,
)
from vmm.errors import EmuError

__all__ = [
    # points
    "instruction_points", "points_for", "selected_checkpoints",
    # runner
    "PHASES", "Campaign", "PhaseProbe", "add_media_faults", "classify", "control", "emu_command", "make_reference",
    "new_campaign_dir", "prepare", "probed_kernel", "reproduce", "run_campaign", "run_cut", "run_point", "sparse_copy",
    "watch_block_writes",
    # restart
    "ColdBootRestart", "MachineRestart", "PluggedRestart", "_capture_console", "choose_restart", "kernel_class",
    "machine_on_state", "restart_command", "restart_main",
    # checks
    "diff_output", "diff_trees", "fsck", "host_tree", "image_tree", "state_digest",
    # report and command
    "OUTCOMES", "report_table", "summarize", "add_arguments", "main",
    # the error the checks and the command raise
    "EmuError",
]
