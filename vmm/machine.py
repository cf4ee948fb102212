"""The machine: memory map, EPT, CPU, cache model, clock, storage and console, with a pluggable
kernel on top.

    Machine.run(argv)
      kernel.boot(machine, argv)            mount the root fs, exec argv[0] as pid 1
      loop:
        deadline = kernel.resume()          pick a process, load it on the CPU (None: halt)
        stop = cpu.run(rip, deadline)       Unicorn runs; syscalls reach kernel.syscall()
        kernel.stop(stop)                   faults, exceptions, end of quantum
      kernel.shutdown()                     write the page cache back to the image

A power failure (after exactly N instructions, or at the K-th persistence event) ends the loop
wherever it is, even inside kernel work: volatile state is dropped and only the SCM media and the
storage image remain (see hw/power.py).
"""
from __future__ import annotations

import importlib
import mmap
import json
import os
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from guestkernel.interface import KernelConfig, RestartRefused, SyscallError
from hw.balloon import Balloon
from hw.blockdev import BlockDevice
from hw.clock import Clock
from hw.cachemodel import LEVELS
from hw.console import Console
from hw.disktiming import DiskTiming, disk_timing
from hw.cpu import CPU, STOP_DEADLINE
from hw.guestmem import GuestMemory
from hw.physmem import PhysicalMemory
from hw.power import PowerFailure
from vmm.config import MachineConfig, default_machine
from vmm.epochs import EpochListeners
from vmm.errors import EmuError, RestartRefusedError
from vmm.config.schema import STORAGE_POOL
from vmm.media import build_ept, effective
from vmm.storage import WindowLabel, prepare_image, with_storage_pool



# The fields of a RunResult that depend on the host's speed: left out of what must be the same
# from run to run (a state directory's stats.json, determinism checks).
HOST_FIELDS = ("wall_s", "mips", "checkpoint_wall_s")


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
    model_level: str = "fast"
    power_failed: bool = False
    power_report: dict[str, Any] = field(default_factory=dict)
    checkpoint: dict[str, int] = field(default_factory=dict)  # checkpoint counters (if on)
    restart: dict[str, Any] = field(default_factory=dict)     # what a restart resumed from, and why
    rejuvenations: int = 0    # handovers of the group to a newly constructed kernel instance
    checkpoint_wall_s: float = 0.0  # of wall_s, the host's time inside checkpoints (capture, commit, write-back)

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


def load_spec(spec: str, what: str, usage: str) -> Any:
    """The object named by `MODULE:NAME` (a kernel class, a restart function), or a one-line
    EmuError."""
    mod_name, _, name = spec.partition(":")
    if not name:
        raise EmuError(f"{usage}, got {spec!r}")
    try:
        return getattr(importlib.import_module(mod_name), name)
    except (ImportError, AttributeError) as e:
        raise EmuError(f"cannot load {what} {spec!r}: {e}") from None


DEFAULT_KERNEL = "guestkernel.kernel:Kernel"


def kernel_config(config: MachineConfig) -> KernelConfig:
    """What the machine's configuration tells the kernel it boots."""
    ck = config.checkpoint
    km = config.kernel.memory
    return KernelConfig(quantum_insns=config.quantum_insns, seed=config.seed,
                        checkpoint_tcp_ns=ck.tcp_ns if ck.enabled else None,
                        checkpoint_file=ck.in_file, checkpoint_file_bytes=ck.file_size_bytes,
                        checkpoint_mmap_rule=ck.mmap_rule,
                        checkpoint_live=ck.live_in_file, checkpoint_flush_in_place=ck.flush_in_place,
                        zones=km.zones, fragmenting_zone_bytes=km.fragmenting_zone_bytes,
                        mount_buffer_order=km.mount_buffer_order, mount_buffers=km.mount_buffers,
                        dax_ordering=config.kernel.dax_ordering, cpus=config.cpus)


KERNEL_METHODS = ("boot", "resume", "syscall", "stop", "shutdown")  # guestkernel/interface.py


