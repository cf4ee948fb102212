"""The console: where the guest's stdout and stderr go.

Bytes are written through to host file descriptors as the guest produces them (a live run streams)
and, when asked, also kept so that tests and crash campaigns can compare outputs byte for byte.
"""
from __future__ import annotations

import os


class Console:
    def __init__(self, out_fd: int | None = 1, err_fd: int | None = 2, *, capture: bool = False) -> None:
        self.fds = {1: out_fd, 2: err_fd}
        self.capture = capture
        self.captured: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}

    def write(self, stream: int, data: bytes) -> None:
        if self.capture:
            self.captured[stream] += data
        fd = self.fds.get(stream)
        if fd is not None:
            view = memoryview(data)
            while view:
                try:
                    n = os.write(fd, view)
                except BrokenPipeError:
                    self.fds[stream] = None
                    return
                view = view[n:]

    def read_input(self, n: int) -> bytes:
        """Guest reads of the console: the host's stdin, or end of file when there is none."""
        try:
            return os.read(0, n)
        except OSError:
            return b""
