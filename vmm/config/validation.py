"""Validation of a machine configuration, and how its problems read: a `ConfigError` of one line
naming the source, the key and what is wrong (`source: key: problem`), with a suggestion for a
misspelt key or value."""
from __future__ import annotations

import difflib
from dataclasses import fields
from typing import Callable, Iterable

from vmm.config.schema import (
    CHECKPOINT_MMAP_RULES, DISK_MODELS, EPT_INITIAL, KINDS, PLACEMENT_POLICIES, ZONE_POLICIES, MAX_CHANNEL, MODEL_LEVELS, PAGE_BYTES, PERSISTENCE_DOMAINS, STORAGE_MODES, STORAGE_POOL,
    SUPPORTED_LINE_BYTES,
    CacheConfig, InterleaveConfig, MachineConfig, RangeConfig, StorageConfig, _key_of,
)
from hw.disktiming import fit_seek_curve
from vmm.config.units import GiB, KiB, MiB, hex_addr, human_size
from vmm.energy import shared_channel
from vmm.errors import EmuError


MAX_CPUS = 256


class ConfigError(EmuError):
    """A machine file or override is wrong. The message is one line: `source: key: problem`."""


def _err(source: str, key: str, problem: str) -> ConfigError:
    return ConfigError(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")


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
    if cfg.storage.block_io_ns <= 0:
        raise _err(source, f"storage.{k(StorageConfig, 'block_io_ns')}",
                   f"must be positive, got {cfg.storage.block_io_ns} ns")
    _validate_hdd(cfg.storage, source, lambda name: f"storage.{k(StorageConfig, name)}")
    if not 1 <= cfg.cpus <= MAX_CPUS:
        raise _err(source, "cpus", f"{cfg.cpus} must be between 1 and {MAX_CPUS}")
    _choice(source, "storage.mode", "storage mode", cfg.storage.mode, STORAGE_MODES)
    if cfg.storage.channel != -1:
        _check_channel(source, "storage.channel", cfg.storage.channel)
    if cfg.storage.log_bytes % PAGE_BYTES or not 64 * KiB <= cfg.storage.log_bytes <= 256 * MiB:
        raise _err(source, f"storage.{k(StorageConfig, 'log_bytes')}",
                   f"{cfg.storage.log_bytes} must be a multiple of 4 KiB between 64 KiB and 256 MiB")
    if any(r.name == STORAGE_POOL for r in cfg.pools) and cfg.storage.mode != "memory":
        # (in memory mode the machine adds it, and a saved machine, a snapshot's, carries it)
        raise _err(source, pool_key, f"pool name {STORAGE_POOL!r} is kept for the storage window of memory mode")

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

    shared = shared_channel(cfg)
    if shared:
        a, b, ch = shared
        i = next(i for i, r in enumerate(cfg.pools) if r.name == a)
        raise _err(source, f"{pool_key}[{i}]", f"pool {a!r} has energy parameters but shares channel {ch} "
                   f"with pool {b!r}: the estimate needs a pool's channels to itself")

    # checkpointing
    ck = cfg.checkpoint
    scm_names = [r.name for r in cfg.scm]
    path = ck.in_file
    if ck.into != "scm" and (path is None or not path.startswith("/") or path.rstrip("/") == ""
                             or "\0" in path):
        raise _err(source, "checkpoint.into", f"expected 'scm' or 'file:/ABSOLUTE/PATH', got {ck.into!r}")
    _choice(source, "checkpoint.mmap_rule", "checkpoint mmap rule", ck.mmap_rule, CHECKPOINT_MMAP_RULES)
    if ck.file_size_bytes % PAGE_BYTES or not 64 * KiB <= ck.file_size_bytes <= 4 * GiB:
        raise _err(source, "checkpoint.file_size", f"{ck.file_size_bytes} must be a multiple of 4 KiB "
                   "between 64 KiB and 4 GiB")
    if ck.enabled and path is not None:
        if cfg.storage.mode != "memory":
            raise _err(source, "checkpoint.into", "checkpoints in a file need storage.mode = 'memory' "
                       "(the file lives on the storage window)")
    elif ck.enabled:
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
    if ck.enabled and path is None and cfg.checkpoint_pool in use:
        raise _err(source, "checkpoint.range", f"pool {cfg.checkpoint_pool!r} already backs guest {use[cfg.checkpoint_pool]}")
    if not cfg.guest.ram and not cfg.dram:
        raise _err(source, "guest.ram", "no guest RAM: list it (guest.ram = [{from = POOL}]) or add a 'dram' pool")
    _validate_placement(cfg, source)
    km = cfg.kernel.memory
    _choice(source, "kernel.memory.zones", "zone policy", km.zones, ZONE_POLICIES)
    ram = sum(g.size_bytes for g in cfg.guest_ranges("ram"))
    if km.fragmenting_zone_bytes % PAGE_BYTES or not 0 <= km.fragmenting_zone_bytes < ram:
        raise _err(source, "kernel.memory.fragmenting_zone", f"must be a whole number of pages below the "
                   f"guest RAM size ({human_size(ram)})")
    if not 0 <= km.mount_buffer_order < 11:
        raise _err(source, "kernel.memory.mount_buffer_order", "must be between 0 and 10 (the buddy allocator's orders)")
    if not 0 <= km.mount_buffers <= 64:
        raise _err(source, "kernel.memory.mount_buffers", "must be between 0 and 64")
    return cfg


def _validate_hdd(st: StorageConfig, source: str, key: Callable[[str], str]) -> None:
    """storage.disk and the hdd_* keys (checked whichever model is chosen: a machine file
    stays valid when another one switches the model)."""
    _choice(source, key("disk_model"), "disk timing model", st.disk_model, DISK_MODELS)
    if not 600 <= st.hdd_rpm <= 30_000:
        raise _err(source, key("hdd_rpm"), f"{st.hdd_rpm} must be between 600 and 30000")
    if not 1 <= st.hdd_heads <= 64:
        raise _err(source, key("hdd_heads"), f"{st.hdd_heads} must be between 1 and 64")
    if not 0 <= st.hdd_buffer_tracks <= 256:
        raise _err(source, key("hdd_buffer_tracks"), f"{st.hdd_buffer_tracks} must be between 0 and 256")
    for name in ("hdd_media_bytes_per_s", "hdd_capacity_bytes", "hdd_track_to_track_ns", "hdd_avg_seek_ns",
                 "hdd_full_stroke_ns"):
        if getattr(st, name) <= 0:
            raise _err(source, key(name), f"must be positive, got {getattr(st, name)}")
    if st.hdd_overhead_ns < 0:
        raise _err(source, key("hdd_overhead_ns"), f"must not be negative, got {st.hdd_overhead_ns} ns")
    p = st.hdd_params()
    if p.sectors_per_track < 1:
        raise _err(source, key("hdd_media_bytes_per_s"), f"{st.hdd_media_bytes_per_s} bytes/s is less than a "
                   f"512-byte sector per revolution at {st.hdd_rpm} rpm")
    try:
        fit_seek_curve(p.track_to_track_ns, p.avg_seek_ns, p.full_stroke_ns, p.cylinders)
    except ValueError as e:
        raise _err(source, key("hdd_avg_seek_ns"), str(e)) from None


def _validate_placement(cfg: MachineConfig, source: str) -> None:
    pl = cfg.placement
    _choice(source, "placement.policy", "placement policy", pl.policy, PLACEMENT_POLICIES)
    if pl.scan_interval_ns <= 0:
        raise _err(source, "placement.scan_interval", "must be positive")
    if pl.migrate_interval_ns < pl.scan_interval_ns or pl.migrate_interval_ns % pl.scan_interval_ns:
        raise _err(source, "placement.migrate_interval", "must be a multiple of placement.scan_interval")
    if pl.max_pairs < 0 or pl.queues < 1 or pl.lifetime_ns <= 0 or pl.pause_ns < 0 or pl.swap_ns < 0:
        raise _err(source, "placement", "max_pairs >= 0, queues >= 1, lifetime > 0, pause and swap >= 0")
    if pl.policy != "none":
        kinds = {cfg.pool(g.pool).kind for g in cfg.guest_ranges("ram")}
        if kinds != {"dram", "scm"}:
            raise _err(source, "placement.policy", f"policy {pl.policy!r} moves pages between DRAM and "
                       "SCM/MRAM: guest RAM must come from both kinds of pool")
    if pl.policy == "oracle" and not pl.trace:
        raise _err(source, "placement.trace", "the oracle replays a trace: record one with "
                   "placement.record=FILE (same machine and program), then give placement.trace=FILE")
