"""Restarts: how a crash campaign brings the machine back up from what a power cut left in a
state directory, and the command line that repeats one (see the package docstring, "The restart
plug"). `choose_restart` picks one from the kernel class; `python -m emu.crashtest restart` runs
one from a shell (`restart_main`)."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emu.guard import guarded
from vmm.errors import EmuError


def kernel_class(spec: str | None) -> type:
    """The class `--kernel MODULE:CLASS` names, or the default kernel's."""
    from vmm.machine import DEFAULT_KERNEL, load_spec

    return load_spec(spec or DEFAULT_KERNEL, "kernel", "--kernel wants MODULE:CLASS")


def _capture_console() -> Any:
    from hw.console import Console

    return Console(None, None, capture=True)


def machine_on_state(state_dir: Path, config: Any, kernel: str | None = None) -> Any:
    """A Machine over what a state directory holds (its disk.img and SCM media), nothing cut."""
    from vmm.machine import Machine, load_kernel

    state_dir = Path(state_dir)
    k = load_kernel(kernel, config) if kernel else None
    return Machine(state_dir / "disk.img", config, kernel=k, console=_capture_console(), media_dir=state_dir,
                   host_durable=False)


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
    args = list(sys.argv[1:] if argv is None else argv)
    cut = args.index("--") if "--" in args else len(args)  # the program: everything after "--"
    a = ap.parse_args(args[:cut])
    prog = args[cut + 1:]
    def body() -> int:
        state = Path(a.state)
        cfg = load_machine(state / "config.json")
        out, err, code = choose_restart(a.kernel, a.restart, cfg)(state, prog, cfg)
        sys.stdout.buffer.write(out)
        sys.stderr.buffer.write(err)
        return code

    return guarded(body)


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
