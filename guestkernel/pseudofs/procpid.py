"""/proc/PID: one process as Linux shows it (fs/proc/array.c, task_mmu.c, base.c).

    stat     the 52 fields of do_task_stat, in clock ticks (USER_HZ = 100) and pages
    status   Name, State, Tgid, Pid, PPid, Uid, Vm* sizes in kB, signal masks, Threads
    statm    size resident shared text lib data dt, in pages
    maps     one line per VMA: addresses, permissions, offset, device, inode, path
    cmdline  argv as the process's own memory holds it (NUL-separated)
    environ  its environment, likewise
    comm     the command name (15 bytes at most) and a newline
    exe, cwd symbolic links to the program and the working directory
    fd/N     symbolic links to what each descriptor has open

Times are the process's own retired instructions on the virtual clock; a kernel thread's fields
and the ones we do not model (faults per process, scheduler policy) are 0, as Linux prints them
for a process that has none.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from guestkernel.siginfo import USER_HZ, pending, queued  # (clock ticks: one USER_HZ)
from guestkernel.errors import SyscallError
from guestkernel.mm import PAGE
from guestkernel.process import BLOCKED, RUNNABLE, ZOMBIE, Process

if TYPE_CHECKING:
    from guestkernel.kernel import Kernel

_STATE = {RUNNABLE: ("R", "R (running)"), BLOCKED: ("S", "S (sleeping)"), ZOMBIE: ("Z", "Z (zombie)")}
ROOT_DEV = (8, 1)  # the root file system's device, as stat reports it (0x801)


def ticks(ns: int) -> int:
    return ns * USER_HZ // 10**9


def cpu_ns(k: "Kernel", p: Process) -> int:
    """The process's user time so far (its own retired instructions)."""
    k.account_cpu()
    return p.utime_insns * 10**9 // k.clock.cpu_hz


def _vm_pages(p: Process) -> int:
    return sum(v.end - v.start for v in p.mm.vmas) // PAGE if p.mm is not None else 0


def _text(p: Process) -> tuple[int, int]:
    """start and end of the program's code (the first executable mapping of its file)."""
    if p.mm is None:
        return 0, 0
    code = [v for v in p.mm.vmas if v.prot & 4 and v.file]
    return (code[0].start, code[0].end) if code else (0, 0)


def _signal_sets(p: Process) -> tuple[int, int]:
    """The signals p ignores and those it catches, as masks (bit sig-1)."""
    ign = sum(1 << (s - 1) for s, a in p.sigactions.items() if a.handler == 1)
    catch = sum(1 << (s - 1) for s, a in p.sigactions.items() if a.handler > 1)
    return ign, catch


