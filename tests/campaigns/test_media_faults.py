"""Media faults: a restart either resumes exactly as an uninterrupted run would, or refuses with
its documented status and changes nothing. The issue's scenario (every used SCM page damaged),
the mirror of the image table, the generation on storage, torn write-backs, the fault injector,
and media-fault campaigns."""
from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from emu import crashtest as ct
from vmm.config import apply_overrides, default_machine
from vmm.errors import EXIT_POWER_FAILED, EXIT_RESTART_REFUSED, RestartRefusedError
from vmm.machine import Machine
from vmm.media import DeviceMedia
from emu.mediafaults import KINDS, apply, inject, layout
from guestkernel.checkpoint import generation
from guestkernel.checkpoint.store import LINE, PAGE, ImageStore, ScmMedium, pack_pages
from hw.console import Console

ROOT = Path(__file__).parents[2]
EMU = [sys.executable, "-m", "emu.cli"]
SCENARIO = ["/bin/sh", "-c", "for i in 1 2 3 4 5 6 7 8; do echo line$i >> /log; done; "
            "gzip -9 -c /data/corpus.txt | wc -c; cat /log | wc -l"]
APPENDS = ["/bin/sh", "-c", "for i in 1 2 3 4 5 6; do echo line$i >> /log; done; cat /log | wc -l"]


def _cfg():  # type: ignore[no-untyped-def]
    return apply_overrides(default_machine(), ["model_level=persist", "checkpoint.enabled=true", "checkpoint.tcp=0"])


def _machine(state: Path, **cut):  # type: ignore[no-untyped-def]
    return Machine(state / "disk.img", _cfg(), console=Console(None, None, capture=True), media_dir=state, **cut)


def _cut(state: Path, base_image: Path, argv: list[str], **cut):  # type: ignore[no-untyped-def]
    state.mkdir(parents=True)
    shutil.copyfile(base_image, state / "disk.img")
    m = _machine(state, **cut)
    r = m.run(argv)
    return r, m, bytes(m.console.captured[1])


def _restart(state: Path, argv: list[str]):  # type: ignore[no-untyped-def]
    m = _machine(state)
    r = m.run_restart(argv)
    return r, m, bytes(m.console.captured[1])


def _media(state: Path) -> bytearray:
    """The checkpoint range's media, in guest order (the EPT may scatter its pages)."""
    return DeviceMedia(state, "checkpoint", _cfg()).read()


def _put_media(state: Path, media: bytearray) -> None:
    DeviceMedia(state, "checkpoint", _cfg()).write(media)


def _store(buf: bytearray) -> ImageStore:
    return ImageStore(ScmMedium.over(buf))


# ----------------------------------------------------------------------------------------------
# the scenario, through the command line


