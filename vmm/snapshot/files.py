"""A snapshot's files: the memory file, whole-file copies (disk, media) and their checksums.

The memory file::

    magic "EMUMEM01" | u32 version (1) | u32 compression (0 none, 1 zstd) | u64 npages
    | npages x u32 gpfn (ascending) | the pages' 4 KiB each, in that order (raw, or one zstd frame)

An index then the pages, as Xen's save format sends a batch of pfns before their pages: a restore
reads it front to back, and the index says where each page goes before its data arrives. Pages
are read from (and written to) the host memory in runs of guest pages whose host pages are
consecutive too (with the identity EPT, a few runs for the whole RAM), so saving is a few large
writes, not a write per page. A CRC-32 of every file (zlib's; it finds media corruption and
truncation, it does not resist tampering) is computed while the file is written and checked while
it is read.
"""
from __future__ import annotations

import fcntl
import os
import struct
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np

from hw.blockdev import copy_image
from hw.ept import INVALID

MAGIC = b"EMUMEM01"
HEADER = struct.Struct("<8sIIQ")
COMPRESSIONS = ("none", "zstd")
CHUNK = 64 << 20  # bytes per write/read and CRC update
FICLONE = 0x40049409  # ioctl: share the source's extents (btrfs, xfs; others refuse)


class CorruptFile(Exception):
    """A snapshot file is damaged: the message says which and how."""


