"""The whole machine's state saved in memory mid-run and loaded into a fresh machine: the run
goes on there exactly as it would have (output, disk, instruction count and every counter), and
host-side pauses and epoch listeners are invisible to the guest."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hw.console import Console
from tests.conftest import e2fsck_clean
from vmm.config import apply_overrides, default_machine, derive
from vmm.machine import Machine

# tar czf runs gzip as a second process, fed through a pipe; wc -c reads the first archive.
ARGV = ["/bin/sh", "-c", "tar czf - -C /data tree | wc -c; tar czf /tmp/t.tgz -C /data tree; ls -l /tmp"]


def machine(base_image: Path, where: Path, level: str, disk: str = "flat") -> tuple[Machine, Console, Path]:
    where.mkdir()
    image = where / "disk.img"
    shutil.copyfile(base_image, image)
    console = Console(None, None, capture=True)
    cfg = apply_overrides(derive(default_machine(), model_level=level), [f"storage.disk={disk}"])
    return Machine(image, cfg, console=console), console, image


@pytest.mark.parametrize("level,disk", [("fast", "flat"), ("full", "flat"), ("fast", "hdd")])
def test_mid_run_save_and_load_into_a_fresh_machine_is_byte_identical(base_image, tmp_path, level, disk):
    """(hdd: the disk's arm, buffer and counters come back with it, hw/disktiming.py)"""
    plain, plain_out, plain_image = machine(base_image, tmp_path / "plain", level, disk)
    r = plain.run(ARGV)
    assert r.exit_code == 0 and b"t.tgz" in plain_out.captured[1]

    first, first_out, _ = machine(base_image, tmp_path / "first", level, disk)
    assert first.boot(ARGV) is None
    assert first.resume_run(until=r.instructions // 4) is None  # amid the first pipeline
    live = sorted(p.comm for p in first.kernel.procs.values() if p.state != "zombie")
    assert {b"tar", b"gzip", b"wc"} <= set(live)
    state = first.save_state()

    second, second_out, second_image = machine(base_image, tmp_path / "second", level, disk)
    second.load_state(state)
    r2 = second.resume_run()
    assert r2 is not None and r2.exit_code == 0
    assert r2.instructions == r.instructions and r2.virtual_ns == r.virtual_ns
    assert bytes(first_out.captured[1] + second_out.captured[1]) == bytes(plain_out.captured[1])
    assert second_image.read_bytes() == plain_image.read_bytes()
    # Every deterministic counter of the machine (the emulator's own caches, translated blocks
    # and TLB fills, are in the host section: a fresh machine starts them empty).
    def counters(m: Machine) -> dict:
        return {k: v["value"] for k, v in m.stats()["stats"].items()}

    assert counters(second) == counters(plain)
    e2fsck_clean(second_image)


def test_pauses_and_epoch_listeners_do_not_change_the_run(base_image, tmp_path):
    plain, plain_out, _ = machine(base_image, tmp_path / "plain", "fast")
    r = plain.run(ARGV)

    watched, watched_out, _ = machine(base_image, tmp_path / "watched", "fast")
    seen: list[int] = []
    watched.epochs.add(seen.append, every_insns=3_000_000)
    watched.epochs.add(seen.append, every_ns=5_000_000)
    assert watched.boot(ARGV) is None
    for until in range(r.instructions // 7, r.instructions, r.instructions // 7):
        assert watched.resume_run(until=until) is None
    r2 = watched.resume_run()
    assert r2 is not None and r2.instructions == r.instructions
    assert watched_out.captured == plain_out.captured
    assert len(seen) > r.instructions // 3_000_000  # both listeners ran
    assert seen == sorted(seen)


def test_a_state_of_another_machine_is_refused(base_image, tmp_path):
    from vmm.errors import EmuError

    first, _, _ = machine(base_image, tmp_path / "first", "fast")
    assert first.boot(["/bin/true"]) is None
    state = first.save_state()
    other, _, _ = machine(base_image, tmp_path / "other", "full")
    with pytest.raises(EmuError, match="another machine configuration"):
        other.load_state(state)
