"""Software rejuvenation from the command line: `emu run --rejuvenate-at N [--fresh-kernel
MODULE:CLASS] [--rejuvenate-stop]` and `emu restart --fresh-kernel [MODULE:CLASS] DIR` (the
machinery is Machine.rejuvenate in vmm/machine.py)."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from emu.args import positive_int
from vmm.errors import EmuError


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rejuvenate-at", type=positive_int, action="append", default=[], metavar="N",
                   help="software rejuvenation: after N retired instructions (the block boundary at or before N) the"
                        " running kernel checkpoints the process group, is dropped, guest RAM is zeroed, and a newly"
                        " constructed kernel resumes the group from that image; repeat for several handovers"
                        " (needs --checkpoint tcp=...)")
    p.add_argument("--fresh-kernel", metavar="MODULE:CLASS",
                   help="the class of the kernel instance each handover constructs (default: the class of --kernel)")
    p.add_argument("--rejuvenate-stop", action="store_true",
                   help="at the last --rejuvenate-at point take the image and stop without a shutdown, leaving --state DIR"
                        " for `emu restart --fresh-kernel DIR`")


def check(args: argparse.Namespace, checkpointing: bool) -> list[int]:
    """The handover points of `emu run`, checked before the machine is built (one-line errors)."""
    points = list(args.rejuvenate_at)
    if not points:
        if args.fresh_kernel or args.rejuvenate_stop:
            raise EmuError("--fresh-kernel and --rejuvenate-stop go with --rejuvenate-at N")
        return []
    if sorted(set(points)) != points:
        raise EmuError("--rejuvenate-at points must be given in increasing order, each once")
    if not checkpointing:
        raise EmuError("--rejuvenate-at needs checkpointing (--checkpoint tcp=...): the new kernel resumes the group "
                       "from a checkpoint image")
    if getattr(args, "snapshot_at", None):
        raise EmuError("--rejuvenate-at and --snapshot-at cannot be combined (yet)")
    if args.rejuvenate_stop and not args.state:
        raise EmuError("--rejuvenate-stop needs --state DIR (where the image is left for emu restart)")
    if args.fresh_kernel:
        check_kernel_spec(args.fresh_kernel, None)
    return points


def check_kernel_spec(spec: str, config: Any) -> None:
    """A MODULE:CLASS that loads (constructed once, then thrown away), or a one-line EmuError."""
    from vmm.config import default_machine
    from vmm.machine import load_kernel

    if ":" not in spec:
        raise EmuError(f"--fresh-kernel wants MODULE:CLASS, got {spec!r}")
    k = load_kernel(spec, config or default_machine())
    if not hasattr(k, "restart_from_state"):
        raise EmuError(f"kernel {spec} cannot resume a checkpoint (it has no restart_from_state)")


def run_with_rejuvenation(machine: Any, program: list[str], args: argparse.Namespace, points: list[int]) -> Any:
    """Boot, pause at each point and hand the group to a new kernel instance (or, with
    --rejuvenate-stop, take the image at the last point and stop). Returns the run's result, or
    None when stopped."""
    ended = machine.boot(program)
    if ended is not None:
        return ended
    for i, n in enumerate(points):
        stop = args.rejuvenate_stop and i == len(points) - 1
        result = machine.resume_run(until=n)
        if result is None:
            result = machine.stop_for_restart() if stop else machine.rejuvenate(args.fresh_kernel)
        if result is not None:
            how = "lost power" if result.power_failed else "ended"
            print(f"emu: the run {how} after {result.instructions:,} instructions, before its handover at {n:,}",
                  file=sys.stderr)
            return result
        if stop:
            print(f"emu: rejuvenate: checkpoint image taken after {machine.cpu.icount:,} instructions, run stopped; "
                  f"resume it with: emu restart --fresh-kernel {args.state}", file=sys.stderr)
            return None
        h = machine.handovers[-1]
        print(f"emu: rejuvenate: after {h['instructions']:,} instructions the group runs under a new {h['kernel']} "
              f"instance (resumed from checkpoint image {h.get('image', '?')})", file=sys.stderr)
    return machine.resume_run()
