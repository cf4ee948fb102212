"""Storage as memory (storage.mode = memory): the image mapped into guest-physical memory, ext2 run
with DAX on it. No page cache, no block request; programs execute in place; shared writable
mappings land in the file; the redo log keeps the file system consistent after a power cut at any
persistence event, and the debug switch that turns the ordering off shows that the check can
fail. (The byte-for-byte comparisons with native runs are parametrised over both modes in
test_native_compare.py.)"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from emu.workloads import DIR_SCRIPT
from hw.console import Console
from hw.storagelabel import read_label
from images.build import read_file
from tests.conftest import e2fsck_clean, put_file
from vmm.config import apply_overrides, default_machine
from vmm.machine import Machine

PAGE = 4096


def memory_mode(*extra: str, level: str = "fast"):  # type: ignore[no-untyped-def]
    return apply_overrides(default_machine(), ["storage.mode=memory", f"model_level={level}", *extra])


def run(image: Path, argv: list[str], config, **kw):  # type: ignore[no-untyped-def]
    console = Console(out_fd=None, err_fd=None, capture=True)
    m = Machine(image, config, console=console, **kw)
    r = m.run(argv)
    stats = {k: v["value"] for k, v in m.stats()["stats"].items()} if not r.power_failed else {}
    return r, bytes(console.captured[1]), stats


@pytest.fixture
def image(base_image: Path, tmp_path: Path) -> Path:
    img = tmp_path / "disk.img"
    shutil.copyfile(base_image, img)
    return img


def test_memory_mode_uses_no_page_cache_and_no_block_request(image):
    script = ("mkdir -p /tmp/a/b && echo one > /tmp/a/b/f && cp /bin/gzip /tmp/a/g && ln -s b/f /tmp/a/l && "
              "echo two > /tmp/a/f2 && mv /tmp/a/f2 /tmp/a/b/f && cat /tmp/a/l && rm /tmp/a/g && "
              "head -c 10000 /data/corpus.txt > /tmp/a/t && : > /tmp/a/b/f2 && grep -c memory /data/corpus.txt")
    r, out, st = run(image, ["/bin/sh", "-c", script], memory_mode(level="persist"))
    assert r.exit_code == 0, r.log
    assert out.startswith(b"two\n")
    assert st["pagecache.pages"] == 0 and st["pagecache.misses"] == 0 and st["pagecache.hits"] == 0
    assert st["storage.reads"] == 0 and st["storage.writes"] == 0
    assert st["dax.commits"] > 0 and st["dax.data_bytes_read"] > 0 and st["dax.data_bytes_written"] > 0
    e2fsck_clean(image)
    assert read_file(image, "/tmp/a/b/f") == b"two\n"
    # debugfs reads the image: the file system is the image's first bytes, the log and label after
    ls = subprocess.run(["debugfs", "-R", "ls -l /tmp/a", str(image)], capture_output=True, text=True, check=True)
    assert " t" in ls.stdout and "10000" in ls.stdout


def test_the_window_channel_carries_the_traffic(image):
    """The kernel's copies out of the window are reads on the storage window's own channel (the
    first one no pool uses: 3 on the default machine); DRAM channels carry none of them."""
    r, _, st = run(image, ["/bin/grep", "-c", "persistent", "/data/corpus.txt"], memory_mode(level="persist"))
    assert r.exit_code == 0
    channel = 1 + max(p.channel for p in default_machine().pools)
    corpus = len(read_file(image, "/data/corpus.txt"))
    assert st[f"channel{channel}.read_bytes.kernel"] >= corpus
    assert st["dax.data_bytes_read"] >= corpus


def test_the_label_is_written_once_and_block_mode_still_reads_the_image(image, base_image):
    size = base_image.stat().st_size
    run(image, ["/bin/true"], memory_mode())
    grown = image.stat().st_size
    cfg = memory_mode()
    assert grown == size + cfg.storage.log_bytes + PAGE
    label = read_label(image.read_bytes()[-PAGE:], grown)
    assert label is not None and label.data_bytes == size
    run(image, ["/bin/sh", "-c", "echo again > /tmp/x"], memory_mode())
    assert image.stat().st_size == grown
    r, out, _ = run(image, ["/bin/cat", "/tmp/x"], default_machine())  # block mode, same image
    assert (r.exit_code, out) == (0, b"again\n")
    e2fsck_clean(image)


def test_execute_in_place_copies_no_text_page(image):
    r, _, mem = run(image, ["/bin/gzip", "-9", "-c", "/data/corpus.txt"], memory_mode())
    assert r.exit_code == 0
    assert mem["mm.text_pages_copied"] == 0 and mem["dax.pages_mapped"] > 0 and mem["pagecache.misses"] == 0
    r2, _, blk = run(image, ["/bin/gzip", "-9", "-c", "/data/corpus.txt"], default_machine())
    assert r2.instructions == r.instructions  # the same program, the same count
    assert blk["pagecache.misses"] > 0 and blk["dax.pages_mapped"] == 0  # block mode read it into the cache


@pytest.mark.parametrize("mode,level", [("memory", "fast"), ("memory", "persist"), ("memory", "full"),
                                        ("block", "fast"), ("block", "persist")])
def test_shared_mapping_written_and_msynced_lands_in_the_image(image, guest_programs, mode, level):
    """MAP_SHARED writes reach the file: on DAX the window's pages themselves (flushed by msync),
    on a block device the page cache's (written back by msync); a write after the write-back
    faults, is marked dirty again and lands at the shutdown's sync."""
    put_file(image, guest_programs / "daxmap", "/bin/daxmap")
    cfg = memory_mode(level=level) if mode == "memory" else apply_overrides(default_machine(), [f"model_level={level}"])
    r, out, st = run(image, ["/bin/daxmap", "/tmp/m.dat"], cfg)
    assert r.exit_code == 0, out
    assert out == b"first bytes: head\nread back: tail\n"
    data = read_file(image, "/tmp/m.dat")
    assert len(data) == 3 * PAGE + 100 and data.endswith(b"tail\n")
    assert all(data[i] == (ord("Z") if i == 2 * PAGE else ord("a") + (i // 512) % 26)
               for i in range(0, len(data) - 5, 512))
    if mode == "memory":
        assert st["dax.pages_written_back"] >= 5 and st["pagecache.pages"] == 0
    e2fsck_clean(image)


def cut_and_check(base_image: Path, where: Path, config, event: int) -> str | None:  # type: ignore[no-untyped-def]
    """Cut the dir script at persistence event `event`, boot again (which replays the log) and
    run e2fsck; None if clean, else e2fsck's complaint."""
    where.mkdir()
    img = where / "disk.img"
    shutil.copyfile(base_image, img)
    r, _, _ = run(img, ["/bin/sh", "-c", DIR_SCRIPT], config, media_dir=where, power_fail_at_event=event)
    assert r.power_failed
    r2, _, _ = run(img, ["/bin/true"], config, media_dir=where)
    assert r2.exit_code == 0
    p = subprocess.run(["e2fsck", "-fn", str(img)], capture_output=True, text=True)
    return None if p.returncode == 0 else p.stdout.splitlines()[1] if len(p.stdout.splitlines()) > 1 else p.stdout


def reference_events(base_image: Path, where: Path, config) -> int:  # type: ignore[no-untyped-def]
    where.mkdir()
    img = where / "disk.img"
    shutil.copyfile(base_image, img)
    r, _, st = run(img, ["/bin/sh", "-c", DIR_SCRIPT], config, media_dir=where)
    assert r.exit_code == 0
    return st["cache.events"]


@pytest.mark.parametrize("ordering", [True, False], ids=["ordered", "unordered"])
def test_cuts_at_persistence_events_leave_a_consistent_file_system(base_image, tmp_path, ordering):
    """12 cuts spread over a directory script's persistence events: with the redo log every boot
    after a cut finds a clean file system; with the ordering switched off most do not."""
    cfg = memory_mode(f"kernel.dax_ordering={str(ordering).lower()}", level="persist")
    events = reference_events(base_image, tmp_path / "ref", cfg)
    points = [events * (2 * i + 1) // 24 for i in range(12)]
    bad = [(e, why) for e in points if (why := cut_and_check(base_image, tmp_path / f"cut{e}", cfg, e))]
    if ordering:
        assert not bad, bad
    else:
        assert len(bad) >= 6, f"only {len(bad)} of 12 unordered cuts left the file system inconsistent"


def test_storage_and_checkpoint_settings_are_checked():
    """Checkpointing works in both storage modes; images in a file need memory mode; bad
    values are one-line configuration errors."""
    from vmm.config import ConfigError

    apply_overrides(default_machine(), ["storage.mode=memory", "checkpoint.enabled=true"])
    apply_overrides(default_machine(), ["storage.mode=memory", "checkpoint.enabled=true", "checkpoint.into=file:/c"])
    with pytest.raises(ConfigError, match="storage.mode"):
        apply_overrides(default_machine(), ["storage.mode=disk"])
    with pytest.raises(ConfigError, match="checkpoint.into.*memory"):
        apply_overrides(default_machine(), ["checkpoint.enabled=true", "checkpoint.into=file:/c"])
    for bad in ("file:", "file:relative", "disk", "file:/"):
        with pytest.raises(ConfigError, match="checkpoint.into"):
            apply_overrides(default_machine(), ["storage.mode=memory", f"checkpoint.into={bad}"])
    with pytest.raises(ConfigError, match="checkpoint.file_size"):
        apply_overrides(default_machine(), ["storage.mode=memory", "checkpoint.file_size=1000"])


def test_reproduce_storage_as_memory_quick(tmp_path):
    """`emu reproduce storage-as-memory --quick` (about 30 s): every claim of the paper it checks
    holds (no page cache or block request, the same outputs and counts, a shorter read path, one
    copy of file data, XIP, storage lent as memory, checkpoint images in a file mapped back at a
    restart); result.json and the figures are written."""
    from emu.reproduce import reproduce

    result = reproduce("storage-as-memory", True, tmp_path, say=lambda line: None)
    assert all(result["checks"].values()), result["checks"]
    assert (tmp_path / "result.json").exists() and (tmp_path / "storage_as_memory.png").exists()
    assert (tmp_path / "checkpoint_images.png").exists()
    assert result["lent"]["file lent"]["storage_channel_extra_bytes"] >= result["lent"]["file lent"]["pages_taken"] * 4096
    for row in result["workloads"]:
        assert row["modes"]["memory"]["channel_bytes"][f"channel{result['storage_channel']}"] > 0
        assert row["modes"]["block"]["block_requests"] > 0


def test_a_snapshot_in_memory_mode_resumes_to_the_same_output(tmp_path, base_image):
    """A machine snapshot holds the storage window (the image is its media): resumed in a fresh
    machine, the run ends as an uninterrupted one, on a clean file system."""
    import sys

    script = "tar cf /tmp/t.tar -C /data tree; md5sum /tmp/t.tar; ls -l /tmp/t.tar"
    emu = [sys.executable, "-m", "emu.cli"]
    whole = subprocess.run([*emu, "run", "--set", "storage.mode=memory", "--level", "persist", "--", "/bin/sh", "-c",
                            script], capture_output=True, check=True)
    snap = subprocess.run([*emu, "run", "--state", str(tmp_path / "s"), "--set", "storage.mode=memory", "--level",
                           "persist", "--snapshot-at", "3000000", "--snapshot", str(tmp_path / "snap"), "--", "/bin/sh",
                           "-c", script], capture_output=True, check=True)
    assert snap.stdout == whole.stdout
    resumed = subprocess.run([*emu, "resume", str(tmp_path / "snap"), "--state", str(tmp_path / "r")],
                             capture_output=True, check=True)
    assert resumed.stdout == whole.stdout  # (the snapshot was taken before any output)
    e2fsck_clean(tmp_path / "r" / "disk.img")


def test_checkpoints_are_skipped_while_a_shared_writable_mapping_exists(image, guest_programs):
    """Writes through a shared file mapping change the page cache at any instruction, not at
    syscalls: the checkpointer skips (with its reason logged) while one exists, and the data
    still reaches the image."""
    put_file(image, guest_programs / "daxmap", "/bin/daxmap")
    cfg = apply_overrides(default_machine(), ["model_level=persist", "checkpoint.enabled=true", "checkpoint.tcp=0"])
    r, out, _ = run(image, ["/bin/daxmap", "/tmp/m.dat"], cfg)
    assert r.exit_code == 0 and out.endswith(b"read back: tail\n")
    assert "checkpoint skipped: a shared writable file mapping" in r.log
    assert r.checkpoint["checkpoints"] > 0  # before the mmap and after the munmap
    assert read_file(image, "/tmp/m.dat")[2 * PAGE] == ord("Z")
    e2fsck_clean(image)
