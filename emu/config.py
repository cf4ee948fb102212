"""Machine configuration: what the emulated machine is made of, read from a TOML machine file.

    cfg = load_machine("machines/hybrid-mram.toml")      # or default_machine()
    cfg = apply_overrides(cfg, ["cache.size=4M", "model_level=full"])   # emu --set ...
    save_resolved(cfg, results_dir / "machine.json")    # the fully resolved config, beside results

Field names carry their units (`size_bytes`, `cpu_hz`, `quantum_insns`); in the TOML file the
unit goes into the value instead (`size = "8MiB"`, `cpu_hz = "2GHz"`). Sizes take ints or strings
with K/M/G/T (binary: K = KiB = 1024), frequencies ints or "2GHz"/"2000MHz", addresses ints or
hex strings. Every key is optional in a machine file; what is left out takes the default machine's
value (a file without `[[ram]]` gets the default memory map).

Every problem is a `ConfigError`, one line naming the file, the key and what is wrong:

    machines/x.toml: ram[1].base: range 'dram1' base 0x1001 is not a multiple of 4 KiB

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

from emu.errors import EmuError

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
PAGE_BYTES = 4 * KiB          # ranges are page aligned
MAX_CHANNEL = 15

KINDS = ("dram", "scm")                       # scm: storage-class memory, persistent
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
    """One range of the physical memory map."""

    name: str = _f("name in the memory map and in statistics", parse="str")
    kind: str = _f("'dram' (volatile) or 'scm' (persistent)", parse="str")
    base_bytes: int = _f("first physical address", parse="addr", toml="base")
    size_bytes: int = _f("length, a multiple of 4 KiB", parse="size", toml="size")
    channel: int = _f("memory channel (0..15) when not interleaved", default=0)
    channels: tuple[int, ...] = _f("channels to interleave over when interleave is on",
                                   parse="channels", default=())

    @property
    def end_bytes(self) -> int:
        """One past the last address."""
        return self.base_bytes + self.size_bytes

    @property
    def persistent(self) -> bool:
        return self.kind == "scm"

    def contains(self, hpa: int) -> bool:
        return self.base_bytes <= hpa < self.end_bytes

    def channel_of(self, hpa: int, interleave: InterleaveConfig | None = None) -> int:
        """The channel serving `hpa`: with interleave on and several channels listed, the
        granule index `(offset // granularity) % len(channels)` picks one; otherwise `channel`."""
        if not self.contains(hpa):
            raise ValueError(f"address {hex_addr(hpa)} is not in range {self.name!r}")
        if interleave is None or not interleave.enabled or len(self.channels) < 2:
            return self.channel
        offset = hpa - self.base_bytes
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


def _default_ram() -> tuple[RangeConfig, ...]:
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
    ram: tuple[RangeConfig, ...] = _f("the physical memory map", parse="ram",
                                      factory=_default_ram)
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
        for r in self.ram:
            if r.contains(hpa):
                return r
        raise ValueError(f"address {hex_addr(hpa)} is not in the memory map of {self.name!r}")

    def channel_of(self, hpa: int) -> int:
        return self.range_of(hpa).channel_of(hpa, self.interleave)

    @property
    def dram(self) -> tuple[RangeConfig, ...]:
        return tuple(r for r in self.ram if r.kind == "dram")

    @property
    def scm(self) -> tuple[RangeConfig, ...]:
        return tuple(r for r in self.ram if r.kind == "scm")

    def range_specs(self) -> list[Any]:
        """The memory map as `hw.physmem.RangeSpec`s, for `PhysicalMemory`."""
        from hw.physmem import RangeSpec

        return [RangeSpec(r.name, r.kind, r.base_bytes, r.size_bytes, r.channel) for r in self.ram]


SECTIONS: dict[str, type] = {"cache": CacheConfig, "interleave": InterleaveConfig,
                             "storage": StorageConfig, "checkpoint": CheckpointConfig}


def default_machine() -> MachineConfig:
    """Two 256 MiB DRAM ranges on channels 0 and 1, a 64 MiB SCM range 'pmem0' at 4 GiB."""
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


def _build(cls: type, table: dict[str, Any], source: str, prefix: str, style: str) -> Any:
    by_key = {_key_of(f, style): f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for k, v in table.items():
        path = f"{prefix}.{k}" if prefix else k
        f = by_key.get(k)
        if f is None:
            raise _unknown_key(source, path, k, by_key)
        parse = f.metadata["parse"]
        if parse == "table":
            sub = SECTIONS[f.name]
            kwargs[f.name] = _build(sub, _check_table(v, source, path), source, path, style)
        elif parse == "ram":
            kwargs[f.name] = _build_ram(v, source, path, style)
        else:
            try:
                kwargs[f.name] = _PARSERS[parse](v, False)
            except _Bad as e:
                raise _err(source, path, str(e)) from None
    if cls is RangeConfig:
        missing = [k for k, f in by_key.items()
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                   and f.name not in kwargs]
        if missing:
            raise _err(source, prefix, f"missing key {missing[0]!r} (a range needs "
                       + ", ".join(repr(k) for k in by_key if k not in ("channel", "channels")) + ")")
        if "channel" not in kwargs and kwargs.get("channels"):
            kwargs["channel"] = kwargs["channels"][0]
    return cls(**kwargs)


def _build_ram(v: Any, source: str, key: str, style: str) -> tuple[RangeConfig, ...]:
    if not isinstance(v, list):
        raise _err(source, key, f"expected an array of tables ([[ram]]), got {_describe(v)}")
    return tuple(_build(RangeConfig, _check_table(t, source, f"{key}[{i}]"), source,
                        f"{key}[{i}]", style) for i, t in enumerate(v))


# --------------------------------------------------------------------------------------------
# Resolution and validation
# --------------------------------------------------------------------------------------------

def _resolve(cfg: MachineConfig) -> MachineConfig:
    """Fill in what the file leaves implicit: DRAM ranges without their own `channels` take the
    interleave section's, when interleaving is on."""
    il = cfg.interleave
    if not (il.enabled and il.channels):
        return cfg
    ram = []
    for r in cfg.ram:
        if r.kind == "dram" and not r.channels:
            ch = r.channel if r.channel in il.channels else il.channels[0]
            r = dataclasses.replace(r, channels=il.channels, channel=ch)
        ram.append(r)
    return dataclasses.replace(cfg, ram=tuple(ram))


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


