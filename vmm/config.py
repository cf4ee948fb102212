"""Machine configuration: what the emulated machine is made of, read from a TOML machine file.

    cfg = load_machine("machines/hybrid-mram.toml")      # or default_machine()
    cfg = apply_overrides(cfg, ["cache.size=4M", "model_level=full"])   # emu --set ...
    save_resolved(cfg, results_dir / "machine.json")    # the fully resolved config, beside results

Field names carry their units (`size_bytes`, `cpu_hz`, `quantum_insns`) or their address space
(`base_hpa`, `base_gpa`); in the TOML file the unit goes into the value instead (`size = "8MiB"`,
`cpu_hz = "2GHz"`). Sizes take ints or strings with K/M/G/T (binary: K = KiB = 1024), frequencies
ints or "2GHz"/"2000MHz", addresses ints or hex strings. Every key is optional in a machine file;
what is left out takes the default machine's value (a file without `[[pool]]` gets the default
host memory, without `[guest]` the default guest map).

Two memory maps:

- the host memory, `[[pool]]`: DRAM and SCM (PCM, STT-MRAM...) pools at host-physical addresses,
  each on a channel (or interleaved over several). `[[ram]]` is the older name, still read.
- the guest-physical map the guest kernel sees, `[guest]`: RAM ranges laid out from gpa 0 in the
  order given, each taken from a pool (`ram = [{size = "96MiB", from = "mram"}, {from = "dram"}]`;
  no size: the rest of the pool), then, from 4 GiB (or the next GiB above RAM), the windows of the
  persistent-memory devices (`pmem = ["pmem0"]`, /dev/pmemN) and of the checkpoint range
  (`checkpoint.range`). Without `[guest]`: every DRAM pool as RAM in host order, every SCM pool
  not holding checkpoints as a pmem device. `GuestRange` is one entry of the derived map.

The EPT (hw/ept.py) maps each guest page to a page of its pool: `[ept] initial = "identity"`
keeps pool order, `"shuffled"` a permutation seeded by `seed` (proves nothing assumes gpa == hpa).

Every problem is a `ConfigError`, one line naming the file, the key and what is wrong:

    machines/x.toml: pool[1].base: pool 'dram1' base 0x1001 is not a multiple of 4 KiB

The resolved JSON uses the dataclass field names and plain ints; `load_machine` reads it back.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Iterable

from vmm.errors import EmuError

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
PAGE_BYTES = 4 * KiB          # ranges are page aligned
MAX_CHANNEL = 15

KINDS = ("dram", "scm")                       # scm: storage-class memory, persistent
EPT_INITIAL = ("identity", "shuffled")
DEVICE_WINDOW_GPA = 4 * GiB                   # pmem and checkpoint windows start here (or above RAM)
PERSISTENCE_DOMAINS = ("adr", "eadr")         # adr: memory controller; eadr: caches too
MODEL_LEVELS = ("fast", "persist", "full")
SUPPORTED_LINE_BYTES = 64


class ConfigError(EmuError):
    """A machine file or override is wrong. The message is one line: `source: key: problem`."""


def _f(doc: str, *, parse: str = "int", toml: str | None = None, default: Any = dataclasses.MISSING,
       factory: Any = dataclasses.MISSING) -> Any:
    """A field with a description (`doc`), a value parser and its TOML key (if not the field name)."""
    meta = {"doc": doc, "parse": parse, "toml": toml}
    return field(default=default, default_factory=factory, metadata=meta)


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
    """The block device (the image path is given on the command line)."""

    block_size_bytes: int = _f("block size of the disk", parse="size", toml="block_size",
                               default=4096)


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
class GuestRange:
    """One range of the derived guest-physical map."""

    name: str          # the pool's name, or pool/index for a pool split over several RAM ranges
    kind: str          # "ram", "pmem" (/dev/pmemN) or "checkpoint"
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
    checkpoint: CheckpointConfig = _f("checkpoint/restart into SCM", parse="table",
                                      factory=CheckpointConfig)
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
        return self.checkpoint.range or next((r.name for r in self.scm if r.name not in self.ram_pools), "")

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
            [(r.name, "pmem") for r in self.scm if r.name not in self.ram_pools
             and not (self.checkpoint.enabled and r.name == self.checkpoint_pool)]
        if self.checkpoint.enabled and self.checkpoint_pool:
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
                             "guest": GuestConfig, "ept": EptConfig}


def default_machine() -> MachineConfig:
    """Two 256 MiB DRAM pools on channels 0 and 1, a 64 MiB SCM pool 'pmem0' at 4 GiB; guest RAM
    is the two DRAM pools from gpa 0, /dev/pmem0 the SCM pool at gpa 4 GiB."""
    return MachineConfig()


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------

def hex_addr(x: int) -> str:
    """0x1_0000_0000 style: groups of four hex digits."""
    return f"0x{x:_x}"


def human_size(n: int) -> str:
    for unit, scale in (("TiB", 1 << 40), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


def human_hz(n: int) -> str:
    for unit, scale in (("GHz", 10**9), ("MHz", 10**6), ("kHz", 10**3)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} Hz"


# --------------------------------------------------------------------------------------------
# Value parsers: (value, text) -> parsed; raise _Bad(problem). `text` is True for CLI strings.
# --------------------------------------------------------------------------------------------

class _Bad(Exception):
    pass


def _describe(v: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
            dict: "table"}.get(type(v), type(v).__name__)
    return f"{kind} {v!r}"


_SIZE_RE = re.compile(r"(?i)^(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|b)?$")
_SCALE = {None: 1, "k": KiB, "m": MiB, "g": GiB, "t": 1 << 40}
_HZ_RE = re.compile(r"(?i)^(\d+(?:\.\d+)?)\s*(hz|khz|mhz|ghz)?$")
_HZ_SCALE = {None: 1, "hz": 1, "khz": 10**3, "mhz": 10**6, "ghz": 10**9}


def _scaled(num: str, scale: int, what: str, original: str) -> int:
    try:
        value = Decimal(num) * scale
    except InvalidOperation:
        raise _Bad(f"bad {what} {original!r}") from None
    if value != value.to_integral_value():
        raise _Bad(f"{what} {original!r} is not a whole number of bytes" if what != "frequency"
                   else f"frequency {original!r} is not a whole number of Hz")
    return int(value)


def parse_size(v: Any, text: bool = False, what: str = "size") -> int:
    """8388608, "8M", "8MiB", "8 MB", "0x800000", "1.5G" -> bytes (K/M/G/T are binary)."""
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise _Bad(f"expected an integer or a {what} string like '8MiB', got {_describe(v)}")
    if isinstance(v, int):
        n = v
    else:
        s = v.strip().replace("_", "")
        if re.fullmatch(r"(?i)0x[0-9a-f]+", s):
            n = int(s, 16)
        else:
            m = _SIZE_RE.match(s)
            if not m:
                raise _Bad(f"bad {what} {v!r} (use e.g. 4096, '4KiB', '8M', '0x1000')")
            n = _scaled(m.group(1), _SCALE[(m.group(2) or "").lower() or None], what, v)
    if n < 0:
        raise _Bad(f"{what} must not be negative, got {n}")
    return n


def parse_addr(v: Any, text: bool = False) -> int:
    """0x1_0000_0000, "0x100000000", 4294967296, "4GiB" -> an address."""
    return parse_size(v, text, what="address")


def parse_hz(v: Any, text: bool = False) -> int:
    """2000000000, "2GHz", "2000MHz", "2.4 GHz" -> Hz (decimal units)."""
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise _Bad(f"expected an integer or a frequency string like '2GHz', got {_describe(v)}")
    if isinstance(v, int):
        n = v
    else:
        m = _HZ_RE.match(v.strip().replace("_", ""))
        if not m:
            raise _Bad(f"bad frequency {v!r} (use e.g. '2GHz', '2000MHz', 2000000000)")
        n = _scaled(m.group(1), _HZ_SCALE[(m.group(2) or "").lower() or None], "frequency", v)
    if n <= 0:
        raise _Bad(f"frequency must be positive, got {n}")
    return n


def _parse_int(v: Any, text: bool = False) -> int:
    if text and isinstance(v, str):
        try:
            return int(v.strip().replace("_", ""), 0)
        except ValueError:
            raise _Bad(f"expected an integer, got {v!r}") from None
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Bad(f"expected an integer, got {_describe(v)}")
    return v


def _parse_bool(v: Any, text: bool = False) -> bool:
    if text and isinstance(v, str):
        s = v.strip().lower()
        if s in ("true", "yes", "on", "1"):
            return True
        if s in ("false", "no", "off", "0"):
            return False
        raise _Bad(f"expected true or false, got {v!r}")
    if not isinstance(v, bool):
        raise _Bad(f"expected true or false, got {_describe(v)}")
    return v


def _parse_str(v: Any, text: bool = False) -> str:
    if not isinstance(v, str):
        raise _Bad(f"expected a string, got {_describe(v)}")
    return v


def _parse_channels(v: Any, text: bool = False) -> tuple[int, ...]:
    if text and isinstance(v, str):
        v = [p for p in re.split(r"[,+\s]+", v.strip().strip("[]()")) if p]
        return tuple(_parse_int(p, True) for p in v)
    if not isinstance(v, (list, tuple)):
        raise _Bad(f"expected an array of channel numbers, got {_describe(v)}")
    return tuple(_parse_int(p) for p in v)


_DURATION_RE = re.compile(r"(?i)^(\d+(?:\.\d+)?)\s*(ns|us|ms|s|min)?$")
_DURATION_SCALE = {None: 1, "ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "min": 60 * 10**9}


def parse_duration(v: Any, text: bool = False) -> int:
    """1000000000, "1s", "250ms", "0" -> nanoseconds (virtual time; a bare integer is ns)."""
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise _Bad(f"expected an integer or a duration string like '1s', got {_describe(v)}")
    if isinstance(v, int):
        n = v
    else:
        m = _DURATION_RE.match(v.strip().replace("_", ""))
        if not m:
            raise _Bad(f"bad duration {v!r} (use e.g. '1s', '250ms', '0')")
        value = Decimal(m.group(1)) * _DURATION_SCALE[(m.group(2) or "").lower() or None]
        n = int(value)
    if n < 0:
        raise _Bad(f"duration must not be negative, got {n}")
    return n


_PARSERS: dict[str, Callable[[Any, bool], Any]] = {
    "duration": parse_duration, "int": _parse_int, "size": parse_size, "addr": parse_addr, "hz": parse_hz,
    "bool": _parse_bool, "str": _parse_str, "channels": _parse_channels,
}


# --------------------------------------------------------------------------------------------
# Building dataclasses from tables (TOML, resolved JSON)
# --------------------------------------------------------------------------------------------

def _err(source: str, key: str, problem: str) -> ConfigError:
    return ConfigError(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")


def _key_of(f: dataclasses.Field, style: str) -> str:
    return (f.metadata.get("toml") or f.name) if style == "toml" else f.name


_UNIT_SUFFIXES = ("_bytes", "_hz", "_insns")


def _suggest(key: str, known: Iterable[str]) -> str:
    known = list(known)
    for suffix in _UNIT_SUFFIXES:  # size_bytes -> size, and the other way round
        if key.endswith(suffix) and key[: -len(suffix)] in known:
            return f" (did you mean {key[: -len(suffix)]!r}?)"
        if key + suffix in known:
            return f" (did you mean {key + suffix!r}?)"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown_key(source: str, key: str, name: str, known: Iterable[str]) -> ConfigError:
    return _err(source, key, f"unknown key {name!r}{_suggest(name, known)}")


def _check_table(v: Any, source: str, key: str, hint: str = "a table") -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _err(source, key, f"expected {hint}, got {_describe(v)}")
    return v


# Older machine files and resolved JSON: [[ram]] = the pools, base_bytes = base_hpa.
LEGACY_KEYS: dict[str, dict[str, str]] = {"MachineConfig": {"ram": "pools"}, "RangeConfig": {"base_bytes": "base_hpa"}}


def _build(cls: type, table: dict[str, Any], source: str, prefix: str, style: str) -> Any:
    by_key = {_key_of(f, style): f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for k, v in table.items():
        path = f"{prefix}.{k}" if prefix else k
        f = by_key.get(k)
        legacy = LEGACY_KEYS.get(cls.__name__, {}).get(k)
        if f is None and legacy:
            f = next(x for x in fields(cls) if x.name == legacy)
        if f is None:
            raise _unknown_key(source, path, k, by_key)
        parse = f.metadata["parse"]
        if parse == "table":
            sub = SECTIONS[f.name]
            kwargs[f.name] = _build(sub, _check_table(v, source, path), source, path, style)
        elif parse == "pools":
            kwargs[f.name] = _build_list(RangeConfig, v, source, path, style, f"[[{k}]]")
        elif parse == "guest_ram":
            kwargs[f.name] = _build_list(GuestRamConfig, v, source, path, style, "[{size = ..., from = ...}, ...]")
        else:
            try:
                kwargs[f.name] = _PARSERS[parse](v, False)
            except _Bad as e:
                raise _err(source, path, str(e)) from None
    if cls in (RangeConfig, GuestRamConfig):
        missing = [k for k, f in by_key.items()
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                   and f.name not in kwargs]
        if missing:
            what = "a pool" if cls is RangeConfig else "a guest RAM range"
            raise _err(source, prefix, f"missing key {missing[0]!r} ({what} needs "
                       + ", ".join(repr(k) for k, f in by_key.items()
                                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING) + ")")
    if cls is RangeConfig and "channel" not in kwargs and kwargs.get("channels"):
        kwargs["channel"] = kwargs["channels"][0]
    return cls(**kwargs)


def _build_list(cls: type, v: Any, source: str, key: str, style: str, hint: str) -> tuple[Any, ...]:
    if not isinstance(v, list):
        raise _err(source, key, f"expected an array of tables ({hint}), got {_describe(v)}")
    return tuple(_build(cls, _check_table(t, source, f"{key}[{i}]"), source,
                        f"{key}[{i}]", style) for i, t in enumerate(v))


def _parse_names(v: Any, text: bool = False) -> tuple[str, ...]:
    if text and isinstance(v, str):
        return tuple(p for p in re.split(r"[,\s]+", v.strip().strip("[]()")) if p)
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
        raise _Bad(f"expected an array of pool names, got {_describe(v)}")
    return tuple(v)


_PARSERS["names"] = _parse_names


# --------------------------------------------------------------------------------------------
# Resolution and validation
# --------------------------------------------------------------------------------------------

def _resolve(cfg: MachineConfig) -> MachineConfig:
    """Fill in what the file leaves implicit: DRAM pools without their own `channels` take the
    interleave section's, when interleaving is on."""
    il = cfg.interleave
    if not (il.enabled and il.channels):
        return cfg
    pools = []
    for r in cfg.pools:
        if r.kind == "dram" and not r.channels:
            ch = r.channel if r.channel in il.channels else il.channels[0]
            r = dataclasses.replace(r, channels=il.channels, channel=ch)
        pools.append(r)
    return dataclasses.replace(cfg, pools=tuple(pools))


