"""Whole-machine snapshots on disk (vmm/snapshot): each mode taken amid `tar czf` (two processes
and a pipe) and amid `gzip -9`, resumed in a fresh machine, gives the uninterrupted run's
console output, file tree and instruction count; an incremental chain of three restores; damaged
or foreign snapshots are refused in one line, changing nothing."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from emu.crashtest.checks import diff_trees, image_tree
from hw.console import Console
from tests.conftest import e2fsck_clean, machine_on_copy
from vmm.config import apply_overrides, default_machine, derive
from vmm.machine import Machine
from vmm.snapshot import SnapshotError, config_of, open_snapshot, restore, take

ARGV = ["/bin/sh", "-c", "tar czf - -C /data tree | wc -c; tar czf /tmp/t.tgz -C /data tree; "
        "gzip -9 -c /data/corpus.txt > /tmp/c.gz; ls -l /tmp; wc -c /tmp/c.gz"]
MID_TAR = 30_000_000    # amid the first pipeline: tar, gzip and wc alive
MID_GZIP = 700_000_000  # amid gzip -9 of the corpus


def small_machine():  # 128 MiB of RAM and a small pmem device: full snapshots of 132 MiB
    return apply_overrides(default_machine(), ["pool.dram0.size=96MiB", "pool.dram1.size=32MiB", "pool.pmem0.size=4MiB"])


def fresh(base_image: Path, where: Path) -> tuple[Machine, Console, Path]:
    return machine_on_copy(base_image, where, small_machine())


@pytest.fixture(scope="module")
def reference(base_image, tmp_path_factory):
    where = tmp_path_factory.mktemp("snapref")
    m, out, image = fresh(base_image, where / "run")
    r = m.run(ARGV)
    assert r.exit_code == 0 and b"c.gz" in out.captured[1]
    return {"instructions": r.instructions, "out": bytes(out.captured[1]), "image": image, "tree": image_tree(image)}


def resume(snap_dir: Path, where: Path) -> tuple[Machine, Console, Path]:
    where.mkdir(parents=True)
    console = Console(None, None, capture=True)
    m, timing = restore(open_snapshot(snap_dir), where / "disk.img", console=console)
    assert timing["restore_s"] > 0
    return m, console, where / "disk.img"


@pytest.mark.parametrize("mode", ["full", "touched", "incremental", "sonic"])
def test_a_snapshot_amid_tar_and_gzip_resumes_as_the_uninterrupted_run(reference, base_image, tmp_path, mode):
    points = [MID_TAR, MID_GZIP] + ([1_000_000_000] if mode == "incremental" else [])
    m, out, image = fresh(base_image, tmp_path / "run")
    assert m.boot(ARGV) is None
    shown: list[int] = []  # console bytes before each snapshot
    snaps: list[Path] = []
    for i, n in enumerate(points):
        assert m.resume_run(until=n) is None
        if n == MID_TAR:
            live = {p.comm for p in m.kernel.procs.values() if p.state != "zombie"}
            assert {b"tar", b"gzip", b"wc"} <= live
        snaps.append(tmp_path / f"snap{i}")
        meta = take(m, snaps[-1], mode, parent=snaps[-2] if mode == "incremental" and i else None)
        assert meta["instructions"] <= n and meta["pages_saved"] > 0
        shown.append(len(out.captured[1]))
    r = m.resume_run()  # the run that took the snapshots goes on unchanged
    assert r is not None and r.instructions == reference["instructions"]
    assert bytes(out.captured[1]) == reference["out"]

    sizes = [json.loads((s / "meta.json").read_text())["files"]["memory.bin"]["bytes"] for s in snaps]
    if mode == "incremental":  # the deltas' pages are far fewer than the base's
        assert max(sizes[1:]) < sizes[0] / 4
    for i, snap in enumerate(snaps):
        m2, out2, image2 = resume(snap, tmp_path / f"resumed{i}")
        r2 = m2.resume_run()
        assert r2 is not None and r2.exit_code == 0
        assert r2.instructions == reference["instructions"]
        assert reference["out"][: shown[i]] + bytes(out2.captured[1]) == reference["out"]
        assert diff_trees(reference["tree"], image_tree(image2)) == []
        if mode != "sonic":  # sonic syncs and drops caches: timestamps after it may differ
            assert image2.read_bytes() == reference["image"].read_bytes()
        e2fsck_clean(image2)
        if i == 0:  # a snapshot resumes twice alike: it kept its own disk
            m3, out3, _ = resume(snap, tmp_path / "again")
            assert m3.resume_run().instructions == r2.instructions and out3.captured[1] == out2.captured[1]


def test_sonic_leaves_out_the_free_pages_and_the_caches(base_image, tmp_path):
    m, _, _ = fresh(base_image, tmp_path / "run")
    assert m.boot(ARGV) is None and m.resume_run(until=MID_GZIP) is None
    full = take(m, tmp_path / "full", "full")
    touched = take(m, tmp_path / "touched", "touched")
    sonic = take(m, tmp_path / "sonic", "sonic")
    assert sonic["guest"]["dropped_page_cache_pages"] > 100
    assert sonic["guest"]["free_pages_left_out"] > 0.8 * sonic["ram_pages"]
    assert sonic["left_out_by_kind"]["free"] >= sonic["guest"]["free_pages_left_out"]
    assert sonic["pages_saved"] < full["pages_saved"] / 4
    assert sonic["saved_by_kind"].get("page cache", 0) < touched["saved_by_kind"]["page cache"]
    # After the snapshot the guest has its RAM back: nothing stays in the balloon.
    assert m.balloon.actual_pages == 0 and m.kernel.frames.ballooned == 0
    assert m.resume_run() is not None


def test_damaged_or_foreign_snapshots_are_refused_changing_nothing(base_image, tmp_path):
    m, _, _ = fresh(base_image, tmp_path / "run")
    assert m.boot(ARGV) is None and m.resume_run(until=MID_TAR) is None
    good = tmp_path / "good"
    take(m, good, "touched")
    chain = [tmp_path / "c1", tmp_path / "c2"]
    take(m, chain[0], "incremental")
    assert m.resume_run(until=MID_TAR + 5_000_000) is None
    take(m, chain[1], "incremental", parent=chain[0])
    take(m, tmp_path / "between", "touched")
    with pytest.raises(SnapshotError, match="not this machine's last snapshot"):
        take(m, tmp_path / "c3", "incremental", parent=chain[1])  # it would miss what `between` saw

    def refused(snap: Path, why: str, **kw) -> None:
        dest = tmp_path / "dest.img"
        with pytest.raises(SnapshotError, match=why):
            restore(open_snapshot(snap), dest, **kw)
        assert not dest.exists()

    def damaged(name: str, how) -> Path:
        bad = tmp_path / f"bad-{name.replace('/', '_')}-{how.__name__}"
        shutil.copytree(good, bad)
        how(bad / name)
        return bad

    def flip(p: Path) -> None:
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0x40
        p.write_bytes(bytes(data))

    def truncate(p: Path) -> None:
        p.write_bytes(p.read_bytes()[:-4096])

    refused(damaged("memory.bin", flip), "memory.bin fails its checksum")
    refused(damaged("memory.bin", truncate), "memory.bin is missing or truncated")
    refused(damaged("state.bin", flip), "state.bin fails its checksum")
    refused(damaged("disk.img", flip), "disk.img fails its checksum")
    with pytest.raises(SnapshotError, match="meta.json is damaged"):
        open_snapshot(damaged("meta.json", truncate))
    with pytest.raises(SnapshotError, match="is not a snapshot"):
        open_snapshot(tmp_path / "run")
    refused(good, "another machine configuration .*model_level",
            config=derive(config_of(open_snapshot(good)), model_level="full"))
    shutil.rmtree(chain[0])
    with pytest.raises(SnapshotError, match="broken chain"):
        open_snapshot(chain[1])
    # Taking a snapshot never overwrites one.
    with pytest.raises(SnapshotError, match="never overwrites"):
        take(m, good, "full")


def test_the_command_line_takes_resumes_and_describes_snapshots(tmp_path, capfd):
    from emu.cli import main

    snap = tmp_path / "s"
    argv = ["/bin/sh", "-c", "echo one; gzip -9 -c /data/corpus.txt | wc -c; echo two"]
    assert main(["run", "--set", "pool.dram0.size=96MiB", "--set", "pool.dram1.size=32MiB",
                 "--snapshot-at", "50000000", "--snapshot-mode", "sonic", "--snapshot", str(snap),
                 "--snapshot-stop", "--", *argv]) == 0
    cap = capfd.readouterr()
    assert "snapshot (sonic)" in cap.err and "two" not in cap.out
    assert main(["snapshot", "info", str(snap)]) == 0
    assert "checksums  ok" in capfd.readouterr().out
    assert main(["resume", str(snap), "--state", str(tmp_path / "out")]) == 0
    cap = capfd.readouterr()
    assert cap.out == "769215\ntwo\n"
    e2fsck_clean(tmp_path / "out" / "disk.img")
    # A damaged snapshot: one line, a non-zero exit, no traceback.
    mem = snap / "memory.bin"
    mem.write_bytes(mem.read_bytes()[:100])
    assert main(["resume", str(snap)]) == 1
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "memory.bin" in err and "Traceback" not in err
    assert main(["snapshot", "info", str(snap)]) == 1
    assert main(["resume", str(snap), "--set", "model_level=full"]) == 1  # not the snapshot's machine
    assert "another machine configuration" in capfd.readouterr().err