class CrcWriter:
    """A file being written, with its CRC-32 and size."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.crc, self.size = f, 0, 0

    def write(self, data: bytes | memoryview) -> int:
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)
        return self.f.write(data)


def runs(machine: Any, gpfns: np.ndarray, split: np.ndarray | None = None) -> Iterator[tuple[int, int]]:
    """(first index into gpfns, count) of runs whose guest and host pages are both consecutive
    and in one host pool (and alike in `split`, a flag per page, if given)."""
    if not len(gpfns):
        return
    hpfns = np.frombuffer(machine.ept.map, dtype=np.uint32)[gpfns].astype(np.int64)
    starts = np.array([r.spec.base_hpa >> 12 for r in machine.physmem.ranges], dtype=np.int64)
    pool = np.searchsorted(starts, hpfns, side="right")
    cut = (np.diff(gpfns) != 1) | (np.diff(hpfns) != 1) | (np.diff(pool) != 0)
    if split is not None:
        cut |= np.diff(split.astype(np.int8)) != 0
    edges = np.concatenate(([0], np.flatnonzero(cut) + 1, [len(gpfns)]))
    for a, b in zip(edges[:-1], edges[1:]):
        yield int(a), int(b - a)


ZERO = bytes(CHUNK)


def fresh_dram(machine: Any, gpfns: np.ndarray) -> np.ndarray:
    """Which of `gpfns` are backed by DRAM pools (anonymous host memory, zero when the machine
    was built)."""
    hpfns = np.frombuffer(machine.ept.map, dtype=np.uint32)[gpfns].astype(np.int64)
    out = np.zeros(len(gpfns), dtype=bool)
    for r in machine.physmem.ranges:
        if r.spec.kind == "dram":
            first = r.spec.base_hpa >> 12
            out |= (hpfns >= first) & (hpfns < first + (r.spec.size_bytes >> 12))
    return out


def write_memory(path: Path, machine: Any, gpfns: np.ndarray, compression: str,
                 known_zero: np.ndarray | None = None) -> dict[str, int]:
    """Write the pages `gpfns` of the machine's guest memory, durably; returns size and crc32. Pages
    flagged in `known_zero` (DRAM never touched since power-on) are written as zeros without
    reading the host memory behind them, which reading would make resident."""
    ept, phys = machine.ept, machine.physmem
    with open(path, "wb") as raw:
        out = CrcWriter(raw)
        out.write(HEADER.pack(MAGIC, 1, COMPRESSIONS.index(compression), len(gpfns)))
        out.write(gpfns.astype(np.uint32).tobytes())
        sink: Any = out
        if compression == "zstd":
            import zstandard

            sink = zstandard.ZstdCompressor(level=3).stream_writer(out, closefd=False)
        for at, n in runs(machine, gpfns, known_zero):
            if known_zero is not None and known_zero[at]:
                for off in range(0, n << 12, CHUNK):
                    sink.write(ZERO[: min(CHUNK, (n << 12) - off)])
                continue
            view = phys.view(ept.map[int(gpfns[at])] << 12, n << 12)
            for off in range(0, len(view), CHUNK):
                sink.write(view[off : off + CHUNK])
        if sink is not out:
            sink.flush(zstandard.FLUSH_FRAME)
        raw.flush()
        os.fsync(raw.fileno())  # a snapshot is on stable storage when take() returns
        return {"bytes": out.size, "crc32": out.crc}


class CrcReader:
    def __init__(self, f: BinaryIO, name: str) -> None:
        self.f, self.name, self.crc, self.size = f, name, 0, 0

    def readinto(self, view: memoryview) -> int:
        n = self.f.readinto(view)
        self.crc = zlib.crc32(view[:n], self.crc)
        self.size += n
        return n

    def read(self, n: int) -> bytes:
        data = self.f.read(n)
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)
        return data

    def exactly(self, view: memoryview) -> None:
        read_exactly(self, view, self.name)


def read_exactly(reader: Any, view: memoryview, name: str) -> None:
    """Fill `view` from `reader`; a short read means the file is truncated."""
    got = 0
    while got < len(view):
        n = reader.readinto(view[got:])
        if not n:
            raise CorruptFile(f"{name} is truncated")
        got += n


def read_memory(path: Path, machine: Any, expect: dict[str, int], written: bytearray | None = None) -> int:
    """Load a memory file into the machine's guest memory (through its EPT as loaded); returns
    the pages read. CorruptFile if the file is not what `expect` (size, crc32) says. A zero
    chunk bound for DRAM no earlier file of the chain wrote (`written`, a byte per gpfn, kept
    up to date here) is not copied: the fresh machine's memory is zero there already, and
    copying would make it resident (QEMU skips zero pages on load likewise)."""
    name = path.name
    if not path.is_file():
        raise CorruptFile(f"{name} is missing")
    if path.stat().st_size != expect["bytes"]:
        raise CorruptFile(f"{name} has {path.stat().st_size} bytes, the snapshot wrote {expect['bytes']} (truncated or damaged)")
    ept, phys = machine.ept, machine.physmem
    with open(path, "rb") as raw:
        f = CrcReader(raw, name)
        head = f.read(HEADER.size)
        if len(head) != HEADER.size:
            raise CorruptFile(f"{name} is truncated")
        magic, version, comp, npages = HEADER.unpack(head)
        if magic != MAGIC or version != 1 or comp >= len(COMPRESSIONS) or npages > ept.pages:
            raise CorruptFile(f"{name} is not an emu memory file of version 1")
        index = bytearray(4 * npages)
        f.exactly(memoryview(index))
        gpfns = np.frombuffer(index, dtype=np.uint32).astype(np.int64)
        if npages and (gpfns.max() >= ept.pages or (np.diff(gpfns) <= 0).any()):
            raise CorruptFile(f"{name}: its page index is damaged")
        src: Any = f
        if COMPRESSIONS[comp] == "zstd":
            import zstandard

            src = _Exact(zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True, closefd=False), name)
        mapped = np.frombuffer(ept.map, dtype=np.uint32)[gpfns] != INVALID
        fresh = fresh_dram(machine, gpfns)
        if written is not None:
            fresh &= np.frombuffer(written, dtype=np.uint8)[gpfns] == 0
            np.frombuffer(written, dtype=np.uint8)[gpfns] = 1
        scratch = bytearray(4096)
        for at, n in runs(machine, gpfns, fresh):
            if not mapped[at : at + n].all():  # pages ballooned out since: read and drop
                for i in range(n):
                    src.exactly(memoryview(scratch))
                    if mapped[at + i]:
                        phys.view(ept.map[int(gpfns[at + i])] << 12, 4096)[:] = scratch
                continue
            first_hpfn = ept.map[int(gpfns[at])]
            view = phys.view(first_hpfn << 12, n << 12)
            for off in range(0, len(view), CHUNK):
                part = view[off : off + CHUNK]
                src.exactly(part)  # straight in: no copy through a scratch buffer
                if fresh[at] and not np.frombuffer(part, dtype=np.uint8).any():
                    phys.release(first_hpfn + (off >> 12), len(part) >> 12)  # zeros: not resident
        if src is not f and src.read(1):
            raise CorruptFile(f"{name} has data past its last page")
        if f.read(1):
            raise CorruptFile(f"{name} has data past its last page")
        if f.crc != expect["crc32"]:
            raise CorruptFile(f"{name} fails its checksum (crc32 {f.crc:08x}, the snapshot wrote {expect['crc32']:08x})")
        return int(npages)


class _Exact:
    """A decompressing reader whose short reads mean a damaged file."""

    def __init__(self, r: Any, name: str) -> None:
        self.r, self.name = r, name

    def readinto(self, view: memoryview) -> int:
        try:
            return self.r.readinto(view)
        except Exception as e:  # zstandard.ZstdError and friends
            raise CorruptFile(f"{self.name} does not decompress: {e}") from None

    def read(self, n: int) -> bytes:
        try:
            return self.r.read(n)
        except Exception as e:
            raise CorruptFile(f"{self.name} does not decompress: {e}") from None

    def exactly(self, view: memoryview) -> None:
        read_exactly(self, view, self.name)


def write_bytes(path: Path, data: bytes) -> dict[str, int]:
    """`data` to a new file, on stable storage when this returns; its size and CRC-32."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return {"bytes": len(data), "crc32": zlib.crc32(data)}


