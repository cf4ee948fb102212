"""Machine configuration: the default machine, the example machine files, the resolved JSON,
overrides, one-line validation errors and channel interleaving."""
from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table

from emu.machineview import memory_map_ascii, show_table
from vmm.config import (
    MiB, CacheConfig, ConfigError, InterleaveConfig, MachineConfig, RangeConfig, apply_overrides,
    default_machine, derive, load_machine, machine_from_dict, machine_to_dict, parse_hz, parse_size,
    save_resolved,
)
from vmm.errors import EmuError

MACHINES = Path(__file__).parents[2] / "machines"
MACHINE_FILES = sorted(MACHINES.glob("*.toml"))


# --- the default machine ------------------------------------------------------------------

def test_default_machine_ranges():
    cfg = default_machine()
    assert [(r.name, r.kind, r.base_hpa, r.size_bytes, r.channel) for r in cfg.pools] == [
        ("dram0", "dram", 0, 256 * MiB, 0),
        ("dram1", "dram", 0x1000_0000, 256 * MiB, 1),
        ("pmem0", "scm", 0x1_0000_0000, 64 * MiB, 2),
    ]
    assert not cfg.interleave.enabled
    assert cfg.cache == CacheConfig(8 * MiB, 16, 64) and cfg.cache.sets == 8192
    assert (cfg.cpu_hz, cfg.persistence_domain, cfg.model_level) == (2_000_000_000, "adr", "fast")
    assert (cfg.seed, cfg.quantum_insns, cfg.storage.block_size_bytes) == (1, 10_000_000, 4096)
    assert [r.persistent for r in cfg.pools] == [False, False, True]


def test_default_machine_is_valid():
    # round-tripping through the validating loader changes nothing
    assert machine_from_dict(machine_to_dict(default_machine())) == default_machine()
    assert load_machine(None) == default_machine()


def test_fields_have_descriptions():
    for cls in (MachineConfig, CacheConfig, RangeConfig, InterleaveConfig):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("doc"), f"{cls.__name__}.{f.name}"


# --- example machine files ----------------------------------------------------------------

def test_machine_files_exist():
    names = {p.name for p in MACHINE_FILES}
    assert {"default.toml", "hybrid-mram.toml", "eadr.toml"} <= names


@pytest.mark.parametrize("path", MACHINE_FILES, ids=lambda p: p.name)
def test_machine_file_loads(path):
    cfg = load_machine(path)
    assert cfg.pools[0].base_hpa == 0 and cfg.pools[0].kind == "dram"
    Console(file=io.StringIO(), width=120).print(show_table(cfg))
    assert isinstance(show_table(cfg), Table)
    art = memory_map_ascii(cfg)
    for r in cfg.pools:
        assert r.name in art


def test_default_toml_is_the_default_machine():
    assert load_machine(MACHINES / "default.toml") == default_machine()


def test_eadr_toml():
    cfg = load_machine(MACHINES / "eadr.toml")
    assert cfg.persistence_domain == "eadr"
    assert cfg.pools == default_machine().pools


def test_hybrid_mram_toml():
    cfg = load_machine(MACHINES / "hybrid-mram.toml")
    assert [(r.name, r.kind, r.base_hpa, r.size_bytes, r.channel) for r in cfg.pools] == [
        ("dram", "dram", 0, 4 * MiB, 2),
        ("mram", "scm", 4 * MiB, 156 * MiB, 3),
    ]
    assert not cfg.interleave.enabled
    # the paper's layout: guest RAM is MRAM first, then DRAM; no pmem device
    assert [(g.name, g.kind, g.base_gpa, g.size_bytes, g.pool) for g in cfg.guest_map()] == [
        ("mram", "ram", 0, 156 * MiB, "mram"),
        ("dram", "ram", 156 * MiB, 4 * MiB, "dram"),
    ]


def test_partial_file_takes_defaults(tmp_path):
    p = tmp_path / "m.toml"
    p.write_text('name = "small"\n[cache]\nsize = "4M"\n')
    cfg = load_machine(p)
    assert cfg.name == "small" and cfg.cache.size_bytes == 4 * MiB
    assert cfg.pools == default_machine().pools and cfg.cache.ways == 16


