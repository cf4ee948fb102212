"""The syscall table: one registry, filled by one module per family.

A handler is `sys_<name>(k, p, *args) -> int` taking the kernel, the calling process and the raw
argument registers; it returns the result or raises SyscallError(errno) (returned as -errno) or
Block(waitq) (the call is parked and retried when the queue is woken). Calls with no handler
return ENOSYS and are reported once in the run log.
"""
from __future__ import annotations

import importlib
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


# Every module that registers handlers (args.py and numbers.py only help them). File syscalls:
# descriptors (open, close, dup, pipe), rw (read/write family, truncate, sync), stat, attrs
# (chmod, chown, times), namei (mkdir, unlink, rename, link, symlink, readlink), dirs (getdents,
# getcwd, chdir), fcntl (fcntl, locks, ioctl), xattr.
MODULES = ("attrs", "descriptors", "dirs", "fcntl", "namei", "rw", "stat", "xattr",
           "events", "ipc", "misc", "mman", "mount", "net", "proc", "select", "signal", "swap", "time")


def load_all() -> dict[int, tuple[str, Handler]]:
    for name in MODULES:  # importing a module registers its handlers
        importlib.import_module(f"guestkernel.syscalls.{name}")
    return TABLE


__all__ = ["TABLE", "NAMES", "NUMBERS", "MODULES", "syscall", "load_all"]
