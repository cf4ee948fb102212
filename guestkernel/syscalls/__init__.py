"""The syscall table: one registry, filled by one module per family.

A handler is `sys_<name>(k, p, *args) -> int` taking the kernel, the calling process and the raw
argument registers; it returns the result or raises SyscallError(errno) (returned as -errno) or
Block(waitq) (the call is parked and retried when the queue is woken). Calls with no handler
return ENOSYS and are reported once in the run log.
"""
from __future__ import annotations

from typing import Callable

from guestkernel.syscalls.numbers import NAMES, NUMBERS

Handler = Callable[..., int]
TABLE: dict[int, tuple[str, Handler]] = {}


def syscall(*names: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for name in names:
            TABLE[NUMBERS[name]] = (name, fn)
        return fn

    return register


def load_all() -> dict[int, tuple[str, Handler]]:
    from guestkernel.syscalls import fs, ipc, misc, mman, proc, select, signal, time  # noqa: F401  (registration)

    return TABLE


__all__ = ["TABLE", "NAMES", "NUMBERS", "syscall", "load_all"]
