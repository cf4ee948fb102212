"""The machine: memory map, CPU, clock, storage and console, with a pluggable kernel on top.

    Machine.run(argv)
      kernel.boot(machine, argv)            mount the root fs, exec argv[0] as pid 1
      loop:
        deadline = kernel.resume()          pick a process, load it on the CPU (None: halt)
        stop = cpu.run(rip, deadline)       Unicorn runs; syscalls reach kernel.syscall()
        kernel.stop(stop)                   faults, exceptions, end of quantum
      kernel.shutdown()                     write the page cache back to the image
"""
from __future__ import annotations

import importlib
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from emu.clock import Clock
from emu.errors import EmuError
from guestkernel.errors import SyscallError
from hw.blockdev import BlockDevice
from hw.console import Console
from hw.cpu import CPU
from hw.ept import EPT
from hw.physmem import PhysicalMemory, RangeSpec

MiB = 1 << 20


@dataclass(frozen=True)
class MachineConfig:
    ram_bytes: int = 512 * MiB          # DRAM at gpa 0 (channel 0)
    cpu_hz: int = 2_000_000_000         # virtual clock: one instruction per cycle
    seed: int = 1                       # guest randomness
    quantum_insns: int = 10_000_000     # scheduler time slice


@dataclass
class RunResult:
    exit_code: int            # like a shell's $?: the code, or 128 + signal
    wait_status: int          # the raw wait(2) status of pid 1
    instructions: int
    virtual_ns: int
    kernel_ns: int
    wall_s: float
    syscalls: dict[str, int] = field(default_factory=dict)
    page_faults: int = 0
    log: list[str] = field(default_factory=list)

    @property
    def mips(self) -> float:
        return self.instructions / self.wall_s / 1e6 if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mips"] = self.mips
        return d


def wait_status_to_code(status: int) -> int:
    sig = status & 0x7F
    return (status >> 8) & 0xFF if sig == 0 else 128 + sig


def load_kernel(spec: str | None, config: MachineConfig) -> Any:
    """`module:Class` -> an instance; None -> the default kernel."""
    from guestkernel.kernel import Kernel, KernelConfig

    kcfg = KernelConfig(quantum_insns=config.quantum_insns, seed=config.seed)
    if not spec:
        return Kernel(kcfg)
    mod_name, _, cls_name = spec.partition(":")
    if not cls_name:
        raise EmuError(f"--kernel wants MODULE:CLASS, got {spec!r}")
    try:
        cls = getattr(importlib.import_module(mod_name), cls_name)
    except (ImportError, AttributeError) as e:
        raise EmuError(f"cannot load kernel {spec!r}: {e}") from None
    try:
        return cls(kcfg)
    except TypeError:
        return cls()


class Machine:
    def __init__(self, image: str | os.PathLike[str], config: MachineConfig | None = None, *,
                 kernel: Any = None, console: Console | None = None) -> None:
        self.config = config or MachineConfig()
        image = Path(image)
        if not image.is_file():
            raise EmuError(f"image {image} does not exist")
        self.physmem = PhysicalMemory([RangeSpec("dram0", "dram", 0, self.config.ram_bytes, 0)])
        self.ept = EPT(self.physmem)
        self.cpu = CPU(self.physmem, self.ept)
        self.clock = Clock(lambda: self.cpu.icount, self.config.cpu_hz)
        self.blockdev = BlockDevice(str(image))
        self.console = console or Console()
        self.kernel = kernel if kernel is not None else load_kernel(None, self.config)

    def run(self, argv: list[str | bytes], env: list[str | bytes] | None = None) -> RunResult:
        argv_b = [a.encode() if isinstance(a, str) else a for a in argv]
        env_b = None if env is None else [e.encode() if isinstance(e, str) else e for e in env]
        t0 = time.perf_counter()
        k = self.kernel
        try:
            k.boot(self, argv_b, env_b)
        except SyscallError as e:
            return self._boot_failure(argv_b[0], e, t0)
        except ValueError as e:  # the file system driver refused the image
            raise EmuError(f"cannot mount {self.blockdev.path}: {e}") from None
        cpu = self.cpu
        while True:
            deadline = k.resume()
            if deadline is None:
                break
            stop = cpu.run(cpu.reg("rip"), deadline)
            k.stop(stop)
        k.shutdown()
        self.blockdev.flush()
        self.blockdev.close()
        status = k.init_status or 0
        return RunResult(
            exit_code=wait_status_to_code(status), wait_status=status, instructions=cpu.icount,
            virtual_ns=self.clock.uptime_ns(), kernel_ns=self.clock.kernel_ns,
            wall_s=time.perf_counter() - t0, syscalls=dict(sorted(k.syscall_counts.items())),
            page_faults=k.page_faults, log=list(k.log),
        )

    def _boot_failure(self, prog: bytes, e: SyscallError, t0: float) -> RunResult:
        import errno as E

        name = prog.decode(errors="replace")
        if e.errno == E.ENOENT:
            msg, code = f"emu: {name}: not found", 127
        elif e.errno in (E.ENOEXEC, E.EACCES):
            msg, code = f"emu: {name}: cannot execute ({os.strerror(e.errno)})", 126
        else:
            msg, code = f"emu: {name}: {os.strerror(e.errno)}", 126
        self.console.write(2, (msg + "\n").encode())
        self.kernel.shutdown()
        self.blockdev.close()
        return RunResult(exit_code=code, wait_status=code << 8, instructions=0, virtual_ns=0, kernel_ns=0,
                         wall_s=time.perf_counter() - t0, log=[msg])