def load_kernel(spec: str | None, config: MachineConfig) -> Any:
    """`module:Class` -> an instance; None -> the default kernel. Another kernel that lacks
    the interface's methods, or fails to construct, is a one-line EmuError (its bug, not emu's;
    EMU_DEBUG=1 shows the traceback)."""
    kcfg = kernel_config(config)
    cls = load_spec(spec or DEFAULT_KERNEL, "kernel", "--kernel wants MODULE:CLASS")
    if spec is None or spec == DEFAULT_KERNEL:
        return cls(kcfg)
    missing = [m for m in KERNEL_METHODS if not callable(getattr(cls, m, None))]
    if not isinstance(cls, type) or missing:
        raise EmuError(f"kernel {spec!r} does not implement the kernel interface (guestkernel/interface.py)"
                       + (f": no {', '.join(missing)}" if missing else ": not a class"))
    try:
        try:
            return cls(kcfg)
        except TypeError:
            return cls()
    except Exception as e:  # noqa: BLE001 - the other kernel's own failure, reported as such
        if os.environ.get("EMU_DEBUG"):
            raise
        raise EmuError(f"kernel {spec!r} failed to start: {type(e).__name__}: {e}") from None


CONSOLE_FILE = "console.json"  # in the state directory: bytes each console stream has shown


