"""The `emu` command line: a thin layer over the Machine API.

    emu run [--image PATH] [--summary] [--kernel MOD:CLASS] -- PROGRAM [ARGS...]
    emu boot [--image PATH]                 run the image's /sbin/init
    emu image build [RECIPE] [-o PATH]      build a guest image (see images/)
    emu image list

User mistakes end in one line on stderr and a non-zero exit, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from emu.errors import EmuError

EXIT_USAGE = 2


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> "NoReturn":  # type: ignore[name-defined]  # noqa: F821
        self.exit(EXIT_USAGE, f"emu: error: {message} (see emu --help)\n")


def parse_size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    mult = units.get(t[-1:], 1)
    digits = t[:-1] if t[-1:] in units else t
    try:
        value = int(digits) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 512M)") from None
    if value <= 0 or value % 4096:
        raise argparse.ArgumentTypeError(f"size must be a positive multiple of 4 KiB: {text!r}")
    return value


def add_machine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", metavar="PATH", help="guest image to run on and write to (default: a fresh copy of the default image)")
    p.add_argument("--kernel", metavar="MODULE:CLASS", help="load another kernel implementation")
    p.add_argument("--ram", type=parse_size, default=None, metavar="SIZE", help="DRAM size (default 512M)")
    p.add_argument("--seed", type=int, default=1, help="seed of the guest's randomness (default 1)")
    p.add_argument("--summary", action="store_true", help="print a run summary (instructions, time, MIPS, syscalls) to stderr")
    p.add_argument("--summary-json", metavar="FILE", help="write the run summary as JSON")


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(prog="emu", description="Full-system x86-64 machine emulator for OS, memory and storage research.")
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=ArgumentParser)
    run = sub.add_parser("run", help="boot the machine and run one program as pid 1")
    add_machine_options(run)
    run.add_argument("program", nargs=argparse.REMAINDER, help="-- PROGRAM [ARGS...]")
    run.set_defaults(func=cmd_run)
    boot = sub.add_parser("boot", help="boot the machine and run the image's /sbin/init")
    add_machine_options(boot)
    boot.set_defaults(func=cmd_boot, program=["/sbin/init"])
    from images.cli import add_parser as add_image_parser

    add_image_parser(sub)
    return ap


def machine_for(args: argparse.Namespace) -> tuple[object, Path | None]:
    """Build the Machine the options describe; returns it and a scratch directory to remove."""
    from emu.machine import Machine, MachineConfig, load_kernel
    from images.build import ImageError, default_image

    scratch = None
    if args.image:
        image = Path(args.image)
        check_image(image)
    else:
        try:
            base = default_image()
        except ImageError as e:
            raise EmuError(str(e)) from None
        scratch = Path(tempfile.mkdtemp(prefix="emu-run-"))
        image = scratch / "disk.img"
        shutil.copyfile(base, image)
    cfg_kwargs = {"seed": args.seed}
    if args.ram:
        cfg_kwargs["ram_bytes"] = args.ram
    config = MachineConfig(**cfg_kwargs)
    kernel = load_kernel(args.kernel, config) if args.kernel else None
    return Machine(image, config, kernel=kernel), scratch


def check_image(image: Path) -> None:
    if not image.exists():
        raise EmuError(f"image {image} does not exist")
    if not image.is_file():
        raise EmuError(f"image {image} is not a file")
    from guestkernel.ext2 import FsError, probe_block_size

    with open(image, "rb") as f:
        def read_at(off: int, n: int) -> bytes:
            f.seek(off)
            return f.read(n)

        try:
            probe_block_size(read_at)
        except FsError as e:
            raise EmuError(f"image {image} is not a usable ext2 file system: {e}") from None


def cmd_run(args: argparse.Namespace) -> int:
    program = list(args.program)
    if program and program[0] == "--":
        program = program[1:]
    if not program:
        raise EmuError("nothing to run: give a program after --, e.g. emu run -- /bin/grep -c x /data/corpus.txt")
    machine, scratch = machine_for(args)
    try:
        result = machine.run(program)  # type: ignore[attr-defined]
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    report(args, result)
    return result.exit_code


def cmd_boot(args: argparse.Namespace) -> int:
    return cmd_run(args)


def report(args: argparse.Namespace, result: object) -> None:
    if getattr(args, "summary_json", None):
        Path(args.summary_json).write_text(json.dumps(result.to_dict(), indent=2) + "\n")  # type: ignore[attr-defined]
    if not args.summary:
        return
    from rich.console import Console
    from rich.table import Table

    r = result
    con = Console(stderr=True)
    t = Table(title="run summary", show_header=False)
    t.add_row("exit status", str(r.exit_code))  # type: ignore[attr-defined]
    t.add_row("instructions", f"{r.instructions:,}")  # type: ignore[attr-defined]
    t.add_row("virtual time", f"{r.virtual_ns / 1e6:,.3f} ms (kernel {r.kernel_ns / 1e6:,.3f} ms)")  # type: ignore[attr-defined]
    t.add_row("wall time", f"{r.wall_s:.3f} s")  # type: ignore[attr-defined]
    t.add_row("guest MIPS", f"{r.mips:,.1f}")  # type: ignore[attr-defined]
    t.add_row("page faults", f"{r.page_faults:,}")  # type: ignore[attr-defined]
    t.add_row("syscalls", f"{sum(r.syscalls.values()):,}")  # type: ignore[attr-defined]
    con.print(t)
    s = Table(title="syscalls by name")
    s.add_column("syscall")
    s.add_column("count", justify="right")
    for name, n in sorted(r.syscalls.items(), key=lambda kv: (-kv[1], kv[0])):  # type: ignore[attr-defined]
        s.add_row(name, f"{n:,}")
    con.print(s)
    for line in r.log:  # type: ignore[attr-defined]
        con.print(f"[yellow]log:[/] {line}")


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EmuError as e:
        print(f"emu: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("emu: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as e:  # kernel panics and the like: one line, no traceback
        from guestkernel.kernel import KernelPanic

        if isinstance(e, KernelPanic):
            print(f"emu: kernel panic: {e}", file=sys.stderr)
            return 1
        if os.environ.get("EMU_DEBUG"):
            raise
        print(f"emu: internal error: {type(e).__name__}: {e} (set EMU_DEBUG=1 for a traceback)", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
