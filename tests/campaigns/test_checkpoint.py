"""Checkpoint/restart into SCM (guestkernel/checkpoint): the image store's format and checks, runs
with checkpointing matching runs without, restarts after power cuts that finish with exactly the
uninterrupted output and file tree, a corrupted newest image falling back to the previous one,
and crash campaigns with checkpointing on (no failures) and off (failures found)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from emu import crashtest as ct
from tests.campaigns.programs import program_campaign
from tests.conftest import e2fsck_clean, put_file
from vmm.config import apply_overrides, default_machine
from vmm.machine import Machine
from vmm.media import DeviceMedia
from emu.workloads import workload
from guestkernel.checkpoint.store import LINE, PAGE, CorruptImage, ImageStore, ScmMedium, encode_static, pack_pages
from hw.console import Console
from images.build import read_file

ROOT = Path(__file__).parents[2]


def _store(buf: bytearray) -> ImageStore:
    return ImageStore(ScmMedium.over(buf))


# ----------------------------------------------------------------------------------------------
# the image store on its own


def test_store_commits_shares_unchanged_pages_and_reuses_free_scm() -> None:
    buf = bytearray(64 * PAGE)
    st = _store(buf)
    a, crc_a = st.write_page(b"A" * PAGE)
    seq1 = st.commit({"procs": [{"pages": pack_pages([(0x1000, a, crc_a)])}]}, {a})
    b, crc_b = st.write_page(b"B" * PAGE)
    seq2 = st.commit({"procs": [{"pages": pack_pages([(0x1000, a, crc_a), (0x2000, b, crc_b)])}]}, {a, b})
    assert (seq1, seq2) == (1, 2)
    # A third image replaces the first: what only the first used is free again, `a` is not.
    c, crc_c = st.write_page(b"C" * PAGE)
    st.commit({"procs": [{"pages": pack_pages([(0x3000, c, crc_c)])}]}, {c})
    fresh = _store(buf)
    img, rejected = fresh.open_newest()
    assert img is not None and img.slot.seq == 3 and rejected == []
    assert bytes(fresh.page(c)) == b"C" * PAGE
    assert fresh.used[a] == 1 and fresh.used[b] == 1  # still held by image 2 (the fallback)
    assert sum(fresh.used) == 2 + len(fresh.slot_images[0].pages) + len(fresh.slot_images[1].pages)  # type: ignore[union-attr]


@pytest.mark.parametrize("damage", ["meta", "page", "slot", "slot-copy"])
def test_store_detects_a_damaged_newest_image_and_uses_the_previous(damage: str) -> None:
    buf = bytearray(64 * PAGE)
    st = _store(buf)
    a, crc_a = st.write_page(b"x" * PAGE)
    st.commit({"procs": [{"pages": pack_pages([(0x1000, a, crc_a)])}], "n": 1}, {a})
    b, crc_b = st.write_page(b"y" * PAGE)
    st.commit({"procs": [{"pages": pack_pages([(0x1000, b, crc_b)])}], "n": 2}, {b})
    newest = st.slot_images[st.newest]  # type: ignore[index]
    assert newest is not None
    if damage == "meta":
        buf[newest.slot.meta_page * PAGE + 5] ^= 0xFF
    elif damage == "page":
        buf[b * PAGE + 100] ^= 0x01
    else:
        buf[LINE * (1 + newest.slot.index) + 3] ^= 0x10
        if damage == "slot":  # both copies of the slot line (the mirror is the last page)
            buf[63 * PAGE + LINE * (1 + newest.slot.index) + 3] ^= 0x10
    img, rejected = _store(buf).open_newest()
    if damage == "slot-copy":  # the other copy of the slot line still names the newest image
        assert img is not None and img.meta["n"] == 2 and rejected == []
        return
    assert img is not None and img.meta["n"] == 1
    if damage != "slot":  # a torn slot line is simply not a slot
        assert len(rejected) == 1 and "image 2" in rejected[0]
    else:
        assert _store(buf).table_state().damaged == ["slot 1", "slot 1 (mirror)"]


def test_store_shares_metadata_parts_and_frees_them_with_the_last_image() -> None:
    """A metadata part (format 4) listed by two images is stored once, merged back on load,
    checked by its crc32, and its pages are free again once no slot's image lists it."""
    buf = bytearray(64 * PAGE)
    st = _store(buf)
    a, crc_a = st.write_page(b"A" * PAGE)
    pages = pack_pages([(0x1000, a, crc_a)])
    static = encode_static({"procs": [{"pid": 1, "comm": "x"}], "files": [{"kind": "console", "stream": 1}]})
    ref, group = st.write_part(static)
    list_ref, list_group = st.write_part(pages)
    meta = {"procs": [{"state": "R", "pages": 1}], "files": [{"flags": 2, "offset": 0}], "pipes": [],
            "parts": [ref, list_ref], "static": 0}
    st.commit(dict(meta, n=1), [pages, group, list_group])
    st.commit(dict(meta, n=2), [pages, group, list_group])  # the same objects: nothing written again
    img, rejected = _store(buf).open_newest()
    assert rejected == [] and img is not None and img.meta["n"] == 2
    assert img.meta["procs"] == [{"state": "R", "pages": pages, "pid": 1, "comm": "x"}]
    assert img.meta["files"] == [{"flags": 2, "offset": 0, "kind": "console", "stream": 1}]
    assert {a, ref[0], list_ref[0]} <= img.pages
    b, crc_b = st.write_page(b"B" * PAGE)
    st.commit({"procs": [{"pages": pack_pages([(0x1000, b, crc_b)])}], "n": 3}, {b})
    assert st.used[ref[0]] == 1  # image 2 (the fallback) still lists the parts
    st.commit({"procs": [{"pages": pack_pages([(0x1000, b, crc_b)])}], "n": 4}, {b})
    assert st.used[ref[0]] == st.used[list_ref[0]] == st.used[a] == 0
    assert sum(st.used) == 2 + len(st.slot_images[0].pages | st.slot_images[1].pages)  # type: ignore[union-attr]
    # a damaged part fails the image that lists it
    st2 = _store(bytearray(64 * PAGE))
    ref, group = st2.write_part(static)
    st2.commit({"procs": [{"state": "R"}], "files": [{}], "pipes": [], "parts": [ref], "static": 0}, [group])
    st2.m.page_view(ref[0])[3] ^= 1
    img, rejected = ImageStore(st2.m).open_newest()
    assert img is None and "metadata part checksum mismatch" in rejected[0]


