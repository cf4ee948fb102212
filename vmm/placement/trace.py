"""The trace of dirty guest pages, one record per scan: what `placement.record` writes and the
oracle replays. A small binary file: a JSON header line (format, machine, scan interval, guest
RAM) and then per scan `<QI` (instructions retired, pages) followed by that many `<I` gpfns."""
from __future__ import annotations

import json
import struct
from array import array
from pathlib import Path
from typing import Any, BinaryIO

from vmm.errors import EmuError

MAGIC = "emu-dirty-trace"
_REC = struct.Struct("<QI")


class TraceWriter:
    def __init__(self, path: str | Path, header: dict[str, Any]) -> None:
        self.f: BinaryIO = open(path, "wb")
        self.f.write((json.dumps({"format": MAGIC, "version": 1, **header}) + "\n").encode())

    def write(self, icount: int, dirty: list[int]) -> None:
        self.f.write(_REC.pack(icount, len(dirty)))
        self.f.write(array("I", dirty).tobytes())

    def close(self) -> None:
        self.f.close()


def read_trace(path: str | Path) -> tuple[dict[str, Any], list[list[int]]]:
    """(header, dirty gpfns of each scan); an EmuError of one line for anything else."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise EmuError(f"cannot read the placement trace {path}: {e.strerror}") from None
    nl = data.find(b"\n")
    try:
        header = json.loads(data[:nl])
        if header.get("format") != MAGIC:
            raise ValueError
    except ValueError:
        raise EmuError(f"{path} is not a placement trace (record one with placement.record=FILE)") from None
    scans: list[list[int]] = []
    at = nl + 1
    while at < len(data):
        if at + _REC.size > len(data):
            raise EmuError(f"{path}: the placement trace is truncated")
        _icount, n = _REC.unpack_from(data, at)
        at += _REC.size
        if at + 4 * n > len(data):
            raise EmuError(f"{path}: the placement trace is truncated")
        scans.append(array("I", data[at : at + 4 * n]).tolist())
        at += 4 * n
    return header, scans