class Machine:
    def __init__(self, image: str | os.PathLike[str], config: MachineConfig | None = None, *,
                 kernel: Any = None, console: Console | None = None, media_dir: str | os.PathLike[str] | None = None,
                 power_fail_at: int | None = None, power_fail_at_event: int | None = None,
                 private_storage: bool = False, host_durable: bool = True) -> None:
        """`private_storage`: the disk and the SCM media live in this process's memory
        (copy-on-write mappings of the image and of the media files, which are never written), so
        that an `os.fork()` of the process copies the whole machine; `save_storage` writes them
        out (a crash campaign's fork server, emu/crashtest/forkserver.py).
        `host_durable`: when the run ends, the image and the media files are on the host's
        stable storage (fsync, msync). A crash campaign's own runs read their files back at once
        and throw most away: they skip it (it was a fifth of a cold-boot restart)."""
        cfg = effective(config or default_machine())
        self.host_durable = host_durable
        image = Path(image)
        if not image.is_file():
            raise EmuError(f"image {image} does not exist")
        self.storage_label: WindowLabel | None = None  # memory mode: the window's layout
        if cfg.storage.mode == "memory":  # the image becomes a persistent window (vmm/storage.py)
            self.storage_label = prepare_image(image, cfg.storage.log_bytes)
            cfg = with_storage_pool(cfg, self.storage_label.window_bytes)
        self.config = cfg
        self.level = LEVELS[cfg.model_level]
        self._tmp = None
        if media_dir is None and cfg.scm:
            self._tmp = tempfile.TemporaryDirectory(prefix="emu-media-")
            media_dir = self._tmp.name
        self.media_dir = Path(media_dir) if media_dir is not None else None
        media_paths = {r.name: self.media_dir / f"{r.name}.media" for r in cfg.scm}  # type: ignore[operator]
        if self.storage_label is not None:
            media_paths[STORAGE_POOL] = image  # the storage window's media is the image itself
        self.media = {r.name: open_media(media_paths[r.name], r.size_bytes, private=private_storage) for r in cfg.scm}
        # At level fast there is no cache: SCM is its media file itself (every store durable).
        # Otherwise the CPU's view starts as what the media holds (a private copy-on-write
        # mapping of it: no copy at boot) and reaches the media only through the cache model.
        if self.level == 0:
            buffers = self.media
        else:
            buffers = {r.name: open_media(media_paths[r.name], r.size_bytes, private=True) for r in cfg.scm}
        self.physmem = PhysicalMemory(cfg.range_specs(), buffers)
        # The guest-physical map the kernel sees, and the EPT that backs it with the pools.
        self.guest_map = cfg.guest_map()
        self.ept = build_ept(cfg, self.physmem)
        self.balloon = Balloon(self.ept)  # the memory balloon (a virtio-balloon-like device)
        # At level persist the SCM devices (pmem, the checkpoint area) are MMIO, so that DRAM
        # accesses pay nothing for the model. An SCM pool used as guest RAM (the hybrid machines'
        # MRAM) is plain RAM there: the guest treats RAM as volatile, and Unicorn cannot run code
        # from MMIO (a program whose code landed in MRAM faulted on one fetch for ever); its
        # traffic is modelled at level full.
        # The storage window is not MMIO either: programs run in place from it (XIP).
        mmio = frozenset(r.spec.name for r in self.physmem.scm_ranges()
                         if r.spec.name not in cfg.ram_pools and r.spec.name != STORAGE_POOL) \
            if self.level == 1 else frozenset()
        self.cpu = CPU(self.physmem, self.ept, mmio, access_stops=self.level != 0)  # fast: no cache model
        self.clock = Clock(lambda: self.cpu.icount, cfg.cpu_hz)
        self.cache = build_cache(self) if self.level else None
        self.memory = GuestMemory(self.physmem, self.ept, self.cache, self.cpu)  # what the kernel reaches
        if self.level == 1 and self.storage_label is not None:  # (not MMIO: see above)
            window = next(r for r in self.physmem.ranges if r.spec.name == STORAGE_POOL)
            self.memory.unobserved.append((window.spec.base_hpa, window.view, memoryview(self.media[STORAGE_POOL])))
        if power_fail_at_event is not None:
            if self.cache is None:
                raise EmuError("--power-fail-at-event needs a cache model: use model level persist or full")
            self.cache.fail_at_event(power_fail_at_event)
        self.power_fail_at = power_fail_at
        self.blockdev = BlockDevice(str(image), private=private_storage)
        self.blockdev.timing = self._disk_timing(self.blockdev)
        if self.cache is not None:
            self.blockdev.on_write = self._block_event
        # The extra disks ([[disk]], --disk): the guest's /dev/vdb onwards (guestkernel/vfs/disks.py),
        # the user's files written in place even when the root disk is private (crash campaigns
        # refuse them: emu/crashtest/runner.py).
        self.disks: list[tuple[BlockDevice, bool]] = []
        for d in cfg.disks:
            if not Path(d.image).is_file():
                raise EmuError(f"disk image {d.image} does not exist")
            try:
                dev = BlockDevice(d.image, read_only=d.read_only)
            except OSError as e:
                raise EmuError(f"cannot open disk image {d.image}: {e.strerror or e}") from None
            dev.timing = self._disk_timing(dev)
            if self.cache is not None:
                dev.on_write = self._block_event
            self.disks.append((dev, d.read_only))
        self.console = console or Console()
        self.restart_how = ""
        if self.media_dir is not None and (self.media_dir / CONSOLE_FILE).exists():
            shown = json.loads((self.media_dir / CONSOLE_FILE).read_text())
            self.console.previous = {int(s): int(n) for s, n in shown.items()}
        self.kernel = kernel if kernel is not None else load_kernel(None, cfg)
        self.power_report: dict[str, Any] = {}
        self.epochs = EpochListeners(self.clock)  # host-side work with the guest paused
        self.last_snapshot: str | None = None  # id of the snapshot taken last (vmm/snapshot)
        self.placement = None  # page placement between DRAM and a slower pool (vmm/placement)
        if cfg.placement.active:
            from vmm.placement import Placement

            self.placement = Placement(self, cfg.placement)
        self._kernel_deadline: int | None = None  # the running process's deadline (kernel's)
        self._t0 = time.perf_counter()
        self._argv: tuple[list[bytes], list[bytes] | None] = ([], None)  # what boot started
        self.handovers: list[dict[str, Any]] = []  # each rejuvenation: where, to what, from which image
        self._handover_wanted = False  # the loop stops once the kernel has the handover's image
        self.retired = RetiredKernels()  # what the kernels replaced so far counted

    def _disk_timing(self, dev: BlockDevice) -> DiskTiming:
        """The timing model of a disk (storage.disk: each disk has its own arm and platter)."""
        st = self.config.storage
        try:
            return disk_timing(st.disk_model, st.block_io_ns, st.hdd_params(), dev.size_bytes)
        except ValueError as e:
            raise EmuError(f"{dev.path}: {e}") from None

    def _block_event(self) -> None:
        """Each block the storage device writes is a persistence event; the power may fail
        instead, inside whatever kernel work is writing."""
        if not self.cache.event():  # type: ignore[union-attr]
            raise PowerFailure("event")

    # ------------------------------------------------------------------------------------------
    def run(self, argv: list[str | bytes], env: list[str | bytes] | None = None) -> RunResult:
        """Boot `argv` as the first process and run the machine until it ends or loses power."""
        return self._run(argv, env, restart=False)

    def run_restart(self, argv: list[str | bytes], env: list[str | bytes] | None = None,
                    start_over: bool = False) -> RunResult:
        """Power back on after a failure: the kernel resumes from the newest good checkpoint
        in SCM (or starts `argv` over if nothing was ever committed, or if `start_over`) and
        runs to the end. RestartRefusedError, with the state as it was, when the persistent
        state cannot reproduce an uninterrupted run."""
        if not hasattr(self.kernel, "restart_from_state"):
            raise EmuError(f"kernel {getattr(self.kernel, 'name', '?')} cannot restart from a checkpoint")
        if not self.config.checkpoint.enabled:
            raise EmuError("restart needs checkpointing: this machine ran with checkpoint.enabled = false")
        return self._run(argv, env, restart=True, start_over=start_over)

    def _run(self, argv: list[str | bytes], env: list[str | bytes] | None, restart: bool,
             start_over: bool = False) -> RunResult:
        ended = self.boot(argv, env, restart, start_over)
        if ended is not None:
            return ended
        result = self.resume_run()
        assert result is not None
        return result

    def boot(self, argv: list[str | bytes], env: list[str | bytes] | None = None, restart: bool = False,
             start_over: bool = False) -> RunResult | None:
        """Power on and boot (or restart); None when the machine is ready to run
        (`resume_run`), else the result of a run that ended already (a boot failure, a power
        cut)."""
        argv_b = [a.encode() if isinstance(a, str) else a for a in argv]
        env_b = None if env is None else [e.encode() if isinstance(e, str) else e for e in env]
        self._argv = (argv_b, env_b)
        self._t0 = time.perf_counter()
        k = self.kernel
        try:
            if restart:
                self.restart_how = (k.restart_from_state(self, argv_b, env_b, start_over=True) if start_over
                                    else k.restart_from_state(self, argv_b, env_b))
            else:
                k.boot(self, argv_b, env_b)
        except RestartRefused as e:
            self._abandon()
            raise RestartRefusedError(f"cannot resume faithfully: {e}") from None
        except SyscallError as e:
            return self._boot_failure(argv_b[0], e, self._t0)
        except PowerFailure:
            return self._power_failed(self._t0)
        except ValueError as e:  # the file system driver refused the image
            raise EmuError(f"cannot mount {self.blockdev.path}: {e}") from None
        return None

    def resume_run(self, until: int | None = None) -> RunResult | None:
        """Run the booted machine to its end (its result), or pause it at the last block
        boundary at or before `until` instructions (None): the guest does not notice a pause."""
        k, t0 = self.kernel, self._t0
        try:
            if not self._loop(until):
                return None
            if self.cpu.st.power_failed:
                raise PowerFailure("event")
            k.shutdown()
            if self.cache is not None:
                self.cache.wbinvd()  # a clean shutdown writes the caches back
                if self.cpu.st.power_failed:  # ... unless the power fails on the way
                    raise PowerFailure("event")
        except PowerFailure:
            return self._power_failed(t0)
        self._close()
        status = k.init_status or 0
        return self._result(t0, wait_status_to_code(status), status)

    def _loop(self, until: int | None = None) -> bool:
        """Run until the kernel halts (True) or the CPU reaches `until` (False). The kernel
        sees its own deadlines only: a stop for host work (an epoch listener, a pause) leaves its
        process on the CPU and its quantum running, so host work never changes the guest's
        schedule. A power cut at an instruction stops as the kernel's deadline does."""
        k, cpu = self.kernel, self.cpu
        fail_at = self.power_fail_at
        epochs = self.epochs
        while True:
            if self._kernel_deadline is None:
                kd = k.resume()
                if kd is None:
                    if fail_at is not None and cpu.icount >= fail_at:
                        raise PowerFailure("instruction")  # the last instruction was the N-th: no shutdown
                    return True
                if fail_at is not None and cpu.icount >= fail_at:
                    raise PowerFailure("instruction")
                self._kernel_deadline = kd = self._capped(kd)
            kd = self._kernel_deadline
            if until is not None and cpu.icount >= until:
                return False
            deadline = kd
            due = epochs.next_deadline() if epochs else None
            for host in (due, until):
                if host is not None and host < deadline:
                    deadline = host
            stop = cpu.run(cpu.reg("rip"), deadline)
            at_deadline = deadline if stop.kind == STOP_DEADLINE else None
            if at_deadline is not None and deadline < kd:  # host work only: the kernel goes on
                if epochs:
                    epochs.fire_due(at_deadline)
                if cpu.st.power_failed:
                    raise PowerFailure("event")
                if deadline == until:
                    return False
                continue
            self._kernel_deadline = None
            k.stop(stop)
            if epochs:
                epochs.fire_due(at_deadline)
            if cpu.st.power_failed:
                raise PowerFailure("event")
            if fail_at is not None and at_deadline == fail_at and cpu.icount < fail_at:
                self._step_to(fail_at)
            if self._handover_wanted and getattr(k, "handover_ready", False):
                return False  # the kernel took the image a new instance resumes (rejuvenate)

    def _step_to(self, n: int) -> None:
        """The CPU stopped at the block holding instruction n: single-step to exactly n."""
        k, cpu = self.kernel, self.cpu
        cpu.flush_translations()
        while cpu.icount < n:
            if k.resume() is None:
                return
            stop = cpu.step()
            k.stop(stop)
            if cpu.st.power_failed:
                raise PowerFailure("event")
        raise PowerFailure("instruction")

    def cut_power_at(self, n: int) -> None:
        """Paused at or before instruction n (`resume_run(until=n)`): from here the power fails
        after exactly n instructions, as in a machine built with power_fail_at=n (the running
        quantum's deadline included)."""
        self.power_fail_at = n
        if self._kernel_deadline is not None:
            self._kernel_deadline = self._capped(self._kernel_deadline)

    def _capped(self, kernel_deadline: int) -> int:
        """A quantum never runs past the power cut: the CPU stops there as at a deadline."""
        return kernel_deadline if self.power_fail_at is None else min(kernel_deadline, self.power_fail_at)

    # -- rejuvenation: the process group handed to a new kernel instance ------------------------
    def rejuvenate(self, kernel_spec: str | None = None) -> RunResult | None:
        """At a pause (`resume_run(until)` returned None): software rejuvenation. The running
        kernel checkpoints the whole group now (or at the next syscall entry, see
        `checkpoint_now`); the kernel object is dropped without a shutdown; guest RAM is zeroed
        (the new kernel owes nothing to the old one's memory; SCM and storage stay); a kernel of
        `kernel_spec` (MODULE:CLASS; None: the running one's class) is constructed and resumes
        the group from that image with `restart_from_state`, as after a power cut, with the
        console neither repeating nor losing a byte. None: the new kernel is ready
        (`resume_run` goes on); else the result of a run that ended (or lost power) before the
        image could be taken."""
        new = self._new_kernel(kernel_spec)
        ended = self._take_handover_image()
        if ended is not None:
            return ended
        self._hand_over(new)
        return None

    def stop_for_restart(self) -> RunResult | None:
        """At a pause: take the image a new kernel resumes (as `rejuvenate` does) and power off
        without a shutdown, leaving the state directory for `emu restart [--fresh-kernel] DIR`.
        None when stopped so; else the result of a run that ended before the image was taken."""
        self._new_kernel(None)  # the checks only
        ended = self._take_handover_image()
        if ended is not None:
            return ended
        self._close()  # the console record, media and disk on the host's storage
        return None

    def _new_kernel(self, spec: str | None) -> Any:
        """Checks, then a kernel of `spec` (None: the running kernel's class), not yet booted."""
        old = self.kernel
        if not self.config.checkpoint.enabled:
            raise EmuError("rejuvenation needs checkpointing: run with --checkpoint tcp=... "
                           "(the new kernel resumes the group from a checkpoint image)")
        if not hasattr(old, "checkpoint_now"):
            raise EmuError(f"kernel {getattr(old, 'name', '?')} cannot hand its processes over (no checkpoint_now)")
        if self.balloon.actual_pages:
            raise EmuError("rejuvenation with an inflated memory balloon is not supported")
        cls = type(old)
        new = load_kernel(spec or f"{cls.__module__}:{cls.__qualname__}", self.config)
        if not hasattr(new, "restart_from_state"):
            raise EmuError(f"kernel {getattr(new, 'name', '?')} cannot resume a checkpoint (no restart_from_state)")
        return new

    def _take_handover_image(self) -> RunResult | None:
        if self.kernel.checkpoint_now():
            return None
        self._handover_wanted = True  # the image comes at the next syscall entry
        try:
            return self.resume_run()
        finally:
            self._handover_wanted = False

    def _hand_over(self, new: Any) -> None:
        old = self.kernel
        self.retired.add(old)
        if hasattr(old, "release_machine"):
            old.release_machine()
        self.kernel = None
        del old  # the old instance is gone: nothing of it runs again
        self.cpu.forget_kernel()
        self.wipe_ram()
        self.console.previous = self.console.shown()  # already shown: never again
        self.clock.new_kernel()
        self._kernel_deadline = None
        self.kernel = new
        argv, env = self._argv
        try:
            how = new.restart_from_state(self, argv, env)
        except RestartRefused as e:
            raise EmuError(f"the new kernel refused the handover: {e}") from None
        if how != "resumed":
            raise EmuError(f"the new kernel did not resume the group from the handover's image ({how})")
        self.restart_how = how
        cls = type(new)
        self.handovers.append({"instructions": self.cpu.icount, "kernel": f"{cls.__module__}:{cls.__qualname__}",
                               **dict(getattr(getattr(new, "checkpointer", None), "resumed_from", {}) or {})})

    @property
    def rejuvenations(self) -> int:
        return len(self.handovers)

    def wipe_ram(self) -> None:
        """Zero guest RAM (every page the EPT maps for a RAM range): host memory released where
        it is anonymous, written with zeros where it is a view of a media file (an SCM pool used
        as RAM)."""
        import numpy as np

        from hw.balloon import _sorted_runs
        from hw.ept import INVALID

        m = np.frombuffer(self.ept.map, dtype=np.uint32)
        hpfns = np.concatenate([m[g.base_gpa >> 12:(g.base_gpa + g.size_bytes) >> 12]
                                for g in self.guest_map if g.kind == "ram"])
        for hpfn, n in _sorted_runs(hpfns[hpfns != INVALID]):
            while n:
                r = self.physmem.range_of(hpfn << 12)
                off = (hpfn << 12) - r.spec.base_hpa
                k = min(n, (r.spec.size_bytes - off) >> 12)
                if r.spec.kind == "dram":
                    self.physmem.release(hpfn, k)
                else:
                    for at in range(off, off + (k << 12), 1 << 20):
                        end = min(off + (k << 12), at + (1 << 20))
                        r.view[at:end] = bytes(end - at)
                hpfn, n = hpfn + k, n - k

    def save_storage(self, state_dir: Path) -> None:
        """Private storage: write what survives a power cut as a state directory holds it
        (disk.img, <range>.media; the console record goes there too once `media_dir` names it)."""
        for name, media in self.media.items():
            if name != STORAGE_POOL:
                write_sparse(state_dir / f"{name}.media", media)
        if self.storage_label is None:
            self.blockdev.save_to(state_dir / "disk.img")
        else:  # memory mode: the image is the storage window's media
            write_sparse(state_dir / "disk.img", self.media[STORAGE_POOL])

    def _power_failed(self, t0: float) -> RunResult:
        """Power is gone: only the media and the storage image remain."""
        self.power_report = self.lost_state()
        self._close()
        return self._result(t0, 0, 0, power_failed=True)

    # -- whole-machine state ----------------------------------------------------------------
    def save_state(self, contents: bool = True) -> dict[str, Any]:
        """The whole machine, in memory, between two instructions (a paused or finished run):
        every model's state and the kernel's. `load_state` on a machine of the same
        configuration (and kernel class) goes on from there as this one would. `contents`
        False: without the bulk (memory pools, SCM media, disk contents), which a snapshot
        writes to files of its own (vmm/snapshot)."""
        if not hasattr(self.kernel, "save_state"):
            raise EmuError(f"kernel {getattr(self.kernel, 'name', '?')} cannot save its state")
        if self.placement is not None:
            raise EmuError("the machine state cannot be saved with page placement on (placement.policy) yet")
        from vmm.config import machine_to_dict

        state = {
            "config": machine_to_dict(self.config),
            "ept": self.ept.save_state(),
            "balloon": self.balloon.save_state(),
            "cpu": self.cpu.save_state(),
            "clock": self.clock.save_state(),
            "cache": self.cache.save_state() if self.cache is not None else None,
            "blockdev": self.blockdev.save_state(contents),
            "disks": [dev.save_state(True) for dev, _ro in self.disks],  # (small: in the state)
            "console": self.console.save_state(),
            "kernel_deadline": self._kernel_deadline,
            "kernel": self.kernel.save_state(),
        }
        if contents:
            state["pools"] = self.physmem.save_state()
            state["media"] = {name: bytes(m) for name, m in self.media.items()} if self.level else {}
        return state

    def load_state(self, state: dict[str, Any], contents: Callable[[], None] | None = None) -> None:
        """Become the machine `state` was saved from (see save_state); then `resume_run`.
        A state saved without its contents comes with `contents`, which fills the memory, media
        and disk once the EPT holds the saved mapping."""
        from vmm.config import machine_to_dict

        if state["config"] != machine_to_dict(self.config):
            raise EmuError("the saved machine state is of another machine configuration")
        if contents is None:
            self.physmem.load_state(state["pools"])
            for name, data in state["media"].items():
                self.media[name][:] = data
        self.ept.load_state(state["ept"])
        if contents is not None:
            contents()
        self.balloon.load_state(state["balloon"])
        self.cpu.load_state(state["cpu"])
        self.clock.load_state(state["clock"])
        if self.cache is not None:
            self.cache.load_state(state["cache"])
        self.blockdev.load_state(state["blockdev"])
        for (dev, _ro), saved in zip(self.disks, state.get("disks", [])):
            dev.load_state(saved)
        self.console.load_state(state["console"])
        self._kernel_deadline = state["kernel_deadline"]
        self.kernel.load_state(self, state["kernel"])

    def lost_state(self) -> dict[str, Any]:
        """The report of a power failure: where it happened and what was lost (the caches and
        their pending flushes here, the kernel's volatile structures from the kernel)."""
        from dataclasses import asdict

        cfg = self.config
        report: dict[str, Any] = {"instructions": self.cpu.icount, "virtual_ns": self.clock.uptime_ns(),
                                  "model_level": cfg.model_level, "persistence_domain": cfg.persistence_domain}
        if self.cache is not None:
            lost = self.cache.power_fail(eadr=cfg.persistence_domain == "eadr")
            report.update(asdict(lost))
            report["events"] = int(self.cache.stats.events)
            report["fail_at_event"] = lost.failed_at_event
        if hasattr(self.kernel, "lost_state"):  # optional in the kernel interface
            report.update(self.kernel.lost_state())
        return report

    def _abandon(self) -> None:
        """Power off having changed nothing: no console record, no media or storage writes
        (the media mappings stay open: the CPU still holds pointers into them)."""
        self.blockdev.close()
        for dev, _ro in self.disks:
            dev.close()

    def _close(self) -> None:
        if self.placement is not None:
            self.placement.close()
        if self.media_dir is not None:
            # The console is outside the machine: what it showed survives a power failure.
            shown = self.console.shown()
            (self.media_dir / CONSOLE_FILE).write_text(json.dumps({str(s): n for s, n in shown.items()}) + "\n")
        if self.host_durable:
            self.blockdev.flush()
            for dev, ro in self.disks:
                if not ro:
                    dev.flush()
            for m in self.media.values():
                m.flush()
        self.blockdev.close()
        for dev, _ro in self.disks:
            dev.close()

    def _result(self, t0: float, code: int, status: int, power_failed: bool = False) -> RunResult:
        k = self.kernel
        ck = getattr(k, "checkpointer", None)
        total = self.retired.plus(k)
        return RunResult(
            exit_code=code, wait_status=status, instructions=self.cpu.icount,
            virtual_ns=self.clock.uptime_ns(), kernel_ns=self.clock.kernel_ns,
            wall_s=time.perf_counter() - t0, syscalls=dict(sorted(total.syscalls.items())),
            page_faults=total.page_faults, log=total.log, model_level=self.config.model_level,
            power_failed=power_failed, power_report=self.power_report,
            checkpoint=total.checkpoint, restart=dict(getattr(ck, "resumed_from", {}) or {}),
            rejuvenations=self.rejuvenations,
            checkpoint_wall_s=total.checkpoint_host_ns / 1e9,
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
        self._close()
        r = self._result(t0, code, code << 8)
        r.log.append(msg)
        return r

    def stats(self) -> dict[str, Any]:
        """Every counter of the machine's models (see hw/stats.py)."""
        from vmm.stats import machine_stats

        return machine_stats(self)


@dataclass
class RetiredKernels:
    """What the kernels a rejuvenation replaced counted (the run's totals add the running one's)."""

    syscalls: Counter = field(default_factory=Counter)
    page_faults: int = 0
    log: list[str] = field(default_factory=list)
    checkpoint: dict[str, int] = field(default_factory=dict)
    checkpoint_host_ns: int = 0

    def add(self, k: Any) -> None:
        self.syscalls.update(k.syscall_counts)
        self.page_faults += k.page_faults
        self.log += list(k.log)
        ck = getattr(k, "checkpointer", None)
        if ck is not None:
            for key, v in ck.stats_dict().items():
                self.checkpoint[key] = self.checkpoint.get(key, 0) + v
            self.checkpoint_host_ns += ck.host_ns

    def plus(self, k: Any) -> "RetiredKernels":
        """These counts and the running kernel's: the run's totals."""
        total = RetiredKernels(Counter(self.syscalls), self.page_faults, list(self.log), dict(self.checkpoint),
                               self.checkpoint_host_ns)
        total.add(k)
        return total


def build_cache(m: Machine) -> Any:
    """The cache model of the machine's configuration, wired to the CPU: a C memory hook on the
    modelled ranges (SCM only at level persist), the persistence-instruction sites, the kernel's
    own accesses, and a power cut at an event that stops the CPU."""
    from hw.cachemodel import CacheModel

    cfg, cpu = m.config, m.cpu
    cache = CacheModel(cfg.cache.size_bytes, cfg.cache.ways, cfg.cache.line_bytes, level=cfg.model_level,
                       native=(cpu.ffi, cpu.lib))
    ranges = {r.name: r for r in cfg.pools}
    for r in m.physmem.ranges:
        spec = r.spec
        # at level persist an SCM pool that is guest RAM is not modelled, as DRAM (see the MMIO above)
        kind = "dram" if m.level == 1 and spec.name in cfg.ram_pools else spec.kind
        index = cache.add_range(spec.name, kind, spec.base_hpa, spec.size_bytes, spec.channel, cpu=r.buffer,
                                media=m.media.get(spec.name))
        chans = ranges[spec.name].channels
        if cfg.interleave.enabled and len(chans) > 1:
            cache.set_interleave(index, tuple(chans), cfg.interleave.granularity_bytes)
    cpu.lib.emu_attach_cache(cpu._uc_ptr, cpu.st, cache.ptr)
    if m.level == 2:  # full: every access; at persist SCM is MMIO (see CPU)
        # the patched libunicorn's direct callback, unless a comparison asks for Unicorn's hook list
        direct = os.environ.get("EMU_UNICORN") not in ("stock", "hook", "memhook")
        err = cpu.lib.emu_install_mem_hook(cpu._uc_ptr, cpu.st, 1, 0, int(direct))
        if err:
            raise RuntimeError(f"cannot install the memory hook (uc_err {err})")
    return cache


def write_sparse(path: Path, data: mmap.mmap, chunk: int = 1 << 16) -> None:
    # (also the crash campaigns' copy of a starting image: emu/crashtest/runner.sparse_copy)
    """`data` to a file of its size, its all-zero chunks left as holes."""
    zero = bytes(chunk)
    with open(path, "wb") as f:
        f.truncate(len(data))
        for off in range(0, len(data), chunk):
            piece = data[off:off + chunk]
            if piece != zero[:len(piece)]:
                f.seek(off)
                f.write(piece)


def open_media(path: Path, size: int, private: bool = False) -> mmap.mmap:
    """The media file of an SCM range (created zeroed), mapped shared: what survives power loss.
    `private`: a copy-on-write view of it instead (writes never reach the file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size != size:
            os.ftruncate(fd, size)
        flags = mmap.MAP_PRIVATE if private else mmap.MAP_SHARED
        m = mmap.mmap(fd, size, flags, mmap.PROT_READ | mmap.PROT_WRITE)
        # No read-ahead: the host's first fault in a hole of the (sparse) file otherwise reads a
        # large window ahead, 2.5 ms per first touch measured, for pages touched one at a time.
        m.madvise(mmap.MADV_RANDOM)
        return m
    finally:
        os.close(fd)
