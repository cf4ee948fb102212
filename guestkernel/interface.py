"""The interface between the machine and a kernel.

The machine (vmm/machine.py) owns the hardware and drives a kernel through these calls; any
class that implements them can be loaded with `emu --kernel MODULE:CLASS` (constructed with a
`KernelConfig` if it accepts one, else with no arguments). The default implementation is
`guestkernel.kernel.Kernel`.

    boot(machine, argv, envp)   mount the root file system from machine.blockdev, create pid 1 and
                                exec argv[0] in it. Raise SyscallError(ENOENT/ENOEXEC/EACCES) if it
                                cannot be started (the machine reports exit 127/126).
    resume() -> int | None      choose what runs next and load its context on machine.cpu; return
                                the retired-instruction count at which the CPU must stop (end of
                                quantum, periodic work), or None to halt the machine.
    syscall()                   called from the CPU's syscall hook while the guest is stopped on a
                                `syscall` instruction; read arguments from, and write the result
                                to, machine.cpu. Call machine.cpu.request_stop() to leave the CPU
                                (blocking, exit, exec).
    stop(stop: hw.cpu.Stop)     the CPU stopped: a translation fault, an exception, an invalid
                                instruction, the deadline, or a requested stop.
    shutdown()                  end of run: release everything, write caches back to storage.

Optional, for kernels that checkpoint (`emu restart`):

    restart_from_state(machine, argv, envp, start_over=False) -> str
                                power on after a failure: resume from what the persistent state
                                holds ("resumed"), see that the run had finished ("finished"), or
                                start argv over ("started": nothing was ever committed, or the
                                user asked with start_over). Raise RestartRefused, before
                                changing anything, when the state cannot reproduce an
                                uninterrupted run.

Optional, for software rejuvenation (`emu run --rejuvenate-at N`, Machine.rejuvenate): the
machine drops the kernel and a new instance resumes its group with restart_from_state.

    checkpoint_now() -> bool    at a pause, commit one image of the whole group (True), or arm
                                one for the next syscall entry (False): the kernel then stops the
                                CPU with `handover_ready` set and does not run that call
    release_machine()           let go of host resources (no shutdown, nothing written)

Optional, for machine snapshots (`emu run --snapshot...`, vmm/snapshot):

    save_state() -> bytes; load_state(machine, state)
                                the whole kernel, between two instructions
    page_kinds() -> bytes       what each guest frame holds (an index into PAGE_KINDS per gpfn)
    prepare_snapshot() -> dict  the host's cooperative-snapshot request (mode sonic): with no
                                process running, sync, drop the page cache and slab caches and
                                hand free pages to the host through the balloon
    after_snapshot() -> int     the snapshot is saved or restored: take those pages back

Optional, for reports:

    register_stats(registry)    declare the kernel's own counters (hw.stats.StatsRegistry)
    lost_state() -> dict        at a power failure, what the kernel had that is now gone
                                (dirty page-cache pages, live processes)

Attributes the machine reads afterwards: `init_status` (wait status of pid 1), `syscall_counts`
(name -> count), `page_faults`, `log` (lines for the run log).

The kernel sees the hardware only through `MachineView` below: the vCPU, the clock, guest-
physical memory by gpfn (never a host address), the guest-physical map, the disk, the console and
the memory balloon.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from guestkernel.errors import SyscallError

if TYPE_CHECKING:
    from hw.balloon import Balloon
    from hw.blockdev import BlockDevice
    from hw.clock import Clock
    from hw.console import Console
    from hw.cpu import CPU, Stop
    from hw.guestmem import GuestMemory

__all__ = ["PAGE_KINDS", "ZONE_POLICIES", "KernelConfig", "KernelInterface", "KernelPanic", "MachineView", "RestartRefused", "SyscallError"]


# What a guest frame holds, as a kernel reports it to the host (page_kinds): a byte per gpfn,
# the index into this tuple. Snapshots count their pages by these.
PAGE_KINDS = ("kernel", "anonymous", "page cache", "slab", "free", "balloon")

ZONE_POLICIES = ("single", "split", "mobility")  # how RAM is divided into zones (guestkernel/zones.py)


@dataclass
class KernelConfig:
    """What the machine's configuration says to the kernel it boots."""

    quantum_insns: int = 10_000_000      # scheduler time slice when several processes are runnable
    writeback_interval_ns: int = 5 * 10**9  # periodic page-cache write-back, in virtual time
    page_cache_pages: int | None = None  # a cap on the page cache (None: it grows into free memory)
    zones: str = "single"                # zone policy: single, split, mobility (guestkernel/zones.py)
    fragmenting_zone_bytes: int = 0      # split: the fragmenting zone's size (0: a quarter of RAM)
    mount_buffer_order: int = 4          # a mount's contiguous buffers: 2**order pages each (64 KiB)
    mount_buffers: int = 2               # ... and how many (syscalls/mount.py)
    seed: int = 1                        # getrandom, AT_RANDOM, /dev/urandom
    checkpoint_tcp_ns: int | None = None  # checkpoint interval (0: at every syscall); None: off
    checkpoint_file: str | None = None   # the images in this file of the DAX root (None: the SCM range)
    checkpoint_file_bytes: int = 16 << 20  # ... preallocated to this size
    checkpoint_live: bool = True         # ... private pages live in it between checkpoints (live.py)
    checkpoint_flush_in_place: bool = True  # ... their lines flushed at a checkpoint (False: a debug switch)
    checkpoint_mmap_rule: str = "shared"  # fills that force a checkpoint: of shared mappings, or "every"
    dax_ordering: bool = True            # DAX: redo log and ordered flushes (False: a debug switch)
    cpus: int = 1                        # CPUs the guest is told of (sysfs, /proc, affinity)


class MachineView(Protocol):
    """What a kernel may use of the machine that drives it (vmm's Machine is one)."""

    cpu: "CPU"                  # registers, contexts, address-space switch, translation
    clock: "Clock"              # charge kernel work; guest time
    memory: "GuestMemory"       # guest-physical pages by gpfn, access reports, clflush/mfence
    guest_map: list[Any]        # the guest-physical map: ranges with name, kind (ram, pmem,
                                # checkpoint, storage), base_gpa, size_bytes
    blockdev: "BlockDevice"     # the root disk (block mode; with a "storage" range the root
                                # file system is the window's, guestkernel/dax.py)
    console: "Console"          # guest stdout/stderr
    balloon: "Balloon | None"   # the memory balloon device (hw/balloon.py), if the machine has one


class KernelPanic(Exception):
    """The kernel cannot go on (for example, every process is blocked): the run ends, and the
    machine reports it in one line."""


class RestartRefused(Exception):
    """The persistent state cannot reproduce an uninterrupted run (every image corrupt, storage
    ahead of every image): the restart refuses, having changed nothing. The message says which
    structures failed their checks."""


class KernelInterface(Protocol):
    init_status: int | None
    syscall_counts: dict[str, int]
    page_faults: int
    log: list[str]

    def boot(self, machine: MachineView, argv: list[bytes], envp: list[bytes] | None = None) -> None: ...

    def resume(self) -> int | None: ...

    def syscall(self) -> None: ...

    def stop(self, stop: "Stop") -> None: ...

    def shutdown(self) -> None: ...