def test_memory_map_ascii_order():
    art = memory_map_ascii(default_machine())
    guest, host = art.split("\n\n")
    for part, title in ((guest, "guest-physical (gpa)"), (host, "host-physical (hpa)")):
        lines = part.splitlines()
        assert title in lines[0]
        assert lines[1].startswith("0x1_0400_0000") and lines[-1].strip().startswith("0x0")
    assert "unmapped" in art and "persistent" in host and "-> pool pmem0" in guest


# --- units --------------------------------------------------------------------------------

@pytest.mark.parametrize("text,value", [
    (4096, 4096), ("4096", 4096), ("4K", 4096), ("4KiB", 4096), ("4 KB", 4096), ("8M", 8 * MiB),
    ("8MiB", 8 * MiB), ("1G", 1 << 30), ("1GiB", 1 << 30), ("0x1000", 4096), ("1.5K", 1536),
    ("256_MiB", 256 * MiB),
])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text,value", [
    (2_000_000_000, 2_000_000_000), ("2GHz", 2_000_000_000), ("2000MHz", 2_000_000_000),
    ("2.4 GHz", 2_400_000_000), ("100kHz", 100_000), ("5", 5),
])
def test_parse_hz(text, value):
    assert parse_hz(text) == value


# --- resolved JSON ------------------------------------------------------------------------

@pytest.mark.parametrize("path", MACHINE_FILES, ids=lambda p: p.name)
def test_round_trip_json(path, tmp_path):
    cfg = load_machine(path)
    d = machine_to_dict(cfg)
    text = json.dumps(d, sort_keys=True)
    again = machine_from_dict(json.loads(text))
    assert again == cfg
    assert json.dumps(machine_to_dict(again), sort_keys=True) == text
    out = save_resolved(cfg, tmp_path / "run" / "machine.json")
    assert json.loads(out.read_text()) == d
    assert load_machine(out) == cfg


def test_resolved_dict_uses_field_names():
    d = machine_to_dict(default_machine())
    assert d["cache"] == {"size_bytes": 8 * MiB, "ways": 16, "line_bytes": 64}
    assert d["pools"][2] == {"name": "pmem0", "kind": "scm", "base_hpa": 0x1_0000_0000,
                             "size_bytes": 64 * MiB, "channel": 2, "channels": [], "read_pj_per_bit": 0.0,
                             "write_pj_per_bit": 0.0, "static_mw_per_gib": 0.0}
    assert d["guest"] == {"ram": [], "pmem": []} and d["ept"] == {"initial": "identity"}
    old = dict(d, ram=[{("base_bytes" if k == "base_hpa" else k): v for k, v in r.items()} for r in d.pop("pools")])
    del old["guest"], old["ept"]  # the resolved JSON of older runs still loads
    assert machine_from_dict(old) == default_machine()


# --- overrides ----------------------------------------------------------------------------

def test_apply_overrides():
    cfg = apply_overrides(default_machine(), ["cache.size_bytes=4M", "model_level=full",
                                              "cpu_hz=3GHz", "cache.ways=8", "ram.pmem0.size=128M",
                                              "interleave.enabled=true", "seed=0x10"])
    assert cfg.cache == CacheConfig(4 * MiB, 8, 64)
    assert cfg.model_level == "full" and cfg.cpu_hz == 3_000_000_000 and cfg.seed == 16
    assert cfg.pools[2].size_bytes == 128 * MiB and cfg.interleave.enabled
    assert default_machine().cache.size_bytes == 8 * MiB  # frozen, untouched


def test_overrides_by_toml_key_and_index():
    cfg = apply_overrides(default_machine(), ["cache.size=2MiB", "ram.2.channel=5",
                                              "persistence_domain=eadr"])
    assert cfg.cache.size_bytes == 2 * MiB and cfg.pools[2].channel == 5
    assert cfg.persistence_domain == "eadr"


def test_derive():
    base = default_machine()
    cfg = derive(base, model_level="persist", cache=CacheConfig(size_bytes=16 * MiB),
                 **{"cache.ways": 8}, interleave__granularity_bytes="64K", quantum_insns=1000)
    assert cfg.model_level == "persist" and cfg.quantum_insns == 1000
    assert cfg.cache == CacheConfig(16 * MiB, 8, 64)
    assert cfg.interleave.granularity_bytes == 64 * 1024
    assert derive(base) == base


