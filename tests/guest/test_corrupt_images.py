"""Corrupt guest images never kill emu: hypothesis mutates each kind of ext2 metadata of a real
image (superblock, group descriptors, bitmaps, inode table, directory blocks, indirect blocks,
plus random bytes in the first 2 MiB) and runs a guest workload that reads and changes
everything (tests/programs/fswalk.c). The guest may see EIO and fail; emu must not: no internal
error, no hang (an instruction budget and a wall-clock alarm), no write outside the image, and
an image whose superblock, descriptors and root inode are intact still mounts.

The metadata blocks are found by parsing the image with the driver itself (see `Layout`)."""
from __future__ import annotations

import errno
import re
import shutil
import signal
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from vmm.errors import EmuError
from vmm.machine import Machine
from guestkernel.blockcache import FileBlockCache
from guestkernel.ext2 import ROOT_INO, Ext2, FsError
from hw.console import Console
from tests.conftest import put_file, run_emu
from tests.unit.test_ext2 import Clock, make_staging, mkimg, mount, resolve

BUDGET_INSNS = 10_000_000    # ~16x what the workload needs (0.6 M): a corrupt binary that spins stops
#                              (a loop of syscalls retires few instructions per second of Python)
ALARM_S = 60                 # a kernel loop (Python) is a hang: fail the example
FIRST_BYTES = 2 << 20        # "random bytes in the first 2 MiB"
WORKLOAD = ["/bin/fswalk"]

EXT2_ERROR = re.compile(r"EXT2-fs error \(device vda\): ext2_\w+: \S.*")
KINDS = ["superblock", "group_descriptors", "block_bitmap", "inode_bitmap", "inode_table",
         "directory", "indirect", "random"]


@dataclass
class Layout:
    """Where an image keeps each kind of metadata: byte ranges (offset, length) per kind."""

    block_size: int
    blocks_count: int
    inodes_count: int
    regions: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    root_inode: tuple[int, int] = (0, 0)
    interesting: list[int] = field(default_factory=list)  # block numbers worth pointing at

    @property
    def mount_critical(self) -> list[tuple[int, int]]:
        """Bytes whose damage may rightly make the mount fail (as on Linux: superblock, group
        descriptors, root inode)."""
        return self.regions["superblock"] + self.regions["group_descriptors"] + [self.root_inode]