def _choice(source: str, key: str, what: str, v: str, choices: tuple[str, ...]) -> None:
    if v not in choices:
        close = difflib.get_close_matches(v, choices, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise _err(source, key, f"unknown {what} {v!r} (expected one of {', '.join(choices)}{hint})")


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _check_channel(source: str, key: str, ch: int) -> None:
    if not 0 <= ch <= MAX_CHANNEL:
        raise _err(source, key, f"channel {ch} is out of range (0..{MAX_CHANNEL})")


def validate(cfg: MachineConfig, source: str = "<machine>", style: str = "toml", pool_key: str = "") -> MachineConfig:
    """Check the whole configuration; raise ConfigError naming `source` and the key. Key names
    follow `style`: "toml" (machine file) or "field" (resolved JSON); `pool_key` is the name the
    file gave the pools (`ram` in older files)."""
    pool_key = pool_key or ("pool" if style == "toml" else "pools")
    def k(cls: type, name: str) -> str:
        return _key_of({f.name: f for f in fields(cls)}[name], style)

    if not cfg.name:
        raise _err(source, "name", "must not be empty")
    for name, positive in (("seed", False), ("quantum_insns", True)):
        v = getattr(cfg, name)
        if v < 0 or (positive and v == 0):
            raise _err(source, name, f"must be {'positive' if positive else 'non-negative'}, got {v}")
    if cfg.cpu_hz <= 0:
        raise _err(source, "cpu_hz", f"frequency must be positive, got {cfg.cpu_hz}")
    _choice(source, "persistence_domain", "persistence domain", cfg.persistence_domain,
            PERSISTENCE_DOMAINS)
    _choice(source, "model_level", "model level", cfg.model_level, MODEL_LEVELS)

    # cache
    c = cfg.cache
    if c.line_bytes != SUPPORTED_LINE_BYTES:
        raise _err(source, f"cache.{k(CacheConfig, 'line_bytes')}",
                   f"only {SUPPORTED_LINE_BYTES}-byte lines are supported for now, got {c.line_bytes}")
    if c.ways <= 0:
        raise _err(source, "cache.ways", f"must be positive, got {c.ways}")
    size_key = f"cache.{k(CacheConfig, 'size_bytes')}"
    if c.size_bytes <= 0 or c.size_bytes % (c.ways * c.line_bytes):
        raise _err(source, size_key, f"{human_size(c.size_bytes)} is not a multiple of ways x line "
                   f"({c.ways} x {c.line_bytes} = {c.ways * c.line_bytes} bytes)")
    if not _pow2(c.sets):
        raise _err(source, size_key, f"{human_size(c.size_bytes)} / ({c.ways} ways x {c.line_bytes} B)"
                   f" = {c.sets} sets, which is not a power of two")

    # interleave
    il = cfg.interleave
    gkey = f"interleave.{k(InterleaveConfig, 'granularity_bytes')}"
    if not _pow2(il.granularity_bytes) or il.granularity_bytes < c.line_bytes:
        raise _err(source, gkey, f"{il.granularity_bytes} must be a power of two and at least "
                   f"one cache line ({c.line_bytes} bytes)")
    for ch in il.channels:
        _check_channel(source, "interleave.channels", ch)
    if len(set(il.channels)) != len(il.channels):
        raise _err(source, "interleave.channels", f"lists a channel twice: {list(il.channels)}")

    # storage
    bs = cfg.storage.block_size_bytes
    if not _pow2(bs) or not 512 <= bs <= 64 * KiB:
        raise _err(source, f"storage.{k(StorageConfig, 'block_size_bytes')}",
                   f"{bs} must be a power of two between 512 and 65536")

    # host memory
    if not cfg.pools:
        raise _err(source, pool_key, "the host memory is empty; at least one pool is needed")
    base_k, size_k = k(RangeConfig, "base_hpa"), k(RangeConfig, "size_bytes")
    seen: dict[str, int] = {}
    for i, r in enumerate(cfg.pools):
        at = f"{pool_key}[{i}]"
        if not r.name or "/" in r.name:
            raise _err(source, f"{at}.name", "must not be empty or contain '/'")
        if r.name in seen:
            raise _err(source, f"{at}.name", f"pool name {r.name!r} is already used by {pool_key}[{seen[r.name]}]")
        seen[r.name] = i
        _choice(source, f"{at}.kind", "kind", r.kind, KINDS)
        if r.base_hpa % PAGE_BYTES:
            raise _err(source, f"{at}.{base_k}", f"pool {r.name!r} base {hex_addr(r.base_hpa)} "
                       f"is not a multiple of 4 KiB")
        if r.size_bytes <= 0 or r.size_bytes % PAGE_BYTES:
            raise _err(source, f"{at}.{size_k}", f"pool {r.name!r} size {r.size_bytes} is not a "
                       f"positive multiple of 4 KiB")
        _check_channel(source, f"{at}.channel", r.channel)
        for ch in r.channels:
            _check_channel(source, f"{at}.channels", ch)
        if r.channels:
            if len(set(r.channels)) != len(r.channels):
                raise _err(source, f"{at}.channels", f"lists a channel twice: {list(r.channels)}")
            if r.channel not in r.channels:
                raise _err(source, f"{at}.channel", f"channel {r.channel} of pool {r.name!r} is not "
                           f"among its channels {list(r.channels)}")
            if il.enabled and len(r.channels) > 1 and r.size_bytes % il.granularity_bytes:
                raise _err(source, f"{at}.{size_k}", f"pool {r.name!r} size is not a multiple of "
                           f"the interleave granularity ({human_size(il.granularity_bytes)})")
    order = sorted(range(len(cfg.pools)), key=lambda i: cfg.pools[i].base_hpa)
    for a, b in zip(order, order[1:]):
        ra, rb = cfg.pools[a], cfg.pools[b]
        if ra.end_hpa > rb.base_hpa:
            raise _err(source, f"{pool_key}[{b}].{base_k}", f"pool {rb.name!r} "
                       f"[{hex_addr(rb.base_hpa)}, {hex_addr(rb.end_hpa)}) overlaps pool "
                       f"{ra.name!r} [{hex_addr(ra.base_hpa)}, {hex_addr(ra.end_hpa)})")

    # checkpointing
    ck = cfg.checkpoint
    scm_names = [r.name for r in cfg.scm]
    if ck.enabled:
        if not cfg.checkpoint_pool:
            raise _err(source, "checkpoint.enabled", "checkpointing needs an 'scm' pool that backs no guest RAM")
        if ck.range and ck.range not in scm_names:
            raise _err(source, "checkpoint.range", f"{ck.range!r} is not an SCM pool (have: {', '.join(scm_names)})")

    # the guest-physical map
    _choice(source, "ept.initial", "initial EPT", cfg.ept.initial, EPT_INITIAL)
    names = [r.name for r in cfg.pools]
    given: dict[str, int] = {}
    use: dict[str, str] = {}  # pool -> what it backs
    for i, g in enumerate(cfg.guest.ram):
        at = f"guest.ram[{i}]"
        if g.pool not in names:
            raise _err(source, f"{at}.from", f"no pool {g.pool!r}{_suggest(g.pool, names)}")
        if g.size_bytes % PAGE_BYTES:
            raise _err(source, f"{at}.size", f"{g.size_bytes} is not a multiple of 4 KiB")
        pool = cfg.pool(g.pool)
        left = pool.size_bytes - given.get(g.pool, 0)
        size = g.size_bytes or left
        if size <= 0 or size > left:
            raise _err(source, f"{at}.size", f"pool {g.pool!r} has {human_size(left)} left, "
                       f"{human_size(size) if size > 0 else 'nothing'} asked")
        given[g.pool] = given.get(g.pool, 0) + size
        use[g.pool] = "RAM"
    for i, name in enumerate(cfg.guest.pmem):
        at = f"guest.pmem[{i}]"
        if name not in scm_names:
            raise _err(source, at, f"{name!r} is not an SCM pool (have: {', '.join(scm_names) or 'none'})")
        if name in use:
            raise _err(source, at, f"pool {name!r} already backs guest {use[name]}")
        use[name] = "pmem"
    if ck.enabled and cfg.checkpoint_pool in use:
        raise _err(source, "checkpoint.range", f"pool {cfg.checkpoint_pool!r} already backs guest {use[cfg.checkpoint_pool]}")
    if not cfg.guest.ram and not cfg.dram:
        raise _err(source, "guest.ram", "no guest RAM: list it (guest.ram = [{from = POOL}]) or add a 'dram' pool")
    return cfg


def _finish(cfg: MachineConfig, source: str, style: str, pool_key: str = "") -> MachineConfig:
    """Resolve, validate (with the file's own pool order in messages), sort the pools by address."""
    cfg = validate(_resolve(cfg), source, style, pool_key)
    return dataclasses.replace(cfg, pools=tuple(sorted(cfg.pools, key=lambda r: r.base_hpa)))


# --------------------------------------------------------------------------------------------
# Loading and saving
# --------------------------------------------------------------------------------------------

def machine_from_toml(text: str, source: str = "<toml>") -> MachineConfig:
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: bad TOML: {' '.join(str(e).split())}") from None
    return _finish(_build(MachineConfig, table, source, "", "toml"), source, "toml", "ram" if "ram" in table else "")


def machine_from_dict(d: dict[str, Any], source: str = "<dict>") -> MachineConfig:
    """The inverse of `machine_to_dict` (field names, plain ints)."""
    _check_table(d, source, "", "a JSON object")
    return _finish(_build(MachineConfig, d, source, "", "field"), source, "field", "ram" if "ram" in d else "")


def load_machine(path: str | os.PathLike[str] | None) -> MachineConfig:
    """A machine file: TOML, or the resolved JSON of an earlier run (by suffix). None: default."""
    if path is None:
        return default_machine()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: machine file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read machine file: {getattr(e, 'strerror', None) or e}") from None
    if p.suffix.lower() == ".json":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{p}: bad JSON: {e}") from None
        return machine_from_dict(d, str(p))
    return machine_from_toml(text, str(p))


def machine_to_dict(cfg: MachineConfig) -> dict[str, Any]:
    """The fully resolved configuration: field names, ints, lists (JSON-ready)."""
    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in fields(v)}
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        return v
    return conv(cfg)


