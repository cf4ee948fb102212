"""What a pending signal carries (Linux's kernel/signal.c sigqueue and include/uapi siginfo.h):
who sent it and why, queued per process with the pending bit.

A standard signal (1-31) is pending at most once: a second one while the first waits is dropped,
its information with it (Linux's legacy_queue). A real-time signal (32-64) queues every instance,
each with its own information; its pending bit stays set while one is queued. The record is
written out as a siginfo_t (a handler's frame with SA_SIGINFO, rt_sigtimedwait, waitid) or as a
struct signalfd_siginfo (read from a signalfd), each field where Linux's siginfo_layout puts it.
"""
from __future__ import annotations

import struct
from dataclasses import astuple, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from guestkernel.process import Process, SharedPending

    Pending = Process | SharedPending  # a thread's own pending set, or its group's

SIGINFO_SIZE = 128
SIGRTMIN = 32
SIGCHLD = 17
FAULT_SIGNALS = (4, 5, 7, 8, 11)  # SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV

# si_code: who sent it (<= 0 from user space, > 0 from the kernel)
SI_USER, SI_KERNEL, SI_QUEUE, SI_TIMER, SI_TKILL = 0, 0x80, -1, -2, -6
CLD_EXITED, CLD_KILLED, CLD_DUMPED = 1, 2, 3
SEGV_MAPERR, SEGV_ACCERR = 1, 2
BUS_ADRERR = 2
ILL_ILLOPN = 2
FPE_INTDIV = 1
TRAP_BRKPT = 1
USER_HZ = 100  # clock ticks of si_utime and si_stime

_HEAD = struct.Struct("<iii4x")            # si_signo, si_errno, si_code
_KILL = struct.Struct("<iI")               # si_pid, si_uid
_RT = struct.Struct("<iIq")                # si_pid, si_uid, si_value
_CHLD = struct.Struct("<iIi4xqq")          # si_pid, si_uid, si_status, si_utime, si_stime
_FAULT = struct.Struct("<Q")               # si_addr
# struct signalfd_siginfo: signo errno code pid uid fd tid band overrun trapno status int ptr utime stime addr
_SIGNALFD = struct.Struct("<IiiIIiIIIIiiQQQQ")


@dataclass
class SigInfo:
    signo: int
    code: int = SI_KERNEL
    pid: int = 0
    uid: int = 0
    status: int = 0
    utime: int = 0      # clock ticks
    stime: int = 0
    value: int = 0      # union sigval (sigqueue): the int and the pointer share it
    addr: int = 0       # the faulting address
    errno: int = 0

    def layout(self) -> str:
        """Which union member the fields live in (Linux's siginfo_layout)."""
        if self.code > 0 and self.code != SI_KERNEL:
            if self.signo in FAULT_SIGNALS:
                return "fault"
            if self.signo == SIGCHLD:
                return "chld"
        if self.code in (SI_QUEUE, SI_TIMER) or (self.code < 0 and self.code != SI_TKILL):
            return "rt"
        return "kill"

    def pack(self) -> bytes:
        """A siginfo_t."""
        lay = self.layout()
        if lay == "fault":
            body = _FAULT.pack(self.addr)
        elif lay == "chld":
            body = _CHLD.pack(self.pid, self.uid, self.status, self.utime, self.stime)
        elif lay == "rt":
            body = _RT.pack(self.pid, self.uid, self.value)
        else:
            body = _KILL.pack(self.pid, self.uid)
        return (_HEAD.pack(self.signo, self.errno, self.code) + body).ljust(SIGINFO_SIZE, b"\0")

    def pack_signalfd(self) -> bytes:
        """A struct signalfd_siginfo (Linux's signalfd_copyinfo: the fields of the layout)."""
        lay = self.layout()
        pid, uid = (self.pid, self.uid) if lay != "fault" else (0, 0)
        status, utime, stime = (self.status, self.utime, self.stime) if lay == "chld" else (0, 0, 0)
        integer, ptr = (self.value & 0xFFFFFFFF, self.value & 0xFFFFFFFFFFFFFFFF) if lay == "rt" else (0, 0)
        addr = self.addr if lay == "fault" else 0
        return _SIGNALFD.pack(self.signo, self.errno, self.code, pid & 0xFFFFFFFF, uid, 0, 0, 0, 0, 0, status,
                              integer - (1 << 32) if integer >= 1 << 31 else integer, ptr, utime, stime,
                              addr).ljust(SIGINFO_SIZE, b"\0")

    @classmethod
    def unpack_user(cls, raw: bytes, signo: int) -> "SigInfo":
        """The siginfo_t a program gives rt_sigqueueinfo (the rt layout; the signal number is the
        call's)."""
        _signo, errno, code = _HEAD.unpack_from(raw)
        pid, uid, value = _RT.unpack_from(raw, _HEAD.size)
        return cls(signo, code, pid, uid, value=value, errno=errno)

    def record(self) -> list[int]:
        """For a checkpoint image."""
        return list(astuple(self))


def child_info(status_word: int, pid: int, ticks: int) -> SigInfo:
    """SIGCHLD's (and waitid's) information about a child that ended with wait status
    `status_word`: exited with a code, or killed by a signal (with a core dump or not)."""
    if status_word & 0x7F == 0:
        code, status = CLD_EXITED, (status_word >> 8) & 0xFF
    else:
        code, status = (CLD_DUMPED if status_word & 0x80 else CLD_KILLED), status_word & 0x7F
    return SigInfo(SIGCHLD, code, pid, 0, status, utime=ticks)


def queue(p: "Pending", info: SigInfo) -> bool:
    """Make info's signal pending for p; False when a standard signal was pending already (the
    new one is dropped)."""
    bit = 1 << (info.signo - 1)
    if info.signo < SIGRTMIN and p.sigpending & bit:
        return False
    p.sigpending |= bit
    p.siginfo.setdefault(info.signo, []).append(info)
    return True


def take(p: "Pending", sig: int) -> SigInfo:
    """Dequeue one instance of pending signal `sig`: its information (the kernel's, when it was
    made pending without any); the pending bit goes with the last one."""
    q = p.siginfo.get(sig)
    info = q.pop(0) if q else SigInfo(sig)
    if not q:
        p.siginfo.pop(sig, None)
        p.sigpending &= ~(1 << (sig - 1))
    return info


def take_lowest(p: "Process", ready: int) -> tuple[int, SigInfo]:
    """Dequeue the lowest signal of `ready` (a mask of p's pending signals) from the thread's
    own set first, then from its group's (Linux's dequeue_signal). Returns (signal, info)."""
    own = p.sigpending & ready
    source: Pending = p if own else p.shared
    bits = own or p.shared.sigpending & ready
    sig = (bits & -bits).bit_length()
    return sig, take(source, sig)


def pending(p: "Process") -> int:
    """The thread's pending signals, its own and its group's."""
    return p.sigpending | p.shared.sigpending


def discard(p: "Pending", sig: int) -> None:
    """Every pending instance of `sig` goes (its action became SIG_IGN)."""
    p.siginfo.pop(sig, None)
    p.sigpending &= ~(1 << (sig - 1))


def queued(p: "Process") -> int:
    """Signals queued for the thread (/proc/PID/status SigQ)."""
    return sum(len(q) for q in p.siginfo.values()) + sum(len(q) for q in p.shared.siginfo.values())
