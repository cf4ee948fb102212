"""Checkpoint/restart on storage as memory (the third paper's checkpoints in files): images in the
SCM range or in a file of the DAX root, restarts after power cuts that finish exactly as the
uninterrupted run, the image file held by the kernel, a directory change whose DAX transaction
committed before its outcome was recorded, and crash campaigns (the 200+ point ones are slow)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from emu import crashtest as ct
from emu.workloads import workload
from guestkernel.checkpoint.checkpointer import Checkpointer
from hw.console import Console
from vmm.config import apply_overrides, default_machine
from vmm.machine import Machine

ROOT = Path(__file__).parents[2]
INTO = {"scm": "scm", "file": "file:/var/ckpt"}
TAR = ["/bin/sh", "-c", "mkdir -p /tmp/a && tar cf /tmp/a/t.tar -C /data tree && ls -l /tmp/a && md5sum /tmp/a/t.tar"]


def _config(into: str, *more: str):  # type: ignore[no-untyped-def]
    return apply_overrides(default_machine(), ["model_level=persist", "storage.mode=memory", "checkpoint.enabled=true",
                                               "checkpoint.tcp=0", f"checkpoint.into={into}", *more])


def _run(state: Path, base_image: Path, argv: list[str], cfg, restart: bool = False, **cut):  # type: ignore[no-untyped-def]
    state.mkdir(parents=True, exist_ok=True)
    if not (state / "disk.img").exists():
        shutil.copyfile(base_image, state / "disk.img")
    m = Machine(state / "disk.img", cfg, console=Console(None, None, capture=True), media_dir=state, **cut)
    r = m.run_restart(argv) if restart else m.run(argv)
    return r, m, bytes(m.console.captured[1])


@pytest.mark.parametrize("into", sorted(INTO))
def test_restart_on_storage_as_memory_finishes_as_the_uninterrupted_run(into: str, base_image: Path,
                                                                        tmp_path: Path) -> None:
    cfg = _config(INTO[into])
    ref, m, ref_out = _run(tmp_path / "ref", base_image, TAR, cfg)
    assert ref.exit_code == 0 and b"t.tar" in ref_out
    assert m.kernel.dax is not None and ref.checkpoint["checkpoints"] > 100
    tree = ct.image_tree(tmp_path / "ref" / "disk.img")
    assert ("/var/ckpt" in tree) == (into == "file")
    assert ("pmem0" in [g.name for g in m.guest_map if g.kind == "checkpoint"]) == (into == "scm")
    for cut in (ref.instructions // 3, 2 * ref.instructions // 3):
        state = tmp_path / f"cut{cut}"
        r, _m, before = _run(state, base_image, TAR, cfg, power_fail_at=cut)
        assert r.power_failed
        r2, m2, after = _run(state, base_image, TAR, cfg, restart=True)
        assert m2.restart_how == "resumed" and r2.exit_code == 0
        # images in the file: the restart maps the private pages back where they are, copies none
        mapped, copied = r2.checkpoint["restart_pages_mapped"], r2.checkpoint["restart_pages_copied"]
        assert (mapped > 0 and copied == 0) if into == "file" else (mapped == 0 and copied > 0)
        assert before + after == ref_out
        assert ct.fsck(state / "disk.img") is None
        assert not ct.diff_trees(tree, ct.image_tree(state / "disk.img"), frozenset({"/var/ckpt"}))


def test_the_image_file_is_held_like_a_swap_file(base_image: Path, tmp_path: Path) -> None:
    """Writes and truncations fail with ETXTBSY, unlink and rename with EPERM; reading works."""
    script = ("exec 2>&1; echo x > /var/ckpt; true > /var/ckpt; rm /var/ckpt; mv /var/ckpt /v; "
              "ls -l /var/ckpt; head -c 8 /var/ckpt | od -c | head -1")
    cfg = _config(INTO["file"], "checkpoint.file_size=1MiB")
    r, m, out = _run(tmp_path / "s", base_image, ["/bin/sh", "-c", script], cfg)
    text = out.decode()
    assert text.count("Text file busy") == 2, text
    assert text.count("Operation not permitted") == 2, text
    assert "1048576" in text and "E   M   U   C   K   P   T   1" in text
    assert ct.fsck(tmp_path / "s" / "disk.img") is None


def test_a_directory_change_on_storage_is_answered_after_a_cut_before_its_record(
        base_image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """mkdir commits its DAX transaction, then the power fails before the checkpointer's record
    after the syscall: the directory is on storage, the restart re-executes mkdir from the image
    taken at its entry, gets EEXIST, and answers with the success recorded before the commit.
    Without that record (the hook off) the replay shows the program an error it never saw."""
    argv = ["/bin/sh", "-c", "mkdir /tmp/q && echo made"]
    cfg = _config(INTO["file"])
    real_after = Checkpointer.after_syscall

    def cut_and_restart(state: Path) -> tuple[bytes, int]:
        at: list[int] = []  # persistence events before the record after mkdir returned

        def spy(self: Checkpointer, p, nr, ret):  # type: ignore[no-untyped-def]
            if nr == 83 and not at:
                at.append(self.k.memory.persistence_events())
            return real_after(self, p, nr, ret)

        monkeypatch.setattr(Checkpointer, "after_syscall", spy)
        ref, _m, ref_out = _run(state / "ref", base_image, argv, cfg)
        assert ref_out == b"made\n" and len(at) == 1
        monkeypatch.setattr(Checkpointer, "after_syscall", real_after)
        r, _m, before = _run(state / "cut", base_image, argv, cfg, power_fail_at_event=at[0] + 1)
        assert r.power_failed and "/tmp/q" in ct.image_tree(state / "cut" / "disk.img")
        r2, m2, after = _run(state / "cut", base_image, argv, cfg, restart=True)
        return before + after, r2.checkpoint["replayed_outcomes"]

    assert cut_and_restart(tmp_path / "with") == (b"made\n", 1)
    monkeypatch.setattr(Checkpointer, "_committing", lambda self, txn: None)
    assert cut_and_restart(tmp_path / "without") == (b"", 0)  # mkdir: File exists; no echo


def _campaign(d: Path, *opts: str, name: str = "dirs") -> tuple[subprocess.CompletedProcess, dict]:
    cmd = [sys.executable, "-m", "emu.cli", "crashtest", "--dir", str(d), "--level", "persist", "--jobs", "2",
           "--set", "storage.mode=memory", *opts, "--", *workload(name)]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    return p, json.loads((d / "crashtest.json").read_text())


@pytest.mark.parametrize("into", sorted(INTO))
def test_dax_campaign_with_checkpoints_loses_nothing(into: str, tmp_path: Path) -> None:
    p, doc = _campaign(tmp_path / "c", "--checkpoint", f"tcp=0,into={INTO[into]}", "--points", "6",
                       "--event-points", "10", "--every-event-of-checkpoint", "1", "--event-stride", "24")
    s = doc["summary"]
    assert s["failed"] == 0 and p.returncode == 0, p.stderr[-3000:]
    assert s["outcomes"]["identical"] == s["tried"] >= 16


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dirs", "tar-cf"])
@pytest.mark.parametrize("into", sorted(INTO))
def test_dax_campaign_with_checkpoints_at_scale(name: str, into: str, tmp_path: Path) -> None:
    """200+ points with events (instruction cuts, persistence events over the run, every event
    of one checkpoint) on storage as memory with checkpointing: every point resumes identical."""
    p, doc = _campaign(tmp_path / "c", "--checkpoint", f"tcp=0,into={INTO[into]}", "--points", "100",
                       "--event-points", "100", "--every-event-of-checkpoint", "1", "--event-stride", "4", name=name)
    s = doc["summary"]
    assert s["failed"] == 0 and p.returncode == 0, p.stderr[-3000:]
    assert s["tried"] >= 200 and s["outcomes"]["identical"] == s["tried"]


def test_a_full_image_file_skips_checkpoints_and_the_run_goes_on(base_image: Path, tmp_path: Path) -> None:
    """Images in a file too small for them: checkpoints are skipped with a message that names the
    file (not "SCM range"), the run finishes, the file system stays clean."""
    cfg = _config("file:/var/ckpt", "checkpoint.file_size=96K")
    r, _m, out = _run(tmp_path / "s", base_image, TAR, cfg)
    assert r.exit_code == 0 and b"t.tar" in out
    assert r.checkpoint["unsupported"] > 0
    assert any("checkpoint skipped" in line and "checkpoint file /var/ckpt full" in line for line in r.log), r.log
    assert ct.fsck(tmp_path / "s" / "disk.img") is None