@pytest.mark.parametrize("items,key,problem", [
    (["cache.size=3M"], "cache.size", "power of two"),
    (["model_level=fastest"], "model_level", "unknown model level"),
    (["cache.sise=4M"], "cache.sise", "did you mean 'size'"),
    (["ram.pmem1.size=4M"], "ram.pmem1.size", "did you mean 'pmem0'"),
    (["cache.ways=many"], "cache.ways", "expected an integer"),
    (["seed"], "seed", "KEY=VALUE"),
    (["ram.dram1.base=0x1000"], "pools[1].base_hpa", "overlaps"),
    (["pool.dram1.base=0x1000"], "pools[1].base_hpa", "overlaps"),
    (["ept.initial=scrambled"], "ept.initial", "unknown initial EPT"),
    (["storage.disk=ssd"], "storage.disk", "unknown disk timing model 'ssd' (expected one of flat, hdd)"),
    (["storage.hdd_rpm=100"], "storage.hdd_rpm", "100 must be between 600 and 30000"),
    (["storage.hdd_full_stroke=40ms"], "storage.hdd_avg_seek", "no seek curve: the full stroke (40000000 ns) is too long"),
    (["storage.hdd_media_rate=1000"], "storage.hdd_media", "less than a 512-byte sector per revolution"),
])
def test_bad_overrides(items, key, problem):
    with pytest.raises(ConfigError) as ei:
        apply_overrides(default_machine(), items)
    msg = str(ei.value)
    assert "\n" not in msg and key in msg.replace("_bytes", "") and problem in msg, msg


def test_storage_disk_model_override():
    cfg = apply_overrides(default_machine(), ["storage.disk=hdd", "storage.hdd_rpm=5400", "storage.hdd_buffer_tracks=0"])
    assert (default_machine().storage.disk_model, cfg.storage.disk_model) == ("flat", "hdd")
    p = cfg.storage.hdd_params()
    assert (p.rpm, p.rev_ns, p.buffer_tracks, p.avg_seek_ns, p.capacity_bytes) == (5400, 11_111_111, 0, 8_500_000, 500 * 10**9)


def test_derive_validates():
    with pytest.raises(ConfigError, match=r"derive: persistence_domain: unknown persistence domain"):
        derive(default_machine(), persistence_domain="adrr")
    with pytest.raises(ConfigError, match=r"unknown key 'cache_size'"):
        derive(default_machine(), cache_size=1)


# --- validation errors --------------------------------------------------------------------

GOOD_RAM = """
[[ram]]
name = "dram0"
kind = "dram"
base = "0x0"
size = "256MiB"
channel = 0
"""

