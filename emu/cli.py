"""The `emu` command line: a thin layer over the Machine API.

    emu run [--image PATH] [--machine FILE] [--set KEY=VALUE] [--summary] [--stats]
            [--state DIR] [--power-fail-at N | --power-fail-at-event K] -- PROGRAM [ARGS...]
    emu boot [--image PATH] [--state DIR]   run the image's /sbin/init (cold boot from DIR)
    emu run ... --snapshot-at N [--snapshot-at M ...] --snapshot-mode full|touched|incremental|sonic
            --snapshot DIR [--snapshot-stop]  whole-machine snapshots on the host disk
    emu resume DIR [--state OUT]            restore a snapshot into a fresh machine and run to the end
    emu snapshot info DIR [--json]          what a snapshot holds; its checksums verified
    emu restart DIR [--start-over]          power back on after a failure: resume the checkpointed
                                            programs from SCM and run them to the end (or refuse,
                                            changing nothing, when that cannot be done faithfully)
    emu run --checkpoint tcp=T --rejuvenate-at N [--fresh-kernel MODULE:CLASS] [--rejuvenate-stop]
                                            software rejuvenation: at N the group is handed to a
                                            newly constructed kernel instance (emu/rejuvenation.py)
    emu restart --fresh-kernel [MODULE:CLASS] DIR  resume DIR's newest image under a fresh kernel
    emu machine show [FILE]                 the resolved memory map and settings
    emu stats DIR                           the counters of a finished run
    emu image build [RECIPE] [-o PATH]      build a guest image (see images/)
    emu image list

User mistakes end in one line on stderr and a non-zero exit, never a traceback. Exit statuses:
the guest's own (pid 1's, as a shell's $?), or emu's (vmm/errors.py): 1 a user mistake, 2 bad
arguments, 65 a refused restart, 70 a bug in emu, 75 a run cut by a power failure.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

from emu.args import check_image, checkpoint_spec, positive_int
from emu.guard import guarded
from vmm.errors import EXIT_ERROR, EXIT_POWER_FAILED, EXIT_USAGE, EmuError, RestartRefusedError


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"emu: error: {message} (see emu --help)\n")


def add_machine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", metavar="PATH", help="guest image to run on and write to (default: a fresh copy of the default image)")
    p.add_argument("--machine", metavar="FILE", help="machine file (TOML; default: the built-in machine, see `emu machine show`)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a machine setting, e.g. model_level=full or cache.size=4M")
    p.add_argument("--disk", action="append", default=[], metavar="PATH[:ro]", help="attach an extra disk image (the guest's /dev/vdb, /dev/vdc, ...; repeatable)")
    p.add_argument("--level", choices=("fast", "persist", "full"), help="model level (shortcut for --set model_level=...)")
    p.add_argument("--kernel", metavar="MODULE:CLASS", help="load another kernel implementation")
    p.add_argument("--seed", type=int, default=None, help="seed of the guest's randomness (default 1)")
    p.add_argument("--state", metavar="DIR", help="state directory: storage image, SCM media, config, stats, power-failure report")
    p.add_argument("--power-fail-at", type=positive_int, metavar="N", help="cut power after exactly N retired guest instructions")
    p.add_argument("--power-fail-at-event", type=positive_int, metavar="K", help="cut power at the K-th persistence event")
    p.add_argument("--summary", action="store_true", help="print a run summary (instructions, time, MIPS, syscalls) to stderr")
    p.add_argument("--summary-json", metavar="FILE", help="write the run summary as JSON")
    p.add_argument("--stats", action="store_true", help="print the memory-channel counters (pcm-memory layout) to stderr")
    p.add_argument("--stats-json", metavar="FILE", help="write every counter as JSON")
    p.add_argument("--stats-csv", metavar="FILE", help="write a time series of the counters (with --epoch)")
    p.add_argument("--epoch", type=positive_int, default=100_000_000, metavar="N", help="instructions per time-series sample (default 1e8)")
    p.add_argument("--log", metavar="FILE", help="write the run log (unimplemented syscalls, ...) to FILE")
    p.add_argument("--checkpoint", metavar="tcp=DURATION[,into=WHERE]|off", type=checkpoint_spec,
                   help="checkpoint the programs at syscall entry (tcp: virtual time before dirty file pages are synced for one, "
                        "0 = every syscall), e.g. tcp=1s; into=scm (default: the SCM range) or into=file:/PATH (a file "
                        "on storage as memory, --set storage.mode=memory)")


COMMANDS = ("run", "resume", "snapshot", "boot", "restart", "machine", "stats", "crashtest", "reproduce", "image")


def command_of(argv: list[str]) -> str | None:
    """The subcommand `argv` names (its first word), or None when it names none of them."""
    return argv[0] if argv and argv[0] in COMMANDS else None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `only`, just that subcommand (the others are what an
    `emu run` would import for nothing: snapshots, crash tests, papers, image building)."""
    ap = ArgumentParser(prog="emu", description="Full-system x86-64 machine emulator for OS, memory and storage research.")
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=ArgumentParser)

    def want(name: str) -> bool:
        return only is None or only == name

    if want("run") or want("resume") or want("snapshot") or want("boot"):
        from emu import rejuvenation, snapshots
    if want("run"):
        run = sub.add_parser("run", help="boot the machine and run one program as pid 1")
        add_machine_options(run)
        snapshots.add_run_arguments(run)
        rejuvenation.add_run_arguments(run)
        run.add_argument("program", nargs=argparse.REMAINDER, help="-- PROGRAM [ARGS...]")
        run.set_defaults(func=cmd_run)
    if want("resume"):
        resume = sub.add_parser("resume", help="restore a snapshot into a fresh machine and run it to the end")
        resume.add_argument("dir", help="a snapshot directory (or a run's directory of numbered snapshots: the newest)")
        resume.add_argument("--state", metavar="DIR", help="a new state directory for the resumed run (disk.img, stats); default: a scratch copy")
        resume.add_argument("--machine", metavar="FILE", help="the machine you expect (refused if the snapshot's differs)")
        resume.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as emu run (refused if the snapshot's machine differs)")
        resume.add_argument("--level", choices=("fast", "persist", "full"), help="as emu run (refused if the snapshot's differs)")
        for flag, hlp in (("--summary", "print a run summary to stderr"), ("--stats", "print the memory-channel counters")):
            resume.add_argument(flag, action="store_true", help=hlp)
        for flag in ("--summary-json", "--stats-json", "--log"):
            resume.add_argument(flag, metavar="FILE")
        resume.set_defaults(func=snapshots.cmd_resume, stats_csv=None)
    if want("snapshot"):
        snap = sub.add_parser("snapshot", help="inspect snapshots")
        ssub = snap.add_subparsers(dest="snapshot_cmd", required=True, parser_class=ArgumentParser)
        sinfo = ssub.add_parser("info", help="mode, pages saved by kind, sizes; checksums verified")
        sinfo.add_argument("dir", help="a snapshot directory")
        sinfo.add_argument("--json", action="store_true")
        sinfo.set_defaults(func=snapshots.cmd_snapshot_info)
    if want("boot"):
        boot = sub.add_parser("boot", help="boot the machine and run the image's /sbin/init")
        add_machine_options(boot)
        snapshots.add_run_arguments(boot)
        rejuvenation.add_run_arguments(boot)
        boot.set_defaults(func=cmd_boot, program=["/sbin/init"])
    if want("restart"):
        restart = sub.add_parser("restart", help="power on after a power failure and resume from the newest checkpoint in SCM")
        restart.add_argument("dir", nargs="?", help="the state directory the failed run left (emu run --state DIR ...)")
        restart.add_argument("--fresh-kernel", nargs="?", const=FRESH_DEFAULT, metavar="MODULE:CLASS",
                             help="resume DIR's newest image under a freshly constructed kernel of this class (default: the"
                                  " class of --kernel): a state directory left by a power cut or by emu run --rejuvenate-at N"
                                  " --rejuvenate-stop (software rejuvenation across emu processes)")
        restart.add_argument("--start-over", action="store_true",
                             help="run the program again from the start on storage as it is, ignoring the checkpoints (when a restart was refused)")
        add_machine_options(restart)
        restart.set_defaults(func=cmd_restart)
    if want("machine"):
        mach = sub.add_parser("machine", help="machine configurations")
        msub = mach.add_subparsers(dest="machine_cmd", required=True, parser_class=ArgumentParser)
        show = msub.add_parser("show", help="print the resolved memory map and settings")
        show.add_argument("file", nargs="?", help="machine file (default: the built-in machine)")
        show.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
        show.add_argument("--json", action="store_true", help="print the resolved configuration as JSON")
        show.set_defaults(func=cmd_machine_show)
    if want("stats"):
        stats = sub.add_parser("stats", help="show the counters of a finished run")
        stats.add_argument("dir", help="a run's state directory (or a stats JSON file)")
        stats.add_argument("--json", action="store_true", help="print them as JSON")
        stats.set_defaults(func=cmd_stats)
    if want("crashtest"):
        crash = sub.add_parser("crashtest", help="cut the power at many points of a run, restart, check nothing was lost")
        from emu.crashtest import add_arguments as add_crashtest_arguments

        add_crashtest_arguments(crash)
        crash.set_defaults(func=cmd_crashtest)
    if want("reproduce"):
        rep = sub.add_parser("reproduce", help="regenerate a paper's headline result (table, result.json, figures)")
        from emu.reproduce import EXPERIMENTS

        rep.add_argument("name", help="the experiment: " + ", ".join(sorted(EXPERIMENTS)))
        rep.add_argument("--quick", action="store_true", help="fewer and shorter workloads (minutes)")
        rep.add_argument("--out", default=None, metavar="DIR", help="where result.json and the figures go (default: reproduce-NAME)")
        rep.set_defaults(func=cmd_reproduce)
    if want("image"):
        from images.cli import add_parser as add_image_parser

        add_image_parser(sub)
    return ap


def cmd_reproduce(args: argparse.Namespace) -> int:
    from emu.reproduce import reproduce

    reproduce(args.name, args.quick, Path(args.out or f"reproduce-{args.name}"))
    return 0


def resolve_config(args: argparse.Namespace, state: Path | None) -> object:
    from vmm.config import load_machine, machine_config, with_disk

    overrides = list(args.set)
    if args.level:
        overrides.append(f"model_level={args.level}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    overrides += getattr(args, "checkpoint", None) or []
    if args.machine is None and state is not None and (state / "config.json").exists():
        cfg = load_machine(state / "config.json")  # the same machine the state was made on
        from vmm.config import apply_overrides

        cfg = apply_overrides(cfg, overrides) if overrides else cfg
    else:
        cfg = machine_config(args.machine, overrides)
    for spec in getattr(args, "disk", None) or []:
        cfg = with_disk(cfg, spec)
    return cfg


def machine_for(args: argparse.Namespace, keep_config: bool = False,
                private_ok: bool = False) -> tuple[object, Path | None, Path | None]:
    """Build the Machine the options describe; returns it, a scratch directory to remove, and
    the state directory (if any). `keep_config`: leave a state directory's config.json as it is.
    `private_ok`: a run without a state directory or --image may use the cached image through
    a private copy-on-write mapping instead of a scratch copy (the run's writes stay in this
    process, as they would stay in a copy thrown away after it); not on storage as memory,
    whose image gets a label first."""
    from hw.blockdev import copy_image
    from vmm.config import save_resolved
    from vmm.machine import Machine, load_kernel
    from images.build import ImageError, default_image

    scratch = None
    private = False  # the image through a private mapping (see private_ok)
    state = Path(args.state) if args.state else None
    if state is None and (args.power_fail_at or args.power_fail_at_event):
        state = new_state_dir()
    cfg = resolve_config(args, state)

    def base_image() -> Path:
        if args.image:
            check_image(Path(args.image))
            return Path(args.image)
        try:
            return default_image()
        except ImageError as e:
            raise EmuError(str(e)) from None

    if state is not None:
        state.mkdir(parents=True, exist_ok=True)
        image = state / "disk.img"
        if not image.exists():
            copy_image(base_image(), image)  # (its holes kept: a third of the bytes)
        check_image(image)
        if not (keep_config and (state / "config.json").exists()):
            save_resolved(cfg, state / "config.json")
        media_dir = state
    elif args.image:
        image = base_image()
        media_dir = None
    elif private_ok and cfg.storage.mode != "memory":  # type: ignore[attr-defined]
        image = base_image()
        media_dir = None
        private = True
    else:
        src = base_image()
        scratch = Path(tempfile.mkdtemp(prefix="emu-run-"))
        image = scratch / "disk.img"
        copy_image(src, image)
        media_dir = None
    kernel = load_kernel(args.kernel, cfg) if args.kernel else None  # type: ignore[arg-type]
    # A scratch copy is thrown away after the run: syncing it to the host's disk would only cost
    # (a tenth of a /bin/true run).
    m = Machine(image, cfg, kernel=kernel, media_dir=media_dir,  # type: ignore[arg-type]
                power_fail_at=args.power_fail_at, power_fail_at_event=args.power_fail_at_event,
                private_storage=private, host_durable=scratch is None and not private)
    return m, scratch, state


def new_state_dir() -> Path:
    """A fresh state directory under ./emu-runs (the path is printed)."""
    base = Path("emu-runs")
    base.mkdir(exist_ok=True)
    n = 1 + max((int(p.name.split("-")[1]) for p in base.glob("run-*") if p.name.split("-")[1].isdigit()), default=0)
    return base / f"run-{n:04d}"


def cmd_run(args: argparse.Namespace) -> int:
    program = list(args.program)
    if program and program[0] == "--":
        program = program[1:]
    if not program:
        raise EmuError("nothing to run: give a program after --, e.g. emu run -- /bin/grep -c x /data/corpus.txt")
    from emu import rejuvenation, snapshots

    snap_dirs = snapshots.snapshot_dirs(args)
    handovers = rejuvenation.check(args, resolve_config(args, Path(args.state) if args.state else None).checkpoint.enabled)  # type: ignore[attr-defined]
    machine, scratch, state = machine_for(args, private_ok=not snap_dirs and not handovers)
    if state is not None:
        (state / COMMAND_FILE).write_text(json.dumps({"argv": program}) + "\n")
    if args.balloon_target:
        machine.balloon.set_target(snapshots.balloon_pages(args.balloon_target))  # type: ignore[attr-defined]
    epochs = None
    try:
        if args.stats_csv:
            from vmm.stats import EpochSampler

            epochs = EpochSampler(machine, args.epoch)
        if snap_dirs:
            result = snapshots.run_with_snapshots(machine, program, args, snap_dirs)
            if result is None:  # --snapshot-stop
                return 0
        elif handovers:
            result = rejuvenation.run_with_rejuvenation(machine, program, args, handovers)
            if result is None:  # --rejuvenate-stop
                return 0
        else:
            result = machine.run(program)  # type: ignore[attr-defined]
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if epochs is not None:
        epochs.finish(Path(args.stats_csv))
    report(args, machine, result, state)
    if getattr(result, "snapshot_missed", False):
        return EXIT_ERROR
    return EXIT_POWER_FAILED if result.power_failed else result.exit_code


def cmd_boot(args: argparse.Namespace) -> int:
    return cmd_run(args)


COMMAND_FILE = "command.json"  # in a state directory: the program the run started


FRESH_DEFAULT = "-"  # `emu restart --fresh-kernel` without a class: that of --kernel (or the default)


def cmd_restart(args: argparse.Namespace) -> int:
    fresh = args.fresh_kernel
    if fresh is not None and args.dir is None and fresh != FRESH_DEFAULT and (":" not in fresh or Path(fresh).is_dir()):
        args.dir, fresh = fresh, FRESH_DEFAULT  # `--fresh-kernel DIR`: the option took DIR as its class
    if args.dir is None:
        raise EmuError("emu restart needs the state directory: emu restart [--fresh-kernel [MODULE:CLASS]] DIR")
    if fresh is not None and fresh != FRESH_DEFAULT:
        if args.kernel and args.kernel != fresh:
            raise EmuError("--kernel and --fresh-kernel name different classes: give the restart's kernel once")
        from emu.rejuvenation import check_kernel_spec

        check_kernel_spec(fresh, None)
        args.kernel = fresh
    state = Path(args.dir)
    if not (state / "disk.img").is_file() or not (state / "config.json").is_file():
        raise EmuError(f"{state} is not a state directory (no disk.img and config.json): make one with emu run --state DIR --checkpoint tcp=1s ...")
    if args.state and Path(args.state) != state:
        raise EmuError("emu restart takes the state directory once, as DIR")
    if args.image:
        raise EmuError("emu restart uses the image in DIR; --image does not apply")
    args.state = str(state)
    try:
        program = json.loads((state / COMMAND_FILE).read_text())["argv"]
    except (OSError, ValueError, KeyError):
        raise EmuError(f"{state}/{COMMAND_FILE} is missing or unreadable: which program ran is unknown") from None
    machine, _scratch, _ = machine_for(args, keep_config=True)
    try:
        result = machine.run_restart(program, start_over=args.start_over)  # type: ignore[attr-defined]
    except RestartRefusedError as e:
        raise RestartRefusedError(f"{e}; {state} is unchanged (emu restart --start-over runs the program again from the start)") from None
    except ValueError as e:
        raise EmuError(str(e)) from None
    line = restart_line(machine.restart_how, result.restart)  # type: ignore[attr-defined]
    if fresh is not None:
        cls = type(machine.kernel)  # type: ignore[attr-defined]
        line += f"; under a fresh {cls.__module__}:{cls.__qualname__} instance"
    print(f"emu: restart: {line}", file=sys.stderr)
    report(args, machine, result, state)
    return EXIT_POWER_FAILED if result.power_failed else result.exit_code


def restart_line(how: str, info: dict) -> str:
    """What a restart did, in one line: the image it resumed from and the newer ones it skipped."""
    if how in ("resumed", "finished"):
        text = f"{how} from checkpoint image {info.get('image', '?')}"
        if how == "finished":
            text = f"finished: checkpoint image {info.get('image', '?')} says the run had ended"
        skipped = info.get("rejected") or []
        return text + (f"; skipped {len(skipped)} newer: {'; '.join(skipped)}" if skipped else "; it is the newest")
    if how == "started over":
        return "started over, as asked: the program runs again from the start on storage as it is"
    return f"{how}: {info.get('why', 'no checkpoint image')}; the program runs from the start"


def cmd_crashtest(args: argparse.Namespace) -> int:
    from emu.crashtest import main as crashtest_main

    return crashtest_main(args)


def cmd_machine_show(args: argparse.Namespace) -> int:
    from rich.console import Console

    from emu.machineview import memory_map_ascii, show_table
    from vmm.config import machine_config, machine_to_dict

    cfg = machine_config(args.file, args.set)
    if args.json:
        print(json.dumps(machine_to_dict(cfg), indent=2))
        return 0
    con = Console()
    con.print(show_table(cfg))
    con.print(memory_map_ascii(cfg), highlight=False)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from emu.report import load_stats, print_stats

    stats = load_stats(Path(args.dir))
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print_stats(stats)
    return 0


def report(args: argparse.Namespace, machine: object, result: object, state: Path | None) -> None:
    from emu.report import print_stats, print_summary, write_stats
    from vmm.machine import HOST_FIELDS

    r = result
    stats = None
    if state is not None or args.stats or args.stats_json:
        stats = machine.stats()  # type: ignore[attr-defined]
        # What the run did, without wall-clock numbers: a state directory is reproducible.
        stats["run"] = {key: v for key, v in r.to_dict().items() if key not in HOST_FIELDS}  # type: ignore[attr-defined]
    if state is not None:
        write_stats(stats, state / "stats.json")  # type: ignore[arg-type]
        rep_file = state / "report.json"
        if r.power_failed:  # type: ignore[attr-defined]
            rep_file.write_text(json.dumps(dict(r.power_report, **({"restart": r.restart} if r.restart else {})), indent=2) + "\n")  # type: ignore[attr-defined]
        elif r.restart:  # type: ignore[attr-defined]
            # The failure's report stays; what the restart did is added to it.
            try:
                rep = json.loads(rep_file.read_text())
            except (OSError, ValueError):
                rep = {}
            rep_file.write_text(json.dumps(dict(rep, restart=r.restart), indent=2) + "\n")  # type: ignore[attr-defined]
    if args.stats_json:
        write_stats(stats, Path(args.stats_json))  # type: ignore[arg-type]
        from vmm.config import save_resolved

        save_resolved(machine.config, Path(args.stats_json).with_suffix(".config.json"))  # type: ignore[attr-defined]
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(r.to_dict(), indent=2) + "\n")  # type: ignore[attr-defined]
    if args.log:
        Path(args.log).write_text("".join(line + "\n" for line in r.log))  # type: ignore[attr-defined]
    if r.power_failed:  # type: ignore[attr-defined]
        rep = r.power_report  # type: ignore[attr-defined]
        print(f"emu: power failed after {rep['instructions']:,} instructions"
              + (f" at persistence event {rep['fail_at_event']}" if rep.get("fail_at_event") else "")
              + f"; state in {state}", file=sys.stderr)
    if args.summary:
        print_summary(r)
    if args.stats and stats is not None:
        print_stats(stats)


def main(argv: list[str] | None = None) -> int:
    entry = argv is None  # the process's entry point (the `emu` script), not a caller's function
    argv = sys.argv[1:] if argv is None else argv
    ap = build_parser(command_of(argv))
    args = ap.parse_args(argv)
    code = guarded(lambda: int(args.func(args) or 0))
    if entry and args.cmd in ("run", "boot"):
        exit_now(code)
    return code


def exit_now(code: int) -> NoReturn:
    """End an `emu run` process: what atexit would run (temporary directories removed, the
    engine released), stdio flushed, then exit without the interpreter's teardown (clearing
    some 300 modules and collecting the machine's objects: 30 ms of a 200 ms `emu run --
    /bin/true`). Everything the run writes is closed by then (Machine._close, cmd_run)."""
    import atexit
    import os

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed pipe: as at a normal exit, nothing more to say
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