def test_store_refuses_a_table_of_another_layout() -> None:
    buf = bytearray(64 * PAGE)
    st = _store(buf)
    st.format()
    with pytest.raises(CorruptImage):
        _store(buf[: 32 * PAGE]).read_table()
    img, rejected = _store(buf[: 32 * PAGE]).open_newest()
    assert img is None and "another layout" in rejected[0]
    assert _store(bytearray(64 * PAGE)).open_newest() == (None, [])


# ----------------------------------------------------------------------------------------------
# whole machines


def _config(tcp: str = "0", enabled: bool = True):  # type: ignore[no-untyped-def]
    return apply_overrides(default_machine(), ["model_level=persist", f"checkpoint.enabled={str(enabled).lower()}",
                                               f"checkpoint.tcp={tcp}"])


def _machine(state: Path, cfg, **cut):  # type: ignore[no-untyped-def]
    return Machine(state / "disk.img", cfg, console=Console(None, None, capture=True), media_dir=state, **cut)


def _run(state: Path, base_image: Path, argv: list[str], cfg, **cut):  # type: ignore[no-untyped-def]
    state.mkdir(parents=True, exist_ok=True)
    if not (state / "disk.img").exists():
        shutil.copyfile(base_image, state / "disk.img")
    m = _machine(state, cfg, **cut)
    r = m.run(argv)
    return r, m, bytes(m.console.captured[1])


def _restart(state: Path, argv: list[str], cfg):  # type: ignore[no-untyped-def]
    m = _machine(state, cfg)
    r = m.run_restart(argv)
    return r, m, bytes(m.console.captured[1])


@pytest.fixture(scope="module")
def references(base_image: Path, tmp_path_factory):  # type: ignore[no-untyped-def]
    """Uninterrupted runs of two workloads with checkpointing on (tcp=0) and off."""
    out = {}
    for name in ("dirs", "tar-czf"):
        d = tmp_path_factory.mktemp(f"ref-{name}")
        on = _run(d / "on", base_image, workload(name), _config("0"))
        off = _run(d / "off", base_image, workload(name), _config("0", enabled=False))
        out[name] = (d, on, off)
    return out


@pytest.mark.parametrize("name", ["dirs", "tar-czf"])
def test_checkpointing_changes_nothing_the_guest_can_see(references, name: str) -> None:  # type: ignore[no-untyped-def]
    d, (r_on, m_on, out_on), (r_off, _m, out_off) = references[name]
    assert r_on.exit_code == r_off.exit_code == 0
    assert out_on == out_off
    assert r_on.instructions == r_off.instructions
    assert ct.image_tree(d / "on" / "disk.img") == ct.image_tree(d / "off" / "disk.img")
    ck = r_on.checkpoint
    assert ck["checkpoints"] > 10 and ck["skipped"] == 0  # tcp=0: at every syscall
    assert ck["forced"] > 0 and ck["pages_copied"] > 0 and ck["blocks_logged"] > 0
    assert ck["blocks_in_place"] > 0  # the archive's new blocks, written before the commit (ordered)
    assert r_on.virtual_ns > r_off.virtual_ns  # checkpoints are charged to the clock
    # the host's time inside them is reported apart, as part of the wall time
    assert 0 < r_on.checkpoint_wall_s < r_on.wall_s and r_off.checkpoint_wall_s == 0
    assert ct.fsck(d / "on" / "disk.img") is None


def test_checkpointed_runs_are_deterministic(base_image: Path, tmp_path: Path) -> None:
    runs = [_run(tmp_path / f"r{i}", base_image, workload("tar-czf"), _config("1ms")) for i in range(2)]
    (a, _, out_a), (b, _, out_b) = runs
    assert (a.instructions, a.virtual_ns, a.checkpoint, out_a) == (b.instructions, b.virtual_ns, b.checkpoint, out_b)
    assert (tmp_path / "r0" / "pmem0.media").read_bytes() == (tmp_path / "r1" / "pmem0.media").read_bytes()


