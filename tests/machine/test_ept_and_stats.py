"""The EPT (A/D bits, swapping pages' backing under a running guest) and the statistics the CLI
writes: pcm-memory table, JSON, per-epoch CSV, `emu stats`, `emu machine show`."""
from __future__ import annotations

import csv
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vmm.config import default_machine, derive
from vmm.machine import Machine
from guestkernel.kernel import Kernel
from hw.console import Console
from tests.conftest import run_native

ROOT = Path(__file__).parents[2]


class SwappingKernel(Kernel):
    """Every 5th syscall, with the guest paused: read and clear the EPT bits, then swap the host
    backing of random guest pages in use (page tables, user pages, page cache) with each other
    and with pages of the first DRAM pool (channel 0; the kernel allocates from the top of RAM,
    the second pool, first)."""

    def __init__(self, config=None):  # type: ignore[no-untyped-def]
        super().__init__(config)
        self.rng = random.Random(7)
        self.dirty_seen: list[int] = []
        self.calls = 0

    def syscall(self) -> None:
        self.calls += 1
        if self.calls % 5 == 0:
            ept = self.machine.ept
            _, dirty = ept.scan(0, ept.pages)
            self.dirty_seen.append(len(dirty))
            used = [g for g in range(len(self.frames.refs)) if self.frames.refs[g]]
            dram0 = next(g for g in self.machine.guest_map if g.pool == "dram0")
            for _ in range(4):
                a, b = self.rng.sample(used, 2)
                ept.swap(a, b)
                ept.swap(self.rng.choice(used), self.rng.randrange(dram0.base_gpa >> 12, dram0.end_gpa >> 12))
        super().syscall()


def test_pages_swapped_under_a_running_guest_keep_its_results(base_image, native_root, tmp_path):
    image = tmp_path / "disk.img"
    shutil.copyfile(base_image, image)
    k = SwappingKernel()
    console = Console(None, None, capture=True)
    m = Machine(image, derive(default_machine(), model_level="full"), console=console, kernel=k)
    r = m.run(["/bin/sh", "-c", "gzip -9 -c /data/corpus.txt | gzip -d | grep -c memory"])
    native = run_native(["sh", "-c", "gzip -9 -c data/corpus.txt | gzip -d | grep -c memory"], native_root)
    assert r.exit_code == 0
    assert bytes(console.captured[1]) == native.stdout
    assert m.ept.swaps >= 8 * (k.calls // 5)
    # the scans saw pages dirtied since the previous scan, every time (bits were cleared between)
    assert len(k.dirty_seen) > 3 and all(n > 0 for n in k.dirty_seen[1:])
    # pages moved between the two DRAM pools, so both channels carried traffic
    for ch in (0, 1):
        assert m.cache.channel(ch)["read_bytes.user"] + m.cache.channel(ch)["read_bytes.kernel"] > 0


def test_ept_bits_follow_kernel_writes(base_image, tmp_path):
    image = tmp_path / "disk.img"
    shutil.copyfile(base_image, image)
    m = Machine(image, default_machine(), console=Console(None, None, capture=True))
    m.run(["/bin/true"])
    ept = m.ept
    ept.scan(0, ept.pages)  # clear
    assert ept.scan(0, ept.pages) == ([], [])
    pfn = m.kernel.frames.alloc()  # zeroing it is a kernel write
    accessed, dirty = ept.scan(0, ept.pages)
    assert pfn in dirty and pfn in accessed


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emu.cli", *args], cwd=ROOT, capture_output=True, text=True)


def test_stats_outputs(tmp_path):
    js, csv_path = tmp_path / "s.json", tmp_path / "s.csv"
    p = cli("run", "--level", "full", "--stats", "--stats-json", str(js), "--stats-csv", str(csv_path),
            "--epoch", "300000", "--", "/bin/sh", "-c", "gzip -9 -c /data/tree/README | wc -c")
    assert p.returncode == 0, p.stderr
    assert "PMM Write (MB)" in p.stderr and "Ch0 (dram)" in p.stderr and "Ch2 (scm)" in p.stderr
    stats = json.loads(js.read_text())
    vals = {k: v["value"] for k, v in stats["stats"].items()}
    assert all({"value", "unit", "description"} <= set(v) for v in stats["stats"].values())
    assert vals["cache.misses"] > 0
    assert sum(vals[f"channel{c}.read_bytes.{w}"] for c in (0, 1, 2) for w in ("user", "kernel")) == 64 * vals["cache.misses"]
    assert (tmp_path / "s.config.json").exists()  # the resolved configuration beside the results
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) >= 2
    insns = [int(float(r["instructions"])) if "instructions" in r else int(float(r["sim.instructions"])) for r in rows]
    assert insns == sorted(insns)
    state = tmp_path / "state"
    p = cli("run", "--level", "persist", "--state", str(state), "--", "/bin/pmemlog", "append", "3")
    assert p.returncode == 0, p.stderr
    p = cli("stats", str(state))
    assert p.returncode == 0 and "PMM Write (MB)" in p.stderr
    p = cli("stats", str(tmp_path / "nothing"))
    assert p.returncode == 1 and p.stderr.startswith("emu: error:") and "Traceback" not in p.stderr


def test_machine_show():
    p = cli("machine", "show")
    assert p.returncode == 0
    assert "pmem0" in p.stdout and "dram0" in p.stdout
    p = cli("machine", "show", str(ROOT / "machines" / "hybrid-mram.toml"))
    assert p.returncode == 0 and "mram" in p.stdout
    p = cli("machine", "show", "--json")
    assert json.loads(p.stdout)["model_level"] == "fast"


def test_interleaved_channels_share_the_traffic(base_image, tmp_path):
    from vmm.config import load_machine

    image = tmp_path / "disk.img"
    shutil.copyfile(base_image, image)
    cfg = derive(load_machine(ROOT / "machines" / "interleaved.toml"), model_level="full")
    m = Machine(image, cfg, console=Console(None, None, capture=True))
    assert m.run(["/bin/gzip", "-9", "-c", "/data/tree/README"]).exit_code == 0
    c = m.cache
    per = [c.channel(ch)["read_bytes.user"] + c.channel(ch)["read_bytes.kernel"] for ch in (0, 1)]
    assert per[0] > 0 and per[1] > 0
    assert sum(per) + sum(c.channel(2)[f"read_bytes.{w}"] for w in ("user", "kernel")) == 64 * c.stats.misses


@pytest.mark.slow
def test_gzip_corpus_stats_at_level_full_agree(tmp_path):
    """`emu run --stats` after gzip -9 of the whole corpus on the default machine: per-channel
    reads and writes add up to the cache model's misses and write-backs."""
    js = tmp_path / "stats.json"
    p = subprocess.run([sys.executable, "-m", "emu.cli", "run", "--level", "full", "--stats", "--stats-json", str(js),
                        "--", "/bin/sh", "-c", "gzip -9 -c /data/corpus.txt | wc -c"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "Ch0 (dram)" in p.stderr and "PMM Write (MB)" in p.stderr
    v = {k: x["value"] for k, x in json.loads(js.read_text())["stats"].items()}
    chans = [c for c in range(16) if f"channel{c}.read_bytes.user" in v]
    reads = sum(v[f"channel{c}.read_bytes.{w}"] for c in chans for w in ("user", "kernel"))
    writes = sum(v[f"channel{c}.write_bytes.{w}"] for c in chans for w in ("user", "kernel"))
    assert reads == 64 * v["cache.misses"] > 0
    assert writes == 64 * v["cache.writebacks"]  # no non-temporal stores in gzip