def save_resolved(cfg: MachineConfig, path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(machine_to_dict(cfg), indent=2) + "\n", encoding="utf-8")
    return p


# --------------------------------------------------------------------------------------------
# Overrides
# --------------------------------------------------------------------------------------------

def _field_named(cls: type, name: str, source: str, path: str) -> dataclasses.Field:
    """Field by its name or its TOML key (cache.size and cache.size_bytes both work)."""
    names: dict[str, dataclasses.Field] = {}
    for f in fields(cls):
        names[f.name] = f
        if f.metadata.get("toml"):
            names[f.metadata["toml"]] = f
    name = LEGACY_KEYS.get(cls.__name__, {}).get(name, name)
    if name not in names:
        raise _unknown_key(source, path, name, names)
    return names[name]


def _coerce(f: dataclasses.Field, v: Any, text: bool, source: str, path: str) -> Any:
    parse = f.metadata["parse"]
    if parse in ("table", "pools", "guest_ram"):
        expected = SECTIONS[f.name] if parse == "table" else tuple
        if not isinstance(v, expected):
            hint = "; set its keys one by one, e.g. cache.size=4M" if parse == "table" else \
                "; set pool keys as pool.<name>.<key>, or use a machine file to change the maps"
            raise _err(source, path, f"expected a {getattr(expected, '__name__', expected)}, got "
                       f"{_describe(v)}{hint}")
        return v
    try:
        return _PARSERS[parse](v, text)
    except _Bad as e:
        raise _err(source, path, str(e)) from None


