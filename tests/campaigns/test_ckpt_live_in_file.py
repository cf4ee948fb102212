"""Private pages that live in the checkpoint image file (guestkernel/checkpoint/live.py): with
`checkpoint.into = file:...` a checkpoint copies a page once, maps it from the file, and from then
on flushes the pages written in place instead of copying them. The programs' output equals the
run whose pages stay in RAM, RAM use drops, a restart after a cut resumes to the same output,
crash campaigns with cuts at the persistence events of checkpoints resume identical, and with the
in-place flushes switched off (checkpoint.flush_in_place = false, a debug switch) they do not."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from emu import crashtest as ct
from emu.workloads import workload
from tests.campaigns.test_dax_checkpoint import _run  # (one run or restart on a state directory)
from tests.conftest import put_file
from vmm.config import apply_overrides, default_machine

ROOT = Path(__file__).parents[2]
GZIP = ["/bin/sh", "-c", "gzip -9 -c /data/corpus.txt > /tmp/c.gz && md5sum /tmp/c.gz && ls -l /tmp/c.gz"]
TAR = ["/bin/sh", "-c", "tar cf /tmp/t.tar -C /data tree && md5sum /tmp/t.tar"]


def _config(*more: str):  # type: ignore[no-untyped-def]
    return apply_overrides(default_machine(), ["model_level=persist", "storage.mode=memory", "checkpoint.enabled=true",
                                               "checkpoint.tcp=0", "checkpoint.into=file:/var/ckpt", *more])


def test_pages_living_in_the_file_give_the_same_output_and_are_flushed_not_copied(base_image: Path,
                                                                                 tmp_path: Path) -> None:
    for name, argv in (("gzip", GZIP), ("tar", TAR)):
        ref, mref, ref_out = _run(tmp_path / name / "ram", base_image, argv, _config("checkpoint.live_in_file=false"))
        assert ref.exit_code == 0 and len(ref_out.splitlines()) >= 1
        assert ref.checkpoint["pages_in_place"] == 0 and ref.checkpoint["pages_remapped"] == 0
        r, m, out = _run(tmp_path / name / "file", base_image, argv, _config())
        assert r.exit_code == 0 and out == ref_out
        ck = r.checkpoint
        assert ck["checkpoints"] > 50  # (about as many: a SIGCHLD may land at another syscall of sh)
        # Every page a checkpoint copied moved into the file (its RAM frame freed); from then on
        # the pages written are flushed in place, each line of them, not copied.
        assert ck["pages_copied"] == ck["pages_remapped"] > 0
        assert ck["pages_in_place"] > 20 * ck["pages_copied"]
        assert ck["lines_in_place"] == 64 * ck["pages_in_place"]
        assert ck["bytes_copied"] * 10 < ref.checkpoint["bytes_copied"]
        assert m.kernel.frames.peak < mref.kernel.frames.peak  # RAM used by the group drops
        assert ct.fsck(tmp_path / name / "file" / "disk.img") is None
        # A cut in the middle: the restart maps the newest image's pages back and finishes alike.
        state = tmp_path / name / "cut"
        rc, _m, before = _run(state, base_image, argv, _config(), power_fail_at=r.instructions // 2)
        assert rc.power_failed
        r2, m2, after = _run(state, base_image, argv, _config(), restart=True)
        assert m2.restart_how == "resumed" and r2.exit_code == 0
        assert r2.checkpoint["restart_pages_mapped"] > 0 and r2.checkpoint["restart_pages_copied"] == 0
        assert before + after == ref_out
        assert ct.fsck(state / "disk.img") is None


def test_fork_mprotect_mremap_munmap_with_pages_living_in_the_file(base_image: Path, guest_programs: Path,
                                                                   tmp_path: Path) -> None:
    """A program whose private pages are shared after fork and written by both sides, made
    read-only and writable again, moved by mremap and partly unmapped, between checkpoints at
    every syscall: the output of a run without checkpoints, uninterrupted and after cuts."""
    image = tmp_path / "base.img"
    shutil.copyfile(base_image, image)
    put_file(image, guest_programs / "ckptmem", "/bin/ckptmem")
    argv = ["/bin/ckptmem"]
    ref, _m, ref_out = _run(tmp_path / "ref", image, argv, _config("checkpoint.enabled=false"))
    assert ref.exit_code == 0 and ref_out.count(b"\n") == 7 and b"status 3" in ref_out
    assert ref_out == subprocess.run([guest_programs / "ckptmem"], capture_output=True, check=True).stdout  # native
    r, m, out = _run(tmp_path / "file", image, argv, _config())
    assert r.exit_code == 0 and out == ref_out
    ck = r.checkpoint
    assert ck["pages_in_place"] > 100 and ck["pages_remapped"] > 50 and ck["live_copies"] > 100
    assert ck["pages_copied"] < ck["pages_in_place"]
    for cut in (r.instructions // 3, 2 * r.instructions // 3):
        state = tmp_path / f"cut{cut}"
        rc, _m, before = _run(state, image, argv, _config(), power_fail_at=cut)
        assert rc.power_failed
        r2, m2, after = _run(state, image, argv, _config(), restart=True)
        assert m2.restart_how == "resumed" and r2.exit_code == 0
        assert before + after == ref_out
        assert ct.fsck(state / "disk.img") is None


def _campaign(d: Path, name: str, *opts: str) -> tuple[subprocess.CompletedProcess, dict]:
    cmd = [sys.executable, "-m", "emu.cli", "crashtest", "--dir", str(d), "--level", "persist", "--jobs", "2",
           "--set", "storage.mode=memory", "--checkpoint", "tcp=0,into=file:/var/ckpt", *opts, "--", *workload(name)]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    return p, json.loads((d / "crashtest.json").read_text())


def test_campaign_with_pages_living_in_the_file_loses_nothing(tmp_path: Path) -> None:
    """Cuts at instructions, at persistence events over the run and at every event of one
    checkpoint (its in-place flushes among them): each resumes to the uninterrupted output."""
    p, doc = _campaign(tmp_path / "c", "tar-cf", "--points", "4", "--event-points", "10",
                       "--every-event-of-checkpoint", "6", "--event-stride", "8")  # (the slow suite: 200+ points)
    s = doc["summary"]
    assert s["failed"] == 0 and p.returncode == 0, p.stderr[-3000:]
    assert s["outcomes"]["identical"] == s["tried"] >= 14


def test_campaign_without_the_in_place_flushes_fails(tmp_path: Path) -> None:
    """The same cuts with checkpoint.flush_in_place = false: images commit pages whose lines were
    never written back, and restarts find them torn, so the check can fail."""
    p, doc = _campaign(tmp_path / "c", "tar-cf", "--points", "4", "--event-points", "10",
                       "--set", "checkpoint.flush_in_place=false")
    assert p.returncode == 1
    s = doc["summary"]
    assert s["failed"] >= 3, f"only {s['failed']} of {s['tried']} cuts caught the missing flushes"