def test_every_image_corrupt_is_refused_and_nothing_changes(tmp_path: Path, base_image: Path) -> None:
    state = tmp_path / "s"
    cut = subprocess.run([*EMU, "run", "--image", str(base_image), "--state", str(state), "--level", "persist",
                          "--checkpoint", "tcp=0", "--power-fail-at", "600000000", "--", *SCENARIO],
                         capture_output=True, cwd=ROOT)
    assert cut.returncode == EXIT_POWER_FAILED, cut.stderr  # a cut run is told apart from a finished one
    media = _media(state)
    rng = random.Random(1)
    flipped = 0
    for pg in range(len(media) // PAGE):  # one byte in every used page: a worn-out device
        if media[pg * PAGE : (pg + 1) * PAGE] != bytes(PAGE):
            media[pg * PAGE + rng.randrange(PAGE)] ^= 0xFF
            flipped += 1
    _put_media(state, media)
    assert flipped > 100
    before = ct.state_digest(state)
    rs = subprocess.run([*EMU, "restart", str(state)], capture_output=True, cwd=ROOT)
    assert rs.returncode == EXIT_RESTART_REFUSED and rs.stdout == b""
    err = rs.stderr.decode()
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("emu: error: cannot resume faithfully: no checkpoint image is readable; checkpoints were committed")
    assert "checksum mismatch" in err and "--start-over" in err
    assert ct.state_digest(state) == before  # nothing under the state directory changed
    # The user's explicit choice: the program runs again from the start, and emu says so.
    again = subprocess.run([*EMU, "restart", str(state), "--start-over"], capture_output=True, cwd=ROOT)
    assert again.returncode == 0, again.stderr
    assert b"restart: started over" in again.stderr
    assert again.stdout.endswith(b"\n16\n")  # the appends ran twice: what a silent re-run would hide


def test_restart_names_the_image_it_resumed_from(tmp_path: Path, base_image: Path) -> None:
    state = tmp_path / "s"
    cut = subprocess.run([*EMU, "run", "--image", str(base_image), "--state", str(state), "--level", "persist",
                          "--checkpoint", "tcp=0", "--power-fail-at", "300000", "--", *APPENDS], capture_output=True, cwd=ROOT)
    assert cut.returncode == EXIT_POWER_FAILED
    newest = _store(_media(state)).read_table()[0].seq
    rs = subprocess.run([*EMU, "restart", str(state), "--summary-json", str(tmp_path / "sum.json")],
                        capture_output=True, cwd=ROOT)
    assert rs.returncode == 0, rs.stderr
    assert f"restart: resumed from checkpoint image {newest}; it is the newest".encode() in rs.stderr
    summary = json.loads((tmp_path / "sum.json").read_text())["restart"]
    report = json.loads((state / "report.json").read_text())
    assert summary == report["restart"]
    assert summary["how"] == "resumed" and summary["image"] == newest and summary["rejected"] == []
    assert summary["storage_generation"]["damaged"] is False


# ----------------------------------------------------------------------------------------------
# what survives which damage (machine API)


@pytest.fixture(scope="module")
def appends_ref(base_image: Path, tmp_path_factory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("ref")
    r, m, out = _cut(d / "ref", base_image, APPENDS)
    assert r.exit_code == 0 and out == b"6\n"
    ck = m.kernel.checkpointer
    return d / "ref", out, list(ck.spans), r.instructions


def test_a_zeroed_table_page_is_survived_through_its_mirror(tmp_path: Path, base_image: Path, appends_ref) -> None:  # type: ignore[no-untyped-def]
    ref, ref_out, _spans, total = appends_ref
    state = tmp_path / "s"
    r, _m, before = _cut(state, base_image, APPENDS, power_fail_at=total * 2 // 3)
    media = _media(state)
    media[:PAGE] = bytes(PAGE)
    _put_media(state, media)
    r2, m2, after = _restart(state, APPENDS)
    assert m2.restart_how == "resumed" and before + after == ref_out
    assert ct.image_tree(state / "disk.img") == ct.image_tree(ref / "disk.img")


def test_a_zeroed_table_in_both_copies_is_refused_by_the_generation_on_storage(tmp_path: Path, base_image: Path,
                                                                             appends_ref) -> None:  # type: ignore[no-untyped-def]
    _ref, _out, _spans, total = appends_ref
    state = tmp_path / "s"
    _cut(state, base_image, APPENDS, power_fail_at=total * 2 // 3)
    media = _media(state)
    media[:PAGE] = bytes(PAGE)
    media[-PAGE:] = bytes(PAGE)
    _put_media(state, media)
    gen = generation.decode(lambda off, n: (state / "disk.img").read_bytes()[off : off + n])
    assert gen.begun > 0 and not gen.torn
    before = ct.state_digest(state)
    with pytest.raises(RestartRefusedError, match=f"storage was written by checkpoint {gen.begun}"):
        _restart(state, APPENDS)
    assert ct.state_digest(state) == before


def _span_with_blocks(spans: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    return next(sp for sp in spans if sp[3] > 0 and sp[0] > 2)


def test_a_torn_write_back_with_its_image_corrupt_is_refused(tmp_path: Path, base_image: Path, appends_ref) -> None:  # type: ignore[no-untyped-def]
    """Cut inside a checkpoint's write-back (between the two generation notes), then damage that
    checkpoint's image: storage holds part of it, and no readable image can say which part."""
    _ref, _out, spans, _total = appends_ref
    seq, _first, last, _blocks = _span_with_blocks(spans)
    state = tmp_path / "s"
    r, _m, _ = _cut(state, base_image, APPENDS, power_fail_at_event=last - 1)  # before the "done" note
    assert r.power_failed
    gen = generation.decode(lambda off, n: (state / "disk.img").read_bytes()[off : off + n])
    assert gen.torn and gen.begun == seq
    media = _media(state)
    slot = next(s for s in _store(media).read_table() if s.seq == seq)
    media[slot.meta_page * PAGE + 7] ^= 0x40
    _put_media(state, media)
    before = ct.state_digest(state)
    with pytest.raises(RestartRefusedError, match=f"storage holds part of image {seq}, newer than the newest readable image {seq - 1}"):
        _restart(state, APPENDS)
    assert ct.state_digest(state) == before


def test_a_finished_write_back_with_its_image_corrupt_falls_back(tmp_path: Path, base_image: Path, appends_ref) -> None:  # type: ignore[no-untyped-def]
    """Cut right after a checkpoint's write-back: storage is exactly one image ahead of the
    previous image, which the paper's rules make safe to resume from."""
    ref, ref_out, spans, _total = appends_ref
    seq, _first, last, _blocks = _span_with_blocks(spans)
    state = tmp_path / "s"
    r, _m, before = _cut(state, base_image, APPENDS, power_fail_at_event=last + 1)
    gen = generation.decode(lambda off, n: (state / "disk.img").read_bytes()[off : off + n])
    assert (gen.begun, gen.done) == (seq, seq)
    media = _media(state)
    slots = _store(media).read_table()
    assert slots[0].seq == seq  # the cut came before the next commit
    media[slots[0].meta_page * PAGE + 7] ^= 0x40
    _put_media(state, media)
    r2, m2, after = _restart(state, APPENDS)
    assert m2.restart_how == "resumed" and r2.restart["image"] == seq - 1 and r2.checkpoint["fallbacks"] == 1
    assert before + after == ref_out
    assert ct.image_tree(state / "disk.img") == ct.image_tree(ref / "disk.img")
    assert ct.fsck(state / "disk.img") is None


# ----------------------------------------------------------------------------------------------
# units: the table's two copies, the generation record, the injector


def test_table_state_tells_blank_committed_and_damaged() -> None:
    buf = bytearray(64 * PAGE)
    st = _store(buf)
    assert st.table_state().committed is False and st.table_state().blank
    st.format()
    assert st.table_state().committed is False  # a header alone commits nothing
    a, crc = st.write_page(b"a" * PAGE)
    st.commit({"procs": [{"pages": pack_pages([(0x1000, a, crc)])}]}, {a})
    assert st.table_state().committed is True and st.table_state().max_seq == 1
    for base in (0, 63 * PAGE):
        buf[base + LINE + 2] ^= 1
    ts = _store(buf).table_state()
    assert ts.committed is None and ts.damaged == ["slot 0", "slot 0 (mirror)"]


def test_generation_record_copies() -> None:
    disk = bytearray(4096)
    read = lambda off, n: bytes(disk[off : off + n])  # noqa: E731
    assert generation.decode(read) == generation.Generation()
    generation.write(memoryview(disk), 5, 4)
    assert generation.decode(read) == generation.Generation(5, 4) and generation.decode(read).torn
    disk[3] ^= 1  # one copy damaged: the other speaks
    assert generation.decode(read) == generation.Generation(5, 4)
    disk[515] ^= 1
    assert generation.decode(read).damaged


def test_injector_is_seeded_reproducible_and_places_every_kind(tmp_path: Path, base_image: Path, appends_ref) -> None:  # type: ignore[no-untyped-def]
    _ref, _out, _spans, total = appends_ref
    state = tmp_path / "s"
    _r, m, _ = _cut(state, base_image, APPENDS, power_fail_at=total * 2 // 3)
    device = DeviceMedia(state, "checkpoint", _cfg())
    clean = bytearray(device.path.read_bytes())  # the pool's media, in host order
    where = layout(clean, device.pages)
    assert where["slots"] and where["meta"] and where["data"] and where["used"]
    cpu_view = bytearray(next(r.buffer for r in m.physmem.scm_ranges()))
    cpu_view[5 * PAGE : 5 * PAGE + LINE] = b"N" * LINE  # a line in flight at the cut
    seen = set()
    for kind in KINDS:
        a, b = bytearray(clean), bytearray(clean)
        fa = inject(a, cpu_view, 3, random.Random(7), kinds=(kind,), page_map=device.pages)
        fb = inject(b, cpu_view, 3, random.Random(7), kinds=(kind,), page_map=device.pages)
        assert fa == fb and a == b and a != clean
        seen.update(f["kind"] for f in fa)
        again = bytearray(clean)
        apply(again, fa)
        assert again == a  # recorded faults re-apply exactly
    assert seen == set(KINDS)


# ----------------------------------------------------------------------------------------------
# campaigns


def test_media_fault_campaign_resumes_identically_or_refuses(tmp_path: Path) -> None:
    d = tmp_path / "c"
    p = subprocess.run([*EMU, "crashtest", "--dir", str(d), "--level", "persist", "--jobs", "2", "--checkpoint", "tcp=0",
                        "--media-faults", "2", "--points", "10", "--", *APPENDS], cwd=ROOT, capture_output=True, text=True)
    doc = json.loads((d / "crashtest.json").read_text())
    s = doc["summary"]
    assert p.returncode == 0, p.stderr[-3000:]
    assert s["tried"] == 10 and s["failed"] == 0 and s["outcomes"]["mismatch"] == 0
    assert s["outcomes"]["identical"] + s["outcomes"]["refused"] == 10
    assert all(len(pt["faults"]) == 2 for pt in doc["points"])
    assert "resumed identical" in p.stderr and "refused" in p.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tar-czf", "dirs"])
def test_media_fault_campaign_500_points(tmp_path: Path, name: str) -> None:
    from emu.workloads import workload

    d = tmp_path / "c"
    p = subprocess.run([*EMU, "crashtest", "--dir", str(d), "--level", "persist", "--checkpoint", "tcp=0",
                        "--media-faults", "2", "--points", "500", "--keep", "failed", "--", *workload(name)],
                       cwd=ROOT, capture_output=True, text=True)
    s = json.loads((d / "crashtest.json").read_text())["summary"]
    print(name, s["outcomes"])
    assert p.returncode == 0, p.stderr[-3000:]
    assert s["tried"] == 500 and s["outcomes"]["mismatch"] == 0
