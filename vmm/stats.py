"""Every statistic of the machine: its models' counters (each declared once with unit and
description, see hw/stats.py), the kernel's own (it registers them), the memory map and wear,
and the per-epoch time series of them (an epoch listener)."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from hw.stats import Epochs, Stat, StatsRegistry, wear_histogram
from vmm import energy

MACHINE_STATS = [
    Stat("sim.instructions", "instructions", "retired guest instructions"),
    Stat("sim.virtual_ns", "ns", "virtual time since boot (instructions at cpu_hz + kernel cost model)"),
    Stat("sim.kernel_ns", "ns", "virtual time charged for kernel work"),
    Stat("kernel.page_faults", "faults", "page faults handled (demand paging, copy-on-write)"),
    Stat("kernel.syscalls", "calls", "syscalls served"),
    Stat("kernel.rejuvenations", "handovers", "times the process group was handed to a newly constructed kernel "
         "instance (software rejuvenation; kernel.syscalls and kernel.page_faults add up every instance's)"),
    Stat("storage.reads", "requests", "block device read requests"),
    Stat("storage.writes", "requests", "block device write requests"),
    Stat("storage.read_bytes", "bytes", "bytes read from the block device"),
    Stat("storage.write_bytes", "bytes", "bytes written to the block device"),
    # the root disk's timing model (hw/disktiming.py, storage.disk); the extra disks' are not counted
    Stat("storage.disk.requests", "requests", "root disk: requests timed (a page-cache block read or written)"),
    Stat("storage.disk.seeks", "requests", "root disk: requests that moved the arm to another cylinder (hdd)"),
    Stat("storage.disk.buffer_hits", "requests", "root disk: reads served from the read-ahead track buffer (hdd)"),
    Stat("storage.disk.queued", "requests", "root disk: requests issued as the previous one completed, their "
         "controller overhead hidden (hdd)"),
    Stat("storage.disk.seek_ns", "ns", "root disk: time seeking (hdd)"),
    Stat("storage.disk.rotation_ns", "ns", "root disk: rotational latency, and waits for the read-ahead (hdd)"),
    Stat("storage.disk.transfer_ns", "ns", "root disk: media transfer time (flat: all of its time)"),
    Stat("storage.disk.overhead_ns", "ns", "root disk: controller overhead (hdd)"),
    Stat("storage.disk.busy_ns", "ns", "root disk: virtual time its requests took, all parts"),
    Stat("ept.swaps", "pages", "guest pages whose host backing was swapped"),
    # Unicorn's TLB and translation cache: their sizes follow wall-clock windows (host=True)
    Stat("cpu.tlb_fills", "fills", "TLB misses served by walking the page table and the EPT", host=True),
    Stat("cpu.blocks_decoded", "blocks", "translated blocks whose instructions the block hook decoded "
         "(0: counted in the translated code, hw/native/ucpatch.py)", host=True),
]


def registry_for(machine: Any) -> StatsRegistry:
    reg = StatsRegistry()

    def machine_values() -> dict[str, int]:
        total = machine.retired.plus(machine.kernel)
        dev = machine.blockdev.stats
        return {
            "sim.instructions": machine.cpu.icount, "sim.virtual_ns": machine.clock.uptime_ns(),
            "sim.kernel_ns": machine.clock.kernel_ns, "kernel.page_faults": total.page_faults,
            "kernel.syscalls": sum(total.syscalls.values()),
            "kernel.rejuvenations": machine.rejuvenations,
            "storage.reads": dev.reads, "storage.writes": dev.writes,
            "storage.read_bytes": dev.bytes_read, "storage.write_bytes": dev.bytes_written,
            **{f"storage.disk.{k}": v for k, v in asdict(machine.blockdev.timing.stats).items()},
            "ept.swaps": machine.ept.swaps,
            "cpu.tlb_fills": machine.cpu.st.tlb_fills, "cpu.blocks_decoded": machine.cpu.st.blocks_decoded,
        }

    reg.register(machine_values, MACHINE_STATS)
    if hasattr(machine.kernel, "register_stats"):  # optional in the kernel interface
        machine.kernel.register_stats(FollowKernel(reg, machine))
    if machine.cache is not None:
        machine.cache.register_stats(reg)
    if getattr(machine, "placement", None) is not None:
        machine.placement.register_stats(reg)
    energy.register_stats(reg, machine)
    return reg


class FollowKernel:
    """What a kernel's register_stats sees as the registry: its providers report the machine's
    kernel at each sample, so a registry built before a rejuvenation (a time series) goes on
    with the new instance's counters."""

    def __init__(self, reg: StatsRegistry, machine: Any) -> None:
        self.reg, self.machine = reg, machine
        self.kernel = machine.kernel      # whose providers `providers` are
        self.providers: list[Any] = []

    def register(self, provider: Any, stats: Any = ()) -> None:
        index = len(self.providers)
        self.providers.append(provider)

        def current() -> dict[str, int]:
            k = self.machine.kernel
            if k is not self.kernel:  # another instance: its own providers, in the same order
                again = FollowKernel(StatsRegistry(), self.machine)
                k.register_stats(again)
                self.kernel, self.providers = k, again.providers
            return self.providers[index]()

        self.reg.register(current, stats)


def machine_stats(machine: Any) -> dict[str, Any]:
    """Everything, ready for JSON: values with units and descriptions, the memory map, the wear
    histogram of each SCM range, the kernel's memory state (zones, slabs, reclaim counters);
    under "host" the statistics that depend on the host's speed (emu.report.write_stats puts
    them in a file of their own)."""
    reg = registry_for(machine)
    values = reg.snapshot()
    out: dict[str, Any] = {
        "machine": machine.config.name,
        "model_level": machine.config.model_level,
        "ranges": [{"name": r.spec.name, "kind": r.spec.kind, "base": r.spec.base_hpa, "size": r.spec.size_bytes,
                    "channel": r.spec.channel} for r in machine.physmem.ranges],
        "stats": reg.to_json(values),
        "wear": {},
    }
    if machine.cache is not None:
        for name, kind, *_ in machine.cache.ranges:
            if kind == "scm":
                out["wear"][name] = wear_histogram(machine.cache.wear(name))
    memory_state = getattr(machine.kernel, "memory_state", None)  # optional in the kernel interface
    if memory_state is not None:
        out["kernel_memory"] = memory_state()
    out["host"] = reg.to_json(values, host=True)
    return out


class EpochSampler:
    """A time series of the counters every `epoch` instructions (sampled at the first block
    boundary past each epoch; the row records the exact instruction count)."""

    def __init__(self, machine: Any, epoch: int) -> None:
        self.machine = machine
        self.epochs = Epochs(registry_for(machine))
        machine.epochs.add(self.epochs.sample, every_insns=epoch)

    def finish(self, path: Path) -> None:
        self.epochs.sample(self.machine.cpu.icount)
        self.epochs.write_csv(path)
