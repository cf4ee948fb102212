"""A snapshot campaign, as the crash campaigns are: a dash pipeline (six processes, four pipes)
snapshotted at 20 points spread over its run, in each mode (an incremental chain of 20), and
every snapshot resumed in a fresh machine: console output, instruction count and disk (the
file tree for sonic, whose early sync moves timestamps) all equal the uninterrupted run's."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from emu.crashtest.checks import diff_trees, image_tree
from hw.console import Console
from tests.conftest import e2fsck_clean, machine_on_copy
from vmm.config import apply_overrides, default_machine
from vmm.machine import Machine
from vmm.snapshot import open_snapshot, restore, take

ARGV = ["/bin/sh", "-c", "head -c 300000 /data/corpus.txt | tr a-z A-Z | sort | uniq -c | sort -rn | head -3 > /tmp/top; "
        "cat /tmp/top; grep -c THE /tmp/top; ls /tmp | wc -l"]
POINTS = 20


def small_machine():  # 64 MiB of RAM and a small pmem device: 20 full snapshots stay small
    return apply_overrides(default_machine(), ["pool.dram0.size=48MiB", "pool.dram1.size=16MiB", "pool.pmem0.size=4MiB"])


def fresh(base_image: Path, where: Path) -> tuple[Machine, Console, Path]:
    return machine_on_copy(base_image, where, small_machine())


@pytest.mark.parametrize("mode", ["full", "touched", "incremental", "sonic"])
def test_twenty_snapshots_of_a_pipeline_all_resume_as_the_reference(base_image, tmp_path, mode):
    ref, ref_out, ref_image = fresh(base_image, tmp_path / "ref")
    r = ref.run(ARGV)
    assert r.exit_code == 0
    want_out, want_disk = bytes(ref_out.captured[1]), ref_image.read_bytes()
    want_tree = image_tree(ref_image) if mode == "sonic" else None

    m, out, _ = fresh(base_image, tmp_path / "run")
    assert m.boot(ARGV) is None
    taken: list[tuple[Path, int]] = []
    for i in range(POINTS):
        assert m.resume_run(until=(i + 1) * r.instructions // (POINTS + 1)) is None
        snap = tmp_path / f"s{i:02d}"
        take(m, snap, mode, parent=taken[-1][0] if mode == "incremental" and taken else None)
        taken.append((snap, len(out.captured[1])))
    assert m.resume_run().instructions == r.instructions and bytes(out.captured[1]) == want_out

    failures = []
    for i, (snap, shown) in enumerate(taken):
        where = tmp_path / f"r{i:02d}"
        where.mkdir()
        console = Console(None, None, capture=True)
        m2, _ = restore(open_snapshot(snap), where / "disk.img", console=console)
        r2 = m2.resume_run()
        got = want_out[:shown] + bytes(console.captured[1])
        if r2.instructions != r.instructions or got != want_out:
            failures.append(f"point {i}: {r2.instructions} instructions, output {got!r}")
        elif mode == "sonic":
            if (d := diff_trees(want_tree, image_tree(where / "disk.img"))):
                failures.append(f"point {i}: tree differs: {d[:3]}")
        elif (where / "disk.img").read_bytes() != want_disk:
            failures.append(f"point {i}: the disk differs")
        if i in (0, POINTS - 1):
            e2fsck_clean(where / "disk.img")
        shutil.rmtree(where)
        if mode != "incremental":  # a chain's links are still needed
            shutil.rmtree(snap)
    assert failures == []