def validate(cfg: MachineConfig, source: str = "<machine>", style: str = "toml") -> MachineConfig:
    """Check the whole configuration; raise ConfigError naming `source` and the key. Key names
    follow `style`: "toml" (machine file) or "field" (resolved JSON)."""
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

    # checkpointing
    ck = cfg.checkpoint
    if ck.enabled:
        names = [r.name for r in cfg.scm]
        if not names:
            raise _err(source, "checkpoint.enabled", "checkpointing needs an 'scm' range in the memory map")
        if ck.range and ck.range not in names:
            raise _err(source, "checkpoint.range", f"{ck.range!r} is not an SCM range (have: {', '.join(names)})")

    # memory map
    if not cfg.ram:
        raise _err(source, "ram", "the memory map is empty; at least one 'dram' range is needed")
    base_k, size_k = k(RangeConfig, "base_bytes"), k(RangeConfig, "size_bytes")
    seen: dict[str, int] = {}
    for i, r in enumerate(cfg.ram):
        at = f"ram[{i}]"
        if not r.name:
            raise _err(source, f"{at}.name", "must not be empty")
        if r.name in seen:
            raise _err(source, f"{at}.name", f"range name {r.name!r} is already used by ram[{seen[r.name]}]")
        seen[r.name] = i
        _choice(source, f"{at}.kind", "kind", r.kind, KINDS)
        if r.base_bytes % PAGE_BYTES:
            raise _err(source, f"{at}.{base_k}", f"range {r.name!r} base {hex_addr(r.base_bytes)} "
                       f"is not a multiple of 4 KiB")
        if r.size_bytes <= 0 or r.size_bytes % PAGE_BYTES:
            raise _err(source, f"{at}.{size_k}", f"range {r.name!r} size {r.size_bytes} is not a "
                       f"positive multiple of 4 KiB")
        _check_channel(source, f"{at}.channel", r.channel)
        for ch in r.channels:
            _check_channel(source, f"{at}.channels", ch)
        if r.channels:
            if len(set(r.channels)) != len(r.channels):
                raise _err(source, f"{at}.channels", f"lists a channel twice: {list(r.channels)}")
            if r.channel not in r.channels:
                raise _err(source, f"{at}.channel", f"channel {r.channel} of range {r.name!r} is not "
                           f"among its channels {list(r.channels)}")
            if il.enabled and len(r.channels) > 1 and r.size_bytes % il.granularity_bytes:
                raise _err(source, f"{at}.{size_k}", f"range {r.name!r} size is not a multiple of "
                           f"the interleave granularity ({human_size(il.granularity_bytes)})")
    order = sorted(range(len(cfg.ram)), key=lambda i: cfg.ram[i].base_bytes)
    for a, b in zip(order, order[1:]):
        ra, rb = cfg.ram[a], cfg.ram[b]
        if ra.end_bytes > rb.base_bytes:
            raise _err(source, f"ram[{b}].{base_k}", f"range {rb.name!r} "
                       f"[{hex_addr(rb.base_bytes)}, {hex_addr(rb.end_bytes)}) overlaps range "
                       f"{ra.name!r} [{hex_addr(ra.base_bytes)}, {hex_addr(ra.end_bytes)})")
    drams = [i for i in order if cfg.ram[i].kind == "dram"]
    if not drams:
        raise _err(source, "ram", "no 'dram' range; the kernel needs DRAM at address 0")
    first = cfg.ram[drams[0]]
    if first.base_bytes != 0:
        raise _err(source, f"ram[{drams[0]}].{base_k}", f"the first DRAM range must start at 0 "
                   f"(the kernel boots from it); {first.name!r} starts at {hex_addr(first.base_bytes)}")
    return cfg


