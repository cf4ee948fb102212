"""The driver's one error type: FsError(errno), a SyscallError, so that the syscall that meets it
fails with that errno."""
from __future__ import annotations

import errno

from ..errors import SyscallError


class FsError(SyscallError):
    """File-system error carrying an errno value (the syscall's, when it reaches one)."""

    def __init__(self, err: int, msg: str = "") -> None:
        super().__init__(err, msg)
        self.msg = msg

    def __str__(self) -> str:
        name = errno.errorcode.get(self.errno, str(self.errno))
        return f"[{name}] {self.msg}" if self.msg else name
