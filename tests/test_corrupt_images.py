"""Corrupt guest images never kill emu: hypothesis mutates each kind of ext2 metadata of a real
image (superblock, group descriptors, bitmaps, inode table, directory blocks, indirect blocks,
plus random bytes in the first 2 MiB) and runs a guest workload that reads and changes
everything (tests/guest/fswalk.c). The guest may see EIO and fail; emu must not: no internal
error, no hang (an instruction budget and a wall-clock alarm), no write outside the image, and
an image whose superblock, descriptors and root inode are intact still mounts.

The metadata blocks are found by parsing the image with the driver itself (see `Layout`)."""
from __future__ import annotations

import shutil
import signal
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from emu.errors import EmuError
from emu.machine import Machine
from guestkernel.blockcache import FileBlockCache
from guestkernel.ext2 import ROOT_INO, Ext2
from hw.console import Console
from tests.conftest import put_file

BUDGET_INSNS = 400_000_000   # the workload needs ~?; a corrupt binary that spins stops here
ALARM_S = 60                 # a kernel loop (Python) is a hang: fail the example
FIRST_BYTES = 2 << 20        # "random bytes in the first 2 MiB"
WORKLOAD = ["/bin/fswalk"]

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
    cache = FileBlockCache(image, readonly=True)
    fs = Ext2(cache, now=lambda: 0)
    bs = fs.block_size
    lay = Layout(bs, fs.blocks_count, fs.inodes_count)
    blk = lambda b: (b * bs, bs)  # noqa: E731
    lay.regions["superblock"] = [(1024, 1024)]
    lay.regions["group_descriptors"] = [blk(b) for b in fs._gd_blocks]
    lay.regions["block_bitmap"] = [blk(g.block_bitmap) for g in fs._groups]
    lay.regions["inode_bitmap"] = [blk(g.inode_bitmap) for g in fs._groups]
    # Inode table: the records of inodes in use (the rest is never read).
    itable, dirs, indirect = [], [], []
    todo, seen = [ROOT_INO], set()
    while todo:
        ino = todo.pop()
        if ino in seen:
            continue
        seen.add(ino)
        b, off = fs._iloc(ino)
        itable.append((b * bs + off, fs.inode_size))
        ind = fs._iget(ino)
        if fs._has_blockmap(ind):
            for slot, level in ((12, 1), (13, 2), (14, 3)):
                collect_indirect(fs, ind.block[slot], level, indirect)
        if ind.fmt == 0o040000:
            nblk = ind.size // bs
            dirs += [blk(p) for p in fs._map_range(ind, 0, nblk) if p]
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
    out.append((p * fs.block_size, fs.block_size))
    if level > 1:
        for c in fs._ptrs_of(p):
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


def apply_edits(data: bytearray, lay: Layout, kind: str, which: int, edits: list[Edit]) -> list[tuple[int, int]]:
    """Damage one region of `kind`; returns the byte ranges changed."""
    regions = lay.regions[kind]
    start, length = regions[which % len(regions)]
    values = interesting_values(lay, start // lay.block_size)
    changed = []
    for e in edits:
        off = start + e.pos % length
        if e.how == "byte":
            data[off] = e.value & 0xFF
            n = 1
        elif e.how == "flip":
            data[off] ^= 1 << (e.value & 7)
            n = 1
        elif e.how in ("u32", "u16"):
            n = 4 if e.how == "u32" else 2
            off = max(start, min(off & ~(n - 1), start + length - n))
            v = values[e.value % len(values)]
            data[off:off + n] = (v & (1 << 8 * n) - 1).to_bytes(n, "little")
        else:
            n = min(16, start + length - off)
            data[off:off + n] = bytes(n)
        changed.append((off, n))
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
    data = bytearray(image.read_bytes())
    changed = apply_edits(data, lay, kind, which, edits)
    bad = tmp / "bad.img"
    bad.write_bytes(data)
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
    assert bad.stat().st_size == len(data), "the driver wrote outside the image"
    if r.power_failed:
        return "budget"
    return "ran" if r.exit_code == 0 else f"guest failed {r.exit_code}"


CASES = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("kind", KINDS)
@CASES
@given(which=st.integers(0, 2**16), edits=st.lists(edit_st, min_size=1, max_size=8))
def test_corrupt_metadata_never_kills_emu(fuzz_image, tmp_path, kind, which, edits):
    image, lay = fuzz_image
    run_corrupted(image, lay, tmp_path, kind, which, edits)