def _finish(cfg: MachineConfig, source: str, style: str) -> MachineConfig:
    """Resolve, validate (with the file's own range order in messages), sort the map by address."""
    cfg = validate(_resolve(cfg), source, style)
    return dataclasses.replace(cfg, ram=tuple(sorted(cfg.ram, key=lambda r: r.base_bytes)))


# --------------------------------------------------------------------------------------------
# Loading and saving
# --------------------------------------------------------------------------------------------

def machine_from_toml(text: str, source: str = "<toml>") -> MachineConfig:
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: bad TOML: {' '.join(str(e).split())}") from None
    return _finish(_build(MachineConfig, table, source, "", "toml"), source, "toml")


def machine_from_dict(d: dict[str, Any], source: str = "<dict>") -> MachineConfig:
    """The inverse of `machine_to_dict` (field names, plain ints)."""
    _check_table(d, source, "", "a JSON object")
    return _finish(_build(MachineConfig, d, source, "", "field"), source, "field")


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
    if name not in names:
        raise _unknown_key(source, path, name, names)
    return names[name]


def _coerce(f: dataclasses.Field, v: Any, text: bool, source: str, path: str) -> Any:
    parse = f.metadata["parse"]
    if parse in ("table", "ram"):
        expected = SECTIONS[f.name] if parse == "table" else tuple
        if not isinstance(v, expected):
            hint = "; set its keys one by one, e.g. cache.size=4M" if parse == "table" else \
                "; set range keys as ram.<name>.<key>, or use a machine file to change the map"
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
    if parse == "ram" and len(parts) == 3:
        sel = parts[1]
        m = re.fullmatch(r"\[?(\d+)\]?", sel)
        idx = int(m.group(1)) if m else next((i for i, r in enumerate(cfg.ram) if r.name == sel), None)
        if idx is None or idx >= len(cfg.ram):
            names = [r.name for r in cfg.ram]
            raise _err(source, key, f"no range {sel!r} in the memory map{_suggest(sel, names)}")
        f = _field_named(RangeConfig, parts[2], source, key)
        ram = list(cfg.ram)
        ram[idx] = dataclasses.replace(ram[idx], **{f.name: _coerce(f, value, text, source, key)})
        return dataclasses.replace(cfg, ram=tuple(ram))
    raise _err(source, key, "bad key (use KEY, SECTION.KEY or ram.<name>.KEY)")


def derive(cfg: MachineConfig, **overrides: Any) -> MachineConfig:
    """A copy of `cfg` with some values changed, validated. Keys are field names or TOML keys,
    nested with '.' (pass as **{"cache.size_bytes": ...}) or '__' (cache__size_bytes=...).
    String values for numeric fields are parsed like the TOML file's ("4M", "2GHz", "0x1000")."""
    for key, value in overrides.items():
        cfg = _set(cfg, key, value, isinstance(value, str), f"derive({key}=...)")
    return _finish(cfg, "derive", "field")


