"""Block storage device backed by an image file.

Requests are whole blocks of the device's block size; a write is durable (in the host file) when
`write_block` returns, in issue order, which is the persistence rule the power-failure model
relies on. The device counts its own requests. Its `timing` (hw/disktiming.py) says how long a
request takes; the kernel asks it for each one (the machine sets it from storage.disk), and
it is saved with the device's state.

A private device (a crash campaign's fork server) never writes its file: its writes stay in a
copy-on-write mapping of the image, which an `os.fork()` copies with the rest of the process;
`save_to` writes the image as the device holds it.
"""
from __future__ import annotations

import errno
import mmap
import os
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from hw.clock import BLOCK_IO_NS
from hw.disktiming import DiskTiming, FlatDisk

PAGE = 4096


@dataclass
class BlockDeviceStats:
    reads: int = 0
    writes: int = 0
    bytes_read: int = 0
    bytes_written: int = 0


class BlockDevice:
    def __init__(self, path: str, *, read_only: bool = False, private: bool = False) -> None:
        # Called before each write; it counts the write as a persistence event and may cut the
        # power (raising PowerFailure) so that this write never happens.
        self.on_write = lambda: None
        self.path = path
        self.fd = os.open(path, os.O_RDONLY if read_only or private else os.O_RDWR)
        self.size_bytes = os.fstat(self.fd).st_size
        self.stats = BlockDeviceStats()
        self.timing: DiskTiming = FlatDisk(BLOCK_IO_NS)
        self.private: mmap.mmap | None = None
        self.dirty_pages: set[int] = set()  # private: the pages written (save_to writes only these)
        if private:
            self.private = mmap.mmap(self.fd, self.size_bytes, mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_WRITE)

    def read_at(self, offset: int, n: int) -> bytes:
        self.stats.reads += 1
        data = os.pread(self.fd, n, offset) if self.private is None else self.private[offset:offset + n]
        self.stats.bytes_read += len(data)
        return data

    def write_at(self, offset: int, data: bytes | memoryview) -> None:
        if offset + len(data) > self.size_bytes:
            raise OSError(f"write beyond the end of {self.path}")
        self.on_write()
        self.stats.writes += 1
        self.stats.bytes_written += len(data)
        if self.private is None:
            os.pwrite(self.fd, data, offset)
        else:
            self.private[offset:offset + len(data)] = data
            self.dirty_pages.update(range(offset // PAGE, (offset + len(data) + PAGE - 1) // PAGE))

    def save_to(self, path: Path) -> None:
        """A private device: write the image it holds to `path` (the base image's data, holes
        kept, then the pages written since)."""
        assert self.private is not None
        copy_image(Path(self.path), path)
        fd = os.open(path, os.O_WRONLY)
        try:
            for pg in sorted(self.dirty_pages):
                os.pwrite(fd, self.private[pg * PAGE:min(self.size_bytes, (pg + 1) * PAGE)], pg * PAGE)
        finally:
            os.close(fd)

    def save_state(self, contents: bool = True) -> dict:
        """The disk's counters, and its contents unless a snapshot copies the image file."""
        state: dict = {"stats": dataclasses.asdict(self.stats), "size_bytes": self.size_bytes,
                       "timing": self.timing.save_state()}
        if contents:
            state["contents"] = os.pread(self.fd, self.size_bytes, 0) if self.private is None else self.private[:]
        return state

    def load_state(self, state: dict) -> None:
        if state["size_bytes"] != self.size_bytes:
            raise ValueError(f"saved disk of {state['size_bytes']} bytes, this one has {self.size_bytes}")
        if "contents" in state:
            if self.private is None:
                os.pwrite(self.fd, state["contents"], 0)
            else:
                self.private[:] = state["contents"]
                self.dirty_pages.update(range((self.size_bytes + PAGE - 1) // PAGE))
        self.stats = BlockDeviceStats(**state["stats"])
        if "timing" in state:  # (a state saved before the timing models: a flat disk's counters)
            if state["timing"]["kind"] != self.timing.kind:
                raise ValueError(f"saved disk timed as {state['timing']['kind']}, this one as {self.timing.kind}")
            self.timing.load_state(state["timing"])

    def flush(self) -> None:
        os.fsync(self.fd)

    def __del__(self) -> None:
        # A machine dropped without finishing its run (a restored snapshot, a paused machine)
        # must not keep its image open: a deleted image's blocks stay allocated until then
        # (the first full sonicshot runs filled the host disk with them).
        if getattr(self, "fd", -1) >= 0:
            self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def copy_image(src: Path, dst: Path) -> None:
    """Copy an image file keeping its holes: only its data extents (SEEK_DATA/SEEK_HOLE), each
    copied inside the host kernel."""
    with open(src, "rb") as s, open(dst, "wb") as d:
        fi, fo = s.fileno(), d.fileno()
        size = os.fstat(fi).st_size
        os.ftruncate(fo, size)
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fi, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after pos
                break
            end = os.lseek(fi, start, os.SEEK_HOLE)
            _copy_range(fi, fo, start, end, src)
            pos = end


def _copy_range(fi: int, fo: int, start: int, end: int, src: Path) -> None:
    """Bytes [start, end) of one file to the same place in another, inside the host kernel
    where it can (copy_file_range), else through this process."""
    while start < end:
        try:
            n = os.copy_file_range(fi, fo, end - start, start, start)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            n = 0
        if n <= 0:  # not supported here, or a short copy: plain reads and writes
            while start < end:
                buf = os.pread(fi, min(end - start, 16 << 20), start)
                if not buf:
                    raise OSError(f"copying {src}: it ended at byte {start}, before {end}")
                os.pwrite(fo, buf, start)
                start += len(buf)
            return
        start += n
