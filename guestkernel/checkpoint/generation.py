"""The checkpoint generation on storage: which image's blocks storage may hold.

The image table in SCM can be corrupted or zeroed by a failing device; storage cannot be asked
to forget what was written back to it. So every checkpoint that changes storage says so on
storage too, in the first sector of the device, which ext2 leaves to boot loaders (the
superblock starts at byte 1024)::

    bytes   0..27    magic "EMUGEN01", begun seq, done seq, crc32   (little-endian)
    bytes 512..539   the same (a second copy in another sector)

`begun` is written before a checkpoint's blocks are written in place, `done` after the last of
them: storage holds exactly the blocks of images up to `done`, and possibly part of `begun`'s.
A restart compares this with the newest readable image (see Checkpointer.open_image).
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Callable

MAGIC = b"EMUGEN01"
COPIES = (0, 512)   # byte offsets on the device
_REC = struct.Struct("<8sQQ")
_CRC = struct.Struct("<I")
SIZE = _REC.size + _CRC.size


@dataclass(frozen=True)
class Generation:
    begun: int = 0      # the newest image whose blocks storage may (partly) hold
    done: int = 0       # the newest image whose blocks storage holds completely
    damaged: bool = False  # neither copy is blank or valid: storage's word is lost

    @property
    def torn(self) -> bool:
        """A write-back was cut: storage holds part of image `begun`."""
        return self.begun != self.done


def encode(begun: int, done: int) -> bytes:
    body = _REC.pack(MAGIC, begun, done)
    return body + _CRC.pack(zlib.crc32(body))


def decode(read_at: Callable[[int, int], bytes]) -> Generation:
    """The newest valid copy; blank copies mean no checkpoint ever changed storage."""
    good, blank = [], 0
    for off in COPIES:
        raw = read_at(off, SIZE)
        if not any(raw):
            blank += 1
            continue
        (crc,) = _CRC.unpack_from(raw, _REC.size)
        magic, begun, done = _REC.unpack_from(raw)
        if magic == MAGIC and zlib.crc32(raw[: _REC.size]) == crc:
            good.append(Generation(begun, done))
    if good:
        return max(good, key=lambda g: (g.begun, g.done))
    return Generation(damaged=blank < len(COPIES))


def write_device(write_at: Callable[[int, bytes], None], begun: int, done: int) -> None:
    """Both copies straight onto the device (at restart, before the file system is mounted)."""
    rec = encode(begun, done)
    for off in COPIES:
        write_at(off, rec)


def write(view: memoryview, begun: int, done: int) -> None:
    """Put both copies into block 0's bytes (the caller writes the block to the device)."""
    rec = encode(begun, done)
    for off in COPIES:
        view[off : off + SIZE] = rec