def stat(k: "Kernel", p: Process) -> bytes:
    state = _STATE[p.state][0]
    live = p.state != ZOMBIE and p.mm is not None
    start_code, end_code = _text(p) if live else (0, 0)
    mm = p.mm if live else None
    sigign, sigcatch = _signal_sets(p)
    fields = [
        p.ppid, p.pgid, p.sid, 0, -1, 0x400000,                      # ppid pgrp session tty tpgid flags
        0, 0, 0, 0,                                                  # minflt cminflt majflt cmajflt
        ticks(cpu_ns(k, p)), 0, ticks(p.cutime_insns * 10**9 // k.clock.cpu_hz), 0,  # utime stime cutime cstime
        20, 0, 1 + sum(1 for q in k.procs.values() if q.leader is p), 0,  # priority nice threads itrealvalue
        ticks(p.start_ns),                                           # starttime
        _vm_pages(p) * PAGE if live else 0, mm.resident_pages() if mm else 0,  # vsize rss
        2**64 - 1, start_code, end_code, mm.start_stack if mm else 0, 0, 0,  # rsslim ... kstkesp kstkeip
        pending(p) & 0x7FFFFFFF, p.sigmask & 0x7FFFFFFF, sigign & 0x7FFFFFFF, sigcatch & 0x7FFFFFFF,
        0, 0, 0, 17 if p.leader is None else -1, 0, 0, 0, 0, 0, 0,    # wchan nswap cnswap exit_signal cpu rt policy blkio guest cguest
        0, 0, mm.brk_start if mm else 0,                              # start_data end_data start_brk
        mm.arg_start if mm else 0, mm.arg_end if mm else 0, mm.env_start if mm else 0, mm.env_end if mm else 0,
        p.exit_status if p.state == ZOMBIE else 0,
    ]
    return f"{p.pid} ({p.comm.decode(errors='replace')}) {state} ".encode() + " ".join(map(str, fields)).encode() + b"\n"


def status(k: "Kernel", p: Process) -> bytes:
    live = p.state != ZOMBIE and p.mm is not None
    tgid = p.leader.pid if p.leader is not None else p.pid
    sigign, sigcatch = _signal_sets(p)
    lines = [
        ("Name", p.comm.decode(errors="replace")), ("Umask", f"{p.umask:04o}"), ("State", _STATE[p.state][1]),
        ("Tgid", tgid), ("Ngid", 0), ("Pid", p.pid), ("PPid", p.ppid), ("TracerPid", 0),
        ("Uid", "0\t0\t0\t0"), ("Gid", "0\t0\t0\t0"), ("FDSize", 64 if len(p.fds.fds) <= 64 else 1024),
        ("Groups", ""),
    ]
    if live:
        vm = _vm_pages(p) * 4
        rss = p.mm.resident_pages() * 4
        shmem = p.mm.shmem_pages() * 4
        start, end = _text(p)
        lines += [("VmPeak", f"{vm:8d} kB"), ("VmSize", f"{vm:8d} kB"), ("VmLck", f"{0:8d} kB"),
                  ("VmPin", f"{0:8d} kB"), ("VmHWM", f"{rss:8d} kB"), ("VmRSS", f"{rss:8d} kB"),
                  ("RssAnon", f"{rss - shmem:8d} kB"), ("RssFile", f"{0:8d} kB"),
                  ("RssShmem", f"{shmem:8d} kB"),
                  ("VmData", f"{(p.mm.brk - p.mm.brk_start) // 1024:8d} kB"),
                  ("VmStk", f"{sum(v.end - v.start for v in p.mm.vmas if v.name == '[stack]') // 1024:8d} kB"),
                  ("VmExe", f"{(end - start) // 1024:8d} kB"), ("VmLib", f"{0:8d} kB"),
                  ("VmPTE", f"{len(p.mm.aspace.table_frames) * 4:8d} kB"), ("VmSwap", f"{0:8d} kB")]
    lines += [("Threads", 1 + sum(1 for q in k.procs.values() if q.leader is p)),
              ("SigQ", f"{queued(p)}/63432"), ("SigPnd", f"{p.sigpending:016x}"), ("ShdPnd", f"{p.shared.sigpending:016x}"),
              ("SigBlk", f"{p.sigmask:016x}"), ("SigIgn", f"{sigign:016x}"), ("SigCgt", f"{sigcatch:016x}"),
              ("CapInh", f"{0:016x}"), ("CapPrm", "000001ffffffffff"), ("CapEff", "000001ffffffffff"),
              ("CapBnd", "000001ffffffffff"), ("CapAmb", f"{0:016x}"), ("NoNewPrivs", 0), ("Seccomp", 0),
              ("Cpus_allowed", "1"), ("Cpus_allowed_list", "0"),
              ("voluntary_ctxt_switches", 0), ("nonvoluntary_ctxt_switches", 0)]
    return "".join(f"{key}:\t{val}\n" for key, val in lines).encode()


def statm(k: "Kernel", p: Process) -> bytes:
    if p.state == ZOMBIE or p.mm is None:
        return b"0 0 0 0 0 0 0\n"
    start, end = _text(p)
    data = sum(v.end - v.start for v in p.mm.vmas if v.prot & 2 and not v.shared) // PAGE
    return f"{_vm_pages(p)} {p.mm.resident_pages()} 0 {(end - start) // PAGE} 0 {data} 0\n".encode()


def maps(k: "Kernel", p: Process) -> bytes:
    if p.state == ZOMBIE or p.mm is None:
        return b""
    out = []
    for v in p.mm.vmas:
        perms = "".join(c if v.prot & b else "-" for c, b in (("r", 1), ("w", 2), ("x", 4))) + ("s" if v.shared else "p")
        ino = getattr(v.backing, "ino", 0) if v.backing is not None and not v.device else 0
        dev = ROOT_DEV if ino else (0, 0)
        name = v.name
        if getattr(v.backing, "anonymous", False):  # shared anonymous memory: Linux's shmem file
            ino, dev, name = v.backing.obj.serial, (0, 1), "/dev/zero (deleted)"  # type: ignore[union-attr]
        line = f"{v.start:08x}-{v.end:08x} {perms} {v.offset if v.backing is not None else 0:08x} {dev[0]:02x}:{dev[1]:02x} {ino} "
        if name.startswith("/") or name in ("[heap]", "[stack]"):  # not emu's own labels
            line = line.ljust(73) + name
        out.append(line + "\n")
    return "".join(out).encode()


def _user_range(k: "Kernel", p: Process, start: int, end: int) -> bytes:
    if p.state == ZOMBIE or p.mm is None or end <= start:
        return b""
    try:
        return p.mm.copy_in(start, end - start)
    except SyscallError:  # the process unmapped its own stack strings: nothing to show
        return b""


def cmdline(k: "Kernel", p: Process) -> bytes:
    return _user_range(k, p, p.mm.arg_start, p.mm.arg_end) if p.mm is not None else b""


def environ(k: "Kernel", p: Process) -> bytes:
    return _user_range(k, p, p.mm.env_start, p.mm.env_end) if p.mm is not None else b""


def comm(k: "Kernel", p: Process) -> bytes:
    return p.comm + b"\n"
