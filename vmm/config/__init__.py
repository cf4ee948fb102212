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

The modules: `schema.py` (the dataclasses, the guest map), `units.py` (sizes, frequencies,
durations, addresses: parsed and shown), `load.py` (from TOML, JSON or a dict; overrides; back
to JSON), `validate.py` (the checks, `ConfigError`). Drawing a configuration is the CLI's
(emu/machineview.py). Everything is imported from here: `from vmm.config import load_machine`.
"""
from __future__ import annotations

from vmm.config.load import (
    LEGACY_KEYS, apply_overrides, default_machine, derive, load_machine, machine_config, machine_from_dict,
    machine_from_toml, machine_to_dict, save_resolved, with_disk,
)
from vmm.config.schema import (
    DEVICE_WINDOW_GPA, EPT_INITIAL, KINDS, MAX_CHANNEL, MODEL_LEVELS, PAGE_BYTES, PERSISTENCE_DOMAINS, SECTIONS,
    SUPPORTED_LINE_BYTES, CacheConfig, CheckpointConfig, DiskConfig, EptConfig, GuestConfig, GuestRamConfig, GuestRange,
    InterleaveConfig, MachineConfig, PLACEMENT_POLICIES, PlacementConfig, RangeConfig, StorageConfig,
)
from vmm.config.units import GiB, KiB, MiB, hex_addr, human_hz, human_size, parse_addr, parse_duration, parse_hz, parse_size
from vmm.config.validation import ConfigError, validate

__all__ = [
    # schema
    "CacheConfig", "CheckpointConfig", "DiskConfig", "EptConfig", "GuestConfig", "GuestRamConfig", "GuestRange", "InterleaveConfig",
    "MachineConfig", "PlacementConfig", "PLACEMENT_POLICIES", "RangeConfig", "StorageConfig", "SECTIONS", "DEVICE_WINDOW_GPA", "EPT_INITIAL", "KINDS",
    "MAX_CHANNEL", "MODEL_LEVELS", "PAGE_BYTES", "PERSISTENCE_DOMAINS", "SUPPORTED_LINE_BYTES",
    # units
    "KiB", "MiB", "GiB", "hex_addr", "human_hz", "human_size", "parse_addr", "parse_duration", "parse_hz", "parse_size",
    # load
    "LEGACY_KEYS", "apply_overrides", "default_machine", "derive", "load_machine", "machine_config",
    "machine_from_dict", "machine_from_toml", "machine_to_dict", "save_resolved", "with_disk",
    # validate
    "ConfigError", "validate",
]
