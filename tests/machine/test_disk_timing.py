"""The disk timing model on whole runs (hw/disktiming.py, storage.disk): the flat disk charges
exactly block_io per block request, as before the models; the hdd disk changes the time a run
takes, never what it computes, and is as deterministic as the rest."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from emu.workloads import workload
from hw.console import Console
from vmm.config import machine_config
from vmm.machine import Machine
from vmm.stats import registry_for

REPO = Path(__file__).resolve().parents[2]


def run(base_image: Path, where: Path, argv: list[str], overrides: list[str]) -> tuple[object, bytes, dict]:
    where.mkdir()
    image = where / "disk.img"
    shutil.copyfile(base_image, image)
    console = Console(out_fd=None, err_fd=None, capture=True)
    m = Machine(image, machine_config(None, overrides), console=console, media_dir=where)
    r = m.run(argv)
    assert r.exit_code == 0, bytes(console.captured[2])
    stats = {k: v["value"] for k, v in registry_for(m).to_json().items()}
    return r, bytes(console.captured[1]), stats


def test_flat_disk_charges_block_io_per_request(base_image, tmp_path):
    """tar cf reads the tree and writes the archive back: every request costs block_io, so the
    run's time moves by exactly the difference times the requests (nothing else depends on it)."""
    argv = workload("tar-cf")
    a, out_a, st_a = run(base_image, tmp_path / "a", argv, [])
    b, out_b, st_b = run(base_image, tmp_path / "b", argv, ["storage.block_io=40us"])
    n = st_a["storage.disk.requests"]
    assert n == st_b["storage.disk.requests"] == st_a["storage.reads"] - 1 + st_a["storage.writes"]  # (-1: the probe)
    assert st_a["storage.disk.busy_ns"] == st_a["storage.disk.transfer_ns"] == 10_000 * n
    assert st_b["storage.disk.busy_ns"] == 40_000 * n
    assert b.virtual_ns - a.virtual_ns == b.kernel_ns - a.kernel_ns == 30_000 * n
    assert a.instructions == b.instructions and out_a == out_b
    assert st_a["storage.disk.seeks"] == st_a["storage.disk.rotation_ns"] == 0


def test_hdd_grep_same_output_more_time_deterministic(base_image, tmp_path):
    argv = workload("grep")
    flat, out_flat, st_flat = run(base_image, tmp_path / "flat", argv, [])
    h1, out_1, st_1 = run(base_image, tmp_path / "hdd1", argv, ["storage.disk=hdd"])
    h2, out_2, st_2 = run(base_image, tmp_path / "hdd2", argv, ["storage.disk=hdd"])
    assert out_flat == out_1 == out_2 and out_flat.count(b"include") > 100
    assert flat.instructions == h1.instructions == h2.instructions
    assert h1.virtual_ns > 5 * flat.virtual_ns  # positioning time: milliseconds, not 10 us a block
    assert (h1.virtual_ns, h1.kernel_ns) == (h2.virtual_ns, h2.kernel_ns)
    assert st_1 == st_2
    assert st_1["storage.disk.requests"] == st_flat["storage.disk.requests"]
    assert st_1["storage.disk.seeks"] > 0 and st_1["storage.disk.buffer_hits"] > st_1["storage.disk.requests"] // 2
    parts = ("seek_ns", "rotation_ns", "transfer_ns", "overhead_ns")
    assert sum(st_1[f"storage.disk.{p}"] for p in parts) == st_1["storage.disk.busy_ns"]
    # what the disk took is the run's kernel time but for the rest of the kernel's work, as on flat
    assert h1.kernel_ns - st_1["storage.disk.busy_ns"] == flat.kernel_ns - st_flat["storage.disk.busy_ns"]


def test_emu_run_set_storage_disk_hdd(tmp_path):
    summary = tmp_path / "s.json"
    p = subprocess.run([sys.executable, "-c", "import sys; from emu.cli import main; sys.exit(main())", "run",
                        "--set", "storage.disk=hdd", "--summary-json", str(summary), "--", "/bin/cat", "/etc/hostname"],
                       capture_output=True, cwd=REPO, timeout=300)
    assert p.returncode == 0, p.stderr
    bad = subprocess.run([sys.executable, "-c", "import sys; from emu.cli import main; sys.exit(main())", "run",
                          "--set", "storage.disk=ssd", "--", "/bin/true"], capture_output=True, text=True, cwd=REPO,
                         timeout=300)
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines()[-1].endswith(
        "storage.disk_model: unknown disk timing model 'ssd' (expected one of flat, hdd)"), bad.stderr