def _set(cfg: MachineConfig, key: str, value: Any, text: bool, source: str) -> MachineConfig:
    parts = key.replace("__", ".").split(".")
    top = _field_named(MachineConfig, parts[0], source, parts[0])
    if len(parts) == 1:
        return dataclasses.replace(cfg, **{top.name: _coerce(top, value, text, source, key)})
    parse = top.metadata["parse"]
    if parse == "table" and len(parts) == 2:
        sub = getattr(cfg, top.name)
        f = _field_named(type(sub), parts[1], source, key)
        new = dataclasses.replace(sub, **{f.name: _coerce(f, value, text, source, key)})
        return dataclasses.replace(cfg, **{top.name: new})
    if parse == "pools" and len(parts) == 3:
        sel = parts[1]
        m = re.fullmatch(r"\[?(\d+)\]?", sel)
        idx = int(m.group(1)) if m else next((i for i, r in enumerate(cfg.pools) if r.name == sel), None)
        if idx is None or idx >= len(cfg.pools):
            names = [r.name for r in cfg.pools]
            raise _err(source, key, f"no pool {sel!r} in the host memory{_suggest(sel, names)}")
        f = _field_named(RangeConfig, parts[2], source, key)
        pools = list(cfg.pools)
        pools[idx] = dataclasses.replace(pools[idx], **{f.name: _coerce(f, value, text, source, key)})
        return dataclasses.replace(cfg, pools=tuple(pools))
    raise _err(source, key, "bad key (use KEY, SECTION.KEY or pool.<name>.KEY)")