BROKEN = [
    # (id, TOML, key named in the message, problem)
    ("unknown-top", 'nmae = "x"\n', "nmae", "did you mean 'name'"),
    ("unknown-section", "[caches]\nsize = 1\n", "caches", "did you mean 'cache'"),
    ("unknown-cache-key", "[cache]\nsize_bytes = 4096\n", "cache.size_bytes", "did you mean 'size'"),
    ("unknown-range-key", GOOD_RAM + 'chanel = 1\n', "ram[0].chanel", "did you mean 'channel'"),
    ("type-ways", '[cache]\nways = "16"\n', "cache.ways", "expected an integer, got string"),
    ("type-bool", "[interleave]\nenabled = 1\n", "interleave.enabled", "expected true or false"),
    ("type-name", "name = 3\n", "name", "expected a string"),
    ("type-size", '[cache]\nsize = "8 furlongs"\n', "cache.size", "bad size"),
    ("type-hz", 'cpu_hz = "fast"\n', "cpu_hz", "bad frequency"),
    ("type-section", "cache = 5\n", "cache", "expected a table"),
    ("type-ram", 'ram = "lots"\n', "ram", "expected an array of tables"),
    ("missing-range-key", '[[ram]]\nname = "d"\nkind = "dram"\nbase = 0\n', "ram[0]",
     "missing key 'size'"),
    ("unaligned-base", GOOD_RAM + '[[ram]]\nname = "p"\nkind = "scm"\nbase = "0x1_0000_0800"\n'
     'size = "4M"\nchannel = 2\n', "ram[1].base", "not a multiple of 4 KiB"),
    ("unaligned-size", GOOD_RAM.replace('"256MiB"', "5000"), "ram[0].size",
     "not a positive multiple of 4 KiB"),
    ("overlap", GOOD_RAM + '[[ram]]\nname = "p"\nkind = "scm"\nbase = "0x0800_0000"\n'
     'size = "256MiB"\nchannel = 2\n', "ram[1].base", "overlaps pool 'dram0'"),
    ("no-dram", GOOD_RAM.replace('"dram"', '"scm"'), "guest.ram", "no guest RAM"),
    ("empty-ram", "ram = []\n", "ram", "the host memory is empty"),
    ("empty-pool", "pool = []\n", "pool", "the host memory is empty"),
    ("guest-ram-pool", 'guest.ram = [{from = "dram9"}]\n', "guest.ram[0].from", "no pool 'dram9'"),
    ("guest-ram-too-big", 'guest.ram = [{from = "dram0", size = "300MiB"}]\n', "guest.ram[0].size", "has 256 MiB left"),
    ("guest-pmem-dram", 'guest.pmem = ["dram0"]\n', "guest.pmem[0]", "is not an SCM pool"),
    ("ept-initial", 'ept.initial = "random"\n', "ept.initial", "unknown initial EPT 'random'"),
    ("cache-sets", '[cache]\nsize = "6MiB"\n', "cache.size", "not a power of two"),
    ("cache-multiple", '[cache]\nsize = 1000\n', "cache.size", "not a multiple of ways x line"),
    ("cache-line", "[cache]\nline = 128\n", "cache.line", "only 64-byte lines are supported for now"),
    ("kind", GOOD_RAM.replace('"dram"', '"nvram"'), "ram[0].kind", "unknown kind 'nvram'"),
    ("level", 'model_level = "ful"\n', "model_level", "did you mean 'full'"),
    ("domain", 'persistence_domain = "eADR"\n', "persistence_domain", "unknown persistence domain"),
    ("channel-high", GOOD_RAM.replace("channel = 0", "channel = 16"), "ram[0].channel",
     "out of range (0..15)"),
    ("channel-negative", GOOD_RAM.replace("channel = 0", "channel = -1"), "ram[0].channel",
     "out of range (0..15)"),
    ("channels-high", GOOD_RAM.replace("channel = 0", "channels = [0, 99]"), "ram[0].channels",
     "out of range (0..15)"),
    ("duplicate-name", GOOD_RAM + GOOD_RAM.replace('"0x0"', '"0x1000_0000"'), "ram[1].name",
     "already used"),
    ("granularity", "[interleave]\ngranularity = 1000\n", "interleave.granularity",
     "power of two"),
    ("disk-model", '[storage]\ndisk = "ssd"\n', "storage.disk", "unknown disk timing model 'ssd'"),
    ("hdd-heads", "[storage]\nhdd_heads = 0\n", "storage.hdd_heads", "0 must be between 1 and 64"),
    ("hdd-seek", '[storage]\nhdd_avg_seek = "20ms"\n', "storage.hdd_avg_seek",
     "seek times must grow: track-to-track 1000000 ns < average 20000000 ns < full stroke 18000000 ns"),
    ("hdd-buffer", "[storage]\nhdd_buffer_tracks = 1000\n", "storage.hdd_buffer_tracks", "must be between 0 and 256"),
    ("hdd-overhead", '[storage]\nhdd_overhead = "fast"\n', "storage.hdd_overhead", "bad duration"),
    ("bad-toml", "name = \n", "", "bad TOML"),
    ("bad-toml-line", '[cache]\nsize = "8MiB"\nways = = 3\n', "", "line 3"),
]


