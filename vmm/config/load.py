"""Making a MachineConfig: from a TOML machine file or a resolved JSON (`load_machine`), from a
dict (`machine_from_dict`), the default (`default_machine`), with changes (`derive`, the CLI's
`apply_overrides`); and back to plain data (`machine_to_dict`, `save_resolved`). Whatever is made
is resolved and validated (`_finish`)."""
from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterable

from vmm.config.schema import SECTIONS, DiskConfig, GuestRamConfig, MachineConfig, RangeConfig, _key_of
from vmm.config.units import _PARSERS, _Bad, _describe
from vmm.config.validation import ConfigError, _err, _suggest, validate


def default_machine() -> MachineConfig:
    """Two 256 MiB DRAM pools on channels 0 and 1, a 64 MiB SCM pool 'pmem0' at 4 GiB; guest RAM
    is the two DRAM pools from gpa 0, /dev/pmem0 the SCM pool at gpa 4 GiB."""
    return MachineConfig()


# --------------------------------------------------------------------------------------------
# Building dataclasses from tables (TOML, resolved JSON)
# --------------------------------------------------------------------------------------------

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
        elif parse == "disks":
            kwargs[f.name] = _build_list(DiskConfig, v, source, path, style, "[[disk]] image = PATH")
        else:
            try:
                kwargs[f.name] = _PARSERS[parse](v, False)
            except _Bad as e:
                raise _err(source, path, str(e)) from None
    if cls in (RangeConfig, GuestRamConfig, DiskConfig):
        missing = [k for k, f in by_key.items()
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                   and f.name not in kwargs]
        if missing:
            what = {RangeConfig: "a pool", GuestRamConfig: "a guest RAM range", DiskConfig: "a disk"}[cls]
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


# --------------------------------------------------------------------------------------------
# Resolution
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


def _finish(cfg: MachineConfig, source: str, style: str, pool_key: str = "") -> MachineConfig:
    """Resolve, validate (with the file's own pool order in messages), sort the pools by address."""
    cfg = validate(_resolve(cfg), source, style, pool_key)
    return dataclasses.replace(cfg, pools=tuple(sorted(cfg.pools, key=lambda r: r.base_hpa)))


# --------------------------------------------------------------------------------------------
# Loading and saving
# --------------------------------------------------------------------------------------------

def machine_from_toml(text: str, source: str = "<toml>") -> MachineConfig:
    import tomllib  # (here: only machine files need it, not every start)

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
    cfg = machine_from_toml(text, str(p))
    # A disk image named relative to the machine file is found beside it.
    disks = tuple(dataclasses.replace(d, image=str((p.parent / d.image).resolve())) for d in cfg.disks)
    return dataclasses.replace(cfg, disks=disks) if disks else cfg


def with_disk(cfg: MachineConfig, spec: str) -> MachineConfig:
    """`--disk PATH[:ro]`: one more disk after the machine's own."""
    path, _, opt = spec.rpartition(":") if spec.endswith(":ro") else (spec, "", "")
    if not path:
        raise ConfigError(f"--disk {spec}: expected PATH or PATH:ro")
    disk = DiskConfig(image=str(Path(path).resolve()), read_only=opt == "ro")
    return dataclasses.replace(cfg, disks=cfg.disks + (disk,))


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
    if parse in ("table", "pools", "guest_ram", "disks"):
        expected = SECTIONS[f.name] if parse == "table" else tuple
        if not isinstance(v, expected):
            hint = "; set its keys one by one, e.g. cache.size=4M" if parse == "table" else \
                "; attach disks with --disk PATH or [[disk]] entries" if parse == "disks" else \
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
    if parse == "table":
        return dataclasses.replace(cfg, **{top.name: _set_in(getattr(cfg, top.name), parts[1:], value, text, source, key)})
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


def _set_in(table: Any, parts: list[str], value: Any, text: bool, source: str, key: str) -> Any:
    """Set SECTION[.SUBSECTION...].KEY inside a section (kernel.memory.zones=split)."""
    f = _field_named(type(table), parts[0], source, key)
    if len(parts) == 1:
        return dataclasses.replace(table, **{f.name: _coerce(f, value, text, source, key)})
    if f.metadata["parse"] != "table":
        raise _err(source, key, f"{parts[0]!r} is a value, not a section")
    return dataclasses.replace(table, **{f.name: _set_in(getattr(table, f.name), parts[1:], value, text, source, key)})


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
