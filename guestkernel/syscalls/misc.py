"""System information and randomness: uname, sysinfo, getrandom, and calls that are answered
on purpose with ENOSYS (rseq: glibc does without) or a harmless success."""
from __future__ import annotations

import struct

from guestkernel.errors import EINVAL, ENOSYS, EPERM, SyscallError
from guestkernel.syscalls import syscall


@syscall("uname")
def sys_uname(k, p, buf, *_):  # type: ignore[no-untyped-def]
    fields = ("sysname", "nodename", "release", "version", "machine", "domainname")
    p.mm.copy_out(buf, b"".join(k.uname[f].ljust(65, b"\0") for f in fields))
    return 0


@syscall("sysinfo")
def sys_sysinfo(k, p, buf, *_):  # type: ignore[no-untyped-def]
    total = k.frames.total_frames * 4096
    free = k.frames.free_frames * 4096
    info = struct.pack("<q3Q6QH6xQQI", k.clock.uptime_ns() // 10**9, 0, 0, 0, total, free, 0, 0, 0, 0,
                       len(k.procs), 0, 0, 1)
    p.mm.copy_out(buf, info.ljust(112, b"\0"))
    return 0


@syscall("getrandom")
def sys_getrandom(k, p, buf, n, flags, *_):  # type: ignore[no-untyped-def]
    if flags & ~7:
        raise SyscallError(EINVAL)
    n = min(n, 1 << 25)
    p.mm.copy_out(buf, k.rng.randbytes(n))
    return n


@syscall("rseq", "io_uring_setup", "memfd_create", "pidfd_open", "landlock_create_ruleset",
         "get_mempolicy", "set_mempolicy", "mbind")  # the last three: a kernel without NUMA
def sys_enosys(k, p, *_):  # type: ignore[no-untyped-def]
    raise SyscallError(ENOSYS)


@syscall("capget")
def sys_capget(k, p, hdr, data, *_):  # type: ignore[no-untyped-def]
    if data:
        p.mm.copy_out(data, struct.pack("<III", 0xFFFFFFFF, 0xFFFFFFFF, 0) * 2)
    return 0


@syscall("personality")
def sys_personality(k, p, persona, *_):  # type: ignore[no-untyped-def]
    return 0


@syscall("getcpu")
def sys_getcpu(k, p, cpu, node, *_):  # type: ignore[no-untyped-def]
    for ptr in (cpu, node):
        if ptr:
            p.mm.copy_out(ptr, b"\0\0\0\0")
    return 0


@syscall("chroot", "mount", "umount2", "reboot", "sethostname", "setdomainname", "pivot_root")
def sys_eperm(k, p, *_):  # type: ignore[no-untyped-def]
    raise SyscallError(EPERM)