def derive(cfg: MachineConfig, **overrides: Any) -> MachineConfig:
    """A copy of `cfg` with some values changed, validated. Keys are field names or TOML keys,
    nested with '.' (pass as **{"cache.size_bytes": ...}) or '__' (cache__size_bytes=...).
    String values for numeric fields are parsed like the TOML file's ("4M", "2GHz", "0x1000")."""
    for key, value in overrides.items():
        cfg = _set(cfg, key, value, isinstance(value, str), f"derive({key}=...)")
    return _finish(cfg, "derive", "field")


def apply_overrides(cfg: MachineConfig, items: Iterable[str]) -> MachineConfig:
    """CLI overrides: ["cache.size=4M", "model_level=full", "pool.pmem0.size=128M", "ept.initial=shuffled"]."""
    for item in items:
        key, eq, value = item.partition("=")
        source = f"override {item!r}"
        if not eq or not key.strip():
            raise ConfigError(f"{source}: expected KEY=VALUE")
        cfg = _set(cfg, key.strip(), value.strip(), True, source)
    return _finish(cfg, "overrides " + " ".join(items), "field")


def machine_config(path: str | os.PathLike[str] | None = None,
                   overrides: Iterable[str] = ()) -> MachineConfig:
    """What the CLI wants: the machine file (or the default), then the --set overrides."""
    cfg = load_machine(path)
    overrides = list(overrides)
    return apply_overrides(cfg, overrides) if overrides else cfg