def apply_overrides(cfg: MachineConfig, items: Iterable[str]) -> MachineConfig:
    """CLI overrides: ["cache.size=4M", "model_level=full", "ram.pmem0.size=128M"]."""
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


# --------------------------------------------------------------------------------------------
# Display
# --------------------------------------------------------------------------------------------

def _channels_text(r: RangeConfig, il: InterleaveConfig) -> str:
    if il.enabled and len(r.channels) > 1:
        return ",".join(map(str, r.channels)) + f" / {human_size(il.granularity_bytes)}"
    return str(r.channel)


def memory_table(cfg: MachineConfig) -> Any:
    from rich.table import Table

    t = Table(title=f"memory map of {cfg.name!r}", title_justify="left")
    for col, just in (("name", "left"), ("kind", "left"), ("base", "right"), ("end", "right"),
                      ("size", "right"), ("channel(s)", "right"), ("persistent", "left")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in cfg.ram:
        t.add_row(r.name, r.kind, hex_addr(r.base_bytes), hex_addr(r.end_bytes),
                  human_size(r.size_bytes), _channels_text(r, cfg.interleave),
                  "yes" if r.persistent else "no")
    return t


def settings_table(cfg: MachineConfig) -> Any:
    from rich.table import Table

    c = cfg.cache
    t = Table(title="machine", title_justify="left", show_header=False)
    t.add_column("key")
    t.add_column("value")
    t.add_row("cpu clock", f"{human_hz(cfg.cpu_hz)} (1 instruction / cycle)")
    t.add_row("cache", f"{human_size(c.size_bytes)}, {c.ways}-way, {c.line_bytes} B lines, {c.sets} sets")
    t.add_row("interleave", f"on, {human_size(cfg.interleave.granularity_bytes)} granules"
              if cfg.interleave.enabled else "off")
    t.add_row("persistence domain", cfg.persistence_domain)
    t.add_row("model level", cfg.model_level)
    t.add_row("storage block", human_size(cfg.storage.block_size_bytes))
    t.add_row("seed / quantum", f"{cfg.seed} / {cfg.quantum_insns:,} insns")
    ck = cfg.checkpoint
    t.add_row("checkpointing", f"on, tcp {ck.tcp_ns / 1e9:g} s, into {ck.range or cfg.scm[0].name}"
              if ck.enabled else "off")
    return t


def show_table(cfg: MachineConfig) -> Any:
    """A rich Table (grid) holding the memory map table and the settings table."""
    from rich.table import Table

    grid = Table.grid(padding=(1, 0))
    grid.add_column()
    grid.add_row(memory_table(cfg))
    grid.add_row(settings_table(cfg))
    return grid


def memory_map_ascii(cfg: MachineConfig) -> str:
    """The memory map drawn like xv6's memlayout.h: high addresses on top, holes marked."""
    ranges = sorted(cfg.ram, key=lambda r: r.base_bytes)
    labels = [f"{r.name}  {r.kind}  {human_size(r.size_bytes)}  ch {_channels_text(r, cfg.interleave)}"
              for r in ranges]
    width = max([len(s) for s in labels] + [20]) + 4
    edge = "+" + "-" * width + "+"
    addr_w = max(len(hex_addr(r.end_bytes)) for r in ranges)
    lines: list[str] = []

    def boundary(addr: int) -> None:
        lines.append(f"{hex_addr(addr):>{addr_w}} {edge}")

    pad = " " * (addr_w + 1)
    for i in range(len(ranges) - 1, -1, -1):
        r = ranges[i]
        boundary(r.end_bytes)
        note = "  persistent" if r.persistent else ""
        lines.append(f"{pad}|{labels[i].center(width)}|{note}")
        below = ranges[i - 1].end_bytes if i else None
        if below is not None and below < r.base_bytes:
            boundary(r.base_bytes)
            lines.append(f"{pad}:{('(unmapped, ' + human_size(r.base_bytes - below) + ')').center(width)}:")
    boundary(ranges[0].base_bytes if ranges else 0)
    return "\n".join(lines) + "\n"
