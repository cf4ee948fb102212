"""swapon(2) and swapoff(2): a file on storage as memory lent to the kernel as page frames
(guestkernel/swap.py)."""
from __future__ import annotations

from guestkernel.syscalls import syscall
from guestkernel.syscalls.args import path_arg


@syscall("swapon")
def sys_swapon(k, p, path, flags, *_):  # type: ignore[no-untyped-def]
    k.swap.swapon(p, path_arg(k, p, path), flags & 0xFFFFFFFF)
    return 0


@syscall("swapoff")
def sys_swapoff(k, p, path, *_):  # type: ignore[no-untyped-def]
    k.swap.swapoff(p, path_arg(k, p, path))
    return 0