def parse_layout(image: Path) -> Layout:
    """The metadata of an image, found with the driver's own parsing. Each region is the part
    of its block that is in use (the fields of a superblock or descriptor, the bits of the
    blocks that exist, the records of a directory block, the pointers of an indirect block),
    so that damage lands where it matters."""
    cache = FileBlockCache(image, readonly=True)
    fs = Ext2(cache, now=lambda: 0)
    bs = fs.block_size
    lay = Layout(bs, fs.blocks_count, fs.inodes_count)
    lay.regions["superblock"] = [(1024, 264)]  # through s_reserved_gdt_blocks
    gd = fs.ngroups * fs.GD_SIZE
    lay.regions["group_descriptors"] = [(b * bs, min(bs, gd - i * bs)) for i, b in enumerate(fs._gd_blocks)]
    lay.regions["block_bitmap"] = [(g.block_bitmap * bs, -(-fs._group_nblocks(g.index) // 8)) for g in fs._groups]
    lay.regions["inode_bitmap"] = [(g.inode_bitmap * bs, -(-fs.ipg // 8)) for g in fs._groups]
    # Inode table: the records of inodes in use (the rest is never read).
    itable, dirs, indirect = [], [], []
    todo, seen = [ROOT_INO], set()
    while todo:
        ino = todo.pop()
        if ino in seen:
            continue
        seen.add(ino)
        b, off = fs._iloc(ino)
        itable.append((b * bs + off, 128))  # the fields of the good old 128-byte inode
        ind = fs._iget(ino)
        if fs._has_blockmap(ind):
            for slot, level in ((12, 1), (13, 2), (14, 3)):
                collect_indirect(fs, ind.block[slot], level, indirect)
        if ind.fmt == 0o040000:
            for p in fs._map_range(ind, 0, ind.size // bs):
                if p:
                    used = max(off + 8 + len(nm) for off, _i, _rl, _ft, nm in fs._entries(bytes(cache.get(p)), ino))
                    dirs.append((p * bs, used))
            todo += [child for name, child, _ in fs.readdir(ino) if name not in (b".", b"..")]
    lay.root_inode = itable[0]
    lay.regions["inode_table"] = sorted(itable)
    lay.regions["directory"] = sorted(dirs)
    lay.regions["indirect"] = sorted(indirect)
    lay.regions["random"] = [(0, FIRST_BYTES)]
    g = fs._groups[0]
    lay.interesting = sorted({0, 1, fs.first_data, g.block_bitmap, g.inode_bitmap, g.inode_table,
                              fs.blocks_count - 1, fs.blocks_count, *(o // bs for o, _ in indirect[:2]),
                              *(o // bs for o, _ in dirs[:2])})
    cache.close()
    return lay


def collect_indirect(fs: Ext2, p: int, level: int, out: list[tuple[int, int]]) -> None:
    if not p:
        return
    ptrs = fs._ptrs_of(p)
    used = max(i + 1 for i, c in enumerate(ptrs) if c)
    out.append((p * fs.block_size, 4 * used))
    if level > 1:
        for c in ptrs:
            collect_indirect(fs, c, level - 1, out)


@pytest.fixture(scope="session")
def fuzz_image(base_image, guest_programs, tmp_path_factory) -> tuple[Path, Layout]:
    """The default image with the workload in /bin, and its layout."""
    image = tmp_path_factory.mktemp("corrupt") / "base.img"
    shutil.copyfile(base_image, image)
    put_file(image, guest_programs / "fswalk", "/bin/fswalk")
    return image, parse_layout(image)


# ---------------------------------------------------------------------------------- mutations

@dataclass(frozen=True)
class Edit:
    how: str      # byte | flip | u32 | u16 | zero
    pos: int      # 0..2**32: where in the region (scaled)
    value: int    # 0..2**32: what (a byte, a bit, an index into the interesting values)


def interesting_values(lay: Layout, region_block: int) -> list[int]:
    return [0, 1, 2, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, lay.inodes_count, lay.inodes_count + 1, 11,
            region_block, *lay.interesting]


def apply_edits(image: Path, lay: Layout, kind: str, which: int, edits: list[Edit]) -> list[tuple[int, int]]:
    """Damage one region of `kind` in the image file; returns the byte ranges changed."""
    regions = lay.regions[kind]
    start, length = regions[which % len(regions)]
    values = interesting_values(lay, start // lay.block_size)
    with open(image, "r+b") as f:
        f.seek(start)
        region = bytearray(f.read(length))
        changed = edit_region(region, start, values, edits)
        f.seek(start)
        f.write(region)
    return changed


def edit_region(data: bytearray, start: int, values: list[int], edits: list[Edit]) -> list[tuple[int, int]]:
    """Apply edits to the bytes of a region that starts at image offset `start` (aligned, so
    fields are aligned within it); returns the image byte ranges changed."""
    length = len(data)
    changed = []
    for e in edits:
        off = e.pos % length
        if e.how == "byte":
            data[off] = e.value & 0xFF
            n = 1
        elif e.how == "flip":
            data[off] ^= 1 << (e.value & 7)
            n = 1
        elif e.how in ("u32", "u16"):
            n = min(4 if e.how == "u32" else 2, length)
            off = min(off & ~(n - 1), length - n)
            v = values[e.value % len(values)]
            data[off:off + n] = (v & (1 << 8 * n) - 1).to_bytes(n, "little")
        else:
            n = min(16, length - off)
            data[off:off + n] = bytes(n)
        changed.append((start + off, n))
    return changed


def overlaps(changed: list[tuple[int, int]], regions: list[tuple[int, int]]) -> bool:
    return any(o < ro + rn and ro < o + n for o, n in changed for ro, rn in regions)


edit_st = st.builds(Edit, how=st.sampled_from(["byte", "flip", "u32", "u32", "u16", "zero"]),
                    pos=st.integers(0, 2**32 - 1), value=st.integers(0, 2**32 - 1))


class Hang(Exception):
    pass


def _alarm(signum, frame):  # type: ignore[no-untyped-def]
    raise Hang(f"emu did not finish within {ALARM_S} s")


def run_corrupted(image: Path, lay: Layout, tmp: Path, kind: str, which: int, edits: list[Edit]) -> str:
    """Run the workload on a damaged copy; returns the outcome ('mount refused', 'ran', ...).
    Fails the test on anything that is emu's fault."""
    bad = tmp / "bad.img"
    shutil.copyfile(image, bad)
    changed = apply_edits(bad, lay, kind, which, edits)
    console = Console(out_fd=None, err_fd=None, capture=True)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(ALARM_S)
    try:
        m = Machine(bad, console=console, power_fail_at=BUDGET_INSNS)
        try:
            r = m.run(WORKLOAD)
        except EmuError as e:
            # Refusing the mount is right only for damage Linux refuses it for.
            assert overlaps(changed, lay.mount_critical), f"mount refused ({e}) though only {kind} was damaged"
            assert "\n" not in str(e)
            return "mount refused"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert bad.stat().st_size == image.stat().st_size, "the driver wrote outside the image"
    for line in r.log:
        if line.startswith("EXT2-fs"):
            assert EXT2_ERROR.fullmatch(line), line
    assert len(r.log) == len(set(r.log)), "a corruption was logged more than once"
    if not overlaps(changed, lay.mount_critical):
        # Nothing was written through a corrupt pointer over what the next mount needs.
        cache = FileBlockCache(bad, readonly=True)
        Ext2(cache, now=lambda: 0)
        cache.close()
    if r.power_failed:
        return "budget"
    out = console.captured[1].decode(errors="replace")
    found = re.search(r"eio=(\d+)", out)
    eio = "eio" if found and int(found.group(1)) else "no eio"
    return f"ran, {eio}" if r.exit_code == 0 else f"guest failed {r.exit_code}"


CASES = settings(max_examples=26, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("kind", KINDS)
@CASES
@given(which=st.integers(0, 2**16), edits=st.lists(edit_st, min_size=1, max_size=8))
def test_corrupt_metadata_never_kills_emu(fuzz_image, tmp_path, kind, which, edits):
    image, lay = fuzz_image
    run_corrupted(image, lay, tmp_path, kind, which, edits)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=260, deadline=None, suppress_health_check=list(HealthCheck))
@given(which=st.integers(0, 2**16), edits=st.lists(edit_st, min_size=1, max_size=8))
def test_corrupt_metadata_never_kills_emu_long(fuzz_image, tmp_path, kind, which, edits):
    image, lay = fuzz_image
    run_corrupted(image, lay, tmp_path, kind, which, edits)


# ------------------------------------------------------------------ the validations, one by one

def small_image(tmp_path: Path) -> Path:
    stg = tmp_path / "stg"
    make_staging(stg, 1024)
    return mkimg(tmp_path / "img", 1024, "4M", stg)


def poke(img: Path, off: int, data: bytes) -> None:
    with open(img, "r+b") as f:
        f.seek(off)
        f.write(data)


def mount_logged(img: Path) -> tuple[FileBlockCache, Ext2, list[str]]:
    cache = FileBlockCache(img)
    log: list[str] = []
    return cache, Ext2(cache, Clock(), log=log.append), log


def where(img: Path, fn):  # type: ignore[no-untyped-def]
    """Evaluate fn(fs) on a clean mount (to find what to damage)."""
    cache, fs = mount(img)
    try:
        return fn(fs)
    finally:
        cache.close()


@pytest.mark.parametrize("field,value,why", [
    (56, struct.pack("<H", 0x1234), "bad superblock magic"),
    (24, struct.pack("<I", 9), "unsupported block size"),
    (4, struct.pack("<I", 5000), "block count 5000 exceeds size of device"),
    (20, struct.pack("<I", 0), "bad first data block"),
    (40, struct.pack("<I", 0), "bad group geometry"),
    (88, struct.pack("<H", 100), "bad inode size"),
    (76, struct.pack("<I", 7), "unsupported revision level"),
    (8, struct.pack("<I", 4097), "reserved block count"),
])
def test_mount_refuses_a_bad_superblock(tmp_path, field, value, why):
    img = small_image(tmp_path)
    poke(img, 1024 + field, value)
    with pytest.raises(FsError) as ei:
        mount(img)
    assert ei.value.errno == errno.EINVAL
    assert why in str(ei.value)


@pytest.mark.parametrize("field,name", [(0, "Block bitmap"), (4, "Inode bitmap"), (8, "Inode table")])
def test_mount_refuses_descriptors_outside_their_group(tmp_path, field, name):
    img = small_image(tmp_path)
    poke(img, 2 * 1024 + field, struct.pack("<I", 4095 if field == 8 else 4096))
    with pytest.raises(FsError) as ei:
        mount(img)
    assert ei.value.errno == errno.EINVAL
    assert f"{name} for group 0 not in group" in str(ei.value)


def test_mount_refuses_a_bad_root_inode(tmp_path):
    img = small_image(tmp_path)
    off = where(img, lambda fs: fs._iloc(ROOT_INO))
    poke(img, off[0] * 1024 + off[1], struct.pack("<H", 0o100644))
    with pytest.raises(FsError) as ei:
        mount(img)
    assert ei.value.errno == errno.EINVAL and "root inode" in str(ei.value)


def test_bad_directory_record_is_eio_logged_once(tmp_path):
    img = small_image(tmp_path)
    d1 = where(img, lambda fs: (resolve(fs, "d1"), fs.bmap(resolve(fs, "d1"), 0)))
    poke(img, d1[1] * 1024 + 4, struct.pack("<H", 13))  # '.' gets rec_len 13
    cache, fs, log = mount_logged(img)
    for _ in range(2):
        with pytest.raises(FsError) as ei:
            fs.lookup(d1[0], b"d2")
        assert ei.value.errno == errno.EIO
    assert log == [f"EXT2-fs error (device vda): ext2_check_page: bad entry in directory #{d1[0]}: "
                   "unaligned directory entry - offset=0, inode=" f"{d1[0]}, rec_len=13, name_len=1"]


def test_directory_record_inode_out_of_bounds(tmp_path):
    img = small_image(tmp_path)
    blk, n = where(img, lambda fs: (fs.bmap(2, 0), fs.inodes_count))
    poke(img, blk * 1024 + 12, struct.pack("<I", n + 1))  # '..' of the root
    cache, fs, log = mount_logged(img)
    with pytest.raises(FsError) as ei:
        fs.readdir(2)
    assert ei.value.errno == errno.EIO
    assert "inode out of bounds" in log[0]


def test_lookup_of_a_deleted_or_reserved_inode(tmp_path):
    img = small_image(tmp_path)
    cache, fs = mount(img)
    f = fs.create(2, b"x", 0o644, 0, 0)
    fs._set_entry(fs._iget(2), b"one", 7, 1)  # the resize inode: reserved
    fs.sync()
    cache.close()
    itable_off = where(img, lambda fs: fs._iloc(f))
    poke(img, itable_off[0] * 1024 + itable_off[1], bytes(2))  # mode 0: a free inode
    cache, fs, log = mount_logged(img)
    for name in (b"x", b"one"):
        with pytest.raises(FsError) as ei:
            fs.lookup(2, name)
        assert ei.value.errno == errno.EIO
    assert log == [f"EXT2-fs error (device vda): ext2_lookup: deleted inode referenced: {f}",
                   "EXT2-fs error (device vda): ext2_get_inode: bad inode number: 7"]


@pytest.mark.parametrize("fields,why", [
    ({0: struct.pack("<H", 0o170644)}, "bad file type 0o170644"),
    ({4: struct.pack("<I", 0xFFFFFFFF), 108: struct.pack("<I", 0xFFFFFFFF)}, "beyond the maximum file size"),
    ({28: struct.pack("<I", 0xFFFFFFF0)}, "i_blocks"),
])
def test_bad_inode_fields_are_eio(tmp_path, fields, why):
    img = small_image(tmp_path)
    ino, (blk, off) = where(img, lambda fs: (resolve(fs, "mid"), fs._iloc(resolve(fs, "mid"))))
    for at, value in fields.items():
        poke(img, blk * 1024 + off + at, value)
    cache, fs, log = mount_logged(img)
    with pytest.raises(FsError) as ei:
        fs.stat(ino)
    assert ei.value.errno == errno.EIO
    assert log[0].startswith(f"EXT2-fs error (device vda): ext2_iget: inode {ino}: ") and why in log[0]


def test_symlink_longer_than_its_storage(tmp_path):
    img = small_image(tmp_path)
    cache, fs = mount(img)
    ln = fs.symlink(2, b"ln", b"target", 0, 0)
    fs.sync()
    blk, off = fs._iloc(ln)
    cache.close()
    poke(img, blk * 1024 + off + 4, struct.pack("<I", 60))  # a fast symlink holds < 60 bytes
    cache, fs, log = mount_logged(img)
    with pytest.raises(FsError) as ei:
        fs.readlink(ln)
    assert ei.value.errno == errno.EIO
    assert "symlink length 60 too long for a fast symlink" in log[0]


def test_write_through_a_pointer_into_metadata_fails(tmp_path):
    img = small_image(tmp_path)
    cache, fs = mount(img)
    ino = resolve(fs, "mid")
    itable = fs._groups[0].inode_table
    before = bytes(cache.get(itable))
    fs._iget(ino).block[0] = itable  # corrupt the in-memory copy as a bad read would
    with pytest.raises(FsError) as ei:
        fs.write(ino, 0, b"scribble")
    assert ei.value.errno == errno.EIO
    with pytest.raises(FsError) as ei:
        fs.truncate(ino, 100)  # zeroes the tail of the block holding the new end
    assert ei.value.errno == errno.EIO
    assert bytes(cache.get(itable)) == before
    fs._iget(ino).block[3] = fs.blocks_count + 7
    with pytest.raises(FsError) as ei:
        fs.write(ino, 3 * 1024, b"scribble")
    assert ei.value.errno == errno.EIO


def test_freeing_corrupt_pointers_leaves_the_bitmaps_alone(tmp_path):
    img = small_image(tmp_path)
    ino, ind_blk = where(img, lambda fs: (resolve(fs, "ind"), fs._iget(resolve(fs, "ind")).block[12]))
    itable = where(img, lambda fs: fs._groups[0].inode_table)
    poke(img, ind_blk * 1024, struct.pack("<II", 99999, itable))  # outside the fs; the inode table
    cache, fs, log = mount_logged(img)
    bitmap = bytes(cache.get(fs._groups[0].block_bitmap))
    free0 = fs.free_blocks
    fs.unlink(2, b"ind")
    fs.release(ino)
    assert "EXT2-fs error (device vda): ext2_free_blocks: Freeing blocks not in datazone - block = 99999, count = 1" in log
    assert f"EXT2-fs error (device vda): ext2_free_blocks: Freeing blocks in system zones - Block = {itable}, count = 1" in log
    after = cache.get(fs._groups[0].block_bitmap)
    bit = itable - fs.first_data
    assert after[bit >> 3] >> (bit & 7) & 1 and bitmap[bit >> 3] >> (bit & 7) & 1
    assert fs.free_blocks == free0 + 13  # 12 direct + the indirect block; its data block is lost
    fs.sync()


def test_indirect_block_pointing_at_itself_never_loops(tmp_path):
    img = small_image(tmp_path)
    ino, dind = where(img, lambda fs: (resolve(fs, "dind"), fs._iget(resolve(fs, "dind")).block[13]))
    poke(img, dind * 1024, struct.pack("<I", dind))
    cache, fs, log = mount_logged(img)
    with pytest.raises(FsError) as ei:
        fs.truncate(ino, 0)
    assert ei.value.errno == errno.EIO
    assert log == [f"EXT2-fs error (device vda): ext2_free_branches: indirect block {dind} referenced twice"]
    fs.unlink(2, b"dind")
    fs.release(ino)  # frees the inode; the tree's blocks are lost, never freed twice
    fs.sync()


def test_allocation_never_hands_out_metadata(tmp_path):
    img = small_image(tmp_path)
    bm = where(img, lambda fs: fs._groups[0].block_bitmap)
    poke(img, bm * 1024, b"\xfc")  # blocks 1 (superblock) and 2 (descriptors) look free
    cache, fs, log = mount_logged(img)
    for goal in (1, 2):  # the allocator starts at its goal
        assert fs._alloc_block(goal) not in fs.system_zone
    assert log == ["EXT2-fs error (device vda): ext2_new_blocks: Allocating block in system zone - block = 1",
                   "EXT2-fs error (device vda): ext2_new_blocks: Allocating block in system zone - block = 2"]
    assert cache.get(bm)[0] & 3 == 3


def test_invalid_block_bitmap_fails_allocation(tmp_path):
    img = small_image(tmp_path)
    g = where(img, lambda fs: fs._groups[0])
    bit = g.inode_table - 1  # first data block is 1 with 1 KiB blocks
    with open(img, "r+b") as fh:
        fh.seek(g.block_bitmap * 1024 + (bit >> 3))
        byte = fh.read(1)[0]
        fh.seek(-1, 1)
        fh.write(bytes([byte & ~(1 << (bit & 7))]))
    cache, fs, log = mount_logged(img)
    f = fs.create(2, b"new", 0o644, 0, 0)
    with pytest.raises(FsError) as ei:
        fs.write(f, 0, b"data")
    assert ei.value.errno == errno.EIO
    assert log == [f"EXT2-fs error (device vda): ext2_valid_block_bitmap: Invalid block bitmap - block_group = 0, "
                   f"block = {g.block_bitmap}"]


def test_inode_allocation_skips_live_inodes(tmp_path):
    img = small_image(tmp_path)
    ibm, first = where(img, lambda fs: (fs._groups[0].inode_bitmap, fs.first_ino))
    with open(img, "r+b") as fh:  # inode first_ino + 1 (in use) looks free
        bit = first
        fh.seek(ibm * 1024 + (bit >> 3))
        byte = fh.read(1)[0]
        fh.seek(-1, 1)
        fh.write(bytes([byte & ~(1 << (bit & 7))]))
    cache, fs, log = mount_logged(img)
    live = fs.stat(first + 1)
    f = fs.create(2, b"new", 0o644, 0, 0)
    assert f != first + 1 and fs.stat(first + 1) == live
    assert log == [f"EXT2-fs error (device vda): ext2_new_inode: inode {first + 1} is in use but free in the bitmap"]


def test_free_counts_that_do_not_fit_are_clamped(tmp_path):
    img = small_image(tmp_path)
    cache, fs = mount(img)
    fs.mkdir(2, b"e", 0o755, 0, 0)
    fs.sync()
    cache.close()
    poke(img, 2 * 1024 + 12, struct.pack("<HHH", 0xFFFF, 0xFFFF, 0))  # free blocks, inodes; no dirs
    cache, fs, log = mount_logged(img)
    assert log == ["EXT2-fs error (device vda): ext2_check_descriptors: group 0: free counts out of range"]
    fs.rmdir(2, b"e")
    fs.release(fs.unlink(2, b"mid"))
    fs.sync()  # the counts still fit their 16-bit fields
    g = fs._groups[0]
    assert g.free_blocks <= fs.blocks_count and g.free_inodes <= fs.ipg and g.used_dirs == 0


def test_dotdot_cycle_never_loops(tmp_path):
    img = small_image(tmp_path)
    cache, fs = mount(img)
    a = fs.mkdir(2, b"a", 0o755, 0, 0)
    b = fs.mkdir(a, b"b", 0o755, 0, 0)
    x = fs.mkdir(2, b"x", 0o755, 0, 0)
    fs._set_entry(fs._iget(a), b"..", b, 2)  # a/.. = b, b/.. = a
    fs.rename(2, b"x", b, b"x")
    assert fs.lookup(b, b"x") == x


# ------------------------------------------------------------------ through the command line

def test_cli_refuses_to_mount_bad_descriptors_in_one_line(base_image, tmp_path):
    from tests.machine.test_errors import assert_one_line_error, emu_cli

    img = tmp_path / "bad.img"
    shutil.copyfile(base_image, img)
    bs = parse_layout(img).block_size
    poke(img, bs + 8, struct.pack("<I", 1 << 30))  # group 0's inode table
    r = emu_cli("run", "--image", str(img), "--", "/bin/true")
    assert_one_line_error(r)
    assert r.returncode == 1
    assert r.stderr == (f"emu: error: cannot mount {img}: ext2: group descriptors corrupted: "
                        f"Inode table for group 0 not in group (block {1 << 30})!\n")


def test_cli_corruption_is_eio_and_a_kernel_log_line(base_image, tmp_path):
    from tests.machine.test_errors import emu_cli

    img = tmp_path / "bad.img"
    shutil.copyfile(base_image, img)
    cache = FileBlockCache(img, readonly=True)
    fs = Ext2(cache, now=lambda: 0)
    tree = resolve(fs, "data/tree")
    blk = fs.bmap(tree, 0)
    cache.close()
    poke(img, blk * fs.block_size + 4, struct.pack("<H", 2))  # '.' gets rec_len 2
    r = emu_cli("run", "--summary", "--image", str(img), "--", "/bin/sh", "-c",
                "ls /data/tree; echo status=$?; cat /data/corpus.txt | wc -c")
    assert r.returncode == 0
    assert r.stdout == "status=2\n2097152\n"
    assert "ls: reading directory '/data/tree': Input/output error" in r.stderr
    assert (f"log: EXT2-fs error (device vda): ext2_check_page: bad entry in directory #{tree}: rec_len is smaller "
            f"than minimal - offset=0, inode={tree}, rec_len=2, name_len=1") in r.stderr


def test_dev_reached_relative_to_root(emu):
    """find / does fstatat(fd of /, "dev"): the /dev node must not be taken for /dev/stdin & co."""
    run = emu(["/bin/sh", "-c", "cd / && ls -d dev && find / -maxdepth 1 -name dev && cat dev/stdin < /dev/null"])
    assert (run.result.exit_code, run.stdout) == (0, b"dev\n/dev\n")


def test_mapped_page_that_cannot_be_read_is_sigbus(fuzz_image, tmp_path):
    image, lay = fuzz_image
    img = tmp_path / "bad.img"
    shutil.copyfile(image, img)
    cache = FileBlockCache(img, readonly=True)
    fs = Ext2(cache, now=lambda: 0)
    ino = resolve(fs, "data/corpus.txt")
    blk, off = fs._iloc(ino)
    cache.close()
    poke(img, blk * lay.block_size + off + 40 + 4, struct.pack("<I", lay.blocks_count + 1))  # i_block[1]
    run = run_emu(img, ["/bin/sh", "-c", "/bin/fswalk mmap /data/corpus.txt; head -c 5000 /data/corpus.txt | wc -c"])
    assert run.result.exit_code == 0
    assert run.stdout == b"sigbus=1\n4096\n"
    assert run.stderr == b"head: error reading '/data/corpus.txt': Input/output error\n"
    assert run.result.log == [f"EXT2-fs error (device vda): ext2_get_block: inode {ino}: block pointer "
                              f"{lay.blocks_count + 1} outside the file system"]


def test_rename_of_a_directory_without_dotdot_changes_nothing(tmp_path):
    img = small_image(tmp_path)
    cache, fs = mount(img)
    a = fs.mkdir(2, b"a", 0o755, 0, 0)
    fs._remove_entry(fs._iget(a), b"..")
    links = fs.stat(2).nlink
    with pytest.raises(FsError) as ei:
        fs.rename(2, b"a", resolve(fs, "d1"), b"a")
    assert ei.value.errno == errno.EIO
    assert fs.lookup(2, b"a") == a and fs.stat(2).nlink == links
    assert fs.errors.reported == {f"EXT2-fs error (device vda): ext2_rename: directory {a} has no '..' entry"}


ISSUE_BUDGET_INSNS = 25_000_000  # ~3.5x what the shell tools need (7 M; seed 15 spins in mincore)
ISSUE_WORKLOAD = ["/bin/sh", "-c", "find / -xdev | wc -l; cat /data/corpus.txt | wc -c; ls -lR /data >/dev/null; "
                  "mkdir /tmp/z && echo hi > /tmp/z/f && cat /tmp/z/f; rm -r /tmp/z; grep -r persistent /data/tree | wc -l"]


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(16))
def test_issue_reproduction_random_bytes_with_shell_tools(base_image, tmp_path, seed):
    """The report's reproduction: 64 random bytes in the first 2 MiB, the shell tools over it."""
    import random

    img = tmp_path / "bad.img"
    shutil.copyfile(base_image, img)
    rng = random.Random(seed)
    for _ in range(64):
        poke(img, rng.randrange(FIRST_BYTES), bytes([rng.randrange(256)]))
    console = Console(out_fd=None, err_fd=None, capture=True)
    try:
        Machine(img, console=console, power_fail_at=ISSUE_BUDGET_INSNS).run(ISSUE_WORKLOAD)
    except EmuError as e:
        assert "cannot mount" in str(e)