@pytest.mark.parametrize("fraction", [0.2, 0.55, 0.9])
def test_restart_after_a_cut_finishes_the_run_exactly_once(references, tmp_path: Path, base_image: Path,
                                                           fraction: float) -> None:  # type: ignore[no-untyped-def]
    d, (ref, _m, ref_out), _off = references["dirs"]
    at = max(1, int(ref.instructions * fraction))
    cfg = _config("0")
    r, _m, before = _run(tmp_path / "s", base_image, workload("dirs"), cfg, power_fail_at=at)
    assert r.power_failed and r.instructions == at
    r2, m2, after = _restart(tmp_path / "s", workload("dirs"), cfg)
    assert m2.restart_how == "resumed"
    assert r2.exit_code == 0 and r2.checkpoint["restarts"] == 1
    assert before + after == ref_out  # no byte lost or repeated
    assert ct.image_tree(tmp_path / "s" / "disk.img") == ct.image_tree(d / "on" / "disk.img")
    assert ct.fsck(tmp_path / "s" / "disk.img") is None


def test_a_corrupted_newest_image_is_detected_and_the_previous_one_used(references, tmp_path: Path,
                                                                      base_image: Path) -> None:  # type: ignore[no-untyped-def]
    d, (ref, _m, ref_out), _off = references["tar-czf"]
    cfg = _config("0")
    state = tmp_path / "s"
    r, _m, before = _run(state, base_image, workload("tar-czf"), cfg, power_fail_at=ref.instructions // 2)
    assert r.power_failed
    media = DeviceMedia(state, "checkpoint", cfg).read()  # in guest order
    st = ImageStore(ScmMedium.over(media))
    slots = st.read_table()
    assert len(slots) == 2
    newest = slots[0]
    # Flip bytes in the middle of the newest image's metadata, on the media itself.
    off = newest.meta_page * PAGE + newest.meta_len // 2
    media[off : off + 4] = bytes(b ^ 0x5A for b in media[off : off + 4])
    DeviceMedia(state, "checkpoint", cfg).write(media)
    r2, m2, after = _restart(state, workload("tar-czf"), cfg)
    assert r2.checkpoint["fallbacks"] == 1
    assert any(f"image {newest.seq}: metadata checksum mismatch" in line for line in r2.log)
    assert r2.exit_code == 0 and before + after == ref_out
    assert ct.image_tree(state / "disk.img") == ct.image_tree(d / "on" / "disk.img")
    assert ct.fsck(state / "disk.img") is None


def test_restart_with_no_image_starts_over_and_swallows_what_was_shown(tmp_path: Path, base_image: Path) -> None:
    cfg = _config("0")
    argv = ["/bin/sh", "-c", "echo one; echo two"]
    ref = _run(tmp_path / "ref", base_image, argv, cfg)[2]
    # Cut before the first syscall: SCM holds no image yet.
    r, _m, before = _run(tmp_path / "s", base_image, argv, cfg, power_fail_at=1000)
    assert r.power_failed and before == b""
    r2, m2, after = _restart(tmp_path / "s", argv, cfg)
    assert m2.restart_how == "started" and after == ref == b"one\ntwo\n"
    # After the end: the last image says the group finished; nothing runs, nothing is repeated.
    r3, m3, again = _restart(tmp_path / "ref", argv, cfg)
    assert m3.restart_how == "finished" and again == b"" and r3.exit_code == 0


def test_emu_restart_command_line(tmp_path: Path, base_image: Path) -> None:
    state = tmp_path / "st"
    emu = [sys.executable, "-m", "emu.cli"]
    cut = subprocess.run([*emu, "run", "--image", str(base_image), "--state", str(state), "--level", "persist",
                          "--checkpoint", "tcp=0", "--power-fail-at", "2000000", "--", *workload("dirs")],
                         capture_output=True, cwd=ROOT)
    assert cut.returncode == 75 and b"power failed" in cut.stderr
    assert json.loads((state / "command.json").read_text())["argv"] == workload("dirs")
    rs = subprocess.run([*emu, "restart", str(state)], capture_output=True, cwd=ROOT)
    assert rs.returncode == 0, rs.stderr
    assert b"restart: resumed" in rs.stderr and (cut.stdout + rs.stdout).endswith(b"done\n")
    # Mistakes: one line, non-zero, no traceback.
    bad = subprocess.run([*emu, "restart", str(tmp_path / "nothing")], capture_output=True, cwd=ROOT)
    assert bad.returncode == 1 and bad.stderr.count(b"\n") == 1 and b"not a state directory" in bad.stderr
    off = tmp_path / "off"
    subprocess.run([*emu, "run", "--image", str(base_image), "--state", str(off), "--", "/bin/true"],
                   capture_output=True, cwd=ROOT, check=True)
    bad = subprocess.run([*emu, "restart", str(off)], capture_output=True, cwd=ROOT)
    assert bad.returncode == 1 and b"needs checkpointing" in bad.stderr and b"Traceback" not in bad.stderr
    bad = subprocess.run([*emu, "run", "--checkpoint", "every=3", "--", "/bin/true"], capture_output=True, cwd=ROOT)
    assert bad.returncode == 2 and b"tcp=DURATION" in bad.stderr


def test_readme_example_cut_and_restart(tmp_path: Path, base_image: Path) -> None:
    """The README's example: a cut in the middle of tar, `emu restart`, and `ls -l` at the end
    (which also asks for extended attributes: EOPNOTSUPP, silently)."""
    argv = ["/bin/sh", "-c", "mkdir -p /tmp/a && tar cf /tmp/a/t.tar -C /data tree && ls -l /tmp/a"]
    cfg = _config("0")
    ref = _run(tmp_path / "ref", base_image, argv, cfg)
    assert ref[0].exit_code == 0 and b" t.tar\n" in ref[2]
    assert not [line for line in ref[0].log if "unimplemented" in line]
    r, _m, before = _run(tmp_path / "s", base_image, argv, cfg, power_fail_at=2_000_000)
    r2, m2, after = _restart(tmp_path / "s", argv, cfg)
    assert r.power_failed and m2.restart_how == "resumed" and before + after == ref[2]
    assert ct.image_tree(tmp_path / "s" / "disk.img") == ct.image_tree(tmp_path / "ref" / "disk.img")


# ----------------------------------------------------------------------------------------------
# crash campaigns (small ones here; test_campaigns_slow.py has the 200-point campaigns)


SMALL = ["/bin/sh", "-c", "mkdir -p /tmp/a/b && echo x > /tmp/a/b/f && mv /tmp/a /tmp/c && echo moved"]


def _campaign(tmp: Path, argv: list[str], *opts: str) -> tuple[subprocess.CompletedProcess, dict]:
    d = tmp / "campaign"
    cmd = [sys.executable, "-m", "emu.cli", "crashtest", "--dir", str(d), "--level", "persist", "--jobs", "2",
           *opts, "--", *argv]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    return p, json.loads((d / "crashtest.json").read_text())


CK_OPTS = ("--checkpoint", "tcp=0", "--points", "8", "--every-event-of-checkpoint", "1", "--event-stride", "16")


@pytest.fixture(scope="module")
def ck_campaign(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, dict]:
    # Every 16th event of the checkpoint's page copies, and all of its commit and write-back
    # (the slow suite cuts at every event).
    return _campaign(tmp_path_factory.mktemp("ck"), SMALL, *CK_OPTS)


def test_campaign_with_checkpointing_loses_nothing(ck_campaign: tuple[subprocess.CompletedProcess, dict]) -> None:
    p, doc = ck_campaign
    s = doc["summary"]
    assert p.returncode == 0, p.stderr[-3000:]
    assert s["failed"] == 0 and s["tried"] > 8
    assert doc["restart"] == "machine" and doc["reference"]["control"] is None
    assert s["by_phase"]["checkpoint"]["tried"] > 0 and s["by_phase"]["write-back"]["tried"] > 0
    assert len(doc["every_event_of_checkpoint"]) == 1
    assert all(" restart " in pt["reproduce"][-1] for pt in doc["points"])


def test_fork_server_cuts_inside_checkpoints_as_rerunning_does(ck_campaign: tuple[subprocess.CompletedProcess, dict],
                                                               tmp_path: Path) -> None:
    """Event cuts fork deep in the kernel's checkpoint code and in the guest's flushes: the same
    points as running each from boot."""
    from tests.campaigns.test_crashtest import same_points

    _, doc = ck_campaign
    p, doc2 = _campaign(tmp_path, SMALL, *CK_OPTS, "--method", "rerun")
    assert p.returncode == 0, p.stderr[-3000:]
    same_points(doc, doc2)


def test_campaign_without_checkpointing_shows_losses(tmp_path: Path) -> None:
    p, doc = _campaign(tmp_path, workload("dirs"), "--checkpoint", "off", "--points", "6", "--seed", "3")
    assert p.returncode == 1 and doc["restart"] == "cold-boot"
    assert doc["summary"]["failed"] >= 1
    lost = [pt for pt in doc["points"] if not pt["passed"]]
    assert any(not pt["checks"]["stdout"] or not pt["checks"]["tree"] for pt in lost)


def test_a_full_scm_range_skips_checkpoints_and_the_run_goes_on(tmp_path: Path, base_image: Path) -> None:
    import dataclasses

    cfg = _config("0")
    pools = tuple(dataclasses.replace(r, size_bytes=256 * 1024) if r.kind == "scm" else r for r in cfg.pools)
    small = dataclasses.replace(cfg, pools=pools)
    r, _m, out = _run(tmp_path / "s", base_image, workload("dirs"), small)
    assert r.exit_code == 0 and out.endswith(b"done\n")
    assert r.checkpoint["unsupported"] > 0
    assert any("checkpoint skipped" in line and "SCM range full" in line for line in r.log)
    assert ct.fsck(tmp_path / "s" / "disk.img") is None


def test_x87_and_sse_registers_live_across_a_syscall_survive_a_restart(tmp_path: Path, base_image: Path,
                                                                      guest_programs: Path) -> None:
    from tests.conftest import put_file

    image = tmp_path / "img"
    shutil.copyfile(base_image, image)
    put_file(image, guest_programs / "fpustate", "/bin/fpustate")
    cfg = _config("0")
    argv = ["/bin/fpustate"]
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    shutil.copyfile(image, ref_dir / "disk.img")
    ref, _m, ref_out = _run(ref_dir, image, argv, cfg)
    assert ref.exit_code == 0 and ref_out.count(b"\n") == 6
    native = subprocess.run([str(guest_programs / "fpustate")], capture_output=True, check=True).stdout
    assert ref_out == native  # full x87 precision, as Linux starts a process (control word 0x37f)
    # Cuts spread over the loop: each resumes from a checkpoint at one of the raw syscalls.
    for i, at in enumerate(range(ref.instructions // 3, ref.instructions, ref.instructions // 7)):
        state = tmp_path / f"s{i}"
        state.mkdir()
        shutil.copyfile(image, state / "disk.img")
        r, _m, before = _run(state, image, argv, cfg, power_fail_at=at)
        r2, m2, after = _restart(state, argv, cfg)
        assert r.power_failed and m2.restart_how == "resumed"
        assert before + after == ref_out, at


def test_replayed_directory_change_answers_with_its_recorded_outcome(tmp_path: Path, base_image: Path) -> None:
    """Fallback to the image taken at mkdir's entry while storage already has the directory:
    the replayed mkdir fails with EEXIST, and the recorded success is returned instead."""
    argv = ["/bin/sh", "-c", "mkdir /tmp/q && echo made"]
    cfg = _config("0")
    ref, m, ref_out = _run(tmp_path / "ref", base_image, argv, cfg)
    assert ref_out == b"made\n"
    ck = m.kernel.checkpointer
    seq, nr, result, _txn = ck.store.read_outcome()
    assert nr == 83 and result == 0  # mkdir, succeeded
    spans = {s[0]: s for s in ck.spans}
    after = spans[seq + 1]
    assert after[3] > 0  # the next checkpoint wrote the new directory's blocks
    state = tmp_path / "s"
    r, _m, before = _run(state, base_image, argv, cfg, power_fail_at_event=after[2] + 1)
    assert r.power_failed
    media = DeviceMedia(state, "checkpoint", cfg).read()  # in guest order
    st = ImageStore(ScmMedium.over(media))
    newest = st.read_table()[0]
    assert newest.seq == seq + 1
    media[newest.meta_page * PAGE + 10] ^= 0xFF
    DeviceMedia(state, "checkpoint", cfg).write(media)
    r2, _m2, out = _restart(state, argv, cfg)
    assert r2.checkpoint["fallbacks"] == 1 and r2.checkpoint["replayed_outcomes"] == 1
    assert before + out == b"made\n" and r2.exit_code == 0
    assert ct.fsck(state / "disk.img") is None


def test_a_fresh_boot_on_storage_an_earlier_checkpointing_run_wrote(base_image: Path, tmp_path: Path) -> None:
    """The image remembers the earlier run's checkpoint generation (its boot sector); a new run
    on fresh SCM numbers its images above it, so that a cut and a restart resume instead of
    refusing ("storage holds image N, newer than the newest readable image")."""
    first = tmp_path / "first"
    r, _m, _ = _run(first, base_image, ["/bin/sh", "-c", "mkdir /tmp/a && echo one > /tmp/a/f"], _config("0"))
    assert r.exit_code == 0
    second = tmp_path / "second"
    second.mkdir()
    shutil.copyfile(first / "disk.img", second / "disk.img")  # the image, without the first run's SCM
    argv = ["/bin/sh", "-c", "echo two >> /tmp/a/f && mkdir /tmp/b && cat /tmp/a/f"]
    r, _m, before = _run(second, base_image, argv, _config("0"), power_fail_at=100_000)
    assert r.power_failed
    r, _m, after = _restart(second, argv, _config("0"))
    assert r.exit_code == 0 and before + after == b"one\ntwo\n"
    e2fsck_clean(second / "disk.img")


@pytest.mark.parametrize("rule", ["shared", "every"])
def test_mmap_rule_forces_checkpoints_for_fills_the_rule_names(base_image: Path, tmp_path: Path, rule: str) -> None:
    """tar's loader and libc fill private file pages as it runs: with mmap_rule 'every' (the
    paper's rule read literally) each fill forces a checkpoint at the next syscall; with
    'shared' (the default) only creat does, and the output and the tree are the same."""
    argv = workload("tar-cf")
    ref, _m, ref_out = _run(tmp_path / "off", base_image, argv, _config("0", enabled=False))
    cfg = apply_overrides(_config("1s"), [f"checkpoint.mmap_rule={rule}"])
    r, _m, out = _run(tmp_path / rule, base_image, argv, cfg)
    assert r.exit_code == ref.exit_code == 0 and out == ref_out and r.instructions == ref.instructions
    assert ct.image_tree(tmp_path / rule / "disk.img") == ct.image_tree(tmp_path / "off" / "disk.img")
    forced = r.checkpoint["forced"]
    assert (forced <= 2) if rule == "shared" else (forced >= 20), r.checkpoint


@pytest.mark.parametrize("touch", [False, True])
def test_a_private_fill_is_a_read_of_the_file(base_image: Path, tmp_path: Path, guest_programs: Path,
                                              touch: bool) -> None:
    """A write to a file read through a private mapping since the last checkpoint forces one (the
    read rule); without the fill the same write does not."""
    state = tmp_path / "s"
    state.mkdir()
    shutil.copyfile(base_image, state / "disk.img")
    put_file(state / "disk.img", guest_programs / "mapwrite", "/bin/mapwrite")
    argv = ["/bin/mapwrite", "/data/corpus.txt", "touch" if touch else "notouch"]
    first = read_file(base_image, "/data/corpus.txt")[:1]
    r, _m, out = _run(state, base_image, argv, _config("1s"))
    assert r.exit_code == 0 and out == b"read " + (first if touch else b"-") + b"\n"
    assert r.checkpoint["forced"] == int(touch), r.checkpoint


@pytest.mark.parametrize("into", ["scm", "file"])
def test_shared_anonymous_memory_survives_a_restart(tmp_path: Path, base_image: Path, guest_programs: Path,
                                                    into: str) -> None:
    """tests/programs/shanon.c under checkpoints at every syscall, cut at points spread over the
    run (after children wrote pages of a MAP_SHARED|MAP_ANONYMOUS object and exited, so that the
    pages are only the object's; after a child wrote a page a second time and died on SIGBUS,
    no syscall between): each restart rebuilds one object shared by the VMAs and finishes with
    the uninterrupted output, which is Linux's. With the images in a file of the DAX root
    (pages living in the file, checkpoint/live.py) the object's pages stay in RAM, copied."""
    image = tmp_path / "img"
    shutil.copyfile(base_image, image)
    put_file(image, guest_programs / "shanon", "/bin/shanon")
    more = ["storage.mode=memory", "checkpoint.into=file:/var/ckpt"] if into == "file" else []
    cfg = apply_overrides(_config("0"), more)
    argv = ["/bin/shanon"]
    ref, _m, ref_out = _run(tmp_path / "ref", image, argv, cfg)
    native = subprocess.run([str(guest_programs / "shanon")], capture_output=True, check=True).stdout
    assert ref.exit_code == 0 and ref_out == native
    assert ref.checkpoint["unsupported"] == 0 and ref.checkpoint["checkpoints"] > 50
    for i in range(1, 9):
        at = ref.instructions * i // 9
        state = tmp_path / f"s{i}"
        r, _m, before = _run(state, image, argv, cfg, power_fail_at=at)
        r2, m2, after = _restart(state, argv, cfg)
        assert r.power_failed and m2.restart_how == "resumed" and r2.exit_code == 0
        assert r2.checkpoint["restart_pages_copied"] > 0
        assert before + after == ref_out, at


def test_moved_mappings_survive_a_restart(base_image: Path, tmp_path: Path) -> None:
    """tests/programs/remap.c under checkpoints at every syscall, cut anywhere: a restart maps a
    moved private file mapping from the file at its offset (its untouched pages are the file's),
    the old range of MREMAP_DONTUNMAP empty, a duplicated shared mapping on the same pages."""
    doc = program_campaign(base_image, tmp_path, "remap")
    native = subprocess.run([str(tmp_path / "remap")], cwd=tmp_path, capture_output=True, check=True).stdout
    assert doc["reference"]["stdout"] == native.decode()


def test_pseudo_files_and_fresh_sockets_are_checkpointed(base_image: Path, tmp_path: Path) -> None:
    """tests/programs/pseudockpt.c: /proc and /sys files read a few bytes a syscall, a /proc
    directory one getdents64 at a time, sockets socket() made (a connect that fails, as glibc's
    name service does) are in the images; cut anywhere, the restart goes on reading where the
    file was, in the contents it had, and ends as the uninterrupted run (one of the 64 cuts lands
    inside the slow read of /proc/self/status: made afresh, its SigBlk line would differ). Only
    the connected pair was refused before the sockets' table (before, every one of these was:
    tar skipped four)."""
    doc = program_campaign(base_image, tmp_path, "pseudockpt", points=64)
    out = doc["reference"]["stdout"]
    assert "  Name:\tpseudockpt\n  SigBlk:\t0000000000000000\n" in out and "connect: -1 No such file or directory\n" in out, out
    r, _m, again = _run(tmp_path / "ref", tmp_path / "disk.img", ["/bin/pseudockpt"], _config("0"))
    assert again.decode() == out
    assert r.checkpoint["unsupported"] == 0 and r.checkpoint["checkpoints"] > 80, r.checkpoint


def test_eventfd_and_signalfd_survive_a_restart(base_image: Path, tmp_path: Path) -> None:
    """tests/programs/eventfds.c: an eventfd counter and a semaphore eventfd written and read a
    little at a time, a signalfd whose mask changes, read by its creator and by a child that
    inherited it (each reads its own signals, as on Linux). Cut anywhere, the restart finds the
    counts and masks where they were; every checkpoint is taken (they used to be refused)."""
    doc = program_campaign(base_image, tmp_path, "eventfds", points=24)
    native = subprocess.run([str(tmp_path / "eventfds")], cwd=tmp_path, capture_output=True, check=True).stdout
    assert doc["reference"]["stdout"] == native.decode()
    r, _m, _out = _run(tmp_path / "ref", tmp_path / "disk.img", ["/bin/eventfds"], _config("0"))
    assert r.checkpoint["unsupported"] == 0 and r.checkpoint["checkpoints"] > 60, r.checkpoint


def test_epoll_and_timerfd_survive_a_restart(base_image: Path, tmp_path: Path) -> None:
    """tests/programs/fdwatch.c: an epoll set over a pipe, an edge-triggered eventfd, a signalfd
    and a timerfd (one-shot, then every 1 ms), a few syscalls at a time. Cut anywhere, the
    restart finds the interest list, what the edge-triggered entry already reported, the
    timer's time left and interval; every checkpoint is taken (they used to be refused)."""
    doc = program_campaign(base_image, tmp_path, "fdwatch", points=24)
    native = subprocess.run([str(tmp_path / "fdwatch")], cwd=tmp_path, capture_output=True, check=True).stdout
    assert doc["reference"]["stdout"] == native.decode()
    r, _m, _out = _run(tmp_path / "ref", tmp_path / "disk.img", ["/bin/fdwatch"], _config("0"))
    assert r.checkpoint["unsupported"] == 0 and r.checkpoint["checkpoints"] > 60, r.checkpoint


@pytest.mark.parametrize("program,arg,refused", [("unixsock", "/tmp", 4), ("inet", "/tmp/inet.dat", 0)])
def test_sockets_survive_a_restart(base_image: Path, tmp_path: Path, program: str, arg: str, refused: int) -> None:
    """tests/programs/unixsock.c and inet.c (AF_UNIX pairs, a path-named listener with a forked
    client, datagrams with sender names, abstract names, shutdowns, MSG_WAITALL; TCP and UDP on
    the loopback) under checkpoints at every syscall, cut anywhere: the table of sockets in the
    image (names held in the kernel's table, connections, what is queued, connections waiting
    on a listener, a peer closed) brings them back and the run ends as the uninterrupted one,
    which is Linux's; a send or a MSG_WAITALL receive parked part way goes on with its progress.
    Only a message carrying descriptors (SCM_RIGHTS) in flight refuses the checkpoints it spans
    (unixsock: four)."""
    doc = program_campaign(base_image, tmp_path, program, arg, points=24)
    native_arg = str(tmp_path) if program == "unixsock" else str(tmp_path / "inet.dat")
    native = subprocess.run([str(tmp_path / program), native_arg], cwd=tmp_path, capture_output=True, check=True).stdout
    assert doc["reference"]["stdout"] == native.decode()
    r, _m, _out = _run(tmp_path / "ref", tmp_path / "disk.img", [f"/bin/{program}", arg], _config("0"))
    assert r.checkpoint["unsupported"] == refused and r.checkpoint["checkpoints"] > 60, r.checkpoint


def test_system_v_segments_survive_a_restart(base_image: Path, tmp_path: Path) -> None:
    """tests/programs/shm.c (a segment made, attached, shared across fork, IPC_STAT, IPC_RMID
    with attaches left, a private one attached at a rounded address) under checkpoints at every
    syscall, cut anywhere: the registry's segments come back at their ids with their keys,
    shmid_ds and pages, attached or not, and the run ends as Linux's (they used to refuse every
    checkpoint while attached)."""
    doc = program_campaign(base_image, tmp_path, "shm", "/tmp/x", points=24)
    native = subprocess.run([str(tmp_path / "shm"), str(tmp_path / "x")], cwd=tmp_path, capture_output=True,
                            check=True).stdout
    assert doc["reference"]["stdout"] == native.decode()
    r, _m, _out = _run(tmp_path / "ref", tmp_path / "disk.img", ["/bin/shm", "/tmp/x"], _config("0"))
    assert r.checkpoint["unsupported"] == 0 and r.checkpoint["checkpoints"] > 60, r.checkpoint


def test_file_locks_survive_a_restart(base_image: Path, tmp_path: Path) -> None:
    """tests/programs/locks.c (POSIX record locks between a parent and its child, a blocking
    F_SETLKW woken by the unlock, EDEADLK, OFD locks, flock) under checkpoints at every syscall,
    cut anywhere: the locks come back with their owners (a pid, an open file) and ranges, and
    the run ends as Linux's. Before, a restart dropped every lock: a process waited for nothing
    and two held the same range."""
    doc = program_campaign(base_image, tmp_path, "locks", "/tmp/locks.dat", points=32)
    native = subprocess.run([str(tmp_path / "locks"), str(tmp_path / "locks.dat")], cwd=tmp_path, capture_output=True,
                            check=True).stdout
    assert doc["reference"]["stdout"] == native.decode()


def test_the_signal_stack_survives_a_restart(base_image: Path, tmp_path: Path) -> None:
    """tests/programs/altstack.c (sigaltstack, handlers on it, SS_ONSTACK, SS_AUTODISARM, nested
    signals) under checkpoints at every syscall, cut anywhere: the alternate signal stack comes
    back with the process (before, a restart forgot it: the next handler ran on the normal
    stack and sigaltstack answered SS_DISABLE)."""
    doc = program_campaign(base_image, tmp_path, "altstack", points=24)
    native = subprocess.run([str(tmp_path / "altstack")], cwd=tmp_path, capture_output=True, check=True).stdout
    assert doc["reference"]["stdout"] == native.decode()


def test_futex_waits_survive_a_restart(base_image: Path, tmp_path: Path) -> None:
    """tests/programs/futexops.c (three threads waiting on a futex, CMP_REQUEUE moving one to
    another word, WAKE_OP) under checkpoints at every syscall, cut anywhere: a parked wait is
    described (the word it waits on now, its place in the queue, a wake it already had, the time
    left), not run again. Re-running it put a requeued waiter back on the first word (2 of 16
    cuts differed) and could lose a wake that came before the restart."""
    doc = program_campaign(base_image, tmp_path, "futexops", "/tmp/x")
    native = subprocess.run([str(tmp_path / "futexops")], cwd=tmp_path, capture_output=True, check=True).stdout
    assert doc["reference"]["stdout"] == native.decode()


def test_sleeps_survive_a_restart(base_image: Path, tmp_path: Path) -> None:
    """tests/programs/sleeps.c under checkpoints at every syscall, cut anywhere: a process asleep
    (a child in nanosleep while its parent makes syscalls) sleeps, after the restart, what was
    left of its sleep, not all of it again (the child's 6 tenths came out 10 or more; 7 of 24 cuts
    differed), a select waiting for a child's byte runs again with the time it had left (one
    cut), and an interrupted sleep's `rem` and select's time left are Linux's."""
    doc = program_campaign(base_image, tmp_path, "sleeps", points=24)
    native = subprocess.run([str(tmp_path / "sleeps")], cwd=tmp_path, capture_output=True, check=True).stdout
    assert doc["reference"]["stdout"] == native.decode()


@pytest.mark.parametrize("nr", [45, 47])  # recvfrom, recvmsg
def test_a_receive_parked_part_way_goes_on_after_a_restart(base_image: Path, tmp_path: Path, guest_programs: Path,
                                                           monkeypatch: pytest.MonkeyPatch, nr: int) -> None:
    """unixsock.c's MSG_WAITALL receives of 600,000 bytes (recvfrom, then recvmsg) take them in
    pieces while the sender writes: images taken then hold the receiver parked part way
    ("transfer_rest"). Cut in the middle of those images and restarted, the receive goes on from
    its progress (its vectors' first bytes filled already): the output is the uninterrupted
    run's. Run again from the start, it took the rest as the whole message."""
    import guestkernel.checkpoint.checkpointer as ckpt

    image = tmp_path / "img"
    shutil.copyfile(base_image, image)
    put_file(image, guest_programs / "unixsock", "/bin/unixsock")
    argv, cfg = ["/bin/unixsock", "/tmp"], _config("0")
    capture, at = ckpt.capture, []

    def spy(k, *a, **kw):  # type: ignore[no-untyped-def]
        meta, stats, groups = capture(k, *a, **kw)
        if any(d.get("resume", {}).get("kind") == "transfer_rest" and d["resume"]["nr"] == nr for d in meta["procs"]):
            at.append(k.clock.instructions())
        return meta, stats, groups

    monkeypatch.setattr(ckpt, "capture", spy)
    ref, _m, ref_out = _run(tmp_path / "ref", image, argv, cfg)
    monkeypatch.setattr(ckpt, "capture", capture)
    assert ref.exit_code == 0 and len(at) >= 3, at
    r, _m, before = _run(tmp_path / "cut", image, argv, cfg, power_fail_at=at[len(at) // 2] + 1)
    r2, m2, after = _restart(tmp_path / "cut", argv, cfg)
    assert r.power_failed and m2.restart_how == "resumed" and r2.exit_code == 0
    assert before + after == ref_out


def test_big_writes_survive_a_restart(base_image: Path, tmp_path: Path) -> None:
    """tests/programs/bigwrites.c: write and writev larger than a pipe's or a socket's buffer,
    parked part way while the reader drains; cut anywhere, the restart goes on with what was
    written (a writev used to refuse those checkpoints; its vectors' first bytes are skipped
    now) and every byte arrives once, in order, as on Linux."""
    doc = program_campaign(base_image, tmp_path, "bigwrites", points=24)
    native = subprocess.run([str(tmp_path / "bigwrites")], cwd=tmp_path, capture_output=True, check=True).stdout
    assert doc["reference"]["stdout"] == native.decode()
    r, _m, _out = _run(tmp_path / "ref", tmp_path / "disk.img", ["/bin/bigwrites"], _config("0"))
    assert r.checkpoint["unsupported"] == 0, r.checkpoint
