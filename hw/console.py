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
        # Exactly-once output across a power failure: `position` counts the bytes the guest
        # wrote to each stream; bytes at positions below `skip_until` were already shown by the
        # run that failed (a restart resumes from an older position) and are swallowed.
        self.position = {1: 0, 2: 0}
        self.skip_until = {1: 0, 2: 0}
        self.previous: dict[int, int] = {1: 0, 2: 0}  # what the failed run had shown

    def shown(self) -> dict[int, int]:
        """How far each stream has been shown (to persist when the power fails)."""
        return {s: max(self.position[s], self.skip_until[s]) for s in (1, 2)}

    def shown_before(self) -> dict[int, int]:
        return dict(self.previous)

    def resume_at(self, position: dict[int, int], shown: dict[int, int]) -> None:
        self.position = {1: position.get(1, 0), 2: position.get(2, 0)}
        self.skip_until = {1: shown.get(1, 0), 2: shown.get(2, 0)}

    def save_state(self) -> dict:
        """Where each stream is (what the guest wrote, what an earlier run showed); what this
        console captured or printed stays with it."""
        return {"position": dict(self.position), "skip_until": dict(self.skip_until), "previous": dict(self.previous)}

    def load_state(self, state: dict) -> None:
        self.position, self.skip_until = dict(state["position"]), dict(state["skip_until"])
        self.previous = dict(state["previous"])

    def write(self, stream: int, data: bytes) -> None:
        pos = self.position.get(stream, 0)
        self.position[stream] = pos + len(data)
        hidden = min(len(data), max(0, self.skip_until.get(stream, 0) - pos))
        if hidden:
            data = data[hidden:]
            if not data:
                return
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
