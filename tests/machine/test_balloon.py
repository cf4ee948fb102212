"""The memory balloon (hw/balloon.py + guestkernel/balloon.py): inflating by 256 MiB takes that
much from the guest (MemTotal, MemFree, /proc/vmstat, the device's sysfs files) and from the emu
process (its RSS drops: the host memory is released); deflating gives it back, and the guest
keeps running and can use all of its RAM again (as Firecracker's balloon tests check)."""
from __future__ import annotations

import re
import shutil

from hw.console import Console
from tests.conftest import e2fsck_clean, put_file
from vmm.config import default_machine
from vmm.machine import Machine

MiB = 1 << 20
SYS = "/sys/bus/virtio/devices/virtio0"
# The guest waits for the host (polling the device's sysfs file) at each step.
SCRIPT = (f"memhog 450 >/dev/null; head -2 /proc/meminfo; echo hogged; "
          f"until [ $(cat {SYS}/balloon_actual) != 0 ]; do sleep 1; done; echo inflated; head -2 /proc/meminfo; "
          f"cat {SYS}/balloon_num_pages {SYS}/balloon_actual; grep balloon_ /proc/vmstat; "
          f"until [ $(cat {SYS}/balloon_actual) = 0 ]; do sleep 1; done; echo deflated; "
          "head -2 /proc/meminfo; grep balloon_ /proc/vmstat; memhog 450; echo done")


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024  # type: ignore[union-attr]


def run_until(m: Machine, out: Console, marker: bytes) -> None:
    while marker not in out.captured[1]:
        assert m.resume_run(until=m.cpu.icount + 2_000_000) is None, out.captured[1].decode()


def kb(text: str, label: str, nth: int) -> int:
    return int(re.findall(rf"{label}:\s+(\d+) kB", text)[nth])


def test_inflating_returns_memory_to_the_host_and_deflating_gives_it_back(base_image, guest_programs, tmp_path):
    image = tmp_path / "disk.img"
    shutil.copyfile(base_image, image)
    put_file(image, guest_programs / "memhog", "/bin/memhog")
    out = Console(None, None, capture=True)
    m = Machine(image, default_machine(), console=out)
    assert m.boot(["/bin/sh", "-c", SCRIPT]) is None
    run_until(m, out, b"hogged")  # the hog touched most of RAM, then gave it back to the guest
    rss_before = rss_bytes()
    m.balloon.set_target(256 * MiB // 4096)
    run_until(m, out, b"inflated")  # the driver acts at the next tick (the guest sleeps meanwhile)
    rss_inflated = rss_bytes()
    assert m.balloon.actual_pages == 256 * MiB // 4096
    assert rss_before - rss_inflated > 0.75 * 256 * MiB, (rss_before, rss_inflated)
    stats = m.balloon.stats()
    assert stats["total-memory"] == m.kernel.frames.total_frames * 4096 and stats["free-memory"] > 0
    m.balloon.set_target(0)
    r = m.resume_run()
    assert r is not None and r.exit_code == 0, out.captured
    text = out.captured[1].decode()
    # MemTotal and MemFree before, with the balloon inflated, and after it deflated.
    totals = [kb(text, "MemTotal", i) for i in range(3)]
    frees = [kb(text, "MemFree", i) for i in range(3)]
    assert totals[0] - totals[1] == 256 * 1024 and totals[2] == totals[0]
    assert 250 * 1024 <= frees[0] - frees[1] <= 262 * 1024
    assert frees[2] >= frees[0] - 4 * 1024
    assert f"{256 * MiB // 4096}\n{256 * MiB // 4096}\n" in text
    assert "balloon_inflate 65536\nballoon_deflate 0\n" in text
    assert "balloon_inflate 65536\nballoon_deflate 65536\n" in text
    assert text.endswith("allocated 450 MiB\ndone\n")  # all of RAM is the guest's again
    e2fsck_clean(image)