def sync_dir(path: Path) -> None:
    """Make the entries of directory `path` (a rename into it, new files) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_bytes(path: Path, expect: dict[str, int]) -> bytes:
    name = path.name
    try:
        data = path.read_bytes()
    except OSError:
        raise CorruptFile(f"{name} is missing or unreadable") from None
    if len(data) != expect["bytes"]:
        raise CorruptFile(f"{name} has {len(data)} bytes, the snapshot wrote {expect['bytes']} (truncated or damaged)")
    if zlib.crc32(data) != expect["crc32"]:
        raise CorruptFile(f"{name} fails its checksum")
    return data


def copy_file(src: Path, dst: Path, durable: bool = False) -> str:
    """Copy src to dst: a reflink where the file system shares extents (btrfs, xfs), else a
    copy of its data (holes stay holes). Returns which. `durable`: on stable storage when this returns."""
    how = _copy(src, dst)
    if durable:
        fd = os.open(dst, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return how


def _copy(src: Path, dst: Path) -> str:
    with open(src, "rb") as s, open(dst, "wb") as d:
        try:
            fcntl.ioctl(d.fileno(), FICLONE, s.fileno())
            return "reflink"
        except OSError:
            pass
    copy_image(src, dst)  # its data extents only: an image's holes stay holes
    return "copy"


def file_crc(path: Path) -> dict[str, int]:
    """Size and CRC-32 of a whole file (read in chunks)."""
    crc, size = 0, 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
    return {"bytes": size, "crc32": crc}


def check_file(path: Path, expect: dict[str, int]) -> None:
    name = path.name
    if not path.is_file():
        raise CorruptFile(f"{name} is missing")
    if path.stat().st_size != expect["bytes"]:
        raise CorruptFile(f"{name} has {path.stat().st_size} bytes, the snapshot wrote {expect['bytes']} (truncated or damaged)")
    if file_crc(path)["crc32"] != expect["crc32"]:
        raise CorruptFile(f"{name} fails its checksum")