@pytest.mark.parametrize("text,key,problem", [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_validation_error(tmp_path, text, key, problem):
    path = tmp_path / "broken.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as ei:
        load_machine(path)
    msg = str(ei.value)
    assert isinstance(ei.value, EmuError)
    assert "\n" not in msg, msg
    assert msg.startswith(f"{path}: "), msg
    if key:
        assert msg.startswith(f"{path}: {key}: "), msg
    assert problem in msg, msg


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="machine file not found"):
        load_machine(tmp_path / "nope.toml")


def test_bad_json_key(tmp_path):
    d = machine_to_dict(default_machine())
    d["cache"]["size"] = 4096  # a TOML key is not a resolved-JSON key
    p = tmp_path / "m.json"
    p.write_text(json.dumps(d))
    with pytest.raises(ConfigError, match=r"m.json: cache.size: unknown key 'size' \(did you mean 'size_bytes'\?\)"):
        load_machine(p)


# --- channels -----------------------------------------------------------------------------

def test_channel_of_without_interleave():
    cfg = default_machine()
    assert cfg.channel_of(0) == 0
    assert cfg.channel_of(0x0FFF_FFFF) == 0
    assert cfg.channel_of(0x1000_0000) == 1
    assert cfg.channel_of(0x1_0000_0000 + 12345) == 2
    with pytest.raises(ValueError):
        cfg.channel_of(0x2000_0000)  # the hole
    # a range listing channels still uses its home channel while interleave is off
    r = RangeConfig("d", "dram", 0, 64 * MiB, channel=1, channels=(1, 3))
    assert {r.channel_of(a) for a in range(0, 64 * MiB, 4096)} == {1}
    assert r.channel_of(8192, InterleaveConfig(enabled=False)) == 1


def test_channel_of_with_interleave():
    cfg = load_machine(MACHINES / "interleaved.toml")
    g = cfg.interleave.granularity_bytes
    assert g == 4096 and cfg.interleave.enabled
    assert [cfg.channel_of(i * g) for i in range(6)] == [0, 1, 0, 1, 0, 1]
    assert cfg.channel_of(g - 1) == 0 and cfg.channel_of(g) == 1
    assert cfg.channel_of(0x1_0000_0000 + 3 * g) == 2  # single-channel range: its channel
    r = RangeConfig("d", "dram", 0x1000_0000, 64 * MiB, channel=4, channels=(4, 5, 6))
    il = InterleaveConfig(enabled=True, granularity_bytes=256)
    # the offset inside the range counts, not the absolute address
    assert [r.channel_of(0x1000_0000 + i * 256, il) for i in range(7)] == [4, 5, 6, 4, 5, 6, 4]
    assert r.channel_of(0x1000_0000 + 3 * 256 + 255, il) == 4


def test_interleave_default_channels(tmp_path):
    p = tmp_path / "m.toml"
    p.write_text('[interleave]\nenabled = true\ngranularity = "64KiB"\nchannels = [0, 1]\n')
    cfg = load_machine(p)
    assert [r.channels for r in cfg.pools] == [(0, 1), (0, 1), ()]
    assert cfg.pools[1].channel == 1  # its home channel is kept
    assert [cfg.channel_of(i * 65536) for i in range(4)] == [0, 1, 0, 1]
    assert cfg.channel_of(0x1000_0000) == 0  # dram1's offset 0
    # the resolved config is stable: resolving it again changes nothing
    assert machine_from_dict(machine_to_dict(cfg)) == cfg


def test_disk_entries_resolve_beside_the_machine_file_and_round_trip(tmp_path):
    (tmp_path / "m.toml").write_text('name = "d"\n[[disk]]\nimage = "vol/a.img"\n[[disk]]\nimage = "/abs/b.img"\nread_only = true\n')
    cfg = load_machine(tmp_path / "m.toml")
    assert [(d.image, d.read_only) for d in cfg.disks] == [(str(tmp_path / "vol" / "a.img"), False), ("/abs/b.img", True)]
    assert machine_from_dict(machine_to_dict(cfg)) == cfg  # a state directory's config.json keeps them
    (tmp_path / "bad.toml").write_text('[[disk]]\nread_only = true\n')
    with pytest.raises(ConfigError, match=r"missing key 'image' \(a disk needs 'image'\)"):
        load_machine(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match=r"attach disks with --disk PATH"):
        apply_overrides(default_machine(), ["disks=x"])
