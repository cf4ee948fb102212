"""The two memory maps: host pools and the guest-physical map, the EPT between them (identity or
a seeded shuffle within each pool), Linux's zones over guest RAM, and the hybrid DRAM/MRAM
machine of the fourth paper with guest RAM in both pools."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from vmm.config import GiB, MiB, apply_overrides, default_machine, load_machine
from vmm.machine import Machine
from guestkernel.zones import linux_zones
from hw.console import Console
from tests.conftest import run_native

ROOT = Path(__file__).parents[2]
MACHINES = ROOT / "machines"


def test_default_guest_map_is_the_pools_in_order() -> None:
    cfg = default_machine()
    assert [(g.name, g.kind, g.base_gpa, g.size_bytes, g.pool) for g in cfg.guest_map()] == [
        ("dram0", "ram", 0, 256 * MiB, "dram0"),
        ("dram1", "ram", 256 * MiB, 256 * MiB, "dram1"),
        ("pmem0", "pmem", 4 * GiB, 64 * MiB, "pmem0"),
    ]
    ck = apply_overrides(cfg, ["checkpoint.enabled=true"])
    assert [g.kind for g in ck.guest_map()] == ["ram", "ram", "checkpoint"]  # the window is the kernel's


def test_guest_ram_split_over_one_pool_and_device_windows_above_ram(tmp_path: Path) -> None:
    p = tmp_path / "m.toml"
    p.write_text('[[pool]]\nname = "d"\nkind = "dram"\nbase = 0\nsize = "64MiB"\n'
                 '[[pool]]\nname = "s"\nkind = "scm"\nbase = "0x1000_0000"\nsize = "8MiB"\nchannel = 3\n'
                 '[guest]\nram = [{from = "d", size = "16MiB"}, {from = "d"}]\npmem = ["s"]\n')
    g = load_machine(p).guest_map()
    assert [(x.name, x.base_gpa, x.size_bytes, x.pool_offset_bytes) for x in g] == [
        ("d/0", 0, 16 * MiB, 0), ("d/1", 16 * MiB, 48 * MiB, 16 * MiB), ("s", 4 * GiB, 8 * MiB, 0)]


def test_linux_zones_over_guest_ram() -> None:
    assert linux_zones([("a", 0, 8 * MiB), ("b", 8 * MiB, 120 * MiB)]) == [
        ("DMA", 0, 4096), ("DMA32", 4096, (128 - 16) * 256)]


def test_shuffled_ept_is_a_seeded_permutation_within_each_pool(base_image: Path, tmp_path: Path) -> None:
    shutil.copyfile(base_image, tmp_path / "disk.img")
    maps = []
    for seed in (1, 1, 2):
        cfg = apply_overrides(default_machine(), ["ept.initial=shuffled", f"seed={seed}"])
        m = Machine(tmp_path / "disk.img", cfg, console=Console(None, None, capture=True))
        maps.append(list(m.ept.map))
        for g in m.guest_map:
            pool = next(r for r in m.physmem.ranges if r.spec.name == g.pool).spec
            first = pool.base_hpa >> 12
            hpfns = maps[-1][g.base_gpa >> 12 : g.end_gpa >> 12]
            assert sorted(hpfns) == list(range(first, first + (g.size_bytes >> 12)))  # within its pool
        assert maps[-1][: 256 * 256] != list(range(256 * 256))  # not the identity
    assert maps[0] == maps[1] and maps[0] != maps[2]  # seeded


def test_runs_on_a_shuffled_ept_match_the_identity(base_image: Path, tmp_path: Path) -> None:
    argv = ["/bin/sh", "-c", "head -c 300000 /data/corpus.txt | gzip -9 | gzip -d | grep -c memory; mkdir /tmp/x; "
            "tar cf /tmp/x/t.tar -C /data tree; ls -l /tmp/x | wc -l; pmemlog append 2; pmemlog check"]
    out = {}
    for initial in ("identity", "shuffled"):
        d = tmp_path / initial
        d.mkdir()
        shutil.copyfile(base_image, d / "disk.img")
        cfg = apply_overrides(default_machine(), [f"ept.initial={initial}", "model_level=full"])
        m = Machine(d / "disk.img", cfg, console=Console(None, None, capture=True))
        r = m.run(argv)
        out[initial] = (r.exit_code, r.instructions, bytes(m.console.captured[1]))
    assert out["identity"] == out["shuffled"]
    assert out["identity"][2].endswith(b"count=2 ok\n")


def test_hybrid_machine_keeps_guest_ram_in_both_pools(base_image: Path, native_root: Path, tmp_path: Path) -> None:
    """The fourth paper's layout: gzip's output matches native, and both the DRAM channel (2)
    and the MRAM channel (3) carry writes: guest RAM really lives in both pools."""
    stats = tmp_path / "s.json"
    image = tmp_path / "disk.img"  # --image runs on the file itself: never on the cached image
    shutil.copyfile(base_image, image)
    p = subprocess.run([sys.executable, "-m", "emu.cli", "run", "--image", str(image), "--machine",
                        str(MACHINES / "hybrid-mram.toml"), "--level", "full", "--stats-json", str(stats), "--",
                        "/bin/gzip", "-9", "-c", "/data/corpus.txt"], cwd=ROOT, capture_output=True)
    native = run_native(["gzip", "-9", "-c", "data/corpus.txt"], native_root)
    assert p.returncode == 0, p.stderr
    assert p.stdout == native.stdout
    s = json.loads(stats.read_text())["stats"]

    def value(key: str) -> int:
        v = s[key]
        return v["value"] if isinstance(v, dict) else v

    for ch in (2, 3):
        assert value(f"channel{ch}.write_bytes.user") + value(f"channel{ch}.write_bytes.kernel") > 0, ch
    assert not any(k.startswith(("channel0.", "channel1.")) for k in s)  # no other channel exists


def test_machine_show_prints_both_maps() -> None:
    p = subprocess.run([sys.executable, "-m", "emu.cli", "machine", "show", str(MACHINES / "hybrid-mram.toml")],
                       cwd=ROOT, capture_output=True, text=True, env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "guest-physical map" in out and "host memory of 'hybrid-mram'" in out
    assert "guest-physical (gpa)" in out and "host-physical (hpa)" in out
    assert "mram  RAM  156 MiB" in out and "-> pool mram" in out and "dram  RAM  4 MiB" in out


def test_code_in_an_mram_page_runs_at_level_persist(base_image: Path, native_root: Path, tmp_path: Path) -> None:
    """At level persist SCM devices are MMIO, and Unicorn does not run code from MMIO: a program
    whose code pages landed in the MRAM pool (here the EPT shuffles every page within its pool)
    faulted on the same fetch for ever. An SCM pool that is guest RAM is plain RAM at persist
    (not modelled, as DRAM), so the run gives the output and instruction count of level fast."""
    argv = ["/bin/sh", "-c", "tar cf - -C /data tree | md5sum; head -c 100000 /data/corpus.txt | gzip -6 | md5sum"]
    runs = {}
    for level in ("fast", "persist"):
        disk = tmp_path / f"{level}.img"
        shutil.copyfile(base_image, disk)
        cfg = apply_overrides(load_machine(MACHINES / "hybrid-mram.toml"),
                              [f"model_level={level}", "ept.initial=shuffled", "cache.size=64KiB"])
        con = Console(out_fd=None, err_fd=None, capture=True)
        m = Machine(disk, cfg, console=con)
        r = m.run(argv)
        assert r.exit_code == 0, bytes(con.captured[2])
        runs[level] = (bytes(con.captured[1]), r.instructions)
    native = run_native(["/bin/sh", "-c", argv[2].replace("/data", "data")], native_root).stdout
    assert runs["persist"] == (native, runs["fast"][1])
