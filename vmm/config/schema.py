"""The machine configuration's dataclasses: `MachineConfig` and its sections, the pools of host
memory (`RangeConfig`) and the derived guest-physical map (`GuestRange`, `MachineConfig.guest_map`).
Each field carries its description, its value parser and its TOML key (`_f`)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from guestkernel.interface import ZONE_POLICIES as ZONE_POLICIES  # the kernel says which it has
from hw.cachemodel import LEVELS
from hw.disktiming import KINDS as DISK_KINDS
from vmm.config.units import GiB, KiB, MiB, hex_addr

if TYPE_CHECKING:
    from hw.disktiming import HddParams

PAGE_BYTES = 4 * KiB          # ranges are page aligned
MAX_CHANNEL = 15

KINDS = ("dram", "scm")                       # scm: storage-class memory, persistent
EPT_INITIAL = ("identity", "shuffled")
PLACEMENT_POLICIES = ("none", "lru", "mq", "oracle")  # vmm/placement
STORAGE_MODES = ("block", "memory")
DISK_MODELS = DISK_KINDS                      # storage.disk: hw/disktiming.py
CHECKPOINT_MMAP_RULES = ("shared", "every")
STORAGE_POOL = "storage"                      # memory mode: the pool that maps the image file
DEVICE_WINDOW_GPA = 4 * GiB                   # pmem and checkpoint windows start here (or above RAM)
PERSISTENCE_DOMAINS = ("adr", "eadr")         # adr: memory controller; eadr: caches too
MODEL_LEVELS = tuple(LEVELS)  # the cache model's levels (hw/cachemodel.py)
SUPPORTED_LINE_BYTES = 64


def _f(doc: str, *, parse: str = "int", toml: str | None = None, default: Any = dataclasses.MISSING,
       factory: Any = dataclasses.MISSING) -> Any:
    """A field with a description (`doc`), a value parser and its TOML key (if not the field name)."""
    meta = {"doc": doc, "parse": parse, "toml": toml}
    return field(default=default, default_factory=factory, metadata=meta)


def _key_of(f: dataclasses.Field, style: str) -> str:
    """The key naming a field in `style`: "toml" (its TOML key) or "field" (its name)."""
    return (f.metadata.get("toml") or f.name) if style == "toml" else f.name


# --------------------------------------------------------------------------------------------
# The configuration
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CacheConfig:
    """The last-level cache (write-back; what is in it is lost on a crash unless eADR)."""

    size_bytes: int = _f("total capacity", parse="size", toml="size", default=8 * MiB)
    ways: int = _f("associativity", default=16)
    line_bytes: int = _f("line size (only 64 supported)", parse="size", toml="line", default=64)

    @property
    def sets(self) -> int:
        return self.size_bytes // (self.ways * self.line_bytes)


@dataclass(frozen=True)
class RangeConfig:
    """One pool of host memory (host-physical addresses, on memory channels)."""

    name: str = _f("name in the memory map and in statistics", parse="str")
    kind: str = _f("'dram' (volatile) or 'scm' (persistent)", parse="str")
    base_hpa: int = _f("first host-physical address", parse="addr", toml="base")
    size_bytes: int = _f("length, a multiple of 4 KiB", parse="size", toml="size")
    channel: int = _f("memory channel (0..15) when not interleaved", default=0)
    channels: tuple[int, ...] = _f("channels to interleave over when interleave is on",
                                   parse="channels", default=())
    # The energy estimate (vmm/energy.py); 0 leaves the pool out of it. A model, not a measurement:
    # the machine file says where its values come from.
    read_pj_per_bit: float = _f("energy per bit read from the media (pJ)", parse="float", default=0.0)
    write_pj_per_bit: float = _f("energy per bit written to the media (pJ)", parse="float", default=0.0)
    static_mw_per_gib: float = _f("background power per GiB, refresh included (mW)", parse="float", default=0.0)

    @property
    def has_energy(self) -> bool:
        return bool(self.read_pj_per_bit or self.write_pj_per_bit or self.static_mw_per_gib)

    @property
    def end_hpa(self) -> int:
        """One past the last address."""
        return self.base_hpa + self.size_bytes

    @property
    def persistent(self) -> bool:
        return self.kind == "scm"

    def contains(self, hpa: int) -> bool:
        return self.base_hpa <= hpa < self.end_hpa

    def channel_of(self, hpa: int, interleave: InterleaveConfig | None = None) -> int:
        """The channel serving `hpa`: with interleave on and several channels listed, the
        granule index `(offset // granularity) % len(channels)` picks one; otherwise `channel`."""
        if not self.contains(hpa):
            raise ValueError(f"address {hex_addr(hpa)} is not in range {self.name!r}")
        if interleave is None or not interleave.enabled or len(self.channels) < 2:
            return self.channel
        offset = hpa - self.base_hpa
        return self.channels[(offset // interleave.granularity_bytes) % len(self.channels)]


@dataclass(frozen=True)
class InterleaveConfig:
    """Channel interleaving of ranges that list several channels."""

    enabled: bool = _f("interleave ranges across their channels", parse="bool", default=False)
    granularity_bytes: int = _f("bytes sent to one channel before moving to the next",
                                parse="size", toml="granularity", default=4 * KiB)
    channels: tuple[int, ...] = _f("default channels for DRAM ranges that list none",
                                   parse="channels", default=())


@dataclass(frozen=True)
class StorageConfig:
    """The storage image (its path is given on the command line): a block device, or (the
    storage-as-memory paper) a persistent window of guest-physical memory that maps the image
    file itself (see vmm/storage.py)."""

    mode: str = _f("'block' (a block device and the guest's page cache) or 'memory' (the image "
                   "mapped into guest-physical memory on its own channel; the guest runs ext2 "
                   "with DAX)", parse="str", default="block")
    channel: int = _f("memory channel of the storage window in memory mode (-1: the first one "
                      "no pool uses)", default=-1)
    log_bytes: int = _f("memory mode: the DAX redo log the host appends to the image once (the "
                        "file system never covers it)", parse="size", toml="log", default=4 * MiB)

    block_size_bytes: int = _f("block size of the disk", parse="size", toml="block_size",
                               default=4096)
    disk_model: str = _f("timing model of the disks (hw/disktiming.py): 'flat' (block_io per block, an "
                         "SSD) or 'hdd' (a rotating disk: seek, rotational latency from the virtual clock, "
                         "transfer, read-ahead track buffer; the hdd_* keys)", parse="str", toml="disk",
                         default="flat")
    block_io_ns: int = _f("flat disk: virtual time to read or write one block (10 us: an SSD's 400 MB/s at "
                          "4 KiB; the first paper's disk streamed about 100 MB/s, 40 us)", parse="duration",
                          toml="block_io", default=10_000)
    hdd_rpm: int = _f("hdd: spindle speed in revolutions per minute (one revolution: 60 s / rpm)",
                      default=7200)
    hdd_capacity_bytes: int = _f("hdd: capacity (with the heads and the track size it sets the cylinders; "
                                 "the image lies at the disk's start)", parse="size", toml="hdd_capacity",
                                 default=500 * 10**9)
    hdd_heads: int = _f("hdd: tracks per cylinder (recording surfaces)", default=2)
    hdd_media_bytes_per_s: int = _f("hdd: media transfer rate in bytes per second (it sets the sectors per "
                                    "track: rate x revolution / 512)", parse="size", toml="hdd_media_rate",
                                    default=120 * 10**6)
    hdd_track_to_track_ns: int = _f("hdd: seek time to the next cylinder", parse="duration",
                                    toml="hdd_track_to_track", default=1_000_000)
    hdd_avg_seek_ns: int = _f("hdd: seek time over a third of the cylinders (the mean random seek)",
                              parse="duration", toml="hdd_avg_seek", default=8_500_000)
    hdd_full_stroke_ns: int = _f("hdd: seek time over all the cylinders", parse="duration",
                                 toml="hdd_full_stroke", default=18_000_000)
    hdd_overhead_ns: int = _f("hdd: controller overhead of a request (hidden for a request queued behind "
                              "the previous one)", parse="duration", toml="hdd_overhead", default=50_000)
    hdd_buffer_tracks: int = _f("hdd: segments of the read-ahead buffer, a track each (after a read the "
                                "drive reads the rest of the track into one; 0: no read-ahead)", default=8)

    def hdd_params(self) -> "HddParams":
        from hw.disktiming import HddParams

        return HddParams(rpm=self.hdd_rpm, capacity_bytes=self.hdd_capacity_bytes, heads=self.hdd_heads,
                         media_bytes_per_s=self.hdd_media_bytes_per_s, track_to_track_ns=self.hdd_track_to_track_ns,
                         avg_seek_ns=self.hdd_avg_seek_ns, full_stroke_ns=self.hdd_full_stroke_ns,
                         overhead_ns=self.hdd_overhead_ns, buffer_tracks=self.hdd_buffer_tracks)


@dataclass(frozen=True)
class DiskConfig:
    """An extra disk (a `[[disk]]` entry, or `--disk PATH`): a raw image file the guest sees as
    /dev/vdb, /dev/vdc, ... in order, a block device it can mount (ext2) or format."""

    image: str = _f("path of the image file (relative paths: from the machine file's directory)", parse="str")
    read_only: bool = _f("attach it read-only (a mount is then read-only, writes fail)", parse="bool",
                         default=False)


@dataclass(frozen=True)
class CheckpointConfig:
    """Transparent checkpoint/restart into SCM (guestkernel/checkpoint): the kernel checkpoints
    the running programs at syscall entry into an SCM range, by the rules of the first paper."""

    enabled: bool = _f("checkpoint the guest's processes into SCM", parse="bool", default=False)
    tcp_ns: int = _f("virtual time after which dirty file pages are synced so that a "
                     "checkpoint can be taken (0: at every syscall)", parse="duration",
                     toml="tcp", default=1_000_000_000)
    range: str = _f("the SCM range that holds the images (empty: the first SCM range)",
                    parse="str", default="")
    into: str = _f("where the images live: 'scm' (the SCM range, the first paper) or 'file:/PATH' "
                   "(a file of the guest file system on storage as memory, the third paper; "
                   "needs storage.mode = 'memory')", parse="str", default="scm")
    mmap_rule: str = _f("which demand fills of file-backed pages force a checkpoint at the next "
                        "syscall: 'shared' (fills of shared mappings, whose stores reach the file; a "
                        "private fill counts as a read of the file) or 'every' (every fill: the "
                        "paper's rule read literally)", parse="str", default="shared")
    file_size_bytes: int = _f("into = 'file:...': the file's size, preallocated (zeroed) at the "
                              "first boot that does not find it", parse="size", toml="file_size",
                              default=16 * 1024 * 1024)
    live_in_file: bool = _f("into = 'file:...': the processes' private pages live in the file between "
                            "checkpoints (mapped from it; a write copies the page to a fresh page of "
                            "the file, which the next checkpoint flushes in place instead of copying); "
                            "false: they stay in RAM and every checkpoint copies what changed",
                            parse="bool", default=True)
    flush_in_place: bool = _f("live_in_file: write back the lines of the pages written in place before "
                              "a checkpoint commits (false: a debug switch that commits images whose "
                              "pages may not be durable, to show what the flushes prevent)",
                              parse="bool", default=True)

    @property
    def in_file(self) -> str | None:
        """The guest path of the image file (into = 'file:/PATH'), else None."""
        return self.into[5:] if self.into.startswith("file:") else None


@dataclass(frozen=True)
class GuestRamConfig:
    """One range of guest RAM, taken from a pool (in the order of `guest.ram`, from gpa 0)."""

    pool: str = _f("the pool backing it", parse="str", toml="from")
    size_bytes: int = _f("length, a multiple of 4 KiB (0: what the pool has left)", parse="size",
                         toml="size", default=0)


@dataclass(frozen=True)
class GuestConfig:
    """The guest-physical map (empty lists: derived from the pools, see the module docstring)."""

    ram: tuple[GuestRamConfig, ...] = _f("guest RAM, from gpa 0, in this order", parse="guest_ram",
                                         default=())
    pmem: tuple[str, ...] = _f("SCM pools offered as /dev/pmem devices, in this order", parse="names",
                               default=())


@dataclass(frozen=True)
class EptConfig:
    """How the EPT maps guest pages onto their pools at power-on."""

    initial: str = _f("'identity' (pool order) or 'shuffled' (a permutation seeded by `seed`)",
                      parse="str", default="identity")


@dataclass(frozen=True)
class PlacementConfig:
    """Host-side placement of guest RAM pages between DRAM and slower memory (the hybrid
    DRAM/STT-MRAM paper; vmm/placement): every `scan_interval` of virtual time the hypervisor
    reads and clears the EPT dirty bits of guest RAM; every `migrate_interval` the policy picks
    up to `max_pairs` (slow page, DRAM page) pairs, whose contents and EPT entries are swapped
    with the guest paused. The defaults are the paper's (1 s, 5 s, 1000 pairs)."""

    policy: str = _f("'none', 'lru', 'mq' (the paper's multi-queue) or 'oracle' (replays `trace`)",
                     parse="str", default="none")
    scan_interval_ns: int = _f("virtual time between two scans of the EPT dirty bits", parse="duration",
                               toml="scan_interval", default=1_000_000_000)
    migrate_interval_ns: int = _f("virtual time between two migrations (a multiple of scan_interval)",
                                  parse="duration", toml="migrate_interval", default=5_000_000_000)
    start_ns: int = _f("virtual time before which pages are traced but none migrates", parse="duration",
                       toml="start", default=0)
    max_pairs: int = _f("most page pairs swapped by one migration", default=1000)
    queues: int = _f("mq: number of queues (a page with n detected writes sits in queue floor(log2 n))",
                     default=8)
    lifetime_ns: int = _f("mq: a queue head not written for this long moves down a queue (lru: "
                          "a DRAM page not written for this long may be swapped out)", parse="duration",
                          toml="lifetime", default=10_000_000_000)
    pause_ns: int = _f("virtual time the guest is paused per scan and per migration (VM exit, "
                       "EPT invalidation)", parse="duration", toml="pause", default=20_000)
    swap_ns: int = _f("virtual time a swap of two 4 KiB pages adds to the pause (two page copies)",
                      parse="duration", toml="swap", default=2_000)
    record: str = _f("write the trace of dirty guest pages per scan to this file (for 'oracle')",
                     parse="str", default="")
    trace: str = _f("oracle: the trace (from `record`) of the same machine and program", parse="str",
                    default="")

    @property
    def scans_per_migration(self) -> int:
        return max(1, self.migrate_interval_ns // self.scan_interval_ns)

    @property
    def active(self) -> bool:
        """Does the hypervisor scan at all (a policy other than none, or a trace to record)?"""
        return self.policy != "none" or bool(self.record)


@dataclass(frozen=True)
class KernelMemoryConfig:
    """How the guest kernel manages its memory (guestkernel/zones.py): the zone policy."""

    zones: str = _f("'single' (Linux's zones by address), 'split' (the split-zone paper: a fragmenting "
                    "zone for long-lived kernel objects, a non-fragmenting one for the rest, one-way "
                    "fallback) or 'mobility' (Linux's grouping of pageblocks by mobility)", parse="str",
                    default="single")
    fragmenting_zone_bytes: int = _f("split: the fragmenting zone's size, at the bottom of RAM (0: a "
                                     "quarter of RAM)", parse="size", toml="fragmenting_zone", default=0)
    mount_buffer_order: int = _f("a mount's physically contiguous buffers are 2**order pages each (4: the "
                                 "split-zone paper's 64 KiB)", default=4)
    mount_buffers: int = _f("how many such buffers a mount allocates (it fails with ENOMEM when one "
                            "cannot be found after reclaim)", default=2)


@dataclass(frozen=True)
class KernelSectionConfig:
    """Settings of the guest kernel."""

    memory: KernelMemoryConfig = _f("memory management", parse="table", factory=KernelMemoryConfig)
    dax_ordering: bool = _f("storage as memory: log metadata and flush data and log in order, so "
                            "that a cut leaves the file system consistent (false: a debug switch that "
                            "writes in place without flushes, to show what the ordering prevents)",
                            parse="bool", default=True)


@dataclass(frozen=True)
class GuestRange:
    """One range of the derived guest-physical map."""

    name: str          # the pool's name, or pool/index for a pool split over several RAM ranges
    kind: str          # "ram", "pmem" (/dev/pmemN), "checkpoint" or "storage" (memory mode)
    base_gpa: int
    size_bytes: int
    pool: str
    pool_offset_bytes: int

    @property
    def end_gpa(self) -> int:
        return self.base_gpa + self.size_bytes


def _default_pools() -> tuple[RangeConfig, ...]:
    return (
        RangeConfig("dram0", "dram", 0x0000_0000, 256 * MiB, channel=0),
        RangeConfig("dram1", "dram", 0x1000_0000, 256 * MiB, channel=1),
        RangeConfig("pmem0", "scm", 0x1_0000_0000, 64 * MiB, channel=2),
    )


@dataclass(frozen=True)
class MachineConfig:
    """The whole machine."""

    name: str = _f("machine name (shown in results)", parse="str", default="default")
    cpu_hz: int = _f("virtual clock; one instruction per cycle", parse="hz",
                     default=2_000_000_000)
    pools: tuple[RangeConfig, ...] = _f("the host memory: pools at host-physical addresses", parse="pools",
                                        toml="pool", factory=_default_pools)
    guest: GuestConfig = _f("the guest-physical map", parse="table", factory=GuestConfig)
    ept: EptConfig = _f("the EPT at power-on", parse="table", factory=EptConfig)
    cache: CacheConfig = _f("last-level cache", parse="table", factory=CacheConfig)
    interleave: InterleaveConfig = _f("channel interleaving", parse="table",
                                      factory=InterleaveConfig)
    persistence_domain: str = _f("'adr' (memory controller) or 'eadr' (caches too)",
                                 parse="str", default="adr")
    model_level: str = _f("'fast', 'persist' or 'full' timing/persistence model",
                          parse="str", default="fast")
    storage: StorageConfig = _f("block device", parse="table", factory=StorageConfig)
    disks: tuple[DiskConfig, ...] = _f("extra disks, /dev/vdb onwards", parse="disks", toml="disk", factory=tuple)
    checkpoint: CheckpointConfig = _f("checkpoint/restart into SCM", parse="table",
                                      factory=CheckpointConfig)
    placement: PlacementConfig = _f("host-side page placement between DRAM and slower memory",
                                    parse="table", factory=PlacementConfig)
    kernel: KernelSectionConfig = _f("the guest kernel", parse="table", factory=KernelSectionConfig)
    cpus: int = _f("CPUs the guest sees (sysfs, /proc, affinity masks); all run on one host thread, "
                   "interleaved deterministically", default=1)
    seed: int = _f("guest randomness", default=1)
    quantum_insns: int = _f("scheduler time slice", default=10_000_000)

    def range_of(self, hpa: int) -> RangeConfig:
        for r in self.pools:
            if r.contains(hpa):
                return r
        raise ValueError(f"address {hex_addr(hpa)} is not in the host memory of {self.name!r}")

    def channel_of(self, hpa: int) -> int:
        return self.range_of(hpa).channel_of(hpa, self.interleave)

    def pool(self, name: str) -> RangeConfig:
        return next(r for r in self.pools if r.name == name)

    @property
    def dram(self) -> tuple[RangeConfig, ...]:
        return tuple(r for r in self.pools if r.kind == "dram")

    @property
    def scm(self) -> tuple[RangeConfig, ...]:
        return tuple(r for r in self.pools if r.kind == "scm")

    @property
    def ram_pools(self) -> tuple[str, ...]:
        """The pools backing guest RAM (given, or every DRAM pool)."""
        return tuple(dict.fromkeys(g.pool for g in self.guest.ram)) if self.guest.ram else tuple(r.name for r in self.dram)

    @property
    def checkpoint_pool(self) -> str:
        """The SCM pool holding checkpoint images (when checkpointing is on): the named one, or
        the first SCM pool that backs no guest RAM."""
        return self.checkpoint.range or next((r.name for r in self.scm if r.name not in self.ram_pools
                                              and r.name != STORAGE_POOL), "")

    def range_specs(self) -> list[Any]:
        """The host memory as `hw.physmem.RangeSpec`s, for `PhysicalMemory`."""
        from hw.physmem import RangeSpec

        return [RangeSpec(r.name, r.kind, r.base_hpa, r.size_bytes, r.channel) for r in self.pools]

    def guest_map(self) -> list[GuestRange]:
        """The guest-physical map (see the module docstring), in gpa order."""
        out: list[GuestRange] = []
        used: dict[str, int] = {}  # bytes of each pool handed out so far
        ram = self.guest.ram or tuple(GuestRamConfig(r.name) for r in self.dram)
        gpa = 0
        per_pool = {g.pool: sum(1 for x in ram if x.pool == g.pool) for g in ram}
        for g in ram:
            pool = self.pool(g.pool)
            off = used.get(g.pool, 0)
            size = g.size_bytes or pool.size_bytes - off
            name = g.pool if per_pool[g.pool] == 1 else f"{g.pool}/{sum(1 for x in out if x.pool == g.pool)}"
            out.append(GuestRange(name, "ram", gpa, size, g.pool, off))
            used[g.pool] = off + size
            gpa += size
        devices = [(name, "pmem") for name in self.guest.pmem] if self.guest.pmem else \
            [(r.name, "pmem") for r in self.scm if r.name not in self.ram_pools and r.name != STORAGE_POOL
             and not (self.checkpoint.enabled and r.name == self.checkpoint_pool)]
        if any(r.name == STORAGE_POOL for r in self.pools):
            devices.append((STORAGE_POOL, "storage"))
        if self.checkpoint.enabled and self.checkpoint.in_file is None and self.checkpoint_pool:
            devices.append((self.checkpoint_pool, "checkpoint"))
        gpa = max(DEVICE_WINDOW_GPA, -(-gpa // GiB) * GiB)
        for name, kind in devices:
            size = self.pool(name).size_bytes
            out.append(GuestRange(name, kind, gpa, size, name, 0))
            gpa += -(-size // GiB) * GiB  # each window on a GiB boundary
        return out

    def guest_ranges(self, kind: str) -> list[GuestRange]:
        return [g for g in self.guest_map() if g.kind == kind]


SECTIONS: dict[str, type] = {"cache": CacheConfig, "interleave": InterleaveConfig,
                             "storage": StorageConfig, "checkpoint": CheckpointConfig,
                             "guest": GuestConfig, "ept": EptConfig,
                             "placement": PlacementConfig, "kernel": KernelSectionConfig,
                             "memory": KernelMemoryConfig}

