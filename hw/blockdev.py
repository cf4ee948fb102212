"""Block storage device backed by an image file.

Requests are whole blocks of the device's block size; a write is durable (in the host file) when
`write_block` returns, in issue order, which is the persistence rule the power-failure model
relies on. The device counts its own requests.
"""
from __future__ import annotations

import os
import dataclasses
from dataclasses import dataclass


@dataclass
class BlockDeviceStats:
    reads: int = 0
    writes: int = 0
    bytes_read: int = 0
    bytes_written: int = 0


class BlockDevice:
    def __init__(self, path: str, *, read_only: bool = False) -> None:
        # Called before each write; it counts the write as a persistence event and may cut the
        # power (raising PowerFailure) so that this write never happens.
        self.on_write = lambda: None
        self.path = path
        self.fd = os.open(path, os.O_RDONLY if read_only else os.O_RDWR)
        self.size_bytes = os.fstat(self.fd).st_size
        self.stats = BlockDeviceStats()

    def read_at(self, offset: int, n: int) -> bytes:
        self.stats.reads += 1
        data = os.pread(self.fd, n, offset)
        self.stats.bytes_read += len(data)
        return data

    def write_at(self, offset: int, data: bytes | memoryview) -> None:
        if offset + len(data) > self.size_bytes:
            raise OSError(f"write beyond the end of {self.path}")
        self.on_write()
        self.stats.writes += 1
        self.stats.bytes_written += len(data)
        os.pwrite(self.fd, data, offset)

    def save_state(self, contents: bool = True) -> dict:
        """The disk's counters, and its contents unless a snapshot copies the image file."""
        state: dict = {"stats": dataclasses.asdict(self.stats), "size_bytes": self.size_bytes}
        if contents:
            state["contents"] = os.pread(self.fd, self.size_bytes, 0)
        return state

    def load_state(self, state: dict) -> None:
        if state["size_bytes"] != self.size_bytes:
            raise ValueError(f"saved disk of {state['size_bytes']} bytes, this one has {self.size_bytes}")
        if "contents" in state:
            os.pwrite(self.fd, state["contents"], 0)
        self.stats = BlockDeviceStats(**state["stats"])

    def flush(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
