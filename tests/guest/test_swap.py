"""Storage lent as memory (guestkernel/swap.py): util-linux's mkswap and swapon on a file of the
root on storage as memory lend its pages to the kernel as page frames for anonymous memory; a
program that holds more than RAM then runs where it was OOM-killed before, and swapoff gives the
pages back by moving them to RAM (or fails with ENOMEM when RAM cannot take them)."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from hw.console import Console
from images.build import read_file
from tests.conftest import e2fsck_clean
from vmm.config import apply_overrides, default_machine
from vmm.machine import Machine

RAM = ["pool.dram0.size=32MiB", "pool.dram1.size=16MiB"]   # 48 MiB of guest RAM
MAKE = "head -c 24M /dev/zero > /swapfile && chmod 600 /swapfile && mkswap /swapfile > /dev/null; "


def run(image: Path, script: str, *extra: str):  # type: ignore[no-untyped-def]
    cfg = apply_overrides(default_machine(), ["storage.mode=memory", *RAM, *extra])
    console = Console(out_fd=None, err_fd=None, capture=True)
    m = Machine(image, cfg, console=console)
    r = m.run(["/bin/sh", "-c", script])
    stats = {k: v["value"] for k, v in m.stats()["stats"].items()}
    return r, bytes(console.captured[1]).decode() + bytes(console.captured[2]).decode(), stats


@pytest.fixture
def image(base_image: Path, tmp_path: Path) -> Path:
    img = tmp_path / "disk.img"
    shutil.copyfile(base_image, img)  # (its /bin/lendhog: images/programs/lendhog.c)
    return img


def test_lent_storage_holds_what_ram_cannot_and_swapoff_moves_it_back(image):
    script = (MAKE + "lendhog 56 /swapfile > /dev/null; echo plain=$?; "
              "swapon /swapfile && cat /proc/swaps && lendhog 56 /swapfile; echo lent=$?; cat /proc/swaps; "
              "free | tail -1")
    r, out, st = run(image, script, "model_level=persist")
    assert r.exit_code == 0, r.log
    assert "plain=137" in out  # without the lent storage: OOM-killed
    assert re.search(r"^/swapfile +file\t\t24572\t\t0\t\t-2$", out, re.M), out
    assert "swapoff while held: Cannot allocate memory" in out
    assert "swapoff after half: ok" in out and "pattern ok" in out and "lent=0" in out
    total, free_before = map(int, re.findall(r"^SwapTotal: +(\d+) kB\nSwapFree: +(\d+) kB", out, re.M)[0])
    assert total == 24572 and free_before < total - 4096  # some MiB lived on storage
    assert re.findall(r"^SwapTotal: +(\d+) kB", out, re.M)[1] == "0"  # given back
    assert "lent=0\nFilename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\nSwap:              0           0           0\n" in out
    assert any("Adding 24572k swap on /swapfile." in line for line in r.log)
    moved = st["mm.lent_pages_moved"]
    assert 0 < moved and st["mm.lent_pages_taken"] >= moved
    assert moved * 4 <= total - free_before + 4  # only pages that lived on storage moved
    assert st["pagecache.pages"] == 0
    e2fsck_clean(image)
    assert len(read_file(image, "/swapfile")) == 24 << 20  # still the file, its blocks unchanged in number


def test_swapon_checks_and_errors_are_linuxs(image, tmp_path):
    script = ("exec 2>&1; head -c 1M /dev/zero > /plain; lendhog on /plain; lendhog on /dev/null; lendhog on /tmp; "
              "head -c 4096 /dev/zero > /tiny && mkswap /tiny; lendhog on /tiny; "
              "head -c 8M /dev/zero > /sw && chmod 600 /sw && mkswap /sw > /dev/null && swapon -p 5 /sw; echo on=$?; "
              "lendhog on /sw; rm /sw; echo rm=$?; echo x >> /sw; echo write=$?; mv /sw /sw2; echo mv=$?; "
              "swapoff /plain; echo offplain=$?; swapon -s; swapoff /sw; echo off=$?; rm /sw; echo rm2=$?")
    r, out, _st = run(image, script)
    assert r.exit_code == 0, r.log
    assert "swapon /plain: Invalid argument" in out  # no SWAPSPACE2 signature
    assert "swapon /dev/null: Invalid argument" in out and "swapon /tmp: Invalid argument" in out
    assert "swapon /tiny: Invalid argument" in out  # too small for a swap area
    assert "Unable to find swap-space signature" in r.log
    assert "on=0" in out and "off=0" in out and "rm2=0" in out
    assert "swapon /sw: Device or resource busy" in out  # already lent
    assert "rm: cannot remove '/sw': Operation not permitted\nrm=1" in out  # Linux's may_delete: EPERM
    assert "write=1" in out  # writing into it: ETXTBSY (dash reports a failed write as an I/O error)
    assert "Operation not permitted\nmv=1" in out
    assert "swapoff failed: Invalid argument\noffplain=4" in out  # not lent
    assert re.search(r"^/sw +file\t\t8188\t\t0\t\t5$", out, re.M), out  # swapon -s: the priority given
    e2fsck_clean(image)


def test_block_mode_refuses_to_lend(base_image, guest_programs, tmp_path):
    img = tmp_path / "disk.img"
    shutil.copyfile(base_image, img)
    cfg = apply_overrides(default_machine(), RAM)
    console = Console(out_fd=None, err_fd=None, capture=True)
    r = Machine(img, cfg, console=console).run(["/bin/sh", "-c", MAKE + "swapon /swapfile; echo on=$?"])
    out = bytes(console.captured[1]).decode() + bytes(console.captured[2]).decode()
    assert "swapon failed: Invalid argument" in out and "on=255" in out
    assert any("only a file of the root on storage as memory" in line for line in r.log)


def test_checkpoints_cover_pages_on_lent_storage_and_a_restart_lends_the_file_again(base_image, tmp_path):
    """Checkpoints at every syscall while pages live on lent storage: cut in the middle (pages
    lent) and after swapoff, each restart resumes to the uninterrupted run's output; the first
    lends /swapfile again (same priority) before the pages come back, which do not fit in RAM.
    SwapFree is left out of the comparison: where pages land between RAM and the lent file after
    a restart is the restore's allocation order, not the original's (MemFree is not restored
    either)."""
    ram = ["pool.dram0.size=16MiB", "pool.dram1.size=8MiB"]
    script = ("head -c 12M /dev/zero > /swapfile && chmod 600 /swapfile && mkswap /swapfile > /dev/null && "
              "swapon /swapfile && lendhog 28 /swapfile; echo status=$?")
    cfg = apply_overrides(default_machine(), ["storage.mode=memory", "model_level=persist", *ram,
                                              "checkpoint.enabled=true", "checkpoint.tcp_ns=0"])

    def machine(work: Path, **cut: int) -> Machine:
        if not work.exists():
            work.mkdir()
            shutil.copyfile(base_image, work / "disk.img")
        return Machine(work / "disk.img", cfg, console=Console(None, None, capture=True), media_dir=work, **cut)

    def comparable(out: bytes) -> list[bytes]:
        return [line for line in out.splitlines() if not line.startswith(b"SwapFree:")]

    m = machine(tmp_path / "ref")
    ref = m.run(["/bin/sh", "-c", script])
    ref_out = bytes(m.console.captured[1])
    assert ref.exit_code == 0 and b"pattern ok\nstatus=0\n" in ref_out, ref.log
    assert ref.checkpoint["checkpoints"] > 0 and not any("lent as memory (swapon)" in line for line in ref.log)
    for frac, lent_at_cut in ((0.5, True), (0.9, False)):
        work = tmp_path / f"cut{frac}"
        m = machine(work, power_fail_at=int(ref.instructions * frac))
        assert m.run(["/bin/sh", "-c", script]).power_failed
        before = bytes(m.console.captured[1])
        m2 = machine(work)
        r = m2.run_restart(["/bin/sh", "-c", script])
        assert r.exit_code == 0, r.log
        assert comparable(before + bytes(m2.console.captured[1])) == comparable(ref_out), frac
        lent_again = [line for line in r.log if line.startswith("Adding 12284k swap on /swapfile.  Priority:-2")]
        taken = m2.stats()["stats"]["mm.lent_pages_taken"]["value"]
        assert bool(lent_again) == lent_at_cut and (taken > 0) == lent_at_cut, (frac, r.log)
        e2fsck_clean(work / "disk.img")
